use std::borrow::Cow;

/// Removes every control character (C0, DEL, C1; NUL included). Used for
/// single-line fields such as urls, where no control character belongs.
pub(crate) fn strip_controls(s: String) -> String {
    if s.chars().any(char::is_control) {
        s.chars().filter(|c| !c.is_control()).collect()
    } else {
        s
    }
}

/// Removes control characters but keeps tab, line feed and carriage return:
/// used for free text inside `data` (element texts may span lines). NUL is
/// always removed, since PostgreSQL cannot store it in text or jsonb.
pub(crate) fn strip_controls_keep_whitespace(s: &str) -> Option<String> {
    let bad = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    if s.chars().any(bad) {
        Some(s.chars().filter(|c| !bad(*c)).collect())
    } else {
        None
    }
}

/// Truncates to at most `max` bytes on a character boundary.
pub(crate) fn truncate_bytes(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Makes user-controlled text safe for one log line: control characters
/// (CR and LF included) are escaped, and the text is cut at `max` chars.
pub fn escape_for_log(s: &str, max: usize) -> Cow<'_, str> {
    if s.chars().count() <= max && !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(max * 4));
    for c in s.chars().take(max) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().count() > max {
        out.push('…');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_controls_removes_nul_and_newlines() {
        assert_eq!(strip_controls("a\u{0}b\nc\u{7f}d\u{85}".into()), "abcd");
        assert_eq!(strip_controls("plain".into()), "plain");
    }

    #[test]
    fn data_text_keeps_whitespace_but_not_nul() {
        assert_eq!(
            strip_controls_keep_whitespace("a\tb\nc\u{0}d"),
            Some("a\tb\ncd".into())
        );
        assert_eq!(strip_controls_keep_whitespace("a\tb"), None);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate_bytes("héllo".into(), 2), "h");
        assert_eq!(truncate_bytes("héllo".into(), 3), "hé");
        assert_eq!(truncate_bytes("abc".into(), 10), "abc");
    }

    #[test]
    fn log_escaping_neutralises_crlf_injection() {
        assert_eq!(escape_for_log("a\r\nb", 100), "a\\r\\nb");
        assert_eq!(escape_for_log("abcdef", 3), "abc…");
        assert!(matches!(escape_for_log("fine", 10), Cow::Borrowed(_)));
    }
}
