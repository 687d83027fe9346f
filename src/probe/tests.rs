use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Prober;
use super::connect::{connect_failure, connect_mark};
use crate::model::{Outcome, Target, TcpInfo};

#[test]
fn connect_errors_map_to_distinct_outcomes() {
    let o = |n| {
        connect_failure(
            io::Error::from_raw_os_error(n),
            "127.0.0.1:1".parse().unwrap(),
        )
        .outcome
    };
    assert_eq!(o(libc::ECONNREFUSED), Outcome::Refused);
    assert_eq!(o(libc::ECONNRESET), Outcome::Reset);
    for n in [
        libc::EHOSTUNREACH,
        libc::ENETUNREACH,
        libc::EHOSTDOWN,
        libc::ENETDOWN,
    ] {
        assert_eq!(o(n), Outcome::Unreachable, "errno {n}");
    }
    assert_eq!(o(libc::ETIMEDOUT), Outcome::ConnectTimeout);
    assert_eq!(o(libc::EMFILE), Outcome::Error);
}

#[test]
fn the_connect_phase_is_the_kernels_handshake_rtt_when_it_has_one() {
    let ms = Duration::from_millis;
    let us = Duration::from_micros;
    let t0 = Instant::now();
    let syn = t0 + ms(3);
    let done = syn + ms(2);
    let info = |rtt_us, total_retrans| {
        Some(TcpInfo {
            rtt_us,
            total_retrans,
            ..TcpInfo::default()
        })
    };
    let dns = Some(ms(5));
    // No TCP_INFO: from the SYN to the wake-up, after the lookup.
    assert_eq!(connect_mark(t0, dns, Some(syn), done, None), ms(7));
    // No SYN mark: from the probe's start.
    assert_eq!(connect_mark(t0, None, None, done, None), ms(5));
    // The kernel's sample of the handshake, when it took one.
    assert_eq!(
        connect_mark(t0, dns, Some(syn), done, info(300, 0)),
        ms(5) + us(300)
    );
    // Equal to the timed handshake: still the kernel's.
    assert_eq!(
        connect_mark(t0, None, Some(syn), done, info(2_000, 0)),
        ms(2)
    );
    // Not after a retransmission (Karn), nor without a sample, nor one
    // longer than the handshake was.
    for i in [info(300, 1), info(0, 0), info(2_001, 0)] {
        assert_eq!(connect_mark(t0, dns, Some(syn), done, i), ms(7), "{i:?}");
    }
}

mod size {
    use super::*;

    /// A probe waiting on SYN retransmission holds only its connect state:
    /// the TLS handshake, the HTTP exchange and the DNS query are boxed.
    /// Without that, the future (and every in-flight probe) grows by
    /// kilobytes. (The TLS phase's mark and the certificate's end, 32
    /// bytes, moved the bound from 1280.)
    #[test]
    fn the_pending_probe_future_stays_small() {
        let p = Prober::new("a", crate::model::SourceKind::Host);
        let t = Arc::new(Target::parse("t", "http://127.0.0.1:1/").unwrap());
        let c = CancellationToken::new();
        let f = p.probe(&t, &c);
        assert!(
            std::mem::size_of_val(&f) < 1312,
            "{} bytes",
            std::mem::size_of_val(&f)
        );
    }
}
