//! Batching of calls per key: calls for one key that come within `wait_ms`
//! of each other become one batch, `max_wait_ms` bounds how long a batch can
//! be put off while calls keep coming, and every caller of a batch is told
//! the batch's result.
//!
//! The machine owns no timer. The web layer asks [`Debounce::next_deadline`]
//! after every change, sets one timer for it, and when it fires hands the
//! current time to [`Debounce::due`], which returns the batches to run. For
//! record saves the value is a [`SavePayload`]: later values of a field win,
//! comments are never folded away.
//!
//! ```no_run
//! use crm_sync::core::debounce::{Debounce, DebounceOptions, Pushed, SavePayload};
//!
//! let mut saves: Debounce<String, SavePayload> = Debounce::new(DebounceOptions::default());
//! let pushed = saves.push("customers/c-1".into(), SavePayload::default(), 1, 0);
//! if let Pushed::Waiting { deadline_ms } = pushed { /* (re)arm one timer for saves.next_deadline() */ }
//! for batch in saves.due(300) {
//!     // send batch.value once, then settle every id in batch.callers with the answer
//! }
//! ```

use serde::{Deserialize, Serialize};

use crate::core::record::{Fields, PendingComment};
use crate::core::vecmap::VecMap;

/// The settings of a debounced function (docs/reference.md, `Debouncer` options and
/// `debounceMs`/`maxWaitMs` of the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DebounceOptions {
    /// Quiet time after the last call before a batch fires.
    pub wait_ms: u64,
    /// The longest a batch waits after its first call, however often calls
    /// come; `None` for no bound. Never shorter than `wait_ms`.
    pub max_wait_ms: Option<u64>,
    /// The first call for a quiet key fires at once; calls within the wait
    /// window after it form the next batch.
    pub leading: bool,
}

impl Default for DebounceOptions {
    /// The client defaults of docs/guide/getting-started.md: `debounceMs: 300`, `maxWaitMs: 2000`.
    fn default() -> Self {
        Self {
            wait_ms: 300,
            max_wait_ms: Some(2_000),
            leading: false,
        }
    }
}

/// How a later value is folded into the value a batch holds.
pub trait Fold {
    /// Folds `later` into `self`.
    fn fold(&mut self, later: Self);
}

/// The one value the batch keeps is the last one (lodash's `debounce`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest<T>(pub T);

impl<T> Fold for Latest<T> {
    fn fold(&mut self, later: Self) {
        *self = later;
    }
}

/// Every value is kept, in call order.
impl<T> Fold for Vec<T> {
    fn fold(&mut self, later: Self) {
        self.extend(later);
    }
}

/// What one or more `save`/`comment` calls for a record ask to send.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavePayload {
    /// The changed fields; a later value of a field replaces an earlier one.
    pub fields: Fields,
    /// Comments to post, in call order; never folded away, as each is a
    /// separate entry of the record's log.
    pub comments: Vec<PendingComment>,
}

impl SavePayload {
    /// A payload that changes fields.
    pub fn fields(fields: Fields) -> Self {
        Self {
            fields,
            comments: Vec::new(),
        }
    }

    /// A payload that posts one comment.
    pub fn comment(comment: PendingComment) -> Self {
        Self {
            fields: Fields::new(),
            comments: vec![comment],
        }
    }
}

impl Fold for SavePayload {
    fn fold(&mut self, later: Self) {
        self.fields.extend(later.fields);
        self.comments.extend(later.comments);
    }
}

/// The id the web layer gives a call, to find its promise again.
pub type CallerId = u64;

/// Calls folded into one: run `value` once and give its result to every
/// caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<K, V, C = CallerId> {
    /// The key the calls were made for.
    pub key: K,
    /// The folded value.
    pub value: V,
    /// Every caller of this batch, in call order.
    pub callers: Vec<C>,
    /// When the batch's first call came.
    pub first_call_ms: u64,
    /// When its last call came.
    pub last_call_ms: u64,
}

/// What [`Debounce::push`] did with a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Pushed<K, V, C = CallerId> {
    /// The call joined (or began) a batch that fires at `deadline_ms` unless
    /// more calls come; re-arm the timer for [`Debounce::next_deadline`].
    Waiting {
        /// When the call's batch fires if nothing else happens.
        deadline_ms: u64,
    },
    /// Leading edge: the call is a batch of its own, to run now.
    Fired(Batch<K, V, C>),
}

#[derive(Debug, Clone, PartialEq)]
struct KeyState<V, C> {
    batch: Option<Pending<V, C>>,
    /// With `leading`: until when a call joins a batch instead of firing at
    /// once (`wait_ms` after the key's last call).
    quiet_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct Pending<V, C> {
    value: V,
    callers: Vec<C>,
    first_call_ms: u64,
    last_call_ms: u64,
}

/// Batches of calls per key. `K` is the key (a record's key for saves), `V`
/// the folded value, `C` the caller id.
#[derive(Debug, Clone, PartialEq)]
pub struct Debounce<K, V, C = CallerId> {
    options: DebounceOptions,
    keys: VecMap<K, KeyState<V, C>>,
}

impl<K: Ord + Clone, V, C> Debounce<K, V, C> {
    /// An empty machine.
    pub fn new(options: DebounceOptions) -> Self {
        Self {
            options,
            keys: VecMap::new(),
        }
    }

    /// The options it was made with.
    pub fn options(&self) -> &DebounceOptions {
        &self.options
    }

    /// A call for `key` at `now_ms`, folding `value` into the key's waiting
    /// batch with [`Fold::fold`].
    pub fn push(&mut self, key: K, value: V, caller: C, now_ms: u64) -> Pushed<K, V, C>
    where
        V: Fold,
    {
        self.push_with(key, value, caller, now_ms, V::fold)
    }

    /// Like [`Debounce::push`], with the fold given here (for values that
    /// have no [`Fold`], or one key type batched in several ways).
    pub fn push_with(
        &mut self,
        key: K,
        value: V,
        caller: C,
        now_ms: u64,
        fold: impl FnOnce(&mut V, V),
    ) -> Pushed<K, V, C> {
        let wait_ms = self.options.wait_ms;
        let quiet_at_ms = now_ms.saturating_add(wait_ms);
        let leading = self.options.leading;
        let state = self.keys.get_or_insert_with(key.clone(), || KeyState {
            batch: None,
            quiet_at_ms: 0,
        });
        match &mut state.batch {
            Some(pending) => {
                fold(&mut pending.value, value);
                pending.callers.push(caller);
                pending.last_call_ms = pending.last_call_ms.max(now_ms);
            }
            None if leading && now_ms >= state.quiet_at_ms => {
                state.quiet_at_ms = quiet_at_ms;
                return Pushed::Fired(Batch {
                    key,
                    value,
                    callers: vec![caller],
                    first_call_ms: now_ms,
                    last_call_ms: now_ms,
                });
            }
            None => {
                state.batch = Some(Pending {
                    value,
                    callers: vec![caller],
                    first_call_ms: now_ms,
                    last_call_ms: now_ms,
                });
            }
        }
        state.quiet_at_ms = state.quiet_at_ms.max(quiet_at_ms);
        let deadline_ms = state
            .batch
            .as_ref()
            .map_or(now_ms, |pending| self.options.deadline_of(pending));
        Pushed::Waiting { deadline_ms }
    }

    /// When the next batch is due, if any waits: the one time to set a timer for.
    pub fn next_deadline(&self) -> Option<u64> {
        self.keys
            .values()
            .filter_map(|state| state.batch.as_ref())
            .map(|pending| self.options.deadline_of(pending))
            .min()
    }

    /// The batches due at `now_ms`, oldest first call first; they leave the
    /// machine.
    pub fn due(&mut self, now_ms: u64) -> Vec<Batch<K, V, C>> {
        let options = self.options;
        let due_keys: Vec<K> = self
            .keys
            .iter()
            .filter(|(_, state)| {
                state
                    .batch
                    .as_ref()
                    .is_some_and(|pending| options.deadline_of(pending) <= now_ms)
            })
            .map(|(key, _)| key.clone())
            .collect();
        let mut batches: Vec<_> = due_keys
            .into_iter()
            .filter_map(|key| {
                let pending = self.keys.get_mut(&key)?.batch.take()?;
                Some(into_batch(key, pending))
            })
            .collect();
        // Keys with nothing waiting matter only while their leading window
        // is open; forget the rest so the map does not grow with every key
        // ever used.
        self.keys.retain(|_, state| {
            state.batch.is_some() || (options.leading && state.quiet_at_ms > now_ms)
        });
        crate::core::sort::sort_by_key(&mut batches, |batch| batch.first_call_ms);
        batches
    }

    /// Every waiting batch, at once (API `flush()`, and `pagehide`), oldest
    /// first call first.
    pub fn flush(&mut self) -> Vec<Batch<K, V, C>> {
        let keys = std::mem::take(&mut self.keys);
        let mut batches: Vec<_> = keys
            .into_iter()
            .filter_map(|(key, state)| Some(into_batch(key, state.batch?)))
            .collect();
        crate::core::sort::sort_by_key(&mut batches, |batch| batch.first_call_ms);
        batches
    }

    /// Drops every waiting batch and returns its callers, in call order per
    /// batch, to be rejected with `cancelled`.
    pub fn cancel(&mut self) -> Vec<C> {
        std::mem::take(&mut self.keys)
            .into_values()
            .filter_map(|state| state.batch)
            .flat_map(|pending| pending.callers)
            .collect()
    }

    /// Drops the waiting batch of one key and returns its callers.
    pub fn cancel_key(&mut self, key: &K) -> Vec<C> {
        self.keys
            .remove(key)
            .and_then(|state| state.batch)
            .map(|pending| pending.callers)
            .unwrap_or_default()
    }

    /// How many calls wait for their batch (API `pending`).
    pub fn pending(&self) -> usize {
        self.keys
            .values()
            .filter_map(|state| state.batch.as_ref())
            .map(|pending| pending.callers.len())
            .sum()
    }

    /// How many batches wait.
    pub fn pending_batches(&self) -> usize {
        self.keys
            .values()
            .filter(|state| state.batch.is_some())
            .count()
    }

    /// Takes the batch waiting for `key` out of the machine, to run now.
    pub fn take(&mut self, key: &K) -> Option<Batch<K, V, C>> {
        let pending = self.keys.get_mut(key)?.batch.take()?;
        Some(into_batch(key.clone(), pending))
    }

    /// The folded value of the batch waiting for `key`, if one waits.
    pub fn waiting(&self, key: &K) -> Option<&V> {
        self.keys
            .get(key)
            .and_then(|state| state.batch.as_ref())
            .map(|pending| &pending.value)
    }

    /// Whether a batch waits for `key`.
    pub fn is_waiting(&self, key: &K) -> bool {
        self.keys
            .get(key)
            .is_some_and(|state| state.batch.is_some())
    }
}

impl DebounceOptions {
    /// `wait_ms` after the last call, but no later than `max_wait_ms` after
    /// the first.
    fn deadline_of<V, C>(&self, pending: &Pending<V, C>) -> u64 {
        let quiet = pending.last_call_ms.saturating_add(self.wait_ms);
        match self.max_wait_ms {
            Some(max_wait) => quiet.min(
                pending
                    .first_call_ms
                    .saturating_add(max_wait.max(self.wait_ms)),
            ),
            None => quiet,
        }
    }
}

fn into_batch<K, V, C>(key: K, pending: Pending<V, C>) -> Batch<K, V, C> {
    Batch {
        key,
        value: pending.value,
        callers: pending.callers,
        first_call_ms: pending.first_call_ms,
        last_call_ms: pending.last_call_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::FieldValue;

    fn options(wait_ms: u64, max_wait_ms: Option<u64>, leading: bool) -> DebounceOptions {
        DebounceOptions {
            wait_ms,
            max_wait_ms,
            leading,
        }
    }

    fn text(name: &str, value: &str) -> Fields {
        [(name.to_owned(), FieldValue::Text(value.to_owned()))].into()
    }

    #[test]
    fn calls_within_wait_become_one_batch_for_every_caller() {
        let mut debounce: Debounce<&str, Vec<u32>> = Debounce::new(options(300, None, false));
        assert_eq!(
            debounce.push("a", vec![1], 1, 0),
            Pushed::Waiting { deadline_ms: 300 }
        );
        assert_eq!(
            debounce.push("a", vec![2], 2, 200),
            Pushed::Waiting { deadline_ms: 500 }
        );
        assert_eq!(
            debounce.push("b", vec![9], 3, 250),
            Pushed::Waiting { deadline_ms: 550 }
        );
        assert_eq!(debounce.pending(), 3);
        assert_eq!(debounce.pending_batches(), 2);
        assert_eq!(debounce.next_deadline(), Some(500));
        assert!(debounce.due(499).is_empty());
        let batches = debounce.due(500);
        assert_eq!(batches.len(), 1);
        let batch = batches.first().unwrap();
        assert_eq!(
            (batch.key, &batch.value, &batch.callers),
            ("a", &vec![1, 2], &vec![1, 2])
        );
        assert_eq!((batch.first_call_ms, batch.last_call_ms), (0, 200));
        assert_eq!(debounce.next_deadline(), Some(550));
        assert_eq!(debounce.due(10_000).len(), 1);
        assert_eq!(debounce.next_deadline(), None);
        assert_eq!(debounce.pending(), 0);
    }

    #[test]
    fn max_wait_bounds_the_delay() {
        let mut debounce: Debounce<&str, Latest<u32>> =
            Debounce::new(options(300, Some(1_000), false));
        for (i, now) in (0..=900).step_by(100).enumerate() {
            debounce.push("a", Latest(now as u32), i as u64, now);
        }
        // Quiet time would give 1200; max wait says 1000.
        assert_eq!(debounce.next_deadline(), Some(1_000));
        let batch = debounce.due(1_000).pop().unwrap();
        assert_eq!(batch.value, Latest(900));
        assert_eq!(batch.callers.len(), 10);
    }

    #[test]
    fn max_wait_is_never_shorter_than_wait() {
        let mut debounce: Debounce<&str, Vec<u8>> = Debounce::new(options(300, Some(100), false));
        assert_eq!(
            debounce.push("a", vec![], 1, 0),
            Pushed::Waiting { deadline_ms: 300 }
        );
    }

    #[test]
    fn save_payloads_fold_fields_and_keep_comments() {
        let mut debounce: Debounce<&str, SavePayload> = Debounce::new(DebounceOptions::default());
        debounce.push("c-1", SavePayload::fields(text("name", "A")), 1, 0);
        let comment = |id: &str| PendingComment {
            id: id.into(),
            text: "hi".into(),
        };
        debounce.push("c-1", SavePayload::comment(comment("k1")), 2, 10);
        let mut both = text("name", "B");
        both.extend(text("phone", "1"));
        debounce.push("c-1", SavePayload::fields(both.clone()), 3, 20);
        debounce.push("c-1", SavePayload::comment(comment("k2")), 4, 30);
        let batch = debounce.flush().pop().unwrap();
        assert_eq!(batch.value.fields, both);
        assert_eq!(batch.value.comments, vec![comment("k1"), comment("k2")]);
        assert_eq!(batch.callers, vec![1, 2, 3, 4]);
    }

    #[test]
    fn flush_returns_everything_oldest_first() {
        let mut debounce: Debounce<&str, Vec<u8>> = Debounce::new(options(300, None, false));
        debounce.push("z", vec![1], 1, 0);
        debounce.push("a", vec![2], 2, 5);
        let keys: Vec<_> = debounce
            .flush()
            .into_iter()
            .map(|batch| batch.key)
            .collect();
        assert_eq!(keys, ["z", "a"]);
        assert_eq!(debounce.pending(), 0);
        assert!(debounce.flush().is_empty());
    }

    #[test]
    fn cancel_returns_every_caller() {
        let mut debounce: Debounce<&str, Vec<u8>> = Debounce::new(options(300, None, false));
        debounce.push("a", vec![1], 1, 0);
        debounce.push("b", vec![2], 2, 0);
        debounce.push("a", vec![3], 3, 0);
        let mut callers = debounce.cancel();
        callers.sort_unstable();
        assert_eq!(callers, [1, 2, 3]);
        assert_eq!(debounce.next_deadline(), None);
        assert!(debounce.flush().is_empty());

        debounce.push("a", vec![1], 4, 0);
        debounce.push("b", vec![1], 5, 0);
        assert_eq!(debounce.cancel_key(&"a"), [4]);
        assert!(!debounce.is_waiting(&"a"));
        assert!(debounce.is_waiting(&"b"));
    }

    #[test]
    fn leading_fires_the_first_call_and_batches_the_rest() {
        let mut debounce: Debounce<&str, Vec<u8>> = Debounce::new(options(300, None, true));
        let Pushed::Fired(first) = debounce.push("a", vec![1], 1, 0) else {
            panic!("the first call of a quiet key fires at once");
        };
        assert_eq!((first.value, first.callers), (vec![1], vec![1]));
        assert_eq!(debounce.pending(), 0);
        assert_eq!(
            debounce.push("a", vec![2], 2, 100),
            Pushed::Waiting { deadline_ms: 400 }
        );
        assert_eq!(
            debounce.push("a", vec![3], 3, 200),
            Pushed::Waiting { deadline_ms: 500 }
        );
        // Another key is quiet: it fires at once too.
        assert!(matches!(
            debounce.push("b", vec![9], 9, 200),
            Pushed::Fired(_)
        ));
        let batch = debounce.due(500).pop().unwrap();
        assert_eq!((batch.value, batch.callers), (vec![2, 3], vec![2, 3]));
        // 200 + 300: the key is quiet again at 500.
        assert!(matches!(
            debounce.push("a", vec![4], 4, 500),
            Pushed::Fired(_)
        ));
    }

    #[test]
    fn leading_window_without_more_calls_ends_quietly() {
        let mut debounce: Debounce<&str, Vec<u8>> = Debounce::new(options(300, None, true));
        assert!(matches!(
            debounce.push("a", vec![1], 1, 0),
            Pushed::Fired(_)
        ));
        assert_eq!(debounce.next_deadline(), None);
        assert!(debounce.due(300).is_empty());
        assert!(matches!(
            debounce.push("a", vec![2], 2, 300),
            Pushed::Fired(_)
        ));
    }

    #[test]
    fn push_with_takes_any_fold() {
        let mut debounce: Debounce<u8, u32, &str> = Debounce::new(options(10, None, false));
        debounce.push_with(1, 2, "x", 0, |sum, more| *sum += more);
        debounce.push_with(1, 3, "y", 1, |sum, more| *sum += more);
        let batch = debounce.due(11).pop().unwrap();
        assert_eq!((batch.value, batch.callers), (5, vec!["x", "y"]));
    }

    #[test]
    fn time_near_the_end_of_u64_saturates() {
        let mut debounce: Debounce<u8, Vec<u8>> = Debounce::new(options(300, Some(1_000), false));
        assert_eq!(
            debounce.push(1, vec![], 1, u64::MAX - 1),
            Pushed::Waiting {
                deadline_ms: u64::MAX
            }
        );
        assert_eq!(debounce.due(u64::MAX).len(), 1);
    }

    #[test]
    fn options_read_the_api_names() {
        let parsed: DebounceOptions =
            serde_json::from_str(r#"{"waitMs":50,"leading":true}"#).unwrap();
        assert_eq!(parsed, options(50, Some(2_000), true));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Step {
        Push { key: u8, after_ms: u64 },
        Advance(u64),
        Flush,
        Cancel,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => (0_u8..3, 0_u64..400).prop_map(|(key, after_ms)| Step::Push { key, after_ms }),
            3 => (0_u64..3_000).prop_map(Step::Advance),
            1 => Just(Step::Flush),
            1 => Just(Step::Cancel),
        ]
    }

    proptest! {
        #[test]
        fn every_caller_is_answered_once_and_never_late(
            steps in proptest::collection::vec(step(), 0..60),
            wait_ms in 0_u64..500,
            max_wait in proptest::option::of(0_u64..1_500),
            leading in any::<bool>(),
        ) {
            let options = DebounceOptions { wait_ms, max_wait_ms: max_wait, leading };
            let bound = max_wait.map(|max| max.max(wait_ms));
            let mut debounce: Debounce<u8, Vec<u64>> = Debounce::new(options);
            let mut answered: BTreeMap<u64, u32> = BTreeMap::new();
            let mut now = 0_u64;
            let mut next_caller = 0_u64;

            // The web layer's timer: fires at each deadline up to `until`.
            let run_timers = |debounce: &mut Debounce<u8, Vec<u64>>, now: &mut u64, until: u64,
                                  answered: &mut BTreeMap<u64, u32>| -> Result<(), TestCaseError> {
                while let Some(deadline) = debounce.next_deadline().filter(|d| *d <= until) {
                    *now = deadline.max(*now);
                    let batches = debounce.due(*now);
                    prop_assert!(!batches.is_empty());
                    for batch in batches {
                        if let Some(bound) = bound {
                            prop_assert!(*now - batch.first_call_ms <= bound, "late batch");
                        }
                        prop_assert!(*now - batch.last_call_ms <= wait_ms);
                        // The folded value holds exactly the batch's calls.
                        prop_assert_eq!(&batch.value, &batch.callers);
                        for caller in batch.callers {
                            *answered.entry(caller).or_default() += 1;
                        }
                    }
                }
                *now = until.max(*now);
                Ok(())
            };

            for step in steps {
                match step {
                    Step::Push { key, after_ms } => {
                        let until = now + after_ms;
                        run_timers(&mut debounce, &mut now, until, &mut answered)?;
                        let caller = next_caller;
                        next_caller += 1;
                        if let Pushed::Fired(batch) = debounce.push(key, vec![caller], caller, now) {
                            prop_assert!(leading);
                            prop_assert_eq!(&batch.callers, &vec![caller]);
                            *answered.entry(caller).or_default() += 1;
                        }
                    }
                    Step::Advance(ms) => {
                        let until = now + ms;
                        run_timers(&mut debounce, &mut now, until, &mut answered)?;
                    }
                    Step::Flush => {
                        for batch in debounce.flush() {
                            for caller in batch.callers {
                                *answered.entry(caller).or_default() += 1;
                            }
                        }
                    }
                    Step::Cancel => {
                        for caller in debounce.cancel() {
                            *answered.entry(caller).or_default() += 1;
                        }
                    }
                }
                let waiting = next_caller as usize - answered.len();
                prop_assert_eq!(debounce.pending(), waiting);
            }
            run_timers(&mut debounce, &mut now, u64::MAX / 2, &mut answered)?;
            prop_assert_eq!(debounce.pending(), 0);
            prop_assert_eq!(answered.len() as u64, next_caller);
            prop_assert!(answered.values().all(|count| *count == 1));
        }
    }
}
