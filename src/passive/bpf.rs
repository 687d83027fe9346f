//! Loads `bpf/passive.bpf.c` (built by `build.rs`) with aya, attaches it to
//! `sock:inet_sock_set_state` and `tcp:tcp_retransmit_skb` (BTF-enabled
//! raw tracepoints), and reads its maps. The programs stay attached for as
//! long as [`Loaded`] lives.

use aya::maps::{Array, HashMap, MapData};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};

use super::PassiveError;
use super::read::{BUCKETS, FLIGHT_LEN, KEY_LEN};

/// The object `build.rs` compiled; empty when it could not.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/passive.bpf.o"));
/// "built", or why the object is empty.
const BUILD: &str = env!("TAILPROBE_BPF");

/// Why passive mode cannot run on this build or this kernel, if it cannot:
/// for `tailprobe check`, tests that skip, and the error at start.
pub fn unavailable() -> Option<String> {
    if OBJECT.is_empty() {
        return Some(format!(
            "this binary was built without its BPF program: {BUILD}"
        ));
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some(
            "the kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing): passive mode needs a kernel built with CONFIG_DEBUG_INFO_BTF".into(),
        );
    }
    None
}

/// One reading of the maps.
#[derive(Debug, Default)]
pub struct Reading {
    pub connects: Vec<([u8; KEY_LEN], Box<[u32; BUCKETS]>)>,
    pub connecting: Vec<[u8; FLIGHT_LEN]>,
    /// Connects not counted because the destinations map was full.
    pub overflow: u64,
}

pub struct Loaded {
    ebpf: Ebpf,
}

fn load_error(what: &str, e: impl std::fmt::Display) -> PassiveError {
    PassiveError::Load {
        what: format!("{what}: {e}"),
    }
}

impl Loaded {
    /// Loads and attaches the programs. `self_tgid`'s own connections (the
    /// prober's probes) are not counted.
    pub fn load(
        max_destinations: u32,
        max_connecting: u32,
        self_tgid: u32,
    ) -> Result<Self, PassiveError> {
        if let Some(why) = unavailable() {
            return Err(PassiveError::Unavailable(why));
        }
        // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
        let _ = nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_MEMLOCK,
            nix::sys::resource::RLIM_INFINITY,
            nix::sys::resource::RLIM_INFINITY,
        );
        let btf = Btf::from_sys_fs().map_err(|e| load_error("cannot read the kernel's BTF", e))?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("self_tgid", &self_tgid, true)
            .map_max_entries("CONNECTS", max_destinations)
            .map_max_entries("FLIGHTS", max_connecting)
            .load(OBJECT)
            .map_err(|e| load_error("the kernel refused the BPF maps or programs", e))?;
        for (program, tracepoint) in [
            ("on_state", "inet_sock_set_state"),
            ("on_retransmit", "tcp_retransmit_skb"),
        ] {
            let p: &mut BtfTracePoint = ebpf
                .program_mut(program)
                .ok_or_else(|| load_error("the BPF object lacks a program", program))?
                .try_into()
                .map_err(|e| load_error(program, e))?;
            p.load(tracepoint, &btf)
                .map_err(|e| load_error(&format!("cannot load {program} for {tracepoint}"), e))?;
            p.attach()
                .map_err(|e| load_error(&format!("cannot attach {program} to {tracepoint}"), e))?;
        }
        Ok(Self { ebpf })
    }

    fn connects(&self) -> Result<HashMap<&MapData, [u8; KEY_LEN], [u32; BUCKETS]>, PassiveError> {
        let map = self
            .ebpf
            .map("CONNECTS")
            .ok_or_else(|| load_error("the BPF object lacks a map", "CONNECTS"))?;
        HashMap::try_from(map).map_err(|e| load_error("CONNECTS", e))
    }

    /// Every aggregate, connect in progress and the overflow count.
    pub fn read(&self) -> Result<Reading, PassiveError> {
        let read = |e| PassiveError::Read(format!("{e}"));
        let mut r = Reading::default();
        for item in self.connects()?.iter() {
            let (k, v) = item.map_err(read)?;
            r.connects.push((k, Box::new(v)));
        }
        let flights: HashMap<&MapData, u64, [u8; FLIGHT_LEN]> = HashMap::try_from(
            self.ebpf
                .map("FLIGHTS")
                .ok_or_else(|| load_error("the BPF object lacks a map", "FLIGHTS"))?,
        )
        .map_err(|e| load_error("FLIGHTS", e))?;
        // A connect that ends between the key and its value reads as
        // missing: it is counted in CONNECTS instead.
        r.connecting = flights.iter().flatten().map(|(_, v)| v).collect();
        let overflow: Array<&MapData, u64> = Array::try_from(
            self.ebpf
                .map("OVERFLOW")
                .ok_or_else(|| load_error("the BPF object lacks a map", "OVERFLOW"))?,
        )
        .map_err(|e| load_error("OVERFLOW", e))?;
        r.overflow = overflow.get(&0, 0).map_err(read)?;
        Ok(r)
    }

    /// Removes idle aggregates, to make room. A connect counted between the
    /// last reading and the removal is lost: the key was idle, so at most a
    /// few.
    pub fn remove(&mut self, keys: &[[u8; KEY_LEN]]) {
        let Some(map) = self.ebpf.map_mut("CONNECTS") else {
            return;
        };
        let Ok(mut m) = HashMap::<&mut MapData, [u8; KEY_LEN], [u32; BUCKETS]>::try_from(map)
        else {
            return;
        };
        for k in keys {
            let _ = m.remove(k);
        }
    }
}
