//! The simulation's invariants, checked after every step and at
//! quiescence.

use super::super::{SyncOutcome, SyncPhase};
use super::{view, SimFailure, World, LATE_MS};
use crate::core::code::ErrorCode;

impl World {
    /// After each event in `tab`: within one run (its `startedAt`), the
    /// progress the tab shows never goes down.
    pub(super) fn watch(&mut self, tab: usize) {
        let state = self.tabs[tab].state();
        let (Some(run), false) = (state.started_at, state.phase == SyncPhase::Idle) else {
            return;
        };
        let progress = state.progress;
        let best = self.tabs[tab].shown.entry(run).or_insert(progress);
        if progress < *best {
            let was = *best;
            self.broken.get_or_insert_with(|| {
                format!("tab{tab}'s progress went down within run {run}: {was} -> {progress}")
            });
        } else {
            *best = progress;
        }
    }

    /// After every step: what `watch` saw; one press starts at most one
    /// server job; a leader stops showing a job running within `LATE_MS`
    /// of its end or loss on the server (a lost job is not left running);
    /// no run ends in `bad_response` (the model server keeps to the
    /// protocol: such an end means an answer was taken for the wrong job);
    /// at most one leader per user (by construction: the lock moves only
    /// when its holder died).
    pub(super) fn check_step(&mut self) -> Result<(), SimFailure> {
        if let Some(why) = self.broken.take() {
            return Err(self.fail(&why));
        }
        self.server.advance(self.now);
        for tab in 0..self.tabs.len() {
            let s = self.tabs[tab].state();
            if !(self.tabs[tab].alive && s.is_driving() && s.phase.is_running()) {
                continue;
            }
            let Some(id) = &s.sync_id else { continue };
            if let Some(&gone) = self.server.gone.get(id) {
                if self.now > gone + LATE_MS {
                    return Err(self.fail(&format!(
                        "tab{tab} still shows {id} {:?} {}s after the server ended or lost it",
                        s.phase,
                        (self.now - gone) / 1000
                    )));
                }
            }
        }
        for user in 0..self.faults.users {
            for entry in &self.history[user] {
                if entry.error.as_ref().map(|e| e.code) == Some(ErrorCode::BadResponse) {
                    return Err(self.fail(&format!(
                        "a run of user{user} ended in bad_response, but the server keeps to the protocol: {entry:?}"
                    )));
                }
            }
            if self.server.created[user] > self.presses[user] {
                return Err(self.fail(&format!(
                    "user{user} made {} start presses and the server created {} jobs",
                    self.presses[user], self.server.created[user]
                )));
            }
        }
        Ok(())
    }

    /// At quiescence: no run is left running in any tab; every `start()`
    /// and `cancel()` of a live tab is answered (and none twice, checked
    /// as it is answered), also when the leader it went to died; every
    /// tab shows
    /// what its leader shows; a run shown `complete` or `cancelled` ended
    /// so on the server (a cancel that reached the server ends the run).
    pub(super) fn check_quiet(&mut self) -> Result<(), SimFailure> {
        for user in 0..self.faults.users {
            let Some(leader) = self.leaders[user] else {
                return Err(self.fail(&format!("user{user} has no leader")));
            };
            let tabs: Vec<usize> = (0..self.tabs.len())
                .filter(|&t| self.tabs[t].user == user && self.tabs[t].alive)
                .collect();
            for &t in &tabs {
                let s = self.tabs[t].state();
                if s.phase.is_running() {
                    return Err(self.fail(&format!(
                        "tab{t} still shows {:?} {} of {:?} at quiescence",
                        s.phase, s.progress, s.sync_id
                    )));
                }
            }
            for &t in &tabs {
                // Leaders that died included: a press forwarded to one is
                // sent again to the next, under its one key.
                let left = self.tabs[t].waiting.iter().next();
                if let Some((caller, (what, _))) = left {
                    return Err(self.fail(&format!(
                        "tab{t}'s {what} (caller {caller}) is never answered"
                    )));
                }
            }
            let lead = view(self.tabs[leader].state());
            for &t in &tabs {
                let other = view(self.tabs[t].state());
                if other != lead {
                    return Err(self.fail(&format!(
                        "tab{t} shows {other} but its leader tab{leader} shows {lead}"
                    )));
                }
            }
            for entry in &self.history[user] {
                let Some(id) = &entry.sync_id else { continue };
                let Some(job) = self.server.jobs.get(id) else {
                    continue;
                };
                let server_end = job.end;
                let ok = match entry.status {
                    SyncOutcome::Complete => server_end == Some("complete"),
                    SyncOutcome::Cancelled => server_end == Some("cancelled"),
                    SyncOutcome::Error => true,
                };
                if !ok {
                    return Err(self.fail(&format!(
                        "run of {id} recorded {:?} but the server's job ended {server_end:?}",
                        entry.status
                    )));
                }
            }
        }
        Ok(())
    }

    pub(super) fn fail(&self, what: &str) -> SimFailure {
        let lines: Vec<&String> = match std::env::var("CRM_SIM_GREP") {
            Ok(needle) => self.trace.iter().filter(|l| l.contains(&needle)).collect(),
            Err(_) => self.trace.iter().rev().take(80).rev().collect(),
        };
        let trace: Vec<&str> = lines.iter().map(|l| l.as_str()).collect();
        SimFailure(format!(
            "seed {} broke an invariant: {what}\nreplay: CRM_SIM_SEED={} cargo test --lib progress::sim\nlast events:\n{}",
            self.seed,
            self.seed,
            trace.join("\n")
        ))
    }
}
