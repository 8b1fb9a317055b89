//! The two backends. Their methods are generated from the same macro bodies (`sql_*.rs`), so the
//! SQL is written once; the few dialect differences are the associated constants below.
//!
//! Why macros and not generics over `sqlx::Database`: generic sqlx code needs a higher-ranked
//! bound per bound type and per executor, which buries the SQL; the macro keeps the code plain.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, Sqlite};

use crate::error::StoreError;
use crate::StoreOptions;

/// File name of the embedded database inside the data directory.
pub const SQLITE_FILE: &str = "distillguard.db";

static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// PostgreSQL, for production.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    pub(crate) options: StoreOptions,
}

/// SQLite, the embedded default.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    pub(crate) options: StoreOptions,
}

impl PgStore {
    /// Row lock for read-modify-write inside a transaction.
    pub(crate) const FOR_UPDATE: &'static str = " FOR UPDATE";
    pub(crate) const LEAST: &'static str = "LEAST";

    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await?;
        Self::from_pool(pool, options).await
    }

    /// Wraps an existing pool and brings its schema up to date.
    pub async fn from_pool(pool: PgPool, options: StoreOptions) -> Result<Self, StoreError> {
        PG_MIGRATIONS.run(&pool).await?;
        Ok(Self { pool, options })
    }

    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl SqliteStore {
    /// SQLite locks the whole database for writing, so no row lock is needed (or exists).
    pub(crate) const FOR_UPDATE: &'static str = "";
    pub(crate) const LEAST: &'static str = "MIN";

    /// Opens (creating if missing) the database at a `sqlite://` URL.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)?;
        Self::open(connect, options).await
    }

    /// Opens (creating if missing) `distillguard.db` in `data_dir`.
    pub async fn open_in(data_dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Unavailable(e.into()))?;
        let connect = SqliteConnectOptions::new().filename(data_dir.join(SQLITE_FILE));
        Self::open(connect, options).await
    }

    async fn open(
        connect: SqliteConnectOptions,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        // WAL lets the review API read while the writer writes; NORMAL sync is durable across
        // process crashes (only an OS crash can lose the last commits), the usual WAL pairing.
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(options.sqlite_busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.clamp(1, 8))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        SQLITE_MIGRATIONS.run(&pool).await?;
        Ok(Self { pool, options })
    }

    /// `BEGIN IMMEDIATE` takes the write lock up front: a deferred transaction that reads and
    /// then writes fails with SQLITE_BUSY (without waiting) if another writer got in between.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

macro_rules! impl_common {
    ($store:ty) => {
        impl $store {
            pub(crate) fn now_ms(&self) -> i64 {
                (self.options.clock)().timestamp_millis()
            }

            /// A round trip to the database, for readiness checks.
            pub async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            pub async fn close(&self) {
                self.pool.close().await;
            }
        }
    };
}

impl_common!(PgStore);
impl_common!(SqliteStore);
crate::sql_write::impl_write!(PgStore, Postgres);
crate::sql_write::impl_write!(SqliteStore, Sqlite);
crate::sql_read::impl_read!(PgStore, Postgres);
crate::sql_read::impl_read!(SqliteStore, Sqlite);
crate::sql_review::impl_review!(PgStore, Postgres);
crate::sql_review::impl_review!(SqliteStore, Sqlite);
crate::sql_decisions::impl_decisions!(PgStore, Postgres);
crate::sql_decisions::impl_decisions!(SqliteStore, Sqlite);

/// Keeps `Duration` in the public options without a chrono dependency for callers.
pub(crate) const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
