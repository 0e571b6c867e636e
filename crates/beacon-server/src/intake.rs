//! The seam between `/track` and what takes its events: the group-commit
//! writers (direct mode, the default) or the Redis buffer (buffered mode,
//! `--redis-url`). `/track` calls [`Intake::submit`] either way and answers
//! 200 once it returns: after the commit, or after Redis accepted the
//! events.

use std::sync::Arc;

use beacon_model::NewEvent;

use crate::buffer::{AppendError, Appender, BufferStats};
use crate::ingest::{IngestError, Ingestor};

/// Where accepted events go.
#[derive(Clone)]
pub enum Intake {
    /// Straight to the database through the group-commit writers.
    Direct(Ingestor),
    /// To the Redis stream; the drain stores them later.
    Buffered(Appender, Arc<BufferStats>),
}

/// Why events were not accepted, by either path.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The direct path's failure.
    #[error(transparent)]
    Direct(#[from] IngestError),
    /// The buffer's failure.
    #[error(transparent)]
    Buffered(#[from] AppendError),
}

impl Intake {
    /// Hands the events over and waits until they are safe: committed
    /// (direct) or accepted by Redis (buffered).
    pub async fn submit(&self, events: Vec<NewEvent>) -> Result<(), IntakeError> {
        match self {
            Self::Direct(ingestor) => Ok(ingestor.submit(events).await?),
            Self::Buffered(appender, _) => Ok(appender.submit(events).await?),
        }
    }

    /// Events waiting for a commit in this process right now (buffered:
    /// none wait here; see the backlog).
    pub fn queued(&self) -> usize {
        match self {
            Self::Direct(ingestor) => ingestor.queued(),
            Self::Buffered(..) => 0,
        }
    }

    /// Ingest transactions this instance committed since start.
    pub fn transactions(&self) -> u64 {
        match self {
            Self::Direct(ingestor) => ingestor.transactions(),
            Self::Buffered(_, stats) => stats.transactions(),
        }
    }

    /// The buffer's figures, in buffered mode.
    pub fn buffer(&self) -> Option<&BufferStats> {
        match self {
            Self::Direct(_) => None,
            Self::Buffered(_, stats) => Some(stats),
        }
    }
}
