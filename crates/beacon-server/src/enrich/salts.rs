//! The daily salts of the visitor ids, held in memory ahead of time so that
//! ingestion never waits for the database to get one.
//!
//! A task keeps yesterday's, today's and tomorrow's salt (UTC days) in
//! memory, creating the coming ones in the database well before midnight
//! (every instance gets the same bytes: the first to store a day's salt
//! wins), and deletes the salts of days that ended more than two days ago.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use beacon_enrich::Salt;
use beacon_store::Store;
use chrono::{DateTime, Utc};

use crate::clock::SharedClock;
use crate::tasks::Task;

/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;

/// How often the task makes sure the salts it needs exist.
const REFRESH: Duration = Duration::from_secs(600);

/// The UTC day of `t`, in days since the Unix epoch.
pub fn day_of(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros().div_euclid(DAY_US)
}

/// Why the salts could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum SaltError {
    /// The database did not answer.
    #[error(transparent)]
    Store(#[from] beacon_store::StoreError),
    /// The system's random source failed.
    #[error(transparent)]
    Random(#[from] beacon_enrich::EnrichError),
}

impl From<SaltError> for crate::StartError {
    fn from(e: SaltError) -> Self {
        match e {
            SaltError::Store(e) => Self::Store(e),
            SaltError::Random(e) => Self::Enrich(e),
        }
    }
}

/// The salts of the days around now, by day.
#[derive(Default)]
pub struct Salts {
    days: RwLock<BTreeMap<i64, Arc<Salt>>>,
}

impl Salts {
    /// The salt of `day`, when it is held (never waits for the database).
    pub fn get(&self, day: i64) -> Option<Arc<Salt>> {
        self.days
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&day)
            .cloned()
    }

    /// Reads (or creates) the salts of the day before `now`'s, its day and
    /// the next, keeps them, forgets older ones, and deletes from the
    /// database the salts of days that ended more than two days ago.
    pub fn refresh(&self, store: &Store, now: DateTime<Utc>) -> Result<(), SaltError> {
        let today = day_of(now);
        let mut fresh = BTreeMap::new();
        for day in today - 1..=today + 1 {
            let offer = *Salt::random()?.as_bytes();
            fresh.insert(
                day,
                Arc::new(Salt::from_bytes(store.visitor_salt(day, offer)?)),
            );
        }
        *self.days.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        // Day D is in use until D + 1 starts; deleted two days later.
        store.delete_salts_before(today - 2)?;
        Ok(())
    }
}

/// Fills `salts` once (start-up needs the database anyway), then keeps
/// them fresh on a task the application stops at shutdown.
pub async fn start(
    salts: Arc<Salts>,
    store: Store,
    clock: SharedClock,
) -> Result<Task, crate::StartError> {
    {
        let (salts, store, now) = (Arc::clone(&salts), store.clone(), clock.now());
        actix_web::web::block(move || salts.refresh(&store, now))
            .await
            .map_err(|e| crate::StartError::Task(e.to_string()))??;
    }
    Ok(Task::spawn("visitor salts", move |mut stop| async move {
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(REFRESH) => {}
            }
            let (salts, store, now) = (Arc::clone(&salts), store.clone(), clock.now());
            match actix_web::web::block(move || salts.refresh(&store, now)).await {
                Ok(Ok(())) => {}
                // The salts held cover the next day: a failure is retried
                // long before ingestion would miss one.
                Ok(Err(e)) => log::warn!("visitor salts not refreshed: {e}"),
                Err(e) => log::warn!("visitor salts not refreshed: {e}"),
            }
        }
    }))
}
