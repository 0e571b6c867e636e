//! The bot pattern list of npm `isbot` (Unlicense), compiled for the
//! `regex` crate.
//!
//! The package ships its list inside `index.js` (its build inlines
//! `src/patterns.json` as `var patterns_default = [ ... ];`); the array is
//! cut out of the vendored file and parsed as JSON. `isbot` matches case-
//! insensitively with JavaScript's ASCII `\w`, `\d`, `\b`; the patterns are
//! compiled with `(?i-u)` on bytes, which means the same.
//!
//! Two kinds of pattern need help, because the `regex` crate (linear time,
//! so no crafted user agent can make it slow) has no look-around:
//! - `[\w\d-.]`: a `-` after a class escape is a range error here; it is
//!   escaped (`[\w\d\-.]`), which is what JavaScript reads it as.
//! - six patterns with look-around are rewritten in [`REWRITES`] as a
//!   regex plus literal checks of the text just before and after each
//!   match. A look-around pattern not in that table would be skipped and
//!   listed by [`BotPatterns::skipped`]; a test fails if any is, so an
//!   upgrade of `isbot` cannot lose patterns silently.

use regex::bytes::{Regex, RegexBuilder};

use crate::EnrichError;

/// The vendored `isbot` build.
const ISBOT_JS: &str = include_str!("../../../../vendor/isbot/index.js");
const LIST_START: &str = "var patterns_default = ";
const LIST_END: &str = "\n];";

/// Compiled size limits for the combined pattern: the default (10 MiB) is
/// enough today; the headroom keeps a longer future list compiling.
const SIZE_LIMIT: usize = 64 << 20;

/// A look-around pattern of `isbot` as an equivalent test: `core` must
/// match where the text before the match does not end with any of
/// `not_preceded_by` and the text after it does not start with any of
/// `not_followed_by` (ASCII case-insensitive).
struct Rewrite {
    original: &'static str,
    core: &'static str,
    not_preceded_by: &'static [&'static str],
    not_followed_by: &'static [&'static str],
}

/// Every look-around pattern of `isbot` 5.2.4, rewritten.
const REWRITES: &[Rewrite] = &[
    Rewrite {
        original: "(?:^|[^g])news(?!sapphire)",
        core: "(?:^|[^g])news",
        not_preceded_by: &[],
        not_followed_by: &["sapphire"],
    },
    Rewrite {
        original: "(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))",
        core: "google",
        not_preceded_by: &[" channel/", "google/"],
        not_followed_by: &["wv", "app", "/google", " pixel"],
    },
    Rewrite {
        original: r"(?<! cu)bots?(?:\b|_)",
        core: r"bots?(?:\b|_)",
        not_preceded_by: &[" cu"],
        not_followed_by: &[],
    },
    Rewrite {
        original: "(?<!cam)scan",
        core: "scan",
        not_preceded_by: &["cam"],
        not_followed_by: &[],
    },
    Rewrite {
        original: "(?<!lib)http",
        core: "http",
        not_preceded_by: &["lib"],
        not_followed_by: &[],
    },
    Rewrite {
        original: "java(?!;)",
        core: "java",
        not_preceded_by: &[],
        not_followed_by: &[";"],
    },
];

/// The `isbot` patterns, compiled once: one combined regex for the
/// patterns the `regex` crate takes as they are (or with a `-` escaped),
/// and a few rewritten look-around patterns.
pub struct BotPatterns {
    combined: Regex,
    lookarounds: Vec<(Regex, &'static Rewrite)>,
    count: usize,
    skipped: Vec<String>,
}

impl std::fmt::Debug for BotPatterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotPatterns")
            .field("patterns", &self.count)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl BotPatterns {
    /// Loads and compiles the embedded `isbot` list (a few milliseconds).
    pub fn new() -> Result<Self, EnrichError> {
        let patterns = embedded_list()?;
        let mut plain = Vec::with_capacity(patterns.len());
        let mut lookarounds = Vec::new();
        let mut skipped = Vec::new();
        for pattern in &patterns {
            if let Some(rewrite) = REWRITES.iter().find(|r| r.original == *pattern) {
                lookarounds.push((compile(rewrite.core)?, rewrite));
                continue;
            }
            let fixed = escape_dash_after_class_escape(pattern);
            if compile(&fixed).is_ok() {
                plain.push(format!("(?:{fixed})"));
            } else {
                skipped.push(pattern.clone());
            }
        }
        let combined = RegexBuilder::new(&format!("(?i-u){}", plain.join("|")))
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| patterns_error(e.to_string()))?;
        Ok(Self {
            combined,
            lookarounds,
            count: patterns.len(),
            skipped,
        })
    }

    /// Whether the user agent matches one of the patterns.
    pub fn is_bot(&self, user_agent: &str) -> bool {
        let text = user_agent.as_bytes();
        self.combined.is_match(text)
            || self.lookarounds.iter().any(|(core, rewrite)| {
                core.find_iter(text)
                    .any(|m| rewrite.holds(text, m.start(), m.end()))
            })
    }

    /// How many patterns the embedded list has (including rewritten and
    /// skipped ones).
    pub fn pattern_count(&self) -> usize {
        self.count
    }

    /// The patterns that could not be compiled nor rewritten (none for the
    /// vendored version).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

impl Rewrite {
    fn holds(&self, text: &[u8], start: usize, end: usize) -> bool {
        let before = &text[..start];
        let after = &text[end..];
        !self
            .not_preceded_by
            .iter()
            .any(|p| ends_with_ignore_case(before, p.as_bytes()))
            && !self
                .not_followed_by
                .iter()
                .any(|p| starts_with_ignore_case(after, p.as_bytes()))
    }
}

fn ends_with_ignore_case(text: &[u8], suffix: &[u8]) -> bool {
    text.len() >= suffix.len() && text[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

fn starts_with_ignore_case(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn compile(pattern: &str) -> Result<Regex, EnrichError> {
    RegexBuilder::new(&format!("(?i-u){pattern}"))
        .build()
        .map_err(|e| patterns_error(format!("{pattern:?}: {e}")))
}

fn patterns_error(reason: String) -> EnrichError {
    EnrichError::Patterns {
        source_name: "isbot",
        reason,
    }
}

/// The JSON array inlined in the vendored `index.js`.
fn embedded_list() -> Result<Vec<String>, EnrichError> {
    let start = ISBOT_JS
        .find(LIST_START)
        .ok_or_else(|| patterns_error(format!("{LIST_START:?} not found in index.js")))?
        + LIST_START.len();
    let len = ISBOT_JS[start..]
        .find(LIST_END)
        .ok_or_else(|| patterns_error("the pattern array does not end".into()))?;
    let list = &ISBOT_JS[start..start + len + 2];
    serde_json::from_str(list)
        .map_err(|e| patterns_error(format!("the pattern array is not JSON: {e}")))
}

/// Escapes a `-` that follows a class escape inside a character class
/// (`[\w\d-.]` → `[\w\d\-.]`): JavaScript reads it as a literal dash, the
/// `regex` crate as a broken range.
fn escape_dash_after_class_escape(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                let Some(escaped) = chars.next() else { break };
                out.push(escaped);
                let class_escape = matches!(escaped, 'w' | 'W' | 'd' | 'D' | 's' | 'S');
                if in_class && class_escape && chars.peek() == Some(&'-') {
                    chars.next();
                    out.push_str("\\-");
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_isbot_pattern_is_compiled_or_rewritten() {
        let bots = BotPatterns::new().unwrap();
        assert!(bots.pattern_count() >= 200, "{}", bots.pattern_count());
        assert!(bots.skipped().is_empty(), "skipped: {:?}", bots.skipped());
        assert_eq!(
            bots.lookarounds.len(),
            REWRITES.len(),
            "a rewrite no longer matches a pattern"
        );
    }

    #[test]
    fn a_dash_after_a_class_escape_is_escaped_inside_classes_only() {
        assert_eq!(escape_dash_after_class_escape(r"[\w\d-.]+"), r"[\w\d\-.]+");
        assert_eq!(escape_dash_after_class_escape(r"\d-x"), r"\d-x");
        assert_eq!(escape_dash_after_class_escape(r"[a-z]"), r"[a-z]");
    }

    /// Whether the rewrite of `original` alone matches `ua`.
    fn rewrite_matches(original: &str, ua: &str) -> bool {
        let rewrite = REWRITES.iter().find(|r| r.original == original).unwrap();
        let core = compile(rewrite.core).unwrap();
        let matched = core
            .find_iter(ua.as_bytes())
            .any(|m| rewrite.holds(ua.as_bytes(), m.start(), m.end()));
        matched
    }

    #[test]
    fn rewritten_lookarounds_behave_like_the_originals() {
        let google = "(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))";
        let cases = [
            ("(?:^|[^g])news(?!sapphire)", "SomeNewsReader/1.0", true),
            ("(?:^|[^g])news(?!sapphire)", "news/1.0", true),
            ("(?:^|[^g])news(?!sapphire)", "x NewsSapphire/1.0", false),
            ("(?:^|[^g])news(?!sapphire)", "gnews", false),
            (google, "Mozilla/5.0 (compatible; Google-Read-Aloud)", true),
            (google, "Mozilla/5.0 GoogleApp/1.0", false),
            (
                google,
                "Mozilla/5.0 (Linux; Android 14; Google Pixel 8)",
                false,
            ),
            (google, "Mozilla/5.0 channel/google", false),
            (google, "Mozilla/5.0 GoogleWv", false),
            (google, "Mozilla/5.0 google/google", false),
            (
                r"(?<! cu)bots?(?:\b|_)",
                "Mozilla/5.0 (compatible; SomeBot/1.0)",
                true,
            ),
            (r"(?<! cu)bots?(?:\b|_)", "Mozilla/5.0 bots_", true),
            (
                r"(?<! cu)bots?(?:\b|_)",
                "Mozilla/5.0 (Linux; Android 12; Cubot X)",
                false,
            ),
            (r"(?<! cu)bots?(?:\b|_)", "Mozilla/5.0 botanic", false),
            ("(?<!cam)scan", "Mozilla/5.0 VirusScan", true),
            ("(?<!cam)scan", "Mozilla/5.0 CamScanner", false),
            ("(?<!lib)http", "Apache-HttpClient/4.5", true),
            ("(?<!lib)http", "libhttp/2", false),
            ("java(?!;)", "Java/17.0.1", true),
            ("java(?!;)", "Mozilla/4.0 (compatible; Java; x)", false),
        ];
        for (original, ua, expected) in cases {
            assert_eq!(
                rewrite_matches(original, ua),
                expected,
                "{original} on {ua}"
            );
        }
    }
}
