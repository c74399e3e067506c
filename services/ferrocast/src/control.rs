//! The control plane's database in this process: opened (and migrated) at
//! start, and the publish authoriser that reads it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrocast_config::Config;
use ferrocast_control::{Backend, Database, DbAuthorizer};
use ferrocast_ingest::{PublishAuthorizer, StaticAuthorizer};
use tracing::{info, warn};

/// How often the authoriser checks the database for changes: a rotated
/// or revoked key stops working within this (plus a reload).
const POLL: Duration = Duration::from_millis(500);

/// How long start-up waits for the first list of streams.
const FIRST_LOAD: Duration = Duration::from_secs(10);

/// Opens `database_url`, or with `default_sqlite` (`ferrocast up`) the
/// SQLite file `control.db` under `data_dir` when it is unset; `None`
/// when neither.
pub async fn open(config: &Config, default_sqlite: bool) -> anyhow::Result<Option<Database>> {
    let url = match (&config.database_url, default_sqlite) {
        (Some(url), _) => url.expose().to_owned(),
        (None, true) => format!("sqlite://{}", config.data_dir.join("control.db").display()),
        (None, false) => return Ok(None),
    };
    // The URL is not logged: it may hold a password.
    let db = Database::open(&url).await.context("database_url")?;
    match db.backend() {
        Backend::Sqlite => info!(
            file = %url.trim_start_matches("sqlite://").trim_start_matches("sqlite:"),
            "control plane database: SQLite"
        ),
        Backend::Postgres => info!("control plane database: PostgreSQL"),
    }
    Ok(Some(db))
}

/// Who may publish: the database's streams after the config file's when
/// there is a database, the config file's alone otherwise.
pub async fn authorizer(config: &Config, db: Option<Database>) -> Arc<dyn PublishAuthorizer> {
    let Some(db) = db else {
        return Arc::new(StaticAuthorizer::from_config(&config.streams));
    };
    let authorizer = DbAuthorizer::start(db, &config.streams, POLL);
    if !authorizer.wait_loaded(FIRST_LOAD).await {
        warn!(
            "the control plane database did not answer within {FIRST_LOAD:?}: publishers of its \
             streams are refused until it does"
        );
    }
    authorizer
}
