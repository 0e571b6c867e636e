//! The client's address behind trusted proxies (issue 17, point 1).
//!
//! Nothing here allocates per request except the small list of hops read
//! from the right of the headers (at most [`MAX_HOPS`]), and no header,
//! however long or however many hops it names, costs more than a scan of
//! its bytes from the right up to that many hops.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

use crate::EnrichError;

/// At most this many hops are examined from the right of `Forwarded` /
/// `X-Forwarded-For`; a longer chain is cut there (its leftmost hops are
/// never read), so a header with thousands of hops costs no more than 64.
pub const MAX_HOPS: usize = 64;

/// A hop longer than this is garbage, not an address: the longest written
/// form we accept, `"[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%zone]:65535"`
/// with a short zone, is well below it.
const MAX_HOP_LEN: usize = 100;

/// The networks whose forwarding headers are believed: the operator's own
/// reverse proxies, load balancers or CDN.
///
/// Parsed from a comma-separated list of CIDRs, IPv4 or IPv6
/// (`"10.0.0.0/8, 2001:db8::/32"`); a bare address stands for itself
/// (`/32`, `/128`). The empty string (and [`Default`]) trusts nobody.
/// IPv4-mapped IPv6 addresses are compared as the IPv4 address they carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Whether `ip` is inside one of the trusted networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether no network is trusted (the default).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

impl FromStr for TrustedProxies {
    type Err = EnrichError;

    /// Parses `"10.0.0.0/8, 2001:db8::/32, 192.0.2.7"`; empty items (a
    /// trailing comma, the empty string) are ignored. The error names the
    /// first bad item.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = || EnrichError::InvalidProxy {
                item: item.to_owned(),
            };
            let net = if item.contains('/') {
                item.parse::<IpNet>().map_err(|_| bad())?
            } else {
                IpNet::from(item.parse::<IpAddr>().map_err(|_| bad())?)
            };
            nets.push(canonical_net(net));
        }
        Ok(Self { nets })
    }
}

impl fmt::Display for TrustedProxies {
    /// The list as it would be parsed back: `10.0.0.0/8, 2001:db8::/32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`: addresses are compared in their
/// canonical form, so the networks are kept in it too.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                if let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n);
                }
            }
        }
    }
    net
}

/// The forwarding headers of one request: every value of each header, in
/// the order received (a header may be repeated; its values read as one
/// comma-separated list in that order).
#[derive(Debug, Clone, Default)]
pub struct ForwardingHeaders<'a> {
    /// Every `Forwarded` value (RFC 7239).
    pub forwarded: Vec<&'a str>,
    /// Every `X-Forwarded-For` value.
    pub x_forwarded_for: Vec<&'a str>,
    /// `X-Real-IP`, read only when neither list above is present.
    pub x_real_ip: Option<&'a str>,
    /// `X-Forwarded-Proto` (all values joined by commas if repeated).
    pub x_forwarded_proto: Option<&'a str>,
}

impl ForwardingHeaders<'_> {
    /// Whether any header that names a client address is present.
    fn names_an_address(&self) -> bool {
        !self.forwarded.is_empty() || !self.x_forwarded_for.is_empty() || self.x_real_ip.is_some()
    }
}

/// Where a request came from, as far as Beacon can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address; an IPv4-mapped IPv6 address is given as IPv4.
    pub ip: IpAddr,
    /// Whether the client reached the first trusted hop over HTTPS.
    pub https: bool,
    /// Whether `ip` came from a forwarding header (the peer was trusted).
    pub via_proxy: bool,
    /// Whether an untrusted peer sent headers that name a client address:
    /// they were ignored; the server counts and warns, since that usually
    /// means a proxy missing from the trusted list.
    pub spoofed: bool,
}

/// The client address of a request from `peer` (the socket's peer address;
/// `peer_tls`: whether that connection is TLS).
///
/// - An untrusted peer is the client, whatever its headers say
///   (`spoofed` tells whether it sent any).
/// - Behind a trusted peer, the hops of `Forwarded` (its `for=`), or else of
///   `X-Forwarded-For`, or else the one `X-Real-IP`, are read from the
///   right: the first hop that is not itself trusted is the client. If every
///   hop is trusted, the leftmost one examined is.
/// - A hop that is not an address (garbage, `unknown`, an obfuscated
///   `_hidden` node, a `Forwarded` element without `for=`) ends the walk:
///   the client is then the last trusted hop read before it, or the peer.
///   What lies left of such a hop was written by a party we cannot vouch
///   for, so it is never taken.
/// - At most [`MAX_HOPS`] hops are examined.
/// - `https`: behind a trusted peer, the `proto=` of the `Forwarded`
///   element that gave the address, else the leftmost `X-Forwarded-Proto`
///   value, else `peer_tls`; from an untrusted peer, `peer_tls`.
pub fn client_addr(
    peer: IpAddr,
    peer_tls: bool,
    headers: &ForwardingHeaders<'_>,
    trusted: &TrustedProxies,
) -> ClientAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return ClientAddr {
            ip: peer,
            https: peer_tls,
            via_proxy: false,
            spoofed: headers.names_an_address(),
        };
    }
    let (ip, forwarded_proto) = if !headers.forwarded.is_empty() {
        walk(forwarded_hops(&headers.forwarded), trusted)
    } else if !headers.x_forwarded_for.is_empty() {
        walk(list_hops(&headers.x_forwarded_for), trusted)
    } else if let Some(real) = headers.x_real_ip {
        walk(std::iter::once(Hop::plain(real)), trusted)
    } else {
        (None, None)
    };
    let https = forwarded_proto
        .or_else(|| headers.x_forwarded_proto.and_then(leftmost_proto))
        .unwrap_or(peer_tls);
    ClientAddr {
        ip: ip.unwrap_or(peer),
        https,
        via_proxy: ip.is_some(),
        spoofed: false,
    }
}

/// One hop of a forwarding list: its node, and for `Forwarded` the
/// element's `proto=` if any.
struct Hop<'a> {
    node: Option<&'a str>,
    proto: Option<&'a str>,
}

impl<'a> Hop<'a> {
    fn plain(node: &'a str) -> Self {
        Hop {
            node: Some(node),
            proto: None,
        }
    }
}

/// Walks hops from the right; returns the client address (`None`: the
/// peer) and, for a `Forwarded` hop, whether its proto was https.
fn walk<'a>(
    hops: impl Iterator<Item = Hop<'a>>,
    trusted: &TrustedProxies,
) -> (Option<IpAddr>, Option<bool>) {
    let mut last: Option<(IpAddr, Option<&str>)> = None;
    for hop in hops.take(MAX_HOPS) {
        let Some(ip) = hop.node.and_then(parse_node) else {
            break;
        };
        last = Some((ip, hop.proto));
        if !trusted.contains(ip) {
            break;
        }
    }
    match last {
        Some((ip, proto)) => (Some(ip), proto.map(is_https)),
        None => (None, None),
    }
}

/// The comma-separated items of several header values, rightmost first.
fn list_hops<'a>(values: &'a [&'a str]) -> impl Iterator<Item = Hop<'a>> + 'a {
    values
        .iter()
        .rev()
        .flat_map(|value| value.rsplit(','))
        .map(Hop::plain)
}

/// The elements of several `Forwarded` values, rightmost first, each as
/// its `for=` node and `proto=`.
fn forwarded_hops<'a>(values: &'a [&'a str]) -> impl Iterator<Item = Hop<'a>> + 'a {
    list_hops(values).map(|element| {
        let mut hop = Hop {
            node: None,
            proto: None,
        };
        for pair in element.node.unwrap_or_default().split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if key.eq_ignore_ascii_case("for") {
                hop.node = Some(value);
            } else if key.eq_ignore_ascii_case("proto") {
                hop.proto = Some(value);
            }
        }
        hop
    })
}

/// `https` if the first value of a proto list says so.
fn leftmost_proto(list: &str) -> Option<bool> {
    let first = list.split(',').next()?.trim();
    (!first.is_empty()).then(|| is_https(first))
}

fn is_https(proto: &str) -> bool {
    unquote(proto.trim()).eq_ignore_ascii_case("https")
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// Parses one node as proxies write it: `192.0.2.1`, `192.0.2.1:8080`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`, `fe80::1%eth0`
/// (the zone is dropped), any of them in double quotes. `unknown`,
/// obfuscated `_names` and anything else give `None`.
pub fn parse_node(node: &str) -> Option<IpAddr> {
    let node = unquote(node.trim()).trim();
    if node.len() > MAX_HOP_LEN {
        return None;
    }
    let ip = if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(parse_v6(inside)?)
    } else if let Ok(ip) = node.parse::<Ipv4Addr>() {
        IpAddr::V4(ip)
    } else if let Some((host, port)) = node.split_once(':').filter(|(_, p)| !p.contains(':')) {
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    } else {
        IpAddr::V6(parse_v6(node)?)
    };
    Some(ip.to_canonical())
}

/// An IPv6 address with an optional `%zone`, which is dropped.
fn parse_v6(s: &str) -> Option<Ipv6Addr> {
    let addr = s.split_once('%').map_or(s, |(addr, _zone)| addr);
    addr.parse().ok()
}

/// A port: digits, or an obfuscated port (`_` and letters, digits, `.`,
/// `_`, `-`) as RFC 7239 allows.
fn is_port(port: &str) -> bool {
    if let Some(obfuscated) = port.strip_prefix('_') {
        return !obfuscated.is_empty()
            && obfuscated
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    }
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}
