//! The tests that drive a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`).

#[path = "../common/mod.rs"]
mod common;

mod page;
