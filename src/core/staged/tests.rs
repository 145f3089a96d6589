use super::*;

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), FieldValue::Text((*value).to_owned())))
        .collect()
}

fn record(id: &str, version: u64, pairs: &[(&str, &str)]) -> Record {
    Record {
        id: id.into(),
        version,
        updated_at: String::new(),
        updated_by: "alice".into(),
        fields: fields(pairs),
        comments: Vec::new(),
    }
}

fn key(id: &str) -> RecordKey {
    RecordKey::new("customers", id)
}

fn loaded() -> StagedRecords {
    let mut store = StagedRecords::new();
    store.load(
        "customers",
        [
            record("c-1", 7, &[("name", "Acme"), ("phone", "1")]),
            record("c-2", 1, &[]),
        ],
    );
    store
}

fn comment(id: &str) -> PendingComment {
    PendingComment {
        id: id.into(),
        text: "call back".into(),
    }
}

#[test]
fn get_and_list_show_confirmed_only() {
    let mut store = loaded();
    store
        .stage(&key("c-1"), fields(&[("name", "Acme Inc")]))
        .unwrap();
    assert_eq!(
        store.get("customers", "c-1").unwrap().fields,
        fields(&[("name", "Acme"), ("phone", "1")])
    );
    assert_eq!(store.list("customers").len(), 2);
    assert!(store.list("leads").is_empty());
    let view = store.view("customers", "c-1").unwrap();
    assert!(view.pending);
    assert_eq!(
        view.record.fields,
        fields(&[("name", "Acme Inc"), ("phone", "1")])
    );
    assert_eq!(view.record.version, 7);
    let plain = store.view("customers", "c-2").unwrap();
    assert!(!plain.pending);
}

#[test]
fn staging_records_base_values_and_later_values_win() {
    let mut store = loaded();
    store.stage(&key("c-1"), fields(&[("name", "B")])).unwrap();
    store
        .stage(&key("c-1"), fields(&[("name", "C"), ("email", "x@y.z")]))
        .unwrap();
    let change = store.staged(&key("c-1")).unwrap();
    assert_eq!(change.base_version, 7);
    assert_eq!(change.fields, fields(&[("name", "C"), ("email", "x@y.z")]));
    let mut base = fields(&[("name", "Acme")]);
    base.insert("email".into(), FieldValue::Null);
    assert_eq!(change.base_fields, base);
    assert_eq!(
        change.base_of(&fields(&[("name", "")])),
        fields(&[("name", "Acme")])
    );
}

#[test]
fn unknown_records_cannot_be_updated() {
    let mut store = loaded();
    assert_eq!(
        store.stage(&key("nope"), fields(&[("a", "b")])),
        Err(StageError::UnknownRecord(key("nope")))
    );
    assert_eq!(store.stage(&key("nope"), Fields::new()), Ok(()));
    assert!(store.staged(&key("nope")).is_none());
}

#[test]
fn commit_replaces_confirmed_and_clears_what_was_sent() {
    let mut store = loaded();
    let sent = fields(&[("name", "B")]);
    store.stage(&key("c-1"), sent.clone()).unwrap();
    store.set_state(&key("c-1"), StagedState::Sending);
    let committed = store.commit(
        "customers",
        record("c-1", 8, &[("name", "B"), ("phone", "1")]),
        &sent,
    );
    assert_eq!(
        committed,
        Committed {
            replaced: true,
            still_staged: false
        }
    );
    assert_eq!(store.get("customers", "c-1").unwrap().version, 8);
    assert!(store.staged(&key("c-1")).is_none());
    assert!(!store.view("customers", "c-1").unwrap().pending);
}

#[test]
fn changes_staged_during_the_send_stay_staged() {
    let mut store = loaded();
    let sent = fields(&[("name", "B"), ("phone", "2")]);
    store.stage(&key("c-1"), sent.clone()).unwrap();
    store.set_state(&key("c-1"), StagedState::Sending);
    // While the PATCH is in flight: name again (new value) and a new field.
    store
        .stage(&key("c-1"), fields(&[("name", "C"), ("city", "Oslo")]))
        .unwrap();
    let committed = store.commit(
        "customers",
        record("c-1", 8, &[("name", "B"), ("phone", "2")]),
        &sent,
    );
    assert!(committed.still_staged);
    let change = store.staged(&key("c-1")).unwrap();
    assert_eq!(change.fields, fields(&[("name", "C"), ("city", "Oslo")]));
    assert_eq!(change.base_version, 8);
    assert_eq!(change.state, StagedState::Staged);
    assert_eq!(
        store.view("customers", "c-1").unwrap().record.fields,
        fields(&[("name", "C"), ("phone", "2"), ("city", "Oslo")])
    );
}

#[test]
fn an_older_answer_never_replaces_a_newer_confirmed_record() {
    let mut store = loaded();
    let sent = fields(&[("name", "B")]);
    store.stage(&key("c-1"), sent.clone()).unwrap();
    // The feed brought version 9 (ours at 8, then someone else's) first.
    assert!(store.apply_remote(
        "customers",
        RemoteChange::Put(record("c-1", 9, &[("name", "B"), ("phone", "3")]))
    ));
    let committed = store.commit(
        "customers",
        record("c-1", 8, &[("name", "B"), ("phone", "1")]),
        &sent,
    );
    assert_eq!(
        committed,
        Committed {
            replaced: false,
            still_staged: false
        }
    );
    assert_eq!(store.get("customers", "c-1").unwrap().version, 9);
    // Equal versions replace (comments do not change the version).
    let mut same = record("c-1", 9, &[("name", "B"), ("phone", "3")]);
    same.comments.push(Comment {
        id: "k".into(),
        author: "bob".into(),
        text: "hi".into(),
        created_at: String::new(),
    });
    assert!(store.apply_remote("customers", RemoteChange::Put(same.clone())));
    assert!(!store.apply_remote("customers", RemoteChange::Put(same)));
}

#[test]
fn failure_leaves_confirmed_untouched() {
    let mut store = loaded();
    let before = store.get("customers", "c-1");
    store
        .stage(&key("c-1"), fields(&[("email", "bad")]))
        .unwrap();
    assert!(store.fail(&key("c-1")));
    assert_eq!(store.get("customers", "c-1"), before);
    assert_eq!(
        store.staged(&key("c-1")).unwrap().state,
        StagedState::Failed
    );
    // Discarding the failed fields makes the view plain again.
    store.unstage(&key("c-1"), &fields(&[("email", "bad")]));
    assert!(store.staged(&key("c-1")).is_none());
    assert!(!store.fail(&key("c-1")));
}

#[test]
fn remote_changes_keep_staged_fields_laid_over() {
    let mut store = loaded();
    store
        .stage(&key("c-1"), fields(&[("name", "Mine")]))
        .unwrap();
    store.apply_remote(
        "customers",
        RemoteChange::Put(record("c-1", 8, &[("name", "Theirs"), ("phone", "9")])),
    );
    let view = store.view("customers", "c-1").unwrap();
    assert_eq!(
        view.record.fields,
        fields(&[("name", "Mine"), ("phone", "9")])
    );
    assert_eq!(view.record.version, 8);
    // The base stays the version the change was made on.
    assert_eq!(store.staged(&key("c-1")).unwrap().base_version, 7);
    // Stale feed entries are ignored.
    assert!(!store.apply_remote("customers", RemoteChange::Put(record("c-1", 7, &[]))));
    // A remote delete removes the confirmed record; the update has nothing to show on.
    assert!(store.apply_remote(
        "customers",
        RemoteChange::Delete {
            id: "c-1".into(),
            version: 9
        }
    ));
    assert!(store.get("customers", "c-1").is_none());
    assert!(store.view("customers", "c-1").is_none());
    assert!(store.staged(&key("c-1")).is_some());
}

#[test]
fn creates_are_viewed_before_they_exist() {
    let mut store = loaded();
    store
        .stage_create(&key("new"), fields(&[("name", "Newco")]))
        .unwrap();
    assert_eq!(
        store.stage_create(&key("c-1"), Fields::new()),
        Err(StageError::AlreadyExists(key("c-1")))
    );
    assert!(store.get("customers", "new").is_none());
    let view = store.view("customers", "new").unwrap();
    assert!(view.pending);
    assert_eq!(
        (view.record.version, view.record.fields),
        (0, fields(&[("name", "Newco")]))
    );
    // Edits of a record being created join the create.
    store.stage(&key("new"), fields(&[("phone", "5")])).unwrap();
    let ids: Vec<_> = store
        .view_list("customers")
        .into_iter()
        .map(|view| view.record.id)
        .collect();
    assert_eq!(ids, ["c-1", "c-2", "new"]);
    let committed = store.commit(
        "customers",
        record("new", 1, &[("name", "Newco")]),
        &fields(&[("name", "Newco")]),
    );
    assert!(committed.still_staged);
    let change = store.staged(&key("new")).unwrap();
    assert_eq!((change.kind, change.base_version), (StagedKind::Update, 1));
}

#[test]
fn deletes_hide_the_record_until_acknowledged() {
    let mut store = loaded();
    store.stage(&key("c-1"), fields(&[("name", "x")])).unwrap();
    store.stage_delete(&key("c-1")).unwrap();
    assert!(store.view("customers", "c-1").is_none());
    assert!(store.get("customers", "c-1").is_some());
    assert_eq!(store.view_list("customers").len(), 1);
    assert_eq!(
        store.stage(&key("c-1"), fields(&[("a", "b")])),
        Err(StageError::Deleted(key("c-1")))
    );
    assert_eq!(
        store.stage_delete(&key("nope")),
        Err(StageError::UnknownRecord(key("nope")))
    );
    store.stage_delete(&key("c-2")).unwrap();
    assert_eq!(store.staged(&key("c-2")).unwrap().base_version, 1);
    store.commit_delete(&key("c-1"));
    assert!(store.get("customers", "c-1").is_none());
    assert!(store.staged(&key("c-1")).is_none());
}

#[test]
fn comments_are_pending_until_acknowledged_and_shown_once() {
    let mut store = loaded();
    store.stage_comment(&key("c-1"), comment("k1"));
    store.stage_comment(&key("c-1"), comment("k1"));
    store.stage_comment(&key("c-1"), comment("k2"));
    let view = store.view("customers", "c-1").unwrap();
    assert!(view.pending);
    assert_eq!(view.pending_comments, vec![comment("k1"), comment("k2")]);
    assert!(store.get("customers", "c-1").unwrap().comments.is_empty());
    // The feed brings k1 before our answer: it is shown once.
    let mut with_k1 = record("c-1", 7, &[("name", "Acme"), ("phone", "1")]);
    let k1 = Comment {
        id: "k1".into(),
        author: "alice".into(),
        text: "call back".into(),
        created_at: "t".into(),
    };
    with_k1.comments.push(k1.clone());
    store.apply_remote("customers", RemoteChange::Put(with_k1));
    assert_eq!(
        store.view("customers", "c-1").unwrap().pending_comments,
        vec![comment("k2")]
    );
    store.commit_comment(&key("c-1"), k1);
    assert_eq!(store.get("customers", "c-1").unwrap().comments.len(), 1);
    let k2 = Comment {
        id: "k2".into(),
        ..store
            .get("customers", "c-1")
            .unwrap()
            .comments
            .first()
            .unwrap()
            .clone()
    };
    store.commit_comment(&key("c-1"), k2);
    assert_eq!(store.get("customers", "c-1").unwrap().comments.len(), 2);
    assert!(store.staged(&key("c-1")).is_none());
    // Comments on records this tab has not loaded are fine.
    store.stage_comment(&key("elsewhere"), comment("k3"));
    store.unstage_comment(&key("elsewhere"), "k3");
    assert!(store.staged(&key("elsewhere")).is_none());
}

#[test]
fn rebase_moves_the_base_to_theirs() {
    let mut store = loaded();
    store.stage(&key("c-1"), fields(&[("phone", "2")])).unwrap();
    let theirs = record("c-1", 9, &[("name", "Other"), ("phone", "1")]);
    store.rebase(&key("c-1"), &theirs);
    let change = store.staged(&key("c-1")).unwrap();
    assert_eq!(
        (change.base_version, &change.base_fields),
        (9, &fields(&[("phone", "1")]))
    );
    assert!(store.discard(&key("c-1")).is_some());
    assert!(store.staged(&key("c-1")).is_none());
}

#[test]
fn a_full_load_keeps_newer_records_and_staged_changes() {
    let mut store = loaded();
    store.apply_remote("customers", RemoteChange::Put(record("c-1", 10, &[])));
    store.stage(&key("c-2"), fields(&[("a", "b")])).unwrap();
    store.load("customers", [record("c-1", 8, &[]), record("c-3", 1, &[])]);
    assert_eq!(store.get("customers", "c-1").unwrap().version, 10);
    assert!(store.get("customers", "c-2").is_none());
    assert!(store.staged(&key("c-2")).is_some());
    assert_eq!(store.list("customers").len(), 2);
}

#[test]
fn every_change_of_a_record_is_told_once_and_a_load_tells_all() {
    let mut store = loaded();
    let (all, mark) = store.touched_since(None);
    assert_eq!(all, Touched::All);
    assert_eq!(store.touched_since(Some(mark)).0, Touched::Keys(Vec::new()));
    store
        .stage(&key("c-1"), fields(&[("name", "Beta")]))
        .unwrap();
    store
        .stage_create(&key("c-3"), fields(&[("name", "New")]))
        .unwrap();
    store.apply_remote("customers", RemoteChange::Put(record("c-2", 2, &[])));
    // Nothing changed: nothing told.
    store.apply_remote("customers", RemoteChange::Put(record("c-2", 2, &[])));
    store.stage_delete(&key("c-2")).unwrap();
    let (touched, later) = store.touched_since(Some(mark));
    assert_eq!(
        touched,
        Touched::Keys(vec![key("c-1"), key("c-3"), key("c-2"), key("c-2")])
    );
    // A query: asked again from the same mark, the same answer.
    assert_eq!(store.touched_since(Some(mark)).0, touched);
    assert_eq!(
        store.touched_since(Some(later)).0,
        Touched::Keys(Vec::new())
    );
    let mut seen = Vec::new();
    store.for_each_view("customers", |r| {
        seen.push((r.id().to_owned(), format!("{:?}", r.field("name"))));
    });
    assert_eq!(
        seen,
        [
            ("c-1".to_owned(), r#"Some(Text("Beta"))"#.to_owned()),
            ("c-3".to_owned(), r#"Some(Text("New"))"#.to_owned()),
        ]
    );
    store.load("customers", []);
    assert_eq!(store.touched_since(Some(later)).0, Touched::All);
}
