//! The label sets of `/metrics`: one struct per family's labels.

use prometheus_client::encoding::EncodeLabelSet;

use crate::model::Dims;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ProbeLabels {
    #[prometheus(flatten)]
    pub(super) path: PathLabels,
    pub(super) outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PhaseLabels {
    #[prometheus(flatten)]
    pub(super) path: PathLabels,
    pub(super) phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PathLabels {
    pub(super) source_node: String,
    pub(super) source_kind: String,
    pub(super) destination_node: String,
    pub(super) target: String,
    pub(super) path: String,
    /// `ipv4` or `ipv6`: a label, not more series, on a one-family cluster.
    pub(super) family: String,
}

/// A stalled probe's series and the SYNs it has lost so far.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StallLabels {
    #[prometheus(flatten)]
    pub(super) path: PathLabels,
    pub(super) syns_lost: String,
}

impl PathLabels {
    pub(super) fn of(d: &Dims) -> Self {
        Self {
            source_node: d.source_node.to_string(),
            source_kind: d.source_kind.as_str().into(),
            destination_node: d.destination_node.as_deref().unwrap_or("").into(),
            target: d.target.to_string(),
            path: d.path.as_str().into(),
            family: d.family.as_str().into(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FindingLabels {
    pub(super) kind: String,
    pub(super) scope: String,
    pub(super) cause: String,
    /// Where the trouble lies: network, backend, dns, prober, unknown.
    pub(super) locus: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SloLabels {
    pub(super) slo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BurnLabels {
    pub(super) slo: String,
    pub(super) severity: String,
    pub(super) window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TargetLabels {
    pub(super) target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ServerLabels {
    pub(super) server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SkipLabels {
    pub(super) target: String,
    pub(super) reason: String,
}
