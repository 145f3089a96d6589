//! Sync jobs with the spreadsheet. Each user has a FIFO queue (one job at a
//! time per user); different users run at once, bounded by a server-wide
//! semaphore of `--workers` permits. A job runs on the instance that queued
//! it, which keeps it in memory and publishes it to the database
//! ([`crate::job_leases`]) under a lease: other instances answer for it from
//! there, and end it as `error` when the lease runs out (its instance died).
//! Finished jobs are forgotten after [`KEEP_FINISHED`].

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::db::{random_hex, timestamp_rfc3339, Db, Tx};
use crate::error::ApiError;
use crate::job_leases;
use crate::sync_conflicts::SheetConflict;
use crate::sync_model::{ConflictRow, JobLoad, SyncKind, SyncStats, SyncStatus};

mod run;
use run::{cancelled_message, Run};

/// How long a finished job can still be asked about.
pub const KEEP_FINISHED: Duration = Duration::from_secs(10 * 60);

struct Job {
    id: String,
    user: String,
    kind: SyncKind,
    status: SyncStatus,
    progress: u8,
    message: String,
    stats: SyncStats,
    conflict_rows: Vec<ConflictRow>,
    /// Field by field, what [`Self::conflict_rows`] did not apply.
    conflicts: Vec<SheetConflict>,
    error: Option<String>,
    created_at: String,
    updated_at: String,
    seq: u64,
    started: bool,
    finished_at: Option<Instant>,
    cancel: Arc<AtomicBool>,
    /// `true` once the job has finished: a cancel waits for it, so that its
    /// answer counts every row the job wrote.
    finished: watch::Sender<bool>,
    /// A person asked to cancel it ...
    cancel_requested: bool,
    /// ... and was answered: a second cancel is `already_finished`.
    cancel_answered: bool,
}

#[derive(Default)]
struct Queues {
    /// How long finished jobs are kept ([`KEEP_FINISHED`] unless a test says otherwise).
    keep_finished: Duration,
    jobs: HashMap<String, Job>,
    /// Per user: ids of jobs not finished yet, the running one first. A user
    /// has a runner task exactly while their key is in this map.
    waiting: HashMap<String, VecDeque<String>>,
    next_seq: u64,
}

impl Queues {
    fn status_json(&self, job: &Job) -> Value {
        let position = if job.status.is_finished() {
            0
        } else {
            self.waiting
                .get(&job.user)
                .and_then(|q| q.iter().position(|id| *id == job.id))
                .unwrap_or(0)
        };
        json!({
            "syncId": job.id,
            "kind": job.kind,
            "status": job.status,
            "progress": job.progress,
            "message": job.message,
            "position": position,
            "stats": job.stats,
            "conflictRows": job.conflict_rows,
            "error": job.error,
            "createdAt": job.created_at,
            "updatedAt": job.updated_at,
        })
    }

    fn purge(&mut self) {
        let keep = self.keep_finished;
        self.jobs
            .retain(|_, j| j.finished_at.is_none_or(|t| t.elapsed() < keep));
    }

    fn owned(&mut self, user: &str, id: &str) -> Result<&mut Job, ApiError> {
        self.purge();
        let job = self.jobs.get_mut(id).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "sync_not_found",
                "no such sync job (unknown, or finished long ago)",
            )
        })?;
        if job.user != user {
            return Err(ApiError::forbidden("this sync job belongs to another user"));
        }
        Ok(job)
    }
}

/// Where the sheet is and how slow it pretends to be.
#[derive(Debug, Clone)]
pub struct SheetConfig {
    /// The CSV file.
    pub path: PathBuf,
    /// Delay spread over each job's download phase.
    pub latency: Duration,
}

/// All sync jobs of the server.
pub struct SyncJobs {
    queues: Mutex<Queues>,
    workers: Arc<Semaphore>,
    jobs_per_user: usize,
    db: Arc<Db>,
    sheet: SheetConfig,
    runtime: tokio::runtime::Handle,
    /// Where finished runs are counted (set once at start).
    metrics: std::sync::OnceLock<Arc<crate::metrics::ServerMetrics>>,
    /// This instance, as `sync_jobs.instance` names it.
    instance: String,
}

/// Why a job stopped early.
enum Stop {
    Cancelled,
    Failed(String),
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        Stop::Failed(e.message)
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Failed(e.to_string())
    }
}

impl From<tokio::task::JoinError> for Stop {
    fn from(e: tokio::task::JoinError) -> Self {
        Stop::Failed(e.to_string())
    }
}

impl SyncJobs {
    /// Creates the job registry; runners are spawned on `runtime`.
    ///
    /// # Errors
    /// When no random instance id can be made.
    pub fn new(
        db: Arc<Db>,
        sheet: SheetConfig,
        workers: usize,
        keep_finished: Duration,
        jobs_per_user: usize,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            queues: Mutex::new(Queues {
                keep_finished,
                ..Queues::default()
            }),
            // Clamped so a silly --workers value cannot make the semaphore panic.
            workers: Arc::new(Semaphore::new(workers.clamp(1, 4096))),
            jobs_per_user: jobs_per_user.max(1),
            db,
            sheet,
            runtime,
            metrics: std::sync::OnceLock::new(),
            instance: random_hex(8)?,
        })
    }

    /// Counts each finished run in `metrics` from now on.
    pub fn report_to(&self, metrics: Arc<crate::metrics::ServerMetrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Jobs queued per user and running now.
    pub fn load(&self) -> JobLoad {
        let q = self.lock();
        let mut load = JobLoad::default();
        for (user, ids) in &q.waiting {
            for id in ids {
                let Some(job) = q.jobs.get(id) else { continue };
                if job.status.is_finished() {
                    continue;
                }
                if job.started {
                    load.running += 1;
                } else {
                    *load.queued.entry(user.clone()).or_default() += 1;
                }
            }
        }
        load
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        // Job state is plain data; a panic elsewhere cannot leave it half-written.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a job for `user` and returns its status (`queued`, with its
    /// position); records it in `tx` for the other instances.
    ///
    /// # Errors
    /// `429 too_many_jobs` when the user has the most unfinished jobs
    /// allowed (on every instance); internal error when no random id can be
    /// made.
    pub fn enqueue(
        self: &Arc<Self>,
        tx: &Tx<'_>,
        user: &str,
        kind: SyncKind,
    ) -> Result<Value, ApiError> {
        let id = random_hex(16)?;
        let now = timestamp_rfc3339();
        // One enqueue per user at a time, on every instance.
        tx.lock(&format!("sync:{user}"))?;
        let elsewhere = job_leases::unfinished_elsewhere(tx, user, &self.instance)?;
        let mut q = self.lock();
        q.purge();
        let unfinished = q.waiting.get(user).map_or(0, VecDeque::len) + elsewhere;
        if unfinished >= self.jobs_per_user {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_jobs",
                format!(
                    "{unfinished} sync jobs are waiting or running; start another when one has finished"
                ),
            )
            .with_details(json!({ "limit": self.jobs_per_user })));
        }
        q.next_seq += 1;
        let job = Job {
            id: id.clone(),
            user: user.to_owned(),
            kind,
            status: SyncStatus::Queued,
            progress: 0,
            message: "Waiting to start".into(),
            stats: SyncStats::default(),
            conflict_rows: Vec::new(),
            conflicts: Vec::new(),
            error: None,
            created_at: now.clone(),
            updated_at: now,
            seq: q.next_seq,
            started: false,
            finished_at: None,
            cancel: Arc::new(AtomicBool::new(false)),
            finished: watch::Sender::new(false),
            cancel_requested: false,
            cancel_answered: false,
        };
        let needs_runner = !q.waiting.contains_key(user);
        q.waiting
            .entry(user.to_owned())
            .or_default()
            .push_back(id.clone());
        let status = q.status_json(&job);
        q.jobs.insert(id.clone(), job);
        drop(q);
        job_leases::insert(tx, &id, user, &self.instance, &status)?;
        tracing::info!(sync_id = %id, user = %user, ?kind, "sync job queued");
        if needs_runner {
            let jobs = Arc::clone(self);
            let user = user.to_owned();
            self.runtime
                .spawn(async move { jobs.run_queue(user).await });
        }
        Ok(status)
    }

    /// Status of one of `user`'s jobs.
    ///
    /// # Errors
    /// `404 sync_not_found`, `403 forbidden`.
    pub fn status(&self, user: &str, id: &str) -> Result<Value, ApiError> {
        let mut q = self.lock();
        q.owned(user, id)?;
        let job = q
            .jobs
            .get(id)
            .ok_or_else(|| ApiError::internal("job vanished"))?;
        Ok(q.status_json(job))
    }

    /// Asks one of `user`'s jobs to stop. A queued job is cancelled at
    /// once; a running one stops at its next row (or chunk of the download),
    /// and the receiver turns `true` when it has. `None` when there is
    /// nothing to wait for (no such job of `user`, or it has finished):
    /// [`Self::cancel`] then answers.
    pub fn stop(&self, user: &str, id: &str) -> Option<watch::Receiver<bool>> {
        let mut q = self.lock();
        let job = q.owned(user, id).ok()?;
        if job.status.is_finished() {
            return None;
        }
        job.cancel.store(true, Ordering::SeqCst);
        job.cancel_requested = true;
        if job.started {
            tracing::info!(sync_id = %id, user = %user, "sync job asked to stop");
            return Some(job.finished.subscribe());
        }
        // Not running: out of the queue now, nothing was written.
        job.status = SyncStatus::Cancelled;
        job.message = cancelled_message(job.kind, &job.stats);
        job.updated_at = timestamp_rfc3339();
        job.finished_at = Some(Instant::now());
        job.finished.send_replace(true);
        if let Some(waiting) = q.waiting.get_mut(user) {
            waiting.retain(|j| j != id);
        }
        tracing::info!(sync_id = %id, user = %user, started = false, "sync job cancelled");
        None
    }

    /// The answer to a cancel, once [`Self::stop`] and the wait for the job
    /// to stop are done: the job, `cancelled`, with the counts of the rows
    /// it wrote.
    ///
    /// # Errors
    /// `404 sync_not_found`, `403 forbidden`; `409 already_finished` when
    /// the job ended otherwise, or its cancel was answered already.
    pub fn cancel(&self, tx: &Tx<'_>, user: &str, id: &str) -> Result<Value, ApiError> {
        let mut q = self.lock();
        let job = match q.owned(user, id) {
            Err(e) if e.code == "sync_not_found" => {
                drop(q);
                return cancelled_elsewhere(tx, user, id, e);
            }
            other => other?,
        };
        // A cancel answered through another instance counts too.
        let ours = job.status == SyncStatus::Cancelled
            && job.cancel_requested
            && !job.cancel_answered
            && job_leases::claim_cancel_answer(tx, id)?;
        if !ours {
            // Still running cannot be: `stop` came first and was waited for.
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_finished",
                format!(
                    "the sync job is already {}",
                    json!(job.status).as_str().unwrap_or("finished")
                ),
            ));
        }
        job.cancel_answered = true;
        let job = q
            .jobs
            .get(id)
            .ok_or_else(|| ApiError::internal("job vanished"))?;
        let status = q.status_json(job);
        let conflicts = json!(job.conflicts);
        drop(q);
        job_leases::publish(tx, id, &status, Some(&conflicts))?;
        Ok(status)
    }

    /// What a from-sheet job did not apply, field by field.
    ///
    /// # Errors
    /// `404 sync_not_found`, `403 forbidden`.
    pub fn conflicts(&self, user: &str, id: &str) -> Result<Value, ApiError> {
        let mut q = self.lock();
        let job = q.owned(user, id)?;
        Ok(json!({ "items": job.conflicts }))
    }

    /// `user`'s jobs, newest first.
    pub fn list(&self, user: &str) -> Value {
        let mut q = self.lock();
        q.purge();
        let mut mine: Vec<&Job> = q.jobs.values().filter(|j| j.user == user).collect();
        mine.sort_by_key(|j| std::cmp::Reverse(j.seq));
        let items: Vec<Value> = mine.iter().map(|j| q.status_json(j)).collect();
        json!({ "items": items })
    }

    /// How long finished jobs are kept.
    pub fn keep_finished(&self) -> Duration {
        self.lock().keep_finished
    }

    /// Forgets jobs finished more than [`KEEP_FINISHED`] ago.
    pub fn purge(&self) {
        self.lock().purge();
    }

    async fn run_queue(self: Arc<Self>, user: String) {
        loop {
            // The semaphore is never closed, so this only fails if it were.
            let Ok(permit) = Arc::clone(&self.workers).acquire_owned().await else {
                self.lock().waiting.remove(&user);
                return;
            };
            let next = {
                let mut q = self.lock();
                let front = q.waiting.get(&user).and_then(|w| w.front().cloned());
                match front {
                    None => {
                        q.waiting.remove(&user);
                        None
                    }
                    Some(id) => q.jobs.get_mut(&id).map(|job| {
                        job.started = true;
                        (id, job.kind, Arc::clone(&job.cancel))
                    }),
                }
            };
            let Some((id, kind, cancel)) = next else {
                // Either the queue is empty (runner ends) or the id has no job,
                // which cannot happen; drop it so the queue never gets stuck.
                let mut q = self.lock();
                match q.waiting.get_mut(&user) {
                    Some(w) if !w.is_empty() => {
                        w.pop_front();
                        continue;
                    }
                    _ => return,
                }
            };
            let run = Run {
                jobs: Arc::clone(&self),
                id: id.clone(),
                user: user.clone(),
                cancel,
            };
            let began = Instant::now();
            // A task of its own, so even a bug that panics cannot wedge the queue.
            let outcome = tokio::spawn(async move {
                match kind {
                    SyncKind::FromSheet => run.import_sheet().await,
                    SyncKind::ToSheet => run.export_sheet().await,
                }
            })
            .await
            .unwrap_or_else(|e| Err(Stop::from(e)));
            self.finish(&user, &id, outcome, began.elapsed());
            drop(permit);
        }
    }

    /// Ends a run that took `took`, and counts it (under the lock, so no one
    /// sees the job finished before it is counted).
    fn finish(&self, user: &str, id: &str, outcome: Result<String, Stop>, took: Duration) {
        let mut q = self.lock();
        if let Some(w) = q.waiting.get_mut(user) {
            w.retain(|j| j != id);
        }
        let Some(job) = q.jobs.get_mut(id) else {
            return;
        };
        if !job.status.is_finished() {
            match outcome {
                Ok(message) => {
                    job.status = SyncStatus::Complete;
                    job.progress = 100;
                    job.message = message;
                }
                Err(Stop::Cancelled) => {
                    job.status = SyncStatus::Cancelled;
                    job.message = cancelled_message(job.kind, &job.stats);
                }
                Err(Stop::Failed(e)) => {
                    job.status = SyncStatus::Error;
                    job.message = format!("Failed: {e}");
                    job.error = Some(e);
                }
            }
            job.updated_at = timestamp_rfc3339();
            job.finished_at = Some(Instant::now());
        }
        job.finished.send_replace(true);
        tracing::info!(
            sync_id = %id, user = %user, status = ?job.status, progress = job.progress,
            stats = ?job.stats, "sync job finished"
        );
        if let Some(metrics) = self.metrics.get() {
            metrics.sync_job_finished(job.status, took);
        }
        let job = &q.jobs[id];
        let (status, conflicts) = (q.status_json(job), json!(job.conflicts));
        drop(q);
        self.publish_soon(id.to_owned(), status, Some(conflicts));
    }

    /// Publishes a job's status for the other instances, without waiting.
    fn publish_soon(&self, id: String, status: Value, conflicts: Option<Value>) {
        let db = Arc::clone(&self.db);
        self.runtime.spawn(async move {
            let published = db
                .write(move |tx| job_leases::publish(tx, &id, &status, conflicts.as_ref()))
                .await;
            if let Err(e) = published {
                tracing::warn!(error = %e.message, "sync job not published");
            }
        });
    }

    /// Until `shutdown`: every [`job_leases::BEAT`], publishes this
    /// instance's unfinished jobs (renewing their leases) and ends as
    /// `error` the jobs of any instance whose lease ran out.
    pub async fn beat(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(job_leases::BEAT);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let running: Vec<(String, Value)> = {
                let q = self.lock();
                q.jobs
                    .values()
                    .filter(|j| !j.status.is_finished())
                    .map(|j| (j.id.clone(), q.status_json(j)))
                    .collect()
            };
            let instance = self.instance.clone();
            let beat = self
                .db
                .write(move |tx| {
                    for (id, status) in &running {
                        job_leases::publish(tx, id, status, None)?;
                    }
                    Ok((
                        job_leases::expire(tx)?,
                        job_leases::cancels_for(tx, &instance)?,
                    ))
                })
                .await;
            match beat {
                Ok((expired, cancels)) => {
                    if expired > 0 {
                        tracing::warn!(
                            jobs = expired,
                            "sync jobs of a stopped server ended as error"
                        );
                    }
                    for (id, user) in cancels {
                        self.stop_for_another_instance(&user, &id);
                    }
                }
                Err(e) => tracing::warn!(error = %e.message, "sync jobs not published"),
            }
        }
    }

    /// Stops a job of this instance whose cancel came through another one;
    /// a queued job, cancelled at once, is published at once (a running one
    /// is when it has stopped).
    fn stop_for_another_instance(&self, user: &str, id: &str) {
        if self.stop(user, id).is_some() {
            return;
        }
        let published = {
            let q = self.lock();
            q.jobs
                .get(id)
                .filter(|j| j.status == SyncStatus::Cancelled)
                .map(|j| (q.status_json(j), json!(j.conflicts)))
        };
        if let Some((status, conflicts)) = published {
            self.publish_soon(id.to_owned(), status, Some(conflicts));
        }
    }

    /// Whether job `id` runs (or ran) on this instance.
    pub fn is_here(&self, id: &str) -> bool {
        self.lock().jobs.contains_key(id)
    }

    /// Asks the instance running `user`'s job `id` to cancel it, and waits
    /// until the job has finished there (at most a minute).
    ///
    /// # Errors
    /// `404 sync_not_found`, `403 forbidden`, internal errors.
    pub async fn stop_elsewhere(&self, user: &str, id: &str) -> Result<(), ApiError> {
        let (id, user) = (id.to_owned(), user.to_owned());
        let id_ = id.clone();
        let asked = self
            .db
            .write(move |tx| job_leases::request_cancel(tx, &id_, &user))
            .await?;
        if !asked {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let id = id.clone();
            if self
                .db
                .read(move |tx| job_leases::finished(tx, &id))
                .await?
            {
                break;
            }
        }
        Ok(())
    }

    /// Status of one of `user`'s jobs, wherever it runs: from memory when it
    /// runs here, else as its instance last published it (ended as `error`
    /// first when that instance's lease ran out).
    ///
    /// # Errors
    /// `404 sync_not_found`, `403 forbidden`, internal errors.
    pub async fn status_anywhere(&self, user: &str, id: &str) -> Result<Value, ApiError> {
        match self.status(user, id) {
            Err(e) if e.code == "sync_not_found" => {
                let (id, keep) = (id.to_owned(), self.keep_finished());
                let found = self
                    .db
                    .write(move |tx| {
                        job_leases::expire(tx)?;
                        job_leases::status(tx, &id, keep)
                    })
                    .await?;
                published(found, user, e)
            }
            other => other,
        }
    }

    /// [`Self::conflicts`], wherever the job ran.
    ///
    /// # Errors
    /// `404 sync_not_found`, `403 forbidden`, internal errors.
    pub async fn conflicts_anywhere(&self, user: &str, id: &str) -> Result<Value, ApiError> {
        match self.conflicts(user, id) {
            Err(e) if e.code == "sync_not_found" => {
                let (id, keep) = (id.to_owned(), self.keep_finished());
                let found = self
                    .db
                    .read(move |tx| job_leases::conflicts(tx, &id, keep))
                    .await?;
                Ok(json!({ "items": published(found, user, e)? }))
            }
            other => other,
        }
    }

    /// [`Self::list`] with the user's jobs on other instances.
    ///
    /// # Errors
    /// Internal errors from the database.
    pub async fn list_anywhere(&self, user: &str) -> Result<Value, ApiError> {
        let mut items = match self.list(user) {
            Value::Object(mut o) => match o.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let (user_, instance, keep) =
            (user.to_owned(), self.instance.clone(), self.keep_finished());
        let others = self
            .db
            .read(move |tx| job_leases::elsewhere(tx, &user_, &instance, keep))
            .await?;
        items.extend(others);
        // RFC 3339 UTC with milliseconds: text order is time order.
        items.sort_by(|a, b| b["createdAt"].as_str().cmp(&a["createdAt"].as_str()));
        Ok(json!({ "items": items }))
    }
}

/// The answer to a cancel of a job of another instance, once it stopped.
fn cancelled_elsewhere(
    tx: &Tx<'_>,
    user: &str,
    id: &str,
    not_here: ApiError,
) -> Result<Value, ApiError> {
    if let Some(answer) = job_leases::answer_cancel(tx, id)? {
        return Ok(answer);
    }
    let job = published(job_leases::status(tx, id, KEEP_FINISHED)?, user, not_here)?;
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "already_finished",
        format!(
            "the sync job is already {}",
            job["status"].as_str().unwrap_or("finished")
        ),
    ))
}

/// A job as the table has it, for `user`: its value, or the error of the
/// local lookup when the table has none either.
fn published(
    found: Option<(String, Value)>,
    user: &str,
    not_here: ApiError,
) -> Result<Value, ApiError> {
    match found {
        None => Err(not_here),
        Some((owner, _)) if owner != user => {
            Err(ApiError::forbidden("this sync job belongs to another user"))
        }
        Some((_, value)) => Ok(value),
    }
}
