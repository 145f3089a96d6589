//! `web::ser`, the writer of JS values: what the app, IndexedDB and other
//! tabs are handed has the shape JSON gives the same value (plain objects,
//! `null` for nothing, variants by name), as `serde_wasm_bindgen`'s
//! JSON-compatible serializer wrote it before.

use std::collections::BTreeMap;

use crm_sync::core::engine::ClientCounters;
use crm_sync::core::progress::SyncState;
use crm_sync::core::record::{Comment, FieldValue, Record};
use crm_sync::web::ser::to_js;
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

fn stringify(value: &JsValue) -> String {
    js_sys::JSON::stringify(value)
        .expect("stringify")
        .as_string()
        .expect("a string")
}

/// `value` written by the writer and by serde_json, both as JS prints them
/// (so `1.0` and `1` and the order of integer-like keys do not differ).
fn both<T: Serialize>(value: &T) -> (String, String) {
    let written = stringify(&to_js(value).expect("writes"));
    let json = serde_json::to_string(value).expect("JSON");
    let parsed = js_sys::JSON::parse(&json).expect("parses");
    (written, stringify(&parsed))
}

fn same_as_json<T: Serialize>(value: &T) {
    let (written, json) = both(value);
    assert_eq!(written, json);
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Inner {
    text_value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<u32>,
    kept_none: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Kind {
    Plain,
    Wrapped(u32),
    Pair(u32, String),
    Shaped { some_field: bool },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Tagged {
    One { n: u32 },
    Two,
}

#[derive(Serialize)]
struct Extra {
    more: i64,
}

#[derive(Serialize)]
struct Flat {
    id: String,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Every {
    inner: Inner,
    kinds: Vec<Kind>,
    tagged: Vec<Tagged>,
    flat: Flat,
    map: BTreeMap<String, f64>,
    tuple: (u8, char, f32),
    unit: (),
    unit_struct: Unit,
    negative: i64,
    largest: u64,
    nothing: Option<String>,
    bytes: serde_bytes_like::Bytes,
}

/// Bytes as serde's `serialize_bytes` hands them over.
mod serde_bytes_like {
    pub struct Bytes(pub Vec<u8>);

    impl serde::Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }
}

#[wasm_bindgen_test]
fn every_serde_form_is_written_as_json_writes_it() {
    same_as_json(&Every {
        inner: Inner {
            text_value: "é ✓".into(),
            skipped: None,
            kept_none: None,
        },
        kinds: vec![
            Kind::Plain,
            Kind::Wrapped(7),
            Kind::Pair(1, "x".into()),
            Kind::Shaped { some_field: true },
        ],
        tagged: vec![Tagged::One { n: 3 }, Tagged::Two],
        flat: Flat {
            id: "f".into(),
            extra: Extra { more: -4 },
        },
        map: [("b".to_owned(), 2.5), ("a".to_owned(), 1.0)]
            .into_iter()
            .collect(),
        tuple: (255, 'ß', 0.5),
        unit: (),
        unit_struct: Unit,
        negative: -9_007_199_254_740_991,
        largest: 9_007_199_254_740_991,
        nothing: None,
        bytes: serde_bytes_like::Bytes(vec![0, 1, 255]),
    });
}

#[wasm_bindgen_test]
fn nothing_is_null_and_objects_are_plain() {
    let value = to_js(&Inner {
        text_value: String::new(),
        skipped: None,
        kept_none: None,
    })
    .unwrap();
    assert!(js_sys::Reflect::get(&value, &"keptNone".into())
        .unwrap()
        .is_null());
    assert!(!js_sys::Reflect::has(&value, &"skipped".into()).unwrap());
    let map: BTreeMap<String, u32> = [("k".to_owned(), 1)].into_iter().collect();
    let map = to_js(&map).unwrap();
    assert!(!map.is_instance_of::<js_sys::Map>());
    assert_eq!(
        js_sys::Object::get_prototype_of(&map),
        js_sys::Object::get_prototype_of(&js_sys::Object::new())
    );
}

#[wasm_bindgen_test]
fn the_crates_values_are_written_as_json_writes_them() {
    let record = Record {
        id: "c-1".into(),
        version: 3,
        updated_at: "2026-12-07T10:00:00Z".into(),
        updated_by: "alice".into(),
        fields: [
            ("fax", FieldValue::Null),
            ("name", FieldValue::Text("Acme".into())),
            ("size", FieldValue::Number(12.0)),
            ("vip", FieldValue::Bool(true)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        comments: vec![Comment {
            id: "k-1".into(),
            text: "called".into(),
            author: "bob".into(),
            created_at: "2026-12-07T10:01:00Z".into(),
        }],
    };
    same_as_json(&record);
    same_as_json(&SyncState::default());
    same_as_json(&ClientCounters::default());
}

#[wasm_bindgen_test]
fn what_json_cannot_hold_is_refused() {
    assert!(to_js(&9_007_199_254_740_992_u64).is_err());
    assert!(to_js(&i64::MIN).is_err());
    let map: BTreeMap<u32, u32> = [(1, 2)].into_iter().collect();
    assert!(to_js(&map).is_err());
}
