//! User agents: browser, OS, device type and bots, on real and hostile ones.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use beacon_enrich::{BotReason, Device, UserAgents, MAX_USER_AGENT_BYTES};

/// Compiling the patterns takes a moment: one classifier for the file.
fn agents() -> &'static UserAgents {
    static AGENTS: OnceLock<UserAgents> = OnceLock::new();
    AGENTS.get_or_init(|| UserAgents::new(1_000).unwrap())
}

struct Case {
    name: &'static str,
    ua: &'static str,
    browser: Option<(&'static str, &'static str)>,
    os: Option<&'static str>,
    device: Device,
    bot: Option<BotReason>,
}

const fn person(
    name: &'static str,
    ua: &'static str,
    browser: (&'static str, &'static str),
    os: &'static str,
    device: Device,
) -> Case {
    Case {
        name,
        ua,
        browser: Some(browser),
        os: Some(os),
        device,
        bot: None,
    }
}

const fn bot(name: &'static str, ua: &'static str, reason: BotReason) -> Case {
    Case {
        name,
        ua,
        browser: None,
        os: None,
        device: Device::Other,
        bot: Some(reason),
    }
}

const CASES: &[Case] = &[
    person("Chrome on Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", ("Chrome", "131"), "Windows", Device::Desktop),
    person("Chrome on macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", ("Chrome", "131"), "Mac OS X", Device::Desktop),
    person("Firefox on Linux", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", ("Firefox", "133"), "Linux", Device::Desktop),
    person("Firefox on Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", ("Firefox", "133"), "Windows", Device::Desktop),
    person("Safari on macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", ("Safari", "18"), "Mac OS X", Device::Desktop),
    person("Edge on Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", ("Edge", "131"), "Windows", Device::Desktop),
    person("Safari on iPhone", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", ("Mobile Safari", "18"), "iOS", Device::Mobile),
    person("Chrome on iPhone", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", ("Chrome Mobile iOS", "131"), "iOS", Device::Mobile),
    person("Safari on iPad", "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", ("Mobile Safari", "17"), "iOS", Device::Tablet),
    person("Chrome on an Android phone", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", ("Chrome Mobile", "131"), "Android", Device::Mobile),
    person("Chrome on an Android tablet", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", ("Chrome", "131"), "Android", Device::Tablet),
    person("Firefox on an Android phone", "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0", ("Firefox Mobile", "133"), "Android", Device::Mobile),
    person("Samsung Internet on a phone", "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", ("Samsung Internet", "26"), "Android", Device::Mobile),
    person("Samsung Internet on a tablet", "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Safari/537.36", ("Samsung Internet", "25"), "Android", Device::Tablet),
    bot("Googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", BotReason::Spider),
    bot("Googlebot smartphone", "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", BotReason::Spider),
    bot("bingbot", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", BotReason::Spider),
    bot("curl", "curl/8.5.0", BotReason::Pattern),
    bot("python-requests", "python-requests/2.32.3", BotReason::Pattern),
    bot("Go's HTTP client", "Go-http-client/1.1", BotReason::Pattern),
    bot("HeadlessChrome", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36", BotReason::Headless),
    bot("facebookexternalhit", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", BotReason::Spider),
    bot("Slackbot", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", BotReason::Spider),
    bot("UptimeRobot", "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", BotReason::Spider),
    bot("empty", "", BotReason::Empty),
    bot("white space", "   ", BotReason::Empty),
];

#[test]
fn real_user_agents_get_their_browser_os_device_and_bot_verdict() {
    let mut failures = Vec::new();
    for case in CASES {
        let agent = agents().classify(Some(case.ua));
        let got_browser = agent
            .browser
            .as_deref()
            .zip(agent.browser_version.as_deref());
        let bot_ok = match case.bot {
            // Any bot reason will do for the bots: the server reports them
            // all as `bot`; the exact one is checked below where it matters.
            Some(_) => agent.bot.is_some(),
            None => agent.bot.is_none(),
        };
        let person_ok =
            case.bot.is_some() || (got_browser == case.browser && agent.os.as_deref() == case.os);
        if !bot_ok || !person_ok || agent.device != case.device {
            failures.push(format!("{}: {agent:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bot_reasons_name_the_check_that_caught_them() {
    let reason = |ua: &str| agents().classify(Some(ua)).bot;
    assert_eq!(
        reason(
            CASES
                .iter()
                .find(|c| c.name == "HeadlessChrome")
                .unwrap()
                .ua
        ),
        Some(BotReason::Headless)
    );
    assert_eq!(
        reason("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
        Some(BotReason::Spider)
    );
    assert_eq!(reason("curl/8.5.0"), Some(BotReason::Pattern));
    assert_eq!(agents().classify(None).bot, Some(BotReason::Empty));
    assert_eq!(reason(""), Some(BotReason::Empty));
}

#[test]
fn device_and_reason_names_are_the_stored_ones() {
    let names: Vec<_> = [
        Device::Desktop,
        Device::Mobile,
        Device::Tablet,
        Device::Other,
    ]
    .iter()
    .map(Device::as_str)
    .collect();
    assert_eq!(names, ["desktop", "mobile", "tablet", "other"]);
    let reasons: Vec<_> = [
        BotReason::Pattern,
        BotReason::Spider,
        BotReason::Headless,
        BotReason::Empty,
    ]
    .iter()
    .map(BotReason::as_str)
    .collect();
    assert_eq!(reasons, ["pattern", "spider", "headless", "empty"]);
}

#[test]
fn a_repeated_user_agent_is_answered_from_the_cache() {
    let agents = UserAgents::new(100).unwrap();
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 cache-test";
    let first = agents.classify(Some(ua));
    let second = agents.classify(Some(ua));
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(agents.cached(), 1);
}

#[test]
fn the_cache_stays_within_its_capacity() {
    let agents = UserAgents::new(50).unwrap();
    for i in 0..2_000 {
        agents.classify(Some(&format!(
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/{i}.0"
        )));
    }
    assert!(agents.cached() <= 60, "{} cached", agents.cached());
}

#[test]
fn a_10_kb_user_agent_is_cut_and_cached_under_its_cut() {
    let agents = UserAgents::new(100).unwrap();
    let base = CASES[0].ua;
    let long = format!("{base} {}", "A".repeat(10_000));
    let longer = format!("{long}{}", "B".repeat(5_000));
    let a = agents.classify(Some(&long));
    let b = agents.classify(Some(&longer));
    assert!(
        Arc::ptr_eq(&a, &b),
        "both cut to the same first {MAX_USER_AGENT_BYTES} bytes"
    );
    assert_eq!(a.browser.as_deref(), Some("Chrome"));
    assert_eq!(agents.cached(), 1);
}

#[test]
fn binary_and_crafted_user_agents_get_a_verdict() {
    let hostile = [
        "\u{0}\u{1}\u{2}\u{fffd}\u{fffd}\u{7f}".repeat(100),
        "é".repeat(2_000),
        "(".repeat(10_000),
        format!("Mozilla/5.0 ({}", "a;".repeat(5_000)),
        format!("{}!", "a".repeat(50_000)),
        format!("Mozilla/5.0 {}", "1.".repeat(10_000)),
        "\r\nX-Injected: yes\r\n".to_owned(),
    ];
    for ua in &hostile {
        let agent = agents().classify(Some(ua));
        assert!(
            agent
                .browser
                .as_ref()
                .is_none_or(|b| b.len() <= MAX_USER_AGENT_BYTES),
            "{agent:?}"
        );
    }
}

#[test]
fn the_uap_core_patterns_compile_with_the_linear_time_regex_engine() {
    // `UserAgents::new` compiles every pattern of regexes.yaml with the
    // `regex` crate (through ua-parser); it would fail on one it refused.
    let agents = UserAgents::new(1).unwrap();
    assert!(agents.bot_patterns().pattern_count() >= 200);
    assert!(agents.bot_patterns().skipped().is_empty());
}

#[test]
fn classify_is_shared_across_threads() {
    let agents = Arc::new(UserAgents::new(100).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let agents = Arc::clone(&agents);
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        agents
                            .classify(Some(CASES[(t + i) % CASES.len()].ua))
                            .device
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (t, handle) in handles.into_iter().enumerate() {
        let devices = handle.join().unwrap();
        for (i, device) in devices.into_iter().enumerate() {
            assert_eq!(device, CASES[(t + i) % CASES.len()].device);
        }
    }
}
