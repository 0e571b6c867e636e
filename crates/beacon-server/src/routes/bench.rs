//! `POST /bench/noop`, only in a build with the `bench-routes` feature: the
//! HTTP ceiling in benchmarks, never in a production route table.

use actix_web::{web, HttpResponse};

/// Reads the body, answers 200, does nothing else.
pub async fn noop(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(format!("{{\"ok\":true,\"bytes\":{}}}", body.len()))
}
