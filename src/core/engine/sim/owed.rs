//! What a person is owed: the simulation's ledger of every change a person
//! made, and the two invariants kept over it.
//!
//! - **No lost update**: a change acknowledged as committed or merged has
//!   its values in the acknowledged record, unless a later change of the
//!   same person replaced them.
//! - **Nothing vanishes unseen**: every change is on the server, or held
//!   for the person (after every event: in IndexedDB or in a live tab of
//!   theirs; at quiescence: in `failed()` or `conflicts()` of every live
//!   tab of theirs), or the person discarded it. A change only the memory
//!   of a tab held goes with that tab when it crashes or closes (its
//!   promise is rejected, or the person saw the tab go).

use super::*;
use crate::core::outbox::MutationOp;

/// What a person changed: a field of a record to a value, or a comment.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Change {
    Field(String, FieldValue),
    Comment(String),
}

/// Where a change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Not yet on the server: it must be held for the person.
    Open,
    /// The server applied it once.
    OnServer,
    /// The person threw it away (`discard`, a conflict resolved for
    /// theirs, a logout that discards).
    Discarded,
    /// Only the memory of a tab held it when that tab went.
    WentWithTab,
}

/// One change a person made.
#[derive(Debug, Clone)]
pub(super) struct Made {
    pub user: usize,
    pub tab: usize,
    pub record: String,
    pub change: Change,
    pub fate: Fate,
    /// The conflict this change resolves, if it is a resolution. That
    /// conflict does not hold it: the claim took the conflict out of
    /// IndexedDB, and a copy another tab has not re-read yet is on its
    /// way out (seed 2794: a tab crashed between its claim and the write
    /// of the resolution's entry, and the ledger counted the resolution
    /// as held by the stale copy in another tab).
    pub resolves: Option<String>,
    /// A later change of the same person to the same field of the record
    /// was made since: this one no longer needs to be held (set as the
    /// later one enters the ledger, so that the check after every event
    /// does not look through the rest of the ledger for it).
    pub replaced: bool,
}

/// What a caller's acknowledgment must hold.
#[derive(Debug, Clone)]
pub(super) struct Expected {
    pub user: usize,
    pub record: String,
    pub changes: Vec<Change>,
    /// The ledger's length when the change was made: later changes of the
    /// same person may replace it.
    pub made_at: usize,
}

impl Made {
    /// A change not yet on the server.
    pub(super) fn new(
        user: usize,
        tab: usize,
        record: &str,
        change: Change,
        resolves: Option<&str>,
    ) -> Self {
        Made {
            user,
            tab,
            record: record.to_owned(),
            change,
            fate: Fate::Open,
            resolves: resolves.map(str::to_owned),
            replaced: false,
        }
    }

    fn in_entry(&self, entry: &OutboxEntry) -> bool {
        entry.record_id == self.record
            && match (&self.change, &entry.op) {
                (Change::Field(name, value), op) => {
                    op.fields().and_then(|f| f.get(name)) == Some(value)
                }
                (Change::Comment(text), MutationOp::Comment { text: sent, .. }) => sent == text,
                (Change::Comment(_), _) => false,
            }
    }

    pub(super) fn in_conflict(&self, kept: &KeptConflict) -> bool {
        if self.resolves.as_ref() == Some(&kept.conflict.id) {
            return false;
        }
        match &self.change {
            Change::Field(name, value) => {
                kept.conflict.record_id == self.record
                    && kept.conflict.mine.get(name) == Some(value)
            }
            Change::Comment(_) => false,
        }
    }

    /// Whether a tab shows it to the person: an entry (queued, sending or
    /// failed), a conflict, or (`staged`) a change not yet in the outbox.
    fn in_tab(&self, engine: &ClientEngine, staged: bool) -> bool {
        if engine.outbox().entries().any(|e| self.in_entry(e))
            || engine.conflicts().values().any(|k| self.in_conflict(k))
        {
            return true;
        }
        staged
            && engine
                .records()
                .staged(&RecordKey::new(COLLECTION, &self.record))
                .is_some_and(|c| match &self.change {
                    Change::Field(name, value) => c.fields.get(name) == Some(value),
                    Change::Comment(text) => c.comments.iter().any(|p| &p.text == text),
                })
    }

    fn in_db(&self, db: &UserDb) -> bool {
        db.outbox
            .values()
            .chain(db.failed.values())
            .any(|e| self.in_entry(e))
            || db.conflicts.values().any(|k| self.in_conflict(k))
    }

    fn on_server(&self, server: &ModelServer) -> bool {
        match &self.change {
            Change::Field(name, value) => server
                .history
                .range((self.record.clone(), 0)..=(self.record.clone(), u64::MAX))
                .any(|(_, fields)| fields.get(name) == Some(value)),
            Change::Comment(text) => server
                .records
                .get(&self.record)
                .is_some_and(|r| r.comments.iter().any(|c| &c.text == text)),
        }
    }

    fn same_field(&self, other: &Made) -> bool {
        self.user == other.user
            && self.record == other.record
            && match (&self.change, &other.change) {
                (Change::Field(a, _), Change::Field(b, _)) => a == b,
                _ => false,
            }
    }
}

impl World {
    /// A person made a change in `tab` (`caller` waits for it): it counts
    /// once the tab holds it (a change refused at once, as during a
    /// logout, was never made).
    pub(super) fn made(
        &mut self,
        tab: usize,
        caller: CallerId,
        record: &str,
        changes: Vec<Change>,
        resolves: Option<&str>,
    ) {
        let user = self.tabs[tab].user;
        let mut kept = Vec::new();
        for change in changes {
            let made = Made::new(user, tab, record, change.clone(), resolves);
            let held = self.tabs[tab]
                .engine
                .as_ref()
                .is_some_and(|e| made.in_tab(e, true));
            if held {
                for earlier in &mut self.ledger {
                    earlier.replaced |= earlier.same_field(&made);
                }
                self.ledger.push(made);
                kept.push(change);
            }
        }
        // A caller that heard already (`queued`) hears nothing more.
        if !kept.is_empty() && self.tabs[tab].callers.contains_key(&caller) {
            self.expect(caller, user, record, kept);
        }
    }

    /// What `caller` must find in the record it is acknowledged with.
    fn expect(&mut self, caller: CallerId, user: usize, record: &str, changes: Vec<Change>) {
        let expected = Expected {
            user,
            record: record.to_owned(),
            changes,
            made_at: self.ledger.len(),
        };
        self.expected.insert(caller, expected);
    }

    /// A person looks at what waits for them in `tab`: resolves a
    /// conflict (keeping theirs or mine), or else retries or discards a
    /// change the server refused.
    pub(super) fn decide(&mut self, tab: usize) {
        let user = self.tabs[tab].user;
        let Some(engine) = self.tabs[tab].engine.as_ref() else {
            return;
        };
        let conflict = engine.conflicts().values().next().cloned();
        let failed = engine.outbox().failed().first().cloned();
        if let Some(kept) = conflict {
            return self.resolve(tab, user, kept);
        }
        let Some(entry) = failed else { return };
        let id = entry.mutation_id.clone();
        if self.chance(0.5) {
            // The claim: out of the dead letters, into the outbox, in one
            // transaction; a tab that finds it gone reads the work again.
            let claimed = self.dbs[user].failed.remove(&id);
            let Some(mut queued) = claimed else {
                let work = self.dbs[user].work();
                self.reads_work(tab);
                return self.deliver(tab, Event::WorkStored(work));
            };
            queued.state = EntryState::Queued;
            self.dbs[user].outbox.insert(id.clone(), queued);
            self.tell_tabs(tab, |tab, epoch| Msg::WorkNotice { tab, epoch });
            let caller = self.new_caller(tab, format!("retry {}", &id[..8]));
            self.deliver(
                tab,
                Event::Retry {
                    mutation_id: id,
                    caller,
                },
            );
        } else {
            self.note(format!("tab {tab}: the person discards {}", &id[..8]));
            self.discarded(user, |made| made.in_entry(&entry));
            self.deliver(tab, Event::Discard { mutation_id: id });
        }
    }

    /// The person throws away the saves of one record still waiting in
    /// the debounce window in `tab` (`discard("staged:...")`); what only
    /// they stood for is discarded. False when nothing waits there.
    pub(super) fn discard_waiting(&mut self, tab: usize) -> bool {
        let user = self.tabs[tab].user;
        // Any record with saves waiting, an entry of it queued or not.
        let Some(key) = self.tabs[tab].engine.as_ref().and_then(|e| {
            e.records()
                .staged_changes()
                .map(|(key, _)| key)
                .find(|key| e.debounce.is_waiting(key))
                .cloned()
        }) else {
            return false;
        };
        let mutation_id = format!(
            "{}{}/{}",
            crate::core::engine::STAGED_PREFIX,
            key.collection,
            key.id
        );
        self.note(format!(
            "tab {tab}: the person discards the saves of {} still waiting",
            key.id
        ));
        self.deliver(tab, Event::Discard { mutation_id });
        // What waited (in no entry and no conflict) is what the person
        // threw away, whatever the tab still shows of it.
        self.settle_ledger();
        for i in 0..self.ledger.len() {
            let made = &self.ledger[i];
            if made.user == user
                && made.tab == tab
                && made.record == key.id
                && made.fate == Fate::Open
                && !self.held(made, false)
            {
                self.ledger[i].fate = Fate::Discarded;
            }
        }
        true
    }

    /// A person resolves a conflict, keeping theirs or mine; the fields of
    /// mine they gave up are discarded.
    fn resolve(&mut self, tab: usize, user: usize, kept: KeptConflict) {
        let conflict = kept.conflict;
        let chosen: Fields = if self.chance(0.5) {
            conflict.mine.clone()
        } else {
            conflict
                .fields
                .iter()
                .filter_map(|k| {
                    conflict
                        .theirs
                        .fields
                        .get(k)
                        .map(|v| (k.clone(), v.clone()))
                })
                .collect()
        };
        let cid = conflict.id.clone();
        // The claim: one transaction over the user's stores.
        let caller = self.new_caller(tab, format!("resolve {}", &cid[..8]));
        if self.dbs[user].conflicts.remove(&cid).is_none() {
            return self.deliver(tab, Event::ClaimLost { caller });
        }
        let given_up = |made: &Made| {
            made.record == conflict.record_id
                && matches!(&made.change, Change::Field(name, value)
                    if conflict.fields.contains(name)
                        && conflict.mine.get(name) == Some(value)
                        && chosen.get(name) != Some(value))
        };
        self.discarded(user, given_up);
        // What the resolution sends is the person's latest word on those
        // fields, over saves of theirs still waiting.
        let sent: Vec<Change> = conflict
            .resolve(&chosen)
            .patch
            .into_iter()
            .map(|(name, value)| Change::Field(name, value))
            .collect();
        self.tell_tabs(tab, |tab, epoch| Msg::WorkNotice { tab, epoch });
        self.deliver(
            tab,
            Event::Resolve {
                conflict_id: cid,
                chosen,
                caller,
            },
        );
        self.made(tab, caller, &conflict.record_id, sent, Some(&conflict.id));
    }

    /// Whether a change of the same person made after `after` (the
    /// ledger's length when an acknowledged change was made) replaced it.
    fn replaced(&self, made: &Made, after: usize) -> bool {
        self.ledger[after..]
            .iter()
            .any(|later| later.same_field(made))
    }

    /// The person threw away the changes of theirs that `matches` (all of
    /// them, for a logout that discards) and that are not on the server.
    pub(super) fn discarded(&mut self, user: usize, matches: impl Fn(&Made) -> bool) {
        self.settle_ledger();
        for made in &mut self.ledger {
            if made.user == user && made.fate == Fate::Open && matches(made) {
                made.fate = Fate::Discarded;
            }
        }
    }

    /// A tab of `user` went (crash, close): what only tab memory held, and
    /// no live tab or IndexedDB holds now, went with it.
    pub(super) fn tab_went(&mut self, user: usize) {
        self.settle_ledger();
        for i in 0..self.ledger.len() {
            let made = &self.ledger[i];
            if made.user != user || made.fate != Fate::Open {
                continue;
            }
            if !self.held(made, true) {
                self.note(format!(
                    "went with its tab: {:?} of {}",
                    made.change, made.record
                ));
                self.ledger[i].fate = Fate::WentWithTab;
            }
        }
    }

    /// Whether IndexedDB or a live tab of the person holds the change.
    fn held(&self, made: &Made, staged: bool) -> bool {
        made.in_db(&self.dbs[made.user])
            || self.tabs.iter().any(|t| {
                t.user == made.user && t.engine.as_ref().is_some_and(|e| made.in_tab(e, staged))
            })
    }

    /// Marks what reached the server. Only the server's requests change
    /// its records, and each change it applies names its record in the
    /// feed: a change found not on the server at the last settle is
    /// looked for again only when its record changed since (the ledger is
    /// settled after every event; looking through all of it each time took
    /// about a quarter of a run's time).
    fn settle_ledger(&mut self) {
        let (settled, seen) = self.settled;
        let feed = &self.server.feed;
        let changed: BTreeSet<&str> = feed[seen.min(feed.len())..]
            .iter()
            .map(String::as_str)
            .collect();
        for (i, made) in self.ledger.iter_mut().enumerate() {
            if made.fate == Fate::Open
                && (i >= settled || changed.contains(made.record.as_str()))
                && made.on_server(&self.server)
            {
                made.fate = Fate::OnServer;
            }
        }
        self.settled = (self.ledger.len(), self.server.feed.len());
    }

    /// After every event: nothing the person made vanished.
    pub(super) fn check_owed(&mut self) -> Result<(), SimFailure> {
        self.settle_ledger();
        for made in &self.ledger {
            if made.fate != Fate::Open || made.replaced {
                continue;
            }
            if !self.held(made, true) {
                return Err(self.fail(&format!(
                    "user{}'s change made in tab {} ({:?} of {}) vanished: not on the server, in no tab and not in IndexedDB",
                    made.user, made.tab, made.change, made.record
                )));
            }
        }
        Ok(())
    }

    /// At quiescence: every change not on the server is in front of the
    /// person in every live tab of theirs.
    pub(super) fn check_owed_quiet(&mut self) -> Result<(), SimFailure> {
        self.check_owed()?;
        for made in &self.ledger {
            if made.fate != Fate::Open || made.replaced {
                continue;
            }
            for (tab, t) in self.tabs.iter().enumerate() {
                let Some(engine) = &t.engine else { continue };
                if t.user == made.user && !made.in_tab(engine, false) {
                    return Err(self.fail(&format!(
                        "tab {tab} does not show user{}'s change ({:?} of {}), which is not on the server: {}",
                        made.user,
                        made.change,
                        made.record,
                        work_view(engine)
                    )));
                }
            }
        }
        Ok(())
    }

    /// A caller heard `committed` or `merged` with `record`: what it asked
    /// for is in it, unless the same person changed it again since.
    pub(super) fn check_no_lost_update(&mut self, caller: CallerId, record: &Record) {
        let Some(expected) = self.expected.remove(&caller) else {
            return;
        };
        for change in &expected.changes {
            let made = Made::new(expected.user, 0, &expected.record, change.clone(), None);
            let there = match change {
                Change::Field(name, value) => record.fields.get(name) == Some(value),
                Change::Comment(text) => record.comments.iter().any(|c| &c.text == text),
            };
            if !there && !self.replaced(&made, expected.made_at) && self.broken.is_none() {
                self.broken = Some(format!(
                    "a lost update: user{}'s {:?} acknowledged with {}@v{}, which does not hold it",
                    expected.user, change, record.id, record.version
                ));
            }
        }
    }
}
