//! One file per finding kind.

pub mod dns;
pub mod failures;
pub mod first_contact;
pub mod ladder;
pub mod pmtu;
pub mod prober;
pub mod server_time;
