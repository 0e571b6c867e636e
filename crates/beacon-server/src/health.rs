//! The database's health as this process sees it, so that an outage is
//! logged once, with its cause, when it begins, and once when it ends,
//! however many requests, commits and reads run into it meanwhile.
//!
//! Clients are told only that the database is unavailable (see
//! [`crate::error::ApiError`]); the cause, which names hosts, ports and the
//! driver's wording, belongs in the operator's log, and once is enough.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use beacon_store::StoreError;

/// Whether the database is away, and how many outages there were.
#[derive(Debug, Default)]
pub struct DatabaseHealth {
    down: AtomicBool,
    outages: AtomicU64,
}

impl DatabaseHealth {
    /// Notes the outcome of a storage call: an unavailable database starts
    /// an outage (logged with its cause if it is a new one); a success ends
    /// one. Other errors say nothing about availability and change nothing.
    pub fn observe<T>(&self, outcome: &Result<T, StoreError>) {
        match outcome {
            Ok(_) => self.reachable(),
            Err(e) => self.failed(e),
        }
    }

    /// Notes a failed storage call.
    pub fn failed(&self, e: &StoreError) {
        if e.is_unavailable() && !self.down.swap(true, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "the database is unavailable; writes and reads answer 503 until it is back: {e}"
            );
        }
    }

    /// Notes a storage call that succeeded.
    pub fn reachable(&self) {
        // Every commit and read calls this: a plain load keeps the usual
        // case (no outage) from writing the shared flag each time.
        if self.down.load(Ordering::Acquire) && self.down.swap(false, Ordering::AcqRel) {
            log::info!("the database is reachable again");
        }
    }

    /// True while the last storage call found the database unavailable.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Outages seen since start (an outage ends with the first success).
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Result<(), StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }

    #[test]
    fn an_outage_is_counted_once_however_many_calls_meet_it() {
        let health = DatabaseHealth::default();
        for _ in 0..100 {
            health.observe(&unavailable());
        }
        assert!(health.is_down());
        assert_eq!(health.outages(), 1);
        health.observe(&Ok(()));
        assert!(!health.is_down());
        health.observe(&unavailable());
        assert_eq!(health.outages(), 2, "a new outage after a success");
    }

    #[test]
    fn an_error_of_the_data_is_not_an_outage() {
        let health = DatabaseHealth::default();
        health.failed(&StoreError::InvalidUrl("x".into()));
        assert!(!health.is_down());
        assert_eq!(health.outages(), 0);
    }
}
