//! The HTTP exchange over a connected stream (plain TCP or TLS): one
//! HTTP/1.1 GET with `Connection: close` over hyper, the body read to the
//! end (bounded).

use std::io;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::Prober;
use super::run::{Failure, NodeHeader, Progress};
use crate::model::{Outcome, Target};

/// The largest response head a probe reads (hyper's minimum is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 << 10;

/// A node name is a DNS subdomain: at most 253 bytes. A longer header is not
/// even read.
const MAX_NODE_NAME: usize = 253;

/// The largest bearer token sent: a projected service-account token is
/// about 1 KiB; a file much larger is not a token.
const MAX_TOKEN_BYTES: u64 = 16 << 10;

/// The header our echo target sets, naming the node that answered.
pub const NODE_HEADER: &str = "x-tailprobe-node";
/// The same, parsed once, at compile time.
const NODE_HEADER_NAME: http::HeaderName = http::HeaderName::from_static(NODE_HEADER);

impl Prober {
    pub(super) async fn exchange<S>(
        &self,
        t: &Target,
        t0: Instant,
        stream: S,
        st: &mut Progress,
    ) -> Result<(), Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut request = http::Request::get(t.path.as_str())
            .header(http::header::HOST, t.authority.as_str())
            .header(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            )
            .header(
                http::header::USER_AGENT,
                http::HeaderValue::from_static(concat!("tailprobe/", env!("CARGO_PKG_VERSION"))),
            );
        if let Some(path) = &t.bearer_token_file {
            request = request.header(http::header::AUTHORIZATION, bearer(path)?);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| Failure::new(Outcome::Error, format!("cannot build the request: {e}")))?;
        // A response head larger than this is refused, so a hostile or broken
        // target cannot make a stalled probe hold hyper's default ~400 KB.
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| http_failure(&e))?;
        let max_body = t.max_body_bytes;
        let exchange = async {
            let head_deadline = Instant::now() + t.first_byte_timeout;
            let response = tokio::time::timeout_at(head_deadline, sender.send_request(request))
                .await
                .map_err(|_| {
                    Failure::new(
                        Outcome::TotalTimeout,
                        format!(
                            "no response head {} after the connect",
                            humantime::format_duration(t.first_byte_timeout)
                        ),
                    )
                })?
                .map_err(|e| http_failure(&e))?;
            st.phases.first_byte = Some(t0.elapsed());
            st.status = Some(response.status().as_u16());
            st.node_header = response
                .headers()
                .get(NODE_HEADER_NAME)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= MAX_NODE_NAME)
                .map(|v| match self.known_nodes.get(v) {
                    Some(n) => NodeHeader::Known(n),
                    None => NodeHeader::Other(v.into()),
                });
            st.content_length = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| http_failure(&e))?;
                if let Some(data) = frame.data_ref() {
                    st.body_bytes += data.len() as u64;
                    if st.body_bytes > max_body {
                        return Err(Failure::new(
                            Outcome::BodyTooLarge,
                            format!(
                                "body exceeds {max_body} bytes; raise max_body_bytes if that is expected"
                            ),
                        ));
                    }
                }
            }
            Ok(())
        };
        // The connection is driven on its own task, as hyper intends (driving
        // it inside the probe future cost a third of the throughput). The
        // task dies with the probe on a failure, a timeout or cancellation;
        // after a finished exchange it ends by itself, since the request
        // asked for `Connection: close` (a test holds the server side open to
        // prove it). Its own result is never read: hyper's HTTP/1 client hands
        // every connection error to the request in flight, or to the body
        // being read, with the I/O error as its source.
        let driver = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(conn));
        exchange.await?;
        driver.detach();
        Ok(())
    }
}

/// The `Authorization` value for a token file, read for every probe: the
/// kubelet rewrites a projected token before it expires.
fn bearer(path: &std::path::Path) -> Result<http::HeaderValue, Failure> {
    let fail = |why: String| {
        Failure::new(
            Outcome::Error,
            format!(
                "cannot send the token in {}: {why}; mount the service account's token there or unset bearer_token_file",
                path.display()
            ),
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_TOKEN_BYTES {
        return Err(fail(format!("it is {} bytes, not a token", meta.len())));
    }
    let token = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    http::HeaderValue::try_from(format!("Bearer {}", token.trim()))
        .map(|mut v| {
            v.set_sensitive(true);
            v
        })
        .map_err(|_| fail("it holds characters a header cannot carry".into()))
}

pub(super) fn http_failure(e: &hyper::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            let outcome = match io.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Outcome::Reset,
                // A body cut short of its Content-Length by a FIN.
                io::ErrorKind::UnexpectedEof => Outcome::Closed,
                _ => Outcome::Error,
            };
            return Failure::new(outcome, format!("{e}: {io}"));
        }
        source = s.source();
    }
    let outcome = if e.is_incomplete_message() || e.is_canceled() {
        Outcome::Closed
    } else if e.is_parse() {
        Outcome::ProtocolError
    } else {
        Outcome::Error
    };
    Failure::new(outcome, e.to_string())
}
