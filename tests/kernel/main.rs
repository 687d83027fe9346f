//! The tests on the real kernel: network namespaces, veths, VXLAN and
//! nftables. They need root and fail with a clear message without it.

#[path = "../common/mod.rs"]
mod common;

mod addresses;
mod ipv6;
mod lab;
mod timing;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Tests whose assertions are deadlines on a loaded machine (a verdict
/// within seconds of the first lost SYN, a prober's own lateness) take this
/// for writing and run alone; every other test of this binary takes it for
/// reading, so none of them runs beside those.
static ALONE: RwLock<()> = RwLock::new(());

/// A turn beside the other tests.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    // A test that panicked holding it has its own failure; the others go on.
    ALONE.read().unwrap_or_else(|e| e.into_inner())
}

/// A turn alone.
pub fn alone() -> RwLockWriteGuard<'static, ()> {
    ALONE.write().unwrap_or_else(|e| e.into_inner())
}

/// Held for a test's length: shared, or alone.
pub enum Turn {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}
