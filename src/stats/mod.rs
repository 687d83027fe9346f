//! Numbers per series: a series is one (source node, source kind, destination
//! node, target, path kind). Each holds cumulative phase histograms, outcome
//! counts and a bounded window of recent samples; windows of any length up to
//! the retention are built from those samples on demand.

pub mod histogram;
pub mod live;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use histogram::{HistogramError, Latency, Phase, PhaseHistograms};
pub use live::{Live, PendingStall, Reading, StallHold};

use crate::model::{Dims, NodeFacts, Outcome, ProbeResult, Sample, SeriesWindow, Target, TraceRef};

/// Everything kept for one series.
#[derive(Debug, Clone)]
pub struct Series {
    pub key: Dims,
    pub url: String,
    pub histograms: PhaseHistograms,
    pub outcomes: BTreeMap<Outcome, u64>,
    pub syn_retransmits: u64,
    pub recent: VecDeque<Sample>,
    /// The largest response body measured since the series began, seeded
    /// with what the target declares.
    pub body_bytes: u64,
    /// The server certificate's end of validity, as the last handshake saw
    /// it (`https://`, Unix seconds).
    pub cert_not_after: Option<i64>,
}

impl Series {
    fn new(key: Dims, url: String, body_bytes: u64) -> Self {
        Self {
            key,
            url,
            body_bytes,
            histograms: PhaseHistograms::default(),
            outcomes: BTreeMap::new(),
            syn_retransmits: 0,
            recent: VecDeque::new(),
            cert_not_after: None,
        }
    }

    pub fn samples(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// Probes that did not end `ok` (cancelled ones excluded: shutting down is
    /// not a failure of the path).
    pub fn failures(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(o, _)| !o.is_ok() && **o != Outcome::Cancelled)
            .map(|(_, n)| n)
            .sum()
    }

    /// The samples at or after `since`: what the detector judges.
    pub fn window_samples(&self, since: SystemTime) -> SeriesWindow {
        let mut w = SeriesWindow::new(
            self.key.clone(),
            self.recent
                .iter()
                .filter(|s| s.at >= since)
                .cloned()
                .collect(),
            self.body_bytes,
        )
        .for_url(&self.url);
        w.cert_not_after = self.cert_not_after;
        w
    }

    /// Histograms of the samples newer than `since`.
    pub fn window(&self, since: SystemTime) -> PhaseHistograms {
        let mut h = PhaseHistograms::default();
        for s in self.recent.iter().filter(|s| s.at >= since) {
            h.record(&s.phases, s.outcome.completed());
        }
        h
    }
}

/// Every sample of a run and the facts of its nodes: what the detector saw,
/// kept so it can be judged again (the evaluation set replays lab runs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recording {
    /// Finding kinds a person confirmed this run should raise.
    #[serde(default)]
    pub expected: Vec<String>,
    /// The cause a person confirmed: every node whose own probes show the
    /// fault should rank it first from its own view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The nodes whose own probes the fault hits: each must find it alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hit_sources: Vec<String>,
    pub facts: Vec<NodeFacts>,
    pub series: Vec<RecordedSeries>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedSeries {
    pub key: Dims,
    pub url: String,
    pub samples: Vec<Sample>,
}

impl Recording {
    pub fn new(series: &[Series], facts: Vec<NodeFacts>) -> Self {
        Self {
            expected: Vec::new(),
            cause: None,
            hit_sources: Vec::new(),
            facts,
            series: series
                .iter()
                .map(|s| RecordedSeries {
                    key: s.key.clone(),
                    url: s.url.clone(),
                    samples: s.recent.iter().cloned().collect(),
                })
                .collect(),
        }
    }

    /// The series again, their histograms and counts rebuilt from the samples.
    pub fn to_series(&self) -> Vec<Series> {
        self.series
            .iter()
            .map(|r| {
                let declared = Target::parse(&r.key.target, &r.url)
                    .ok()
                    .and_then(|t| t.echo_body_bytes());
                let mut s = Series::new(r.key.clone(), r.url.clone(), declared.unwrap_or(0));
                for p in &r.samples {
                    *s.outcomes.entry(p.outcome).or_default() += 1;
                    s.histograms.record(&p.phases, p.outcome.completed());
                    s.syn_retransmits += u64::from(p.syn_retransmits);
                    s.body_bytes = s.body_bytes.max(p.body_bytes);
                    s.recent.push_back(p.clone());
                }
                s
            })
            .collect()
    }

    /// Every series' samples, as the detector takes them.
    pub fn windows(&self) -> Vec<SeriesWindow> {
        self.to_series()
            .iter()
            .map(|s| s.window_samples(SystemTime::UNIX_EPOCH))
            .collect()
    }
}

/// How many recent samples a series keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_samples: usize,
}

impl Retention {
    /// The daemon: ten minutes, and never more than 20,000 per series.
    pub const DAEMON: Retention = Retention {
        max_age: Some(Duration::from_secs(600)),
        max_samples: 20_000,
    };
    /// A one-shot run keeps every sample.
    pub const ONE_SHOT: Retention = Retention {
        max_age: None,
        max_samples: usize::MAX,
    };
}

/// All series of one prober, and the probes still in motion ([`Live`]):
/// the one store of evidence. Each series has its own lock and the map's
/// lock is held only to find or add a series, so a reader (the judge, the
/// API) copying one series never holds up probes recording to the others,
/// and never for longer than that one copy.
#[derive(Debug)]
pub struct Stats {
    series: Mutex<BTreeMap<Dims, Arc<Mutex<Series>>>>,
    retention: Retention,
    live: Arc<Live>,
}

/// Locks a mutex whose holder may have panicked: the data stays usable (a
/// panic mid-record leaves at worst one sample missing).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stats {
    pub fn new(retention: Retention) -> Self {
        Self::with_live(retention, Arc::default())
    }

    /// Stats that adopt a prober's [`Live`] (`Prober::live`), so its
    /// stalls are read with its samples.
    pub fn with_live(retention: Retention, live: Arc<Live>) -> Self {
        Self {
            series: Mutex::default(),
            retention,
            live,
        }
    }

    /// The probes in flight and the stalls in progress: what a prober
    /// (`Prober::live`) and passive mode write to.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// The stalls in progress, read now, and the series through them: the
    /// one way to read both (see [`Reading`]).
    pub fn reading(&self) -> Reading<'_> {
        Reading::new(self)
    }

    /// Every series' samples at or after `since` with its stalls in
    /// progress attached: what the detector judges.
    pub fn snapshot(&self, since: SystemTime) -> Vec<SeriesWindow> {
        self.reading().windows(since)
    }

    /// Adds one probe's numbers (cancelled probes are counted, not timed).
    pub fn record(&self, r: &ProbeResult) {
        self.record_traced(r, None);
    }

    /// The series a result belongs to, added when new.
    fn series_of(&self, r: &ProbeResult) -> Arc<Mutex<Series>> {
        let key = Dims::of(r);
        let mut all = lock(&self.series);
        if let Some(s) = all.get(&key) {
            return Arc::clone(s);
        }
        let s = Arc::new(Mutex::new(Series::new(
            key.clone(),
            r.target.url.clone(),
            r.target.echo_body_bytes().unwrap_or(0),
        )));
        all.insert(key, Arc::clone(&s));
        s
    }

    /// Adds one probe's numbers, with the trace it was exported as.
    pub fn record_traced(&self, r: &ProbeResult, trace: Option<TraceRef>) {
        let series = self.series_of(r);
        let mut s = lock(&series);
        *s.outcomes.entry(r.outcome).or_default() += 1;
        if r.outcome == Outcome::Cancelled {
            return;
        }
        s.histograms.record(&r.phases, r.outcome.completed());
        s.syn_retransmits += u64::from(r.syn_retransmits);
        s.body_bytes = s.body_bytes.max(r.body_size());
        if r.cert_not_after.is_some() {
            s.cert_not_after = r.cert_not_after;
        }
        s.recent.push_back(Sample::of(r, trace));
        while s.recent.len() > self.retention.max_samples {
            s.recent.pop_front();
        }
        if let Some(age) = self.retention.max_age {
            let oldest = r
                .started_at
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            while s.recent.front().is_some_and(|x| x.at < oldest) {
                s.recent.pop_front();
            }
        }
    }

    /// Drops the series of targets no longer probed, once their last sample
    /// has left the window (until then the detector still judges them). A
    /// prober on a rotating pinglist probes every node in turn; keeping every
    /// series it ever had would grow with the cluster, not with the pinglist.
    /// Returns how many were dropped.
    pub fn forget(&self, probing: impl Fn(&str) -> bool, since: SystemTime) -> usize {
        let mut all = lock(&self.series);
        let before = all.len();
        all.retain(|k, s| {
            probing(&k.target) || lock(s).recent.back().is_some_and(|x| x.at >= since)
        });
        before - all.len()
    }

    /// The series handles, in key order; the map's lock is released before
    /// any series is read.
    fn handles(&self) -> Vec<Arc<Mutex<Series>>> {
        lock(&self.series).values().cloned().collect()
    }

    /// Calls `f` on every series in key order, each under its own lock only:
    /// for readers that need a few numbers, not a copy.
    pub fn visit(&self, mut f: impl FnMut(&Series)) {
        for s in self.handles() {
            f(&lock(&s));
        }
    }

    /// A copy of every series, in key order.
    pub fn series(&self) -> Vec<Series> {
        let mut out = Vec::new();
        self.visit(|s| out.push(s.clone()));
        out
    }

    /// Probes that ended `outcome`, over every series.
    pub fn count(&self, outcome: Outcome) -> u64 {
        let mut n = 0;
        self.visit(|s| n += s.outcomes.get(&outcome).copied().unwrap_or(0));
        n
    }
}

/// The stats keep every probe, with its trace as a finding's example.
impl crate::model::Record for Stats {
    fn record(&self, r: &ProbeResult, trace: Option<&TraceRef>) {
        self.record_traced(r, trace.cloned());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{PathKind, Phases, SourceKind, Target};

    #[test]
    fn series_of_dropped_targets_are_forgotten_after_the_window() {
        let stats = Stats::new(Retention::DAEMON);
        let now = SystemTime::now();
        let mut old = result(5, Outcome::Ok, now - Duration::from_secs(900));
        old.target = Arc::new(Target::parse("gone", "http://127.0.0.1:1/").unwrap());
        let mut recent = result(5, Outcome::Ok, now - Duration::from_secs(60));
        recent.target = Arc::new(Target::parse("rotated", "http://127.0.0.1:2/").unwrap());
        stats.record(&old);
        stats.record(&recent);
        stats.record(&result(5, Outcome::Ok, now - Duration::from_secs(900)));
        let since = now - Duration::from_secs(600);
        // "t" is still probed; "rotated" left the pinglist a minute ago and
        // stays while the detector's window holds its samples; "gone" goes.
        assert_eq!(stats.forget(|t| t == "t", since), 1);
        let left: Vec<String> = stats
            .series()
            .iter()
            .map(|s| s.key.target.to_string())
            .collect();
        assert_eq!(left, vec!["rotated", "t"]);
        assert_eq!(stats.forget(|t| t == "t", now), 1);
    }

    pub(crate) fn result(total_ms: u64, outcome: Outcome, at: SystemTime) -> ProbeResult {
        ProbeResult {
            cert_not_after: None,
            target: Arc::new(Target::parse("t", "http://127.0.0.1:1/").unwrap()),
            source_node: "n1".into(),
            source_kind: SourceKind::Host,
            destination_node: Some("n2".into()),
            path: PathKind::CrossNode,
            started_at: at,
            start_lag: Duration::ZERO,
            phases: Phases {
                tls: None,
                dns: None,
                connect: Some(Duration::from_millis(total_ms / 2)),
                first_byte: None,
                total: Duration::from_millis(total_ms),
            },
            outcome,
            status: Some(200),
            error: None,
            tcp_info: None,
            syn_retransmits: 1,
            syn_events: vec![],
            local_addr: None,
            peer_addr: None,
            body_bytes: 0,
            content_length: None,
            rejected_node_header: false,
        }
    }

    #[test]
    fn counts_outcomes_and_keeps_a_bounded_window() {
        let stats = Stats::new(Retention {
            max_age: Some(Duration::from_secs(60)),
            max_samples: 3,
        });
        let t = SystemTime::now();
        for i in 0..5 {
            stats.record(&result(10 + i, Outcome::Ok, t));
        }
        stats.record(&result(
            3000,
            Outcome::ConnectTimeout,
            t + Duration::from_secs(120),
        ));
        stats.record(&result(1, Outcome::Cancelled, t));
        let s = &stats.series()[0];
        assert_eq!((s.samples(), s.failures()), (7, 1));
        assert_eq!(s.histograms.total.len(), 5, "a timeout is not a latency");
        assert_eq!(s.syn_retransmits, 6);
        assert_eq!(
            s.recent.len(),
            1,
            "older than 60 s before the newest sample"
        );
        assert_eq!(s.window(t).connect.len(), 1);
    }
}
