//! Three-way merge by field, for a change the server refused with `409`.
//!
//! Three versions of a record meet: *base* (the values my change was made
//! on), *mine* (my patch) and *theirs* (the server's current record, from
//! the 409's `details.current`). Per field of my patch:
//!
//! | mine vs theirs | I changed it | they changed it | result |
//! | --- | --- | --- | --- |
//! | equal | - | - | nothing to send |
//! | differ | no | - | theirs stays (nothing to send) |
//! | differ | yes | no | re-sent on theirs' version (merged) |
//! | differ | yes | yes | a conflict, settled by [`OnConflict`] |
//!
//! Fields I did not touch are theirs already. An absent field and `null`
//! are the same value here, as a PATCH with `null` clears a field.
//!
//! ```no_run
//! use crm_sync::core::merge::{merge, MergeOutcome, MergeRules};
//! use crm_sync::core::record::{Fields, Record};
//!
//! fn on_409(base: &Fields, mine: &Fields, theirs: &Record, rounds: u32) {
//!     match merge(base, mine, theirs, &MergeRules::default(), rounds) {
//!         MergeOutcome::Resend { patch, if_match, .. } => { /* PATCH again, If-Match: if_match */ }
//!         MergeOutcome::Settled { .. } => { /* theirs is the record; the save is done */ }
//!         MergeOutcome::Conflict { fields } => { /* keep a Conflict for a person */ }
//!     }
//! }
//! ```

use serde::{Deserialize, Serialize};

use crate::core::record::{FieldValue, Fields, Record};
use crate::core::sort::CollectMap;

/// What to do with fields both sides changed to different values
/// (docs/guide/conflicts.md, option `onConflict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Fields changed on one side are merged; overlapping fields become a
    /// conflict for a person.
    #[default]
    Merge,
    /// Every 409 is a conflict for a person.
    Manual,
    /// Overlapping fields keep the server's values (mine are dropped).
    Theirs,
    /// Overlapping fields are overwritten with mine.
    Mine,
    /// Each overlapping field goes to the later change: mine (made at the
    /// time passed to [`merge_at`]) or theirs (the server record's
    /// `updatedAt`). A tie, or a server time that cannot be read, keeps
    /// theirs. Clocks of different machines disagree: a change made later
    /// on a clock that runs behind loses to an earlier one, and whichever
    /// side loses is overwritten without anybody being asked.
    Latest,
}

/// How many merge rounds one change may take before a person decides: under
/// heavy contention each re-send can meet yet another 409.
pub const MAX_MERGE_ROUNDS: u32 = 5;

/// The merge settings of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MergeRules {
    /// The policy for overlapping fields.
    pub on_conflict: OnConflict,
    /// Rounds after which a change becomes a conflict whatever the policy.
    pub max_rounds: u32,
}

impl Default for MergeRules {
    fn default() -> Self {
        Self {
            on_conflict: OnConflict::Merge,
            max_rounds: MAX_MERGE_ROUNDS,
        }
    }
}

/// How each field of my patch compares with base and theirs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldComparison {
    /// Fields only I changed, with my values: they must be re-sent.
    pub mine_only: Fields,
    /// Fields both sides changed to different values.
    pub conflicting: Vec<String>,
    /// Fields where theirs already has my value, or I did not really change
    /// them (my value is the base value): nothing to send.
    pub settled: Vec<String>,
}

/// Compares my patch field by field with base and theirs.
pub fn compare(base: &Fields, mine: &Fields, theirs: &Fields) -> FieldComparison {
    let mut comparison = FieldComparison::default();
    for (name, my_value) in mine {
        let base_value = value_of(base, name);
        let their_value = value_of(theirs, name);
        if same(my_value, their_value) || same(my_value, base_value) {
            comparison.settled.push(name.clone());
        } else if same(their_value, base_value) {
            comparison.mine_only.insert(name.clone(), my_value.clone());
        } else {
            comparison.conflicting.push(name.clone());
        }
    }
    comparison
}

/// The result of merging my change into theirs.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeOutcome {
    /// Send `patch` again with `If-Match: if_match` (theirs' version).
    Resend {
        /// The fields to send.
        patch: Fields,
        /// Theirs' version.
        if_match: u64,
        /// The names of the re-sent fields (`merged` in docs/guide/conflicts.md).
        merged: Vec<String>,
        /// Fields both sides changed; the policy kept mine (in `patch`) or
        /// theirs (left out).
        conflicting: Vec<String>,
    },
    /// Nothing is left to send: theirs already holds every value that
    /// stays, so theirs is the change's result.
    Settled {
        /// Fields both sides changed, settled for theirs by the policy.
        conflicting: Vec<String>,
    },
    /// A person decides: keep a [`Conflict`].
    Conflict {
        /// The fields to show the person: those both sides changed, or, when
        /// none did (policy `manual` or too many rounds), every field of mine
        /// that differs from theirs.
        fields: Vec<String>,
    },
}

/// Merges my patch (made on `base`) into `theirs` after a 409.
///
/// `rounds` is how many merge rounds this change has had already (0 on its
/// first 409); from `rules.max_rounds` on, the change goes to a person.
pub fn merge(
    base: &Fields,
    mine: &Fields,
    theirs: &Record,
    rules: &MergeRules,
    rounds: u32,
) -> MergeOutcome {
    merge_at(base, mine, theirs, rules, rounds, 0)
}

/// Whether my change, made at `mine_at_ms`, is later than `theirs`.
fn mine_is_later(theirs: &Record, mine_at_ms: u64) -> bool {
    match crate::core::overlap::parse_rfc3339_ms(&theirs.updated_at) {
        Ok(theirs_ms) => i64::try_from(mine_at_ms).is_ok_and(|mine| mine > theirs_ms),
        Err(_) => false,
    }
}

/// [`merge`] for a change made at `mine_at_ms` (ms since the epoch), the
/// time [`OnConflict::Latest`] compares with the server's `updatedAt`.
pub fn merge_at(
    base: &Fields,
    mine: &Fields,
    theirs: &Record,
    rules: &MergeRules,
    rounds: u32,
    mine_at_ms: u64,
) -> MergeOutcome {
    let comparison = compare(base, mine, &theirs.fields);
    let person = |comparison: FieldComparison| {
        let fields = if comparison.conflicting.is_empty() {
            comparison.mine_only.into_keys().collect()
        } else {
            comparison.conflicting
        };
        MergeOutcome::Conflict { fields }
    };
    if rounds >= rules.max_rounds {
        return person(comparison);
    }
    let FieldComparison {
        mut mine_only,
        conflicting,
        ..
    } = comparison;
    match rules.on_conflict {
        OnConflict::Manual => {
            return person(FieldComparison {
                mine_only,
                conflicting,
                settled: Vec::new(),
            })
        }
        OnConflict::Merge if !conflicting.is_empty() => {
            return MergeOutcome::Conflict {
                fields: conflicting,
            }
        }
        OnConflict::Merge | OnConflict::Theirs => {}
        OnConflict::Latest if !mine_is_later(theirs, mine_at_ms) => {}
        OnConflict::Mine | OnConflict::Latest => {
            for name in &conflicting {
                if let Some(value) = mine.get(name) {
                    mine_only.insert(name.clone(), value.clone());
                }
            }
        }
    }
    if mine_only.is_empty() {
        return MergeOutcome::Settled { conflicting };
    }
    MergeOutcome::Resend {
        merged: mine_only.keys().cloned().collect(),
        patch: mine_only,
        if_match: theirs.version,
        conflicting,
    }
}

/// Merges my delete after a 409: the record changed since my base.
///
/// `theirs` wins under `theirs` (the delete is dropped, [`MergeOutcome::Settled`]),
/// `mine` re-sends the delete on theirs' version, and `merge`/`manual` ask a
/// person, since deleting what someone just changed is not a field merge.
pub fn merge_delete(theirs: &Record, rules: &MergeRules, rounds: u32) -> MergeOutcome {
    merge_delete_at(theirs, rules, rounds, 0)
}

/// [`merge_delete`] for a delete made at `mine_at_ms`: under
/// [`OnConflict::Latest`] the later of the delete and their change wins.
pub fn merge_delete_at(
    theirs: &Record,
    rules: &MergeRules,
    rounds: u32,
    mine_at_ms: u64,
) -> MergeOutcome {
    if rounds >= rules.max_rounds {
        return MergeOutcome::Conflict { fields: Vec::new() };
    }
    match rules.on_conflict {
        OnConflict::Merge | OnConflict::Manual => MergeOutcome::Conflict { fields: Vec::new() },
        OnConflict::Latest if !mine_is_later(theirs, mine_at_ms) => MergeOutcome::Settled {
            conflicting: Vec::new(),
        },
        OnConflict::Theirs => MergeOutcome::Settled {
            conflicting: Vec::new(),
        },
        OnConflict::Mine | OnConflict::Latest => MergeOutcome::Resend {
            patch: Fields::new(),
            if_match: theirs.version,
            merged: Vec::new(),
            conflicting: Vec::new(),
        },
    }
}

/// A change the server refused that a person has to look at (docs/guide/conflicts.md
/// `conflicts()`): serialised as `{ id, collection, recordId, base, mine,
/// theirs, fields }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    /// The conflict's id (a UUID made by the web layer).
    pub id: String,
    /// The record's collection.
    pub collection: String,
    /// The record's id.
    pub record_id: String,
    /// The version my change was made on.
    pub base: u64,
    /// My change.
    pub mine: Fields,
    /// The server's record when the conflict was found.
    pub theirs: Record,
    /// The fields to decide (see [`MergeOutcome::Conflict`]).
    pub fields: Vec<String>,
}

/// What to send once a person resolved a conflict.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The fields to PATCH; empty when theirs already holds every chosen
    /// value (nothing to send).
    pub patch: Fields,
    /// Theirs' version, for `If-Match`.
    pub if_match: u64,
}

impl Conflict {
    /// Resolves the conflict with the values a person chose.
    ///
    /// The fields of mine that were not in dispute are kept (the person
    /// only had to decide the disputed ones); `chosen` overrides them and
    /// may name any field. Values theirs already holds are not sent.
    pub fn resolve(&self, chosen: &Fields) -> Resolution {
        let mut patch: Fields = self
            .mine
            .iter()
            .filter(|(name, _)| !self.fields.contains(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect_map();
        patch.extend(
            chosen
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        patch.retain(|name, value| !same(value, value_of(&self.theirs.fields, name)));
        Resolution {
            patch,
            if_match: self.theirs.version,
        }
    }
}

static NULL: FieldValue = FieldValue::Null;

/// A field's value, absent read as `null` (a PATCH with `null` clears it).
pub(crate) fn value_of<'a>(fields: &'a Fields, name: &str) -> &'a FieldValue {
    fields.get(name).unwrap_or(&NULL)
}

fn same(a: &FieldValue, b: &FieldValue) -> bool {
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), FieldValue::Text((*value).to_owned())))
            .collect()
    }

    fn record(version: u64, pairs: &[(&str, &str)]) -> Record {
        Record {
            id: "c-1".into(),
            version,
            updated_at: String::new(),
            updated_by: "bob".into(),
            fields: fields(pairs),
            comments: Vec::new(),
        }
    }

    fn rules(on_conflict: OnConflict) -> MergeRules {
        MergeRules {
            on_conflict,
            ..MergeRules::default()
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn fields_only_i_changed_are_resent_on_theirs_version() {
        let base = fields(&[("name", "Acme"), ("phone", "1")]);
        let mine = fields(&[("phone", "2")]);
        let theirs = record(8, &[("name", "Acme Inc"), ("phone", "1")]);
        assert_eq!(
            merge(&base, &mine, &theirs, &rules(OnConflict::Merge), 0),
            MergeOutcome::Resend {
                patch: fields(&[("phone", "2")]),
                if_match: 8,
                merged: names(&["phone"]),
                conflicting: vec![],
            }
        );
    }

    #[test]
    fn the_same_value_on_both_sides_needs_nothing() {
        let base = fields(&[("status", "lead")]);
        let mine = fields(&[("status", "customer")]);
        let theirs = record(8, &[("status", "customer")]);
        assert_eq!(
            merge(&base, &mine, &theirs, &rules(OnConflict::Merge), 0),
            MergeOutcome::Settled {
                conflicting: vec![]
            }
        );
    }

    #[test]
    fn a_field_i_set_to_its_base_value_takes_theirs() {
        let base = fields(&[("status", "lead")]);
        let mine = fields(&[("status", "lead")]);
        let theirs = record(8, &[("status", "customer")]);
        assert_eq!(
            merge(&base, &mine, &theirs, &rules(OnConflict::Merge), 0),
            MergeOutcome::Settled {
                conflicting: vec![]
            }
        );
    }

    #[test]
    fn both_changed_differently_is_a_conflict_under_merge() {
        let base = fields(&[("status", "lead"), ("phone", "1")]);
        let mine = fields(&[("status", "customer"), ("phone", "2")]);
        let theirs = record(8, &[("status", "lost"), ("phone", "1")]);
        assert_eq!(
            merge(&base, &mine, &theirs, &rules(OnConflict::Merge), 0),
            MergeOutcome::Conflict {
                fields: names(&["status"])
            }
        );
    }

    #[test]
    fn theirs_drops_my_overlapping_values() {
        let base = fields(&[("status", "lead"), ("phone", "1")]);
        let mine = fields(&[("status", "customer"), ("phone", "2")]);
        let theirs = record(8, &[("status", "lost"), ("phone", "1")]);
        assert_eq!(
            merge(&base, &mine, &theirs, &rules(OnConflict::Theirs), 0),
            MergeOutcome::Resend {
                patch: fields(&[("phone", "2")]),
                if_match: 8,
                merged: names(&["phone"]),
                conflicting: names(&["status"]),
            }
        );
        let only_overlap = fields(&[("status", "customer")]);
        assert_eq!(
            merge(&base, &only_overlap, &theirs, &rules(OnConflict::Theirs), 0),
            MergeOutcome::Settled {
                conflicting: names(&["status"])
            }
        );
    }

    #[test]
    fn mine_overwrites_and_resends() {
        let base = fields(&[("status", "lead"), ("phone", "1")]);
        let mine = fields(&[("status", "customer"), ("phone", "2")]);
        let theirs = record(8, &[("status", "lost"), ("phone", "1")]);
        assert_eq!(
            merge(&base, &mine, &theirs, &rules(OnConflict::Mine), 0),
            MergeOutcome::Resend {
                patch: mine.clone(),
                if_match: 8,
                merged: names(&["phone", "status"]),
                conflicting: names(&["status"]),
            }
        );
    }

    #[test]
    fn manual_makes_every_409_a_conflict() {
        let base = fields(&[("name", "Acme"), ("phone", "1")]);
        let mine = fields(&[("phone", "2")]);
        let theirs = record(8, &[("name", "Acme Inc"), ("phone", "1")]);
        // No overlap: the person sees the fields that would have been re-sent.
        assert_eq!(
            merge(&base, &mine, &theirs, &rules(OnConflict::Manual), 0),
            MergeOutcome::Conflict {
                fields: names(&["phone"])
            }
        );
        let theirs = record(8, &[("name", "Acme Inc"), ("phone", "3")]);
        assert_eq!(
            merge(&base, &mine, &theirs, &rules(OnConflict::Manual), 0),
            MergeOutcome::Conflict {
                fields: names(&["phone"])
            }
        );
    }

    #[test]
    fn rounds_are_bounded() {
        let base = fields(&[("phone", "1")]);
        let mine = fields(&[("phone", "2")]);
        let theirs = record(20, &[("name", "x"), ("phone", "1")]);
        let rules = rules(OnConflict::Mine);
        assert!(matches!(
            merge(&base, &mine, &theirs, &rules, MAX_MERGE_ROUNDS - 1),
            MergeOutcome::Resend { .. }
        ));
        assert_eq!(
            merge(&base, &mine, &theirs, &rules, MAX_MERGE_ROUNDS),
            MergeOutcome::Conflict {
                fields: names(&["phone"])
            }
        );
    }

    #[test]
    fn absent_and_null_are_the_same() {
        let base = Fields::new();
        let mine: Fields = [("fax".to_owned(), FieldValue::Null)].into();
        let theirs = record(2, &[]);
        assert_eq!(
            merge(&base, &mine, &theirs, &MergeRules::default(), 0),
            MergeOutcome::Settled {
                conflicting: vec![]
            }
        );
    }

    #[test]
    fn deletes_follow_the_policy() {
        let theirs = record(9, &[("name", "x")]);
        let outcome = |on_conflict| merge_delete(&theirs, &rules(on_conflict), 0);
        assert_eq!(
            outcome(OnConflict::Merge),
            MergeOutcome::Conflict { fields: vec![] }
        );
        assert_eq!(
            outcome(OnConflict::Manual),
            MergeOutcome::Conflict { fields: vec![] }
        );
        assert_eq!(
            outcome(OnConflict::Theirs),
            MergeOutcome::Settled {
                conflicting: vec![]
            }
        );
        assert!(matches!(
            outcome(OnConflict::Mine),
            MergeOutcome::Resend { if_match: 9, .. }
        ));
        assert!(matches!(
            merge_delete(&theirs, &rules(OnConflict::Mine), MAX_MERGE_ROUNDS),
            MergeOutcome::Conflict { .. }
        ));
    }

    #[test]
    fn resolution_keeps_undisputed_fields_and_skips_theirs_values() {
        let conflict = Conflict {
            id: "k-1".into(),
            collection: "customers".into(),
            record_id: "c-1".into(),
            base: 7,
            mine: fields(&[("status", "customer"), ("phone", "2")]),
            theirs: record(8, &[("status", "lost"), ("phone", "1"), ("name", "Acme")]),
            fields: names(&["status"]),
        };
        assert_eq!(
            conflict.resolve(&fields(&[("status", "won")])),
            Resolution {
                patch: fields(&[("phone", "2"), ("status", "won")]),
                if_match: 8
            }
        );
        // Choosing theirs for the disputed field sends only the rest.
        assert_eq!(
            conflict.resolve(&fields(&[("status", "lost")])).patch,
            fields(&[("phone", "2")])
        );
        // The person may also undo an undisputed change by choosing theirs.
        assert!(conflict
            .resolve(&fields(&[("status", "lost"), ("phone", "1")]))
            .patch
            .is_empty());
    }

    /// 2026-12-04T10:00:00Z in ms.
    const TEN: u64 = 1_796_378_400_000;

    fn theirs_at(at: &str) -> Record {
        Record {
            updated_at: at.into(),
            ..record(8, &[("status", "lost"), ("phone", "0"), ("city", "Graz")])
        }
    }

    #[test]
    fn latest_wins_field_by_field_in_both_orders() {
        let base = fields(&[("status", "lead"), ("phone", "0")]);
        let mine = fields(&[("status", "customer"), ("phone", "1")]);
        let rules = rules(OnConflict::Latest);
        // Mine is later: my status is re-sent with my phone.
        let theirs = theirs_at("2026-12-04T09:59:59Z");
        match merge_at(&base, &mine, &theirs, &rules, 0, TEN) {
            MergeOutcome::Resend {
                patch, if_match, ..
            } => {
                assert_eq!(patch, mine);
                assert_eq!(if_match, 8);
            }
            other => panic!("{other:?}"),
        }
        // Theirs is later: their status stays, my phone still goes.
        let theirs = theirs_at("2026-12-04T10:00:01Z");
        match merge_at(&base, &mine, &theirs, &rules, 0, TEN) {
            MergeOutcome::Resend { patch, .. } => assert_eq!(patch, fields(&[("phone", "1")])),
            other => panic!("{other:?}"),
        }
        // A tie, or a time that cannot be read, keeps theirs.
        for at in ["2026-12-04T10:00:00Z", "yesterday"] {
            match merge_at(&base, &mine, &theirs_at(at), &rules, 0, TEN) {
                MergeOutcome::Resend { patch, .. } => {
                    assert_eq!(patch, fields(&[("phone", "1")]), "{at}")
                }
                other => panic!("{at}: {other:?}"),
            }
        }
        // A delete: the later side wins too.
        assert!(matches!(
            merge_delete_at(&theirs_at("2026-12-04T09:00:00Z"), &rules, 0, TEN),
            MergeOutcome::Resend { .. }
        ));
        assert!(matches!(
            merge_delete_at(&theirs_at("2026-12-04T11:00:00Z"), &rules, 0, TEN),
            MergeOutcome::Settled { .. }
        ));
    }

    #[test]
    fn latest_wins_is_only_as_good_as_the_clocks() {
        // My clock runs 10 minutes behind the server's: my change, made a
        // minute after theirs in true time, carries an earlier time and
        // loses. This is what latest-wins gives up, and why merge is the
        // default.
        let skew = 10 * 60 * 1000;
        let theirs = theirs_at("2026-12-04T10:00:00Z");
        let mine_true = TEN + 60 * 1000;
        let base = fields(&[("status", "lead")]);
        let mine = fields(&[("status", "customer")]);
        assert!(matches!(
            merge_at(
                &base,
                &mine,
                &theirs,
                &rules(OnConflict::Latest),
                0,
                mine_true - skew
            ),
            MergeOutcome::Settled { .. }
        ));
        assert!(matches!(
            merge_at(
                &base,
                &mine,
                &theirs,
                &rules(OnConflict::Latest),
                0,
                mine_true
            ),
            MergeOutcome::Resend { .. }
        ));
    }

    #[test]
    fn conflict_serialises_as_the_api_says() {
        let conflict = Conflict {
            id: "k-1".into(),
            collection: "customers".into(),
            record_id: "c-1".into(),
            base: 7,
            mine: fields(&[("status", "customer")]),
            theirs: record(8, &[("status", "lost")]),
            fields: names(&["status"]),
        };
        let json = serde_json::to_value(&conflict).unwrap();
        assert_eq!(json["recordId"], "c-1");
        assert_eq!(json["base"], 7);
        assert_eq!(json["mine"]["status"], "customer");
        assert_eq!(json["theirs"]["version"], 8);
        assert_eq!(json["fields"][0], "status");
        let back: Conflict = serde_json::from_value(json).unwrap();
        assert_eq!(back, conflict);
        assert_eq!(serde_json::to_value(OnConflict::Theirs).unwrap(), "theirs");
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::collection::btree_map;
    use proptest::prelude::*;

    /// Few names and values, so the sides collide often.
    fn patch() -> impl Strategy<Value = Fields> {
        btree_map(
            "[a-e]",
            prop_oneof![
                Just(FieldValue::Null),
                (0_u8..3).prop_map(|n| FieldValue::Number(n.into()))
            ],
            0..5,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    fn policy() -> impl Strategy<Value = OnConflict> {
        prop_oneof![
            Just(OnConflict::Merge),
            Just(OnConflict::Manual),
            Just(OnConflict::Theirs),
            Just(OnConflict::Mine)
        ]
    }

    fn applied(base: &Fields, patch: &Fields) -> Fields {
        let mut out = base.clone();
        out.extend(patch.clone());
        out
    }

    fn get<'a>(fields: &'a Fields, name: &str) -> &'a FieldValue {
        value_of(fields, name)
    }

    proptest! {
        #[test]
        fn conflicts_are_exactly_the_fields_both_changed_differently(
            base in patch(), mine in patch(), their_patch in patch()
        ) {
            let theirs = applied(&base, &their_patch);
            let comparison = compare(&base, &mine, &theirs);
            let expected: Vec<String> = mine
                .iter()
                .filter(|(name, value)| {
                    *value != get(&base, name)
                        && get(&theirs, name) != get(&base, name)
                        && *value != get(&theirs, name)
                })
                .map(|(name, _)| name.clone())
                .collect();
            prop_assert_eq!(comparison.conflicting, expected);
        }

        #[test]
        fn never_loses_a_field_changed_on_one_side(
            base in patch(), mine in patch(), their_patch in patch(), on_conflict in policy()
        ) {
            let theirs = Record {
                id: "r".into(), version: 9, updated_at: String::new(), updated_by: String::new(),
                fields: applied(&base, &their_patch), comments: Vec::new(),
            };
            let rules = MergeRules { on_conflict, max_rounds: MAX_MERGE_ROUNDS };
            let outcome = merge(&base, &mine, &theirs, &rules, 0);
            let result = match &outcome {
                MergeOutcome::Resend { patch, if_match, .. } => {
                    prop_assert_eq!(*if_match, 9);
                    // Never invents a field: every re-sent value is mine.
                    for (name, value) in patch {
                        prop_assert_eq!(mine.get(name), Some(value));
                    }
                    applied(&theirs.fields, patch)
                }
                MergeOutcome::Settled { .. } => theirs.fields.clone(),
                MergeOutcome::Conflict { .. } => return Ok(()),
            };
            let mut names: Vec<&String> = base.keys().chain(mine.keys()).chain(theirs.fields.keys()).collect();
            names.sort();
            names.dedup();
            for name in names {
                let (b, m, t) = (get(&base, name), mine.get(name).unwrap_or(get(&base, name)), get(&theirs.fields, name));
                let r = get(&result, name);
                if m != b && t == b {
                    prop_assert_eq!(r, m, "my change of {} was lost", name);
                }
                if t != b && m == b {
                    prop_assert_eq!(r, t, "their change of {} was lost", name);
                }
            }
        }

        #[test]
        fn conflicts_are_symmetric(base in patch(), a in patch(), b in patch()) {
            let with_a = applied(&base, &a);
            let with_b = applied(&base, &b);
            prop_assert_eq!(
                compare(&base, &a, &with_b).conflicting,
                compare(&base, &b, &with_a).conflicting
            );
        }
    }
}
