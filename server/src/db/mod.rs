//! The store: one set of operations with two engines behind it.
//!
//! - **SQLite** (`--db path/to/crm.db`, the default): one writer connection
//!   (SQLite has one writer anyway, so a mutex is cheaper than busy-waiting),
//!   a small pool of readers, WAL mode.
//! - **PostgreSQL** (`--db postgres://user:password@host/dbname`): a bounded
//!   pool of connections shared by any number of server instances on the same
//!   database; see `docs/backend/postgres.md`.
//!
//! Every store operation takes a [`Tx`] and runs the same SQL on both (written
//! with `?1` placeholders, which PostgreSQL sees as `$1`); the few statements
//! that differ ask [`Tx::engine`]. No route knows which engine runs.
//!
//! The PostgreSQL client is the `postgres` crate (the blocking face of
//! `tokio-postgres`): every store operation here is synchronous code on a
//! blocking thread, as rusqlite's are, so one operation serves both engines
//! without an async rewrite, and PostgreSQL's types stay exact (the `sqlx`
//! "any database" driver knows few types and no LISTEN/NOTIFY).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{watch, Semaphore};

use crate::error::ApiError;

mod migrations;
mod pg;
mod values;

use migrations::{migrate, migrate_postgres};
use pg::*;
use values::{pg_value, sqlite_value};
pub use values::{FromSql, Param, Row, SqlValue};

/// Idle reader connections kept open; more are opened on demand.
const MAX_IDLE_READERS: usize = 8;

/// Which engine a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database, possibly shared by several server instances.
    Postgres,
}

enum TxInner<'c> {
    Sqlite(rusqlite::Transaction<'c>),
    Postgres(RefCell<PgTx<'c>>),
}

/// One transaction on either engine: what every store operation is given.
///
/// A write transaction on PostgreSQL runs at READ COMMITTED: a version check
/// is a conditional `UPDATE ... WHERE version = ?` (never read-then-write),
/// which PostgreSQL re-checks against the row another transaction just
/// committed, so of two writers of one version exactly one succeeds. A read
/// transaction is one consistent snapshot on both engines.
pub struct Tx<'c> {
    inner: TxInner<'c>,
    /// The highest changes-feed number this transaction took.
    last_seq: Cell<i64>,
}

fn params_of(params: &[&dyn Param]) -> Vec<SqlValue> {
    params.iter().map(|p| p.sql_value()).collect()
}

fn pg_params(values: &[SqlValue]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

impl Tx<'_> {
    /// The engine this transaction runs on, for the few statements that differ.
    pub fn engine(&self) -> Engine {
        match self.inner {
            TxInner::Sqlite(_) => Engine::Sqlite,
            TxInner::Postgres(_) => Engine::Postgres,
        }
    }

    /// Runs a statement; returns the rows it changed.
    ///
    /// # Errors
    /// Internal errors from the database.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize, ApiError> {
        let values = params_of(params);
        match &self.inner {
            TxInner::Sqlite(tx) => Ok(tx
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(values.iter()))?),
            TxInner::Postgres(cell) => {
                let mut pg = cell.borrow_mut();
                let stmt = pg.statement(sql)?;
                let n = pg.tx.execute(&stmt, &pg_params(&values))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// Every row a query returns.
    ///
    /// # Errors
    /// Internal errors from the database.
    pub fn query(&self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>, ApiError> {
        let values = params_of(params);
        match &self.inner {
            TxInner::Sqlite(tx) => {
                let mut stmt = tx.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut row = Vec::with_capacity(columns);
                    for i in 0..columns {
                        row.push(sqlite_value(r.get_ref(i)?)?);
                    }
                    out.push(Row(row));
                }
                Ok(out)
            }
            TxInner::Postgres(cell) => {
                let mut pg = cell.borrow_mut();
                let stmt = pg.statement(sql)?;
                let rows = pg.tx.query(&stmt, &pg_params(&values))?;
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| pg_value(r, i))
                            .collect::<Result<Vec<_>, _>>()
                            .map(Row)
                    })
                    .collect()
            }
        }
    }

    /// The first row of a query, if any.
    ///
    /// # Errors
    /// Internal errors from the database.
    pub fn query_opt(&self, sql: &str, params: &[&dyn Param]) -> Result<Option<Row>, ApiError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row of a query that always returns one.
    ///
    /// # Errors
    /// Internal errors from the database, or none when no row came back.
    pub fn query_one(&self, sql: &str, params: &[&dyn Param]) -> Result<Row, ApiError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| ApiError::internal("database: a query returned no row"))
    }

    /// Ends the transaction, keeping what it wrote.
    fn commit(self) -> Result<(), ApiError> {
        match self.inner {
            TxInner::Sqlite(tx) => tx.commit()?,
            TxInner::Postgres(cell) => cell.into_inner().tx.commit()?,
        }
        Ok(())
    }

    /// The highest changes-feed number this transaction took (0: none).
    pub fn last_seq(&self) -> i64 {
        self.last_seq.get()
    }

    /// Waits until no other transaction holds `key`, then holds it until
    /// this one ends. SQLite runs one writer at a time, so there it is
    /// already held; on PostgreSQL it is a transaction-scoped advisory lock,
    /// which makes a check-then-write (an idempotency key, a calendar
    /// booking) hold across every server instance.
    ///
    /// # Errors
    /// Internal errors from the database.
    pub fn lock(&self, key: &str) -> Result<(), ApiError> {
        if self.engine() == Engine::Postgres {
            self.query(
                "SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))) AS held",
                &[&key],
            )?;
        }
        Ok(())
    }

    /// Appends one entry to the changes feed; returns its sequence number.
    ///
    /// # Errors
    /// Internal errors from the database.
    pub fn insert_change(
        &self,
        collection: &str,
        id: &str,
        version: i64,
        op: &str,
        what: Option<&str>,
    ) -> Result<i64, ApiError> {
        let sql = match self.engine() {
            Engine::Sqlite => {
                "INSERT INTO changes (collection, id, version, op, what)
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq"
            }
            // The transaction id is taken before the sequence number (the
            // materialized CTE runs first): the feed watcher relies on a
            // writer holding an unsettled number being an open transaction.
            Engine::Postgres => {
                "WITH held AS MATERIALIZED (SELECT pg_current_xact_id() AS xid)
                 INSERT INTO changes (seq, collection, id, version, op, what)
                 SELECT nextval('changes_seq'), ?1, ?2, ?3, ?4, ?5 FROM held RETURNING seq"
            }
        };
        let seq: i64 = self
            .query_one(sql, &[&collection, &id, &version, &op, &what])?
            .get(0)?;
        self.last_seq.set(self.last_seq.get().max(seq));
        Ok(seq)
    }
}

/// The database: SQLite or PostgreSQL, shared by every request and sync job.
pub struct Db {
    engine: Store,
    epoch: String,
    head: Arc<watch::Sender<i64>>,
}

enum Store {
    Sqlite(Sqlite),
    Postgres(Arc<Pg>),
}

struct Sqlite {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
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
    // A panic while holding the lock cannot leave a half-done transaction
    // behind (both engines roll back on drop), so the data is still good.
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

/// Whether `--db` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(db: &Path) -> bool {
    db.to_str()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

impl Db {
    /// Opens the database `--db` names and runs the migrations: a
    /// `postgres://` URL is PostgreSQL, anything else a SQLite file (created
    /// with its directory if needed).
    ///
    /// Blocks: call it on a blocking thread.
    ///
    /// # Errors
    /// When the file or its directory cannot be created, the server cannot
    /// be reached or the schema cannot be migrated.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        if is_postgres_url(path) {
            return Self::open_postgres(path.to_str().unwrap_or_default());
        }
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
            engine: Store::Sqlite(Sqlite {
                path: path.to_owned(),
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
            }),
            epoch,
            head: Arc::new(watch::channel(head).0),
        })
    }

    fn open_postgres(url: &str) -> Result<Self, OpenError> {
        let config: postgres::Config = url.parse()?;
        let pg = Arc::new(Pg {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(PG_CONNECTIONS)),
            stop: Arc::new(AtomicBool::new(false)),
        });
        let mut conn = pg.connect().map_err(|e| e.message)?;
        migrate_postgres(&mut conn.client)?;
        let fresh_epoch = random_hex(8).map_err(|e| e.message)?;
        conn.client.execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT DO NOTHING",
            &[&fresh_epoch],
        )?;
        let epoch: String = conn
            .client
            .query_one("SELECT value FROM meta WHERE key = 'epoch'", &[])?
            .try_get(0)?;
        let mut watcher = FeedWatcher::default();
        let started = Instant::now();
        let mut head = 0;
        // Settled once before serving, so a new instance starts at the present.
        while started.elapsed() < Duration::from_secs(10) {
            let (settled, pending) = watcher.look(&mut conn.client)?;
            head = settled;
            if !pending {
                break;
            }
            std::thread::sleep(PG_SETTLE_POLL);
        }
        pg.give_back(conn);
        let head = Arc::new(watch::channel(head).0);
        let (watch_pg, watch_head) = (Arc::clone(&pg), Arc::clone(&head));
        std::thread::Builder::new()
            .name("pg-feed-watcher".into())
            .spawn(move || watch_feed(&watch_pg, &watch_head, watcher))?;
        Ok(Self {
            engine: Store::Postgres(pg),
            epoch,
            head,
        })
    }

    /// The engine in use.
    pub fn engine(&self) -> Engine {
        match self.engine {
            Store::Sqlite(_) => Engine::Sqlite,
            Store::Postgres(_) => Engine::Postgres,
        }
    }

    /// Random id of this database, part of every cursor so that a cursor
    /// from a wiped or different database is rejected.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Sequence number of the last change a reader may be given: every
    /// change at or below it is committed, and no later commit can take a
    /// number below it. On SQLite that is the last commit; on PostgreSQL it
    /// is what the feed watcher settled (see `docs/backend/postgres.md`).
    pub fn head(&self) -> i64 {
        *self.head.borrow()
    }

    /// The highest sequence number the feed may serve now: [`Db::head`] on
    /// PostgreSQL; on SQLite everything committed (one writer commits in
    /// sequence order, and another process on the same file does not move
    /// this process's head).
    pub fn feed_upto(&self) -> i64 {
        match self.engine {
            Store::Sqlite(_) => i64::MAX,
            Store::Postgres(_) => self.head(),
        }
    }

    /// A receiver that wakes whenever [`Db::head`] moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// Runs `f` in one write transaction (SQLite: `BEGIN IMMEDIATE` on the
    /// writer connection; PostgreSQL: READ COMMITTED on a pooled connection),
    /// on a blocking thread; commits when `f` returns `Ok`, rolls back
    /// otherwise. Returns once the changes it wrote are in [`Db::head`], so a
    /// writer reads its own changes in the feed.
    ///
    /// # Errors
    /// Whatever `f` returns, or an internal error from the database.
    pub async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let db = Arc::clone(self);
        match &self.engine {
            Store::Sqlite(_) => {
                tokio::task::spawn_blocking(move || {
                    let Store::Sqlite(sqlite) = &db.engine else {
                        return Err(ApiError::internal("engine changed"));
                    };
                    let mut conn = lock(&sqlite.writer);
                    let out = {
                        let tx = Tx {
                            inner: TxInner::Sqlite(
                                conn.transaction_with_behavior(TransactionBehavior::Immediate)?,
                            ),
                            last_seq: Cell::new(0),
                        };
                        let out = f(&tx)?;
                        tx.commit()?;
                        out
                    };
                    let head = current_head(&conn)?;
                    db.publish_head(head);
                    Ok(out)
                })
                .await?
            }
            Store::Postgres(pg) => {
                let (out, last_seq) = pg.on_connection(move |conn| pg_write(conn, f)).await?;
                if last_seq > 0 {
                    db.wait_for_head(last_seq).await;
                }
                Ok(out)
            }
        }
    }

    fn publish_head(&self, head: i64) {
        self.head.send_if_modified(|h| {
            if *h < head {
                *h = head;
                true
            } else {
                false
            }
        });
    }

    /// Waits (a bounded time) until the feed watcher has settled `seq`.
    async fn wait_for_head(&self, seq: i64) {
        let mut rx = self.subscribe();
        let settled = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|h| *h >= seq));
        if settled.await.is_err() {
            tracing::warn!(seq, "a commit was not settled in the feed within 5 s");
        }
    }

    /// Runs `f` in one read transaction (a consistent snapshot) on a pooled
    /// connection, on a blocking thread.
    ///
    /// # Errors
    /// Whatever `f` returns, or an internal error from the database.
    pub async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let db = Arc::clone(self);
        match &self.engine {
            Store::Sqlite(_) => {
                tokio::task::spawn_blocking(move || {
                    let Store::Sqlite(sqlite) = &db.engine else {
                        return Err(ApiError::internal("engine changed"));
                    };
                    let pooled = lock(&sqlite.readers).pop();
                    let mut conn = match pooled {
                        Some(c) => c,
                        None => open_connection(&sqlite.path)?,
                    };
                    let out = {
                        let tx = Tx {
                            inner: TxInner::Sqlite(conn.transaction()?),
                            last_seq: Cell::new(0),
                        };
                        let out = f(&tx);
                        tx.commit()?;
                        out
                    };
                    let mut readers = lock(&sqlite.readers);
                    if readers.len() < MAX_IDLE_READERS {
                        readers.push(conn);
                    }
                    out
                })
                .await?
            }
            Store::Postgres(pg) => pg.on_connection(move |conn| pg_read(conn, f)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::values::pg_sql;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            pg_sql("SELECT '?' WHERE a = ?1 AND b = ?12"),
            "SELECT '?' WHERE a = $1 AND b = $12"
        );
    }
}
