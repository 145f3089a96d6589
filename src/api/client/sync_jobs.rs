//! `crm.sync`: the spreadsheet sync jobs.

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;

use crate::error::Error;
use std::rc::Rc;

use crate::core::progress::SyncKind;
use crate::web::sync::SyncRunner;

use super::promise;

/// `crm.sync`: the spreadsheet sync as every tab of the user sees it.
#[wasm_bindgen]
pub struct CrmSyncJobs {
    pub(super) runner: Rc<SyncRunner>,
}

#[wasm_bindgen]
impl CrmSyncJobs {
    /// Starts a sync job (`"from-sheet"` by default); resolves with
    /// `{ syncId, status }` as soon as the server queued it, or with
    /// `status: "coalesced"` when the press was folded into a follow-up run.
    #[wasm_bindgen(
        unchecked_return_type = "Promise<{ syncId: string | null; status: \"queued\" | \"coalesced\" }>"
    )]
    pub fn start(
        &self,
        #[wasm_bindgen(unchecked_param_type = "\"from-sheet\" | \"to-sheet\" | undefined")]
        kind: JsValue,
    ) -> Promise {
        let kind = match kind.as_string().as_deref() {
            None | Some("from-sheet") => SyncKind::FromSheet,
            Some("to-sheet") => SyncKind::ToSheet,
            Some(other) => {
                let err = Error::Invalid(format!(
                    "kind must be from-sheet or to-sheet, not {other:?}"
                ));
                return Promise::reject(&err.into());
            }
        };
        self.runner.start(kind)
    }

    /// `{ phase, progress, message, syncId, stats, error, startedAt, updatedAt }`,
    /// the same object until it changes.
    #[wasm_bindgen(getter, unchecked_return_type = "SyncState")]
    pub fn state(&self) -> JsValue {
        self.runner.state_js()
    }

    /// Calls `listener(state)` on every change; returns the unsubscribe function.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(state: SyncState) => void")] listener: Function,
    ) -> Function {
        self.runner.subscribe(&listener)
    }

    /// Cancels the running or queued job.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn cancel(&self) -> Promise {
        self.runner.cancel()
    }

    /// Back to `idle` after `complete`, `error` or `cancelled`.
    pub fn dismiss(&self) {
        self.runner.dismiss();
    }

    /// Finished runs from IndexedDB, newest first.
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncHistoryEntry[]>")]
    pub fn history(&self) -> Promise {
        let runner = Rc::clone(&self.runner);
        promise(async move { runner.history().await })
    }

    /// Field by field, the sheet rows a from-sheet job did not apply because
    /// the record changed in the CRM since the last sync: `[{ row, recordId,
    /// field, sheet, crm, changedBy, changedAt }]`. Rejects with
    /// `sync_not_found` (unknown, expired or lost in a server restart),
    /// `forbidden` (another user's job), `network`, ...
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncSheetConflict[]>")]
    pub fn conflicts(
        &self,
        #[wasm_bindgen(js_name = syncId, unchecked_param_type = "string")] sync_id: JsValue,
    ) -> Promise {
        let Some(sync_id) = sync_id.as_string().filter(|id| !id.is_empty()) else {
            let err = Error::Invalid("syncId must be the id of a sync job".into());
            return Promise::reject(&err.into());
        };
        let runner = Rc::clone(&self.runner);
        promise(async move { runner.conflicts(&sync_id).await })
    }

    /// Starts a sync every `intervalMs` (two hours when not given) from now
    /// on, of `kind` (`"from-sheet"` by default); `null` stops it. Kept in
    /// IndexedDB: it survives reloads, and whichever tab leads carries it
    /// out, without doubling a run or losing one when the leader changes.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn schedule(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number | null | undefined")] interval_ms: JsValue,
        #[wasm_bindgen(unchecked_param_type = "\"from-sheet\" | \"to-sheet\" | undefined")]
        kind: JsValue,
    ) -> Promise {
        let interval = if interval_ms.is_null() {
            Ok(None)
        } else if interval_ms.is_undefined() {
            Ok(Some(crate::web::sync::DEFAULT_SCHEDULE_MS))
        } else {
            match interval_ms.as_f64() {
                Some(ms)
                    if ms.fract() == 0.0
                        && ms >= crate::web::sync::MIN_SCHEDULE_MS as f64
                        && ms <= 9_007_199_254_740_991.0 =>
                {
                    Ok(Some(ms as u64))
                }
                _ => Err(Error::Invalid(
                    "intervalMs must be a whole number of ms, 1000 or more, or null".into(),
                )),
            }
        };
        let kind = match kind.as_string().as_deref() {
            None | Some("from-sheet") => Ok(SyncKind::FromSheet),
            Some("to-sheet") => Ok(SyncKind::ToSheet),
            Some(other) => Err(Error::Invalid(format!(
                "kind must be from-sheet or to-sheet, not {other:?}"
            ))),
        };
        let runner = Rc::clone(&self.runner);
        promise(async move {
            runner.schedule(interval?, kind?).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The schedule: `{ intervalMs, kind, nextAt }`, or `null`.
    #[wasm_bindgen(getter, unchecked_return_type = "SyncSchedule | null")]
    pub fn scheduled(&self) -> JsValue {
        self.runner.scheduled_js()
    }
}
