//! Browser suites, run in headless Chromium by `wasm-pack test --headless
//! --chrome -- --test browser` (see scripts/test.sh, which starts the
//! reference server first and passes its address in `CRM_TEST_SERVER`).
#![cfg(target_arch = "wasm32")]

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod browser {
    pub mod calendar;
    pub mod debouncer;
    pub mod engines;
    pub mod errors;
    pub mod history;
    pub mod local;
    pub mod oneuser;
    pub mod presence;
    pub mod reader;
    pub mod records;
    pub mod refused;
    pub mod server;
    pub mod store;
    pub mod support;
    pub mod sync;
    pub mod tabs;
    pub mod undo;
    pub mod writer;
}
