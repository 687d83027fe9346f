//! A client kernel's SYN timer, simulated from first principles, so the
//! evaluation set's probes come from a timeline and not from the detector's
//! own tables: each SYN is sent, lost or not by the path's fault, and the
//! next is sent when the retransmission timer fires (late by the timer's
//! slack). The connect time and the `TCP_INFO` retransmit count both come
//! out of that one timeline.

use rand::Rng;
use rand::rngs::StdRng;

/// The client's kernel: what `tcp_syn_retries`, `tcp_syn_linear_timeouts`
/// and the initial RTO make of its timer.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// The first retransmission timeout: 1 s on Linux, 3 s on Windows.
    pub initial_rto_s: f64,
    /// Retransmissions before giving up: `tcp_syn_retries`, plus the linear
    /// ones (the kernel adds them to the budget).
    pub syn_retries: u32,
    /// Retransmissions whose timeout stays at the initial RTO before
    /// exponential backoff starts (Linux >= 6.5).
    pub linear: u32,
    /// How late a timer fires, as a share of its timeout, at most...
    pub slack: f64,
    /// ...plus up to a tick of this many seconds.
    pub tick_s: f64,
}

impl Kernel {
    pub fn linux(linear: u32) -> Self {
        Self {
            initial_rto_s: 1.0,
            syn_retries: 6 + linear,
            linear,
            slack: 0.04,
            tick_s: 0.004,
        }
    }

    pub fn windows() -> Self {
        Self {
            initial_rto_s: 3.0,
            syn_retries: 2,
            linear: 0,
            slack: 0.04,
            tick_s: 0.004,
        }
    }

    /// The timeout armed after the n-th SYN (0 = the first): it stays at
    /// the initial RTO for the linear retransmissions, then doubles, capped
    /// at TCP_RTO_MAX (120 s).
    fn timeout(&self, n: u32) -> f64 {
        let doublings = n.saturating_sub(self.linear);
        (self.initial_rto_s * 2f64.powi(doublings as i32)).min(120.0)
    }
}

/// What the path does to SYNs.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// The first `k` SYNs of every flow are dropped (a rule, a full queue).
    FirstSyns(u32),
    /// Each SYN is lost with this probability, independently.
    Random(f64),
    /// The double-NAT checksum bug: the first SYN creates a NATed conntrack
    /// entry whose packets are dropped; each later SYN refreshes it, until a
    /// gap between SYNs outlasts the UDP conntrack timeout and the entry
    /// expires. With `rehash`, the retransmitted SYN leaves on a new hash
    /// (a new outer source port) and escapes at once.
    NatExpiry {
        conntrack_timeout_s: f64,
        rehash: bool,
    },
    /// Every SYN is lost: the kernel gives up.
    All,
}

/// One simulated connect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Connect {
    /// Seconds from the first SYN to the SYN-ACK; `None` when the kernel
    /// gave up.
    pub seconds: Option<f64>,
    /// SYNs retransmitted, as `TCP_INFO` counts them.
    pub retransmits: u32,
    /// When the kernel gave up, if it did.
    pub gave_up_at: Option<f64>,
}

/// Runs one connect over a path whose round trip is `rtt_s`.
pub fn connect(kernel: &Kernel, fault: Fault, rtt_s: f64, rng: &mut StdRng) -> Connect {
    let mut t = 0.0;
    let mut last_sent = 0.0;
    for n in 0..=kernel.syn_retries {
        let lost = match fault {
            Fault::FirstSyns(k) => n < k,
            Fault::Random(p) => rng.random::<f64>() < p,
            Fault::NatExpiry {
                conntrack_timeout_s,
                rehash,
            } => {
                // The entry lives while SYNs keep coming within its timeout.
                let expired = n > 0 && t - last_sent > conntrack_timeout_s;
                let escaped = rehash && n > 0;
                !(expired || escaped)
            }
            Fault::All => true,
        };
        if !lost {
            return Connect {
                seconds: Some(t + rtt_s),
                retransmits: n,
                gave_up_at: None,
            };
        }
        last_sent = t;
        let timeout = kernel.timeout(n);
        // Timers fire late, never early: by up to `slack` of the timeout,
        // plus up to a tick.
        t += timeout * (1.0 + kernel.slack * rng.random::<f64>())
            + kernel.tick_s * rng.random::<f64>();
    }
    Connect {
        seconds: None,
        retransmits: kernel.syn_retries,
        gave_up_at: Some(t),
    }
}
