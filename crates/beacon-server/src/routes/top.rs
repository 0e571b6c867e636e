//! The top lists (`GET /top-pages`, `/top-referrers`, `/top-clicks`,
//! `/top-countries`, `/top-regions`, `/top-cities`, `/top-browsers`,
//! `/top-os`, `/top-devices`): the items with the most events over a range,
//! with their distinct visitors, from the rollups.

use actix_web::{web, HttpRequest, HttpResponse};
use beacon_store::{TimeRange, TopDimension};
use chrono::Duration;
use serde_json::{json, Map, Value};

use super::params::{blocking, rfc3339, Params};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /top-pages`: urls of page views.
pub async fn pages(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    top(req, state, TopDimension::Pages, "url").await
}

/// `GET /top-referrers`: referrers of page views.
pub async fn referrers(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    top(req, state, TopDimension::Referrers, "referrer").await
}

/// `GET /top-clicks`: labels of clicks.
pub async fn clicks(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    top(req, state, TopDimension::Clicks, "label").await
}

/// `GET /top-countries`: country codes of sessions, by page views.
pub async fn countries(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    top(req, state, TopDimension::Countries, "country").await
}

/// `GET /top-regions`: regions of sessions, with their country.
pub async fn regions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    top(req, state, TopDimension::Regions, "region").await
}

/// `GET /top-cities`: cities of sessions, with their country.
pub async fn cities(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    top(req, state, TopDimension::Cities, "city").await
}

/// `GET /top-browsers`: browser families of sessions.
pub async fn browsers(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    top(req, state, TopDimension::Browsers, "browser").await
}

/// `GET /top-os`: operating system families of sessions.
pub async fn operating_systems(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    top(req, state, TopDimension::OperatingSystems, "os").await
}

/// `GET /top-devices`: device types of sessions.
pub async fn devices(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    top(req, state, TopDimension::Devices, "device").await
}

async fn top(
    req: HttpRequest,
    state: web::Data<AppState>,
    dimension: TopDimension,
    field: &'static str,
) -> Result<HttpResponse, ApiError> {
    // Regions and cities carry their country, so that places of the same
    // name in two countries stay apart.
    let with_country = matches!(dimension, TopDimension::Regions | TopDimension::Cities);
    let p = Params::parse(req.query_string())?;
    let tz = p.tz()?;
    let to = p.time("to", tz)?.unwrap_or_else(|| state.clock.now());
    let from = p.time("from", tz)?.unwrap_or(to - Duration::days(30));
    // The store answers whole units of its rollups: the range is widened to
    // them, and the response says which range was counted.
    let range = TimeRange::covering(from, to).ok_or_else(|| ApiError::BadParameter {
        name: "from",
        message: "must be before to".to_owned(),
    })?;
    if to - from > Duration::days(400) {
        return Err(ApiError::RangeTooLarge { max: "400 days" });
    }
    let limit = p.limit(10, 100)?;
    let store = state.store.clone();
    let items = blocking(&state.health, move || store.top(dimension, range, limit)).await?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|t| {
            let mut o = Map::new();
            o.insert(field.to_owned(), Value::String(t.item));
            if with_country {
                o.insert(
                    "country".to_owned(),
                    t.country.map_or(Value::Null, Value::String),
                );
            }
            o.insert("count".to_owned(), t.count.into());
            o.insert("visitors".to_owned(), t.visitors.into());
            Value::Object(o)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "from": rfc3339(range.start()),
        "to": rfc3339(range.end()),
        "items": items
    })))
}
