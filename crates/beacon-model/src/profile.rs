//! What the server learns about the visitor behind an event.

/// Who is behind a session, as enrichment decided it when the session's
/// first event arrived: browser, system, device, place, a daily visitor id
/// and whether it is a bot. Every field is optional: a store without
/// enrichment (or a user agent nobody can parse) leaves them empty.
///
/// Shared (`Arc`) by the events it was computed for: enrichment is paid once
/// per distinct user agent and session, not per event. Holds nothing that
/// identifies a person: the visitor id is a keyed hash under a salt that
/// changes every UTC day (see `beacon-enrich`), and no address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct VisitorProfile {
    /// Daily visitor id: a negative number (a positive one is a session
    /// id, which stands in for the visitor of a session stored without
    /// one).
    pub visitor_id: Option<i64>,
    /// Browser family, e.g. `Chrome`.
    pub browser: Option<String>,
    /// Browser major version, e.g. `131`.
    pub browser_version: Option<String>,
    /// Operating system family, e.g. `Mac OS X`.
    pub os: Option<String>,
    /// Operating system major version.
    pub os_version: Option<String>,
    /// `desktop`, `mobile`, `tablet` or `other`.
    pub device: Option<String>,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: Option<String>,
    /// Region (state, province) name.
    pub region: Option<String>,
    /// City name.
    pub city: Option<String>,
    /// Traffic from a crawler, monitor, previewer, HTTP library or headless
    /// browser (stored only with `--keep-bots`; excluded from every figure).
    pub bot: bool,
}
