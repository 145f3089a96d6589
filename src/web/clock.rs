//! Time and randomness from the browser, for the cores that take them as
//! arguments.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function yieldToPage() {
  // A turn of the event loop without the 4 ms clamp of nested timers:
  // scheduler.yield() where the browser has it, else a message.
  if (globalThis.scheduler && typeof globalThis.scheduler.yield === "function") {
    return globalThis.scheduler.yield();
  }
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => { channel.port1.close(); resolve(); };
    channel.port2.postMessage(0);
  });
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = yieldToPage)]
    fn yield_to_page_js() -> js_sys::Promise;
}

/// Lets the page handle input and render before the next slice of work.
pub async fn yield_to_page() {
    let _ = wasm_bindgen_futures::JsFuture::from(yield_to_page_js()).await;
}

/// Milliseconds with sub-millisecond precision, for measuring slices of
/// work (`performance.now()`; `Date.now()` where there is none).
pub fn precise_ms() -> f64 {
    let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .filter(|p| p.is_object());
    match performance {
        Some(p) => p.unchecked_into::<web_sys::Performance>().now(),
        None => js_sys::Date::now(),
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// Milliseconds since the Unix epoch (`Date.now()`).
pub fn now_ms() -> u64 {
    let now = js_sys::Date::now();
    if now.is_finite() && now > 0.0 {
        now as u64
    } else {
        0
    }
}

/// A uniform sample in `[0, 1)` for jitter (`Math.random()`: jitter needs
/// no cryptographic strength).
pub fn random_unit() -> f64 {
    js_sys::Math::random()
}

/// Waits `ms` milliseconds.
pub async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

/// A random UUID v4 from `crypto.getRandomValues`, for mutation ids,
/// idempotency keys and comment ids.
pub fn uuid_v4() -> String {
    let mut bytes = [0u8; 16];
    if get_random_values(&mut bytes).is_err() || bytes.iter().all(|b| *b == 0) {
        // No crypto (a very old engine): fall back to Math.random, still
        // unique enough for idempotency keys of one user.
        for b in bytes.iter_mut() {
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}
