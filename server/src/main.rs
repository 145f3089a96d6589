//! `crm-sync-server`: see the crate docs and server/README.md.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use crm_sync_server::limits::Limits;
use crm_sync_server::Config;

/// Reference backend for crm-sync (docs/backend/protocol.md on SQLite).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// SQLite database file (its directory is created), or a PostgreSQL URL
    /// `postgres://user:password@host/dbname` (docs/backend/postgres.md).
    #[arg(long, default_value = "data/crm.db")]
    db: PathBuf,
    /// Seed demo users (alice, bob, user01..user50; password `demo`),
    /// 200 customers, a few calendar events and a demo sheet.
    #[arg(long)]
    demo: bool,
    /// Directory of the web app (index.html answers unknown paths).
    #[arg(long = "static", default_value = "www/dist")]
    static_dir: PathBuf,
    /// The CSV file sync jobs read and write.
    #[arg(long, default_value = "data/sheet.csv")]
    sheet: PathBuf,
    /// Milliseconds added to each sync job's download phase.
    #[arg(long, default_value_t = 0)]
    sheet_latency_ms: u64,
    /// Sync jobs running at once, server-wide.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Allow requests from any origin.
    #[arg(long)]
    cors: bool,
    /// Largest request body, bytes (413 too_large).
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Largest record `fields` as JSON, bytes (422 invalid).
    #[arg(long, default_value_t = Limits::default().max_fields_bytes)]
    max_fields_bytes: usize,
    /// Most fields per record (422 invalid).
    #[arg(long, default_value_t = Limits::default().max_fields)]
    max_fields: usize,
    /// Longest comment, characters (422 invalid).
    #[arg(long, default_value_t = Limits::default().max_comment_chars)]
    max_comment_chars: usize,
    /// Most comments per record (422 invalid).
    #[arg(long, default_value_t = Limits::default().max_comments)]
    max_comments: usize,
    /// Failed logins per username per minute before 429.
    #[arg(long, default_value_t = Limits::default().login_failures_per_user)]
    login_failures_per_user: usize,
    /// Failed logins per client address per minute before 429.
    #[arg(long, default_value_t = Limits::default().login_failures_per_address)]
    login_failures_per_address: usize,
    /// Password checks at once (0 = the number of cores).
    #[arg(long, default_value_t = Limits::default().password_checks)]
    password_checks: usize,
    /// Logins that may wait for a password check before more get 429.
    #[arg(long, default_value_t = Limits::default().password_queue)]
    password_queue: usize,
    /// Bytes after which a feed page or event batch is cut (more: true).
    #[arg(long, default_value_t = Limits::default().feed_page_bytes)]
    feed_page_bytes: usize,
    /// Changes kept in the feed; older cursors get 410 cursor_expired.
    #[arg(long, default_value_t = Limits::default().changes_kept)]
    changes_kept: i64,
    /// Open event streams per user (the oldest is closed).
    #[arg(long, default_value_t = Limits::default().streams_per_user)]
    streams_per_user: usize,
    /// Unfinished sync jobs per user (429 too_many_jobs).
    #[arg(long, default_value_t = Limits::default().jobs_per_user)]
    jobs_per_user: usize,
    /// Seconds a connection has to send a request's headers (also the
    /// longest a keep-alive connection stays idle).
    #[arg(long, default_value_t = Limits::default().header_timeout.as_secs())]
    header_timeout_secs: u64,
    /// Seconds a request may take (event streams excepted).
    #[arg(long, default_value_t = Limits::default().request_timeout.as_secs())]
    request_timeout_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    let config = Config {
        host: args.host,
        port: args.port,
        db: args.db,
        demo: args.demo,
        static_dir: args.static_dir,
        sheet: args.sheet,
        sheet_latency: Duration::from_millis(args.sheet_latency_ms),
        workers: args.workers,
        cors: args.cors,
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_fields_bytes: args.max_fields_bytes,
            max_fields: args.max_fields,
            max_comment_chars: args.max_comment_chars,
            max_comments: args.max_comments,
            login_failures_per_user: args.login_failures_per_user,
            login_failures_per_address: args.login_failures_per_address,
            password_checks: args.password_checks,
            password_queue: args.password_queue,
            feed_page_bytes: args.feed_page_bytes,
            changes_kept: args.changes_kept,
            streams_per_user: args.streams_per_user,
            jobs_per_user: args.jobs_per_user,
            header_timeout: Duration::from_secs(args.header_timeout_secs),
            request_timeout: Duration::from_secs(args.request_timeout_secs),
            // No flag: docs/backend/protocol.md fixes it at 30 s.
            stream_ticket_ttl: Limits::default().stream_ticket_ttl,
            // No flags: docs/backend/protocol.md fixes presence at 30 s and 200 records.
            presence_ttl: Limits::default().presence_ttl,
            presence_entries: Limits::default().presence_entries,
        },
        ..Config::default()
    };
    let server = match crm_sync_server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("crm-sync-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts wait for this exact line.
    println!("crm-sync-server listening on http://{}", server.addr());
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
