//! Every bound the server puts on its clients (docs/backend/protocol.md, "Limits"), in one
//! place so README.md can list them and `main.rs` can turn each into a flag.

use std::time::Duration;

/// The limits of one server. [`Limits::default`] is what docs/backend/protocol.md asks for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (`413 too_large`).
    pub max_body_bytes: usize,
    /// Largest `fields` of a record as JSON text (`422 invalid`).
    pub max_fields_bytes: usize,
    /// Most fields a record may have (`422 invalid`).
    pub max_fields: usize,
    /// Longest comment, in characters (`422 invalid`).
    pub max_comment_chars: usize,
    /// Most comments one record may have (`422 invalid`).
    pub max_comments: usize,
    /// Failed logins one username may have within [`LOGIN_WINDOW`] before
    /// further attempts get `429`.
    pub login_failures_per_user: usize,
    /// Failed logins one client address may have within [`LOGIN_WINDOW`]
    /// before its further attempts get `429` (successful logins never count).
    pub login_failures_per_address: usize,
    /// Password checks (argon2, ~19 MiB each) running at once; 0 = the cores.
    pub password_checks: usize,
    /// Logins that may wait for a password check before more get `429`.
    pub password_queue: usize,
    /// A changes-feed page or event-stream batch stops growing past this many
    /// bytes of JSON and says `more: true`.
    pub feed_page_bytes: usize,
    /// Changes kept in the feed; older ones are pruned and their cursors get
    /// `410 cursor_expired`.
    pub changes_kept: i64,
    /// Open event streams per user; one more closes the oldest.
    pub streams_per_user: usize,
    /// Unfinished sync jobs per user (`429 too_many_jobs`).
    pub jobs_per_user: usize,
    /// Time a connection has to send a request's headers. hyper's timer for
    /// this also runs while a keep-alive connection waits for its next
    /// request, so it is the idle limit too (shorter than docs/backend/protocol.md's 60 s).
    pub header_timeout: Duration,
    /// Time a request (except an event stream) may take.
    pub request_timeout: Duration,
    /// How long a ticket for `/api/events` can be used (no flag:
    /// docs/backend/protocol.md says 30 s; tests shorten it).
    pub stream_ticket_ttl: Duration,
    /// How long a presence set lives without being sent again (no flag:
    /// docs/backend/protocol.md says 30 s; tests shorten it).
    pub presence_ttl: Duration,
    /// Most records one browser may say it has open (`422 invalid`).
    pub presence_entries: usize,
}

/// The window login failures are counted in.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_fields_bytes: 256 * 1024,
            max_fields: 500,
            max_comment_chars: 10_000,
            max_comments: 1_000,
            login_failures_per_user: 5,
            login_failures_per_address: 100,
            password_checks: 0,
            password_queue: 64,
            feed_page_bytes: 4 * 1024 * 1024,
            changes_kept: 100_000,
            streams_per_user: 5,
            jobs_per_user: 20,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            stream_ticket_ttl: Duration::from_secs(30),
            presence_ttl: Duration::from_secs(30),
            presence_entries: 200,
        }
    }
}

impl Limits {
    /// Password checks at once: the configured number, or the cores.
    pub fn password_checks(&self) -> usize {
        if self.password_checks > 0 {
            self.password_checks
        } else {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        }
    }
}
