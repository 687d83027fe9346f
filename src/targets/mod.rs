//! Where targets come from: `[[target]]` tables (built by `config`) and the
//! Kubernetes API ([`kubernetes`]), both into the same [`Target`].

pub mod kubernetes;

use std::sync::Arc;

use crate::model::Target;

/// Configured targets first; a discovered one with the same name is dropped.
pub fn merge(configured: &[Arc<Target>], discovered: &[Arc<Target>]) -> Vec<Arc<Target>> {
    let mut all = configured.to_vec();
    for t in discovered {
        if !configured.iter().any(|c| c.name == t.name) {
            all.push(Arc::clone(t));
        }
    }
    all
}
