//! The documents that leave the process and come back: what a prober
//! serves and the hub, the page and CI read. `window.rs` is the versioned
//! window document the hub pulls; `report/` the one-shot matrix report,
//! the cluster matrix, their table and verdict; `page.rs` the page that
//! draws a matrix; `findings.rs` the verdict and target lists.
//!
//! Invariant: a document is data and its wording only. It imports the
//! vocabulary (`model`) and the detector's findings it carries (`detect`),
//! nothing that runs: what reads the stats into a document lives with the
//! reader (`server::window`, `export::report`).

pub mod findings;
pub mod page;
pub mod report;
pub mod window;
