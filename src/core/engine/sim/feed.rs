//! The simulated changes feed, `/api/events` streams and loads.

use super::*;

impl World {
    /// The server tells every connected `/api/events` stream that
    /// something changed (an event may be lost on the way).
    pub(super) fn ring_streams(&mut self) {
        for tab in 0..self.tabs.len() {
            let Some((stream, true)) = self.tabs[tab].stream else {
                continue;
            };
            if self.tabs[tab].cut_until.is_some() {
                continue;
            }
            let epoch = self.tabs[tab].epoch;
            if !self.healing && self.chance(self.faults.loss) {
                continue;
            }
            let delay = 5 + self.pick(100) as u64;
            self.at(
                delay,
                Msg::Stream {
                    tab,
                    epoch,
                    stream,
                    signal: StreamSignal::Change,
                },
            );
        }
    }

    /// What IndexedDB holds of the collection, laid into the tab's
    /// records as the page's runner lays it (never over a newer version,
    /// never a record deleted while the read ran); then the engine hears
    /// the read ended. `or_none`: with nothing stored anywhere the read
    /// found nothing (the server could not be reached either).
    pub(super) fn read_stored(&mut self, tab: usize, or_none: bool) {
        let user = self.tabs[tab].user;
        let stored: Vec<Record> = self.dbs[user].records.values().cloned().collect();
        let Some(engine) = self.tabs[tab].engine.as_ref() else {
            return;
        };
        let nothing = stored.is_empty() && engine.records().list(COLLECTION).is_empty();
        self.note(format!("tab {tab} reads the collection from IndexedDB"));
        self.deliver(
            tab,
            Event::StoredRecords {
                collection: COLLECTION.into(),
                records: stored,
            },
        );
        self.deliver(
            tab,
            Event::StoredRead {
                collection: COLLECTION.into(),
                found: !(or_none && nothing),
            },
        );
    }

    /// A connected stream drops: the browser says so, and reconnects by
    /// itself a while later if the server answers then.
    pub(super) fn drop_stream(&mut self, tab: usize) {
        let Some((stream, true)) = self.tabs[tab].stream else {
            return;
        };
        let epoch = self.tabs[tab].epoch;
        self.tabs[tab].stream = Some((stream, false));
        self.deliver(tab, Event::Stream(StreamSignal::Error));
        if self.tabs[tab].stream.is_some() {
            let delay = 3_000 + self.pick(11_000) as u64;
            for (i, signal) in [StreamSignal::Opened, StreamSignal::Ready]
                .into_iter()
                .enumerate()
            {
                self.at(
                    delay + i as u64,
                    Msg::Stream {
                        tab,
                        epoch,
                        stream,
                        signal,
                    },
                );
            }
        }
    }

    /// Whether every user's leader has read the changes feed to its end,
    /// and every tab heard that it caught up (no collection left stale).
    pub(super) fn feed_behind(&self) -> Option<String> {
        let end = self.server.feed.len().to_string();
        for (tab, t) in self.tabs.iter().enumerate() {
            if t.engine.as_ref().is_some_and(|e| e.is_stale(COLLECTION)) {
                return Some(format!("tab {tab} still shows the collection stale"));
            }
        }
        for user in 0..self.faults.users {
            let Some(leader) = self.leaders[user] else {
                continue;
            };
            let Some(engine) = &self.tabs[leader].engine else {
                continue;
            };
            if !engine.is_leader() {
                return Some(format!("user{user}'s tab {leader} has not taken the lead"));
            }
            if engine.feed_cursor() != Some(end.as_str()) || engine.is_reading_feed() {
                return Some(format!(
                    "user{user}'s leader (tab {leader}) read the feed to {:?} of {end}",
                    engine.feed_cursor()
                ));
            }
        }
        None
    }

    /// Every tab ends with the server's records: the leaders follow the
    /// changes feed (polled every 2 s, or rung by `/api/events` with a
    /// safety read every 30 s) and tell their other tabs.
    pub(super) fn settle_feed(&mut self) -> Result<(), SimFailure> {
        let deadline = self.now + 3 * crate::core::engine::SAFETY_READ_MS;
        while !(self.quiet() && self.feed_behind().is_none()) {
            if self.now > deadline || !self.step_queue() {
                let why = self
                    .feed_behind()
                    .or_else(|| self.why_not_quiet())
                    .unwrap_or_default();
                return Err(self.fail(&format!("the feed never caught up: {why}")));
            }
            self.check_step()?;
        }
        Ok(())
    }
}
