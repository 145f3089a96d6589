//! Two server instances on one PostgreSQL database, as behind a load
//! balancer (docs/backend/postgres.md): what must hold across instances holds.
//!
//! These need PostgreSQL (`CRM_TEST_POSTGRES`, which `scripts/test.sh`'s
//! `server-pg` suite sets, running them with `--include-ignored`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::{ends_within, next_frame, open_events, read_events, TestServer};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

/// Two demo servers sharing one fresh schema.
async fn two_instances() -> (TestServer, TestServer) {
    assert!(
        common::postgres_url().is_some(),
        "set CRM_TEST_POSTGRES=postgres://user@host:port/db to run these"
    );
    let a = TestServer::start().await;
    let db = a.db.clone();
    let b = TestServer::start_with(move |c| c.db = db).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CRM_TEST_POSTGRES"]
async fn thirty_writers_across_two_instances_give_one_commit_and_29_conflicts() {
    let (a, b) = two_instances().await;
    let (ta, tb) = (a.login("alice").await, b.login("bob").await);
    let calls = (0..30).map(|i| {
        let (s, t) = if i % 2 == 0 { (&a, &ta) } else { (&b, &tb) };
        s.patch(
            "/api/customers/c-0010",
            t,
            1,
            json!({ "phone": format!("p{i}") }),
        )
    });
    let replies = join_all(calls).await;
    let ok: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    let conflicts: Vec<_> = replies.iter().filter(|r| r.status == 409).collect();
    assert_eq!(ok.len(), 1, "{replies:?}");
    assert_eq!(conflicts.len(), 29);
    for c in conflicts {
        assert_eq!(c.body["error"]["code"], "conflict");
        assert_eq!(c.body["error"]["details"]["current"]["version"], 2);
        assert_eq!(
            c.body["error"]["details"]["current"]["fields"]["phone"],
            ok[0].body["fields"]["phone"]
        );
    }
    for (s, t) in [(&a, &ta), (&b, &tb)] {
        assert_eq!(s.get("/api/customers/c-0010", t).await.body["version"], 2);
    }
    let history = a.get("/api/customers/c-0010/history", &ta).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CRM_TEST_POSTGRES"]
async fn one_idempotency_key_sent_to_both_instances_applies_once() {
    let (a, b) = two_instances().await;
    let (ta, tb) = (a.login("alice").await, b.login("alice").await);
    let before = a.get("/api/changes?limit=1000", &ta).await.body["changes"]
        .as_array()
        .unwrap()
        .len();
    for round in 0..5 {
        let key = format!("key-{round}");
        let body = json!({ "id": format!("lead-{round}"), "fields": { "name": "Once" } });
        let replies = join_all([
            post_keyed(&a, &ta, &key, &body),
            post_keyed(&b, &tb, &key, &body),
            post_keyed(&a, &ta, &key, &body),
            post_keyed(&b, &tb, &key, &body),
        ])
        .await;
        for r in &replies {
            assert_eq!(r.status, 201, "{:?}", r.body);
            assert_eq!(r.body, replies[0].body);
        }
        let replayed = replies
            .iter()
            .filter(|r| r.headers.get("idempotent-replayed").is_some())
            .count();
        assert_eq!(replayed, 3, "one applied, three answered from the key");
    }
    let after = a.get("/api/changes?limit=1000", &ta).await.body["changes"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after - before, 5, "five creates, each once");
}

async fn post_keyed(s: &TestServer, t: &str, key: &str, body: &Value) -> common::Reply {
    s.send(
        Method::POST,
        "/api/leads",
        Some(t),
        Some(body.clone()),
        &[("idempotency-key", key)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CRM_TEST_POSTGRES"]
async fn a_change_through_one_instance_reaches_the_other_instances_stream() {
    let (a, b) = two_instances().await;
    let (ta, tb) = (a.login("alice").await, b.login("bob").await);
    let mut stream = open_events(&b, &tb).await;
    let mut buf = String::new();
    assert!(next_frame(&mut stream, &mut buf)
        .await
        .contains("event: ready"));
    let started = std::time::Instant::now();
    let r = a
        .patch("/api/customers/c-0003", &ta, 1, json!({ "city": "Lyon" }))
        .await;
    assert_eq!(r.status, 200);
    let events = read_events(&mut stream, 1).await;
    // Measured, not asserted (machines are noisy): the issue asks for < 1 s.
    eprintln!("cross-instance event after {:?}", started.elapsed());
    assert_eq!(events[0].1["id"], "c-0003");
    assert_eq!(events[0].1["version"], 2);
    assert_eq!(events[0].1["record"]["fields"]["city"], "Lyon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CRM_TEST_POSTGRES"]
async fn a_users_stream_limit_and_logout_hold_across_instances() {
    let (a, b) = two_instances().await;
    let (ta, tb) = (a.login("bob").await, b.login("bob").await);
    let mut on_a = Vec::new();
    for _ in 0..5 {
        on_a.push(open_events(&a, &ta).await);
    }
    // The sixth, through the other instance, ends the oldest on the first.
    let mut on_b = open_events(&b, &tb).await;
    assert!(ends_within(&mut on_a[0], Duration::from_secs(10)).await);
    for stream in &mut on_a[1..] {
        assert!(!ends_within(stream, Duration::from_millis(200)).await);
    }
    assert!(!ends_within(&mut on_b, Duration::from_millis(200)).await);
    // Logging the first token out through the other instance ends its
    // streams there too, and leaves the other token's stream open.
    let r = b
        .send(Method::POST, "/api/logout", Some(&ta), None, &[])
        .await;
    assert_eq!(r.status, 204);
    for stream in &mut on_a[1..] {
        assert!(ends_within(stream, Duration::from_secs(10)).await);
    }
    assert!(!ends_within(&mut on_b, Duration::from_millis(200)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CRM_TEST_POSTGRES"]
async fn a_job_of_a_killed_instance_ends_as_error_on_the_other_within_a_minute() {
    assert!(common::postgres_url().is_some(), "set CRM_TEST_POSTGRES");
    let a = TestServer::start().await;
    // The second instance is the real binary on the same database, killed
    // without warning while its job downloads the sheet (5 s of latency).
    let sheet = a.path("killed-sheet.csv");
    std::fs::write(&sheet, sheet_of_new_customers("k", 10)).unwrap();
    let b = common::spawn_server(&[
        "--db".into(),
        a.db.clone().into_os_string(),
        "--sheet".into(),
        sheet.into_os_string(),
    ]);
    let c = common::client();
    let t = a.login("alice").await;
    let started = common::send(
        &c,
        &b.base,
        Method::POST,
        "/api/sync",
        Some(&t),
        Some(json!({ "kind": "from-sheet" })),
        &[],
    )
    .await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    let id = started.body["syncId"].as_str().unwrap().to_owned();
    // The other instance sees it while it runs ...
    let r = a.get(&format!("/api/sync/{id}"), &t).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        ["queued", "downloading"].contains(&r.body["status"].as_str().unwrap()),
        "{:?}",
        r.body
    );
    let listed = a.get("/api/sync", &t).await.body;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["syncId"] == id.as_str()),
        "{listed}"
    );
    drop(b);
    // ... and, once its instance is gone, ends it as `error`.
    let seen = a.wait_job(&t, &id, Duration::from_secs(60)).await;
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "error", "{seen:?}");
    assert!(
        last["error"].as_str().unwrap().contains("stopped"),
        "{last}"
    );
    // Not one row of the sheet was written.
    let r = a.get("/api/customers/s-k-0000", &t).await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CRM_TEST_POSTGRES"]
async fn a_job_is_cancelled_through_the_other_instance() {
    assert!(common::postgres_url().is_some(), "set CRM_TEST_POSTGRES");
    let a = TestServer::start_with(|c| c.sheet_latency = Duration::from_secs(30)).await;
    let db = a.db.clone();
    let b = TestServer::start_with(move |c| c.db = db).await;
    let t = a.login("alice").await;
    let mut ids = Vec::new();
    // One running (downloading for 30 s) and one queued behind it.
    for _ in 0..2 {
        let r = a.post("/api/sync", &t, json!({ "kind": "to-sheet" })).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        ids.push(r.body["syncId"].as_str().unwrap().to_owned());
    }
    for id in ids.iter().rev() {
        let path = format!("/api/sync/{id}");
        let r = b.send(Method::DELETE, &path, Some(&t), None, &[]).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["status"], "cancelled");
        // Once answered, a second cancel is refused, through either instance.
        for s in [&a, &b] {
            let again = s.send(Method::DELETE, &path, Some(&t), None, &[]).await;
            common::assert_error(&again, 409, "already_finished");
        }
        let r = a.get(&path, &t).await;
        assert_eq!(r.body["status"], "cancelled", "{:?}", r.body);
    }
}

/// The sequence numbers of the `change` events a stream sends, until `want`
/// came or none came for 20 s.
async fn stream_ids(resp: &mut reqwest::Response, want: usize) -> Vec<i64> {
    let mut buf = String::new();
    let mut seqs = Vec::new();
    while seqs.len() < want {
        match tokio::time::timeout(Duration::from_secs(20), resp.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.push_str(std::str::from_utf8(&chunk).unwrap()),
            _ => break,
        }
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if let Some(id) = frame.lines().find_map(|l| l.strip_prefix("id:")) {
                seqs.push(id.trim().rsplit('.').next().unwrap().parse().unwrap());
            }
        }
    }
    seqs
}

/// A sheet of `n` new customers `s-<tag>-<i>` for a from-sheet sync.
fn sheet_of_new_customers(tag: &str, n: usize) -> String {
    let mut csv = String::from("id,version,name\n");
    for i in 0..n {
        csv.push_str(&format!("s-{tag}-{i:04},,Sheet {tag} {i}\n"));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: CRM_TEST_POSTGRES"]
async fn readers_see_every_commit_exactly_once_while_two_instances_write_and_sync() {
    const PATCHES: usize = 12;
    const WRITERS: usize = 6;
    const SYNCS_EACH: usize = 5;
    const SHEET_ROWS: usize = 250;
    let (a, b) = two_instances().await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let (ta, tb) = (a.login("alice").await, b.login("bob").await);
    // Nothing written yet past the demo seed: readers start after it.
    let base = a.get("/api/changes?limit=1000", &ta).await.body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let want = WRITERS * PATCHES + 2 * SYNCS_EACH * SHEET_ROWS;

    // Writers: each patches its own customer PATCHES times, half through each instance.
    let writers = (0..WRITERS).map(|w| {
        let (s, t) = if w % 2 == 0 { (&*a, &ta) } else { (&*b, &tb) };
        async move {
            let path = format!("/api/customers/c-{:04}", 20 + w);
            let mut version = 1;
            for i in 0..PATCHES {
                let r = s
                    .patch(&path, t, version, json!({ "city": format!("w{w}-{i}") }))
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                version = r.body["version"].as_i64().unwrap();
            }
        }
    });
    // Syncs: long transactions (batches of rows) that take their sequence
    // numbers early and commit late, through both instances.
    let syncs = [(&*a, &ta, "a"), (&*b, &tb, "b")].map(|(s, t, name)| async move {
        for n in 0..SYNCS_EACH {
            std::fs::write(
                s.path("data/sheet.csv"),
                sheet_of_new_customers(&format!("{name}{n}"), SHEET_ROWS),
            )
            .unwrap();
            let r = s
                .send(
                    Method::POST,
                    "/api/sync",
                    Some(t),
                    Some(json!({ "kind": "from-sheet" })),
                    &[],
                )
                .await;
            assert!(r.status.is_success(), "{:?}", r.body);
            let id = r.body["syncId"].as_str().unwrap().to_owned();
            let seen = s.wait_job(t, &id, Duration::from_secs(120)).await;
            let last = seen.last().unwrap();
            assert_eq!(last["status"], "complete", "{last:?}");
            assert_eq!(last["stats"]["inserted"], SHEET_ROWS as u64);
        }
    });
    // Readers, started before the writes: a feed follower on each instance
    // and a stream on each.
    // A follower stops at the first page without `more` asked for after
    // every write had returned (a write returns once the feed can serve it).
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = |s: Arc<TestServer>, t: String, since: String| {
        let done = Arc::clone(&done);
        async move {
            let mut seen = Vec::new();
            let mut cursor = since;
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let r = s
                    .get(&format!("/api/changes?since={cursor}&limit=37"), &t)
                    .await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                seen.extend(r.body["changes"].as_array().unwrap().iter().cloned());
                cursor = r.body["cursor"].as_str().unwrap().to_owned();
                let more = r.body["more"].as_bool().unwrap();
                if finished && !more {
                    return seen;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the follower never caught up"
                );
            }
        }
    };
    let mut stream_a = open_events(&a, &ta).await;
    let mut stream_b = open_events(&b, &tb).await;
    let feed_a = tokio::spawn(follower(Arc::clone(&a), ta.clone(), base.clone()));
    let feed_b = tokio::spawn(follower(Arc::clone(&b), tb.clone(), base.clone()));
    let streams = tokio::spawn(async move {
        tokio::join!(
            stream_ids(&mut stream_a, want),
            stream_ids(&mut stream_b, want)
        )
    });
    let (_, _) = tokio::join!(join_all(writers), join_all(syncs));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (from_a, from_b) = streams.await.unwrap();
    let feeds = [feed_a.await.unwrap(), feed_b.await.unwrap()];

    let expected: BTreeMap<String, usize> = (0..WRITERS)
        .map(|w| (format!("c-{:04}", 20 + w), PATCHES))
        .chain((0..SYNCS_EACH).flat_map(|n| {
            ["a", "b"].into_iter().flat_map(move |name| {
                (0..SHEET_ROWS).map(move |i| (format!("s-{name}{n}-{i:04}"), 1))
            })
        }))
        .collect();
    for (which, seen) in feeds.iter().enumerate() {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for c in seen {
            *counts
                .entry(c["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        let missing: Vec<_> = expected
            .keys()
            .filter(|k| !counts.contains_key(*k))
            .take(5)
            .collect();
        assert_eq!(
            counts.len(),
            expected.len(),
            "feed reader {which}: {} records seen, missing {missing:?}",
            counts.len()
        );
        assert_eq!(counts, expected, "feed reader {which}");
    }
    for (which, seqs) in [from_a, from_b].iter().enumerate() {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "stream {which}: ids in order"
        );
        let ids: BTreeSet<i64> = seqs.iter().copied().collect();
        assert_eq!(seqs.len(), want, "stream {which}: {} events", seqs.len());
        assert_eq!(ids.len(), want, "stream {which}: each commit once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: CRM_TEST_POSTGRES"]
async fn failed_logins_through_both_instances_count_together() {
    let (a, b) = two_instances().await;
    // The limit is 5 failures a minute per username, whichever instance.
    for n in 0..5 {
        let s = if n % 2 == 0 { &a } else { &b };
        assert_eq!(wrong_login(s).await.status, 401);
    }
    for s in [&a, &b] {
        let r = wrong_login(s).await;
        assert_eq!(r.status, 429, "{:?}", r.body);
        assert_eq!(r.body["error"]["code"], "too_many_requests");
    }
}

async fn wrong_login(s: &TestServer) -> common::Reply {
    s.send(
        Method::POST,
        "/api/login",
        None,
        Some(json!({ "username": "alice", "password": "wrong" })),
        &[],
    )
    .await
}
