//! `GET /api/{collection}?limit=N&after=<id>`: keyset pages in id order,
//! and the first page's feed cursor, so that a client that reads every page
//! and then the changes feed from that cursor misses no write made during
//! the load. Real HTTP, real SQLite.

mod common;

use std::collections::BTreeMap;

use common::{assert_error, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

/// Reads every page of `customers` with `limit`, calling `between` after
/// each page (to write meanwhile); returns the records by id, the first
/// page's cursor, and how many pages there were.
async fn load_in_pages(
    s: &TestServer,
    token: &str,
    limit: usize,
    mut between: impl FnMut(usize) -> Option<(Method, String, Option<Value>, Vec<(String, String)>)>,
) -> (BTreeMap<String, Value>, String, usize) {
    let mut after: Option<String> = None;
    let mut records = BTreeMap::new();
    let mut first_cursor = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/api/customers?limit={limit}&after={a}"),
            None => format!("/api/customers?limit={limit}"),
        };
        let r = s.get(&path, token).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        for item in items {
            let id = item["id"].as_str().unwrap().to_owned();
            if let Some(a) = &after {
                assert!(&id > a, "keyset order: {id} after {a}");
            }
            records.insert(id, item.clone());
        }
        first_cursor.get_or_insert_with(|| r.body["cursor"].as_str().unwrap().to_owned());
        pages += 1;
        if let Some((method, path, body, headers)) = between(pages) {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let w = s.send(method, &path, Some(token), body, &headers).await;
            assert!(w.status.is_success(), "{path}: {} {}", w.status, w.body);
        }
        match r.body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => {
                assert!(r.body["next"].is_null());
                break;
            }
        }
    }
    (records, first_cursor.unwrap(), pages)
}

/// Applies the changes feed from `cursor` to `records`, as a client does.
async fn follow_feed(
    s: &TestServer,
    token: &str,
    cursor: &str,
    records: &mut BTreeMap<String, Value>,
) {
    let mut cursor = cursor.to_owned();
    loop {
        let r = s
            .get(&format!("/api/changes?since={cursor}&limit=500"), token)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        for change in r.body["changes"].as_array().unwrap() {
            if change["collection"] != "customers" {
                continue;
            }
            let id = change["id"].as_str().unwrap().to_owned();
            if change["op"] == "delete" {
                records.remove(&id);
            } else {
                // The feed's record, or the current one where a backend
                // sends none.
                let record = if change["record"].is_object() {
                    change["record"].clone()
                } else {
                    s.get(&format!("/api/customers/{id}"), token).await.body
                };
                let newer = records
                    .get(&id)
                    .is_none_or(|known| known["version"].as_i64() <= record["version"].as_i64());
                if newer {
                    records.insert(id, record);
                }
            }
        }
        cursor = r.body["cursor"].as_str().unwrap().to_owned();
        if r.body["more"] != true {
            break;
        }
    }
}

/// The server's whole collection, without paging.
async fn everything(s: &TestServer, token: &str) -> BTreeMap<String, Value> {
    let r = s.get("/api/customers", token).await;
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["id"].as_str().unwrap().to_owned(), item.clone()))
        .collect()
}

fn key() -> (String, String) {
    ("Idempotency-Key".into(), uuid())
}

fn uuid() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    nanos ^ (u128::from(std::process::id()) << 64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_cover_the_collection_once_in_id_order() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let (records, _, pages) = load_in_pages(&s, &t, 30, |_| None).await;
    assert_eq!(records, everything(&s, &t).await);
    assert_eq!(pages, 200usize.div_ceil(30));
    // Without `limit` the route answers as before: everything, no `next`.
    let whole = s.get("/api/customers", &t).await;
    assert_eq!(whole.body["items"].as_array().unwrap().len(), 200);
    assert!(whole.body.get("next").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_page_already_read_shows_up_through_the_feed() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let (first, _, _) = load_in_pages(&s, &t, 50, |_| None).await;
    let target = first.keys().next().unwrap().clone();
    let version = first[&target]["version"].as_i64().unwrap();
    let path = format!("/api/customers/{target}");
    let (mut records, cursor, _) = load_in_pages(&s, &t, 50, |page| {
        (page == 2).then(|| {
            (
                Method::PATCH,
                path.clone(),
                Some(json!({ "fields": { "city": "Changed mid-load" } })),
                vec![key(), ("If-Match".into(), format!("\"{version}\""))],
            )
        })
    })
    .await;
    assert_ne!(records[&target]["fields"]["city"], "Changed mid-load");
    follow_feed(&s, &t, &cursor, &mut records).await;
    assert_eq!(records[&target]["fields"]["city"], "Changed mid-load");
    assert_eq!(records, everything(&s, &t).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_created_during_the_load_shows_up_through_the_feed() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    // "c-0000a" sorts before every demo id: into a page already read.
    let (mut records, cursor, _) = load_in_pages(&s, &t, 50, |page| {
        (page == 1).then(|| {
            (
                Method::POST,
                "/api/customers".to_owned(),
                Some(json!({ "id": "c-0000a", "fields": { "name": "Made mid-load" } })),
                vec![key()],
            )
        })
    })
    .await;
    assert!(!records.contains_key("c-0000a"));
    follow_feed(&s, &t, &cursor, &mut records).await;
    assert_eq!(records["c-0000a"]["fields"]["name"], "Made mid-load");
    assert_eq!(records, everything(&s, &t).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_deleted_during_the_load_is_gone_after_the_feed() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let whole = everything(&s, &t).await;
    // The last id: on a page not yet read when it goes... and one already read.
    let late = whole.keys().last().unwrap().clone();
    let early = whole.keys().next().unwrap().clone();
    let deletes = [early.clone(), late.clone()].map(|id| {
        (
            format!("/api/customers/{id}"),
            whole[&id]["version"].as_i64().unwrap(),
        )
    });
    let (mut records, cursor, _) = load_in_pages(&s, &t, 50, |page| {
        deletes.get(page - 1).map(|(path, version)| {
            (
                Method::DELETE,
                path.clone(),
                None,
                vec![key(), ("If-Match".into(), format!("\"{version}\""))],
            )
        })
    })
    .await;
    assert!(records.contains_key(&early), "read before its delete");
    assert!(!records.contains_key(&late), "deleted before its page");
    follow_feed(&s, &t, &cursor, &mut records).await;
    assert!(!records.contains_key(&early));
    assert_eq!(records, everything(&s, &t).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_limits_and_positions_are_422_never_500() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let long = "x".repeat(1_000);
    for query in [
        "limit=0",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "limit=99999999999999999999",
        "limit=100001",
        "limit=",
        "limit=10&after=",
        &format!("limit=10&after={long}"),
    ] {
        let r = s.get(&format!("/api/customers?{query}"), &t).await;
        assert_error(&r, 422, "invalid");
    }
    // A position past the end is an empty last page.
    let r = s.get("/api/customers?limit=10&after=zzzz", &t).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"], json!([]));
    assert!(r.body["next"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_without_limit_is_a_page_of_the_default_size() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let r = s.get("/api/customers?after=c-0001", &t).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let items = r.body["items"].as_array().unwrap();
    // 200 demo customers, fewer than a default page: the rest in one page.
    assert_eq!(items.len(), 199);
    assert_eq!(items[0]["id"], "c-0002");
    assert!(r.body["next"].is_null());
}
