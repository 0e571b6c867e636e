#![cfg(unix)]

//! The binary's one-shot commands on PostgreSQL: they end with exit status
//! 0, every time. The connection pool opens connections on threads of its
//! own; a command that ended while one was being opened crashed in
//! OpenSSL's exit handler (signal 11) about one run in ten, which fails a
//! deployment script that runs `beacon migrate` first.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use crate::helpers::Db;

/// Runs enough times that a crash of one run in ten would all but surely
/// show (0.9^40 is under 2%).
const RUNS: usize = 40;

#[test]
fn beacon_migrate_on_postgres_exits_cleanly_run_after_run() {
    let Some(db) = Db::Postgres.fresh() else {
        return;
    };
    let mut failures = vec![];
    for run in 0..RUNS {
        let out = Command::new(env!("CARGO_BIN_EXE_beacon"))
            .args(["migrate", "--database-url", &db.raw_url])
            .env("RUST_LOG", "warn")
            .output()
            .expect("the binary runs");
        if !out.status.success() {
            failures.push(format!(
                "run {run}: exit {:?}, signal {:?}: {}",
                out.status.code(),
                out.status.signal(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {RUNS} runs of `beacon migrate` failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
