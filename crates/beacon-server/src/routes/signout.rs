//! `POST /auth/signout`: removes the dashboard's session cookie from this
//! browser.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::session_cookie;
use crate::state::AppState;

/// Always 200, with a `Set-Cookie` that expires the cookie.
pub async fn signout(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .cookie(session_cookie::signed_out(session_cookie::over_https(
            &req,
            &state.enrichment,
        )))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(json!({"ok": true}))
}
