//! Visitor ids: a keyed hash of (site host, client address, user agent)
//! under a daily salt (issue 17, point 5). The address and the salt are
//! never stored; the id alone cannot be turned back into either.

use std::fmt;
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::EnrichError;

/// A secret of 32 random bytes that keys [`visitor_id`]. Whoever holds it
/// can test guesses of (host, address, user agent) against stored ids, so
/// it is never logged or served: `Debug` prints `Salt(..)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Salt([u8; 32]);

impl Salt {
    /// A new salt from the operating system's random source.
    pub fn random() -> Result<Self, EnrichError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| EnrichError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// The salt with these bytes (as stored in the database).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes, to store the salt (in the database, never in a log).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(..)")
    }
}

/// The visitor id of (site host, client address, user agent) under `salt`:
/// HMAC-SHA256 keyed by the salt, its first 8 bytes read as a big-endian
/// integer, truncated to 63 bits and made negative (top bit set).
///
/// Always `< 0`. Sessions stored before visitor ids existed count each as
/// its own visitor, by their positive database id; a negative visitor id
/// can never equal one, so "distinct visitor id, else session id" needs no
/// second column. 63 bits make a collision between two visitors of the
/// same site and day negligible (about one in 10^10 at 100,000 visitors).
///
/// The fields are length-prefixed inside the MAC, so no choice of host and
/// user agent can shift bytes from one field into the other; IPv4 and
/// IPv4-mapped IPv6 are the same address.
pub fn visitor_id(salt: &Salt, site_host: &str, ip: IpAddr, user_agent: &str) -> i64 {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&salt.0)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    let host = site_host.as_bytes();
    mac.update(&(host.len() as u64).to_be_bytes());
    mac.update(host);
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            mac.update(&[4]);
            mac.update(&v4.octets());
        }
        IpAddr::V6(v6) => {
            mac.update(&[6]);
            mac.update(&v6.octets());
        }
    }
    let agent = user_agent.as_bytes();
    mac.update(&(agent.len() as u64).to_be_bytes());
    mac.update(agent);
    let digest = mac.finalize().into_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) | (1 << 63)) as i64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn salt(b: u8) -> Salt {
        Salt::from_bytes([b; 32])
    }

    #[test]
    fn visitor_ids_are_always_negative() {
        for i in 0..1000u32 {
            let id = visitor_id(
                &salt(1),
                "site.example",
                IpAddr::from([10, 0, 0, 1]),
                &i.to_string(),
            );
            assert!(id < 0, "{id}");
        }
    }

    #[test]
    fn a_visitor_id_depends_on_every_input() {
        let ip = IpAddr::from([192, 0, 2, 1]);
        let base = visitor_id(&salt(1), "a.example", ip, "UA");
        assert_eq!(base, visitor_id(&salt(1), "a.example", ip, "UA"));
        assert_ne!(base, visitor_id(&salt(2), "a.example", ip, "UA"), "salt");
        assert_ne!(base, visitor_id(&salt(1), "b.example", ip, "UA"), "host");
        assert_ne!(
            base,
            visitor_id(&salt(1), "a.example", IpAddr::from([192, 0, 2, 2]), "UA"),
            "ip"
        );
        assert_ne!(
            base,
            visitor_id(&salt(1), "a.example", ip, "UB"),
            "user agent"
        );
    }

    #[test]
    fn host_and_user_agent_cannot_trade_bytes() {
        let ip = IpAddr::from([192, 0, 2, 1]);
        assert_ne!(
            visitor_id(&salt(1), "ab", ip, "c"),
            visitor_id(&salt(1), "a", ip, "bc")
        );
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_ipv4_address() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            visitor_id(&salt(1), "h", v4, "u"),
            visitor_id(&salt(1), "h", mapped, "u")
        );
    }

    #[test]
    fn debug_never_prints_the_salt_bytes() {
        let s = Salt::from_bytes([0xab; 32]);
        assert_eq!(format!("{s:?}"), "Salt(..)");
        assert!(!format!("{s:?}").contains("171"));
    }

    #[test]
    fn random_salts_differ_and_round_trip_through_bytes() {
        let a = Salt::random().unwrap();
        let b = Salt::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(Salt::from_bytes(*a.as_bytes()), a);
    }
}
