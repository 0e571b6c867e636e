//! `GET /up`: health check for load balancers and operators.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// 200 when the database answers, 503 otherwise.
pub async fn up(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let backend = store.backend().name();
    let ping = web::block(move || store.ping())
        .await
        .map_err(|e| beacon_store::StoreError::Unavailable(e.to_string()))
        .and_then(|result| result);
    state.health.observe(&ping);
    let ok = ping.is_ok();
    state.live.set_stale(!ok);
    if ok {
        HttpResponse::Ok().json(json!({"status": "ok", "database": "up", "backend": backend}))
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(json!({"status": "unavailable", "database": "down", "backend": backend}))
    }
}
