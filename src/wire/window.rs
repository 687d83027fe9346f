//! The window document: what every prober serves at `/api/v1/window` (and
//! `/api/v1/round`) and the hub pulls. Versioned; every sample of the window in a compact form,
//! so the hub judges exactly what the prober judges, merged with the other
//! probers'; and the prober's node facts. Bounded: at most
//! [`MAX_SAMPLES_PER_SERIES`] newest samples per series.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::model::{
    Dims, NodeFacts, Outcome, Pending, Phases, Sample, SeriesWindow, SourceKind, TraceRef,
};

/// The document's version: a hub refuses another.
pub const VERSION: u32 = 1;

/// The newest samples kept per series in one document: ten minutes of a
/// 1 s interval, with room to spare.
pub const MAX_SAMPLES_PER_SERIES: usize = 1_000;

/// The stalls in progress kept per series: a 1 s interval has at most 130
/// probes pending past the last classic rung.
pub const MAX_PENDING_PER_SERIES: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowDoc {
    pub version: u32,
    pub source_node: String,
    pub source_kind: SourceKind,
    pub generated_at: String,
    /// How far back the samples go, in seconds.
    pub window_s: u64,
    /// The prober's node, as it last read itself; `None` before the first
    /// reading.
    pub facts: Option<NodeFacts>,
    /// The node's labels, as the prober was told them
    /// (`TAILPROBE_NODE_LABELS`): what the page groups by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub series: Vec<WindowSeries>,
}

/// One series of the window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowSeries {
    #[serde(flatten)]
    pub dims: Dims,
    pub url: String,
    /// The largest response body the series has measured since it began.
    pub body_bytes: u64,
    /// Samples older than the window or past the cap, left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
    pub samples: Vec<WireSample>,
    /// Probes stalled in SYN_SENT when the document was made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<WirePending>,
    /// The server certificate's end of validity (`https://`, Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<i64>,
}

/// A stall in progress on the wire: start in milliseconds since the epoch,
/// SYNs lost so far, when the first was seen and how long it has waited,
/// in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WirePending {
    pub t: u64,
    pub r: u32,
    pub s: u64,
    pub w: u64,
}

impl From<&Pending> for WirePending {
    fn from(p: &Pending) -> Self {
        Self {
            t: epoch_ms(p.at),
            r: p.syn_retransmits,
            s: ms(p.stalled_after),
            w: ms(p.waited),
        }
    }
}

impl From<&WirePending> for Pending {
    fn from(w: &WirePending) -> Self {
        Self {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(w.t),
            syn_retransmits: w.r,
            stalled_after: Duration::from_millis(w.s),
            waited: Duration::from_millis(w.w),
        }
    }
}

pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(ms)
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A sample on the wire: times in microseconds, short keys, zeros left out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WireSample {
    /// Start, milliseconds since the Unix epoch.
    pub t: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<u64>,
    /// The TLS handshake's end (`https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fb: Option<u64>,
    pub z: u64,
    pub o: Outcome,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub r: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub b: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<TraceRef>,
    /// The prober's own lag starting it, ms, when it was 10 ms or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l: Option<u32>,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl From<&Sample> for WireSample {
    fn from(s: &Sample) -> Self {
        Self {
            t: epoch_ms(s.at),
            dns: s.phases.dns.map(us),
            c: s.phases.connect.map(us),
            tl: s.phases.tls.map(us),
            fb: s.phases.first_byte.map(us),
            z: us(s.phases.total),
            o: s.outcome,
            r: s.syn_retransmits,
            b: s.body_bytes,
            x: s.trace.clone(),
            l: s.prober_lag_ms
                .filter(|l| *l >= 10.0)
                .map(|l| l.round() as u32),
        }
    }
}

impl From<&WireSample> for Sample {
    fn from(w: &WireSample) -> Self {
        Self {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(w.t),
            phases: Phases {
                dns: w.dns.map(Duration::from_micros),
                connect: w.c.map(Duration::from_micros),
                tls: w.tl.map(Duration::from_micros),
                first_byte: w.fb.map(Duration::from_micros),
                total: Duration::from_micros(w.z),
            },
            outcome: w.o,
            syn_retransmits: w.r,
            body_bytes: w.b,
            trace: w.x.clone(),
            prober_lag_ms: w.l.map(|l| l as f32),
        }
    }
}

/// A pulled document as the hub keeps it: the samples decoded once, into
/// the detector's own form, and the wire form dropped.
#[derive(Debug, Clone)]
pub struct Held {
    pub source_node: String,
    pub source_kind: SourceKind,
    pub facts: Option<NodeFacts>,
    pub labels: BTreeMap<String, String>,
    pub series: Vec<HeldSeries>,
}

#[derive(Debug, Clone)]
pub struct HeldSeries {
    pub url: String,
    pub window: SeriesWindow,
}

impl From<WindowDoc> for Held {
    fn from(d: WindowDoc) -> Self {
        Self {
            source_node: d.source_node,
            source_kind: d.source_kind,
            facts: d.facts,
            labels: d.labels,
            series: d
                .series
                .into_iter()
                .map(|s| HeldSeries {
                    window: SeriesWindow {
                        dims: s.dims,
                        samples: s.samples.iter().map(Sample::from).collect(),
                        body_bytes: s.body_bytes,
                        pending: s.pending.iter().map(Pending::from).collect(),
                        dns_parallel: crate::model::dns_parallel(&s.url),
                        cert_not_after: s.cert_not_after,
                    },
                    url: s.url,
                })
                .collect(),
        }
    }
}

/// Why a pulled document was refused.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error(
        "the document is larger than {max} bytes decompressed; raise [hub] max_doc_bytes if the prober is trusted"
    )]
    TooLarge { max: u64 },
    #[error(
        "the document is not gzip or JSON the hub reads ({0}); check that the prober runs tailprobe"
    )]
    Malformed(String),
    #[error(
        "the document has version {got}, this hub reads {VERSION}; run the same tailprobe release on probers and hub"
    )]
    Version { got: u32 },
}

impl WindowDoc {
    /// The series as the detector takes them.
    pub fn windows(&self) -> impl Iterator<Item = SeriesWindow> + '_ {
        self.series.iter().map(|s| SeriesWindow {
            dims: s.dims.clone(),
            samples: s.samples.iter().map(Sample::from).collect(),
            body_bytes: s.body_bytes,
            pending: s.pending.iter().map(Pending::from).collect(),
            dns_parallel: crate::model::dns_parallel(&s.url),
            cert_not_after: s.cert_not_after,
        })
    }

    /// The document gzipped, as it goes on the wire.
    pub fn to_gzip(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a window document always serializes");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&json).expect("writing to memory cannot fail");
        gz.finish().expect("writing to memory cannot fail")
    }

    /// Reads a document, gzipped or not, refusing more than `max` bytes of
    /// JSON and any other version.
    pub fn parse(body: &[u8], max: u64) -> Result<Self, DocError> {
        let mut json = Vec::new();
        if body.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(body)
                .take(max + 1)
                .read_to_end(&mut json)
                .map_err(|e| DocError::Malformed(e.to_string()))?;
        } else {
            json.extend_from_slice(body);
        }
        if json.len() as u64 > max {
            return Err(DocError::TooLarge { max });
        }
        #[derive(Deserialize)]
        struct Head {
            version: u32,
        }
        let head: Head =
            serde_json::from_slice(&json).map_err(|e| DocError::Malformed(e.to_string()))?;
        if head.version != VERSION {
            return Err(DocError::Version { got: head.version });
        }
        serde_json::from_slice(&json).map_err(|e| DocError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, connect_us: u64, r: u32) -> Sample {
        Sample {
            prober_lag_ms: None,
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms),
            phases: Phases {
                tls: None,
                dns: None,
                connect: Some(Duration::from_micros(connect_us)),
                first_byte: Some(Duration::from_micros(connect_us + 300)),
                total: Duration::from_micros(connect_us + 400),
            },
            outcome: Outcome::Ok,
            syn_retransmits: r,
            body_bytes: 0,
            trace: None,
        }
    }

    #[test]
    fn a_sample_survives_the_wire() {
        let s = sample(1_795_639_880_699, 63_412_345, 6);
        assert_eq!(Sample::from(&WireSample::from(&s)), s);
    }

    #[test]
    fn refuses_another_version_too_much_and_garbage() {
        let doc = WindowDoc {
            version: VERSION,
            source_node: "n1".into(),
            source_kind: SourceKind::Host,
            generated_at: "x".into(),
            window_s: 600,
            facts: None,
            labels: BTreeMap::new(),
            series: vec![],
        };
        let gz = doc.to_gzip();
        assert_eq!(WindowDoc::parse(&gz, 1 << 20).unwrap(), doc);
        let mut other = serde_json::to_value(&doc).unwrap();
        other["version"] = 2.into();
        let other = serde_json::to_vec(&other).unwrap();
        assert!(matches!(
            WindowDoc::parse(&other, 1 << 20),
            Err(DocError::Version { got: 2 })
        ));
        // A gzip bomb: a megabyte of zeros in a few kilobytes.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 1 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 8 << 10);
        assert!(matches!(
            WindowDoc::parse(&bomb, 64 << 10),
            Err(DocError::TooLarge { .. })
        ));
        assert!(matches!(
            WindowDoc::parse(b"<html>", 1 << 20),
            Err(DocError::Malformed(_))
        ));
    }
}
