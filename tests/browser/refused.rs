//! Changes the server refuses for good, against the real server: a booking
//! made offline that someone else's booking took the slot of, and the same
//! refusals online (a double booking, an invalid value, a delete of a record
//! that is gone). Each is kept in `failed()` with the server's code, message
//! and details, raises one `failed` event in every tab of the user, counts
//! in `status.failed`, and stays until the person retries, edits or
//! discards it. Two `CrmSync` objects of one user in this page are two tabs.

use std::cell::RefCell;
use std::rc::Rc;

use crm_sync::api::CrmSync;
use js_sys::{Array, Function};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::{eventually, fetch_as, login, obj, prop, rejected, resolved, tag};

const EVENTS: &str = "calendar_events";

fn text(v: &JsValue, key: &str) -> Option<String> {
    prop(v, key).as_string()
}

fn len(v: &JsValue) -> u32 {
    Array::from(v).length()
}

fn failed_count(crm: &CrmSync) -> Option<f64> {
    prop(&crm.status(), "failed").as_f64()
}

/// The `failed` events a tab raises, and the listener to keep alive.
struct FailedEvents {
    seen: Rc<RefCell<Vec<JsValue>>>,
    _listener: Closure<dyn FnMut(JsValue)>,
    unsubscribe: Function,
}

impl FailedEvents {
    fn of(crm: &CrmSync) -> Self {
        let seen: Rc<RefCell<Vec<JsValue>>> = Rc::default();
        let into = Rc::clone(&seen);
        let listener = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            if text(&event, "type").as_deref() == Some("failed") {
                into.borrow_mut().push(prop(&event, "failure"));
            }
        });
        let unsubscribe = crm.subscribe(listener.as_ref().unchecked_ref::<Function>().clone());
        Self {
            seen,
            _listener: listener,
            unsubscribe,
        }
    }

    fn count(&self) -> usize {
        self.seen.borrow().len()
    }

    fn last(&self) -> JsValue {
        self.seen
            .borrow()
            .last()
            .cloned()
            .unwrap_or(JsValue::UNDEFINED)
    }
}

impl Drop for FailedEvents {
    fn drop(&mut self) {
        let _ = self.unsubscribe.call0(&JsValue::NULL);
    }
}

/// The fields of a booking of `room` from `start` to `end` (UTC).
fn booking(room: &str, title: &str, start: &str, end: &str) -> JsValue {
    obj(&[
        ("title", title.into()),
        ("resource", room.into()),
        ("start", start.into()),
        ("end", end.into()),
    ])
}

/// Books directly on the server as the token's user; the new record's id.
async fn book_on_server(token: &str, fields: &JsValue) -> String {
    let body = js_sys::JSON::stringify(&obj(&[("fields", fields.clone())]))
        .unwrap()
        .as_string()
        .unwrap();
    let resp = fetch_as(
        token,
        "POST",
        &format!("/api/{EVENTS}"),
        &[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", &format!("refused-test-{}", tag())),
        ],
        Some(&body),
    )
    .await;
    assert_eq!(resp.status(), 201, "booking on the server");
    let record = resolved(resp.json().unwrap()).await;
    text(&record, "id").unwrap()
}

/// Deletes a record directly on the server, `If-Match` the given version.
async fn delete_on_server(token: &str, collection: &str, id: &str, version: u64) {
    let resp = fetch_as(
        token,
        "DELETE",
        &format!("/api/{collection}/{id}"),
        &[
            ("If-Match", &format!("\"{version}\"")),
            ("Idempotency-Key", &format!("refused-test-{}", tag())),
        ],
        None,
    )
    .await;
    assert_eq!(resp.status(), 204, "delete on the server");
}

/// The one row of `failed()`.
fn only_failure(crm: &CrmSync) -> JsValue {
    let failed = crm.failed();
    assert_eq!(len(&failed), 1, "failed() holds the refused change");
    Array::from(&failed).get(0)
}

/// What every failure row carries, as the API names it.
fn assert_shape(failure: &JsValue, op: &str, code: &str) {
    assert_eq!(text(failure, "op").as_deref(), Some(op));
    assert_eq!(text(failure, "code").as_deref(), Some(code));
    for key in ["mutationId", "collection", "recordId", "message"] {
        assert!(text(failure, key).is_some_and(|s| !s.is_empty()), "{key}");
    }
    assert!(
        prop(failure, "at").as_f64().is_some_and(|at| at > 0.0),
        "at"
    );
    let has = |key: &str| js_sys::Reflect::has(failure, &key.into()).unwrap();
    assert!(
        has("fields") && has("details"),
        "fields and details are there"
    );
}

/// The ids of the bookings a `409 overlap` named.
fn overlapping_ids(failure: &JsValue) -> Vec<String> {
    Array::from(&prop(&prop(failure, "details"), "conflicts"))
        .iter()
        .filter_map(|r| text(&r, "id"))
        .collect()
}

#[wasm_bindgen_test]
async fn a_booking_made_offline_and_refused_for_overlap_is_kept_told_in_every_tab_and_retried() {
    let bob = login("user44").await;
    let bob_tab = login("user44").await;
    let alice = login("user45").await;
    let heard_here = FailedEvents::of(&bob);
    let heard_there = FailedEvents::of(&bob_tab);
    let room = format!("Room {}", tag());
    let slot = booking(
        &room,
        "Bob's call",
        "2026-12-10T09:00:00Z",
        "2026-12-10T10:00:00Z",
    );

    bob.set_online(false);
    let queued = resolved(bob.create(EVENTS.into(), slot.clone())).await;
    assert_eq!(text(&queued, "status").as_deref(), Some("queued"));
    // Meanwhile Alice books the same slot, online.
    let hers = book_on_server(&alice.token(), &slot).await;
    bob.set_online(true);

    assert!(
        eventually(15_000, || len(&bob.failed()) == 1
            && len(&bob_tab.failed()) == 1)
        .await,
        "the refused booking is in failed() of both tabs: {:?} / {:?}",
        bob.failed(),
        bob_tab.failed()
    );
    for tab in [&bob, &bob_tab] {
        let failure = only_failure(tab);
        assert_shape(&failure, "create", "overlap");
        assert_eq!(text(&failure, "collection").as_deref(), Some(EVENTS));
        assert_eq!(overlapping_ids(&failure), std::slice::from_ref(&hers));
        assert_eq!(
            text(&prop(&failure, "fields"), "resource").as_deref(),
            Some(room.as_str())
        );
        assert_eq!(failed_count(tab), Some(1.0));
    }
    assert!(
        eventually(5_000, || heard_here.count() == 1
            && heard_there.count() == 1)
        .await
    );
    assert_eq!(
        text(&heard_there.last(), "code").as_deref(),
        Some("overlap")
    );
    assert_eq!(
        overlapping_ids(&heard_there.last()),
        std::slice::from_ref(&hers)
    );
    // Still waiting for Bob's word: the booking is shown, marked pending.
    let record_id = text(&only_failure(&bob), "recordId").unwrap();
    let view = bob.view(EVENTS, &record_id).unwrap();
    assert_eq!(prop(&view, "pending").as_bool(), Some(true));

    // Alice cancels hers; Bob retries from the other tab, and it is in.
    delete_on_server(&alice.token(), EVENTS, &hers, 1).await;
    let mutation_id = text(&only_failure(&bob_tab), "mutationId").unwrap();
    let done = resolved(bob_tab.retry(mutation_id)).await;
    assert_eq!(text(&done, "status").as_deref(), Some("committed"));
    assert!(
        eventually(5_000, || len(&bob.failed()) == 0
            && failed_count(&bob) == Some(0.0))
        .await
    );
    assert_eq!(len(&bob_tab.failed()), 0);
    assert_eq!(failed_count(&bob_tab), Some(0.0));
    // Once per refusal: nothing more was heard.
    assert_eq!((heard_here.count(), heard_there.count()), (1, 1));
    bob.close();
    bob_tab.close();
    alice.close();
}

#[wasm_bindgen_test]
async fn a_booking_refused_online_for_overlap_is_kept_and_an_edit_to_a_free_time_sends_it() {
    let bob = login("user41").await;
    let bob_tab = login("user41").await;
    let alice = login("user42").await;
    let heard_there = FailedEvents::of(&bob_tab);
    let room = format!("Room {}", tag());
    let slot = booking(
        &room,
        "Bob's demo",
        "2026-12-11T13:00:00Z",
        "2026-12-11T14:00:00Z",
    );
    let hers = book_on_server(&alice.token(), &slot).await;

    let err = rejected(bob.create(EVENTS.into(), slot)).await;
    assert_eq!(text(&err, "code").as_deref(), Some("overlap"));
    let failure = only_failure(&bob);
    assert_shape(&failure, "create", "overlap");
    assert_eq!(overlapping_ids(&failure), std::slice::from_ref(&hers));
    assert_eq!(failed_count(&bob), Some(1.0));
    assert!(eventually(5_000, || heard_there.count() == 1).await);
    assert_eq!(overlapping_ids(&heard_there.last()), [hers]);
    assert!(eventually(5_000, || failed_count(&bob_tab) == Some(1.0)).await);

    // Bob moves it to a free hour: the refused booking goes again, with
    // the new time, and leaves failed().
    let id = text(&failure, "recordId").unwrap();
    let moved = obj(&[
        ("start", "2026-12-11T15:00:00Z".into()),
        ("end", "2026-12-11T16:00:00Z".into()),
    ]);
    let done = resolved(bob.save(EVENTS.into(), id.clone(), moved)).await;
    assert_eq!(text(&done, "status").as_deref(), Some("committed"));
    let record = bob.get(EVENTS, &id).unwrap();
    assert_eq!(
        text(&prop(&record, "fields"), "start").as_deref(),
        Some("2026-12-11T15:00:00Z")
    );
    assert_eq!(
        text(&prop(&record, "fields"), "title").as_deref(),
        Some("Bob's demo")
    );
    assert_eq!(len(&bob.failed()), 0);
    assert!(eventually(5_000, || len(&bob_tab.failed()) == 0).await);
    assert_eq!(heard_there.count(), 1);
    bob.close();
    bob_tab.close();
    alice.close();
}

#[wasm_bindgen_test]
async fn a_save_refused_as_invalid_keeps_the_fields_the_server_named_until_discarded() {
    let ann = login("user24").await;
    let ann_tab = login("user24").await;
    let heard_there = FailedEvents::of(&ann_tab);
    let list = resolved(ann.load("customers".into(), None)).await;
    let id = text(&Array::from(&list).get(3), "id").unwrap();

    let err = rejected(ann.save(
        "customers".into(),
        id.clone(),
        obj(&[("email", "not an email".into())]),
    ))
    .await;
    assert_eq!(text(&err, "code").as_deref(), Some("invalid"));
    let failure = only_failure(&ann);
    assert_shape(&failure, "patch", "invalid");
    assert_eq!(
        text(&prop(&failure, "fields"), "email").as_deref(),
        Some("not an email")
    );
    let said = prop(&prop(&prop(&failure, "details"), "fields"), "email");
    assert!(
        said.as_string().is_some_and(|s| !s.is_empty()),
        "details.fields.email"
    );
    assert_eq!(failed_count(&ann), Some(1.0));
    assert!(eventually(5_000, || heard_there.count() == 1).await);
    assert_eq!(
        text(&heard_there.last(), "code").as_deref(),
        Some("invalid")
    );

    let mutation_id = text(&failure, "mutationId").unwrap();
    resolved(ann_tab.discard(mutation_id)).await;
    assert!(
        eventually(5_000, || len(&ann.failed()) == 0
            && failed_count(&ann) == Some(0.0))
        .await
    );
    assert_eq!(heard_there.count(), 1);
    ann.close();
    ann_tab.close();
}

#[wasm_bindgen_test]
async fn a_save_of_a_refused_field_replaces_the_refused_value() {
    let ann = login("user25").await;
    let list = resolved(ann.load("customers".into(), None)).await;
    let id = text(&Array::from(&list).get(4), "id").unwrap();
    rejected(ann.save(
        "customers".into(),
        id.clone(),
        obj(&[("email", "still not an email".into())]),
    ))
    .await;
    assert_eq!(failed_count(&ann), Some(1.0));
    let fixed = format!("ann.{}@example.com", tag());
    let done = resolved(ann.save(
        "customers".into(),
        id.clone(),
        obj(&[("email", fixed.clone().into())]),
    ))
    .await;
    assert_eq!(text(&done, "status").as_deref(), Some("committed"));
    assert_eq!(
        len(&ann.failed()),
        0,
        "the new value replaced the refused one"
    );
    assert_eq!(failed_count(&ann), Some(0.0));
    let record = ann.get("customers", &id).unwrap();
    assert_eq!(text(&prop(&record, "fields"), "email"), Some(fixed));
    ann.close();
}

#[wasm_bindgen_test]
async fn a_delete_of_a_record_someone_deleted_is_kept_and_told_once_per_refusal() {
    let ben = login("user20").await;
    let ben_tab = login("user20").await;
    let cleo = login("user16").await;
    let heard_there = FailedEvents::of(&ben_tab);
    // A customer of this test's own, so no other test's list changes.
    let name = format!("Short-lived {}", tag());
    let made = resolved(ben.create("customers".into(), obj(&[("name", name.into())]))).await;
    let id = text(&prop(&made, "record"), "id").unwrap();
    // Cleo deletes it; Ben, who still has it, deletes it too.
    delete_on_server(&cleo.token(), "customers", &id, 1).await;
    let err = rejected(ben.remove("customers".into(), id.clone())).await;
    assert_eq!(text(&err, "code").as_deref(), Some("not_found"));
    let failure = only_failure(&ben);
    assert_shape(&failure, "delete", "not_found");
    assert!(prop(&failure, "fields").is_null());
    assert_eq!(text(&failure, "recordId"), Some(id));
    assert_eq!(failed_count(&ben), Some(1.0));
    assert!(eventually(5_000, || heard_there.count() == 1).await);

    // A retry is refused again: one more event, still one entry.
    let mutation_id = text(&failure, "mutationId").unwrap();
    let again = rejected(ben.retry(mutation_id.clone())).await;
    assert_eq!(text(&again, "code").as_deref(), Some("not_found"));
    assert!(eventually(5_000, || heard_there.count() == 2).await);
    assert_eq!(len(&ben.failed()), 1);
    resolved(ben.discard(mutation_id)).await;
    assert!(eventually(5_000, || len(&ben_tab.failed()) == 0).await);
    assert_eq!(failed_count(&ben_tab), Some(0.0));
    assert_eq!(heard_there.count(), 2);
    ben.close();
    ben_tab.close();
    cleo.close();
}

#[wasm_bindgen_test]
async fn a_booking_left_queued_by_a_closed_tab_is_refused_when_the_leader_sends_it() {
    let bob = login("user11").await;
    let bob_tab = login("user11").await;
    let alice = login("user30").await;
    let heard_there = FailedEvents::of(&bob_tab);
    let room = format!("Room {}", tag());
    let slot = booking(
        &room,
        "Bob's visit",
        "2026-12-12T08:00:00Z",
        "2026-12-12T09:00:00Z",
    );
    bob.set_online(false);
    let queued = resolved(bob.create(EVENTS.into(), slot.clone())).await;
    assert_eq!(text(&queued, "status").as_deref(), Some("queued"));
    assert!(eventually(5_000, || len(&bob_tab.pending()) == 1).await);
    let hers = book_on_server(&alice.token(), &slot).await;
    // The tab that made it goes away; the other one sends what it left.
    bob.close();
    assert!(
        eventually(30_000, || len(&bob_tab.failed()) == 1).await,
        "the leader sent it and kept the refusal"
    );
    let failure = only_failure(&bob_tab);
    assert_shape(&failure, "create", "overlap");
    assert_eq!(overlapping_ids(&failure), [hers]);
    // The count follows the list (seen a moment behind it in Firefox).
    assert!(eventually(5_000, || failed_count(&bob_tab) == Some(1.0)).await);
    assert!(eventually(5_000, || heard_there.count() == 1).await);
    resolved(bob_tab.discard(text(&failure, "mutationId").unwrap())).await;
    assert_eq!(failed_count(&bob_tab), Some(0.0));
    bob_tab.close();
    alice.close();
}
