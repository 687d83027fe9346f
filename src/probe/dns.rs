//! The DNS probe: an A query over UDP, timed on its own, retried the way
//! glibc's resolver does (5 s per attempt, 2 attempts by default), so a lost
//! query lands on the 5 s rung that pods see. With `parallel=1`, A and AAAA
//! leave one socket at once and both answers are awaited, as glibc does:
//! the pattern that meets conntrack's insert race. With `tcp=1`, one query
//! over a TCP connection.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use crate::model::{DnsQuery, Outcome};

/// How a query ended.
#[derive(Debug, PartialEq, Eq)]
pub enum DnsAnswer {
    /// RCODE and the number of answer records.
    Answered { rcode: u8, answers: u16 },
    /// No answer to any attempt.
    Silent,
}

/// Record types asked for.
pub const A: u16 = 1;
pub const AAAA: u16 = 28;

/// Encodes a recursive A query for `name` with this ID.
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    encode(id, name, A)
}

/// Encodes a recursive query of `qtype` for `name` with this ID.
pub fn encode(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "DNS name \"{name}\" has an empty label or one over 63 bytes; write it like \"kubernetes.default.svc.cluster.local\""
            ));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    Ok(q)
}

/// Reads the header of a response to query `id`: `None` if it is not one.
pub fn decode_answer(id: u16, msg: &[u8]) -> Option<DnsAnswer> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return None;
    }
    Some(DnsAnswer::Answered {
        rcode: msg[3] & 0x0f,
        answers: u16::from_be_bytes([msg[6], msg[7]]),
    })
}

/// Sends the query to `server`, resending after each attempt timeout.
pub async fn resolve(server: SocketAddr, q: &DnsQuery) -> std::io::Result<DnsAnswer> {
    if q.tcp {
        return resolve_tcp(server, q).await;
    }
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("a valid address");
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(server).await?;
    let id: u16 = rand::random();
    let invalid = |m| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    // The A query first; with `parallel`, the AAAA query right behind it,
    // from the same socket (the same source port): one lookup, two flows
    // in conntrack's eyes racing for one entry.
    let mut queries = vec![(id, encode(id, &q.name, A).map_err(invalid)?)];
    if q.parallel {
        let id6 = id.wrapping_add(1);
        queries.push((id6, encode(id6, &q.name, AAAA).map_err(invalid)?));
    }
    let mut buf = [0u8; 1500];
    for _ in 0..q.attempts.max(1) {
        for (_, query) in &queries {
            sock.send(query).await?;
        }
        let deadline = tokio::time::Instant::now() + q.attempt_timeout;
        // glibc waits for both answers: one lost reply is the whole
        // lookup's timeout.
        let mut answered: Vec<Option<DnsAnswer>> = queries.iter().map(|_| None).collect();
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e),
                Ok(Ok(n)) => {
                    for (k, (qid, _)) in queries.iter().enumerate() {
                        if let Some(a) = decode_answer(*qid, &buf[..n]) {
                            answered[k] = Some(a);
                        }
                    }
                    if answered.iter().all(Option::is_some) {
                        return Ok(answered.swap_remove(0).expect("every query answered"));
                    }
                }
            }
        }
    }
    Ok(DnsAnswer::Silent)
}

/// One query over TCP (RFC 7766: a two-byte length before each message),
/// a new connection per attempt.
async fn resolve_tcp(server: SocketAddr, q: &DnsQuery) -> std::io::Result<DnsAnswer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let id: u16 = rand::random();
    let query = encode(id, &q.name, A)
        .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidInput, m))?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    for _ in 0..q.attempts.max(1) {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(server).await?;
            s.write_all(&framed).await?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await?;
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut msg).await?;
            Ok::<_, std::io::Error>(decode_answer(id, &msg))
        };
        match tokio::time::timeout(q.attempt_timeout, attempt).await {
            Ok(Ok(Some(a))) => return Ok(a),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(e),
            _ => {}
        }
    }
    Ok(DnsAnswer::Silent)
}

/// The RCODE's name, for error messages.
pub fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "an unknown RCODE",
    }
}

/// A DNS probe: the query's time is the `dns` phase.
pub(super) async fn query(
    server: SocketAddr,
    q: &crate::model::DnsQuery,
    t0: tokio::time::Instant,
    st: &mut super::run::Progress,
) -> Result<(), super::run::Failure> {
    let answer = resolve(server, q).await.map_err(|e| {
        super::run::Failure::new(Outcome::Error, format!("cannot query {server}: {e}"))
    })?;
    match answer {
        DnsAnswer::Answered { rcode: 0, .. } => {
            st.phases.dns = Some(t0.elapsed());
            Ok(())
        }
        DnsAnswer::Answered { rcode, .. } => {
            st.phases.dns = Some(t0.elapsed());
            Err(super::run::Failure::new(
                Outcome::DnsError,
                format!("{server} answered {} for {}", rcode_name(rcode), q.name),
            ))
        }
        DnsAnswer::Silent => Err(super::run::Failure::new(
            Outcome::TotalTimeout,
            format!(
                "no answer from {server} after {} attempts of {}",
                q.attempts,
                humantime::format_duration(q.attempt_timeout)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_query_and_reads_an_answer() {
        let q = encode_query(0xabcd, "a.bc").unwrap();
        assert_eq!(
            q,
            [
                0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 1, 0, 1
            ]
        );
        let mut r = q.clone();
        r[2] |= 0x80;
        r[3] = 0x83;
        r[7] = 2;
        assert_eq!(
            decode_answer(0xabcd, &r),
            Some(DnsAnswer::Answered {
                rcode: 3,
                answers: 2
            })
        );
        assert_eq!(decode_answer(0xabce, &r), None, "another query's answer");
        assert_eq!(decode_answer(0xabcd, &q), None, "a query is not an answer");
        assert!(encode_query(1, "a..b").is_err());
        let aaaa = encode(0xabcd, "a.bc", AAAA).unwrap();
        assert_eq!(&aaaa[aaaa.len() - 4..], [0, 28, 0, 1]);
    }
}
