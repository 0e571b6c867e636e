//! GeoIP lookups on small `.mmdb` files written here, with the writer crate,
//! in each supported layout; reloads; broken files.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use beacon_enrich::{CountryCode, EnrichError, GeoIp, Location};
use ipnet::IpNet;
use mmdb_writer::{IpVersion, Writer};
use serde_json::{json, Value};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn code(s: &str) -> CountryCode {
    CountryCode::parse(s).unwrap()
}

/// An `.mmdb` of type `kind` holding `records` (network, record).
fn mmdb(kind: &str, version: IpVersion, records: &[(&str, Value)]) -> Vec<u8> {
    let mut writer = Writer::builder(kind).ip_version(version).build();
    for (net, record) in records {
        writer
            .insert(net.parse::<IpNet>().unwrap(), record)
            .unwrap();
    }
    writer.to_bytes().unwrap()
}

/// A GeoIP2 / GeoLite2 City record, with the fields Beacon skips too.
fn city_record(iso: &str, region: &str, city: &str) -> Value {
    json!({
        "city": {"geoname_id": 2643743u32, "names": {"de": format!("{city} (de)"), "en": city}},
        "continent": {"code": "EU", "names": {"en": "Europe"}},
        "country": {"iso_code": iso, "names": {"en": "x", "fr": "y"}},
        "location": {"latitude": 51.5, "longitude": -0.1, "time_zone": "Europe/London"},
        "postal": {"code": "W1"},
        "registered_country": {"iso_code": "US"},
        "subdivisions": [
            {"iso_code": "ENG", "names": {"en": region}},
            {"iso_code": "WSM", "names": {"en": "second level"}}
        ]
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Writes `bytes` to a new file and renames it over `path`, as
/// `geoipupdate` does.
fn replace(path: &Path, bytes: &[u8]) {
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, bytes).unwrap();
    std::fs::rename(&fresh, path).unwrap();
}

fn city_db() -> Vec<u8> {
    mmdb(
        "GeoLite2-City",
        IpVersion::V6,
        &[
            ("81.2.69.0/24", city_record("GB", "England", "London")),
            (
                "2001:db8:1::/48",
                city_record("DE", "Land Berlin", "Berlin"),
            ),
            (
                "198.51.100.0/24",
                json!({"continent": {"code": "EU"}, "country": {"iso_code": "EU"}}),
            ),
        ],
    )
}

#[test]
fn a_city_database_gives_country_region_and_city_for_ipv4_and_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let geo = GeoIp::open(&write(dir.path(), "city.mmdb", &city_db())).unwrap();
    let london = Location {
        country: Some(code("GB")),
        region: Some("England".into()),
        city: Some("London".into()),
    };
    assert_eq!(geo.lookup(ip("81.2.69.160")), Some(london.clone()));
    assert_eq!(
        geo.lookup(ip("::ffff:81.2.69.160")),
        Some(london),
        "IPv4-mapped"
    );
    let berlin = geo.lookup(ip("2001:db8:1::7")).unwrap();
    assert_eq!(
        (berlin.country, berlin.city.as_deref()),
        (Some(code("DE")), Some("Berlin"))
    );
    assert_eq!(berlin.region.as_deref(), Some("Land Berlin"));
    assert_eq!(geo.lookup(ip("203.0.113.1")), None, "no record");
    assert_eq!(
        geo.lookup(ip("198.51.100.1")),
        None,
        "EU is not a country and nothing else is known"
    );
    assert_eq!(geo.database_type(), "GeoLite2-City");
    assert_eq!(geo.path(), dir.path().join("city.mmdb"));
}

#[test]
fn a_country_database_gives_the_country_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = mmdb(
        "DBIP-Country-Lite",
        IpVersion::V6,
        &[
            (
                "192.0.2.0/24",
                json!({"continent": {"code": "EU"}, "country": {"iso_code": "NL", "names": {"en": "Netherlands"}}}),
            ),
            ("2001:db8:2::/48", json!({"country": {"iso_code": "jp"}})),
        ],
    );
    let geo = GeoIp::open(&write(dir.path(), "country.mmdb", &db)).unwrap();
    let only = |c: &str| {
        Some(Location {
            country: Some(code(c)),
            region: None,
            city: None,
        })
    };
    assert_eq!(geo.lookup(ip("192.0.2.1")), only("NL"));
    assert_eq!(geo.lookup(ip("2001:db8:2::1")), only("JP"));
}

#[test]
fn flat_layouts_give_the_country_from_a_code_or_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = mmdb(
        "ip-location-db country",
        IpVersion::V6,
        &[
            ("192.0.2.0/25", json!({"country_code": "FR"})),
            ("192.0.2.128/25", json!({"country": "Japan"})),
            ("2001:db8:3::/48", json!({"country": "br"})),
            ("2001:db8:4::/48", json!({"country_code": "XX"})),
            (
                "2001:db8:5::/48",
                json!({"country_code": "CH", "state1": "Zurich", "city": "Zürich"}),
            ),
        ],
    );
    let geo = GeoIp::open(&write(dir.path(), "flat.mmdb", &db)).unwrap();
    let country = |s: &str| geo.lookup(ip(s)).and_then(|l| l.country);
    assert_eq!(country("192.0.2.1"), Some(code("FR")));
    assert_eq!(country("192.0.2.200"), Some(code("JP")));
    assert_eq!(country("2001:db8:3::1"), Some(code("BR")));
    assert_eq!(geo.lookup(ip("2001:db8:4::1")), None);
    let zurich = geo.lookup(ip("2001:db8:5::1")).unwrap();
    assert_eq!(
        (zurich.region.as_deref(), zurich.city.as_deref()),
        (Some("Zurich"), Some("Zürich"))
    );
}

#[test]
fn fields_of_unexpected_types_are_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let db = mmdb(
        "odd layout",
        IpVersion::V6,
        &[
            (
                "192.0.2.0/24",
                json!({
                    "country": 276u32,
                    "country_code": "AT",
                    "city": ["Wien", "Vienna"],
                    "subdivisions": "Wien",
                    "region": {"name": "Wien"},
                    "state1": "Vienna",
                    "names": {"en": true}
                }),
            ),
            (
                "2001:db8:6::/48",
                json!({"country": {"iso_code": 7u32}, "city": {"names": "Oslo"}, "subdivisions": [{"names": {"en": 1u32}}, {"names": {"en": "x"}}]}),
            ),
        ],
    );
    let geo = GeoIp::open(&write(dir.path(), "odd.mmdb", &db)).unwrap();
    let vienna = geo.lookup(ip("192.0.2.1")).unwrap();
    assert_eq!(
        vienna,
        Location {
            country: Some(code("AT")),
            region: Some("Vienna".into()),
            city: None
        }
    );
    assert_eq!(geo.lookup(ip("2001:db8:6::1")), None);
}

#[test]
fn an_ipv4_only_database_answers_nothing_for_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let db = mmdb(
        "v4",
        IpVersion::V4,
        &[("192.0.2.0/24", json!({"country_code": "SE"}))],
    );
    let geo = GeoIp::open(&write(dir.path(), "v4.mmdb", &db)).unwrap();
    assert_eq!(
        geo.lookup(ip("192.0.2.9")).and_then(|l| l.country),
        Some(code("SE"))
    );
    assert_eq!(geo.lookup(ip("2001:db8::1")), None);
}

#[test]
fn a_missing_truncated_or_corrupt_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = city_db();
    let mut flipped = good.clone();
    for byte in &mut flipped[..good.len() / 2] {
        *byte = !*byte;
    }
    // The data section ends where the metadata marker starts: spoil the
    // records just before it, leaving the tree and the metadata intact.
    let marker = b"\xab\xcd\xefMaxMind.com";
    let data_end = good
        .windows(marker.len())
        .rposition(|w| w == marker)
        .unwrap();
    let mut bad_records = good.clone();
    for byte in &mut bad_records[data_end - 64..data_end] {
        *byte = 0xff;
    }
    let cases: [(&str, Option<&[u8]>); 6] = [
        ("missing.mmdb", None),
        ("empty.mmdb", Some(b"")),
        ("truncated.mmdb", Some(&good[..good.len() / 2])),
        ("garbage.mmdb", Some(&[0x42; 4096])),
        ("corrupt.mmdb", Some(&flipped)),
        ("bad-records.mmdb", Some(&bad_records)),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        if let Some(bytes) = bytes {
            std::fs::write(&path, bytes).unwrap();
        }
        let error = GeoIp::open(&path).unwrap_err();
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{name}: {error}"
        );
        let io = matches!(error, EnrichError::GeoIpIo { .. });
        assert_eq!(io, bytes.is_none(), "{name}: {error:?}");
    }
}

#[test]
fn a_file_replaced_by_rename_is_reloaded_and_an_unchanged_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let first = mmdb(
        "t",
        IpVersion::V6,
        &[("192.0.2.0/24", json!({"country_code": "DE"}))],
    );
    let path = write(dir.path(), "geo.mmdb", &first);
    let geo = GeoIp::open(&path).unwrap();
    assert!(!geo.reload_if_changed().unwrap());
    // The same size and, on a coarse clock, the same time: the inode tells.
    let second = mmdb(
        "t",
        IpVersion::V6,
        &[("192.0.2.0/24", json!({"country_code": "FR"}))],
    );
    replace(&path, &second);
    assert!(geo.reload_if_changed().unwrap());
    assert_eq!(
        geo.lookup(ip("192.0.2.1")).and_then(|l| l.country),
        Some(code("FR"))
    );
    assert!(!geo.reload_if_changed().unwrap());
}

#[test]
fn a_broken_replacement_keeps_the_previous_database_and_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let good = mmdb(
        "t",
        IpVersion::V6,
        &[("192.0.2.0/24", json!({"country_code": "DE"}))],
    );
    let path = write(dir.path(), "geo.mmdb", &good);
    let geo = GeoIp::open(&path).unwrap();

    replace(&path, &good[..good.len() - 20]);
    let error = geo.reload_if_changed().unwrap_err();
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    assert_eq!(
        geo.lookup(ip("192.0.2.1")).and_then(|l| l.country),
        Some(code("DE"))
    );
    assert!(
        !geo.reload_if_changed().unwrap(),
        "the same broken file is reported once"
    );

    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(geo.reload_if_changed(), Err(EnrichError::GeoIpIo { .. })),
        "a vanished file"
    );
    assert_eq!(
        geo.lookup(ip("192.0.2.1")).and_then(|l| l.country),
        Some(code("DE"))
    );

    let fixed = mmdb(
        "t",
        IpVersion::V6,
        &[("192.0.2.0/24", json!({"country_code": "IT"}))],
    );
    replace(&path, &fixed);
    assert!(geo.reload_if_changed().unwrap());
    assert_eq!(
        geo.lookup(ip("192.0.2.1")).and_then(|l| l.country),
        Some(code("IT"))
    );
}

#[test]
fn lookups_run_on_while_the_file_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let db = |c: &str| {
        mmdb(
            "t",
            IpVersion::V6,
            &[("192.0.2.0/24", json!({"country_code": c}))],
        )
    };
    let path = write(dir.path(), "geo.mmdb", &db("DE"));
    let geo = Arc::new(GeoIp::open(&path).unwrap());
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let geo = Arc::clone(&geo);
            std::thread::spawn(move || {
                (0..5_000)
                    .map(|_| geo.lookup(ip("192.0.2.1")).and_then(|l| l.country))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for i in 0..20 {
        replace(&path, &db(if i % 2 == 0 { "FR" } else { "DE" }));
        assert!(geo.reload_if_changed().unwrap(), "reload {i}");
    }
    for reader in readers {
        for country in reader.join().unwrap() {
            assert!(
                country == Some(code("DE")) || country == Some(code("FR")),
                "{country:?}"
            );
        }
    }
}
