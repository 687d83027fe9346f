//! The command line's conventions: SIGINT ends a matrix run with 130 and a
//! report marked partial, zero samples is a usage error, log levels are
//! checked, `--log-format json` writes one JSON object per line, NO_COLOR,
//! `run --passive`.

use crate::common;

use std::time::Duration;

use common::{Behaviour, Server, TempDir, bin};

#[tokio::test(flavor = "multi_thread")]
async fn sigint_ends_a_matrix_run_with_130_and_a_partial_report() {
    let ok = Server::start(Behaviour::ok()).await;
    let stuck = Server::start(Behaviour::Hang).await;
    let dir = TempDir::new("cli-int");
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"node2\"\n[matrix]\nspacing = \"1ms\"\n\
             [[target]]\nname = \"fine\"\nurl = \"{}\"\nnode = \"node1\"\n\
             [[target]]\nname = \"stuck\"\nurl = \"{}\"\nnode = \"node1\"\n",
            ok.url("/"),
            stuck.url("/")
        ),
    );
    for (format, marker) in [
        ("table", "INTERRUPTED by SIGINT"),
        ("json", "\"interrupted\": \"SIGINT\""),
    ] {
        let child = tokio::process::Command::new(bin())
            .args([
                "matrix",
                "--config",
                cfg.to_str().unwrap(),
                "--samples",
                "2",
                "--format",
                format,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // The healthy target lands; the stuck one waits on its 135 s timeout.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
            .await
            .expect("SIGINT ends the run within seconds")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{format}: {stdout}{stderr}");
        assert!(stdout.contains(marker), "{format}: {stdout}");
        assert!(stdout.contains("fine"), "what landed is reported: {stdout}");
        assert!(stderr.contains("the report is partial"), "{stderr}");
    }
}

#[test]
fn zero_samples_or_concurrency_is_a_usage_error() {
    let dir = TempDir::new("cli-zero");
    let cfg = dir.file(
        "c.toml",
        "[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/\"\n",
    );
    for (flag, said) in [
        ("--samples", "--samples 0 probes nothing"),
        ("--concurrency", "--concurrency 0 starts nothing"),
    ] {
        let out = std::process::Command::new(bin())
            .args(["matrix", "--config", cfg.to_str().unwrap(), flag, "0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(said), "{err}");
        assert!(out.stdout.is_empty(), "nothing ran, nothing is reported");
    }
}

#[test]
fn log_levels_are_checked_and_json_logs_are_one_object_per_line() {
    let dir = TempDir::new("cli-log");
    let cfg = dir.file(
        "c.toml",
        "[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/\"\n",
    );
    for bad in ["debgu", "tailprobe=loud", "info,kube=nope"] {
        let out = std::process::Command::new(bin())
            .args(["check", "--config", cfg.to_str().unwrap(), "--log", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--log {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a level"), "{err}");
    }
    for good in ["debug", "tailprobe=debug,kube=warn", "WARN"] {
        let out = std::process::Command::new(bin())
            .args(["check", "--config", cfg.to_str().unwrap(), "--log", good])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "--log {good}");
    }
    // A config error is the CLI's own line; a log line is JSON. Use a run
    // whose only probe is refused at once to make the daemon log.
    let out = std::process::Command::new(bin())
        .args([
            "matrix",
            "--config",
            cfg.to_str().unwrap(),
            "--samples",
            "1",
            "--log",
            "debug",
            "--log-format",
            "json",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!lines.is_empty(), "no JSON log line: {err}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
    assert!(!err.contains("\u{1b}["), "no escape codes: {err}");
}

/// On a terminal log lines are coloured, unless NO_COLOR is set
/// (https://no-color.org). `script` gives the process a terminal.
#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    let dir = TempDir::new("cli-color");
    let cfg = dir.file(
        "c.toml",
        "[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/\"\n",
    );
    let run = |no_color: Option<&str>| {
        let cmd = format!(
            "{} matrix --config {} --samples 1 --log debug",
            bin(),
            cfg.display()
        );
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]).env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let out = c.output().expect("script (bsdutils) runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // A colour is an SGR sequence, ESC [ digits m; the progress line's
    // erase (ESC [ 2K) is not one.
    let sgr = |s: &str| {
        s.split('\u{1b}').skip(1).any(|rest| {
            rest.strip_prefix('[').is_some_and(|r| {
                let n = r.find(|c: char| !c.is_ascii_digit() && c != ';');
                n.is_some_and(|n| n > 0 && r[n..].starts_with('m'))
            })
        })
    };
    let coloured = run(None);
    assert!(coloured.contains("DEBUG"), "{coloured}");
    assert!(sgr(&coloured), "a terminal gets colour: {coloured}");
    let plain = run(Some("1"));
    assert!(plain.contains("DEBUG"), "{plain}");
    assert!(!sgr(&plain), "NO_COLOR=1: {plain}");
    // An empty NO_COLOR does not count.
    assert!(sgr(&run(Some(""))));
}

/// `run --passive` turns passive mode on, as `[passive] enabled` does: with
/// probing off, a connect from another process to a target's address
/// becomes a `passive-host` series. Where passive mode cannot run, the
/// daemon says why and keeps running. A pod-network prober and the hub
/// refuse it.
#[tokio::test(flavor = "multi_thread")]
async fn passive_flag_turns_passive_mode_on_for_run_only() {
    let dir = TempDir::new("cli-passive");
    let port = common::free_port();
    let config = |kind: &str| {
        format!(
            "node = \"n1\"\nsource_kind = \"{kind}\"\n[probe]\nenabled = false\n[server]\nlisten = \"127.0.0.1:{port}\"\n[[target]]\nname = \"self\"\nurl = \"http://127.0.0.1:{port}/\"\nnode = \"n1\"\n"
        )
    };
    let hub = std::process::Command::new(bin())
        .args(["hub", "--config"])
        .arg(dir.file("hub.toml", "[hub]\nprobers = [\"http://127.0.0.1:9/\"]\n"))
        .arg("--passive")
        .output()
        .unwrap();
    assert_eq!(hub.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&hub.stderr).contains("--passive applies to `tailprobe run`"),
        "{}",
        String::from_utf8_lossy(&hub.stderr)
    );

    let start = |file: &std::path::Path| {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(bin())
            .args(["run", "--passive", "--config", file.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        (child, lines)
    };
    let (_pod, mut lines) = start(&dir.file("pod.toml", &config("pod")));
    common::wait_for_line(
        &mut lines,
        "Passive mode is off: it runs in the host-network prober",
        Duration::from_secs(10),
    )
    .await;
    drop(_pod);

    let (_host, mut lines) = start(&dir.file("host.toml", &config("host")));
    let addr = format!("127.0.0.1:{port}");
    if let Some(why) = tailprobe::passive::bpf::unavailable() {
        let line =
            common::wait_for_line(&mut lines, "Passive mode is off.", Duration::from_secs(10))
                .await;
        assert!(line.contains("unavailable"), "{line} ({why})");
        return;
    }
    let line = common::wait_for_line(&mut lines, "Passive mode", Duration::from_secs(10)).await;
    if line.contains("is off") {
        // Loaded only as root (or with CAP_BPF and CAP_PERFMON).
        assert!(line.contains("could not start"), "{line}");
        return;
    }
    assert!(line.contains("reads this node's connections"), "{line}");
    let series = "source_kind=\"passive-host\",destination_node=\"n1\",target=\"self\"";
    let body = common::eventually_async(
        "a passive series",
        Duration::from_secs(20),
        Duration::from_millis(300),
        || async {
            // This test's own connects: another process than the prober's.
            let (_, _, body) = common::get(&addr, "/metrics").await;
            if body.contains(series) {
                Ok(body)
            } else {
                Err(body)
            }
        },
    )
    .await;
    assert!(body.contains("tailprobe_passive_up 1"), "{body}");
    assert!(!body.contains("source_kind=\"host\""), "no probe was sent");
}
