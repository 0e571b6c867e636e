//! End-to-end tests: the real application on a random port, a fresh
//! database per test (SQLite in a temp dir; a new PostgreSQL database when
//! `TEST_DATABASE_URL` is set), plain HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod abuse;
mod anomalies;
mod anomaly_series;
mod auth;
mod auth_cookie;
mod buffer;
mod cli;
mod enrichment;
mod faults;
mod helpers;
mod history;
mod hostile;
mod logs;
mod replay;
mod retention;
mod shutdown;
mod stream;
mod track;
mod up;
mod visitors;
