//! Backoff with jitter, and which failures are worth another try.
//!
//! Only failures where trying again can help are retried: the request never
//! arrived or its answer was lost (network, timeout), the server failed (5xx),
//! or asked us to slow down (429). Any other 4xx is the server saying no, and
//! asking again with the same body gets the same no.
//!
//! Randomness is passed in (`sample` in `[0, 1)`) so tests are exact and the
//! web layer picks its source (`Math.random()` is fine for jitter).
//!
//! ```no_run
//! use crm_sync::core::retry::{Failure, RetryDecision, RetryPolicy};
//!
//! let policy = RetryPolicy::default();
//! match policy.decide(&Failure::Status(503), 1, 0.42, None) {
//!     RetryDecision::RetryIn { delay_ms } => { /* set a timer */ }
//!     RetryDecision::GiveUp(_) => { /* report the error */ }
//! }
//! ```

use serde::{Deserialize, Serialize};

use crate::core::overlap::{days_from_civil, days_in_month, Cursor};

/// How the random part of a delay is drawn (see AWS's "Exponential Backoff
/// And Jitter"). Both spread the retries of many clients that failed at the
/// same moment, so they do not hit the recovering server together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Jitter {
    /// Anywhere in `[0, cap)`: the widest spread.
    #[default]
    Full,
    /// In `[cap / 2, cap)`: never retries almost at once.
    Equal,
}

/// When to try a failed request again. The defaults are those of docs/guide/getting-started.md:
/// `retry: { attempts: 4, baseDelayMs: 500, maxDelayMs: 8000 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryPolicy {
    /// How many retries follow the first failed try (as TanStack Query's
    /// `retry: n`); 0 never retries.
    pub attempts: u32,
    /// The cap of the first retry's delay; each further retry doubles it.
    pub base_delay_ms: u64,
    /// No delay is longer than this, `Retry-After` included.
    pub max_delay_ms: u64,
    /// How the delay is randomised.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay_ms: 500,
            max_delay_ms: 8_000,
            jitter: Jitter::Full,
        }
    }
}

/// How a request failed, as far as retrying cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Failure {
    /// The request did not reach the server or the answer was lost.
    Network,
    /// No answer within the request timeout.
    Timeout,
    /// The server answered with this non-success HTTP status.
    Status(u16),
}

/// Whether trying again can help: network errors, timeouts, 5xx and 429.
/// Every other status, 4xx included (even 408), is final: the server
/// understood the request and refused it.
pub fn is_transient(failure: &Failure) -> bool {
    match failure {
        Failure::Network | Failure::Timeout => true,
        Failure::Status(status) => *status == 429 || (500..=599).contains(status),
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this many milliseconds.
    RetryIn {
        /// The delay, jittered and bounded by `max_delay_ms`.
        delay_ms: u64,
    },
    /// Stop and report the failure.
    GiveUp(GiveUpReason),
}

/// Why no further try is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The failure is not transient (a 4xx other than 429).
    Permanent,
    /// Every allowed retry was used.
    Exhausted,
}

impl RetryPolicy {
    /// The delay cap of retry number `retry` (1 for the first retry):
    /// `base * 2^(retry - 1)`, at most `max_delay_ms`.
    pub fn backoff_cap_ms(&self, retry: u32) -> u64 {
        let doublings = retry.saturating_sub(1).min(63);
        let factor = 1_u64.checked_shl(doublings).unwrap_or(u64::MAX);
        self.base_delay_ms
            .saturating_mul(factor)
            .min(self.max_delay_ms)
    }

    /// The jittered delay of retry number `retry`, from `sample` in `[0, 1)`
    /// (values outside are clamped; NaN counts as 0).
    pub fn delay_ms(&self, retry: u32, sample: f64) -> u64 {
        let cap = self.backoff_cap_ms(retry);
        let sample = if sample.is_nan() {
            0.0
        } else {
            sample.clamp(0.0, 1.0)
        };
        // `cap` is at most `max_delay_ms`, so the float round trip is exact
        // for any delay a person would configure.
        let part = |span: u64| ((span as f64) * sample).floor() as u64;
        match self.jitter {
            Jitter::Full => part(cap).min(cap),
            Jitter::Equal => {
                let half = cap / 2;
                half.saturating_add(part(cap - half)).min(cap)
            }
        }
    }

    /// Whether retry number `retry` (1 for the first) is still allowed.
    pub fn allows(&self, retry: u32) -> bool {
        retry >= 1 && retry <= self.attempts
    }

    /// What to do after the `failures`-th failure of one request (1 after
    /// the first try failed). `retry_after_ms` is the server's `Retry-After`
    /// (see [`parse_retry_after`]): the delay is never shorter than it, nor
    /// longer than `max_delay_ms`.
    pub fn decide(
        &self,
        failure: &Failure,
        failures: u32,
        sample: f64,
        retry_after_ms: Option<u64>,
    ) -> RetryDecision {
        if !is_transient(failure) {
            return RetryDecision::GiveUp(GiveUpReason::Permanent);
        }
        if !self.allows(failures) {
            return RetryDecision::GiveUp(GiveUpReason::Exhausted);
        }
        RetryDecision::RetryIn {
            delay_ms: self.delay_with_retry_after(failures, sample, retry_after_ms),
        }
    }

    /// The delay before retry number `retry`, honouring `Retry-After`
    /// (bounded by `max_delay_ms`, so a server cannot park a client for hours).
    pub fn delay_with_retry_after(
        &self,
        retry: u32,
        sample: f64,
        retry_after_ms: Option<u64>,
    ) -> u64 {
        let jittered = self.delay_ms(retry, sample);
        match retry_after_ms {
            Some(asked) => jittered.max(asked.min(self.max_delay_ms)),
            None => jittered,
        }
    }
}

/// Reads a `Retry-After` header: delta seconds (`"120"`), or an HTTP date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`) when `now_ms` is given (without a
/// clock a date is ignored). The result is bounded by `max_delay_ms`; a date
/// in the past means no wait. Anything unreadable is `None`.
pub fn parse_retry_after(value: &str, now_ms: Option<u64>, max_delay_ms: u64) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Very long digit strings overflow u64: they are "very long" anyway.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(seconds.saturating_mul(1_000).min(max_delay_ms));
    }
    let at_ms = parse_http_date_ms(value)?;
    let now_ms = i64::try_from(now_ms?).ok()?;
    let wait = at_ms.saturating_sub(now_ms).max(0);
    Some(u64::try_from(wait).unwrap_or(0).min(max_delay_ms))
}

/// Parses the IMF-fixdate form of an HTTP date (RFC 9110 §5.6.7), the only
/// one servers may send; the obsolete forms are ignored (`None`).
fn parse_http_date_ms(value: &str) -> Option<i64> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let mut cursor = Cursor::new(value.as_bytes());
    // The day name is redundant; skip it without checking it.
    for _ in 0..3 {
        cursor.next().filter(u8::is_ascii_alphabetic)?;
    }
    cursor.skip_byte(b',')?;
    cursor.skip_byte(b' ')?;
    let day = cursor.digits(2)?;
    cursor.skip_byte(b' ')?;
    let name = [cursor.next()?, cursor.next()?, cursor.next()?];
    let month = MONTHS.iter().position(|candidate| **candidate == name)?;
    let month = i64::try_from(month).ok()? + 1;
    cursor.skip_byte(b' ')?;
    let year = cursor.digits(4)?;
    cursor.skip_byte(b' ')?;
    let hour = cursor.digits(2)?;
    cursor.skip_byte(b':')?;
    let minute = cursor.digits(2)?;
    cursor.skip_byte(b':')?;
    let second = cursor.digits(2)?;
    if cursor.rest() != b" GMT" {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_api() {
        let policy = RetryPolicy::default();
        assert_eq!(
            (policy.attempts, policy.base_delay_ms, policy.max_delay_ms),
            (4, 500, 8_000)
        );
    }

    #[test]
    fn caps_grow_exponentially_up_to_the_max() {
        let policy = RetryPolicy::default();
        let caps: Vec<_> = (1..=7).map(|retry| policy.backoff_cap_ms(retry)).collect();
        assert_eq!(caps, [500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
        assert_eq!(policy.backoff_cap_ms(u32::MAX), 8_000);
        assert_eq!(policy.backoff_cap_ms(0), 500);
    }

    #[test]
    fn full_and_equal_jitter() {
        let full = RetryPolicy::default();
        assert_eq!(full.delay_ms(3, 0.0), 0);
        assert_eq!(full.delay_ms(3, 0.5), 1_000);
        assert_eq!(full.delay_ms(3, 0.999_999), 1_999);
        let equal = RetryPolicy {
            jitter: Jitter::Equal,
            ..RetryPolicy::default()
        };
        assert_eq!(equal.delay_ms(3, 0.0), 1_000);
        assert_eq!(equal.delay_ms(3, 0.5), 1_500);
        assert_eq!(equal.delay_ms(3, 0.999_999), 1_999);
        // Out-of-range samples are clamped, never a panic or an overflow.
        assert_eq!(full.delay_ms(3, f64::NAN), 0);
        assert_eq!(full.delay_ms(3, 7.0), 2_000);
        assert_eq!(full.delay_ms(3, -1.0), 0);
    }

    #[test]
    fn only_network_timeouts_5xx_and_429_are_transient() {
        assert!(is_transient(&Failure::Network));
        assert!(is_transient(&Failure::Timeout));
        for status in [429, 500, 502, 503, 504, 599] {
            assert!(is_transient(&Failure::Status(status)), "{status}");
        }
        for status in [400, 401, 403, 404, 408, 409, 410, 422, 428, 300, 600] {
            assert!(!is_transient(&Failure::Status(status)), "{status}");
        }
    }

    #[test]
    fn decide_counts_attempts() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.decide(&Failure::Status(422), 1, 0.5, None),
            RetryDecision::GiveUp(GiveUpReason::Permanent)
        );
        for failures in 1..=4 {
            assert!(matches!(
                policy.decide(&Failure::Network, failures, 0.5, None),
                RetryDecision::RetryIn { .. }
            ));
        }
        assert_eq!(
            policy.decide(&Failure::Network, 5, 0.5, None),
            RetryDecision::GiveUp(GiveUpReason::Exhausted)
        );
        let never = RetryPolicy {
            attempts: 0,
            ..policy
        };
        assert_eq!(
            never.decide(&Failure::Timeout, 1, 0.5, None),
            RetryDecision::GiveUp(GiveUpReason::Exhausted)
        );
    }

    #[test]
    fn retry_after_is_a_floor_bounded_by_the_max() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.decide(&Failure::Status(429), 1, 0.0, Some(3_000)),
            RetryDecision::RetryIn { delay_ms: 3_000 }
        );
        assert_eq!(
            policy.decide(&Failure::Status(429), 1, 0.0, Some(3_600_000)),
            RetryDecision::RetryIn { delay_ms: 8_000 }
        );
        // A shorter Retry-After does not cut the backoff.
        assert_eq!(policy.delay_with_retry_after(4, 0.5, Some(0)), 2_000);
    }

    #[test]
    fn parses_retry_after_seconds() {
        assert_eq!(parse_retry_after("3", None, 8_000), Some(3_000));
        assert_eq!(parse_retry_after(" 0 ", None, 8_000), Some(0));
        assert_eq!(parse_retry_after("120", None, 8_000), Some(8_000));
        assert_eq!(
            parse_retry_after("99999999999999999999999", None, 8_000),
            Some(8_000)
        );
        for bad in ["", "-1", "1.5", "soon", "3 s", "٣"] {
            assert_eq!(parse_retry_after(bad, Some(0), 8_000), None, "{bad:?}");
        }
    }

    #[test]
    fn parses_retry_after_dates_with_a_clock() {
        // 2015-10-21T07:28:00Z
        let at = 1_445_412_480_000_u64;
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(parse_retry_after(date, None, 8_000), None);
        assert_eq!(
            parse_retry_after(date, Some(at - 5_000), 8_000),
            Some(5_000)
        );
        assert_eq!(
            parse_retry_after(date, Some(at - 60_000), 8_000),
            Some(8_000)
        );
        assert_eq!(parse_retry_after(date, Some(at + 1), 8_000), Some(0));
        for bad in [
            "Wed, 21 Oct 2015 07:28:00 UTC",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "Wed, 21 Foo 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
        ] {
            assert_eq!(parse_retry_after(bad, Some(at), 8_000), None, "{bad:?}");
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_stay_within_their_cap(
            retry in 0_u32..100,
            sample in proptest::num::f64::ANY,
            base in 0_u64..100_000,
            max in 0_u64..1_000_000,
            equal in any::<bool>(),
        ) {
            let policy = RetryPolicy {
                attempts: 4,
                base_delay_ms: base,
                max_delay_ms: max,
                jitter: if equal { Jitter::Equal } else { Jitter::Full },
            };
            let delay = policy.delay_ms(retry, sample);
            prop_assert!(delay <= policy.backoff_cap_ms(retry));
            prop_assert!(delay <= max);
        }

        #[test]
        fn retry_after_never_panics(text in "\\PC{0,40}", now in any::<u64>()) {
            if let Some(wait) = parse_retry_after(&text, Some(now), 8_000) {
                prop_assert!(wait <= 8_000);
            }
        }
    }
}
