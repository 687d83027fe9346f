//! `all_addresses = true`: a name probed at every address it resolves to,
//! each address its own series, so one dead backend behind round-robin DNS
//! is seen as itself and not as a share of the name's failures. The name
//! resolves through a namespace's own hosts file (`ip netns exec` mounts
//! /etc/netns/NAME/hosts over /etc/hosts), to loopback addresses inside it.

use crate::common;

use std::process::{Child, Command, Stdio};

use common::{TempDir, bin, free_port};

fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// A namespace with loopback up and `multi.test` at three addresses; two
/// of them run an echo target. Removed, by name, when dropped.
struct Names {
    ns: String,
    echoes: Vec<Child>,
    port: u16,
}

impl Names {
    fn new() -> Self {
        common::require_root("the all_addresses test");
        let ns = format!("tpaddr{}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        assert!(
            Command::new("ip")
                .args(["netns", "add", &ns])
                .status()
                .unwrap()
                .success(),
            "cannot create the network namespace {ns}"
        );
        let mut names = Self {
            ns,
            echoes: Vec::new(),
            port: free_port(),
        };
        assert!(
            in_ns(&names.ns, &["ip", "link", "set", "lo", "up"])
                .status()
                .unwrap()
                .success()
        );
        let dir = format!("/etc/netns/{}", names.ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            format!("{dir}/hosts"),
            "127.0.0.1 multi.test\n127.0.0.2 multi.test\n127.0.0.3 multi.test\n",
        )
        .unwrap();
        for ip in ["127.0.0.1", "127.0.0.2"] {
            let listen = format!("{ip}:{}", names.port);
            let child = in_ns(
                &names.ns,
                &[bin(), "echo", "--listen", &listen, "--node", "n1"],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
            names.echoes.push(child);
        }
        names
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for c in &mut self.echoes {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.ns));
    }
}

#[test]
fn every_address_of_a_name_is_a_series_of_its_own_as_root() {
    let _turn = crate::shared();
    let names = Names::new();
    let dir = TempDir::new("addresses");
    let cfg = dir.file(
        "c.toml",
        &format!(
            "node = \"n1\"\n[matrix]\nspacing = \"0s\"\n\
             [[target]]\nname = \"multi\"\nurl = \"http://multi.test:{}/\"\nall_addresses = true\ntimeout = \"5s\"\n",
            names.port
        ),
    );
    // The echoes may still be starting: the first run that finds both
    // listening is the one judged.
    let mut last = String::new();
    for _ in 0..50 {
        let out = in_ns(
            &names.ns,
            &[
                bin(),
                "matrix",
                "--config",
                cfg.to_str().unwrap(),
                "--samples",
                "3",
                "--format",
                "json",
            ],
        )
        .output()
        .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let mut cells: Vec<(String, u64, u64, String)> = report["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["target"].as_str().unwrap().to_string(),
                    c["samples"].as_u64().unwrap(),
                    c["failures"].as_u64().unwrap(),
                    c["outcomes"].to_string(),
                )
            })
            .collect();
        cells.sort();
        let want_names = ["multi@127.0.0.1", "multi@127.0.0.2", "multi@127.0.0.3"];
        let got_names: Vec<&str> = cells.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(got_names, want_names, "{report:#}");
        assert!(cells.iter().all(|c| c.1 == 3), "{cells:?}");
        // Nothing listens at the third address: its own series fails,
        // refused, and the two others are untouched by it.
        assert_eq!(cells[2].2, 3, "{cells:?}");
        assert!(cells[2].3.contains("refused"), "{cells:?}");
        if cells[0].2 == 0 && cells[1].2 == 0 {
            return;
        }
        last = format!("{cells:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the two echoes never both answered: {last}");
}
