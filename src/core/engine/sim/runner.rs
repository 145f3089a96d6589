//! The runner's part: the engine's effects carried out on the model stores,
//! the model network and the other tabs, as `web::client` does in a page.

use super::*;

impl World {
    /// Takes the engine's effects in the order it gives them (a write
    /// holds back what follows it until its transaction completed: a few
    /// ms later, a tab's writes in the order they began), as the web
    /// runner does, and keeps the tab's one timer at the engine's
    /// deadline.
    pub(super) fn run_effects(&mut self, tab: usize) {
        while let Some(effect) = self.tabs[tab].engine.as_mut().and_then(|e| e.poll_output()) {
            self.carry_out(tab, effect);
        }
        let Some(at) = self.tabs[tab].engine.as_ref().map(|e| e.poll_timeout()) else {
            return;
        };
        if at == self.tabs[tab].timer {
            return;
        }
        self.tabs[tab].timer = at;
        if let Some(at) = at {
            // Browsers may fire a timer a millisecond before the clock
            // says its time has come.
            let early = u64::from(self.chance(0.2));
            let delay = at.saturating_sub(self.now).saturating_sub(early);
            let epoch = self.tabs[tab].epoch;
            self.at(delay, Msg::Timer { tab, epoch, at });
        }
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

    pub(super) fn carry_out(&mut self, tab: usize, effect: Effect) {
        let user = self.tabs[tab].user;
        let epoch = self.tabs[tab].epoch;
        match effect {
            write @ Effect::Write { .. } => {
                let done =
                    (self.now + 1 + self.pick(5) as u64).max(self.tabs[tab].writes_free_at + 1);
                self.tabs[tab].writes_free_at = done;
                let delay = done - self.now;
                self.at(
                    delay,
                    Msg::WriteDone {
                        tab,
                        epoch,
                        write: Box::new(write),
                    },
                );
            }
            Effect::WriteHeld => {
                if !self.tabs[tab].held.is_empty() {
                    self.store(tab, None, Vec::new());
                }
            }
            Effect::Send { entry, .. } => {
                // A tab re-sending an entry under a key it saw answered
                // would only get the old answer again. (Until outbox
                // updates were keyed, another tab's stale copy could bring
                // an answered key back, so this was checked only for a
                // tab's own entries.)
                if self.tabs[tab].answered.contains(&entry.idempotency_key) {
                    self.broken = Some(format!(
                        "tab {tab} sent {} again under an Idempotency-Key already answered",
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
                if self.tabs[tab].cut_until.is_some() {
                    let reply = Reply::Refused(no_answer(ErrorCode::Network, "network error: cut"));
                    self.inflight.insert(attempt, (tab, epoch, wire));
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
                self.inflight.insert(attempt, (tab, epoch, wire));
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
            Effect::Settle { callers, result } => {
                for caller in callers {
                    let Some(what) = self.tabs[tab].callers.remove(&caller) else {
                        panic!(
                            "seed {}: caller {caller} of tab {tab} settled twice or never made",
                            self.seed
                        );
                    };
                    if let Ok(Outcome::Committed(record) | Outcome::Merged(record, _)) = &result {
                        self.check_acknowledged(record, &what);
                        self.check_no_lost_update(caller, record);
                    } else {
                        self.expected.remove(&caller);
                    }
                    self.note(format!(
                        "tab {tab} settles {what}: {}",
                        outcome_name(&result)
                    ));
                }
            }
            Effect::Probe => self.request(tab, Wire::Probe, |attempt| Msg::Probe {
                tab,
                epoch,
                attempt,
            }),
            Effect::Fetch { key, mutation_id } => {
                let record = self.server.records.get(&key.id).cloned();
                self.deliver(
                    tab,
                    Event::Fetched {
                        mutation_id,
                        record,
                    },
                );
            }
            Effect::TellCommitted { key, .. } => {
                let id = key.id.clone();
                self.tell_tabs(tab, move |tab, epoch| Msg::RecordNotice {
                    tab,
                    epoch,
                    id: id.clone(),
                });
            }
            Effect::ReadFeed { since } => {
                self.request(tab, Wire::Feed, |attempt| Msg::FeedRequest {
                    tab,
                    epoch,
                    attempt,
                    since,
                })
            }
            Effect::OpenStream { .. } => {
                self.next_stream += 1;
                let stream = self.next_stream;
                self.tabs[tab].stream = Some((stream, false));
                // A stream that cannot get through, or a proxy that cuts
                // it before anything came, fails; else the browser opens
                // it and the server says `ready`.
                let fails = self.tabs[tab].cut_until.is_some() || self.chance(0.1);
                let signals: &[StreamSignal] = if fails {
                    &[StreamSignal::Error]
                } else {
                    &[StreamSignal::Opened, StreamSignal::Ready]
                };
                for (i, &signal) in signals.iter().enumerate() {
                    let delay = 5 + 10 * i as u64 + self.pick(100) as u64;
                    self.at(
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
            Effect::CloseStream => self.tabs[tab].stream = None,
            Effect::Revoke => self.request(tab, Wire::Revoke, |attempt| Msg::RevokeRequest {
                tab,
                epoch,
                attempt,
            }),
            Effect::LoggedOut => {
                // Logout keeps work: unless discarded, nothing this tab
                // made is left off the server when the token goes (what
                // other tabs queue meanwhile stays in IndexedDB, below).
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
            Effect::TellReloaded { .. } => {
                self.tell_tabs(tab, |tab, epoch| Msg::ReloadNotice { tab, epoch });
            }
            Effect::Reload { .. } => {
                self.reload_due.remove(&tab);
                let delay = 5 + self.pick(300) as u64;
                self.at(delay, Msg::Reload { tab, epoch });
            }
            Effect::RecordChanged { .. }
            | Effect::Changed
            | Effect::ConflictFound(_)
            | Effect::UndoableChanged
            | Effect::FailureFound(_)
            | Effect::SessionEnded
            | Effect::Drained(_)
            | Effect::Pulled(_)
            | Effect::LoadFrom { .. }
            | Effect::MarkLoaded { .. }
            | Effect::CaughtUp { here: false, .. } => {}
            Effect::CaughtUp { here: true, .. } => {
                self.tell_tabs(tab, |tab, epoch| Msg::CaughtUp { tab, epoch });
            }
            Effect::AskCatchUp => {
                self.tell_tabs(tab, |tab, epoch| Msg::CatchUpAsked { tab, epoch });
            }
        }
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
