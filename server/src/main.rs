//! `crm-sync-server`: see the crate docs and server/README.md.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
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
    /// SQLite database file; its directory is created.
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
