//! One running sync job: reading the sheet into the records, or writing
//! the records to the sheet, with its progress and its cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::{Job, Stop, SyncJobs};
use crate::db::timestamp_rfc3339;
use crate::history::Author;
use crate::model::Record;
use crate::records;
use crate::sheet;
use crate::sync_conflicts::{
    apply_rows, remember_synced, MAX_LISTED_CONFLICTS, MAX_LISTED_CONFLICT_FIELDS,
};
use crate::sync_model::{SyncKind, SyncStats, SyncStatus};
use crate::validate::CUSTOMERS;

/// Sheets larger than this are refused rather than read into memory.
const MAX_SHEET_BYTES: usize = 64 * 1024 * 1024;

/// Rows saved per write transaction: small enough that PATCHes from people
/// are not held up behind a sync, large enough to be quick.
const SAVE_BATCH: usize = 200;

/// Progress steps of the simulated network delay.
const DOWNLOAD_STEPS: u64 = 20;

/// One running job: reports progress and notices cancellation.
pub(super) struct Run {
    pub(super) jobs: Arc<SyncJobs>,
    pub(super) id: String,
    pub(super) user: String,
    pub(super) cancel: Arc<AtomicBool>,
}

impl Run {
    fn check(&self) -> Result<(), Stop> {
        if self.cancel.load(Ordering::SeqCst) {
            Err(Stop::Cancelled)
        } else {
            Ok(())
        }
    }

    fn update(&self, f: impl FnOnce(&mut Job)) {
        let mut q = self.jobs.lock();
        if let Some(job) = q.jobs.get_mut(&self.id) {
            // After cancel the job's answer is final; late progress is dropped.
            if !job.status.is_finished() {
                f(job);
                job.updated_at = timestamp_rfc3339();
            }
        }
    }

    fn phase(&self, status: SyncStatus, progress: u8, message: &str) {
        tracing::info!(sync_id = %self.id, user = %self.user, phase = ?status, progress, "sync job phase");
        self.update(|job| {
            job.status = status;
            job.progress = job.progress.max(progress);
            job.message = message.to_owned();
        });
    }

    fn progress(&self, progress: u64) {
        let p = u8::try_from(progress.min(100)).unwrap_or(100);
        self.update(|job| job.progress = job.progress.max(p));
    }

    fn stats(&self, f: impl FnOnce(&mut SyncStats)) {
        self.update(|job| f(&mut job.stats));
    }

    pub(super) async fn import_sheet(self) -> Result<String, Stop> {
        self.phase(SyncStatus::Downloading, 0, "Downloading the sheet");
        let bytes = self.download().await?;
        self.check()?;

        self.phase(SyncStatus::Processing, 60, "Parsing rows");
        let parsed = tokio::task::spawn_blocking(move || sheet::parse(&bytes))
            .await?
            .map_err(Stop::Failed)?;
        let total_rows = parsed.rows.len() + parsed.invalid.len();
        self.stats(|s| {
            s.rows = total_rows as u64;
            s.invalid = parsed.invalid.len() as u64;
        });
        self.progress(79);
        self.check()?;

        self.phase(SyncStatus::Saving, 80, "Saving rows");
        let good = parsed.rows.len().max(1);
        let mut done = 0usize;
        for batch in parsed.rows.chunks(SAVE_BATCH) {
            self.check()?;
            let batch = batch.to_vec();
            let by = Author::sheet_sync(&self.user, &self.id);
            let stop = Arc::clone(&self.cancel);
            // A cancel stops the batch at its next row; the rows before it
            // are committed and counted below like any others.
            let counts = self
                .jobs
                .db
                .write(move |tx| apply_rows(tx, &batch, &by, &stop))
                .await?;
            done += counts.handled;
            let stopped = counts.stopped;
            self.stats(|s| {
                s.inserted += counts.inserted;
                s.updated += counts.updated;
                s.unchanged += counts.unchanged;
                s.conflicts += counts.conflicts;
            });
            self.update(|job| {
                let room = MAX_LISTED_CONFLICTS.saturating_sub(job.conflict_rows.len());
                job.conflict_rows
                    .extend(counts.conflict_rows.into_iter().take(room));
                let room = MAX_LISTED_CONFLICT_FIELDS.saturating_sub(job.conflicts.len());
                job.conflicts
                    .extend(counts.conflicts_by_field.into_iter().take(room));
            });
            self.progress(80 + (20 * done / good) as u64);
            if stopped {
                return Err(Stop::Cancelled);
            }
        }

        let stats = self.current_stats();
        let mut message = format!(
            "Read {} rows: {} inserted, {} updated, {} unchanged, {} conflicts, {} invalid",
            stats.rows,
            stats.inserted,
            stats.updated,
            stats.unchanged,
            stats.conflicts,
            stats.invalid
        );
        if !parsed.invalid.is_empty() {
            let shown: Vec<String> = parsed
                .invalid
                .iter()
                .take(10)
                .map(|r| format!("line {}: {}", r.line, r.reason))
                .collect();
            message.push_str(&format!("; invalid rows: {}", shown.join("; ")));
            if parsed.invalid.len() > 10 {
                message.push_str(&format!(" and {} more", parsed.invalid.len() - 10));
            }
        }
        Ok(message)
    }

    fn current_stats(&self) -> SyncStats {
        self.jobs
            .lock()
            .jobs
            .get(&self.id)
            .map(|j| j.stats.clone())
            .unwrap_or_default()
    }

    /// Reads the sheet in steps, spreading `--sheet-latency-ms` over them so
    /// progress moves by bytes the way a real download would.
    async fn download(&self) -> Result<Vec<u8>, Stop> {
        let path = &self.jobs.sheet.path;
        let latency = self.jobs.sheet.latency;
        let mut file = tokio::fs::File::open(path)
            .await
            // The path is the server's business: it is logged, never shown.
            .map_err(|e| {
                tracing::warn!(path = %path.display(), error = %e, "cannot open the sheet");
                Stop::Failed(format!("cannot open the sheet: {}", e.kind()))
            })?;
        let total = file.metadata().await?.len();
        if total > MAX_SHEET_BYTES as u64 {
            return Err(Stop::Failed(format!(
                "the sheet is larger than {MAX_SHEET_BYTES} bytes"
            )));
        }
        let step = usize::try_from(total.div_ceil(DOWNLOAD_STEPS).clamp(1, 64 * 1024))
            .unwrap_or(64 * 1024);
        let mut bytes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        let mut chunk = vec![0u8; step];
        if total == 0 {
            tokio::time::sleep(latency).await;
        }
        loop {
            self.check()?;
            let n = file.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(chunk.get(..n).unwrap_or_default());
            if bytes.len() > MAX_SHEET_BYTES {
                return Err(Stop::Failed(
                    "the sheet grew past the size limit while reading".into(),
                ));
            }
            if total > 0 {
                tokio::time::sleep(latency.mul_f64(n as f64 / total as f64)).await;
            }
            let read = bytes.len() as u64;
            self.stats(|s| s.bytes = read);
            self.progress((read * 60 / total.max(1)).min(60));
        }
        Ok(bytes)
    }

    pub(super) async fn export_sheet(self) -> Result<String, Stop> {
        self.phase(SyncStatus::Downloading, 0, "Reading records");
        let records: Vec<Record> = self.jobs.db.read(|tx| records::list(tx, CUSTOMERS)).await?;
        let latency = self.jobs.sheet.latency;
        for step in 1..=DOWNLOAD_STEPS {
            self.check()?;
            tokio::time::sleep(latency / DOWNLOAD_STEPS as u32).await;
            self.progress(step * 60 / DOWNLOAD_STEPS);
        }
        let rows = records.len() as u64;
        self.stats(|s| s.rows = rows);

        self.phase(SyncStatus::Processing, 60, "Writing rows");
        let exported: Vec<(String, i64)> =
            records.iter().map(|r| (r.id.clone(), r.version)).collect();
        let bytes = tokio::task::spawn_blocking(move || sheet::to_csv(&records))
            .await?
            .map_err(Stop::Failed)?;
        let len = bytes.len() as u64;
        self.stats(|s| s.bytes = len);
        self.check()?;

        self.phase(SyncStatus::Saving, 80, "Saving the sheet");
        let path = self.jobs.sheet.path.clone();
        let tmp_name = format!(
            ".{}.{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            self.id
        );
        let tmp = path.with_file_name(tmp_name);
        tokio::task::spawn_blocking(move || write_atomically(&path, &tmp, &bytes)).await??;
        self.progress(90);
        // The sheet now holds these versions: the next from-sheet compares against them.
        self.jobs
            .db
            .write(move |tx| {
                for (id, version) in &exported {
                    remember_synced(tx, id, *version)?;
                }
                Ok(())
            })
            .await?;
        Ok(format!("Wrote {} customers to the sheet", grouped(rows)))
    }
}

fn write_atomically(
    path: &std::path::Path,
    tmp: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let result = (|| {
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// The words of a cancelled job: what it wrote, in numbers a person reads
/// ("Cancelled after 612 of 1,400 rows: 600 new, 12 updated").
pub(super) fn cancelled_message(kind: SyncKind, stats: &SyncStats) -> String {
    if kind == SyncKind::ToSheet {
        return "Cancelled before the sheet was written".into();
    }
    let handled = stats.inserted + stats.updated + stats.unchanged + stats.conflicts;
    if handled == 0 {
        return "Cancelled before any row was written".into();
    }
    let mut out = format!(
        "Cancelled after {} of {} rows: {} new, {} updated",
        grouped(handled + stats.invalid),
        grouped(stats.rows),
        grouped(stats.inserted),
        grouped(stats.updated)
    );
    for (n, what) in [
        (stats.unchanged, "unchanged"),
        (stats.conflicts, "conflicts"),
        (stats.invalid, "invalid"),
    ] {
        if n > 0 {
            out.push_str(&format!(", {} {what}", grouped(n)));
        }
    }
    out
}

/// `1400` as `1,400`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
