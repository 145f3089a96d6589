//! The BroadcastChannel lock driver: runs the lock table of
//! [`crate::core::election`] over an [`EnvelopeChannel`] with real timers, for
//! browsers without `navigator.locks` (and for tests of the protocol).
//! Guards release their lock when dropped.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use gloo_timers::callback::Timeout;
use wasm_bindgen_futures::spawn_local;

use crate::core::election::{
    ElectionConfig, ElectionEffect, LockTable, LockTicket, TabId, LEADER_LOCK,
};
use crate::core::tab_message::TabMessage;
use crate::core::vecmap::VecMap;
use crate::error::Error;
use crate::web::channel::EnvelopeChannel;
use crate::web::clock::{now_ms, random_unit};

/// The name given to every lock of the app on the wire, so that no app lock
/// can be mistaken for the leader lock.
fn wire_lock_name(name: &str) -> String {
    format!("lock:{name}")
}

/// The largest random token that survives a JavaScript number.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn random_token() -> u64 {
    // Not cryptographic: it only tells apart two loads of a tab id.
    (random_unit() * MAX_SAFE_INTEGER as f64) as u64 & MAX_SAFE_INTEGER
}

/// How an acquire on the BroadcastChannel path ends.
#[derive(Default)]
struct Outcome {
    result: Option<Result<(), Error>>,
    waker: Option<Waker>,
    /// Handed to a [`BroadcastHeld`]: no canceller may touch it any more.
    taken: bool,
}

type SharedOutcome = Rc<RefCell<Outcome>>;

fn settle_outcome(outcome: &SharedOutcome, result: Result<(), Error>) {
    let waker = {
        let mut o = outcome.borrow_mut();
        o.result = Some(result);
        o.waker.take()
    };
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Resolves when the outcome is settled.
struct OutcomeFuture(SharedOutcome);

impl Future for OutcomeFuture {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut o = self.0.borrow_mut();
        match &o.result {
            Some(result) => Poll::Ready(result.clone()),
            None => {
                o.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Everything the BroadcastChannel path keeps; shared by the handle, the
/// channel listener and the timer.
struct Driver {
    channel_name: String,
    tab: TabId,
    config: ElectionConfig,
    table: LockTable,
    /// `None` while suspended (after `pagehide`) and after a crash.
    channel: Option<EnvelopeChannel>,
    /// The one timer the table asks for; cleared when replaced or dropped.
    timer: Option<Timeout>,
    /// Acquires not granted yet, by ticket.
    waiting: VecMap<LockTicket, SharedOutcome>,
    /// The ticket of this tab's candidacy for leadership.
    candidacy: Option<LockTicket>,
    /// Ignored messages of channels closed before (see `restore`).
    ignored_before: u32,
    suspended: bool,
    /// Set by `crash`: go without a word.
    crashed: bool,
    on_leader_change: Rc<dyn Fn()>,
}

type SharedDriver = Rc<RefCell<Driver>>;

impl Driver {
    /// Carries out what the table asked for.
    fn apply(&mut self, effects: Vec<ElectionEffect>, weak: &Weak<RefCell<Driver>>) {
        let mut leader_changed = false;
        let mut rerun = false;
        for effect in effects {
            match effect {
                ElectionEffect::Send(message) => {
                    if let Some(channel) = &self.channel {
                        // A post that fails (a closed channel, as the page
                        // goes) is a lost message: the protocol's
                        // heartbeats and leases are made for exactly that.
                        let _ = channel.post(TabMessage::Lock(message));
                    }
                }
                ElectionEffect::Granted(ticket) => {
                    if self.candidacy.as_ref() == Some(&ticket) {
                        leader_changed = true;
                    } else if let Some(outcome) = self.waiting.remove(&ticket) {
                        settle_outcome(&outcome, Ok(()));
                    } else {
                        // Nobody waits for it any more (withdrawn as it
                        // was granted): give it straight back.
                        let fx = self.table.release(&ticket, now_ms());
                        self.apply(fx, weak);
                    }
                }
                ElectionEffect::Lost(ticket) => {
                    if self.candidacy.as_ref() == Some(&ticket) {
                        // Lost to a duplicate or to our own silence:
                        // stand again, at the back of the line.
                        self.candidacy = None;
                        leader_changed = true;
                        rerun = true;
                    }
                    // An app lock: its guard reads `holds`, false from now.
                }
                ElectionEffect::TimedOut(ticket) => {
                    if let Some(outcome) = self.waiting.remove(&ticket) {
                        let name = ticket.lock.strip_prefix("lock:").unwrap_or(&ticket.lock);
                        settle_outcome(
                            &outcome,
                            Err(Error::LockTimeout {
                                name: name.to_owned(),
                                timeout_ms: 0,
                            }),
                        );
                    }
                }
                ElectionEffect::ScheduleTick { at_ms } => {
                    let delay = at_ms.saturating_sub(now_ms()).min(u64::from(u32::MAX));
                    let weak = weak.clone();
                    // Replacing the previous timer clears it (RAII).
                    self.timer = Some(Timeout::new(delay as u32, move || {
                        with_driver(&weak, |d, weak| {
                            d.timer = None;
                            let fx = d.table.tick(now_ms());
                            d.apply(fx, weak);
                        });
                    }));
                }
            }
        }
        if rerun {
            self.campaign(weak);
        }
        if leader_changed {
            (self.on_leader_change)();
        }
    }

    fn campaign(&mut self, weak: &Weak<RefCell<Driver>>) {
        if self.candidacy.is_some() || self.suspended || self.crashed {
            return;
        }
        let (ticket, fx) = self.table.acquire(LEADER_LOCK, None, now_ms());
        self.candidacy = Some(ticket);
        self.apply(fx, weak);
    }

    fn open_channel(&mut self, weak: &Weak<RefCell<Driver>>) -> Result<(), Error> {
        let weak = weak.clone();
        let channel =
            EnvelopeChannel::open(&self.channel_name, self.tab.clone(), move |envelope| {
                // Other kinds (record changes, sessions, sync state) are for the
                // client's own listener on the same channel name.
                if let TabMessage::Lock(message) = envelope.message {
                    let from = envelope.tab;
                    with_driver(&weak, move |d, weak| {
                        let fx = d.table.receive(&from, message, now_ms());
                        d.apply(fx, weak);
                    });
                }
            })?;
        self.channel = Some(channel);
        Ok(())
    }

    fn ignored(&self) -> u32 {
        self.ignored_before
            .saturating_add(self.channel.as_ref().map_or(0, EnvelopeChannel::ignored))
    }

    /// Fails every waiting acquire with `err`.
    fn fail_waiting(&mut self, err: &Error) {
        for (_, outcome) in std::mem::take(&mut self.waiting) {
            settle_outcome(&outcome, Err(err.clone()));
        }
    }

    /// Leaves the channel (`pagehide`, or the handle dropped): fails the
    /// waiting acquires with `err`, releases everything telling the
    /// others, resigns, stops the timer and closes the channel.
    fn leave(&mut self, err: &Error, weak: &Weak<RefCell<Driver>>) {
        self.fail_waiting(err);
        let was_candidate = self.candidacy.take().is_some();
        let fx = self.table.release_all(now_ms());
        self.apply(fx, weak);
        self.timer = None;
        self.ignored_before = self.ignored();
        self.channel = None;
        if was_candidate {
            (self.on_leader_change)();
        }
    }
}

/// Runs `f` on the driver if it still exists. Every entry point goes
/// through here: if the driver is busy (a re-entrant call, which the design
/// avoids), the work is done in a task of its own rather than panicking on
/// a double borrow.
fn with_driver(
    weak: &Weak<RefCell<Driver>>,
    f: impl FnOnce(&mut Driver, &Weak<RefCell<Driver>>) + 'static,
) {
    let Some(driver) = weak.upgrade() else { return };
    let Ok(mut d) = driver.try_borrow_mut() else {
        let weak = weak.clone();
        spawn_local(async move {
            if let Some(driver) = weak.upgrade() {
                if let Ok(mut d) = driver.try_borrow_mut() {
                    f(&mut d, &weak);
                }
            }
        });
        return;
    };
    f(&mut d, weak);
}

/// Locks and leadership over a `BroadcastChannel`: the web side of
/// [`crate::core::election`], with real timers. Used where Web Locks are
/// missing, or when forced.
///
/// Dropping it releases everything it holds and waits for (telling the
/// other tabs), resigns, fails waiting acquires with [`Error::Closed`],
/// stops the timer and closes the channel.
#[must_use = "dropping BroadcastLocks releases everything and closes the channel"]
pub struct BroadcastLocks {
    driver: SharedDriver,
}

impl std::fmt::Debug for BroadcastLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastLocks").finish_non_exhaustive()
    }
}

impl BroadcastLocks {
    /// Joins the channel `channel_name` as tab `tab_id`. `on_leader_change`
    /// runs whenever this tab may have gained or lost leadership (ask
    /// [`is_leader`](Self::is_leader)); it is called while the driver is
    /// busy, so it must only schedule work, not call back in.
    ///
    /// Leadership is not sought until [`campaign`](Self::campaign).
    ///
    /// # Errors
    /// [`Error::Invalid`] when the channel cannot be opened.
    pub fn open(
        channel_name: &str,
        tab_id: &str,
        on_leader_change: impl Fn() + 'static,
    ) -> Result<BroadcastLocks, Error> {
        let tab = TabId(tab_id.to_owned());
        let config = ElectionConfig::default();
        let driver = Rc::new(RefCell::new(Driver {
            channel_name: channel_name.to_owned(),
            tab: tab.clone(),
            table: LockTable::new(tab, random_token(), config.clone()),
            config,
            channel: None,
            timer: None,
            waiting: VecMap::new(),
            candidacy: None,
            ignored_before: 0,
            suspended: false,
            crashed: false,
            on_leader_change: Rc::new(on_leader_change),
        }));
        let weak = Rc::downgrade(&driver);
        driver.borrow_mut().open_channel(&weak)?;
        Ok(BroadcastLocks { driver })
    }

    /// Asks for the lock `name`; waits for ever without `timeout_ms`.
    ///
    /// # Errors
    /// [`Error::Cancelled`] while suspended (after `pagehide`),
    /// [`Error::Closed`] after a crash.
    pub fn request(
        &self,
        name: &str,
        timeout_ms: Option<u32>,
    ) -> Result<PendingBroadcastLock, Error> {
        let weak = Rc::downgrade(&self.driver);
        let mut d = self
            .driver
            .try_borrow_mut()
            .map_err(|_| Error::Invalid("re-entrant lock request".into()))?;
        if d.crashed {
            return Err(Error::Closed);
        }
        if d.suspended {
            return Err(Error::Cancelled);
        }
        let now = now_ms();
        let (ticket, fx) = d
            .table
            .acquire(&wire_lock_name(name), timeout_ms.map(u64::from), now);
        let outcome: SharedOutcome = Rc::default();
        d.waiting.insert(ticket.clone(), Rc::clone(&outcome));
        d.apply(fx, &weak);
        Ok(PendingBroadcastLock {
            canceller: BroadcastCanceller {
                driver: weak,
                ticket: Some(ticket),
                outcome,
            },
            name: name.to_owned(),
            timeout_ms: timeout_ms.unwrap_or(0),
        })
    }

    /// Whether this tab leads now, by its own clock: false as soon as it
    /// has been silent long enough for the others to have moved on (a
    /// freeze), before any timer says so.
    pub fn is_leader(&self) -> bool {
        let Ok(d) = self.driver.try_borrow() else {
            return false;
        };
        !d.suspended && !d.crashed && d.table.holds_lock(LEADER_LOCK, now_ms())
    }

    /// Messages ignored so far (malformed, another format, unknown kind).
    pub fn ignored_messages(&self) -> u32 {
        self.driver.try_borrow().map_or(0, |d| d.ignored())
    }

    /// Competes for leadership until suspended or dropped.
    pub fn campaign(&self) {
        with_driver(&Rc::downgrade(&self.driver), |d, weak| d.campaign(weak));
    }

    /// `pagehide`: releases everything (telling the others), resigns, fails
    /// waiting acquires with [`Error::Cancelled`] and closes the channel,
    /// since a page in the back/forward cache cannot answer.
    pub fn suspend(&self) {
        with_driver(&Rc::downgrade(&self.driver), |d, weak| {
            if d.suspended || d.crashed {
                return;
            }
            d.suspended = true;
            d.leave(&Error::Cancelled, weak);
        });
    }

    /// `pageshow` from the back/forward cache: rejoins like a new tab (a
    /// fresh table: what was known before the page slept is stale). Call
    /// [`campaign`](Self::campaign) to stand for leadership again.
    pub fn restore(&self) {
        with_driver(&Rc::downgrade(&self.driver), |d, weak| {
            if !d.suspended || d.crashed {
                return;
            }
            d.table = LockTable::new(d.tab.clone(), random_token(), d.config.clone());
            // Without a channel the tab stays a follower with no locks,
            // which is safe; the app sees acquires wait until timeouts.
            if d.open_channel(weak).is_ok() {
                d.suspended = false;
            }
        });
    }

    /// `resume` after `freeze`: timers did not run, so the table checks at
    /// once whether this tab was silent for too long (it then gives up
    /// what it held, and stands again).
    pub fn resume(&self) {
        with_driver(&Rc::downgrade(&self.driver), |d, weak| {
            if d.suspended || d.crashed {
                return;
            }
            let fx = d.table.tick(now_ms());
            d.apply(fx, weak);
        });
    }

    /// Test-only: vanish like a crashed tab, saying nothing. Others see its
    /// locks and leadership go only when its lease runs out.
    #[doc(hidden)]
    pub fn crash(self) {
        if let Ok(mut d) = self.driver.try_borrow_mut() {
            d.crashed = true;
            d.timer = None;
            d.channel = None;
            d.candidacy = None;
            d.fail_waiting(&Error::Closed);
        }
    }
}

impl Drop for BroadcastLocks {
    fn drop(&mut self) {
        let weak = Rc::downgrade(&self.driver);
        let Ok(mut d) = self.driver.try_borrow_mut() else {
            return;
        };
        if d.crashed {
            return;
        }
        d.crashed = true;
        d.leave(&Error::Closed, &weak);
    }
}

/// Withdraws a [`PendingBroadcastLock`] from elsewhere. Cloneable;
/// cancelling twice, or after the grant was taken, is harmless.
#[derive(Clone)]
pub struct BroadcastCanceller {
    driver: Weak<RefCell<Driver>>,
    ticket: Option<LockTicket>,
    outcome: SharedOutcome,
}

impl std::fmt::Debug for BroadcastCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastCanceller")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl BroadcastCanceller {
    /// Withdraws the request if it is not held through a [`BroadcastHeld`]
    /// yet: `granted` fails with [`Error::Cancelled`], and a grant that
    /// arrived meanwhile is given back.
    pub fn cancel(&self) {
        let Some(ticket) = self.ticket.clone() else {
            return;
        };
        let done = {
            let o = self.outcome.borrow();
            o.taken || matches!(o.result, Some(Err(_)))
        };
        if done {
            return;
        }
        settle_outcome(&self.outcome, Err(Error::Cancelled));
        with_driver(&self.driver, move |d, weak| {
            d.waiting.remove(&ticket);
            let fx = d.table.release(&ticket, now_ms());
            d.apply(fx, weak);
        });
    }
}

/// A lock asked for on the BroadcastChannel path and not granted yet.
/// Dropping it withdraws the request.
#[must_use = "dropping a PendingBroadcastLock withdraws the request"]
pub struct PendingBroadcastLock {
    canceller: BroadcastCanceller,
    name: String,
    timeout_ms: u32,
}

impl std::fmt::Debug for PendingBroadcastLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingBroadcastLock")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PendingBroadcastLock {
    /// A handle that withdraws this request from elsewhere.
    pub fn canceller(&self) -> BroadcastCanceller {
        self.canceller.clone()
    }

    /// Waits for the grant.
    ///
    /// # Errors
    /// [`Error::LockTimeout`] when the timeout passed first,
    /// [`Error::Cancelled`] when withdrawn or suspended, [`Error::Closed`]
    /// when the [`BroadcastLocks`] went away.
    pub async fn granted(mut self) -> Result<BroadcastHeld, Error> {
        let outcome = OutcomeFuture(Rc::clone(&self.canceller.outcome)).await;
        match outcome {
            Ok(()) => match self.canceller.ticket.take() {
                Some(ticket) => {
                    self.canceller.outcome.borrow_mut().taken = true;
                    Ok(BroadcastHeld {
                        driver: self.canceller.driver.clone(),
                        ticket,
                    })
                }
                None => Err(Error::Cancelled),
            },
            Err(Error::LockTimeout { .. }) => Err(Error::LockTimeout {
                name: std::mem::take(&mut self.name),
                timeout_ms: self.timeout_ms,
            }),
            Err(e) => Err(e),
        }
    }
}

impl Drop for PendingBroadcastLock {
    fn drop(&mut self) {
        // After a successful `granted` the ticket is gone and this does
        // nothing; otherwise the request is withdrawn.
        self.canceller.cancel();
    }
}

/// A lock held on the BroadcastChannel path; released (and the other tabs
/// told) when dropped.
#[must_use = "dropping a BroadcastHeld releases the lock at once"]
pub struct BroadcastHeld {
    driver: Weak<RefCell<Driver>>,
    ticket: LockTicket,
}

impl std::fmt::Debug for BroadcastHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastHeld")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl BroadcastHeld {
    /// Whether the lock is still held: false once the protocol took it away
    /// (a duplicate holder won, or this tab was frozen past its lease).
    pub fn is_held(&self) -> bool {
        self.driver.upgrade().is_some_and(|driver| {
            driver
                .try_borrow()
                .is_ok_and(|d| !d.crashed && d.table.holds(&self.ticket, now_ms()))
        })
    }
}

impl Drop for BroadcastHeld {
    fn drop(&mut self) {
        let ticket = self.ticket.clone();
        with_driver(&self.driver, move |d, weak| {
            if d.crashed {
                return;
            }
            let fx = d.table.release(&ticket, now_ms());
            d.apply(fx, weak);
        });
    }
}
