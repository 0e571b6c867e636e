//! `POST /auth/signin`: exchanges the read token for the dashboard's session
//! cookie (see [`crate::session_cookie`]).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::auth::constant_time_eq;
use crate::error::ApiError;
use crate::session_cookie;
use crate::state::AppState;

/// The body: `{"token": "…"}`, read as JSON whatever the Content-Type.
#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

/// 200 with the cookie for the right token, 401 for a wrong one. Without a
/// configured token there is nothing to sign in to: 200 without a cookie.
pub async fn signin(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // Read as JSON whatever the Content-Type, like /track, and answered in
    // Beacon's error shape when it is not.
    let body: SignIn = serde_json::from_slice(&body).map_err(|_| ApiError::BadParameter {
        name: "token",
        message: r#"the body must be {"token": "<read token>"}"#.to_owned(),
    })?;
    let Some(expected) = state.read_token.as_ref() else {
        return Ok(HttpResponse::Ok().json(json!({"ok": true, "token_required": false})));
    };
    if !constant_time_eq(body.token.as_bytes(), expected.expose().as_bytes()) {
        return Err(ApiError::Unauthorized { invalid: true });
    }
    let value = session_cookie::issue(expected.expose(), state.clock.now())
        .ok_or(ApiError::Unauthorized { invalid: true })?;
    Ok(HttpResponse::Ok()
        .cookie(session_cookie::signed_in(
            value,
            session_cookie::over_https(&req, &state.enrichment),
        ))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(json!({"ok": true, "token_required": true})))
}
