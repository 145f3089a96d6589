use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Stage(u8, u8),
    Send,
    Commit,
    Fail,
    Remote(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0_u8..3, 0_u8..4).prop_map(|(field, value)| Step::Stage(field, value)),
        Just(Step::Send),
        Just(Step::Commit),
        Just(Step::Fail),
        (0_u8..4).prop_map(Step::Remote),
    ]
}

proptest! {
    /// `get` only ever shows what the server acknowledged, and `view`
    /// always shows the latest staged value of every field.
    #[test]
    fn get_never_shows_an_unacknowledged_change(steps in proptest::collection::vec(step(), 0..40)) {
        let key = RecordKey::new("c", "r");
        let mut store = StagedRecords::new();
        let mut server = Record {
            id: "r".into(), version: 1, updated_at: String::new(), updated_by: String::new(),
            fields: Fields::new(), comments: Vec::new(),
        };
        store.load("c", [server.clone()]);
        let mut acknowledged = vec![server.clone()];
        let mut in_flight: Option<Fields> = None;
        let mut latest = Fields::new();
        for step in steps {
            match step {
                Step::Stage(field, value) => {
                    let patch: Fields = [(format!("f{field}"), FieldValue::Number(value.into()))].into();
                    latest.extend(patch.clone());
                    store.stage(&key, patch).unwrap();
                }
                Step::Send => {
                    if in_flight.is_none() {
                        if let Some(change) = store.staged(&key) {
                            in_flight = Some(change.fields.clone());
                            store.set_state(&key, StagedState::Sending);
                        }
                    }
                }
                Step::Commit => {
                    if let Some(sent) = in_flight.take() {
                        server.version += 1;
                        server.fields.extend(sent.clone());
                        acknowledged.push(server.clone());
                        store.commit("c", server.clone(), &sent);
                    }
                }
                Step::Fail => {
                    if in_flight.take().is_some() {
                        store.fail(&key);
                    }
                }
                Step::Remote(value) => {
                    server.version += 1;
                    server.fields.insert("remote".into(), FieldValue::Number(value.into()));
                    acknowledged.push(server.clone());
                    store.apply_remote("c", RemoteChange::Put(server.clone()));
                }
            }
            let shown = store.get("c", "r").unwrap();
            prop_assert!(acknowledged.contains(&shown));
            let view = store.view("c", "r").unwrap();
            for (name, value) in &latest {
                prop_assert_eq!(view.record.fields.get(name), Some(value));
            }
        }
    }
}
