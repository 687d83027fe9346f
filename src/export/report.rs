//! How this prober's stats become the report's documents: a cell from a
//! series' cumulative histograms, a one-shot run's report from its series.
//! The documents are `wire::report`'s; reading `stats` is this side's.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::model::SourceKind;
use crate::stats::Series;
use crate::wire::report::{Cell, MatrixReport, examples, log_hist, ms, rfc3339};

impl Cell {
    pub fn from_series(s: &Series) -> Self {
        let total = &s.histograms.total;
        let connect = &s.histograms.connect;
        let tls = s.histograms.tls.as_deref();
        Self {
            dims: s.key.clone(),
            url: s.url.clone(),
            samples: s.samples(),
            failures: s.failures(),
            outcomes: s
                .outcomes
                .iter()
                .map(|(o, n)| (o.as_str().to_string(), *n))
                .collect(),
            p50_ms: ms(total.quantile(0.5)),
            p90_ms: ms(total.quantile(0.9)),
            p99_ms: ms(total.quantile(0.99)),
            max_ms: ms(total.max()),
            connect_p50_ms: ms(connect.quantile(0.5)),
            connect_max_ms: ms(connect.max()),
            tls_p50_ms: ms(tls.and_then(|h| h.quantile(0.5))),
            tls_max_ms: ms(tls.and_then(|h| h.max())),
            cert_not_after: rfc3339(s.cert_not_after),
            syn_retransmits: s.syn_retransmits,
            histogram: total.to_base64(),
            connect_histogram: connect.to_base64(),
            connect_log_hist: log_hist(connect.counts()),
            examples: examples(s.recent.iter()),
            waiting: BTreeMap::new(),
        }
    }
}

impl MatrixReport {
    pub fn new(
        source_node: &str,
        source_kind: SourceKind,
        started: SystemTime,
        finished: SystemTime,
        samples_per_target: u32,
        series: &[Series],
    ) -> Self {
        Self {
            source_node: source_node.to_string(),
            source_kind,
            started_at: humantime::format_rfc3339_millis(started).to_string(),
            finished_at: humantime::format_rfc3339_millis(finished).to_string(),
            samples_per_target,
            cells: series.iter().map(Cell::from_series).collect(),
            findings: Vec::new(),
            facts: None,
            ended_early: None,
            interrupted: None,
        }
    }
}
