//! Running a seeded simulation over many seeds, for the engine's and the
//! sync progress's simulations: `CRM_SIM_SEED=s` replays one seed,
//! `CRM_SIM_SEEDS=n` runs seeds 1 to n, spread over the cores.

/// The seeds to run: `CRM_SIM_SEED`, or 1 to `CRM_SIM_SEEDS` (`default`
/// when unset).
pub fn seeds(default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("CRM_SIM_SEED") {
        return vec![seed.parse().expect("CRM_SIM_SEED is a number")];
    }
    let n: u64 = std::env::var("CRM_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (1..=n).collect()
}

/// Runs `run` on every seed, one worker per core (at most 8), each
/// stopping at its first failure; panics with the first failure's report.
pub fn run_all(default: u64, run: impl Fn(u64) -> Result<(), String> + Sync) {
    let seeds = seeds(default);
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(8);
    let run = &run;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<u64> = seeds.iter().copied().skip(t).step_by(threads).collect();
                scope.spawn(move || mine.into_iter().find_map(|seed| run(seed).err()))
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().ok().flatten())
            .collect()
    });
    if let Some(first) = failures.first() {
        panic!(
            "{} of {} seeds failed (each worker stops at its first failure); the first:\n{first}",
            failures.len(),
            seeds.len()
        );
    }
}
