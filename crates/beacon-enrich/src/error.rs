use std::path::PathBuf;

/// Why an enrichment component could not be built or refreshed.
///
/// Lookups themselves never fail: a user agent always gets a verdict, an
/// address without an answer in the GeoIP file gets `None`. Errors come
/// from configuration (a bad trusted-proxy list), from the GeoIP file
/// (missing, truncated, corrupt) and, in principle, from the embedded
/// pattern data and the operating system's random source.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// An item of a trusted-proxy list is neither an IP address nor a CIDR.
    #[error("invalid trusted proxy {item:?}: expected an IP address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32")]
    InvalidProxy {
        /// The item as written (trimmed).
        item: String,
    },
    /// The embedded user-agent or bot patterns could not be loaded or
    /// compiled (a bad vendored file; the unit tests load them).
    #[error("embedded {source_name} patterns: {reason}")]
    Patterns {
        /// Which data: `uap-core regexes.yaml` or `isbot`.
        source_name: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The GeoIP file could not be read (missing, unreadable).
    #[error("GeoIP database {}: {source}", path.display())]
    GeoIpIo {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The GeoIP file is not a valid MaxMind DB (truncated, corrupt, not
    /// an `.mmdb` at all).
    #[error("GeoIP database {} is not a valid MaxMind DB file: {source}", path.display())]
    GeoIpInvalid {
        /// The file.
        path: PathBuf,
        /// What the reader found wrong.
        source: maxminddb::MaxMindDbError,
    },
    /// The operating system's random source failed (making a salt).
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
}
