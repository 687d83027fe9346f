//! A real OTLP receiver (`oteltest`, started from tests/otlp_receiver.py)
//! on loopback, and readers for what it received.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::{TempDir, free_port};

pub struct Receiver {
    child: Child,
    pub grpc: u16,
    pub http: u16,
    file: std::path::PathBuf,
    _dir: TempDir,
}

impl Receiver {
    pub fn start() -> Self {
        Self::start_on(free_port(), free_port())
    }

    pub fn start_on(grpc: u16, http: u16) -> Self {
        Self::start_in(None, grpc, http)
    }

    /// A receiver on `ns`'s loopback (a lab node's namespace), or this
    /// namespace's when `None`.
    pub fn start_in(ns: Option<&str>, grpc: u16, http: u16) -> Self {
        let dir = TempDir::new("otlp");
        let file = dir.0.join("received.jsonl");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "python3"]);
                c
            }
            None => Command::new("python3"),
        };
        let mut child = cmd
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/otlp_receiver.py"
            ))
            .args([grpc.to_string(), http.to_string()])
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the OTLP receiver (scripts/deps installs oteltest)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the receiver did not start; is oteltest installed (pip install oteltest)?"
        );
        Self {
            child,
            grpc,
            http,
            file,
            _dir: dir,
        }
    }

    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// (resource attributes, span) for every span of a signal and protocol.
    pub fn spans(&self, protocol: &str) -> Vec<(Value, Value)> {
        let mut out = Vec::new();
        for r in self
            .received()
            .iter()
            .filter(|r| r["signal"] == "traces" && r["protocol"] == protocol)
        {
            for rs in r["body"]["resourceSpans"].as_array().unwrap() {
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for s in ss["spans"].as_array().into_iter().flatten() {
                        out.push((rs["resource"]["attributes"].clone(), s.clone()));
                    }
                }
            }
        }
        out
    }

    pub fn metric_names(&self, protocol: &str) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for r in self
            .received()
            .iter()
            .filter(|r| r["signal"] == "metrics" && r["protocol"] == protocol)
        {
            for rm in r["body"]["resourceMetrics"].as_array().unwrap() {
                for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                    for m in sm["metrics"].as_array().into_iter().flatten() {
                        out.push((m["name"].as_str().unwrap().to_string(), m.clone()));
                    }
                }
            }
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of attribute `key` in an OTLP JSON attribute list, as a string.
pub fn attr(attrs: &Value, key: &str) -> Option<String> {
    attrs.as_array()?.iter().find(|a| a["key"] == key).map(|a| {
        let v = &a["value"];
        v["stringValue"]
            .as_str()
            .map(str::to_string)
            .or_else(|| v["intValue"].as_str().map(str::to_string))
            .or_else(|| v["doubleValue"].as_f64().map(|d| d.to_string()))
            .unwrap_or_else(|| v.to_string())
    })
}

/// An alert record's phase: raised, active or resolved.
pub fn phase(r: &Value) -> Option<String> {
    attr(&r["attributes"], "tailprobe.alert.phase")
}

/// Every log record received: (attributes, record).
pub fn log_records(rx: &Receiver) -> Vec<Value> {
    let mut out = Vec::new();
    for r in rx.received().iter().filter(|r| r["signal"] == "logs") {
        for rl in r["body"]["resourceLogs"].as_array().unwrap() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                out.extend(sl["logRecords"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    out
}
