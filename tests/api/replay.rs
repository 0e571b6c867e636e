//! `beacon anomalies replay`: the built binary over CSV files, no server
//! and no database.

use std::path::Path;
use std::process::{Command, Output};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// Two steady weeks at about 40 views per five minutes, then `tail`
/// (`None`: the row is missing from the file).
fn series(tail: &[Option<u64>]) -> String {
    let start: DateTime<Utc> = "2026-11-30T00:00:00Z".parse().unwrap();
    let mut csv = String::from("timestamp,value\n");
    let weeks = (0..2 * 2016).map(|i| Some(if i % 2 == 0 { 36 } else { 44 }));
    for (i, v) in weeks.chain(tail.iter().copied()).enumerate() {
        if let Some(v) = v {
            let t = start + Duration::minutes(5 * i as i64);
            csv.push_str(&format!("{},{v}\n", t.to_rfc3339()));
        }
    }
    csv
}

/// Runs `beacon anomalies replay --input FILE [extra...]` in `dir`.
fn replay(dir: &Path, csv: &str, extra: &[&str]) -> Output {
    let input = dir.join("series.csv");
    std::fs::write(&input, csv).unwrap();
    Command::new(env!("CARGO_BIN_EXE_beacon"))
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .args(["anomalies", "replay", "--input"])
        .arg(&input)
        .args(extra)
        .output()
        .unwrap()
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn replay_prints_one_json_line_per_anomaly_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut tail = vec![Some(40); 12];
    tail.extend([Some(0), Some(0), Some(0), Some(40)]);
    tail.extend(vec![Some(40); 24]);
    tail.extend([Some(160), Some(160), Some(160)]);
    let out = replay(dir.path(), &series(&tail), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    for line in &lines {
        assert_eq!(
            keys(line),
            ["end", "expected", "kind", "observed", "severity", "start"]
        );
        assert!(line["expected"].as_f64().unwrap() > 0.0);
        assert!(line["severity"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(lines[0]["kind"], "dark");
    assert_eq!(lines[0]["start"], "2026-12-14T01:05:00Z");
    assert_eq!(lines[0]["end"], "2026-12-14T01:15:00Z");
    assert_eq!(lines[0]["observed"], 0);
    assert_eq!(lines[1]["kind"], "spike");
    assert_eq!(lines[1]["start"], "2026-12-14T03:25:00Z");
    assert_eq!(
        lines[1]["end"],
        Value::Null,
        "still open when the file ends"
    );
    assert_eq!(lines[1]["observed"], 320);
    assert!(
        !dir.path().join("beacon.db").exists(),
        "replay opened no database"
    );
}

#[test]
fn replay_with_an_explicit_step_gives_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut tail = vec![Some(40); 12];
    tail.extend([Some(0), Some(0), Some(0), Some(40)]);
    let csv = series(&tail);
    let inferred = replay(dir.path(), &csv, &[]);
    let given = replay(dir.path(), &csv, &["--step", "5m"]);
    assert!(given.status.success());
    assert_eq!(json_lines(&inferred), json_lines(&given));
    assert_eq!(json_lines(&given).len(), 1);
}

#[test]
fn rows_missing_from_the_file_are_gaps_and_open_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut tail = vec![Some(40); 12];
    tail.extend(vec![None; 48]);
    tail.extend(vec![Some(40); 12]);
    let out = replay(dir.path(), &series(&tail), &[]);
    assert!(out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn bad_csv_fails_with_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "timestamp,value\n2026-11-30 10:00:00,4\n2026-11-30 10:05:00,many\n",
            "line 3: invalid value \"many\"",
        ),
        (
            "when,views\n",
            "line 1: expected the header `timestamp,value`",
        ),
        (
            "timestamp,value\n2026-11-30 10:00:00,4\nnot a time,5\n",
            "line 3: invalid timestamp",
        ),
        (
            "timestamp,value\n2026-11-30 10:05:00,4\n2026-11-30 10:00:00,5\n",
            "line 3: timestamp",
        ),
    ];
    for (csv, expected) in cases {
        let out = replay(dir.path(), csv, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{csv:?}");
        assert!(stderr.contains(expected), "{csv:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{csv:?}");
    }
}

#[test]
fn a_missing_file_or_a_bad_step_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_beacon"))
        .current_dir(dir.path())
        .args(["anomalies", "replay", "--input", "no-such-file.csv"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read no-such-file.csv"));
    let out = replay(
        dir.path(),
        "timestamp,value\n2026-11-30 10:00:00,4\n",
        &["--step", "5 parsecs"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("step"));
}
