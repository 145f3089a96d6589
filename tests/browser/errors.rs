//! `CrmError` as JavaScript sees it.

use crm_sync::error::Error;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

use super::support::prop;

#[wasm_bindgen(module = "/tests/browser/helpers.js")]
extern "C" {
    #[wasm_bindgen(js_name = describeError)]
    fn describe_error(e: &JsValue) -> JsValue;
}

#[wasm_bindgen_test]
fn crm_error_is_a_real_error_subclass_with_a_code() {
    let err: JsValue = Error::VersionMismatch {
        key: "k".into(),
        expected: 3,
        found: 4,
    }
    .into();
    let d = describe_error(&err);
    assert_eq!(prop(&d, "isError"), JsValue::TRUE);
    assert_eq!(prop(&d, "isCrmError"), JsValue::TRUE);
    assert_eq!(prop(&d, "name").as_string().as_deref(), Some("CrmError"));
    assert_eq!(prop(&d, "hasStack"), JsValue::TRUE);
    assert_eq!(prop(&d, "thrownAndCaught"), JsValue::TRUE);
    assert_eq!(
        prop(&err, "code").as_string().as_deref(),
        Some("version_mismatch")
    );
    assert_eq!(
        prop(&d, "text").as_string().as_deref(),
        Some("CrmError: version mismatch on \"k\": expected 3, found 4")
    );
    assert_eq!(prop(&prop(&err, "details"), "found").as_f64(), Some(4.0));
    assert_eq!(
        prop(&prop(&err, "details"), "key").as_string().as_deref(),
        Some("k")
    );
    assert!(prop(&err, "status").is_undefined());
}

#[wasm_bindgen_test]
fn every_error_kind_has_its_stable_code() {
    let cases: Vec<(Error, &str)> = vec![
        (Error::Network("x".into()), "network"),
        (Error::Timeout(5), "timeout"),
        (Error::BadResponse("x".into()), "bad_response"),
        (Error::Cancelled, "cancelled"),
        (Error::Closed, "closed"),
        (Error::Quota, "quota"),
        (Error::Storage("blocked".into()), "storage"),
        (Error::SyncNotFound("s1".into()), "sync_not_found"),
        (
            Error::LockTimeout {
                name: "l".into(),
                timeout_ms: 10,
            },
            "lock_timeout",
        ),
    ];
    for (err, code) in cases {
        let js: JsValue = err.into();
        assert_eq!(prop(&js, "code").as_string().as_deref(), Some(code));
        assert_eq!(prop(&describe_error(&js), "isError"), JsValue::TRUE);
    }
}
