//! Several tabs: followers that mirror the leader, and a new leader that
//! takes over the run its predecessor followed.

use super::*;

#[test]
fn followers_mirror_the_leader_without_going_backwards() {
    let mut leader = Tab::running();
    let mut follower = Tab::new();
    let shared = |fx: &[SyncEffect]| {
        fx.iter()
            .find_map(|e| match e {
                SyncEffect::Broadcast(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap()
    };
    let at_60 = shared(&leader.result("job-1", "processing", Some(60.0), 1_200));
    leader.tick(2_200);
    let at_70 = shared(&leader.result("job-1", "processing", Some(70.0), 2_300));
    let done = shared(&leader.result("job-1", "complete", None, 2_400));

    let fx = follower.on(SyncEvent::RemoteState {
        state: at_70.clone(),
        now: 2_301,
    });
    assert_eq!(fx, vec![SyncEffect::Notify]);
    assert_eq!(follower.state.progress, 70.0);
    assert!(!follower.state.is_driving());
    // An overtaken message does not lower progress.
    follower.on(SyncEvent::RemoteState {
        state: at_60,
        now: 2_302,
    });
    assert_eq!(follower.state.progress, 70.0);
    follower.on(SyncEvent::RemoteState {
        state: done,
        now: 2_401,
    });
    assert_eq!(follower.state.phase, SyncPhase::Complete);
    assert!(follower
        .on(SyncEvent::RemoteState {
            state: at_70,
            now: 2_402
        })
        .is_empty());
    assert_eq!(follower.state.phase, SyncPhase::Complete);
    // Its own ticks do nothing: it does not poll.
    assert!(follower.tick(9_000).is_empty());
}

#[test]
fn a_new_leader_resumes_the_stored_job() {
    let mut tab = Tab::new();
    let job = StoredSyncJob {
        sync_id: "job-1".into(),
        kind: SyncKind::ToSheet,
        started_at: 10_000,
    };
    let fx = tab.on(SyncEvent::Resume {
        job: job.clone(),
        now: 20_000,
    });
    assert_eq!(
        fx[0],
        SyncEffect::Poll {
            sync_id: "job-1".into(),
            timeout_ms: 10_000
        }
    );
    assert!(tab.state.is_driving());
    assert_eq!(tab.state.kind(), Some(SyncKind::ToSheet));
    let fx = tab.result("job-1", "complete", None, 20_100);
    let h = history(&fx);
    assert_eq!((h[0].started_at, h[0].duration_ms), (10_000, 10_100));
    // The same job again (the old leader had not cleared it): no second run.
    let fx = tab.on(SyncEvent::Resume { job, now: 20_200 });
    assert_eq!(fx, vec![SyncEffect::StoreJob(None)]);
}

/// The first state a tab broadcasts among `fx`.
fn sent(fx: &[SyncEffect]) -> Option<Box<SyncState>> {
    fx.iter().find_map(|e| match e {
        SyncEffect::Broadcast(s) => Some(s.clone()),
        _ => None,
    })
}

#[test]
fn states_shown_in_one_millisecond_get_growing_stamps_and_the_older_is_dropped() {
    // Found by the simulation: a run's end and a
    // dismiss in the same millisecond crossed, and the follower kept the end.
    let mut leader = Tab::running();
    let mut follower = Tab::new();
    let ended = sent(&leader.result("job-1", "complete", None, 2_000)).unwrap();
    let idle = sent(&leader.on(SyncEvent::Dismiss { now: 2_000 })).unwrap();
    assert!(idle.updated_at > ended.updated_at);
    follower.on(SyncEvent::RemoteState {
        state: idle,
        now: 2_001,
    });
    let fx = follower.on(SyncEvent::RemoteState {
        state: ended,
        now: 2_002,
    });
    assert!(fx.is_empty());
    assert_eq!(follower.state.phase, SyncPhase::Idle);
}

#[test]
fn a_tab_that_opens_asks_and_the_leader_sends_its_state_again() {
    // Found by the simulation: a tab reloaded after a run ended
    // showed `idle` while the others showed how the run ended.
    let mut leader = Tab::running();
    let mut follower = Tab::new();
    assert_eq!(
        follower.on(SyncEvent::Follow { now: 1_200 }),
        vec![SyncEffect::AskState]
    );
    let again = sent(&leader.on(SyncEvent::StateAsked { now: 1_201 })).unwrap();
    assert_eq!(again.sync_id.as_deref(), Some("job-1"));
    follower.on(SyncEvent::RemoteState {
        state: again,
        now: 1_202,
    });
    assert_eq!(follower.state.phase, SyncPhase::Queued);
    // The leader itself does not ask.
    assert!(leader.on(SyncEvent::Follow { now: 1_300 }).is_empty());
}

#[test]
fn a_new_leader_without_a_stored_job_follows_the_job_it_shows_to_its_end() {
    // Found by the simulation: the leader died after the job ended and
    // cleared the stored id, before its last state reached this tab.
    let mut leader = Tab::running();
    let mut heir = Tab::new();
    let at_40 = sent(&leader.result("job-1", "downloading", Some(40.0), 1_200)).unwrap();
    heir.on(SyncEvent::RemoteState {
        state: at_40,
        now: 1_201,
    });
    let fx = heir.on(SyncEvent::Lead {
        job: None,
        now: 5_000,
    });
    assert_eq!(polls(&fx), 1);
    assert!(heir.state.is_driving());
    assert_eq!(heir.state.progress, 40.0);
    let fx = heir.result("job-1", "complete", Some(100.0), 5_100);
    assert_eq!(heir.state.phase, SyncPhase::Complete);
    assert_eq!(history(&fx).len(), 1);
}

#[test]
fn a_new_leader_ends_a_start_that_died_with_the_old_one() {
    let mut leader = Tab::new();
    let mut heir = Tab::new();
    let starting = sent(&leader.press(1_000)).unwrap();
    heir.on(SyncEvent::RemoteState {
        state: starting,
        now: 1_001,
    });
    let fx = heir.on(SyncEvent::Lead {
        job: None,
        now: 2_000,
    });
    assert_eq!(heir.state.phase, SyncPhase::Error);
    assert_eq!(
        heir.state.error.as_ref().map(|e| e.code),
        Some(ErrorCode::Closed)
    );
    assert_eq!(history(&fx).len(), 1);
    // And says so to the others, stamped after what they show.
    assert!(sent(&fx).unwrap().updated_at >= 2_000);
}

#[test]
fn a_new_leader_with_nothing_to_follow_announces_what_it_shows() {
    // Found by the simulation: a follower kept showing
    // a dead leader's start, and took the new leader's idle state for older.
    let mut heir = Tab::new();
    let fx = heir.on(SyncEvent::Lead {
        job: None,
        now: 9_000,
    });
    let said = sent(&fx).unwrap();
    assert_eq!(said.phase, SyncPhase::Idle);
    assert_eq!(said.updated_at, 9_000);
}

#[test]
fn a_tab_never_shows_a_run_lower_than_it_did() {
    // Found by the simulation: a new leader that had
    // missed the end of a run announced it at 90 to a tab that showed 100.
    let mut leader = Tab::running();
    let mut follower = Tab::new();
    let at_90 = sent(&leader.result("job-1", "saving", Some(90.0), 1_200)).unwrap();
    let done = sent(&leader.result("job-1", "complete", Some(100.0), 1_800)).unwrap();
    follower.on(SyncEvent::RemoteState {
        state: done,
        now: 1_801,
    });
    // The next run starts; its leader dies; the new one knew only the 90.
    let next = sent(&leader.press(4_000)).unwrap();
    assert_eq!(next.phase, SyncPhase::Starting);
    follower.on(SyncEvent::RemoteState {
        state: next,
        now: 4_001,
    });
    let mut stale = at_90;
    stale.updated_at = 5_000;
    follower.on(SyncEvent::RemoteState {
        state: stale,
        now: 5_001,
    });
    assert_eq!(follower.state.phase, SyncPhase::Saving);
    assert_eq!(follower.state.progress, 100.0);
}

#[test]
fn a_leader_takes_the_higher_progress_a_follower_saw_of_its_run() {
    // Found by the simulation: a new leader ended a lost job at 35 while a
    // follower had seen the dead leader's 52.
    let mut old = Tab::running();
    let at_35 = sent(&old.result("job-1", "downloading", Some(35.0), 1_200)).unwrap();
    old.tick(2_200);
    let at_52 = sent(&old.result("job-1", "downloading", Some(52.0), 2_300)).unwrap();
    let mut heir = Tab::new();
    heir.on(SyncEvent::RemoteState {
        state: at_35,
        now: 1_201,
    });
    heir.on(SyncEvent::Lead {
        job: None,
        now: 3_000,
    });
    let fx = heir.on(SyncEvent::RemoteState {
        state: at_52,
        now: 3_001,
    });
    assert_eq!(heir.state.progress, 52.0);
    assert!(heir.state.is_driving());
    assert_eq!(sent(&fx).unwrap().progress, 52.0);
    // A state of another run changes nothing in a leader.
    let mut other = (*sent(&fx).unwrap()).clone();
    other.started_at = Some(1);
    other.progress = 99.0;
    assert!(heir
        .on(SyncEvent::RemoteState {
            state: Box::new(other),
            now: 3_002,
        })
        .is_empty());
}
