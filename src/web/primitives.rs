//! JS primitives the reader ([`crate::web::de`]) and the converters
//! ([`crate::web::js`]) both use: cached property names and the safe-integer
//! check. A module of its own so that neither of those imports the other's
//! helpers back.

use std::cell::RefCell;

use wasm_bindgen::JsValue;

use crate::core::vecmap::VecMap;

thread_local! {
    /// Property names as JS strings, keyed by where their `&'static str`
    /// is: a record load or a batch of thousands reads the same few names
    /// many times.
    static NAMES: RefCell<VecMap<(usize, usize), JsValue>> = RefCell::new(VecMap::new());
}

/// `name` as a JS string, made once per page.
pub fn name(name: &'static str) -> JsValue {
    NAMES.with(|names| {
        // Address and length: one literal may start where another does.
        let at = (name.as_ptr() as usize, name.len());
        names
            .borrow_mut()
            .get_or_insert_with(at, || JsValue::from_str(name))
            .clone()
    })
}

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`);
/// above it, not every whole number is a JS number.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// `n` if it is a whole number a JS number holds exactly
/// (`Number.isSafeInteger`).
pub fn safe_integer(n: f64) -> Option<f64> {
    (n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER).then_some(n)
}
