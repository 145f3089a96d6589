//! Open event streams, so they can be ended from outside: by logout (the
//! stream's token is revoked) and by a user's newer streams (at most
//! `streams_per_user` each; the oldest is closed).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

struct OpenStream {
    id: u64,
    token_hash: String,
    close: watch::Sender<bool>,
}

/// Every open event stream, per user.
pub struct Streams {
    per_user: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<String, VecDeque<OpenStream>>>,
}

/// One open stream's place in [`Streams`]; leaves it when dropped (the
/// client went away or the stream ended).
#[must_use = "the stream is forgotten when its ticket is dropped"]
pub struct StreamTicket {
    id: u64,
    user: String,
    streams: Arc<Streams>,
    /// Turns `true` when the stream must end.
    pub closed: watch::Receiver<bool>,
}

impl Streams {
    /// A registry allowing `per_user` open streams per user (at least 1).
    pub fn new(per_user: usize) -> Self {
        Self {
            per_user: per_user.max(1),
            next_id: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<OpenStream>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new stream of `user` opened with the token hashed as
    /// `token_hash`, closing the user's oldest streams beyond the limit.
    pub fn open(self: &Arc<Self>, user: &str, token_hash: &str) -> StreamTicket {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = watch::channel(false);
        let mut open = self.lock();
        let list = open.entry(user.to_owned()).or_default();
        while list.len() >= self.per_user {
            if let Some(oldest) = list.pop_front() {
                let _ = oldest.close.send(true);
            }
        }
        list.push_back(OpenStream {
            id,
            token_hash: token_hash.to_owned(),
            close,
        });
        StreamTicket {
            id,
            user: user.to_owned(),
            streams: Arc::clone(self),
            closed,
        }
    }

    /// Ends every stream opened with the token hashed as `token_hash`.
    pub fn revoke(&self, token_hash: &str) {
        let mut open = self.lock();
        for list in open.values_mut() {
            list.retain(|s| {
                let keep = s.token_hash != token_hash;
                if !keep {
                    let _ = s.close.send(true);
                }
                keep
            });
        }
        open.retain(|_, list| !list.is_empty());
    }

    /// Streams open now, all users.
    pub fn count(&self) -> usize {
        self.lock().values().map(VecDeque::len).sum()
    }
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        if let Some(list) = open.get_mut(&self.user) {
            list.retain(|s| s.id != self.id);
            if list.is_empty() {
                open.remove(&self.user);
            }
        }
    }
}
