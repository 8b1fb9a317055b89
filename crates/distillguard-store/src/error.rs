//! The store's one error type. Variants map onto HTTP statuses in the review API.

use crate::model::ReviewStatus;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The subject, note or entry does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The caller's version is stale (409); `current` lets it refresh and retry.
    #[error("version conflict: the current version is {current}")]
    VersionConflict { current: i64 },
    /// The review workflow does not allow this step (422).
    #[error("cannot go from {from} to {to}")]
    InvalidTransition {
        from: ReviewStatus,
        to: ReviewStatus,
    },
    /// A value the caller supplied is unacceptable (422).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The cursor was not made by this store for this filter and sort (400).
    #[error("invalid cursor")]
    InvalidCursor,
    /// A uniqueness rule was hit by a concurrent writer (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or is overloaded; retrying later may succeed (503).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored data the code cannot interpret: a bug or a manual edit.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt(what.into())
    }

    /// Whether retrying the same call later can succeed (the writer retries these with backoff).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

// PostgreSQL SQLSTATE classes and codes that mean "the server is there but not serving now".
const PG_TRANSIENT_CLASSES: [&str; 3] = ["08", "53", "57"];
// 25006 (read-only transaction): a failover pointed us at a replica for a while.
const PG_TRANSIENT_CODES: [&str; 5] = ["25006", "40001", "40P01", "55000", "55P03"];
// SQLite primary result codes (the low byte of the extended code sqlx reports).
const SQLITE_TRANSIENT: [i64; 6] = [
    5,  // SQLITE_BUSY
    6,  // SQLITE_LOCKED
    8,  // SQLITE_READONLY
    10, // SQLITE_IOERR
    13, // SQLITE_FULL
    14, // SQLITE_CANTOPEN
];

impl From<sqlx::Error> for StoreError {
    /// Classifies by SQLSTATE / SQLite result code, never by message text.
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::RowNotFound => StoreError::NotFound("row".to_string()),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                // SQLSTATEs can be all digits too, so ask which driver raised the error.
                let is_sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
                let transient = if is_sqlite {
                    code.parse::<i64>()
                        .is_ok_and(|sqlite_code| SQLITE_TRANSIENT.contains(&(sqlite_code & 0xff)))
                } else {
                    PG_TRANSIENT_CODES.contains(&code.as_str())
                        || PG_TRANSIENT_CLASSES
                            .iter()
                            .any(|class| code.starts_with(class))
                };
                if transient {
                    StoreError::Unavailable(error)
                } else if db.is_unique_violation() {
                    StoreError::Conflict(db.constraint().unwrap_or("unique").to_string())
                } else if db.is_foreign_key_violation() {
                    StoreError::NotFound("referenced subject".to_string())
                } else {
                    StoreError::Database(error)
                }
            }
            _ => StoreError::Database(error),
        }
    }
}
