//! `tailprobe echo`: the target every node runs. It names the node and pod
//! that answered in headers, so a probe through a Service with backends on
//! several nodes still knows its destination; `/bytes/N` serves N bytes for
//! path-MTU probes.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The largest body `/bytes/N` serves.
pub const MAX_BYTES: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct EchoIdentity {
    pub node: String,
    pub pod: String,
}

#[derive(Clone)]
struct EchoState {
    id: Arc<EchoIdentity>,
    node: HeaderValue,
    pod: HeaderValue,
}

pub fn router(id: EchoIdentity) -> Router {
    let header =
        |v: &str| HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    let state = EchoState {
        node: header(&id.node),
        pod: header(&id.pod),
        id: Arc::new(id),
    };
    Router::new()
        .route("/bytes/{n}", get(bytes))
        .fallback(hello)
        .with_state(state)
}

/// Serves until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    id: EchoIdentity,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(id))
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

fn tagged(s: &EchoState, mut r: Response) -> Response {
    r.headers_mut()
        .insert(crate::probe::NODE_HEADER, s.node.clone());
    r.headers_mut().insert("x-tailprobe-pod", s.pod.clone());
    r
}

async fn hello(State(s): State<EchoState>) -> Response {
    let body = format!("tailprobe echo node={} pod={}\n", s.id.node, s.id.pod);
    tagged(&s, body.into_response())
}

async fn bytes(State(s): State<EchoState>, Path(n): Path<String>) -> Response {
    match n.parse::<usize>() {
        Ok(n) if n <= MAX_BYTES => tagged(&s, vec![b'x'; n].into_response()),
        _ => tagged(
            &s,
            (
                StatusCode::BAD_REQUEST,
                format!("/bytes/N takes a byte count up to {MAX_BYTES}\n"),
            )
                .into_response(),
        ),
    }
}
