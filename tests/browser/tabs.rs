//! `TabLocks` on both paths. Each instance opens its own channel object, so
//! several instances on one page behave like several tabs (a channel object
//! hears every other object of its name, never itself).

use std::rc::Rc;

use crm_sync::api::TabLocks;
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use wasm_bindgen_test::wasm_bindgen_test;

use crm_sync::web::clock::sleep;

use super::support::prop;

#[wasm_bindgen(module = "/tests/browser/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = criticalSection)]
    fn critical_section(counter: &Object) -> Function;
    #[wasm_bindgen(js_name = postRaw)]
    fn post_raw(channel_name: &str, messages: &Array);
    #[wasm_bindgen(js_name = malformedMessages)]
    fn malformed_messages() -> Array;
    #[wasm_bindgen(js_name = pageTransition)]
    fn page_transition(kind: &str, persisted: bool);
    fn throwing() -> Function;
    fn rejecting() -> Function;
    fn returning(value: &JsValue) -> Function;
}

const WEB: &str = "web-locks";
const BROADCAST: &str = "broadcast";

/// A channel name no other test (or earlier run in this browser) uses:
/// Web Locks are origin-wide and outlive a test.
fn unique(what: &str) -> String {
    format!("test-{what}-{}", crm_sync::web::clock::uuid_v4())
}

fn object(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o
}

fn open(channel: &str, mode: &str) -> TabLocks {
    TabLocks::new(channel.to_owned(), Some(object(&[("mode", mode.into())])))
        .unwrap_or_else(|e| panic!("new TabLocks: {e:?}"))
}

fn open_many(channel: &str, mode: &str, n: usize) -> Vec<TabLocks> {
    (0..n).map(|_| open(channel, mode)).collect()
}

fn timeout(ms: u32) -> Option<Object> {
    Some(object(&[("timeoutMs", ms.into())]))
}

async fn acquire(tabs: &TabLocks, name: &str, opts: Option<Object>) -> Result<JsValue, JsValue> {
    JsFuture::from(tabs.acquire(name.to_owned(), opts)).await
}

fn release(guard: &JsValue) {
    let f: Function = prop(guard, "release").dyn_into().unwrap();
    f.call0(guard).unwrap();
}

fn now() -> f64 {
    js_sys::Date::now()
}

/// Waits until `done()` holds, failing after `limit_ms`.
async fn eventually(limit_ms: u32, what: &str, done: impl Fn() -> bool) {
    let start = now();
    while !done() {
        assert!(
            now() - start < f64::from(limit_ms),
            "not within {limit_ms} ms: {what}"
        );
        sleep(20).await;
    }
}

fn close_all(all: &[TabLocks]) {
    for t in all {
        t.close();
    }
}

async fn counter_reaches_200(mode: &str) {
    let channel = unique("counter");
    let all: Vec<Rc<TabLocks>> = open_many(&channel, mode, 4)
        .into_iter()
        .map(Rc::new)
        .collect();
    let counter = object(&[("value", 0.into())]);
    let section = critical_section(&counter);
    let runs = Array::new();
    for tabs in &all {
        let tabs = Rc::clone(tabs);
        let section = section.clone();
        // Each instance does its 50 one after another, like a tab would; the
        // four instances run at once.
        runs.push(&future_to_promise(async move {
            for _ in 0..50 {
                JsFuture::from(tabs.with_lock("counter".into(), section.clone(), timeout(30_000)))
                    .await?;
            }
            Ok(JsValue::UNDEFINED)
        }));
    }
    JsFuture::from(Promise::all(&runs)).await.unwrap();
    assert_eq!(prop(&counter, "value").as_f64(), Some(200.0), "mode {mode}");
    for t in &all {
        t.close();
    }
}

#[wasm_bindgen_test]
async fn tabs_web_locks_counter_reaches_200() {
    counter_reaches_200(WEB).await;
}

#[wasm_bindgen_test]
async fn tabs_broadcast_counter_reaches_200() {
    counter_reaches_200(BROADCAST).await;
}

async fn timeout_rejects_with_lock_timeout(mode: &str) {
    let channel = unique("timeout");
    let all = open_many(&channel, mode, 2);
    let held = acquire(&all[0], "x", None).await.unwrap();
    let start = now();
    let err = acquire(&all[1], "x", timeout(300)).await.unwrap_err();
    let waited = now() - start;
    assert_eq!(
        prop(&err, "code").as_string().as_deref(),
        Some("lock_timeout"),
        "mode {mode}"
    );
    assert!(err.is_instance_of::<js_sys::Error>(), "a real Error");
    assert!(
        waited >= 250.0,
        "gave up after {waited} ms, before the timeout"
    );
    assert!(waited < 3_000.0, "gave up after {waited} ms");
    // The holder is unaffected, and the lock is free for the other after.
    release(&held);
    assert_eq!(prop(&held, "released"), JsValue::TRUE);
    release(&held); // idempotent
    let again = acquire(&all[1], "x", timeout(5_000)).await.unwrap();
    release(&again);
    close_all(&all);
}

#[wasm_bindgen_test]
async fn tabs_web_locks_timeout_is_lock_timeout() {
    timeout_rejects_with_lock_timeout(WEB).await;
}

#[wasm_bindgen_test]
async fn tabs_broadcast_timeout_is_lock_timeout() {
    timeout_rejects_with_lock_timeout(BROADCAST).await;
}

async fn waiters_are_served_in_order(mode: &str) {
    let channel = unique("fifo");
    let all: Vec<Rc<TabLocks>> = open_many(&channel, mode, 4)
        .into_iter()
        .map(Rc::new)
        .collect();
    let holder = acquire(&all[0], "fifo", None).await.unwrap();
    let order = Array::new();
    let waits = Array::new();
    for (i, tabs) in all.iter().enumerate().skip(1) {
        let tabs = Rc::clone(tabs);
        let order = order.clone();
        waits.push(&future_to_promise(async move {
            let guard = acquire(&tabs, "fifo", timeout(20_000)).await?;
            order.push(&JsValue::from(i as u32));
            // Held a moment, so a wrong grant would overlap and show.
            sleep(30).await;
            release(&guard);
            Ok(JsValue::UNDEFINED)
        }));
        // Let each request reach the others before the next is made: the
        // order is the order in which the requests were made known.
        sleep(100).await;
    }
    release(&holder);
    JsFuture::from(Promise::all(&waits)).await.unwrap();
    let got: Vec<u32> = order
        .iter()
        .filter_map(|v| v.as_f64())
        .map(|v| v as u32)
        .collect();
    assert_eq!(got, vec![1, 2, 3], "mode {mode}");
    for t in &all {
        t.close();
    }
}

#[wasm_bindgen_test]
async fn tabs_web_locks_waiters_fifo() {
    waiters_are_served_in_order(WEB).await;
}

#[wasm_bindgen_test]
async fn tabs_broadcast_waiters_fifo() {
    waiters_are_served_in_order(BROADCAST).await;
}

fn leaders(all: &[TabLocks]) -> Vec<usize> {
    all.iter()
        .enumerate()
        .filter(|(_, t)| t.is_leader())
        .map(|(i, _)| i)
        .collect()
}

async fn one_leader_and_a_new_one_after_close(mode: &str, handover_ms: u32) {
    let channel = unique("leader");
    let all = open_many(&channel, mode, 3);
    let changes = Array::new();
    let mut unsubscribe = Vec::new();
    let mut callbacks = Vec::new();
    for (i, t) in all.iter().enumerate() {
        let changes = changes.clone();
        let cb = Closure::<dyn Fn(bool)>::new(move |leader: bool| {
            changes.push(&Array::of2(
                &JsValue::from(i as u32),
                &JsValue::from(leader),
            ));
        });
        unsubscribe.push(t.on_leader_change(cb.as_ref().unchecked_ref::<Function>().clone()));
        callbacks.push(cb);
    }
    eventually(5_000, "a leader", || !leaders(&all).is_empty()).await;
    // Give a second leader time to appear, were the protocol wrong.
    sleep(1_000).await;
    let first = leaders(&all);
    assert_eq!(first.len(), 1, "mode {mode}: leaders {first:?}");
    let first = first[0];
    let start = now();
    all[first].close();
    let rest: Vec<&TabLocks> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, t)| t)
        .collect();
    eventually(handover_ms, "a new leader", || {
        rest.iter().any(|t| t.is_leader())
    })
    .await;
    let took = now() - start;
    sleep(500).await;
    let now_leading: Vec<usize> = leaders(&all);
    assert_eq!(
        now_leading.len(),
        1,
        "mode {mode}: leaders {now_leading:?} after close"
    );
    assert_ne!(now_leading[0], first);
    web_sys::console::log_1(&format!("{mode}: new leader after {took} ms").into());
    // Gain and loss were both reported.
    let told: Vec<(u32, bool)> = changes
        .iter()
        .map(|c| {
            let c: Array = c.unchecked_into();
            (
                c.get(0).as_f64().unwrap_or(-1.0) as u32,
                c.get(1) == JsValue::TRUE,
            )
        })
        .collect();
    assert!(
        told.contains(&(first as u32, false)),
        "mode {mode}: {told:?}"
    );
    assert!(
        told.contains(&(now_leading[0] as u32, true)),
        "mode {mode}: {told:?}"
    );
    // Unsubscribed listeners hear nothing more.
    for u in &unsubscribe {
        let f: &Function = u.unchecked_ref();
        f.call0(&JsValue::UNDEFINED).unwrap();
    }
    let before = changes.length();
    close_all(&all);
    sleep(50).await;
    assert_eq!(
        changes.length(),
        before,
        "mode {mode}: told after unsubscribing"
    );
    drop(callbacks);
}

#[wasm_bindgen_test]
async fn tabs_web_locks_one_leader_then_a_new_one() {
    one_leader_and_a_new_one_after_close(WEB, 1_000).await;
}

#[wasm_bindgen_test]
async fn tabs_broadcast_one_leader_then_a_new_one() {
    one_leader_and_a_new_one_after_close(BROADCAST, 5_000).await;
}

async fn crashed_holder_loses_the_lock(mode: &str, at_least_ms: f64, at_most_ms: f64) {
    let channel = unique("crash");
    let all = open_many(&channel, mode, 2);
    let _held = acquire(&all[0], "job", None).await.unwrap();
    // Let the waiter hear of the holder before it vanishes.
    sleep(100).await;
    let start = now();
    all[0].simulate_crash();
    let guard = acquire(&all[1], "job", timeout(15_000)).await.unwrap();
    let took = now() - start;
    web_sys::console::log_1(&format!("{mode}: lock of a crashed tab taken after {took} ms").into());
    assert!(
        took >= at_least_ms,
        "mode {mode}: taken after {took} ms, before the lease ran out"
    );
    assert!(took <= at_most_ms, "mode {mode}: taken after {took} ms");
    release(&guard);
    close_all(&all);
}

#[wasm_bindgen_test]
async fn tabs_web_locks_crashed_holder_loses_the_lock() {
    // The browser releases a dead tab's locks at once.
    crashed_holder_loses_the_lock(WEB, 0.0, 1_000.0).await;
}

#[wasm_bindgen_test]
async fn tabs_broadcast_crashed_holder_loses_the_lock_after_the_lease() {
    // Nobody hears a release: the lock goes once the lease (about 3 s) runs
    // out without a heartbeat.
    crashed_holder_loses_the_lock(BROADCAST, 1_500.0, 8_000.0).await;
}

#[wasm_bindgen_test]
async fn tabs_broadcast_malformed_messages_are_ignored_and_counted() {
    let channel = unique("malformed");
    let all = open_many(&channel, BROADCAST, 2);
    sleep(100).await;
    let before: Vec<u32> = all.iter().map(TabLocks::ignored_messages).collect();
    let junk = malformed_messages();
    post_raw(&channel, &junk);
    eventually(2_000, "all counted", || {
        all.iter()
            .zip(&before)
            .all(|(t, b)| t.ignored_messages() >= b + junk.length())
    })
    .await;
    // Still working: a lock goes round, a leader exists.
    let g = acquire(&all[1], "after-junk", timeout(5_000))
        .await
        .unwrap();
    release(&g);
    eventually(5_000, "one leader", || leaders(&all).len() == 1).await;
    close_all(&all);
}

#[wasm_bindgen_test]
async fn tabs_web_locks_ignore_no_messages() {
    let t = open(&unique("nochannel"), WEB);
    assert_eq!(t.ignored_messages(), 0);
    assert_eq!(t.mode(), "web-locks");
    t.close();
}

async fn with_lock_releases_on_throw_and_returns_the_value(mode: &str) {
    let channel = unique("withlock");
    let all = open_many(&channel, mode, 2);
    let err = JsFuture::from(all[0].with_lock("w".into(), throwing(), None))
        .await
        .unwrap_err();
    assert_eq!(prop(&err, "message").as_string().as_deref(), Some("boom"));
    let err = JsFuture::from(all[1].with_lock("w".into(), rejecting(), None))
        .await
        .unwrap_err();
    assert_eq!(
        prop(&err, "message").as_string().as_deref(),
        Some("async boom")
    );
    let value =
        JsFuture::from(all[0].with_lock("w".into(), returning(&"ok".into()), timeout(5_000)))
            .await
            .unwrap();
    assert_eq!(value.as_string().as_deref(), Some("ok"));
    // Released after all of that: the other instance gets it at once.
    let g = acquire(&all[1], "w", timeout(5_000)).await.unwrap();
    release(&g);
    close_all(&all);
}

#[wasm_bindgen_test]
async fn tabs_web_locks_with_lock_releases_on_throw() {
    with_lock_releases_on_throw_and_returns_the_value(WEB).await;
}

#[wasm_bindgen_test]
async fn tabs_broadcast_with_lock_releases_on_throw() {
    with_lock_releases_on_throw_and_returns_the_value(BROADCAST).await;
}

async fn close_releases_guards_and_rejects_waiters(mode: &str) {
    let channel = unique("close");
    let all = open_many(&channel, mode, 2);
    let held = acquire(&all[0], "c", None).await.unwrap();
    let waiting = all[0].acquire("c".into(), None);
    let elsewhere = all[1].acquire("c".into(), timeout(10_000));
    sleep(50).await;
    all[0].close();
    assert_eq!(prop(&held, "released"), JsValue::TRUE, "mode {mode}");
    let err = JsFuture::from(waiting).await.unwrap_err();
    assert_eq!(
        prop(&err, "code").as_string().as_deref(),
        Some("closed"),
        "mode {mode}"
    );
    let g = JsFuture::from(elsewhere).await.unwrap();
    release(&g);
    let err = acquire(&all[0], "c", None).await.unwrap_err();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("closed"));
    assert!(!all[0].is_leader());
    close_all(&all);
}

#[wasm_bindgen_test]
async fn tabs_web_locks_close_releases_guards() {
    close_releases_guards_and_rejects_waiters(WEB).await;
}

#[wasm_bindgen_test]
async fn tabs_broadcast_close_releases_guards() {
    close_releases_guards_and_rejects_waiters(BROADCAST).await;
}

#[wasm_bindgen_test]
fn tabs_bad_options_are_invalid() {
    let err = TabLocks::new(
        "c".into(),
        Some(object(&[("mode", "carrier-pigeon".into())])),
    )
    .err()
    .unwrap();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("invalid"));
    let err = TabLocks::new(String::new(), None).err().unwrap();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("invalid"));
    let a = TabLocks::new(unique("ids"), None).unwrap();
    let b = TabLocks::new(unique("ids"), None).unwrap();
    assert_ne!(a.tab_id(), b.tab_id());
    assert_eq!(a.mode(), "web-locks", "auto picks Web Locks in Chromium");
    a.close();
    b.close();
}

#[wasm_bindgen_test]
async fn tabs_broadcast_crashed_leader_is_replaced_after_the_lease() {
    let channel = unique("leadercrash");
    let all = open_many(&channel, BROADCAST, 3);
    eventually(5_000, "a leader", || leaders(&all).len() == 1).await;
    let first = leaders(&all)[0];
    let start = now();
    all[first].simulate_crash();
    let rest: Vec<&TabLocks> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, t)| t)
        .collect();
    eventually(6_000, "a new leader", || rest.iter().any(|t| t.is_leader())).await;
    let took = now() - start;
    web_sys::console::log_1(&format!("broadcast: new leader {took} ms after a crash").into());
    assert!(
        took >= 1_500.0,
        "a new leader after {took} ms, before the lease ran out"
    );
    sleep(500).await;
    assert_eq!(rest.iter().filter(|t| t.is_leader()).count(), 1);
    close_all(&all);
}

/// `pagehide` releases locks and leadership and cancels waiters; `pageshow`
/// from the back/forward cache competes again. The events are dispatched
/// by hand, so every live instance on the page hears them.
async fn pagehide_releases_and_pageshow_competes_again(mode: &str) {
    let channel = unique("lifecycle");
    let all = open_many(&channel, mode, 2);
    eventually(5_000, "a leader", || leaders(&all).len() == 1).await;
    let held = acquire(&all[0], "p", None).await.unwrap();
    let waiting = all[1].acquire("p".into(), None);
    sleep(50).await;

    page_transition("pagehide", true);
    assert_eq!(prop(&held, "released"), JsValue::TRUE, "mode {mode}");
    let err = JsFuture::from(waiting).await.unwrap_err();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("cancelled"));
    assert!(
        leaders(&all).is_empty(),
        "mode {mode}: a leader while hidden"
    );
    let err = acquire(&all[0], "p", None).await.unwrap_err();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("cancelled"));

    page_transition("pageshow", true);
    eventually(5_000, "a leader again", || leaders(&all).len() == 1).await;
    let again = acquire(&all[1], "p", timeout(5_000)).await.unwrap();
    release(&again);
    close_all(&all);
}

#[wasm_bindgen_test]
async fn tabs_web_locks_pagehide_releases_and_pageshow_competes_again() {
    pagehide_releases_and_pageshow_competes_again(WEB).await;
}

#[wasm_bindgen_test]
async fn tabs_broadcast_pagehide_releases_and_pageshow_competes_again() {
    pagehide_releases_and_pageshow_competes_again(BROADCAST).await;
}

/// Two tabs that know each other (each stands for leadership) ask for free
/// locks: in turns, each turn's lock is granted to the one asking (the
/// other answers its request; no settle wait needed); then both at once,
/// round after round: each round one of them holds the lock, then the
/// other, never both. Asserts order and exclusion only (the bench measures
/// the time: `lockBroadcastPair`).
async fn free_lock_beside_another_tab(mode: &str) {
    let channel = unique("free");
    let all: Vec<Rc<TabLocks>> = open_many(&channel, mode, 2)
        .into_iter()
        .map(Rc::new)
        .collect();
    // Past the join wait, with each other's standing entry heard.
    eventually(10_000, "one leader", || {
        all.iter().filter(|t| t.is_leader()).count() == 1
    })
    .await;

    let order = Array::new();
    for turn in 0..6u32 {
        let i = (turn % 2) as usize;
        let guard = acquire(&all[i], "turns", timeout(20_000)).await.unwrap();
        order.push(&JsValue::from(i as u32));
        release(&guard);
    }
    let got: Vec<u32> = order
        .iter()
        .filter_map(|v| v.as_f64())
        .map(|v| v as u32)
        .collect();
    assert_eq!(got, vec![0, 1, 0, 1, 0, 1], "mode {mode}");

    // Both at once: a log of "i+" when granted and "i-" when released.
    let log = Array::new();
    for _ in 0..5 {
        let runs = Array::new();
        for (i, tabs) in all.iter().enumerate() {
            let tabs = Rc::clone(tabs);
            let log = log.clone();
            runs.push(&future_to_promise(async move {
                let guard = acquire(&tabs, "both", timeout(20_000)).await?;
                log.push(&JsValue::from(format!("{i}+")));
                // Held a moment, so that a second grant would overlap.
                sleep(20).await;
                log.push(&JsValue::from(format!("{i}-")));
                release(&guard);
                Ok(JsValue::UNDEFINED)
            }));
        }
        JsFuture::from(Promise::all(&runs)).await.unwrap();
    }
    let log: Vec<String> = log.iter().filter_map(|v| v.as_string()).collect();
    assert_eq!(log.len(), 20, "mode {mode}: {log:?}");
    for (n, pair) in log.chunks(2).enumerate() {
        let tab = &pair[0][..1];
        assert_eq!(
            pair,
            [format!("{tab}+"), format!("{tab}-")],
            "mode {mode}: {log:?}"
        );
        // Within a round, one tab, then the other.
        if n % 2 == 1 {
            assert_ne!(&log[2 * n - 2][..1], tab, "mode {mode}: {log:?}");
        }
    }
    for t in &all {
        t.close();
    }
}

#[wasm_bindgen_test]
async fn tabs_web_locks_free_lock_beside_another_tab() {
    free_lock_beside_another_tab(WEB).await;
}

#[wasm_bindgen_test]
async fn tabs_broadcast_free_lock_beside_another_tab() {
    free_lock_beside_another_tab(BROADCAST).await;
}
