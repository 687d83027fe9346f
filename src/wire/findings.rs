//! The prober's small documents: its verdict (`/api/v1/findings`) and
//! what it probes (`/api/v1/targets`).

use serde::{Deserialize, Serialize};

/// One entry of `/api/v1/targets`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetDoc {
    pub name: String,
    pub url: String,
    /// The destination node when known before probing.
    pub node: Option<String>,
    /// The candidate nodes of a Service with backends on several nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mixed: Vec<String>,
}

impl From<&crate::model::Target> for TargetDoc {
    fn from(t: &crate::model::Target) -> Self {
        use crate::model::TargetNode;
        let (node, mixed) = match &t.node {
            TargetNode::Known(n) => (Some(n.clone()), Vec::new()),
            TargetNode::Mixed(ns) => (None, ns.clone()),
            TargetNode::Unknown => (None, Vec::new()),
        };
        Self {
            name: t.name.clone(),
            url: t.url.clone(),
            node,
            mixed,
        }
    }
}

/// The `/api/v1/findings` document: the detector's latest verdict over the
/// daemon's window, with the facts it was judged on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FindingsDoc {
    pub source_node: String,
    /// When the verdict was reached; absent before the first evaluation.
    pub generated_at: Option<String>,
    pub facts: Option<crate::model::NodeFacts>,
    pub findings: Vec<crate::detect::Finding>,
}
