use super::*;
use proptest::prelude::*;

/// What the world does next, in a simulated leader tab.
#[derive(Debug, Clone)]
enum Act {
    Press(bool),
    AnswerStart(Option<u8>),
    AnswerPoll(u8, Option<f64>),
    FailPoll(u8),
    StaleAnswer,
    Cancel,
    AnswerCancel(Option<u8>),
    Dismiss,
    Wait,
}

const STATUSES: [&str; 9] = [
    "queued",
    "downloading",
    "processing",
    "saving",
    "complete",
    "error",
    "cancelled",
    "exploded",
    "queued",
];
const FAILURES: [ErrorCode; 7] = [
    ErrorCode::Network,
    ErrorCode::Timeout,
    ErrorCode::Server,
    ErrorCode::BadResponse,
    ErrorCode::Unauthorized,
    ErrorCode::SyncNotFound,
    ErrorCode::Network,
];

fn progress() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        Just(Some(f64::NAN)),
        Just(Some(f64::INFINITY)),
        Just(Some(f64::NEG_INFINITY)),
        (-50.0f64..150.0).prop_map(Some),
    ]
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        3 => any::<bool>().prop_map(Act::Press),
        3 => prop::option::of(0u8..7).prop_map(Act::AnswerStart),
        6 => (0u8..9, progress()).prop_map(|(s, p)| Act::AnswerPoll(s, p)),
        2 => (0u8..7).prop_map(Act::FailPoll),
        1 => Just(Act::StaleAnswer),
        1 => Just(Act::Cancel),
        1 => prop::option::of(0u8..7).prop_map(Act::AnswerCancel),
        1 => Just(Act::Dismiss),
        2 => Just(Act::Wait),
    ]
}

fn config() -> impl Strategy<Value = SyncConfig> {
    (200u64..2_000, 5_000u64..60_000, 0u64..5_000, 1u32..6).prop_map(
        |(poll_ms, timeout_ms, cooldown_ms, max_poll_failures)| SyncConfig {
            poll_ms,
            timeout_ms,
            poll_timeout_ms: poll_ms * 3,
            cooldown_ms,
            max_backoff_factor: 8,
            max_poll_failures,
        },
    )
}

/// The web layer of one leader tab, with a simulated clock and a log of
/// what the reducer asked for, checked as it goes.
#[derive(Default)]
struct World {
    state: SyncState,
    config: SyncConfig,
    now: u64,
    timer: Option<u64>,
    starts: Vec<u64>,
    poll: Option<String>,
    cancel: Option<String>,
    jobs: u64,
    presses: u64,
    // What was observed.
    post_times: Vec<u64>,
    poll_times: Vec<u64>,
    histories: Vec<SyncHistoryEntry>,
    runs_begun: u64,
    follow_ups: u64,
    presses_at_last_follow_up: Option<u64>,
    run_floor: f64,
}

impl World {
    fn feed(&mut self, event: SyncEvent) -> Result<(), TestCaseError> {
        let is_press = matches!(event, SyncEvent::StartPressed { .. });
        let now = event.now();
        let state = std::mem::take(&mut self.state);
        let (state, effects) = reduce(state, event, &self.config);
        self.state = state;
        let mut terminal_broadcasts = 0;
        let mut recorded = 0;
        for effect in effects {
            match effect {
                SyncEffect::PostStart { run, .. } => {
                    if let Some(last) = self.post_times.last() {
                        prop_assert!(now - last >= self.config.cooldown_ms, "cooldown broken");
                    }
                    prop_assert_eq!(
                        self.runs_begun,
                        self.histories.len() as u64,
                        "two runs at once"
                    );
                    self.post_times.push(now);
                    self.runs_begun += 1;
                    self.starts.push(run);
                    self.run_floor = 0.0;
                    if !is_press {
                        // A follow-up: it needs a press since the last one.
                        self.follow_ups += 1;
                        prop_assert!(
                            self.presses_at_last_follow_up != Some(self.presses),
                            "two follow-ups from the same presses"
                        );
                        self.presses_at_last_follow_up = Some(self.presses);
                    }
                }
                SyncEffect::Poll {
                    sync_id,
                    timeout_ms,
                } => {
                    // A poll of an ended run may still be out (its answer
                    // is stale); two of one job at once never.
                    prop_assert!(self.poll.as_ref() != Some(&sync_id), "two polls in flight");
                    if let Some(last) = self.poll_times.last() {
                        prop_assert!(
                            now - last >= self.config.poll_ms,
                            "polls {} and {} too close",
                            last,
                            now
                        );
                    }
                    prop_assert!(timeout_ms >= 1 && timeout_ms <= self.config.poll_timeout_ms);
                    self.poll_times.push(now);
                    self.poll = Some(sync_id);
                }
                SyncEffect::SendCancel { sync_id } => self.cancel = Some(sync_id),
                SyncEffect::SchedulePoll { at_ms } => {
                    prop_assert!(at_ms >= now);
                    self.timer = Some(at_ms);
                }
                SyncEffect::Broadcast(shown) => {
                    prop_assert!(shown.progress.is_finite());
                    prop_assert!((0.0..=100.0).contains(&shown.progress));
                    if shown.phase.is_running() || shown.phase.is_terminal() {
                        prop_assert!(shown.progress >= self.run_floor, "progress went down");
                        self.run_floor = shown.progress;
                    }
                    if shown.phase.is_terminal() {
                        terminal_broadcasts += 1;
                    }
                }
                SyncEffect::RecordHistory(entry) => {
                    prop_assert!(
                        entry.duration_ms <= self.config.timeout_ms,
                        "run outlived the timeout"
                    );
                    recorded += 1;
                    self.histories.push(entry);
                    prop_assert_eq!(
                        self.runs_begun,
                        self.histories.len() as u64,
                        "a run ended twice"
                    );
                }
                SyncEffect::Coalesced { .. }
                | SyncEffect::StoreJob(_)
                | SyncEffect::Notify
                | SyncEffect::AskState => {}
            }
        }
        prop_assert_eq!(recorded, terminal_broadcasts, "every end is shown once");
        if self.state.is_driving() && self.state.phase.is_running() {
            let started = self.state.started_at.unwrap_or(now);
            prop_assert!(
                now < started + self.config.timeout_ms,
                "a run outlived the timeout"
            );
        }
        Ok(())
    }

    /// Lets time pass, firing the timer on time.
    fn wait(&mut self, until: u64) -> Result<(), TestCaseError> {
        while let Some(at) = self.timer.filter(|at| *at <= until) {
            self.timer = None;
            self.now = self.now.max(at);
            self.feed(SyncEvent::PollTick { now: self.now })?;
        }
        self.now = self.now.max(until);
        Ok(())
    }

    fn act(&mut self, act: Act) -> Result<(), TestCaseError> {
        let now = self.now;
        match act {
            Act::Press(to_sheet) => {
                self.presses += 1;
                let kind = if to_sheet {
                    SyncKind::ToSheet
                } else {
                    SyncKind::FromSheet
                };
                self.feed(SyncEvent::StartPressed { kind, now })
            }
            Act::AnswerStart(failure) => {
                if self.starts.is_empty() {
                    return Ok(());
                }
                let run = self.starts.remove(0);
                match failure {
                    None => {
                        self.jobs += 1;
                        let sync_id = format!("job-{}", self.jobs);
                        self.feed(SyncEvent::StartAccepted { run, sync_id, now })
                    }
                    Some(f) => self.feed(SyncEvent::StartFailed {
                        run,
                        code: FAILURES[f as usize % FAILURES.len()],
                        message: "no".into(),
                        now,
                    }),
                }
            }
            Act::AnswerPoll(s, progress) => {
                let Some(sync_id) = self.poll.take() else {
                    return Ok(());
                };
                let status = ServerSyncStatus {
                    sync_id: Some(sync_id.clone()),
                    status: Some(STATUSES[s as usize % STATUSES.len()].to_string()),
                    progress,
                    ..ServerSyncStatus::default()
                };
                self.feed(SyncEvent::PollResult {
                    sync_id,
                    status: Box::new(status),
                    now,
                })
            }
            Act::FailPoll(f) => {
                let Some(sync_id) = self.poll.take() else {
                    return Ok(());
                };
                let code = FAILURES[f as usize % FAILURES.len()];
                self.feed(SyncEvent::PollFailed { sync_id, code, now })
            }
            Act::StaleAnswer => {
                let status = ServerSyncStatus {
                    status: Some("complete".into()),
                    ..ServerSyncStatus::default()
                };
                self.feed(SyncEvent::PollResult {
                    sync_id: "job-0".into(),
                    status: Box::new(status),
                    now,
                })
            }
            Act::Cancel => self.feed(SyncEvent::CancelPressed { now }),
            Act::AnswerCancel(failure) => {
                let Some(sync_id) = self.cancel.take() else {
                    return Ok(());
                };
                match failure {
                    None => self.feed(SyncEvent::CancelDone {
                        sync_id,
                        status: None,
                        now,
                    }),
                    Some(f) => self.feed(SyncEvent::CancelFailed {
                        sync_id,
                        code: [
                            ErrorCode::Conflict,
                            ErrorCode::Network,
                            ErrorCode::SyncNotFound,
                        ][f as usize % 3],
                        now,
                    }),
                }
            }
            Act::Dismiss => self.feed(SyncEvent::Dismiss { now }),
            Act::Wait => Ok(()),
        }
    }

    /// Runs the script, then lets everything settle: every run ends.
    fn run(config: SyncConfig, script: Vec<(u64, Act)>) -> Result<World, TestCaseError> {
        let mut world = World {
            config,
            ..World::default()
        };
        for (dt, act) in script {
            world.wait(world.now + dt)?;
            world.act(act)?;
        }
        // The web layer's requests all end; the timer does the rest.
        let end = world.now + 10 * world.config.timeout_ms;
        while world.now < end {
            let dt = world.config.poll_ms;
            world.wait(world.now + dt)?;
            world.act(Act::AnswerStart(None))?;
            world.act(Act::AnswerPoll(1, Some(1.0)))?;
            world.act(Act::AnswerCancel(None))?;
        }
        Ok(world)
    }
}

proptest! {
    // 256 cases unless PROPTEST_CASES says otherwise; no regression
    // files in the source tree.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Progress, polls, timeout, cooldown and runs, checked at every step
    /// (see `World::feed`), and at the end every run has ended once.
    #[test]
    fn every_script_keeps_the_rules(
        config in config(),
        script in prop::collection::vec((0u64..4_000, act()), 0..120),
    ) {
        let world = World::run(config, script)?;
        prop_assert!(!world.state.phase.is_running(), "a run never ended: {:?}", world.state.phase);
        prop_assert_eq!(world.runs_begun, world.histories.len() as u64);
        prop_assert!(world.runs_begun <= world.presses);
        prop_assert!(world.follow_ups <= world.presses);
    }

    /// Presses however fast: one run plus at most one follow-up per run,
    /// and never more starts than the cooldown allows.
    #[test]
    fn presses_fold_into_at_most_one_follow_up(
        gaps in prop::collection::vec(0u64..500, 1..40),
    ) {
        let config = SyncConfig::default();
        let mut world = World { config, ..World::default() };
        for gap in gaps {
            world.wait(world.now + gap)?;
            world.act(Act::Press(false))?;
            world.act(Act::AnswerStart(None))?;
        }
        // While presses came (each < 500 ms apart, no job ended), at
        // most the first run started.
        prop_assert_eq!(world.runs_begun, 1);
        prop_assert_eq!(world.state.follow_up().is_some(), world.presses > 1);
        let end = world.now + 3 * world.config.timeout_ms;
        while world.now < end {
            world.wait(world.now + 1_000)?;
            world.act(Act::AnswerStart(None))?;
            world.act(Act::AnswerPoll(4, Some(100.0)))?;
        }
        prop_assert_eq!(world.runs_begun, if world.presses > 1 { 2 } else { 1 });
        prop_assert_eq!(world.histories.len() as u64, world.runs_begun);
    }
}
