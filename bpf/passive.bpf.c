// SPDX-License-Identifier: GPL-2.0
//
// tailprobe's passive mode: every TCP connect on the node, timed from
// SYN_SENT to ESTABLISHED (or CLOSE), with the SYNs it retransmitted.
// Aggregated here, per (network namespace, destination, outcome, SYNs lost),
// into log-linear connect-time buckets; userspace reads the maps once a
// second, so no per-packet or per-connection event crosses to userspace.
//
// Compiled by clang at build time (build.rs) and relocated against the
// running kernel's BTF (CO-RE): the structs below name only the fields read,
// and `preserve_access_index` makes every access a relocation, so the
// kernel's own layout is used whatever it is. No vmlinux.h is needed.

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

// The map types and flags used (from linux/bpf.h, stable ABI).
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_ANY 0
#define BPF_NOEXIST 1
#define BPF_F_NO_COMMON_LRU 2

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define ETIMEDOUT 110
#define ECONNREFUSED 111
#define E2BIG 7

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct in6_addr {
	__u8 s6_addr[16];
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	int sk_err;
} __attribute__((preserve_access_index));

// The kernel's own count of retransmitted segments: for a connect, its
// SYNs (what TCP_INFO reports as tcpi_total_retrans).
struct tcp_sock {
	__u32 total_retrans;
} __attribute__((preserve_access_index));

// Outcomes, as userspace reads them.
#define OUT_ESTABLISHED 0
#define OUT_REFUSED 1
#define OUT_TIMED_OUT 2
#define OUT_ABANDONED 3
#define OUT_OTHER 4

// Connect-time buckets over microseconds: 0..31 exact, then 16 per power
// of two up to 2^27 us (134 s). A bucket is at most 1/16 of its value wide,
// so a rung (its window is 13 % wide) is always resolved.
#define SUB_BITS 4
#define LINEAR 32
#define BUCKETS 400

// A connection in SYN_SENT, keyed by its socket. LRU: a socket whose end
// was never seen (a missed event) ages out instead of filling the map.
struct flight {
	__u64 start_ns;
	__u32 netns;
	__u32 retrans;
	__u32 tgid;
	__u16 dport;
	__u8 family;
	__u8 pad;
	__u8 daddr[16];
};

struct key {
	__u32 netns;
	__u16 dport;
	__u8 family;
	__u8 outcome;
	__u8 retrans;
	__u8 pad[3];
	__u8 daddr[16];
};

struct agg {
	__u32 buckets[BUCKETS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	// Per-CPU LRU lists: an insert or delete takes no global lock.
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct flight);
} FLIGHTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2048);
	__type(key, struct key);
	__type(value, struct agg);
} CONNECTS SEC(".maps");

// A zeroed value to insert from: struct agg is too large for the stack.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct agg);
} ZERO SEC(".maps");

// [0] connects not counted because CONNECTS was full.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} OVERFLOW SEC(".maps");

// The prober's own process: its synthetic probes are not passive evidence.
volatile const __u32 self_tgid = 0;

static __always_inline __u32 bucket_of(__u64 ns)
{
	__u64 us = ns / 1000;
	if (us < LINEAR)
		return (__u32)us;
	__u32 exp = 0;
	__u64 v = us;
	if (v >> 32) { v >>= 32; exp += 32; }
	if (v >> 16) { v >>= 16; exp += 16; }
	if (v >> 8) { v >>= 8; exp += 8; }
	if (v >> 4) { v >>= 4; exp += 4; }
	if (v >> 2) { v >>= 2; exp += 2; }
	if (v >> 1) { exp += 1; }
	// exp >= 5 here: 2^5 = LINEAR.
	__u32 sub = (__u32)(us >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
	__u32 idx = LINEAR + (exp - 5) * (1 << SUB_BITS) + sub;
	return idx < BUCKETS ? idx : BUCKETS - 1;
}

static __always_inline void count(struct flight *f, __u8 outcome, __u64 now)
{
	struct key k = {};
	k.netns = f->netns;
	k.dport = f->dport;
	k.family = f->family;
	k.outcome = outcome;
	k.retrans = f->retrans > 255 ? 255 : (__u8)f->retrans;
	__builtin_memcpy(k.daddr, f->daddr, 16);
	struct agg *a = bpf_map_lookup_elem(&CONNECTS, &k);
	if (!a) {
		__u32 zero = 0;
		struct agg *z = bpf_map_lookup_elem(&ZERO, &zero);
		if (!z)
			return;
		long err = bpf_map_update_elem(&CONNECTS, &k, z, BPF_NOEXIST);
		if (err == -E2BIG) {
			__u64 *o = bpf_map_lookup_elem(&OVERFLOW, &zero);
			if (o)
				__sync_fetch_and_add(o, 1);
			return;
		}
		a = bpf_map_lookup_elem(&CONNECTS, &k);
		if (!a)
			return;
	}
	__u64 b = bucket_of(now - f->start_ns);
	// The verifier must see the bound on the very register that indexes.
	asm volatile("" : "+r"(b));
	if (b >= BUCKETS)
		return;
	__sync_fetch_and_add(&a->buckets[b], 1);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
	// Most changes neither enter nor leave SYN_SENT: out before any load.
	if (newstate != TCP_SYN_SENT && oldstate != TCP_SYN_SENT)
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 id = (__u64)sk;
	if (newstate == TCP_SYN_SENT) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		if (self_tgid && tgid == self_tgid)
			return 0;
		struct flight f = {};
		f.start_ns = bpf_ktime_get_ns();
		f.netns = sk->__sk_common.skc_net.net->ns.inum;
		f.tgid = tgid;
		f.dport = __builtin_bswap16(sk->__sk_common.skc_dport);
		f.family = (__u8)sk->__sk_common.skc_family;
		if (f.family == AF_INET) {
			__be32 d = sk->__sk_common.skc_daddr;
			__builtin_memcpy(f.daddr, &d, 4);
		} else if (f.family == AF_INET6) {
			bpf_probe_read_kernel(f.daddr, sizeof(f.daddr),
					      &sk->__sk_common.skc_v6_daddr);
		} else {
			return 0;
		}
		bpf_map_update_elem(&FLIGHTS, &id, &f, BPF_ANY);
		return 0;
	}
	if (oldstate != TCP_SYN_SENT)
		return 0;
	struct flight *f = bpf_map_lookup_elem(&FLIGHTS, &id);
	if (!f)
		return 0;
	// The kernel's count is the evidence, as a probe's TCP_INFO is; the
	// tracepoint's count (live, for stalls) only if it saw more.
	__u32 counted = 0;
	if (!bpf_core_read(&counted, sizeof(counted), &((struct tcp_sock *)sk)->total_retrans) &&
	    counted > f->retrans)
		f->retrans = counted;
	__u8 outcome = OUT_OTHER;
	if (newstate == TCP_ESTABLISHED) {
		outcome = OUT_ESTABLISHED;
	} else if (newstate == TCP_CLOSE) {
		int err = sk->sk_err;
		if (err == ECONNREFUSED)
			outcome = OUT_REFUSED;
		else if (err == ETIMEDOUT)
			outcome = OUT_TIMED_OUT;
		else if (err == 0)
			outcome = OUT_ABANDONED;
	}
	count(f, outcome, bpf_ktime_get_ns());
	bpf_map_delete_elem(&FLIGHTS, &id);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_retransmit, struct sock *sk)
{
	if (sk->__sk_common.skc_state != TCP_SYN_SENT)
		return 0;
	__u64 id = (__u64)sk;
	struct flight *f = bpf_map_lookup_elem(&FLIGHTS, &id);
	if (f)
		__sync_fetch_and_add(&f->retrans, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
