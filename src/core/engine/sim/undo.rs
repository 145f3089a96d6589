//! The model person takes a change back: an undo is a change they made
//! (the values before the undone change), owed to them like any other.

use super::owed::{Change, Made};
use super::*;
use crate::core::engine::UndoTarget;

impl World {
    /// The person undoes the newest change `tab` lists, if any: the values
    /// before it are changes they made; those someone changed since are in
    /// a conflict, owed to the person but not in the undo's acknowledgment.
    pub(super) fn undo_newest(&mut self, tab: usize) -> bool {
        let Some(engine) = self.tabs[tab].engine.as_ref() else {
            return false;
        };
        let Some(undone) = engine.undo_list().undoable().next().cloned() else {
            return false;
        };
        let caller = self.new_caller(tab, format!("undo {}", &undone.mutation_id[..8]));
        let target = UndoTarget::Mutation(undone.mutation_id.clone());
        self.deliver(tab, Event::Undo { target, caller });
        let (mut acked, mut asked) = (Vec::new(), Vec::new());
        for name in undone.changed_fields() {
            let value = undone
                .before
                .get(&name)
                .cloned()
                .unwrap_or(FieldValue::Null);
            self.restored
                .insert((undone.record_id.clone(), name.clone(), format!("{value:?}")));
            let change = Change::Field(name, value);
            let made = Made::new(
                self.tabs[tab].user,
                tab,
                &undone.record_id,
                change.clone(),
                None,
            );
            let in_conflict = self.tabs[tab]
                .engine
                .as_ref()
                .is_some_and(|e| e.conflicts().values().any(|k| made.in_conflict(k)));
            if in_conflict {
                asked.push(change);
            } else {
                acked.push(change);
            }
        }
        self.made(tab, caller, &undone.record_id, acked, None);
        let nobody = self.new_caller(tab, "undo conflict".into());
        self.tabs[tab].callers.remove(&nobody);
        self.made(tab, nobody, &undone.record_id, asked, None);
        true
    }
}
