//! `findOverlaps` as JavaScript calls it.

use crm_sync::api::calendar::find_overlaps_js;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::prop;

#[wasm_bindgen(module = "/tests/browser/helpers.js")]
extern "C" {
    fn events() -> js_sys::Array;
    fn candidate(start: &str, end: &str) -> JsValue;
}

fn ids(found: &js_sys::Array) -> Vec<String> {
    found
        .iter()
        .map(|e| prop(&e, "id").as_string().unwrap())
        .collect()
}

#[wasm_bindgen_test]
fn overlaps_are_half_open_per_resource_and_skip_cancelled() {
    let all = events();
    let found = find_overlaps_js(
        all.clone(),
        candidate("2026-11-23T09:30:00Z", "2026-11-23T10:30:00Z"),
    )
    .unwrap();
    assert_eq!(ids(&found), ["a", "b", "e"]);
    // The very objects passed in come back.
    assert!(js_sys::Object::is(&found.get(0), &all.get(0)));
    let touching = find_overlaps_js(
        all,
        candidate("2026-11-23T11:00:00Z", "2026-11-23T12:00:00Z"),
    )
    .unwrap();
    assert_eq!(ids(&touching), Vec::<String>::new());
}

#[wasm_bindgen_test]
fn a_bad_candidate_is_an_invalid_crm_error() {
    let err =
        find_overlaps_js(events(), candidate("yesterday", "2026-11-23T12:00:00Z")).unwrap_err();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("invalid"));
    let err = find_overlaps_js(events(), JsValue::from(7)).unwrap_err();
    assert_eq!(prop(&err, "code").as_string().as_deref(), Some("invalid"));
}
