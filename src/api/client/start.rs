//! Starting a client (`login`, `open`): the session, then the engine, the
//! sync follower and the tab coordination wired together; and shutting
//! them down.

use js_sys::Function;
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

use crate::error::Error;
use std::rc::Rc;

use crate::api::tabs::TabLocks;
use crate::core::election::TabId;
use crate::core::tab_message::TabMessage;
use crate::web::channel::EnvelopeChannel;
use crate::web::client::{Client, Config, Session};
use crate::web::http::{send, HttpRequest, Method};
use crate::web::js::from_server;
use crate::web::kept_metrics::MetricsKeeper;
use crate::web::sync::SyncRunner;

use super::{CrmOptions, CrmSync, CrmSyncJobs, LoginOptions, OpenOptions};

#[derive(Deserialize)]
struct MeAnswer {
    user: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginAnswer {
    token: String,
    user: String,
}

/// `CrmSync.login` and `CrmSync.open` as futures.
impl CrmSync {
    /// `login` as a future (an async export would bring its own copy of
    /// the promise plumbing).
    pub(super) async fn log_in(options: JsValue) -> Result<CrmSync, JsValue> {
        crate::web::support::check()?;
        let options = LoginOptions::read(options)?;
        let config = options.options.config(&options.base_url)?;
        let mut req = HttpRequest::new(Method::Post, format!("{}/login", config.base_url));
        req.timeout_ms = config.timeout_ms;
        let body = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&body, &"username".into(), &options.username.as_str().into());
        let _ = js_sys::Reflect::set(&body, &"password".into(), &options.password.as_str().into());
        req.body = Some(body.into());
        let answer: LoginAnswer = from_server(send(&req).await?.body)?;
        let session = Session {
            token: answer.token,
            user: answer.user,
        };
        Ok(start_client(&options.options, config, session, true).await?)
    }

    /// `open` as a future.
    pub(super) async fn open_with(options: JsValue) -> Result<CrmSync, JsValue> {
        crate::web::support::check()?;
        let options = OpenOptions::read(options)?;
        if options.token.is_empty() {
            return Err(Error::Invalid("token is empty".into()).into());
        }
        let config = options.options.config(&options.base_url)?;
        let mut req = HttpRequest::new(Method::Get, format!("{}/me", config.base_url));
        req.timeout_ms = config.timeout_ms;
        req.token = Some(options.token.clone());
        let named = options.user.filter(|u| !u.is_empty());
        let answer = match send(&req).await {
            Ok(resp) => from_server::<MeAnswer>(resp.body).map(Some),
            Err(e) if e.is_transient() && named.is_some() => Ok(None),
            Err(e) => Err(e),
        }?;
        let (user, verified) = match (answer, named) {
            (Some(me), Some(named)) if me.user != named => {
                return Err(Error::Http {
                    code: crate::error::ErrorCode::Unauthorized,
                    status: 401,
                    message: format!("this token is {}'s, not {named}'s", me.user),
                    details: JsValue::UNDEFINED,
                    retry_after_ms: None,
                }
                .into())
            }
            (Some(me), _) => (me.user, true),
            (None, Some(named)) => (named, false),
            (None, None) => return Err(Error::Offline.into()),
        };
        let session = Session {
            token: options.token,
            user,
        };
        Ok(start_client(&options.options, config, session, verified).await?)
    }
}

/// Starts the engine, the sync follower and the tab coordination.
pub(super) async fn start_client(
    options: &CrmOptions,
    config: Config,
    session: Session,
    verified: bool,
) -> Result<CrmSync, Error> {
    let mode = options.tabs_mode()?;
    let channel = format!("crm-sync:{}", session.user);
    let client = Client::start(config, session, verified).await;
    let sync = SyncRunner::new(client.clone(), options.sync_config());
    let presence = crate::web::presence::PresenceRunner::start(&client);
    let tabs = TabLocks::open(&channel, mode)?;

    let weak_client = client.downgrade();
    let weak_sync = Rc::downgrade(&sync);
    let weak_presence = Rc::downgrade(&presence);
    let bus = EnvelopeChannel::open(
        &format!("{channel}:events"),
        TabId(tabs.tab_id()),
        move |envelope| {
            let (Some(client), Some(sync)) = (weak_client.upgrade(), weak_sync.upgrade()) else {
                return;
            };
            match &envelope.message {
                TabMessage::RecordChanged(change) => {
                    let change = change.clone();
                    spawn_local(async move { client.record_from_tab(change).await });
                }
                TabMessage::Session(notice) => client.session_from_tab(notice.state),
                TabMessage::WorkChanged(_) => {
                    spawn_local(async move { client.reread_work().await });
                }
                TabMessage::CollectionReloaded(collection) => {
                    let collection = collection.clone();
                    spawn_local(async move { client.reread_collection(&collection).await });
                }
                TabMessage::DurableChanged => {
                    spawn_local(async move { client.read_durable().await });
                }
                TabMessage::CatchUpAsked | TabMessage::CaughtUp => {
                    client.catch_up_from_tab(&envelope.message)
                }
                TabMessage::PresenceSet(_)
                | TabMessage::PresencePeople { .. }
                | TabMessage::PresenceHello => {
                    if let Some(p) = weak_presence.upgrade() {
                        p.on_tab_message(&envelope.tab.0, &envelope.message);
                    }
                }
                other => sync.on_tab_message(other),
            }
        },
    )
    .ok()
    .map(Rc::new);
    client.set_bus(bus.clone());
    sync.set_bus(bus.clone());
    presence.set_bus(bus.clone());

    let weak_client = client.downgrade();
    let weak_sync = Rc::downgrade(&sync);
    let weak_presence = Rc::downgrade(&presence);
    let on_leader = Closure::<dyn FnMut(bool)>::new(move |leader: bool| {
        if let Some(client) = weak_client.upgrade() {
            client.set_leader(leader);
        }
        if let Some(p) = weak_presence.upgrade() {
            p.handle(crate::core::presence::Input::Leading(leader));
        }
        if leader {
            if let Some(sync) = weak_sync.upgrade() {
                spawn_local(async move { sync.on_leadership().await });
            }
        }
    });
    let _unsubscribe =
        tabs.on_leader_change(on_leader.as_ref().unchecked_ref::<Function>().clone());
    if tabs.is_leader() {
        client.set_leader(true);
        presence.handle(crate::core::presence::Input::Leading(true));
        let s = Rc::clone(&sync);
        spawn_local(async move { s.on_leadership().await });
    } else {
        let s = Rc::clone(&sync);
        spawn_local(async move { s.restore_schedule().await });
    }
    let sync_js: JsValue = CrmSyncJobs {
        runner: Rc::clone(&sync),
    }
    .into();
    let metrics = MetricsKeeper::start(client.clone(), &sync).await;
    let presence_js = crate::api::presence::CrmPresence::new(Rc::clone(&presence)).into();
    Ok(CrmSync {
        client,
        sync,
        presence,
        presence_js,
        metrics,
        sync_js,
        tabs_js: tabs.into(),
        _bus: bus,
        _on_leader: on_leader,
    })
}

/// Closes the engine, the sync follower and the tab coordination (which
/// hands leadership to another tab at once).
pub(super) fn shut_down(client: &Client, sync: &SyncRunner, tabs_js: &JsValue) {
    client.close();
    sync.close();
    client.set_bus(None);
    sync.set_bus(None);
    if let Ok(close) = js_sys::Reflect::get(tabs_js, &"close".into()) {
        if let Ok(close) = close.dyn_into::<Function>() {
            let _ = close.call0(tabs_js);
        }
    }
}
