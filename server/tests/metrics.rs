//! The server's figures after a known sequence of requests: `GET /api/metrics`
//! as JSON, and `GET /metrics` parsed back from Prometheus' text format by a
//! strict parser of its own (so a malformed line fails the test).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{assert_error, TestServer};
use reqwest::Method;
use serde_json::json;

/// One sample line: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format 0.0.4 strictly: `# HELP` / `# TYPE`
/// comments, and samples `name{label="value",...} value`, each of a family
/// whose `# TYPE` came first. Anything else is an error.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |why: &str| Err(format!("line {}: {why}: {line:?}", n + 1));
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, tail) = (parts.next(), parts.next(), parts.next());
            match (kind, name, tail) {
                (Some("HELP"), Some(name), Some(_)) if is_name(name) => {}
                (Some("TYPE"), Some(name), Some(t))
                    if is_name(name)
                        && ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) =>
                {
                    types.insert(name.to_owned(), t.to_owned());
                }
                _ => return bad("comment is neither HELP nor TYPE"),
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| format!("line {}: no value", n + 1))?;
        let name = &line[..name_end];
        if !is_name(name) {
            return bad("metric name");
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        if !types.contains_key(family) {
            return bad("sample before its # TYPE");
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            loop {
                // label name
                let start = chars.peek().map(|(i, _)| *i).unwrap_or(after.len());
                let mut eq = None;
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        eq = Some(i);
                        break;
                    }
                }
                let Some(eq) = eq else {
                    return bad("label without =");
                };
                let label = &after[start..eq];
                if !is_name(label) || label.contains(':') {
                    return bad("label name");
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return bad("label value not quoted");
                }
                let mut value = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => return bad("bad escape"),
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\n' => return bad("newline in label value"),
                        c => value.push(c),
                    }
                }
                if !closed {
                    return bad("label value not closed");
                }
                if labels.insert(label.to_owned(), value).is_some() {
                    return bad("label twice");
                }
                match chars.next() {
                    Some((_, ',')) => {
                        if chars.peek().map(|(_, c)| *c) == Some('}') {
                            chars.next();
                            break;
                        }
                    }
                    Some((_, '}')) => break,
                    _ => return bad("expected , or }"),
                }
            }
            let used = chars.peek().map(|(i, _)| *i).unwrap_or(after.len());
            rest = &after[used..];
        }
        let Some(value_text) = rest.strip_prefix(' ') else {
            return bad("no space before the value");
        };
        let mut parts = value_text.split(' ');
        let value = match parts.next() {
            Some("+Inf") => f64::INFINITY,
            Some("-Inf") => f64::NEG_INFINITY,
            Some("NaN") => f64::NAN,
            Some(v) => v
                .parse::<f64>()
                .map_err(|e| format!("line {}: {e}", n + 1))?,
            None => return bad("no value"),
        };
        if let Some(ts) = parts.next() {
            if ts.parse::<i64>().is_err() {
                return bad("timestamp");
            }
        }
        if parts.next().is_some() {
            return bad("trailing text");
        }
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(samples)
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {labels:?} is ambiguous: {found:?}"
    );
    found.first().map(|s| s.value)
}

#[test]
fn the_strict_parser_refuses_malformed_lines() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{r=\"/x/{id}\",s=\"2,0\\\"\"} 3\n";
    let s = parse_exposition(ok).unwrap();
    assert_eq!(s[0].labels["r"], "/x/{id}");
    assert_eq!(s[0].labels["s"], "2,0\"");
    assert_eq!(s[0].value, 3.0);
    for bad in [
        "a_total 1\n",                                 // no TYPE
        "# TYPE a_total counter\na_total{r=x} 1\n",    // unquoted
        "# TYPE a_total counter\na_total{r=\"x\" 1\n", // not closed
        "# TYPE a_total counter\na_total 1 2 3\n",     // trailing
        "# TYPE a_total counter\na_total one\n",       // value
        "# TYPE a_total countr\n",                     // type
        "# TYPE a_total counter\n9a 1\n",              // name
    ] {
        assert!(parse_exposition(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_after_a_known_sequence_of_requests() {
    let s = TestServer::start().await;
    let alice = s.login("alice").await;
    let path = "/api/customers/c-0001";
    let r = s.get(path, &alice).await;
    assert_eq!(r.status, 200);
    let version = r.body["version"].as_i64().unwrap();
    let if_match = format!("\"{version}\"");
    let patch = |key: &'static str, if_match: Option<String>, city: &'static str| {
        let mut headers = vec![("idempotency-key", key.to_owned())];
        if let Some(v) = if_match {
            headers.push(("if-match", v));
        }
        let s = &s;
        let alice = &alice;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            s.send(
                Method::PATCH,
                path,
                Some(alice),
                Some(json!({ "fields": { "city": city } })),
                &headers,
            )
            .await
        }
    };
    // A commit, its replay, a conflict (the version is gone), a 428.
    let r = patch("m-1", Some(if_match.clone()), "Graz").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = patch("m-1", Some(if_match.clone()), "Graz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["idempotent-replayed"], "true");
    assert_error(&patch("m-2", Some(if_match), "Linz").await, 409, "conflict");
    assert_error(
        &patch("m-3", None, "Linz").await,
        428,
        "precondition_required",
    );
    // One sync job run to its end.
    let r = s
        .send(
            Method::POST,
            "/api/sync",
            Some(&alice),
            Some(json!({ "kind": "from-sheet" })),
            &[("idempotency-key", "sync-1")],
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let seen = s
        .wait_job(
            &alice,
            r.body["syncId"].as_str().unwrap(),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(seen.last().unwrap()["status"], "complete");
    // An event stream held open.
    let ticket = s.stream_ticket(&alice).await;
    let stream = s
        .client
        .get(format!("{}/api/events?ticket={ticket}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    let r = s.get("/api/metrics", &alice).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let m = &r.body;
    assert_eq!(m["commits"], 1);
    assert_eq!(m["conflicts"], 1);
    assert_eq!(m["conflictRate"], 0.5);
    assert_eq!(m["idempotentReplays"], 1);
    assert_eq!(m["eventStreams"], 1);
    let jobs = &m["syncJobs"];
    assert_eq!(jobs["completed"], 1);
    assert_eq!(jobs["failed"], 0);
    assert_eq!(jobs["running"], 0);
    assert_eq!(jobs["queued"], 0);
    assert!(jobs["meanDurationMs"].as_f64().unwrap() > 0.0, "{jobs}");
    let routes = m["routes"].as_array().unwrap();
    let route = |method: &str, route: &str| {
        routes
            .iter()
            .find(|r| r["method"] == method && r["route"] == route)
            .unwrap_or_else(|| panic!("{method} {route} missing: {routes:?}"))
    };
    let patches = route("PATCH", "/api/{collection}/{id}");
    assert_eq!(patches["requests"], 4);
    assert_eq!(patches["errors"], 2);
    let (p50, p95) = (
        patches["p50Ms"].as_f64().unwrap(),
        patches["p95Ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p95 >= p50, "{patches}");
    assert_eq!(route("POST", "/api/login")["requests"], 1);
    assert_eq!(route("GET", "/api/{collection}/{id}")["requests"], 1);
    assert_eq!(route("POST", "/api/sync")["requests"], 1);
    // Only routed paths are counted: nothing for an unknown API path.
    assert!(routes
        .iter()
        .all(|r| r["route"].as_str().unwrap().starts_with('/')));

    // A token is needed for the JSON, none for the scraper's text.
    let r = s.send(Method::GET, "/api/metrics", None, None, &[]).await;
    assert_error(&r, 401, "unauthorized");
    let _ = s.get("/api/no-such/x/y/z", &alice).await;
    let answer = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = answer.text().await.unwrap();
    let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let patch_route = [("method", "PATCH"), ("route", "/api/{collection}/{id}")];
    let requests = "crm_http_requests_total";
    for (status, n) in [("200", 2.0), ("409", 1.0), ("428", 1.0)] {
        let labels = [patch_route[0], patch_route[1], ("status", status)];
        assert_eq!(
            value(&samples, requests, &labels),
            Some(n),
            "{status}\n{text}"
        );
    }
    assert_eq!(
        value(
            &samples,
            requests,
            &[("route", "/api/metrics"), ("status", "401")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            requests,
            &[("route", "/api/metrics"), ("status", "200")]
        ),
        Some(1.0)
    );
    assert!(
        !samples
            .iter()
            .any(|s| s.labels.get("route").is_some_and(|r| r.contains("no-such"))),
        "{text}"
    );
    let latency = "crm_http_request_duration_seconds";
    assert_eq!(
        value(&samples, &format!("{latency}_count"), &patch_route),
        Some(4.0)
    );
    let inf = [patch_route[0], patch_route[1], ("le", "+Inf")];
    assert_eq!(
        value(&samples, &format!("{latency}_bucket"), &inf),
        Some(4.0)
    );
    assert!(value(&samples, &format!("{latency}_sum"), &patch_route).unwrap() > 0.0);
    assert_eq!(value(&samples, "crm_record_commits_total", &[]), Some(1.0));
    assert_eq!(
        value(&samples, "crm_record_conflicts_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "crm_idempotent_replays_total",
            &[("route", "/api/{collection}/{id}")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "crm_sync_jobs_finished_total",
            &[("status", "complete")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "crm_sync_job_duration_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(value(&samples, "crm_sync_jobs_running", &[]), Some(0.0));
    assert_eq!(value(&samples, "crm_event_streams_open", &[]), Some(1.0));
    drop(stream);
    s.stop().await;
}

/// Jobs waiting behind a slow one show up per user, and go back to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_per_user() {
    let s = TestServer::start_with(|c| c.sheet_latency = Duration::from_millis(600)).await;
    let bob = s.login("bob").await;
    let mut ids = Vec::new();
    for key in ["q-1", "q-2", "q-3"] {
        let r = s
            .send(
                Method::POST,
                "/api/sync",
                Some(&bob),
                Some(json!({ "kind": "from-sheet" })),
                &[("idempotency-key", key)],
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        ids.push(r.body["syncId"].as_str().unwrap().to_owned());
    }
    let r = s.get("/api/metrics", &bob).await;
    let jobs = &r.body["syncJobs"];
    assert_eq!(
        jobs["running"].as_u64().unwrap() + jobs["queued"].as_u64().unwrap(),
        3,
        "{jobs}"
    );
    assert!(
        jobs["queuedPerUser"]["bob"].as_u64().unwrap() >= 2,
        "{jobs}"
    );
    let text = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse_exposition(&text).unwrap();
    assert!(value(&samples, "crm_sync_jobs_queued", &[("user", "bob")]).unwrap() >= 2.0);
    for id in &ids {
        s.wait_job(&bob, id, Duration::from_secs(30)).await;
    }
    let text = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse_exposition(&text).unwrap();
    assert_eq!(
        value(&samples, "crm_sync_jobs_queued", &[("user", "bob")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "crm_sync_jobs_finished_total",
            &[("status", "complete")]
        ),
        Some(3.0)
    );
    s.stop().await;
}
