//! What keeps a login flood from hurting the server: failed-login counts per
//! username and per client address, and a bounded set of password checkers.
//!
//! Why memory grew to gigabytes before: argon2's `verify_password` allocates
//! its 19 MiB working memory on every call, and the calls ran on unbounded
//! `spawn_blocking` threads. glibc serves a block that big with `mmap` only
//! until the first one is freed; then it raises its mmap threshold above
//! 19 MiB and serves later blocks from the malloc heap, where freed blocks
//! are fragmented between live ones and never returned to the system.
//! Measured on the old release build, 240 wrong logins 16 at a time: 5.6 MB
//! -> 2,534 MB RSS, still there later; with `MALLOC_MMAP_THRESHOLD_=1048576`
//! (a fixed threshold) the same flood ends at 7.3 MB, and with
//! `MALLOC_ARENA_MAX=1` still at 3.1 GB: the heap, not per-thread arenas.
//! Here a fixed number of checkers (the cores) each own one working memory,
//! allocated once and reused: a flood waits for a checker (or gets `429`)
//! and memory stays flat (24.9 MB -> 44.5 MB after the same flood, two cores).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::db::{Db, Tx};
use crate::error::ApiError;
use crate::limits::{Limits, LOGIN_WINDOW};

/// Largest argon2 working memory a stored hash may ask for (64 MiB): a hash
/// with bigger parameters is treated as not matching instead of being run.
const MAX_BLOCKS: usize = 64 * 1024;

/// A refused login: `429 too_many_requests` with `Retry-After` in seconds.
#[derive(Debug)]
pub struct TooManyLogins {
    /// Seconds until another attempt can succeed.
    pub retry_after: u64,
    /// Why, for people.
    pub message: &'static str,
}

impl TooManyLogins {
    /// The error body without the header (for callers that add it).
    pub fn error(&self) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            self.message,
        )
        .with_details(serde_json::json!({ "retryAfter": self.retry_after }))
    }
}

impl IntoResponse for TooManyLogins {
    fn into_response(self) -> Response {
        let mut response = self.error().into_response();
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(self.retry_after.max(1)),
        );
        response
    }
}

/// The failures one login attempt counted (see [`LoginGuard::begin`]).
#[must_use = "a login that did not fail must be taken back with LoginGuard::succeeded"]
#[derive(Debug)]
pub struct LoginAttempt {
    /// The rows of `login_failures` it added.
    rows: Vec<i64>,
}

/// `Some(seconds to wait)` when `key` of `kind` has `max` failures within
/// [`LOGIN_WINDOW`] before `now_ms`.
fn blocked(
    tx: &Tx<'_>,
    kind: &str,
    key: &str,
    max: usize,
    now_ms: i64,
) -> Result<Option<u64>, ApiError> {
    let window_ms = i64::try_from(LOGIN_WINDOW.as_millis()).unwrap_or(i64::MAX);
    let newest: Vec<i64> = tx
        .query(
            "SELECT at_ms FROM login_failures WHERE kind = ?1 AND key = ?2 AND at_ms > ?3
             ORDER BY at_ms DESC LIMIT ?4",
            &[
                &kind,
                &key,
                &(now_ms - window_ms),
                &i64::try_from(max.max(1)).unwrap_or(i64::MAX),
            ],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<_, _>>()?;
    if newest.len() < max.max(1) {
        return Ok(None);
    }
    let oldest = newest.last().copied().unwrap_or(now_ms);
    // Another attempt may have taken its time after this one and won the
    // lock first: its failure can lie after `now_ms`, so the wait is never
    // longer than the window, in whole seconds rounded up.
    let wait_ms = (oldest + window_ms - now_ms).clamp(0, window_ms);
    Ok(Some(
        u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1),
    ))
}

fn add_failure(tx: &Tx<'_>, kind: &str, key: &str, now_ms: i64) -> Result<i64, ApiError> {
    tx.query_one(
        "INSERT INTO login_failures (kind, key, at_ms) VALUES (?1, ?2, ?3) RETURNING id",
        &[&kind, &key, &now_ms],
    )?
    .get(0)
}

/// Forgets failures older than [`LOGIN_WINDOW`] (the janitor calls this).
///
/// # Errors
/// Internal errors from the database.
pub fn purge(tx: &Tx<'_>) -> Result<usize, ApiError> {
    let window_ms = i64::try_from(LOGIN_WINDOW.as_millis()).unwrap_or(i64::MAX);
    tx.execute(
        "DELETE FROM login_failures WHERE at_ms <= ?1",
        &[&(chrono::Utc::now().timestamp_millis() - window_ms)],
    )
}

/// Login throttling and the bounded pool of password checkers.
pub struct LoginGuard {
    limits: Limits,
    db: Arc<Db>,
    checkers: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    memories: Arc<Mutex<Vec<Vec<Block>>>>,
    dummy_hash: String,
}

impl LoginGuard {
    /// A guard for these limits. Hashes a dummy password once, so unknown
    /// usernames can be checked against it at the cost of a real one.
    ///
    /// # Errors
    /// Internal error when hashing fails.
    pub fn new(limits: &Limits, db: Arc<Db>) -> Result<Self, ApiError> {
        let checkers = limits.password_checks();
        // Hashed in the first checker's memory, so that memory is allocated
        // once here and reused, rather than allocated twice.
        let mut memory = Vec::new();
        let dummy_hash = hash_with(b"not a password of anyone", &mut memory)?;
        Ok(Self {
            limits: limits.clone(),
            db,
            checkers: Arc::new(Semaphore::new(checkers.clamp(1, 1024))),
            waiting: Arc::new(Semaphore::new(
                (limits.password_queue + checkers).clamp(1, 1 << 20),
            )),
            memories: Arc::new(Mutex::new(vec![memory])),
            dummy_hash,
        })
    }

    /// Refuses a login from `address` for `username` that has failed too
    /// often; otherwise counts the attempt as a failure until
    /// [`LoginGuard::succeeded`] takes it back. Counting before the password
    /// is checked keeps a burst of parallel attempts within the limit. The
    /// counts are in the database, under a lock per username and address,
    /// so they hold across every server instance on it.
    ///
    /// # Errors
    /// [`TooManyLogins`] inside; internal errors from the database outside.
    pub async fn begin(
        &self,
        username: &str,
        address: Option<IpAddr>,
    ) -> Result<Result<LoginAttempt, TooManyLogins>, ApiError> {
        let (per_user, per_address) = (
            self.limits.login_failures_per_user,
            self.limits.login_failures_per_address,
        );
        let user = username.to_owned();
        let address = address.map(|a| a.to_string());
        self.db
            .write(move |tx| {
                let now = chrono::Utc::now().timestamp_millis();
                tx.lock(&format!("login\nuser\n{user}"))?;
                if let Some(wait) = blocked(tx, "user", &user, per_user, now)? {
                    return Ok(Err(TooManyLogins {
                        retry_after: wait,
                        message: "too many failed logins for this username; try again later",
                    }));
                }
                let mut rows = Vec::new();
                if let Some(addr) = &address {
                    tx.lock(&format!("login\naddress\n{addr}"))?;
                    if let Some(wait) = blocked(tx, "address", addr, per_address, now)? {
                        return Ok(Err(TooManyLogins {
                            retry_after: wait,
                            message: "too many failed logins from this address; try again later",
                        }));
                    }
                    rows.push(add_failure(tx, "address", addr, now)?);
                }
                rows.push(add_failure(tx, "user", &user, now)?);
                Ok(Ok(LoginAttempt { rows }))
            })
            .await
    }

    /// Takes back the failures [`LoginGuard::begin`] counted: successful
    /// logins never count.
    pub async fn succeeded(&self, attempt: LoginAttempt) {
        let taken = self
            .db
            .write(move |tx| {
                for id in &attempt.rows {
                    tx.execute("DELETE FROM login_failures WHERE id = ?1", &[id])?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = taken {
            tracing::warn!(error = %e.message, "a login's failure count could not be taken back");
        }
    }

    /// Checks `password` against `phc` (or, for an unknown user, against a
    /// dummy hash, so both cost the same) on one of the bounded checkers.
    ///
    /// # Errors
    /// [`TooManyLogins`] when too many checks are already waiting.
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<Result<bool, ApiError>, TooManyLogins> {
        let busy = || TooManyLogins {
            retry_after: 1,
            message: "too many logins at once; try again in a moment",
        };
        let Ok(_queued) = Arc::clone(&self.waiting).try_acquire_owned() else {
            return Err(busy());
        };
        let Ok(permit) = Arc::clone(&self.checkers).acquire_owned().await else {
            return Err(busy());
        };
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy_hash.clone());
        let memories = Arc::clone(&self.memories);
        let checked = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut memory = memories
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .unwrap_or_default();
            let ok = verify_with(password.as_bytes(), &phc, &mut memory);
            memories
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(memory);
            ok
        })
        .await;
        Ok(checked.map(|ok| ok && known).map_err(ApiError::from))
    }
}

/// Hashes `password` with argon2's defaults and a random salt (a PHC string,
/// as [`crate::auth::hash_password`] makes) in `memory`.
fn hash_with(password: &[u8], memory: &mut Vec<Block>) -> Result<String, ApiError> {
    use argon2::password_hash::rand_core::OsRng;
    use argon2::password_hash::{Output, ParamsString, SaltString};
    let fail = |e: &dyn std::fmt::Display| ApiError::internal(format!("argon2: {e}"));
    let params = Params::default();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(|e| fail(&e))?;
    memory.resize(params.block_count(), Block::new());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::default(), Version::default(), params.clone())
        .hash_password_into_with_memory(password, salt_raw, &mut out, &mut memory[..])
        .map_err(|e| fail(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(&params).map_err(|e| fail(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(hash.to_string())
}

/// Verifies a password against an argon2 PHC string in `memory`, which is
/// grown once to the size the hash asks for and then reused.
fn verify_with(password: &[u8], phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let expected = expected.as_bytes();
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .is_err()
    {
        return false;
    }
    // Constant time: every byte is compared whatever the first difference.
    out.iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_the_crate() {
        let mut memory = Vec::new();
        let phc = hash_with(b"demo", &mut memory).unwrap();
        let parsed = PasswordHash::new(&phc).unwrap();
        use argon2::PasswordVerifier;
        assert!(Argon2::default().verify_password(b"demo", &parsed).is_ok());
        assert!(verify_with(b"demo", &phc, &mut memory));
    }

    #[test]
    fn verifies_like_the_crate() {
        let phc = crate::auth::hash_password("demo").unwrap();
        let mut memory = Vec::new();
        assert!(verify_with(b"demo", &phc, &mut memory));
        assert!(!verify_with(b"demO", &phc, &mut memory));
        assert!(!verify_with(b"demo", "garbage", &mut memory));
        let len = memory.len();
        assert!(verify_with(b"demo", &phc, &mut memory));
        assert_eq!(memory.len(), len, "memory is reused, not grown");
    }
}
