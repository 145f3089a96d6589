//! The event stream's ticket (docs/backend/protocol.md, "Changes feed"): a
//! bearer token never travels in a URL; `EventSource` opens
//! `/api/events?ticket=...` with a single-use ticket that lives 30 s.

mod common;

use std::time::Duration;

use common::{assert_error, TestServer};
use reqwest::Method;
use serde_json::Value;

async fn ticket(s: &TestServer, t: &str) -> Value {
    let r = s
        .send(Method::POST, "/api/events/ticket", Some(t), None, &[])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.body["ticket"].as_str().is_some_and(|t| !t.is_empty()),
        "{:?}",
        r.body
    );
    assert!(r.body["expiresAt"].is_string(), "{:?}", r.body);
    r.body
}

/// Opens the stream with `query`, no header; the answer as it comes.
async fn open(s: &TestServer, query: &str) -> reqwest::Response {
    s.client
        .get(format!("{}/api/events?{query}", s.base))
        .send()
        .await
        .unwrap()
}

/// The first SSE frame of a stream.
async fn first_frame(resp: &mut reqwest::Response) -> String {
    let mut buf = String::new();
    while !buf.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("event in time")
            .unwrap()
            .expect("stream open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    buf
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_opens_one_stream_once() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let ticket = ticket(&s, &t).await;
    let tk = ticket["ticket"].as_str().unwrap();
    assert!(!tk.contains(&t), "the ticket is not the token");
    let mut live = open(&s, &format!("ticket={tk}")).await;
    assert_eq!(live.status(), 200);
    assert!(first_frame(&mut live).await.contains("event: ready"));
    // Used: a second stream (or a replay from a log) is refused.
    let (status, body) = error_of(open(&s, &format!("ticket={tk}")).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // A garbage ticket, and none at all.
    let (status, _) = error_of(open(&s, "ticket=nonsense").await).await;
    assert_eq!(status, 401);
    let (status, _) = error_of(open(&s, "").await).await;
    assert_eq!(status, 401);
    // Each ticket is new, even under one Idempotency-Key.
    let key = [("idempotency-key", "ticket-1")];
    let a = s
        .send(Method::POST, "/api/events/ticket", Some(&t), None, &key)
        .await;
    let b = s
        .send(Method::POST, "/api/events/ticket", Some(&t), None, &key)
        .await;
    assert_ne!(a.body["ticket"], b.body["ticket"]);
    // Asking for one needs the bearer token.
    let r = s
        .send(Method::POST, "/api/events/ticket", None, None, &[])
        .await;
    assert_error(&r, 401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_in_the_query_is_refused() {
    let s = TestServer::start().await;
    let t = s.login("alice").await;
    let (status, body) = error_of(open(&s, &format!("token={t}")).await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid");
    assert!(
        !body.to_string().contains(&t),
        "the answer does not repeat the token"
    );
    // Not even beside a good ticket.
    let tk = ticket(&s, &t).await["ticket"].as_str().unwrap().to_owned();
    let (status, _) = error_of(open(&s, &format!("ticket={tk}&token={t}")).await).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_is_refused() {
    let s = TestServer::start_with(|c| c.limits.stream_ticket_ttl = Duration::from_secs(1)).await;
    let t = s.login("alice").await;
    let ticket = ticket(&s, &t).await;
    let expires =
        chrono::DateTime::parse_from_rfc3339(ticket["expiresAt"].as_str().unwrap()).unwrap();
    // Wait until its time is past, by the clock the server answered with.
    while chrono::Utc::now() <= expires + chrono::Duration::milliseconds(100) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tk = ticket["ticket"].as_str().unwrap();
    let (status, body) = error_of(open(&s, &format!("ticket={tk}")).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_belongs_to_the_session_that_asked_for_it() {
    let s = TestServer::start().await;
    let (ta, tb) = (s.login("alice").await, s.login("bob").await);
    // Alice cannot open a stream with Bob's ticket under her own token.
    let bobs = ticket(&s, &tb).await["ticket"].as_str().unwrap().to_owned();
    let used = s
        .client
        .get(format!("{}/api/events?ticket={bobs}", s.base))
        .bearer_auth(&ta)
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(used).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    // A stream opened with Bob's ticket is Bob's: it ends when he logs out,
    // and Alice's goes on.
    let bobs = ticket(&s, &tb).await["ticket"].as_str().unwrap().to_owned();
    let alices = ticket(&s, &ta).await["ticket"].as_str().unwrap().to_owned();
    let mut bob_stream = open(&s, &format!("ticket={bobs}")).await;
    let mut alice_stream = open(&s, &format!("ticket={alices}")).await;
    first_frame(&mut bob_stream).await;
    first_frame(&mut alice_stream).await;
    let spare = ticket(&s, &tb).await["ticket"].as_str().unwrap().to_owned();
    let r = s
        .send(Method::POST, "/api/logout", Some(&tb), None, &[])
        .await;
    assert_eq!(r.status, 204);
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match bob_stream.chunk().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "Bob's stream ends with his session");
    // A ticket of Bob's session is worth nothing once the session ended.
    let (status, _) = error_of(open(&s, &format!("ticket={spare}")).await).await;
    assert_eq!(status, 401);
    let r = s
        .send(Method::POST, "/api/events/ticket", Some(&tb), None, &[])
        .await;
    assert_error(&r, 401, "unauthorized");
    let alices = ticket(&s, &ta).await["ticket"].as_str().unwrap().to_owned();
    assert_eq!(open(&s, &format!("ticket={alices}")).await.status(), 200);
    drop(alice_stream);
}
