//! The tests on the real kernel: network namespaces, veths, VXLAN and
//! nftables. They need root and fail with a clear message without it.

#[path = "../common/mod.rs"]
mod common;

mod addresses;
mod ipv6;
mod lab;
mod timing;
