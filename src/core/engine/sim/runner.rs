//! The simulation's side of the one runner (`core/engine/runner.rs`): the
//! [`Io`] of one tab, carried out on the model stores, the model network,
//! the other tabs and the virtual clock. Which effect becomes which I/O,
//! the order and the timer are the shared runner's, as in a page.

use super::*;
use crate::core::engine::runner::{self, Io, Post, Request};
use crate::core::engine::{Failure, LoadEnd, LoadPlan};

/// One tab's world, as the runner sees it.
pub(super) struct TabIo<'w> {
    world: &'w mut World,
    tab: usize,
}

impl World {
    /// Carries out what the tab's engine says, through the shared runner.
    pub(super) fn run_effects(&mut self, tab: usize) {
        runner::run(&mut TabIo { world: self, tab });
    }

    /// Writes `ops` (after what the tab holds for lack of space) to the
    /// user's IndexedDB, and reports the write `id` ended.
    pub(super) fn store(&mut self, tab: usize, id: Option<u64>, ops: Vec<StoreOp>) {
        let user = self.tabs[tab].user;
        if self.tracing {
            let names: Vec<String> = ops.iter().map(op_name).collect();
            self.note(format!("tab {tab} writes {names:?}"));
        }
        let mut all = std::mem::take(&mut self.tabs[tab].held);
        let was_held = !all.is_empty();
        all.extend(ops);
        let mut written = true;
        if self.dbs[user].refuse_next {
            written = false;
            self.dbs[user].refuse_next = false;
            self.note(format!("tab {tab} IndexedDB refuses a write (quota)"));
            self.tabs[tab].held = all;
            self.deliver(tab, Event::StoreFull);
        } else {
            let work = all
                .iter()
                .any(|op| !matches!(op, StoreOp::PutRecord { .. } | StoreOp::DeleteRecord(_)));
            self.dbs[user].apply(&all);
            if work {
                self.tell_tabs(tab, |tab, epoch| Msg::WorkNotice { tab, epoch });
            }
            if was_held {
                self.deliver(tab, Event::HeldWritten);
            }
        }
        if let Some(id) = id {
            self.deliver(tab, Event::Written { id, written });
        }
    }

    /// Sends an outbox entry over the model network.
    fn send_entry(&mut self, tab: usize, entry: OutboxEntry) {
        let epoch = self.tabs[tab].epoch;
        // A tab re-sending an entry under a key it saw answered would only
        // get the old answer again. (Until outbox updates were keyed,
        // another tab's stale copy could bring an answered key back, so
        // this was checked only for a tab's own entries.)
        if self.tabs[tab].answered.contains(&entry.idempotency_key) {
            self.broken = Some(format!(
                "tab {tab} sent {} again under an Idempotency-Key already answered",
                entry.mutation_id
            ));
        }
        // Nor one it was told another tab finished (`finished_elsewhere`):
        // only the server's kept answer would stand between that send and
        // a change applied twice.
        if self.tabs[tab]
            .finished_elsewhere
            .contains(&entry.mutation_id)
        {
            self.broken = Some(format!(
                "tab {tab} sent {} again after it read that another tab finished it",
                entry.mutation_id
            ));
        }
        if self.tracing {
            let (m, k) = (&entry.mutation_id[..8], &entry.idempotency_key[..8]);
            self.note(format!("tab {tab} sends {m} key {k}"));
        }
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        let wire = Wire::Entry(entry.mutation_id.clone(), entry.idempotency_key.clone());
        self.inflight.insert(attempt, (tab, epoch, wire));
        if self.tabs[tab].cut_until.is_some() {
            let reply = Reply::Refused(no_answer(ErrorCode::Network, "network error: cut"));
            self.at(
                1,
                Msg::Answer {
                    tab,
                    epoch,
                    attempt,
                    reply,
                },
            );
            return;
        }
        self.at(
            REQUEST_TIMEOUT_MS,
            Msg::Deadline {
                tab,
                epoch,
                attempt,
            },
        );
        self.send_over_network(Msg::Request {
            tab,
            epoch,
            attempt,
            entry: Box::new(entry),
        });
    }

    /// Settles a tab's callers, checking what each is acknowledged with.
    fn settle(&mut self, tab: usize, callers: Vec<CallerId>, result: &Result<Outcome, Failure>) {
        for caller in callers {
            let Some(what) = self.tabs[tab].callers.remove(&caller) else {
                panic!(
                    "seed {}: caller {caller} of tab {tab} settled twice or never made",
                    self.seed
                );
            };
            if let Ok(Outcome::Committed(record) | Outcome::Merged(record, _)) = result {
                self.check_acknowledged(record, &what);
                self.check_no_lost_update(caller, record);
            } else {
                self.expected.remove(&caller);
            }
            self.note(format!(
                "tab {tab} settles {what}: {}",
                outcome_name(result)
            ));
        }
    }

    /// The token is revoked: the facade closes the user's tabs and deletes
    /// their data. Logout keeps work: unless discarded, nothing this tab
    /// made is left off the server when the token goes (what other tabs
    /// queue meanwhile stays in IndexedDB).
    fn logged_out(&mut self, tab: usize) {
        let user = self.tabs[tab].user;
        let discard = self.tabs[tab].logout.take().unwrap_or(true);
        let own_left = self.tabs[tab].engine.as_ref().map_or(0, |e| {
            e.outbox()
                .entries()
                .filter(|x| e.is_own(&x.mutation_id))
                .count()
                + e.debounced().count()
        });
        if !discard && own_left > 0 {
            self.broken = Some(format!(
                "tab {tab} logged user{user} out with {own_left} of its changes off the server"
            ));
        }
        self.note(format!(
            "tab {tab} logged user{user} out (discard {discard})"
        ));
        self.at(1, Msg::LoggedOut { user, discard });
    }

    /// A request of the runner's own on the wire: it times out, or is
    /// answered by the message `make` gives; through a cut connection it
    /// fails at once.
    pub(super) fn request(&mut self, tab: usize, wire: Wire, make: impl FnOnce(u64) -> Msg) {
        let epoch = self.tabs[tab].epoch;
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        self.inflight.insert(attempt, (tab, epoch, wire));
        let cut = self.tabs[tab].cut_until.is_some();
        let deadline = if cut { 1 } else { REQUEST_TIMEOUT_MS };
        self.at(
            deadline,
            Msg::Deadline {
                tab,
                epoch,
                attempt,
            },
        );
        if !cut {
            self.send_over_network(make(attempt));
        }
    }

    /// A BroadcastChannel message to the user's other live tabs: delayed
    /// and reordered, never lost (the browser delivers within a profile).
    pub(super) fn tell_tabs(&mut self, from: usize, make: impl Fn(usize, u32) -> Msg) {
        let user = self.tabs[from].user;
        for tab in 0..self.tabs.len() {
            if tab != from && self.tabs[tab].user == user && self.tabs[tab].engine.is_some() {
                let delay = 1 + self.pick(20) as u64;
                let msg = make(tab, self.tabs[tab].epoch);
                self.at(delay, msg);
            }
        }
    }

    pub(super) fn send_over_network(&mut self, msg: Msg) {
        if !self.healing && self.chance(self.faults.loss) {
            self.note("network loses a request".into());
            return;
        }
        let delay = 5 + self.pick(300) as u64;
        if !self.healing && self.chance(self.faults.duplicate) {
            let again = 5 + self.pick(600) as u64;
            self.at(again, msg.clone());
        }
        self.at(delay, msg);
    }
}

impl TabIo<'_> {
    fn read_stored_soon(&mut self, or_none: bool) {
        let (w, tab) = (&mut *self.world, self.tab);
        let epoch = w.tabs[tab].epoch;
        let delay = 1 + w.pick(5) as u64;
        w.at(
            delay,
            Msg::StoredRead {
                tab,
                epoch,
                or_none,
            },
        );
    }
}

impl Io for TabIo<'_> {
    fn now(&self) -> u64 {
        self.world.now
    }

    fn with_engine<R>(&mut self, f: impl FnOnce(&mut ClientEngine) -> R) -> Option<R> {
        self.world.tabs[self.tab].engine.as_mut().map(f)
    }

    /// The transaction completes a few ms later, a tab's writes in the
    /// order they began.
    fn write(&mut self, id: u64, ops: Vec<StoreOp>) {
        let (w, tab) = (&mut *self.world, self.tab);
        let done = (w.now + 1 + w.pick(5) as u64).max(w.tabs[tab].writes_free_at + 1);
        w.tabs[tab].writes_free_at = done;
        let delay = done - w.now;
        let epoch = w.tabs[tab].epoch;
        let write = Box::new(Effect::Write {
            id,
            ops,
            persisted: None,
        });
        w.at(delay, Msg::WriteDone { tab, epoch, write });
    }

    fn write_held(&mut self) {
        if !self.world.tabs[self.tab].held.is_empty() {
            self.world.store(self.tab, None, Vec::new());
        }
    }

    fn read_stored_ids(&mut self, _collection: String) {
        let (w, tab) = (&mut *self.world, self.tab);
        let epoch = w.tabs[tab].epoch;
        let delay = 1 + w.pick(5) as u64;
        w.at(delay, Msg::StoredIds { tab, epoch });
    }

    fn request(&mut self, request: Request) {
        let (w, tab) = (&mut *self.world, self.tab);
        let epoch = w.tabs[tab].epoch;
        match request {
            Request::Entry { entry, .. } => w.send_entry(tab, entry),
            Request::Probe => w.request(tab, Wire::Probe, |attempt| Msg::Probe {
                tab,
                epoch,
                attempt,
            }),
            Request::Read {
                id,
                target: ReadTarget::Record(key),
            } => w.request(tab, Wire::Read(id), |attempt| Msg::ReadRequest {
                tab,
                epoch,
                attempt,
                read: id,
                id: key.id,
            }),
            Request::Read { id, .. } => {
                // The model server keeps no history.
                let answer = Err(no_answer(ErrorCode::NotFound, "no history here"));
                w.deliver(tab, Event::ReadDone { id, answer });
            }
            Request::Feed { since } => w.request(tab, Wire::Feed, |attempt| Msg::FeedRequest {
                tab,
                epoch,
                attempt,
                since,
            }),
            Request::Revoke => w.request(tab, Wire::Revoke, |attempt| Msg::RevokeRequest {
                tab,
                epoch,
                attempt,
            }),
            Request::Page { after, size, .. } => {
                w.request(tab, Wire::Page, |attempt| Msg::PageRequest {
                    tab,
                    epoch,
                    attempt,
                    after,
                    size,
                });
            }
        }
    }

    fn open_stream(&mut self, _since: String) {
        let (w, tab) = (&mut *self.world, self.tab);
        let epoch = w.tabs[tab].epoch;
        w.next_stream += 1;
        let stream = w.next_stream;
        w.tabs[tab].stream = Some((stream, false));
        // A stream that cannot get through, or a proxy that cuts it before
        // anything came, fails; else the browser opens it and the server
        // says `ready`.
        let fails = w.tabs[tab].cut_until.is_some() || w.chance(0.1);
        let signals: &[StreamSignal] = if fails {
            &[StreamSignal::Error]
        } else {
            &[StreamSignal::Opened, StreamSignal::Ready]
        };
        for (i, &signal) in signals.iter().enumerate() {
            let delay = 5 + 10 * i as u64 + w.pick(100) as u64;
            w.at(
                delay,
                Msg::Stream {
                    tab,
                    epoch,
                    stream,
                    signal,
                },
            );
        }
    }

    fn close_stream(&mut self) {
        self.world.tabs[self.tab].stream = None;
    }

    fn reload(&mut self, _collections: Vec<String>) {
        let (w, tab) = (&mut *self.world, self.tab);
        let epoch = w.tabs[tab].epoch;
        w.reload_due.remove(&tab);
        let delay = 5 + w.pick(300) as u64;
        w.at(delay, Msg::Reload { tab, epoch });
    }

    fn post(&mut self, post: Post) {
        let (w, tab) = (&mut *self.world, self.tab);
        match post {
            Post::Committed { key, .. } => {
                let id = key.id;
                w.tell_tabs(tab, move |tab, epoch| Msg::RecordNotice {
                    tab,
                    epoch,
                    id: id.clone(),
                });
            }
            Post::Reloaded { .. } => {
                w.tell_tabs(tab, |tab, epoch| Msg::ReloadNotice { tab, epoch });
            }
            Post::CaughtUp => w.tell_tabs(tab, |tab, epoch| Msg::CaughtUp { tab, epoch }),
            Post::CatchUpAsked => {
                w.tell_tabs(tab, |tab, epoch| Msg::CatchUpAsked { tab, epoch });
            }
            // The facade's logout, below, closes the user's tabs.
            Post::LoggedOut => {}
        }
    }

    fn tell(&mut self, effect: Effect) {
        match effect {
            Effect::Settle { callers, result } => self.world.settle(self.tab, callers, &result),
            Effect::LoggedOut => self.world.logged_out(self.tab),
            // IndexedDB answers the load: read a few ms later.
            Effect::LoadFrom {
                plan: plan @ (LoadPlan::Local | LoadPlan::Offline),
                ..
            } => self.read_stored_soon(matches!(plan, LoadPlan::Offline)),
            Effect::LoadEnded {
                end: LoadEnd::FromStore(_),
                ..
            } => self.read_stored_soon(true),
            _ => {}
        }
    }

    fn status_changed(&mut self) {}

    fn timer(&self) -> Option<u64> {
        self.world.tabs[self.tab].timer
    }

    fn set_timer(&mut self, at: Option<u64>) {
        let (w, tab) = (&mut *self.world, self.tab);
        w.tabs[tab].timer = at;
        if let Some(at) = at {
            // Browsers may fire a timer a millisecond before the clock
            // says its time has come.
            let early = u64::from(w.chance(0.2));
            let delay = at.saturating_sub(w.now).saturating_sub(early);
            let epoch = w.tabs[tab].epoch;
            w.at(delay, Msg::Timer { tab, epoch, at });
        }
    }
}
