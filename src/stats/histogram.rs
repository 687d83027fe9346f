//! HdrHistograms of probe phases, in microseconds with 3 significant digits.
//! They start small and grow on demand (a healthy millisecond path costs about
//! 16 KiB per phase, a 63 s outlier about 140 KiB), and serialize in the V2
//! deflate format so histograms from many probers merge exactly.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::Serialize;
use std::time::Duration;

use crate::model::Phases;

/// The timed phases, in the order they complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Dns,
    Connect,
    Tls,
    FirstByte,
    Total,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Dns,
        Phase::Connect,
        Phase::Tls,
        Phase::FirstByte,
        Phase::Total,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::FirstByte => "first_byte",
            Phase::Total => "total",
        }
    }
}

/// A latency histogram in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new(3).expect("3 significant digits is a valid precision"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    #[error(
        "histogram is not valid base64 ({0}); send the `histogram` field exactly as tailprobe wrote it"
    )]
    Base64(#[from] base64::DecodeError),
    #[error(
        "histogram is not a V2 (deflate) HdrHistogram ({0}); send the `histogram` field exactly as tailprobe wrote it"
    )]
    Decode(String),
    #[error("histograms cannot be merged ({0})")]
    Merge(String),
}

impl Latency {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        // Auto-resizing histograms only fail on values beyond u64 range.
        let _ = self.0.record(us);
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at `q` (0..=1), or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        (!self.0.is_empty()).then(|| Duration::from_micros(self.0.value_at_quantile(q)))
    }

    pub fn max(&self) -> Option<Duration> {
        (!self.0.is_empty()).then(|| Duration::from_micros(self.0.max()))
    }

    /// Every recorded value with its count (values equal within the
    /// histogram's precision are one entry).
    pub fn counts(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.0.iter_recorded().map(|v| {
            (
                Duration::from_micros(v.value_iterated_to()),
                v.count_at_value(),
            )
        })
    }

    /// Adds every count of `other`: merging is exact.
    pub fn merge(&mut self, other: &Latency) -> Result<(), HistogramError> {
        self.0
            .add(&other.0)
            .map_err(|e| HistogramError::Merge(format!("{e:?}")))
    }

    /// V2 deflate, base64: the wire form in reports and `/api/v1/histograms`.
    pub fn to_base64(&self) -> String {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.0, &mut buf)
            .expect("serializing into a Vec cannot fail");
        STANDARD.encode(buf)
    }

    pub fn from_base64(s: &str) -> Result<Self, HistogramError> {
        let bytes = STANDARD.decode(s)?;
        let mut h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| HistogramError::Decode(format!("{e:?}")))?;
        h.auto(true);
        Ok(Self(h))
    }
}

/// One histogram per phase. The TLS handshake's is made by the first
/// `https://` probe: a plain-HTTP series pays nothing for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseHistograms {
    pub dns: Latency,
    pub connect: Latency,
    pub tls: Option<Box<Latency>>,
    pub first_byte: Latency,
    pub total: Latency,
}

static NO_TLS: std::sync::LazyLock<Latency> = std::sync::LazyLock::new(Latency::default);

impl PhaseHistograms {
    /// Records the phases that completed. `total` is recorded only when the
    /// exchange completed: a give-up time is not a latency.
    pub fn record(&mut self, p: &Phases, completed: bool) {
        if let Some(d) = p.dns {
            self.dns.record(d);
        }
        if let Some(c) = p.connect {
            self.connect.record(c);
        }
        if let Some(t) = p.tls {
            self.tls.get_or_insert_default().record(t);
        }
        if let Some(f) = p.first_byte {
            self.first_byte.record(f);
        }
        if completed {
            self.total.record(p.total);
        }
    }

    pub fn get(&self, phase: Phase) -> &Latency {
        match phase {
            Phase::Dns => &self.dns,
            Phase::Connect => &self.connect,
            Phase::Tls => self.tls.as_deref().unwrap_or(&NO_TLS),
            Phase::FirstByte => &self.first_byte,
            Phase::Total => &self.total,
        }
    }

    pub fn merge(&mut self, other: &PhaseHistograms) -> Result<(), HistogramError> {
        self.dns.merge(&other.dns)?;
        self.connect.merge(&other.connect)?;
        if let Some(t) = &other.tls {
            self.tls.get_or_insert_default().merge(t)?;
        }
        self.first_byte.merge(&other.first_byte)?;
        self.total.merge(&other.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_named_as_the_wire_names_them() {
        let names: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["dns", "connect", "tls", "first_byte", "total"]);
    }

    #[test]
    fn quantiles_read_the_tail_and_an_empty_histogram_says_so() {
        let mut l = Latency::default();
        assert!(l.is_empty() && l.quantile(0.5).is_none() && l.max().is_none());
        for _ in 0..999 {
            l.record(Duration::from_millis(1));
        }
        l.record(Duration::from_secs(63));
        assert!(!l.is_empty());
        let q = |x: f64| l.quantile(x).unwrap().as_secs_f64();
        assert!((q(0.5) - 0.001).abs() < 0.00001, "{}", q(0.5));
        assert!((q(1.0) - 63.0).abs() < 0.1, "{}", q(1.0));
        assert!((l.max().unwrap().as_secs_f64() - 63.0).abs() < 0.1);
    }

    #[test]
    fn phase_histograms_merge_every_phase() {
        let p = |dns: u64, c: u64, fb: u64, t: u64| Phases {
            dns: Some(Duration::from_millis(dns)),
            connect: Some(Duration::from_millis(c)),
            tls: Some(Duration::from_millis(c + 1)),
            first_byte: Some(Duration::from_millis(fb)),
            total: Duration::from_millis(t),
        };
        let mut a = PhaseHistograms::default();
        assert!(a.get(Phase::Tls).is_empty() && a.tls.is_none());
        a.record(&p(1, 2, 3, 4), true);
        let mut b = PhaseHistograms::default();
        b.record(&p(5, 6, 7, 8), true);
        b.record(&p(5, 63_000, 63_001, 63_002), true);
        a.merge(&b).unwrap();
        for phase in Phase::ALL {
            assert_eq!(a.get(phase).len(), 3, "{phase:?}");
        }
        assert!(a.get(Phase::Connect).max().unwrap() >= Duration::from_secs(63));
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn serializes_and_merges_exactly() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for v in [1, 2, 3, 700] {
            a.record(ms(v));
        }
        for v in [63_000, 64_400, 5] {
            b.record(ms(v));
        }
        let a2 = Latency::from_base64(&a.to_base64()).unwrap();
        let b2 = Latency::from_base64(&b.to_base64()).unwrap();
        assert_eq!(a2, a);
        let mut merged = a2;
        merged.merge(&b2).unwrap();
        let mut direct = Latency::default();
        for v in [1, 2, 3, 700, 63_000, 64_400, 5] {
            direct.record(ms(v));
        }
        assert_eq!(merged.len(), 7);
        for q in [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0] {
            assert_eq!(merged.quantile(q), direct.quantile(q), "quantile {q}");
        }
        // 3 significant digits: 64.4 s is held to within 0.1 %.
        let max = merged.max().unwrap().as_secs_f64();
        assert!((max - 64.4).abs() / 64.4 < 0.001, "{max}");
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            Latency::from_base64("!!"),
            Err(HistogramError::Base64(_))
        ));
        assert!(matches!(
            Latency::from_base64("AAAA"),
            Err(HistogramError::Decode(_))
        ));
    }

    #[test]
    fn total_only_for_completed_exchanges() {
        let mut h = PhaseHistograms::default();
        let p = Phases {
            tls: None,
            dns: None,
            connect: Some(ms(1)),
            first_byte: None,
            total: ms(135_000),
        };
        h.record(&p, false);
        assert_eq!((h.connect.len(), h.total.len(), h.dns.len()), (1, 0, 0));
    }
}
