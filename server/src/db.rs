//! SQLite access: one writer connection (SQLite has one writer anyway, so a
//! mutex is cheaper than busy-waiting), a small pool of readers, WAL mode and
//! schema migrations at start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::watch;

use crate::error::ApiError;

/// Idle reader connections kept open; more are opened on demand.
const MAX_IDLE_READERS: usize = 8;

/// Each entry moves the schema one version up; `PRAGMA user_version` says how
/// many have run. Never edit an entry that shipped: add one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL);
CREATE TABLE tokens (
  token_hash TEXT PRIMARY KEY,
  user TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX tokens_expiry ON tokens (expires_at);
CREATE TABLE records (
  collection TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  updated_at TEXT NOT NULL,
  updated_by TEXT NOT NULL,
  fields TEXT NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE TABLE comments (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  collection TEXT NOT NULL,
  record_id TEXT NOT NULL,
  id TEXT NOT NULL,
  author TEXT NOT NULL,
  text TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (collection, record_id, id)
);
CREATE TABLE changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  collection TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  op TEXT NOT NULL,
  record TEXT
);
CREATE TABLE idempotency (
  user TEXT NOT NULL,
  key TEXT NOT NULL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  status INTEGER NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (user, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_age ON idempotency (created_at);
CREATE TABLE sheet_sync (
  collection TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (collection, id)
) WITHOUT ROWID;
"#,
    r#"
-- The changes table stops copying records: a change names what changed
-- (the PATCH's fields, or the comment id) and the feed serves records from
-- their current state. Old copies are dropped.
ALTER TABLE changes ADD COLUMN what TEXT;
UPDATE changes SET record = NULL;
-- A key names one request: the hash of method, path and body is kept with it.
ALTER TABLE idempotency ADD COLUMN request_hash TEXT;
-- An answer that is a record is kept as a reference to that record's
-- version, rebuilt on replay from the record and the changes after it.
ALTER TABLE idempotency ADD COLUMN record_ref TEXT;
"#,
    r#"
-- Each record's change history: who changed which fields from what to what.
-- Keyed by the record and version, so a record's newest entries are a walk
-- of the primary key whatever the size of the collection.
CREATE TABLE history (
  collection TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  at TEXT NOT NULL,
  by TEXT NOT NULL,
  op TEXT NOT NULL,
  sync_id TEXT,
  changes TEXT NOT NULL,
  PRIMARY KEY (collection, id, version)
) WITHOUT ROWID;
"#,
    r#"
-- Single-use tickets that open /api/events, so a bearer token never goes
-- into a URL. Hashed like tokens; `expires_at` in milliseconds.
CREATE TABLE stream_tickets (
  ticket_hash TEXT PRIMARY KEY,
  user TEXT NOT NULL,
  token_hash TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
];

/// The database: a file in WAL mode shared by every request and sync job.
pub struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    epoch: String,
    head: watch::Sender<i64>,
}

/// Why the database could not be opened.
pub type OpenError = Box<dyn std::error::Error + Send + Sync>;

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // Long enough for a sync batch of another process (a second server on the
    // same file) to finish; the writer mutex makes it rare inside one process.
    conn.busy_timeout(Duration::from_secs(10))?;
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    // NORMAL is durable against a killed process in WAL mode (only a power cut
    // can lose the last commits), which is what the restart test checks.
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-done SQLite
    // transaction behind (it rolls back on drop), so the data is still good.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Current time in whole seconds since the Unix epoch.
pub fn unix_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Current time as RFC 3339 UTC with milliseconds.
pub fn timestamp_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `n` random bytes as lowercase hex.
///
/// # Errors
/// When the operating system has no randomness to give.
pub fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Db {
    /// Opens (creating if needed) the database file and runs the migrations.
    ///
    /// # Errors
    /// When the file or its directory cannot be created or the schema cannot be migrated.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let mut conn = open_connection(path)?;
        migrate(&mut conn)?;
        let fresh_epoch = random_hex(8).map_err(|e| e.message)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)",
            [&fresh_epoch],
        )?;
        let epoch: String =
            conn.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
                r.get(0)
            })?;
        let head = current_head(&conn)?;
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            epoch,
            head: watch::channel(head).0,
        })
    }

    /// Random id of this database, part of every cursor so that a cursor
    /// from a wiped or different database is rejected.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Sequence number of the last committed change.
    pub fn head(&self) -> i64 {
        *self.head.borrow()
    }

    /// A receiver that wakes whenever a change is committed.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer connection,
    /// on a blocking thread; commits when `f` returns `Ok`, rolls back otherwise.
    ///
    /// # Errors
    /// Whatever `f` returns, or an internal error from SQLite.
    pub async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&db.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            let head = current_head(&conn)?;
            db.head.send_if_modified(|h| {
                if *h < head {
                    *h = head;
                    true
                } else {
                    false
                }
            });
            Ok(out)
        })
        .await?
    }

    /// Runs `f` in one read transaction (a consistent snapshot) on a pooled
    /// reader connection, on a blocking thread.
    ///
    /// # Errors
    /// Whatever `f` returns, or an internal error from SQLite.
    pub async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let pooled = lock(&db.readers).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => open_connection(&db.path)?,
            };
            let out = {
                let tx = conn.transaction()?;
                let out = f(&tx);
                tx.finish()?;
                out
            };
            let mut readers = lock(&db.readers);
            if readers.len() < MAX_IDLE_READERS {
                readers.push(conn);
            }
            out
        })
        .await?
    }
}

fn current_head(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
        r.get(0)
    })
}

fn migrate(conn: &mut Connection) -> Result<(), OpenError> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let done = usize::try_from(done).unwrap_or(0);
    if done > MIGRATIONS.len() {
        return Err(format!(
            "database schema version {done} is newer than this server ({})",
            MIGRATIONS.len()
        )
        .into());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "schema migrated");
    }
    Ok(())
}
