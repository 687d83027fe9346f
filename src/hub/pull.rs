//! Pulling probers: one keep-alive reqwest pool, bounded concurrency, a
//! budget per pull and per body; and each prober's state, said with why and
//! since when. A prober that stops answering keeps its last data, marked
//! stale, for `[hub] forget_after`; then it is unreachable and its data is
//! dropped. Nothing is dropped in silence.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::config::HubConfig;
use crate::wire::window::{DocError, Held, WindowDoc};

/// Why one pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{url}: {why}; check that the prober runs and that the hub reaches it")]
    Http { url: String, why: String },
    #[error("{url}: answered {status}; check the prober's log (401: set [hub] token_file)")]
    Status { url: String, status: u16 },
    #[error(
        "{url}: the body is larger than {max} bytes; raise [hub] max_doc_bytes if the prober is trusted"
    )]
    TooLarge { url: String, max: u64 },
    #[error("{url}: {source}")]
    Doc {
        url: String,
        #[source]
        source: DocError,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProberState {
    /// The last pull succeeded.
    Up,
    /// The last pull failed; its last data is still judged.
    Stale,
    /// No data for longer than `forget_after`, or never any.
    Unreachable,
}

impl ProberState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProberState::Up => "up",
            ProberState::Stale => "stale",
            ProberState::Unreachable => "unreachable",
        }
    }
}

/// One prober as `/api/v1/probers` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProberStatus {
    pub url: String,
    pub state: ProberState,
    /// Since when it is in this state.
    pub since: String,
    /// The node and network it probes from, once known.
    pub source_node: Option<String>,
    pub source_kind: Option<crate::model::SourceKind>,
    pub last_ok: Option<String>,
    /// Why the last pull failed.
    pub error: Option<String>,
    /// The last document's size on the wire, and how long the pull took.
    pub bytes: u64,
    pub pull_ms: u64,
}

struct Entry {
    status: ProberStatus,
    since: SystemTime,
    last_ok: Option<SystemTime>,
    doc: Option<Arc<Held>>,
}

/// Every prober's state and last document.
#[derive(Default)]
pub struct Probers {
    entries: BTreeMap<String, Entry>,
}

fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Probers {
    /// Keeps exactly `urls` (a prober that left discovery is forgotten).
    pub fn retain(&mut self, urls: &[String]) {
        self.entries.retain(|u, _| urls.contains(u));
    }

    /// Records one pull's result at `now`.
    pub fn update(
        &mut self,
        url: &str,
        result: Result<(WindowDoc, u64), PullError>,
        took: Duration,
        now: SystemTime,
        forget_after: Duration,
    ) {
        let e = self
            .entries
            .entry(url.to_string())
            .or_insert_with(|| Entry {
                status: ProberStatus {
                    url: url.to_string(),
                    state: ProberState::Unreachable,
                    since: stamp(now),
                    source_node: None,
                    source_kind: None,
                    last_ok: None,
                    error: None,
                    bytes: 0,
                    pull_ms: 0,
                },
                since: now,
                last_ok: None,
                doc: None,
            });
        e.status.pull_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let state = match result {
            Ok((doc, bytes)) => {
                e.status.source_node = Some(doc.source_node.clone());
                e.status.source_kind = Some(doc.source_kind);
                e.status.bytes = bytes;
                e.status.error = None;
                e.last_ok = Some(now);
                e.doc = Some(Arc::new(Held::from(doc)));
                ProberState::Up
            }
            Err(err) => {
                e.status.error = Some(err.to_string());
                let fresh = e
                    .last_ok
                    .is_some_and(|t| now.duration_since(t).unwrap_or_default() < forget_after);
                if fresh && e.doc.is_some() {
                    ProberState::Stale
                } else {
                    e.doc = None;
                    ProberState::Unreachable
                }
            }
        };
        if state != e.status.state {
            e.status.state = state;
            e.since = now;
            e.status.since = stamp(now);
        }
        e.status.last_ok = e.last_ok.map(stamp);
    }

    pub fn statuses(&self) -> Vec<ProberStatus> {
        self.entries.values().map(|e| e.status.clone()).collect()
    }

    /// The documents judged, with their probers' URLs: up and stale
    /// probers'.
    pub fn docs(&self) -> Vec<(String, Arc<Held>)> {
        self.entries
            .iter()
            .filter_map(|(u, e)| Some((u.clone(), e.doc.clone()?)))
            .collect()
    }

    /// Probers per state.
    pub fn counts(&self) -> BTreeMap<ProberState, usize> {
        let mut c: BTreeMap<ProberState, usize> = [
            (ProberState::Up, 0),
            (ProberState::Stale, 0),
            (ProberState::Unreachable, 0),
        ]
        .into();
        for e in self.entries.values() {
            *c.entry(e.status.state).or_default() += 1;
        }
        c
    }
}

/// What a pull asks a prober for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Its current window (`GET /api/v1/window`).
    Window,
    /// A fresh round of `samples` probes per target (`POST
    /// /api/v1/round`), waited for up to `budget`.
    Round { samples: u32, budget: Duration },
}

/// Pulls window documents.
#[derive(Clone)]
pub struct Puller {
    via: Via,
    token: Option<Arc<str>>,
    timeout: Duration,
    max_doc_bytes: u64,
    max_concurrent: usize,
}

/// How probers are reached.
#[derive(Clone)]
enum Via {
    /// Straight to their addresses.
    Direct(reqwest::Client),
    /// Through the API server's pod proxy: from a laptop with a kubeconfig,
    /// with no route to pod addresses. The bases are proxy paths.
    Kube(kube::Client),
}

/// reqwest says "error sending request"; the cause (refused, timed out) is
/// further down the chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut why = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        why = format!("{why}: {s}");
        source = s.source();
    }
    why
}

impl Puller {
    pub fn new(cfg: &HubConfig, token: Option<Arc<str>>) -> Result<Self, reqwest::Error> {
        crate::install_crypto();
        Ok(Self {
            via: Via::Direct(
                reqwest::Client::builder()
                    .timeout(cfg.timeout.get())
                    .connect_timeout(cfg.timeout.get())
                    .pool_max_idle_per_host(2)
                    // Probers are pod and node addresses inside the cluster:
                    // an HTTP_PROXY meant for the outside world must not
                    // carry them.
                    .no_proxy()
                    // Plain HTTP only: no system roots to load, and the image
                    // has none (a platform verifier would refuse to build).
                    .tls_certs_only([])
                    .user_agent(concat!("tailprobe-hub/", env!("CARGO_PKG_VERSION")))
                    .build()?,
            ),
            token,
            timeout: cfg.timeout.get(),
            max_doc_bytes: cfg.max_doc_bytes,
            max_concurrent: cfg.max_concurrent,
        })
    }

    /// Reaches probers through the API server's pod proxy; bases are
    /// `/api/v1/namespaces/NS/pods/NAME:PORT/proxy`.
    pub fn through_kube(cfg: &HubConfig, client: kube::Client) -> Self {
        Self {
            via: Via::Kube(client),
            token: None,
            timeout: cfg.timeout.get(),
            max_doc_bytes: cfg.max_doc_bytes,
            max_concurrent: cfg.max_concurrent,
        }
    }

    /// One prober's window or fresh round: the document and its size on
    /// the wire.
    pub async fn ask(&self, base: &str, ask: Ask) -> Result<(WindowDoc, u64), PullError> {
        let base = base.trim_end_matches('/');
        let url = match ask {
            Ask::Window => format!("{base}/api/v1/window"),
            Ask::Round { samples, .. } => format!("{base}/api/v1/round?samples={samples}"),
        };
        let body = match &self.via {
            Via::Direct(client) => self.direct(client, &url, ask).await?,
            Via::Kube(client) => self.proxied(client, &url, ask).await?,
        };
        let doc = WindowDoc::parse(&body, self.max_doc_bytes).map_err(|source| PullError::Doc {
            url: url.clone(),
            source,
        })?;
        Ok((doc, body.len() as u64))
    }

    async fn direct(
        &self,
        client: &reqwest::Client,
        url: &str,
        ask: Ask,
    ) -> Result<Vec<u8>, PullError> {
        let http = |e: reqwest::Error| PullError::Http {
            url: url.to_string(),
            why: chain(&e),
        };
        let mut req = match ask {
            Ask::Window => client.get(url),
            Ask::Round { budget, .. } => client.post(url).timeout(budget),
        }
        .header(reqwest::header::ACCEPT_ENCODING, "gzip");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let mut resp = req.send().await.map_err(http)?;
        if !resp.status().is_success() {
            return Err(PullError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            if (body.len() + chunk.len()) as u64 > self.max_doc_bytes {
                return Err(PullError::TooLarge {
                    url: url.to_string(),
                    max: self.max_doc_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn proxied(
        &self,
        client: &kube::Client,
        url: &str,
        ask: Ask,
    ) -> Result<Vec<u8>, PullError> {
        use http_body_util::BodyExt;
        let failed = |why: String| PullError::Http {
            url: url.to_string(),
            why,
        };
        let (method, budget) = match ask {
            Ask::Window => (http::Method::GET, self.timeout),
            Ask::Round { budget, .. } => (http::Method::POST, budget),
        };
        let req = http::Request::builder()
            .method(method)
            .uri(url)
            .header(http::header::ACCEPT_ENCODING, "gzip")
            .body(kube::client::Body::from(Vec::new()))
            .map_err(|e| failed(e.to_string()))?;
        let resp = tokio::time::timeout(budget, client.send(req))
            .await
            .map_err(|_| failed(format!("no answer within {budget:?}")))?
            .map_err(|e| failed(chain(&e)))?;
        if !resp.status().is_success() {
            return Err(PullError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let limit = usize::try_from(self.max_doc_bytes).unwrap_or(usize::MAX);
        let body = tokio::time::timeout(
            budget,
            http_body_util::Limited::new(resp.into_body(), limit).collect(),
        )
        .await
        .map_err(|_| failed(format!("no whole answer within {budget:?}")))?
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                PullError::TooLarge {
                    url: url.to_string(),
                    max: self.max_doc_bytes,
                }
            } else {
                failed(e.to_string())
            }
        })?;
        Ok(body.to_bytes().to_vec())
    }

    /// Asks every prober, `max_concurrent` at a time (every one at once for
    /// rounds: a round waits on the probes, not on the hub), into
    /// `probers`; `answered` hears of each answer as it comes.
    pub async fn ask_all(
        &self,
        urls: &[String],
        ask: Ask,
        probers: &std::sync::Mutex<Probers>,
        forget_after: Duration,
        answered: impl Fn(&Result<(WindowDoc, u64), PullError>),
    ) {
        let at_once = match ask {
            Ask::Window => self.max_concurrent.max(1),
            Ask::Round { .. } => urls.len().max(1),
        };
        let mut pulls = futures::stream::iter(urls.iter().cloned())
            .map(|url| async move {
                let started = Instant::now();
                let mut r = self.ask(&url, ask).await;
                // One lost connection is not a silent prober: a window is
                // cheap to ask again, on a new connection (a new source
                // port, so a new path through a flow-hashed fault). A round
                // is not repeated.
                if r.is_err() && ask == Ask::Window {
                    r = self.ask(&url, ask).await;
                }
                (url, r, started.elapsed())
            })
            .buffer_unordered(at_once);
        while let Some((url, r, took)) = pulls.next().await {
            answered(&r);
            if let Err(e) = &r {
                tracing::debug!(error = %e, "A prober did not answer.");
            }
            probers.lock().unwrap_or_else(|e| e.into_inner()).update(
                &url,
                r,
                took,
                SystemTime::now(),
                forget_after,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourceKind;

    fn doc() -> WindowDoc {
        WindowDoc {
            version: crate::wire::window::VERSION,
            source_node: "n1".into(),
            source_kind: SourceKind::Host,
            generated_at: "x".into(),
            window_s: 600,
            labels: Default::default(),
            facts: None,
            series: vec![],
        }
    }

    fn failed() -> Result<(WindowDoc, u64), PullError> {
        Err(PullError::Status {
            url: "u".into(),
            status: 503,
        })
    }

    #[test]
    fn a_silent_prober_goes_stale_then_unreachable() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Duration::from_secs;
        let forget = s(60);
        let mut p = Probers::default();
        p.update("u", Ok((doc(), 10)), s(0), t0, forget);
        assert_eq!(p.statuses()[0].state, ProberState::Up);
        p.update("u", failed(), s(0), t0 + s(15), forget);
        let st = &p.statuses()[0];
        assert_eq!(st.state, ProberState::Stale);
        assert!(st.error.as_deref().unwrap().contains("503"), "{st:?}");
        assert_eq!(p.docs().len(), 1, "a stale prober's data is still judged");
        p.update("u", failed(), s(0), t0 + s(61), forget);
        assert_eq!(p.statuses()[0].state, ProberState::Unreachable);
        assert!(p.docs().is_empty(), "then dropped");
        assert_eq!(p.counts()[&ProberState::Unreachable], 1);
        // Never answered: unreachable at once.
        p.update("v", failed(), s(0), t0, forget);
        assert_eq!(p.counts()[&ProberState::Unreachable], 2);
        p.retain(&["v".to_string()]);
        assert_eq!(p.statuses().len(), 1);
    }
}
