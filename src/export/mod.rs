//! Where numbers leave the process: the stats a reader copies, Prometheus
//! text, OTLP traces, metrics and alert records, the matrix report. Every
//! probe of every driver arrives through [`Recorder`], the fan-out to every
//! consumer (each implements `model::Record` in its own file); exporting
//! never blocks probing: the fan-out only touches memory and bounded queues.

pub mod alerts;
pub mod exposition;
pub mod otlp;
pub mod prometheus;
mod report;

mod recorder;
mod slo;

pub use recorder::Recorder;
pub use slo::SloExporter;

use std::sync::Arc;

/// Ends a one-shot run's export: its findings go out as alert records,
/// raised at the end of the run with their example trace ids, then
/// everything queued is flushed. Without OTLP there is nothing to do.
pub async fn finish_one_shot(otlp: Option<Arc<otlp::Otlp>>, findings: &[crate::detect::Finding]) {
    let Some(o) = otlp else { return };
    for a in alerts::raised(findings) {
        o.send(&a);
    }
    let _ = tokio::task::spawn_blocking(move || o.shutdown()).await;
}
