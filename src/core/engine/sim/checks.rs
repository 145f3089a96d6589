//! The invariants, checked after every event and at quiescence.

use super::*;

impl World {
    pub(super) fn check_step(&mut self) -> Result<(), SimFailure> {
        if let Some(what) = &self.broken {
            return Err(self.fail(what));
        }
        for user in 0..self.faults.users {
            let leaders = self
                .tabs
                .iter()
                .filter(|t| t.user == user)
                .filter(|t| t.engine.as_ref().is_some_and(ClientEngine::is_leader))
                .count();
            if leaders > 1 {
                return Err(self.fail(&format!("user{user} has {leaders} leading tabs")));
            }
            let holders = self.lock_holders(user);
            if holders.len() > 1 {
                return Err(self.fail(&format!(
                    "user{user}'s tabs {holders:?} hold the leader lock at once"
                )));
            }
        }
        // One change is never two conflicts: every saved value is unique
        // (but for what an undo puts back), so no value is "mine" in two of
        // a user's kept conflicts.
        for (user, db) in self.dbs.iter().enumerate() {
            let mut seen: BTreeMap<(String, String, String), &str> = BTreeMap::new();
            for kept in db.conflicts.values() {
                let c = &kept.conflict;
                for (field, value) in &c.mine {
                    let at = (c.record_id.clone(), field.clone(), format!("{value:?}"));
                    if self.restored.contains(&at) {
                        continue;
                    }
                    if let Some(other) = seen.insert(at, c.id.as_str()) {
                        return Err(self.fail(&format!(
                            "user{user}'s change of {}.{field} is two conflicts ({} and {})",
                            c.record_id,
                            &other[..8.min(other.len())],
                            &c.id[..8.min(c.id.len())]
                        )));
                    }
                }
            }
        }
        if let Some((key, n)) = &self.server.applied.again {
            return Err(self.fail(&format!("the request {key} was applied {n} times")));
        }
        for record in self.server.records.values() {
            let ids: BTreeSet<&str> = record.comments.iter().map(|c| c.id.as_str()).collect();
            if ids.len() != record.comments.len() {
                return Err(self.fail(&format!("a comment of {} was posted twice", record.id)));
            }
        }
        for (&tab, &(epoch, by)) in &self.reload_due {
            if self.now > by && self.tabs[tab].epoch == epoch && self.tabs[tab].engine.is_some() {
                return Err(self.fail(&format!(
                    "tab {tab} heard that its feed cursor expired (410) and did not load the collection again"
                )));
            }
        }
        self.check_owed()
    }

    pub(super) fn quiet(&self) -> bool {
        self.why_not_quiet().is_none()
    }

    pub(super) fn why_not_quiet(&self) -> Option<String> {
        let in_flight = self.queue.values().any(|m| {
            matches!(
                m,
                Msg::Request { .. }
                    | Msg::Answer { .. }
                    | Msg::Probe { .. }
                    | Msg::WorkNotice { .. }
                    | Msg::Leading { .. }
                    | Msg::RecordNotice { .. }
                    | Msg::WriteDone { .. }
                    | Msg::FeedRequest { .. }
                    | Msg::FeedAnswer { .. }
                    | Msg::Reload { .. }
                    | Msg::PageRequest { .. }
                    | Msg::PageAnswer { .. }
                    | Msg::ReadRequest { .. }
                    | Msg::ReadAnswer { .. }
                    | Msg::StoredIds { .. }
                    | Msg::StoredRead { .. }
                    | Msg::ReloadNotice { .. }
                    | Msg::CatchUpAsked { .. }
                    | Msg::CaughtUp { .. }
                    | Msg::RevokeRequest { .. }
                    | Msg::RevokeAnswer { .. }
                    | Msg::LoggedOut { .. }
            )
        });
        if in_flight || !self.inflight.is_empty() {
            return Some("messages in flight".into());
        }
        for (i, t) in self.tabs.iter().enumerate() {
            let Some(e) = &t.engine else { continue };
            if !t.held.is_empty() {
                return Some(format!("tab {i} holds writes IndexedDB refused"));
            }
            if !e.is_online() {
                return Some(format!("tab {i} believes it is offline"));
            }
            if let Some(p) = e.outbox().pending().first() {
                let views: Vec<String> =
                    self.tabs
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| o.user == t.user)
                        .map(|(j, o)| {
                            format!(
                                "  tab {j}: {}",
                                o.engine.as_ref().map_or("closed".into(), |e| e
                                    .describe(&p.mutation_id, self.now))
                            )
                        })
                        .collect();
                return Some(format!(
                    "tab {i} still has {} in its outbox; in IndexedDB: {}\n{}",
                    p.mutation_id,
                    self.dbs[t.user].outbox.contains_key(&p.mutation_id),
                    views.join("\n")
                ));
            }
            if e.is_debouncing() {
                return Some(format!("tab {i} has saves in the debounce window"));
            }
            if let Some((key, change)) = e.debounced().next() {
                let confirmed = e.records().get(&key.collection, &key.id);
                return Some(format!(
                    "tab {i} still debounces {}: {:?}; confirmed {:?}",
                    key.id,
                    change,
                    confirmed.map(|r| (r.version, r.fields))
                ));
            }
        }
        for user in 0..self.faults.users {
            // A user on Web Locks always has one (see `feed_behind`).
            let open = self.on_channel(user)
                && self
                    .tabs
                    .iter()
                    .any(|t| t.user == user && t.engine.is_some());
            let led = self.leaders[user]
                .and_then(|l| self.tabs[l].engine.as_ref())
                .is_some_and(ClientEngine::is_leader);
            if open && !led {
                return Some(format!("user{user} has no leading tab yet"));
            }
        }
        for (u, db) in self.dbs.iter().enumerate() {
            if let Some(id) = db.outbox.keys().next() {
                return Some(format!("user{u}'s IndexedDB outbox still holds {id}"));
            }
        }
        None
    }

    pub(super) fn check_quiescence(&mut self) -> Result<(), SimFailure> {
        self.settle_feed()?;
        for (user, db) in self.dbs.iter().enumerate() {
            if !self
                .tabs
                .iter()
                .any(|t| t.user == user && t.engine.is_some())
            {
                continue;
            }
            for (id, theirs) in &self.server.records {
                if db.records.get(id) != Some(theirs) {
                    return Err(self.fail(&format!(
                        "user{user}'s IndexedDB has {id} as {:?}, the server v{}",
                        db.records.get(id).map(|r| r.version),
                        theirs.version
                    )));
                }
            }
        }
        for (tab, t) in self.tabs.iter().enumerate() {
            let Some(engine) = &t.engine else { continue };
            if let Some((caller, what)) = t.callers.iter().next() {
                return Err(self.fail(&format!(
                    "tab {tab}: caller {caller} ({what}) never settled"
                )));
            }
            for (id, theirs) in &self.server.records {
                let mine = engine.records().get(COLLECTION, id);
                if mine.as_ref() != Some(theirs) {
                    return Err(self.fail(&format!(
                        "tab {tab}: {id} is {:?}, the server has v{} {:?}",
                        mine.as_ref()
                            .map(|r| (r.version, &r.fields, r.comments.len())),
                        theirs.version,
                        (&theirs.fields, theirs.comments.len())
                    )));
                }
            }
        }
        self.check_shown_unsaved()?;
        for user in 0..self.faults.users {
            let views: Vec<(usize, String)> = self
                .tabs
                .iter()
                .enumerate()
                .filter(|(_, t)| t.user == user)
                .filter_map(|(i, t)| t.engine.as_ref().map(|e| (i, work_view(e))))
                .collect();
            if let Some((first_tab, first)) = views.first() {
                for (tab, view) in &views[1..] {
                    if view != first {
                        return Err(self.fail(&format!("user{user}'s work differs: tab {first_tab} {first} vs tab {tab} {view}")));
                    }
                }
            }
        }
        self.check_owed_quiet()
    }

    /// At quiescence nothing waits to be sent: what a tab still shows as
    /// not saved (a staged value or comment over the record) must be a
    /// change the server refused, held in `failed()` for the person. A
    /// value shown that nothing stands for would never be saved, and the
    /// person could not retry or discard it.
    fn check_shown_unsaved(&self) -> Result<(), SimFailure> {
        for (tab, t) in self.tabs.iter().enumerate() {
            let Some(engine) = &t.engine else { continue };
            let failed = engine.outbox().failed();
            for (key, change) in engine.records().staged_changes() {
                for (name, value) in &change.fields {
                    let held = failed
                        .iter()
                        .filter(|e| e.record_id == key.id)
                        .any(|e| e.op.fields().and_then(|f| f.get(name)) == Some(value));
                    if !held {
                        return Err(self.fail(&format!(
                            "tab {tab} shows {}.{name} = {value:?} as not saved, and no refused change holds it: {}",
                            key.id,
                            work_view(engine)
                        )));
                    }
                }
                for pending in &change.comments {
                    let held = failed.iter().filter(|e| e.record_id == key.id).any(|e| {
                        matches!(&e.op, crate::core::outbox::MutationOp::Comment { comment_id, .. }
                            if comment_id == &pending.id)
                    });
                    if !held {
                        return Err(self.fail(&format!(
                            "tab {tab} shows a comment on {} as not posted, and no refused change holds it: {}",
                            key.id,
                            work_view(engine)
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_acknowledged(&self, record: &Record, what: &str) {
        if record.version == 0 {
            return;
        }
        let kept = self
            .server
            .history
            .get(&(record.id.clone(), record.version));
        assert!(
            kept == Some(&record.fields),
            "seed {}: {what} acknowledged {}@v{} with fields the server never had at that version",
            self.seed,
            record.id,
            record.version
        );
    }
}
