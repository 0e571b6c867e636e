//! The route table, shared by the binary and the tests.

mod anomalies;
mod auth_status;
#[cfg(feature = "bench-routes")]
mod bench;
mod dashboard;
mod events;
mod metrics;
pub mod params;
mod sessions;
mod signin;
mod signout;
pub mod stats;
mod stream;
mod top;
mod track;
mod tracker;
mod up;

use actix_cors::Cors;
use actix_web::dev::HttpServiceFactory;
use actix_web::http::{header, Method};
use actix_web::middleware::from_fn;
use actix_web::{web, Route};

use crate::error::ApiError;

/// Who may call what, from a browser.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// Origins that may post to `/track` (empty: any).
    pub ingest: Vec<String>,
    /// Origins that may read the dashboard endpoints (empty: any).
    pub dashboard: Vec<String>,
}

/// Registers every endpoint.
pub fn configure(cfg: &mut web::ServiceConfig, origins: &Origins) {
    #[cfg(feature = "bench-routes")]
    cfg.route("/bench/noop", web::post().to(bench::noop));
    let d = &origins.dashboard;
    cfg.service(
        web::resource("/track")
            .wrap(cors(&origins.ingest, Method::POST))
            .route(web::post().to(track::track))
            .default_service(web::to(|| async {
                Err::<(), _>(ApiError::MethodNotAllowed)
            })),
    )
    .service(read("/stream", d, web::get().to(stream::stream)))
    .service(read("/sessions", d, web::get().to(sessions::list)))
    .service(read("/sessions/{token}", d, web::get().to(sessions::one)))
    .service(read("/events", d, web::get().to(events::list)))
    .service(read("/stats/hourly", d, web::get().to(stats::hourly)))
    .service(read("/stats/daily", d, web::get().to(stats::daily)))
    .service(read("/top-pages", d, web::get().to(top::pages)))
    .service(read("/top-referrers", d, web::get().to(top::referrers)))
    .service(read("/top-clicks", d, web::get().to(top::clicks)))
    .service(read("/top-countries", d, web::get().to(top::countries)))
    .service(read("/top-regions", d, web::get().to(top::regions)))
    .service(read("/top-cities", d, web::get().to(top::cities)))
    .service(read("/top-browsers", d, web::get().to(top::browsers)))
    .service(read("/top-os", d, web::get().to(top::operating_systems)))
    .service(read("/top-devices", d, web::get().to(top::devices)))
    .service(read("/anomalies", d, web::get().to(anomalies::list)))
    .service(read("/metrics", d, web::get().to(metrics::metrics)))
    .route("/up", web::get().to(up::up))
    .route("/", web::get().to(dashboard::index))
    .route("/dashboard/{file}", web::get().to(dashboard::file))
    .route("/beacon.js", web::get().to(tracker::tracker))
    .route("/auth/status", web::get().to(auth_status::status))
    .route("/auth/signin", web::post().to(signin::signin))
    .route("/auth/signout", web::post().to(signout::signout))
    .default_service(web::to(|| async { Err::<(), _>(ApiError::NotFound) }));
}

/// A read endpoint: the read token is required when configured (see
/// [`crate::auth`]), and CORS follows the dashboard origins. CORS wraps the
/// token check, so preflights are answered and 401s carry CORS headers.
fn read(path: &str, origins: &[String], route: Route) -> impl HttpServiceFactory {
    web::resource(path)
        .wrap(from_fn(crate::auth::require_read_token))
        .wrap(cors(origins, Method::GET))
        .route(route)
}

/// Ingestion is public: a site embeds the pixel and the browser posts from
/// the site's origin, so any origin may post (without credentials: the pixel
/// sends no cookies), unless the operator lists the allowed ones. Dashboards
/// on other origins read the same way.
fn cors(origins: &[String], method: Method) -> Cors {
    let cors = Cors::default()
        .allowed_methods([method])
        .allowed_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
        .max_age(86_400);
    if origins.is_empty() {
        cors.allow_any_origin().send_wildcard()
    } else {
        origins
            .iter()
            .fold(cors, |cors, origin| cors.allowed_origin(origin.trim()))
    }
}
