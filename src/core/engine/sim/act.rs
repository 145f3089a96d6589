//! The model person, the browser and the world act.

use super::*;

impl World {
    /// One thing a person, the browser or the world does.
    pub(super) fn act(&mut self) {
        let tab = self.pick(self.tabs.len());
        let roll = self.rng.unit();
        if self.tabs[tab].engine.is_none() {
            if roll < 0.3 {
                self.open_tab(tab);
            }
            return;
        }
        let user = self.tabs[tab].user;
        let id = format!("c{}", self.pick(self.faults.records));
        let key = RecordKey::new(COLLECTION, &id);
        let f = self.faults.clone();
        if roll < 0.45 {
            let field = FIELDS[self.pick(FIELDS.len())];
            self.next_value += 1;
            let value = format!("u{user}t{tab}n{}", self.next_value);
            let mut fields = Fields::new();
            fields.insert(field.into(), FieldValue::Text(value.clone()));
            let caller = self.new_caller(tab, format!("save {id}.{field}={value}"));
            self.deliver(
                tab,
                Event::Save {
                    key,
                    fields,
                    caller,
                },
            );
            let change = Change::Field(field.into(), FieldValue::Text(value));
            self.made(tab, caller, &id, vec![change], None);
        } else if roll < 0.55 {
            let caller = self.new_caller(tab, format!("comment on {id}"));
            self.next_value += 1;
            let text = format!("note {}", self.next_value);
            self.deliver(
                tab,
                Event::Comment {
                    key,
                    text: text.clone(),
                    caller,
                },
            );
            self.made(tab, caller, &id, vec![Change::Comment(text)], None);
        } else if roll < 0.6 {
            // Now and then the person takes their newest change back, or
            // throws away saves still waiting in the debounce window (no
            // draw of their own: runs without them stay as they were).
            let done = if roll < 0.555 {
                // Or opens the list again: `load()` in this tab.
                let mark = self.dbs[user].mark.clone();
                self.load(tab, mark);
                true
            } else if roll < 0.56 {
                // Or opens a record: read from the server (retried as
                // the engine says), laid in and stored.
                let caller = self.new_caller(tab, format!("read {id}"));
                let target = ReadTarget::Record(key);
                self.deliver(tab, Event::Read { target, caller });
                true
            } else if roll < 0.57 {
                false
            } else if roll < 0.585 {
                self.discard_waiting(tab)
            } else {
                self.undo_newest(tab)
            };
            if !done {
                self.deliver(tab, Event::Flush { keepalive: false });
            }
        } else if roll < 0.7 {
            self.decide(tab);
        } else if roll < 0.71 {
            // A person logs out, now and then throwing away what is left.
            if self.tabs[tab].logout.is_none() {
                let discard = self.chance(0.3);
                self.tabs[tab].logout = Some(discard);
                let caller = self.new_caller(tab, format!("logout (discard {discard})"));
                self.deliver(tab, Event::Logout { discard, caller });
            }
        } else if roll < 0.71 + f.crash {
            self.crash(tab);
        } else if roll < 0.71 + f.crash + f.cut {
            if self.tabs[tab].cut_until.is_none() {
                let len = 500 + self.pick(10_000) as u64;
                self.tabs[tab].cut_until = Some(self.now + len);
                let epoch = self.tabs[tab].epoch;
                self.at(len, Msg::Reconnect { tab, epoch });
                self.note(format!("tab {tab} loses its connection for {len} ms"));
                self.deliver(tab, Event::Network(false));
                self.drop_stream(tab);
            }
        } else if roll < 0.71 + f.crash + f.cut + f.idb_refusal {
            self.dbs[user].refuse_next = true;
        } else if roll < 0.71 + f.crash + f.cut + f.idb_refusal + f.server_restart {
            // A restart: requests on their way in are lost, streams drop,
            // and the feed may come back pruned (its older entries gone).
            self.note("server restarts".into());
            self.queue.retain(|_, m| {
                !matches!(
                    m,
                    Msg::Request { .. }
                        | Msg::Probe { .. }
                        | Msg::FeedRequest { .. }
                        | Msg::PageRequest { .. }
                        | Msg::ReadRequest { .. }
                )
            });
            if self.chance(0.5) {
                self.server.feed_floor = self.server.feed.len();
                self.note("the server prunes its changes feed".into());
            }
            for tab in 0..self.tabs.len() {
                self.drop_stream(tab);
            }
        }
    }
}
