//! The schema of both engines, one step per entry, and the code that runs
//! the missing steps at open.

use super::*;

/// Each entry moves the schema one version up; `PRAGMA user_version` says how
/// many have run. Never edit an entry that shipped: add one.
pub(super) const MIGRATIONS: &[&str] = &[
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
-- the conflicts once finished, the running instance's lease (seconds), the
-- last change (milliseconds), and a cancel asked through another instance.
CREATE TABLE sync_jobs (
  id TEXT PRIMARY KEY,
  "user" TEXT NOT NULL,
  instance TEXT NOT NULL,
  status TEXT NOT NULL,
  body TEXT NOT NULL,
  conflicts TEXT NOT NULL,
  lease_until INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  cancel_answered INTEGER NOT NULL DEFAULT 0
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
pub(super) const PG_MIGRATIONS: &[&str] = &[
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
  updated_ms BIGINT NOT NULL,
  cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
  cancel_answered BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sync_jobs_user ON sync_jobs ("user");
CREATE INDEX sync_jobs_lease ON sync_jobs (status, lease_until);
"#,
];

pub(super) fn migrate(conn: &mut Connection) -> Result<(), OpenError> {
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
pub(super) fn migrate_postgres(client: &mut postgres::Client) -> Result<(), OpenError> {
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
