//! Country names and codes, and CDN country headers.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use beacon_enrich::{cdn_country, country_code, country_names, CountryCode};

fn code(name: &str) -> Option<String> {
    country_code(name).map(|c| c.as_str().to_owned())
}

#[test]
fn names_aliases_and_codes_map_to_their_code() {
    let cases = [
        ("Germany", "DE"),
        ("germany", "DE"),
        ("  GERMANY ", "DE"),
        ("DE", "DE"),
        ("de", "DE"),
        ("United States", "US"),
        ("United States of America", "US"),
        ("USA", "US"),
        ("US", "US"),
        ("United Kingdom", "GB"),
        ("UK", "GB"),
        ("Great Britain", "GB"),
        ("Russia", "RU"),
        ("Russian Federation", "RU"),
        ("South Korea", "KR"),
        ("North Korea", "KP"),
        ("Czechia", "CZ"),
        ("Czech Republic", "CZ"),
        ("Côte d'Ivoire", "CI"),
        ("Cote d\u{2019}Ivoire", "CI"),
        ("Ivory Coast", "CI"),
        ("Türkiye", "TR"),
        ("Turkiye", "TR"),
        ("Turkey", "TR"),
        ("The Netherlands", "NL"),
        ("Vietnam", "VN"),
        ("Iran", "IR"),
        ("Syria", "SY"),
        ("Hong Kong", "HK"),
        ("Taiwan", "TW"),
        ("Åland Islands", "AX"),
        ("Aland Islands", "AX"),
        ("Kosovo", "XK"),
        ("Réunion", "RE"),
        ("Reunion", "RE"),
        ("Curaçao", "CW"),
    ];
    for (name, expected) in cases {
        assert_eq!(code(name).as_deref(), Some(expected), "{name:?}");
    }
}

#[test]
fn unknown_ambiguous_and_placeholder_names_have_no_code() {
    for name in [
        "Unknown",
        "",
        "  ",
        "Congo",
        "XX",
        "T1",
        "EU",
        "Atlantis",
        "D",
        "DEU",
        &"Germany".repeat(50),
    ] {
        assert_eq!(code(name), None, "{name:?}");
    }
}

#[test]
fn country_names_lists_every_unambiguous_name_once_with_its_code() {
    let names: Vec<_> = country_names().collect();
    let set: HashSet<_> = names.iter().map(|(n, _)| *n).collect();
    assert_eq!(set.len(), names.len(), "a name is listed twice");
    for (name, c) in &names {
        assert_eq!(country_code(name), Some(*c), "{name}");
    }
    for expected in [
        "Germany",
        "United States",
        "United Kingdom",
        "Russia",
        "South Korea",
        "Czechia",
    ] {
        assert!(set.contains(expected), "{expected} is missing");
    }
    assert!(!set.contains("Congo"), "ambiguous names are left out");
    let codes: HashSet<_> = names.iter().map(|(_, c)| *c).collect();
    assert!(
        codes.len() >= 249,
        "every country has a name: {}",
        codes.len()
    );
}

#[test]
fn a_country_code_is_upper_case_and_knows_its_name() {
    let de = CountryCode::parse("de").unwrap();
    assert_eq!(de.as_str(), "DE");
    assert_eq!(de.to_string(), "DE");
    assert_eq!(format!("{de:?}"), "CountryCode(DE)");
    assert_eq!(de.name(), "Germany");
    for bad in ["", "D", "DEU", "1A", "ZZ", "XX", "é1", "  "] {
        assert_eq!(CountryCode::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn cdn_headers_give_the_first_real_code() {
    let de = CountryCode::parse("DE");
    assert_eq!(cdn_country(Some("DE"), None, None), de);
    assert_eq!(cdn_country(Some(" de "), None, None), de);
    assert_eq!(cdn_country(None, Some("DE"), None), de);
    assert_eq!(cdn_country(None, None, Some("DE")), de);
    assert_eq!(
        cdn_country(Some("XX"), Some("DE"), None),
        de,
        "Cloudflare's unknown is skipped"
    );
    assert_eq!(
        cdn_country(Some("T1"), None, Some("de")),
        de,
        "Tor is skipped"
    );
    for bad in [
        "XX", "T1", "", "Germany", "D", "DEU", "12", "<script>", "ZZ",
    ] {
        assert_eq!(
            cdn_country(Some(bad), Some(bad), Some(bad)),
            None,
            "{bad:?}"
        );
    }
    assert_eq!(cdn_country(None, None, None), None);
}
