//! Taking a committed change back: which fields an undo puts back, which
//! are a conflict for a person, and the user's list of changes that can be
//! taken back.
//!
//! An undo is a new change, never a rewind: it puts back, for each field
//! the change changed, the value the change replaced. Three values of a
//! field meet, and the rule is three-way, as in [`crate::core::merge`]:
//!
//! | the field now | what the undo does |
//! | --- | --- |
//! | what the change wrote | puts back the value before it |
//! | the value before the change | nothing (already back) |
//! | anything else (someone changed it since) | a conflict for a person: base what the change wrote, mine the value before it, theirs the value now |
//!
//! The undo is then sent as any save is, with `If-Match` and the values the
//! change wrote as its base, so a change that reaches the server between
//! now and then meets the same rule in the 409 merge.
//!
//! ```
//! use crm_sync::core::record::{FieldValue, Fields};
//! use crm_sync::core::undo::plan_undo;
//!
//! let text = |s: &str| FieldValue::Text(s.into());
//! let before: Fields = [("city".to_string(), text("Paris"))].into_iter().collect();
//! let wrote: Fields = [("city".to_string(), text("Lyon"))].into_iter().collect();
//! let now: Fields = [("city".to_string(), text("Lyon"))].into_iter().collect();
//! let plan = plan_undo(&before, &wrote, &now);
//! assert_eq!(plan.patch.get("city"), Some(&text("Paris")));
//! assert!(plan.conflicting.is_empty());
//! ```

use serde::{Deserialize, Serialize};

use crate::core::merge::value_of;
use crate::core::record::Fields;

/// How many changes a user's undo list keeps (the newest).
pub const UNDO_KEEP: usize = 50;

/// What an undo of a change does, field by field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UndoPlan {
    /// The fields to send, with the values they had before the change.
    pub patch: Fields,
    /// Fields someone changed since: a person decides them.
    pub conflicting: Vec<String>,
    /// Fields already back at the value before the change.
    pub settled: Vec<String>,
}

impl UndoPlan {
    /// Whether the undo has nothing to send and nothing to ask.
    pub fn is_empty(&self) -> bool {
        self.patch.is_empty() && self.conflicting.is_empty()
    }
}

/// The three-way rule of an undo (see the module docs): `before` the values
/// the change replaced, `wrote` the values it wrote, `now` the record's
/// fields as they are. Only the fields in `wrote` that the change really
/// changed count; an absent field and `null` are the same value.
pub fn plan_undo(before: &Fields, wrote: &Fields, now: &Fields) -> UndoPlan {
    let mut plan = UndoPlan::default();
    for (name, written) in wrote {
        let old = value_of(before, name);
        if old == written {
            continue;
        }
        let current = value_of(now, name);
        if current == written {
            plan.patch.insert(name.clone(), old.clone());
        } else if current == old {
            plan.settled.push(name.clone());
        } else {
            plan.conflicting.push(name.clone());
        }
    }
    plan
}

/// One committed change of this user, as the undo list keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UndoEntry {
    /// The change's mutation id.
    pub mutation_id: String,
    /// The record's collection.
    pub collection: String,
    /// The record's id.
    pub record_id: String,
    /// The version the change made.
    pub version: u64,
    /// The values the change replaced.
    pub before: Fields,
    /// The values it wrote.
    pub after: Fields,
    /// When it was committed, ms since the epoch.
    pub at_ms: u64,
    /// The change this one took back, if it is an undo (or a redo: an
    /// undo of an undo).
    #[serde(default)]
    pub undoes: Option<String>,
    /// The undo that took this change back, while it stands.
    #[serde(default)]
    pub undone_by: Option<String>,
}

impl UndoEntry {
    /// Whether `undoable()` lists it: a change of the person's own (not an
    /// undo or redo) that stands.
    pub fn is_undoable(&self) -> bool {
        self.undoes.is_none() && self.undone_by.is_none()
    }

    /// The names of the fields it changed.
    pub fn changed_fields(&self) -> Vec<String> {
        self.after
            .iter()
            .filter(|(name, v)| value_of(&self.before, name) != *v)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// The user's committed changes, newest first, at most [`UNDO_KEEP`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UndoList {
    entries: Vec<UndoEntry>,
}

/// What [`UndoList::record`] changed: entries to write, ids to delete.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UndoWrites {
    /// Entries new or changed.
    pub put: Vec<UndoEntry>,
    /// Entries dropped off the end.
    pub deleted: Vec<String>,
}

impl UndoList {
    /// The list as stored (any order; entries with the same id once).
    pub fn restore(entries: impl IntoIterator<Item = UndoEntry>) -> Self {
        let mut list = Self::default();
        for entry in entries {
            list.entries.retain(|e| e.mutation_id != entry.mutation_id);
            list.entries.push(entry);
        }
        list.sort();
        list
    }

    fn sort(&mut self) {
        crate::core::sort::sort_by(&mut self.entries, |a, b| {
            b.at_ms
                .cmp(&a.at_ms)
                .then_with(|| b.mutation_id.cmp(&a.mutation_id))
        });
    }

    /// Every entry, newest first.
    pub fn entries(&self) -> &[UndoEntry] {
        &self.entries
    }

    /// The changes that can be taken back, newest first.
    pub fn undoable(&self) -> impl Iterator<Item = &UndoEntry> {
        self.entries.iter().filter(|e| e.is_undoable())
    }

    /// The entry of a mutation.
    pub fn get(&self, mutation_id: &str) -> Option<&UndoEntry> {
        self.entries.iter().find(|e| e.mutation_id == mutation_id)
    }

    /// The entry of a record's version.
    pub fn by_version(&self, collection: &str, id: &str, version: u64) -> Option<&UndoEntry> {
        self.entries
            .iter()
            .find(|e| e.collection == collection && e.record_id == id && e.version == version)
    }

    /// The undo a redo of `mutation_id` takes back: the undo standing
    /// against that change, or the undo itself when it is named.
    pub fn redo_target(&self, mutation_id: &str) -> Option<&UndoEntry> {
        let named = self.get(mutation_id)?;
        match &named.undone_by {
            Some(undo) => self.get(undo),
            None if named.undoes.is_some() => Some(named),
            None => None,
        }
    }

    /// A committed change: kept (an undo marks what it took back, a redo
    /// puts the change it restored back on the list); the oldest past
    /// [`UNDO_KEEP`] go.
    pub fn record(&mut self, entry: UndoEntry) -> UndoWrites {
        let mut writes = UndoWrites::default();
        if let Some(target) = entry.undoes.clone() {
            let restored = self.mark(&target, Some(entry.mutation_id.clone()), &mut writes);
            // A redo: the change the undo took back stands again.
            if let Some(original) = restored {
                self.mark(&original, None, &mut writes);
            }
        }
        self.entries.retain(|e| e.mutation_id != entry.mutation_id);
        writes.put.push(entry.clone());
        self.entries.push(entry);
        self.sort();
        while self.entries.len() > UNDO_KEEP {
            if let Some(old) = self.entries.pop() {
                writes.put.retain(|e| e.mutation_id != old.mutation_id);
                writes.deleted.push(old.mutation_id);
            }
        }
        writes
    }

    /// Sets who took `mutation_id` back; returns what that entry itself
    /// took back, if anything.
    fn mark(
        &mut self,
        mutation_id: &str,
        undone_by: Option<String>,
        writes: &mut UndoWrites,
    ) -> Option<String> {
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.mutation_id == mutation_id)?;
        entry.undone_by = undone_by;
        writes.put.retain(|e| e.mutation_id != mutation_id);
        writes.put.push(entry.clone());
        entry.undoes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::FieldValue;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), FieldValue::Text((*v).to_owned())))
            .collect()
    }

    fn entry(id: &str, at_ms: u64, undoes: Option<&str>) -> UndoEntry {
        UndoEntry {
            mutation_id: id.into(),
            collection: "customers".into(),
            record_id: "c1".into(),
            version: at_ms,
            before: fields(&[("city", "Paris")]),
            after: fields(&[("city", "Lyon")]),
            at_ms,
            undoes: undoes.map(Into::into),
            undone_by: None,
        }
    }

    #[test]
    fn a_field_nobody_touched_since_goes_back() {
        let plan = plan_undo(
            &fields(&[("city", "Paris")]),
            &fields(&[("city", "Lyon")]),
            &fields(&[("city", "Lyon"), ("phone", "2")]),
        );
        assert_eq!(plan.patch, fields(&[("city", "Paris")]));
        assert!(plan.conflicting.is_empty() && plan.settled.is_empty());
    }

    #[test]
    fn a_field_someone_changed_since_is_a_conflict_and_the_others_go_back() {
        let plan = plan_undo(
            &fields(&[("city", "Paris"), ("phone", "1")]),
            &fields(&[("city", "Lyon"), ("phone", "2")]),
            &fields(&[("city", "Nice"), ("phone", "2")]),
        );
        assert_eq!(plan.patch, fields(&[("phone", "1")]));
        assert_eq!(plan.conflicting, vec!["city".to_string()]);
    }

    #[test]
    fn a_field_already_back_is_settled() {
        let plan = plan_undo(
            &fields(&[("city", "Paris")]),
            &fields(&[("city", "Lyon")]),
            &fields(&[("city", "Paris")]),
        );
        assert!(plan.is_empty());
        assert_eq!(plan.settled, vec!["city".to_string()]);
    }

    #[test]
    fn a_field_the_change_did_not_change_is_left_alone() {
        let plan = plan_undo(
            &fields(&[("city", "Lyon")]),
            &fields(&[("city", "Lyon")]),
            &fields(&[("city", "Nice")]),
        );
        assert!(plan.is_empty() && plan.settled.is_empty());
    }

    #[test]
    fn absent_and_null_are_the_same_value() {
        let wrote = fields(&[("city", "Lyon")]);
        let plan = plan_undo(&Fields::new(), &wrote, &wrote);
        assert_eq!(plan.patch.get("city"), Some(&FieldValue::Null));
        let now: Fields = [("city".to_string(), FieldValue::Null)]
            .into_iter()
            .collect();
        assert_eq!(plan_undo(&Fields::new(), &wrote, &now).settled.len(), 1);
    }

    #[test]
    fn keeps_the_newest_fifty() {
        let mut list = UndoList::default();
        let mut deleted = Vec::new();
        for i in 0..60 {
            deleted.extend(list.record(entry(&format!("m{i:02}"), i, None)).deleted);
        }
        assert_eq!(list.entries().len(), UNDO_KEEP);
        assert_eq!(list.entries()[0].mutation_id, "m59");
        assert_eq!(deleted.len(), 10);
        assert!(deleted.contains(&"m00".to_string()));
        assert!(list.get("m09").is_none() && list.get("m10").is_some());
    }

    #[test]
    fn an_undo_takes_its_change_off_the_list_and_a_redo_puts_it_back() {
        let mut list = UndoList::default();
        list.record(entry("change", 1, None));
        let writes = list.record(entry("undo", 2, Some("change")));
        assert_eq!(writes.put.len(), 2);
        assert_eq!(list.undoable().count(), 0);
        assert_eq!(
            list.redo_target("change").map(|e| e.mutation_id.as_str()),
            Some("undo")
        );
        assert_eq!(
            list.redo_target("undo").map(|e| e.mutation_id.as_str()),
            Some("undo")
        );
        list.record(entry("redo", 3, Some("undo")));
        let ids: Vec<&str> = list.undoable().map(|e| e.mutation_id.as_str()).collect();
        assert_eq!(ids, vec!["change"]);
        assert!(list.redo_target("change").is_none());
    }

    #[test]
    fn restores_newest_first_whatever_the_stored_order() {
        let list = UndoList::restore(vec![
            entry("a", 1, None),
            entry("c", 3, None),
            entry("b", 2, None),
        ]);
        let ids: Vec<&str> = list
            .entries()
            .iter()
            .map(|e| e.mutation_id.as_str())
            .collect();
        assert_eq!(ids, vec!["c", "b", "a"]);
    }
}
