//! A simulated origin: N tabs on one channel with a global clock.
//! Delivery takes 0..=D ms and keeps each sender's order to each
//! receiver; messages may be lost (until a given time); tabs may crash
//! (for good) or freeze (no timers, no messages, for a while: the
//! messages wait). A global observer checks, after every step, how many
//! tabs hold each lock by `LockTable::holds_lock`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use proptest::prelude::*;

use super::*;

/// The longest delivery time; `settle_ms` (100) is at least twice it.
const D: u64 = 40;
const LOCKS: [&str; 2] = ["x", "y"];

/// xorshift64*: the simulation's randomness, from a proptest seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1_000) < per_mille
    }
}

/// One acquire a tab will make: not before `at`, and not before its
/// previous one ended.
#[derive(Debug, Clone)]
struct Intent {
    at: u64,
    lock: &'static str,
    /// `None`: hold until the tab dies.
    hold_ms: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct TabPlan {
    /// The page loads: nothing reaches it before.
    join_at: u64,
    intents: VecDeque<Intent>,
    crash_at: Option<u64>,
    freeze: Option<(u64, u64)>,
    /// Stands for [`LEADER_LOCK`] from its load until it dies, as every
    /// `TabLocks` does: an entry for good, so the lone path applies.
    campaign: bool,
    /// Runs the build before answers: sends none, and cannot read
    /// them (they do not reach it).
    legacy: bool,
}

/// What happened to one request.
#[derive(Debug, Clone)]
struct Request {
    tab: usize,
    ticket: LockTicket,
    sent_at: u64,
    granted_at: Option<u64>,
    ended: bool,
}

struct SimTab {
    table: LockTable,
    plan: TabPlan,
    alive: bool,
    timer: Option<u64>,
    busy: bool,
    ready_at: u64,
    holding: Option<(LockTicket, Option<u64>)>,
    /// The candidacy for the leader lock, and when to stand (again).
    candidacy: Option<LockTicket>,
    campaign_at: Option<u64>,
}

impl SimTab {
    fn frozen_until(&self, now: u64) -> Option<u64> {
        self.plan
            .freeze
            .filter(|(from, to)| *from <= now && now < *to)
            .map(|(_, to)| to)
    }
}

struct Net {
    rng: Rng,
    now: u64,
    tabs: Vec<SimTab>,
    /// (deliver at, send order, to, from) -> message.
    inflight: BinaryHeap<Reverse<(u64, u64, usize, usize)>>,
    messages: BTreeMap<u64, LockMessage>,
    link_last: BTreeMap<(usize, usize), u64>,
    sent: u64,
    loss_per_mille: u64,
    loss_until: u64,
    last_drop: Option<u64>,
    requests: Vec<Request>,
    /// (lock, time) of every moment with two holders.
    duplicates: Vec<(&'static str, u64)>,
    config: ElectionConfig,
    trace: bool,
}

impl Net {
    fn new(seed: u64, plans: Vec<TabPlan>, loss_per_mille: u64, loss_until: u64) -> Self {
        let config = ElectionConfig::default();
        let tabs = plans
            .into_iter()
            .enumerate()
            .map(|(i, plan)| SimTab {
                table: LockTable {
                    legacy: plan.legacy,
                    ..LockTable::new(TabId(format!("tab-{i}")), seed ^ i as u64, config.clone())
                },
                alive: true,
                timer: None,
                busy: false,
                ready_at: 0,
                holding: None,
                candidacy: None,
                campaign_at: plan.campaign.then_some(plan.join_at),
                plan,
            })
            .collect();
        Self {
            rng: Rng::new(seed),
            now: 0,
            tabs,
            inflight: BinaryHeap::new(),
            messages: BTreeMap::new(),
            link_last: BTreeMap::new(),
            sent: 0,
            loss_per_mille,
            loss_until,
            last_drop: None,
            requests: Vec::new(),
            duplicates: Vec::new(),
            config,
            trace: false,
        }
    }

    fn effects(&mut self, i: usize, fx: Vec<ElectionEffect>) {
        let now = self.now;
        for effect in fx {
            if self.trace {
                eprintln!("    {now} tab {i}: {effect:?}");
            }
            match effect {
                ElectionEffect::Send(message) => {
                    let answer = matches!(message.signal, LockSignal::Answer { .. });
                    self.sent += 1;
                    self.messages.insert(self.sent, message);
                    for j in 0..self.tabs.len() {
                        if j == i || (answer && self.tabs[j].plan.legacy) {
                            continue;
                        }
                        if now < self.loss_until && self.rng.chance(self.loss_per_mille) {
                            self.last_drop = Some(now);
                            continue;
                        }
                        let delay = self.rng.below(D + 1);
                        let last = self.link_last.get(&(i, j)).copied().unwrap_or(0);
                        let at = (now + delay).max(last);
                        self.link_last.insert((i, j), at);
                        self.inflight.push(Reverse((at, self.sent, j, i)));
                    }
                }
                ElectionEffect::Granted(ticket)
                    if self.tabs[i].candidacy.as_ref() == Some(&ticket) => {}
                ElectionEffect::Lost(ticket) | ElectionEffect::TimedOut(ticket)
                    if self.tabs[i].candidacy.as_ref() == Some(&ticket) =>
                {
                    // Stand again, as the driver does.
                    self.tabs[i].candidacy = None;
                    self.tabs[i].campaign_at = Some(now + 1);
                }
                ElectionEffect::Granted(ticket) => {
                    let tab = &mut self.tabs[i];
                    let hold = tab.plan.intents.front().and_then(|intent| intent.hold_ms);
                    tab.plan.intents.pop_front();
                    tab.holding = Some((ticket.clone(), hold.map(|h| now + h)));
                    self.request(i, &ticket).granted_at = Some(now);
                }
                ElectionEffect::Lost(ticket) | ElectionEffect::TimedOut(ticket) => {
                    let tab = &mut self.tabs[i];
                    if tab.holding.as_ref().is_some_and(|(t, _)| *t == ticket) {
                        tab.holding = None;
                    } else {
                        tab.plan.intents.pop_front();
                    }
                    tab.busy = false;
                    tab.ready_at = now + 1;
                    self.request(i, &ticket).ended = true;
                }
                ElectionEffect::ScheduleTick { at_ms } => {
                    assert!(at_ms >= now, "a tick in the past");
                    self.tabs[i].timer = Some(at_ms);
                }
            }
        }
    }

    fn request(&mut self, tab: usize, ticket: &LockTicket) -> &mut Request {
        let at = self
            .requests
            .iter()
            .position(|r| r.tab == tab && &r.ticket == ticket)
            .expect("an effect for a ticket never requested");
        &mut self.requests[at]
    }

    /// The next thing to happen: (time, what).
    fn next_event(&self) -> Option<(u64, Step)> {
        let mut best: Option<(u64, Step)> = None;
        let mut offer = |at: u64, step: Step| {
            let earlier = match &best {
                Some((b, _)) => at < *b,
                None => true,
            };
            if earlier {
                best = Some((at, step));
            }
        };
        if let Some(Reverse((at, seq, to, from))) = self.inflight.peek() {
            offer(*at, Step::Deliver(*seq, *to, *from));
        }
        for (i, tab) in self.tabs.iter().enumerate() {
            if !tab.alive {
                continue;
            }
            if let Some(at) = tab.plan.crash_at {
                offer(at, Step::Crash(i));
            }
            if let Some(at) = tab.timer {
                offer(at, Step::Tick(i));
            }
            if let Some((_, Some(at))) = &tab.holding {
                offer(*at, Step::Release(i));
            }
            if let Some(at) = tab.campaign_at {
                offer(at, Step::Campaign(i));
            }
            if !tab.busy {
                if let Some(intent) = tab.plan.intents.front() {
                    offer(intent.at.max(tab.ready_at), Step::Acquire(i));
                }
            }
        }
        best
    }

    fn run(&mut self, until: u64) {
        while let Some((at, step)) = self.next_event() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.step(step);
            self.observe();
        }
        self.now = until;
    }

    fn step(&mut self, step: Step) {
        let now = self.now;
        if self.trace {
            let detail = match step {
                Step::Deliver(seq, _, _) => format!("{:?}", self.messages.get(&seq)),
                _ => String::new(),
            };
            eprintln!("{now} {step:?} {detail}");
        }
        // A frozen tab does nothing until it thaws; what it was due to
        // do waits.
        let target = match step {
            Step::Deliver(_, to, _) => to,
            Step::Crash(i)
            | Step::Tick(i)
            | Step::Release(i)
            | Step::Acquire(i)
            | Step::Campaign(i) => i,
        };
        if let Some(thaw) = self.tabs[target].frozen_until(now) {
            match step {
                Step::Deliver(seq, to, from) => {
                    self.inflight.pop();
                    self.inflight.push(Reverse((thaw, seq, to, from)));
                }
                Step::Tick(i) => self.tabs[i].timer = Some(thaw),
                Step::Release(i) => {
                    if let Some((_, Some(at))) = &mut self.tabs[i].holding {
                        *at = thaw;
                    }
                }
                Step::Acquire(i) => self.tabs[i].ready_at = thaw,
                Step::Campaign(i) => self.tabs[i].campaign_at = Some(thaw),
                Step::Crash(i) => self.tabs[i].alive = false,
            }
            return;
        }
        match step {
            Step::Deliver(seq, to, from) => {
                self.inflight.pop();
                if self.tabs[to].alive && self.tabs[to].plan.join_at <= now {
                    if let Some(message) = self.messages.get(&seq).cloned() {
                        let tab = self.tabs[from].table.me().tab.clone();
                        let fx = self.tabs[to].table.receive(&tab, message, now);
                        self.effects(to, fx);
                    }
                }
            }
            Step::Crash(i) => self.tabs[i].alive = false,
            Step::Campaign(i) => {
                let (ticket, fx) = self.tabs[i].table.acquire(LEADER_LOCK, None, now);
                self.tabs[i].candidacy = Some(ticket);
                self.tabs[i].campaign_at = None;
                self.effects(i, fx);
            }
            Step::Tick(i) => {
                self.tabs[i].timer = None;
                let fx = self.tabs[i].table.tick(now);
                self.effects(i, fx);
            }
            Step::Release(i) => {
                if let Some((ticket, _)) = self.tabs[i].holding.take() {
                    let fx = self.tabs[i].table.release(&ticket, now);
                    self.tabs[i].busy = false;
                    self.tabs[i].ready_at = now + 1;
                    self.request(i, &ticket).ended = true;
                    self.effects(i, fx);
                }
            }
            Step::Acquire(i) => {
                let Some(intent) = self.tabs[i].plan.intents.front().cloned() else {
                    return;
                };
                let (ticket, fx) = self.tabs[i]
                    .table
                    .acquire(intent.lock, intent.timeout_ms, now);
                self.tabs[i].busy = true;
                self.requests.push(Request {
                    tab: i,
                    ticket,
                    sent_at: now,
                    granted_at: None,
                    ended: false,
                });
                self.effects(i, fx);
            }
        }
    }

    /// Runs until every live tab has done all it meant to (or `limit`).
    fn run_to_quiet(&mut self, limit: u64) {
        while self.now < limit {
            self.run(self.now + 10_000);
            let quiet = self
                .tabs
                .iter()
                .all(|t| !t.alive || (!t.busy && t.plan.intents.is_empty()));
            if quiet {
                break;
            }
        }
    }

    fn observe(&mut self) {
        for lock in LOCKS.into_iter().chain([LEADER_LOCK]) {
            let holders = self
                .tabs
                .iter()
                .filter(|t| t.alive && t.table.holds_lock(lock, self.now))
                .count();
            if holders > 1 {
                self.duplicates.push((lock, self.now));
            }
        }
    }

    /// The moment after which no duplicate may exist: one heartbeat
    /// plus the lease after the last lost message's delivery time.
    fn calm_after(&self) -> u64 {
        self.last_drop.map_or(0, |t| {
            t + D + self.config.heartbeat_ms + self.config.lease_ms
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Deliver(u64, usize, usize),
    Crash(usize),
    Tick(usize),
    Release(usize),
    Acquire(usize),
    Campaign(usize),
}

/// Random work for `tabs` tabs over `span` ms.
/// Tabs that ask for one lock again and again, holding it briefly:
/// requests, grants and hand-offs fall within one delivery time of
/// each other all the time.
fn crowded_plans(rng: &mut Rng, tabs: usize, span: u64) -> Vec<TabPlan> {
    (0..tabs)
        .map(|_| {
            let mut plan = TabPlan::default();
            let mut at = rng.below(200);
            while at < span {
                plan.intents.push_back(Intent {
                    at,
                    lock: LOCKS[0],
                    hold_ms: Some(rng.below(2 * D)),
                    timeout_ms: None,
                });
                at += rng.below(3 * D);
            }
            plan
        })
        .collect()
}

fn plans(
    rng: &mut Rng,
    tabs: usize,
    span: u64,
    crashes: bool,
    freezes: bool,
    timeouts: bool,
) -> Vec<TabPlan> {
    (0..tabs)
        .map(|_| {
            let mut plan = TabPlan::default();
            if rng.chance(500) {
                plan.join_at = rng.below(span / 2);
            }
            let mut at = plan.join_at + rng.below(500);
            while at < span {
                plan.intents.push_back(Intent {
                    at,
                    lock: LOCKS[rng.below(2) as usize],
                    // Mostly short, sometimes long: a long hold makes an
                    // unresolved duplicate visible.
                    hold_ms: Some(if rng.chance(150) {
                        2_000 + rng.below(8_000)
                    } else {
                        rng.below(400)
                    }),
                    timeout_ms: if timeouts && rng.chance(300) {
                        Some(100 + rng.below(3_000))
                    } else {
                        None
                    },
                });
                at += rng.below(1_500);
            }
            if crashes && rng.chance(300) {
                plan.crash_at = Some(rng.below(span));
            }
            if freezes && rng.chance(400) {
                let from = rng.below(span);
                plan.freeze = Some((from, from + 200 + rng.below(6_000)));
            }
            plan
        })
        .collect()
}

fn fifo_holds(net: &Net) -> Result<(), TestCaseError> {
    for r1 in &net.requests {
        for r2 in &net.requests {
            if r1.ticket.lock != r2.ticket.lock || r2.sent_at < r1.sent_at + D {
                continue;
            }
            if let (Some(g1), Some(g2)) = (r1.granted_at, r2.granted_at) {
                prop_assert!(
                    g1 <= g2,
                    "{:?} made {} ms after {:?} was served first",
                    r2,
                    r2.sent_at - r1.sent_at,
                    r1
                );
            }
        }
    }
    Ok(())
}

/// Which tabs stand for leadership from their load (as every
/// `TabLocks` does): none (0), all (1), or every other one (2), so that
/// tabs with a standing entry meet tabs with one entry at a time.
fn campaign(plans: &mut [TabPlan], which: u8) {
    for (i, plan) in plans.iter_mut().enumerate() {
        plan.campaign = match which {
            0 => false,
            1 => true,
            _ => i % 2 == 0,
        };
    }
}

/// The lone path: tab 0 is alone for a while and takes its locks at
/// once; the others load later (some at the same moment as one of its
/// acquires), some crash, so that it is alone again after their lease.
/// Every tab stands for leadership. Returns the net after the run.
fn lone_case(seed: u64, tabs: usize, loss: u64, loss_until: u64) -> Net {
    let mut rng = Rng::new(seed);
    let span = 20_000;
    let mut plans = Vec::new();
    for i in 0..tabs {
        let join_at = if i == 0 { 0 } else { 3_000 + rng.below(span) };
        let mut plan = TabPlan {
            join_at,
            campaign: true,
            ..TabPlan::default()
        };
        let mut at = join_at + 2_600 + rng.below(200);
        while at < join_at + span {
            plan.intents.push_back(Intent {
                at,
                lock: LOCKS[rng.below(2) as usize],
                hold_ms: Some(if rng.chance(100) {
                    1_000 + rng.below(4_000)
                } else {
                    rng.below(3 * D)
                }),
                timeout_ms: None,
            });
            let gap = if rng.chance(500) { 3 * D } else { 1_500 };
            at += rng.below(gap);
        }
        if i > 0 && rng.chance(400) {
            plan.crash_at = Some(join_at + rng.below(span));
        }
        plans.push(plan);
    }
    let mut net = Net::new(seed, plans, loss, loss_until);
    net.run_to_quiet(2_000_000);
    net
}

/// Tabs that stand for leadership from the start (those in `stand`, and
/// tab 0) and then ask for locks, some `legacy` (the build before
/// answers): the answered path among the others, beside tabs that
/// have one entry at a time.
fn answered_case(seed: u64, tabs: usize, stand: u8, legacy: u8, crashes: bool) -> Net {
    let mut rng = Rng::new(seed);
    let span = 15_000;
    let plans = (0..tabs)
        .map(|i| {
            let mut plan = TabPlan {
                campaign: i == 0 || stand & (1 << i) != 0,
                legacy: legacy & (1 << i) != 0,
                ..TabPlan::default()
            };
            let mut at = 2_600 + rng.below(400);
            while at < span {
                let longest = if rng.chance(100) { 3_000 } else { 2 * D };
                plan.intents.push_back(Intent {
                    at,
                    lock: LOCKS[rng.below(2) as usize],
                    hold_ms: Some(rng.below(longest)),
                    timeout_ms: None,
                });
                let gap = if rng.chance(500) { D } else { 1_000 };
                at += rng.below(gap);
            }
            if crashes && i > 0 && rng.chance(300) {
                plan.crash_at = Some(rng.below(span));
            }
            plan
        })
        .collect();
    let mut net = Net::new(seed, plans, 0, 0);
    net.run_to_quiet(2_000_000);
    net
}

/// A holder or a waiter freezes around the moment a new tab loads.
fn freeze_case(
    seed: u64,
    holds: bool,
    freeze_at: u64,
    freeze_for: u64,
    join_offset: u64,
    others: usize,
    trace: bool,
) -> Net {
    let mut rng = Rng::new(seed);
    let mut plans = Vec::new();
    if !holds {
        // Someone holds first, so that the frozen tab is a waiter.
        plans.push(TabPlan {
            join_at: 0,
            intents: VecDeque::from([Intent {
                at: 0,
                lock: "x",
                hold_ms: Some(freeze_at + rng.below(3_000)),
                timeout_ms: None,
            }]),
            crash_at: None,
            freeze: None,
            campaign: false,
            legacy: false,
        });
    }
    plans.push(TabPlan {
        join_at: 0,
        intents: VecDeque::from([Intent {
            at: 100,
            lock: "x",
            hold_ms: Some(20_000),
            timeout_ms: None,
        }]),
        crash_at: None,
        freeze: Some((freeze_at, freeze_at + freeze_for)),
        campaign: false,
        legacy: false,
    });
    let join = freeze_at.saturating_sub(2_000) + join_offset;
    plans.push(TabPlan {
        join_at: join,
        intents: VecDeque::from([Intent {
            at: join,
            lock: "x",
            hold_ms: Some(3_000),
            timeout_ms: None,
        }]),
        crash_at: None,
        freeze: None,
        campaign: false,
        legacy: false,
    });
    for _ in 0..others {
        let at = rng.below(10_000);
        plans.push(TabPlan {
            join_at: at,
            intents: VecDeque::from([Intent {
                at,
                lock: "x",
                hold_ms: Some(rng.below(2_000)),
                timeout_ms: None,
            }]),
            crash_at: None,
            freeze: None,
            campaign: false,
            legacy: false,
        });
    }
    let mut net = Net::new(seed, plans, 0, 0);
    net.trace = trace;
    net.run(60_000);
    net
}

/// Cases the property test once found: a waiter frozen with its peers'
/// heartbeats queued must not forget them and take the lock on waking.
#[test]
fn a_waking_waiter_hears_its_queue_out_before_taking_the_lock() {
    for (seed, at, len, offset, others) in [
        (11_705_658_973_452_080_330, 4_668, 2_072, 0, 1),
        (13_434_577_894_948_068_134, 7_621, 2_060, 1_965, 2),
    ] {
        let net = freeze_case(seed, false, at, len, offset, others, false);
        assert!(net.duplicates.is_empty(), "{:?}", net.duplicates.first());
    }
}

proptest! {
    // 256 cases unless PROPTEST_CASES says otherwise; no regression
    // files in the source tree.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// No message lost: never two holders of a lock at one moment,
    /// whatever the delivery order, crashes and freezes; every request
    /// of a live tab ends (granted, or timed out); waiters requesting
    /// at least D apart are served in order.
    #[test]
    fn without_loss_a_lock_has_at_most_one_holder(
        seed in any::<u64>(),
        tabs in 2usize..6,
        crashes in any::<bool>(),
        freezes in any::<bool>(),
        timeouts in any::<bool>(),
        campaigns in 0u8..3,
    ) {
        let mut rng = Rng::new(seed);
        let span = 15_000;
        let mut plans = plans(&mut rng, tabs, span, crashes, freezes, timeouts);
        campaign(&mut plans, campaigns);
        let mut net = Net::new(seed, plans, 0, 0);
        net.run_to_quiet(2_000_000);
        prop_assert!(net.duplicates.is_empty(), "two holders at {:?}", net.duplicates.first());
        for r in &net.requests {
            if net.tabs[r.tab].alive {
                prop_assert!(r.ended || r.granted_at.is_some(), "request never served: {:?}", r);
            }
        }
        if !crashes && !freezes && !timeouts {
            fifo_holds(&net)?;
            prop_assert!(net.requests.iter().all(|r| r.granted_at.is_some()));
        }
    }

    /// Messages lost (up to 30 %) until a moment, crashes and freezes:
    /// duplicates may appear while messages are lost, but none lasts
    /// past one heartbeat plus the lease after the last lost message,
    /// and every request of a live tab is served in the end.
    #[test]
    fn crowded_hand_offs_keep_one_holder(
        seed in any::<u64>(),
        tabs in 2usize..7,
        campaigns in 0u8..3,
    ) {
        let mut rng = Rng::new(seed);
        let mut plans = crowded_plans(&mut rng, tabs, 4_000);
        campaign(&mut plans, campaigns);
        let mut net = Net::new(seed, plans, 0, 0);
        net.run_to_quiet(2_000_000);
        prop_assert!(net.duplicates.is_empty(), "two holders at {:?}", net.duplicates.first());
        prop_assert!(net.requests.iter().all(|r| r.granted_at.is_some()));
    }

    #[test]
    fn with_loss_duplicates_end_within_a_heartbeat_and_a_lease(
        seed in any::<u64>(),
        tabs in 2usize..6,
        loss in 1u64..300,
        crashes in any::<bool>(),
        freezes in any::<bool>(),
        campaigns in 0u8..3,
    ) {
        let mut rng = Rng::new(seed);
        let span = 20_000;
        let mut plans = plans(&mut rng, tabs, span, crashes, freezes, true);
        campaign(&mut plans, campaigns);
        let mut net = Net::new(seed, plans, loss, span / 2);
        net.run_to_quiet(2_000_000);
        let calm = net.calm_after();
        let late: Vec<_> = net.duplicates.iter().filter(|(_, at)| *at >= calm).collect();
        prop_assert!(late.is_empty(), "two holders at {:?}, after {}", late.first(), calm);
        for r in &net.requests {
            if net.tabs[r.tab].alive {
                prop_assert!(r.ended || r.granted_at.is_some(), "request never served: {:?}", r);
            }
        }
    }

    /// The lone path (no settle wait for a tab that knows it is alone)
    /// never gives two holders while every message arrives within D,
    /// however the others' loads, requests and crashes fall around
    /// its acquires; it is taken (tab 0 alone at first); and every
    /// request is served.
    #[test]
    fn the_lone_path_never_grants_a_lock_twice(seed in any::<u64>(), tabs in 1usize..5) {
        let net = lone_case(seed, tabs, 0, 0);
        prop_assert!(net.duplicates.is_empty(), "two holders at {:?}", net.duplicates.first());
        prop_assert!(net.tabs[0].table.early_grants() > 0, "the lone path was never taken");
        for r in &net.requests {
            if net.tabs[r.tab].alive {
                prop_assert!(r.granted_at.is_some(), "request never served: {:?}", r);
            }
        }
    }

    /// A hand-off named for a request that has not reached another
    /// waiter yet, which would be alone but for that request (it has a
    /// standing entry; the holder and the named tab do not): the waiter
    /// must not take the lock beside the named tab.
    #[test]
    fn a_hand_off_to_an_unheard_tab_keeps_one_holder(
        seed in any::<u64>(),
        named_before in 0u64..D,
        later in 1u64..D,
        others in 0usize..2,
    ) {
        let release_at = 5_000;
        let one = |at: u64, hold_ms: u64| TabPlan {
            intents: VecDeque::from([Intent { at, lock: "x", hold_ms: Some(hold_ms), timeout_ms: None }]),
            ..TabPlan::default()
        };
        let named_at = release_at - named_before;
        let mut plans = vec![
            one(0, release_at - 2_500),
            TabPlan { campaign: true, ..one(named_at + later, 500) },
            one(named_at, 500),
        ];
        for i in 0..others {
            plans.push(one(named_at + i as u64, 500));
        }
        let mut net = Net::new(seed, plans, 0, 0);
        net.run_to_quiet(2_000_000);
        prop_assert_eq!(net.requests[0].granted_at, Some(2_500));
        prop_assert!(net.duplicates.is_empty(), "two holders at {:?}", net.duplicates.first());
        prop_assert!(net.requests.iter().all(|r| r.granted_at.is_some()));
    }

    /// The same with messages lost (up to 30 %) until a moment: a lone
    /// tab that is wrong about being alone makes a duplicate only
    /// while messages are lost, and it ends within one heartbeat plus
    /// the lease after the last loss.
    #[test]
    fn the_lone_path_with_loss_resolves_duplicates(
        seed in any::<u64>(),
        tabs in 2usize..5,
        loss in 1u64..300,
    ) {
        let net = lone_case(seed, tabs, loss, 12_000);
        let calm = net.calm_after();
        let late: Vec<_> = net.duplicates.iter().filter(|(_, at)| *at >= calm).collect();
        prop_assert!(late.is_empty(), "two holders at {:?}, after {}", late.first(), calm);
        for r in &net.requests {
            if net.tabs[r.tab].alive {
                prop_assert!(r.granted_at.is_some(), "request never served: {:?}", r);
            }
        }
    }

    /// The answered path (a free lock taken once every known tab has
    /// answered, before the settle wait) among tabs that stand for
    /// leadership and tabs with one entry at a time, some of them of
    /// the build before answers (they never answer and cannot read
    /// answers), some crashing: never two holders, every request of a
    /// live tab served, in order when made D apart; and the path is
    /// taken when no tab is of the older build.
    #[test]
    fn answered_grants_keep_one_holder_beside_older_tabs(
        seed in any::<u64>(),
        tabs in 2usize..6,
        stand in any::<u8>(),
        legacy in any::<u8>(),
        crashes in any::<bool>(),
    ) {
        let net = answered_case(seed, tabs, stand, legacy, crashes);
        prop_assert!(net.duplicates.is_empty(), "two holders at {:?}", net.duplicates.first());
        for r in &net.requests {
            if net.tabs[r.tab].alive {
                prop_assert!(r.granted_at.is_some(), "request never served: {:?}", r);
            }
        }
        if !crashes {
            fifo_holds(&net)?;
        }
        let net = answered_case(seed, tabs, stand, 0, crashes);
        prop_assert!(net.duplicates.is_empty(), "two holders at {:?}", net.duplicates.first());
        let early: u64 = net.tabs.iter().map(|t| t.table.early_grants()).sum();
        prop_assert!(early > 0, "the answered path was never taken");
    }

    /// The dangerous windows of a freeze, probed densely: a holder or a
    /// waiter freezes (its messages wait, its timers stop) around the
    /// moment a new tab loads and asks for the same lock.
    #[test]
    fn a_freeze_around_a_newcomer_never_gives_two_holders(
        seed in any::<u64>(),
        holds in any::<bool>(),
        freeze_at in 2_000u64..8_000,
        freeze_for in 100u64..5_000,
        join_offset in 0u64..4_000,
        others in 0usize..3,
    ) {
        let net = freeze_case(seed, holds, freeze_at, freeze_for, join_offset, others, false);
        prop_assert!(net.duplicates.is_empty(), "two holders at {:?}", net.duplicates.first());
    }

    /// A partition (every message lost until `heal_at`) lets every tab
    /// take the lock; once it heals, exactly one keeps it within one
    /// heartbeat plus the lease, and the lock is never free meanwhile
    /// for long.
    #[test]
    fn after_a_partition_duplicates_resolve_to_one(
        seed in any::<u64>(),
        tabs in 2usize..5,
        heal_at in 3_000u64..10_000,
    ) {
        let mut rng = Rng::new(seed);
        let plans = (0..tabs)
            .map(|_| TabPlan {
                join_at: 0,
                intents: VecDeque::from([Intent {
                    at: rng.below(heal_at - 2_600),
                    lock: "x",
                    hold_ms: Some(30_000),
                    timeout_ms: None,
                }]),
                crash_at: None,
                freeze: None,
                campaign: false,
                legacy: false,
            })
            .collect();
        let mut net = Net::new(seed, plans, 1_000, heal_at);
        net.run(heal_at + 20_000);
        prop_assert!(net.duplicates.iter().any(|(_, at)| *at < heal_at), "the partition made no duplicate");
        let calm = net.calm_after();
        prop_assert!(calm <= heal_at + D + net.config.heartbeat_ms + net.config.lease_ms);
        let late: Vec<_> = net.duplicates.iter().filter(|(_, at)| *at >= calm).collect();
        prop_assert!(late.is_empty(), "two holders at {:?}, after {}", late.first(), calm);
        let holders = net.tabs.iter().filter(|t| t.table.holds_lock("x", net.now)).count();
        prop_assert_eq!(holders, 1);
    }

    /// A holder that crashes keeps nobody waiting longer than the lease
    /// (plus delivery), and the waiters then go in request order.
    #[test]
    fn a_crashed_holders_lock_goes_to_a_waiter_after_the_lease(
        seed in any::<u64>(),
        waiters in 1usize..5,
        crash_at in 3_000u64..12_000,
    ) {
        let mut rng = Rng::new(seed);
        let mut plans = vec![TabPlan {
            join_at: 0,
            intents: VecDeque::from([Intent { at: 0, lock: "x", hold_ms: None, timeout_ms: None }]),
            crash_at: Some(crash_at),
            freeze: None,
            campaign: false,
            legacy: false,
        }];
        for _ in 0..waiters {
            let mut plan = TabPlan::default();
            let at = 200 + rng.below(crash_at - 200);
            // Some waiters load after the holder took the lock.
            plan.join_at = if rng.chance(500) { at } else { 0 };
            plan.intents.push_back(Intent {
                at,
                lock: "x",
                hold_ms: Some(rng.below(300)),
                timeout_ms: None,
            });
            plans.push(plan);
        }
        let mut net = Net::new(seed, plans, 0, 0);
        net.run(crash_at + 30_000);
        prop_assert!(net.duplicates.is_empty());
        prop_assert_eq!(net.requests[0].granted_at, Some(net.config.join_ms()));
        let first = net.requests[1..].iter().filter_map(|r| r.granted_at).min();
        prop_assert!(first.is_some());
        let first = first.unwrap_or(0);
        prop_assert!(first >= crash_at, "granted at {} while the holder lived", first);
        prop_assert!(
            first <= crash_at + D + net.config.lease_ms + net.config.settle_ms,
            "granted at {}, crash at {}",
            first,
            crash_at
        );
        prop_assert!(net.requests.iter().all(|r| r.granted_at.is_some()));
        fifo_holds(&net)?;
    }
}
