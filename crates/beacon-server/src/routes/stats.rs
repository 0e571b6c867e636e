//! `GET /stats/hourly` and `GET /stats/daily`: figures per hour or day of a
//! time zone, from the rollups.
//!
//! Buckets follow the zone's clock: an hour or a day is the run of
//! consecutive 15-minute quarters that share a local date (and, for hours,
//! a local hour and UTC offset). So a DST day has 23 or 25 hours, the
//! repeated hour of a fall-back night is two buckets (`02:00+02:00` and
//! `02:00+01:00`), and half- or quarter-hour zones (Asia/Kolkata,
//! Asia/Kathmandu) are exact, since every offset is a multiple of 15
//! minutes and the rollups are kept per quarter (the store checks that
//! the bounds it is given start quarters).

use actix_web::{web, HttpRequest, HttpResponse};
use beacon_store::BucketFigures;
use chrono::{DateTime, Duration, DurationRound, NaiveDate, Offset, SecondsFormat, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::params::{blocking, rfc3339, seconds, start_of_day, Params};
use crate::error::ApiError;
use crate::state::AppState;

/// Bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// Local hours.
    Hour,
    /// Local days.
    Day,
}

impl Interval {
    fn name(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
    /// Longest range, and its description for the error.
    fn max_range(self) -> (Duration, &'static str) {
        match self {
            Self::Hour => (Duration::days(31), "31 days of hourly buckets"),
            Self::Day => (Duration::days(400), "400 days of daily buckets"),
        }
    }
}

/// `GET /stats/hourly`.
pub async fn hourly(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    stats(req, state, Interval::Hour).await
}

/// `GET /stats/daily`.
pub async fn daily(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    stats(req, state, Interval::Day).await
}

#[derive(Serialize)]
struct Figures {
    page_views: i64,
    visitors: i64,
    events: i64,
    clicks: i64,
    sessions: i64,
    avg_session_duration_seconds: f64,
}

impl From<&BucketFigures> for Figures {
    fn from(f: &BucketFigures) -> Self {
        Self {
            page_views: f.page_views,
            visitors: f.visitors,
            events: f.events,
            clicks: f.clicks,
            sessions: f.sessions_started,
            avg_session_duration_seconds: if f.sessions_started > 0 {
                seconds(f.duration_sum_us / f.sessions_started)
            } else {
                0.0
            },
        }
    }
}

#[derive(Serialize)]
struct Bucket {
    start: String,
    #[serde(flatten)]
    figures: Figures,
}

async fn stats(
    req: HttpRequest,
    state: web::Data<AppState>,
    interval: Interval,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(req.query_string())?;
    let tz = p.tz()?;
    let now = state.clock.now();
    let to = p.time("to", tz)?.unwrap_or(now);
    let from = match p.time("from", tz)? {
        Some(from) => from,
        // The 24 hours or 30 days that end with the current one.
        None => match interval {
            Interval::Hour => to - Duration::hours(23),
            Interval::Day => {
                let today = to.with_timezone(&tz).date_naive();
                start_of_day(tz, today - Duration::days(29))
            }
        },
    };
    if from >= to {
        return Err(ApiError::BadParameter {
            name: "from",
            message: "must be before to".to_owned(),
        });
    }
    let (max, max_text) = interval.max_range();
    if to - from > max {
        return Err(ApiError::RangeTooLarge { max: max_text });
    }
    let bounds = bucket_bounds(tz, interval, from, to);
    let (first, last) = (bounds.first().copied(), bounds.last().copied());
    let store = state.store.clone();
    let stats = blocking(&state.health, move || store.bucket_stats(&bounds)).await?;
    let buckets: Vec<Bucket> = stats
        .buckets
        .iter()
        .map(|b| Bucket {
            start: local_rfc3339(tz, b.start),
            figures: (&b.figures).into(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "interval": interval.name(),
        "tz": tz.name(),
        "from": first.map(rfc3339),
        "to": last.map(rfc3339),
        "buckets": buckets,
        "totals": Figures::from(&stats.total),
    })))
}

fn local_rfc3339(tz: Tz, t: DateTime<Utc>) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The step at which bucket edges are looked for: every UTC offset in use
/// is a multiple of 15 minutes, so every zone's hours and days start on a
/// quarter hour.
const STEP: Duration = Duration::minutes(15);

/// The start of the quarter hour holding `t`.
fn quarter_start(t: DateTime<Utc>) -> DateTime<Utc> {
    // Truncation fails only for times chrono cannot represent, which a
    // parsed parameter is not; the store rejects a bound left unaligned.
    t.duration_trunc(STEP).unwrap_or(t)
}

/// What identifies the bucket of a quarter hour: local date, and for hours
/// the local hour and the offset (a repeated hour is another bucket).
fn key(tz: Tz, interval: Interval, t: DateTime<Utc>) -> (NaiveDate, u32, i32) {
    let local = t.with_timezone(&tz);
    match interval {
        Interval::Day => (local.date_naive(), 0, 0),
        Interval::Hour => (
            local.date_naive(),
            local.hour(),
            local.offset().fix().local_minus_utc(),
        ),
    }
}

/// Bucket boundaries, each the start of a quarter hour, covering every
/// bucket that overlaps `from..to`: `bounds[i]..bounds[i + 1]` is bucket
/// `i`.
pub fn bucket_bounds(
    tz: Tz,
    interval: Interval,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let mut start = quarter_start(from);
    // A bucket is at most 25 hours (100 quarter hours) long.
    for _ in 0..100 {
        if key(tz, interval, start - STEP) != key(tz, interval, start) {
            break;
        }
        start -= STEP;
    }
    let mut last = quarter_start(to - Duration::microseconds(1));
    for _ in 0..100 {
        if key(tz, interval, last + STEP) != key(tz, interval, last) {
            break;
        }
        last += STEP;
    }
    let mut bounds = vec![start];
    let mut previous = key(tz, interval, start);
    let mut t = start + STEP;
    while t <= last {
        let k = key(tz, interval, t);
        if k != previous {
            bounds.push(t);
            previous = k;
        }
        t += STEP;
    }
    bounds.push(last + STEP);
    bounds
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    fn labels(tz: &str, interval: Interval, from: &str, to: &str) -> Vec<String> {
        let tz: Tz = tz.parse().unwrap();
        let p = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let bounds = bucket_bounds(tz, interval, p(from), p(to));
        bounds.iter().map(|&t| local_rfc3339(tz, t)).collect()
    }

    #[test]
    fn fall_back_night_has_two_buckets_for_the_repeated_hour() {
        assert_eq!(
            labels(
                "Europe/Berlin",
                Interval::Hour,
                "2026-10-24T23:10:00Z",
                "2026-10-25T02:00:00Z"
            ),
            [
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let from = Utc.with_ymd_and_hms(2026, 3, 8, 12, 0, 0).unwrap();
        let bounds = bucket_bounds(tz, Interval::Day, from, from + Duration::hours(1));
        assert_eq!(bounds[1] - bounds[0], Duration::hours(23), "spring forward");
        let from = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        let bounds = bucket_bounds(tz, Interval::Day, from, from + Duration::hours(1));
        assert_eq!(bounds[1] - bounds[0], Duration::hours(25), "fall back");
        assert_eq!(local_rfc3339(tz, bounds[0]), "2026-11-01T00:00:00-04:00");
    }

    #[test]
    fn half_hour_zones_get_buckets_on_the_half_hour() {
        assert_eq!(
            labels(
                "Asia/Kolkata",
                Interval::Hour,
                "2026-10-25T00:10:00Z",
                "2026-10-25T00:40:00Z"
            ),
            [
                "2026-10-25T05:00:00+05:30",
                "2026-10-25T06:00:00+05:30",
                "2026-10-25T07:00:00+05:30"
            ]
        );
    }
}
