//! The module's own types against the backend contract: every example of the
//! OpenAPI document (`server/openapi.json`, the committed copy of the
//! reference server's `GET /api/openapi.json`, kept current by a server test)
//! goes through the parsers the module uses on the wire, and comes back out
//! unchanged where the module writes the same shape. Also: every enum value of
//! the document that the module switches on is one it knows.
//!
//! Native only (`cargo test --workspace --exclude crm-sync-server`).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use crm_sync::core::code::ErrorCode;
use crm_sync::core::history::{FieldChange, HistoryEntry};
use crm_sync::core::progress::{
    ServerSyncStatus, SyncConflictRow, SyncKind, SyncPhase, SyncSheetConflict, SyncStats,
};
use crm_sync::core::record::{Comment, Record};
use serde_json::Value;

fn document() -> Value {
    serde_json::from_str(include_str!("../server/openapi.json")).unwrap()
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "no schema {name}");
    s
}

fn example<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let e = &schema(doc, name)["example"];
    assert!(!e.is_null(), "schema {name} has no example");
    e
}

/// Numbers as f64, so `42` and `42.0` compare equal (the module keeps
/// field numbers as f64, as JavaScript does).
fn normal(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(normal).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), normal(v))).collect()),
        other => other.clone(),
    }
}

/// Parses `value` as a [`Record`] and writes it back: nothing may be lost.
fn record(value: &Value) -> Record {
    let r: Record = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("not a Record ({e}): {value}"));
    assert_eq!(normal(&serde_json::to_value(&r).unwrap()), normal(value));
    r
}

/// Parses `value` as a [`ServerSyncStatus`] and checks what the reducer reads.
fn sync_status(value: &Value) -> ServerSyncStatus {
    let s: ServerSyncStatus = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("not a sync status ({e}): {value}"));
    assert_eq!(s.sync_id.as_deref(), value["syncId"].as_str());
    let status = s.status.clone().unwrap();
    serde_json::from_value::<SyncPhase>(Value::String(status.clone()))
        .unwrap_or_else(|e| panic!("status {status:?} is no SyncPhase: {e}"));
    if let Some(kind) = &s.kind {
        serde_json::from_value::<SyncKind>(Value::String(kind.clone())).unwrap();
    }
    if let Some(stats) = &value.get("stats") {
        let parsed = s.stats.unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), **stats);
    }
    if let Some(rows) = value.get("conflictRows") {
        let parsed = s.conflict_rows.clone().unwrap();
        assert_eq!(normal(&serde_json::to_value(parsed).unwrap()), normal(rows));
    }
    s
}

/// Parses `value` as `T` and writes it back: nothing may be lost.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(value: &Value) {
    let parsed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("not parsed ({e}): {value}"));
    assert_eq!(
        normal(&serde_json::to_value(&parsed).unwrap()),
        normal(value)
    );
}

/// Every schema that has an example, checked by the parser the module uses
/// for that shape. A new example makes this fail until it is given one.
#[test]
fn every_example_goes_through_the_modules_parsers() {
    let doc = document();
    let mut checked = BTreeSet::new();
    let mut check = |name: &'static str, f: &dyn Fn(&Value)| {
        f(example(&doc, name));
        checked.insert(name);
    };

    check("Record", &|e| {
        let r = record(e);
        assert!(r.version >= 1);
        assert!(!r.comments.is_empty(), "the example shows a comment");
    });
    check("Comment", &|e| {
        let c: Comment = serde_json::from_value(e.clone()).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), *e);
    });
    check("RecordList", &|e| {
        for item in e["items"].as_array().unwrap() {
            record(item);
        }
        assert!(e["cursor"].is_string());
        assert!(e["next"].is_null() || e["next"].is_string());
    });
    check("Change", &|e| {
        if let Some(r) = e.get("record") {
            let r = record(r);
            assert_eq!(r.id, e["id"].as_str().unwrap());
            assert_eq!(r.version, e["version"].as_u64().unwrap());
        }
        assert!(["put", "delete"].contains(&e["op"].as_str().unwrap()));
    });
    check("Feed", &|e| {
        for change in e["changes"].as_array().unwrap() {
            if let Some(r) = change.get("record") {
                record(r);
            }
        }
        assert!(e["more"].is_boolean());
    });
    check("ServerEvent", &|e| {
        // The module reads a `change` event's data as a feed entry.
        let data: Value = serde_json::from_str(e["data"].as_str().unwrap()).unwrap();
        assert!(data["collection"].is_string() && data["id"].is_string());
    });
    check("SyncJobStatus", &|e| {
        sync_status(e);
    });
    check("HistoryEntry", &|e| {
        round_trip::<HistoryEntry>(e);
        assert!(e["changes"].as_object().is_some_and(|c| !c.is_empty()));
    });
    check("FieldChange", &|e| round_trip::<FieldChange>(e));
    check("ConflictRow", &|e| round_trip::<SyncConflictRow>(e));
    check("SheetConflict", &|e| round_trip::<SyncSheetConflict>(e));
    check("SyncStarted", &|e| {
        let s = sync_status(e);
        assert_eq!(s.status.as_deref(), Some("queued"));
    });
    check("StartSync", &|e| {
        serde_json::from_value::<SyncKind>(e["kind"].clone()).unwrap();
    });
    check("ErrorBody", &|e| {
        let code = e["error"]["code"].as_str().unwrap();
        assert!(ErrorCode::parse(code).is_some(), "{code}");
        assert!(e["error"]["message"].is_string());
        assert!(e["error"]["details"].is_object());
    });
    // Requests the module sends, and answers it reads as plain JSON.
    check("CreateRecord", &|e| {
        assert!(e["fields"].is_object());
    });
    check("PatchRecord", &|e| {
        assert!(e["fields"].is_object());
    });
    check("NewComment", &|e| {
        assert!(e["text"].is_string());
    });
    check("LoginRequest", &|e| {
        assert!(e["username"].is_string() && e["password"].is_string());
    });
    check("LoginAnswer", &|e| {
        assert!(e["token"].is_string() && e["user"].is_string());
    });
    check("MeAnswer", &|e| {
        assert!(e["user"].is_string());
    });
    check("StreamTicket", &|e| {
        assert!(e["ticket"].is_string() && e["expiresAt"].is_string());
    });
    // Presence: what `src/web/presence.rs` sends (`entries`) and reads
    // (`read_people`, `people_input`: a person is a `user` and `since`
    // text, `editing` a text or null; anything else is ignored whole).
    fn person(p: &Value) {
        assert!(p["user"].is_string() && p["since"].is_string(), "{p}");
        assert!(p["editing"].is_null() || p["editing"].is_string(), "{p}");
    }
    fn people(list: &Value) {
        list.as_array()
            .expect("people is a list")
            .iter()
            .for_each(person);
    }
    check("Person", &person);
    check("PeopleAnswer", &|e| people(&e["people"]));
    check("PresenceEvent", &|e| {
        assert!(e["collection"].is_string() && e["id"].is_string());
        people(&e["people"]);
    });
    check("PresenceSet", &|e| {
        for entry in e["entries"].as_array().expect("entries is a list") {
            assert!(entry["collection"].is_string() && entry["id"].is_string());
            assert!(entry["editing"].is_null() || entry["editing"].is_string());
        }
    });

    let with_examples: BTreeSet<&str> = doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| s.get("example").is_some())
        .map(|(name, _)| name.as_str())
        .collect();
    let unchecked: Vec<_> = with_examples.difference(&checked).collect();
    assert!(
        unchecked.is_empty(),
        "examples no parser checks: {unchecked:?}"
    );
}

/// The enums of the document the module switches on are enums it knows.
#[test]
fn the_documents_enums_are_the_modules() {
    let doc = document();
    let values = |name: &str| -> Vec<String> {
        schema(&doc, name)["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is no enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    for status in values("SyncStatus") {
        serde_json::from_value::<SyncPhase>(Value::String(status.clone()))
            .unwrap_or_else(|e| panic!("sync status {status:?}: {e}"));
    }
    for kind in values("SyncKind") {
        serde_json::from_value::<SyncKind>(Value::String(kind.clone()))
            .unwrap_or_else(|e| panic!("sync kind {kind:?}: {e}"));
    }
    // Error codes: the module has a `CrmError` code of its own for some; the
    // others it reads by their HTTP status. Each of those is named here, so
    // that a new code in the server is a decision, not an accident.
    let by_status = [
        "method_not_allowed",
        "too_large",
        "idempotency_mismatch",
        "precondition_required",
        "cursor_expired",
        "too_many_requests",
        "too_many_jobs",
        "internal",
    ];
    for code in values("ErrorCode") {
        let known = ErrorCode::parse(&code).is_some();
        let mapped = by_status.contains(&code.as_str());
        assert!(
            known != mapped,
            "error code {code:?}: known to the module {known}, read by status {mapped}"
        );
    }
    // Stats: every counter of the document is one the module keeps.
    let stats = schema(&doc, "SyncStats")["properties"].as_object().unwrap();
    let ours = serde_json::to_value(SyncStats::default()).unwrap();
    let ours: BTreeSet<&String> = ours.as_object().unwrap().keys().collect();
    let theirs: BTreeSet<&String> = stats.keys().collect();
    assert_eq!(ours, theirs);
}
