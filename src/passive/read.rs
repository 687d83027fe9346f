//! What the kernel's maps hold, decoded (pure: no BPF, no clock). The byte
//! layouts mirror `bpf/passive.bpf.c`'s `struct key`, `struct flight` and
//! `bucket_of`; the tests pin them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::model::Outcome;

/// Connect-time buckets per destination (`BUCKETS` in the C).
pub const BUCKETS: usize = 400;
/// `sizeof(struct key)`.
pub const KEY_LEN: usize = 28;
/// `sizeof(struct flight)`.
pub const FLIGHT_LEN: usize = 40;
/// Buckets below this count whole microseconds.
const LINEAR: u64 = 32;
const SUB_BITS: u32 = 4;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// A destination as one network namespace connected to it (the address
/// before any DNAT: a ClusterIP stays a ClusterIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    pub netns: u32,
    pub addr: SocketAddr,
}

/// How a connect left SYN_SENT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectEnd {
    Established,
    /// A RST answered the SYN.
    Refused,
    /// The kernel gave up retransmitting the SYN.
    TimedOut,
    /// The application closed the socket first (its own connect timeout).
    Abandoned,
    /// Any other error (no route, for example).
    Other,
}

impl ConnectEnd {
    fn of(code: u8) -> Self {
        match code {
            0 => ConnectEnd::Established,
            1 => ConnectEnd::Refused,
            2 => ConnectEnd::TimedOut,
            3 => ConnectEnd::Abandoned,
            _ => ConnectEnd::Other,
        }
    }

    /// The probe outcome the same end would have had: an established
    /// connection is `ok`, as far as a passive reader can know.
    pub fn outcome(self) -> Outcome {
        match self {
            ConnectEnd::Established => Outcome::Ok,
            ConnectEnd::Refused => Outcome::Refused,
            ConnectEnd::TimedOut | ConnectEnd::Abandoned => Outcome::ConnectTimeout,
            ConnectEnd::Other => Outcome::Unreachable,
        }
    }
}

/// One aggregate's key: where, how it ended, and the SYNs it lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectKey {
    pub destination: Destination,
    pub end: ConnectEnd,
    pub syns_lost: u8,
}

fn addr(family: u8, bytes: &[u8], port: u16) -> Option<SocketAddr> {
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        AF_INET6 => {
            let b: [u8; 16] = bytes[..16].try_into().ok()?;
            let v6 = Ipv6Addr::from(b);
            // A v4-mapped peer of a dual-stack socket is the v4 Service.
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

impl ConnectKey {
    /// `struct key`: netns u32, dport u16, family, outcome, retrans, 3 pad,
    /// daddr[16]; native byte order, the port already in host order.
    pub fn parse(b: &[u8; KEY_LEN]) -> Option<Self> {
        let netns = u32::from_ne_bytes(b[0..4].try_into().ok()?);
        let port = u16::from_ne_bytes(b[4..6].try_into().ok()?);
        Some(Self {
            destination: Destination {
                netns,
                addr: addr(b[6], &b[12..28], port)?,
            },
            end: ConnectEnd::of(b[7]),
            syns_lost: b[8],
        })
    }
}

/// A connect still in SYN_SENT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connecting {
    pub destination: Destination,
    /// `bpf_ktime_get_ns()` at connect(): CLOCK_MONOTONIC.
    pub started_ns: u64,
    pub syns_lost: u32,
}

impl Connecting {
    /// `struct flight`: start u64, netns u32, retrans u32, tgid u32, dport
    /// u16, family, pad, daddr[16], 4 bytes of tail padding.
    pub fn parse(b: &[u8; FLIGHT_LEN]) -> Option<Self> {
        let port = u16::from_ne_bytes(b[20..22].try_into().ok()?);
        Some(Self {
            started_ns: u64::from_ne_bytes(b[0..8].try_into().ok()?),
            syns_lost: u32::from_ne_bytes(b[12..16].try_into().ok()?),
            destination: Destination {
                netns: u32::from_ne_bytes(b[8..12].try_into().ok()?),
                addr: addr(b[22], &b[24..40], port)?,
            },
        })
    }
}

/// The bucket a connect time falls in, as the kernel side computes it.
pub fn bucket_of(d: Duration) -> usize {
    let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
    if us < LINEAR {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros();
    let sub = (us >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    let idx = LINEAR + u64::from(exp - 5) * (1 << SUB_BITS) + sub;
    (idx as usize).min(BUCKETS - 1)
}

/// A bucket's upper edge: the time its connects are read as. Never below
/// the real time and at most 1/16 above it, so a connect on a rung is
/// never read as early (a rung's window starts at the rung).
pub fn bucket_upper(i: usize) -> Duration {
    let i = i as u64;
    if i < LINEAR {
        return Duration::from_micros(i + 1);
    }
    let exp = 5 + (i - LINEAR) / (1 << SUB_BITS);
    let sub = (i - LINEAR) % (1 << SUB_BITS);
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    Duration::from_micros((1u64 << exp) + (sub + 1) * width)
}

/// The counts each aggregate has reached, to turn the next reading into
/// what is new since. A restarted reader loads a fresh program with empty
/// maps, so the first reading of a key is new in full.
#[derive(Debug, Default)]
pub struct Deltas {
    seen: HashMap<[u8; KEY_LEN], (Box<[u32; BUCKETS]>, Instant)>,
}

impl Deltas {
    /// The connects new since the last reading, as (bucket, count).
    /// Counters wrap at 2^32; a difference is taken modulo that.
    pub fn update(
        &mut self,
        key: [u8; KEY_LEN],
        now: &[u32; BUCKETS],
        at: Instant,
    ) -> Vec<(usize, u32)> {
        let (before, touched) = self
            .seen
            .entry(key)
            .or_insert_with(|| (Box::new([0; BUCKETS]), at));
        let new: Vec<(usize, u32)> = now
            .iter()
            .zip(before.iter())
            .enumerate()
            .filter_map(|(i, (n, b))| {
                let d = n.wrapping_sub(*b);
                (d > 0).then_some((i, d))
            })
            .collect();
        if !new.is_empty() {
            **before = *now;
            *touched = at;
        }
        new
    }

    /// Keys with no new connect for `idle`: to remove from the kernel's
    /// map (and from here), making room for new destinations.
    pub fn idle(&mut self, at: Instant, idle: Duration) -> Vec<[u8; KEY_LEN]> {
        let old: Vec<[u8; KEY_LEN]> = self
            .seen
            .iter()
            .filter(|(_, (_, t))| at.saturating_duration_since(*t) >= idle)
            .map(|(k, _)| *k)
            .collect();
        for k in &old {
            self.seen.remove(k);
        }
        old
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_resolve_every_rung_from_above() {
        // Classic and linear rungs, the DNS timeouts, and sub-millisecond
        // connects: read at most 1/16 late, never early.
        for s in [
            0.000_005, 0.000_2, 0.0015, 1.0, 3.0, 5.0, 7.0, 10.0, 15.0, 31.0, 63.0, 67.0, 127.0,
        ] {
            let d = Duration::from_secs_f64(s);
            let up = bucket_upper(bucket_of(d));
            assert!(up > d, "{s} s read as {up:?}");
            assert!(
                up.as_secs_f64() <= s * (1.0 + 1.0 / 16.0) + 1e-6,
                "{s} s read as {up:?}"
            );
        }
        // 63 s and 67 s (classic and linear last rungs) stay apart.
        assert_ne!(
            bucket_of(Duration::from_secs(63)),
            bucket_of(Duration::from_secs_f64(67.05))
        );
        // Edges: each bucket's upper edge is the next one's first value.
        for i in 0..BUCKETS - 1 {
            assert_eq!(bucket_of(bucket_upper(i)), i + 1, "bucket {i}");
        }
        assert_eq!(bucket_of(Duration::from_secs(100_000)), BUCKETS - 1);
    }

    #[test]
    fn keys_and_flights_decode_as_the_kernel_lays_them_out() {
        let mut k = [0u8; KEY_LEN];
        k[0..4].copy_from_slice(&4026531840u32.to_ne_bytes());
        k[4..6].copy_from_slice(&8080u16.to_ne_bytes());
        k[6] = AF_INET;
        k[7] = 1;
        k[8] = 6;
        k[12..16].copy_from_slice(&[10, 96, 0, 11]);
        let key = ConnectKey::parse(&k).expect("a v4 key");
        assert_eq!(key.destination.netns, 4026531840);
        assert_eq!(key.destination.addr, "10.96.0.11:8080".parse().unwrap());
        assert_eq!(key.end, ConnectEnd::Refused);
        assert_eq!(key.syns_lost, 6);

        // A v4-mapped v6 peer is the v4 address; a real v6 one stays.
        k[6] = AF_INET6;
        k[12..28].copy_from_slice(&"::ffff:10.96.0.12".parse::<Ipv6Addr>().unwrap().octets());
        let key = ConnectKey::parse(&k).unwrap();
        assert_eq!(key.destination.addr, "10.96.0.12:8080".parse().unwrap());
        k[12..28].copy_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        let key = ConnectKey::parse(&k).unwrap();
        assert_eq!(key.destination.addr, "[fd00::1]:8080".parse().unwrap());
        k[6] = 1;
        assert_eq!(ConnectKey::parse(&k), None, "AF_UNIX is no destination");

        let mut f = [0u8; FLIGHT_LEN];
        f[0..8].copy_from_slice(&123_456_789u64.to_ne_bytes());
        f[8..12].copy_from_slice(&7u32.to_ne_bytes());
        f[12..16].copy_from_slice(&3u32.to_ne_bytes());
        f[20..22].copy_from_slice(&80u16.to_ne_bytes());
        f[22] = AF_INET;
        f[24..28].copy_from_slice(&[127, 0, 0, 1]);
        let c = Connecting::parse(&f).unwrap();
        assert_eq!(
            (c.started_ns, c.destination.netns, c.syns_lost),
            (123_456_789, 7, 3)
        );
        assert_eq!(c.destination.addr, "127.0.0.1:80".parse().unwrap());
    }

    #[test]
    fn deltas_count_what_is_new_and_survive_wrapping() {
        let t0 = Instant::now();
        let mut d = Deltas::default();
        assert!(d.is_empty());
        assert_eq!(d.len(), 0);
        let mut now = [0u32; BUCKETS];
        now[3] = 5;
        assert_eq!(d.update([1; KEY_LEN], &now, t0), vec![(3, 5)]);
        assert!(!d.is_empty());
        assert_eq!(d.update([1; KEY_LEN], &now, t0), vec![]);
        now[3] = 2; // wrapped past 2^32
        now[399] = 1;
        assert_eq!(
            d.update([1; KEY_LEN], &now, t0 + Duration::from_secs(5)),
            vec![(3, u32::MAX - 2), (399, 1)]
        );
        assert_eq!(d.update([2; KEY_LEN], &now, t0), vec![(3, 2), (399, 1)]);
        assert_eq!(d.len(), 2);
        // Key 2 last changed at t0, key 1 at t0 + 5 s.
        let idle = d.idle(t0 + Duration::from_secs(8), Duration::from_secs(5));
        assert_eq!(idle, vec![[2; KEY_LEN]]);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn ends_read_as_probe_outcomes() {
        assert_eq!(ConnectEnd::of(0).outcome(), Outcome::Ok);
        assert_eq!(ConnectEnd::of(1).outcome(), Outcome::Refused);
        assert_eq!(ConnectEnd::of(2).outcome(), Outcome::ConnectTimeout);
        assert_eq!(ConnectEnd::of(3).outcome(), Outcome::ConnectTimeout);
        assert_eq!(ConnectEnd::of(4).outcome(), Outcome::Unreachable);
    }
}
