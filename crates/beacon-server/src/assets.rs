//! Beacon's own front-end files (`assets/`) and the vendored third-party
//! ones (`vendor/` at the workspace root), embedded at build time so the
//! binary serves its dashboard and tracker offline, with nothing fetched at
//! run time. Each file is gzipped once, on first use, and carries a strong
//! ETag derived from its content.

use std::io::Write;
use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// One embedded file, ready to serve.
pub struct Asset {
    /// The name it is looked up by (`dashboard/app.js`, `beacon.js`).
    pub name: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Cache-Control`.
    pub cache_control: &'static str,
    /// The file as written.
    pub raw: &'static [u8],
    /// Its gzip encoding, when compression succeeded.
    pub gzip: Option<Vec<u8>>,
    /// Its quoted strong ETag.
    pub etag: String,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
/// Revalidated on every use (a 304 costs one round trip): the dashboard's
/// file names carry no version, so a new binary must be picked up at once.
const REVALIDATE: &str = "no-cache";
/// The tracker is loaded by every page view of a site: an hour of caching
/// saves those requests, and a new version reaches visitors within the hour.
const TRACKER: &str = "public, max-age=3600";

macro_rules! embed {
    ($name:literal, $path:literal, $type:expr, $cache:expr) => {
        ($name, include_bytes!($path).as_slice(), $type, $cache)
    };
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    [
        embed!("beacon.js", "../assets/beacon.js", JS, TRACKER),
        embed!(
            "dashboard/index.html",
            "../assets/dashboard/index.html",
            HTML,
            REVALIDATE
        ),
        embed!(
            "dashboard/app.js",
            "../assets/dashboard/app.js",
            JS,
            REVALIDATE
        ),
        embed!(
            "dashboard/anomalies.js",
            "../assets/dashboard/anomalies.js",
            JS,
            REVALIDATE
        ),
        embed!(
            "dashboard/app.css",
            "../assets/dashboard/app.css",
            CSS,
            REVALIDATE
        ),
        embed!(
            "dashboard/uPlot.iife.min.js",
            "../../../vendor/uplot/uPlot.iife.min.js",
            JS,
            REVALIDATE
        ),
        embed!(
            "dashboard/uPlot.min.css",
            "../../../vendor/uplot/uPlot.min.css",
            CSS,
            REVALIDATE
        ),
    ]
    .into_iter()
    .map(|(name, raw, content_type, cache_control)| Asset {
        name,
        content_type,
        cache_control,
        raw,
        gzip: gzip(raw),
        etag: etag(raw),
    })
    .collect()
});

/// The embedded file of that name.
pub fn get(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

fn gzip(raw: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(raw).ok()?;
    encoder.finish().ok()
}

fn etag(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

impl Asset {
    /// The response to a GET of this file: 304 when the client's copy is
    /// current, else the file, gzipped when the client accepts it.
    pub fn respond(&self, req: &HttpRequest) -> HttpResponse {
        let fresh = not_modified(req, &self.etag);
        let mut response = if fresh {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        response
            .insert_header((header::ETAG, self.etag.as_str()))
            .insert_header((header::CACHE_CONTROL, self.cache_control))
            .insert_header((header::VARY, "Accept-Encoding"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
        if fresh {
            return response.finish();
        }
        response.insert_header((header::CONTENT_TYPE, self.content_type));
        match &self.gzip {
            Some(gzip) if accepts_gzip(req) => response
                .insert_header((header::CONTENT_ENCODING, "gzip"))
                .body(gzip.clone()),
            _ => response.body(self.raw),
        }
    }
}

fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag))
}

fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn every_embedded_file_is_found_and_compresses() {
        for name in [
            "beacon.js",
            "dashboard/index.html",
            "dashboard/app.js",
            "dashboard/anomalies.js",
            "dashboard/app.css",
            "dashboard/uPlot.iife.min.js",
            "dashboard/uPlot.min.css",
        ] {
            let asset = get(name).unwrap_or_else(|| panic!("{name} is not embedded"));
            let gzip = asset.gzip.as_ref().unwrap_or_else(|| panic!("{name}"));
            assert!(gzip.len() < asset.raw.len(), "{name}");
        }
        assert!(get("dashboard/secret").is_none());
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        let accept = |value: &str| {
            accepts_gzip(
                &TestRequest::default()
                    .insert_header((header::ACCEPT_ENCODING, value))
                    .to_http_request(),
            )
        };
        assert!(accept("gzip, deflate, br"));
        assert!(accept("br;q=1.0, gzip;q=0.8"));
        assert!(!accept("gzip;q=0"));
        assert!(!accept("br"));
        assert!(!accepts_gzip(&TestRequest::default().to_http_request()));
    }

    #[test]
    fn a_matching_etag_gets_not_modified() {
        let asset = get("beacon.js").unwrap_or_else(|| panic!("embedded"));
        let req = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, asset.etag.as_str()))
            .to_http_request();
        assert_eq!(asset.respond(&req).status(), 304);
        let req = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, "\"other\""))
            .to_http_request();
        assert_eq!(asset.respond(&req).status(), 200);
    }
}
