//! Presence in the browser: carries out what [`crate::core::presence`]
//! decides (channel messages, `POST`/`GET /api/presence`, the timer, the
//! `presence` event) and reports back what happened. No decisions here.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

use crate::core::presence::{Input, OpenRecord, Output, Person, Presence};
use crate::core::tab_message::TabMessage;
use crate::error::Error;
use crate::web::channel::EnvelopeChannel;
use crate::web::client::{Client, WeakClient};
use crate::web::clock::now_ms;
use crate::web::http::{send, Method};
use crate::web::js::get;
use crate::web::lifecycle::{PageEvent, PageLifecycle};

/// One tab's presence: the core, and what carries out its decisions.
pub struct PresenceRunner {
    core: RefCell<Presence>,
    client: WeakClient,
    me: Weak<PresenceRunner>,
    bus: RefCell<Option<Rc<EnvelopeChannel>>>,
    timer: RefCell<Option<Timeout>>,
    lifecycle: RefCell<Option<PageLifecycle>>,
    /// `of` answers handed to JS, kept until the people there change (so
    /// `useSyncExternalStore` sees the same array between changes).
    shown: RefCell<HashMap<(String, String), JsValue>>,
}

impl PresenceRunner {
    /// Presence for `client`'s tab; it leaves everything on `pagehide`.
    pub fn start(client: &Client) -> Rc<Self> {
        let runner = Rc::new_cyclic(|me: &Weak<Self>| Self {
            core: RefCell::new(Presence::new(&client.user())),
            client: client.downgrade(),
            me: me.clone(),
            bus: RefCell::new(None),
            timer: RefCell::new(None),
            lifecycle: RefCell::new(None),
            shown: RefCell::new(HashMap::new()),
        });
        let weak = Rc::downgrade(&runner);
        *runner.lifecycle.borrow_mut() = Some(PageLifecycle::listen(move |event| {
            if let PageEvent::Hide { .. } = event {
                if let Some(r) = weak.upgrade() {
                    r.handle(Input::LeaveAll);
                }
            }
        }));
        let weak = Rc::downgrade(&runner);
        client.set_presence_listener(Some(Rc::new(move |data: JsValue| {
            let input = if data.is_undefined() {
                Some(Input::StreamReady)
            } else {
                people_input(&data)
            };
            if let (Some(r), Some(input)) = (weak.upgrade(), input) {
                r.handle(input);
            }
        })));
        runner
    }

    /// The channel to this user's other tabs; says hello on it.
    pub fn set_bus(&self, bus: Option<Rc<EnvelopeChannel>>) {
        *self.bus.borrow_mut() = bus;
        self.drive();
    }

    /// What happened; the core decides, this carries it out.
    pub fn handle(&self, input: Input) {
        self.core.borrow_mut().handle(input, now_ms());
        self.drive();
    }

    /// A presence message of another tab; others are not this runner's.
    pub fn on_tab_message(&self, tab: &str, message: &TabMessage) {
        let input = match message {
            TabMessage::PresenceSet(records) => Input::TabSet {
                tab: tab.to_owned(),
                records: records.clone(),
            },
            TabMessage::PresenceHello => Input::TabHello,
            TabMessage::PresencePeople {
                collection,
                id,
                people,
            } => Input::People {
                collection: collection.clone(),
                id: id.clone(),
                people: people.clone(),
            },
            _ => return,
        };
        self.handle(input);
    }

    /// The other people on a record, as JS: `[{ user, editing, since }]`,
    /// the same array until they change.
    pub fn of(&self, collection: &str, id: &str) -> JsValue {
        let key = (collection.to_owned(), id.to_owned());
        if let Some(v) = self.shown.borrow().get(&key) {
            return v.clone();
        }
        let people = self.core.borrow().of(collection, id);
        let list = js_sys::Array::new();
        for p in &people {
            list.push(&person_object(p));
        }
        let value: JsValue = list.into();
        self.shown.borrow_mut().insert(key, value.clone());
        value
    }

    /// Leaves everything at once (logout, `close`) and stops.
    pub fn close(&self) {
        self.handle(Input::LeaveAll);
        self.timer.borrow_mut().take();
        self.lifecycle.borrow_mut().take();
        if let Some(client) = self.client.upgrade() {
            client.set_presence_listener(None);
        }
    }

    fn drive(&self) {
        loop {
            let next = self.core.borrow_mut().poll_output();
            let Some(output) = next else { break };
            self.carry_out(output);
        }
        let due = self.core.borrow().poll_timeout();
        let timer = due.map(|at| {
            let wait = at.saturating_sub(now_ms()).min(u64::from(u32::MAX));
            let me = self.me.clone();
            Timeout::new(u32::try_from(wait).unwrap_or(u32::MAX), move || {
                if let Some(r) = me.upgrade() {
                    r.core.borrow_mut().handle_timeout(now_ms());
                    r.drive();
                }
            })
        });
        *self.timer.borrow_mut() = timer;
    }

    fn tell_tabs(&self, message: TabMessage) {
        if let Some(bus) = self.bus.borrow().as_ref() {
            let _ = bus.post(message);
        }
    }

    fn carry_out(&self, output: Output) {
        match output {
            Output::TellTabs(records) => self.tell_tabs(TabMessage::PresenceSet(records)),
            Output::Hello => self.tell_tabs(TabMessage::PresenceHello),
            Output::TellPeople {
                collection,
                id,
                people,
            } => self.tell_tabs(TabMessage::PresencePeople {
                collection,
                id,
                people,
            }),
            Output::Send { records, closing } => {
                let Some(client) = self.client.upgrade() else {
                    return;
                };
                // Made now: a closing client refuses requests a moment later.
                let req = presence_request(&client, &records, closing);
                // A lost heartbeat is repeated within 10 s; nothing to retry.
                spawn_local(async move {
                    if let Err(e) = match req {
                        Ok(req) => send(&req).await.map(|_| ()),
                        Err(e) => Err(e),
                    } {
                        web_sys::console::debug_1(&format!("crm-sync presence: {e}").into());
                    }
                });
            }
            Output::Ask { collection, id } => {
                let (Some(client), me) = (self.client.upgrade(), self.me.clone()) else {
                    return;
                };
                spawn_local(async move {
                    let path = format!(
                        "/presence?collection={}&id={}",
                        js_sys::encode_uri_component(&collection),
                        js_sys::encode_uri_component(&id)
                    );
                    let answer = match client.request(Method::Get, &path) {
                        Ok(req) => send(&req).await,
                        Err(e) => Err(e),
                    };
                    let Ok(answer) = answer else { return };
                    let Some(people) = read_people(&get(&answer.body, "people")) else {
                        return;
                    };
                    if let Some(r) = me.upgrade() {
                        r.handle(Input::People {
                            collection,
                            id,
                            people,
                        });
                    }
                });
            }
            Output::Changed { collection, id } => {
                self.shown
                    .borrow_mut()
                    .remove(&(collection.clone(), id.clone()));
                let Some(client) = self.client.upgrade() else {
                    return;
                };
                let event = js_sys::Object::new();
                let set = |k: &str, v: &JsValue| {
                    let _ = js_sys::Reflect::set(&event, &k.into(), v);
                };
                set("type", &"presence".into());
                set("collection", &collection.as_str().into());
                set("id", &id.as_str().into());
                set("people", &self.of(&collection, &id));
                client.emit_event(&event.into());
            }
        }
    }
}

/// `POST /api/presence` with the union; `closing` lets it outlive the page.
fn presence_request(
    client: &Client,
    records: &[OpenRecord],
    closing: bool,
) -> Result<crate::web::http::HttpRequest, Error> {
    let mut req = client.request(Method::Post, "/presence")?;
    req.keepalive = closing;
    let entries = js_sys::Array::new();
    for r in records {
        let e = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&e, &"collection".into(), &r.collection.as_str().into());
        let _ = js_sys::Reflect::set(&e, &"id".into(), &r.id.as_str().into());
        let editing = r.editing.as_deref().map_or(JsValue::NULL, JsValue::from);
        let _ = js_sys::Reflect::set(&e, &"editing".into(), &editing);
        entries.push(&e);
    }
    let body = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&body, &"entries".into(), &entries);
    req.body = Some(body.into());
    Ok(req)
}

fn person_object(p: &Person) -> JsValue {
    let o = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&o, &"user".into(), &p.user.as_str().into());
    let editing = p.editing.as_deref().map_or(JsValue::NULL, JsValue::from);
    let _ = js_sys::Reflect::set(&o, &"editing".into(), &editing);
    let _ = js_sys::Reflect::set(&o, &"since".into(), &p.since.as_str().into());
    o.into()
}

/// People as the server sends them; `None` for anything else (a server's
/// garbage is ignored, never half read).
fn read_people(list: &JsValue) -> Option<Vec<Person>> {
    let list = list.dyn_ref::<js_sys::Array>()?;
    list.iter()
        .take(1_000)
        .map(|p| {
            let editing = get(&p, "editing");
            Some(Person {
                user: get(&p, "user").as_string()?,
                editing: if editing.is_null() || editing.is_undefined() {
                    None
                } else {
                    Some(editing.as_string()?)
                },
                since: get(&p, "since").as_string()?,
            })
        })
        .collect()
}

/// A `presence` event's data (JSON text) as an input.
fn people_input(data: &JsValue) -> Option<Input> {
    let text = data.as_string()?;
    let value = js_sys::JSON::parse(&text).ok()?;
    Some(Input::People {
        collection: get(&value, "collection").as_string()?,
        id: get(&value, "id").as_string()?,
        people: read_people(&get(&value, "people"))?,
    })
}
