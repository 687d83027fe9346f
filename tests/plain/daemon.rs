//! `tailprobe run`: endpoints, histograms that merge, clean stop on SIGTERM.

use crate::common;

use std::time::Duration;

use common::{Behaviour, Server, TempDir, free_port, get};
use tailprobe::stats::Latency;

#[tokio::test(flavor = "multi_thread")]
async fn serves_metrics_and_histograms_and_stops_on_sigterm() {
    let ok = Server::start(Behaviour::ok()).await;
    let stuck = Server::start(Behaviour::Hang).await;
    let dir = TempDir::new("daemon");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node2\"\n[probe]\ninterval = \"50ms\"\njitter = \"0s\"\n[server]\nlisten = \"{listen}\"\n\
             [[target]]\nname = \"far\"\nurl = \"{}\"\nnode = \"node1\"\n\
             [[target]]\nname = \"stuck\"\nurl = \"{}\"\nnode = \"node1\"\ninterval = \"300ms\"\n",
            ok.url("/"),
            stuck.url("/")
        ),
    );
    let (mut child, mut stderr) = common::daemon(&cfg, &[]);
    common::wait_for_line(&mut stderr, "Probing.", Duration::from_secs(10)).await;
    assert_eq!(get(&listen, "/healthz").await.0, 200);
    assert_eq!(get(&listen, "/readyz").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let (status, _, metrics) = get(&listen, "/metrics").await;
    assert_eq!(status, 200);
    let ok_line = metrics
        .lines()
        .find(|l| {
            l.starts_with("tailprobe_probes_total{")
                && l.contains("target=\"far\"")
                && l.contains("outcome=\"ok\"")
        })
        .expect(&metrics);
    assert!(ok_line.contains("path=\"cross-node\"") && ok_line.contains("source_node=\"node2\""));
    let n: f64 = ok_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 10.0, "{ok_line}");
    assert!(
        metrics.contains("le=\"62.95\"") && metrics.contains("le=\"66.9\""),
        "the 63 s rung has its bucket"
    );
    let gauge = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).expect(name);
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let stuck_in_flight = gauge("tailprobe_probes_in_flight ");
    assert!(
        stuck_in_flight >= 2,
        "stuck probes overlap: {stuck_in_flight}"
    );

    // Two reads of the histograms merge into exactly their summed counts.
    let (_, _, a) = get(&listen, "/api/v1/histograms").await;
    let (_, _, b) = get(&listen, "/api/v1/histograms?window=1m").await;
    let count = |doc: &str| -> (u64, Latency) {
        let v: serde_json::Value = serde_json::from_str(doc).unwrap();
        let far = v["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["target"] == "far")
            .unwrap()
            .clone();
        let h = Latency::from_base64(far["histograms"]["total"].as_str().unwrap()).unwrap();
        (far["samples"].as_u64().unwrap(), h)
    };
    let ((na, mut ha), (_, hb)) = (count(&a), count(&b));
    assert_eq!(ha.len(), na);
    let (la, lb) = (ha.len(), hb.len());
    ha.merge(&hb).unwrap();
    assert_eq!(ha.len(), la + lb);
    assert_eq!(get(&listen, "/api/v1/histograms?window=2h").await.0, 400);

    common::terminate(child.id().unwrap());
    let mut rest = String::new();
    while let Ok(Some(line)) = stderr.next_line().await {
        rest += &line;
        rest += "\n";
    }
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    let cancelled: u64 = rest
        .split("cancelled_probes=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect(&rest);
    // 1.2 s at a 300 ms interval started at least three stuck probes; none
    // can end on its own (135 s timeout), so each must be counted cancelled.
    assert!(
        cancelled >= 3,
        "in-flight probes were cancelled and counted: {rest}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_judges_its_window_and_serves_findings() {
    // The kernel drops every SYN to this listener: each probe retransmits
    // once at 1 s and gives up at 1.5 s.
    let hole = common::SynBlackhole::new();
    let dir = TempDir::new("daemon-findings");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node2\"\n[probe]\ninterval = \"200ms\"\njitter = \"0s\"\ntimeout = \"1500ms\"\n\
             [server]\nlisten = \"{listen}\"\n[detect]\ninterval = \"1s\"\n\
             [[target]]\nname = \"lossy\"\nurl = \"http://{}/\"\nnode = \"node1\"\n",
            hole.addr
        ),
    );
    let (mut child, mut stderr) = common::daemon(&cfg, &[]);
    let raised =
        common::wait_for_line(&mut stderr, "Finding raised.", Duration::from_secs(20)).await;
    assert!(raised.contains("syn-retransmit-ladder"), "{raised}");

    let (status, _, body) = get(&listen, "/api/v1/findings").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["source_node"], "node2");
    assert!(doc["facts"]["kernel"].is_string(), "{doc}");
    let f = &doc["findings"][0];
    assert_eq!(f["kind"], "syn-retransmit-ladder", "{doc}");
    assert!(
        f["evidence"][0]
            .as_str()
            .unwrap()
            .contains("gave up after every SYN was lost"),
        "{f}"
    );
    let (_, _, metrics) = get(&listen, "/metrics").await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tailprobe_findings{kind=\"syn-retransmit-ladder\"")
                && l.ends_with(" 1")
        ),
        "{metrics}"
    );
    common::terminate(child.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// The value of the first sample line that starts with `prefix`, 0 if none.
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_keep_their_schedule_while_the_histogram_api_is_hammered() {
    let ok = Server::start(Behaviour::ok()).await;
    let dir = TempDir::new("daemon-hammer");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut text = format!(
        "node = \"node2\"\n[probe]\ninterval = \"50ms\"\njitter = \"0s\"\n[server]\nlisten = \"{listen}\"\n"
    );
    for i in 0..20 {
        text += &format!(
            "[[target]]\nname = \"t{i}\"\nurl = \"{}\"\nnode = \"node1\"\n",
            ok.url("/")
        );
    }
    let cfg = dir.file("c.toml", &text);
    let (mut child, mut stderr) = common::daemon(&cfg, &[]);
    common::wait_for_line(&mut stderr, "Probing.", Duration::from_secs(10)).await;
    // Let every series grow a window before the readers start.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = get(&listen, "/metrics").await.2;
    // Eight readers, each as fast as it can for 3 s: cumulative and
    // windowed histograms of all 20 series, over and over.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let listen = listen.clone();
            tokio::spawn(async move {
                let mut reads = 0u32;
                while tokio::time::Instant::now() < until {
                    let path = if i % 2 == 0 {
                        "/api/v1/histograms"
                    } else {
                        "/api/v1/histograms?window=10m"
                    };
                    assert_eq!(get(&listen, path).await.0, 200);
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    tokio::time::sleep_until(until).await;
    let after = get(&listen, "/metrics").await.2;
    let delta = |prefix: &str| sample(&after, prefix) - sample(&before, prefix);
    let started = delta("tailprobe_probe_start_lag_seconds_count");
    let late = started - delta("tailprobe_probe_start_lag_seconds_bucket{le=\"0.05\"}");
    assert!(reads >= 40, "the readers were served: {reads} reads");
    // 20 targets every 50 ms for 3 s: 1,200 probes on schedule.
    assert!(started >= 1000.0, "{started} probes started in 3 s");
    assert!(
        late <= started / 100.0,
        "{late} of {started} probes started over 50 ms late while {reads} histogram reads ran"
    );
    assert_eq!(
        sample(&after, "tailprobe_probes_skipped_total"),
        0.0,
        "no probe was skipped"
    );
    common::terminate(child.id().unwrap());
    let _ = child.wait().await;
}
