//! The lab's userspace delayer, for kernels without netem: packets queued by
//! an iptables NFQUEUE rule are held for a delay plus random jitter, then
//! accepted. Runs as `tailprobe lab delayer` inside a node's namespace.

use std::time::{Duration, Instant};

use rand::Rng;

use super::LabError;

/// The queue the lab's rules use in every node namespace (queues are per
/// namespace, so one number serves all nodes).
pub const QUEUE: u16 = 7;

/// Holds every queued packet for `delay` plus a uniform draw in [0, `jitter`].
/// Returns only on an error.
pub fn run(queue: u16, delay: Duration, jitter: Duration) -> Result<(), LabError> {
    let fail = |what: &str, e: std::io::Error| LabError::Kernel {
        what: format!(
            "NFQUEUE {queue}: {what} ({e}); the kernel needs nfnetlink_queue and the delayer needs root"
        ),
    };
    let mut q = nfq::Queue::open().map_err(|e| fail("cannot open", e))?;
    q.bind(queue).map_err(|e| fail("cannot bind", e))?;
    q.set_queue_max_len(queue, 65_536)
        .map_err(|e| fail("cannot size", e))?;
    q.set_nonblocking(true);
    let mut held: Vec<(Instant, nfq::Message)> = Vec::new();
    let mut rng = rand::rng();
    loop {
        loop {
            match q.recv() {
                Ok(msg) => {
                    let extra = if jitter.is_zero() {
                        Duration::ZERO
                    } else {
                        jitter.mul_f64(rng.random::<f64>())
                    };
                    held.push((Instant::now() + delay + extra, msg));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(fail("cannot receive", e)),
            }
        }
        let now = Instant::now();
        let mut i = 0;
        while i < held.len() {
            if held[i].0 <= now {
                let (_, mut msg) = held.swap_remove(i);
                msg.set_verdict(nfq::Verdict::Accept);
                q.verdict(msg).map_err(|e| fail("cannot release", e))?;
            } else {
                i += 1;
            }
        }
        let next = held.iter().map(|(t, _)| *t).min();
        let nap = next
            .map_or(Duration::from_millis(1), |t| {
                t.saturating_duration_since(now)
            })
            .min(Duration::from_millis(1));
        std::thread::sleep(nap);
    }
}
