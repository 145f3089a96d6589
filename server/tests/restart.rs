//! A killed server comes back on the same database file with every committed
//! record, and ends the jobs it lost as `error` once their lease runs out. Runs the real
//! binary, killed without warning.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{client, login, send, spawn_server, wait_job_at, Running};
use reqwest::Method;
use serde_json::json;

fn spawn(dir: &Path, demo: bool) -> Running {
    let mut args: Vec<std::ffi::OsString> = vec!["--db".into(), dir.join("data/crm.db").into()];
    args.extend(["--sheet".into(), dir.join("data/sheet.csv").into()]);
    args.extend(["--static".into(), dir.join("www").into()]);
    if demo {
        args.push("--demo".into());
    }
    spawn_server(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_restarts_with_records_and_without_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let first = spawn(dir.path(), true);
    let t = login(&c, &first.base, "alice").await;
    let mut created = Vec::new();
    for i in 0..20 {
        let r = send(
            &c,
            &first.base,
            Method::POST,
            "/api/leads",
            Some(&t),
            Some(json!({"id": format!("l-{i:02}"), "fields": {"n": i}})),
            &[],
        )
        .await;
        assert_eq!(r.status, 201);
        created.push(r.body);
    }
    let r = send(
        &c,
        &first.base,
        Method::PATCH,
        "/api/customers/c-0001",
        Some(&t),
        Some(json!({"fields":{"city":"Kept"}})),
        &[("if-match", "1"), ("idempotency-key", "before-crash")],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(
        &c,
        &first.base,
        Method::POST,
        "/api/customers/c-0001/comments",
        Some(&t),
        Some(json!({"id":"k1","text":"kept"})),
        &[],
    )
    .await;
    assert_eq!(r.status, 201);
    let cursor = send(
        &c,
        &first.base,
        Method::GET,
        "/api/leads",
        Some(&t),
        None,
        &[],
    )
    .await
    .body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = send(
        &c,
        &first.base,
        Method::POST,
        "/api/sync",
        Some(&t),
        Some(json!({"kind":"from-sheet"})),
        &[],
    )
    .await;
    assert_eq!(job.status, 202);
    let job_id = job.body["syncId"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(first); // SIGKILL mid-job

    let second = spawn(dir.path(), false);
    // Tokens are in the database, so the session survives the restart.
    // The job's lease runs out with the server that held it: it ends as
    // `error` within a minute, never `running` forever.
    let seen = wait_job_at(&c, &second.base, &t, &job_id, Duration::from_secs(60)).await;
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "error", "{seen:?}");
    assert!(
        last["error"].as_str().unwrap().contains("stopped"),
        "{last}"
    );
    let leads = send(
        &c,
        &second.base,
        Method::GET,
        "/api/leads",
        Some(&t),
        None,
        &[],
    )
    .await
    .body;
    assert_eq!(leads["items"].as_array().unwrap(), &created);
    let c1 = send(
        &c,
        &second.base,
        Method::GET,
        "/api/customers/c-0001",
        Some(&t),
        None,
        &[],
    )
    .await
    .body;
    assert_eq!(c1["version"], 2);
    assert_eq!(c1["fields"]["city"], "Kept");
    assert_eq!(c1["comments"][0]["text"], "kept");
    let all = send(
        &c,
        &second.base,
        Method::GET,
        "/api/customers",
        Some(&t),
        None,
        &[],
    )
    .await
    .body;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        200,
        "the killed import had saved nothing yet"
    );
    // Cursors and idempotency answers survive too.
    let feed = send(
        &c,
        &second.base,
        Method::GET,
        &format!("/api/changes?since={cursor}"),
        Some(&t),
        None,
        &[],
    )
    .await;
    assert_eq!(feed.status, 200);
    let replay = send(
        &c,
        &second.base,
        Method::PATCH,
        "/api/customers/c-0001",
        Some(&t),
        Some(json!({"fields":{"city":"Kept"}})),
        &[("if-match", "1"), ("idempotency-key", "before-crash")],
    )
    .await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body["version"], 2);
    // Users persist without --demo, and new logins work.
    login(&c, &second.base, "bob").await;
    drop(second);

    // A third start with --demo again seeds nothing twice.
    let third = spawn(dir.path(), true);
    let t3 = login(&c, &third.base, "alice").await;
    let all = send(
        &c,
        &third.base,
        Method::GET,
        "/api/customers",
        Some(&t3),
        None,
        &[],
    )
    .await
    .body;
    assert_eq!(all["items"].as_array().unwrap().len(), 200);
    let c1 = send(
        &c,
        &third.base,
        Method::GET,
        "/api/customers/c-0001",
        Some(&t3),
        None,
        &[],
    )
    .await
    .body;
    assert_eq!(c1["version"], 2);
}
