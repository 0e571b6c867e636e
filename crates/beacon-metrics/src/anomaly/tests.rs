//! Unit tests of the detector: exact, time passed in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;

pub(super) const STEP: Duration = Duration::from_secs(300);
pub(super) const WEEK: usize = 7 * 288;

/// A Monday, 00:00 UTC.
fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap()
}

/// Start of interval `i` (five minutes each).
pub(super) fn t(i: usize) -> DateTime<Utc> {
    base() + chrono::Duration::minutes(5 * i as i64)
}

/// A steady series with a little deterministic noise: 45, 55, 45, ...
pub(super) fn steady(level: u64, n: usize) -> Vec<Option<u64>> {
    (0..n)
        .map(|i| {
            Some(if i % 2 == 0 {
                level - level / 10
            } else {
                level + level / 10
            })
        })
        .collect()
}

/// A detector that has seen three weeks of `history`.
pub(super) fn warmed(history: &[Option<u64>]) -> Detector {
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    d.warm(t(0), STEP, history).unwrap();
    d
}

fn feed(d: &mut Detector, from: usize, counts: &[u64]) -> Vec<(usize, Event)> {
    let mut out = Vec::new();
    for (k, c) in counts.iter().enumerate() {
        for e in d.observe(t(from + k), *c).unwrap() {
            out.push((from + k, e));
        }
    }
    out
}

fn opened(events: &[(usize, Event)]) -> Vec<(usize, Anomaly)> {
    events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Opened(a) => Some((*i, a.clone())),
            Event::Closed(_) => None,
        })
        .collect()
}

#[test]
fn a_new_detector_learns_for_a_day_and_opens_nothing() {
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    assert_eq!(d.mode(), Mode::Learning);
    let mut counts = vec![50; 285];
    counts.extend([5000, 5000, 5000]);
    assert!(feed(&mut d, 0, &counts).is_empty());
    assert_eq!(d.history(), Duration::from_secs(288 * 300));
    assert_eq!(d.mode(), Mode::Cautious);
}

#[test]
fn the_mode_turns_cautious_after_a_day_and_ready_after_two_weeks() {
    let d = warmed(&steady(50, 288));
    assert_eq!(d.mode(), Mode::Cautious);
    let d = warmed(&steady(50, 2 * WEEK));
    assert_eq!(d.mode(), Mode::Ready);
}

#[test]
fn a_steady_series_opens_nothing_for_a_week() {
    let mut d = warmed(&steady(50, 3 * WEEK));
    let week: Vec<u64> = steady(50, WEEK).into_iter().flatten().collect();
    assert!(feed(&mut d, 3 * WEEK, &week).is_empty());
}

#[test]
fn a_tripled_count_opens_a_spike_at_its_second_interval_and_closes_after_the_quiet_hour() {
    let mut d = warmed(&steady(50, 3 * WEEK));
    let s = 3 * WEEK;
    let mut counts = vec![150; 6];
    counts.extend(vec![50; 20]);
    let events = feed(&mut d, s, &counts);
    let (i, a) = &opened(&events)[0];
    assert_eq!(*i, s + 1, "opens once two intervals are in");
    assert_eq!(a.kind, AnomalyKind::Spike);
    assert_eq!(a.onset, t(s));
    assert_eq!(a.start, t(s + 1));
    assert_eq!(a.observed, 300);
    assert!((a.expected - 100.0).abs() < 2.0, "{}", a.expected);
    assert!(a.severity > 5.0, "{}", a.severity);
    assert_eq!(a.end, None);
    // Normal again from s + 6; the 15-minute window says so at s + 8, and
    // the close is reported when it stayed normal for an hour.
    let closed: Vec<_> = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Closed(_)))
        .collect();
    assert_eq!(closed.len(), 1);
    let (at, Event::Closed(c)) = closed[0] else {
        unreachable!()
    };
    assert_eq!(c.end, Some(t(s + 6)));
    assert_eq!(*at, s + 6 + 11);
    assert_eq!(events.len(), 2);
    assert!(d.open().is_none());
}

#[test]
fn a_spike_that_returns_within_the_quiet_hour_goes_on_as_the_same_anomaly() {
    let mut d = warmed(&steady(50, 3 * WEEK));
    let s = 3 * WEEK;
    let mut counts = vec![150; 4];
    counts.extend(vec![50; 6]);
    counts.extend(vec![150; 4]);
    counts.extend(vec![50; 16]);
    let events = feed(&mut d, s, &counts);
    assert_eq!(opened(&events).len(), 1);
    let ends: Vec<_> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Closed(a) => a.end,
            Event::Opened(_) => None,
        })
        .collect();
    assert_eq!(ends, vec![t(s + 14)]);
}

#[test]
fn a_count_below_half_opens_a_drop() {
    let mut d = warmed(&steady(50, 3 * WEEK));
    let s = 3 * WEEK;
    let events = feed(&mut d, s, &[15, 15, 15, 15]);
    let found = opened(&events);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1.kind, AnomalyKind::Drop);
    assert_eq!(found[0].1.onset, t(s));
}

#[test]
fn a_modest_dip_is_not_a_drop() {
    let mut d = warmed(&steady(50, 3 * WEEK));
    // Two thirds of the usual traffic for two hours: a quiet afternoon.
    let events = feed(&mut d, 3 * WEEK, &[33; 24]);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn zeros_open_dark_once_they_are_improbable_and_the_first_event_ends_it() {
    let mut d = warmed(&steady(50, 3 * WEEK));
    let s = 3 * WEEK;
    let events = feed(&mut d, s, &[0, 0, 0, 0, 7]);
    let found = opened(&events);
    assert_eq!(found.len(), 1);
    let (i, a) = &found[0];
    assert_eq!(a.kind, AnomalyKind::Dark);
    assert_eq!(
        *i,
        s + 1,
        "two empty intervals of 50 expected views each are enough"
    );
    assert_eq!(a.onset, t(s));
    assert_eq!(a.observed, 0);
    let Some((_, Event::Closed(c))) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(c.end, Some(t(s + 4)));
}

#[test]
fn zeros_where_little_was_expected_are_not_dark() {
    // One view every ten minutes: an hour without any is ordinary.
    let history: Vec<Option<u64>> = (0..3 * WEEK).map(|i| Some(u64::from(i % 2 == 0))).collect();
    let mut d = warmed(&history);
    assert!(feed(&mut d, 3 * WEEK, &[0; 12]).is_empty());
}

#[test]
fn gaps_never_open_dark_nor_break_the_baseline() {
    let mut d = warmed(&steady(50, 3 * WEEK));
    let s = 3 * WEEK;
    for k in 0..36 {
        d.gap(t(s + k)).unwrap();
    }
    assert_eq!(d.gaps(), 36);
    let week: Vec<u64> = steady(50, 288).into_iter().flatten().collect();
    assert!(feed(&mut d, s + 36, &week).is_empty());
    assert!((d.expected(t(s + 400)).unwrap() - 50.0).abs() < 2.0);
}

#[test]
fn skipped_intervals_are_gaps_and_split_zero_runs() {
    let mut d = warmed(&steady(50, 3 * WEEK));
    let s = 3 * WEEK;
    let mut events = d.observe(t(s), 0).unwrap();
    // One zero, twelve unknown intervals, one zero: not two in a row.
    events.extend(d.observe(t(s + 13), 0).unwrap());
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(d.gaps(), 12);
}

#[test]
fn small_numbers_never_make_a_spike() {
    let history: Vec<Option<u64>> = (0..3 * WEEK).map(|i| Some(u64::from(i % 5 == 0))).collect();
    let mut d = warmed(&history);
    // Six views in ten minutes where one is usual: a visitor reading on.
    assert!(feed(&mut d, 3 * WEEK, &[3, 3, 0, 0]).is_empty());
}

/// Views of interval `i` of a week with a daily and weekly rhythm: busy
/// weekdays from 08:00 to 20:00, quiet weekends and nights, rising over
/// two hours in the morning and falling over two in the evening.
fn rhythm(i: usize) -> u64 {
    let day = (i / 288) % 7;
    let hours = (i % 288) as f64 / 12.0;
    let busy = if day < 5 { 100.0 } else { 40.0 };
    let night = busy / 5.0;
    let share = ((hours - 6.0) / 2.0)
        .clamp(0.0, 1.0)
        .min(((22.0 - hours) / 2.0).clamp(0.0, 1.0));
    (night + (busy - night) * share).round() as u64 + (i % 3) as u64
}

#[test]
fn the_monday_rise_and_the_night_fall_are_not_anomalies() {
    let history: Vec<Option<u64>> = (0..3 * WEEK).map(|i| Some(rhythm(i))).collect();
    let mut d = warmed(&history);
    let week: Vec<u64> = (3 * WEEK..4 * WEEK).map(rhythm).collect();
    let events = feed(&mut d, 3 * WEEK, &week);
    assert!(events.is_empty(), "{events:?}");
    // Monday 10:00 is expected busy, Sunday 10:00 quiet, Monday 07:00
    // halfway up.
    let monday = d.expected(t(4 * WEEK + 120)).unwrap();
    let sunday = d.expected(t(4 * WEEK + 6 * 288 + 120)).unwrap();
    assert!((monday - 101.0).abs() < 5.0, "{monday}");
    assert!((sunday - 41.0).abs() < 5.0, "{sunday}");
    let rising = d.expected(t(4 * WEEK + 84)).unwrap();
    assert!((rising - 61.0).abs() < 8.0, "{rising}");
}

#[test]
fn fifteen_minute_history_warms_the_detector_like_five_minute_history() {
    let buckets: Vec<Option<u64>> = (0..3 * WEEK / 3).map(|_| Some(150)).collect();
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    d.warm(t(0), Duration::from_secs(900), &buckets).unwrap();
    assert_eq!(d.mode(), Mode::Ready);
    assert!((d.expected(t(3 * WEEK)).unwrap() - 50.0).abs() < 1.0);
    let events = feed(&mut d, 3 * WEEK, &[150, 150, 150]);
    assert_eq!(opened(&events)[0].1.kind, AnomalyKind::Spike);
}

#[test]
fn history_must_come_in_whole_steps_and_in_order() {
    let mut d = Detector::new(DetectorConfig::default()).unwrap();
    assert_eq!(
        d.warm(t(0), Duration::from_secs(450), &[Some(1)]),
        Err(AnomalyError::BadHistoryWidth)
    );
    d.observe(t(10), 5).unwrap();
    assert!(matches!(
        d.observe(t(10), 5),
        Err(AnomalyError::OutOfOrder { .. })
    ));
    assert!(matches!(
        d.observe(t(3), 5),
        Err(AnomalyError::OutOfOrder { .. })
    ));
    let off = t(11) + chrono::Duration::seconds(30);
    assert_eq!(d.observe(off, 5), Err(AnomalyError::Misaligned(off)));
    assert!(matches!(
        d.warm(t(0), STEP, &[Some(1)]),
        Err(AnomalyError::OutOfOrder { .. })
    ));
}

#[test]
fn a_step_must_divide_a_day_and_settings_must_make_sense() {
    for secs in [0, 30, 7 * 60, 86_400 * 2] {
        let config = DetectorConfig {
            step: Duration::from_secs(secs),
            ..DetectorConfig::default()
        };
        assert!(
            matches!(Detector::new(config), Err(AnomalyError::BadStep(_))),
            "step {secs}"
        );
    }
    for step in [60, 900, 3600, 86_400] {
        let config = DetectorConfig {
            step: Duration::from_secs(step),
            ..DetectorConfig::default()
        };
        assert!(Detector::new(config).is_ok(), "step {step}");
    }
    let config = DetectorConfig {
        sensitivity: 0.0,
        ..DetectorConfig::default()
    };
    assert!(matches!(
        Detector::new(config),
        Err(AnomalyError::BadConfig(_))
    ));
    let config = DetectorConfig {
        drop_ratio: 1.5,
        ..DetectorConfig::default()
    };
    assert!(matches!(
        Detector::new(config),
        Err(AnomalyError::BadConfig(_))
    ));
}

#[test]
fn lower_sensitivity_asks_for_more_evidence() {
    let history = steady(20, 3 * WEEK);
    let mut eager = warmed(&history);
    let config = DetectorConfig {
        sensitivity: 0.5,
        ..DetectorConfig::default()
    };
    let mut calm = Detector::new(config).unwrap();
    calm.warm(t(0), STEP, &history).unwrap();
    let burst = [45, 45];
    assert_eq!(opened(&feed(&mut eager, 3 * WEEK, &burst)).len(), 1);
    assert!(feed(&mut calm, 3 * WEEK, &burst).is_empty());
}

#[test]
fn an_anomaly_serializes_with_lowercase_kind_and_rfc3339_times() {
    let a = Anomaly {
        kind: AnomalyKind::Dark,
        onset: t(0),
        start: t(2),
        end: None,
        observed: 0,
        expected: 12.5,
        severity: 5.0,
    };
    let json = serde_json::to_value(Event::Opened(a.clone())).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"event": "opened", "anomaly": {
            "kind": "dark", "onset": "2026-11-30T00:00:00Z", "start": "2026-11-30T00:10:00Z",
            "end": null, "observed": 0, "expected": 12.5, "severity": 5.0}})
    );
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back, Event::Opened(a));
}
