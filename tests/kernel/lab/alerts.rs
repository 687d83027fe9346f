//! Findings as OTLP alert records, from a daemon and from one-shot runs:
//! raised, in progress, final, resolved.

use super::*;

/// A daemon in node1 with a real OTLP receiver beside it (inside the lab,
/// where its probes run): a lab fault raises an alert record naming the
/// path, in progress while the probes wait on their rung, confirmed once
/// they land; clearing the fault resolves it.
#[test]
fn a_lab_fault_raises_and_clears_an_otlp_alert_as_root() {
    use common::otlp::{Receiver, attr, log_records, phase};
    let lab = Lab::up(&["--syn-linear-timeouts", "0"]);
    let ns = format!("{}-n1", lab.name);
    let rx = Receiver::start_in(Some(&ns), 14317, 14318);
    let dir = common::TempDir::new("lab-otlp");
    let cfg = dir.file(
        "c.toml",
        "node = \"node1\"\n[probe]\ninterval = \"200ms\"\njitter = \"0s\"\n[server]\nlisten = \"127.0.0.1:9798\"\n\
         [detect]\ninterval = \"500ms\"\nwindow = \"5s\"\n\
         [otlp]\nendpoint = \"http://127.0.0.1:14318\"\nhealthy_sample_ratio = 0.0\n\
         [[target]]\nname = \"svc-node2\"\nurl = \"http://10.96.0.12/\"\nnode = \"node2\"\n",
    );
    let _daemon = Daemon::start_in(&ns, &cfg);
    let wait = |done: &dyn Fn(&[serde_json::Value]) -> bool| {
        let t0 = std::time::Instant::now();
        loop {
            let rs = log_records(&rx);
            if done(&rs) || t0.elapsed() > std::time::Duration::from_secs(30) {
                return rs;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let body = |r: &serde_json::Value| r["body"]["stringValue"].as_str().unwrap_or("").to_string();
    let final_ladder = |r: &serde_json::Value| {
        attr(&r["attributes"], "tailprobe.finding.status").as_deref() == Some("final")
            && body(r).contains("3 s (2 SYNs lost)")
    };
    lab.run(&[
        "lab", "fault", "drop-syn", "--from", "node1", "--to", "node2", "--count", "2",
    ]);
    let rs = wait(&|rs| rs.iter().any(final_ladder));
    let raised: Vec<&serde_json::Value> = rs
        .iter()
        .filter(|r| phase(r).as_deref() == Some("raised"))
        .collect();
    assert_eq!(raised.len(), 1, "raised once: {rs:#?}");
    let first = body(raised[0]);
    assert!(
        first.contains("syn-retransmit-ladder: svc-node2 from node1 (host network) to node2"),
        "{first}"
    );
    // The probes land on the 3 s rung about as soon as a provisional
    // finding settles: raised final at once, or in progress and then
    // confirmed in place.
    let fin = if final_ladder(raised[0]) {
        raised[0]
    } else {
        assert!(
            first.starts_with("Raised, in progress: ")
                && first.contains("still waiting after losing at least"),
            "{first}"
        );
        assert_eq!(raised[0]["severityText"], "WARN", "{:#}", raised[0]);
        let updated = rs
            .iter()
            .find(|r| phase(r).as_deref() == Some("updated"))
            .unwrap_or_else(|| panic!("the alert is updated when final: {rs:#?}"));
        assert!(body(updated).starts_with("Confirmed: "), "{updated:#}");
        updated
    };
    assert!(final_ladder(fin), "{fin:#}");
    assert_eq!(
        attr(&fin["attributes"], "tailprobe.alert.key"),
        attr(&raised[0]["attributes"], "tailprobe.alert.key"),
        "one alert"
    );
    lab.run(&["lab", "fault", "clear"]);
    let rs = wait(&|rs| rs.iter().any(|r| phase(r).as_deref() == Some("resolved")));
    assert!(
        rs.iter().any(|r| phase(r).as_deref() == Some("resolved")),
        "a resolve record after the fault is cleared: {rs:#?}"
    );
}

/// The checksum bug on every node (classic ladder, no rehash) and a daemon
/// in node1 probing every second, judging every 30 s: the stalls are a
/// provisional cross-node finding seconds after the first lost SYN, with
/// an alert; `matrix --until-verdict` answers in seconds; at the 63 s rung
/// the finding becomes final in place, and the alert is updated, not
/// raised again.
#[test]
fn the_checksum_bug_is_a_verdict_seconds_after_the_first_lost_syn_as_root() {
    use common::otlp::{Receiver, attr, log_records, phase};
    use std::time::{Duration, Instant};
    let lab = Lab::up_alone(&["--syn-linear-timeouts", "0", "--txrehash", "0"]);
    for on in ["node1", "node2", "node3"] {
        lab.run(&["lab", "fault", "vxlan-csum-bug", "--on", on]);
    }
    let ns = format!("{}-n1", lab.name);
    let rx = Receiver::start_in(Some(&ns), 14317, 14318);
    let dir = common::TempDir::new("lab-early");
    let mut cfg = String::from(
        "node = \"node1\"\n[probe]\ninterval = \"1s\"\n[server]\nlisten = \"127.0.0.1:9798\"\n\
         [detect]\ninterval = \"30s\"\n\
         [otlp]\nendpoint = \"http://127.0.0.1:14318\"\nhealthy_sample_ratio = 0.0\n",
    );
    for n in 1..=3 {
        cfg += &format!(
            "[[target]]\nname = \"svc-node{n}\"\nurl = \"http://10.96.0.1{n}/\"\nnode = \"node{n}\"\n"
        );
    }
    let cfg = dir.file("c.toml", &cfg);
    let started = Instant::now();
    let _daemon = Daemon::start_in(&ns, &cfg);
    let metrics = || {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "curl", "-sf", "--max-time", "2"])
            .arg("http://127.0.0.1:9798/metrics")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let findings = || {
        curl_in(&ns, "http://127.0.0.1:9798/api/v1/findings")
            .and_then(|v| v["findings"].as_array().cloned())
            .unwrap_or_default()
    };
    // The first stall the prober reports, then the first finding.
    let (mut first_stall, mut stall_labels) = (None, String::new());
    let early = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no finding 30 s after start"
        );
        let m = metrics();
        if first_stall.is_none()
            && let Some(line) = m
                .lines()
                .find(|l| l.starts_with("tailprobe_probes_stalled{"))
        {
            first_stall = Some(Instant::now());
            stall_labels = line.to_string();
        }
        let f = findings();
        if !f.is_empty() {
            break f;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let found_at = Instant::now();
    let first_stall = first_stall.expect("a stall was reported before the finding");
    let to_verdict = found_at - first_stall;
    eprintln!(
        "first stall seen {:.1} s after start; finding {:.1} s after it",
        (first_stall - started).as_secs_f64(),
        to_verdict.as_secs_f64()
    );
    assert!(to_verdict <= Duration::from_secs(5), "{to_verdict:?}");
    assert!(
        stall_labels.contains("path=\"cross-node\"") && stall_labels.contains("syns_lost=\""),
        "{stall_labels}"
    );
    assert_eq!(early.len(), 1, "{early:#?}");
    let f = &early[0];
    assert_eq!(f["kind"], "syn-retransmit-ladder", "{f:#}");
    assert_eq!(f["provisional"], true, "{f:#}");
    assert_eq!(f["path"], "cross-node", "{f:#}");
    assert_eq!(f["severity"], "warn", "{f:#}");
    assert!(!f["waiting"].as_array().unwrap().is_empty(), "{f:#}");
    assert_eq!(
        f["likely_causes"][0]["id"], "vxlan-checksum-offload",
        "{f:#}"
    );

    // The alert record, in progress.
    let raised = loop {
        let rs: Vec<serde_json::Value> = log_records(&rx)
            .into_iter()
            .filter(|r| phase(r).as_deref() == Some("raised"))
            .collect();
        if !rs.is_empty() || first_stall.elapsed() > Duration::from_secs(6) {
            break rs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        first_stall.elapsed() <= Duration::from_secs(6) && raised.len() == 1,
        "an alert record within 6 s of the first stall: {raised:#?}"
    );
    assert_eq!(
        attr(&raised[0]["attributes"], "tailprobe.finding.status").as_deref(),
        Some("in-progress")
    );
    let key = attr(&raised[0]["attributes"], "tailprobe.finding.scope_key").unwrap();

    // A one-shot run from the same node answers in seconds.
    let plan = tailprobe::lab::Plan::new(&lab.name, 3).unwrap();
    let mcfg = dir.file(
        "m.toml",
        &tailprobe::lab::run::node_config(&plan, 1, SourceKind::Host, 20),
    );
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(bin())
        .args(["matrix", "--until-verdict", "--format", "json", "--config"])
        .arg(&mcfg)
        .output()
        .unwrap();
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a finding: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("matrix --until-verdict took {:.1} s", took.as_secs_f64());
    assert!(took <= Duration::from_secs(10), "{took:?}");
    let r: tailprobe::wire::report::MatrixReport = serde_json::from_str(&stdout).unwrap();
    let e = r.ended_early.as_ref().expect("ended on its verdict");
    assert!(e.waiting > 0, "{e:?}");
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::SynRetransmitLadder
                && f.path == Some(PathKind::CrossNode)
                && f.likely_causes[0].id == CauseId::VxlanChecksumOffload),
        "{:#?}",
        r.findings
    );
    for c in r.cells.iter().filter(|c| c.dims.via() == Via::Service) {
        match c.dims.path {
            PathKind::CrossNode => assert!(!c.waiting.is_empty(), "{c:?}"),
            PathKind::SameNode => assert!(c.waiting.is_empty(), "{c:?}"),
            // A Service with a backend on every node: its destination is
            // known only from the answer; most of its probes cross nodes.
            PathKind::Unknown => {}
        }
    }

    // Final at the 63 s rung: the same finding, upgraded in place.
    let fin = loop {
        let f = findings();
        if f.iter().any(|f| f["provisional"] == false) {
            break f;
        }
        assert!(
            started.elapsed() < Duration::from_secs(110),
            "not final at 110 s: {f:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!("final {:.1} s after start", started.elapsed().as_secs_f64());
    assert_eq!(fin.len(), 1, "{fin:#?}");
    assert!(
        fin[0]["rungs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["seconds"] == 63.0 && r["retransmits"] == 6),
        "{:#}",
        fin[0]
    );
    let rs = loop {
        let rs = log_records(&rx);
        if rs.iter().any(|r| phase(r).as_deref() == Some("updated"))
            || started.elapsed() > Duration::from_secs(120)
        {
            break rs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let count = |p: &str| rs.iter().filter(|r| phase(r).as_deref() == Some(p)).count();
    assert_eq!(
        (count("raised"), count("updated"), count("resolved")),
        (1, 1, 0),
        "raised once, updated once: {rs:#?}"
    );
    let updated = rs
        .iter()
        .find(|r| phase(r).as_deref() == Some("updated"))
        .unwrap();
    assert_eq!(
        attr(&updated["attributes"], "tailprobe.finding.scope_key").as_deref(),
        Some(key.as_str()),
        "the same identity, upgraded in place"
    );
    assert_eq!(updated["severityText"], "ERROR", "{updated:#}");
}

/// The alert records a one-shot run sent: (finding kind, trace id) for each,
/// once the receiver has them; every trace id is one of the run's spans.
fn raised_findings(rx: &common::otlp::Receiver) -> Vec<String> {
    use common::otlp::{attr, log_records, phase};
    // Up to 10 s for the records; the checks below say what is missing.
    common::poll(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(100),
        || (!log_records(rx).is_empty()).then_some(()),
    );
    let records = log_records(rx);
    let spans = rx.spans("http");
    records
        .iter()
        .map(|r| {
            assert_eq!(phase(r).as_deref(), Some("raised"), "{r:#}");
            let trace = r["traceId"].as_str().expect("an example trace");
            assert!(
                spans.iter().any(|(_, s)| s["traceId"] == trace),
                "the example trace was exported: {r:#}"
            );
            attr(&r["attributes"], "tailprobe.finding.kind").unwrap()
        })
        .collect()
}

/// `lab matrix` and `lab demo` record through the same fan-out as the
/// daemon: their findings reach a real OTLP receiver as alert records,
/// linked to the probe traces that show them.
#[test]
fn lab_matrix_and_demo_send_their_findings_as_otlp_alerts_as_root() {
    let env = |rx: &common::otlp::Receiver| {
        [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", rx.http),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
        ]
    };
    let lab = Lab::up(&["--syn-linear-timeouts", "0"]);
    lab.run(&[
        "lab", "fault", "drop-syn", "--from", "node2", "--to", "node1", "--count", "2",
    ]);
    let rx = common::otlp::Receiver::start();
    let out = Command::new(bin())
        .args(["lab", "matrix", "--name", &lab.name, "--samples", "3"])
        .envs(env(&rx))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a finding: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kinds = raised_findings(&rx);
    assert!(
        kinds.contains(&"syn-retransmit-ladder".to_string()),
        "{kinds:?}"
    );
    drop(lab);

    let rx = common::otlp::Receiver::start();
    let name = format!("td{}", std::process::id() % 100_000);
    let dir = common::TempDir::new("lab-demo-html");
    let page = dir.0.join("demo.html");
    let out = Command::new(bin())
        .args(["lab", "demo", "--fault", "drop-syn", "--samples", "3"])
        .args(["--name", &name, "--html"])
        .arg(&page)
        .envs(env(&rx))
        .output()
        .unwrap();
    let _ = tailprobe(&["lab", "down", "--name", &name]);
    // The page, the demo's verdict and every prober's cells inside.
    let html = std::fs::read_to_string(&page).unwrap();
    let start = html.find("type=\"application/json\">").unwrap() + 24;
    let end = start + html[start..].find("</script>").unwrap();
    let m: tailprobe::wire::report::ClusterMatrix =
        serde_json::from_str(&html[start..end]).unwrap();
    assert!(
        m.findings
            .iter()
            .any(|f| f.kind == FindingKind::SynRetransmitLadder),
        "{:#?}",
        m.findings
    );
    let sources: std::collections::BTreeSet<&str> =
        m.cells.iter().map(|c| c.prober.as_str()).collect();
    assert_eq!(sources.len(), 6, "three nodes, host and pod: {sources:?}");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kinds = raised_findings(&rx);
    assert!(
        kinds.contains(&"syn-retransmit-ladder".to_string()),
        "{kinds:?}"
    );
}
