//! User agents: browser, OS and device type, and whether it is a bot
//! (issue 17, points 2 and 3).
//!
//! The parser is the `ua-parser` crate with the patterns of npm `uap-core`
//! (`vendor/uap-core/regexes.yaml`, Apache-2.0); the bot list is npm
//! `isbot` ([`BotPatterns`]). Both are compiled once, when [`UserAgents`] is
//! built; verdicts are kept per distinct (truncated) user agent in a
//! bounded cache, so the work is paid once per user agent, not per event.

mod bots;
mod device;

use std::sync::Arc;

use ua_parser::Extractor;

pub use bots::BotPatterns;

use crate::EnrichError;

/// The uap-core patterns, embedded at build time.
const REGEXES_YAML: &str = include_str!("../../../../vendor/uap-core/regexes.yaml");

/// User agents are cut to this many bytes (at a character boundary) before
/// anything looks at them, and the cut string is the cache key: a 10 KB
/// user agent costs what a 512-byte one does. Real ones are below 300.
pub const MAX_USER_AGENT_BYTES: usize = 512;

/// A sensible cache size for a server: 10,000 distinct user agents, at most
/// about 10 MB (a key of at most 512 bytes and a verdict of a few short
/// strings each); a site sees a few thousand distinct ones a day.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// The kind of device a user agent runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// A desktop or laptop computer.
    Desktop,
    /// A phone.
    Mobile,
    /// A tablet.
    Tablet,
    /// Anything else: bots, TVs, consoles, user agents nothing recognises.
    Other,
}

impl Device {
    /// `"desktop"`, `"mobile"`, `"tablet"` or `"other"`, as stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::Mobile => "mobile",
            Self::Tablet => "tablet",
            Self::Other => "other",
        }
    }
}

/// Why a user agent counts as a bot. The server reports all of them as
/// reason `bot`; the detail is for tests and the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BotReason {
    /// It matches a pattern of the `isbot` list.
    Pattern,
    /// The uap-core parser classes its device as `Spider`.
    Spider,
    /// A headless browser (`HeadlessChrome`).
    Headless,
    /// No user agent, or only white space.
    Empty,
}

impl BotReason {
    /// `"pattern"`, `"spider"`, `"headless"` or `"empty"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pattern => "pattern",
            Self::Spider => "spider",
            Self::Headless => "headless",
            Self::Empty => "empty",
        }
    }
}

/// What a user agent says about its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Browser family (`"Chrome"`, `"Firefox"`, `"Mobile Safari"`, …), if
    /// recognised.
    pub browser: Option<String>,
    /// The browser's major version (`"131"`).
    pub browser_version: Option<String>,
    /// Operating system family (`"Windows"`, `"Mac OS X"`, `"iOS"`,
    /// `"Android"`, …), if recognised.
    pub os: Option<String>,
    /// The system's major version (`"10"`, `"17"`).
    pub os_version: Option<String>,
    /// Device type; always [`Device::Other`] for a bot.
    pub device: Device,
    /// Why it is a bot, if it is one.
    pub bot: Option<BotReason>,
}

impl Agent {
    /// The verdict for a missing or empty user agent: a bot.
    fn empty() -> Self {
        Self {
            browser: None,
            browser_version: None,
            os: None,
            os_version: None,
            device: Device::Other,
            bot: Some(BotReason::Empty),
        }
    }
}

/// The user-agent classifier: patterns compiled once, verdicts cached.
///
/// `Sync`: one is built per process and shared (in an `Arc`) by every
/// worker thread; [`UserAgents::classify`] takes `&self`.
pub struct UserAgents {
    parser: Extractor<'static>,
    bots: BotPatterns,
    cache: quick_cache::sync::Cache<String, Arc<Agent>>,
    empty: Arc<Agent>,
}

impl std::fmt::Debug for UserAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgents")
            .field("cached", &self.cache.len())
            .field("capacity", &self.cache.capacity())
            .field("bots", &self.bots)
            .finish_non_exhaustive()
    }
}

impl UserAgents {
    /// Compiles the embedded patterns (about a tenth of a second: once per
    /// process) with a cache of about `cache_capacity` distinct user agents
    /// (at least 1; see [`DEFAULT_CACHE_CAPACITY`]).
    pub fn new(cache_capacity: usize) -> Result<Self, EnrichError> {
        let regexes: ua_parser::Regexes<'static> =
            yaml_serde::from_str(REGEXES_YAML).map_err(|e| uap_error(e.to_string()))?;
        let parser = Extractor::try_from(regexes).map_err(|e| uap_error(e.to_string()))?;
        Ok(Self {
            parser,
            bots: BotPatterns::new()?,
            cache: quick_cache::sync::Cache::new(cache_capacity.max(1)),
            empty: Arc::new(Agent::empty()),
        })
    }

    /// The verdict for a user agent: from the cache, or computed and cached.
    ///
    /// `None`, empty and all-white-space user agents are bots
    /// ([`BotReason::Empty`]). Anything longer than
    /// [`MAX_USER_AGENT_BYTES`] is cut first. Never fails and never takes
    /// longer than the linear-time matching of a 512-byte string.
    pub fn classify(&self, user_agent: Option<&str>) -> Arc<Agent> {
        let ua = truncate(user_agent.unwrap_or_default().trim());
        if ua.is_empty() {
            return Arc::clone(&self.empty);
        }
        let verdict = self.cache.get_or_insert_with(ua, || {
            Ok::<_, std::convert::Infallible>(Arc::new(self.analyse(ua)))
        });
        match verdict {
            Ok(agent) => agent,
            Err(never) => match never {},
        }
    }

    /// How many verdicts the cache holds now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The bot patterns, on their own (the benchmark times them alone).
    pub fn bot_patterns(&self) -> &BotPatterns {
        &self.bots
    }

    /// Parses and checks one (already truncated, non-empty) user agent.
    fn analyse(&self, ua: &str) -> Agent {
        let (browser, os, device) = self.parser.extract(ua);
        let browser_family = browser
            .as_ref()
            .map(|b| b.family.as_ref())
            .filter(|f| *f != "Other");
        let os_family = os.as_ref().map(|o| o.os.as_ref()).filter(|f| *f != "Other");
        let device_family = device
            .as_ref()
            .map(|d| d.device.as_ref())
            .filter(|f| *f != "Other");
        let bot = if ua.contains("HeadlessChrome") || browser_family == Some("HeadlessChrome") {
            Some(BotReason::Headless)
        } else if device_family == Some("Spider") {
            Some(BotReason::Spider)
        } else if self.bots.is_bot(ua) {
            Some(BotReason::Pattern)
        } else {
            None
        };
        let device = match bot {
            Some(_) => Device::Other,
            None => device::device_type(&device::Parsed {
                user_agent: ua,
                browser: browser_family,
                os: os_family,
                device: device_family,
            }),
        };
        Agent {
            browser: browser_family.map(str::to_owned),
            browser_version: browser_family
                .and(browser.as_ref().and_then(|b| b.major))
                .map(str::to_owned),
            os: os_family.map(str::to_owned),
            os_version: os_family
                .and(os.as_ref().and_then(|o| o.major.as_deref()))
                .map(str::to_owned),
            device,
            bot,
        }
    }
}

fn uap_error(reason: String) -> EnrichError {
    EnrichError::Patterns {
        source_name: "uap-core regexes.yaml",
        reason,
    }
}

/// The first [`MAX_USER_AGENT_BYTES`] bytes of `ua`, cut back to a
/// character boundary.
fn truncate(ua: &str) -> &str {
    if ua.len() <= MAX_USER_AGENT_BYTES {
        return ua;
    }
    let mut end = MAX_USER_AGENT_BYTES;
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    &ua[..end]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn truncation_cuts_at_a_character_boundary() {
        let long = "é".repeat(400); // 800 bytes
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_USER_AGENT_BYTES && cut.len() >= MAX_USER_AGENT_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn user_agents_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<UserAgents>();
    }
}
