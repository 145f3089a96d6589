//! Short names of events, effects and answers for the trace.

use super::*;

/// What a tab shows of the user's work: outbox, dead letters, conflicts.
pub(super) fn work_view(engine: &ClientEngine) -> String {
    let pending: BTreeSet<&str> = engine
        .outbox()
        .pending()
        .iter()
        .map(|e| e.mutation_id.as_str())
        .collect();
    let failed: BTreeSet<&str> = engine
        .outbox()
        .failed()
        .iter()
        .map(|e| e.mutation_id.as_str())
        .collect();
    let conflicts: BTreeSet<&str> = engine.conflicts().keys().map(String::as_str).collect();
    format!("pending {pending:?} failed {failed:?} conflicts {conflicts:?}")
}

pub(super) fn op_name(op: &StoreOp) -> String {
    match op {
        StoreOp::PutRecord { record, .. } => format!("put {}@v{}", record.id, record.version),
        StoreOp::DeleteRecord(key) => format!("delete {}", key.id),
        StoreOp::PutEntry(e) => format!("put entry {} {:?}", &e.mutation_id[..8], e.state),
        StoreOp::UpdateEntry { entry: e, if_key } => format!(
            "update entry {} {:?} if key {}",
            &e.mutation_id[..8],
            e.state,
            &if_key[..8]
        ),
        StoreOp::DeleteEntry {
            mutation_id,
            failed,
        } => format!("delete entry {} failed {failed}", &mutation_id[..8]),
        StoreOp::PutConflict(k) => format!("put conflict {}", &k.conflict.id[..8]),
        StoreOp::DeleteConflict(id) => format!("delete conflict {}", &id[..8]),
        StoreOp::PutCursor(c) => format!("put cursor {c}"),
        StoreOp::DeleteCursor => "delete cursor".into(),
        StoreOp::PutMark { collection, .. } => format!("put mark {collection}"),
        StoreOp::PutUndo(e) => format!("put undo {}", &e.mutation_id[..8]),
        StoreOp::DeleteUndo(id) => format!("delete undo {}", &id[..8]),
    }
}

pub(super) fn short(event: &Event) -> String {
    match event {
        Event::Save {
            key,
            fields,
            caller,
        } => format!(
            "Save {} {:?} (caller {caller})",
            key.id,
            fields.keys().collect::<Vec<_>>()
        ),
        Event::Answered { mutation_id, reply } => {
            format!("Answered {} {}", &mutation_id[..8], reply_name(reply))
        }
        Event::Written { id, written } => format!("Written {id} written {written}"),
        Event::WorkStored(w) | Event::Leading(w) => format!(
            "{} outbox {:?} failed {} conflicts {}",
            if matches!(event, Event::Leading(_)) {
                "Leading"
            } else {
                "WorkStored"
            },
            w.outbox
                .iter()
                .map(|e| &e.mutation_id[..8])
                .collect::<Vec<_>>(),
            w.failed.len(),
            w.conflicts.len()
        ),
        Event::Comment { key, .. } => format!("Comment on {}", key.id),
        Event::Resolve { conflict_id, .. } => format!("Resolve {}", &conflict_id[..8]),
        other => {
            let s = format!("{other:?}");
            s.chars().take(80).collect()
        }
    }
}

pub(super) fn outcome_name(result: &Result<Outcome, crate::core::engine::Failure>) -> String {
    match result {
        Ok(Outcome::Committed(r)) => format!("committed v{}", r.version),
        Ok(Outcome::Merged(r, f)) => format!("merged v{} {f:?}", r.version),
        Ok(Outcome::Conflict(c)) => format!("conflict on {:?}", c.fields),
        Ok(Outcome::Queued(_)) => "queued".into(),
        Ok(Outcome::LoggedOut) => "logged out".into(),
        Ok(Outcome::Read(ReadAnswer::Record(r))) => format!("read v{}", r.version),
        Ok(Outcome::Read(ReadAnswer::History(h))) => format!("read {} changes", h.len()),
        Err(e) => format!("{e:?}"),
    }
}

pub(super) fn reply_name(reply: &Reply) -> String {
    match reply {
        Reply::Record(r) => format!("200 v{}", r.version),
        Reply::Comment(_) => "201 comment".into(),
        Reply::Done => "204".into(),
        Reply::Unreadable(_) => "unreadable".into(),
        Reply::Refused(r) => format!("{:?} {:?}", r.status, r.code),
    }
}
