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

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::limits::{Limits, LOGIN_WINDOW};

/// Largest argon2 working memory a stored hash may ask for (64 MiB): a hash
/// with bigger parameters is treated as not matching instead of being run.
const MAX_BLOCKS: usize = 64 * 1024;

/// Entries kept per failure map before expired ones are swept.
const SWEEP_AT: usize = 10_000;

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

/// Recent failures per key within [`LOGIN_WINDOW`].
struct Failures<K> {
    recent: HashMap<K, VecDeque<Instant>>,
}

impl<K> Default for Failures<K> {
    fn default() -> Self {
        Self {
            recent: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Failures<K> {
    /// `Some(seconds to wait)` when `key` has `max` failures in the window.
    fn blocked(&mut self, key: &K, max: usize, now: Instant) -> Option<u64> {
        let times = self.recent.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
        {
            times.pop_front();
        }
        if times.is_empty() {
            self.recent.remove(key);
            return None;
        }
        if times.len() < max {
            return None;
        }
        let oldest = *times.front()?;
        let wait = LOGIN_WINDOW.saturating_sub(now.duration_since(oldest));
        Some(wait.as_secs() + 1)
    }

    fn add(&mut self, key: K, max: usize, now: Instant) {
        if self.recent.len() >= SWEEP_AT {
            self.sweep(now);
        }
        let times = self.recent.entry(key).or_default();
        times.push_back(now);
        // Only the newest `max` matter for the decision.
        while times.len() > max.max(1) {
            times.pop_front();
        }
    }

    fn take_back(&mut self, key: &K) {
        if let Some(times) = self.recent.get_mut(key) {
            times.pop_back();
            if times.is_empty() {
                self.recent.remove(key);
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.recent.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.duration_since(*t) < LOGIN_WINDOW)
        });
    }
}

#[derive(Default)]
struct Counts {
    users: Failures<String>,
    addresses: Failures<IpAddr>,
}

/// Login throttling and the bounded pool of password checkers.
pub struct LoginGuard {
    limits: Limits,
    counts: Mutex<Counts>,
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
    pub fn new(limits: &Limits) -> Result<Self, ApiError> {
        let checkers = limits.password_checks();
        // Hashed in the first checker's memory, so that memory is allocated
        // once here and reused, rather than allocated twice.
        let mut memory = Vec::new();
        let dummy_hash = hash_with(b"not a password of anyone", &mut memory)?;
        Ok(Self {
            limits: limits.clone(),
            counts: Mutex::new(Counts::default()),
            checkers: Arc::new(Semaphore::new(checkers.clamp(1, 1024))),
            waiting: Arc::new(Semaphore::new(
                (limits.password_queue + checkers).clamp(1, 1 << 20),
            )),
            memories: Arc::new(Mutex::new(vec![memory])),
            dummy_hash,
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses a login from `address` for `username` that has failed too
    /// often; otherwise counts the attempt as a failure until
    /// [`LoginGuard::succeeded`] takes it back. Counting before the password
    /// is checked keeps a burst of parallel attempts within the limit.
    ///
    /// # Errors
    /// [`TooManyLogins`].
    pub fn begin(&self, username: &str, address: Option<IpAddr>) -> Result<(), TooManyLogins> {
        let now = Instant::now();
        let mut counts = self.counts();
        let user = username.to_owned();
        if let Some(wait) = counts
            .users
            .blocked(&user, self.limits.login_failures_per_user, now)
        {
            return Err(TooManyLogins {
                retry_after: wait,
                message: "too many failed logins for this username; try again later",
            });
        }
        if let Some(addr) = address {
            if let Some(wait) =
                counts
                    .addresses
                    .blocked(&addr, self.limits.login_failures_per_address, now)
            {
                return Err(TooManyLogins {
                    retry_after: wait,
                    message: "too many failed logins from this address; try again later",
                });
            }
            counts
                .addresses
                .add(addr, self.limits.login_failures_per_address, now);
        }
        counts
            .users
            .add(user, self.limits.login_failures_per_user, now);
        Ok(())
    }

    /// Takes back the failure [`LoginGuard::begin`] counted: successful
    /// logins never count.
    pub fn succeeded(&self, username: &str, address: Option<IpAddr>) {
        let mut counts = self.counts();
        counts.users.take_back(&username.to_owned());
        if let Some(addr) = address {
            counts.addresses.take_back(&addr);
        }
    }

    /// Forgets failures older than the window (the janitor calls this).
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut counts = self.counts();
        counts.users.sweep(now);
        counts.addresses.sweep(now);
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

    #[test]
    fn failures_block_after_max_and_expire() {
        let mut f = Failures::default();
        let t = Instant::now();
        for _ in 0..5 {
            assert!(f.blocked(&"a".to_owned(), 5, t).is_none());
            f.add("a".to_owned(), 5, t);
        }
        assert!(f.blocked(&"a".to_owned(), 5, t).is_some());
        assert!(f.blocked(&"b".to_owned(), 5, t).is_none());
        assert!(f.blocked(&"a".to_owned(), 5, t + LOGIN_WINDOW).is_none());
    }
}
