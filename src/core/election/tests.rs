use super::*;

/// Tables in tests have listened since 0; tests start at `T`, after
/// the join wait.
const T: u64 = 10_000;

fn table(name: &str) -> LockTable {
    let mut table = LockTable::new(TabId(name.into()), 7, ElectionConfig::default());
    table.tick(0);
    table
}

fn sent(fx: &[ElectionEffect]) -> Vec<LockMessage> {
    fx.iter()
        .filter_map(|e| match e {
            ElectionEffect::Send(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// Delivers what `from` sent to `to`, returning `to`'s effects.
fn deliver(
    to: &mut LockTable,
    from: &LockTable,
    fx: &[ElectionEffect],
    now: u64,
) -> Vec<ElectionEffect> {
    let mut out = Vec::new();
    for m in sent(fx) {
        out.extend(to.receive(&from.me().tab, m, now));
    }
    out
}

fn granted(fx: &[ElectionEffect]) -> Vec<LockTicket> {
    fx.iter()
        .filter_map(|e| match e {
            ElectionEffect::Granted(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn lost(fx: &[ElectionEffect]) -> Vec<LockTicket> {
    fx.iter()
        .filter_map(|e| match e {
            ElectionEffect::Lost(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn next_tick(fx: &[ElectionEffect]) -> Option<u64> {
    fx.iter().rev().find_map(|e| match e {
        ElectionEffect::ScheduleTick { at_ms } => Some(*at_ms),
        _ => None,
    })
}

/// Fires the table's timer as asked, until `until`; every effect with
/// the time it happened.
fn drive(table: &mut LockTable, fx: &[ElectionEffect], until: u64) -> Vec<(u64, ElectionEffect)> {
    let mut out = Vec::new();
    let mut next = next_tick(fx);
    while let Some(at) = next.filter(|at| *at <= until) {
        let fx = table.tick(at);
        next = next_tick(&fx).or(next.filter(|n| *n > at));
        out.extend(fx.into_iter().map(|e| (at, e)));
    }
    out
}

/// Tabs `a` and `b`; `a` holds `x` since `T + 100` and `b` has heard
/// every message of it.
fn a_holds_x() -> (LockTable, LockTable, LockTicket) {
    let mut a = table("a");
    let mut b = table("b");
    let (ta, fx) = a.acquire("x", None, T);
    deliver(&mut b, &a, &fx, T + 1);
    let fx = a.tick(T + 100);
    deliver(&mut b, &a, &fx, T + 101);
    (a, b, ta)
}

fn granted_at(log: &[(u64, ElectionEffect)]) -> Vec<(u64, LockTicket)> {
    log.iter()
        .filter_map(|(at, e)| match e {
            ElectionEffect::Granted(t) => Some((*at, t.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn defaults_keep_the_timing_rules() {
    let c = ElectionConfig::default();
    assert_eq!((c.silence_ms(), c.join_ms()), (2_400, 2_500));
    assert!(c.silence_ms() + c.settle_ms <= c.lease_ms);
    assert!(c.heartbeat_ms < c.silence_ms());
}

#[test]
fn a_new_tab_listens_before_it_takes_a_lock() {
    let mut a = LockTable::new(TabId("a".into()), 1, ElectionConfig::default());
    let (ticket, fx) = a.acquire(LEADER_LOCK, None, 1_000);
    assert_eq!(
        granted_at(&drive(&mut a, &fx, 9_000)),
        vec![(3_500, ticket)]
    );
}

#[test]
fn a_lone_tab_gets_the_lock_after_the_settle_wait() {
    let mut a = table("a");
    let (ticket, fx) = a.acquire(LEADER_LOCK, None, T);
    assert_eq!(
        ticket,
        LockTicket {
            lock: LEADER_LOCK.into(),
            stamp: T
        }
    );
    assert_eq!(
        sent(&fx)[0].signal,
        LockSignal::Request {
            lock: LEADER_LOCK.into(),
            stamp: T
        }
    );
    assert_eq!(next_tick(&fx), Some(T + 100));
    assert!(!a.holds(&ticket, T + 99));
    assert!(granted(&a.tick(T + 99)).is_empty());
    let fx = a.tick(T + 100);
    assert_eq!(granted(&fx), vec![ticket.clone()]);
    assert!(matches!(sent(&fx)[0].signal, LockSignal::Hold { .. }));
    assert!(a.holds(&ticket, T + 100));
    assert!(a.holds_lock(LEADER_LOCK, T + 100));
    // Heartbeats keep it.
    let fx = a.tick(T + 1_000);
    assert!(matches!(sent(&fx)[0].signal, LockSignal::Heartbeat { .. }));
    assert!(a.holds(&ticket, T + 3_000));
    let fx = a.release(&ticket, T + 3_000);
    assert!(matches!(sent(&fx)[0].signal, LockSignal::Release { .. }));
    assert!(!a.holds(&ticket, T + 3_000));
    assert!(!a.knows(&ticket));
}

#[test]
fn a_waiter_gets_the_lock_as_soon_as_the_holder_releases() {
    let mut a = table("a");
    let mut b = table("b");
    let (ta, fx) = a.acquire("x", None, T);
    deliver(&mut b, &a, &fx, T + 1);
    let fx = a.tick(T + 100);
    assert_eq!(granted(&fx), vec![ta.clone()]);
    deliver(&mut b, &a, &fx, T + 101);

    let (tb, fx) = b.acquire("x", None, T + 200);
    let answer = deliver(&mut a, &b, &fx, T + 201);
    assert!(matches!(
        &sent(&answer)[..],
        [
            LockMessage { signal: LockSignal::Heartbeat { entries }, .. },
            LockMessage { signal: LockSignal::Answer { to }, .. },
        ] if to.stamp == tb.stamp && entries.len() == 1
    ));
    deliver(&mut b, &a, &answer, T + 202);
    assert!(granted(&b.tick(T + 300)).is_empty());

    let fx = a.release(&ta, T + 500);
    let fx = deliver(&mut b, &a, &fx, T + 501);
    assert_eq!(granted(&fx), vec![tb.clone()]);
    assert!(b.holds(&tb, T + 501));
}

#[test]
fn the_named_waiter_takes_a_hand_off_without_the_settle_wait() {
    let (mut a, mut b, ta) = a_holds_x();
    // `b` asks and `a` releases 10 ms later, long before `b` settled.
    let (tb, fx) = b.acquire("x", None, T + 200);
    let answer = deliver(&mut a, &b, &fx, T + 201);
    deliver(&mut b, &a, &answer, T + 202);
    let fx = a.release(&ta, T + 210);
    match &sent(&fx)[0].signal {
        LockSignal::Release { next, .. } => assert_eq!(
            next.as_ref(),
            Some(&HandOff {
                tab: TabId("b".into()),
                token: 7,
                stamp: T + 200
            })
        ),
        other => panic!("not a release: {other:?}"),
    }
    let fx = deliver(&mut b, &a, &fx, T + 211);
    assert_eq!(granted(&fx), vec![tb.clone()]);
    assert!(b.holds(&tb, T + 211));
}

#[test]
fn a_waiter_not_named_by_the_release_waits_for_the_named_ones_hold() {
    let mut a = table("a");
    let mut h = table("h");
    let mut n = table("n");
    let (ta, fx) = a.acquire("x", None, T);
    deliver(&mut h, &a, &fx, T + 1);
    deliver(&mut n, &a, &fx, T + 1);
    let fx = a.tick(T + 100);
    deliver(&mut h, &a, &fx, T + 101);
    deliver(&mut n, &a, &fx, T + 101);
    // `n` and `h` ask at almost the same moment; `a` hears both, but
    // `n`'s request has not reached `h` yet.
    let (tn, fx_n) = n.acquire("x", None, T + 499);
    let (th, fx_h) = h.acquire("x", None, T + 500);
    assert!(tn.stamp < th.stamp);
    deliver(&mut a, &n, &fx_n, T + 501);
    deliver(&mut a, &h, &fx_h, T + 501);
    deliver(&mut n, &h, &fx_h, T + 502);
    // `h` has settled; the release names `n`.
    assert!(granted(&h.tick(T + 600)).is_empty());
    let release = a.release(&ta, T + 700);
    let hold = deliver(&mut n, &a, &release, T + 701);
    assert_eq!(granted(&hold), vec![tn.clone()]);
    // Without the name, `h` would take the lock here too.
    let fx = deliver(&mut h, &a, &release, T + 701);
    assert!(granted(&fx).is_empty());
    assert_eq!(next_tick(&fx), Some(T + 801));
    // `n`'s late request and its `Hold` arrive within the settle wait.
    deliver(&mut h, &n, &fx_n, T + 720);
    deliver(&mut h, &n, &hold, T + 721);
    assert!(granted(&h.tick(T + 801)).is_empty());
    assert!(!h.holds(&th, T + 801));
}

#[test]
fn a_newcomer_hears_of_the_holder_through_the_objection() {
    let mut a = table("a");
    let (ta, _) = a.acquire("x", None, T);
    assert_eq!(granted(&a.tick(T + 100)), vec![ta.clone()]);
    // `c` never heard of `a`: it learns from the answer to its request.
    let mut c = table("c");
    let (tc, fx) = c.acquire("x", None, T + 5_000);
    for now in [T + 1_100, T + 2_100, T + 3_100, T + 4_100] {
        assert!(lost(&a.tick(now)).is_empty());
    }
    let answer = deliver(&mut a, &c, &fx, T + 5_010);
    deliver(&mut c, &a, &answer, T + 5_020);
    assert!(granted(&c.tick(T + 5_100)).is_empty());
    assert!(!c.holds(&tc, T + 5_100));
}

#[test]
fn a_newcomer_hears_of_a_busy_holder_through_its_heartbeat() {
    let mut a = table("a");
    let (ta, _) = a.acquire("x", None, T);
    a.tick(T + 100);
    // `c` loads while `a` is busy: no answer to its request, but `a`'s
    // next heartbeat comes within the join wait.
    let mut c = LockTable::new(TabId("c".into()), 1, ElectionConfig::default());
    let (tc, fx) = c.acquire("x", None, T + 200);
    let beat = a.tick(T + 1_100);
    assert!(a.holds(&ta, T + 1_100));
    let mut log = drive(&mut c, &fx, T + 1_119);
    let fx = deliver(&mut c, &a, &beat, T + 1_120);
    log.extend(drive(&mut c, &fx, T + 2_800));
    assert!(granted_at(&log).is_empty());
    assert!(!c.holds(&tc, T + 2_800));
    // Without that heartbeat it would have taken the lock at T + 2700.
    let mut d = LockTable::new(TabId("d".into()), 1, ElectionConfig::default());
    let (td, fx) = d.acquire("x", None, T + 200);
    assert_eq!(
        granted_at(&drive(&mut d, &fx, T + 2_800)),
        vec![(T + 2_700, td)]
    );
}

#[test]
fn concurrent_requests_are_ordered_by_stamp_then_tab_id() {
    let mut a = table("a");
    let mut b = table("b");
    let (tb, fb) = b.acquire("x", None, T);
    let (ta, fa) = a.acquire("x", None, T);
    assert_eq!(ta.stamp, tb.stamp);
    let ra = deliver(&mut a, &b, &fb, T + 10);
    let rb = deliver(&mut b, &a, &fa, T + 10);
    deliver(&mut b, &a, &ra, T + 15);
    deliver(&mut a, &b, &rb, T + 15);
    assert_eq!(granted(&a.tick(T + 100)), vec![ta]);
    assert!(granted(&b.tick(T + 100)).is_empty());
}

#[test]
fn a_later_request_of_the_same_tab_waits_its_turn() {
    let mut a = table("a");
    let (t1, _) = a.acquire("x", None, T);
    let (t2, _) = a.acquire("x", None, T);
    let fx = a.tick(T + 100);
    assert_eq!(granted(&fx), vec![t1.clone()]);
    let fx = a.release(&t1, T + 150);
    assert_eq!(granted(&fx), vec![t2]);
}

#[test]
fn a_waiter_times_out() {
    let (_a, mut b, _ta) = a_holds_x();
    let (tb, fx) = b.acquire("x", Some(500), T + 200);
    assert_eq!(next_tick(&fx), Some(T + 300));
    let fx = b.tick(T + 700);
    assert!(fx.contains(&ElectionEffect::TimedOut(tb.clone())));
    assert!(matches!(sent(&fx)[0].signal, LockSignal::Release { .. }));
    assert!(!b.knows(&tb));
}

#[test]
fn a_crashed_holder_loses_the_lock_after_the_lease() {
    let (mut a, mut b, _ta) = a_holds_x();
    let (tb, fx) = b.acquire("x", None, T + 200);
    let answer = deliver(&mut a, &b, &fx, T + 201);
    deliver(&mut b, &a, &answer, T + 202);
    // `a` dies now: its last word arrived at T + 202.
    let mut at = T + 300;
    let mut fx = b.tick(at);
    while granted(&fx).is_empty() {
        at = next_tick(&fx).unwrap_or(at + 1_000);
        fx = b.tick(at);
    }
    assert_eq!(granted(&fx), vec![tb]);
    // Forgotten at T + 3202, then one settle wait for a late message.
    assert_eq!(at, T + 202 + 3_000 + 100);
}

#[test]
fn a_frozen_holder_stops_holding_by_its_own_clock() {
    let mut a = table("a");
    let (ta, _) = a.acquire("x", None, T);
    a.tick(T + 100);
    // Last message at T + 100 (the Hold): silent since.
    assert!(a.holds(&ta, T + 2_499));
    assert!(!a.holds(&ta, T + 2_500));
    let fx = a.tick(T + 10_000);
    assert_eq!(lost(&fx), vec![ta.clone()]);
    assert!(!a.knows(&ta));
}

#[test]
fn a_frozen_waiter_announces_itself_again_and_listens_anew() {
    let mut a = table("a");
    let (ta, _) = a.acquire("x", None, T);
    let fx = a.tick(T + 50_000);
    assert!(granted(&fx).is_empty());
    assert_eq!(
        sent(&fx)[0].signal,
        LockSignal::Request {
            lock: "x".into(),
            stamp: ta.stamp
        }
    );
    assert_eq!(
        granted_at(&drive(&mut a, &fx, T + 60_000)),
        vec![(T + 52_500, ta)]
    );
}

#[test]
fn a_lone_tab_with_a_standing_entry_takes_a_lock_at_once() {
    let mut a = table("a");
    let (leader, fx) = a.acquire(LEADER_LOCK, None, T);
    assert_eq!(next_tick(&fx), Some(T + 100));
    assert_eq!(granted(&a.tick(T + 100)), vec![leader]);
    let (x, fx) = a.acquire("x", None, T + 150);
    assert_eq!(granted(&fx), vec![x.clone()]);
    assert!(matches!(
        &sent(&fx)[..],
        [
            LockMessage {
                signal: LockSignal::Request { .. },
                ..
            },
            LockMessage {
                signal: LockSignal::Hold { .. },
                ..
            }
        ]
    ));
    let fx = a.release(&x, T + 151);
    let (x2, fx2) = a.acquire("x", None, T + 151);
    assert!(granted(&fx).is_empty());
    assert_eq!(granted(&fx2), vec![x2]);
}

/// Tabs `a` and `b`, each standing for the leader lock since `T`, each
/// having heard the other's request.
fn two_standing() -> (LockTable, LockTable) {
    let mut a = table("a");
    let mut b = table("b");
    let (_, fx) = b.acquire(LEADER_LOCK, None, T);
    deliver(&mut a, &b, &fx, T + 1);
    let (_, fx) = a.acquire(LEADER_LOCK, None, T);
    deliver(&mut b, &a, &fx, T + 1);
    (a, b)
}

#[test]
fn a_free_lock_is_taken_once_every_known_tab_has_answered() {
    let (mut a, mut b) = two_standing();
    let (x, fx) = a.acquire("x", None, T + 200);
    assert!(granted(&fx).is_empty());
    let answer = deliver(&mut b, &a, &fx, T + 201);
    let fx = deliver(&mut a, &b, &answer, T + 202);
    assert_eq!(granted(&fx), vec![x.clone()]);
    assert!(a.holds(&x, T + 202));
}

#[test]
fn a_tab_that_does_not_answer_leaves_the_settle_wait() {
    // `b` stands for the leader lock but never answers (an older build,
    // or frozen): `a` takes `x` only after the settle wait.
    let (mut a, mut b) = two_standing();
    b.legacy = true;
    let (x, fx) = a.acquire("x", None, T + 200);
    let answer = deliver(&mut b, &a, &fx, T + 201);
    assert!(sent(&answer)
        .iter()
        .all(|m| !matches!(m.signal, LockSignal::Answer { .. })));
    let fx = deliver(&mut a, &b, &answer, T + 202);
    assert!(granted(&fx).is_empty());
    assert!(granted(&a.tick(T + 299)).is_empty());
    assert_eq!(granted(&a.tick(T + 300)), vec![x]);
}

#[test]
fn an_answer_for_another_request_or_tab_does_not_count() {
    let (mut a, mut b) = two_standing();
    let (x, fx) = a.acquire("x", None, T + 200);
    deliver(&mut b, &a, &fx, T + 201);
    let wrong = |to: HandOff| LockMessage {
        token: 7,
        clock: T + 201,
        signal: LockSignal::Answer { to },
    };
    // Another stamp, another token of the same tab id, another tab.
    for to in [
        HandOff {
            tab: a.me().tab.clone(),
            token: 7,
            stamp: x.stamp + 1,
        },
        HandOff {
            tab: a.me().tab.clone(),
            token: 8,
            stamp: x.stamp,
        },
        HandOff {
            tab: TabId("c".into()),
            token: 7,
            stamp: x.stamp,
        },
    ] {
        // Sent by a third tab with an entry, so that `a` is not alone.
        let mut c = table("c");
        let (_, fx) = c.acquire("z", None, T);
        deliver(&mut a, &c, &fx, T + 150);
        let fx = a.receive(&c.me().tab, wrong(to), T + 202);
        assert!(granted(&fx).is_empty());
    }
    assert!(!a.holds(&x, T + 202));
}

#[test]
fn two_tabs_asking_at_once_are_served_one_after_the_other_in_stamp_order() {
    let (mut a, mut b) = two_standing();
    // Both ask at the same moment, with the same stamp: the tab id
    // decides ("a" < "b"), in both tabs' views.
    let (xa, fa) = a.acquire("x", None, T + 200);
    let (xb, fb) = b.acquire("x", None, T + 200);
    assert_eq!(xa.stamp, xb.stamp);
    let answer_b = deliver(&mut b, &a, &fa, T + 201);
    let answer_a = deliver(&mut a, &b, &fb, T + 201);
    let got_a = deliver(&mut a, &b, &answer_b, T + 202);
    let got_b = deliver(&mut b, &a, &answer_a, T + 202);
    assert_eq!(granted(&got_a), vec![xa.clone()]);
    assert!(granted(&got_b).is_empty());
    deliver(&mut b, &a, &got_a, T + 203);
    assert!(granted(&b.tick(T + 400)).is_empty());
    assert!(!b.holds(&xb, T + 400));
    // The release hands it to `b` at once.
    let fx = a.release(&xa, T + 500);
    assert_eq!(
        granted(&deliver(&mut b, &a, &fx, T + 501)),
        vec![xb.clone()]
    );
    assert!(b.holds(&xb, T + 501) && !a.holds(&xa, T + 501));
}

#[test]
fn a_tab_heard_of_mid_request_must_answer_too() {
    let (mut a, mut b) = two_standing();
    let (x, fx) = a.acquire("x", None, T + 200);
    let answer = deliver(&mut b, &a, &fx, T + 201);
    // `c` loaded after `a` asked (it never got the request) and stands
    // for a lock: `a` hears of it before `b`'s answer arrives.
    let mut c = table("c");
    let (_, fc) = c.acquire(LEADER_LOCK, None, T + 200);
    let fx = deliver(&mut a, &c, &fc, T + 202);
    assert!(granted(&fx).is_empty());
    let fx = deliver(&mut a, &b, &answer, T + 203);
    assert!(granted(&fx).is_empty(), "c has not answered");
    // No answer will come from `c`: the settle wait decides.
    assert_eq!(granted(&a.tick(T + 300)), vec![x]);
}

#[test]
fn a_request_heard_before_the_answer_orders_the_line() {
    // `b` asked for `x` before it heard `a`'s request: its answer lists
    // that entry, and the earlier one goes first.
    let (mut a, mut b) = two_standing();
    let (xb, fb) = b.acquire("x", None, T + 199);
    let (xa, fa) = a.acquire("x", None, T + 200);
    let answer = deliver(&mut b, &a, &fa, T + 201);
    assert!(granted(&deliver(&mut a, &b, &answer, T + 202)).is_empty());
    let answer = deliver(&mut a, &b, &fb, T + 203);
    assert_eq!(granted(&deliver(&mut b, &a, &answer, T + 204)), vec![xb]);
    assert!(!a.holds(&xa, T + 204));
}

#[test]
fn two_tabs_new_to_the_line_wait_the_settle_even_when_answered() {
    // `p` stands for the leader lock; `a` and `c` know it but have no
    // entry of their own, so neither has been heard of by the other.
    // Both ask at once, and `p`'s answers reach them before their
    // requests reach each other: an answer from every tab they know is
    // not enough, as the other's request may still be on its way.
    let mut p = table("p");
    let mut a = table("a");
    let mut c = table("c");
    let (_, fp) = p.acquire(LEADER_LOCK, None, T);
    deliver(&mut a, &p, &fp, T + 1);
    deliver(&mut c, &p, &fp, T + 1);
    let (xa, fa) = a.acquire("x", None, T + 200);
    let (xc, fc) = c.acquire("x", None, T + 200);
    let to_a = deliver(&mut p, &a, &fa, T + 201);
    let to_c = deliver(&mut p, &c, &fc, T + 201);
    let mut fx = deliver(&mut a, &p, &to_a, T + 202);
    fx.extend(deliver(&mut a, &p, &to_c, T + 202));
    assert!(granted(&fx).is_empty());
    let mut fx = deliver(&mut c, &p, &to_a, T + 202);
    fx.extend(deliver(&mut c, &p, &to_c, T + 202));
    assert!(granted(&fx).is_empty());
    deliver(&mut a, &c, &fc, T + 240);
    deliver(&mut c, &a, &fa, T + 240);
    assert_eq!(granted(&a.tick(T + 300)), vec![xa]);
    assert!(granted(&c.tick(T + 300)).is_empty());
    assert!(!c.holds(&xc, T + 300));
}

#[test]
fn a_tab_that_knows_another_waits_the_settle() {
    let mut a = table("a");
    let mut b = table("b");
    let (_, fx) = b.acquire(LEADER_LOCK, None, T);
    deliver(&mut a, &b, &fx, T + 1);
    let (_, fx) = a.acquire(LEADER_LOCK, None, T);
    deliver(&mut b, &a, &fx, T + 1);
    let (x, fx) = a.acquire("x", None, T + 200);
    assert!(granted(&fx).is_empty());
    assert_eq!(granted(&a.tick(T + 300)), vec![x]);
    // Nor does a tab whose first entry is newer than a settle wait.
    let mut c = table("c");
    let (y, fx) = c.acquire("y", None, T);
    assert!(granted(&fx).is_empty());
    assert_eq!(granted(&c.tick(T + 100)), vec![y]);
}

#[test]
fn rejoin_listens_again_but_keeps_a_fresh_hold() {
    let mut a = table("a");
    // A peer with an entry of its own: `a` is not alone, so `y` waits.
    let mut b = table("b");
    let (_, fx) = b.acquire("z", None, T);
    deliver(&mut a, &b, &fx, T);
    let (ta, _) = a.acquire("x", None, T);
    a.tick(T + 100);
    let (ty, _) = a.acquire("y", None, T + 200);
    let fx = a.rejoin(T + 250);
    assert!(lost(&fx).is_empty());
    assert!(a.holds(&ta, T + 250));
    assert!(sent(&fx).iter().any(|m| m.signal
        == LockSignal::Request {
            lock: "y".into(),
            stamp: ty.stamp
        }));
    assert_eq!(
        granted_at(&drive(&mut a, &fx, T + 5_000)),
        vec![(T + 2_750, ty)]
    );
    assert!(a.holds(&ta, T + 5_000));
}

#[test]
fn duplicate_holders_resolve_to_the_earlier_one() {
    let mut a = table("a");
    let mut b = table("b");
    // Each takes the lock without hearing of the other (lost messages).
    let (ta, _) = a.acquire("x", None, T);
    a.tick(T + 100);
    let (tb, _) = b.acquire("x", None, T + 50);
    b.tick(T + 150);
    assert!(a.holds(&ta, T + 200) && b.holds(&tb, T + 200));
    let fa = a.tick(T + 1_100);
    let fb = b.tick(T + 1_150);
    // b hears a's heartbeat: a acquired first, b gives up.
    let out = deliver(&mut b, &a, &fa, T + 1_160);
    assert_eq!(lost(&out), vec![tb.clone()]);
    assert!(!b.holds(&tb, T + 1_160));
    // a hears b's earlier heartbeat, then its release: a keeps the lock.
    let out = deliver(&mut a, &b, &fb, T + 1_170);
    assert!(lost(&out).is_empty());
    let out2 = deliver(&mut a, &b, &out, T + 1_171);
    assert!(lost(&out2).is_empty());
    assert!(a.holds(&ta, T + 1_171));
}

#[test]
fn hostile_messages_are_bounded_and_harmless() {
    let mut a = table("a");
    let (ta, _) = a.acquire("x", None, T);
    a.tick(T + 100);
    let evil = TabId("evil".into());
    let fx = a.receive(
        &evil,
        LockMessage {
            token: 1,
            clock: u64::MAX,
            signal: LockSignal::Heartbeat {
                entries: (0..10_000)
                    .map(|i| LockEntry {
                        lock: format!("l{i}"),
                        stamp: u64::MAX,
                        acquired: Some(u64::MAX),
                    })
                    .collect(),
            },
        },
        T + 200,
    );
    assert!(
        lost(&fx).is_empty(),
        "a later holder of other locks changes nothing"
    );
    a.receive(
        &evil,
        LockMessage {
            token: 1,
            clock: 0,
            signal: LockSignal::Request {
                lock: "y".repeat(100_000),
                stamp: 0,
            },
        },
        T + 210,
    );
    for i in 0..1_000u64 {
        a.receive(
            &TabId(format!("t{i}")),
            LockMessage {
                token: i,
                clock: 0,
                signal: LockSignal::Request {
                    lock: "z".into(),
                    stamp: i,
                },
            },
            T + 220,
        );
    }
    assert!(a.peers().count() <= MAX_PEERS);
    assert!(a.clock <= MAX_STAMP + 1_000);
    // A message claiming to be this very tab is ignored.
    let me = a.me().clone();
    let fx = a.receive(
        &me.tab,
        LockMessage {
            token: me.token,
            clock: 0,
            signal: LockSignal::Hold {
                lock: "x".into(),
                stamp: 0,
                acquired: 0,
            },
        },
        T + 230,
    );
    assert!(lost(&fx).is_empty());
    assert!(a.holds(&ta, T + 230));
}

#[test]
fn release_all_tells_the_others() {
    let mut a = table("a");
    a.acquire("x", None, T);
    a.acquire("y", None, T);
    a.tick(T + 100);
    let fx = a.release_all(T + 200);
    assert_eq!(sent(&fx).len(), 2);
    assert!(!a.holds_lock("x", T + 200));
}
