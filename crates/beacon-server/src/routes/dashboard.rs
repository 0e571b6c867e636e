//! `GET /` and `GET /dashboard/{file}`: the built-in dashboard, embedded in
//! the binary (see [`crate::assets`]).

use actix_web::{web, HttpRequest, HttpResponse};

use crate::assets;
use crate::error::ApiError;

/// The dashboard talks only to its own origin; styles are allowed inline
/// because the charting library positions its parts with style attributes.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// The dashboard's page.
pub async fn index(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let asset = assets::get("dashboard/index.html").ok_or(ApiError::NotFound)?;
    let mut response = asset.respond(&req);
    let headers = response.headers_mut();
    headers.insert(
        actix_web::http::header::CONTENT_SECURITY_POLICY,
        actix_web::http::header::HeaderValue::from_static(CSP),
    );
    headers.insert(
        actix_web::http::header::REFERRER_POLICY,
        actix_web::http::header::HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// A script, style sheet or vendored file of the dashboard.
pub async fn file(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = format!("dashboard/{}", name.into_inner());
    if name.ends_with(".html") {
        return Err(ApiError::NotFound);
    }
    let asset = assets::get(&name).ok_or(ApiError::NotFound)?;
    Ok(asset.respond(&req))
}
