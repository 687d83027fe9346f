//! `tailprobe hub` and `tailprobe cluster matrix` over real probers on
//! loopback: every prober's cells in one matrix, one verdict over all of
//! them; a prober that stops answering goes stale (its data still judged,
//! and said), then unreachable; a restarted hub loses nothing.

use crate::common;

use std::time::Duration;

use common::{Behaviour, Server, TempDir, free_port, get};
use serde_json::Value;

/// A prober on `node` probing one loopback target per node in `nodes`.
fn prober_config(node: &str, listen: &str, target: &str, nodes: &[&str]) -> String {
    let mut c = format!(
        "node = \"{node}\"\n[probe]\ninterval = \"100ms\"\njitter = \"0s\"\n\
         [server]\nlisten = \"{listen}\"\n[detect]\ninterval = \"200ms\"\n"
    );
    for n in nodes {
        c += &format!("[[target]]\nname = \"svc-{n}\"\nurl = \"{target}\"\nnode = \"{n}\"\n");
    }
    c
}

fn hub(cfg: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(common::bin())
        .args(["hub", "--config", cfg.to_str().unwrap()])
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn json(addr: &str, path: &str) -> Value {
    let (status, _, body) = get(addr, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// A GET that reports a refused connection instead of panicking: the hub
/// may still be starting.
async fn try_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    Some((status, body.to_string()))
}

/// Polls `path` until `ok` holds, for up to `within`.
async fn until(addr: &str, path: &str, within: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let ok = &ok;
    common::eventually_async(path, within, Duration::from_millis(200), || async move {
        let Ok(Some((200, body))) =
            tokio::time::timeout(Duration::from_secs(2), try_get(addr, path)).await
        else {
            return Err("no answer".to_string());
        };
        match serde_json::from_str::<Value>(&body) {
            Ok(v) if ok(&v) => Ok(v),
            Ok(v) => Err(format!("{v:#}")),
            Err(e) => Err(format!("{e}: {body}")),
        }
    })
    .await
}

fn state_of<'a>(probers: &'a Value, node: &str) -> &'a str {
    probers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["source_node"] == node)
        .and_then(|p| p["state"].as_str())
        .unwrap_or("none")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_merges_every_prober_and_says_what_is_missing() {
    let target = Server::start(Behaviour::ok()).await;
    let dir = TempDir::new("hub");
    let nodes = ["n1", "n2", "n3"];
    let mut probers = Vec::new();
    let mut urls = Vec::new();
    for n in nodes {
        let listen = format!("127.0.0.1:{}", free_port());
        let cfg = dir.file(
            &format!("{n}.toml"),
            &prober_config(n, &listen, &target.url("/"), &nodes),
        );
        // Its log is kept open: a closed pipe would stop it.
        probers.push(common::daemon(&cfg, &[]));
        urls.push(format!("http://{listen}"));
    }
    // A prober that never answers.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let hub_listen = format!("127.0.0.1:{}", free_port());
    let list = urls
        .iter()
        .chain([&dead])
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let hub_cfg = dir.file(
        "hub.toml",
        &format!(
            "[server]\nlisten = \"{hub_listen}\"\n[hub]\nprobers = [{list}]\n\
             interval = \"1s\"\ntimeout = \"500ms\"\nforget_after = \"4s\"\n"
        ),
    );
    let mut h = hub(&hub_cfg);

    // Every prober's cells in one matrix: 3 sources x 3 destinations.
    let m = until(
        &hub_listen,
        "/api/v1/matrix",
        Duration::from_secs(20),
        |m| {
            m["cells"].as_array().is_some_and(|c| c.len() == 9)
                && m["cells"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| c["samples"].as_u64() > Some(2))
        },
    )
    .await;
    assert_eq!(m["probers"]["up"], 3, "{m:#}");
    assert_eq!(m["probers"]["unreachable"], 1, "{m:#}");
    assert!(
        m["rests_on"]
            .as_str()
            .unwrap()
            .starts_with("judged on 3 of 4 probers"),
        "{m:#}"
    );
    let sources: std::collections::BTreeSet<&str> = m["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source_node"].as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 3);
    assert!(m["cells"].as_array().unwrap().iter().all(|c| {
        c["prober"]
            .as_str()
            .is_some_and(|p| urls.contains(&p.to_string()))
    }));
    let p = json(&hub_listen, "/api/v1/probers").await;
    let dead_status = p
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["url"] == dead.as_str())
        .unwrap();
    assert_eq!(dead_status["state"], "unreachable");
    assert!(
        dead_status["error"]
            .as_str()
            .is_some_and(|e| e.contains(&dead)),
        "{dead_status:#}"
    );
    for s in p.as_array().unwrap().iter().filter(|s| s["state"] == "up") {
        let bytes = s["bytes"].as_u64().unwrap();
        assert!(bytes > 0 && bytes < 32 << 10, "gzipped on the wire: {s:#}");
    }
    let (_, _, metrics) = get(&hub_listen, "/metrics").await;
    assert!(
        metrics.contains("tailprobe_hub_probers{state=\"up\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tailprobe_hub_pulled_bytes_total"),
        "{metrics}"
    );

    // n3 stops: stale, its last data still judged and said; then unreachable.
    let (mut n3, _) = probers.pop().unwrap();
    n3.kill().await.unwrap();
    let p = until(
        &hub_listen,
        "/api/v1/probers",
        Duration::from_secs(10),
        |p| state_of(p, "n3") == "stale",
    )
    .await;
    // The prober states are published as a round pulls, its matrix once
    // judged: the stale prober shows there by the round's end.
    let m = until(&hub_listen, "/api/v1/matrix", Duration::from_secs(5), |m| {
        m["rests_on"]
            .as_str()
            .is_some_and(|r| r.contains("1 stale (last data kept: n3 host)"))
    })
    .await;
    assert_eq!(state_of(&p, "n3"), "stale");
    assert!(
        m["cells"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["source_node"] == "n3")
    );
    until(
        &hub_listen,
        "/api/v1/probers",
        Duration::from_secs(10),
        |p| state_of(p, "n3") == "unreachable",
    )
    .await;
    let m = until(&hub_listen, "/api/v1/matrix", Duration::from_secs(5), |m| {
        m["probers"]["unreachable"] == 2
    })
    .await;
    assert!(
        !m["cells"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["source_node"] == "n3"),
        "{m:#}"
    );
    assert!(
        m["rests_on"]
            .as_str()
            .unwrap()
            .starts_with("judged on 2 of 4"),
        "{m:#}"
    );

    // A restarted hub loses nothing: the probers hold the data.
    let before: Vec<Value> = m["cells"].as_array().unwrap().clone();
    h.kill().await.unwrap();
    let _h = hub(&hub_cfg);
    let m = until(
        &hub_listen,
        "/api/v1/matrix",
        Duration::from_secs(20),
        |m| m["cells"].as_array().is_some_and(|c| c.len() == 6),
    )
    .await;
    for c in &before {
        let again = m["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["source_node"] == c["source_node"] && x["target"] == c["target"])
            .unwrap_or_else(|| panic!("lost {c:#}"));
        assert!(
            again["samples"].as_u64() >= c["samples"].as_u64(),
            "{again:#} {c:#}"
        );
    }

    // The one-shot cluster matrix over the same probers, a fresh round of
    // 4 probes per target: exit 0 when every one answers and all is
    // healthy, 3 when too few answer.
    let live = urls[..2].join(",");
    let out = tokio::process::Command::new(common::bin())
        .args(["cluster", "matrix", "--probers", &live, "--format", "json"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let one: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(one["cells"].as_array().unwrap().len(), 6);
    let with_dead = format!("{live},{dead}");
    let out = tokio::process::Command::new(common::bin())
        .args(["cluster", "matrix", "--probers", &with_dead])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("judged on 2 of 3 probers") && text.contains("n1 host"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 of 3 probers answered"));
    let out = tokio::process::Command::new(common::bin())
        .args([
            "cluster",
            "matrix",
            "--probers",
            &with_dead,
            "--min-answered",
            "2",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a silent prober is not healthy");
}

/// A round is one at a time per prober, and bounded: a second request while
/// one runs gets 429, too many samples 400.
#[tokio::test(flavor = "multi_thread")]
async fn a_prober_runs_one_bounded_round_at_a_time() {
    let hang = Server::start(Behaviour::Hang).await;
    let dir = TempDir::new("round");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "p.toml",
        &format!(
            "node = \"n1\"\n[server]\nlisten = \"{listen}\"\n[[target]]\nname = \"slow\"\nurl = \"{}\"\ntimeout = \"2s\"\n",
            hang.url("/")
        ),
    );
    let _p = common::daemon(&cfg, &[]);
    let client = {
        tailprobe::install_crypto();
        reqwest::Client::builder().no_proxy().build().unwrap()
    };
    let url = format!("http://{listen}/api/v1/round?samples=2");
    common::eventually_async(
        "the prober ready",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            match try_get(&listen, "/readyz").await.map(|r| r.0) {
                Some(200) => Ok(()),
                status => Err(format!("/readyz: {status:?}")),
            }
        },
    )
    .await;
    let first = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { client.post(&url).send().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = client.post(&url).send().await.unwrap();
    assert_eq!(second.status().as_u16(), 429);
    assert!(second.headers().contains_key("retry-after"));
    let first = first.await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let doc: Value = serde_json::from_slice(&first.bytes().await.unwrap()).unwrap();
    assert_eq!(doc["series"][0]["samples"].as_array().unwrap().len(), 2);
    assert!(doc["facts"]["node"] == "n1", "{doc:#}");
    let too_many = client
        .post(format!("http://{listen}/api/v1/round?samples=21"))
        .send()
        .await
        .unwrap();
    assert_eq!(too_many.status().as_u16(), 400);
}

/// Cluster findings go out over OTLP as alert records from the hub
/// (`tailprobe.alert.source` = hub), to a real receiver.
#[tokio::test(flavor = "multi_thread")]
async fn the_hub_sends_cluster_findings_as_alerts_from_the_hub() {
    use common::otlp::{Receiver, attr, log_records};
    let rx = Receiver::start();
    let dir = TempDir::new("hub-otlp");
    let listen = format!("127.0.0.1:{}", free_port());
    // A target nobody serves: every probe is refused, a finding.
    let cfg = dir.file(
        "p.toml",
        &format!(
            "node = \"n1\"\n[probe]\ninterval = \"100ms\"\n[server]\nlisten = \"{listen}\"\n\
             [[target]]\nname = \"gone\"\nurl = \"http://127.0.0.1:{}/\"\nnode = \"n2\"\n",
            free_port()
        ),
    );
    let _p = common::daemon(&cfg, &[]);
    let hub_cfg = dir.file(
        "hub.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n[hub]\nprobers = [\"http://{listen}\"]\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
             [otlp]\nendpoint = \"http://127.0.0.1:{}\"\nprotocol = \"http/protobuf\"\n",
            free_port(),
            rx.http
        ),
    );
    let mut h = hub(&hub_cfg);
    let record = common::eventually_async(
        "an alert record from the hub",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            log_records(&rx)
                .into_iter()
                .find(|r| {
                    attr(&r["attributes"], "tailprobe.finding.kind").as_deref()
                        == Some("probe-failures")
                })
                .ok_or_else(|| "no probe-failures record".to_string())
        },
    )
    .await;
    assert_eq!(
        attr(&record["attributes"], "tailprobe.alert.source").as_deref(),
        Some("hub"),
        "{record:#}"
    );
    h.kill().await.unwrap();
}

/// A prober that only serves one window document, whatever is asked.
async fn serve_doc(doc: tailprobe::wire::window::WindowDoc) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = serde_json::to_vec(&doc).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A prober's window with its stalls in progress: its cross-node probes
/// have landed nothing yet and wait after losing 2 SYNs; same-node is
/// clean. `cluster matrix --until-verdict` answers from the stalls, in
/// progress, seconds before any rung completes.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_matrix_until_verdict_judges_the_stalls_in_progress() {
    use std::time::SystemTime;
    use tailprobe::model::{Dims, Outcome, PathKind, SourceKind};
    use tailprobe::wire::window::{VERSION, WindowDoc, WindowSeries, WirePending, WireSample};
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let dims = |dst: &str| Dims {
        source_node: "node1".into(),
        source_kind: SourceKind::Host,
        destination_node: Some(dst.into()),
        target: format!("svc-{dst}").into(),
        path: if dst == "node1" {
            PathKind::SameNode
        } else {
            PathKind::CrossNode
        },
        family: Default::default(),
    };
    let series = ["node1", "node2", "node3"]
        .into_iter()
        .map(|dst| {
            let cross = dst != "node1";
            WindowSeries {
                cert_not_after: None,
                dims: dims(dst),
                url: format!("http://svc-{dst}/"),
                body_bytes: 2,
                dropped: 0,
                samples: if cross {
                    vec![]
                } else {
                    (0..5)
                        .map(|i| WireSample {
                            tl: None,
                            l: None,
                            t: now_ms - 5_000 + i * 1_000,
                            dns: None,
                            c: Some(700),
                            fb: Some(900),
                            z: 1_000,
                            o: Outcome::Ok,
                            r: 0,
                            b: 2,
                            x: None,
                        })
                        .collect()
                },
                pending: if cross {
                    (0..3)
                        .map(|i| WirePending {
                            t: now_ms - 5_000 + i * 1_000,
                            r: 2,
                            s: 1_000,
                            w: 5_000 - i * 1_000,
                        })
                        .collect()
                } else {
                    vec![]
                },
            }
        })
        .collect();
    let url = serve_doc(WindowDoc {
        version: VERSION,
        source_node: "node1".into(),
        source_kind: SourceKind::Host,
        generated_at: "now".into(),
        window_s: 300,
        labels: Default::default(),
        facts: None,
        series,
    })
    .await;
    let t0 = std::time::Instant::now();
    let out = tokio::process::Command::new(common::bin())
        .args(["cluster", "matrix", "--until-verdict", "--format", "json"])
        .args(["--probers", &url])
        .output()
        .await
        .unwrap();
    let took = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let m: Value = serde_json::from_str(&stdout).unwrap();
    let f = &m["findings"][0];
    assert_eq!(m["findings"].as_array().unwrap().len(), 1, "{m:#}");
    assert_eq!(
        (&f["kind"], &f["provisional"], &f["path"]),
        (
            &Value::from("syn-retransmit-ladder"),
            &Value::from(true),
            &Value::from("cross-node")
        ),
        "{f:#}"
    );
    assert_eq!(
        f["waiting"],
        serde_json::json!([{"retransmits": 2, "seconds": 3.0, "count": 6}])
    );
    let waiting: Vec<&Value> = m["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["waiting"])
        .collect();
    assert_eq!(
        waiting.iter().filter(|w| w["2"] == 3).count(),
        2,
        "{waiting:?}"
    );
    // The table marks the cells still waiting.
    let out = tokio::process::Command::new(common::bin())
        .args(["cluster", "matrix", "--until-verdict", "--probers", &url])
        .output()
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(" ~3"), "{table}");
    assert!(table.contains("in progress"), "{table}");
}
