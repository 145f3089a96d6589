//! The engine's requests apart from the outbox (a load's pages, a read a
//! caller waits for): when one failed, whether it is tried again and
//! when. The runner sends them; the decision is here, beside the outbox's
//! own retries.

use super::{ClientEngine, Refusal};
use crate::core::code::ErrorCode;

/// What follows a failed request of the runner's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextTry {
    /// A 401: the session ended; the caller hears the failure.
    EndSession,
    /// Not worth trying again (a refusal, no retries left, offline).
    GiveUp,
    /// Try the same request again (its `Idempotency-Key` included) after
    /// this many ms.
    After(u64),
}

impl ClientEngine {
    /// After `failures` failures in a row (1 for the first), the last
    /// `refusal`: network errors, timeouts, 5xx and 429 are tried again per
    /// the retry policy while the server is reachable, never later than
    /// `Retry-After` asks (within the policy's cap); `sample` is a uniform
    /// draw in `[0, 1)` for the jitter.
    pub fn next_try(&self, failures: u32, refusal: &Refusal, sample: f64) -> NextTry {
        if refusal.code == ErrorCode::Unauthorized {
            return NextTry::EndSession;
        }
        let policy = &self.config.retry;
        if !refusal.transient || !policy.allows(failures) || !self.is_online() {
            return NextTry::GiveUp;
        }
        NextTry::After(policy.delay_with_retry_after(failures, sample, refusal.retry_after_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::{EngineConfig, Event, IdSource};

    fn refusal(status: Option<u16>, code: ErrorCode, retry_after_ms: Option<u64>) -> Refusal {
        Refusal {
            status,
            code,
            transient: status.is_none_or(|s| s >= 500 || s == 429),
            retry_after_ms,
            message: String::new(),
            current: None,
            details: None,
        }
    }

    fn engine() -> ClientEngine {
        ClientEngine::new(
            EngineConfig::default(),
            "alice",
            true,
            true,
            IdSource::new(7),
        )
    }

    #[test]
    fn a_401_ends_the_session_and_a_refusal_is_not_tried_again() {
        let engine = engine();
        let unauthorized = refusal(Some(401), ErrorCode::Unauthorized, None);
        assert_eq!(engine.next_try(1, &unauthorized, 0.5), NextTry::EndSession);
        let invalid = refusal(Some(422), ErrorCode::Invalid, None);
        assert_eq!(engine.next_try(1, &invalid, 0.5), NextTry::GiveUp);
    }

    #[test]
    fn transient_failures_are_tried_again_until_the_policy_says_no() {
        let engine = engine();
        let down = refusal(Some(503), ErrorCode::Server, None);
        let attempts = engine.config.retry.attempts;
        for failures in 1..=attempts {
            assert!(matches!(
                engine.next_try(failures, &down, 0.5),
                NextTry::After(_)
            ));
        }
        assert_eq!(engine.next_try(attempts + 1, &down, 0.5), NextTry::GiveUp);
    }

    #[test]
    fn retry_after_is_honoured_within_the_cap() {
        let engine = engine();
        let busy = refusal(Some(429), ErrorCode::Server, Some(7_000));
        let NextTry::After(ms) = engine.next_try(1, &busy, 0.0) else {
            panic!("a 429 is tried again");
        };
        assert!(ms >= 7_000.min(engine.config.retry.max_delay_ms));
    }

    #[test]
    fn nothing_is_tried_again_while_offline() {
        let mut engine = engine();
        engine.handle(Event::Network(false), 0);
        let lost = refusal(None, ErrorCode::Network, None);
        assert_eq!(engine.next_try(1, &lost, 0.5), NextTry::GiveUp);
    }
}
