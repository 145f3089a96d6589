//! Carries out [`crate::core::counters`]: reads the user's stored totals at
//! start, and twice a second adds what this tab counted since its last write
//! to them, so `crm.metrics()` survives a reload.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use gloo_timers::callback::Interval;
use wasm_bindgen_futures::spawn_local;

use crate::core::counters::{add, Counters, KeptCounters, MetricsView};
use crate::error::Error;
use crate::web::client::Client;
use crate::web::idb::{Batch as DbBatch, Store};
use crate::web::sync::SyncRunner;

/// The key of the totals in the user's `meta` store.
const METRICS_KEY: &str = "metrics";
/// How often unwritten counts are written.
const WRITE_EVERY_MS: u32 = 500;

/// The user's counters, kept in IndexedDB (in memory only where the client
/// has no IndexedDB).
pub struct MetricsKeeper {
    client: Client,
    sync: Weak<SyncRunner>,
    kept: RefCell<KeptCounters>,
    writing: Cell<bool>,
    ticker: RefCell<Option<Interval>>,
}

impl MetricsKeeper {
    /// Reads the stored totals (so `metrics()` is right from the start),
    /// then writes new counts as they come.
    pub async fn start(client: Client, sync: &Rc<SyncRunner>) -> Rc<Self> {
        let keeper = Rc::new(Self {
            client,
            sync: Rc::downgrade(sync),
            kept: RefCell::new(KeptCounters::default()),
            writing: Cell::new(false),
            ticker: RefCell::new(None),
        });
        let stored = keeper.read_stored().await;
        *keeper.kept.borrow_mut() = KeptCounters::restored(stored);
        let me = Rc::downgrade(&keeper);
        let ticker = Interval::new(WRITE_EVERY_MS, move || {
            if let Some(keeper) = me.upgrade() {
                keeper.write_soon();
            }
        });
        *keeper.ticker.borrow_mut() = Some(ticker);
        keeper
    }

    /// This tab's counters now.
    fn current(&self) -> Counters {
        let mut now = self.client.counters();
        if let Some(sync) = self.sync.upgrade() {
            now.extend(sync.counters());
        }
        now
    }

    /// `crm.metrics()`.
    pub fn view(&self) -> MetricsView {
        MetricsView::of(&self.kept.borrow().totals(&self.current()))
    }

    /// Totals stored by earlier sessions and other tabs; none for a value
    /// that is not an object of numbers (it is then counted from zero).
    async fn read_stored(&self) -> Counters {
        let Some(db) = self.client.db() else {
            return Counters::new();
        };
        match db.db().get(Store::Meta.name(), METRICS_KEY).await {
            Ok(Some(value)) => counters_of(value),
            _ => Counters::new(),
        }
    }

    /// Adds the unwritten counts to the stored totals (one write at a time).
    pub fn write_soon(self: &Rc<Self>) {
        if self.writing.get() {
            return;
        }
        let now = self.current();
        let Some(delta) = self.kept.borrow().unwritten(&now) else {
            return;
        };
        let Some(db) = self.client.db() else {
            return;
        };
        self.writing.set(true);
        let me = Rc::clone(self);
        spawn_local(async move {
            let meta = Store::Meta.name();
            let written = db
                .db()
                .read_modify_write(&[meta], meta, METRICS_KEY, |current| {
                    let totals = add(&current.map(counters_of).unwrap_or_default(), &delta);
                    let value = crate::web::js::to_js(&totals)?;
                    let mut batch = DbBatch::new();
                    batch.put_js(meta, METRICS_KEY, value);
                    Ok::<_, Error>((batch, totals))
                })
                .await;
            if let Ok(totals) = written {
                me.kept.borrow_mut().written(totals, now);
            }
            me.writing.set(false);
        });
    }

    /// Stops writing (after one last write of what is counted).
    pub fn stop(self: &Rc<Self>) {
        self.ticker.borrow_mut().take();
        self.write_soon();
    }
}

fn counters_of(value: wasm_bindgen::JsValue) -> Counters {
    crate::web::js::from_server::<Counters>(value)
        .map(|mut c| {
            c.retain(|_, v| v.is_finite());
            c
        })
        .unwrap_or_default()
}
