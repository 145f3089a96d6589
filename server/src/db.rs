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

/// Idle reader connections kept open; more are opened on demand.
const MAX_IDLE_READERS: usize = 8;

/// PostgreSQL connections one server instance opens at most.
const PG_CONNECTIONS: usize = 16;

/// The channel commits are announced on (PostgreSQL). A notification only
/// wakes readers; what they send is read from the feed by cursor.
const PG_CHANNEL: &str = "crm_sync_changes";

/// How often the feed watcher looks at the feed without a notification: a
/// lost notification or a dropped listener delays a stream by this, no more.
const PG_POLL: Duration = Duration::from_millis(400);

/// How often the feed watcher looks again while a commit is not settled yet.
const PG_SETTLE_POLL: Duration = Duration::from_millis(3);

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
-- Failed logins (per username and per client address), in the database so
-- that every server instance on it counts the same failures.
CREATE TABLE login_failures (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  at_ms INTEGER NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (kind, key, at_ms);
CREATE INDEX login_failures_age ON login_failures (at_ms);
"#,
    r#"
-- Single-use tickets that open /api/events, so a bearer token never goes
-- into a URL. Hashed like tokens; `expires_at` in milliseconds.
CREATE TABLE stream_tickets (
  ticket_hash TEXT PRIMARY KEY,
  "user" TEXT NOT NULL,
  token_hash TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
-- Open event streams of every instance, so the per-user limit holds across
-- instances; `opened` orders a user's streams, `seen_at` (seconds) says the
-- instance holding it is alive.
CREATE TABLE open_streams (
  id TEXT PRIMARY KEY,
  "user" TEXT NOT NULL,
  token_hash TEXT NOT NULL,
  instance TEXT NOT NULL,
  opened INTEGER NOT NULL,
  seen_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX open_streams_user ON open_streams ("user", opened);
CREATE INDEX open_streams_instance ON open_streams (instance);
CREATE INDEX open_streams_token ON open_streams (token_hash);
"#,
    r#"
-- Sync jobs as every instance sees them: the last published status (JSON),
-- the conflicts once finished, and the running instance's lease (seconds), the last change (milliseconds).
CREATE TABLE sync_jobs (
  id TEXT PRIMARY KEY,
  "user" TEXT NOT NULL,
  instance TEXT NOT NULL,
  status TEXT NOT NULL,
  body TEXT NOT NULL,
  conflicts TEXT NOT NULL,
  lease_until INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sync_jobs_user ON sync_jobs ("user");
CREATE INDEX sync_jobs_lease ON sync_jobs (status, lease_until);
"#,
];

/// The PostgreSQL schema, in the same steps: the table `schema_version` says
/// how many have run. It has the same tables and columns as SQLite's (so one
/// set of statements serves both), with PostgreSQL's types: `BIGINT` for
/// every integer, `TEXT COLLATE "C"` for ids (byte order, as SQLite sorts, so
/// pages and cursors order alike), and the changes feed numbered from a
/// sequence (see [`Tx`]'s feed notes in `docs/backend/postgres.md`).
const PG_MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (name TEXT COLLATE "C" PRIMARY KEY, password_hash TEXT NOT NULL);
CREATE TABLE tokens (
  token_hash TEXT COLLATE "C" PRIMARY KEY,
  "user" TEXT COLLATE "C" NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX tokens_expiry ON tokens (expires_at);
CREATE TABLE records (
  collection TEXT COLLATE "C" NOT NULL,
  id TEXT COLLATE "C" NOT NULL,
  version BIGINT NOT NULL,
  updated_at TEXT NOT NULL,
  updated_by TEXT NOT NULL,
  fields TEXT NOT NULL,
  deleted BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (collection, id)
);
CREATE TABLE comments (
  seq BIGSERIAL PRIMARY KEY,
  collection TEXT COLLATE "C" NOT NULL,
  record_id TEXT COLLATE "C" NOT NULL,
  id TEXT COLLATE "C" NOT NULL,
  author TEXT NOT NULL,
  text TEXT NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (collection, record_id, id)
);
CREATE SEQUENCE changes_seq;
CREATE TABLE changes (
  seq BIGINT PRIMARY KEY,
  collection TEXT COLLATE "C" NOT NULL,
  id TEXT COLLATE "C" NOT NULL,
  version BIGINT NOT NULL,
  op TEXT NOT NULL,
  record TEXT,
  what TEXT
);
CREATE INDEX changes_record ON changes (collection, id, seq);
CREATE TABLE idempotency (
  "user" TEXT COLLATE "C" NOT NULL,
  key TEXT COLLATE "C" NOT NULL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  status BIGINT NOT NULL,
  body TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  request_hash TEXT,
  record_ref TEXT,
  PRIMARY KEY ("user", key)
);
CREATE INDEX idempotency_age ON idempotency (created_at);
CREATE TABLE sheet_sync (
  collection TEXT COLLATE "C" NOT NULL,
  id TEXT COLLATE "C" NOT NULL,
  version BIGINT NOT NULL,
  PRIMARY KEY (collection, id)
);
CREATE TABLE history (
  collection TEXT COLLATE "C" NOT NULL,
  id TEXT COLLATE "C" NOT NULL,
  version BIGINT NOT NULL,
  at TEXT NOT NULL,
  "by" TEXT NOT NULL,
  op TEXT NOT NULL,
  sync_id TEXT,
  changes TEXT NOT NULL,
  PRIMARY KEY (collection, id, version)
);
"#,
    r#"
CREATE TABLE login_failures (
  id BIGSERIAL PRIMARY KEY,
  kind TEXT NOT NULL,
  key TEXT COLLATE "C" NOT NULL,
  at_ms BIGINT NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (kind, key, at_ms);
CREATE INDEX login_failures_age ON login_failures (at_ms);
"#,
    r#"
CREATE TABLE stream_tickets (
  ticket_hash TEXT COLLATE "C" PRIMARY KEY,
  "user" TEXT COLLATE "C" NOT NULL,
  token_hash TEXT COLLATE "C" NOT NULL,
  expires_at BIGINT NOT NULL
);
"#,
    r#"
CREATE TABLE open_streams (
  id TEXT COLLATE "C" PRIMARY KEY,
  "user" TEXT COLLATE "C" NOT NULL,
  token_hash TEXT COLLATE "C" NOT NULL,
  instance TEXT COLLATE "C" NOT NULL,
  opened BIGINT NOT NULL,
  seen_at BIGINT NOT NULL
);
CREATE INDEX open_streams_user ON open_streams ("user", opened);
CREATE INDEX open_streams_instance ON open_streams (instance);
CREATE INDEX open_streams_token ON open_streams (token_hash);
"#,
    r#"
CREATE TABLE sync_jobs (
  id TEXT COLLATE "C" PRIMARY KEY,
  "user" TEXT COLLATE "C" NOT NULL,
  instance TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL,
  body TEXT NOT NULL,
  conflicts TEXT NOT NULL,
  lease_until BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE INDEX sync_jobs_user ON sync_jobs ("user");
CREATE INDEX sync_jobs_lease ON sync_jobs (status, lease_until);
"#,
];

/// Which engine a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database, possibly shared by several server instances.
    Postgres,
}

/// A value going into or coming out of a statement: the only kinds the
/// schema uses.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// An integer (`INTEGER` in SQLite, `BIGINT` in PostgreSQL).
    Int(i64),
    /// Text.
    Text(String),
}

/// Something that can be a statement parameter.
pub trait Param {
    /// This parameter as a [`SqlValue`].
    fn sql_value(&self) -> SqlValue;
}

impl Param for i64 {
    fn sql_value(&self) -> SqlValue {
        SqlValue::Int(*self)
    }
}
impl Param for u16 {
    fn sql_value(&self) -> SqlValue {
        SqlValue::Int(i64::from(*self))
    }
}
impl Param for bool {
    fn sql_value(&self) -> SqlValue {
        SqlValue::Int(i64::from(*self))
    }
}
impl Param for str {
    fn sql_value(&self) -> SqlValue {
        SqlValue::Text(self.to_owned())
    }
}
impl Param for String {
    fn sql_value(&self) -> SqlValue {
        SqlValue::Text(self.clone())
    }
}
impl<T: Param + ?Sized> Param for &T {
    fn sql_value(&self) -> SqlValue {
        (**self).sql_value()
    }
}
impl<T: Param> Param for Option<T> {
    fn sql_value(&self) -> SqlValue {
        self.as_ref().map_or(SqlValue::Null, Param::sql_value)
    }
}

/// Something a column can be read as.
pub trait FromSql: Sized {
    /// Reads `v`.
    ///
    /// # Errors
    /// An internal error when the column holds another kind of value.
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError>;
}

fn wrong_type(v: &SqlValue, want: &str) -> ApiError {
    ApiError::internal(format!("database: expected {want}, found {v:?}"))
}

impl FromSql for i64 {
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError> {
        match v {
            SqlValue::Int(n) => Ok(*n),
            other => Err(wrong_type(other, "an integer")),
        }
    }
}
impl FromSql for u16 {
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError> {
        u16::try_from(i64::from_sql(v)?).map_err(ApiError::internal)
    }
}
impl FromSql for bool {
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError> {
        Ok(i64::from_sql(v)? != 0)
    }
}
impl FromSql for String {
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError> {
        match v {
            SqlValue::Text(s) => Ok(s.clone()),
            other => Err(wrong_type(other, "text")),
        }
    }
}
impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError> {
        match v {
            SqlValue::Null => Ok(None),
            other => T::from_sql(other).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<SqlValue>);

impl Row {
    /// Column `i` (from 0) as a `T`.
    ///
    /// # Errors
    /// An internal error for a missing column or a value of another kind.
    pub fn get<T: FromSql>(&self, i: usize) -> Result<T, ApiError> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| ApiError::internal(format!("database: no column {i}")))?;
        T::from_sql(v)
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Int(n) => ValueRef::Integer(*n),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

impl postgres::types::ToSql for SqlValue {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            // PostgreSQL tells the type it inferred for each parameter; an
            // integer goes in at that width.
            SqlValue::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::BOOL => (*n != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => n.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("an integer cannot be a {ty} parameter").into()),
            },
            SqlValue::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_value(row: &postgres::Row, i: usize) -> Result<SqlValue, ApiError> {
    use postgres::types::Type;
    let ty = row.columns().get(i).map(|c| c.type_().clone());
    let value = match ty {
        Some(Type::INT8) => row.try_get::<_, Option<i64>>(i)?.map(SqlValue::Int),
        Some(Type::INT4) => row
            .try_get::<_, Option<i32>>(i)?
            .map(|n| SqlValue::Int(n.into())),
        Some(Type::INT2) => row
            .try_get::<_, Option<i16>>(i)?
            .map(|n| SqlValue::Int(n.into())),
        Some(Type::BOOL) => row
            .try_get::<_, Option<bool>>(i)?
            .map(|b| SqlValue::Int(b.into())),
        Some(Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR) => {
            row.try_get::<_, Option<String>>(i)?.map(SqlValue::Text)
        }
        other => {
            return Err(ApiError::internal(format!(
                "database: column {i} has an unsupported type {other:?}"
            )))
        }
    };
    Ok(value.unwrap_or(SqlValue::Null))
}

fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> Result<SqlValue, ApiError> {
    use rusqlite::types::ValueRef;
    Ok(match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(n) => SqlValue::Int(n),
        ValueRef::Text(t) => SqlValue::Text(
            std::str::from_utf8(t)
                .map_err(ApiError::internal)?
                .to_owned(),
        ),
        ValueRef::Real(_) | ValueRef::Blob(_) => {
            return Err(ApiError::internal(
                "database: a real or blob column where none is expected",
            ))
        }
    })
}

/// `?1`-style placeholders as PostgreSQL's `$1` (none sits in a string
/// literal of ours, but quotes are skipped all the same).
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

struct PgConn {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

struct PgTx<'c> {
    tx: postgres::Transaction<'c>,
    statements: &'c mut HashMap<String, postgres::Statement>,
}

impl PgTx<'_> {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, ApiError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.tx.prepare(&pg_sql(sql))?;
        self.statements.insert(sql.to_owned(), prepared.clone());
        Ok(prepared)
    }
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

struct Pg {
    config: postgres::Config,
    idle: Mutex<Vec<PgConn>>,
    permits: Arc<Semaphore>,
    stop: Arc<AtomicBool>,
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // A connection owns a small runtime, which must not be dropped on an
        // async thread: they go on a thread of their own.
        let idle = std::mem::take(&mut *lock(&self.idle));
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(idle));
        }
    }
}

impl Pg {
    fn connect(&self) -> Result<PgConn, ApiError> {
        Ok(PgConn {
            client: self.config.connect(postgres::NoTls)?,
            statements: HashMap::new(),
        })
    }

    fn take(&self) -> Result<PgConn, ApiError> {
        let pooled = lock(&self.idle).pop();
        match pooled {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => self.connect(),
        }
    }

    fn give_back(&self, conn: PgConn) {
        if !conn.client.is_closed() {
            lock(&self.idle).push(conn);
        }
    }
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
                let permit = Arc::clone(&pg.permits)
                    .acquire_owned()
                    .await
                    .map_err(ApiError::internal)?;
                let pg = Arc::clone(pg);
                let (out, last_seq) = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let mut conn = pg.take()?;
                    let result = pg_write(&mut conn, f);
                    pg.give_back(conn);
                    result
                })
                .await??;
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
            Store::Postgres(pg) => {
                let permit = Arc::clone(&pg.permits)
                    .acquire_owned()
                    .await
                    .map_err(ApiError::internal)?;
                let pg = Arc::clone(pg);
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let mut conn = pg.take()?;
                    let result = pg_read(&mut conn, f);
                    pg.give_back(conn);
                    result
                })
                .await?
            }
        }
    }
}

fn pg_write<T, F>(conn: &mut PgConn, f: F) -> Result<(T, i64), ApiError>
where
    F: FnOnce(&Tx<'_>) -> Result<T, ApiError>,
{
    let PgConn { client, statements } = conn;
    let tx = Tx {
        inner: TxInner::Postgres(RefCell::new(PgTx {
            tx: client.transaction()?,
            statements,
        })),
        last_seq: Cell::new(0),
    };
    let out = f(&tx)?;
    let last_seq = tx.last_seq.get();
    if last_seq > 0 {
        // Sent at commit, to every instance's feed watcher.
        tx.execute(&format!("NOTIFY {PG_CHANNEL}"), &[])?;
    }
    tx.commit()?;
    Ok((out, last_seq))
}

fn pg_read<T, F>(conn: &mut PgConn, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&Tx<'_>) -> Result<T, ApiError>,
{
    let PgConn { client, statements } = conn;
    let tx = Tx {
        inner: TxInner::Postgres(RefCell::new(PgTx {
            tx: client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?,
            statements,
        })),
        last_seq: Cell::new(0),
    };
    let out = f(&tx);
    tx.commit()?;
    out
}

/// Settles the changes feed on PostgreSQL.
///
/// Sequence numbers are taken when a change is written, but transactions
/// commit in any order: 12 can be visible while 11 is still open. A reader
/// that moved its cursor past 12 would never see 11. So readers only get
/// changes up to a *settled* head. Each look reads, in one statement, the
/// highest visible number `M` and then the transactions running at that
/// moment (each holds the lock on its own transaction id from its first
/// write, before it takes a number, until after its commit is visible). A
/// writer still holding a number below `M` is one of them. Once none of
/// them runs any more (a later look finds none of their ids), every number
/// up to `M` is committed and visible, or rolled back for good: `M` is
/// settled. (The snapshot's `xmin`/`xmax` cannot tell this: a running
/// transaction newer than the last completed one is in neither.)
#[derive(Default)]
struct FeedWatcher {
    /// `(M, transactions running then)` of looks not settled yet, oldest first.
    pending: VecDeque<(i64, Vec<i64>)>,
    settled: i64,
}

impl FeedWatcher {
    /// One look: returns the settled head and whether looks are pending.
    fn look(&mut self, client: &mut postgres::Client) -> Result<(i64, bool), postgres::Error> {
        let row = client.query_one(
            "SELECT COALESCE((SELECT MAX(seq) FROM changes), 0),
                    ARRAY(SELECT transactionid::text::bigint FROM pg_locks
                          WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock'
                          AND granted)",
            &[],
        )?;
        let (max, running): (i64, Vec<i64>) = (row.try_get(0)?, row.try_get(1)?);
        if max > self.settled && self.pending.back().is_none_or(|(m, _)| *m < max) {
            self.pending.push_back((max, running.clone()));
        }
        while let Some((m, then)) = self.pending.front() {
            if then.iter().any(|x| running.contains(x)) {
                break;
            }
            self.settled = self.settled.max(*m);
            self.pending.pop_front();
        }
        Ok((self.settled, !self.pending.is_empty()))
    }
}

/// The feed watcher's thread: listens for commits of any instance, settles
/// the head and publishes it. It looks every [`PG_POLL`] without a
/// notification, so a lost one (or a dropped connection) only delays.
fn watch_feed(pg: &Pg, head: &watch::Sender<i64>, mut watcher: FeedWatcher) {
    let mut conn: Option<postgres::Client> = None;
    while !pg.stop.load(Ordering::SeqCst) {
        let client = match conn.as_mut() {
            Some(c) => c,
            None => match pg
                .config
                .connect(postgres::NoTls)
                .and_then(|mut c| c.batch_execute(&format!("LISTEN {PG_CHANNEL}")).map(|()| c))
            {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "feed watcher cannot connect; retrying");
                    std::thread::sleep(PG_POLL);
                    continue;
                }
            },
        };
        let pending = match watcher.look(client) {
            Ok((settled, pending)) => {
                head.send_if_modified(|h| {
                    if *h < settled {
                        *h = settled;
                        true
                    } else {
                        false
                    }
                });
                pending
            }
            Err(e) => {
                tracing::warn!(error = %e, "feed watcher lost its connection");
                conn = None;
                continue;
            }
        };
        let wait = if pending { PG_SETTLE_POLL } else { PG_POLL };
        use postgres::fallible_iterator::FallibleIterator;
        let mut notifications = client.notifications();
        let got = notifications.timeout_iter(wait).next();
        let lost = match got {
            Ok(_) => {
                // One look serves every notification that came meanwhile.
                while let Ok(Some(_)) = notifications.iter().next() {}
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "feed watcher lost its connection");
                true
            }
        };
        drop(notifications);
        if lost {
            conn = None;
        }
    }
    if let Some(c) = conn {
        let _ = c.close();
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

/// Runs the missing PostgreSQL migrations in one transaction, under an
/// advisory lock: instances starting together migrate once.
fn migrate_postgres(client: &mut postgres::Client) -> Result<(), OpenError> {
    let mut tx = client.transaction()?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('crm-sync schema', 0));
         CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);",
    )?;
    let done: Option<i64> = tx
        .query_opt("SELECT MAX(version) FROM schema_version", &[])?
        .and_then(|r| r.get(0));
    let done = usize::try_from(done.unwrap_or(0)).unwrap_or(0);
    if done > PG_MIGRATIONS.len() {
        return Err(format!(
            "database schema version {done} is newer than this server ({})",
            PG_MIGRATIONS.len()
        )
        .into());
    }
    for (i, sql) in PG_MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(sql)?;
        let version = i64::try_from(i + 1)?;
        tx.execute("DELETE FROM schema_version", &[])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )?;
        tracing::info!(version, "schema migrated (PostgreSQL)");
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pg_sql;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            pg_sql("SELECT '?' WHERE a = ?1 AND b = ?12"),
            "SELECT '?' WHERE a = $1 AND b = $12"
        );
    }
}
