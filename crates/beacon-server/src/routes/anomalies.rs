//! `GET /anomalies`: the anomalies stored by the detecting instance that
//! overlap a range, open ones included.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Duration;
use serde_json::json;

use super::params::{blocking, rfc3339, Params};
use crate::anomaly_worker::{AnomalyView, DetectorView, LEASE};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /anomalies?from&to`: the anomalies overlapping `from..to` (default
/// the last 30 days), oldest first, and the detector's state as the
/// detecting instance last reported it (`null` before it first did).
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let tz = p.tz()?;
    let to = p.time("to", tz)?.unwrap_or_else(|| state.clock.now());
    let from = p.time("from", tz)?.unwrap_or(to - Duration::days(30));
    if from >= to {
        return Err(ApiError::BadParameter {
            name: "from",
            message: "must be before to".to_owned(),
        });
    }
    if to - from > Duration::days(400) {
        return Err(ApiError::RangeTooLarge { max: "400 days" });
    }
    let store = state.store.clone();
    let (rows, detector) = blocking(&state.health, move || {
        Ok((
            store.anomalies_between(from, to)?,
            store.detector_state(LEASE)?,
        ))
    })
    .await?;
    let anomalies: Vec<AnomalyView> = rows.iter().map(AnomalyView::from).collect();
    Ok(HttpResponse::Ok().json(json!({
        "from": rfc3339(from),
        "to": rfc3339(to),
        "anomalies": anomalies,
        "detector": detector.as_ref().map(DetectorView::from),
    })))
}
