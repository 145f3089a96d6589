//! The model server of the simulation: its sync jobs, per user one after
//! another, in memory (a restart loses them), with idempotent starts.

use std::collections::BTreeMap;

use super::super::{ServerJobError, ServerSyncStatus, SyncKind};
use super::Rng;

/// Unfinished jobs per user before `429 too_many_jobs` (20 on the
/// reference server; small here so that it happens).
pub(super) const JOB_LIMIT: usize = 3;
/// How long a restarting server refuses connections.
pub(super) const DOWN_MS: u64 = 300;

#[derive(Debug, Clone)]
pub(super) enum Http {
    Start { key: String, kind: SyncKind },
    Get { id: String },
    Delete { id: String },
}

#[derive(Debug, Clone)]
pub(super) enum Answer {
    Started(String),
    Status(Box<ServerSyncStatus>),
    Refused(u16, &'static str),
    /// Connection refused (the server is restarting).
    Down,
}

/// One job of the model server.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) user: usize,
    pub(super) kind: SyncKind,
    /// 0-100, inside the server.
    pub(super) progress: f64,
    /// Progress per millisecond while the job runs.
    pub(super) rate: f64,
    /// The progress at which the job fails, if it does.
    pub(super) fail_at: Option<f64>,
    /// `complete`, `error` or `cancelled`.
    pub(super) end: Option<&'static str>,
    /// Whether it ever ran (else it is `queued`).
    pub(super) running: bool,
}

impl Job {
    pub(super) fn ends(
        &mut self,
        end: &'static str,
        at: u64,
        gone: &mut BTreeMap<String, u64>,
        id: &str,
    ) {
        self.end = Some(end);
        gone.entry(id.to_owned()).or_insert(at);
    }
}

/// The server's sync jobs: per user one after another, in memory (a
/// restart loses them), with idempotent starts.
#[derive(Debug, Default)]
pub(super) struct ModelServer {
    pub(super) generation: u64,
    pub(super) made: u64,
    /// By id; ids sort in creation order.
    pub(super) jobs: BTreeMap<String, Job>,
    /// (user, Idempotency-Key) -> job id and the kind asked for; kept
    /// across restarts.
    pub(super) keys: BTreeMap<(usize, String), (String, SyncKind)>,
    /// Jobs created, per user.
    pub(super) created: Vec<u64>,
    pub(super) down_until: u64,
    pub(super) advanced_to: u64,
    /// When each job ended or was lost, as far as a poll could tell.
    pub(super) gone: BTreeMap<String, u64>,
}

impl ModelServer {
    /// Moves time on: each user's oldest unfinished job runs.
    pub(super) fn advance(&mut self, now: u64) {
        let from = self.advanced_to;
        let dt = now.saturating_sub(from) as f64;
        self.advanced_to = self.advanced_to.max(now);
        let users = self.created.len();
        for user in 0..users {
            let mut budget = dt;
            for (id, job) in self.jobs.iter_mut() {
                if job.user != user || job.end.is_some() {
                    continue;
                }
                job.running = true;
                let reach = job.progress + job.rate * budget;
                let end = if let Some(fail) = job.fail_at.filter(|f| reach >= *f) {
                    budget -= (fail - job.progress) / job.rate;
                    job.progress = fail;
                    Some("error")
                } else if reach >= 100.0 {
                    budget -= (100.0 - job.progress) / job.rate;
                    job.progress = 100.0;
                    Some("complete")
                } else {
                    None
                };
                if let Some(end) = end {
                    let at = from + (dt - budget.max(0.0)) as u64;
                    job.ends(end, at, &mut self.gone, id);
                    continue;
                }
                job.progress = reach;
                break;
            }
        }
    }

    pub(super) fn status(id: &str, job: &Job) -> ServerSyncStatus {
        let status = match job.end {
            Some(end) => end,
            None if !job.running => "queued",
            None if job.progress < 60.0 => "downloading",
            None if job.progress < 80.0 => "processing",
            None => "saving",
        };
        ServerSyncStatus {
            sync_id: Some(id.to_owned()),
            kind: Some(
                match job.kind {
                    SyncKind::FromSheet => "from-sheet",
                    SyncKind::ToSheet => "to-sheet",
                }
                .into(),
            ),
            status: Some(status.into()),
            progress: Some(job.progress.floor()),
            message: Some(status.into()),
            error: (job.end == Some("error"))
                .then(|| ServerJobError::Text("sheet unreachable".into())),
            ..ServerSyncStatus::default()
        }
    }

    pub(super) fn handle(&mut self, user: usize, http: &Http, now: u64, rng: &mut Rng) -> Answer {
        if now < self.down_until {
            return Answer::Down;
        }
        self.advance(now);
        match http {
            Http::Start { key, kind } => {
                if let Some((id, first)) = self.keys.get(&(user, key.clone())) {
                    // A key used again for another body is refused, as the
                    // reference server does.
                    if first != kind {
                        return Answer::Refused(422, "idempotency_mismatch");
                    }
                    return Answer::Started(id.clone());
                }
                let open = self
                    .jobs
                    .values()
                    .filter(|j| j.user == user && j.end.is_none())
                    .count();
                if open >= JOB_LIMIT {
                    return Answer::Refused(429, "too_many_jobs");
                }
                self.made += 1;
                let id = format!("g{}-j{:05}", self.generation, self.made);
                let rate = 100.0 / (2_000 + rng.below(14_000)) as f64;
                let fail_at = (rng.unit() < 0.1).then(|| rng.unit() * 100.0);
                self.jobs.insert(
                    id.clone(),
                    Job {
                        user,
                        kind: *kind,
                        progress: 0.0,
                        rate,
                        fail_at,
                        end: None,
                        running: false,
                    },
                );
                self.keys.insert((user, key.clone()), (id.clone(), *kind));
                self.created[user] += 1;
                Answer::Started(id)
            }
            Http::Get { id } => match self.jobs.get(id) {
                Some(job) if job.user == user => Answer::Status(Box::new(Self::status(id, job))),
                Some(_) => Answer::Refused(403, "forbidden"),
                None => Answer::Refused(404, "sync_not_found"),
            },
            Http::Delete { id } => match self.jobs.get_mut(id) {
                Some(job) if job.user != user => Answer::Refused(403, "forbidden"),
                Some(job) if job.end.is_some() => Answer::Refused(409, "already_finished"),
                Some(job) => {
                    job.ends("cancelled", now, &mut self.gone, id);
                    Answer::Status(Box::new(Self::status(id, job)))
                }
                None => Answer::Refused(404, "sync_not_found"),
            },
        }
    }

    pub(super) fn restart(&mut self, now: u64) {
        self.advance(now);
        for id in self.jobs.keys() {
            self.gone.entry(id.clone()).or_insert(now);
        }
        self.jobs.clear();
        self.generation += 1;
        self.down_until = now + DOWN_MS;
        self.advanced_to = now;
    }
}
