//! Whether the server can be reached, and what follows when that changes.

use super::{ClientEngine, Effect, Outcome, ProbeReply};
use crate::core::outbox::EntryState;
use crate::core::reachability::{Answer, Changed};

impl ClientEngine {
    /// The probe timer fired: probe if one is due.
    pub(super) fn probe_due(&mut self, now: u64, out: &mut Vec<Effect>) {
        if self.reach.take_due_probe(now) {
            self.counters.requests += 1;
            out.push(Effect::Probe);
        }
    }

    /// `GET /api/me` answered (or not). Another user's token, or a 401,
    /// ends the session: this database's data never goes out with it.
    pub(super) fn probed(&mut self, reply: ProbeReply, now: u64, out: &mut Vec<Effect>) {
        let answer = match &reply {
            ProbeReply::Unreachable => Answer::Unreachable,
            ProbeReply::Status(status) => Answer::of_status(Some(*status)),
            _ => Answer::Answered,
        };
        match reply {
            ProbeReply::User(user) if user == self.user => self.verified = true,
            ProbeReply::User(_) | ProbeReply::Unreadable | ProbeReply::Unauthorized => {
                self.session_ended(out);
            }
            ProbeReply::Status(_) | ProbeReply::Garbled | ProbeReply::Unreachable => {}
        }
        let sample = self.ids.unit();
        let changed = self.reach.probed(answer, now, sample);
        self.reachability_changed(changed, now, out);
    }

    /// A request of any kind ended; `answer` says whether the server
    /// answered.
    pub(super) fn request_ended(&mut self, answer: Answer, now: u64, out: &mut Vec<Effect>) {
        let sample = self.ids.unit();
        let changed = self.reach.request_ended(answer, now, sample);
        self.reachability_changed(changed, now, out);
    }

    /// The browser's `online`/`offline` events. Back online, entries
    /// waiting for a retry go at once and the server is probed.
    pub(super) fn network(&mut self, up: bool, now: u64, out: &mut Vec<Effect>) {
        let changed = self.reach.network_changed(up, now);
        if up {
            self.outbox.clear_retry_times();
        }
        self.reachability_changed(changed, now, out);
    }

    /// `status.online` flipped: offline, callers waiting on entries that
    /// cannot be sent now hear `queued`; online again, catch up.
    fn reachability_changed(&mut self, changed: Changed, now: u64, out: &mut Vec<Effect>) {
        if !changed.0 {
            return;
        }
        if self.reach.online() {
            self.local.others_may_wait();
            self.ring_feed_if_following(now, out);
        } else {
            let ids: Vec<String> = self.waiting.keys().cloned().collect();
            for id in ids {
                let sending = self
                    .outbox
                    .get(&id)
                    .is_some_and(|e| e.state == EntryState::Sending);
                if !sending {
                    self.settle(&id, Ok(Outcome::Queued(id.clone())), out);
                }
            }
        }
        out.push(Effect::Changed);
    }
}
