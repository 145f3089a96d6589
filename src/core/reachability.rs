//! Whether the server can be reached, as the client decides it: not
//! `navigator.onLine` alone.
//!
//! `navigator.onLine` says only that the machine has a network. A connection
//! reset, a proxy's 502 or a request that timed out says nothing about it,
//! and the browser never fires `online` afterwards. So after such a failure
//! the client marks the server unreachable and probes it (a cheap
//! authenticated GET) with backoff from [`PROBE_BASE_MS`] up to
//! [`PROBE_MAX_MS`], with jitter, and at once when the page tells it
//! something may have changed (`online`, focus, a visible page). The first
//! answer of the server, any answer, makes it reachable again.
//!
//! A pure machine: time and the jitter sample are passed in; the caller
//! sets a timer for [`Reachability::next_probe_at`] and sends the probe when
//! [`Reachability::take_due_probe`] says so.

use crate::core::retry::{Jitter, RetryPolicy};

/// The first probe after a failure waits about this long.
pub const PROBE_BASE_MS: u64 = 1_000;
/// No probe waits longer than this.
pub const PROBE_MAX_MS: u64 = 30_000;

const PROBE_BACKOFF: RetryPolicy = RetryPolicy {
    attempts: u32::MAX,
    base_delay_ms: PROBE_BASE_MS,
    max_delay_ms: PROBE_MAX_MS,
    // Never at once (a failed probe followed by another at once would
    // hammer a server that is coming up), never in step with other tabs.
    jitter: Jitter::Equal,
};

/// How a request ended, as reachability cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The server answered (any status a server gives itself: 2xx, 4xx,
    /// 500): it can be reached.
    Answered,
    /// No answer, or one only a proxy or a down server gives: a network
    /// error, a timeout, 502, 503 or 504.
    Unreachable,
}

impl Answer {
    /// Classifies an HTTP status (`None`: no answer at all).
    pub fn of_status(status: Option<u16>) -> Answer {
        match status {
            None | Some(502..=504) => Answer::Unreachable,
            Some(_) => Answer::Answered,
        }
    }
}

/// What changed with an event: whether [`Reachability::online`] flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "tell the app when online changes"]
pub struct Changed(pub bool);

/// The reachability of the server for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachability {
    /// The browser says it has a network (`navigator.onLine`, the
    /// `online`/`offline` events).
    network: bool,
    /// The server answered the last request or probe.
    server: bool,
    /// Probes failed since the server was last reached.
    failed_probes: u32,
    /// When the next probe is due, while the server is not reachable.
    probe_at: Option<u64>,
    /// A probe is under way.
    probing: bool,
}

impl Reachability {
    /// Starts from what the browser says; the server is believed reachable
    /// until a request says otherwise.
    pub fn new(network: bool) -> Self {
        Self {
            network,
            server: true,
            failed_probes: 0,
            probe_at: None,
            probing: false,
        }
    }

    /// `status.online`: the browser has a network and the server answered
    /// lately.
    pub fn online(&self) -> bool {
        self.network && self.server
    }

    /// Whether the browser says it has a network at all.
    pub fn network(&self) -> bool {
        self.network
    }

    /// When a probe should be sent (the time to set a timer for).
    pub fn next_probe_at(&self) -> Option<u64> {
        if self.network && !self.probing {
            self.probe_at
        } else {
            None
        }
    }

    /// Whether a probe is due at `now`; if so it counts as under way until
    /// [`Reachability::probed`] is told how it ended.
    pub fn take_due_probe(&mut self, now_ms: u64) -> bool {
        match self.next_probe_at() {
            Some(at) if at <= now_ms => {
                self.probing = true;
                true
            }
            _ => false,
        }
    }

    /// A request (not a probe) ended.
    pub fn request_ended(&mut self, answer: Answer, now_ms: u64, sample: f64) -> Changed {
        let was = self.online();
        match answer {
            Answer::Answered => self.reached(),
            Answer::Unreachable => {
                if self.server {
                    self.server = false;
                    self.failed_probes = 0;
                    self.schedule(now_ms, sample);
                }
            }
        }
        Changed(was != self.online())
    }

    /// The probe under way ended.
    pub fn probed(&mut self, answer: Answer, now_ms: u64, sample: f64) -> Changed {
        let was = self.online();
        self.probing = false;
        match answer {
            Answer::Answered => self.reached(),
            Answer::Unreachable => {
                self.server = false;
                self.failed_probes = self.failed_probes.saturating_add(1);
                self.schedule(now_ms, sample);
            }
        }
        Changed(was != self.online())
    }

    /// The browser says it has (`true`) or lost (`false`) its network.
    /// Regaining it probes at once: the server is reachable when it answers.
    pub fn network_changed(&mut self, network: bool, now_ms: u64) -> Changed {
        let was = self.online();
        self.network = network;
        if network {
            self.server = false;
            self.failed_probes = 0;
            self.probe_at = Some(now_ms);
        }
        Changed(was != self.online())
    }

    /// Something suggests the network may be back (window focus, a page
    /// made visible): probe now if the server is not reachable.
    pub fn nudge(&mut self, now_ms: u64) {
        if !self.server {
            self.probe_at = Some(now_ms);
        }
    }

    fn reached(&mut self) {
        self.server = true;
        self.failed_probes = 0;
        self.probe_at = None;
    }

    fn schedule(&mut self, now_ms: u64, sample: f64) {
        let delay = PROBE_BACKOFF.delay_ms(self.failed_probes.saturating_add(1), sample);
        self.probe_at = Some(now_ms.saturating_add(delay));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reset_probes_in_about_a_second_and_an_answer_brings_it_back() {
        let mut r = Reachability::new(true);
        assert!(r.online());
        assert_eq!(
            r.request_ended(Answer::Unreachable, 10_000, 0.0),
            Changed(true)
        );
        assert!(!r.online());
        let at = r.next_probe_at().expect("a probe is scheduled");
        assert!((10_500..=11_000).contains(&at), "{at}");
        assert!(!r.take_due_probe(at - 1));
        assert!(r.take_due_probe(at));
        // One probe at a time.
        assert!(!r.take_due_probe(at + 5_000));
        assert_eq!(r.next_probe_at(), None);
        assert_eq!(r.probed(Answer::Answered, at + 20, 0.5), Changed(true));
        assert!(r.online());
        assert_eq!(r.next_probe_at(), None);
    }

    #[test]
    fn failed_probes_back_off_to_thirty_seconds() {
        let mut r = Reachability::new(true);
        let _ = r.request_ended(Answer::Unreachable, 0, 0.99);
        let mut now = 0;
        let mut gaps = Vec::new();
        for _ in 0..10 {
            let at = r.next_probe_at().unwrap();
            gaps.push(at - now);
            now = at;
            assert!(r.take_due_probe(now));
            let _ = r.probed(Answer::Unreachable, now, 0.99);
        }
        assert!(
            gaps[0] < 1_000 && gaps[1] < 2_000 && gaps[2] < 4_000,
            "{gaps:?}"
        );
        assert!(gaps.windows(2).all(|w| w[0] <= w[1]), "{gaps:?}");
        assert!(
            gaps[9] <= PROBE_MAX_MS && gaps[9] >= PROBE_MAX_MS / 2,
            "{gaps:?}"
        );
        assert!(!r.online());
    }

    #[test]
    fn focus_or_a_visible_page_probes_at_once() {
        let mut r = Reachability::new(true);
        let _ = r.request_ended(Answer::Unreachable, 0, 0.5);
        r.nudge(100);
        assert_eq!(r.next_probe_at(), Some(100));
        // While reachable a nudge does nothing.
        let mut up = Reachability::new(true);
        up.nudge(5);
        assert_eq!(up.next_probe_at(), None);
    }

    #[test]
    fn without_a_network_nothing_is_probed_and_regaining_it_probes_first() {
        let mut r = Reachability::new(true);
        assert_eq!(r.network_changed(false, 0), Changed(true));
        assert_eq!(r.request_ended(Answer::Unreachable, 0, 0.0), Changed(false));
        assert_eq!(r.next_probe_at(), None);
        // Back online: not believed until the server answers.
        assert_eq!(r.network_changed(true, 50), Changed(false));
        assert!(!r.online());
        assert!(r.take_due_probe(50));
        assert_eq!(r.probed(Answer::Answered, 60, 0.0), Changed(true));
    }

    #[test]
    fn statuses_that_say_unreachable() {
        for s in [None, Some(502), Some(503), Some(504)] {
            assert_eq!(Answer::of_status(s), Answer::Unreachable, "{s:?}");
        }
        for s in [200, 201, 401, 404, 409, 429, 500] {
            assert_eq!(Answer::of_status(Some(s)), Answer::Answered, "{s}");
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    proptest::proptest! {
        /// Whatever happens, the machine is online exactly when the network
        /// is up and the last word from the server was an answer, and while
        /// it is not online with a network there is always a probe ahead or
        /// under way (it never gives up, so no reload is ever needed).
        #[test]
        fn never_stranded(steps in proptest::collection::vec((0u8..6, 0u64..40_000, 0.0f64..1.0), 1..60)) {
            let mut r = Reachability::new(true);
            let mut now = 0u64;
            for (kind, dt, sample) in steps {
                now += dt;
                match kind {
                    0 => { let _ = r.request_ended(Answer::Unreachable, now, sample); }
                    1 => { let _ = r.request_ended(Answer::Answered, now, sample); }
                    2 => { let _ = r.network_changed(sample < 0.3, now); }
                    3 => r.nudge(now),
                    _ => {
                        if r.take_due_probe(now) {
                            let answer = if kind == 4 { Answer::Answered } else { Answer::Unreachable };
                            let _ = r.probed(answer, now, sample);
                        }
                    }
                }
                if r.network && !r.online() {
                    proptest::prop_assert!(r.probing || r.next_probe_at().is_some());
                }
                if let Some(at) = r.next_probe_at() {
                    proptest::prop_assert!(at <= now + PROBE_MAX_MS);
                }
            }
        }
    }
}
