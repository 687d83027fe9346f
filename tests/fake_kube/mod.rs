//! A fake Kubernetes API server for tests: real Kubernetes JSON over HTTP on
//! loopback, enough of it for tailprobe's discovery and self-registration.
//!
//! - list (`resourceVersion` in the list metadata; pages of `limit` with a
//!   `continue` token, as the real server serves them) and watch (streamed
//!   `{"type","object"}` lines from a given resourceVersion), with equality
//!   label selectors; an object that starts or stops matching a watch's
//!   selector arrives as ADDED or DELETED there, as from the real server's
//!   watch cache; BOOKMARK events when the client allows them;
//! - a compaction that makes older resourceVersions answer `410 Gone` in the
//!   watch stream, as the real server does, so clients must relist;
//! - server-side apply (`PATCH` with `application/apply-patch+yaml`): create or
//!   merge, owner references merged by uid and owned per field manager (an
//!   owner reference a manager stops applying is removed), and no new
//!   resourceVersion when nothing changed; `DELETE`;
//! - RBAC when asked ([`FakeApi::authorize`]): each bearer token's rules,
//!   403 Forbidden for anything they do not grant;
//! - stop and start on the same port, for outages;
//! - a log of every request, to compare with RBAC;
//! - the pod proxy (`pods/NAME:PORT/proxy/...`), forwarding to the pod's
//!   IP as the real server does.
//!
//! One stand-in for kube-proxy: a Service's ClusterIP is the address of the
//! first endpoint an EndpointSlice gives it (a loopback address in tests), so
//! probes through the "VIP" reach the right node's echo without DNAT.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The resources served: (plural, API prefix, list kind, namespaced).
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("nodes", "/api/v1", "NodeList", false),
    ("pods", "/api/v1", "PodList", true),
    ("services", "/api/v1", "ServiceList", true),
    (
        "endpointslices",
        "/apis/discovery.k8s.io/v1",
        "EndpointSliceList",
        true,
    ),
];

/// One request, as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub verb: String,
    pub resource: String,
    /// `None` for cluster-wide requests.
    pub namespace: Option<String>,
}

#[derive(Clone)]
struct Change {
    rv: u64,
    resource: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Db {
    rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    objects: BTreeMap<(String, String, String), Value>,
    log: Vec<Change>,
    requests: Vec<Request>,
    uid: u64,
    /// The owner reference uids each field manager applied to an object.
    owners: BTreeMap<(Key, String), Vec<String>>,
    /// Loopback endpoints accepted, and each Service's VIP set to its first
    /// endpoint: the kube-proxy stand-in for tests whose probes must stay
    /// on loopback (they may send traffic nowhere else). The real server
    /// refuses both; so does this one without it.
    loopback_lab: bool,
    /// ClusterIPs handed out so far, from 10.96.0.0/16.
    cluster_ips: u32,
}

#[derive(Clone)]
struct Shared {
    db: Arc<Mutex<Db>>,
    events: broadcast::Sender<Change>,
    /// Cancelled to end every open watch (server stop, compaction).
    up: Arc<Mutex<CancellationToken>>,
    /// Watch events sent, and objects sent in list responses, to every
    /// client: what the API server spends on its watchers.
    sent: Arc<std::sync::atomic::AtomicU64>,
    listed: Arc<std::sync::atomic::AtomicU64>,
    /// Bearer token to what it may do; empty: everything is allowed.
    rbac: Arc<Mutex<BTreeMap<String, Vec<Rule>>>>,
}

/// One RBAC rule: verbs on resources, in one namespace (a Role) or in all
/// (`None`: a ClusterRole bound cluster-wide).
#[derive(Debug, Clone)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub resources: Vec<String>,
    pub namespace: Option<String>,
}

impl Rule {
    fn allows(&self, r: &Request) -> bool {
        self.verbs.iter().any(|v| v == &r.verb)
            && self.resources.iter().any(|x| x == &r.resource)
            && match (&self.namespace, &r.namespace) {
                (None, _) => true,
                (Some(a), Some(b)) => a == b,
                (Some(_), None) => false,
            }
    }
}

/// The rules of every Role and ClusterRole in a deploy/ file, Roles bound
/// in `namespace`.
pub fn rules_of(file: &str, namespace: &str) -> Vec<Rule> {
    let text = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        let ns = match v["kind"].as_str() {
            Some("Role") => Some(namespace.to_string()),
            Some("ClusterRole") => None,
            _ => continue,
        };
        for rule in v["rules"].as_array().into_iter().flatten() {
            let strings = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            };
            out.push(Rule {
                verbs: strings("verbs"),
                resources: strings("resources"),
                namespace: ns.clone(),
            });
        }
    }
    out
}

pub struct FakeApi {
    pub addr: SocketAddr,
    shared: Shared,
    server: Mutex<CancellationToken>,
}

impl FakeApi {
    /// As strict as the real server: endpoint addresses validated, a
    /// Service's clusterIP allocated once and immutable.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// [`FakeApi::start`] with one leniency, for tests whose probes reach
    /// the per-node Services over loopback: loopback endpoints are
    /// accepted, and a Service's VIP follows its first endpoint (no
    /// kube-proxy here to DNAT a real ClusterIP).
    pub async fn start_on_loopback() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(loopback_lab: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            db: Arc::new(Mutex::new(Db {
                rv: 1,
                loopback_lab,
                ..Default::default()
            })),
            events: broadcast::channel(65_536).0,
            up: Arc::new(Mutex::new(CancellationToken::new())),
            sent: Arc::default(),
            listed: Arc::default(),
            rbac: Arc::default(),
        };
        let api = Self {
            addr,
            shared,
            server: Mutex::new(CancellationToken::new()),
        };
        api.serve(listener);
        api
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let token = CancellationToken::new();
        *self.server.lock().unwrap() = token.clone();
        *self.shared.up.lock().unwrap() = CancellationToken::new();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(self.shared.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
                .unwrap();
        });
    }

    /// The API server goes away: open watches end, new connections fail.
    pub async fn stop(&self) {
        self.server.lock().unwrap().cancel();
        self.shared.up.lock().unwrap().cancel();
        // Let the listener close before anyone reconnects.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    /// Back on the same port, with the same objects.
    pub async fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Forgets history: watches from any resourceVersion seen so far get
    /// 410 Gone, and open watches end, so clients relist.
    pub fn compact(&self) {
        let mut db = self.shared.db.lock().unwrap();
        db.rv += 1;
        db.compacted = db.rv;
        db.log.clear();
        drop(db);
        // End open watches, not the server: later watches get a fresh token.
        let old = std::mem::replace(
            &mut *self.shared.up.lock().unwrap(),
            CancellationToken::new(),
        );
        old.cancel();
    }

    /// Creates or replaces an object, as a controller or kubelet would.
    pub fn put(&self, resource: &str, object: Value) {
        let mut db = self.shared.db.lock().unwrap();
        let key = key_of(resource, &object);
        let kind = if db.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let change = db.store(resource, key, object, kind);
        drop(db);
        let _ = self.shared.events.send(change);
    }

    /// Deletes an object and tells the watchers.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let mut db = self.shared.db.lock().unwrap();
        let key = (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        if let Some(change) = db.remove(&key) {
            drop(db);
            let _ = self.shared.events.send(change);
        }
    }

    /// Deletes an object without an event, as if the event had been lost to
    /// a compaction: only a relist can tell.
    pub fn delete_silently(&self, resource: &str, namespace: &str, name: &str) {
        let mut db = self.shared.db.lock().unwrap();
        db.objects.remove(&(
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        ));
        db.rv += 1;
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .db
            .lock()
            .unwrap()
            .objects
            .get(&(
                resource.to_string(),
                namespace.to_string(),
                name.to_string(),
            ))
            .cloned()
    }

    /// From now on, requests with `token` may do what `rules` grant and
    /// nothing else (403 Forbidden); any other token is refused outright.
    pub fn authorize(&self, token: &str, rules: Vec<Rule>) {
        self.shared
            .rbac
            .lock()
            .unwrap()
            .insert(token.to_string(), rules);
    }

    /// A kubeconfig for this server with its own bearer token.
    pub fn kubeconfig_as(&self, token: &str) -> String {
        self.kubeconfig()
            .replace("token: test", &format!("token: {token}"))
    }

    /// (watch events, listed objects) sent so far, to all clients.
    pub fn sent(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.shared.sent.load(Relaxed),
            self.shared.listed.load(Relaxed),
        )
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.db.lock().unwrap().requests.clone()
    }

    /// A kubeconfig that points at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: test\n",
            self.addr
        )
    }
}

/// (resource, namespace, name).
type Key = (String, String, String);

fn object_key(o: &Value) -> (String, String) {
    let meta = &o["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("").to_string(),
        meta["name"].as_str().unwrap_or("").to_string(),
    )
}

fn key_of(resource: &str, o: &Value) -> (String, String, String) {
    let meta = &o["metadata"];
    (
        resource.to_string(),
        meta["namespace"].as_str().unwrap_or("").to_string(),
        meta["name"].as_str().unwrap_or("").to_string(),
    )
}

impl Db {
    fn store(
        &mut self,
        resource: &str,
        key: (String, String, String),
        mut object: Value,
        kind: &'static str,
    ) -> Change {
        self.rv += 1;
        let meta = object["metadata"].as_object_mut().unwrap();
        meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
        if !meta.contains_key("uid") {
            self.uid += 1;
            meta.insert("uid".into(), json!(format!("uid-{}", self.uid)));
        }
        self.objects.insert(key, object.clone());
        let change = Change {
            rv: self.rv,
            resource: resource.to_string(),
            kind,
            object,
        };
        self.log.push(change.clone());
        change
    }

    fn remove(&mut self, key: &(String, String, String)) -> Option<Change> {
        let mut object = self.objects.remove(key)?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let change = Change {
            rv: self.rv,
            resource: key.0.clone(),
            kind: "DELETED",
            object,
        };
        self.log.push(change.clone());
        Some(change)
    }
}

/// The parts of a request path: resource, namespace, name.
/// `/api/v1/namespaces/NS/pods/NAME[:PORT]/proxy/REST`.
fn parse_proxy(path: &str) -> Option<(String, String, Option<u16>, String)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (ns, rest) = rest.split_once("/pods/")?;
    let (pod, rest) = rest.split_once("/proxy")?;
    let (name, port) = match pod.split_once(':') {
        Some((n, p)) => (n, Some(p.parse().ok()?)),
        None => (pod, None),
    };
    Some((ns.into(), name.into(), port, rest.to_string()))
}

/// The API server's pod proxy: the request goes on to the pod's IP and
/// port, the answer comes back as it was. RBAC sees `pods/proxy`.
#[allow(clippy::too_many_arguments)]
async fn proxy(
    s: &Shared,
    method: &Method,
    ns: &str,
    pod: &str,
    port: Option<u16>,
    rest: &str,
    query: Option<&str>,
    body: Bytes,
) -> Response {
    let verb = if method == Method::GET {
        "get"
    } else {
        "create"
    };
    let ip = {
        let mut db = s.db.lock().unwrap();
        db.requests.push(Request {
            verb: verb.into(),
            resource: "pods/proxy".into(),
            namespace: Some(ns.into()),
        });
        db.objects
            .get(&("pods".to_string(), ns.to_string(), pod.to_string()))
            .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
    };
    let Some(ip) = ip else {
        return reply(
            StatusCode::NOT_FOUND,
            status(404, "NotFound", &format!("pods \"{pod}\" not found")),
        );
    };
    let url = format!(
        "http://{ip}:{}{rest}{}",
        port.unwrap_or(80),
        query.map(|q| format!("?{q}")).unwrap_or_default()
    );
    let client = {
        tailprobe::install_crypto();
        reqwest::Client::builder().no_proxy().build().unwrap()
    };
    let req = client
        .request(method.clone(), &url)
        .header("accept-encoding", "gzip")
        .body(body.to_vec());
    match req.send().await {
        Ok(r) => {
            let code = r.status();
            let headers = r.headers().clone();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = code;
            for h in ["content-type", "content-encoding", "retry-after"] {
                if let Some(v) = headers.get(h) {
                    resp.headers_mut().insert(h, v.clone());
                }
            }
            resp
        }
        Err(e) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            status(
                503,
                "ServiceUnavailable",
                &format!("error trying to reach service: {e}"),
            ),
        ),
    }
}

fn parse_path(path: &str) -> Option<(&'static str, Option<String>, Option<String>)> {
    for (plural, prefix, _, _) in RESOURCES {
        let Some(rest) = path.strip_prefix(prefix) else {
            continue;
        };
        let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
        let (ns, tail) = match parts.as_slice() {
            ["namespaces", ns, tail @ ..] => (Some(ns.to_string()), tail.to_vec()),
            tail => (None, tail.to_vec()),
        };
        match tail.as_slice() {
            [r] if r == plural => return Some((plural, ns, None)),
            [r, name] if r == plural => return Some((plural, ns, Some(name.to_string()))),
            _ => {}
        }
    }
    None
}

fn matches(object: &Value, namespace: &Option<String>, selector: &str) -> bool {
    if let Some(ns) = namespace
        && object["metadata"]["namespace"].as_str() != Some(ns)
    {
        return false;
    }
    let labels = &object["metadata"]["labels"];
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k].as_str() == Some(v.trim_start_matches('=')),
            None => !labels[term].is_null(),
        })
}

/// 403 unless the token's rules grant the request (no rules at all: the
/// fake is not enforcing RBAC).
fn forbidden(s: &Shared, token: &str, r: &Request) -> Option<Response> {
    let rbac = s.rbac.lock().unwrap();
    if rbac.is_empty()
        || rbac
            .get(token)
            .is_some_and(|rules| rules.iter().any(|x| x.allows(r)))
    {
        return None;
    }
    let at = r
        .namespace
        .as_deref()
        .map_or("at the cluster scope".to_string(), |n| {
            format!("in the namespace \"{n}\"")
        });
    Some(reply(
        StatusCode::FORBIDDEN,
        status(
            403,
            "Forbidden",
            &format!(
                "{} \"{token}\" cannot {} resource \"{}\" {at}",
                if rbac.contains_key(token) {
                    "user"
                } else {
                    "unknown user"
                },
                r.verb,
                r.resource
            ),
        ),
    ))
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn reply(code: StatusCode, v: Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

async fn handle(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    if let Some((ns, pod, port, rest)) = parse_proxy(uri.path()) {
        let request = Request {
            verb: if method == Method::GET {
                "get"
            } else {
                "create"
            }
            .into(),
            resource: "pods/proxy".into(),
            namespace: Some(ns.clone()),
        };
        if let Some(denied) = forbidden(&s, &token, &request) {
            return denied;
        }
        return proxy(&s, &method, &ns, &pod, port, &rest, uri.query(), body).await;
    }
    let Some((resource, namespace, name)) = parse_path(uri.path()) else {
        return reply(
            StatusCode::NOT_FOUND,
            status(404, "NotFound", &format!("no resource at {}", uri.path())),
        );
    };
    let watch = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, &name, watch) {
        (&Method::GET, None, true) => "watch",
        (&Method::GET, None, false) => "list",
        (&Method::GET, Some(_), _) => "get",
        (&Method::PATCH, _, _) => "patch",
        (&Method::DELETE, _, _) => "delete",
        _ => "other",
    };
    let request = Request {
        verb: verb.into(),
        resource: resource.into(),
        namespace: namespace.clone(),
    };
    if let Some(denied) = forbidden(&s, &token, &request) {
        return denied;
    }
    s.db.lock().unwrap().requests.push(request);
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    match verb {
        "list" => {
            let db = s.db.lock().unwrap();
            // A continued list carries the first page's resourceVersion
            // and where it stopped; an expired one is 410, as for a watch.
            let (rv, offset) = match q.get("continue") {
                Some(c) => match c.split_once(':').and_then(|(rv, off)| {
                    Some((rv.parse::<u64>().ok()?, off.parse::<usize>().ok()?))
                }) {
                    Some((rv, _)) if rv < db.compacted => {
                        return reply(
                            StatusCode::GONE,
                            status(410, "Expired", "the continue token has expired"),
                        );
                    }
                    Some(t) => t,
                    None => {
                        return reply(
                            StatusCode::BAD_REQUEST,
                            status(400, "BadRequest", "invalid continue token"),
                        );
                    }
                },
                None => (db.rv, 0),
            };
            let limit = q
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0)
                .unwrap_or(usize::MAX);
            let all: Vec<&Value> = db
                .objects
                .iter()
                .filter(|((r, _, _), o)| r == resource && matches(o, &namespace, &selector))
                .map(|(_, o)| o)
                .collect();
            let items: Vec<Value> = all
                .iter()
                .skip(offset)
                .take(limit)
                .map(|o| (*o).clone())
                .collect();
            let next = offset + items.len();
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if next < all.len() {
                meta["continue"] = json!(format!("{rv}:{next}"));
                meta["remainingItemCount"] = json!(all.len() - next);
            }
            let kind = RESOURCES.iter().find(|r| r.0 == resource).unwrap().2;
            s.listed
                .fetch_add(items.len() as u64, std::sync::atomic::Ordering::Relaxed);
            reply(
                StatusCode::OK,
                json!({"kind": kind, "apiVersion": "v1", "metadata": meta, "items": items}),
            )
        }
        "watch" => watch_stream(&s, resource, namespace, selector, &q),
        "get" => {
            let key = (
                resource.to_string(),
                namespace.unwrap_or_default(),
                name.unwrap(),
            );
            match s.db.lock().unwrap().objects.get(&key) {
                Some(o) => reply(StatusCode::OK, o.clone()),
                None => reply(StatusCode::NOT_FOUND, status(404, "NotFound", "not found")),
            }
        }
        "patch" => apply(
            &s,
            resource,
            namespace.unwrap_or_default(),
            name.unwrap(),
            q.get("fieldManager").map_or("", String::as_str),
            &token,
            &body,
        ),
        "delete" => {
            let key = (
                resource.to_string(),
                namespace.unwrap_or_default(),
                name.unwrap(),
            );
            let change = s.db.lock().unwrap().remove(&key);
            match change {
                Some(c) => {
                    let o = c.object.clone();
                    let _ = s.events.send(c);
                    reply(StatusCode::OK, o)
                }
                None => reply(StatusCode::NOT_FOUND, status(404, "NotFound", "not found")),
            }
        }
        _ => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            status(405, "MethodNotAllowed", "not served by the fake"),
        ),
    }
}

fn watch_stream(
    s: &Shared,
    resource: &'static str,
    namespace: Option<String>,
    selector: String,
    q: &BTreeMap<String, String>,
) -> Response {
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = q.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let mut rx = s.events.subscribe();
    let (backlog, gone, mut known) = {
        let db = s.db.lock().unwrap();
        let gone = from < db.compacted;
        let backlog: Vec<Change> = db
            .log
            .iter()
            .filter(|c| c.rv > from && c.resource == resource)
            .cloned()
            .collect();
        // What the client holds: the objects that matched the selector at
        // `from`. For an object the log saw at or before `from`, its last
        // state then; for one unchanged since, its state now; for one
        // first changed after `from` (it existed before the log began),
        // that first change stands for it.
        let mut history: BTreeMap<(String, String), Vec<&Change>> = BTreeMap::new();
        for c in db.log.iter().filter(|c| c.resource == resource) {
            history.entry(object_key(&c.object)).or_default().push(c);
        }
        let then = |k: &(String, String), now: Option<&Value>| -> bool {
            let h = history.get(k).map(Vec::as_slice).unwrap_or(&[]);
            let state = match (
                h.iter().rev().find(|c| c.rv <= from),
                h.iter().find(|c| c.rv > from),
            ) {
                (Some(c), _) => (c.kind != "DELETED").then_some(&c.object),
                (None, Some(c)) if c.kind == "ADDED" => None,
                (None, Some(c)) => Some(&c.object),
                (None, None) => now,
            };
            state.is_some_and(|o| matches(o, &namespace, &selector))
        };
        let mut known = std::collections::BTreeSet::new();
        for ((r, ns, name), o) in &db.objects {
            let k = (ns.clone(), name.clone());
            if r == resource && then(&k, Some(o)) {
                known.insert(k);
            }
        }
        // Deleted since `from`, so gone from the objects.
        for k in history.keys() {
            if !known.contains(k) && then(k, None) {
                known.insert(k.clone());
            }
        }
        (backlog, gone, known)
    };
    let kind_name = RESOURCES
        .iter()
        .find(|r| r.0 == resource)
        .map(|r| r.2.trim_end_matches("List"))
        .unwrap_or("");
    let api_version = RESOURCES
        .iter()
        .find(|r| r.0 == resource)
        .map(|r| r.1.trim_start_matches("/apis/").trim_start_matches("/api/"))
        .unwrap_or("v1")
        .to_string();
    let stop = s.up.lock().unwrap().clone();
    let sent = Arc::clone(&s.sent);
    let (tx, body_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let line = |kind: &str, object: &Value| {
            Ok(Bytes::from(format!(
                "{}\n",
                json!({"type": kind, "object": object})
            )))
        };
        if gone {
            let _ = tx
                .send(line(
                    "ERROR",
                    &status(410, "Expired", "too old resource version"),
                ))
                .await;
            return;
        }
        // The event this watcher sees for a change: an object entering
        // the selector is ADDED, one leaving it DELETED, as the real
        // server's watch cache sends them.
        let mut seen = |c: &Change| -> Option<&'static str> {
            let key = object_key(&c.object);
            let now = c.kind != "DELETED" && matches(&c.object, &namespace, &selector);
            let before = known.contains(&key);
            if now {
                known.insert(key);
            } else {
                known.remove(&key);
            }
            match (before, now) {
                (false, true) => Some("ADDED"),
                (true, true) => Some("MODIFIED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        };
        let mut last = from;
        for c in backlog {
            last = c.rv;
            if let Some(kind) = seen(&c) {
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if tx.send(line(kind, &c.object)).await.is_err() {
                    return;
                }
            }
        }
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let c = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick(), if bookmarks => {
                    let mark = json!({"kind": kind_name, "apiVersion": api_version,
                        "metadata": {"resourceVersion": last.to_string(), "annotations": {}}});
                    if tx.send(line("BOOKMARK", &mark)).await.is_err() {
                        return;
                    }
                    continue;
                }
                c = rx.recv() => match c {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            if c.rv <= last || c.resource != resource {
                continue;
            }
            last = c.rv;
            let Some(kind) = seen(&c) else { continue };
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if tx.send(line(kind, &c.object)).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(tokio_stream_from(body_rx)))
        .unwrap()
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Server-side apply, reduced to what tailprobe relies on.
fn apply(
    s: &Shared,
    resource: &str,
    namespace: String,
    name: String,
    manager: &str,
    token: &str,
    body: &[u8],
) -> Response {
    if manager.is_empty() {
        return reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            status(422, "Invalid", "fieldManager is required for apply patch"),
        );
    }
    let Ok(mut patch) = serde_json::from_slice::<Value>(body) else {
        return reply(
            StatusCode::BAD_REQUEST,
            status(400, "BadRequest", "the apply body is not JSON"),
        );
    };
    let key = (resource.to_string(), namespace.clone(), name.clone());
    let existing = s.db.lock().unwrap().objects.get(&key).cloned();
    if existing.is_none() {
        // An apply that creates is authorized as create too.
        let create = Request {
            verb: "create".into(),
            resource: resource.into(),
            namespace: Some(namespace.clone()),
        };
        if let Some(denied) = forbidden(s, token, &create) {
            return denied;
        }
    }
    let mut db = s.db.lock().unwrap();
    if let Some(invalid) = invalid(&db, resource, existing.as_ref(), &patch) {
        return reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            status(422, "Invalid", &invalid),
        );
    }
    // Owner references are owned per manager: one this manager applied
    // before and applies no more goes, unless another manager holds it.
    let applied: Vec<String> = patch["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(String::from))
        .collect();
    let mine = (key.clone(), manager.to_string());
    let dropped: Vec<String> = db
        .owners
        .get(&mine)
        .into_iter()
        .flatten()
        .filter(|u| !applied.contains(u))
        .filter(|u| {
            !db.owners
                .iter()
                .any(|((k, m), uids)| *k == key && m != manager && uids.contains(u))
        })
        .cloned()
        .collect();
    db.owners.insert(mine, applied);
    let mut merged = match &existing {
        Some(old) => {
            let mut m = old.clone();
            merge(&mut m, &patch);
            if let Some(refs) = m["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| !dropped.iter().any(|u| r["uid"] == json!(u)));
            }
            m
        }
        None => {
            patch["metadata"]["namespace"] = json!(namespace);
            patch["metadata"]["name"] = json!(name);
            if resource == "services" && patch["spec"]["clusterIP"].is_null() {
                patch["spec"]["clusterIP"] = if db.loopback_lab {
                    json!("127.0.0.1")
                } else {
                    db.cluster_ips += 1;
                    json!(format!(
                        "10.96.{}.{}",
                        db.cluster_ips / 256,
                        db.cluster_ips % 256
                    ))
                };
            }
            patch
        }
    };
    if existing.as_ref() == Some(&merged) {
        return reply(StatusCode::OK, merged);
    }
    let kind = if existing.is_some() {
        "MODIFIED"
    } else {
        "ADDED"
    };
    if existing.is_none() {
        db.requests.push(Request {
            verb: "create".into(),
            resource: resource.into(),
            namespace: Some(namespace.clone()),
        });
    }
    if let Some(old) = &existing {
        merged["metadata"]["uid"] = old["metadata"]["uid"].clone();
    }
    let mut changes = vec![db.store(resource, key, merged, kind)];
    // The kube-proxy stand-in: the Service's VIP is its first endpoint.
    if resource == "endpointslices" && db.loopback_lab {
        let o = &changes[0].object;
        let svc = o["metadata"]["labels"]["kubernetes.io/service-name"].as_str();
        let ip = o["endpoints"][0]["addresses"][0].as_str();
        if let (Some(svc), Some(ip)) = (svc, ip) {
            let skey = ("services".to_string(), namespace, svc.to_string());
            if let Some(mut svc_obj) = db.objects.get(&skey).cloned()
                && svc_obj["spec"]["clusterIP"] != json!(ip)
            {
                svc_obj["spec"]["clusterIP"] = json!(ip);
                changes.push(db.store("services", skey, svc_obj, "MODIFIED"));
            }
        }
    }
    drop(db);
    let out = changes[0].object.clone();
    for c in changes {
        let _ = s.events.send(c);
    }
    reply(
        if kind == "ADDED" {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        out,
    )
}

/// What the real server's validation refuses in an apply, as its message:
/// endpoint addresses in the loopback or link-local ranges (or
/// unspecified), and a changed `spec.clusterIP`.
fn invalid(db: &Db, resource: &str, existing: Option<&Value>, patch: &Value) -> Option<String> {
    match resource {
        "endpointslices" => {
            let addresses = patch["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
                .filter_map(Value::as_str);
            for (i, a) in addresses.enumerate() {
                let ip: std::net::IpAddr = a.parse().ok()?;
                let link_local = match ip {
                    std::net::IpAddr::V4(v4) => v4.is_link_local(),
                    std::net::IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
                };
                if ip.is_unspecified() || link_local || (ip.is_loopback() && !db.loopback_lab) {
                    return Some(format!(
                        "EndpointSlice.discovery.k8s.io is invalid: endpoints[{i}].addresses[0]: Invalid value: \"{a}\": may not be in the loopback range (127.0.0.0/8, ::1/128), the link-local range or unspecified"
                    ));
                }
            }
            None
        }
        "services" => {
            let old = existing?["spec"]["clusterIP"].as_str()?;
            let new = patch["spec"]["clusterIP"].as_str()?;
            (old != new).then(|| {
                format!("Service is invalid: spec.clusterIP: Invalid value: \"{new}\": field is immutable")
            })
        }
        _ => None,
    }
}

/// Merges an applied configuration: maps key by key, lists replaced, except
/// owner references, which merge by uid as Kubernetes declares.
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if k == "ownerReferences" {
                    let mut refs = a
                        .get(k)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for r in v.as_array().into_iter().flatten() {
                        refs.retain(|x| x["uid"] != r["uid"]);
                        refs.push(r.clone());
                    }
                    a.insert(k.clone(), Value::Array(refs));
                } else if k == "resourceVersion" || k == "uid" {
                    continue;
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}
