//! The sync-job routes: start, follow, cancel and list a user's jobs, and
//! list what a job did not apply.
//! The jobs themselves run in [`crate::sync_jobs`].

use crate::wire::*;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{path_params, Answer};
use crate::idempotency::{write_once, Mutating};
use crate::sync_conflicts::SheetConflictList;
use crate::sync_model::{StartSync, SyncJobList, SyncJobStatus, SyncKind, SyncStarted};
use crate::AppState;

/// `POST /api/sync` `{ kind }` + `Idempotency-Key` -> `202 { syncId, status: "queued", position }`.
///
/// # Errors
/// `422` for an unknown kind, `400` for a bad body.
#[utoipa::path(
    post,
    path = "/api/sync",
    tag = "sync",
    operation_id = "startSync",
    request_body(content = StartSync, content_type = "application/json"),
    params(
        IdempotencyKey,
    ),
    responses(
        (status = 202, description = "Queued", body = SyncStarted),
        RequestErrors, BodyTooLarge,
        (status = 422, description = "`invalid` with `details.fields`; `idempotency_mismatch` for a key reused on another request", body = ErrorBody),
        (status = 429, description = "`too_many_jobs`: the user has the most unfinished jobs allowed; `details.limit`", body = ErrorBody),
    )
)]
pub async fn start_route(
    State(state): State<AppState>,
    mut req: Mutating,
) -> Result<Answer, ApiError> {
    let mutation = req.mutation()?;
    let body = req.json()?;
    let user = req.user;
    let kind = match body.get("kind").and_then(Value::as_str) {
        Some("from-sheet") => SyncKind::FromSheet,
        Some("to-sheet") => SyncKind::ToSheet,
        _ => {
            return Err(ApiError::invalid_field(
                "kind",
                "must be \"from-sheet\" or \"to-sheet\"",
            ))
        }
    };
    let jobs = Arc::clone(&state.jobs);
    write_once(&state.db, mutation, move |tx| {
            // Queued inside the transaction that stores the answer, so two
            // requests with one key can never both start a job.
            let status = jobs.enqueue(tx, &user, kind)?;
            Ok(Answer::json(
                StatusCode::ACCEPTED,
                &json!({ "syncId": status["syncId"], "status": "queued", "position": status["position"] }),
            )?
            .into())
        })
        .await
}

/// `GET /api/sync/{syncId}`.
///
/// # Errors
/// `404 sync_not_found`, `403 forbidden`.
#[utoipa::path(
    get,
    path = "/api/sync/{sync_id}",
    tag = "sync",
    operation_id = "syncStatus",
    params(SyncIdPath),
    responses(
        (status = 200, description = "The job", body = SyncJobStatus),
        RequestErrors, SyncJobNotFound,
    )
)]
pub async fn status_route(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_params(path)?;
    state.jobs.status_anywhere(&user, &id).await.map(Json)
}

/// `DELETE /api/sync/{syncId}` -> `200` with `status: "cancelled"`. A
/// running job stops at its next row; the answer comes once it has, so its
/// `stats` count exactly the rows the job wrote, and `message` says so.
///
/// # Errors
/// `404 sync_not_found`, `403 forbidden`, `409 already_finished`.
#[utoipa::path(
    delete,
    path = "/api/sync/{sync_id}",
    tag = "sync",
    operation_id = "cancelSync",
    params(SyncIdPath, IdempotencyKey),
    responses(
        (status = 200, description = "The job, `cancelled`, once it has stopped: `stats` count exactly the rows it wrote, and `message` says so (\"Cancelled after 612 of 1,400 rows: 600 new, 12 updated\")", body = SyncJobStatus),
        RequestErrors, SyncJobNotFound,
        (status = 409, description = "`already_finished`", body = ErrorBody),
        (status = 422, description = "`idempotency_mismatch`: the key was used for another request", body = ErrorBody),
    )
)]
pub async fn cancel_route(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    req: Mutating,
) -> Result<Answer, ApiError> {
    let id = path_params(path)?;
    let mutation = req.mutation()?;
    let user = req.user;
    // Waited for outside the write below: the job needs the database to
    // finish its batch.
    if let Some(mut stopped) = state.jobs.stop(&user, &id) {
        // An error means the job is gone (the sender dropped): the answer
        // below says how.
        let _ = stopped.wait_for(|finished| *finished).await;
    } else if !state.jobs.is_here(&id) {
        // Another instance runs it: asked through the database.
        state.jobs.stop_elsewhere(&user, &id).await?;
    }
    let jobs = Arc::clone(&state.jobs);
    write_once(&state.db, mutation, move |tx| {
        Ok(Answer::json(StatusCode::OK, &jobs.cancel(tx, &user, &id)?)?.into())
    })
    .await
}

/// `GET /api/sync` -> `{ items }`, this user's jobs newest first.
#[utoipa::path(
    get,
    path = "/api/sync",
    tag = "sync",
    operation_id = "listSyncJobs",
    responses(
        (status = 200, description = "This user's recent jobs, newest first", body = SyncJobList),
        SignedInErrors,
    )
)]
pub async fn list_route(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    state.jobs.list_anywhere(&user).await.map(Json)
}

/// `GET /api/sync/{syncId}/conflicts` -> `{ items }`: field by field, the
/// sheet rows a from-sheet job did not apply because the record changed in
/// the CRM since the last sync.
///
/// # Errors
/// `404 sync_not_found`, `403 forbidden`.
#[utoipa::path(
    get,
    path = "/api/sync/{sync_id}/conflicts",
    tag = "sync",
    operation_id = "syncConflicts",
    params(SyncIdPath),
    responses(
        (status = 200, description = "In sheet order; the first 1,000 (`stats.conflicts` counts the rows)", body = SheetConflictList),
        RequestErrors, SyncJobNotFound,
    )
)]
pub async fn conflicts_route(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_params(path)?;
    state.jobs.conflicts_anywhere(&user, &id).await.map(Json)
}
