//! Running a seeded simulation over many seeds, for the engine's and the
//! sync progress's simulations.
//!
//! A run takes seeds 1 to `CRM_SIM_SEEDS` (a default per simulation), and
//! beside them `CRM_SIM_FRESH` fresh seeds drawn anew on every run (a
//! default per simulation too), so that each run explores paths no run
//! before it took. `CRM_SIM_SEED=s` replays one seed, fresh or not: a
//! failing seed's report names it. `CRM_SIM_ALL=1` goes on past failures
//! (see [`run_seeds`]); `scripts/sim-long.sh` runs 100,000 seeds so.

use std::hash::{BuildHasher, Hasher};

/// Fresh seeds are drawn from here up: never one of the fixed range.
const FRESH_FROM: u64 = 1_000_000;

/// The seed `CRM_SIM_SEED` asks to replay, if any.
fn replayed() -> Option<u64> {
    let seed = std::env::var("CRM_SIM_SEED").ok()?;
    Some(seed.trim().parse().expect("CRM_SIM_SEED is a number"))
}

fn count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// `n` seeds no earlier run is likely to have taken, from the process's
/// own randomness (the standard library's hasher keys).
fn fresh(n: u64) -> Vec<u64> {
    let state = std::collections::hash_map::RandomState::new();
    (0..n)
        .map(|i| {
            let mut hasher = state.build_hasher();
            hasher.write_u64(i);
            FRESH_FROM + hasher.finish() % 1_000_000_000
        })
        .collect()
}

/// The seeds to run: `CRM_SIM_SEED`, or `CRM_SIM_FROM` (1 when unset) to
/// `CRM_SIM_SEEDS` (`range` when unset) and `CRM_SIM_FRESH` fresh ones
/// (`fresh` when unset).
pub fn seeds(range: u64, fresh_seeds: u64) -> Vec<u64> {
    if let Some(seed) = replayed() {
        return vec![seed];
    }
    let mut seeds: Vec<u64> = (count("CRM_SIM_FROM", 1)..=count("CRM_SIM_SEEDS", range)).collect();
    seeds.extend(fresh(count("CRM_SIM_FRESH", fresh_seeds)));
    seeds
}

/// Runs `run` on seeds 1 to `range` and `fresh` fresh seeds (see
/// [`seeds`]); panics with the failing seeds and the first failure's
/// report.
pub fn run_all(range: u64, fresh: u64, run: impl Fn(u64) -> Result<(), String> + Sync) {
    run_seeds(&seeds(range, fresh), run);
}

/// Runs `run` on the given seeds (or on `CRM_SIM_SEED` alone): seeds a
/// longer run once found failing, kept so that every run replays them.
pub fn run_fixed(fixed: &[u64], run: impl Fn(u64) -> Result<(), String> + Sync) {
    match replayed() {
        Some(seed) => run_seeds(&[seed], run),
        None => run_seeds(fixed, run),
    }
}

/// Runs `run` on every seed, one worker per core (at most 8, or
/// `CRM_SIM_WORKERS`); panics with
/// the failing seeds and the first failure's report. Each worker stops at
/// its first failure, unless `CRM_SIM_ALL` is set (a long run: every
/// failing seed is found, its report printed as it fails, and the count of
/// seeds done and seeds per second every 10,000 seeds and at the end).
fn run_seeds(seeds: &[u64], run: impl Fn(u64) -> Result<(), String> + Sync) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(8);
    let threads = (count("CRM_SIM_WORKERS", threads as u64) as usize).max(1);
    let all = std::env::var_os("CRM_SIM_ALL").is_some();
    let started = std::time::Instant::now();
    let done = AtomicU64::new(0);
    let rate = |n: u64| {
        let secs = started.elapsed().as_secs_f64();
        format!(
            "{n} of {} seeds in {secs:.0} s, {:.1} seeds/s",
            seeds.len(),
            n as f64 / secs.max(0.001)
        )
    };
    let (run, done, rate) = (&run, &done, &rate);
    let failures: Vec<(u64, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<u64> = seeds.iter().copied().skip(t).step_by(threads).collect();
                scope.spawn(move || {
                    let mut failed = Vec::new();
                    for seed in mine {
                        let result = run(seed);
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if all && n % 10_000 == 0 {
                            eprintln!("sim: {}", rate(n));
                        }
                        if let Err(why) = result {
                            if all {
                                eprintln!("sim: seed {seed} FAILED\n{why}\n");
                            }
                            failed.push((seed, why));
                            if !all {
                                break;
                            }
                        }
                    }
                    failed
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    if all {
        eprintln!("sim: {}", rate(done.load(Ordering::Relaxed)));
    }
    if let Some((_, first)) = failures.first() {
        let failing: Vec<String> = failures.iter().map(|(s, _)| s.to_string()).collect();
        let stops = if all {
            "CRM_SIM_ALL: every failing seed"
        } else {
            "each worker stops at its first failure; CRM_SIM_ALL=1 finds them all"
        };
        panic!(
            "{} of {} seeds failed ({stops}): seeds {}; \
             replay one with CRM_SIM_SEED; the first:\n{first}",
            failures.len(),
            seeds.len(),
            failing.join(", ")
        );
    }
}
