//! Outputs pulled, as str0m and quinn-proto do it: [`ClientEngine::handle`]
//! queues what to do, a driver takes it with [`ClientEngine::poll_output`]
//! until there is nothing, keeps one timer at [`ClientEngine::poll_timeout`],
//! and calls [`ClientEngine::handle_timeout`] when it fires.
//!
//! The ordering rule lives here, once, for every driver: the effects of
//! one event come out in order, and an [`Effect::Write`] holds back what
//! follows it until the driver reports [`Event::Written`] with its id (a
//! caller hears `committed` only once the record is stored; a send goes
//! out only once its entry is in IndexedDB). The effects of another event
//! do not wait for that write: each event's effects are a chain of their
//! own, as the browser's transactions and fetches run side by side.

use super::{ClientEngine, Effect, Event, Timer};

/// The effects of one event not yet taken (last first: the next is
/// popped off the end), and the write they wait for.
#[derive(Debug, Default)]
struct Chain {
    effects: Vec<Effect>,
    /// The id of a write taken and not yet reported written.
    waiting_for: Option<u64>,
}

/// The queue of effects, one chain per event.
#[derive(Debug, Default)]
pub(super) struct Outputs {
    chains: Vec<Chain>,
}

impl Outputs {
    /// Queues one event's effects.
    pub(super) fn push(&mut self, mut effects: Vec<Effect>) {
        if !effects.is_empty() {
            effects.reverse();
            self.chains.push(Chain {
                effects,
                waiting_for: None,
            });
        }
    }

    /// A write ended: what followed it may go.
    pub(super) fn written(&mut self, id: u64) {
        for chain in &mut self.chains {
            if chain.waiting_for == Some(id) {
                chain.waiting_for = None;
            }
        }
    }

    /// The next effect not held back by a write, oldest chain first.
    fn next(&mut self) -> Option<Effect> {
        self.chains
            .retain(|c| c.waiting_for.is_some() || !c.effects.is_empty());
        let chain = self.chains.iter_mut().find(|c| c.waiting_for.is_none())?;
        let effect = chain.effects.pop()?;
        if let Effect::Write { id, .. } = &effect {
            chain.waiting_for = Some(*id);
        }
        Some(effect)
    }
}

impl ClientEngine {
    /// The next thing to do, or `None` until another event comes. A driver
    /// calls it until `None` after every [`ClientEngine::handle`] and
    /// [`ClientEngine::handle_timeout`].
    pub fn poll_output(&mut self) -> Option<Effect> {
        self.outputs.next()
    }

    /// When the engine wants [`ClientEngine::handle_timeout`] called: the
    /// earliest of its deadlines (debounce, retry, probe, feed poll,
    /// logout, held writes, loads' pages and reads), or `None`. A driver keeps one timer at this
    /// time and sets it again after every event.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.values().flatten().copied().min()
    }

    /// The driver's timer fired at `now`: every deadline that has come is
    /// handled. A browser may fire a timer a little early; then the
    /// earliest deadline is handled as come, and its machine sets it again
    /// if its time really has not come (found in a browser test: a
    /// debounce fired 1 ms early was never set again).
    pub fn handle_timeout(&mut self, now: u64) {
        let Some(earliest) = self.poll_timeout() else {
            return;
        };
        let until = now.max(earliest);
        for timer in [
            Timer::Debounce,
            Timer::Retry,
            Timer::Probe,
            Timer::FeedPoll,
            Timer::Logout,
            Timer::Held,
            Timer::Load,
            Timer::Read,
        ] {
            if self
                .timers
                .get(&timer)
                .copied()
                .flatten()
                .is_some_and(|at| at <= until)
            {
                self.handle(timer_event(timer), now);
            }
        }
    }
}

/// The event a timer's deadline stands for.
fn timer_event(timer: Timer) -> Event {
    match timer {
        Timer::Debounce => Event::DebounceDue,
        Timer::Retry => Event::RetryDue,
        Timer::Probe => Event::ProbeDue,
        Timer::FeedPoll => Event::FeedPollDue,
        Timer::Logout => Event::LogoutDue,
        Timer::Held => Event::HeldDue,
        Timer::Load => Event::LoadRetryDue,
        Timer::Read => Event::ReadRetryDue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::{EngineConfig, IdSource, StoreOp, StoredWork};

    fn write(id: u64) -> Effect {
        Effect::Write {
            id,
            ops: vec![StoreOp::DeleteCursor],
            persisted: None,
        }
    }

    #[test]
    fn a_write_holds_back_what_follows_it_in_its_own_chain_only() {
        let mut outputs = Outputs::default();
        outputs.push(vec![Effect::Changed, write(1), Effect::Probe]);
        outputs.push(vec![Effect::Revoke]);
        assert_eq!(outputs.next(), Some(Effect::Changed));
        assert_eq!(outputs.next(), Some(write(1)));
        // The probe waits for write 1; the other event's effect does not.
        assert_eq!(outputs.next(), Some(Effect::Revoke));
        assert_eq!(outputs.next(), None);
        outputs.written(2);
        assert_eq!(outputs.next(), None);
        outputs.written(1);
        assert_eq!(outputs.next(), Some(Effect::Probe));
        assert_eq!(outputs.next(), None);
    }

    #[test]
    fn one_timer_at_the_earliest_deadline_and_an_early_fire_sets_it_again() {
        use crate::core::record::{FieldValue, Fields, Record, RecordKey};
        let config = EngineConfig::default();
        let mut engine = ClientEngine::new(config, "alice", true, true, IdSource::new(1));
        let mut record = Record::empty("c1");
        record.version = 1;
        engine.handle(
            Event::StorageOpened {
                cursor: None,
                work: StoredWork::default(),
                records: vec![("customers".into(), record)],
            },
            0,
        );
        let mut fields = Fields::new();
        fields.insert("name".into(), FieldValue::Text("Ada".into()));
        let key = RecordKey::new("customers", "c1");
        engine.handle(
            Event::Save {
                key,
                fields,
                caller: 1,
            },
            100,
        );
        while engine.poll_output().is_some() {}
        let at = engine.poll_timeout().expect("a debounce deadline");
        assert!(at > 100);
        // Fired a millisecond early: nothing is due yet, and the deadline
        // stands.
        engine.handle_timeout(at - 1);
        assert_eq!(engine.poll_timeout(), Some(at));
        engine.handle_timeout(at);
        let mut wrote = false;
        while let Some(effect) = engine.poll_output() {
            wrote |= matches!(effect, Effect::Write { .. });
        }
        assert!(wrote, "the debounced save became an outbox entry");
    }
}
