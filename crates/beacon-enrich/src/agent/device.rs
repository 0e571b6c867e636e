//! Device type from what the parser found and the user agent itself.

use super::Device;

/// What [`device_type`] looks at, as the parser returned it (`None` for
/// its `Other`, i.e. nothing recognised).
pub(super) struct Parsed<'a> {
    pub user_agent: &'a str,
    pub browser: Option<&'a str>,
    pub os: Option<&'a str>,
    pub device: Option<&'a str>,
}

/// Substrings of TVs, set-top boxes, consoles, cars and watches: none of
/// `desktop`, `mobile`, `tablet`.
const OTHER_DEVICES: &[&str] = &[
    "SmartTV",
    "SMART-TV",
    "Smart-TV",
    "HbbTV",
    "CrKey",
    "AppleTV",
    "Android TV",
    "GoogleTV",
    "Tizen TV",
    "Web0S",
    "WebOS TV",
    "PlayStation",
    "Xbox",
    "Nintendo",
    "Watch OS",
    "watchOS",
];

/// Operating systems of phones (besides Android and iOS, decided apart).
const PHONE_OSES: &[&str] = &[
    "Windows Phone",
    "BlackBerry OS",
    "KaiOS",
    "Firefox OS",
    "Symbian OS",
    "Sailfish",
];

/// The device type of a user agent that is not a bot.
///
/// In order: TVs, consoles and watches are `Other`; iPads, Kindles and the
/// parser's tablets are `Tablet`; iPhones, iPods and the parser's phones are
/// `Mobile`; Android is `Mobile` with the `Mobile` token (Chrome, Samsung
/// Internet and Firefox put it only on phones) and `Tablet` without it; iOS
/// and phone systems are `Mobile`, as is any user agent with `Mobi`
/// (Mozilla's advice); anything else with a recognised system or browser
/// is `Desktop`; the rest `Other`. An iPad with desktop-class Safari sends
/// the Mac user agent and is counted as a desktop: nothing in the user
/// agent tells them apart.
pub(super) fn device_type(p: &Parsed<'_>) -> Device {
    let ua = p.user_agent;
    let device = p.device.unwrap_or_default();
    let os = p.os.unwrap_or_default();
    if OTHER_DEVICES.iter().any(|m| ua.contains(m)) {
        return Device::Other;
    }
    if device == "iPad"
        || device.contains("Tablet")
        || device.starts_with("Kindle")
        || ua.contains("iPad")
    {
        return Device::Tablet;
    }
    if matches!(
        device,
        "iPhone" | "iPod" | "Generic Smartphone" | "Generic Feature Phone"
    ) {
        return Device::Mobile;
    }
    if os == "Android" || ua.contains("Android") {
        return if ua.contains("Mobile") {
            Device::Mobile
        } else {
            Device::Tablet
        };
    }
    if os == "iOS" || PHONE_OSES.contains(&os) || ua.contains("Mobi") {
        return Device::Mobile;
    }
    if p.os.is_some() || p.browser.is_some() {
        return Device::Desktop;
    }
    Device::Other
}
