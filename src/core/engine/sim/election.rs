//! Leadership over `BroadcastChannel`, for the users whose browser has no
//! Web Locks: each tab of such a user runs `core::election`'s [`LockTable`]
//! for [`LEADER_LOCK`] as `web/broadcast_locks.rs` does, over a model
//! channel that delivers every message to the user's other open tabs, each
//! a few milliseconds later (at most [`CHANNEL_MS`], in send order per
//! sender). A tab that crashes either closes (its `pagehide` releases what
//! it holds, naming the next in line) or is lost without a word (the others
//! forget it after the lease). As in the browser, a grant of the candidacy
//! tells the engine `Leading` once the stored work is read, and a loss
//! tells it `NotLeading` at once and stands again.
//!
//! What the engine needs of the lock, checked in `checks.rs`: at most one
//! tab of a user holds the leader lock at any moment, by its own clock
//! (`LockTable::holds_lock`), and so at most one engine leads; what two
//! tabs send of one entry otherwise is covered by the entry's key.

use super::*;
use crate::core::election::{
    ElectionConfig, ElectionEffect, LockMessage, LockTable, LockTicket, TabId, LEADER_LOCK,
};

/// The longest a message takes from one tab to another: half the settle
/// wait, as the protocol assumes (`2·D <= settle_ms`).
pub(super) const CHANNEL_MS: u64 = 50;

/// One tab's side of the channel.
pub(super) struct TabLocks {
    pub(super) table: LockTable,
    /// The ticket of the tab's candidacy for leadership, while it stands.
    candidacy: Option<LockTicket>,
    /// The one timer the table asks for (`ScheduleTick`).
    timer: Option<u64>,
}

fn tab_id(tab: usize) -> TabId {
    TabId(format!("tab{tab}"))
}

impl World {
    /// Whether `user`'s browser elects over `BroadcastChannel`.
    pub(super) fn on_channel(&self, user: usize) -> bool {
        self.broadcast[user]
    }

    /// A tab that opens joins the channel and stands for leadership.
    pub(super) fn join_channel(&mut self, tab: usize) {
        let token = (self.channel_rng.unit() * (1u64 << 53) as f64) as u64;
        let table = LockTable::new(tab_id(tab), token, ElectionConfig::default());
        self.tabs[tab].locks = Some(TabLocks {
            table,
            candidacy: None,
            timer: None,
        });
        self.stand(tab);
    }

    fn stand(&mut self, tab: usize) {
        let now = self.now;
        let Some(locks) = self.tabs[tab].locks.as_mut() else {
            return;
        };
        if locks.candidacy.is_some() {
            return;
        }
        let (ticket, fx) = locks.table.acquire(LEADER_LOCK, None, now);
        locks.candidacy = Some(ticket);
        self.lock_effects(tab, fx);
    }

    /// A tab goes: `closed`, its `pagehide` releases what it holds (the
    /// messages it posts still arrive); else it is lost without a word.
    pub(super) fn leave_channel(&mut self, tab: usize, closed: bool) {
        let user = self.tabs[tab].user;
        let Some(mut locks) = self.tabs[tab].locks.take() else {
            return;
        };
        if self.leaders[user] == Some(tab) {
            self.leaders[user] = None;
        }
        let how = if closed { "closes" } else { "is lost" };
        self.note(format!("tab {tab} {how} on the channel"));
        if closed {
            let fx = locks.table.release_all(self.now);
            self.post_all(tab, fx);
        }
    }

    /// Whether a crashing tab closes (else it is lost).
    pub(super) fn closes(&mut self) -> bool {
        self.channel_rng.unit() < 0.5
    }

    fn post_all(&mut self, from: usize, fx: Vec<ElectionEffect>) {
        for effect in fx {
            if let ElectionEffect::Send(message) = effect {
                self.post(from, message);
            }
        }
    }

    /// Posts `message` to every other open tab of the sender's user on the
    /// channel, each in the order its sender posted.
    fn post(&mut self, from: usize, message: LockMessage) {
        let user = self.tabs[from].user;
        for to in 0..self.tabs.len() {
            let t = &self.tabs[to];
            if to == from || t.user != user || t.engine.is_none() || t.locks.is_none() {
                continue;
            }
            let epoch = t.epoch;
            let delay = 1 + (self.channel_rng.unit() * CHANNEL_MS as f64) as u64;
            let at = (self.now + delay.min(CHANNEL_MS))
                .max(self.channel_at.get(&(from, to)).copied().unwrap_or(0));
            self.channel_at.insert((from, to), at);
            self.seq += 1;
            self.queue.insert(
                (at, self.seq),
                Msg::Channel {
                    from,
                    tab: to,
                    epoch,
                    message: Box::new(message.clone()),
                },
            );
        }
    }

    /// Carries out what a tab's table asked for.
    fn lock_effects(&mut self, tab: usize, fx: Vec<ElectionEffect>) {
        let user = self.tabs[tab].user;
        let mut stand_again = false;
        for effect in fx {
            match effect {
                ElectionEffect::Send(message) => self.post(tab, message),
                ElectionEffect::Granted(ticket) => {
                    let ours = self.tabs[tab]
                        .locks
                        .as_ref()
                        .is_some_and(|l| l.candidacy.as_ref() == Some(&ticket));
                    if ours {
                        self.note(format!("tab {tab} takes the leader lock"));
                        if let Some(other) = self.leaders[user].filter(|&o| o != tab) {
                            self.note(format!("tab {other} still counted as the leader"));
                        }
                        self.leaders[user] = Some(tab);
                        // The browser reads the stored work, then tells
                        // the engine.
                        let epoch = self.tabs[tab].epoch;
                        self.at(HANDOVER_MS, Msg::Leading { tab, epoch });
                    }
                }
                ElectionEffect::Lost(ticket) => {
                    let locks = self.tabs[tab].locks.as_mut();
                    if let Some(locks) = locks.filter(|l| l.candidacy.as_ref() == Some(&ticket)) {
                        locks.candidacy = None;
                        self.note(format!("tab {tab} loses the leader lock"));
                        if self.leaders[user] == Some(tab) {
                            self.leaders[user] = None;
                        }
                        self.deliver(tab, Event::NotLeading);
                        stand_again = true;
                    }
                }
                ElectionEffect::TimedOut(_) => {}
                ElectionEffect::ScheduleTick { at_ms } => {
                    if let Some(locks) = self.tabs[tab].locks.as_mut() {
                        locks.timer = Some(at_ms);
                        let epoch = self.tabs[tab].epoch;
                        let delay = at_ms.saturating_sub(self.now);
                        self.at(
                            delay,
                            Msg::LockTick {
                                tab,
                                epoch,
                                at: at_ms,
                            },
                        );
                    }
                }
            }
        }
        if stand_again {
            self.stand(tab);
        }
    }

    /// A message of the channel reaches `tab`.
    pub(super) fn channel_message(&mut self, from: usize, tab: usize, message: LockMessage) {
        let now = self.now;
        let Some(locks) = self.tabs[tab].locks.as_mut() else {
            return;
        };
        let fx = locks.table.receive(&tab_id(from), message, now);
        self.lock_effects(tab, fx);
    }

    /// The table's timer fires, unless replaced since.
    pub(super) fn lock_tick(&mut self, tab: usize, at: u64) {
        let now = self.now;
        let Some(locks) = self.tabs[tab].locks.as_mut() else {
            return;
        };
        if locks.timer != Some(at) {
            return;
        }
        locks.timer = None;
        let fx = locks.table.tick(now);
        self.lock_effects(tab, fx);
    }

    /// The tabs of `user` that hold the leader lock now, by their own clock.
    pub(super) fn lock_holders(&self, user: usize) -> Vec<usize> {
        (0..self.tabs.len())
            .filter(|&t| self.tabs[t].user == user && self.tabs[t].engine.is_some())
            .filter(|&t| {
                self.tabs[t]
                    .locks
                    .as_ref()
                    .is_some_and(|l| l.table.holds_lock(LEADER_LOCK, self.now))
            })
            .collect()
    }
}
