//! `tailprobe echo --dns`: a small authoritative responder beside the echo,
//! so a lab (or a rehearsal in a real cluster) has a resolver whose path
//! can be broken and whose node is known. Every A question is answered with
//! one address, AAAA with no record (as a v4-only cluster answers), anything
//! else with NOTIMP; over UDP and over TCP (a two-byte length before each
//! message). Bounded like the echo: at most [`MAX_TCP`] TCP clients at once,
//! each idle for at most [`TCP_IDLE`].

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::probe::dns::{A, AAAA};

/// TCP clients served at once; past it a new one is closed.
pub const MAX_TCP: usize = 64;
/// A TCP client that sends nothing for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Answers live this long in a cache: short, as CoreDNS's default.
const TTL_S: u32 = 5;

/// The answer to one DNS message, or `None` when it is no query to answer
/// (a response, a truncated header, no question).
pub fn answer(msg: &[u8], address: Ipv4Addr) -> Option<Vec<u8>> {
    if msg.len() < 12 || msg[2] & 0x80 != 0 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut at = 12;
    loop {
        let len = usize::from(*msg.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
    let question = msg.get(12..at + 4)?;
    let qtype = u16::from_be_bytes([msg[at], msg[at + 1]]);
    let (rcode, answers) = match qtype {
        A => (0, 1u16),
        AAAA => (0, 0),
        _ => (4, 0),
    };
    let mut r = Vec::with_capacity(12 + question.len() + 16);
    r.extend_from_slice(&msg[..2]);
    // QR and AA set, the client's RD kept, RA set.
    r.push(0x84 | (msg[2] & 0x01));
    r.push(0x80 | rcode);
    r.extend_from_slice(&[0, 1]);
    r.extend_from_slice(&answers.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(question);
    if answers == 1 {
        // The name by a pointer to the question's.
        r.extend_from_slice(&[0xc0, 12]);
        r.extend_from_slice(&A.to_be_bytes());
        r.extend_from_slice(&[0, 1]);
        r.extend_from_slice(&TTL_S.to_be_bytes());
        r.extend_from_slice(&[0, 4]);
        r.extend_from_slice(&address.octets());
    }
    Some(r)
}

/// A responder's sockets, bound: a port in use is an error before anything
/// serves.
pub struct Responder {
    udp: UdpSocket,
    tcp: TcpListener,
}

impl Responder {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            udp: UdpSocket::bind(addr).await?,
            tcp: TcpListener::bind(addr).await?,
        })
    }

    /// Answers over UDP and TCP until `cancel` fires.
    pub async fn serve(self, address: Ipv4Addr, cancel: CancellationToken) {
        tokio::join!(
            serve_udp(self.udp, address, cancel.clone()),
            serve_tcp(self.tcp, address, cancel)
        );
    }
}

async fn serve_udp(sock: UdpSocket, address: Ipv4Addr, cancel: CancellationToken) {
    let mut buf = [0u8; 1500];
    loop {
        let (n, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(r) => r,
                // An ICMP error from an earlier reply surfaces here: not ours.
                Err(_) => continue,
            },
        };
        if let Some(r) = answer(&buf[..n], address) {
            let _ = sock.send_to(&r, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, address: Ipv4Addr, cancel: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP));
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = client(stream, address) => {}
            }
        });
    }
}

async fn client(mut s: TcpStream, address: Ipv4Addr) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        tokio::time::timeout(TCP_IDLE, s.read_exact(&mut len)).await??;
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(TCP_IDLE, s.read_exact(&mut msg)).await??;
        let Some(r) = answer(&msg, address) else {
            return Ok(());
        };
        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&r);
        s.write_all(&framed).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DnsQuery;
    use crate::probe::dns::{DnsAnswer, decode_answer, encode, resolve};

    #[test]
    fn answers_a_with_the_address_and_aaaa_with_no_record() {
        let ip = Ipv4Addr::new(10, 96, 0, 1);
        let q = encode(7, "kubernetes.default.svc.cluster.local", A).unwrap();
        let r = answer(&q, ip).unwrap();
        assert_eq!(
            decode_answer(7, &r),
            Some(DnsAnswer::Answered {
                rcode: 0,
                answers: 1
            })
        );
        assert_eq!(&r[r.len() - 4..], &ip.octets());
        let r6 = answer(&encode(8, "a.b", AAAA).unwrap(), ip).unwrap();
        assert_eq!(
            decode_answer(8, &r6),
            Some(DnsAnswer::Answered {
                rcode: 0,
                answers: 0
            })
        );
        let mx = answer(&encode(9, "a.b", 15).unwrap(), ip).unwrap();
        assert_eq!(
            decode_answer(9, &mx),
            Some(DnsAnswer::Answered {
                rcode: 4,
                answers: 0
            })
        );
        // A response, a cut header and a cut question are not answered.
        assert_eq!(answer(&r, ip), None);
        assert_eq!(answer(&q[..8], ip), None);
        assert_eq!(answer(&q[..20], ip), None);
    }

    #[tokio::test]
    async fn the_probe_resolves_against_it_over_udp_tcp_and_in_parallel() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let cancel = CancellationToken::new();
        let responder = Responder::bind(addr).await.unwrap();
        let server = tokio::spawn(responder.serve(Ipv4Addr::LOCALHOST, cancel.clone()));
        for (parallel, tcp) in [(false, false), (true, false), (false, true)] {
            let q = DnsQuery {
                name: "a.b".into(),
                attempt_timeout: Duration::from_secs(2),
                attempts: 1,
                parallel,
                tcp,
            };
            assert_eq!(
                resolve(addr, &q).await.unwrap(),
                DnsAnswer::Answered {
                    rcode: 0,
                    answers: 1
                },
                "parallel={parallel} tcp={tcp}"
            );
        }
        cancel.cancel();
        server.await.unwrap();
    }
}
