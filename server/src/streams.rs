//! Open event streams, so they can be ended from outside: by logout (the
//! stream's token is revoked) and by a user's newer streams (at most
//! `streams_per_user` each; the oldest is closed).
//!
//! The limit holds across server instances: every stream has a row in
//! `open_streams`, and opening one deletes the user's oldest rows beyond the
//! limit, whichever instance holds them. Each instance looks every
//! [`SWEEP_EVERY`] for its streams whose rows are gone (evicted, or their
//! token logged out through another instance) and ends them; it marks its
//! rows as seen, and rows no instance has seen for [`FORGET_AFTER`] (an
//! instance that died) are deleted by the janitor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::db::{random_hex, unix_seconds, Db, Tx};
use crate::error::ApiError;

/// How often an instance looks for its streams that were ended elsewhere.
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// How often an instance marks its streams' rows as alive.
const SEEN_EVERY: Duration = Duration::from_secs(10);

/// Rows not marked alive for this long belong to an instance that is gone.
pub const FORGET_AFTER: Duration = Duration::from_secs(60);

struct OpenStream {
    token_hash: String,
    close: watch::Sender<bool>,
}

/// Every event stream open on this instance, by id; their rows in the
/// database count them against each user's limit.
pub struct Streams {
    per_user: usize,
    db: Arc<Db>,
    instance: String,
    open: Mutex<HashMap<String, OpenStream>>,
}

/// One open stream's place in [`Streams`]; leaves it when dropped (the
/// client went away or the stream ended).
#[must_use = "the stream is forgotten when its ticket is dropped"]
pub struct StreamTicket {
    id: String,
    streams: Arc<Streams>,
    /// Turns `true` when the stream must end.
    pub closed: watch::Receiver<bool>,
}

impl Streams {
    /// A registry allowing `per_user` open streams per user (at least 1)
    /// across every instance on `db`.
    ///
    /// # Errors
    /// When no random instance id can be made.
    pub fn new(per_user: usize, db: Arc<Db>) -> Result<Self, ApiError> {
        Ok(Self {
            per_user: per_user.max(1),
            db,
            instance: random_hex(8)?,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OpenStream>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new stream of `user` opened with the token hashed as
    /// `token_hash`, closing the user's oldest streams beyond the limit (on
    /// this instance at once, on others at their next sweep).
    ///
    /// # Errors
    /// Internal errors from the database.
    pub async fn open(
        self: &Arc<Self>,
        user: &str,
        token_hash: &str,
    ) -> Result<StreamTicket, ApiError> {
        let id = random_hex(16)?;
        let (user_, hash, id_, instance, keep) = (
            user.to_owned(),
            token_hash.to_owned(),
            id.clone(),
            self.instance.clone(),
            self.per_user,
        );
        let evicted = self
            .db
            .write(move |tx| {
                // One opening per user at a time, on every instance.
                tx.lock(&format!("streams:{user_}"))?;
                let opened: i64 = tx
                    .query_one(
                        "SELECT COALESCE(MAX(opened), 0) + 1 FROM open_streams WHERE \"user\" = ?1",
                        &[&user_],
                    )?
                    .get(0)?;
                tx.execute(
                    "INSERT INTO open_streams (id, \"user\", token_hash, instance, opened, seen_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    &[&id_, &user_, &hash, &instance, &opened, &unix_seconds()],
                )?;
                let ids = tx.query(
                    "SELECT id FROM open_streams WHERE \"user\" = ?1 ORDER BY opened DESC",
                    &[&user_],
                )?;
                let mut evicted = Vec::new();
                for row in ids.iter().skip(keep) {
                    let old: String = row.get(0)?;
                    tx.execute("DELETE FROM open_streams WHERE id = ?1", &[&old])?;
                    evicted.push(old);
                }
                Ok(evicted)
            })
            .await?;
        let (close, closed) = watch::channel(false);
        let mut open = self.lock();
        for old in evicted {
            if let Some(s) = open.remove(&old) {
                let _ = s.close.send(true);
            }
        }
        open.insert(
            id.clone(),
            OpenStream {
                token_hash: token_hash.to_owned(),
                close,
            },
        );
        Ok(StreamTicket {
            id,
            streams: Arc::clone(self),
            closed,
        })
    }

    /// Ends every stream of this instance opened with the token hashed as
    /// `token_hash` (the caller deletes their rows with [`revoke_rows`], so
    /// other instances end theirs at their next sweep).
    pub fn revoke(&self, token_hash: &str) {
        self.lock().retain(|_, s| {
            let keep = s.token_hash != token_hash;
            if !keep {
                let _ = s.close.send(true);
            }
            keep
        });
    }

    /// Streams open now on this instance, all users.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Ends the streams of this instance whose rows are gone, until
    /// `shutdown`; marks the others as seen every [`SEEN_EVERY`].
    pub async fn sweep(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        let mut last_seen = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            // Taken before the read: every id here was committed before it.
            let local: Vec<String> = self.lock().keys().cloned().collect();
            if local.is_empty() {
                continue;
            }
            let instance = self.instance.clone();
            let mark = last_seen.elapsed() >= SEEN_EVERY;
            let rows = self
                .db
                .write(move |tx| {
                    if mark {
                        tx.execute(
                            "UPDATE open_streams SET seen_at = ?1 WHERE instance = ?2",
                            &[&unix_seconds(), &instance],
                        )?;
                    }
                    tx.query(
                        "SELECT id FROM open_streams WHERE instance = ?1",
                        &[&instance],
                    )?
                    .iter()
                    .map(|r| r.get::<String>(0))
                    .collect::<Result<std::collections::HashSet<_>, _>>()
                })
                .await;
            let Ok(rows) = rows else {
                continue;
            };
            if mark {
                last_seen = tokio::time::Instant::now();
            }
            let mut open = self.lock();
            for id in local.iter().filter(|id| !rows.contains(*id)) {
                if let Some(s) = open.remove(id) {
                    let _ = s.close.send(true);
                }
            }
        }
    }
}

/// Deletes the rows of the streams opened with the token hashed as
/// `token_hash` (at logout, in its transaction).
///
/// # Errors
/// Internal errors from the database.
pub fn revoke_rows(tx: &Tx<'_>, token_hash: &str) -> Result<usize, ApiError> {
    tx.execute(
        "DELETE FROM open_streams WHERE token_hash = ?1",
        &[&token_hash],
    )
}

/// Deletes the rows no instance marked as seen for [`FORGET_AFTER`].
///
/// # Errors
/// Internal errors from the database.
pub fn purge(tx: &Tx<'_>) -> Result<usize, ApiError> {
    let cut = unix_seconds() - i64::try_from(FORGET_AFTER.as_secs()).unwrap_or(60);
    tx.execute("DELETE FROM open_streams WHERE seen_at < ?1", &[&cut])
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.id);
        let (db, id) = (Arc::clone(&self.streams.db), self.id.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = db
                    .write(move |tx| tx.execute("DELETE FROM open_streams WHERE id = ?1", &[&id]))
                    .await;
            });
        }
    }
}
