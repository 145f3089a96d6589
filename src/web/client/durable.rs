//! `status.durable` and `crm.persist()`: whether the browser keeps this
//! origin's data (and so the user's queued changes) from its clean-up, and
//! asking it to. Never asked at open: Firefox shows the person a prompt, so
//! only the app asks, from a click.

use super::*;
use crate::web::persistence;

impl Client {
    /// Asks the browser (without a prompt) whether it keeps this origin's
    /// data; `status` follows. Run at open and when another tab asked for
    /// persistent storage.
    pub async fn read_durable(&self) {
        let durable = persistence::persisted().await;
        self.set_durable(durable);
    }

    /// Asks the browser for persistent storage and answers whether the
    /// origin has it now; this tab's `status` and every other tab's follow.
    /// A browser without `navigator.storage` answers `false`.
    pub async fn ask_durable(&self) -> bool {
        let durable = persistence::persist().await || persistence::persisted().await;
        self.set_durable(durable);
        self.tell_tabs(TabMessage::DurableChanged);
        durable
    }

    fn set_durable(&self, durable: bool) {
        if self.inner.durable.replace(durable) != durable {
            self.changed();
            self.emit_status();
        }
    }
}
