//! ISO 3166-1 alpha-2 country codes, from English names and from CDN headers.
//!
//! The table is `vendor/i18n-iso-countries/en.json` (npm
//! `i18n-iso-countries`, MIT): every code with its English name and common
//! aliases, embedded at build time and indexed once at first use. A few
//! names that IP-location services print and the table lacks are added in
//! [`EXTRA_NAMES`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;

/// The vendored table (`{"locale": "en", "countries": {"DE": "Germany",
/// "US": ["United States of America", "United States", ...], ...}}`).
const TABLE_JSON: &str = include_str!("../../../vendor/i18n-iso-countries/en.json");

/// English names for codes that the vendored table does not spell this way,
/// as IP-location services (the seed pixel's among them) and people write
/// them. Each maps to exactly one code.
const EXTRA_NAMES: &[(&str, &str)] = &[
    ("Syria", "SY"),
    ("Laos", "LA"),
    ("Moldova", "MD"),
    ("Micronesia", "FM"),
    ("Vatican", "VA"),
    ("Vatican City", "VA"),
    ("Brunei", "BN"),
    ("Cabo Verde", "CV"),
    ("Macau", "MO"),
    ("Macao", "MO"),
    ("DR Congo", "CD"),
    ("Congo Republic", "CG"),
    ("Swaziland", "SZ"),
    ("Burma", "MM"),
    ("Hong Kong SAR", "HK"),
    ("St Kitts and Nevis", "KN"),
    ("St Lucia", "LC"),
    ("St Vincent and Grenadines", "VC"),
    ("U.S. Virgin Islands", "VI"),
    ("British Virgin Islands", "VG"),
    ("Falkland Islands", "FK"),
    ("Reunion", "RE"),
    ("Curacao", "CW"),
];

/// An ISO 3166-1 alpha-2 country code, upper case, known to the embedded
/// table (which includes `XK`, Kosovo, as CDNs and GeoIP files use it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// The code, e.g. `"DE"`.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII upper-case letters (checked on creation).
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The code if `code` is two ASCII letters (either case) naming a
    /// country of the table; names and placeholders (`XX`, `T1`) give `None`.
    pub fn parse(code: &str) -> Option<Self> {
        let &[a, b] = code.as_bytes() else {
            return None;
        };
        code_in([a.to_ascii_uppercase(), b.to_ascii_uppercase()], |c| {
            table().codes.contains_key(c)
        })
    }

    /// The country's English name, e.g. `"Germany"`, `"United States of
    /// America"` (the table's first name for the code).
    pub fn name(&self) -> &'static str {
        table().codes.get(self).copied().unwrap_or_default()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

/// The code for a country name or code, as the pixel or a GeoIP file may
/// give it: `"Germany"`, `"germany"`, `"DE"`, `"de"`, `"United States"`,
/// `"USA"`, `"United Kingdom"`, `"UK"`, `"Russia"`, `"South Korea"`,
/// `"Czechia"`, `"Côte d'Ivoire"` / `"Cote d'Ivoire"`.
///
/// Matching ignores case, surrounding and repeated white space, and the
/// accents of Latin letters. A name that stands for two countries
/// (`"Congo"`) and anything unknown (`"Unknown"`, `""`) give `None`.
pub fn country_code(name_or_code: &str) -> Option<CountryCode> {
    let trimmed = name_or_code.trim();
    if trimmed.len() > 80 {
        return None;
    }
    if let Some(code) = CountryCode::parse(trimmed) {
        return Some(code);
    }
    let by_name = &table().by_name;
    match by_name.get(&normalize(trimmed)) {
        Some(known) => *known,
        None => by_name
            .get(&normalize(&fold_accents(trimmed)))
            .copied()
            .flatten(),
    }
}

/// Every name the matching of [`country_code`] knows, with its code: the
/// table's names and aliases and [`EXTRA_NAMES`], as written (matching is
/// case-insensitive; accent-free spellings match too but are not listed
/// twice). Names that stand for two countries are left out. Sorted by name.
pub fn country_names() -> impl Iterator<Item = (&'static str, CountryCode)> {
    table().names.iter().copied()
}

/// The country of a CDN's header (`CF-IPCountry`, `CloudFront-Viewer-Country`,
/// `X-Vercel-IP-Country`), the first that is a real code; Cloudflare's `XX`
/// (unknown) and `T1` (Tor) and anything else that is not a country give
/// `None`. Only for the headers of a trusted peer: a client can set them.
pub fn cdn_country(
    cf_ipcountry: Option<&str>,
    cloudfront: Option<&str>,
    vercel: Option<&str>,
) -> Option<CountryCode> {
    [cf_ipcountry, cloudfront, vercel]
        .into_iter()
        .flatten()
        .find_map(|value| CountryCode::parse(value.trim()))
}

struct Table {
    /// Code → English name.
    codes: HashMap<CountryCode, &'static str>,
    /// Normalized name → code, `None` for a name shared by two codes.
    by_name: HashMap<String, Option<CountryCode>>,
    /// The unambiguous names as written, sorted.
    names: Vec<(&'static str, CountryCode)>,
}

#[derive(Deserialize)]
struct TableFile {
    #[serde(borrow)]
    countries: BTreeMap<&'static str, OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(&'static str),
    Many(Vec<&'static str>),
}

#[expect(
    clippy::expect_used,
    reason = "the table is embedded at build time and `country::tests` loads it: it cannot fail at run time"
)]
fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| build_table(TABLE_JSON).expect("embedded country table"))
}

fn build_table(json: &'static str) -> Result<Table, String> {
    let file: TableFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut codes = HashMap::new();
    let mut written: Vec<(&'static str, CountryCode)> = Vec::new();
    for (code, names) in file.countries {
        let code = code_in_str(code, |_| true).ok_or_else(|| format!("bad code {code:?}"))?;
        let names = match names {
            OneOrMany::One(name) => vec![name],
            OneOrMany::Many(names) => names,
        };
        let first = names.first().ok_or_else(|| format!("{code} has no name"))?;
        codes.insert(code, *first);
        written.extend(names.into_iter().map(|name| (name, code)));
    }
    for &(name, code) in EXTRA_NAMES {
        let known = |c: &CountryCode| codes.contains_key(c);
        let code = code_in_str(code, known)
            .ok_or_else(|| format!("extra name {name}: unknown code {code}"))?;
        written.push((name, code));
    }
    let mut by_name: HashMap<String, Option<CountryCode>> = HashMap::new();
    for &(name, code) in &written {
        for key in [normalize(name), normalize(&fold_accents(name))] {
            by_name
                .entry(key)
                .and_modify(|known| {
                    if *known != Some(code) {
                        *known = None;
                    }
                })
                .or_insert(Some(code));
        }
    }
    let mut names: Vec<_> = written
        .into_iter()
        .filter(|(name, _)| by_name.get(&normalize(name)).copied().flatten().is_some())
        .collect();
    names.sort_unstable();
    names.dedup();
    Ok(Table {
        codes,
        by_name,
        names,
    })
}

/// The code of two upper-case letters if `known` says it is a country.
fn code_in([a, b]: [u8; 2], known: impl Fn(&CountryCode) -> bool) -> Option<CountryCode> {
    let code = CountryCode([a, b]);
    (a.is_ascii_uppercase() && b.is_ascii_uppercase() && known(&code)).then_some(code)
}

fn code_in_str(code: &str, known: impl Fn(&CountryCode) -> bool) -> Option<CountryCode> {
    let &[a, b] = code.as_bytes() else {
        return None;
    };
    code_in([a, b], known)
}

/// Lower case, white space collapsed to one space, typographic apostrophe
/// as `'`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase).map(|c| {
            if c == '\u{2019}' {
                '\''
            } else {
                c
            }
        }));
    }
    out
}

/// The name with the accents of Latin letters removed (`Côte` → `Cote`,
/// `Åland` → `Aland`, `Türkiye` → `Turkiye`), so that either spelling
/// matches.
fn fold_accents(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'À'..='Å' => 'A',
            'à'..='å' => 'a',
            'Ç' => 'C',
            'ç' => 'c',
            'È'..='Ë' => 'E',
            'è'..='ë' => 'e',
            'Ì'..='Ï' => 'I',
            'ì'..='ï' => 'i',
            'Ñ' => 'N',
            'ñ' => 'n',
            'Ò'..='Ö' | 'Ø' => 'O',
            'ò'..='ö' | 'ø' => 'o',
            'Ù'..='Ü' => 'U',
            'ù'..='ü' => 'u',
            'Ý' => 'Y',
            'ý' | 'ÿ' => 'y',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_embedded_table_loads_with_every_country() {
        let table = build_table(TABLE_JSON).unwrap();
        assert!(table.codes.len() >= 249, "{} codes", table.codes.len());
        assert!(table.names.len() > table.codes.len());
    }

    #[test]
    fn every_extra_name_is_unambiguous() {
        for (name, code) in EXTRA_NAMES {
            assert_eq!(
                country_code(name).map(|c| c.to_string()).as_deref(),
                Some(*code),
                "{name}"
            );
        }
    }

    #[test]
    fn normalize_ignores_case_and_white_space() {
        assert_eq!(normalize("  United\t  States "), "united states");
        assert_eq!(normalize("Côte d\u{2019}Ivoire"), "côte d'ivoire");
    }
}
