//! `web::de`, the reader of JS values: what the app, the server and other
//! tabs hand over, read as the crate's types, with errors that say where.

use crm_sync::core::record::{FieldValue, Fields, Record};
use crm_sync::web::de::from_js;
use serde::Deserialize;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

fn json(text: &str) -> JsValue {
    js_sys::JSON::parse(text).expect("test JSON")
}

fn error<T: serde::de::DeserializeOwned + std::fmt::Debug>(value: JsValue) -> String {
    from_js::<T>(value)
        .expect_err("should not read")
        .to_string()
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Options {
    base_url: String,
    #[serde(default)]
    retries: Option<u32>,
    tags: Vec<String>,
}

#[wasm_bindgen_test]
fn a_record_reads_with_its_fields() {
    let record: Record = from_js(json(
        r#"{"id":"c-1","version":3,"fields":{"name":"Acme","size":12,"vip":true,"fax":null},"comments":[],"extra":"ignored"}"#,
    ))
    .unwrap();
    assert_eq!(record.id, "c-1");
    assert_eq!(record.version, 3);
    let expected: Fields = [
        ("fax", FieldValue::Null),
        ("name", FieldValue::Text("Acme".into())),
        ("size", FieldValue::Number(12.0)),
        ("vip", FieldValue::Bool(true)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(record.fields, expected);
}

#[wasm_bindgen_test]
fn missing_and_undefined_optional_fields_read_as_none() {
    let a: Options = from_js(json(r#"{"baseUrl":"/api","tags":[]}"#)).unwrap();
    assert_eq!(a.retries, None);
    let b: Options = from_js(json(r#"{"baseUrl":"/api","retries":null,"tags":["x"]}"#)).unwrap();
    assert_eq!(b.retries, None);
    assert_eq!(b.tags, ["x"]);
}

#[wasm_bindgen_test]
fn integers_must_be_safe_whole_numbers_in_range() {
    assert_eq!(
        from_js::<u64>(JsValue::from(9_007_199_254_740_991.0)).ok(),
        Some(9_007_199_254_740_991)
    );
    assert_eq!(from_js::<i64>(JsValue::from(-5.0)).ok(), Some(-5));
    for bad in [1.5, -1.0, 9_007_199_254_740_992.0, f64::NAN, f64::INFINITY] {
        assert!(
            from_js::<u64>(JsValue::from(bad)).is_err(),
            "{bad} is no u64"
        );
    }
    assert_eq!(
        error::<u64>(JsValue::from(1.5)),
        "invalid type: a number, expected u64"
    );
    assert!(error::<u8>(JsValue::from(300.0)).contains("integer `300`"));
    assert!(from_js::<u64>(JsValue::from_str("7")).is_err());
}

#[wasm_bindgen_test]
fn errors_say_where_in_the_value() {
    assert_eq!(
        error::<Options>(json(r#"{"baseUrl":"/api","retries":"x","tags":[]}"#)),
        "retries: invalid type: a string, expected u32"
    );
    assert_eq!(
        error::<Options>(json(r#"{"baseUrl":"/api","tags":["a",2]}"#)),
        "tags[1]: invalid type: a number, expected a string"
    );
    assert_eq!(
        error::<Record>(json(
            r#"{"id":"c-1","version":1,"fields":{"city":{"a":1}}}"#
        )),
        "fields.city: invalid type: an object, expected a string, number, boolean or null"
    );
    assert_eq!(
        error::<Options>(json(r#"{"tags":[]}"#)),
        "missing field `baseUrl`"
    );
    assert_eq!(
        error::<Options>(json("[1,2]")),
        "invalid type: an array, expected struct Options"
    );
    // The path is gone once the read is over: the next error has none.
    assert_eq!(
        error::<Vec<String>>(JsValue::from(1.0)),
        "invalid type: a number, expected a sequence"
    );
}

#[wasm_bindgen_test]
fn what_is_not_json_shaped_is_refused_not_guessed() {
    assert!(from_js::<Vec<u32>>(json("{}")).is_err());
    assert!(from_js::<String>(JsValue::UNDEFINED).is_err());
    assert!(from_js::<bool>(JsValue::from(1.0)).is_err());
    let set = js_sys::Set::new(&JsValue::UNDEFINED);
    assert!(from_js::<Vec<u32>>(set.into()).is_err());
}
