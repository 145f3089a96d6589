use super::*;
use crate::core::merge::OnConflict;

fn text(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), FieldValue::Text((*value).to_owned())))
        .collect()
}

fn new(id: &str, record: &str, op: MutationOp) -> NewMutation {
    NewMutation {
        mutation_id: id.into(),
        idempotency_key: format!("key-{id}"),
        collection: "customers".into(),
        record_id: record.into(),
        op,
    }
}

fn patch(base_version: u64, fields: &[(&str, &str)]) -> MutationOp {
    let fields = text(fields);
    MutationOp::Patch {
        base_version,
        base_fields: fields
            .keys()
            .map(|name| (name.clone(), FieldValue::Null))
            .collect(),
        fields,
    }
}

fn comment(id: &str) -> MutationOp {
    MutationOp::Comment {
        comment_id: id.into(),
        text: "hello".into(),
    }
}

fn record(version: u64, fields: &[(&str, &str)]) -> Record {
    Record {
        id: "c-1".into(),
        version,
        updated_at: String::new(),
        updated_by: String::new(),
        fields: text(fields),
        comments: Vec::new(),
    }
}

fn error(code: ErrorCode) -> EntryError {
    EntryError {
        code,
        message: code.as_str().into(),
        details: None,
        at_ms: 0,
    }
}

fn sendable(outbox: &Outbox, now: u64) -> Vec<String> {
    outbox
        .next_sendable(now)
        .into_iter()
        .map(|entry| entry.mutation_id.clone())
        .collect()
}

#[test]
fn one_head_per_lane_lanes_in_parallel() {
    let mut outbox = Outbox::new();
    outbox
        .enqueue(new("m1", "a", patch(1, &[("x", "1")])), 0)
        .unwrap();
    outbox.enqueue(new("m2", "a", comment("k1")), 1).unwrap();
    outbox
        .enqueue(new("m3", "b", patch(1, &[("x", "1")])), 2)
        .unwrap();
    assert_eq!(sendable(&outbox, 0), ["m1", "m3"]);
    outbox.mark_sending("m1").unwrap();
    assert_eq!(sendable(&outbox, 0), ["m3"]);
    // Nothing overtakes the head of its lane.
    assert_eq!(
        outbox.mark_sending("m2"),
        Err(OutboxError::NotSendable("m2".into()))
    );
    assert_eq!(
        outbox.mark_sending("m1"),
        Err(OutboxError::NotSendable("m1".into()))
    );
    let done = outbox
        .on_success("m1", Some(&record(2, &[("x", "1")])))
        .unwrap();
    assert_eq!(done.mutation_id, "m1");
    assert_eq!(sendable(&outbox, 0), ["m2", "m3"]);
    assert_eq!(outbox.pending().len(), 2);
}

/// Sends and refuses each of these entries for good.
fn refuse(outbox: &mut Outbox, ids: &[&str]) {
    for id in ids {
        outbox.mark_sending(id).unwrap();
        outbox
            .on_permanent_failure(id, error(ErrorCode::Invalid))
            .unwrap();
    }
}

#[test]
fn a_save_takes_the_place_of_the_refused_values_of_its_record() {
    let mut outbox = Outbox::new();
    let create = MutationOp::Create {
        fields: text(&[("start", "9"), ("title", "Call")]),
    };
    outbox.enqueue(new("c", "booking", create), 0).unwrap();
    outbox
        .enqueue(
            new("p", "a", patch(1, &[("email", "x"), ("city", "Graz")])),
            0,
        )
        .unwrap();
    outbox
        .enqueue(new("d", "b", MutationOp::Delete { base_version: 1 }), 0)
        .unwrap();
    refuse(&mut outbox, &["c", "p", "d"]);
    assert_eq!(outbox.failed().len(), 3);

    // A refused patch gives up the saved field, and goes with the last.
    let done = outbox.supersede_failed("customers", "a", &text(&[("email", "y")]), || "k".into());
    let trimmed = outbox.get("p").unwrap();
    assert_eq!(done, [Superseded::Trimmed(trimmed.clone())]);
    assert_eq!(trimmed.op.fields(), Some(&text(&[("city", "Graz")])));
    let done = outbox.supersede_failed("customers", "a", &text(&[("city", "Linz")]), || "k".into());
    assert!(matches!(&done[..], [Superseded::Dropped(e)] if e.mutation_id == "p"));
    assert!(outbox.get("p").is_none());

    // A refused create takes the values and is back in line, fresh.
    let done = outbox.supersede_failed("customers", "booking", &text(&[("start", "11")]), || {
        "fresh".into()
    });
    assert_eq!(done, [Superseded::Requeued("c".into())]);
    let again = outbox.get("c").unwrap();
    assert_eq!(
        again.op.fields(),
        Some(&text(&[("start", "11"), ("title", "Call")]))
    );
    assert_eq!(
        (again.state, again.idempotency_key.as_str()),
        (EntryState::Queued, "fresh")
    );
    assert!(again.never_sent());
    assert_eq!(sendable(&outbox, 0), ["c"]);

    // A refused delete is left for the person to retry or discard.
    assert!(outbox
        .supersede_failed("customers", "b", &text(&[("x", "1")]), || "k".into())
        .is_empty());
    assert_eq!(outbox.failed().len(), 1);
}

#[test]
fn never_sent_patches_fold_later_values_win() {
    let mut outbox = Outbox::new();
    outbox
        .enqueue(new("m1", "a", patch(3, &[("x", "1"), ("y", "1")])), 0)
        .unwrap();
    let folded = outbox
        .enqueue(new("m2", "a", patch(4, &[("x", "2"), ("z", "2")])), 1)
        .unwrap();
    assert_eq!(folded, Enqueued::Folded { into: "m1".into() });
    assert_eq!(outbox.pending().len(), 1);
    let entry = outbox.get("m1").unwrap();
    let MutationOp::Patch {
        base_version,
        fields,
        ..
    } = &entry.op
    else {
        panic!("a patch")
    };
    assert_eq!(*base_version, 3);
    assert_eq!(fields, &text(&[("x", "2"), ("y", "1"), ("z", "2")]));
    assert_eq!(entry.idempotency_key, "key-m1");
}

#[test]
fn a_patch_on_an_older_version_is_not_folded() {
    let mut outbox = Outbox::new();
    outbox
        .enqueue(new("m1", "a", patch(8, &[("x", "1")])), 0)
        .unwrap();
    let added = outbox
        .enqueue(new("m2", "a", patch(7, &[("x", "2")])), 1)
        .unwrap();
    assert_eq!(
        added,
        Enqueued::Added {
            mutation_id: "m2".into()
        }
    );
    assert_eq!(outbox.pending().len(), 2);
}

#[test]
fn folding_keeps_the_oldest_base_of_a_field() {
    let mut outbox = Outbox::new();
    let first = MutationOp::Patch {
        base_version: 3,
        base_fields: text(&[("x", "base")]),
        fields: text(&[("x", "1")]),
    };
    outbox.enqueue(new("m1", "a", first), 0).unwrap();
    let second = MutationOp::Patch {
        base_version: 3,
        base_fields: text(&[("x", "1"), ("y", "yb")]),
        fields: text(&[("x", "2"), ("y", "2")]),
    };
    outbox.enqueue(new("m2", "a", second), 0).unwrap();
    let MutationOp::Patch { base_fields, .. } = &outbox.get("m1").unwrap().op else {
        panic!("a patch")
    };
    assert_eq!(base_fields, &text(&[("x", "base"), ("y", "yb")]));
}

/// Found by the simulation's long run (seed 55513): a conflict's
/// resolution, made on the server's newer value of a field, folded into
/// an entry whose change of that field was made on an older value; the
/// fold kept the older base, the resolution put the field back to it, and
/// the entry's 409 merge took the field as unchanged by the person and
/// settled for the server's value: the person's last word was lost.
#[test]
fn a_patch_made_on_another_value_of_a_field_keeps_its_word_past_a_409() {
    let mut outbox = Outbox::new();
    let first = MutationOp::Patch {
        base_version: 1,
        base_fields: [("phone".to_owned(), FieldValue::Null)]
            .into_iter()
            .collect(),
        fields: text(&[("phone", "n26")]),
    };
    outbox.enqueue(new("m1", "a", first), 0).unwrap();
    let resolution = MutationOp::Patch {
        base_version: 5,
        base_fields: text(&[("phone", "theirs")]),
        fields: [("phone".to_owned(), FieldValue::Null)]
            .into_iter()
            .collect(),
    };
    outbox.enqueue(new("m2", "a", resolution), 1).unwrap();
    let mut theirs = record(6, &[("phone", "theirs")]);
    theirs.id = "a".into();
    let last = outbox
        .pending()
        .iter()
        .rev()
        .find(|e| e.record_id == "a")
        .cloned()
        .unwrap();
    let outcome = last.merge_with(&theirs, &MergeRules::default()).unwrap();
    assert!(
        !matches!(outcome, MergeOutcome::Settled { .. }),
        "the person's Null is settled for the server's value: {outcome:?}"
    );
}

#[test]
fn patches_fold_into_an_unsent_create() {
    let mut outbox = Outbox::new();
    outbox
        .enqueue(
            new(
                "m1",
                "a",
                MutationOp::Create {
                    fields: text(&[("name", "N")]),
                },
            ),
            0,
        )
        .unwrap();
    outbox
        .enqueue(new("m2", "a", patch(0, &[("phone", "1")])), 0)
        .unwrap();
    assert_eq!(
        outbox.get("m1").unwrap().op,
        MutationOp::Create {
            fields: text(&[("name", "N"), ("phone", "1")])
        }
    );
}

#[test]
fn nothing_folds_into_sent_entries_comments_or_deletes() {
    let mut outbox = Outbox::new();
    outbox
        .enqueue(new("m1", "a", patch(1, &[("x", "1")])), 0)
        .unwrap();
    outbox.mark_sending("m1").unwrap();
    assert_eq!(
        outbox
            .enqueue(new("m2", "a", patch(1, &[("x", "2")])), 0)
            .unwrap(),
        Enqueued::Added {
            mutation_id: "m2".into()
        }
    );
    // Sent once and back in the queue after a network error: still not folded.
    outbox
        .on_transient_failure(
            "m1",
            error(ErrorCode::Network),
            0,
            &RetryPolicy::default(),
            0.0,
            None,
        )
        .unwrap();
    outbox
        .enqueue(new("m3", "b", patch(1, &[("x", "1")])), 0)
        .unwrap();
    outbox.mark_sending("m3").unwrap();
    outbox
        .on_transient_failure(
            "m3",
            error(ErrorCode::Timeout),
            0,
            &RetryPolicy::default(),
            0.0,
            None,
        )
        .unwrap();
    assert!(matches!(
        outbox
            .enqueue(new("m4", "b", patch(1, &[("y", "1")])), 0)
            .unwrap(),
        Enqueued::Added { .. }
    ));
    // Comments are separate entries and never folded.
    outbox.enqueue(new("m5", "c", comment("k1")), 0).unwrap();
    outbox.enqueue(new("m6", "c", comment("k2")), 0).unwrap();
    assert!(matches!(
        outbox
            .enqueue(new("m7", "c", patch(1, &[("y", "1")])), 0)
            .unwrap(),
        Enqueued::Added { .. }
    ));
    outbox
        .enqueue(new("m8", "d", MutationOp::Delete { base_version: 1 }), 0)
        .unwrap();
    assert!(matches!(
        outbox
            .enqueue(new("m9", "d", patch(1, &[("y", "1")])), 0)
            .unwrap(),
        Enqueued::Added { .. }
    ));
    assert_eq!(outbox.pending().len(), 9);
    assert_eq!(
        outbox.enqueue(new("m9", "z", comment("k")), 0),
        Err(OutboxError::DuplicateMutation("m9".into()))
    );
}

#[test]
fn permanent_failures_go_to_dead_letters_and_the_lane_goes_on() {
    let mut outbox = Outbox::new();
    outbox
        .enqueue(new("m1", "a", patch(1, &[("email", "bad")])), 0)
        .unwrap();
    outbox.enqueue(new("m2", "a", comment("k1")), 0).unwrap();
    outbox.mark_sending("m1").unwrap();
    let failed = outbox
        .on_permanent_failure("m1", error(ErrorCode::Invalid))
        .unwrap();
    assert_eq!(failed.state, EntryState::Failed);
    assert_eq!(
        failed.last_error.as_ref().map(|e| e.code),
        Some(ErrorCode::Invalid)
    );
    assert_eq!(sendable(&outbox, 0), ["m2"]);
    assert_eq!(outbox.failed().len(), 1);
    assert!(outbox.get("m1").is_some());
    // Retry puts it at the end of its lane, with its key.
    outbox.enqueue(new("m3", "a", comment("k2")), 0).unwrap();
    assert_eq!(outbox.retry("m2"), Err(OutboxError::NotFailed("m2".into())));
    outbox.retry("m1").unwrap();
    let lane: Vec<_> = outbox
        .pending()
        .iter()
        .map(|e| e.mutation_id.as_str())
        .collect();
    assert_eq!(lane, ["m2", "m3", "m1"]);
    assert_eq!(outbox.get("m1").unwrap().idempotency_key, "key-m1");
    assert_eq!(outbox.get("m1").unwrap().state, EntryState::Queued);
    assert!(outbox.failed().is_empty());
    assert_eq!(
        outbox.retry("nope"),
        Err(OutboxError::UnknownMutation("nope".into()))
    );
}

#[test]
fn transient_failures_back_off_and_keep_the_entry() {
    let mut outbox = Outbox::new();
    let policy = RetryPolicy::default();
    outbox
        .enqueue(new("m1", "a", patch(1, &[("x", "1")])), 0)
        .unwrap();
    let mut now = 1_000;
    for attempt in 1..=6_u32 {
        outbox.mark_sending("m1").unwrap();
        let retrying = outbox
            .on_transient_failure("m1", error(ErrorCode::Server), now, &policy, 0.5, None)
            .unwrap();
        assert_eq!(retrying.retry_at_ms, now + policy.delay_ms(attempt, 0.5));
        assert_eq!(retrying.exhausted, attempt > policy.attempts);
        assert!(sendable(&outbox, retrying.retry_at_ms - 1).is_empty());
        assert_eq!(outbox.next_retry_at(now), Some(retrying.retry_at_ms));
        now = retrying.retry_at_ms;
        assert_eq!(sendable(&outbox, now), ["m1"]);
    }
    assert_eq!(outbox.get("m1").unwrap().attempts, 6);
    // Retry-After is honoured, bounded by the policy's max.
    outbox.mark_sending("m1").unwrap();
    let retrying = outbox
        .on_transient_failure(
            "m1",
            error(ErrorCode::Server),
            now,
            &policy,
            0.0,
            Some(60_000),
        )
        .unwrap();
    assert_eq!(retrying.retry_at_ms, now + 8_000);
    outbox.clear_retry_times();
    assert_eq!(sendable(&outbox, now), ["m1"]);
}

#[test]
fn answers_need_a_sending_entry() {
    let mut outbox = Outbox::new();
    outbox
        .enqueue(new("m1", "a", patch(1, &[("x", "1")])), 0)
        .unwrap();
    assert_eq!(
        outbox.on_success("m1", None),
        Err(OutboxError::NotSending("m1".into()))
    );
    assert_eq!(
        outbox.on_success("zz", None),
        Err(OutboxError::UnknownMutation("zz".into()))
    );
    outbox.mark_sending("m1").unwrap();
    assert_eq!(
        outbox.discard("m1"),
        Err(OutboxError::InFlight("m1".into()))
    );
    outbox.release("m1").unwrap();
    assert_eq!(outbox.get("m1").unwrap().state, EntryState::Queued);
    assert_eq!(outbox.discard("m1").unwrap().mutation_id, "m1");
    assert!(outbox.is_idle());
}

#[test]
fn followers_are_rebased_on_the_committed_version() {
    let mut outbox = Outbox::new();
    let first = MutationOp::Patch {
        base_version: 7,
        base_fields: text(&[("x", "0")]),
        fields: text(&[("x", "1")]),
    };
    outbox.enqueue(new("m1", "c-1", first), 0).unwrap();
    outbox.mark_sending("m1").unwrap();
    // Staged while m1 was in flight, on the same base.
    let second = MutationOp::Patch {
        base_version: 7,
        base_fields: text(&[("x", "0"), ("y", "0")]),
        fields: text(&[("x", "2"), ("y", "2")]),
    };
    outbox.enqueue(new("m2", "c-1", second), 0).unwrap();
    outbox
        .enqueue(new("m3", "c-1", MutationOp::Delete { base_version: 7 }), 0)
        .unwrap();
    outbox
        .on_success("m1", Some(&record(8, &[("x", "1"), ("y", "0")])))
        .unwrap();
    let MutationOp::Patch {
        base_version,
        base_fields,
        ..
    } = &outbox.get("m2").unwrap().op
    else {
        panic!("a patch")
    };
    assert_eq!(
        (*base_version, base_fields),
        (8, &text(&[("x", "1"), ("y", "0")]))
    );
    assert_eq!(
        outbox.get("m3").unwrap().op,
        MutationOp::Delete { base_version: 8 }
    );
}

#[test]
fn followers_of_a_merged_entry_learn_its_values_only() {
    let mut outbox = Outbox::new();
    let first = MutationOp::Patch {
        base_version: 7,
        base_fields: text(&[("x", "0")]),
        fields: text(&[("x", "1")]),
    };
    outbox.enqueue(new("m1", "c-1", first), 0).unwrap();
    outbox.mark_sending("m1").unwrap();
    let second = MutationOp::Patch {
        base_version: 7,
        base_fields: text(&[("x", "0"), ("y", "0")]),
        fields: text(&[("x", "2"), ("y", "2")]),
    };
    outbox.enqueue(new("m2", "c-1", second), 0).unwrap();
    // m1 met a 409 and was re-sent on version 9.
    let theirs = record(9, &[("x", "0"), ("y", "9")]);
    let outcome = outbox
        .get("m1")
        .unwrap()
        .merge_with(&theirs, &MergeRules::default())
        .unwrap();
    assert!(matches!(
        outbox
            .on_conflict("m1", &theirs, outcome, "k".into())
            .unwrap(),
        ConflictHandled::Resend { .. }
    ));
    outbox.mark_sending("m1").unwrap();
    outbox
        .on_success("m1", Some(&record(10, &[("x", "1"), ("y", "9")])))
        .unwrap();
    let MutationOp::Patch {
        base_version,
        base_fields,
        ..
    } = &outbox.get("m2").unwrap().op
    else {
        panic!("a patch")
    };
    // Still on 7 (it will meet a 409), but x's base is now its own earlier value,
    // so the merge will not call it a conflict with itself; y keeps its real base.
    assert_eq!(
        (*base_version, base_fields),
        (7, &text(&[("x", "1"), ("y", "0")]))
    );
}

#[test]
fn a_merged_resend_goes_under_a_new_idempotency_key() {
    // The key names one request: the re-sent change has another body and
    // If-Match, so a server that checks keys against requests would
    // refuse it under the old one (docs/backend/protocol.md, "Exactly once").
    let mut outbox = Outbox::new();
    let op = MutationOp::Patch {
        base_version: 7,
        base_fields: text(&[("x", "0")]),
        fields: text(&[("x", "1")]),
    };
    outbox.enqueue(new("m1", "c-1", op), 0).unwrap();
    let first_key = outbox.get("m1").unwrap().idempotency_key.clone();
    outbox.mark_sending("m1").unwrap();
    let theirs = record(8, &[("x", "0"), ("y", "9")]);
    let outcome = outbox
        .get("m1")
        .unwrap()
        .merge_with(&theirs, &MergeRules::default())
        .unwrap();
    let handled = outbox
        .on_conflict("m1", &theirs, outcome, "fresh-key".into())
        .unwrap();
    assert!(matches!(handled, ConflictHandled::Resend { .. }));
    let entry = outbox.get("m1").unwrap();
    assert_ne!(entry.idempotency_key, first_key);
    assert_eq!(entry.idempotency_key, "fresh-key");
}

#[test]
fn a_merged_conflict_is_resent_on_theirs_version() {
    let mut outbox = Outbox::new();
    let mine = MutationOp::Patch {
        base_version: 7,
        base_fields: text(&[("phone", "1")]),
        fields: text(&[("phone", "2")]),
    };
    outbox.enqueue(new("m1", "c-1", mine), 0).unwrap();
    outbox.enqueue(new("m2", "c-1", comment("k")), 0).unwrap();
    outbox.mark_sending("m1").unwrap();
    let theirs = record(8, &[("name", "Other"), ("phone", "1")]);
    let outcome = outbox
        .get("m1")
        .unwrap()
        .merge_with(&theirs, &MergeRules::default())
        .unwrap();
    let handled = outbox
        .on_conflict("m1", &theirs, outcome, "conflict-1".into())
        .unwrap();
    assert_eq!(
        handled,
        ConflictHandled::Resend {
            merged: vec!["phone".into()]
        }
    );
    let entry = outbox.get("m1").unwrap();
    assert_eq!(
        entry.op,
        MutationOp::Patch {
            base_version: 8,
            base_fields: text(&[("phone", "1")]),
            fields: text(&[("phone", "2")])
        }
    );
    assert_eq!((entry.state, entry.merge_rounds), (EntryState::Queued, 1));
    // Re-sent under the fresh key given (a key names one request).
    assert_ne!(entry.idempotency_key, "key-m1");
    // It keeps its place at the head of its lane.
    assert_eq!(sendable(&outbox, 0), ["m1"]);
}

#[test]
fn an_overlapping_conflict_leaves_the_outbox_as_a_conflict() {
    let mut outbox = Outbox::new();
    let mine = MutationOp::Patch {
        base_version: 7,
        base_fields: text(&[("status", "lead")]),
        fields: text(&[("status", "won")]),
    };
    outbox.enqueue(new("m1", "c-1", mine), 0).unwrap();
    outbox.enqueue(new("m2", "c-1", comment("k")), 0).unwrap();
    outbox.mark_sending("m1").unwrap();
    let theirs = record(8, &[("status", "lost")]);
    let outcome = outbox
        .get("m1")
        .unwrap()
        .merge_with(&theirs, &MergeRules::default())
        .unwrap();
    let ConflictHandled::Conflict(conflict, entry) = outbox
        .on_conflict("m1", &theirs, outcome, "conflict-1".into())
        .unwrap()
    else {
        panic!("a conflict");
    };
    assert_eq!(entry.mutation_id, "m1");
    assert_eq!(
        *conflict,
        Conflict {
            // Named by the key the 409 answered: a tab that sent the same
            // request names the same conflict.
            id: "key-m1".into(),
            collection: "customers".into(),
            record_id: "c-1".into(),
            base: 7,
            mine: text(&[("status", "won")]),
            theirs,
            fields: vec!["status".into()],
        }
    );
    assert_eq!(sendable(&outbox, 0), ["m2"]);
}

#[test]
fn settled_conflicts_and_deletes() {
    let mut outbox = Outbox::new();
    outbox
        .enqueue(new("m1", "c-1", patch(7, &[("status", "won")])), 0)
        .unwrap();
    outbox.mark_sending("m1").unwrap();
    let theirs = record(8, &[("status", "won")]);
    let outcome = outbox
        .get("m1")
        .unwrap()
        .merge_with(&theirs, &MergeRules::default())
        .unwrap();
    assert!(matches!(
        outbox
            .on_conflict("m1", &theirs, outcome, "x".into())
            .unwrap(),
        ConflictHandled::Settled(_)
    ));
    assert!(outbox.is_idle());

    outbox
        .enqueue(new("m2", "c-1", MutationOp::Delete { base_version: 7 }), 0)
        .unwrap();
    outbox.mark_sending("m2").unwrap();
    let rules = MergeRules {
        on_conflict: OnConflict::Mine,
        ..MergeRules::default()
    };
    let outcome = outbox
        .get("m2")
        .unwrap()
        .merge_with(&theirs, &rules)
        .unwrap();
    outbox
        .on_conflict("m2", &theirs, outcome, "x".into())
        .unwrap();
    assert_eq!(
        outbox.get("m2").unwrap().op,
        MutationOp::Delete { base_version: 8 }
    );

    outbox.enqueue(new("m3", "c-2", comment("k")), 0).unwrap();
    outbox.mark_sending("m3").unwrap();
    assert!(outbox
        .get("m3")
        .unwrap()
        .merge_with(&theirs, &rules)
        .is_none());
    assert_eq!(
        outbox.on_conflict(
            "m3",
            &theirs,
            MergeOutcome::Settled {
                conflicting: vec![]
            },
            "x".into()
        ),
        Err(OutboxError::NotMergeable("m3".into()))
    );
}

#[test]
fn restores_from_stored_entries() {
    let mut outbox = Outbox::new();
    outbox
        .enqueue(new("m1", "a", patch(1, &[("x", "1")])), 0)
        .unwrap();
    outbox.enqueue(new("m2", "a", comment("k1")), 0).unwrap();
    outbox.enqueue(new("m3", "b", comment("k2")), 0).unwrap();
    outbox.mark_sending("m1").unwrap();
    outbox.mark_sending("m3").unwrap();
    outbox
        .on_permanent_failure("m3", error(ErrorCode::Forbidden))
        .unwrap();
    let json = serde_json::to_string(&outbox).unwrap();
    assert!(json.contains(r#""kind":"patch""#) && json.contains(r#""baseVersion":1"#));
    assert!(json.contains(r#""idempotencyKey":"key-m1""#));
    // Stored in any order (IndexedDB returns them by key).
    let mut stored: Vec<OutboxEntry> = serde_json::from_str(&json).unwrap();
    stored.reverse();
    let restored = Outbox::restore(stored);
    // The one that was sending when the tab died is queued again.
    assert_eq!(restored.get("m1").unwrap().state, EntryState::Queued);
    assert_eq!(restored.get("m1").unwrap().attempts, 1);
    assert_eq!(sendable(&restored, 0), ["m1"]);
    assert_eq!(restored.failed().len(), 1);
    let back: Outbox = serde_json::from_str(&json).unwrap();
    assert_eq!(back, restored);
    // New entries come after the restored ones.
    let mut restored = restored;
    restored.enqueue(new("m4", "a", comment("k3")), 0).unwrap();
    assert!(restored.get("m4").unwrap().seq > restored.get("m2").unwrap().seq);
}
