//! `navigator.locks` (the Web Locks API), bound by hand.
//!
//! web-sys keeps `LockManager` behind `web_sys_unstable_apis` and its
//! signature has changed between releases, so the one method used here is
//! declared below. A lock is exclusive and named; it is granted when the
//! browser calls our callback, and held for as long as the promise that the
//! callback returned stays pending. The browser releases it by itself when
//! the tab dies, which is why this path is preferred where it exists.
//!
//! Every resource is an RAII handle: a [`PendingLock`] withdraws its request
//! when dropped, a [`HeldLock`] releases its lock when dropped.
//!
//! ```no_run
//! # async fn demo() -> Result<(), crm_sync::Error> {
//! use crm_sync::web::locks::WebLocks;
//! let Some(locks) = WebLocks::get() else { return Ok(()) };
//! let held = locks.acquire("crm-sync:outbox", Some(5_000)).await?;
//! // ... the critical section ...
//! held.release();
//! # Ok(()) }
//! ```

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use gloo_timers::callback::Timeout;
use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::AbortController;

use crate::error::Error;
use crate::web::js::{describe, get};

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks`.
    #[derive(Debug, Clone)]
    type LockManager;

    // `request(name, options, callback)`: the only form used, so the
    // overloads without options need no binding. `catch`: it throws
    // synchronously for a name starting with `-` or in an opaque origin.
    #[wasm_bindgen(method, catch, js_name = request)]
    fn request_with_options(
        this: &LockManager,
        name: &str,
        options: &Object,
        callback: &Function,
    ) -> Result<Promise, JsValue>;
}

/// Whether this browser (window or worker) has `navigator.locks`.
pub fn web_locks_available() -> bool {
    WebLocks::get().is_some()
}

/// The browser's lock manager.
#[derive(Debug, Clone)]
pub struct WebLocks {
    manager: LockManager,
}

/// How a lock is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockOptions {
    /// Only take the lock if nobody holds it or waits for it now
    /// (`ifAvailable`); otherwise [`PendingLock::granted`] gives `None`.
    pub if_available: bool,
    /// Give up with [`Error::LockTimeout`] after this many milliseconds.
    pub timeout_ms: Option<u32>,
}

/// Where a request stands; shared by the request, the browser's callback and
/// the handles, so that whichever comes last cleans up.
enum Slot {
    /// Not granted yet.
    Waiting,
    /// Granted; the function resolves the promise that holds the lock.
    Granted(Function),
    /// `ifAvailable` and somebody else has it.
    Unavailable,
    /// Handed to a [`HeldLock`].
    Taken,
    /// Withdrawn by [`LockCanceller::cancel`] or by dropping the request.
    Cancelled,
    /// The timer fired first.
    TimedOut,
}

type SharedSlot = Rc<RefCell<Slot>>;

impl WebLocks {
    /// The lock manager, or `None` where `navigator.locks` is missing (old
    /// browsers, some embedded web views, insecure contexts).
    pub fn get() -> Option<WebLocks> {
        let navigator = get(&js_sys::global(), "navigator");
        let manager = get(&navigator, "locks");
        if !get(&manager, "request").is_function() {
            return None;
        }
        Some(WebLocks {
            manager: manager.unchecked_into(),
        })
    }

    /// Asks for the exclusive lock `name`. The returned request is granted
    /// by awaiting [`PendingLock::granted`]; dropping it withdraws it.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the browser refuses the request outright (a
    /// name starting with `-`, an opaque origin).
    pub fn request(&self, name: &str, options: LockOptions) -> Result<PendingLock, Error> {
        let controller = AbortController::new().map_err(|e| Error::Invalid(describe(&e)))?;
        let slot: SharedSlot = Rc::new(RefCell::new(Slot::Waiting));

        // `grant` settles when the callback runs or when the request fails,
        // whichever is first; the future below waits on it.
        let mut wake: Option<(Function, Function)> = None;
        let grant = Promise::new(&mut |resolve, reject| wake = Some((resolve, reject)));
        let Some((wake_resolve, wake_reject)) = wake else {
            return Err(Error::Invalid("Promise executor did not run".into()));
        };

        let callback_slot = Rc::clone(&slot);
        let callback = Closure::<dyn FnMut(JsValue) -> Promise>::new(move |lock: JsValue| {
            let mut slot = callback_slot.borrow_mut();
            if !matches!(*slot, Slot::Waiting) {
                // Withdrawn (or timed out) after the browser had already
                // queued the grant: hand the lock straight back.
                return Promise::resolve(&JsValue::UNDEFINED);
            }
            if lock.is_null() {
                *slot = Slot::Unavailable;
                drop(slot);
                let _ = wake_resolve.call0(&JsValue::UNDEFINED);
                return Promise::resolve(&JsValue::UNDEFINED);
            }
            // The lock lasts as long as this promise is pending: it settles
            // only when the holder calls `release` (or drops its handle).
            let mut hold_resolve = None;
            let hold = Promise::new(&mut |resolve, _reject| hold_resolve = Some(resolve));
            match hold_resolve {
                Some(release) => *slot = Slot::Granted(release),
                None => *slot = Slot::Cancelled,
            }
            drop(slot);
            let _ = wake_resolve.call0(&JsValue::UNDEFINED);
            hold
        });

        let opts = Object::new();
        let set = |key: &str, value: &JsValue| {
            let _ = Reflect::set(&opts, &JsValue::from_str(key), value);
        };
        set("mode", &JsValue::from_str("exclusive"));
        set("ifAvailable", &JsValue::from_bool(options.if_available));
        // `ifAvailable` cannot be combined with a signal (NotSupportedError),
        // and needs none: it never waits.
        if !options.if_available {
            set("signal", &controller.signal().into());
        }
        let request = self
            .manager
            .request_with_options(name, &opts, callback.as_ref().unchecked_ref())
            .map_err(|e| Error::Invalid(describe(&e)))?;

        // The browser may call the callback any time until `request`
        // settles, which is after the hold is released or after an abort; so
        // this task owns the closure until then, and the closure is freed
        // exactly when it can no longer be called.
        spawn_local(async move {
            let outcome = JsFuture::from(request).await;
            drop(callback);
            if let Err(e) = outcome {
                // Rejected before the grant (aborted, or refused): wake the
                // waiter. After a grant this is a no-op on a settled promise.
                let _ = wake_reject.call1(&JsValue::UNDEFINED, &e);
            }
        });

        let timeout = match options.timeout_ms {
            Some(ms) if !options.if_available => {
                let slot = Rc::clone(&slot);
                let controller = controller.clone();
                Some(Timeout::new(ms, move || {
                    let mut s = slot.borrow_mut();
                    if matches!(*s, Slot::Waiting) {
                        *s = Slot::TimedOut;
                        drop(s);
                        controller.abort();
                    }
                }))
            }
            _ => None,
        };

        Ok(PendingLock {
            name: name.to_owned(),
            timeout_ms: options.timeout_ms.unwrap_or(0),
            grant: Some(grant),
            canceller: LockCanceller { controller, slot },
            _timeout: timeout,
        })
    }

    /// Waits for the exclusive lock `name`, at most `timeout_ms` if given.
    ///
    /// # Errors
    /// [`Error::LockTimeout`] when the time passes first, [`Error::Invalid`]
    /// when the browser refuses the request.
    pub async fn acquire(&self, name: &str, timeout_ms: Option<u32>) -> Result<HeldLock, Error> {
        let options = LockOptions {
            if_available: false,
            timeout_ms,
        };
        match self.request(name, options)?.granted().await? {
            Some(held) => Ok(held),
            // Only `ifAvailable` requests come back empty.
            None => Err(Error::Invalid("lock request came back empty".into())),
        }
    }

    /// Takes the lock `name` only if it is free now.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the browser refuses the request.
    pub async fn try_acquire(&self, name: &str) -> Result<Option<HeldLock>, Error> {
        let options = LockOptions {
            if_available: true,
            timeout_ms: None,
        };
        self.request(name, options)?.granted().await
    }
}

impl WebLocks {
    /// Competes for leadership: waits, without a timeout, for the lock
    /// `name`, and holds it until the returned handle is dropped. This is
    /// the pubkey/broadcast-channel pattern: holding the Web Lock *is*
    /// being leader, and the never-settling promise is the hold, so a tab
    /// that dies hands leadership on by itself.
    ///
    /// `on_gain` runs once, from the event loop, when the lock is granted
    /// (never after the handle is dropped).
    ///
    /// # Errors
    /// [`Error::Invalid`] when the browser refuses the request.
    pub fn campaign(
        &self,
        name: &str,
        on_gain: impl FnOnce() + 'static,
    ) -> Result<Leadership, Error> {
        let pending = self.request(name, LockOptions::default())?;
        let canceller = pending.canceller();
        let held: Rc<RefCell<Option<HeldLock>>> = Rc::new(RefCell::new(None));
        let leader = Rc::new(Cell::new(false));
        let task_held = Rc::clone(&held);
        let task_leader = Rc::clone(&leader);
        spawn_local(async move {
            // Cancelled (the handle dropped) or refused: not leader, and
            // nobody to tell.
            if let Ok(Some(lock)) = pending.granted().await {
                *task_held.borrow_mut() = Some(lock);
                task_leader.set(true);
                on_gain();
            }
        });
        Ok(Leadership {
            canceller,
            held,
            leader,
        })
    }
}

/// A tab's candidacy for leadership through a Web Lock; resigns (withdraws
/// the request, or releases the lock) when dropped.
#[must_use = "dropping a Leadership resigns at once"]
pub struct Leadership {
    canceller: LockCanceller,
    held: Rc<RefCell<Option<HeldLock>>>,
    leader: Rc<Cell<bool>>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("leader", &self.leader.get())
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// Whether this tab holds the leader lock now. The browser never grants
    /// it to another tab while this one holds it, so this stays true until
    /// the handle is dropped, even across a freeze.
    pub fn is_leader(&self) -> bool {
        self.leader.get()
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.leader.set(false);
        self.canceller.cancel();
        // Taken out first: dropping a HeldLock calls into JS, which must not
        // run while the cell is borrowed.
        let held = self.held.borrow_mut().take();
        drop(held);
    }
}

/// Withdraws a [`PendingLock`] from elsewhere (for example when the owner
/// closes while a request waits). Cloneable; cancelling twice is harmless.
#[derive(Clone)]
pub struct LockCanceller {
    controller: AbortController,
    slot: SharedSlot,
}

impl std::fmt::Debug for LockCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockCanceller").finish_non_exhaustive()
    }
}

impl LockCanceller {
    /// Withdraws the request if it still waits: its
    /// [`PendingLock::granted`] fails with [`Error::Cancelled`]. A lock
    /// granted but not yet handed out is given back. Does nothing to a lock
    /// already held through a [`HeldLock`].
    pub fn cancel(&self) {
        let previous = std::mem::replace(&mut *self.slot.borrow_mut(), Slot::Cancelled);
        match previous {
            Slot::Waiting => self.controller.abort(),
            Slot::Granted(release) => {
                let _ = release.call0(&JsValue::UNDEFINED);
            }
            // Nothing to withdraw: keep the final state.
            other => *self.slot.borrow_mut() = other,
        }
    }
}

/// A lock asked for and not granted yet. Dropping it withdraws the request
/// (and gives the lock back if the grant raced with the drop).
#[must_use = "dropping a PendingLock withdraws the request"]
pub struct PendingLock {
    name: String,
    timeout_ms: u32,
    grant: Option<Promise>,
    canceller: LockCanceller,
    // Aborts the request when it fires; cleared when this is dropped.
    _timeout: Option<Timeout>,
}

impl std::fmt::Debug for PendingLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLock")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PendingLock {
    /// A handle that withdraws this request from elsewhere.
    pub fn canceller(&self) -> LockCanceller {
        self.canceller.clone()
    }

    /// Waits for the grant. `None` only for an `ifAvailable` request that
    /// found the lock taken.
    ///
    /// # Errors
    /// [`Error::LockTimeout`] when the timeout passed first,
    /// [`Error::Cancelled`] when withdrawn through a [`LockCanceller`],
    /// [`Error::Invalid`] when the browser refused the request.
    pub async fn granted(mut self) -> Result<Option<HeldLock>, Error> {
        let outcome = match self.grant.take() {
            Some(grant) => JsFuture::from(grant).await,
            None => Ok(JsValue::UNDEFINED),
        };
        let slot = &self.canceller.slot;
        let state = std::mem::replace(&mut *slot.borrow_mut(), Slot::Taken);
        match state {
            Slot::Granted(release) => Ok(Some(HeldLock {
                name: std::mem::take(&mut self.name),
                release: Some(release),
            })),
            Slot::Unavailable => Ok(None),
            Slot::TimedOut => {
                *slot.borrow_mut() = Slot::TimedOut;
                Err(Error::LockTimeout {
                    name: std::mem::take(&mut self.name),
                    timeout_ms: self.timeout_ms,
                })
            }
            Slot::Cancelled => {
                *slot.borrow_mut() = Slot::Cancelled;
                Err(Error::Cancelled)
            }
            Slot::Waiting | Slot::Taken => {
                *slot.borrow_mut() = Slot::Cancelled;
                Err(match outcome {
                    Err(e) => Error::Invalid(describe(&e)),
                    Ok(_) => Error::Cancelled,
                })
            }
        }
    }
}

impl Drop for PendingLock {
    fn drop(&mut self) {
        self.canceller.cancel();
    }
}

/// An exclusive Web Lock this tab holds. Released by [`HeldLock::release`]
/// or when dropped; the browser also releases it if the tab dies.
#[must_use = "dropping a HeldLock releases the lock at once"]
pub struct HeldLock {
    name: String,
    release: Option<Function>,
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLock")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl HeldLock {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Releases the lock (the same as dropping it, said out loud).
    pub fn release(self) {}
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
    }
}
