//! The control plane in this process: its database opened (and
//! migrated) at start, the publish authoriser that reads it, and the
//! REST API over it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrocast_config::Config;
use ferrocast_control::api::history::History;
use ferrocast_control::api::live::LiveStatus;
use ferrocast_control::api::viewer_tokens::MintFailure;
use ferrocast_control::api::vod::VodUploads;
use ferrocast_control::api::{self, ApiState, ControlHooks, HookFuture};
use ferrocast_control::{Backend, Database, DbAuthorizer};
use ferrocast_edge::{MAX_VIEWER_TOKEN_TTL_SECS, MintError, ViewerTokenMinter};
use ferrocast_ingest::{PublishAuthorizer, StaticAuthorizer};
use tracing::{info, warn};

use crate::live::LiveSources;

/// How often the authoriser checks the database for changes: a rotated
/// or revoked key stops working within this (plus a reload).
const POLL: Duration = Duration::from_millis(500);

/// How often the dashboard's charts get a sample.
const HISTORY_PERIOD: Duration = Duration::from_secs(2);

/// How long start-up waits for the first list of streams.
const FIRST_LOAD: Duration = Duration::from_secs(10);

/// The file under `data_dir` that the first admin token is written to.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The control plane of this process.
pub struct Control {
    /// Who may publish.
    pub authorizer: Arc<dyn PublishAuthorizer>,
    /// The REST API's routes, when there is a database; call with what
    /// is live once it runs (the API reports it and disconnects
    /// publishers).
    pub api: Option<ApiRoutes>,
    /// The database, when there is one.
    pub db: Option<Database>,
    /// The database authoriser, to reload at once on a notice.
    pub reloader: Option<Arc<DbAuthorizer>>,
}

/// Makes the API's routes over what is live, with the VOD upload queue
/// when there is one.
pub type ApiRoutes =
    Box<dyn FnOnce(LiveSources, Option<Arc<dyn VodUploads>>) -> axum::Router + Send>;

/// The API's hooks into `ferrocast up`: the authoriser to reload, what is
/// live (the SRT listener's publishers may be disconnected), and the
/// edge's viewer token key.
struct UpHooks {
    authorizer: Arc<DbAuthorizer>,
    live: LiveSources,
    minter: Option<ViewerTokenMinter>,
    vod: Option<Arc<dyn VodUploads>>,
}

impl ControlHooks for UpHooks {
    fn streams_changed<'a>(&'a self, _stream: &'a str) -> HookFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.authorizer.reload().await {
                // The poll retries; the change is committed either way.
                warn!(error = %e, "publish credentials not reloaded after a change");
            }
        })
    }

    fn disconnect<'a>(&'a self, stream: &'a str) -> HookFuture<'a, bool> {
        let done = self.live.srt.disconnect(stream);
        Box::pin(async move { done })
    }

    fn live(&self) -> HookFuture<'_, BTreeMap<String, LiveStatus>> {
        Box::pin(async { self.live.live() })
    }

    fn edge_port(&self) -> Option<u16> {
        self.live.edge_port.get().copied()
    }

    fn srt_port(&self) -> Option<u16> {
        Some(self.live.srt.local_addr().port())
    }

    fn thumbnail<'a>(&'a self, stream: &'a str) -> HookFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            self.live
                .thumbnail(stream)
                .await
                .map(|jpeg| jpeg.as_ref().clone())
        })
    }

    fn mint_viewer_token(
        &self,
        stream: &str,
        subject: Option<&str>,
        ttl_secs: u64,
    ) -> Result<(String, u64), MintFailure> {
        mint(self.minter.as_ref(), stream, subject, ttl_secs)
    }

    fn vod(&self) -> Option<Arc<dyn VodUploads>> {
        self.vod.clone()
    }
}

/// A viewer token from `minter` (the edge's newest HS256 key), valid
/// `ttl_secs` from now: the token and when it expires.
pub fn mint(
    minter: Option<&ViewerTokenMinter>,
    stream: &str,
    subject: Option<&str>,
    ttl_secs: u64,
) -> Result<(String, u64), MintFailure> {
    let minter = minter.ok_or(MintFailure::NotConfigured)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match minter.mint(stream, subject, now, ttl_secs) {
        Ok(token) => Ok((token, now + ttl_secs)),
        Err(MintError::BadTtl(_)) => Err(MintFailure::Invalid(format!(
            "ttl_secs must be 1 to {MAX_VIEWER_TOKEN_TTL_SECS} (got {ttl_secs})"
        ))),
        Err(e) => {
            warn!(error = %e, "viewer token not minted");
            Err(MintFailure::NotConfigured)
        }
    }
}

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
/// there is a database, the config file's alone otherwise; and, with
/// `serve_api` (the process that serves the API makes the first admin
/// token), the API.
pub async fn start(
    config: &Config,
    db: Option<Database>,
    serve_api: bool,
) -> anyhow::Result<Control> {
    let Some(db) = db else {
        return Ok(Control {
            authorizer: Arc::new(StaticAuthorizer::from_config(&config.streams)),
            api: None,
            db: None,
            reloader: None,
        });
    };
    if serve_api {
        bootstrap(&db, config).await?;
    }
    let authorizer = DbAuthorizer::start(db.clone(), &config.streams, POLL);
    if !authorizer.wait_loaded(FIRST_LOAD).await {
        warn!(
            "the control plane database did not answer within {FIRST_LOAD:?}: publishers of its \
             streams are refused until it does"
        );
    }
    let hooks_authorizer = authorizer.clone();
    let api_db = db.clone();
    let minter = config
        .edge
        .as_ref()
        .and_then(|edge| ViewerTokenMinter::from_config(&edge.jwt));
    let api = serve_api.then(|| {
        Box::new(move |live: LiveSources, vod: Option<Arc<dyn VodUploads>>| {
            let hooks: Arc<dyn ControlHooks> = Arc::new(UpHooks {
                authorizer: hooks_authorizer,
                live,
                minter,
                vod,
            });
            api::router(ApiState {
                db: api_db,
                history: History::sampled(hooks.clone(), HISTORY_PERIOD),
                hooks,
            })
        }) as ApiRoutes
    });
    Ok(Control {
        reloader: Some(authorizer.clone()),
        authorizer,
        api,
        db: Some(db),
    })
}

/// At the first start against an empty database: makes an admin token
/// and writes it, readable by this user only, to `data_dir/admin-token`
/// (never to the log).
pub async fn bootstrap(db: &Database, config: &Config) -> anyhow::Result<()> {
    let Some(made) = db
        .bootstrap_admin()
        .await
        .context("bootstrap admin token")?
    else {
        return Ok(());
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let path = config.data_dir.join(ADMIN_TOKEN_FILE);
    write_private(&path, &format!("{}\n", made.secret.expose()))
        .with_context(|| format!("writing the first admin token to {}", path.display()))?;
    warn!(
        file = %path.display(),
        "first start: an admin API token was written to this file; store it elsewhere and delete the file"
    );
    Ok(())
}

/// Writes `content` to a new file only its owner may read.
fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.as_bytes())
}
