use super::*;

mod forward;
mod tabs;

/// The fields of `crm.sync.state`, in key order (docs/guide/sync-jobs.md).
const STATE_KEYS: [&str; 8] = [
    "error",
    "message",
    "phase",
    "progress",
    "startedAt",
    "stats",
    "syncId",
    "updatedAt",
];

/// A leader tab with a simulated clock, remembering every effect.
struct Tab {
    state: SyncState,
    config: SyncConfig,
}

impl Tab {
    fn new() -> Self {
        Self {
            state: SyncState::default(),
            config: SyncConfig::default(),
        }
    }

    fn with(config: SyncConfig) -> Self {
        Self {
            state: SyncState::default(),
            config,
        }
    }

    fn on(&mut self, event: SyncEvent) -> Vec<SyncEffect> {
        let state = std::mem::take(&mut self.state);
        let (state, effects) = reduce(state, event, &self.config);
        self.state = state;
        effects
    }

    fn press(&mut self, now: u64) -> Vec<SyncEffect> {
        self.on(SyncEvent::StartPressed {
            kind: SyncKind::FromSheet,
            now,
        })
    }

    fn accept(&mut self, run: u64, id: &str, now: u64) -> Vec<SyncEffect> {
        self.on(SyncEvent::StartAccepted {
            run,
            sync_id: id.to_string(),
            now,
        })
    }

    fn tick(&mut self, now: u64) -> Vec<SyncEffect> {
        self.on(SyncEvent::PollTick { now })
    }

    fn result(
        &mut self,
        id: &str,
        status: &str,
        progress: Option<f64>,
        now: u64,
    ) -> Vec<SyncEffect> {
        self.on(SyncEvent::PollResult {
            sync_id: id.to_string(),
            status: Box::new(ServerSyncStatus {
                sync_id: Some(id.to_string()),
                status: Some(status.to_string()),
                progress,
                ..ServerSyncStatus::default()
            }),
            now,
        })
    }

    fn fail(&mut self, id: &str, code: ErrorCode, now: u64) -> Vec<SyncEffect> {
        self.on(SyncEvent::PollFailed {
            sync_id: id.to_string(),
            code,
            now,
        })
    }

    /// Press at 0, accepted as `job-1` at 100, first poll at 1100.
    fn running() -> Self {
        let mut tab = Tab::new();
        tab.press(0);
        tab.accept(1, "job-1", 100);
        let fx = tab.tick(1_100);
        assert!(polls(&fx) == 1);
        tab
    }
}

fn polls(fx: &[SyncEffect]) -> usize {
    fx.iter()
        .filter(|e| matches!(e, SyncEffect::Poll { .. }))
        .count()
}

fn starts(fx: &[SyncEffect]) -> usize {
    fx.iter()
        .filter(|e| matches!(e, SyncEffect::PostStart { .. }))
        .count()
}

fn history(fx: &[SyncEffect]) -> Vec<SyncHistoryEntry> {
    fx.iter()
        .filter_map(|e| match e {
            SyncEffect::RecordHistory(h) => Some(h.clone()),
            _ => None,
        })
        .collect()
}

fn scheduled(fx: &[SyncEffect]) -> Option<u64> {
    fx.iter().rev().find_map(|e| match e {
        SyncEffect::SchedulePoll { at_ms } => Some(*at_ms),
        _ => None,
    })
}

#[test]
fn a_press_posts_a_start_and_the_first_poll_waits_one_interval() {
    let mut tab = Tab::new();
    let fx = tab.press(0);
    assert_eq!(
        fx[0],
        SyncEffect::PostStart {
            run: 1,
            kind: SyncKind::FromSheet
        }
    );
    assert!(fx
        .iter()
        .any(|e| matches!(e, SyncEffect::Broadcast(s) if s.phase == SyncPhase::Starting)));
    assert!(fx.contains(&SyncEffect::Notify));
    assert_eq!(tab.state.started_at, Some(0));

    let fx = tab.accept(1, "job-1", 100);
    assert_eq!(tab.state.phase, SyncPhase::Queued);
    assert!(fx.contains(&SyncEffect::StoreJob(Some(StoredSyncJob {
        sync_id: "job-1".into(),
        kind: SyncKind::FromSheet,
        started_at: 0,
    }))));
    assert_eq!(scheduled(&fx), Some(1_100));

    assert_eq!(polls(&tab.tick(1_099)), 0);
    let fx = tab.tick(1_100);
    assert_eq!(
        fx[0],
        SyncEffect::Poll {
            sync_id: "job-1".into(),
            timeout_ms: 10_000
        }
    );
}

#[test]
fn progress_is_clamped_and_never_goes_down() {
    let mut tab = Tab::running();
    tab.result("job-1", "downloading", Some(50.0), 1_200);
    assert_eq!(tab.state.progress, 50.0);
    for (i, p) in [
        Some(30.0),
        Some(f64::NAN),
        Some(-5.0),
        None,
        Some(f64::NEG_INFINITY),
    ]
    .into_iter()
    .enumerate()
    {
        let now = 2_200 + 1_000 * i as u64;
        assert_eq!(polls(&tab.tick(now)), 1);
        tab.result("job-1", "processing", p, now);
        assert_eq!(tab.state.progress, 50.0, "after {p:?}");
    }
    tab.tick(9_000);
    tab.result("job-1", "saving", Some(250.0), 9_010);
    assert_eq!(tab.state.progress, 100.0);
    assert_eq!(tab.state.phase, SyncPhase::Saving);
}

#[test]
fn complete_ends_the_run_with_one_history_entry() {
    let mut tab = Tab::running();
    tab.on(SyncEvent::PollResult {
        sync_id: "job-1".into(),
        status: Box::new(ServerSyncStatus {
            status: Some("complete".into()),
            progress: Some(97.0),
            stats: Some(SyncStats {
                rows: 10,
                ..SyncStats::default()
            }),
            ..ServerSyncStatus::default()
        }),
        now: 1_500,
    });
    let fx = tab.on(SyncEvent::PollResult {
        sync_id: "job-1".into(),
        status: Box::new(ServerSyncStatus {
            status: Some("complete".into()),
            ..ServerSyncStatus::default()
        }),
        now: 1_600,
    });
    // The second answer is stale: the run is over.
    assert!(fx.is_empty());
    assert_eq!(tab.state.phase, SyncPhase::Complete);
    assert_eq!(tab.state.progress, 100.0);
    assert!(!tab.state.is_driving());
}

#[test]
fn completion_records_history_and_clears_the_stored_job() {
    let mut tab = Tab::running();
    let fx = tab.result("job-1", "complete", Some(100.0), 1_500);
    assert!(fx.contains(&SyncEffect::StoreJob(None)));
    assert_eq!(
        history(&fx),
        vec![SyncHistoryEntry {
            sync_id: Some("job-1".into()),
            kind: SyncKind::FromSheet,
            status: SyncOutcome::Complete,
            started_at: 0,
            finished_at: 1_500,
            duration_ms: 1_500,
            stats: None,
            error: None,
            message: None,
            conflict_rows: Vec::new(),
        }]
    );
    assert!(fx
        .iter()
        .any(|e| matches!(e, SyncEffect::Broadcast(s) if s.phase == SyncPhase::Complete)));
    // Nothing more to wake up for.
    assert_eq!(scheduled(&fx), None);
}

#[test]
fn a_status_not_of_the_protocols_shape_is_bad_response() {
    for status in [Some("exploded"), None] {
        let mut tab = Tab::running();
        let fx = tab.on(SyncEvent::PollResult {
            sync_id: "job-1".into(),
            status: Box::new(ServerSyncStatus {
                status: status.map(str::to_string),
                ..ServerSyncStatus::default()
            }),
            now: 1_200,
        });
        assert_eq!(tab.state.phase, SyncPhase::Error);
        assert_eq!(
            tab.state.error.as_ref().map(|e| e.code),
            Some(ErrorCode::BadResponse)
        );
        assert_eq!(history(&fx).len(), 1);
    }
    // Another job's status in the answer for ours.
    let mut tab = Tab::running();
    tab.on(SyncEvent::PollResult {
        sync_id: "job-1".into(),
        status: Box::new(ServerSyncStatus {
            sync_id: Some("job-9".into()),
            status: Some("saving".into()),
            ..ServerSyncStatus::default()
        }),
        now: 1_200,
    });
    assert_eq!(
        tab.state.error.map(|e| e.code),
        Some(ErrorCode::BadResponse)
    );
    // A body that did not deserialise, as the web layer reports it.
    let mut tab = Tab::running();
    tab.fail("job-1", ErrorCode::BadResponse, 1_200);
    assert_eq!(
        tab.state.error.map(|e| e.code),
        Some(ErrorCode::BadResponse)
    );
}

#[test]
fn a_failed_job_reports_the_servers_words() {
    let mut tab = Tab::running();
    tab.on(SyncEvent::PollResult {
        sync_id: "job-1".into(),
        status: Box::new(ServerSyncStatus {
            status: Some("error".into()),
            error: Some(ServerJobError::Text("sheet unreachable".into())),
            ..ServerSyncStatus::default()
        }),
        now: 1_200,
    });
    assert_eq!(
        tab.state.error,
        Some(SyncError::new(ErrorCode::Server, "sheet unreachable"))
    );
    let mut tab = Tab::running();
    tab.on(SyncEvent::PollResult {
        sync_id: "job-1".into(),
        status: Box::new(ServerSyncStatus {
            status: Some("error".into()),
            error: Some(ServerJobError::Detail {
                code: Some("unauthorized".into()),
                message: None,
            }),
            ..ServerSyncStatus::default()
        }),
        now: 1_200,
    });
    assert_eq!(
        tab.state.error.map(|e| e.code),
        Some(ErrorCode::Unauthorized)
    );
}

#[test]
fn failed_polls_back_off_doubling_up_to_a_cap_and_recover() {
    let mut tab = Tab::with(SyncConfig {
        max_poll_failures: 10,
        ..SyncConfig::default()
    });
    tab.press(0);
    tab.accept(1, "job-1", 0);
    let mut now = 1_000;
    assert_eq!(polls(&tab.tick(now)), 1);
    let mut delays = Vec::new();
    for _ in 0..5 {
        let fx = tab.fail("job-1", ErrorCode::Network, now);
        let at = scheduled(&fx).unwrap();
        delays.push(at - now);
        now = at;
        assert_eq!(polls(&tab.tick(now)), 1);
    }
    assert_eq!(delays, vec![2_000, 4_000, 8_000, 8_000, 8_000]);
    let fx = tab.result("job-1", "downloading", Some(10.0), now);
    assert_eq!(scheduled(&fx), Some(now + 1_000));
}

#[test]
fn too_many_failed_polls_end_in_network_error() {
    let mut tab = Tab::running();
    let mut now = 1_100;
    for i in 1..=5 {
        let fx = tab.fail("job-1", ErrorCode::Timeout, now);
        if i < 5 {
            now = scheduled(&fx).unwrap();
            assert_eq!(polls(&tab.tick(now)), 1);
        } else {
            assert_eq!(history(&fx).len(), 1);
        }
    }
    assert_eq!(tab.state.phase, SyncPhase::Error);
    assert_eq!(tab.state.error.map(|e| e.code), Some(ErrorCode::Network));

    // All 5xx: the server is named.
    let mut tab = Tab::running();
    let mut now = 1_100;
    for _ in 0..5 {
        let fx = tab.fail("job-1", ErrorCode::Server, now);
        if let Some(at) = scheduled(&fx) {
            now = at;
            tab.tick(now);
        }
    }
    assert_eq!(tab.state.error.map(|e| e.code), Some(ErrorCode::Server));
}

#[test]
fn the_total_timeout_ends_the_run_and_leaves_the_job_alone() {
    let mut tab = Tab::running();
    let mut now = 1_100;
    let mut fx = tab.result("job-1", "queued", None, now + 5);
    loop {
        let at = scheduled(&fx).unwrap();
        assert!(at <= 120_000);
        now = at;
        fx = tab.tick(now);
        if tab.state.phase.is_terminal() {
            break;
        }
        fx.extend(tab.result("job-1", "downloading", Some(1.0), now + 5));
    }
    assert_eq!(now, 120_000);
    assert_eq!(
        tab.state.error.as_ref().map(|e| e.code),
        Some(ErrorCode::Timeout)
    );
    assert!(!fx
        .iter()
        .any(|e| matches!(e, SyncEffect::SendCancel { .. })));
    assert_eq!(history(&fx)[0].duration_ms, 120_000);
}

#[test]
fn a_poll_never_outlives_the_total_timeout() {
    let mut tab = Tab::new();
    tab.press(0);
    tab.accept(1, "job-1", 115_000);
    let fx = tab.tick(116_000);
    assert_eq!(
        fx[0],
        SyncEffect::Poll {
            sync_id: "job-1".into(),
            timeout_ms: 4_000
        }
    );
}

#[test]
fn a_start_that_times_out_leaves_its_late_job_alone() {
    let mut tab = Tab::new();
    let fx = tab.press(0);
    assert_eq!(scheduled(&fx), Some(120_000));
    tab.tick(120_000);
    assert_eq!(
        tab.state.error.as_ref().map(|e| e.code),
        Some(ErrorCode::Timeout)
    );
    let fx = tab.accept(1, "job-1", 121_000);
    assert!(fx.is_empty());
    assert_eq!(tab.state.phase, SyncPhase::Error);
}

#[test]
fn a_failed_start_ends_the_run() {
    let mut tab = Tab::new();
    tab.press(0);
    let fx = tab.on(SyncEvent::StartFailed {
        run: 1,
        code: ErrorCode::Network,
        message: "offline".into(),
        now: 300,
    });
    assert_eq!(tab.state.phase, SyncPhase::Error);
    let h = history(&fx);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].sync_id, None);
    assert!(!fx.contains(&SyncEffect::StoreJob(None)));
}

#[test]
fn presses_within_the_cooldown_start_one_follow_up_when_it_ends() {
    let mut tab = Tab::running();
    tab.result("job-1", "complete", None, 1_200);
    let fx = tab.press(2_000);
    assert_eq!(
        fx,
        vec![
            SyncEffect::Coalesced {
                sync_id: Some("job-1".into())
            },
            SyncEffect::SchedulePoll { at_ms: 3_000 },
        ]
    );
    assert_eq!(starts(&tab.press(2_500)), 0);
    assert_eq!(starts(&tab.tick(2_999)), 0);
    let fx = tab.tick(3_000);
    assert_eq!(
        fx[0],
        SyncEffect::PostStart {
            run: 2,
            kind: SyncKind::FromSheet
        }
    );
    assert_eq!(tab.state.phase, SyncPhase::Starting);
    assert_eq!(tab.state.follow_up(), None);
}

#[test]
fn presses_while_a_job_runs_fold_into_one_follow_up() {
    let mut tab = Tab::running();
    for now in [4_000, 4_100, 4_200] {
        let fx = tab.press(now);
        assert_eq!(
            fx,
            vec![SyncEffect::Coalesced {
                sync_id: Some("job-1".into())
            }]
        );
    }
    let fx = tab.result("job-1", "complete", None, 5_000);
    assert_eq!(history(&fx).len(), 1);
    assert_eq!(starts(&fx), 1);
    // The terminal state is broadcast before the follow-up's start.
    let phases: Vec<SyncPhase> = fx
        .iter()
        .filter_map(|e| match e {
            SyncEffect::Broadcast(s) => Some(s.phase),
            _ => None,
        })
        .collect();
    assert_eq!(phases, vec![SyncPhase::Complete, SyncPhase::Starting]);
    tab.accept(2, "job-2", 5_100);
    tab.tick(6_100);
    let fx = tab.result("job-2", "complete", None, 6_200);
    assert_eq!(starts(&fx), 0, "no second follow-up without a new press");
    assert_eq!(tab.state.phase, SyncPhase::Complete);
}

#[test]
fn cancel_before_the_job_exists_is_local_and_cancels_the_late_job() {
    let mut tab = Tab::new();
    tab.press(0);
    let fx = tab.on(SyncEvent::CancelPressed { now: 50 });
    assert_eq!(tab.state.phase, SyncPhase::Cancelled);
    assert_eq!(history(&fx)[0].status, SyncOutcome::Cancelled);
    let fx = tab.accept(1, "job-1", 80);
    assert_eq!(
        fx,
        vec![SyncEffect::SendCancel {
            sync_id: "job-1".into()
        }]
    );
    assert_eq!(tab.state.phase, SyncPhase::Cancelled);
}

#[test]
fn cancel_with_a_job_asks_the_server_once() {
    let mut tab = Tab::running();
    tab.press(1_150); // a follow-up, which cancel drops
    let fx = tab.on(SyncEvent::CancelPressed { now: 1_200 });
    assert!(fx.contains(&SyncEffect::SendCancel {
        sync_id: "job-1".into()
    }));
    let fx = tab.on(SyncEvent::CancelPressed { now: 1_210 });
    assert!(!fx
        .iter()
        .any(|e| matches!(e, SyncEffect::SendCancel { .. })));
    let fx = tab.on(SyncEvent::CancelDone {
        sync_id: "job-1".into(),
        status: None,
        now: 1_300,
    });
    assert_eq!(tab.state.phase, SyncPhase::Cancelled);
    assert_eq!(history(&fx).len(), 1);
    assert_eq!(starts(&fx), 0);
    assert!(tab
        .on(SyncEvent::CancelDone {
            sync_id: "job-1".into(),
            status: None,
            now: 1_400
        })
        .is_empty());
}

/// The server's answer to the cancel counts the rows the job wrote before
/// it stopped: the state, the history line and so every screen show those,
/// not the counters of the last poll (docs/backend/protocol.md, "Cancelling
/// and conflicts of a sync job").
#[test]
fn a_cancelled_run_keeps_the_counts_of_the_cancel_answer() {
    let mut tab = Tab::running();
    tab.result("job-1", "downloading", Some(30.0), 1_150);
    tab.on(SyncEvent::CancelPressed { now: 1_200 });
    let written = SyncStats {
        rows: 1_400,
        inserted: 600,
        updated: 12,
        ..SyncStats::default()
    };
    let said = "Cancelled after 612 of 1,400 rows: 600 new, 12 updated";
    let fx = tab.on(SyncEvent::CancelDone {
        sync_id: "job-1".into(),
        status: Some(Box::new(ServerSyncStatus {
            sync_id: Some("job-1".into()),
            status: Some("cancelled".into()),
            progress: Some(87.0),
            message: Some(said.into()),
            stats: Some(written),
            ..ServerSyncStatus::default()
        })),
        now: 1_300,
    });
    assert_eq!(tab.state.phase, SyncPhase::Cancelled);
    assert_eq!(tab.state.stats, Some(written));
    assert_eq!(tab.state.message.as_deref(), Some(said));
    assert_eq!(tab.state.progress, 87.0);
    let line = &history(&fx)[0];
    assert_eq!(line.stats, Some(written));
    assert_eq!(line.message.as_deref(), Some(said));
}

#[test]
fn cancel_of_a_finished_job_keeps_following_until_the_poll_says_how() {
    let mut tab = Tab::running();
    tab.result("job-1", "saving", Some(90.0), 1_150);
    tab.on(SyncEvent::CancelPressed { now: 1_200 });
    tab.on(SyncEvent::CancelFailed {
        sync_id: "job-1".into(),
        code: ErrorCode::Conflict,
        now: 1_250,
    });
    assert_eq!(tab.state.phase, SyncPhase::Saving);
    assert_eq!(polls(&tab.tick(2_150)), 1);
    tab.result("job-1", "complete", None, 2_200);
    assert_eq!(tab.state.phase, SyncPhase::Complete);
}

#[test]
fn cancel_when_nothing_runs_changes_nothing() {
    let mut tab = Tab::new();
    assert!(tab.on(SyncEvent::CancelPressed { now: 5 }).is_empty());
    assert_eq!(tab.state.phase, SyncPhase::Idle);
}

#[test]
fn a_finished_job_from_the_server_is_a_history_line() {
    let job = ServerSyncStatus {
        sync_id: Some("s-1".into()),
        kind: Some("to-sheet".into()),
        status: Some("error".into()),
        error: Some(ServerJobError::Text("sheet unreachable".into())),
        created_at: Some("2026-12-04T10:00:00Z".into()),
        updated_at: Some("2026-12-04T10:00:03Z".into()),
        ..ServerSyncStatus::default()
    };
    let line = job.as_history().unwrap();
    assert_eq!(line.sync_id.as_deref(), Some("s-1"));
    assert_eq!(
        (line.kind, line.status),
        (SyncKind::ToSheet, SyncOutcome::Error)
    );
    assert_eq!(line.duration_ms, 3_000);
    assert_eq!(line.error.unwrap().message, "sheet unreachable");
    // Still going, or without readable times: not a line.
    for status in ["queued", "downloading"] {
        let going = ServerSyncStatus {
            status: Some(status.into()),
            ..job.clone()
        };
        assert!(going.as_history().is_none());
    }
    let undated = ServerSyncStatus {
        updated_at: Some("yesterday".into()),
        ..job
    };
    assert!(undated.as_history().is_none());
}

#[test]
fn a_finished_jobs_conflicting_rows_are_in_its_history_line() {
    let job: ServerSyncStatus = serde_json::from_value(serde_json::json!({
        "syncId": "s-2", "kind": "from-sheet", "status": "complete",
        "stats": { "conflicts": 1 },
        "conflictRows": [{ "id": "c-0010", "line": 11, "reason": "changed",
            "version": 2, "updatedBy": "bob", "message": "changed by bob" }],
        "createdAt": "2026-12-04T10:00:00Z", "updatedAt": "2026-12-04T10:00:01Z"
    }))
    .unwrap();
    let line = job.as_history().unwrap();
    assert_eq!(
        line.conflict_rows,
        [SyncConflictRow {
            id: "c-0010".into(),
            line: Some(11),
            reason: "changed".into(),
            version: Some(2),
            updated_by: Some("bob".into()),
            message: "changed by bob".into(),
        }]
    );
    // A line kept before rows were listed reads as none.
    let mut old = serde_json::to_value(&line).unwrap();
    old.as_object_mut().unwrap().remove("conflictRows");
    let old: SyncHistoryEntry = serde_json::from_value(old).unwrap();
    assert!(old.conflict_rows.is_empty());
}

#[test]
fn sync_not_found_while_following_is_an_error_and_a_new_start_works() {
    let mut tab = Tab::running();
    let fx = tab.fail("job-1", ErrorCode::SyncNotFound, 1_200);
    assert_eq!(
        tab.state.error.as_ref().map(|e| e.code),
        Some(ErrorCode::SyncNotFound)
    );
    assert_eq!(history(&fx).len(), 1);
    let fx = tab.press(3_000);
    assert_eq!(
        fx[0],
        SyncEffect::PostStart {
            run: 2,
            kind: SyncKind::FromSheet
        }
    );
    assert_eq!(tab.state.error, None);
    assert_eq!(tab.state.progress, 0.0);
}

#[test]
fn unauthorized_ends_the_run() {
    let mut tab = Tab::running();
    tab.fail("job-1", ErrorCode::Unauthorized, 1_200);
    assert_eq!(
        tab.state.error.map(|e| e.code),
        Some(ErrorCode::Unauthorized)
    );
}

#[test]
fn dismiss_returns_to_idle_only_from_an_end() {
    let mut tab = Tab::running();
    tab.on(SyncEvent::Dismiss { now: 1_150 });
    assert_eq!(tab.state.phase, SyncPhase::Queued);
    tab.result("job-1", "complete", None, 1_200);
    let fx = tab.on(SyncEvent::Dismiss { now: 1_300 });
    assert_eq!(tab.state.phase, SyncPhase::Idle);
    assert_eq!(tab.state.sync_id, None);
    assert_eq!(tab.state.updated_at, 1_300);
    assert!(fx.iter().any(|e| matches!(e, SyncEffect::Broadcast(_))));
}

#[test]
fn stale_answers_of_another_job_are_ignored() {
    let mut tab = Tab::running();
    assert!(tab.result("job-0", "complete", None, 1_200).is_empty());
    assert!(tab.fail("job-0", ErrorCode::SyncNotFound, 1_200).is_empty());
    assert!(tab
        .on(SyncEvent::StartFailed {
            run: 7,
            code: ErrorCode::Server,
            message: String::new(),
            now: 1_200
        })
        .is_empty());
    assert_eq!(tab.state.phase, SyncPhase::Queued);
}

#[test]
fn no_two_polls_closer_than_the_interval_even_across_runs() {
    let mut tab = Tab::running(); // polled at 1_100
    tab.fail("job-1", ErrorCode::SyncNotFound, 1_150);
    let job = StoredSyncJob {
        sync_id: "job-2".into(),
        kind: SyncKind::FromSheet,
        started_at: 1_000,
    };
    let fx = tab.on(SyncEvent::Resume { job, now: 1_200 });
    assert_eq!(polls(&fx), 0);
    assert_eq!(scheduled(&fx), Some(2_100));
    assert_eq!(polls(&tab.tick(2_100)), 1);
}

#[test]
fn a_resumed_job_past_its_timeout_gets_one_poll() {
    let mut tab = Tab::new();
    let job = StoredSyncJob {
        sync_id: "job-1".into(),
        kind: SyncKind::FromSheet,
        started_at: 0,
    };
    let fx = tab.on(SyncEvent::Resume { job, now: 500_000 });
    assert_eq!(polls(&fx), 1);
    tab.result("job-1", "complete", None, 500_050);
    assert_eq!(tab.state.phase, SyncPhase::Complete);
}

#[test]
fn the_state_serialises_as_api_md_says() {
    let mut tab = Tab::running();
    tab.result("job-1", "processing", Some(71.0), 1_200);
    let json = serde_json::to_value(&tab.state).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, STATE_KEYS.to_vec());
    assert_eq!(json["phase"], "processing");
    let back: SyncState = serde_json::from_value(json).unwrap();
    assert_eq!(back.progress, 71.0);
    assert!(!back.is_driving());
}

#[test]
fn the_server_status_deserialises_leniently() {
    let status: ServerSyncStatus = serde_json::from_str(
        r#"{ "syncId": "s1", "kind": "from-sheet", "status": "processing", "progress": 71,
             "message": "Parsing rows", "position": 0,
             "stats": { "bytes": 524288, "rows": 1523, "inserted": 10, "updated": 40, "conflicts": 2 },
             "error": null, "createdAt": "x", "updatedAt": "y", "extra": [1] }"#,
    )
    .unwrap();
    assert_eq!(status.progress, Some(71.0));
    assert_eq!(status.stats.map(|s| s.rows), Some(1523));
    let bare: ServerSyncStatus = serde_json::from_str("{}").unwrap();
    assert_eq!(bare, ServerSyncStatus::default());
    let detail: ServerSyncStatus =
        serde_json::from_str(r#"{ "status": "error", "error": { "message": "no sheet" } }"#)
            .unwrap();
    assert!(matches!(detail.error, Some(ServerJobError::Detail { .. })));
    assert!(serde_json::from_str::<ServerSyncStatus>(r#"{ "progress": "lots" }"#).is_err());
}

#[test]
fn the_state_serialises_only_the_api_fields() {
    let json = serde_json::to_value(SyncState::default()).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, STATE_KEYS);
}

#[test]
fn the_history_entry_serialises_in_camel_case() {
    let entry = SyncHistoryEntry {
        sync_id: Some("s".into()),
        kind: SyncKind::ToSheet,
        status: SyncOutcome::Error,
        started_at: 1,
        finished_at: 3,
        duration_ms: 2,
        stats: None,
        error: Some(SyncError::new(ErrorCode::SyncNotFound, "gone")),
        message: None,
        conflict_rows: Vec::new(),
    };
    let json = serde_json::to_value(&entry).unwrap();
    assert_eq!(json["kind"], "to-sheet");
    assert_eq!(json["durationMs"], 2);
    assert_eq!(json["error"]["code"], "sync_not_found");
}

#[test]
fn a_scheduled_run_due_while_one_is_going_is_skipped() {
    let mut tab = Tab::running();
    let fx = tab.on(SyncEvent::ScheduledStart {
        kind: SyncKind::ToSheet,
        now: 5_000,
    });
    assert_eq!(starts(&fx), 0);
    assert_eq!(tab.state.follow_up(), None);
    tab.result("job-1", "complete", None, 5_100);
    let fx = tab.on(SyncEvent::ScheduledStart {
        kind: SyncKind::ToSheet,
        now: 9_000,
    });
    assert_eq!(starts(&fx), 1);
    assert_eq!(tab.state.kind(), Some(SyncKind::ToSheet));
}
