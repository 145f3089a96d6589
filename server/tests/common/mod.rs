//! Test harness: a real server on a loopback port over a real SQLite file in
//! a temp dir, and a small JSON client.
//!
//! With `CRM_TEST_POSTGRES=postgres://user@host:port/db` set (as
//! `scripts/test.sh`'s `server-pg` suite does), every server runs on
//! PostgreSQL instead, each test in a fresh schema of that database.
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
    /// What `--db` the server was given: a SQLite path or a PostgreSQL URL.
    pub db: PathBuf,
    server: Option<Server>,
}

/// The PostgreSQL database tests run on, if `CRM_TEST_POSTGRES` names one.
pub fn postgres_url() -> Option<String> {
    std::env::var("CRM_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A fresh, empty schema in the test database; returns the URL that makes
/// it the server's (`search_path`).
pub fn fresh_postgres_schema(base: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("t_{}_{nanos}_{n}", std::process::id());
    let sql = format!("CREATE SCHEMA {schema}");
    let admin = base.to_owned();
    // The blocking client owns a runtime: it must not run on an async thread.
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.batch_execute(&sql).unwrap();
    })
    .join()
    .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{schema}")
}

/// Runs one statement on a server's database (SQLite file or PostgreSQL
/// schema); returns the first column of the first row as an integer, if any.
/// For tests that move the clock by editing stored times.
pub fn db_sql(db: &std::path::Path, sql: &str) -> Option<i64> {
    let sql = sql.to_owned();
    let target = db.to_string_lossy().into_owned();
    if crm_sync_server::db::is_postgres_url(db) {
        return std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&target, postgres::NoTls).unwrap();
            let rows = c.query(sql.as_str(), &[]).unwrap();
            rows.first().and_then(|r| r.try_get::<_, i64>(0).ok())
        })
        .join()
        .unwrap();
    }
    let conn = rusqlite::Connection::open(target).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut stmt = conn.prepare(&sql).unwrap();
    let mut rows = stmt.query([]).unwrap();
    rows.next().unwrap().and_then(|r| r.get::<_, i64>(0).ok())
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
        let db = match postgres_url() {
            Some(base) => PathBuf::from(fresh_postgres_schema(&base)),
            None => dir.path().join("data/crm.db"),
        };
        let mut config = Config {
            port: 0,
            db,
            demo: true,
            static_dir: dir.path().join("no-static-dir"),
            sheet: dir.path().join("data/sheet.csv"),
            ..Config::default()
        };
        change(&mut config);
        let db = config.db.clone();
        let server = crm_sync_server::start(config).await.unwrap();
        let base = format!("http://{}", server.addr());
        Self {
            base,
            dir,
            client: client(),
            db,
            server: Some(server),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs one statement on this server's database; see [`db_sql`].
    pub fn sql(&self, sql: &str) -> Option<i64> {
        db_sql(&self.db, sql)
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
        wait_job_at(&self.client, &self.base, token, id, timeout).await
    }
}

/// Polls a sync job at `base` until it is finished; returns every status seen.
pub async fn wait_job_at(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    timeout: Duration,
) -> Vec<Value> {
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    loop {
        let path = format!("/api/sync/{id}");
        let r = send(client, base, Method::GET, &path, Some(token), None, &[]).await;
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

/// Opens `/api/events` with a ticket in the query, as an `EventSource`
/// must (`t` asks for the ticket).
pub async fn open_events(s: &TestServer, t: &str) -> reqwest::Response {
    let ticket = s.stream_ticket(t).await;
    let live = s
        .client
        .get(format!("{}/api/events?ticket={ticket}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    live
}

/// The next SSE frame (without its blank line), reading more of the stream
/// into `buf` as needed.
pub async fn next_frame(resp: &mut reqwest::Response, buf: &mut String) -> String {
    while !buf.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("event in time")
            .unwrap()
            .expect("stream open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let end = buf.find("\n\n").unwrap();
    let frame: String = buf.drain(..end + 2).collect();
    frame.trim_end().to_owned()
}

/// Reads SSE frames until `n` `change` events arrived; returns (id, data) pairs.
pub async fn read_events(resp: &mut reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = next_frame(resp, &mut buf).await;
        let mut id = None;
        let mut data = None;
        let mut kind = None;
        for line in frame.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = Some(serde_json::from_str(v.trim()).unwrap());
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = Some(v.trim().to_owned());
            }
        }
        if let (Some(id), Some(data)) = (id, data) {
            assert_eq!(kind.as_deref(), Some("change"));
            out.push((id, data));
        }
    }
    out
}

/// Reads until the stream ends; `false` if it is still open after `wait`.
pub async fn ends_within(resp: &mut reqwest::Response, wait: Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, resp.chunk()).await {
            Err(_) => return false,
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None) | Err(_)) => return true,
        }
    }
}

/// The real server binary, running until dropped (then killed without
/// warning, as a crash would).
pub struct Running {
    /// The child process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server binary on a free port with a 5 s sheet latency and
/// `args`; returns once it listens.
pub fn spawn_server(args: &[std::ffi::OsString]) -> Running {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crm-sync-server"));
    cmd.args(["--port", "0", "--sheet-latency-ms", "5000"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("crm-sync-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Running { child, base }
}
