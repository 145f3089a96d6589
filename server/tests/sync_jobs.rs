//! The spreadsheet sync jobs of docs/backend/protocol.md: queueing, parallelism, phases,
//! progress, stats, cancel, ownership, idempotency, optimistic locking.

mod common;

use std::time::{Duration, Instant};

use common::{assert_error, TestServer};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

const ACTIVE: [&str; 3] = ["downloading", "processing", "saving"];

async fn start_job(s: &TestServer, token: &str, kind: &str) -> Value {
    let r = s.post("/api/sync", token, json!({ "kind": kind })).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["status"], "queued");
    r.body
}

fn id(v: &Value) -> String {
    v["syncId"].as_str().unwrap().to_owned()
}

fn latency(ms: u64) -> impl FnOnce(&mut crm_sync_server::Config) {
    move |c| c.sheet_latency = Duration::from_millis(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_sheet_moves_through_phases_with_monotonic_progress() {
    let s = TestServer::start_with(latency(600)).await;
    let t = s.login("alice").await;
    let job = start_job(&s, &t, "from-sheet").await;
    assert_eq!(job["position"], 0);
    let seen = s.wait_job(&t, &id(&job), Duration::from_secs(30)).await;
    let order = ["queued", "downloading", "processing", "saving", "complete"];
    let mut last_phase = 0;
    let mut last_progress = 0;
    let mut mid_download = false;
    for st in &seen {
        let phase = order.iter().position(|p| *p == st["status"]).unwrap();
        assert!(phase >= last_phase, "status went back: {seen:?}");
        let progress = st["progress"].as_u64().unwrap();
        assert!(progress >= last_progress, "progress went down: {seen:?}");
        match st["status"].as_str().unwrap() {
            "downloading" => {
                assert!(progress <= 60);
                mid_download |= progress > 0 && progress < 60;
            }
            "processing" => assert!((60..=80).contains(&progress)),
            "saving" => assert!((80..=100).contains(&progress)),
            _ => {}
        }
        for key in [
            "syncId",
            "kind",
            "message",
            "position",
            "stats",
            "error",
            "createdAt",
            "updatedAt",
        ] {
            assert!(st.get(key).is_some(), "missing {key}");
        }
        last_phase = phase;
        last_progress = progress;
    }
    assert!(
        mid_download,
        "download progress should move by bytes: {seen:?}"
    );
    let done = seen.last().unwrap();
    assert_eq!(done["progress"], 100);
    assert_eq!(done["kind"], "from-sheet");
    assert_eq!(done["error"], Value::Null);
    let stats = &done["stats"];
    let size = std::fs::metadata(s.path("data/sheet.csv")).unwrap().len();
    assert_eq!(stats["bytes"], size);
    assert_eq!(stats["rows"], 1502);
    assert_eq!(stats["inserted"], 1300);
    assert_eq!(stats["updated"], 20);
    assert_eq!(stats["invalid"], 2);
    assert_eq!(stats["conflicts"], 0);
    let message = done["message"].as_str().unwrap();
    assert!(
        message.contains("line 1502") && message.contains("line 1503"),
        "{message}"
    );
    assert_eq!(
        s.get("/api/customers", &t).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1500
    );
    assert_eq!(
        s.get("/api/customers/c-0010", &t).await.body["fields"]["phone"],
        "+1-555-9010"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_users_sync_in_about_the_time_of_one() {
    let s = &TestServer::start_with(latency(1000)).await;
    let users: Vec<String> = (1..=11).map(|i| format!("user{i:02}")).collect();
    let tokens: Vec<String> = join_all(users.iter().map(|u| s.login(u))).await;

    let t0 = Instant::now();
    let one = start_job(s, &tokens[0], "from-sheet").await;
    s.wait_job(&tokens[0], &id(&one), Duration::from_secs(30))
        .await;
    let single = t0.elapsed();

    let t1 = Instant::now();
    let jobs = join_all(tokens[1..].iter().map(|t| start_job(s, t, "from-sheet"))).await;
    for j in &jobs {
        assert_eq!(
            j["position"], 0,
            "different users never wait for each other"
        );
    }
    let finals = join_all(
        tokens[1..]
            .iter()
            .zip(&jobs)
            .map(|(t, j)| async move { s.wait_job(t, &id(j), Duration::from_secs(60)).await }),
    )
    .await;
    let ten = t1.elapsed();
    for f in &finals {
        assert_eq!(f.last().unwrap()["status"], "complete");
    }
    let ratio = ten.as_secs_f64() / single.as_secs_f64();
    println!("one job: {single:?}, ten users at once: {ten:?}, ratio {ratio:.2}");
    assert!(ratio < 4.0, "ten users took {ratio:.2}x one job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_second_job_waits_for_the_first() {
    let s = TestServer::start_with(latency(700)).await;
    let t = s.login("alice").await;
    let first = start_job(&s, &t, "from-sheet").await;
    let second = start_job(&s, &t, "to-sheet").await;
    assert_eq!(first["position"], 0);
    assert_eq!(second["position"], 1);
    let (a, b) = (id(&first), id(&second));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut saw_waiting = false;
    loop {
        // The second job first: if the first is still running afterwards, it
        // was running (ahead in the queue) when the second was read.
        let rb = s.get(&format!("/api/sync/{b}"), &t).await.body;
        let ra = s.get(&format!("/api/sync/{a}"), &t).await.body;
        let (sa, sb) = (
            ra["status"].as_str().unwrap(),
            rb["status"].as_str().unwrap(),
        );
        assert!(
            !(ACTIVE.contains(&sa) && ACTIVE.contains(&sb)),
            "both ran at once: {ra} {rb}"
        );
        if ACTIVE.contains(&sa) && sb == "queued" {
            assert_eq!(rb["position"], 1);
            saw_waiting = true;
        }
        if ACTIVE.contains(&sb) {
            assert_eq!(sa, "complete", "second started before the first finished");
            assert_eq!(rb["position"], 0);
        }
        if sb == "complete" {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_waiting);
    // Newest first.
    let list = s.get("/api/sync", &t).await.body;
    let ids: Vec<String> = list["items"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(ids, [b, a]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_bound_how_many_users_run_at_once() {
    let s = TestServer::start_with(|c| {
        c.sheet_latency = Duration::from_millis(600);
        c.workers = 1;
    })
    .await;
    let (ta, tb) = (s.login("alice").await, s.login("bob").await);
    let a = start_job(&s, &ta, "from-sheet").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let b = start_job(&s, &tb, "from-sheet").await;
    let rb = s.get(&format!("/api/sync/{}", id(&b)), &tb).await.body;
    assert_eq!(rb["status"], "queued", "no free worker: {rb}");
    // Starting never fails because of another job.
    let fa = s.wait_job(&ta, &id(&a), Duration::from_secs(30)).await;
    let fb = s.wait_job(&tb, &id(&b), Duration::from_secs(30)).await;
    assert_eq!(fa.last().unwrap()["status"], "complete");
    assert_eq!(fb.last().unwrap()["status"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_queued_and_running_jobs() {
    let s = TestServer::start_with(latency(1500)).await;
    let t = s.login("alice").await;
    let running = start_job(&s, &t, "from-sheet").await;
    let queued = start_job(&s, &t, "from-sheet").await;
    let after = start_job(&s, &t, "to-sheet").await;
    let path = |j: &Value| format!("/api/sync/{}", id(j));
    // Wait until the first is really running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.get(&path(&running), &t).await.body["status"] != "downloading" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = s
        .send(Method::DELETE, &path(&queued), Some(&t), None, &[])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "cancelled");
    let r = s
        .send(Method::DELETE, &path(&running), Some(&t), None, &[])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "cancelled");
    let r = s
        .send(Method::DELETE, &path(&running), Some(&t), None, &[])
        .await;
    assert_error(&r, 409, "already_finished");
    // The job behind them still runs, and the cancelled import saved nothing.
    let done = s.wait_job(&t, &id(&after), Duration::from_secs(30)).await;
    assert_eq!(done.last().unwrap()["status"], "complete");
    assert_eq!(s.get(&path(&running), &t).await.body["status"], "cancelled");
    assert_eq!(s.get(&path(&queued), &t).await.body["status"], "cancelled");
    assert_eq!(
        s.get("/api/customers", &t).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        200
    );
    let r = s
        .send(Method::DELETE, &path(&after), Some(&t), None, &[])
        .await;
    assert_error(&r, 409, "already_finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_job_is_403_and_unknown_is_404() {
    let s = TestServer::start().await;
    let (ta, tb) = (s.login("alice").await, s.login("bob").await);
    let job = start_job(&s, &ta, "to-sheet").await;
    let path = format!("/api/sync/{}", id(&job));
    let r = s.get(&path, &tb).await;
    assert_error(&r, 403, "forbidden");
    assert!(
        !r.body.to_string().contains("to-sheet"),
        "no data of the job leaks"
    );
    let r = s.send(Method::DELETE, &path, Some(&tb), None, &[]).await;
    assert_error(&r, 403, "forbidden");
    assert_eq!(s.get("/api/sync", &tb).await.body["items"], json!([]));
    assert_error(
        &s.get("/api/sync/does-not-exist", &ta).await,
        404,
        "sync_not_found",
    );
    let r = s
        .send(
            Method::DELETE,
            "/api/sync/does-not-exist",
            Some(&ta),
            None,
            &[],
        )
        .await;
    assert_error(&r, 404, "sync_not_found");
    assert_error(
        &s.send(Method::GET, &path, None, None, &[]).await,
        401,
        "unauthorized",
    );
    let r = s.post("/api/sync", &ta, json!({"kind": 3})).await;
    assert_error(&r, 422, "invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_a_job_honours_the_idempotency_key() {
    let s = TestServer::start_with(latency(300)).await;
    let t = s.login("alice").await;
    let key = [("idempotency-key", "sync-press-1")];
    let body = json!({"kind":"from-sheet"});
    let a = s
        .send(
            Method::POST,
            "/api/sync",
            Some(&t),
            Some(body.clone()),
            &key,
        )
        .await;
    let b = s
        .send(Method::POST, "/api/sync", Some(&t), Some(body), &key)
        .await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (202, 202));
    assert_eq!(a.body, b.body);
    assert_eq!(
        s.get("/api/sync", &t).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheet_rows_use_optimistic_locking() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    // Changed in the CRM before the import: the sheet's row (version 1) is stale.
    assert_eq!(
        s.patch("/api/customers/c-0010", &t, 1, json!({"phone":"mine"}))
            .await
            .status,
        200
    );
    let job = start_job(&s, &t, "from-sheet").await;
    let done = s.wait_job(&t, &id(&job), Duration::from_secs(30)).await;
    let stats = &done.last().unwrap()["stats"];
    assert_eq!(stats["conflicts"], 1);
    assert_eq!(stats["updated"], 19);
    assert_eq!(stats["unchanged"], 180);
    assert_eq!(stats["inserted"], 1300);
    let rec = s.get("/api/customers/c-0010", &t).await.body;
    assert_eq!(
        rec["fields"]["phone"], "mine",
        "a conflicting row is not applied"
    );
    assert_eq!(rec["version"], 2);
    // Changed in the CRM after the last sync: the next import leaves it alone too.
    let c20 = s.get("/api/customers/c-0020", &t).await.body;
    assert_eq!(c20["version"], 2, "updated by the import");
    assert_eq!(
        s.patch("/api/customers/c-0020", &t, 2, json!({"city":"Elsewhere"}))
            .await
            .status,
        200
    );
    let job = start_job(&s, &t, "from-sheet").await;
    let done = s.wait_job(&t, &id(&job), Duration::from_secs(30)).await;
    let stats = &done.last().unwrap()["stats"];
    assert_eq!(stats["conflicts"], 2, "{stats}");
    assert_eq!(stats["inserted"], 0);
    assert_eq!(stats["updated"], 0);
    assert_eq!(stats["unchanged"], 1498);
    assert_eq!(
        s.get("/api/customers/c-0020", &t).await.body["fields"]["city"],
        "Elsewhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_sheet_writes_the_csv_and_round_trips() {
    let s = TestServer::start().await;
    let t = s.login("bob").await;
    s.patch(
        "/api/customers/c-0001",
        &t,
        1,
        json!({"name":"Comma, Quote \" Inc"}),
    )
    .await;
    let job = start_job(&s, &t, "to-sheet").await;
    let done = s.wait_job(&t, &id(&job), Duration::from_secs(30)).await;
    let last = done.last().unwrap();
    assert_eq!(last["status"], "complete", "{last}");
    assert_eq!(last["stats"]["rows"], 200);
    let path = s.path("data/sheet.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "id,version,name,email,phone,status,owner,city"
    );
    assert_eq!(lines.count(), 200);
    assert!(
        text.contains("c-0001,2,\"Comma, Quote \"\" Inc\""),
        "{}",
        &text[..300]
    );
    assert_eq!(last["stats"]["bytes"], text.len());
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Edit the sheet: one row changed there, another changed in both places.
    let edited = text
        .replace("c-0005,1,", "c-0005,1,Edited In Sheet ")
        .replace("c-0006,1,", "c-0006,1,Sheet Side ");
    std::fs::write(&path, edited).unwrap();
    s.patch("/api/customers/c-0006", &t, 1, json!({"name":"CRM Side"}))
        .await;
    let job = start_job(&s, &t, "from-sheet").await;
    let done = s.wait_job(&t, &id(&job), Duration::from_secs(30)).await;
    let stats = &done.last().unwrap()["stats"];
    assert_eq!(stats["updated"], 1, "{stats}");
    assert_eq!(stats["conflicts"], 1, "{stats}");
    assert_eq!(stats["unchanged"], 198, "{stats}");
    let c5 = s.get("/api/customers/c-0005", &t).await.body;
    assert!(c5["fields"]["name"]
        .as_str()
        .unwrap()
        .starts_with("Edited In Sheet"));
    assert_eq!(
        s.get("/api/customers/c-0006", &t).await.body["fields"]["name"],
        "CRM Side"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_rows_are_counted_and_good_rows_applied() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let mut csv = b"id,name,email,status,version\n\
        n-1,Good One,one@good.example,lead,\n\
        n-2,Bad Email,nope,lead,\n\
        n-3,Bad Status,,vip,\n\
        n-4,Too,Few\n\
        n-1,Duplicate,,,\n\
        n-5,Bad Version,,,zero\n\
        bad id,Bad Id,,,\n"
        .to_vec();
    csv.extend_from_slice(b"n-6,Not UTF-8 \xff\xfe,,,\n");
    csv.extend_from_slice(b"n-7,\"Good, Two\",two@good.example,customer,\n");
    std::fs::write(s.path("data/sheet.csv"), csv).unwrap();
    let job = start_job(&s, &t, "from-sheet").await;
    let done = s.wait_job(&t, &id(&job), Duration::from_secs(30)).await;
    let last = done.last().unwrap();
    assert_eq!(last["status"], "complete");
    assert_eq!(last["stats"]["invalid"], 7, "{last}");
    assert_eq!(last["stats"]["inserted"], 2, "{last}");
    assert_eq!(last["stats"]["rows"], 9);
    let message = last["message"].as_str().unwrap();
    assert!(
        message.contains("7 invalid") && message.contains("line 3"),
        "{message}"
    );
    assert_eq!(
        s.get("/api/customers/n-7", &t).await.body["fields"]["name"],
        "Good, Two"
    );
    assert_eq!(s.get("/api/customers/n-2", &t).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sheet_is_a_job_error_not_a_server_error() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    std::fs::remove_file(s.path("data/sheet.csv")).unwrap();
    let job = start_job(&s, &t, "from-sheet").await;
    let done = s.wait_job(&t, &id(&job), Duration::from_secs(30)).await;
    let last = done.last().unwrap();
    assert_eq!(last["status"], "error");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("cannot open the sheet"),
        "{last}"
    );
    // The queue goes on after a failed job.
    let next = start_job(&s, &t, "to-sheet").await;
    let done = s.wait_job(&t, &id(&next), Duration::from_secs(30)).await;
    assert_eq!(done.last().unwrap()["status"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_forgotten_after_the_keep_time() {
    let s = TestServer::start_with(|c| c.keep_finished_jobs = Duration::from_millis(500)).await;
    let t = s.login("alice").await;
    let job = start_job(&s, &t, "to-sheet").await;
    let done = s.wait_job(&t, &id(&job), Duration::from_secs(30)).await;
    assert_eq!(done.last().unwrap()["status"], "complete");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = s.get(&format!("/api/sync/{}", id(&job)), &t).await;
    assert_error(&r, 404, "sync_not_found");
    assert_eq!(s.get("/api/sync", &t).await.body["items"], json!([]));
}

/// Every customer, read page by page.
async fn all_customers(s: &TestServer, t: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/customers?limit=1000&after={a}"),
            None => "/api/customers?limit=1000".to_owned(),
        };
        let page = s.get(&path, t).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        out.extend(page.body["items"].as_array().unwrap().iter().cloned());
        match page.body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return out,
        }
    }
}

/// 1,234,567 as a person reads it.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_import_counts_exactly_the_rows_it_wrote() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    // A sheet long enough to be cancelled while it saves: the 200 customers
    // with a new city (updates), then 20,000 new ones.
    const NEW: usize = 20_000;
    let mut sheet = String::from("id,version,name,email,phone,status,owner,city\n");
    for c in all_customers(&s, &t).await {
        let f = &c["fields"];
        let cell = |k: &str| f[k].as_str().unwrap_or("").to_owned();
        sheet.push_str(&format!(
            "{},1,{},{},{},{},{},Sheetville\n",
            c["id"].as_str().unwrap(),
            cell("name"),
            cell("email"),
            cell("phone"),
            cell("status"),
            cell("owner"),
        ));
    }
    for n in 0..NEW {
        sheet.push_str(&format!(
            "s-{n:05},,New {n},new{n}@example.com,,lead,alice,Graz\n"
        ));
    }
    std::fs::write(s.path("data/sheet.csv"), sheet).unwrap();
    let total = (200 + NEW) as u64;

    let job = start_job(&s, &t, "from-sheet").await;
    let path = format!("/api/sync/{}", id(&job));
    // Cancel once rows are being written.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = s.get(&path, &t).await.body;
        assert_ne!(
            st["status"], "complete",
            "the import ended before it could be cancelled"
        );
        if st["stats"]["inserted"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no row written: {st}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cancelled = s.send(Method::DELETE, &path, Some(&t), None, &[]).await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    let stats = cancelled.body["stats"].clone();
    let inserted = stats["inserted"].as_u64().unwrap();
    let updated = stats["updated"].as_u64().unwrap();

    // What is in the database is what the job says it wrote.
    let customers = all_customers(&s, &t).await;
    let new_in_db = customers
        .iter()
        .filter(|c| c["id"].as_str().unwrap().starts_with("s-"))
        .count() as u64;
    let moved_in_db = customers
        .iter()
        .filter(|c| c["fields"]["city"] == "Sheetville")
        .count() as u64;
    assert_eq!((inserted, updated), (new_in_db, moved_in_db), "{stats}");
    assert_eq!(updated, 200, "the updates came first in the sheet");
    assert!(
        inserted > 0 && inserted < NEW as u64,
        "cancelled mid-way: {stats}"
    );
    assert_eq!(stats["unchanged"], 0);
    assert_eq!(stats["conflicts"], 0);
    assert_eq!(
        cancelled.body["message"],
        format!(
            "Cancelled after {} of {} rows: {} new, {} updated",
            grouped(inserted + updated),
            grouped(total),
            grouped(inserted),
            grouped(updated)
        )
    );

    // The job's status and the list say the same, and it stays so: the
    // job really stopped.
    let later = s.get(&path, &t).await.body;
    assert_eq!(later["status"], "cancelled");
    assert_eq!(later["stats"], stats);
    assert_eq!(later["message"], cancelled.body["message"]);
    let listed = s.get("/api/sync", &t).await.body;
    assert_eq!(listed["items"][0]["stats"], stats);
    let again = all_customers(&s, &t).await;
    assert_eq!(again.len(), customers.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheet_conflicts_are_listed_field_by_field() {
    let s = TestServer::start().await;
    let (ta, tb) = (s.login("alice").await, s.login("bob").await);
    // Bob changes c-0010's phone in the CRM; the sheet still has version 1,
    // with another phone (every tenth demo row brings a new one).
    let before = s.get("/api/customers/c-0010", &ta).await.body;
    let changed = s
        .patch("/api/customers/c-0010", &tb, 1, json!({"phone": "bob's"}))
        .await;
    assert_eq!(changed.status, 200);
    let job = start_job(&s, &ta, "from-sheet").await;
    let done = s.wait_job(&ta, &id(&job), Duration::from_secs(30)).await;
    assert_eq!(done.last().unwrap()["stats"]["conflicts"], 1);

    let path = format!("/api/sync/{}/conflicts", id(&job));
    let r = s.get(&path, &ta).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(item["row"], 11, "the sheet's header is row 1");
    assert_eq!(item["recordId"], "c-0010");
    assert_eq!(item["field"], "phone");
    assert_eq!(item["sheet"], "+1-555-9010");
    assert_eq!(item["crm"], "bob's");
    assert_eq!(item["changedBy"], "bob");
    assert_eq!(item["changedAt"], changed.body["updatedAt"]);
    assert_ne!(before["fields"]["phone"], item["sheet"]);
    // Nothing of the row was applied.
    let now = s.get("/api/customers/c-0010", &ta).await.body;
    assert_eq!(now["fields"]["phone"], "bob's");
    assert_eq!(now["version"], 2);

    assert_error(&s.get(&path, &tb).await, 403, "forbidden");
    assert_error(
        &s.get("/api/sync/does-not-exist/conflicts", &ta).await,
        404,
        "sync_not_found",
    );
}
