//! Named exclusive locks among the tabs of an origin over a
//! `BroadcastChannel`, for browsers without Web Locks, as a pure state
//! machine per tab ([`LockTable`]); leadership is the lock [`LEADER_LOCK`].
//! The envelope every message between tabs travels in, these included, is
//! [`crate::core::tab_message`]'s.
//!
//! # The protocol
//!
//! Every tab keeps a view of who wants or holds which lock, built only from
//! messages ([`LockSignal`]):
//!
//! - `Request` announces an entry: this tab wants the lock. It is stamped
//!   with a hybrid logical clock, `max(last stamp seen or made + 1, now)`:
//!   a request made after hearing of another is always stamped later (the
//!   Lamport rule), and requests made apart in time are ordered by time,
//!   because every tab of a browser reads the same wall clock.
//! - A tab takes the lock when its entry has waited `settle_ms` since it was
//!   announced (or, sooner, every tab it knows of has answered the request:
//!   see "The answer"), the tab has listened for
//!   [`ElectionConfig::join_ms`] since it loaded, no entry of that lock is
//!   known to be held, and its entry is the first waiting one in the order
//!   `(stamp, tab id, token)`: the same order in every tab, so all agree
//!   who is next without a coordinator. It then sends `Hold`.
//! - `Release` ends an entry. A holder's `Release` names the entry first
//!   in line as it sees it (`next`, the hand-off): the named tab takes the
//!   lock on receipt, without the settle wait, if it is past its join wait
//!   and first in line in its own view too; every other tab that waits for
//!   that lock starts its settle wait again from the receipt, so that the
//!   named tab's `Hold` reaches it first (see "the hand-off" below).
//! - A tab with any entry sends a `Heartbeat`
//!   every `heartbeat_ms`, listing all its entries; it replaces everything
//!   others know of that tab (so a lost `Request`, `Hold` or `Release` is
//!   repaired), and a tab not heard of for `lease_ms` is forgotten, with all
//!   its entries: a crashed holder loses the lock after the lease.
//! - Why the join wait: a new tab has missed every earlier message. Every
//!   tab with entries speaks at least every `silence_ms` (heartbeat plus a
//!   late timer), so after `join_ms = silence_ms + settle_ms` of listening
//!   the newcomer has heard of every entry whose owner is not silent.
//! - A tab checks itself: when it has sent nothing for
//!   [`ElectionConfig::silence_ms`] (frozen, a late timer, a long task),
//!   others may have taken a lock without hearing of it, or forgotten it;
//!   so it gives up what it holds (`Lost`), re-announces what it waits for,
//!   and listens again as if new. [`LockTable::holds`] says the same
//!   without waiting for a tick. `silence_ms <= lease_ms - settle_ms`, so a
//!   holder steps down before anyone may take over.
//! - Every tab with any entry answers every `Request`: a `Heartbeat` (the
//!   "objection" of pubkey/broadcast-channel, which repairs a lost message
//!   sooner), then an `Answer` naming the request. Since one sender's
//!   messages arrive in order, the asker has the answering tab's entries as
//!   they were after it heard the request when the `Answer` arrives. A
//!   request that every known tab has answered may take a free lock at
//!   once (see "The answer").
//! - Two holders of one lock (possible only after lost messages) are found
//!   when one hears the other's `Hold` or `Heartbeat`; both compare
//!   `(acquired stamp, tab id, token)` and the greater gives the lock up
//!   (`Lost`), so exactly one keeps it.
//!
//! # What is guaranteed
//!
//! Assume every message arrives within `D` ms with `2·D <= settle_ms`, in
//! send order per sender (what `BroadcastChannel` promises), none lost, and
//! that a tab frozen or blocked has its queued messages and timers run when
//! it wakes. Then no two tabs hold one lock at the same moment (as
//! [`LockTable::holds`] answers it at that moment), whatever the
//! interleaving, crashes, freezes and tabs joining late: a crashed tab
//! holds nothing, and a silent one stops holding by its own clock before
//! anyone may take over. Waiters are served in request order whenever the
//! later request was made at least `D` after the earlier one; closer
//! requests are ordered by `(stamp, tab id, token)`. A lock held by a tab
//! that crashed goes to the next waiter within `lease_ms + settle_ms + D`
//! (after forgetting a peer, a tab waits one settle time more, in case the
//! peer only looked silent because this tab was frozen with its messages
//! queued).
//!
//! If messages are lost, two holders can exist for a while; once messages
//! arrive again, none is left one heartbeat plus one lease (plus `D`) after
//! the last lost message. The property tests below check exactly these
//! statements on a simulated network.
//!
//! # The hand-off
//!
//! Why skipping the settle wait on a named hand-off keeps one holder (same
//! assumptions, delivery within `D`): the named tab `N` takes the lock at
//! `r`, when the release reaches it. A tab `C` whose request `N` has not
//! heard of by `r` sent it after `r - D`, so its settle wait ends after
//! `r + D`, by when `N`'s `Hold` has reached it. A tab `H` that had settled
//! and waits behind `N` without having heard of `N`'s request would take
//! the lock on the release too; but the release names `N`, so `H` waits a
//! settle from its receipt, by when `N`'s `Hold` has reached it. Only a
//! tab running an older build that ignores `next` could still take the
//! lock beside `N`, and only if `N`'s request had not reached it when the
//! holder released; `BroadcastChannel` delivers in a few milliseconds.
//!
//! # The answer
//!
//! A tab `A` may take a free lock for its entry `e` without the settle
//! wait (past its join wait, first in line, as always) when
//!
//! 1. every tab it knows of with entries has answered `e`'s request since
//!    it was last announced (an answer names the request by the asker's tab,
//!    token and stamp; answers to anything else do not count);
//! 2. `A` has had at least one entry without a break for `settle_ms`, so
//!    every listening tab has heard of it and keeps hearing of it; and
//! 3. no release naming another tab's entry has reached it within
//!    `settle_ms` (that tab's `Hold` may be on its way).
//!
//! A tab that knows no other tab with entries meets (1) at once: the lone
//! tab takes a free lock without a message in between. Every user of the
//! table keeps one entry for good (the candidacy for [`LEADER_LOCK`]), so
//! (2) holds in every tab open longer than a settle wait, and an acquire
//! costs one round trip to the other tabs, not a settle wait.
//!
//! Why this keeps one holder (same assumptions, delivery within `D`,
//! `2·D <= settle_ms`): say `A` takes the lock this way at `g`, visible
//! since `v <= g - settle_ms`, and another tab `C` holds it too.
//!
//! - `C` was known to `A` at `g`: then `C` answered `e` after receiving it,
//!   its heartbeat before the answer listing all its entries; `A` took the
//!   lock, so none of them held it or was ahead of `e`. An entry `C` made
//!   after the answer is stamped after `e` (its clock passed `e`'s stamp),
//!   so it is behind `e` in every view; an entry behind `e` is granted
//!   only first in line in `C`'s own view (hand-offs included), and `e`
//!   stays in that view until `A` releases it. So `C` cannot hold the lock
//!   while `A` does.
//! - `C` was not known to `A` at `g`: none of its current entries had
//!   reached `A`, so its first one was sent after `g - D`. Taken after the
//!   settle wait, `C`'s grant comes after `g - D + settle_ms >= g + D`;
//!   taken this way, `C` has been visible for `settle_ms` since after
//!   `g - D`, so again after `g + D`. By then `A`'s `Hold` (sent at `g`)
//!   has reached `C` (or, had `C` not joined, its join wait hears `A`'s
//!   heartbeat): `C` is not first in line.
//! - `C` took it on a hand-off from `H`, whose release named `C`: had that
//!   release reached `A` before `g`, case 3 kept `A` waiting until `C`'s
//!   `Hold` arrived. Otherwise `H` still held the lock at `g` or released
//!   it less than `D` before: if `A` knew `H`, `H`'s answer (sent after its
//!   release, which then reached `A` first, or listing its hold) kept `A`
//!   from the lock; if not, `H`'s grant falls in one of these cases
//!   against `A` (a finite history: the chain of hand-offs ends in a grant
//!   of another kind).
//!
//! Why (2): two tabs with no entry that ask at once, both knowing only a
//! third tab whose answers reach each of them before the other's request,
//! would each count every known tab as answered. Neither has been visible
//! for a settle wait, so both wait it, and hear each other.
//!
//! A tab that does not answer keeps the asker on the settle path, which is
//! the protocol without answers: a tab closed without a word (forgotten
//! after the lease), a frozen one, one of a build before answers (it reads
//! an answer as a malformed message and ignores it), a tab heard of only
//! after the request went out (it never got it). A tab that closes says so
//! (its releases remove it from the tabs that must answer). A tab of an
//! older build still gets the heartbeat of every answer, as before. When
//! messages are lost the answered path can be wrong as any path can; the
//! duplicate resolves as above, and the property tests check all of this,
//! beside tabs of the older build too.
//!
//! A page restored from the back/forward cache has lost messages: call
//! [`LockTable::rejoin`].
//!
//! ```no_run
//! use crm_sync::core::election::{ElectionConfig, ElectionEffect, LockTable, TabId, LEADER_LOCK};
//!
//! let mut table = LockTable::new(TabId("tab-a".into()), 0x5eed, ElectionConfig::default());
//! let (ticket, effects) = table.acquire(LEADER_LOCK, None, 1_000);
//! // effects: Send(Request ..), ScheduleTick { at_ms: 2_000 } (a heartbeat);
//! // the lock comes after the join wait, at 3_500.
//! let effects = table.tick(2_000);
//! let effects = table.tick(3_500);
//! assert!(effects.contains(&ElectionEffect::Granted(ticket.clone())));
//! assert!(table.holds(&ticket, 3_500));
//! ```

use crate::core::vecmap::VecMap;

use serde::{Deserialize, Serialize};

/// The lock whose holder is the leader tab.
pub const LEADER_LOCK: &str = "crm-sync:leader";

/// Stamps above this are not taken from other tabs: they would not survive
/// the trip through a JavaScript number, and a broken tab must not be able
/// to push every clock to the end of time.
const MAX_STAMP: u64 = (1 << 53) - 1;

/// Bounds on what other tabs can make this one remember.
const MAX_PEERS: usize = 256;
const MAX_ENTRIES_PER_PEER: usize = 64;
const MAX_LOCK_NAME: usize = 256;

/// A tab's id, made at random when the page loads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TabId(pub String);

impl std::fmt::Display for TabId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Timings of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ElectionConfig {
    /// A tab with any entry says it is alive this often (1000).
    pub heartbeat_ms: u64,
    /// A tab not heard of for this long is forgotten (3000).
    pub lease_ms: u64,
    /// A request waits this long for objections before it may take the
    /// lock; at least twice the longest delivery time (100).
    pub settle_ms: u64,
    /// How late a heartbeat timer may fire (background tabs run timers at
    /// most once a second) before the tab counts as silent (1400).
    pub late_ms: u64,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 1_000,
            lease_ms: 3_000,
            settle_ms: 100,
            late_ms: 1_400,
        }
    }
}

impl ElectionConfig {
    /// After this long without sending, a tab with entries counts itself
    /// as silent: it gives up its holds and asks again as if new. Never
    /// more than `lease_ms - settle_ms`, so that it steps down before the
    /// others can forget it (2400).
    pub fn silence_ms(&self) -> u64 {
        self.heartbeat_ms
            .saturating_add(self.late_ms)
            .min(self.lease_ms.saturating_sub(self.settle_ms))
    }

    /// A tab new to the channel (or back from silence) listens this long
    /// before it takes any lock: every tab that has entries and is not
    /// silent speaks within it, so the newcomer knows the line (2500).
    pub fn join_ms(&self) -> u64 {
        self.silence_ms().saturating_add(self.settle_ms)
    }
}

/// One instance of a tab: its id and the random token of this page load (a
/// duplicated tab may carry its id along; the token still tells them apart).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Participant {
    /// The tab id.
    pub tab: TabId,
    /// Random, per page load.
    pub token: u64,
}

/// One acquire of this tab: the lock and the stamp of its request, which
/// together name it in every tab.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockTicket {
    /// The lock's name.
    pub lock: String,
    /// The stamp of the request.
    pub stamp: u64,
}

/// An entry as a heartbeat lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    /// The lock's name.
    pub lock: String,
    /// The stamp of the request.
    pub stamp: u64,
    /// The stamp of the grant, if the sender holds the lock.
    pub acquired: Option<u64>,
}

/// One message of the lock protocol, as one tab sends it to all others
/// (on the wire: [`crate::core::tab_message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockMessage {
    /// The sender's token (the envelope carries its tab id).
    pub token: u64,
    /// The sender's clock when it sent this; receivers' clocks follow it.
    pub clock: u64,
    /// What it says.
    pub signal: LockSignal,
}

/// What a lock message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockSignal {
    /// "I want `lock`." Tabs with an entry for it answer with a heartbeat.
    Request {
        /// The lock's name.
        lock: String,
        /// The request's stamp.
        stamp: u64,
    },
    /// "I hold `lock` since `acquired`."
    Hold {
        /// The lock's name.
        lock: String,
        /// The request's stamp.
        stamp: u64,
        /// The grant's stamp, which decides between duplicate holders.
        acquired: u64,
    },
    /// "I no longer want or hold this entry."
    Release {
        /// The lock's name.
        lock: String,
        /// The request's stamp.
        stamp: u64,
        /// When the sender held the lock: the entry first in line as it
        /// saw it, which may take the lock at once (the hand-off).
        next: Option<HandOff>,
    },
    /// "I am alive, and these are all my entries."
    Heartbeat {
        /// Everything the sender waits for or holds.
        entries: Vec<LockEntry>,
    },
    /// "I have heard your request `to`, and the heartbeat I sent just
    /// before this lists all my entries" (see "The answer"). Tabs of an
    /// older build do not read it and never send it.
    Answer {
        /// The request answered: its tab, token and stamp.
        to: HandOff,
    },
}

/// One request of one tab: the entry a releasing holder hands the lock
/// to, or the request an [`LockSignal::Answer`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandOff {
    /// Its tab.
    pub tab: TabId,
    /// Its tab's token.
    pub token: u64,
    /// The stamp of its request.
    pub stamp: u64,
}

/// What the web layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionEffect {
    /// Post this message (in a [`crate::core::tab_message::Envelope`]) to the
    /// other tabs.
    Send(LockMessage),
    /// The ticket's lock is now held by this tab.
    Granted(LockTicket),
    /// The ticket's lock was held and is not any more (another holder won,
    /// or this tab was silent too long); stop acting as its holder.
    Lost(LockTicket),
    /// The ticket was not granted within its timeout (`lock_timeout`).
    TimedOut(LockTicket),
    /// (Re)arm the one timer for `at_ms`, replacing the previous one; when it
    /// fires, call [`LockTable::tick`].
    ScheduleTick {
        /// When (ms, the clock passed as `now`).
        at_ms: u64,
    },
}

/// One of this tab's entries.
#[derive(Debug, Clone)]
struct OwnEntry {
    ticket: LockTicket,
    /// When the request was last announced; the settle wait counts from here.
    announced_at: u64,
    deadline: Option<u64>,
    acquired: Option<u64>,
    /// Named by the holder's release that this input brought: may be
    /// granted without the settle wait, within this call only.
    handed: bool,
    /// The tabs that answered this request since it was last announced.
    answered: Vec<Participant>,
}

/// What this tab knows of another.
#[derive(Debug, Clone)]
struct Peer {
    last_seen: u64,
    entries: Vec<LockEntry>,
}

/// One tab's side of the lock protocol: its own requests and holds, and what
/// it has heard of the others'. Driven by [`acquire`](Self::acquire),
/// [`release`](Self::release), [`receive`](Self::receive) and
/// [`tick`](Self::tick); every call returns the effects to carry out.
#[derive(Debug, Clone)]
pub struct LockTable {
    me: Participant,
    config: ElectionConfig,
    /// Hybrid logical clock: the greatest stamp made or seen.
    clock: u64,
    /// Ordered by stamp.
    own: Vec<OwnEntry>,
    peers: VecMap<Participant, Peer>,
    /// When this tab last sent anything: the others' lease counts from there.
    last_sent: Option<u64>,
    /// Since when this tab has listened without a gap; no grant before
    /// `join_ms` after it.
    joined_at: Option<u64>,
    /// No grant before this: set when peers are forgotten.
    quiet_until: u64,
    last_heartbeat: Option<u64>,
    scheduled: Option<u64>,
    /// Since when this tab has had at least one entry without a break (so
    /// the others have heard of it and keep hearing of it): `None` while it
    /// has none. The lone-tab path counts from here.
    visible_since: Option<u64>,
    /// No grant on the answered path before this: set when a release
    /// names another tab's entry, whose `Hold` is then on its way.
    lone_after: u64,
    /// Grants made on the answered path before the settle wait (the
    /// property tests check that it is taken).
    #[cfg(test)]
    early_grants: u64,
    /// Behaves as a build before answers: never sends one (answers a
    /// request with a heartbeat instead); the simulation also keeps
    /// answers from reaching it, as that build cannot read them.
    #[cfg(test)]
    legacy: bool,
}

impl LockTable {
    /// A table for tab `tab` with its random `token`.
    pub fn new(tab: TabId, token: u64, config: ElectionConfig) -> Self {
        Self {
            me: Participant { tab, token },
            config,
            clock: 0,
            own: Vec::new(),
            peers: VecMap::new(),
            last_sent: None,
            joined_at: None,
            quiet_until: 0,
            last_heartbeat: None,
            scheduled: None,
            visible_since: None,
            lone_after: 0,
            #[cfg(test)]
            early_grants: 0,
            #[cfg(test)]
            legacy: false,
        }
    }

    /// This tab.
    pub fn me(&self) -> &Participant {
        &self.me
    }

    /// The timings in use.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// Asks for `lock`; `timeout_ms` of `None` waits for ever. The returned
    /// ticket names this acquire in later effects and in
    /// [`release`](Self::release). Several acquires of one lock by one tab
    /// queue like any others.
    pub fn acquire(
        &mut self,
        lock: &str,
        timeout_ms: Option<u64>,
        now: u64,
    ) -> (LockTicket, Vec<ElectionEffect>) {
        let mut fx = Vec::new();
        self.maintain(now, &mut fx);
        let stamp = self.next_stamp(now);
        if self.own.is_empty() {
            // The request says all there is to say about this tab: it counts
            // as the first heartbeat.
            self.last_heartbeat = Some(now);
            self.visible_since = Some(now);
        }
        let ticket = LockTicket {
            lock: lock.to_string(),
            stamp,
        };
        self.own.push(OwnEntry {
            ticket: ticket.clone(),
            announced_at: now,
            deadline: timeout_ms.map(|t| now.saturating_add(t)),
            acquired: None,
            handed: false,
            answered: Vec::new(),
        });
        self.send(
            LockSignal::Request {
                lock: lock.to_string(),
                stamp,
            },
            now,
            &mut fx,
        );
        self.settle(now, &mut fx);
        (ticket, fx)
    }

    /// Gives up a held or awaited lock. Unknown tickets are ignored.
    pub fn release(&mut self, ticket: &LockTicket, now: u64) -> Vec<ElectionEffect> {
        let mut fx = Vec::new();
        self.maintain(now, &mut fx);
        if let Some(at) = self.own.iter().position(|e| &e.ticket == ticket) {
            let entry = self.own.remove(at);
            let next = if entry.acquired.is_some() && self.fresh(now) {
                self.next_in_line(&entry.ticket.lock, true)
            } else {
                None
            };
            if let Some(next) = &next {
                let me = &self.me;
                if next.tab == me.tab && next.token == me.token {
                    for e in self.own.iter_mut() {
                        e.handed =
                            e.ticket.lock == entry.ticket.lock && e.ticket.stamp == next.stamp;
                    }
                }
            }
            self.send_release_to(&entry.ticket, next, now, &mut fx);
        }
        self.settle(now, &mut fx);
        fx
    }

    /// Gives up everything (on `pagehide` or close), telling the others so
    /// that they need not wait for the lease.
    pub fn release_all(&mut self, now: u64) -> Vec<ElectionEffect> {
        let mut fx = Vec::new();
        let fresh = self.fresh(now);
        self.visible_since = None;
        for entry in std::mem::take(&mut self.own) {
            let next = if entry.acquired.is_some() && fresh {
                self.next_in_line(&entry.ticket.lock, false)
            } else {
                None
            };
            self.send_release_to(&entry.ticket, next, now, &mut fx);
        }
        self.scheduled = None;
        fx
    }

    /// Takes in a message from tab `from`. Any content is accepted: what
    /// makes no sense is ignored, and memory stays bounded.
    pub fn receive(&mut self, from: &TabId, message: LockMessage, now: u64) -> Vec<ElectionEffect> {
        let mut fx = Vec::new();
        self.maintain(now, &mut fx);
        let who = Participant {
            tab: from.clone(),
            token: message.token,
        };
        if who != self.me && (self.peers.contains_key(&who) || self.peers.len() < MAX_PEERS) {
            self.clock = self.clock.max(message.clock.min(MAX_STAMP));
            if let Some(to) = self.take_in(who, message.signal, now) {
                self.send_answer(to, now, &mut fx);
            }
        }
        self.settle(now, &mut fx);
        fx
    }

    /// The timer asked for by [`ElectionEffect::ScheduleTick`] fired (or the
    /// page came back from a freeze: call this before acting as a holder).
    pub fn tick(&mut self, now: u64) -> Vec<ElectionEffect> {
        self.scheduled = None;
        let mut fx = Vec::new();
        self.maintain(now, &mut fx);
        self.settle(now, &mut fx);
        fx
    }

    /// The page came back from the back/forward cache (or anything else
    /// that may have lost messages to it): what this tab knows of the others
    /// may be incomplete, so it listens again as if new before taking any
    /// lock, and re-announces what it waits for. Holds survive if the tab
    /// was not silent too long (the next tick checks that anyway).
    pub fn rejoin(&mut self, now: u64) -> Vec<ElectionEffect> {
        self.scheduled = None;
        let mut fx = Vec::new();
        self.maintain(now, &mut fx);
        self.joined_at = Some(now);
        let waiting: Vec<LockTicket> = self
            .own
            .iter()
            .filter(|e| e.acquired.is_none())
            .map(|e| e.ticket.clone())
            .collect();
        for entry in self.own.iter_mut().filter(|e| e.acquired.is_none()) {
            entry.announced_at = now;
            entry.answered.clear();
        }
        for ticket in waiting {
            let signal = LockSignal::Request {
                lock: ticket.lock,
                stamp: ticket.stamp,
            };
            self.send(signal, now, &mut fx);
        }
        self.settle(now, &mut fx);
        fx
    }

    /// Whether this tab holds `ticket`'s lock at `now`, by its own clock:
    /// false once it has been silent so long that others may have taken
    /// over, even before the next tick says `Lost`.
    pub fn holds(&self, ticket: &LockTicket, now: u64) -> bool {
        self.fresh(now)
            && self
                .own
                .iter()
                .any(|e| &e.ticket == ticket && e.acquired.is_some())
    }

    /// Whether this tab holds `lock` at `now` under any ticket (for the
    /// leader lock: whether this tab is the leader).
    pub fn holds_lock(&self, lock: &str, now: u64) -> bool {
        self.fresh(now)
            && self
                .own
                .iter()
                .any(|e| e.ticket.lock == lock && e.acquired.is_some())
    }

    /// Whether this tab waits for or holds `ticket`.
    pub fn knows(&self, ticket: &LockTicket) -> bool {
        self.own.iter().any(|e| &e.ticket == ticket)
    }

    /// The other tabs this one has heard of lately.
    pub fn peers(&self) -> impl Iterator<Item = &Participant> {
        self.peers.keys()
    }

    /// Whether the others still count this tab as alive, by its own clock.
    fn fresh(&self, now: u64) -> bool {
        self.last_sent
            .is_some_and(|sent| now < sent.saturating_add(self.config.silence_ms()))
    }

    /// Until when this tab only listens: the join wait (see
    /// [`ElectionConfig::join_ms`]), and one settle wait after forgetting a
    /// peer.
    fn listening_until(&self) -> u64 {
        self.joined_at
            .map_or(u64::MAX, |j| j.saturating_add(self.config.join_ms()))
            .max(self.quiet_until)
    }

    fn next_stamp(&mut self, now: u64) -> u64 {
        self.clock = self.clock.saturating_add(1).max(now);
        self.clock
    }

    fn send(&mut self, signal: LockSignal, now: u64, fx: &mut Vec<ElectionEffect>) {
        self.last_sent = Some(now);
        fx.push(ElectionEffect::Send(LockMessage {
            token: self.me.token,
            clock: self.clock,
            signal,
        }));
    }

    fn send_release(&mut self, ticket: &LockTicket, now: u64, fx: &mut Vec<ElectionEffect>) {
        self.send_release_to(ticket, None, now, fx);
    }

    fn send_release_to(
        &mut self,
        ticket: &LockTicket,
        next: Option<HandOff>,
        now: u64,
        fx: &mut Vec<ElectionEffect>,
    ) {
        self.send(
            LockSignal::Release {
                lock: ticket.lock.clone(),
                stamp: ticket.stamp,
                next,
            },
            now,
            fx,
        );
    }

    /// The waiting entry first in line for `lock` as this tab sees it (its
    /// own entries too unless `peers_only`).
    fn next_in_line(&self, lock: &str, with_own: bool) -> Option<HandOff> {
        let theirs = self.peers.iter().flat_map(|(who, peer)| {
            peer.entries
                .iter()
                .filter(|e| e.lock == lock && e.acquired.is_none())
                .map(move |e| (e.stamp, who))
        });
        let mine = self
            .own
            .iter()
            .filter(|e| with_own && e.ticket.lock == lock && e.acquired.is_none())
            .map(|e| (e.ticket.stamp, &self.me));
        theirs.chain(mine).min().map(|(stamp, who)| HandOff {
            tab: who.tab.clone(),
            token: who.token,
            stamp,
        })
    }

    fn send_heartbeat(&mut self, now: u64, fx: &mut Vec<ElectionEffect>) {
        let entries = self
            .own
            .iter()
            .map(|e| LockEntry {
                lock: e.ticket.lock.clone(),
                stamp: e.ticket.stamp,
                acquired: e.acquired,
            })
            .collect();
        self.last_heartbeat = Some(now);
        self.send(LockSignal::Heartbeat { entries }, now, fx);
    }

    /// Answers the request `to`: a heartbeat (which a tab of an older build
    /// reads as the objection it always was), then the word that it
    /// answers `to`, which only this build reads.
    fn send_answer(&mut self, to: HandOff, now: u64, fx: &mut Vec<ElectionEffect>) {
        self.send_heartbeat(now, fx);
        #[cfg(test)]
        if self.legacy {
            return;
        }
        self.send(LockSignal::Answer { to }, now, fx);
    }

    /// Records what `who` says; the request to answer, if it made one.
    fn take_in(&mut self, who: Participant, signal: LockSignal, now: u64) -> Option<HandOff> {
        let peer = self.peers.get_or_insert_with(who.clone(), || Peer {
            last_seen: now,
            entries: Vec::new(),
        });
        peer.last_seen = now;
        let mut answer = None;
        match signal {
            LockSignal::Request { lock, stamp } => {
                self.clock = self.clock.max(stamp.min(MAX_STAMP));
                let known = peer
                    .entries
                    .iter()
                    .any(|e| e.lock == lock && e.stamp == stamp);
                let kept = known
                    || (lock.len() <= MAX_LOCK_NAME && peer.entries.len() < MAX_ENTRIES_PER_PEER);
                // Answered even when already known: a re-announced request
                // waits for answers again. A request this tab does not
                // keep is not answered (the asker waits the settle time);
                // a tab without entries need not answer (see "The answer").
                if kept && !self.own.is_empty() {
                    answer = Some(HandOff {
                        tab: who.tab.clone(),
                        token: who.token,
                        stamp,
                    });
                }
                if !known && kept {
                    peer.entries.push(LockEntry {
                        lock,
                        stamp,
                        acquired: None,
                    });
                }
            }
            LockSignal::Hold {
                lock,
                stamp,
                acquired,
            } => {
                if lock.len() <= MAX_LOCK_NAME {
                    self.clock = self.clock.max(acquired.min(MAX_STAMP));
                    let room = peer.entries.len() < MAX_ENTRIES_PER_PEER;
                    match peer
                        .entries
                        .iter_mut()
                        .find(|e| e.lock == lock && e.stamp == stamp)
                    {
                        Some(entry) => entry.acquired = Some(acquired),
                        None if room => peer.entries.push(LockEntry {
                            lock,
                            stamp,
                            acquired: Some(acquired),
                        }),
                        None => {}
                    }
                }
            }
            LockSignal::Release { lock, stamp, next } => {
                let held = peer
                    .entries
                    .iter()
                    .any(|e| e.lock == lock && e.stamp == stamp && e.acquired.is_some());
                peer.entries
                    .retain(|e| !(e.lock == lock && e.stamp == stamp));
                if let Some(next) = next {
                    // Only a release of a hold it knew of hands this tab
                    // the lock; any named entry makes it wait.
                    let to_me = held && next.tab == self.me.tab && next.token == self.me.token;
                    if !to_me {
                        // The named tab may take the lock now, before its
                        // request reaches us: not alone until its `Hold`
                        // has arrived.
                        self.lone_after = self
                            .lone_after
                            .max(now.saturating_add(self.config.settle_ms));
                    }
                    for e in self
                        .own
                        .iter_mut()
                        .filter(|e| e.ticket.lock == lock && e.acquired.is_none())
                    {
                        if to_me && e.ticket.stamp == next.stamp {
                            e.handed = true;
                        } else {
                            // Handed to another: its `Hold` is on the way,
                            // even if its request has not reached us yet.
                            e.announced_at = e.announced_at.max(now);
                        }
                    }
                }
            }
            LockSignal::Heartbeat { mut entries } => {
                entries.retain(|e| e.lock.len() <= MAX_LOCK_NAME);
                entries.truncate(MAX_ENTRIES_PER_PEER);
                for e in &entries {
                    self.clock = self
                        .clock
                        .max(e.stamp.max(e.acquired.unwrap_or(0)).min(MAX_STAMP));
                }
                peer.entries = entries;
            }
            LockSignal::Answer { to } => {
                // The heartbeat before it (same sender, so delivered first)
                // gave all the sender's entries after it heard the request:
                // what it asks for from now on is stamped after it.
                if to.tab == self.me.tab && to.token == self.me.token {
                    if let Some(e) = self
                        .own
                        .iter_mut()
                        .find(|e| e.ticket.stamp == to.stamp && e.acquired.is_none())
                    {
                        if !e.answered.contains(&who) {
                            e.answered.push(who.clone());
                        }
                    }
                }
            }
        }
        if peer.entries.is_empty() {
            // Nothing to remember: its liveness matters only for entries.
            self.peers.remove(&who);
        }
        answer
    }

    /// What time alone decides: forgotten peers, this tab's own silence,
    /// timeouts.
    fn maintain(&mut self, now: u64, fx: &mut Vec<ElectionEffect>) {
        if self.joined_at.is_none() {
            self.joined_at = Some(now);
        }
        let lease = self.config.lease_ms;
        let before = self.peers.len();
        self.peers
            .retain(|_, peer| now < peer.last_seen.saturating_add(lease));
        if self.peers.len() < before {
            // A peer may look silent only because this tab was frozen and
            // its messages still wait in the queue: hear them out first.
            self.quiet_until = now.saturating_add(self.config.settle_ms);
        }
        if !self.own.is_empty() && !self.fresh(now) {
            // Silent too long (frozen, or a timer came late): others may
            // have taken a lock without hearing our objection, or forgotten
            // us. Holding on would risk two holders; a lost hold is gone for
            // good (the caller decides whether to ask again), while waiters
            // keep their place in line but listen again as if new.
            self.joined_at = Some(now);
            let mut kept = Vec::new();
            for mut entry in std::mem::take(&mut self.own) {
                if entry.acquired.is_some() {
                    self.send_release(&entry.ticket, now, fx);
                    fx.push(ElectionEffect::Lost(entry.ticket));
                } else {
                    entry.announced_at = now;
                    entry.answered.clear();
                    let signal = LockSignal::Request {
                        lock: entry.ticket.lock.clone(),
                        stamp: entry.ticket.stamp,
                    };
                    self.send(signal, now, fx);
                    kept.push(entry);
                }
            }
            self.own = kept;
            // Others may have forgotten this tab: it is heard of again
            // from these requests on.
            self.visible_since = (!self.own.is_empty()).then_some(now);
        }
        let mut timed_out = Vec::new();
        self.own.retain(|e| {
            let due = e.acquired.is_none() && e.deadline.is_some_and(|d| now >= d);
            if due {
                timed_out.push(e.ticket.clone());
            }
            !due
        });
        for ticket in timed_out {
            self.send_release(&ticket, now, fx);
            fx.push(ElectionEffect::TimedOut(ticket));
        }
    }

    /// After any input: duplicates resolved, grants made, heartbeat sent if
    /// due, the timer set.
    fn settle(&mut self, now: u64, fx: &mut Vec<ElectionEffect>) {
        self.resolve_duplicates(now, fx);
        if self.own.is_empty() {
            self.visible_since = None;
        }
        self.grant(now, fx);
        for e in self.own.iter_mut() {
            e.handed = false;
        }
        let heartbeat_due = match self.last_heartbeat {
            Some(h) => now >= h.saturating_add(self.config.heartbeat_ms),
            None => true,
        };
        if !self.own.is_empty() && heartbeat_due {
            self.send_heartbeat(now, fx);
        }
        self.schedule(now, fx);
    }

    fn resolve_duplicates(&mut self, now: u64, fx: &mut Vec<ElectionEffect>) {
        let mut lost = Vec::new();
        let mut assert_hold = false;
        for entry in &self.own {
            let Some(mine) = entry.acquired else { continue };
            for (who, peer) in self.peers.iter() {
                for other in &peer.entries {
                    let Some(theirs) = other.acquired else {
                        continue;
                    };
                    if other.lock != entry.ticket.lock {
                        continue;
                    }
                    if (theirs, who) < (mine, &self.me) {
                        lost.push(entry.ticket.clone());
                    } else {
                        // Tell the other holder now rather than at our next
                        // heartbeat: it is the one to give up.
                        assert_hold = true;
                    }
                }
            }
        }
        crate::core::sort::sort(&mut lost);
        lost.dedup();
        for ticket in lost {
            self.own.retain(|e| e.ticket != ticket);
            self.send_release(&ticket, now, fx);
            fx.push(ElectionEffect::Lost(ticket));
        }
        if assert_hold {
            self.send_heartbeat(now, fx);
        }
    }

    /// Whether `entry` is first in line for its lock, as this tab sees it.
    fn first_in_line(&self, entry: &OwnEntry) -> bool {
        let lock = &entry.ticket.lock;
        let mine = (entry.ticket.stamp, &self.me);
        let peers_clear = self.peers.iter().all(|(who, peer)| {
            peer.entries
                .iter()
                .filter(|e| &e.lock == lock)
                .all(|e| e.acquired.is_none() && (e.stamp, who) > mine)
        });
        let own_clear = self
            .own
            .iter()
            .filter(|e| &e.ticket.lock == lock && e.ticket != entry.ticket)
            .all(|e| e.acquired.is_none() && e.ticket.stamp > entry.ticket.stamp);
        peers_clear && own_clear
    }

    /// Whether this tab may skip the settle wait for requests that every
    /// known tab has answered: it has had entries, so been heard of, for
    /// at least a settle wait, and no release named another tab's entry
    /// within one (see "The answer").
    fn may_skip_settle(&self, now: u64) -> bool {
        now >= self.lone_after
            && self
                .visible_since
                .is_some_and(|v| now >= v.saturating_add(self.config.settle_ms))
    }

    /// Whether every tab with entries that this one knows of has answered
    /// `entry`'s request since it was announced (true when it knows none:
    /// the lone tab).
    fn answered_by_all(&self, entry: &OwnEntry) -> bool {
        self.peers.keys().all(|p| entry.answered.contains(p))
    }

    fn grant(&mut self, now: u64, fx: &mut Vec<ElectionEffect>) {
        let early = self.may_skip_settle(now);
        // Bounded by the number of entries: each pass grants one or stops.
        for _ in 0..=self.own.len() {
            let next = self.own.iter().position(|e| {
                e.acquired.is_none()
                    && (e.handed
                        || (early && self.answered_by_all(e))
                        || now >= e.announced_at.saturating_add(self.config.settle_ms))
                    && now >= self.listening_until()
                    && self.first_in_line(e)
            });
            let Some(at) = next else { break };
            #[cfg(test)]
            if !alone_settled(&self.own[at], now, self.config.settle_ms) {
                self.early_grants += 1;
            }
            let acquired = self.next_stamp(now);
            let Some(entry) = self.own.get_mut(at) else {
                break;
            };
            entry.acquired = Some(acquired);
            let ticket = entry.ticket.clone();
            self.send(
                LockSignal::Hold {
                    lock: ticket.lock.clone(),
                    stamp: ticket.stamp,
                    acquired,
                },
                now,
                fx,
            );
            fx.push(ElectionEffect::Granted(ticket));
        }
    }

    /// Grants made on the answered path before the settle wait so far.
    #[cfg(all(test, not(target_arch = "wasm32")))]
    pub(crate) fn early_grants(&self) -> u64 {
        self.early_grants
    }

    /// Asks for the one timer at the earliest moment something may change.
    fn schedule(&mut self, now: u64, fx: &mut Vec<ElectionEffect>) {
        let mut next: Option<u64> = None;
        let mut consider = |at: u64| next = Some(next.map_or(at, |n: u64| n.min(at)));
        let waiting = self.own.iter().any(|e| e.acquired.is_none());
        let listening = self.listening_until();
        for entry in self.own.iter().filter(|e| e.acquired.is_none()) {
            let settled = entry
                .announced_at
                .saturating_add(self.config.settle_ms)
                .max(listening);
            if settled > now {
                consider(settled);
            }
            if let Some(deadline) = entry.deadline {
                consider(deadline);
            }
        }
        if !self.own.is_empty() {
            if let Some(h) = self.last_heartbeat {
                consider(h.saturating_add(self.config.heartbeat_ms));
            }
        }
        if waiting {
            // A forgotten peer may free the line.
            for peer in self.peers.values() {
                consider(peer.last_seen.saturating_add(self.config.lease_ms));
            }
        }
        match next {
            Some(at) => {
                let at = at.max(now);
                if self.scheduled != Some(at) {
                    self.scheduled = Some(at);
                    fx.push(ElectionEffect::ScheduleTick { at_ms: at });
                }
            }
            None => self.scheduled = None,
        }
    }
}

/// Whether `entry` would be granted without the answered path.
#[cfg(test)]
fn alone_settled(entry: &OwnEntry, now: u64, settle_ms: u64) -> bool {
    entry.handed || now >= entry.announced_at.saturating_add(settle_ms)
}

#[cfg(test)]
mod tests;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties;
