//! Logging out without losing work.
//!
//! ```text
//!  Logout ─► flush the debounce window ─► wait while the outbox drains
//!     (until nothing is left, the network is down, or the wait is over)
//!     anything left (queued, failed, conflict)? ─► PendingChanges, nothing changes
//!     nothing left, or discard ─► Revoke ─► Revoked(ok | 401) ─► LoggedOut
//!                                        └► Revoked(error) ─► the caller hears it,
//!                                                             nothing changes
//! ```
//!
//! The token is revoked before anything local is deleted: the user is
//! either logged out everywhere with their data gone, or still logged in
//! with everything kept.

use super::{CallerId, ClientEngine, Effect, Failure, Outcome, Refusal};

/// A logout under way.
#[derive(Debug, Clone)]
pub(super) struct LoggingOut {
    pub(super) caller: CallerId,
    discard: bool,
    /// When the wait for the outbox ends.
    deadline: u64,
    /// The revoke is on its way.
    revoking: bool,
}

impl LoggingOut {
    /// When the wait ends, while it lasts.
    pub(super) fn deadline(&self) -> Option<u64> {
        (!self.revoking).then_some(self.deadline)
    }
}

impl ClientEngine {
    /// `logout({ discard })`.
    pub(super) fn logout(
        &mut self,
        discard: bool,
        caller: CallerId,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        if self.logging_out.is_some() {
            out.push(Effect::Settle {
                callers: vec![caller],
                result: Err(Failure::Invalid("a logout is already under way".into())),
            });
            return;
        }
        if !discard {
            self.flush(false, now, out);
        }
        self.logging_out = Some(LoggingOut {
            caller,
            discard,
            deadline: now + self.config.logout_wait_ms,
            revoking: false,
        });
    }

    /// What is left off the server here: debounced, queued, failed and
    /// conflicts.
    pub fn left_off_server(&self) -> usize {
        self.outbox.pending().len()
            + self.debounced().count()
            + self.outbox.failed().len()
            + self.conflicts.len()
    }

    /// After each event: whether the logout can go on, must give up, or
    /// waits.
    pub(super) fn logout_step(&mut self, now: u64, out: &mut Vec<Effect>) {
        let Some(state) = self.logging_out.clone() else {
            return;
        };
        if state.revoking {
            return;
        }
        let sending = !self.outbox.pending().is_empty() || self.debounced().next().is_some();
        // Without a network nothing will go out; with one, a probe may
        // bring the server back within the wait.
        let stuck = !self.reach.network() || self.expired;
        let waiting = sending && !stuck && now < state.deadline && !state.discard;
        if waiting {
            return;
        }
        let left = self.left_off_server();
        if left > 0 && !state.discard {
            self.logging_out = None;
            out.push(Effect::Settle {
                callers: vec![state.caller],
                result: Err(Failure::PendingChanges(left)),
            });
            return;
        }
        self.logging_out = Some(LoggingOut {
            revoking: true,
            ..state
        });
        self.counters.requests += 1;
        out.push(Effect::Revoke);
    }

    /// `POST /api/logout` answered: a token the server already forgot
    /// (401) counts as revoked.
    pub(super) fn revoked(&mut self, result: Result<(), Refusal>, out: &mut Vec<Effect>) {
        let Some(state) = self.logging_out.take() else {
            return;
        };
        match result {
            Err(refusal) if refusal.status != Some(401) => out.push(Effect::Settle {
                callers: vec![state.caller],
                result: Err(Failure::Answer(Box::new(refusal))),
            }),
            _ => {
                // The caller first: an app that closes the client when it
                // hears `logged-out` would otherwise reject this very
                // logout with `closed` (found by the end-to-end logout test).
                out.push(Effect::Settle {
                    callers: vec![state.caller],
                    result: Ok(Outcome::LoggedOut),
                });
                out.push(Effect::LoggedOut);
            }
        }
    }
}
