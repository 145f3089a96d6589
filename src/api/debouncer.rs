//! `Debouncer`: the client's save batching as a building block of its own
//! (docs/reference.md). Calls that come within `waitMs` of each
//! other become one call of the app's function, with the last argument;
//! every caller's promise settles with that call's result.
//!
//! ```js
//! const saveDraft = new Debouncer((draft) => api.saveDraft(draft), { waitMs: 500, maxWaitMs: 3000 });
//! input.oninput = () => saveDraft.call(input.value).then(showSaved, showError);
//! ```
//!
//! The batching is [`crate::core::debounce`]'s machine with one key and
//! [`Latest`] as the fold; this file owns the one timer and the promises.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;

use crate::core::debounce::{Debounce, DebounceOptions, Latest, Pushed};
use crate::error::Error;
use crate::web::clock::now_ms;
use crate::web::js::get;

#[wasm_bindgen(typescript_custom_section)]
const DEBOUNCER_TS: &'static str = r#"
/** Options of {@link Debouncer}. */
export interface DebouncerOptions {
  /** Quiet time after the last call before the function runs (default 300). */
  waitMs?: number;
  /** The longest a batch is put off while calls keep coming (default: no bound). Not less than `waitMs`. */
  maxWaitMs?: number | null;
  /** The first call of a quiet period runs at once; calls in the `waitMs` after it form the next batch (default false). */
  leading?: boolean;
}

/**
 * Calls within `waitMs` of each other become one call of `fn`, with the
 * last call's argument; every caller's promise settles with that call's
 * result (a promise `fn` returns is followed). The constructor throws
 * `CrmError` `invalid` for a `fn` that is not a function or bad options.
 */
export class Debouncer<A = unknown, R = unknown> {
  constructor(fn: (arg: A) => R | PromiseLike<R>, options?: DebouncerOptions);
  free(): void;
  [Symbol.dispose](): void;
  /** Joins (or starts) the waiting batch. */
  call(arg: A): Promise<Awaited<R>>;
  /** Runs the waiting batch now; its callers' promises settle with that call. */
  flush(): void;
  /** Drops the waiting batch; its callers' promises reject with `CrmError` `cancelled`. */
  cancel(): void;
  /** How many calls wait for their batch to run. */
  readonly pending: number;
}
"#;

/// The longest wait a timer takes (`setTimeout` holds a signed 32-bit delay).
const MAX_WAIT_MS: f64 = 2_147_483_647.0;

/// A promise's settle functions.
struct Caller {
    id: u64,
    resolve: Function,
    reject: Function,
}

/// The app's function with its batching: the machine, the callers whose
/// promises wait for a batch, and the one timer. Shared with the timer's
/// callback, which holds it weakly.
struct DebouncedFn {
    f: Function,
    machine: RefCell<Debounce<(), Latest<JsValue>>>,
    callers: RefCell<Vec<Caller>>,
    next_id: Cell<u64>,
    timer: RefCell<Option<Timeout>>,
}

/// Debounced calls of a JS function; see the module docs.
#[wasm_bindgen(skip_typescript)]
pub struct Debouncer {
    debounced: Rc<DebouncedFn>,
}

#[wasm_bindgen]
impl Debouncer {
    /// `new Debouncer(fn, { waitMs, maxWaitMs, leading })`.
    ///
    /// # Errors
    /// Throws `CrmError` `invalid` when `fn` is not a function, a time is
    /// not a whole number of milliseconds from 0, or `maxWaitMs < waitMs`.
    #[wasm_bindgen(constructor, skip_typescript)]
    pub fn new(f: JsValue, options: JsValue) -> Result<Debouncer, JsValue> {
        let f: Function = f
            .dyn_into()
            .map_err(|_| Error::Invalid("Debouncer needs a function".into()))?;
        let options = read_options(&options)?;
        Ok(Debouncer {
            debounced: Rc::new(DebouncedFn {
                f,
                machine: RefCell::new(Debounce::new(options)),
                callers: RefCell::new(Vec::new()),
                next_id: Cell::new(0),
                timer: RefCell::new(None),
            }),
        })
    }

    /// Joins the waiting batch (or starts one); the promise settles with
    /// the batch's call.
    #[wasm_bindgen(skip_typescript)]
    pub fn call(&self, arg: JsValue) -> Promise {
        let debounced = &self.debounced;
        let id = debounced.next_id.get();
        debounced.next_id.set(id.wrapping_add(1));
        let promise = Promise::new(&mut |resolve, reject| {
            debounced.callers.borrow_mut().push(Caller {
                id,
                resolve,
                reject,
            });
        });
        let pushed = debounced
            .machine
            .borrow_mut()
            .push((), Latest(arg), id, now_ms());
        match pushed {
            Pushed::Fired(batch) => run(debounced, batch.value.0, &batch.callers),
            Pushed::Waiting { .. } => arm(debounced),
        }
        promise
    }

    /// Runs the waiting batch now, if any.
    #[wasm_bindgen(skip_typescript)]
    pub fn flush(&self) {
        let batches = self.debounced.machine.borrow_mut().flush();
        self.debounced.timer.borrow_mut().take();
        for batch in batches {
            run(&self.debounced, batch.value.0, &batch.callers);
        }
    }

    /// Drops the waiting batch; its callers' promises reject with
    /// `CrmError` `cancelled`.
    #[wasm_bindgen(skip_typescript)]
    pub fn cancel(&self) {
        let ids = self.debounced.machine.borrow_mut().cancel();
        self.debounced.timer.borrow_mut().take();
        let err: JsValue = Error::Cancelled.into();
        for caller in take_callers(&self.debounced, &ids) {
            let _ = caller.reject.call1(&JsValue::UNDEFINED, &err);
        }
    }

    /// How many calls wait for their batch.
    #[wasm_bindgen(getter, skip_typescript)]
    pub fn pending(&self) -> u32 {
        u32::try_from(self.debounced.machine.borrow().pending()).unwrap_or(u32::MAX)
    }
}

impl Drop for Debouncer {
    /// `free()`: the timer stops, and waiting callers are told.
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Calls the app's function once for `callers` and settles their promises.
/// No borrow is held while the app's code runs: it may call back in.
fn run(debounced: &Rc<DebouncedFn>, arg: JsValue, ids: &[u64]) {
    let callers = take_callers(debounced, ids);
    match debounced.f.call1(&JsValue::UNDEFINED, &arg) {
        // Resolving with a promise follows it.
        Ok(result) => {
            for caller in callers {
                let _ = caller.resolve.call1(&JsValue::UNDEFINED, &result);
            }
        }
        Err(thrown) => {
            for caller in callers {
                let _ = caller.reject.call1(&JsValue::UNDEFINED, &thrown);
            }
        }
    }
}

fn take_callers(debounced: &DebouncedFn, ids: &[u64]) -> Vec<Caller> {
    let mut all = debounced.callers.borrow_mut();
    let (mine, rest): (Vec<Caller>, Vec<Caller>) = all.drain(..).partition(|c| ids.contains(&c.id));
    *all = rest;
    mine
}

/// (Re)arms the one timer for the machine's next deadline.
fn arm(debounced: &Rc<DebouncedFn>) {
    let Some(deadline) = debounced.machine.borrow().next_deadline() else {
        debounced.timer.borrow_mut().take();
        return;
    };
    let delay = u32::try_from(deadline.saturating_sub(now_ms())).unwrap_or(u32::MAX);
    let weak: Weak<DebouncedFn> = Rc::downgrade(debounced);
    let timeout = Timeout::new(delay, move || {
        let Some(debounced) = weak.upgrade() else {
            return;
        };
        let batches = debounced.machine.borrow_mut().due(now_ms());
        for batch in batches {
            run(&debounced, batch.value.0, &batch.callers);
        }
        arm(&debounced);
    });
    // Replacing the old timer cancels it.
    *debounced.timer.borrow_mut() = Some(timeout);
}

fn read_options(options: &JsValue) -> Result<DebounceOptions, Error> {
    let mut out = DebounceOptions {
        wait_ms: 300,
        max_wait_ms: None,
        leading: false,
    };
    if options.is_undefined() || options.is_null() {
        return Ok(out);
    }
    if !options.is_object() {
        return Err(Error::Invalid("Debouncer options must be an object".into()));
    }
    let ms = |name: &str| -> Result<Option<u64>, Error> {
        let value = get(options, name);
        if value.is_undefined() || value.is_null() {
            return Ok(None);
        }
        match value.as_f64() {
            Some(n) if n.fract() == 0.0 && (0.0..=MAX_WAIT_MS).contains(&n) => Ok(Some(n as u64)),
            _ => Err(Error::Invalid(format!(
                "Debouncer option {name} must be a whole number of milliseconds from 0"
            ))),
        }
    };
    if let Some(wait) = ms("waitMs")? {
        out.wait_ms = wait;
    }
    out.max_wait_ms = ms("maxWaitMs")?;
    if out.max_wait_ms.is_some_and(|max| max < out.wait_ms) {
        return Err(Error::Invalid(
            "Debouncer option maxWaitMs must not be less than waitMs".into(),
        ));
    }
    let leading = get(options, "leading");
    out.leading = match leading.as_bool() {
        Some(b) => b,
        None if leading.is_undefined() || leading.is_null() => false,
        None => {
            return Err(Error::Invalid(
                "Debouncer option leading must be a boolean".into(),
            ))
        }
    };
    Ok(out)
}
