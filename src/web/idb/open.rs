//! Opening a database: its schema (a version and one migration per
//! version step), a timeout per attempt and a second attempt, and the
//! clean-up of an open request given up on.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use gloo_timers::future::TimeoutFuture;
use indexed_db_futures::database::Database;
use indexed_db_futures::internals::SystemRepr;
use indexed_db_futures::prelude::*;
use wasm_bindgen::JsCast;

use super::error::{error_from_js, from_open};
use super::scripts::abandon_open;
use crate::error::Error;
use crate::web::js::get;
use crate::web::lifecycle::EventListener;

/// One schema step: brings the database from version `n` to `n + 1`.
///
/// Runs inside the upgrade transaction, synchronously: create or delete
/// stores, or issue requests on [`Upgrade::transaction`] without awaiting.
pub type Migration = fn(&Upgrade) -> Result<(), Error>;

/// What a database looks like: its version and how to get there.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The version this code needs (1 or more).
    pub version: u32,
    /// `migrations[n]` upgrades version `n` to `n + 1`; one per version.
    pub migrations: &'static [Migration],
}

impl Schema {
    pub(super) fn check(&self) -> Result<(), Error> {
        if self.version == 0 || self.migrations.len() != self.version as usize {
            return Err(Error::Invalid(format!(
                "schema version {} needs {} migrations, has {}",
                self.version,
                self.version,
                self.migrations.len()
            )));
        }
        Ok(())
    }
}

/// The database during an upgrade, as a [`Migration`] sees it.
pub struct Upgrade {
    /// The open request whose `upgradeneeded` this is: its `result` is the
    /// database, its `transaction` the version change.
    request: web_sys::IdbOpenDbRequest,
}

impl Upgrade {
    fn db(&self) -> Result<web_sys::IdbDatabase, Error> {
        self.request
            .result()
            .map(JsCast::unchecked_into)
            .map_err(|_| Error::Storage("the upgrade has no database".into()))
    }

    /// Creates an object store with out-of-line keys (the key is given with
    /// each put).
    ///
    /// # Errors
    /// [`Error::Storage`] if it exists already.
    pub fn create_store(&self, name: &str) -> Result<(), Error> {
        self.db()?
            .create_object_store(name)
            .map(|_| ())
            .map_err(|e| error_from_js(&e))
    }

    /// Deletes an object store and its data.
    ///
    /// # Errors
    /// [`Error::Storage`] if there is no such store.
    pub fn delete_store(&self, name: &str) -> Result<(), Error> {
        self.db()?
            .delete_object_store(name)
            .map_err(|e| error_from_js(&e))
    }

    /// The upgrade transaction, for migrations that rewrite data or add
    /// indexes to existing stores.
    pub fn transaction(&self) -> Option<web_sys::IdbTransaction> {
        self.request.transaction()
    }
}

/// How long an open may take.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Per attempt. A first open that does not answer in time (a known
    /// Safari failure after launch) is abandoned and tried once more; an
    /// upgrade that is still blocked by another connection when it passes
    /// fails with [`Error::Storage`].
    pub timeout_ms: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self { timeout_ms: 4_000 }
    }
}

pub(super) enum Attempt {
    Opened(Database),
    TimedOut { blocked: bool },
}

pub(super) async fn open_attempt(
    name: &str,
    schema: Schema,
    timeout_ms: u32,
) -> Result<Attempt, Error> {
    let mut request = Database::open(name)
        .with_version(schema.version)
        .build()
        .map_err(from_open)?;
    let raw_request: web_sys::IdbOpenDbRequest = request.as_sys().clone();
    // Our own listeners rather than indexed_db_futures' handlers: those
    // format any error they are given, and that formatting pulls 14 KB of
    // float printing into the wasm. Events come later (in a task), so both
    // are in place before either can fire.
    let blocked = Rc::new(Cell::new(false));
    let failure: Rc<RefCell<Option<Error>>> = Rc::default();
    let on_blocked = {
        let blocked = Rc::clone(&blocked);
        EventListener::new(&raw_request, "blocked", move |_| blocked.set(true))?
    };
    let on_upgrade = {
        let failure = Rc::clone(&failure);
        let upgrade = Upgrade {
            request: raw_request.clone(),
        };
        EventListener::new(&raw_request, "upgradeneeded", move |event| {
            let from = get(&event, "oldVersion").as_f64().unwrap_or(0.0) as u32;
            let to = get(&event, "newVersion")
                .as_f64()
                .map_or(schema.version, |v| v as u32);
            if let Err(e) = migrate(&upgrade, from, to, schema) {
                // Aborting the version change fails the open; our own error
                // is kept to be reported instead of the AbortError the
                // request gets.
                *failure.borrow_mut() = Some(e);
                if let Some(tx) = upgrade.transaction() {
                    let _ = tx.abort();
                }
            }
        })?
    };
    let mut timer = TimeoutFuture::new(timeout_ms);
    let outcome = first(&mut request, &mut timer).await;
    drop((on_blocked, on_upgrade));
    match outcome {
        Either::Left(Ok(db)) => Ok(Attempt::Opened(db)),
        Either::Left(Err(e)) => Err(failure.borrow_mut().take().unwrap_or_else(|| from_open(e))),
        Either::Right(()) => {
            // Our listeners are gone and dropping the request removes its
            // own; then the request is left to clean up after itself.
            drop(request);
            abandon_open(&raw_request);
            Ok(Attempt::TimedOut {
                blocked: blocked.get(),
            })
        }
    }
}

fn migrate(upgrade: &Upgrade, from: u32, to: u32, schema: Schema) -> Result<(), Error> {
    for step in from..to {
        let migration = schema
            .migrations
            .get(step as usize)
            .ok_or_else(|| Error::Invalid(format!("no migration from version {step}")))?;
        migration(upgrade).map_err(|e| match e {
            Error::Storage(why) => {
                Error::Storage(format!("migration to version {}: {why}", step + 1))
            }
            e => e,
        })?;
    }
    Ok(())
}

pub(super) enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Whichever future is ready first; both stay with the caller, so the loser
/// can be cleaned up (an open request must be, see `abandonOpen`). The
/// left one wins a tie.
pub(super) async fn first<A, B>(left: &mut A, right: &mut B) -> Either<A::Output, B::Output>
where
    A: Future + Unpin,
    B: Future + Unpin,
{
    poll_fn(|cx| {
        if let Poll::Ready(out) = Pin::new(&mut *left).poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = Pin::new(&mut *right).poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    })
    .await
}
