//! `crm-sync-server`: the reference backend of docs/backend/protocol.md on SQLite.
//!
//! The binary parses flags into a [`Config`] and calls [`start`]; integration
//! tests call [`start`] directly on port 0.
//!
//! ```no_run
//! # async fn run() -> Result<(), crm_sync_server::StartError> {
//! let server = crm_sync_server::start(crm_sync_server::Config {
//!     port: 0,
//!     demo: true,
//!     ..Default::default()
//! })
//! .await?;
//! println!("listening on {}", server.addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(rustdoc::broken_intra_doc_links)]

pub mod auth;
pub mod changes;
pub mod db;
pub mod demo;
pub mod error;
pub mod extract;
pub mod history;
pub mod idempotency;
pub mod job_leases;
pub mod limits;
pub mod logins;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod presence;
pub mod record_routes;
pub mod records;
pub mod router;
pub mod sheet;
pub mod stream_tickets;
pub mod streams;
pub mod sync_conflicts;
pub mod sync_jobs;
pub mod sync_model;
pub mod sync_routes;
pub mod validate;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::limits::Limits;
use crate::logins::LoginGuard;
use crate::streams::Streams;
use crate::sync_jobs::{SheetConfig, SyncJobs};

/// Everything the server is told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind.
    pub host: String,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// SQLite database file (its directory is created).
    pub db: PathBuf,
    /// Seed demo users, customers, events and sheet.
    pub demo: bool,
    /// Web app directory served for non-API paths.
    pub static_dir: PathBuf,
    /// The CSV file sync jobs read and write.
    pub sheet: PathBuf,
    /// Delay added to each job's download phase.
    pub sheet_latency: Duration,
    /// Sync jobs running at once, server-wide.
    pub workers: usize,
    /// Allow any origin.
    pub cors: bool,
    /// How long finished sync jobs can be asked about (no flag: docs/backend/protocol.md
    /// says 10 minutes; tests shorten it).
    pub keep_finished_jobs: Duration,
    /// Every bound on clients (docs/backend/protocol.md, "Limits").
    pub limits: Limits,
    /// How often expired tokens, answers, jobs and old changes are cleaned
    /// up (no flag; tests shorten it).
    pub janitor_every: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            db: "data/crm.db".into(),
            demo: false,
            static_dir: "www/dist".into(),
            sheet: "data/sheet.csv".into(),
            sheet_latency: Duration::ZERO,
            workers: 16,
            cors: false,
            keep_finished_jobs: sync_jobs::KEEP_FINISHED,
            limits: Limits::default(),
            janitor_every: Duration::from_secs(60),
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Arc<Db>,
    /// Sync jobs.
    pub jobs: Arc<SyncJobs>,
    /// Turns `true` when the server stops, ending event streams.
    pub shutdown: watch::Receiver<bool>,
    /// The limits in force.
    pub limits: Arc<Limits>,
    /// Login throttling and password checkers.
    pub logins: Arc<LoginGuard>,
    /// Open event streams, per user and token.
    pub streams: Arc<Streams>,
    /// The server's figures (`/metrics`, `/api/metrics`).
    pub metrics: Arc<metrics::ServerMetrics>,
    /// Who has which record open (in memory; shared between instances on
    /// PostgreSQL).
    pub presence: Arc<presence::Presence>,
}

/// Why the server could not start.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    janitor: JoinHandle<()>,
}

impl Server {
    /// The address it listens on (with the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends event streams, waits for open requests.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.janitor.abort();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "server task failed");
        }
    }
}

/// Opens the database, seeds demo data if asked, binds and starts serving.
///
/// # Errors
/// When the database cannot be opened, the demo data cannot be written or the
/// address cannot be bound.
pub async fn start(config: Config) -> Result<Server, StartError> {
    let db_path = config.db.clone();
    let db = Arc::new(tokio::task::spawn_blocking(move || Db::open(&db_path)).await??);
    if config.demo {
        demo::seed(&db).await.map_err(|e| e.message)?;
        let sheet = config.sheet.clone();
        tokio::task::spawn_blocking(move || demo::write_demo_sheet(&sheet)).await??;
    }
    let jobs = Arc::new(
        SyncJobs::new(
            Arc::clone(&db),
            SheetConfig {
                path: config.sheet.clone(),
                latency: config.sheet_latency,
            },
            config.workers,
            config.keep_finished_jobs,
            config.limits.jobs_per_user,
            tokio::runtime::Handle::current(),
        )
        .map_err(|e| e.message)?,
    );
    let metrics = Arc::new(metrics::ServerMetrics::new());
    jobs.report_to(Arc::clone(&metrics));
    let (stop, shutdown) = watch::channel(false);
    let limits = Arc::new(config.limits.clone());
    let logins = Arc::new(LoginGuard::new(&limits, Arc::clone(&db)).map_err(|e| e.message)?);
    let streams =
        Arc::new(Streams::new(limits.streams_per_user, Arc::clone(&db)).map_err(|e| e.message)?);
    tokio::spawn(Arc::clone(&streams).sweep(shutdown.clone()));
    tokio::spawn(Arc::clone(&jobs).beat(shutdown.clone()));
    let presence = presence::Presence::start(
        db::is_postgres_url(&config.db)
            .then(|| config.db.to_str())
            .flatten(),
        limits.presence_ttl,
        limits.presence_entries,
    )
    .map_err(|e| e.message)?;
    let state = AppState {
        db: Arc::clone(&db),
        jobs: Arc::clone(&jobs),
        shutdown: shutdown.clone(),
        limits: Arc::clone(&limits),
        logins: Arc::clone(&logins),
        streams: Arc::clone(&streams),
        metrics: Arc::clone(&metrics),
        presence,
    };
    if !config.static_dir.is_dir() {
        tracing::warn!(dir = %config.static_dir.display(), "static directory missing; serving the API only");
    }
    let app = router::router(
        state,
        &router::RouterOptions {
            static_dir: config.static_dir.clone(),
            cors: config.cors,
            limits: (*limits).clone(),
        },
    );
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(router::serve(
        listener,
        app,
        shutdown.clone(),
        limits.header_timeout,
    ));
    let janitor = tokio::spawn(janitor(db, jobs, limits, metrics, config.janitor_every));
    tracing::info!(%addr, "listening");
    Ok(Server {
        addr,
        stop,
        task,
        janitor,
    })
}

/// Forgets expired tokens, idempotency answers, finished jobs, old login
/// failures and changes beyond the ones kept.
async fn janitor(
    db: Arc<Db>,
    jobs: Arc<SyncJobs>,
    limits: Arc<Limits>,
    metrics: Arc<metrics::ServerMetrics>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    loop {
        tick.tick().await;
        jobs.purge();
        metrics.upkeep();
        let keep = limits.changes_kept;
        let keep_jobs = jobs.keep_finished();
        let purged = db
            .write(move |tx| {
                Ok(auth::purge_expired(tx)?
                    + stream_tickets::purge(tx)?
                    + streams::purge(tx)?
                    + job_leases::purge(tx, keep_jobs)?
                    + idempotency::purge(tx)?
                    + logins::purge(tx)?
                    + changes::prune(tx, keep)?)
            })
            .await;
        if let Err(e) = purged {
            tracing::warn!(error = %e.message, "cleanup failed");
        }
    }
}
