use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone)]
enum Step {
    Patch { lane: u8, field: u8 },
    Comment { lane: u8 },
    Send(usize),
    Succeed(usize),
    Transient(usize),
    Permanent(usize),
    Merge(usize),
    Retry(usize),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0_u8..3, 0_u8..3).prop_map(|(lane, field)| Step::Patch { lane, field }),
        2 => (0_u8..3).prop_map(|lane| Step::Comment { lane }),
        4 => any::<usize>().prop_map(Step::Send),
        3 => any::<usize>().prop_map(Step::Succeed),
        2 => any::<usize>().prop_map(Step::Transient),
        1 => any::<usize>().prop_map(Step::Permanent),
        1 => any::<usize>().prop_map(Step::Merge),
        1 => any::<usize>().prop_map(Step::Retry),
        2 => (0_u64..10_000).prop_map(Step::Advance),
    ]
}

fn pick<T: Clone>(items: &[T], index: usize) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        items.get(index % items.len()).cloned()
    }
}

/// The test's own account of the outbox, to check it against.
#[derive(Default)]
struct Model {
    lanes: BTreeMap<String, VecDeque<String>>,
    ever_sent: BTreeMap<String, bool>,
    is_comment: BTreeMap<String, bool>,
    ended: BTreeMap<String, u32>,
    added: Vec<String>,
}

fn sending(outbox: &Outbox) -> Vec<String> {
    outbox
        .pending()
        .iter()
        .filter(|entry| entry.state == EntryState::Sending)
        .map(|entry| entry.mutation_id.clone())
        .collect()
}

fn check_lanes(outbox: &Outbox, model: &Model) -> Result<(), TestCaseError> {
    // The outbox's lanes are exactly the model's, in the same order, and
    // only a lane's head is ever in flight.
    let mut lanes: BTreeMap<String, VecDeque<String>> = BTreeMap::new();
    for entry in outbox.pending() {
        let lane = lanes.entry(entry.record_id.clone()).or_default();
        if entry.state == EntryState::Sending {
            prop_assert!(
                lane.is_empty(),
                "{} is sending behind another entry",
                entry.mutation_id
            );
        }
        lane.push_back(entry.mutation_id.clone());
    }
    let expected: BTreeMap<String, VecDeque<String>> = model
        .lanes
        .iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    prop_assert_eq!(lanes, expected);
    Ok(())
}

fn end(model: &mut Model, id: &str, lane: &str) -> Result<(), TestCaseError> {
    let queue = model.lanes.entry(lane.to_owned()).or_default();
    // Order within a lane: only the head ever gets its final answer.
    prop_assert_eq!(queue.front().map(String::as_str), Some(id));
    queue.pop_front();
    *model.ended.entry(id.to_owned()).or_default() += 1;
    Ok(())
}

proptest! {
    #[test]
    fn lanes_keep_order_and_every_entry_ends_once(steps in proptest::collection::vec(step(), 0..80)) {
        let mut outbox = Outbox::new();
        let mut model = Model::default();
        let policy = RetryPolicy::default();
        let mut now = 0_u64;
        let mut next = 0_u32;

        for step in steps {
            match step {
                Step::Patch { lane, field } => {
                    let id = format!("m{next}");
                    next += 1;
                    let lane = format!("r{lane}");
                    let fields: Fields = [(format!("f{field}"), FieldValue::Number(f64::from(next)))].into();
                    let op = MutationOp::Patch { base_version: 1, base_fields: Fields::new(), fields };
                    let mutation = NewMutation {
                        mutation_id: id.clone(), idempotency_key: format!("k{id}"),
                        collection: "c".into(), record_id: lane.clone(), op,
                    };
                    match outbox.enqueue(mutation, now).unwrap() {
                        Enqueued::Added { .. } => {
                            model.lanes.entry(lane).or_default().push_back(id.clone());
                            model.added.push(id.clone());
                            model.is_comment.insert(id, false);
                        }
                        Enqueued::Folded { into } => {
                            // Folded only into the lane's tail, never sent, not a comment.
                            prop_assert_eq!(model.lanes.get(&lane).and_then(|q| q.back()), Some(&into));
                            prop_assert!(!model.ever_sent.get(&into).copied().unwrap_or(false));
                            prop_assert!(!model.is_comment.get(&into).copied().unwrap_or(true));
                        }
                    }
                }
                Step::Comment { lane } => {
                    let id = format!("m{next}");
                    next += 1;
                    let lane = format!("r{lane}");
                    let mutation = NewMutation {
                        mutation_id: id.clone(), idempotency_key: format!("k{id}"),
                        collection: "c".into(), record_id: lane.clone(),
                        op: MutationOp::Comment { comment_id: id.clone(), text: "t".into() },
                    };
                    prop_assert_eq!(outbox.enqueue(mutation, now).unwrap(), Enqueued::Added { mutation_id: id.clone() });
                    model.lanes.entry(lane).or_default().push_back(id.clone());
                    model.added.push(id.clone());
                    model.is_comment.insert(id, true);
                }
                Step::Send(i) => {
                    let ready: Vec<String> = outbox.next_sendable(now).iter().map(|e| e.mutation_id.clone()).collect();
                    if let Some(id) = pick(&ready, i) {
                        outbox.mark_sending(&id).unwrap();
                        model.ever_sent.insert(id, true);
                    }
                }
                Step::Succeed(i) => {
                    if let Some(id) = pick(&sending(&outbox), i) {
                        let entry = outbox.on_success(&id, None).unwrap();
                        end(&mut model, &id, &entry.record_id)?;
                    }
                }
                Step::Transient(i) => {
                    if let Some(id) = pick(&sending(&outbox), i) {
                        let error = EntryError { code: ErrorCode::Network, message: String::new(), details: None, at_ms: now };
                        let retrying = outbox.on_transient_failure(&id, error, now, &policy, 0.5, None).unwrap();
                        prop_assert!(retrying.retry_at_ms >= now);
                    }
                }
                Step::Permanent(i) => {
                    if let Some(id) = pick(&sending(&outbox), i) {
                        let error = EntryError { code: ErrorCode::Invalid, message: String::new(), details: None, at_ms: now };
                        let lane = outbox.on_permanent_failure(&id, error).unwrap().record_id.clone();
                        end(&mut model, &id, &lane)?;
                    }
                }
                Step::Merge(i) => {
                    if let Some(id) = pick(&sending(&outbox), i) {
                        let entry = outbox.get(&id).unwrap().clone();
                        let theirs = Record {
                            id: entry.record_id.clone(), version: 5, updated_at: String::new(),
                            updated_by: String::new(), fields: Fields::new(), comments: Vec::new(),
                        };
                        match entry.merge_with(&theirs, &MergeRules::default()) {
                            None => {
                                // Comments never conflict: answer it as a success instead.
                                outbox.on_success(&id, None).unwrap();
                                end(&mut model, &id, &entry.record_id)?;
                            }
                            Some(outcome) => match outbox.on_conflict(&id, &theirs, outcome, format!("c{id}")).unwrap() {
                                ConflictHandled::Resend { .. } => {}
                                ConflictHandled::Settled(_) | ConflictHandled::Conflict(..) => {
                                    end(&mut model, &id, &entry.record_id)?;
                                }
                            },
                        }
                    }
                }
                Step::Retry(i) => {
                    let failed: Vec<String> = outbox.failed().iter().map(|e| e.mutation_id.clone()).collect();
                    if let Some(id) = pick(&failed, i) {
                        let lane = outbox.get(&id).unwrap().record_id.clone();
                        outbox.retry(&id).unwrap();
                        // Back at the end of its lane: it will end once more.
                        model.lanes.entry(lane).or_default().push_back(id.clone());
                        *model.ended.entry(id).or_default() -= 1;
                    }
                }
                Step::Advance(ms) => now += ms,
            }
            check_lanes(&outbox, &model)?;
        }

        // Drain: everything pending ends, successes and refusals alike.
        let mut rounds = 0;
        while !outbox.is_idle() {
            rounds += 1;
            prop_assert!(rounds < 1_000);
            outbox.clear_retry_times();
            for id in sending(&outbox) {
                outbox.release(&id).unwrap();
            }
            let ready: Vec<String> = outbox.next_sendable(now).iter().map(|e| e.mutation_id.clone()).collect();
            prop_assert!(!ready.is_empty());
            for (n, id) in ready.into_iter().enumerate() {
                outbox.mark_sending(&id).unwrap();
                let lane = if n % 3 == 2 {
                    let error = EntryError { code: ErrorCode::Invalid, message: String::new(), details: None, at_ms: now };
                    outbox.on_permanent_failure(&id, error).unwrap().record_id.clone()
                } else {
                    outbox.on_success(&id, None).unwrap().record_id
                };
                end(&mut model, &id, &lane)?;
            }
            check_lanes(&outbox, &model)?;
        }
        // Every entry that was added (not folded) ended exactly once:
        // removed, or in the failed list.
        for id in &model.added {
            prop_assert_eq!(model.ended.get(id).copied(), Some(1), "{}", id);
        }
        prop_assert_eq!(model.ended.len(), model.added.len());
        for entry in outbox.failed() {
            prop_assert_eq!(entry.state, EntryState::Failed);
        }
    }
}
