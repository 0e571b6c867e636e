//! What every handler shares.

use beacon_model::Limits;
use beacon_store::Store;

use crate::ingest::Ingestor;

/// Shared application state.
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The ingest queue.
    pub ingestor: Ingestor,
    /// Input limits.
    pub limits: Limits,
}
