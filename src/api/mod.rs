//! The `#[wasm_bindgen]` facade that JavaScript sees.
