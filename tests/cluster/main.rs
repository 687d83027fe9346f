//! The tests of the real Kubernetes control plane: the build of its
//! programs (`scripts/control-plane`), and tailprobe deployed on one lab
//! cluster, shared by every test of this binary.

#[path = "../common/mod.rs"]
mod common;

mod cluster;
mod control_plane;
