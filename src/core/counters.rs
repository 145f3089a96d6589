//! The client's counters (`crm.metrics()`) kept across reloads.
//!
//! Each tab counts in memory from zero. The user's totals live in IndexedDB;
//! a tab adds what it counted since its last write to them (read-modify-write,
//! so tabs never overwrite each other's counts) and shows the stored totals
//! plus what it has not written yet. A reload then starts from the totals
//! instead of zero.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counter name to count, flat (`commits`, `syncCompleted`, ...).
pub type Counters = BTreeMap<String, f64>;

/// `a + b`, key by key.
pub fn add(a: &Counters, b: &Counters) -> Counters {
    let mut out = a.clone();
    for (k, v) in b {
        *out.entry(k.clone()).or_default() += v;
    }
    out
}

/// `a - b`, key by key; keys that come out 0 are left out.
pub fn sub(a: &Counters, b: &Counters) -> Counters {
    let mut out = a.clone();
    for (k, v) in b {
        *out.entry(k.clone()).or_default() -= v;
    }
    out.retain(|_, v| *v != 0.0);
    out
}

/// The stored totals and how much of this tab's counting they hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeptCounters {
    /// The user's totals as last read or written.
    stored: Counters,
    /// This tab's counters as they were when `stored` was written by it.
    written: Counters,
}

impl KeptCounters {
    /// Starts from the totals read at open (this tab has written nothing).
    pub fn restored(stored: Counters) -> Self {
        Self {
            stored,
            written: Counters::new(),
        }
    }

    /// The user's totals as this tab knows them.
    pub fn totals(&self, current: &Counters) -> Counters {
        add(&self.stored, &sub(current, &self.written))
    }

    /// What this tab counted since it last wrote, `None` when nothing.
    pub fn unwritten(&self, current: &Counters) -> Option<Counters> {
        let delta = sub(current, &self.written);
        (!delta.is_empty()).then_some(delta)
    }

    /// `unwritten(current)` was added to the store, which now holds `stored`.
    pub fn written(&mut self, stored: Counters, current: Counters) {
        self.stored = stored;
        self.written = current;
    }
}

/// `crm.metrics()`: the totals with their rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsView {
    /// Saves, creates, removes and comments asked for.
    pub operations: u64,
    /// Mutations the server applied.
    pub commits: u64,
    /// Conflicts found (same fields changed on both sides).
    pub conflicts: u64,
    /// 409s resolved by merging other fields.
    pub merged: u64,
    /// Requests sent again after a transient failure.
    pub retries: u64,
    /// Requests sent.
    pub requests: u64,
    /// `conflicts / operations`.
    pub conflict_rate: f64,
    /// `retries / operations`.
    pub retry_rate: f64,
    /// Outbox entries sent again after a reload or another tab's turn.
    pub outbox_replayed: u64,
    /// `change` events heard on the event stream.
    pub feed_events: u64,
    /// Mutations the server refused for good.
    pub failed: u64,
    /// Spreadsheet sync runs.
    pub syncs: SyncCountsView,
}

/// `metrics().syncs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncCountsView {
    /// Runs started from this user's tabs.
    pub started: u64,
    /// Runs that completed.
    pub completed: u64,
    /// Runs that ended in an error.
    pub failed: u64,
    /// Mean duration of finished runs, 0 when none.
    pub mean_duration_ms: f64,
}

impl MetricsView {
    /// The view of flat totals (unknown or missing names count 0).
    pub fn of(totals: &Counters) -> Self {
        let n = |k: &str| totals.get(k).copied().unwrap_or(0.0).max(0.0);
        let count = |k: &str| n(k) as u64;
        let rate = |k: &str| {
            if n("operations") == 0.0 {
                0.0
            } else {
                n(k) / n("operations")
            }
        };
        Self {
            operations: count("operations"),
            commits: count("commits"),
            conflicts: count("conflicts"),
            merged: count("merged"),
            retries: count("retries"),
            requests: count("requests"),
            conflict_rate: rate("conflicts"),
            retry_rate: rate("retries"),
            outbox_replayed: count("outboxReplayed"),
            feed_events: count("feedEvents"),
            failed: count("failed"),
            syncs: SyncCountsView {
                started: count("syncStarted"),
                completed: count("syncCompleted"),
                failed: count("syncFailed"),
                mean_duration_ms: if n("syncFinished") == 0.0 {
                    0.0
                } else {
                    n("syncTotalMs") / n("syncFinished")
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(pairs: &[(&str, f64)]) -> Counters {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn a_reload_starts_from_the_totals() {
        let mut tab = KeptCounters::restored(Counters::new());
        let now = c(&[("commits", 3.0), ("operations", 4.0)]);
        assert_eq!(tab.totals(&now), now);
        let delta = tab.unwritten(&now).unwrap();
        tab.written(add(&Counters::new(), &delta), now.clone());
        assert_eq!(tab.unwritten(&now), None);
        // Reloaded: counting from zero again, over the stored totals.
        let reloaded = KeptCounters::restored(tab.totals(&now));
        let later = c(&[("commits", 1.0)]);
        assert_eq!(reloaded.totals(&later)["commits"], 4.0);
        assert_eq!(reloaded.unwritten(&later), Some(later.clone()));
    }

    #[test]
    fn two_tabs_add_up() {
        let mut a = KeptCounters::restored(Counters::new());
        let mut b = KeptCounters::restored(Counters::new());
        let (na, nb) = (c(&[("commits", 2.0)]), c(&[("commits", 5.0)]));
        // a writes, then b adds to what a wrote.
        let stored = a.unwritten(&na).unwrap();
        a.written(stored.clone(), na.clone());
        let stored = add(&stored, &b.unwritten(&nb).unwrap());
        b.written(stored, nb.clone());
        assert_eq!(b.totals(&nb)["commits"], 7.0);
        // a has counted one more since: it shows what it knew plus that.
        let na = c(&[("commits", 3.0)]);
        assert_eq!(a.totals(&na)["commits"], 3.0);
        assert_eq!(a.unwritten(&na), Some(c(&[("commits", 1.0)])));
    }

    #[test]
    fn the_view_has_rates_and_means() {
        let v = MetricsView::of(&c(&[
            ("operations", 4.0),
            ("conflicts", 1.0),
            ("retries", 2.0),
            ("syncFinished", 2.0),
            ("syncTotalMs", 300.0),
            ("bogus", -5.0),
        ]));
        assert_eq!(v.conflict_rate, 0.25);
        assert_eq!(v.retry_rate, 0.5);
        assert_eq!(v.syncs.mean_duration_ms, 150.0);
        assert_eq!(MetricsView::of(&Counters::new()).conflict_rate, 0.0);
    }
}
