//! The one runner of sync jobs: which of the [`SyncMachine`]'s outputs
//! becomes which I/O, the loop over [`SyncMachine::poll_output`] and the
//! one timer at [`SyncMachine::poll_timeout`], written once. The page
//! (`web::sync`) and the progress simulation (`sim.rs`) each implement
//! [`Io`]; what the world did comes back as one [`Input`] through
//! [`handle`] (or [`handle_timeout`] when the timer fires), so what the
//! simulation runs is what the page runs.

use super::machine::{Input, Output, SyncMachine, SyncRequest};
use super::{StoredSyncJob, SyncHistoryEntry};
use crate::core::tab_message::TabMessage;

/// The world as the sync machine's outputs need it. Every call returns at
/// once; what it started ends later with an input handed to [`handle`].
pub trait Io {
    /// The time, ms since the epoch.
    fn now(&self) -> u64;
    /// Whether the server can be reached.
    fn online(&self) -> bool;
    /// Runs `f` on the machine, if there still is one.
    fn with_machine<R>(&mut self, f: impl FnOnce(&mut SyncMachine) -> R) -> Option<R>;
    /// Sends a request; report its input (a failure as
    /// [`SyncRequest::failed`] says).
    fn request(&mut self, request: SyncRequest);
    /// Stores the followed job (or clears it with `None`).
    fn store_job(&mut self, job: Option<StoredSyncJob>);
    /// Appends a finished run to the sync log.
    fn record_history(&mut self, entry: SyncHistoryEntry);
    /// Tells the user's other tabs.
    fn post(&mut self, message: TabMessage);
    /// Reads the stored job; report [`Input::JobRead`].
    fn read_job(&mut self);
    /// Reads the schedule; report [`Input::ScheduleRead`] with `writes`.
    fn read_schedule(&mut self, writes: u64);
    /// Claims the due run of the stored schedule in one transaction;
    /// report [`Input::ScheduleClaimed`].
    fn claim_schedule(&mut self, now: u64);
    /// The app's part: [`Output::Changed`], [`Output::StartAnswered`],
    /// [`Output::CancelAnswered`], [`Output::SessionEnded`] and
    /// [`Output::Synced`].
    fn tell(&mut self, output: Output);
    /// The deadline the timer is set at.
    fn timer(&self) -> Option<u64>;
    /// Sets the one timer at `at` (or none); when it fires, call
    /// [`handle_timeout`].
    fn set_timer(&mut self, at: Option<u64>);
}

/// Hands `input` to the machine and carries out what follows.
pub fn handle(io: &mut impl Io, input: Input) {
    let (now, online) = (io.now(), io.online());
    if io.with_machine(|m| m.handle(input, now, online)).is_some() {
        run(io);
    }
}

/// The timer fired: what is due is done.
pub fn handle_timeout(io: &mut impl Io) {
    let (now, online) = (io.now(), io.online());
    if io.with_machine(|m| m.handle_timeout(now, online)).is_some() {
        run(io);
    }
}

/// Carries out the machine's outputs in order, and keeps the one timer at
/// its next deadline.
pub fn run(io: &mut impl Io) {
    while let Some(output) = io.with_machine(SyncMachine::poll_output).flatten() {
        match output {
            Output::Request(request) => io.request(request),
            Output::StoreJob(job) => io.store_job(job),
            Output::RecordHistory(entry) => io.record_history(entry),
            Output::Post(message) => io.post(message),
            Output::ReadJob => io.read_job(),
            Output::ReadSchedule { writes } => io.read_schedule(writes),
            Output::ClaimSchedule { now } => io.claim_schedule(now),
            other => io.tell(other),
        }
    }
    if let Some(at) = io.with_machine(|m| m.poll_timeout()) {
        if at != io.timer() {
            io.set_timer(at);
        }
    }
}
