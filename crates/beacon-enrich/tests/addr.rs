//! The client address behind proxies, hostile headers included.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use beacon_enrich::{
    client_addr, parse_node, ClientAddr, ForwardingHeaders, TrustedProxies, MAX_HOPS,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn trusted(list: &str) -> TrustedProxies {
    list.parse().unwrap()
}

fn xff(values: &[&'static str]) -> ForwardingHeaders<'static> {
    ForwardingHeaders {
        x_forwarded_for: values.to_vec(),
        ..Default::default()
    }
}

fn forwarded(values: &[&'static str]) -> ForwardingHeaders<'static> {
    ForwardingHeaders {
        forwarded: values.to_vec(),
        ..Default::default()
    }
}

const PROXY: &str = "10.0.0.1";

fn behind_proxy(headers: &ForwardingHeaders<'_>) -> ClientAddr {
    client_addr(
        ip(PROXY),
        false,
        headers,
        &trusted("10.0.0.0/8, 2001:db8:ffff::/48"),
    )
}

#[test]
fn trusted_proxies_parse_cidrs_and_bare_addresses_of_both_families() {
    let list = trusted(" 10.0.0.0/8,2001:db8::/32 , 192.0.2.7, ::1 ,");
    for inside in [
        "10.1.2.3",
        "2001:db8::42",
        "192.0.2.7",
        "::1",
        "::ffff:10.9.9.9",
    ] {
        assert!(list.contains(ip(inside)), "{inside}");
    }
    for outside in ["11.0.0.1", "2001:db9::1", "192.0.2.8", "::2"] {
        assert!(!list.contains(ip(outside)), "{outside}");
    }
    assert_eq!(
        list.to_string(),
        "10.0.0.0/8, 2001:db8::/32, 192.0.2.7/32, ::1/128"
    );
}

#[test]
fn an_empty_trusted_list_trusts_nobody() {
    for list in ["", " ", ",", " , "] {
        let parsed = trusted(list);
        assert!(parsed.is_empty(), "{list:?}");
        assert!(!parsed.contains(ip("127.0.0.1")));
    }
    assert!(TrustedProxies::default().is_empty());
}

#[test]
fn a_bad_trusted_proxy_is_refused_with_its_name() {
    for bad in [
        "10.0.0.0/33",
        "proxy.example",
        "10.0.0.0/8/8",
        "300.1.1.1",
        "2001:db8::/129",
    ] {
        let error = format!("10.0.0.0/8, {bad}")
            .parse::<TrustedProxies>()
            .unwrap_err();
        assert!(
            error.to_string().contains(&format!("{bad:?}")),
            "{bad}: {error}"
        );
    }
}

#[test]
fn an_ipv4_mapped_trusted_network_is_its_ipv4_network() {
    let list = trusted("::ffff:10.0.0.0/104");
    assert!(list.contains(ip("10.200.0.1")));
    assert!(!list.contains(ip("11.0.0.1")));
}

#[test]
fn an_untrusted_peer_is_the_client_and_its_headers_count_as_spoofed() {
    let headers = ForwardingHeaders {
        x_forwarded_for: vec!["203.0.113.9"],
        x_forwarded_proto: Some("https"),
        ..Default::default()
    };
    let addr = client_addr(ip("198.51.100.7"), false, &headers, &trusted("10.0.0.0/8"));
    assert_eq!(
        addr,
        ClientAddr {
            ip: ip("198.51.100.7"),
            https: false,
            via_proxy: false,
            spoofed: true
        }
    );
    let addr = client_addr(
        ip("198.51.100.7"),
        true,
        &ForwardingHeaders::default(),
        &TrustedProxies::default(),
    );
    assert!(!addr.spoofed && addr.https);
    for headers in [
        forwarded(&["for=1.2.3.4"]),
        ForwardingHeaders {
            x_real_ip: Some("1.2.3.4"),
            ..Default::default()
        },
    ] {
        assert!(
            client_addr(
                ip("198.51.100.7"),
                false,
                &headers,
                &TrustedProxies::default()
            )
            .spoofed
        );
    }
}

#[test]
fn the_rightmost_untrusted_hop_is_the_client() {
    let addr = behind_proxy(&xff(&["198.51.100.1, 203.0.113.9, 10.0.0.3, 10.0.0.2"]));
    assert_eq!(addr.ip, ip("203.0.113.9"));
    assert!(addr.via_proxy && !addr.spoofed);
}

#[test]
fn repeated_headers_read_as_one_list_in_order() {
    let addr = behind_proxy(&xff(&["198.51.100.1, 203.0.113.9", "10.0.0.3", "10.0.0.2"]));
    assert_eq!(addr.ip, ip("203.0.113.9"));
}

#[test]
fn when_every_hop_is_trusted_the_leftmost_is_the_client() {
    assert_eq!(
        behind_proxy(&xff(&["10.0.0.5, 10.0.0.4"])).ip,
        ip("10.0.0.5")
    );
}

#[test]
fn a_trusted_peer_without_headers_is_the_client() {
    let addr = behind_proxy(&ForwardingHeaders::default());
    assert_eq!(addr.ip, ip(PROXY));
    assert!(!addr.via_proxy && !addr.spoofed);
}

#[test]
fn forwarded_is_preferred_to_x_forwarded_for_and_x_real_ip_is_the_last_resort() {
    let both = ForwardingHeaders {
        forwarded: vec!["for=203.0.113.1"],
        x_forwarded_for: vec!["203.0.113.2"],
        x_real_ip: Some("203.0.113.3"),
        ..Default::default()
    };
    assert_eq!(behind_proxy(&both).ip, ip("203.0.113.1"));
    let no_forwarded = ForwardingHeaders {
        forwarded: vec![],
        ..both.clone()
    };
    assert_eq!(behind_proxy(&no_forwarded).ip, ip("203.0.113.2"));
    let real_only = ForwardingHeaders {
        x_real_ip: Some(" 203.0.113.3 "),
        ..Default::default()
    };
    assert_eq!(behind_proxy(&real_only).ip, ip("203.0.113.3"));
}

#[test]
fn forwarded_values_in_every_written_form_are_read() {
    let cases = [
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        (r#"For="[2001:db8:cafe::17]:4711""#, "2001:db8:cafe::17"),
        (r#"for="192.0.2.43:47011", for=10.0.0.9"#, "192.0.2.43"),
        (
            "proto=https; for=198.51.100.17 ;by=10.0.0.1",
            "198.51.100.17",
        ),
        (r#"for="[::ffff:198.51.100.4]""#, "198.51.100.4"),
    ];
    for (value, expected) in cases {
        assert_eq!(
            behind_proxy(&forwarded(&[value])).ip,
            ip(expected),
            "{value}"
        );
    }
}

#[test]
fn an_unknown_or_obfuscated_hop_ends_the_walk_at_the_last_trusted_hop() {
    let cases: [(&[&'static str], &str); 5] = [
        (&["for=unknown"], PROXY),
        (&["for=203.0.113.5, for=_hidden, for=10.0.0.7"], "10.0.0.7"),
        (&["for=203.0.113.5, by=10.0.0.7"], PROXY),
        (
            &[r#"for="_gazonk", for=10.0.0.6, for=10.0.0.5"#],
            "10.0.0.6",
        ),
        (&["for=203.0.113.5;proto=https, for=unknown"], PROXY),
    ];
    for (values, expected) in cases {
        assert_eq!(
            behind_proxy(&forwarded(values)).ip,
            ip(expected),
            "{values:?}"
        );
    }
}

#[test]
fn garbage_in_x_forwarded_for_never_yields_an_address_left_of_it() {
    let cases: [(&'static str, &str); 8] = [
        ("203.0.113.5, garbage", PROXY),
        ("203.0.113.5, not an ip, 10.0.0.4", "10.0.0.4"),
        ("203.0.113.5,,10.0.0.4", "10.0.0.4"),
        ("203.0.113.5, 10.0.0.4,", PROXY),
        ("<script>alert(1)</script>", PROXY),
        ("203.0.113.5, 999.1.1.1", PROXY),
        ("203.0.113.5, 1.2.3.4:notaport", PROXY),
        ("\u{0}\u{7f}é, 203.0.113.6", "203.0.113.6"),
    ];
    for (value, expected) in cases {
        let addr = behind_proxy(&xff(&[value]));
        assert_eq!(addr.ip, ip(expected), "{value:?}");
        assert_eq!(addr.via_proxy, expected != PROXY, "{value:?}");
    }
}

#[test]
fn brackets_ports_zones_and_mapped_addresses_are_understood() {
    let cases = [
        ("[2001:db8::1]:4711", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25eth0]:80", "fe80::1"),
        ("203.0.113.7:8080", "203.0.113.7"),
        ("::ffff:203.0.113.8", "203.0.113.8"),
        ("[::ffff:203.0.113.8]:1", "203.0.113.8"),
        ("\"203.0.113.9\"", "203.0.113.9"),
    ];
    for (node, expected) in cases {
        assert_eq!(parse_node(node), Some(ip(expected)), "{node}");
        assert_eq!(
            behind_proxy(&xff(&[node])).ip,
            ip(expected),
            "{node} behind a proxy"
        );
    }
    for bad in [
        "[2001:db8::1",
        "[2001:db8::1]x",
        "[203.0.113.1]",
        "1.2.3.4:",
        "1.2.3.4:123456",
        "unknown",
        "_hidden",
        "",
    ] {
        assert_eq!(parse_node(bad), None, "{bad:?}");
    }
}

#[test]
fn a_mapped_peer_is_reported_as_ipv4() {
    let addr = client_addr(
        ip("::ffff:198.51.100.7"),
        false,
        &ForwardingHeaders::default(),
        &TrustedProxies::default(),
    );
    assert_eq!(addr.ip, ip("198.51.100.7"));
    let behind = client_addr(
        ip("::ffff:10.0.0.1"),
        false,
        &xff(&["203.0.113.1"]),
        &trusted("10.0.0.0/8"),
    );
    assert_eq!(
        behind.ip,
        ip("203.0.113.1"),
        "a mapped peer inside a trusted IPv4 network is trusted"
    );
}

#[test]
fn only_the_last_64_hops_are_examined() {
    // 500 hops: a client address on the far left, then 499 trusted hops.
    let mut hops = vec!["203.0.113.1".to_owned()];
    hops.extend((0..499).map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1)));
    let value: &'static str = Box::leak(hops.join(", ").into_boxed_str());
    let addr = behind_proxy(&xff(&[value]));
    // The 64th hop from the right is the leftmost examined, and trusted.
    let expected = &hops[hops.len() - MAX_HOPS];
    assert_eq!(addr.ip, ip(expected));

    // 500 untrusted hops: the rightmost is the client.
    let many: &'static str = Box::leak(vec!["203.0.113.2"; 500].join(",").into_boxed_str());
    assert_eq!(behind_proxy(&xff(&[many])).ip, ip("203.0.113.2"));
}

#[test]
fn a_huge_header_is_read_from_the_right_only() {
    let mut value = "x".repeat(1 << 20);
    value.push_str(", 203.0.113.4");
    let value: &'static str = Box::leak(value.into_boxed_str());
    assert_eq!(behind_proxy(&xff(&[value])).ip, ip("203.0.113.4"));
    let garbage: &'static str = Box::leak("9".repeat(1 << 20).into_boxed_str());
    assert_eq!(behind_proxy(&xff(&[garbage])).ip, ip(PROXY));
}

#[test]
fn https_comes_from_a_trusted_proxy_only() {
    let with_proto = |proto: &'static str| ForwardingHeaders {
        x_forwarded_for: vec!["203.0.113.1"],
        x_forwarded_proto: Some(proto),
        ..Default::default()
    };
    assert!(behind_proxy(&with_proto("https")).https);
    assert!(behind_proxy(&with_proto("HTTPS")).https);
    assert!(
        behind_proxy(&with_proto("https, http")).https,
        "the leftmost value counts"
    );
    assert!(!behind_proxy(&with_proto("http")).https);
    let untrusted = client_addr(
        ip("198.51.100.1"),
        false,
        &with_proto("https"),
        &trusted("10.0.0.0/8"),
    );
    assert!(!untrusted.https);
    let tls = client_addr(
        ip(PROXY),
        true,
        &xff(&["203.0.113.1"]),
        &trusted("10.0.0.0/8"),
    );
    assert!(tls.https, "no proto header: the peer's own TLS");
}

#[test]
fn forwarded_proto_of_the_element_that_gave_the_address_wins() {
    let headers = ForwardingHeaders {
        forwarded: vec!["for=203.0.113.1;proto=https, for=10.0.0.2;proto=http"],
        x_forwarded_proto: Some("http"),
        ..Default::default()
    };
    assert!(behind_proxy(&headers).https);
    let quoted = forwarded(&[r#"for=203.0.113.1;proto="HTTPS""#]);
    assert!(behind_proxy(&quoted).https);
    let plain = forwarded(&["for=203.0.113.1;proto=http"]);
    assert!(!behind_proxy(&plain).https);
}
