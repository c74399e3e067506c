//! The connection pool, the migrations, and what can go wrong.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions};

/// The migrations in the repository's `migrations/`, embedded at build
/// time; applied in order at every start, forward only.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Which database a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (bundled SQLite; the zero-dependency default).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A control-plane store failure. Messages never carry a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `postgres://`.
    #[error("database_url must start with sqlite: or postgres:// (got {scheme:?})")]
    Scheme {
        /// What it started with.
        scheme: String,
    },
    /// The database could not be reached or opened.
    #[error("cannot open the database ({backend:?}): {source}")]
    Connect {
        /// Which kind.
        backend: Backend,
        /// Why.
        source: sqlx::Error,
    },
    /// A migration failed (the database is left at the last one applied).
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// The name or id is taken.
    #[error("{what} {name:?} already exists")]
    Duplicate {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// No such thing.
    #[error("{what} {name:?} not found")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// Input the store refuses (a bad stream name, an unknown role).
    #[error("{0}")]
    Invalid(String),
    /// A row holds something this version does not understand.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl DbError {
    /// A unique-constraint violation becomes [`DbError::Duplicate`].
    pub(crate) fn or_duplicate(e: sqlx::Error, what: &'static str, name: &str) -> DbError {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Duplicate {
                what,
                name: name.to_owned(),
            },
            _ => DbError::Query(e),
        }
    }
}

/// The control-plane database.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

/// How long a query waits for a pooled connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl Database {
    /// Opens `url` (`sqlite:PATH` / `sqlite://PATH`, created if missing, or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`) and applies every
    /// migration not yet applied.
    pub async fn open(url: &str) -> Result<Database, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DbError::Scheme {
                scheme: url.split(':').next().unwrap_or_default().to_owned(),
            });
        };
        let connect = |source| DbError::Connect { backend, source };
        let url = match backend {
            // Create the file when missing.
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        // Statements are not logged: they may carry hashes, never worth
        // a log line each.
        let options = AnyConnectOptions::from_str(&url)
            .map_err(connect)?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            // SQLite has one writer; more connections only queue on its lock.
            .max_connections(if backend == Backend::Sqlite { 1 } else { 8 })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(connect)?;
        MIGRATOR.run(&pool).await?;
        Ok(Database { pool, backend })
    }

    /// A SQLite file at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Database, DbError> {
        Database::open(&format!("sqlite://{}", path.display())).await
    }

    /// Which kind of database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for the store's modules.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The change counter: bumped by every change to streams or tokens.
    pub async fn revision(&self) -> Result<i64, DbError> {
        let (revision,): (i64,) =
            sqlx::query_as("SELECT revision FROM control_revision WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(revision)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Bumps the change counter inside `tx`.
pub(crate) async fn bump_revision(tx: &mut sqlx::AnyConnection) -> Result<(), DbError> {
    sqlx::query("UPDATE control_revision SET revision = revision + 1 WHERE id = 1")
        .execute(tx)
        .await?;
    Ok(())
}

/// Now, Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
