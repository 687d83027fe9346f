//! Series: what aggregation keys on ([`Dims`]), one probe as the windows and
//! the detector need it ([`Sample`]), and a series' recent samples
//! ([`SeriesWindow`]).

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Outcome, PathKind, Phases, ProbeResult, SourceKind};

/// The dimensions of a series: every aggregation (stats, report, API,
/// Prometheus, OTLP, detector) keys on these and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dims {
    pub source_node: Arc<str>,
    pub source_kind: SourceKind,
    pub destination_node: Option<Arc<str>>,
    pub target: Arc<str>,
    pub path: PathKind,
}

impl Dims {
    pub fn of(r: &ProbeResult) -> Self {
        Self {
            source_node: Arc::clone(&r.source_node),
            source_kind: r.source_kind,
            destination_node: r.destination_node.clone(),
            target: r.target.name.as_str().into(),
            path: r.path,
        }
    }

    /// The destination node, or `?` when it is unknown.
    pub fn destination_or_unknown(&self) -> &str {
        self.destination_node.as_deref().unwrap_or("?")
    }
}

/// One probe, as the detector and the windows need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at: SystemTime,
    pub phases: Phases,
    pub outcome: Outcome,
    pub syn_retransmits: u32,
    /// The response body's size as measured: declared by the response, else
    /// read (0 for probes without a body).
    #[serde(default)]
    pub body_bytes: u64,
    /// The probe's exported trace, when it was kept: a finding's examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceRef>,
}

impl Sample {
    pub fn of(r: &ProbeResult, trace: Option<TraceRef>) -> Self {
        Self {
            at: r.started_at,
            phases: r.phases,
            outcome: r.outcome,
            syn_retransmits: r.syn_retransmits,
            body_bytes: r.body_size(),
            trace,
        }
    }
}

/// A trace and its root span, in hex, as OTLP and Jaeger write them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRef {
    pub trace_id: String,
    pub span_id: String,
}

/// A series' recent samples: what the detector judges.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesWindow {
    pub dims: Dims,
    pub samples: Vec<Sample>,
    /// The largest response body this series has measured since it began
    /// (or that its target declares): a black hole that eats every large
    /// segment leaves its own probes nothing to measure.
    pub body_bytes: u64,
}
