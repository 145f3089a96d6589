//! A press in a tab that does not lead: its `Idempotency-Key` is chosen
//! where it happens and carried to every tab that carries it out, and its
//! caller is answered also when the leader it went to dies.

use super::*;
use crate::core::engine::{Failure, IdSource};
use crate::core::retry::RetryPolicy;
use crate::core::tab_message::{SyncCommand, TabMessage};

const NOW: u64 = 1_000_000;

fn machine(seed: u64) -> SyncMachine {
    SyncMachine::new(
        SyncConfig::default(),
        RetryPolicy::default(),
        IdSource::new(seed),
    )
}

fn drain(m: &mut SyncMachine) -> Vec<Output> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

/// A tab that leads, with no job stored.
fn leader(seed: u64) -> SyncMachine {
    let mut m = machine(seed);
    m.handle(Input::Channel(true), NOW, true);
    m.handle(Input::Leading, NOW, true);
    m.handle(Input::JobRead(None), NOW, true);
    drain(&mut m);
    m
}

/// A tab that does not lead.
fn follower(seed: u64) -> SyncMachine {
    let mut m = machine(seed);
    m.handle(Input::Channel(true), NOW, true);
    drain(&mut m);
    m
}

/// The start presses among `out` that went to the other tabs.
fn forwarded(out: &[Output]) -> Vec<TabMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Post(m @ TabMessage::SyncCommand(SyncCommand::Start { .. })) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// The keys of the starts among `out` sent to the server.
fn started(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Request(SyncRequest::Start { key, .. }) => Some(key.clone()),
            _ => None,
        })
        .collect()
}

fn answers(out: &[Output]) -> Vec<Result<StartAnswer, String>> {
    out.iter()
        .filter_map(|o| match o {
            Output::StartAnswered { answer, .. } => Some(answer.clone().map_err(|f| match f {
                Failure::Answer(refusal) => format!("{:?}", refusal.code),
                other => format!("{other:?}"),
            })),
            _ => None,
        })
        .collect()
}

#[test]
fn a_forwarded_press_is_started_under_its_one_key_by_every_leader() {
    let mut tab = follower(1);
    tab.handle(
        Input::Start {
            kind: SyncKind::ToSheet,
            caller: 7,
        },
        NOW,
        true,
    );
    let sent = forwarded(&drain(&mut tab));
    let [TabMessage::SyncCommand(SyncCommand::Start { key: Some(key), .. })] = &sent[..] else {
        panic!("one start forwarded with its key: {sent:?}");
    };
    // The first leader starts it, and dies before its state went out.
    let mut first = leader(2);
    first.handle(Input::Tab(sent[0].clone()), NOW + 10, true);
    assert_eq!(started(&drain(&mut first)), vec![key.clone()]);
    // The same message again (sent again, or a copy) starts nothing more.
    first.handle(Input::Tab(sent[0].clone()), NOW + 20, true);
    assert_eq!(started(&drain(&mut first)), Vec::<String>::new());
    // Not answered: the follower sends it again, with the same key, and
    // the next leader starts it under that key (the server answers it with
    // the job the first leader started).
    assert!(tab
        .poll_timeout()
        .is_some_and(|at| at <= NOW + FORWARD_AGAIN_MS));
    tab.handle_timeout(NOW + FORWARD_AGAIN_MS, true);
    let again = forwarded(&drain(&mut tab));
    assert_eq!(again, sent);
    let mut next = leader(3);
    next.handle(
        Input::Tab(again[0].clone()),
        NOW + FORWARD_AGAIN_MS + 10,
        true,
    );
    assert_eq!(started(&drain(&mut next)), vec![key.clone()]);
}

#[test]
fn a_press_from_an_older_tab_without_a_key_is_started_under_a_key_made_here() {
    let mut lead = leader(4);
    let old = TabMessage::SyncCommand(SyncCommand::Start {
        kind: SyncKind::FromSheet,
        key: None,
    });
    lead.handle(Input::Tab(old), NOW, true);
    let keys = started(&drain(&mut lead));
    assert_eq!(keys.len(), 1);
    assert!(crate::core::tab_message::is_press_key(&keys[0]));
}

#[test]
fn a_follower_that_comes_to_lead_starts_its_own_forwarded_press_under_its_key() {
    let mut tab = follower(5);
    tab.handle(
        Input::Start {
            kind: SyncKind::FromSheet,
            caller: 9,
        },
        NOW,
        true,
    );
    let sent = forwarded(&drain(&mut tab));
    let [TabMessage::SyncCommand(SyncCommand::Start { key: Some(key), .. })] = &sent[..] else {
        panic!("one start forwarded with its key: {sent:?}");
    };
    // Its leader died with the press; this tab leads now.
    tab.handle(Input::Leading, NOW + 50, true);
    tab.handle(Input::JobRead(None), NOW + 52, true);
    let out = drain(&mut tab);
    assert_eq!(started(&out), vec![key.clone()]);
    assert!(answers(&out).is_empty());
    tab.handle(
        Input::Started {
            run: 1,
            answer: Ok("job-1".into()),
        },
        NOW + 90,
        true,
    );
    let out = drain(&mut tab);
    assert_eq!(
        answers(&out),
        vec![Ok(StartAnswer {
            sync_id: Some("job-1".into()),
            coalesced: false
        })]
    );
}

#[test]
fn a_forwarded_press_no_tab_takes_is_answered_timeout_once() {
    let mut tab = follower(6);
    tab.handle(
        Input::Start {
            kind: SyncKind::ToSheet,
            caller: 3,
        },
        NOW,
        true,
    );
    drain(&mut tab);
    let limit = NOW + SyncConfig::default().timeout_ms;
    let mut now = NOW;
    let mut out = Vec::new();
    while let Some(at) = tab.poll_timeout().filter(|&at| at <= limit + 1) {
        now = at.max(now);
        tab.handle_timeout(now, true);
        out.extend(drain(&mut tab));
    }
    assert_eq!(now, limit);
    assert_eq!(answers(&out), vec![Err("Timeout".to_owned())]);
    assert!(tab.poll_timeout().is_none());
}

#[test]
fn a_tab_that_comes_to_lead_does_not_ask_to_be_woken_at_once_before_it_read_the_job() {
    let mut tab = follower(7);
    tab.handle(
        Input::Start {
            kind: SyncKind::ToSheet,
            caller: 1,
        },
        NOW,
        true,
    );
    tab.handle(Input::Leading, NOW + 10, true);
    drain(&mut tab);
    // The stored job is slow to read: its forwarded press waits for it,
    // and its timer does not fire again and again meanwhile.
    let at = NOW + FORWARD_AGAIN_MS;
    tab.handle_timeout(at, true);
    assert!(tab.poll_timeout().is_none_or(|next| next > at));
    tab.handle(Input::JobRead(None), at + 5, true);
    assert_eq!(started(&drain(&mut tab)).len(), 1);
}
