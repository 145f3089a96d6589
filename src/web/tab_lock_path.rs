//! The two ways tabs coordinate, behind one type: Web Locks
//! ([`crate::web::locks`]), where the browser keeps the queue and releases
//! a dead tab's locks, and the BroadcastChannel protocol
//! ([`crate::web::broadcast_locks`]), for browsers without Web Locks and for
//! tests. Which one a `TabLocks` uses is chosen here
//! ([`TabLockPath::open`]), not in the facade.

use crate::error::Error;
use crate::web::broadcast_locks::{
    BroadcastCanceller, BroadcastHeld, BroadcastLocks, PendingBroadcastLock,
};
use crate::web::channel::broadcast_channel_available;
use crate::web::locks::{
    web_locks_available, HeldLock, Leadership, LockCanceller, LockOptions, PendingLock, WebLocks,
};

/// The path asked for: `"auto"` takes Web Locks where the browser has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PathWanted {
    /// Web Locks where present, else BroadcastChannel.
    #[default]
    Auto,
    /// `navigator.locks` only.
    WebLocks,
    /// The BroadcastChannel protocol, even where Web Locks exist.
    Broadcast,
}

/// A lock held on either path; released when dropped.
// The handles are never read: they are kept for their `Drop`, which releases.
#[allow(dead_code)]
pub enum HeldTabLock {
    /// Held through `navigator.locks`.
    Web(HeldLock),
    /// Held through the BroadcastChannel protocol.
    Broadcast(BroadcastHeld),
}

/// A lock request on either path.
pub enum PendingTabLock {
    /// Through `navigator.locks`.
    Web(PendingLock),
    /// Through the BroadcastChannel protocol.
    Broadcast(PendingBroadcastLock),
}

impl PendingTabLock {
    /// Waits for the grant.
    ///
    /// # Errors
    /// [`Error::LockTimeout`], [`Error::Cancelled`], [`Error::Closed`].
    pub async fn granted(self) -> Result<HeldTabLock, Error> {
        match self {
            Self::Web(p) => match p.granted().await? {
                Some(held) => Ok(HeldTabLock::Web(held)),
                None => Err(Error::Cancelled),
            },
            Self::Broadcast(p) => Ok(HeldTabLock::Broadcast(p.granted().await?)),
        }
    }
}

/// Withdraws a request on either path.
pub enum TabLockCanceller {
    /// Of a `navigator.locks` request.
    Web(LockCanceller),
    /// Of a BroadcastChannel request.
    Broadcast(BroadcastCanceller),
}

impl TabLockCanceller {
    /// Withdraws the request (its `granted` then fails with `cancelled`).
    pub fn cancel(&self) {
        match self {
            Self::Web(c) => c.cancel(),
            Self::Broadcast(c) => c.cancel(),
        }
    }
}

/// The path in use, with this tab's leadership on it.
pub enum TabLockPath {
    /// `navigator.locks`.
    Web {
        /// The browser's lock manager.
        locks: WebLocks,
        /// `None` while not competing (after `pagehide`).
        leadership: Option<Leadership>,
    },
    /// The BroadcastChannel protocol.
    Broadcast(BroadcastLocks),
}

impl TabLockPath {
    /// Opens the path `wanted` names on `channel_name` (`Auto`: Web Locks
    /// where present). `on_leader_change` is called (from a task of its
    /// own) when the BroadcastChannel protocol notices a change.
    ///
    /// # Errors
    /// [`Error::Invalid`] when this browser cannot do the path asked for.
    pub fn open(
        wanted: PathWanted,
        channel_name: &str,
        tab_id: &str,
        on_leader_change: impl Fn() + 'static,
    ) -> Result<TabLockPath, Error> {
        let web = web_locks_available();
        let broadcast = broadcast_channel_available();
        let use_web = match wanted {
            PathWanted::Auto | PathWanted::WebLocks if web => true,
            PathWanted::Auto | PathWanted::Broadcast if broadcast => false,
            asked => {
                return Err(Error::Invalid(format!(
                    "this browser cannot coordinate tabs in mode {asked:?} \
                     (Web Locks: {web}, BroadcastChannel: {broadcast})"
                )))
            }
        };
        if use_web {
            let locks = WebLocks::get()
                .ok_or_else(|| Error::Invalid("navigator.locks is missing".into()))?;
            Ok(Self::Web {
                locks,
                leadership: None,
            })
        } else {
            BroadcastLocks::open(channel_name, tab_id, on_leader_change).map(Self::Broadcast)
        }
    }

    /// Whether this is the BroadcastChannel path.
    pub fn is_broadcast(&self) -> bool {
        matches!(self, Self::Broadcast(_))
    }

    /// Whether this tab leads on this path now.
    pub fn is_leader(&self) -> bool {
        match self {
            Self::Web { leadership, .. } => leadership.as_ref().is_some_and(Leadership::is_leader),
            Self::Broadcast(b) => b.is_leader(),
        }
    }

    /// Starts competing for leadership (`leader_lock` on the Web Locks
    /// path), unless already doing so; `on_gain` runs when it is won there.
    ///
    /// # Errors
    /// What `navigator.locks.request` threw.
    pub fn campaign(
        &mut self,
        leader_lock: &str,
        on_gain: impl Fn() + 'static,
    ) -> Result<(), Error> {
        match self {
            Self::Web { locks, leadership } => {
                if leadership.is_none() {
                    *leadership = Some(locks.campaign(leader_lock, on_gain)?);
                }
            }
            Self::Broadcast(b) => b.campaign(),
        }
        Ok(())
    }

    /// Stops competing on the Web Locks path; the returned leadership
    /// resigns when dropped (after the caller released its locks).
    pub fn resign(&mut self) -> Option<Leadership> {
        match self {
            Self::Web { leadership, .. } => leadership.take(),
            Self::Broadcast(_) => None,
        }
    }

    /// `pagehide`: the BroadcastChannel path goes quiet.
    pub fn suspend(&self) {
        if let Self::Broadcast(b) = self {
            b.suspend();
        }
    }

    /// `pageshow` from the back/forward cache.
    pub fn restore(&mut self) {
        if let Self::Broadcast(b) = self {
            b.restore();
        }
    }

    /// `resume` after `freeze`: leadership is verified again on the
    /// BroadcastChannel path (the browser keeps Web Locks meanwhile).
    pub fn resume(&self) {
        if let Self::Broadcast(b) = self {
            b.resume();
        }
    }

    /// Requests the lock: `web_name` on the Web Locks path, `name` on the
    /// BroadcastChannel one.
    ///
    /// # Errors
    /// What the path refuses at once (a bad name, a closed channel).
    pub fn request(
        &self,
        web_name: &str,
        name: &str,
        timeout_ms: Option<u32>,
    ) -> Result<(PendingTabLock, TabLockCanceller), Error> {
        Ok(match self {
            Self::Web { locks, .. } => {
                let options = LockOptions {
                    if_available: false,
                    timeout_ms,
                };
                let p = locks.request(web_name, options)?;
                let c = TabLockCanceller::Web(p.canceller());
                (PendingTabLock::Web(p), c)
            }
            Self::Broadcast(b) => {
                let p = b.request(name, timeout_ms)?;
                let c = TabLockCanceller::Broadcast(p.canceller());
                (PendingTabLock::Broadcast(p), c)
            }
        })
    }

    /// Messages the BroadcastChannel path ignored (0 on Web Locks).
    pub fn ignored_messages(&self) -> u32 {
        match self {
            Self::Broadcast(b) => b.ignored_messages(),
            Self::Web { .. } => 0,
        }
    }

    /// Test-only: vanish like a crashed tab on the BroadcastChannel path
    /// (no release, no resignation); on Web Locks the browser would release
    /// a dead tab's locks, so dropping is the same.
    pub fn crash(self) {
        if let Self::Broadcast(b) = self {
            b.crash();
        }
    }
}
