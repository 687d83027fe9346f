//! HTTP served by tailprobe: the daemon's endpoints ([`api`]), its page and
//! the matrix the page reads ([`page`]), and the `echo` target that deploy
//! files run on every node ([`echo`]) with its optional resolver ([`dns`]), all on one bounded HTTP/1 server
//! ([`http`]); the API's bearer token ([`token`]).

pub mod api;
pub mod dns;
pub mod echo;
pub mod http;
pub mod page;
pub mod token;
pub mod window;
