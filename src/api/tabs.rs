//! `TabLocks`: mutual exclusion and leadership among the tabs of an origin
//! (docs/guide/tabs.md, docs/reference.md).
//!
//! Two paths sit behind one type:
//!
//! - **Web Locks** (`navigator.locks`, [`crate::web::locks`]): the browser
//!   keeps the queue and releases the locks of a tab that dies. Used by
//!   `mode: "auto"` wherever it exists.
//! - **BroadcastChannel** ([`crate::web::channel`] driving
//!   [`crate::core::election`]): requests, grants, heartbeats and leases
//!   among the tabs themselves, for browsers without Web Locks, and forced
//!   with `mode: "broadcast"` so that tests run it in Chromium too.
//!
//! Leadership: every `TabLocks` competes for the leadership of its channel
//! name as soon as it is created, and keeps competing until `close()` (or
//! `pagehide`). No separate `campaign()` call exists because every user of
//! the type (the client's one poller, the demo) wants a leader to exist
//! whenever at least one tab is open; a tab that wants no part in it simply
//! does not create a `TabLocks`.
//!
//! `onLeaderChange` listeners hear every gain and loss. A change the
//! protocol notices reaches them from a task of its own (never in the middle
//! of a call of the app's); `close()` and `pagehide` tell them before
//! returning, so a page that goes away has heard that it no longer leads.
//!
//! Guards: JavaScript has no reliable destructor. A guard is released by
//! `release()`, by `withLock` when its function settles, by `close()`, on
//! `pagehide`, and by `free()` (which `using guard = await tabs.acquire(..)`
//! calls at the end of the block, through `Symbol.dispose`). wasm-bindgen
//! also registers exported objects with a `FinalizationRegistry`, so a guard
//! that is garbage-collected unreleased is released then; that is a safety
//! net against leaks, never a way to end a critical section: it may run
//! late, or never, and it may run as soon as the app drops its last
//! reference, even while the work it meant to protect goes on. Keep the
//! guard referenced until `release()`, or use `withLock`.
//!
//! The BroadcastChannel path uses a channel of exactly `channelName` and the
//! one envelope of [`crate::core::election`]; messages of other kinds on it
//! (record changes, sessions, sync state) are left to their own listeners,
//! and anything malformed or of another format version is counted in
//! `ignoredMessages`. Web Lock names are `crm-sync:<channelName>:...`, so
//! they never meet the app's own Web Locks.
//!
//! ```ts
//! const tabs = new TabLocks("crm-sync:alice");
//! await tabs.withLock("outbox", async () => { await drainOutbox(); }, { timeoutMs: 10_000 });
//! const off = tabs.onLeaderChange((leader) => console.log("leader:", leader));
//! ```

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::{Array, Function, Object, Promise};
use serde::Deserialize;
use tsify::Tsify;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};

use crate::core::vecmap::VecMap;
use crate::error::Error;
use crate::web::clock::uuid_v4;
use crate::web::js::from_app;
use crate::web::lifecycle::{PageEvent, PageLifecycle};
use crate::web::tab_lock_path::{HeldTabLock, PathWanted, TabLockCanceller, TabLockPath};

#[wasm_bindgen(typescript_custom_section)]
const TABS_TS: &'static str = r#"
/** Declared here for its type parameter, which wasm-bindgen cannot express. */
export interface TabLocks {
  /**
   * Runs `fn` while this tab holds the lock `name`, and releases the lock
   * after the promise `fn` returned settles (or after it throws). Resolves
   * with `fn`'s result, or rejects with what it threw; rejects with a
   * `CrmError` `lock_timeout`, `closed` or `cancelled` if the lock was
   * never acquired.
   */
  withLock<T>(name: string, fn: () => T | PromiseLike<T>, options?: AcquireOptions): Promise<T>;
}
"#;

/// Which path a [`TabLocks`] uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Tsify)]
#[serde(rename_all = "kebab-case")]
pub enum TabLocksMode {
    /// Web Locks where the browser has them, else BroadcastChannel.
    #[default]
    Auto,
    /// `navigator.locks` only (an error where it is missing).
    WebLocks,
    /// The BroadcastChannel protocol, even where Web Locks exist.
    Broadcast,
}

/// Options of `new TabLocks(channelName, options)`.
#[derive(Debug, Clone, Default, Deserialize, Tsify)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TabLocksOptions {
    /// `"auto"` (the default), `"web-locks"` or `"broadcast"`.
    #[serde(default)]
    #[tsify(optional)]
    pub mode: Option<TabLocksMode>,
}

/// Options of `acquire` and `withLock`.
#[derive(Debug, Clone, Default, Deserialize, Tsify)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcquireOptions {
    /// Reject with `lock_timeout` after this many milliseconds; without it,
    /// wait as long as it takes.
    #[serde(default)]
    #[tsify(optional)]
    pub timeout_ms: Option<u32>,
}

/// Reads an options object that may be `undefined` or `null`.
fn options<T: Default + serde::de::DeserializeOwned>(value: Option<Object>) -> Result<T, Error> {
    match value {
        Some(value) if !value.is_undefined() && !value.is_null() => from_app(value.into()),
        _ => Ok(T::default()),
    }
}

/// Lock names are prefixed with the channel name on both paths; bound their
/// length so a message or a lock name never grows without limit.
const MAX_NAME_LEN: usize = 200;

fn check_name(what: &str, name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::Invalid(format!(
            "{what} must be 1 to {MAX_NAME_LEN} bytes long"
        )));
    }
    Ok(())
}

/// One acquired lock; shared by its JS guard and the registry that releases
/// it on `close()` and `pagehide`.
struct GuardSlot {
    id: u64,
    name: String,
    held: RefCell<Option<HeldTabLock>>,
}

impl GuardSlot {
    /// Releases the lock if still held; true if this call released it.
    fn release(&self, owner: &Weak<Shared>) -> bool {
        // Taken out before dropping: dropping calls into JS and may reach
        // back into the owner's state.
        let held = self.held.borrow_mut().take();
        let was_held = held.is_some();
        drop(held);
        if let Some(owner) = owner.upgrade() {
            if let Ok(mut registry) = owner.registry.try_borrow_mut() {
                registry.guards.remove(&self.id);
            }
        }
        was_held
    }
}

/// What one `TabLocks` holds and waits for: its path (Web Locks or
/// BroadcastChannel), the guards it holds, the acquisitions it waits on.
struct LockRegistry {
    closed: bool,
    /// Between `pagehide` and a `pageshow` from the back/forward cache.
    hidden: bool,
    path: Option<TabLockPath>,
    guards: VecMap<u64, Rc<GuardSlot>>,
    pending: VecMap<u64, TabLockCanceller>,
    next_id: u64,
    lifecycle: Option<PageLifecycle>,
}

struct Shared {
    tab_id: String,
    channel_name: String,
    mode: TabLocksMode,
    registry: RefCell<LockRegistry>,
    /// `onLeaderChange` callbacks. A JS `Set`, so that the unsubscribe
    /// function can be `Set.prototype.delete` bound to it: no Rust closure
    /// to keep alive or leak.
    listeners: js_sys::Set,
    /// What the listeners were last told.
    told_leader: Cell<bool>,
}

impl Shared {
    fn next_id(&self) -> Result<u64, Error> {
        let mut registry = self.registry.try_borrow_mut().map_err(|_| busy())?;
        registry.next_id += 1;
        Ok(registry.next_id)
    }

    fn is_leader(&self) -> bool {
        let Ok(registry) = self.registry.try_borrow() else {
            return self.told_leader.get();
        };
        if registry.closed || registry.hidden {
            return false;
        }
        registry.path.as_ref().is_some_and(TabLockPath::is_leader)
    }

    /// Web Lock names of this instance's channel.
    fn lock_name(&self, name: &str) -> String {
        format!("crm-sync:{}:lock:{name}", self.channel_name)
    }

    fn leader_lock_name(&self) -> String {
        format!("crm-sync:{}:leader", self.channel_name)
    }
}

/// Tells the `onLeaderChange` listeners, if leadership changed since they
/// were last told. Always from a fresh task: the change may be noticed deep
/// inside a call that holds the state, and listeners may call back in.
fn tell_leader_soon(shared: &Weak<Shared>) {
    let shared = shared.clone();
    spawn_local(async move {
        if let Some(shared) = shared.upgrade() {
            tell_leader(&shared);
        }
    });
}

fn tell_leader(shared: &Shared) {
    let now = shared.is_leader();
    if shared.told_leader.replace(now) == now {
        return;
    }
    // A copy, so a listener may unsubscribe (or subscribe) while called.
    let listeners = Array::from(&shared.listeners);
    for listener in listeners.iter() {
        if let Some(listener) = listener.dyn_ref::<Function>() {
            if let Err(thrown) = listener.call1(&JsValue::UNDEFINED, &JsValue::from_bool(now)) {
                // The app's bug, reported where the app's developer looks,
                // and no reason to skip the other listeners.
                web_sys::console::error_2(
                    &"crm-sync: onLeaderChange listener threw".into(),
                    &thrown,
                );
            }
        }
    }
}

/// The registry is borrowed only inside synchronous calls that never run app
/// code, so this is not expected; it is an error rather than a panic all
/// the same.
fn busy() -> Error {
    Error::Invalid("TabLocks called back into itself".into())
}

/// Starts competing for leadership, unless already doing so.
fn campaign(shared: &Rc<Shared>) -> Result<(), Error> {
    let weak = Rc::downgrade(shared);
    let leader_name = shared.leader_lock_name();
    let mut registry = shared.registry.try_borrow_mut().map_err(|_| busy())?;
    match &mut registry.path {
        Some(path) => path.campaign(&leader_name, move || tell_leader_soon(&weak)),
        None => Err(Error::Closed),
    }
}

/// `pagehide`: give up locks and leadership, since the page may not run
/// again for a long time (or ever).
fn hide(shared: &Rc<Shared>) {
    let (guards, pending, resigned) = {
        let Ok(mut registry) = shared.registry.try_borrow_mut() else {
            return;
        };
        if registry.closed || registry.hidden {
            return;
        }
        registry.hidden = true;
        let resigned = registry.path.as_mut().and_then(TabLockPath::resign);
        (
            std::mem::take(&mut registry.guards),
            std::mem::take(&mut registry.pending),
            resigned,
        )
    };
    // Outside the borrow: each of these calls into JS. Locks first, so
    // their releases go out before the broadcast path goes quiet.
    for canceller in pending.values() {
        canceller.cancel();
    }
    let weak = Rc::downgrade(shared);
    for slot in guards.values() {
        slot.release(&weak);
    }
    drop(resigned);
    if let Ok(registry) = shared.registry.try_borrow() {
        if let Some(path) = &registry.path {
            path.suspend();
        }
    }
    tell_leader(shared);
}

/// `pageshow` from the back/forward cache: compete again. Leadership is
/// not assumed: it is won afresh, like a new tab.
fn restore(shared: &Rc<Shared>) {
    {
        let Ok(mut registry) = shared.registry.try_borrow_mut() else {
            return;
        };
        if registry.closed || !registry.hidden {
            return;
        }
        registry.hidden = false;
        if let Some(path) = &mut registry.path {
            path.restore();
        }
    }
    // A failure leaves this tab a follower, which is always safe.
    let _ = campaign(shared);
}

/// `resume` after `freeze`: timers stopped meanwhile, so a lease this tab
/// had may have lapsed and another tab may lead now. On the Web Locks path
/// the browser never hands the lock on while this tab holds it, so nothing
/// is to check; on the BroadcastChannel path leadership is verified again
/// before this tab acts as leader.
fn resume(shared: &Rc<Shared>) {
    {
        let Ok(registry) = shared.registry.try_borrow() else {
            return;
        };
        if let Some(path) = &registry.path {
            path.resume();
        }
    }
    tell_leader(shared);
}

/// Mutual exclusion and leadership among the tabs of this origin that use
/// the same channel name.
#[wasm_bindgen]
pub struct TabLocks {
    shared: Rc<Shared>,
}

/// A lock this tab holds, from `TabLocks.acquire`. Call `release()` when done
/// (idempotent); the lock is also released by `TabLocks.close()` and on
/// `pagehide`. See the module notes on garbage collection.
#[wasm_bindgen]
pub struct TabLockGuard {
    slot: Rc<GuardSlot>,
    owner: Weak<Shared>,
}

#[wasm_bindgen]
impl TabLockGuard {
    /// The lock's name, as given to `acquire`.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.slot.name.clone()
    }

    /// Whether the lock has been released (by `release()`, `close()` or
    /// `pagehide`), or, on the BroadcastChannel path, taken away.
    #[wasm_bindgen(getter)]
    pub fn released(&self) -> bool {
        match &*self.slot.held.borrow() {
            None => true,
            Some(HeldTabLock::Web(_)) => false,
            // The protocol can take a lock away (this tab froze past its
            // lease, or lost to a duplicate holder after lost messages).
            Some(HeldTabLock::Broadcast(held)) => !held.is_held(),
        }
    }

    /// Releases the lock. Calling it again does nothing.
    pub fn release(&self) {
        self.slot.release(&self.owner);
    }
}

impl Drop for TabLockGuard {
    fn drop(&mut self) {
        // `free()` from JS, or the FinalizationRegistry: see the module notes.
        self.slot.release(&self.owner);
    }
}

#[wasm_bindgen]
impl TabLocks {
    /// Opens a `TabLocks` on `channelName` and starts competing for its
    /// leadership. Every tab (and every `TabLocks` of a page) that uses the
    /// same channel name shares the same locks and the same leader.
    ///
    /// # Errors
    /// Throws `CrmError` `invalid` for an empty channel name, bad options,
    /// or a mode the browser cannot do (`"web-locks"` without
    /// `navigator.locks`, anything without either API).
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(js_name = channelName)] channel_name: String,
        #[wasm_bindgen(unchecked_optional_param_type = "TabLocksOptions")] options: Option<Object>,
    ) -> Result<TabLocks, JsValue> {
        let opts: TabLocksOptions = self::options(options)?;
        Ok(Self::open(&channel_name, opts.mode.unwrap_or_default())?)
    }

    /// This instance's id: random, different for every `TabLocks` (and so
    /// for every tab).
    #[wasm_bindgen(getter, js_name = tabId)]
    pub fn tab_id(&self) -> String {
        self.shared.tab_id.clone()
    }

    /// The channel name given to the constructor.
    #[wasm_bindgen(getter, js_name = channelName)]
    pub fn channel_name(&self) -> String {
        self.shared.channel_name.clone()
    }

    /// The path in use: `"web-locks"` or `"broadcast"` (never `"auto"`).
    #[wasm_bindgen(getter, unchecked_return_type = "\"web-locks\" | \"broadcast\"")]
    pub fn mode(&self) -> String {
        match self.shared.mode {
            TabLocksMode::Broadcast => "broadcast",
            _ => "web-locks",
        }
        .to_owned()
    }

    /// Whether this tab leads now. Always `false` after `close()`, after
    /// `pagehide`, and on the BroadcastChannel path after a `resume` until
    /// leadership is confirmed again.
    #[wasm_bindgen(getter, js_name = isLeader)]
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// Messages on the channel that were ignored: malformed, of another
    /// format version, or undecodable. Always 0 on the Web Locks path,
    /// which uses no channel.
    #[wasm_bindgen(getter, js_name = ignoredMessages)]
    pub fn ignored_messages(&self) -> u32 {
        self.shared
            .registry
            .borrow()
            .path
            .as_ref()
            .map_or(0, TabLockPath::ignored_messages)
    }

    /// Calls `listener(isLeader)` whenever this tab gains or loses
    /// leadership (after the change; see the module notes on when). A
    /// listener that throws is reported on the console and does not stop
    /// the others. Returns the function that unsubscribes it.
    #[wasm_bindgen(js_name = onLeaderChange, unchecked_return_type = "() => void")]
    pub fn on_leader_change(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(isLeader: boolean) => void")] listener: Function,
    ) -> JsValue {
        let listeners = &self.shared.listeners;
        listeners.add(&listener);
        let delete = js_sys::Reflect::get(listeners, &"delete".into())
            .ok()
            .and_then(|d| d.dyn_into::<Function>().ok());
        match delete {
            Some(delete) => delete.bind1(listeners, &listener).into(),
            // Unreachable for a real Set; a no-op keeps the contract.
            None => Function::new_no_args("").into(),
        }
    }

    /// Acquires the exclusive lock `name`. Resolves with a guard; waiters
    /// are served in the order they asked (per the browser on the Web Locks
    /// path, per the protocol's queue on the BroadcastChannel path).
    ///
    /// # Errors
    /// Rejects with `CrmError` `lock_timeout` when `timeoutMs` passes first,
    /// `closed` after `close()`, `cancelled` on `pagehide`, `invalid` for a
    /// bad name or options.
    #[wasm_bindgen(unchecked_return_type = "Promise<TabLockGuard>")]
    pub fn acquire(
        &self,
        name: String,
        #[wasm_bindgen(unchecked_optional_param_type = "AcquireOptions")] options: Option<Object>,
    ) -> Promise {
        let shared = Rc::clone(&self.shared);
        let opts = self::options::<AcquireOptions>(options);
        super::spawn_promise(async move {
            let opts = opts?;
            let owner = Rc::downgrade(&shared);
            let slot = Self::acquire_slot(shared, name, opts.timeout_ms).await?;
            Ok(TabLockGuard { slot, owner }.into())
        })
    }

    /// See the TypeScript declaration above (`withLock<T>`).
    #[wasm_bindgen(js_name = withLock, skip_typescript)]
    pub fn with_lock(&self, name: String, f: Function, options: Option<Object>) -> Promise {
        let shared = Rc::clone(&self.shared);
        let opts = self::options::<AcquireOptions>(options);
        super::spawn_promise(async move {
            let opts = opts?;
            if !f.is_function() {
                return Err(Error::Invalid("withLock needs a function".into()).into());
            }
            let owner = Rc::downgrade(&shared);
            let slot = Self::acquire_slot(shared, name, opts.timeout_ms).await?;
            // A thrown error and a rejected promise both end up in `result`;
            // either way the lock is released before the caller hears.
            let result = match f.call0(&JsValue::UNDEFINED) {
                Ok(value) => JsFuture::from(Promise::resolve(&value)).await,
                Err(thrown) => Err(thrown),
            };
            slot.release(&owner);
            result
        })
    }

    /// Releases every lock, resigns leadership, rejects waiting `acquire`s
    /// with `closed` and stops listening. Calling it again does nothing.
    pub fn close(&self) {
        let (path, guards, pending, lifecycle) = {
            let Ok(mut registry) = self.shared.registry.try_borrow_mut() else {
                return;
            };
            if registry.closed {
                return;
            }
            registry.closed = true;
            (
                registry.path.take(),
                std::mem::take(&mut registry.guards),
                std::mem::take(&mut registry.pending),
                registry.lifecycle.take(),
            )
        };
        drop(lifecycle);
        for canceller in pending.values() {
            canceller.cancel();
        }
        let weak = Rc::downgrade(&self.shared);
        // Locks first, so their releases go out before the channel closes.
        for slot in guards.values() {
            slot.release(&weak);
        }
        drop(path);
        tell_leader(&self.shared);
    }

    /// Test-only: vanish like a crashed or killed tab. On the
    /// BroadcastChannel path the channel closes and heartbeats stop without
    /// a release or resignation, so the others must wait out the lease; on
    /// the Web Locks path the browser would release a dead tab's locks, so
    /// this is `close()`.
    #[doc(hidden)]
    #[wasm_bindgen(js_name = simulateCrash, skip_typescript)]
    pub fn simulate_crash(&self) {
        let path = {
            let Ok(mut registry) = self.shared.registry.try_borrow_mut() else {
                return;
            };
            match registry.path.take() {
                Some(path) if path.is_broadcast() => Some(path),
                other => {
                    registry.path = other;
                    None
                }
            }
        };
        if let Some(path) = path {
            path.crash();
        }
        self.close();
    }
}

impl TabLocks {
    /// `new TabLocks(channelName, { mode })` for Rust callers (the client's
    /// `crm.tabs`): opens on `channel_name` and starts competing for its
    /// leadership.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty or overlong channel name, or a mode
    /// this browser cannot do.
    pub fn open(channel_name: &str, mode: TabLocksMode) -> Result<TabLocks, Error> {
        check_name("the channel name", channel_name)?;
        let channel_name = channel_name.to_owned();
        let wanted = match mode {
            TabLocksMode::Auto => PathWanted::Auto,
            TabLocksMode::WebLocks => PathWanted::WebLocks,
            TabLocksMode::Broadcast => PathWanted::Broadcast,
        };
        let tab_id = uuid_v4();
        let mut failure = None;
        let shared = Rc::new_cyclic(|weak: &Weak<Shared>| {
            let on_leader_change = {
                let weak = weak.clone();
                move || tell_leader_soon(&weak)
            };
            let path = TabLockPath::open(wanted, &channel_name, &tab_id, on_leader_change)
                .map_err(|e| failure = Some(e))
                .ok();
            let mode = match &path {
                Some(p) if p.is_broadcast() => TabLocksMode::Broadcast,
                _ => TabLocksMode::WebLocks,
            };
            let weak = weak.clone();
            let lifecycle = PageLifecycle::listen(move |event| {
                let Some(shared) = weak.upgrade() else { return };
                match event {
                    PageEvent::Hide { .. } => hide(&shared),
                    PageEvent::Restore => restore(&shared),
                    // Nothing can be done while frozen; `resume` checks.
                    PageEvent::Freeze => {}
                    PageEvent::Resume => resume(&shared),
                }
            });
            Shared {
                tab_id: tab_id.clone(),
                channel_name: channel_name.clone(),
                mode,
                registry: RefCell::new(LockRegistry {
                    closed: path.is_none(),
                    hidden: false,
                    path,
                    guards: VecMap::new(),
                    pending: VecMap::new(),
                    next_id: 0,
                    lifecycle: Some(lifecycle),
                }),
                listeners: js_sys::Set::new(&JsValue::UNDEFINED),
                told_leader: Cell::new(false),
            }
        });
        if let Some(err) = failure {
            return Err(err);
        }
        campaign(&shared)?;
        Ok(TabLocks { shared })
    }

    /// `acquire` for Rust callers: waits for the lock `name`, at most
    /// `timeout_ms` if given.
    ///
    /// # Errors
    /// As `acquire`: [`Error::LockTimeout`], [`Error::Closed`],
    /// [`Error::Cancelled`], [`Error::Invalid`].
    pub async fn lock(&self, name: &str, timeout_ms: Option<u32>) -> Result<TabLockGuard, Error> {
        let owner = Rc::downgrade(&self.shared);
        let slot = Self::acquire_slot(Rc::clone(&self.shared), name.to_owned(), timeout_ms).await?;
        Ok(TabLockGuard { slot, owner })
    }

    /// Acquires `name` and registers the guard, for `acquire` and `withLock`.
    async fn acquire_slot(
        shared: Rc<Shared>,
        name: String,
        timeout_ms: Option<u32>,
    ) -> Result<Rc<GuardSlot>, Error> {
        check_name("a lock name", &name)?;
        let id = shared.next_id()?;
        let pending = {
            let mut registry = shared.registry.try_borrow_mut().map_err(|_| busy())?;
            if registry.closed {
                return Err(Error::Closed);
            }
            if registry.hidden {
                return Err(Error::Cancelled);
            }
            let (pending, canceller) = match &registry.path {
                Some(path) => path.request(&shared.lock_name(&name), &name, timeout_ms)?,
                None => return Err(Error::Closed),
            };
            registry.pending.insert(id, canceller);
            pending
        };
        let outcome = pending.granted().await;
        let Ok(mut registry) = shared.registry.try_borrow_mut() else {
            // Gives a grant straight back.
            drop(outcome);
            return Err(busy());
        };
        registry.pending.remove(&id);
        let lost = if registry.closed {
            Some(Error::Closed)
        } else if registry.hidden {
            Some(Error::Cancelled)
        } else {
            None
        };
        match (outcome, lost) {
            (Ok(held), None) => {
                let slot = Rc::new(GuardSlot {
                    id,
                    name,
                    held: RefCell::new(Some(held)),
                });
                registry.guards.insert(id, Rc::clone(&slot));
                Ok(slot)
            }
            (outcome, Some(err)) => {
                drop(registry);
                // Granted just as the instance closed or the page hid: give
                // it straight back.
                drop(outcome);
                Err(err)
            }
            (Err(err), None) => Err(err),
        }
    }
}

impl Drop for TabLocks {
    fn drop(&mut self) {
        self.close();
    }
}
