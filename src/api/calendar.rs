//! `findOverlaps`: the client-side double-booking check of the calendar.

use js_sys::Array;
use wasm_bindgen::prelude::*;

use crate::core::overlap::{find_overlaps, CalendarEvent};
use crate::error::Error;
use crate::web::js::{from_app, get};

#[wasm_bindgen(typescript_custom_section)]
const CALENDAR_TS: &'static str = r#"
/** A calendar event: a flat object, or a `calendar_events` record whose
 * `fields` hold `start`, `end`, `resource` and maybe `status`. */
export type CalendarEventLike =
  | { id: string; resource: string; start: string | number; end: string | number; status?: string | null }
  | { id: string; fields: { [field: string]: FieldValue } };
"#;

/// Reads one event, flat or as a record with `fields`.
fn read_event(value: &JsValue) -> Result<CalendarEvent, Error> {
    let fields = get(value, "fields");
    if fields.is_object() {
        let flat = js_sys::Object::new();
        let copy = |key: &str, from: &JsValue| {
            let _ = js_sys::Reflect::set(&flat, &key.into(), &get(from, key));
        };
        copy("id", value);
        for key in ["resource", "start", "end", "status"] {
            copy(key, &fields);
        }
        return from_app(flat.into());
    }
    from_app(value.clone())
}

/// The events whose `[start, end)` overlaps the candidate's on the same
/// resource (cancelled events and the candidate itself excluded). Returns the
/// very objects passed in, so the app can show them.
///
/// # Errors
/// Throws `CrmError` `invalid` when an event that must be compared has a
/// missing or unreadable `start`/`end`/`resource`, or ends before it starts.
#[wasm_bindgen(js_name = findOverlaps, unchecked_return_type = "CalendarEventLike[]")]
pub fn find_overlaps_js(
    #[wasm_bindgen(unchecked_param_type = "CalendarEventLike[]")] events: Array,
    #[wasm_bindgen(unchecked_param_type = "CalendarEventLike")] candidate: JsValue,
) -> Result<Array, JsValue> {
    let candidate = read_event(&candidate)?;
    let mut parsed = Vec::with_capacity(events.length() as usize);
    let mut originals = Vec::with_capacity(parsed.capacity());
    for item in events.iter() {
        // An event on another resource is never compared, so one that does
        // not even read is skipped rather than failing the whole check.
        match read_event(&item) {
            Ok(event) => {
                parsed.push(event);
                originals.push(item);
            }
            Err(_)
                if get(&item, "resource") != JsValue::from_str(&candidate.resource)
                    && get(&get(&item, "fields"), "resource")
                        != JsValue::from_str(&candidate.resource) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let clashes = find_overlaps(&parsed, &candidate).map_err(|e| Error::Invalid(e.to_string()))?;
    let out = Array::new();
    for clash in clashes {
        if let Some(i) = parsed.iter().position(|p| std::ptr::eq(p, clash)) {
            if let Some(original) = originals.get(i) {
                out.push(original);
            }
        }
    }
    Ok(out)
}
