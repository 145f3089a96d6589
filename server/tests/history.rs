//! A record's change history (`GET /api/{collection}/{id}/history`) for
//! every write path: create, PATCH, delete, and rows a sheet sync applied;
//! and the conflicting rows a sheet sync run lists.

mod common;

use std::time::Duration;

use common::{assert_error, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

async fn history(s: &TestServer, token: &str, path: &str) -> Vec<Value> {
    let r = s.get(&format!("{path}/history"), token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

fn versions(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_patch_and_delete_are_recorded_newest_first() {
    let s = TestServer::start().await;
    let alice = s.login("alice").await;
    let bob = s.login("bob").await;
    let created = s
        .post(
            "/api/deals",
            &alice,
            json!({"id":"d-1","fields":{"title":"Big one","amount":100,"stage":"new"}}),
        )
        .await;
    assert_eq!(created.status, 201);
    let items = history(&s, &bob, "/api/deals/d-1").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["version"], 1);
    assert_eq!(items[0]["by"], "alice");
    assert_eq!(items[0]["op"], "create");
    assert_eq!(items[0]["at"], created.body["updatedAt"]);
    assert!(items[0].get("syncId").is_none(), "{}", items[0]);
    assert_eq!(
        items[0]["changes"],
        json!({
            "amount": {"from": null, "to": 100},
            "stage": {"from": null, "to": "new"},
            "title": {"from": null, "to": "Big one"},
        })
    );

    // A PATCH records only what it changed; a field set to null is cleared.
    let key = [("idempotency-key", "patch-once"), ("if-match", "\"1\"")];
    let body = json!({"fields":{"amount":250,"stage":null,"title":"Big one"}});
    let patched = s
        .send(
            Method::PATCH,
            "/api/deals/d-1",
            Some(&bob),
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    // The same request again is a replay: no second entry.
    let replayed = s
        .send(
            Method::PATCH,
            "/api/deals/d-1",
            Some(&bob),
            Some(body),
            &key,
        )
        .await;
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    let items = history(&s, &alice, "/api/deals/d-1").await;
    assert_eq!(versions(&items), [2, 1]);
    assert_eq!(items[0]["by"], "bob");
    assert_eq!(items[0]["op"], "update");
    assert_eq!(items[0]["at"], patched.body["updatedAt"]);
    assert_eq!(
        items[0]["changes"],
        json!({
            "amount": {"from": 100, "to": 250},
            "stage": {"from": "new", "to": null},
        })
    );

    // Comments are in the record, not in the history.
    let c = s
        .post(
            "/api/deals/d-1/comments",
            &alice,
            json!({"id":"k1","text":"hi"}),
        )
        .await;
    assert_eq!(c.status, 201);
    assert_eq!(
        versions(&history(&s, &alice, "/api/deals/d-1").await),
        [2, 1]
    );

    // A deletion clears every field; the deleted record keeps its history.
    let deleted = s
        .send(
            Method::DELETE,
            "/api/deals/d-1",
            Some(&alice),
            None,
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_error(&s.get("/api/deals/d-1", &alice).await, 404, "not_found");
    let items = history(&s, &bob, "/api/deals/d-1").await;
    assert_eq!(versions(&items), [3, 2, 1]);
    assert_eq!(items[0]["op"], "delete");
    assert_eq!(items[0]["by"], "alice");
    assert_eq!(
        items[0]["changes"],
        json!({
            "amount": {"from": 250, "to": null},
            "title": {"from": "Big one", "to": null},
        })
    );

    // Brought back: a create one version above the tombstone.
    let again = s
        .post(
            "/api/deals",
            &bob,
            json!({"id":"d-1","fields":{"title":"Again"}}),
        )
        .await;
    assert_eq!(again.body["version"], 4);
    let r = s.get("/api/deals/d-1/history?limit=2", &bob).await;
    assert_eq!(r.status, 200);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(versions(items), [4, 3]);
    assert_eq!(items[0]["op"], "create");
    assert_eq!(
        items[0]["changes"],
        json!({"title": {"from": null, "to": "Again"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_records_are_404_and_bad_limits_422() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    assert_error(
        &s.get("/api/customers/nope/history", &t).await,
        404,
        "not_found",
    );
    assert_error(
        &s.get("/api/Bad-Name/c-0001/history", &t).await,
        404,
        "not_found",
    );
    for limit in ["0", "-1", "abc", "1001", "", "+5", "2.5"] {
        let r = s
            .get(&format!("/api/customers/c-0001/history?limit={limit}"), &t)
            .await;
        assert_error(&r, 422, "invalid");
    }
    let r = s
        .send(
            Method::GET,
            "/api/customers/c-0001/history",
            None,
            None,
            &[],
        )
        .await;
    assert_error(&r, 401, "unauthorized");
    // The demo's seed is the first entry of every seeded record.
    let items = history(&s, &t, "/api/customers/c-0001").await;
    assert_eq!(versions(&items), [1]);
    assert_eq!(items[0]["by"], "demo");
    let r = s.get("/api/customers/c-0001/history?limit=1000", &t).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheet_sync_rows_are_recorded_as_the_runs_user_with_its_id() {
    let s = TestServer::start().await;
    let alice = s.login("alice").await;
    let bob = s.login("bob").await;
    // Bob changes c-0010 first: the sheet's row for it is then a conflict.
    let before = s.get("/api/customers/c-0010", &bob).await.body;
    assert_eq!(
        s.patch("/api/customers/c-0010", &bob, 1, json!({"phone":"bob's"}))
            .await
            .status,
        200
    );
    let c20 = s.get("/api/customers/c-0020", &alice).await.body;
    let r = s
        .post("/api/sync", &alice, json!({"kind":"from-sheet"}))
        .await;
    assert_eq!(r.status, 202);
    let sync_id = r.body["syncId"].as_str().unwrap().to_owned();
    let done = s.wait_job(&alice, &sync_id, Duration::from_secs(30)).await;
    let last = done.last().unwrap();
    assert_eq!(last["status"], "complete", "{last}");

    // An updated row: alice's sync, with its id, and what changed.
    let c20_after = s.get("/api/customers/c-0020", &alice).await.body;
    assert_eq!(c20_after["version"], 2);
    let items = history(&s, &bob, "/api/customers/c-0020").await;
    assert_eq!(versions(&items), [2, 1]);
    assert_eq!(items[0]["by"], "alice");
    assert_eq!(items[0]["syncId"], sync_id.as_str());
    assert_eq!(items[0]["op"], "update");
    let changes = items[0]["changes"].as_object().unwrap();
    assert!(!changes.is_empty());
    for (field, change) in changes {
        assert_eq!(change["from"], c20["fields"][field], "{field}");
        assert_eq!(change["to"], c20_after["fields"][field], "{field}");
    }
    // An inserted row: a create by the sync.
    let inserted = s
        .get("/api/customers?limit=1&after=c-0200", &alice)
        .await
        .body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let items = history(&s, &alice, &format!("/api/customers/{inserted}")).await;
    assert_eq!(versions(&items), [1]);
    assert_eq!(items[0]["op"], "create");
    assert_eq!(items[0]["syncId"], sync_id.as_str());

    // The conflicting row was not applied, so no entry; the run lists it.
    let items = history(&s, &alice, "/api/customers/c-0010").await;
    assert_eq!(versions(&items), [2, 1]);
    assert_eq!(items[0]["by"], "bob");
    assert_eq!(
        items[0]["changes"],
        json!({"phone": {"from": before["fields"]["phone"], "to": "bob's"}})
    );
    assert_eq!(last["stats"]["conflicts"], 1);
    let rows = last["conflictRows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], "c-0010");
    assert_eq!(rows[0]["reason"], "changed");
    assert_eq!(rows[0]["version"], 2);
    assert_eq!(rows[0]["updatedBy"], "bob");
    assert!(rows[0]["line"].as_u64().unwrap() > 1);
    assert!(rows[0]["message"].as_str().unwrap().contains("bob"));
    // The same list in the user's sync history.
    let list = s.get("/api/sync", &alice).await.body;
    assert_eq!(list["items"][0]["syncId"], sync_id.as_str());
    assert_eq!(list["items"][0]["conflictRows"], last["conflictRows"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_record_is_a_deleted_conflict_for_the_sheet() {
    let s = TestServer::start().await;
    let t = s.login("bob").await;
    let r = s
        .send(
            Method::DELETE,
            "/api/customers/c-0003",
            Some(&t),
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status, 204);
    let r = s.post("/api/sync", &t, json!({"kind":"from-sheet"})).await;
    let id = r.body["syncId"].as_str().unwrap().to_owned();
    let done = s.wait_job(&t, &id, Duration::from_secs(30)).await;
    let rows = done.last().unwrap()["conflictRows"].clone();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "c-0003")
        .unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(row["reason"], "deleted");
    assert_eq!(row["updatedBy"], "bob");
}
