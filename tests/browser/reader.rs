//! `web::de`, the reader of JS values: what the app, the server and other
//! tabs hand over, read as the crate's types, with errors that say where.

use crm_sync::core::record::Comment;
use crm_sync::core::record::{FieldValue, Fields, Record};
use crm_sync::web::de::{from_js, read};
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

/// What serde's derived reading says of a record: the shape `Record`
/// had before it got its hand reader, the yardstick of the hand reader (a
/// module of its own: serde's words name the struct `Record`).
mod derived {
    use crm_sync::core::record::{Comment, Fields};
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Record {
        id: String,
        version: u64,
        #[serde(default)]
        updated_at: String,
        #[serde(default)]
        updated_by: String,
        #[serde(default)]
        fields: Fields,
        #[serde(default)]
        comments: Vec<Comment>,
    }

    impl From<Record> for crm_sync::core::record::Record {
        fn from(d: Record) -> Self {
            Self {
                id: d.id,
                version: d.version,
                updated_at: d.updated_at,
                updated_by: d.updated_by,
                fields: d.fields,
                comments: d.comments,
            }
        }
    }
}

/// The hand reader ([`read`]) and serde's derived reading of the same
/// shape `D` agree on `text`: the same value, or the same words for the
/// same mistake.
fn same<T, D>(text: &str)
where
    T: crm_sync::web::de::FromJs + serde::de::DeserializeOwned + std::fmt::Debug + PartialEq,
    D: serde::de::DeserializeOwned + Into<T>,
{
    let by_hand = read::<T>(&json(text)).map_err(|e| e.to_string());
    let by_serde = from_js::<D>(json(text))
        .map(Into::into)
        .map_err(|e| e.to_string());
    assert_eq!(by_hand, by_serde, "{text}");
    // And the serde path of `T` itself is handed the same.
    if let Ok(read) = &by_hand {
        assert_eq!(from_js::<T>(json(text)).as_ref().ok(), Some(read), "{text}");
    }
}

#[wasm_bindgen_test]
fn the_hand_reader_reads_records_as_serde_does() {
    for text in [
        r#"{"id":"c-1","version":3,"updatedAt":"2026-01-01T00:00:00Z","updatedBy":"bob","fields":{"name":"Acme","size":12,"vip":true,"fax":null,"rate":1.5},"comments":[{"id":"k","author":"bob","text":"hi","createdAt":"t"}],"extra":"ignored"}"#,
        r#"{"id":"c-1","version":1}"#,
        r#"{"id":"c-1","version":1,"fields":{}}"#,
        r#"{"id":"c-1","version":9007199254740991,"fields":{"big":1e300,"neg":-0.5}}"#,
        // Mistakes, each where serde meets it first.
        r#"{"version":1}"#,
        r#"{"id":"c-1"}"#,
        r#"{"id":7,"version":1}"#,
        r#"{"version":1.5}"#,
        r#"{"id":"c-1","version":-1}"#,
        r#"{"id":"c-1","version":1.5}"#,
        r#"{"id":"c-1","version":"1"}"#,
        r#"{"id":"c-1","version":null}"#,
        r#"{"id":"c-1","version":1,"updatedAt":null}"#,
        r#"{"id":"c-1","version":1,"updatedBy":3}"#,
        r#"{"id":"c-1","version":1,"fields":[]}"#,
        r#"{"id":"c-1","version":1,"fields":null}"#,
        r#"{"id":"c-1","version":1,"fields":{"city":{"a":1}}}"#,
        r#"{"id":"c-1","version":1,"fields":{"a":"x","tags":["a"]}}"#,
        r#"{"id":"c-1","version":1,"comments":{}}"#,
        r#"{"id":"c-1","version":1,"comments":[{"id":"k","author":"bob","text":"hi"}]}"#,
        r#"{"id":"c-1","version":1,"comments":[{"id":"k","author":"bob","text":"hi","createdAt":"t"},7]}"#,
        r#"{"id":"c-1","version":1,"comments":[{"id":"k","author":"bob","text":5,"createdAt":"t"}]}"#,
        "[1]",
        "null",
        "\"c-1\"",
        "7",
    ] {
        same::<Record, derived::Record>(text);
    }
    for text in [r#"{"a":1,"b":"x"}"#, "[]", "null", "3", r#"{"a":[1]}"#] {
        same::<Fields, Fields>(text);
    }
    for text in ["1", "-2.5", "true", "null", "\"x\"", "[]", "{}"] {
        same::<FieldValue, FieldValue>(text);
    }
    same::<Comment, Comment>(r#"{"id":"k","author":"bob","text":"hi","createdAt":"t"}"#);
    same::<Comment, Comment>(r#"{"id":"k","author":"bob","createdAt":"t"}"#);
    // Not JSON: undefined and a function.
    assert_eq!(
        read::<FieldValue>(&JsValue::UNDEFINED).ok(),
        Some(FieldValue::Null)
    );
    let f = js_sys::Function::new_no_args("");
    assert_eq!(
        read::<FieldValue>(&f).map_err(|e| e.to_string()),
        from_js::<FieldValue>(f.into()).map_err(|e| e.to_string())
    );
}

#[wasm_bindgen_test]
fn the_hand_reader_says_where_and_forgets_the_path_after() {
    assert_eq!(
        read::<Record>(&json(
            r#"{"id":"c-1","version":1,"comments":[{"id":"k","author":"bob","text":"hi","createdAt":"t"},{"id":"k"}]}"#
        ))
        .map_err(|e| e.to_string()),
        Err("comments[1]: missing field `author`".to_owned())
    );
    // A record inside a value read with serde: the path goes on into it.
    assert_eq!(
        from_js::<Vec<Record>>(json(
            r#"[{"id":"a","version":1},{"id":"b","version":1,"fields":{"x":{}}}]"#
        ))
        .map_err(|e| e.to_string()),
        Err(
            "[1].fields.x: invalid type: an object, expected a string, number, boolean or null"
                .to_owned()
        )
    );
    assert_eq!(
        read::<Vec<Comment>>(&JsValue::from(1.0)).map_err(|e| e.to_string()),
        Err("invalid type: a number, expected a sequence".to_owned())
    );
}

/// Fields skipped and defaulted: the reader names each field by its place
/// among the fields serde reads, and the places line up.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Placed {
    first: u32,
    #[serde(skip)]
    skipped: u32,
    #[serde(default)]
    third: Option<String>,
    fourth: bool,
}

#[wasm_bindgen_test]
fn struct_fields_are_told_apart_by_their_place() {
    assert_eq!(
        from_js::<Placed>(json(r#"{"fourth":true,"skipped":9,"third":"x","first":1}"#)).ok(),
        Some(Placed {
            first: 1,
            skipped: 0,
            third: Some("x".into()),
            fourth: true
        })
    );
    assert_eq!(
        error::<Placed>(json(r#"{"first":1,"fourth":2}"#)),
        "fourth: invalid type: a number, expected a boolean"
    );
    assert_eq!(
        error::<Placed>(json(r#"{"first":1}"#)),
        "missing field `fourth`"
    );
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Shape {
    Dot,
    Line,
    Many(u32),
}

/// Variants are told apart by their place too, with serde's words for a
/// name that is none of them.
#[wasm_bindgen_test]
fn enum_variants_are_told_apart_by_their_place() {
    assert_eq!(
        from_js::<Vec<Shape>>(json(r#"["dot","line",{"line":null},{"many":3}]"#)).ok(),
        Some(vec![Shape::Dot, Shape::Line, Shape::Line, Shape::Many(3)])
    );
    assert_eq!(
        error::<Vec<Shape>>(json(r#"["dot","cube"]"#)),
        "[1]: unknown variant `cube`, expected one of `dot`, `line`, `many`"
    );
    assert_eq!(
        error::<Shape>(json(r#"{"many":"x"}"#)),
        "invalid type: a string, expected u32"
    );
    // A bare name is a unit variant only, as serde reads one.
    assert_eq!(
        error::<Shape>(json(r#""many""#)),
        "invalid type: a value of another kind, expected newtype variant"
    );
    assert_eq!(
        error::<Shape>(json("7")),
        "invalid type: a number, expected enum Shape"
    );
}
