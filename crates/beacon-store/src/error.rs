use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no supported backend or is malformed.
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// No connection could be had in time, or the connection broke: the
    /// database is down or unreachable. Callers should retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The database answered with an error to a query.
    #[error("database error: {0}")]
    Query(DieselError),
    /// An event of a batch has no session row to refer to: the session
    /// upsert returned no id for its token. Never expected; the batch's
    /// transaction is rolled back rather than store the event under a wrong
    /// session.
    #[error("no session id for an event of the batch")]
    MissingSession,
    /// The salt of a day could not be stored or read back (never expected:
    /// the insert either stored it or found one).
    #[error("no visitor salt for day {0}")]
    MissingSalt(i64),
    /// Stats bucket bounds that the rollups cannot answer exactly: each
    /// must start a quarter hour and be later than the one before.
    #[error("bucket bounds must be increasing quarter hours")]
    BucketBounds,
}

impl StoreError {
    /// True when retrying later may succeed (the database, not the data, is
    /// the problem).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match &e {
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | DieselError::BrokenTransactionManager => Self::Unavailable(e.to_string()),
            DieselError::DatabaseError(_, info)
                if info.message().contains("database is locked")
                    || info.message().contains("terminating connection")
                    || info.message().contains("server closed the connection")
                    || info.message().contains("no connection to the server")
                    || info.message().contains("the database system is") =>
            {
                Self::Unavailable(e.to_string())
            }
            _ => Self::Query(e),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Self::Unavailable(e.to_string())
    }
}
