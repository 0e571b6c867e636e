//! The route table, shared by the binary and the tests.

mod track;
mod up;

use actix_cors::Cors;
use actix_web::http::{header, Method};
use actix_web::web;

use crate::error::ApiError;

/// Registers every endpoint. `ingest_origins` limits who may post to
/// /track (empty: anyone).
pub fn configure(cfg: &mut web::ServiceConfig, ingest_origins: &[String]) {
    cfg.service(
        web::resource("/track")
            .wrap(ingest_cors(ingest_origins))
            .route(web::post().to(track::track))
            .default_service(web::to(|| async {
                Err::<(), _>(ApiError::MethodNotAllowed)
            })),
    )
    .route("/up", web::get().to(up::up))
    .default_service(web::to(|| async { Err::<(), _>(ApiError::NotFound) }));
}

/// Ingestion is public: a site embeds the pixel and the browser posts from
/// the site's origin, so any origin may post (without credentials: the pixel
/// sends no cookies), unless the operator lists the allowed ones.
fn ingest_cors(origins: &[String]) -> Cors {
    let cors = Cors::default()
        .allowed_methods([Method::POST])
        .allowed_headers([header::CONTENT_TYPE])
        .max_age(86_400);
    if origins.is_empty() {
        cors.allow_any_origin().send_wildcard()
    } else {
        origins
            .iter()
            .fold(cors, |cors, origin| cors.allowed_origin(origin.trim()))
    }
}
