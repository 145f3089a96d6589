//! PostgreSQL: the connection pool, transactions with prepared statements
//! kept per connection, and the feed watcher that settles the changes feed
//! and wakes streams on LISTEN/NOTIFY.

use super::values::pg_sql;
use super::*;

/// PostgreSQL connections one server instance opens at most.
pub(super) const PG_CONNECTIONS: usize = 16;

/// The channel commits are announced on (PostgreSQL). A notification only
/// wakes readers; what they send is read from the feed by cursor.
pub(super) const PG_CHANNEL: &str = "crm_sync_changes";

/// How often the feed watcher looks at the feed without a notification: a
/// lost notification or a dropped listener delays a stream by this, no more.
pub(super) const PG_POLL: Duration = Duration::from_millis(400);

/// How often the feed watcher looks again while a commit is not settled yet.
pub(super) const PG_SETTLE_POLL: Duration = Duration::from_millis(3);

pub(super) struct PgConn {
    pub(super) client: postgres::Client,
    pub(super) statements: HashMap<String, postgres::Statement>,
}

pub(super) struct PgTx<'c> {
    pub(super) tx: postgres::Transaction<'c>,
    pub(super) statements: &'c mut HashMap<String, postgres::Statement>,
}

impl PgTx<'_> {
    pub(super) fn statement(&mut self, sql: &str) -> Result<postgres::Statement, ApiError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.tx.prepare(&pg_sql(sql))?;
        self.statements.insert(sql.to_owned(), prepared.clone());
        Ok(prepared)
    }
}

pub(super) struct Pg {
    pub(super) config: postgres::Config,
    pub(super) idle: Mutex<Vec<PgConn>>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) stop: Arc<AtomicBool>,
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
    pub(super) fn connect(&self) -> Result<PgConn, ApiError> {
        Ok(PgConn {
            client: self.config.connect(postgres::NoTls)?,
            statements: HashMap::new(),
        })
    }

    pub(super) fn take(&self) -> Result<PgConn, ApiError> {
        let pooled = lock(&self.idle).pop();
        match pooled {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => self.connect(),
        }
    }

    pub(super) fn give_back(&self, conn: PgConn) {
        if !conn.client.is_closed() {
            lock(&self.idle).push(conn);
        }
    }

    /// Runs `f` on a pooled connection, on a blocking thread, once one of
    /// the connection permits is free; the connection goes back to the pool
    /// after.
    pub(super) async fn on_connection<R, F>(self: &Arc<Self>, f: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&mut PgConn) -> Result<R, ApiError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        let pg = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = pg.take()?;
            let result = f(&mut conn);
            pg.give_back(conn);
            result
        })
        .await?
    }
}

pub(super) fn pg_write<T, F>(conn: &mut PgConn, f: F) -> Result<(T, i64), ApiError>
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

pub(super) fn pg_read<T, F>(conn: &mut PgConn, f: F) -> Result<T, ApiError>
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
pub(super) struct FeedWatcher {
    /// `(M, transactions running then)` of looks not settled yet, oldest first.
    pub(super) pending: VecDeque<(i64, Vec<i64>)>,
    pub(super) settled: i64,
}

impl FeedWatcher {
    /// One look: returns the settled head and whether looks are pending.
    pub(super) fn look(
        &mut self,
        client: &mut postgres::Client,
    ) -> Result<(i64, bool), postgres::Error> {
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
pub(super) fn watch_feed(pg: &Pg, head: &watch::Sender<i64>, mut watcher: FeedWatcher) {
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

pub(super) fn current_head(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
        r.get(0)
    })
}
