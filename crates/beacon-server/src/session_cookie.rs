//! The dashboard's session cookie: the read token, posted once to
//! `POST /auth/signin`, is exchanged for a cookie that the read endpoints
//! accept beside the bearer token, so the token never travels in URLs.
//!
//! The cookie is stateless: its value is an expiry time and an HMAC-SHA256
//! of it keyed by the read token. Every instance behind a load balancer
//! checks it with the token it already has; changing the read token ends
//! every cookie at once; nothing is stored on the server.

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The cookie's name.
pub const NAME: &str = "beacon_session";

/// How long a sign-in lasts.
pub const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Binds the MAC to this use, so that no other value ever keyed by the read
/// token could pass for a cookie.
const CONTEXT: &[u8] = b"beacon dashboard session v1\0";

fn mac(token: &str, expires: u64) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).ok()?;
    mac.update(CONTEXT);
    mac.update(expires.to_string().as_bytes());
    Some(mac)
}

/// Seconds since the Unix epoch (0 before it, which no clock here shows).
fn seconds(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0)
}

/// A cookie value valid until `now + LIFETIME`: `<expiry>.<hex mac>`.
pub fn issue(token: &str, now: DateTime<Utc>) -> Option<String> {
    let expires = seconds(now) + LIFETIME.as_secs();
    let tag = mac(token, expires)?.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{expires}.{hex}"))
}

/// Whether `value` was issued with this token and has not expired at `now`.
/// The MAC is compared in constant time.
pub fn verify(token: &str, value: &str, now: DateTime<Utc>) -> bool {
    let Some((expires, hex)) = value.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return false;
    };
    if expires <= seconds(now) || hex.len() != 64 {
        return false;
    }
    let Some(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    mac(token, expires).is_some_and(|mac| mac.verify_slice(&tag).is_ok())
}

/// Whether the request reached Beacon over HTTPS, so the cookie can be
/// marked `Secure`: a TLS connection to Beacon itself, or, through a proxy
/// listed in `--trusted-proxies`, its `X-Forwarded-Proto` / `Forwarded:
/// proto=` (from anyone else, those headers are ignored: any client can
/// send them).
pub fn over_https(req: &HttpRequest, enrichment: &crate::enrich::Enrichment) -> bool {
    enrichment.client(req).https
}

/// The `Set-Cookie` for a sign-in.
pub fn signed_in(value: String, secure: bool) -> Cookie<'static> {
    Cookie::build(NAME, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::seconds(
            i64::try_from(LIFETIME.as_secs()).unwrap_or(i64::MAX),
        ))
        .finish()
}

/// The `Set-Cookie` that removes it from the browser.
pub fn signed_out(secure: bool) -> Cookie<'static> {
    let mut cookie = signed_in(String::new(), secure);
    cookie.make_removal();
    cookie
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap_or_default()
    }

    const NOW: i64 = 1_796_000_000;

    #[test]
    fn a_cookie_is_valid_only_with_the_token_it_was_issued_with() {
        let value = issue("s3cret", at(NOW)).unwrap_or_default();
        assert!(verify("s3cret", &value, at(NOW)));
        assert!(
            !verify("other", &value, at(NOW)),
            "a new read token ends the cookie"
        );
    }

    #[test]
    fn a_cookie_lasts_its_lifetime_and_not_a_second_more() {
        let value = issue("s3cret", at(NOW)).unwrap_or_default();
        let lifetime = i64::try_from(LIFETIME.as_secs()).unwrap_or_default();
        assert!(verify("s3cret", &value, at(NOW + lifetime - 1)));
        assert!(!verify("s3cret", &value, at(NOW + lifetime)));
    }

    #[test]
    fn a_tampered_or_expired_cookie_is_refused() {
        let value = issue("s3cret", at(NOW)).unwrap_or_default();
        let (expires, tag) = value.split_once('.').unwrap_or_default();
        let later: u64 = expires.parse::<u64>().unwrap_or_default() + 1;
        assert!(!verify("s3cret", &format!("{later}.{tag}"), at(NOW)));
        let past = seconds(at(NOW)) - 1;
        let tag = mac("s3cret", past)
            .map(|m| m.finalize().into_bytes())
            .unwrap_or_default();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            !verify("s3cret", &format!("{past}.{hex}"), at(NOW)),
            "expired"
        );
        for junk in ["", ".", "1.2", "abc.def", &value[..value.len() - 1]] {
            assert!(!verify("s3cret", junk, at(NOW)), "{junk:?}");
        }
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let cookie = signed_in("v".into(), false).to_string();
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(!cookie.contains("Secure"), "{cookie}");
        assert!(signed_in("v".into(), true).to_string().contains("Secure"));
        assert!(signed_out(false).to_string().contains("Max-Age=0"));
    }
}
