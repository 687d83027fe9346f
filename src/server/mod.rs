//! HTTP served by tailprobe: the daemon's endpoints ([`api`]) and the `echo`
//! target that deploy files run on every node ([`echo`]), both on one
//! bounded HTTP/1 server ([`http`]); the API's bearer token ([`token`]).

pub mod api;
pub mod echo;
pub mod http;
pub mod token;
