//! Presence, decided without I/O: what this tab has open, the union of what
//! the user's tabs have open, when the leader sends it, and who else is on
//! a record.
//!
//! Every tab tells the others its own set over the channel (at each change,
//! and every [`ANNOUNCE_MS`] so a crashed tab's set ages out after
//! [`TAB_SILENT_MS`]); every tab keeps every tab's set, so the tab that takes
//! over the lead knows the union at once and sends it. Only the leader sends
//! (`POST /api/presence`): at each change of the union, at most every
//! [`MIN_GAP_MS`], and every [`HEARTBEAT_MS`]. A tab that closes (or leaves
//! everything: logout, `close`) tells the others at once, and a closing
//! leader sends the union without its own records at once, so the server
//! drops them without waiting for a timeout.
//!
//! The leader learns who is on a record from the server (`presence` events,
//! and one `GET` when a record joins the union) and passes it on to the
//! other tabs; `of` never lists this tab's own user.
//!
//! Driven like the engine: [`Presence::handle`] with the time passed in,
//! then [`Presence::poll_output`] and [`Presence::poll_timeout`].

use std::collections::{BTreeMap, HashMap, VecDeque};

/// The fewest milliseconds between two sends of the union.
pub const MIN_GAP_MS: u64 = 200;
/// How often the leader sends the union while nothing changes.
pub const HEARTBEAT_MS: u64 = 10_000;
/// How often a tab with records open tells the others its set again.
pub const ANNOUNCE_MS: u64 = 10_000;
/// A tab not heard from for this long is gone (crashed, frozen).
pub const TAB_SILENT_MS: u64 = 25_000;
/// Most records one browser says it has open (the server's bound).
pub const MAX_OPEN: usize = 200;

/// One record a tab has open.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenRecord {
    /// The collection.
    pub collection: String,
    /// The record's id.
    pub id: String,
    /// The field in focus, if any.
    pub editing: Option<String>,
}

/// Someone on a record, as the server says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Their user name.
    pub user: String,
    /// The field they are editing, if any.
    pub editing: Option<String>,
    /// Since when (RFC 3339, as the server sent it).
    pub since: String,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// This tab has a record open (again: focus moved).
    Enter(OpenRecord),
    /// This tab closed a record.
    Leave {
        /// The collection.
        collection: String,
        /// The record's id.
        id: String,
    },
    /// This tab closes everything now (`pagehide`, logout, `close`).
    LeaveAll,
    /// Another tab's whole set (empty: it has nothing open, or closed).
    TabSet {
        /// The tab.
        tab: String,
        /// What it has open.
        records: Vec<OpenRecord>,
    },
    /// Another tab asks every tab to say what it has open (it just opened,
    /// or it took over the lead).
    TabHello,
    /// Whether this tab leads now.
    Leading(bool),
    /// The leader's event stream (re)connected: what it missed meanwhile is
    /// asked for again.
    StreamReady,
    /// Who is on a record, from the server (or from the leader).
    People {
        /// The collection.
        collection: String,
        /// The record's id.
        id: String,
        /// Everyone there, this user included if there.
        people: Vec<Person>,
    },
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Tell the other tabs this tab's whole set.
    TellTabs(Vec<OpenRecord>),
    /// Ask the other tabs for their sets.
    Hello,
    /// The leader sends the union (`POST /api/presence`); `closing`: the
    /// page is going away, send it so it outlives the page.
    Send {
        /// The union.
        records: Vec<OpenRecord>,
        /// Whether the page is going away.
        closing: bool,
    },
    /// The leader asks the server who is on a record.
    Ask {
        /// The collection.
        collection: String,
        /// The record's id.
        id: String,
    },
    /// The leader passes who is on a record on to the other tabs.
    TellPeople {
        /// The collection.
        collection: String,
        /// The record's id.
        id: String,
        /// Everyone there.
        people: Vec<Person>,
    },
    /// The people on a record changed: raise a `presence` event.
    Changed {
        /// The collection.
        collection: String,
        /// The record's id.
        id: String,
    },
}

/// The presence of one tab.
#[derive(Debug)]
pub struct Presence {
    user: String,
    mine: Vec<OpenRecord>,
    /// Other tabs' sets and when each was last heard.
    tabs: BTreeMap<String, (Vec<OpenRecord>, u64)>,
    leading: bool,
    /// What the server was last sent, and when.
    sent: Option<(Vec<OpenRecord>, u64)>,
    announced_at: u64,
    people: HashMap<(String, String), Vec<Person>>,
    closed: bool,
    out: VecDeque<Output>,
}

impl Presence {
    /// A tab of `user` that has nothing open yet; it asks the others for
    /// their sets.
    pub fn new(user: &str) -> Self {
        Self {
            user: user.to_owned(),
            mine: Vec::new(),
            tabs: BTreeMap::new(),
            leading: false,
            sent: None,
            announced_at: 0,
            people: HashMap::new(),
            closed: false,
            out: VecDeque::from([Output::Hello]),
        }
    }

    /// The union of every tab's set: one entry per record, with a field in
    /// focus where any tab has one; sorted, at most [`MAX_OPEN`].
    pub fn union(&self) -> Vec<OpenRecord> {
        let mut all: BTreeMap<(&str, &str), Option<&String>> = BTreeMap::new();
        let sets = std::iter::once(&self.mine).chain(self.tabs.values().map(|(s, _)| s));
        for r in sets.flatten() {
            let editing = all.entry((&r.collection, &r.id)).or_insert(None);
            if editing.is_none() {
                *editing = r.editing.as_ref();
            }
        }
        all.into_iter()
            .take(MAX_OPEN)
            .map(|((collection, id), editing)| OpenRecord {
                collection: collection.to_owned(),
                id: id.to_owned(),
                editing: editing.cloned(),
            })
            .collect()
    }

    /// The other people on a record: one entry per person, never this user.
    pub fn of(&self, collection: &str, id: &str) -> Vec<Person> {
        self.people
            .get(&(collection.to_owned(), id.to_owned()))
            .map(|p| p.iter().filter(|p| p.user != self.user).cloned().collect())
            .unwrap_or_default()
    }

    /// What this tab has open.
    pub fn mine(&self) -> &[OpenRecord] {
        &self.mine
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Presence::handle_timeout`] is due next, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        let mut due: Vec<u64> = Vec::new();
        if self.leading {
            match &self.sent {
                Some((sent, at)) if *sent == self.union() => due.push(at + HEARTBEAT_MS),
                Some((_, at)) => due.push(at + MIN_GAP_MS),
                None => due.push(0),
            }
        }
        if !self.mine.is_empty() {
            due.push(self.announced_at + ANNOUNCE_MS);
        }
        if let Some(oldest) = self.tabs.values().map(|(_, at)| *at).min() {
            due.push(oldest + TAB_SILENT_MS);
        }
        due.into_iter().min()
    }

    /// Time passed: send, announce, forget silent tabs, as due.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.closed {
            return;
        }
        self.tabs
            .retain(|_, (_, at)| now < at.saturating_add(TAB_SILENT_MS));
        if !self.mine.is_empty() && now >= self.announced_at + ANNOUNCE_MS {
            self.announce(now);
        }
        if self.leading {
            let union = self.union();
            let due = match &self.sent {
                Some((sent, at)) if *sent == union => now >= at + HEARTBEAT_MS,
                Some((_, at)) => now >= at + MIN_GAP_MS,
                None => true,
            };
            if due {
                self.out.push_back(Output::Send {
                    records: union.clone(),
                    closing: false,
                });
                self.sent = Some((union, now));
            }
        }
    }

    fn announce(&mut self, now: u64) {
        self.announced_at = now;
        self.out.push_back(Output::TellTabs(self.mine.clone()));
    }

    /// The leader asks the server about records that joined the union.
    fn asks_for_new(&mut self, before: &[OpenRecord]) {
        if !self.leading {
            return;
        }
        for r in self.union() {
            if !before
                .iter()
                .any(|b| b.collection == r.collection && b.id == r.id)
            {
                self.out.push_back(Output::Ask {
                    collection: r.collection,
                    id: r.id,
                });
            }
        }
    }

    /// Something happened at `now` (ms).
    pub fn handle(&mut self, input: Input, now: u64) {
        if self.closed {
            return;
        }
        let before = self.union();
        match input {
            Input::Enter(record) => {
                let full = self.mine.len() >= MAX_OPEN;
                match self
                    .mine
                    .iter_mut()
                    .find(|r| r.collection == record.collection && r.id == record.id)
                {
                    Some(r) if *r == record => return,
                    Some(r) => *r = record,
                    None if full => return,
                    None => self.mine.push(record),
                }
                self.announce(now);
            }
            Input::Leave { collection, id } => {
                let n = self.mine.len();
                self.mine
                    .retain(|r| r.collection != collection || r.id != id);
                if self.mine.len() == n {
                    return;
                }
                self.announce(now);
            }
            Input::LeaveAll => {
                self.closed = true;
                self.mine.clear();
                self.out.push_back(Output::TellTabs(Vec::new()));
                if self.leading {
                    // Sent at once, whatever the gap: the page is going away.
                    self.out.push_back(Output::Send {
                        records: self.union(),
                        closing: true,
                    });
                }
                return;
            }
            Input::TabSet { tab, records } => {
                if records.is_empty() {
                    self.tabs.remove(&tab);
                } else {
                    self.tabs.insert(tab, (records, now));
                }
            }
            Input::TabHello => {
                if !self.mine.is_empty() {
                    self.announce(now);
                }
                return;
            }
            Input::Leading(leading) => {
                if leading == self.leading {
                    return;
                }
                self.leading = leading;
                if leading {
                    // Sent at the next timeout (at once), and every record
                    // of the union asked about: this tab heard nothing yet.
                    self.sent = None;
                    self.out.push_back(Output::Hello);
                    self.asks_for_new(&[]);
                }
                return;
            }
            Input::StreamReady => {
                self.asks_for_new(&[]);
                return;
            }
            Input::People {
                collection,
                id,
                people,
            } => {
                let key = (collection, id);
                let old = self.people.get(&key).map_or(&[][..], |p| &p[..]);
                if old == people {
                    return;
                }
                if self.leading {
                    self.out.push_back(Output::TellPeople {
                        collection: key.0.clone(),
                        id: key.1.clone(),
                        people: people.clone(),
                    });
                }
                let (collection, id) = key.clone();
                if people.is_empty() {
                    self.people.remove(&key);
                } else {
                    self.people.insert(key, people);
                }
                self.out.push_back(Output::Changed { collection, id });
                return;
            }
        }
        self.asks_for_new(&before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, editing: Option<&str>) -> OpenRecord {
        OpenRecord {
            collection: "customers".into(),
            id: id.into(),
            editing: editing.map(Into::into),
        }
    }

    fn drain(p: &mut Presence) -> Vec<Output> {
        std::iter::from_fn(|| p.poll_output()).collect()
    }

    fn sends(out: &[Output]) -> Vec<(Vec<OpenRecord>, bool)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { records, closing } => Some((records.clone(), *closing)),
                _ => None,
            })
            .collect()
    }

    /// Runs timeouts up to `until`, as a runner would; returns the outputs.
    fn run_until(p: &mut Presence, until: u64) -> Vec<Output> {
        let mut out = drain(p);
        while let Some(t) = p.poll_timeout() {
            if t > until {
                break;
            }
            p.handle_timeout(t);
            out.extend(drain(p));
        }
        out
    }

    #[test]
    fn the_leader_sends_the_union_of_its_tabs_one_entry_per_record() {
        let mut p = Presence::new("alice");
        p.handle(Input::Leading(true), 0);
        p.handle(Input::Enter(rec("c-1", None)), 0);
        p.handle(
            Input::TabSet {
                tab: "t2".into(),
                records: vec![rec("c-1", Some("city")), rec("c-2", None)],
            },
            0,
        );
        let out = run_until(&mut p, 0);
        let sent = sends(&out);
        assert_eq!(
            sent.last().unwrap().0,
            vec![rec("c-1", Some("city")), rec("c-2", None)]
        );
        // Asked the server about both records once they joined.
        let asked: Vec<_> = out
            .iter()
            .filter(|o| matches!(o, Output::Ask { .. }))
            .collect();
        assert_eq!(asked.len(), 2, "{out:?}");
    }

    #[test]
    fn sends_at_most_every_200_ms_and_the_last_state_wins() {
        let mut p = Presence::new("alice");
        p.handle(Input::Leading(true), 0);
        run_until(&mut p, 0);
        for (i, field) in ["name", "city", "phone", "email"].iter().enumerate() {
            p.handle(Input::Enter(rec("c-1", Some(field))), 10 + i as u64 * 20);
        }
        let out = run_until(&mut p, 1_000);
        let sent = sends(&out);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].0, vec![rec("c-1", Some("email"))]);
        let t = p.sent.as_ref().unwrap().1;
        assert!(t >= MIN_GAP_MS, "sent at {t}");
    }

    #[test]
    fn the_leader_beats_every_10_s_and_a_follower_never_sends() {
        let mut leader = Presence::new("alice");
        let mut follower = Presence::new("alice");
        leader.handle(Input::Leading(true), 0);
        for p in [&mut leader, &mut follower] {
            p.handle(Input::Enter(rec("c-1", None)), 0);
        }
        let out = run_until(&mut leader, 35_000);
        assert_eq!(sends(&out).len(), 4, "at 0, 10, 20 and 30 s");
        let out = run_until(&mut follower, 35_000);
        assert!(sends(&out).is_empty());
        // The follower tells the others its set again every 10 s.
        let told = out
            .iter()
            .filter(|o| matches!(o, Output::TellTabs(_)))
            .count();
        assert_eq!(told, 4, "{out:?}");
    }

    #[test]
    fn a_tab_not_heard_for_25_s_is_dropped_from_the_union() {
        let mut p = Presence::new("alice");
        p.handle(Input::Leading(true), 0);
        p.handle(
            Input::TabSet {
                tab: "t2".into(),
                records: vec![rec("c-9", None)],
            },
            0,
        );
        run_until(&mut p, 0);
        let out = run_until(&mut p, TAB_SILENT_MS + MIN_GAP_MS);
        assert_eq!(sends(&out).last().unwrap().0, vec![]);
    }

    #[test]
    fn leaving_all_tells_the_tabs_and_a_closing_leader_sends_the_rest_at_once() {
        let mut p = Presence::new("alice");
        p.handle(Input::Leading(true), 0);
        p.handle(Input::Enter(rec("c-1", None)), 0);
        p.handle(
            Input::TabSet {
                tab: "t2".into(),
                records: vec![rec("c-2", None)],
            },
            0,
        );
        run_until(&mut p, 0);
        p.handle(Input::LeaveAll, 50);
        let out = drain(&mut p);
        assert!(out.contains(&Output::TellTabs(vec![])));
        assert_eq!(sends(&out), vec![(vec![rec("c-2", None)], true)]);
        assert_eq!(p.poll_timeout(), None);
        p.handle(Input::Enter(rec("c-3", None)), 60);
        assert!(drain(&mut p).is_empty(), "closed: nothing more");
    }

    #[test]
    fn a_new_leader_asks_for_the_sets_and_sends_the_union_at_once() {
        let mut p = Presence::new("alice");
        assert_eq!(drain(&mut p), vec![Output::Hello]);
        p.handle(
            Input::TabSet {
                tab: "t2".into(),
                records: vec![rec("c-2", Some("city"))],
            },
            100,
        );
        p.handle(Input::Enter(rec("c-1", None)), 100);
        assert!(sends(&run_until(&mut p, 5_000)).is_empty());
        // The leader's tab closed: this one takes over.
        p.handle(Input::Leading(true), 5_000);
        let out = run_until(&mut p, 5_000);
        assert!(out.contains(&Output::Hello));
        assert_eq!(
            sends(&out),
            vec![(vec![rec("c-1", None), rec("c-2", Some("city"))], false)]
        );
        // A stream that (re)connects may have missed people: asked again.
        p.handle(Input::StreamReady, 5_050);
        assert_eq!(
            drain(&mut p)
                .iter()
                .filter(|o| matches!(o, Output::Ask { .. }))
                .count(),
            2
        );
        // Another tab's hello: this one says what it has open.
        p.handle(Input::TabHello, 5_100);
        assert_eq!(
            drain(&mut p),
            vec![Output::TellTabs(vec![rec("c-1", None)])]
        );
    }

    #[test]
    fn of_never_lists_the_user_itself_and_the_leader_passes_people_on() {
        let mut p = Presence::new("alice");
        p.handle(Input::Leading(true), 0);
        drain(&mut p);
        let people = vec![
            Person {
                user: "alice".into(),
                editing: None,
                since: "t0".into(),
            },
            Person {
                user: "bob".into(),
                editing: Some("city".into()),
                since: "t1".into(),
            },
        ];
        p.handle(
            Input::People {
                collection: "customers".into(),
                id: "c-1".into(),
                people: people.clone(),
            },
            0,
        );
        let out = drain(&mut p);
        assert!(out.iter().any(|o| matches!(o, Output::TellPeople { .. })));
        assert!(out.iter().any(|o| matches!(o, Output::Changed { .. })));
        assert_eq!(p.of("customers", "c-1"), people[1..].to_vec());
        // The same again changes nothing.
        p.handle(
            Input::People {
                collection: "customers".into(),
                id: "c-1".into(),
                people,
            },
            1,
        );
        assert!(drain(&mut p).is_empty());
    }

    #[test]
    fn at_most_200_records_of_a_tab() {
        let mut p = Presence::new("alice");
        for i in 0..250 {
            p.handle(Input::Enter(rec(&format!("r-{i}"), None)), 0);
        }
        assert_eq!(p.mine().len(), MAX_OPEN);
        assert_eq!(p.union().len(), MAX_OPEN);
    }
}
