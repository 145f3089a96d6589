//! Sync jobs as every instance sees them: the table `sync_jobs` holds each
//! job's last published status (the `GET /api/sync/{id}` answer), its
//! conflicts once it has finished, and a lease. The instance running a job
//! renews the lease every [`BEAT`] while it publishes the job's status; a
//! job whose lease ran out ([`LEASE`] without a renewal: its instance died
//! or lost the database) is ended as `error` by whichever instance notices
//! first, on its own beat or when someone asks about the job.
//!
//! The instance running a job answers for it from memory; any other
//! instance answers from this table.

use std::time::Duration;

use serde_json::{json, Value};

use crate::db::{timestamp_rfc3339, unix_seconds, Tx};
use crate::error::ApiError;

/// How often an instance publishes its jobs and renews their leases, and
/// looks for jobs whose lease ran out.
pub const BEAT: Duration = Duration::from_secs(2);

/// How long a job's lease lasts without a renewal.
pub const LEASE: Duration = Duration::from_secs(10);

/// The statuses of a job that is not finished.
const UNFINISHED: &str = "status IN ('queued', 'downloading', 'processing', 'saving')";

/// What a job whose instance stopped says.
pub const LOST: &str = "the server running this sync stopped before it finished";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Finished jobs older than `keep` count as gone.
fn kept(keep: Duration) -> String {
    let cut = now_ms() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 2);
    format!("({UNFINISHED} OR updated_ms >= {cut})")
}

fn lease_until() -> i64 {
    unix_seconds() + i64::try_from(LEASE.as_secs()).unwrap_or(10)
}

fn status_of(body: &Value) -> String {
    body["status"].as_str().unwrap_or("queued").to_owned()
}

fn text(body: &Value) -> Result<String, ApiError> {
    serde_json::to_string(body).map_err(ApiError::internal)
}

fn parse(text: &str) -> Result<Value, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::internal(format!("stored sync job: {e}")))
}

/// Records a new job of `user` run by `instance`, with its first status.
///
/// # Errors
/// Internal errors from the database.
pub fn insert(
    tx: &Tx<'_>,
    id: &str,
    user: &str,
    instance: &str,
    body: &Value,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO sync_jobs (id, \"user\", instance, status, body, conflicts, lease_until, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, '[]', ?6, ?7)",
        &[
            &id,
            &user,
            &instance,
            &status_of(body),
            &text(body)?,
            &lease_until(),
            &now_ms(),
        ],
    )?;
    Ok(())
}

/// Unfinished jobs of `user` held by other instances than `instance`.
///
/// # Errors
/// Internal errors from the database.
pub fn unfinished_elsewhere(tx: &Tx<'_>, user: &str, instance: &str) -> Result<usize, ApiError> {
    let n: i64 = tx
        .query_one(
            &format!(
                "SELECT COUNT(*) FROM sync_jobs
                 WHERE \"user\" = ?1 AND instance <> ?2 AND {UNFINISHED} AND lease_until >= ?3"
            ),
            &[&user, &instance, &unix_seconds()],
        )?
        .get(0)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Publishes a job's status (and, once finished, its conflicts) and renews
/// its lease. A job already finished in the table stays as it is.
///
/// # Errors
/// Internal errors from the database.
pub fn publish(
    tx: &Tx<'_>,
    id: &str,
    body: &Value,
    conflicts: Option<&Value>,
) -> Result<(), ApiError> {
    let conflicts = conflicts.map(text).transpose()?;
    tx.execute(
        &format!(
            "UPDATE sync_jobs SET status = ?1, body = ?2, conflicts = COALESCE(?3, conflicts),
             lease_until = ?4, updated_ms = ?5 WHERE id = ?6 AND {UNFINISHED}"
        ),
        &[
            &status_of(body),
            &text(body)?,
            &conflicts,
            &lease_until(),
            &now_ms(),
            &id,
        ],
    )?;
    Ok(())
}

/// Ends as `error` every unfinished job whose lease ran out. Returns how
/// many.
///
/// # Errors
/// Internal errors from the database.
pub fn expire(tx: &Tx<'_>) -> Result<usize, ApiError> {
    let now = unix_seconds();
    let rows = tx.query(
        &format!("SELECT id, body FROM sync_jobs WHERE {UNFINISHED} AND lease_until < ?1"),
        &[&now],
    )?;
    let mut ended = 0;
    for row in rows {
        let (id, body): (String, String) = (row.get(0)?, row.get(1)?);
        let mut body = parse(&body)?;
        body["status"] = json!("error");
        body["error"] = json!(LOST);
        body["message"] = json!("Failed: the server running it stopped");
        body["position"] = json!(0);
        body["updatedAt"] = json!(timestamp_rfc3339());
        // Only if no renewal came in between.
        ended += tx.execute(
            &format!(
                "UPDATE sync_jobs SET status = 'error', body = ?1, updated_ms = ?2
                 WHERE id = ?3 AND {UNFINISHED} AND lease_until < ?4"
            ),
            &[&text(&body)?, &now_ms(), &id, &now],
        )?;
    }
    Ok(ended)
}

/// A job's owner and its last published status, unless it finished more
/// than `keep` ago.
///
/// # Errors
/// Internal errors from the database.
pub fn status(tx: &Tx<'_>, id: &str, keep: Duration) -> Result<Option<(String, Value)>, ApiError> {
    tx.query_opt(
        &format!(
            "SELECT \"user\", body FROM sync_jobs WHERE id = ?1 AND {}",
            kept(keep)
        ),
        &[&id],
    )?
    .map(|r| Ok((r.get(0)?, parse(&r.get::<String>(1)?)?)))
    .transpose()
}

/// A job's owner and its conflicts (`[]` until it has finished).
///
/// # Errors
/// Internal errors from the database.
pub fn conflicts(
    tx: &Tx<'_>,
    id: &str,
    keep: Duration,
) -> Result<Option<(String, Value)>, ApiError> {
    tx.query_opt(
        &format!(
            "SELECT \"user\", conflicts FROM sync_jobs WHERE id = ?1 AND {}",
            kept(keep)
        ),
        &[&id],
    )?
    .map(|r| Ok((r.get(0)?, parse(&r.get::<String>(1)?)?)))
    .transpose()
}

/// `user`'s jobs held by other instances than `instance`, as published.
///
/// # Errors
/// Internal errors from the database.
pub fn elsewhere(
    tx: &Tx<'_>,
    user: &str,
    instance: &str,
    keep: Duration,
) -> Result<Vec<Value>, ApiError> {
    tx.query(
        &format!(
            "SELECT body FROM sync_jobs WHERE \"user\" = ?1 AND instance <> ?2 AND {}",
            kept(keep)
        ),
        &[&user, &instance],
    )?
    .iter()
    .map(|r| parse(&r.get::<String>(0)?))
    .collect()
}

/// Asks the instance running job `id` of `user` to cancel it (it looks
/// on its next beat). Returns whether the job exists, is `user`'s and is
/// not finished.
///
/// # Errors
/// `403 forbidden` for another user's job; internal errors.
pub fn request_cancel(tx: &Tx<'_>, id: &str, user: &str) -> Result<bool, ApiError> {
    let owner: Option<String> = tx
        .query_opt("SELECT \"user\" FROM sync_jobs WHERE id = ?1", &[&id])?
        .map(|r| r.get(0))
        .transpose()?;
    match owner {
        None => Ok(false),
        Some(owner) if owner != user => {
            Err(ApiError::forbidden("this sync job belongs to another user"))
        }
        Some(_) => Ok(tx.execute(
            &format!("UPDATE sync_jobs SET cancel_requested = ?1 WHERE id = ?2 AND {UNFINISHED}"),
            &[&true, &id],
        )? == 1),
    }
}

/// The jobs of `instance` whose cancel was asked through another instance:
/// (id, user).
///
/// # Errors
/// Internal errors from the database.
pub fn cancels_for(tx: &Tx<'_>, instance: &str) -> Result<Vec<(String, String)>, ApiError> {
    tx.query(
        &format!(
            "SELECT id, \"user\" FROM sync_jobs
             WHERE instance = ?1 AND cancel_requested = ?2 AND {UNFINISHED}"
        ),
        &[&instance, &true],
    )?
    .iter()
    .map(|r| Ok((r.get(0)?, r.get(1)?)))
    .collect()
}

/// Whether job `id` is finished in the table (or gone).
///
/// # Errors
/// Internal errors from the database.
pub fn finished(tx: &Tx<'_>, id: &str) -> Result<bool, ApiError> {
    Ok(tx
        .query_opt(
            &format!("SELECT 1 FROM sync_jobs WHERE id = ?1 AND {UNFINISHED}"),
            &[&id],
        )?
        .is_none())
}

/// The answer to a cancel asked through another instance than the job's,
/// once: the job, `cancelled`. `None` when it ended otherwise or was
/// answered already.
///
/// # Errors
/// Internal errors from the database.
pub fn answer_cancel(tx: &Tx<'_>, id: &str) -> Result<Option<Value>, ApiError> {
    let answered = tx.execute(
        "UPDATE sync_jobs SET cancel_answered = ?1
         WHERE id = ?2 AND status = 'cancelled' AND cancel_requested = ?1 AND cancel_answered = ?3",
        &[&true, &id, &false],
    )?;
    if answered == 0 {
        return Ok(None);
    }
    let body: String = tx
        .query_one("SELECT body FROM sync_jobs WHERE id = ?1", &[&id])?
        .get(0)?;
    parse(&body).map(Some)
}

/// Claims the one answer to a cancel of a job of this instance: `false`
/// when another instance gave it already.
///
/// # Errors
/// Internal errors from the database.
pub fn claim_cancel_answer(tx: &Tx<'_>, id: &str) -> Result<bool, ApiError> {
    Ok(tx.execute(
        "UPDATE sync_jobs SET cancel_answered = ?1 WHERE id = ?2 AND cancel_answered = ?3",
        &[&true, &id, &false],
    )? == 1)
}

/// Forgets jobs finished more than `keep` ago.
///
/// # Errors
/// Internal errors from the database.
pub fn purge(tx: &Tx<'_>, keep: Duration) -> Result<usize, ApiError> {
    let cut = now_ms() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 2);
    tx.execute(
        &format!("DELETE FROM sync_jobs WHERE NOT ({UNFINISHED}) AND updated_ms < ?1"),
        &[&cut],
    )
}
