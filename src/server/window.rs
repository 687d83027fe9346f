//! The window document built from this prober's evidence: the last
//! window of every series with its stalls in progress
//! (`/api/v1/window`), or a one-shot round (`/api/v1/round`). The document
//! itself is `wire::window`'s.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::model::{Dims, NodeFacts, Sample, SourceKind};
use crate::stats::{PendingStall, Reading, Series};
use crate::wire::window::{
    MAX_PENDING_PER_SERIES, MAX_SAMPLES_PER_SERIES, VERSION, WindowDoc, WindowSeries, WirePending,
    WireSample, epoch_ms,
};

impl WindowDoc {
    /// The last `window` of every series in the reading, with the stalls
    /// still pending, each with its target's URL.
    pub fn build(
        source_node: &str,
        source_kind: SourceKind,
        reading: Reading<'_>,
        window: Duration,
        facts: Option<NodeFacts>,
    ) -> Self {
        let now = SystemTime::now();
        let since = now - window;
        let mut series = Vec::new();
        reading.visit(|s| {
            let recent: Vec<&Sample> = s.recent.iter().filter(|p| p.at >= since).collect();
            let keep = recent.len().min(MAX_SAMPLES_PER_SERIES);
            let skip = recent.len() - keep;
            series.push(WindowSeries {
                dims: s.key.clone(),
                url: s.url.clone(),
                body_bytes: s.body_bytes,
                dropped: (s.recent.len() - keep) as u64,
                samples: recent[skip..]
                    .iter()
                    .map(|p| WireSample::from(*p))
                    .collect(),
                pending: Vec::new(),
                cert_not_after: s.cert_not_after,
            });
        });
        let mut index: std::collections::HashMap<Dims, usize> = series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.dims.clone(), i))
            .collect();
        for PendingStall {
            dims,
            url,
            pending: p,
        } in reading.stalls
        {
            let i = *index.entry(dims.clone()).or_insert_with(|| {
                series.push(WindowSeries {
                    dims,
                    url,
                    body_bytes: 0,
                    dropped: 0,
                    samples: Vec::new(),
                    pending: Vec::new(),
                    cert_not_after: None,
                });
                series.len() - 1
            });
            let s = &mut series[i];
            let at = epoch_ms(p.at);
            if s.pending.len() < MAX_PENDING_PER_SERIES && !s.samples.iter().any(|x| x.t == at) {
                s.pending.push(WirePending::from(&p));
            }
        }
        Self {
            version: VERSION,
            source_node: source_node.to_string(),
            source_kind,
            generated_at: humantime::format_rfc3339_millis(now).to_string(),
            window_s: window.as_secs(),
            facts,
            labels: BTreeMap::new(),
            series,
        }
    }

    /// A one-shot round's series, every sample (at most
    /// [`MAX_SAMPLES_PER_SERIES`] per series).
    pub fn of_round(
        source_node: &str,
        source_kind: SourceKind,
        series: &[Series],
        took: Duration,
        facts: Option<NodeFacts>,
    ) -> Self {
        Self {
            version: VERSION,
            source_node: source_node.to_string(),
            source_kind,
            generated_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            window_s: took.as_secs(),
            facts,
            labels: BTreeMap::new(),
            series: series
                .iter()
                .map(|s| {
                    let keep = s.recent.len().min(MAX_SAMPLES_PER_SERIES);
                    WindowSeries {
                        dims: s.key.clone(),
                        url: s.url.clone(),
                        body_bytes: s.body_bytes,
                        dropped: (s.recent.len() - keep) as u64,
                        samples: s.recent.iter().take(keep).map(WireSample::from).collect(),
                        pending: Vec::new(),
                        cert_not_after: s.cert_not_after,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Outcome, Pending, SeriesWindow};
    use crate::wire::window::Held;

    #[test]
    fn stalls_in_progress_travel_with_their_series() {
        let stats = crate::stats::Stats::new(crate::stats::Retention::ONE_SHOT);
        let t = SystemTime::now();
        let landed = crate::stats::tests::result(3_000, Outcome::Ok, t);
        stats.record(&landed);
        let dims = Dims::of(&landed);
        let stall = |at: SystemTime| Pending {
            at,
            syn_retransmits: 2,
            stalled_after: Duration::from_millis(1_200),
            waited: Duration::from_secs(4),
        };
        let mut elsewhere = dims.clone();
        elsewhere.target = "svc-new".into();
        let earlier = t - Duration::from_secs(1);
        let stalled = |dims: &Dims, url: &str, pending| PendingStall {
            dims: dims.clone(),
            url: url.to_string(),
            pending,
        };
        let mut reading = stats.reading();
        reading.stalls = vec![
            // The landed probe's own stall, read before it landed: once.
            stalled(&dims, "u", stall(t)),
            stalled(&dims, "u", stall(earlier)),
            // A series whose probes have all stalled so far.
            stalled(&elsewhere, "http://new/", stall(t)),
        ];
        let doc = WindowDoc::build(
            "n1",
            SourceKind::Host,
            reading,
            Duration::from_secs(60),
            None,
        );
        let doc = WindowDoc::parse(&doc.to_gzip(), 1 << 20).unwrap();
        let windows: Vec<SeriesWindow> = doc.windows().collect();
        let of = |d: &Dims| windows.iter().find(|w| w.dims == *d).unwrap();
        assert_eq!(of(&dims).samples.len(), 1);
        assert_eq!(of(&dims).pending.len(), 1);
        assert_eq!(of(&dims).pending[0].syn_retransmits, 2);
        assert_eq!(
            (of(&elsewhere).samples.len(), of(&elsewhere).pending.len()),
            (0, 1)
        );
        assert_eq!(
            doc.series.iter().find(|s| s.dims == elsewhere).unwrap().url,
            "http://new/"
        );
        let held = Held::from(doc);
        assert_eq!(
            held.series
                .iter()
                .map(|s| s.window.pending.len())
                .sum::<usize>(),
            2
        );
    }
}
