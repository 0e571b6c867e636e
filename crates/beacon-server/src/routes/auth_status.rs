//! `GET /auth/status`: whether a read token is required and whether this
//! request carries a valid one (bearer, query or session cookie). The
//! dashboard asks it first, to show either itself or the sign-in form.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::auth::authorized;
use crate::state::AppState;

/// Always 200: `{"token_required": bool, "authorized": bool}`.
pub async fn status(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let required = state.read_token.is_some();
    let ok = authorized(&req, &state).is_ok();
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(json!({"token_required": required, "authorized": ok}))
}
