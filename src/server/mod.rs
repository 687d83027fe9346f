//! HTTP served by tailprobe: the daemon's endpoints ([`api`]) and the `echo`
//! target that deploy files run on every node ([`echo`]).

pub mod api;
pub mod echo;
