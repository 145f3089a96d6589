//! Test harness: a real server on a loopback port over a real SQLite file in
//! a temp dir, and a small JSON client.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use crm_sync_server::{Config, Server};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// One server of one test.
pub struct TestServer {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    server: Option<Server>,
}

/// An answer: status, headers and the JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestServer {
    /// A demo server (users, 200 customers, sheet), no sheet latency.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A demo server with changed settings.
    pub async fn start_with(change: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            port: 0,
            db: dir.path().join("data/crm.db"),
            demo: true,
            static_dir: dir.path().join("no-static-dir"),
            sheet: dir.path().join("data/sheet.csv"),
            ..Config::default()
        };
        change(&mut config);
        let server = crm_sync_server::start(config).await.unwrap();
        let base = format!("http://{}", server.addr());
        Self {
            base,
            dir,
            client: client(),
            server: Some(server),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// A single-use ticket that opens `/api/events?ticket=...` for `token`'s
    /// session, as a browser asks for one.
    pub async fn stream_ticket(&self, token: &str) -> String {
        let r = self
            .send(Method::POST, "/api/events/ticket", Some(token), None, &[])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["ticket"].as_str().unwrap().to_owned()
    }

    pub async fn login(&self, user: &str) -> String {
        login(&self.client, &self.base, user).await
    }

    /// Any request: `token` as bearer, optional JSON body, extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        send(&self.client, &self.base, method, path, token, body, headers).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, version: i64, fields: Value) -> Reply {
        let etag = format!("\"{version}\"");
        self.send(
            Method::PATCH,
            path,
            Some(token),
            Some(json!({ "fields": fields })),
            &[("if-match", &etag)],
        )
        .await
    }

    /// Polls a sync job until it is finished; returns every status seen.
    pub async fn wait_job(&self, token: &str, id: &str, timeout: Duration) -> Vec<Value> {
        let start = std::time::Instant::now();
        let mut seen = Vec::new();
        loop {
            let r = self.get(&format!("/api/sync/{id}"), token).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let status = r.body["status"].as_str().unwrap().to_owned();
            seen.push(r.body);
            if ["complete", "error", "cancelled"].contains(&status.as_str()) {
                return seen;
            }
            assert!(
                start.elapsed() < timeout,
                "job {id} did not finish: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub async fn login(client: &reqwest::Client, base: &str, user: &str) -> String {
    let r = send(
        client,
        base,
        Method::POST,
        "/api/login",
        None,
        Some(json!({ "username": user, "password": "demo" })),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "login {user}: {:?}", r.body);
    r.body["token"].as_str().unwrap().to_owned()
}

pub async fn send(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Asserts the docs/backend/protocol.md error shape and returns the code.
pub fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{:?}", r.body);
    let e = &r.body["error"];
    assert_eq!(e["code"], code, "{:?}", r.body);
    assert!(e["message"].is_string(), "{:?}", r.body);
    assert!(e["details"].is_object(), "{:?}", r.body);
}
