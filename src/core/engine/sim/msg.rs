//! The world's messages arrive: requests and answers on the model network,
//! timers, leadership, feed pages and reconnections.

use super::*;

impl World {
    pub(super) fn on_msg(&mut self, msg: Msg) {
        let live = |w: &World, tab: usize, epoch: u32| {
            w.tabs[tab].engine.is_some() && w.tabs[tab].epoch == epoch
        };
        match msg {
            Msg::Request {
                tab,
                epoch,
                attempt,
                entry,
            } => {
                let user = Self::user_name(self.tabs[tab].user);
                let changes = self.server.feed.len();
                let refuse = !self.healing
                    && self.faults.refusal > 0.0
                    && !self.server.knows(&entry.idempotency_key)
                    && self.chance(self.faults.refusal);
                let reply = if refuse {
                    let which = self.pick(3);
                    self.server.refuse(which)
                } else {
                    self.server.handle(&user, &entry)
                };
                if self.server.feed.len() > changes {
                    self.ring_streams();
                }
                self.note(format!(
                    "server handles {} of tab {tab}: {}",
                    entry.mutation_id.get(..8).unwrap_or(""),
                    reply_name(&reply)
                ));
                self.send_over_network(Msg::Answer {
                    tab,
                    epoch,
                    attempt,
                    reply,
                });
            }
            Msg::Probe {
                tab,
                epoch,
                attempt,
            } => {
                let user = Self::user_name(self.tabs[tab].user);
                let reply = Reply::Refused(Refusal {
                    status: Some(200),
                    code: ErrorCode::Server,
                    transient: false,
                    retry_after_ms: None,
                    message: user,
                    current: None,
                    details: None,
                });
                self.send_over_network(Msg::Answer {
                    tab,
                    epoch,
                    attempt,
                    reply,
                });
            }
            Msg::Answer {
                tab,
                epoch,
                attempt,
                reply,
            } => {
                let Some(mutation) = self.ended(attempt, tab, epoch) else {
                    return;
                };
                match mutation {
                    Wire::Entry(mutation_id, key) => {
                        // A refusal for good is kept under no key: the key
                        // stays fresh for a person's retry, which may find
                        // the answer to a duplicate the server took since
                        // (found by a fresh seed).
                        let unkept = matches!(&reply, Reply::Refused(r) if r.transient
                            || matches!(r.code, ErrorCode::Invalid | ErrorCode::Forbidden | ErrorCode::Overlap));
                        if !unkept {
                            self.tabs[tab].answered.insert(key);
                        }
                        self.deliver(tab, Event::Answered { mutation_id, reply });
                    }
                    Wire::Probe => {
                        let user = Self::user_name(self.tabs[tab].user);
                        self.deliver(tab, Event::Probed(ProbeReply::User(user)));
                    }
                    Wire::Feed | Wire::Revoke | Wire::Page | Wire::Read(_) => {}
                }
            }
            Msg::Deadline {
                tab,
                epoch,
                attempt,
            } => {
                let Some(mutation) = self.ended(attempt, tab, epoch) else {
                    return;
                };
                match mutation {
                    Wire::Entry(mutation_id, _) => {
                        let reply = Reply::Refused(no_answer(ErrorCode::Timeout, "timeout"));
                        self.deliver(tab, Event::Answered { mutation_id, reply });
                    }
                    Wire::Probe => self.deliver(tab, Event::Probed(ProbeReply::Unreachable)),
                    Wire::Feed => self.deliver(
                        tab,
                        Event::FeedRead(Err(no_answer(ErrorCode::Timeout, "timeout"))),
                    ),
                    Wire::Revoke => self.deliver(
                        tab,
                        Event::Revoked(Err(no_answer(ErrorCode::Timeout, "timeout"))),
                    ),
                    Wire::Page => self.deliver(
                        tab,
                        Event::PageRead {
                            collection: COLLECTION.into(),
                            page: Err(no_answer(ErrorCode::Timeout, "timeout")),
                        },
                    ),
                    Wire::Read(id) => self.deliver(
                        tab,
                        Event::ReadDone {
                            id,
                            answer: Err(no_answer(ErrorCode::Timeout, "timeout")),
                        },
                    ),
                }
            }
            Msg::Timer { tab, epoch, at } => {
                if live(self, tab, epoch) && self.tabs[tab].timer == Some(at) {
                    self.tabs[tab].timer = None;
                    let now = self.now;
                    if let Some(engine) = self.tabs[tab].engine.as_mut() {
                        engine.handle_timeout(now);
                    }
                    self.note(format!("tab {tab} <- timer"));
                    self.run_effects(tab);
                }
            }
            Msg::WorkNotice { tab, epoch } => {
                if live(self, tab, epoch) {
                    let work = self.dbs[self.tabs[tab].user].work();
                    self.reads_work(tab);
                    self.deliver(tab, Event::WorkStored(work));
                }
            }
            Msg::RecordNotice { tab, epoch, id } => {
                if live(self, tab, epoch) {
                    if let Some(record) = self.dbs[self.tabs[tab].user].records.get(&id).cloned() {
                        self.deliver(tab, record_read(record, Origin::Tab));
                    }
                }
            }
            Msg::Channel {
                from,
                tab,
                epoch,
                message,
            } => {
                if live(self, tab, epoch) {
                    self.channel_message(from, tab, *message);
                }
            }
            Msg::LockTick { tab, epoch, at } => {
                if live(self, tab, epoch) {
                    self.lock_tick(tab, at);
                }
            }
            Msg::Leading { tab, epoch } => {
                if live(self, tab, epoch) && self.leaders[self.tabs[tab].user] == Some(tab) {
                    let work = self.dbs[self.tabs[tab].user].work();
                    self.reads_work(tab);
                    self.deliver(tab, Event::Leading(work));
                }
            }
            Msg::FeedRequest {
                tab,
                epoch,
                attempt,
                since,
            } => {
                let page = self.server.changes(&since, COLLECTION);
                self.send_over_network(Msg::FeedAnswer {
                    tab,
                    epoch,
                    attempt,
                    page,
                });
            }
            Msg::FeedAnswer {
                tab,
                epoch,
                attempt,
                page,
            } => {
                if self.ended(attempt, tab, epoch).is_some() {
                    // A tab told its place in the feed is gone loads the
                    // collection again at once: until then it follows
                    // nothing, and other people's changes stay unseen.
                    // (An answer the engine no longer waits for is dropped.)
                    let reading = self.tabs[tab]
                        .engine
                        .as_ref()
                        .is_some_and(ClientEngine::is_reading_feed);
                    let expired = reading && matches!(&page, Err(r) if r.status == Some(410));
                    if expired {
                        // Its writes go first (a few ms): a second at most.
                        self.reload_due.insert(tab, (epoch, self.now + 1_000));
                    }
                    self.deliver(tab, Event::FeedRead(page));
                }
            }
            Msg::Stream {
                tab,
                epoch,
                stream,
                signal,
            } => {
                let current = self.tabs[tab].stream.map(|(n, _)| n);
                if live(self, tab, epoch) && current == Some(stream) {
                    // Nothing gets through a cut connection.
                    let signal = if self.tabs[tab].cut_until.is_some() {
                        StreamSignal::Error
                    } else {
                        signal
                    };
                    let connected = match signal {
                        StreamSignal::Ready | StreamSignal::Change => true,
                        StreamSignal::Opened | StreamSignal::Error => false,
                    };
                    self.tabs[tab].stream = Some((stream, connected));
                    self.deliver(tab, Event::Stream(signal));
                }
            }
            Msg::RevokeRequest {
                tab,
                epoch,
                attempt,
            } => {
                self.send_over_network(Msg::RevokeAnswer {
                    tab,
                    epoch,
                    attempt,
                });
            }
            Msg::RevokeAnswer {
                tab,
                epoch,
                attempt,
            } => {
                if self.ended(attempt, tab, epoch).is_some() {
                    self.deliver(tab, Event::Revoked(Ok(())));
                }
            }
            Msg::LoggedOut { user, discard } => {
                for tab in 0..self.tabs.len() {
                    if self.tabs[tab].user == user && self.tabs[tab].engine.is_some() {
                        self.deliver(tab, Event::Close);
                        self.leave_channel(tab, true);
                        let t = &mut self.tabs[tab];
                        t.engine = None;
                        t.callers.clear();
                        t.epoch += 1;
                    }
                }
                // As the web facade: the user's data is deleted unless it
                // holds work another tab queued meanwhile (kept for the
                // next login, which sends it).
                let db = &self.dbs[user];
                let holds_work =
                    !db.outbox.is_empty() || !db.failed.is_empty() || !db.conflicts.is_empty();
                if discard || !holds_work {
                    self.dbs[user] = UserDb::default();
                } else {
                    self.note(format!("user{user}'s IndexedDB is kept: it holds work"));
                }
                if discard {
                    // The person threw away whatever was left.
                    self.discarded(user, |_| true);
                } else {
                    self.tab_went(user);
                }
                self.elect(user);
                if self.healing {
                    // While the world heals every user has a tab: the
                    // person logs in again, and the next login sends what
                    // was kept for it (found by runs of 25,000 seeds: a
                    // logout that ended after the healing began left its
                    // kept work unsent for good).
                    if let Some(tab) = (0..self.tabs.len()).find(|&t| self.tabs[t].user == user) {
                        self.open_tab(tab);
                    }
                }
            }
            Msg::CatchUpAsked { tab, epoch } => {
                if live(self, tab, epoch) {
                    self.deliver(tab, Event::CatchUpAsked);
                }
            }
            Msg::CaughtUp { tab, epoch } => {
                if live(self, tab, epoch) {
                    self.deliver(tab, Event::CaughtUpElsewhere);
                }
            }
            Msg::ReloadNotice { tab, epoch } => {
                if live(self, tab, epoch) {
                    let records: Vec<Record> = self.dbs[self.tabs[tab].user]
                        .records
                        .values()
                        .cloned()
                        .collect();
                    for record in records {
                        self.deliver(tab, record_read(record, Origin::Server));
                    }
                }
            }
            Msg::Reload { tab, epoch } => {
                if live(self, tab, epoch) {
                    self.note(format!("tab {tab} loads the collection again"));
                    let collection = COLLECTION.into();
                    self.deliver(tab, Event::ReloadAsked { collection });
                }
            }
            Msg::PageRequest {
                tab,
                epoch,
                attempt,
                after,
                size,
            } => {
                let page = self.server.page(after.as_deref(), size as usize);
                self.send_over_network(Msg::PageAnswer {
                    tab,
                    epoch,
                    attempt,
                    page,
                });
            }
            Msg::PageAnswer {
                tab,
                epoch,
                attempt,
                page,
            } => {
                if self.ended(attempt, tab, epoch).is_some() {
                    let collection = COLLECTION.into();
                    self.deliver(
                        tab,
                        Event::PageRead {
                            collection,
                            page: Ok(page),
                        },
                    );
                }
            }
            Msg::ReadRequest {
                tab,
                epoch,
                attempt,
                read,
                id,
            } => {
                let answer = match self.server.records.get(&id) {
                    Some(record) => Ok(ReadAnswer::Record(record.clone())),
                    None => Err(Refusal {
                        status: Some(404),
                        code: ErrorCode::NotFound,
                        transient: false,
                        retry_after_ms: None,
                        message: format!("no record {id}"),
                        current: None,
                        details: None,
                    }),
                };
                self.send_over_network(Msg::ReadAnswer {
                    tab,
                    epoch,
                    attempt,
                    read,
                    answer,
                });
            }
            Msg::ReadAnswer {
                tab,
                epoch,
                attempt,
                read,
                answer,
            } => {
                if self.ended(attempt, tab, epoch).is_some() {
                    self.deliver(tab, Event::ReadDone { id: read, answer });
                }
            }
            Msg::StoredIds { tab, epoch } => {
                if live(self, tab, epoch) {
                    let ids = self.dbs[self.tabs[tab].user].records.keys().cloned();
                    let (collection, ids) = (COLLECTION.into(), ids.collect());
                    self.deliver(tab, Event::StoredIds { collection, ids });
                }
            }
            Msg::StoredRead {
                tab,
                epoch,
                or_none,
            } => {
                if live(self, tab, epoch) {
                    self.read_stored(tab, or_none);
                }
            }
            Msg::WriteDone { tab, epoch, write } => {
                if live(self, tab, epoch) {
                    if let Effect::Write { id, ops, .. } = *write {
                        self.store(tab, Some(id), ops);
                    }
                }
            }
            Msg::Reconnect { tab, epoch } => {
                if live(self, tab, epoch) {
                    self.tabs[tab].cut_until = None;
                    self.deliver(tab, Event::Network(true));
                }
            }
        }
    }
}
