//! `GET /beacon.js`: Beacon's tracker (docs/tracker.md), embedded in the
//! binary. Sites load it with one `<script>` tag from any origin.

use actix_web::{HttpRequest, HttpResponse};

use crate::assets;
use crate::error::ApiError;

/// The tracker script.
pub async fn tracker(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let asset = assets::get("beacon.js").ok_or(ApiError::NotFound)?;
    Ok(asset.respond(&req))
}
