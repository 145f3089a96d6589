//! The server's figures for a team's monitoring: requests, errors and
//! latency per route, record commits and conflicts, idempotent replays, sync
//! jobs and open event streams.
//!
//! Each figure is recorded once, through the `metrics` facade, into a
//! Prometheus recorder of this server (not the process-wide one, so several
//! servers in one test process keep their own counts); `GET /metrics`
//! renders it in Prometheus' text format. `GET /api/metrics` answers the same
//! figures as JSON for the demo's team page, from a small tally kept next to
//! the recorder (the exporter only renders text), with p50/p95 over each
//! route's last [`LATENCY_SAMPLES`] requests.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::error::AnsweredCode;
use crate::sync_model::{JobLoad, SyncStatus};
use crate::wire::{OpenRouteErrors, SignedInErrors};
use crate::AppState;

/// Latencies kept per route for the JSON percentiles.
pub const LATENCY_SAMPLES: usize = 1000;

/// The route whose `PATCH` is a record change (commits and conflicts).
const RECORD_ROUTE: &str = "/api/{collection}/{id}";

/// Upper bounds (seconds) of the request latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Upper bounds (seconds) of the sync job duration histogram's buckets.
const JOB_BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0];

/// Names of the figures in the Prometheus text.
pub mod names {
    /// Counter, labels `method`, `route`, `status`.
    pub const REQUESTS: &str = "crm_http_requests_total";
    /// Histogram (seconds), labels `method`, `route`.
    pub const LATENCY: &str = "crm_http_request_duration_seconds";
    /// Counter: record PATCHes the server applied.
    pub const COMMITS: &str = "crm_record_commits_total";
    /// Counter: record PATCHes refused with `409 conflict`.
    pub const CONFLICTS: &str = "crm_record_conflicts_total";
    /// Counter, label `route`: answers given again for a known `Idempotency-Key`.
    pub const REPLAYS: &str = "crm_idempotent_replays_total";
    /// Gauge, label `user`: sync jobs waiting for their turn.
    pub const JOBS_QUEUED: &str = "crm_sync_jobs_queued";
    /// Gauge: sync jobs running.
    pub const JOBS_RUNNING: &str = "crm_sync_jobs_running";
    /// Counter, label `status` (`complete`, `error`, `cancelled`).
    pub const JOBS_FINISHED: &str = "crm_sync_jobs_finished_total";
    /// Histogram (seconds): how long finished runs took.
    pub const JOB_DURATION: &str = "crm_sync_job_duration_seconds";
    /// Gauge: event streams open.
    pub const STREAMS: &str = "crm_event_streams_open";
}

/// The figures of one server.
pub struct ServerMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    routes: BTreeMap<(String, String), RouteTally>,
    commits: u64,
    conflicts: u64,
    replays: u64,
    jobs_complete: u64,
    jobs_failed: u64,
    jobs_cancelled: u64,
    jobs_total_ms: f64,
    /// Users whose queued gauge was set, so it is set back to 0 when they
    /// have nothing waiting.
    queued_users: BTreeSet<String>,
}

#[derive(Default)]
struct RouteTally {
    requests: u64,
    errors: u64,
    recent_ms: VecDeque<f64>,
}

/// `GET /api/metrics`: the server's figures.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSummary {
    /// Per route and method, busiest first.
    pub routes: Vec<RouteFigures>,
    /// Record PATCHes applied (idempotent replays not counted again).
    pub commits: u64,
    /// Record PATCHes refused with `409 conflict`.
    pub conflicts: u64,
    /// `conflicts / (commits + conflicts)`, 0 when there were none.
    pub conflict_rate: f64,
    /// Answers given again for a known `Idempotency-Key`.
    pub idempotent_replays: u64,
    /// The spreadsheet sync jobs.
    pub sync_jobs: SyncJobFigures,
    /// Event streams (`GET /api/events`) open now.
    pub event_streams: u64,
}

/// Requests of one route and method.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteFigures {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The route as routed: `/api/{collection}/{id}`.
    pub route: String,
    /// Requests answered.
    pub requests: u64,
    /// Of those, answered with a 4xx or 5xx status.
    pub errors: u64,
    /// Median time to answer (ms) over the route's recent requests.
    pub p50_ms: f64,
    /// 95th percentile (ms) over the same requests.
    pub p95_ms: f64,
}

/// Sync jobs now and since the server started.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncJobFigures {
    /// Jobs waiting for their turn, all users.
    pub queued: u64,
    /// Jobs waiting, per user (users with none are left out).
    pub queued_per_user: BTreeMap<String, u64>,
    /// Jobs running now.
    pub running: u64,
    /// Runs that ended `complete`.
    pub completed: u64,
    /// Runs that ended in `error`.
    pub failed: u64,
    /// Runs that ended `cancelled`.
    pub cancelled: u64,
    /// Mean run time of finished runs (ms), 0 when none.
    pub mean_duration_ms: f64,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerMetrics {
    /// Empty figures with their descriptions.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // Both only refuse empty bucket lists.
        let builder = builder
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(names::LATENCY.into()),
                &LATENCY_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let builder = builder
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(names::JOB_DURATION.into()),
                &JOB_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let me = Self {
            recorder,
            handle,
            tally: Mutex::new(Tally::default()),
        };
        me.record(|| {
            use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
            describe_counter!(names::REQUESTS, "HTTP requests answered");
            describe_histogram!(names::LATENCY, Unit::Seconds, "Time to answer a request");
            describe_counter!(names::COMMITS, "Record PATCHes applied");
            describe_counter!(names::CONFLICTS, "Record PATCHes refused with 409 conflict");
            describe_counter!(
                names::REPLAYS,
                "Stored answers given again for a known Idempotency-Key"
            );
            describe_gauge!(names::JOBS_QUEUED, "Sync jobs waiting for their turn");
            describe_gauge!(names::JOBS_RUNNING, "Sync jobs running");
            describe_counter!(names::JOBS_FINISHED, "Sync jobs finished, by final status");
            describe_histogram!(
                names::JOB_DURATION,
                Unit::Seconds,
                "How long a sync job ran"
            );
            describe_gauge!(names::STREAMS, "Event streams open");
        });
        me
    }

    fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one answered request of `route` (the routed path).
    pub fn request(&self, method: &str, route: &str, answer: &Answered, took: Duration) {
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            // Any token is a method; keep the label set small.
            _ => "OTHER",
        };
        let record_change = method == "PATCH" && route == RECORD_ROUTE && !answer.replayed;
        let commit = record_change && (200..300).contains(&answer.status);
        let conflict = record_change && answer.status == 409 && answer.code == Some("conflict");
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", answer.status.to_string()),
        ];
        self.record(|| {
            metrics::counter!(names::REQUESTS, &labels).increment(1);
            metrics::histogram!(names::LATENCY, &labels[..2]).record(took.as_secs_f64());
            if answer.replayed {
                metrics::counter!(names::REPLAYS, "route" => route.to_owned()).increment(1);
            }
            if commit {
                metrics::counter!(names::COMMITS).increment(1);
            }
            if conflict {
                metrics::counter!(names::CONFLICTS).increment(1);
            }
        });
        let mut tally = self.tally();
        let figures = tally
            .routes
            .entry((route.to_owned(), method.to_owned()))
            .or_default();
        figures.requests += 1;
        if answer.status >= 400 {
            figures.errors += 1;
        }
        if figures.recent_ms.len() == LATENCY_SAMPLES {
            figures.recent_ms.pop_front();
        }
        figures.recent_ms.push_back(took.as_secs_f64() * 1000.0);
        tally.replays += u64::from(answer.replayed);
        tally.commits += u64::from(commit);
        tally.conflicts += u64::from(conflict);
    }

    /// Counts a finished sync run.
    pub fn sync_job_finished(&self, status: SyncStatus, took: Duration) {
        let label = match status {
            SyncStatus::Complete => "complete",
            SyncStatus::Cancelled => "cancelled",
            _ => "error",
        };
        self.record(|| {
            metrics::counter!(names::JOBS_FINISHED, "status" => label).increment(1);
            metrics::histogram!(names::JOB_DURATION).record(took.as_secs_f64());
        });
        let mut tally = self.tally();
        match status {
            SyncStatus::Complete => tally.jobs_complete += 1,
            SyncStatus::Cancelled => tally.jobs_cancelled += 1,
            _ => tally.jobs_failed += 1,
        }
        tally.jobs_total_ms += took.as_secs_f64() * 1000.0;
    }

    /// Sets the gauges to the present load (jobs waiting and running, streams
    /// open).
    fn set_gauges(&self, load: &JobLoad, streams: usize) {
        let users: Vec<String> = {
            let mut tally = self.tally();
            tally.queued_users.extend(load.queued.keys().cloned());
            tally.queued_users.iter().cloned().collect()
        };
        self.record(|| {
            for user in users {
                let waiting = load.queued.get(&user).copied().unwrap_or(0);
                metrics::gauge!(names::JOBS_QUEUED, "user" => user).set(waiting as f64);
            }
            metrics::gauge!(names::JOBS_RUNNING).set(load.running as f64);
            metrics::gauge!(names::STREAMS).set(streams as f64);
        });
    }

    /// Every figure in Prometheus' text format.
    pub fn prometheus_text(&self, load: &JobLoad, streams: usize) -> String {
        self.set_gauges(load, streams);
        self.handle.render()
    }

    /// Every figure for `GET /api/metrics`.
    pub fn summary(&self, load: &JobLoad, streams: usize) -> MetricsSummary {
        let tally = self.tally();
        let mut routes: Vec<RouteFigures> = tally
            .routes
            .iter()
            .map(|((route, method), t)| {
                let mut sorted: Vec<f64> = t.recent_ms.iter().copied().collect();
                sorted.sort_by(f64::total_cmp);
                RouteFigures {
                    method: method.clone(),
                    route: route.clone(),
                    requests: t.requests,
                    errors: t.errors,
                    p50_ms: percentile(&sorted, 0.5),
                    p95_ms: percentile(&sorted, 0.95),
                }
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.requests));
        let finished = tally.jobs_complete + tally.jobs_failed + tally.jobs_cancelled;
        let changes = tally.commits + tally.conflicts;
        MetricsSummary {
            routes,
            commits: tally.commits,
            conflicts: tally.conflicts,
            conflict_rate: ratio(tally.conflicts, changes),
            idempotent_replays: tally.replays,
            sync_jobs: SyncJobFigures {
                queued: load.queued.values().sum(),
                queued_per_user: load.queued.clone(),
                running: load.running,
                completed: tally.jobs_complete,
                failed: tally.jobs_failed,
                cancelled: tally.jobs_cancelled,
                mean_duration_ms: if finished == 0 {
                    0.0
                } else {
                    tally.jobs_total_ms / finished as f64
                },
            },
            event_streams: streams as u64,
        }
    }

    /// Folds recorded latencies into the exporter's histograms; without
    /// it they pile up between scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What the request figures need of an answer.
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    /// HTTP status.
    pub status: u16,
    /// Given from the idempotency store.
    pub replayed: bool,
    /// `error.code`, when the answer is a refusal made by a handler.
    pub code: Option<&'static str>,
}

/// Layer: counts every request that reached a route, by its routed path.
/// Paths no route matched (static files, unknown API paths) are not counted,
/// so no client can grow the label set.
pub async fn track_requests(
    State(metrics): State<Arc<ServerMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(request).await;
    };
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    let answer = Answered {
        status: response.status().as_u16(),
        replayed: response.headers().contains_key("idempotent-replayed"),
        code: response.extensions().get::<AnsweredCode>().map(|c| c.0),
    };
    metrics.request(&method, &route, &answer, start.elapsed());
    response
}

/// `GET /api/metrics` -> the server's figures (any logged-in user).
#[utoipa::path(
    get,
    path = "/api/metrics",
    tag = "meta",
    operation_id = "metrics",
    responses(
        (status = 200, description = "The server's figures since it started", body = MetricsSummary),
        SignedInErrors,
    )
)]
pub async fn summary_route(
    State(state): State<AppState>,
    AuthUser(_user): AuthUser,
) -> Json<MetricsSummary> {
    Json(
        state
            .metrics
            .summary(&state.jobs.load(), state.streams.count()),
    )
}

/// `GET /metrics` -> the same figures in Prometheus' text format, without a
/// token, for a monitoring system's scraper.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    operation_id = "prometheusMetrics",
    security(()),
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
        OpenRouteErrors,
    )
)]
pub async fn prometheus_route(State(state): State<AppState>) -> Response {
    let text = state
        .metrics
        .prometheus_text(&state.jobs.load(), state.streams.count());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&[7.0], 0.95), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
