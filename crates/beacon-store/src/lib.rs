#![doc = include_str!("../README.md")]

mod anomalies;
mod error;
mod history;
mod known;
mod read;
mod retention;
mod rollup;
mod rows;
mod salts;
mod series_counts;
mod store;
#[cfg(feature = "test-support")]
pub mod testing;
mod url;
mod write;

pub use anomalies::{AnomalyRow, DetectorStateRow};
pub use error::StoreError;
pub use history::{
    Bucket, BucketFigures, BucketStats, EventQuery, SessionQuery, SessionSummary, TopDimension,
    TopItem,
};
pub use retention::{Forgotten, PruneRun, Pruned};
pub use rollup::{RollupProgress, TimeRange};
pub use rows::{LiveRow, SessionRow, StoredEvent};
pub use salts::SALT_BYTES;
pub use series_counts::{ItemCounts, ViewDimension};
pub use store::{Backend, PoolOptions, Store};
pub use url::DatabaseUrl;
pub use write::{Inserted, INGEST_LOCK};
