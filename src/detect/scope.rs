//! Scopes: which cells a finding covers. A scope's identity is typed
//! ([`ScopeKey`]: a grouping and the dimensions it keys on); its words are
//! rendered from that key for people, with the counts of the moment. Counts
//! never enter the key, so a node joining a scope changes what a finding
//! says, not which finding (or alert) it is.

use serde::{Deserialize, Serialize};

use super::FindingKind;
use crate::model::{Dims, Family, PathKind, SourceKind};

/// How cells are grouped into one scope, from broad to narrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grouping {
    /// Every path of one kind from one network kind, over several sources.
    KindPath,
    /// Every path of one kind through a Service from one network kind, over
    /// several sources: the straight paths to the same pods may be clean.
    KindPathService,
    /// Every path to or from one node: its row and its column (a table or
    /// a device on that node sits on every flow through it).
    Node,
    /// Every path to one destination node, from several sources.
    Destination,
    /// Every path of one kind (cross-node) to one destination node, from
    /// several sources: the destination's own same-node paths may be clean.
    DestinationPath,
    /// Every path of one kind (cross-node) from one source node, from its
    /// host and pod network: a row, its own same-node paths possibly clean.
    SourcePath,
    /// Every path through a Service from one source node: that node's
    /// Service rules, its straight paths to the same pods possibly clean.
    SourceService,
    /// Every path from one source node to one destination node.
    Pair,
    /// Every path to one target, from several sources.
    Target,
    /// One source's paths of one kind, from one network kind.
    SourceKindPath,
    /// Every path from one source node.
    Source,
    /// One series: one target from one source and network to one destination.
    Cell,
    /// The first connections on every path whose first probes were slow.
    FirstContact,
}

impl Grouping {
    pub fn as_str(self) -> &'static str {
        match self {
            Grouping::KindPath => "kind-path",
            Grouping::KindPathService => "kind-path-service",
            Grouping::Node => "node",
            Grouping::Destination => "destination",
            Grouping::DestinationPath => "destination-path",
            Grouping::SourcePath => "source-path",
            Grouping::SourceService => "source-service",
            Grouping::Pair => "pair",
            Grouping::Target => "target",
            Grouping::SourceKindPath => "source-kind-path",
            Grouping::Source => "source",
            Grouping::Cell => "cell",
            Grouping::FirstContact => "first-contact",
        }
    }

    /// The groupings a ladder may widen to, broad first.
    pub const WIDENING: [Grouping; 10] = [
        Grouping::KindPath,
        Grouping::KindPathService,
        Grouping::Node,
        Grouping::Destination,
        Grouping::DestinationPath,
        Grouping::SourcePath,
        Grouping::SourceService,
        Grouping::Pair,
        Grouping::SourceKindPath,
        Grouping::Source,
    ];
}

/// The stable identity of a scope: its grouping and the dimensions that
/// grouping keys on (the others are `None`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ScopeKey {
    pub grouping: Grouping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kind: Option<SourceKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// How the scope's targets are reached, when the grouping keys on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<crate::model::Via>,
    /// Judged on the node's own connections (passive mode), never mixed
    /// with probes: the two verdicts stand side by side.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passive: bool,
    /// One address family, when the scope is hit in one family and clean
    /// in the other (dual-stack only: a one-family cluster never sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
}

impl ScopeKey {
    /// A grouping with nothing to key on.
    pub fn bare(grouping: Grouping) -> Self {
        Self {
            grouping,
            source_node: None,
            source_kind: None,
            destination_node: None,
            path: None,
            target: None,
            via: None,
            passive: false,
            family: None,
        }
    }

    /// The same key narrowed to one address family.
    pub fn in_family(mut self, family: Family) -> Self {
        self.family = Some(family);
        self
    }

    /// The keys of the groups a series with `d` falls in under `grouping`:
    /// one, except under [`Grouping::Node`], where a path between two nodes
    /// is in both nodes' groups, and [`Grouping::SourceService`], which
    /// holds paths through a Service only.
    pub fn keys(grouping: Grouping, d: &Dims) -> Vec<Self> {
        if grouping == Grouping::SourceService && d.via() != crate::model::Via::Service {
            return Vec::new();
        }
        if grouping != Grouping::Node {
            return vec![Self::of(grouping, d)];
        }
        let mut nodes = vec![&*d.source_node];
        nodes.extend(
            d.destination_node
                .as_deref()
                .filter(|n| *n != &*d.source_node),
        );
        nodes
            .into_iter()
            .map(|n| {
                let mut k = Self::bare(Grouping::Node);
                k.passive = d.source_kind.is_passive();
                k.source_node = Some(n.to_string());
                k.destination_node = Some(n.to_string());
                k
            })
            .collect()
    }

    /// The key of the group a series with `d` falls in under `grouping`
    /// (under [`Grouping::Node`], its source node's: see [`ScopeKey::keys`]).
    pub fn of(grouping: Grouping, d: &Dims) -> Self {
        let src = || Some(d.source_node.to_string());
        let dst = || d.destination_node.as_deref().map(str::to_string);
        let mut k = Self::bare(grouping);
        k.passive = d.source_kind.is_passive();
        match grouping {
            Grouping::KindPath => {
                k.source_kind = Some(d.source_kind);
                k.path = Some(d.path);
            }
            Grouping::KindPathService => {
                k.source_kind = Some(d.source_kind);
                k.path = Some(d.path);
                k.via = Some(d.via());
            }
            Grouping::Node => {
                k.source_node = src();
                k.destination_node = src();
            }
            Grouping::Destination => k.destination_node = dst(),
            Grouping::DestinationPath => {
                k.destination_node = dst();
                k.path = Some(d.path);
            }
            Grouping::SourcePath => {
                k.source_node = src();
                k.path = Some(d.path);
            }
            Grouping::SourceService => {
                k.source_node = src();
                k.via = Some(d.via());
            }
            Grouping::Pair => {
                k.source_node = src();
                k.destination_node = dst();
            }
            Grouping::Target => k.target = Some(d.target.to_string()),
            Grouping::SourceKindPath => {
                k.source_node = src();
                k.source_kind = Some(d.source_kind);
                k.path = Some(d.path);
            }
            Grouping::Source => k.source_node = src(),
            Grouping::Cell => {
                k.source_node = src();
                k.source_kind = Some(d.source_kind);
                k.destination_node = dst();
                k.path = Some(d.path);
                k.target = Some(d.target.to_string());
            }
            Grouping::FirstContact => {}
        }
        k
    }

    /// One string for a label value or a log field: the grouping, then each
    /// dimension it keys on, `/`-separated, in a fixed order.
    pub fn id(&self) -> String {
        let mut parts = vec![self.grouping.as_str().to_string()];
        if self.passive {
            parts.push("passive".to_string());
        }
        parts.extend(self.source_node.clone());
        parts.extend(self.source_kind.map(|k| k.as_str().to_string()));
        parts.extend(self.destination_node.clone());
        parts.extend(self.path.map(|p| p.as_str().to_string()));
        parts.extend(self.target.clone());
        parts.extend(self.via.map(|v| v.as_str().to_string()));
        parts.extend(self.family.map(|f| f.as_str().to_string()));
        parts.join("/")
    }

    /// The scope in words for a finding of `kind`; `sources` and `paths` are
    /// the counts of the moment.
    pub fn describe(&self, kind: FindingKind, sources: usize, paths: usize) -> String {
        let src = self.source_node.as_deref().unwrap_or("?");
        let dst = self
            .destination_node
            .as_deref()
            .unwrap_or("an unknown node");
        let net = self
            .source_kind
            .map(|k| k.describe().to_string())
            .unwrap_or_default();
        let path = self.path.map(PathKind::as_str).unwrap_or_default();
        let target = self.target.as_deref().unwrap_or("?");
        // The source kind's words say "real connections" when it is named.
        let prefix = if self.passive && self.source_kind.is_none() {
            "real connections on "
        } else {
            ""
        };
        let words = match (self.grouping, kind) {
            (Grouping::KindPath, _) => match self.source_kind.filter(|k| k.is_passive()) {
                Some(k) => format!(
                    "real connections on every {path} path from the {} of {sources} nodes",
                    k.network().describe()
                ),
                None => format!("every {path} path from the {net} of {sources} nodes"),
            },
            (Grouping::KindPathService, _) => match self.source_kind.filter(|k| k.is_passive()) {
                Some(k) => format!(
                    "real connections on every {path} path through a Service from the {} of {sources} nodes",
                    k.network().describe()
                ),
                None => {
                    format!("every {path} path through a Service from the {net} of {sources} nodes")
                }
            },
            (Grouping::Node, _) => format!("every path to or from {src}"),
            (Grouping::Destination, _) => format!("every path to {dst}"),
            (Grouping::DestinationPath, _) => format!("every {path} path to {dst}"),
            (Grouping::SourcePath, _) => format!("every {path} path from {src}"),
            (Grouping::SourceService, _) => format!("every path through a Service from {src}"),
            (Grouping::Pair, _) => format!("every path from {src} to {dst}"),
            (Grouping::Target, FindingKind::TlsCertExpiring) => {
                format!("the certificate {target} serves ({sources} sources)")
            }
            (Grouping::Target, _) => format!("every path to {target} ({sources} sources)"),
            (Grouping::SourceKindPath, _) => format!("{path} paths from {src} ({net})"),
            (Grouping::Source, FindingKind::DnsTimeoutLadder) => {
                format!("name lookups from {src}")
            }
            (Grouping::Source, FindingKind::ProberStarved) => {
                format!("the prober on {src} ({net})")
            }
            (Grouping::Source, _) => format!("every path from {src}"),
            (Grouping::Cell, FindingKind::PmtuBlackhole) => {
                format!("large responses from {src} to {dst} ({net})")
            }
            (Grouping::Cell, FindingKind::ProbeFailures) => {
                format!("{target} from {src} ({net}) to {dst}")
            }
            (Grouping::Cell, _) => format!("{target} from {src} ({net}) to {dst} ({path})"),
            (Grouping::FirstContact, _) => format!("the first connections on {paths} paths"),
        };
        match self.family {
            Some(f) => format!("{prefix}{words}, {} only", f.describe()),
            None => format!("{prefix}{words}"),
        }
    }
}
