//! `GET /api/openapi.json`: served, complete (every route of the router and
//! nothing else), and the regression tests of what Schemathesis found
//! (scripts/test.sh runs it as the `fuzz` suite).

mod common;

use std::collections::BTreeSet;

use common::{assert_error, TestServer};
use crm_sync_server::router::api_routes;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `(METHOD, path)` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            ops.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    ops
}

/// A request path for a documented path template.
fn concrete(path: &str) -> String {
    path.replace("{collection}", "customers")
        .replace("{id}", "c-0001")
        .replace("{sync_id}", "no-such-job")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_without_a_token_as_openapi_3_1() {
    let s = TestServer::start().await;
    let r = s
        .send(Method::GET, "/api/openapi.json", None, None, &[])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(r.body, crm_sync_server::openapi::document());
    let schemes = &r.body["components"]["securitySchemes"]["bearer"];
    assert_eq!(schemes["type"], "http");
    assert_eq!(schemes["scheme"], "bearer");
    s.stop().await;
}

/// The router is built from `api_routes()` alone, so comparing that table
/// with the document compares the router with it.
#[test]
fn every_route_of_the_router_is_documented_and_nothing_else() {
    let doc = crm_sync_server::openapi::document();
    let routes: BTreeSet<(String, String)> = api_routes()
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(routes.len(), api_routes().len(), "a route is listed twice");
    let ops = documented(&doc);
    let missing: Vec<_> = routes.difference(&ops).collect();
    let extra: Vec<_> = ops.difference(&routes).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
}

/// The same from outside: each documented operation reaches a handler (not
/// the fallback's `404 no such API route`, not `405`), and each other method
/// on a documented path is `405`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_operations_answer_and_other_methods_are_405() {
    let s = TestServer::start().await;
    let doc = crm_sync_server::openapi::document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path == "/api/logout" || path == "/api/events" {
            // Probed without a token below: a token would be revoked or
            // open a stream that never ends.
            let r = s
                .send(
                    Method::from_bytes(if path == "/api/logout" {
                        b"POST"
                    } else {
                        b"GET"
                    })
                    .unwrap(),
                    path,
                    None,
                    None,
                    &[],
                )
                .await;
            assert_error(&r, 401, "unauthorized");
            continue;
        }
        let token = s.login("alice").await;
        for method in METHODS {
            if path == "/metrics" && method == "get" {
                // Text, not JSON: the Prometheus format (tests/metrics.rs).
                let r = s.client.get(format!("{}/metrics", s.base)).send().await;
                assert_eq!(r.unwrap().status(), StatusCode::OK);
                continue;
            }
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let r = s
                .send(m, &concrete(path), Some(&token), Some(json!({})), &[])
                .await;
            if item.get(method).is_some() {
                assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_ne!(
                    r.body["error"]["message"], "no such API route",
                    "{method} {path}"
                );
            } else {
                assert_error(&r, 405, "method_not_allowed");
            }
        }
    }
    let token = s.login("alice").await;
    for path in [
        "/api",
        "/api/customers/c-1/comments/x",
        "/api/customers/c-1/history",
    ] {
        assert_error(&s.get(path, &token).await, 404, "not_found");
    }
    s.stop().await;
}

/// What every operation can answer whatever it does: the layers' statuses.
#[test]
fn every_operation_documents_the_statuses_of_the_layers() {
    let doc = crm_sync_server::openapi::document();
    for route in api_routes() {
        let op = &doc["paths"][route.path][route.method.to_ascii_lowercase()];
        let responses = op["responses"].as_object().unwrap();
        let has = |status: &str| responses.contains_key(status);
        let name = format!("{} {}", route.method, route.path);
        assert!(has("500"), "{name}: 500");
        // The request deadline applies to all but the event stream.
        assert_eq!(has("408"), route.timed, "{name}: 408");
        let public = ["/api/login", "/api/openapi.json", "/metrics"].contains(&route.path);
        // Login answers 401 too: for bad credentials.
        let open = ["/api/openapi.json", "/metrics"].contains(&route.path);
        assert_eq!(has("401"), !open, "{name}: 401");
        assert_eq!(op["security"] == json!([{}]), public, "{name}: security");
        if op.get("requestBody").is_some() {
            for status in ["400", "413", "422"] {
                assert!(has(status), "{name}: {status}");
            }
        }
        for (status, answer) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    answer["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{name}: {status} has the error shape"
                );
            }
        }
    }
    let login = &doc["paths"]["/api/login"]["post"]["responses"]["429"];
    assert!(login["headers"]["Retry-After"].is_object());
    let get = &doc["paths"]["/api/{collection}/{id}"]["get"]["responses"]["200"];
    assert!(get["headers"]["ETag"].is_object());
    for (path, method) in [
        ("/api/{collection}/{id}", "patch"),
        ("/api/{collection}/{id}", "delete"),
    ] {
        let params = doc["paths"][path][method]["parameters"].as_array().unwrap();
        let if_match = params.iter().find(|p| p["name"] == "If-Match").unwrap();
        assert_eq!(if_match["required"], true, "{method} {path}");
        assert!(doc["paths"][path][method]["responses"]["428"].is_object());
    }
}

/// Finding: `GET /api/changes?limit=9223372036854775808` (2^63, past the
/// document's int64) was read as a `usize` and clamped to a page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_limit_past_int64_is_400() {
    let s = TestServer::start().await;
    let token = s.login("alice").await;
    let r = s
        .get("/api/changes?limit=9223372036854775808", &token)
        .await;
    assert_error(&r, 400, "invalid");
    let r = s
        .get("/api/changes?limit=9223372036854775807", &token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    s.stop().await;
}

/// Finding: `collection` allowed `sync`, `me`, ... which are other routes:
/// `GET /api/sync` is the job list, not a record list, and `POST /api/me` is
/// `405`. The document now excludes every first segment that is a route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_names_exclude_the_other_routes() {
    let doc = crm_sync_server::openapi::document();
    let schema = &doc["components"]["schemas"]["CollectionName"];
    let excluded: BTreeSet<&str> = schema["not"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let routes: BTreeSet<&str> = api_routes()
        .iter()
        .filter_map(|r| r.path.strip_prefix("/api/"))
        .map(|rest| rest.split('/').next().unwrap())
        .filter(|first| !first.starts_with('{'))
        .filter(|first| first.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert_eq!(excluded, routes);
    assert_eq!(
        crm_sync_server::wire::RESERVED_NAMES
            .iter()
            .copied()
            .collect::<BTreeSet<_>>(),
        routes
    );

    let s = TestServer::start().await;
    let token = s.login("alice").await;
    let r = s.get("/api/me", &token).await;
    assert_eq!(r.body["user"], "alice");
    let r = s.post("/api/me", &token, json!({ "fields": {} })).await;
    assert_error(&r, 405, "method_not_allowed");
    s.stop().await;
}

/// Finding: the event stream was documented as a plain string; Schemathesis
/// reads `text/event-stream` answers as events and checks each against the
/// schema. Its first event is `ready` with data `{}`.
/// Bodies the server refuses are outside the document's schemas: an empty
/// or blank comment, a change naming no field, a field name of 0 or 101
/// characters (Schemathesis, with every check, sent each of them as valid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bodies_are_outside_the_documented_schemas() {
    let doc = crm_sync_server::openapi::document();
    let schemas = &doc["components"]["schemas"];
    let text = &schemas["NewComment"]["properties"]["text"];
    assert_eq!(text["minLength"], 1);
    assert_eq!(text["pattern"], "\\S");
    assert_eq!(
        schemas["PatchRecord"]["properties"]["fields"]["$ref"],
        "#/components/schemas/ChangedFields"
    );
    assert_eq!(schemas["ChangedFields"]["minProperties"], 1);
    for map in ["Fields", "ChangedFields"] {
        let names = &schemas[map]["propertyNames"];
        assert_eq!(
            (&names["minLength"], &names["maxLength"]),
            (&json!(1), &json!(100))
        );
    }

    let s = TestServer::start().await;
    let t = s.login("alice").await;
    for text in ["", "   "] {
        let r = s
            .post(
                "/api/customers/c-0001/comments",
                &t,
                json!({ "text": text }),
            )
            .await;
        assert_error(&r, 422, "invalid");
    }
    let r = s.patch("/api/customers/c-0001", &t, 1, json!({})).await;
    assert_error(&r, 422, "invalid");
    let long = "n".repeat(101);
    for name in ["", long.as_str()] {
        let r = s
            .post("/api/deals", &t, json!({ "fields": { name: 1 } }))
            .await;
        assert_error(&r, 422, "invalid");
    }
    let r = s
        .post(
            "/api/deals",
            &t,
            json!({ "fields": { "n".repeat(100): 1 } }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_is_documented_event_by_event() {
    let doc = crm_sync_server::openapi::document();
    let content = &doc["paths"]["/api/events"]["get"]["responses"]["200"]["content"];
    assert_eq!(
        content["text/event-stream"]["schema"]["$ref"],
        "#/components/schemas/ServerEvent"
    );
    let event = &doc["components"]["schemas"]["ServerEvent"];
    assert_eq!(event["required"], json!(["event", "data"]));

    let s = TestServer::start().await;
    let token = s.login("alice").await;
    let mut resp = s
        .client
        .get(format!("{}/api/events", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = resp.chunk().await.unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: ready\ndata: {}\n"), "{text:?}");
    drop(resp);
    s.stop().await;
}

/// Not a bug, kept so it stays true: a write without `If-Match` is `428`
/// (Schemathesis's "missing required header" check is told to accept it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_if_match_is_428() {
    let s = TestServer::start().await;
    let token = s.login("alice").await;
    let r = s
        .send(
            Method::PATCH,
            "/api/customers/c-0001",
            Some(&token),
            Some(json!({ "fields": { "name": "x" } })),
            &[],
        )
        .await;
    assert_error(&r, 428, "precondition_required");
    let r = s
        .send(
            Method::DELETE,
            "/api/customers/c-0001",
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_error(&r, 428, "precondition_required");
    s.stop().await;
}

/// Finding: `GET /api/changes?limit=` (empty) was read as "no limit given"
/// and served a page; the document says `limit` is an integer, and
/// `GET /api/{collection}?limit=` already refused the same with `422`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_limit_empty_is_400() {
    let s = TestServer::start().await;
    let token = s.login("alice").await;
    assert_error(&s.get("/api/changes?limit=", &token).await, 400, "invalid");
    assert_error(
        &s.get("/api/changes?limit=&since=", &token).await,
        400,
        "invalid",
    );
    // An empty `since` is still "from the start", as documented.
    let r = s.get("/api/changes?since=&limit=5", &token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    s.stop().await;
}

/// `server/openapi.json` is the document as committed, for readers without a
/// running server and for the crate's own check of its parsers against the
/// examples (`tests/openapi_examples.rs`, which cannot depend on the
/// server). `OPENAPI_UPDATE=1 cargo test -p crm-sync-server --test openapi`
/// rewrites it.
#[test]
fn the_committed_copy_of_the_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let text = serde_json::to_string_pretty(&crm_sync_server::openapi::document()).unwrap() + "\n";
    if std::env::var_os("OPENAPI_UPDATE").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "server/openapi.json is out of date: run OPENAPI_UPDATE=1 cargo test -p crm-sync-server --test openapi"
    );
}
