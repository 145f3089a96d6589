//! `Debouncer` as JavaScript sees it: real timers, real promises.

use std::cell::RefCell;
use std::rc::Rc;

use crm_sync::api::Debouncer;
use crm_sync::web::clock::sleep;
use js_sys::{Array, Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::prop;

/// A function for the debouncer that records every argument it is called
/// with and answers `"ran " + arg`.
fn recorder() -> (Function, Rc<RefCell<Vec<JsValue>>>) {
    let calls: Rc<RefCell<Vec<JsValue>>> = Rc::default();
    let seen = Rc::clone(&calls);
    let f = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |arg: JsValue| {
        seen.borrow_mut().push(arg.clone());
        JsValue::from(format!("ran {}", arg.as_string().unwrap_or_default()))
    });
    (f.into_js_value().unchecked_into(), calls)
}

fn options(json: &str) -> JsValue {
    Function::new_no_args(&format!("return {json};"))
        .call0(&JsValue::UNDEFINED)
        .unwrap()
}

async fn all(promises: &[Promise]) -> Result<Vec<JsValue>, JsValue> {
    let array: Array = promises.iter().collect();
    let out = JsFuture::from(Promise::all(&array)).await?;
    Ok(out.unchecked_into::<Array>().to_vec())
}

#[wasm_bindgen_test]
async fn calls_within_the_wait_become_one_call_with_the_last_argument() {
    let (f, calls) = recorder();
    let d = Debouncer::new(f.into(), options("{ waitMs: 40 }")).unwrap();
    let promises: Vec<Promise> = (0..5).map(|i| d.call(format!("v{i}").into())).collect();
    assert_eq!(d.pending(), 5);
    assert!(calls.borrow().is_empty(), "nothing runs before the wait");
    let results = all(&promises).await.unwrap();
    assert_eq!(calls.borrow().len(), 1);
    assert_eq!(calls.borrow()[0].as_string().as_deref(), Some("v4"));
    for r in results {
        assert_eq!(r.as_string().as_deref(), Some("ran v4"));
    }
    assert_eq!(d.pending(), 0);
    // A later call is a batch of its own.
    let again = JsFuture::from(d.call("w".into())).await.unwrap();
    assert_eq!(again.as_string().as_deref(), Some("ran w"));
    assert_eq!(calls.borrow().len(), 2);
}

#[wasm_bindgen_test]
async fn every_caller_gets_the_failure_of_its_batch() {
    let throws = Function::new_with_args("x", "throw new TypeError('bad ' + x)");
    let d = Debouncer::new(throws.into(), options("{ waitMs: 10 }")).unwrap();
    let (a, b) = (d.call("1".into()), d.call("2".into()));
    for p in [a, b] {
        let err = JsFuture::from(p).await.unwrap_err();
        assert_eq!(prop(&err, "message").as_string().as_deref(), Some("bad 2"));
    }
    // A promise the function returns is followed, rejection included.
    let rejects = Function::new_with_args("x", "return Promise.reject(new Error('no ' + x))");
    let d = Debouncer::new(rejects.into(), JsValue::UNDEFINED).unwrap();
    let err = JsFuture::from(d.call("y".into())).await.unwrap_err();
    assert_eq!(prop(&err, "message").as_string().as_deref(), Some("no y"));
}

#[wasm_bindgen_test]
async fn leading_runs_the_first_call_at_once_and_batches_the_rest() {
    let (f, calls) = recorder();
    let d = Debouncer::new(f.into(), options("{ waitMs: 50, leading: true }")).unwrap();
    let first = d.call("a".into());
    assert_eq!(
        calls.borrow().len(),
        1,
        "the leading call runs synchronously"
    );
    let rest: Vec<Promise> = ["b", "c"].iter().map(|v| d.call((*v).into())).collect();
    assert_eq!(d.pending(), 2);
    let first = JsFuture::from(first).await.unwrap();
    assert_eq!(first.as_string().as_deref(), Some("ran a"));
    let rest = all(&rest).await.unwrap();
    assert_eq!(rest[0].as_string().as_deref(), Some("ran c"));
    let args: Vec<String> = calls
        .borrow()
        .iter()
        .filter_map(JsValue::as_string)
        .collect();
    assert_eq!(args, ["a", "c"]);
}

#[wasm_bindgen_test]
async fn max_wait_bounds_the_delay_while_calls_keep_coming() {
    let (f, calls) = recorder();
    let d = Debouncer::new(f.into(), options("{ waitMs: 60, maxWaitMs: 150 }")).unwrap();
    let mut promises = Vec::new();
    // A call every 20 ms for 400 ms: without maxWaitMs nothing would run
    // until the calls stop.
    for i in 0..20 {
        promises.push(d.call(format!("v{i}").into()));
        sleep(20).await;
    }
    let during = calls.borrow().len();
    assert!(during >= 1, "maxWaitMs let a batch run while calls came");
    all(&promises).await.unwrap();
    assert!(
        calls.borrow().len() > during,
        "the last calls ran afterwards"
    );
    assert_eq!(
        calls.borrow().last().unwrap().as_string().as_deref(),
        Some("v19")
    );
}

#[wasm_bindgen_test]
async fn flush_runs_now_and_cancel_rejects_with_cancelled() {
    let (f, calls) = recorder();
    let d = Debouncer::new(f.into(), options("{ waitMs: 10000 }")).unwrap();
    let p = d.call("now".into());
    d.flush();
    assert_eq!(calls.borrow().len(), 1);
    let out = JsFuture::from(p).await.unwrap();
    assert_eq!(out.as_string().as_deref(), Some("ran now"));

    let (a, b) = (d.call("x".into()), d.call("y".into()));
    d.cancel();
    assert_eq!(d.pending(), 0);
    for p in [a, b] {
        let err = JsFuture::from(p).await.unwrap_err();
        assert_eq!(prop(&err, "code").as_string().as_deref(), Some("cancelled"));
    }
    // Freeing it cancels what waits, and its timer never fires.
    let waiting = d.call("z".into());
    drop(d);
    let err = JsFuture::from(waiting).await.unwrap_err();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("cancelled"));
    assert_eq!(calls.borrow().len(), 1);
}

#[wasm_bindgen_test]
fn bad_arguments_throw_invalid() {
    let (f, _) = recorder();
    for bad in [
        "{ waitMs: -1 }",
        "{ waitMs: 1.5 }",
        "{ waitMs: '100' }",
        "{ waitMs: 100, maxWaitMs: 50 }",
        "{ leading: 'yes' }",
        "42",
    ] {
        let err = Debouncer::new(f.clone().into(), options(bad))
            .err()
            .unwrap_or_else(|| panic!("accepted {bad}"));
        assert_eq!(
            prop(&err, "code").as_string().as_deref(),
            Some("invalid"),
            "{bad}"
        );
    }
    let err = Debouncer::new("not a function".into(), JsValue::UNDEFINED)
        .err()
        .unwrap();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("invalid"));
}
