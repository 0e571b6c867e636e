//! `GET /up`: health check for load balancers and operators.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// 200 when the database answers, 503 otherwise. Buffered mode: 200 while
/// Redis answers (ingestion works, even with the database away: the
/// buffer exists for exactly that outage), 503 when it does not; the body
/// says which part is down.
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
    if let Some(redis) = &state.redis {
        let redis_up = redis.ping().await;
        let word = |up: bool| if up { "up" } else { "down" };
        let body = json!({
            "status": match (redis_up, ok) {
                (true, true) => "ok",
                (true, false) => "degraded",
                (false, _) => "unavailable",
            },
            "database": word(ok),
            "redis": word(redis_up),
            "backend": backend,
            "mode": "buffered",
        });
        return if redis_up {
            HttpResponse::Ok().json(body)
        } else {
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "5"))
                .json(body)
        };
    }
    if ok {
        HttpResponse::Ok().json(json!({"status": "ok", "database": "up", "backend": backend}))
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(json!({"status": "unavailable", "database": "down", "backend": backend}))
    }
}
