//! Replay of a recorded series (CSV) through a [`Detector`], as if it
//! arrived live: for evaluating the detector on an owner's own data.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{AnomalyError, AnomalyKind, Detector, DetectorConfig, Event};

/// A recorded series: uniform intervals from `start`, `None` where the
/// record has no data (a gap, not a zero).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Start of the first interval.
    pub start: DateTime<Utc>,
    /// Width of every interval.
    pub step: Duration,
    /// Count of each interval.
    pub counts: Vec<Option<u64>>,
}

/// One anomaly the replay opened, as printed (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayLine {
    /// Spike, drop or dark.
    pub kind: AnomalyKind,
    /// RFC 3339 start of the interval at which the detector opened it.
    pub start: String,
    /// RFC 3339 start of the interval at which it was back to normal, if
    /// that happened within the file.
    pub end: Option<String>,
    /// Events counted in the evidence window.
    pub observed: u64,
    /// Events expected in the evidence window (two decimals).
    pub expected: f64,
    /// Standard deviations of the evidence (one decimal).
    pub severity: f64,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses a step such as `5m`, `300s`, `1h` or `1d` (a bare number is
/// seconds).
pub fn parse_step(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid step {raw:?} (try 5m, 300s or 1h)"))?;
    let unit_secs = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown step unit {other:?} (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(n.saturating_mul(unit_secs)))
}

fn csv_error(line: usize, message: impl Into<String>) -> AnomalyError {
    AnomalyError::Csv {
        line,
        message: message.into(),
    }
}

fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|n| n.and_utc())
        })
}

fn parse_count(raw: &str) -> Option<u64> {
    if let Ok(n) = raw.parse::<u64>() {
        return Some(n);
    }
    // Exports often write counts as floats: accept whole ones.
    let f: f64 = raw.parse().ok()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 9.0e15).then_some(f as u64)
}

fn unquote(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(f)
}

/// Parses a `timestamp,value` CSV. Timestamps are RFC 3339 or
/// `YYYY-MM-DD HH:MM:SS` (UTC), strictly increasing, whole steps apart;
/// `step` is inferred (the smallest distance between two rows) when not
/// given. An empty value, or an interval missing between two rows, is a
/// gap. Errors name the 1-based line.
pub fn parse_series(csv: &str, step: Option<Duration>) -> Result<Series, AnomalyError> {
    let mut lines = csv.lines().enumerate().map(|(i, l)| (i + 1, l));
    let header = lines
        .next()
        .map(|(_, l)| l.trim_start_matches('\u{feff}'))
        .unwrap_or("");
    let names: Vec<String> = header
        .split(',')
        .map(|f| unquote(f).to_ascii_lowercase())
        .collect();
    if names != ["timestamp", "value"] {
        return Err(csv_error(1, "expected the header `timestamp,value`"));
    }
    let mut rows: Vec<(usize, i64, Option<u64>)> = Vec::new();
    for (line, text) in lines {
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split(',').collect();
        if fields.len() != 2 {
            return Err(csv_error(
                line,
                format!("expected 2 fields, found {}", fields.len()),
            ));
        }
        let ts = unquote(fields[0]);
        let t = parse_timestamp(ts).ok_or_else(|| {
            csv_error(
                line,
                format!("invalid timestamp {ts:?} (use RFC 3339 or YYYY-MM-DD HH:MM:SS)"),
            )
        })?;
        if t.timestamp_subsec_nanos() != 0 {
            return Err(csv_error(
                line,
                format!("timestamp {ts:?} has a fraction of a second"),
            ));
        }
        let value = unquote(fields[1]);
        let count = if value.is_empty() {
            None
        } else {
            Some(parse_count(value).ok_or_else(|| {
                csv_error(
                    line,
                    format!("invalid value {value:?} (a whole number of events, 0 or more)"),
                )
            })?)
        };
        if let Some((_, prev, _)) = rows.last() {
            if t.timestamp() <= *prev {
                return Err(csv_error(
                    line,
                    format!("timestamp {ts:?} is not after the previous row's"),
                ));
            }
        }
        rows.push((line, t.timestamp(), count));
    }
    let Some(&(_, first, _)) = rows.first() else {
        return Err(csv_error(1, "no rows after the header"));
    };
    let step_secs = match step {
        Some(s) => s.as_secs() as i64,
        None => {
            let min = rows.windows(2).map(|w| w[1].1 - w[0].1).min();
            min.ok_or_else(|| {
                csv_error(
                    rows[0].0,
                    "one row is not enough to infer the step: give --step",
                )
            })?
        }
    };
    let step = Duration::from_secs(step_secs.max(0) as u64);
    DetectorConfig {
        step,
        ..DetectorConfig::default()
    }
    .step_secs()?;
    let mut counts: Vec<Option<u64>> = Vec::new();
    for &(line, t, count) in &rows {
        if (t - first) % step_secs != 0 {
            return Err(csv_error(line, format!("timestamp is not a whole number of steps ({step_secs} s) after the first row's")));
        }
        let index = ((t - first) / step_secs) as usize;
        if index > 50_000_000 {
            return Err(csv_error(
                line,
                "the series is too long (more than 50 million steps)",
            ));
        }
        counts.resize(index, None);
        counts.push(count);
    }
    let start = DateTime::<Utc>::from_timestamp(first, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    Ok(Series {
        start,
        step,
        counts,
    })
}

/// Parses `csv` (see [`parse_series`]) and feeds it to a fresh detector
/// with `config` (its step replaced by the series'): one line per anomaly
/// opened, in order, `end` set when it closed within the file.
pub fn replay(
    csv: &str,
    step: Option<Duration>,
    config: DetectorConfig,
) -> Result<Vec<ReplayLine>, AnomalyError> {
    let series = parse_series(csv, step)?;
    let mut detector = Detector::new(DetectorConfig {
        step: series.step,
        ..config
    })?;
    let mut lines: Vec<ReplayLine> = Vec::new();
    let mut open: Option<usize> = None;
    for (i, count) in series.counts.iter().enumerate() {
        let t = series.start + chrono::Duration::seconds(series.step.as_secs() as i64 * i as i64);
        let Some(count) = count else {
            detector.gap(t)?;
            continue;
        };
        for event in detector.observe(t, *count)? {
            match event {
                Event::Opened(a) => {
                    open = Some(lines.len());
                    lines.push(ReplayLine {
                        kind: a.kind,
                        start: rfc3339(a.start),
                        end: None,
                        observed: a.observed,
                        expected: (a.expected * 100.0).round() / 100.0,
                        severity: (a.severity * 10.0).round() / 10.0,
                    });
                }
                Event::Closed(a) => {
                    if let (Some(i), Some(end)) = (open.take(), a.end) {
                        lines[i].end = Some(rfc3339(end));
                    }
                }
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn err(csv: &str) -> (usize, String) {
        match parse_series(csv, None) {
            Err(AnomalyError::Csv { line, message }) => (line, message),
            other => panic!("expected a CSV error, got {other:?}"),
        }
    }

    #[test]
    fn timestamps_may_be_rfc3339_or_plain_utc_and_the_step_is_inferred() {
        let csv = "timestamp,value\n2026-11-30T10:00:00Z,4\n2026-11-30 10:05:00,5\n2026-11-30T11:10:00+01:00,6\n";
        let s = parse_series(csv, None).unwrap();
        assert_eq!(s.step, Duration::from_secs(300));
        assert_eq!(s.start.to_rfc3339(), "2026-11-30T10:00:00+00:00");
        assert_eq!(s.counts, vec![Some(4), Some(5), Some(6)]);
    }

    #[test]
    fn a_missing_interval_or_an_empty_value_is_a_gap_not_a_zero() {
        let csv =
            "timestamp,value\n2026-11-30 10:00:00,4\n2026-11-30 10:05:00,\n2026-11-30 10:20:00,0\n";
        let s = parse_series(csv, None).unwrap();
        assert_eq!(s.counts, vec![Some(4), None, None, None, Some(0)]);
    }

    #[test]
    fn a_given_step_is_used_and_rows_must_fall_on_it() {
        let csv = "timestamp,value\n2026-11-30 10:00:00,4\n2026-11-30 10:30:00,5\n";
        let s = parse_series(csv, Some(Duration::from_secs(900))).unwrap();
        assert_eq!(s.counts, vec![Some(4), None, Some(5)]);
        let seven_hours = Duration::from_secs(3600 * 7);
        assert_eq!(
            parse_series(csv, Some(seven_hours)),
            Err(AnomalyError::BadStep(seven_hours))
        );
        let csv = "timestamp,value\n2026-11-30 10:00:00,4\n2026-11-30 10:05:00,4\n2026-11-30 10:12:00,5\n";
        assert_eq!(err(csv).0, 4);
    }

    #[test]
    fn bad_csv_is_refused_with_the_line_that_is_wrong() {
        let cases = [
            ("time,count\n2026-11-30 10:00:00,4\n", 1, "header"),
            ("", 1, "header"),
            ("timestamp,value\n", 1, "no rows"),
            ("timestamp,value\n2026-11-30 10:00:00,4\n", 2, "one row"),
            (
                "timestamp,value\n2026-11-30 10:00:00,4\nyesterday,5\n",
                3,
                "invalid timestamp",
            ),
            (
                "timestamp,value\n2026-11-30 10:00:00,4\n2026-11-30 10:05:00,-1\n",
                3,
                "invalid value",
            ),
            (
                "timestamp,value\n2026-11-30 10:00:00,4\n2026-11-30 10:05:00,2.5\n",
                3,
                "invalid value",
            ),
            (
                "timestamp,value\n2026-11-30 10:00:00,4\n2026-11-30 10:05:00,4,4\n",
                3,
                "found 3",
            ),
            (
                "timestamp,value\n2026-11-30 10:05:00,4\n2026-11-30 10:00:00,4\n",
                3,
                "not after",
            ),
            (
                "timestamp,value\n2026-11-30 10:05:00,4\n2026-11-30 10:05:00,4\n",
                3,
                "not after",
            ),
            (
                "timestamp,value\n2026-11-30T10:00:00.5Z,4\n2026-11-30 10:05:00,4\n",
                2,
                "fraction",
            ),
        ];
        for (csv, line, needle) in cases {
            let (got_line, message) = err(csv);
            assert_eq!(got_line, line, "{csv:?}: {message}");
            assert!(message.contains(needle), "{csv:?}: {message}");
        }
    }

    #[test]
    fn whole_float_counts_quotes_crlf_and_blank_lines_are_accepted() {
        let csv = "\u{feff}\"timestamp\",\"value\"\r\n\"2026-11-30 10:00:00\",\"4.0\"\r\n\r\n2026-11-30 10:05:00,5\r\n";
        let s = parse_series(csv, None).unwrap();
        assert_eq!(s.counts, vec![Some(4), Some(5)]);
    }

    #[test]
    fn steps_parse_with_units() {
        assert_eq!(parse_step("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_step("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_step("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_step("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_step("5 parsecs").is_err());
        assert!(parse_step("m").is_err());
    }

    /// Two steady weeks at 40 per interval, then `tail`.
    fn csv_with(tail: &[Option<u64>]) -> String {
        let start = DateTime::parse_from_rfc3339("2026-11-30T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut csv = String::from("timestamp,value\n");
        let weeks = (0..2 * 2016).map(|i| Some(if i % 2 == 0 { 36 } else { 44 }));
        for (i, v) in weeks.chain(tail.iter().copied()).enumerate() {
            if let Some(v) = v {
                let t = start + chrono::Duration::minutes(5 * i as i64);
                csv.push_str(&format!("{},{v}\n", t.format("%Y-%m-%d %H:%M:%S")));
            }
        }
        csv
    }

    #[test]
    fn the_replay_reports_each_anomaly_once_at_the_interval_that_opened_it() {
        let mut tail = vec![Some(40); 12];
        tail.extend([Some(0), Some(0), Some(0), Some(40)]);
        tail.extend(vec![Some(40); 24]);
        tail.extend([Some(160), Some(160), Some(160)]);
        let lines = replay(&csv_with(&tail), None, DetectorConfig::default()).unwrap();
        let json: Vec<String> = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap())
            .collect();
        assert_eq!(json.len(), 2, "{json:?}");
        assert!(
            json[0].starts_with(r#"{"kind":"dark","start":"2026-12-14T01:05:00Z","end":"2026-12-14T01:15:00Z","observed":0,"expected":"#),
            "{}",
            json[0]
        );
        assert!(
            json[1].starts_with(r#"{"kind":"spike","start":"2026-12-14T03:25:00Z","end":null,"observed":320,"expected":"#),
            "{}",
            json[1]
        );
    }

    #[test]
    fn missing_intervals_in_the_file_never_open_dark() {
        let mut tail = vec![Some(40); 12];
        tail.extend(vec![None; 36]);
        tail.extend(vec![Some(40); 12]);
        assert!(replay(&csv_with(&tail), None, DetectorConfig::default())
            .unwrap()
            .is_empty());
    }
}
