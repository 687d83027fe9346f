//! A probe as a trace: a client span named for the probe, its phases as
//! child spans (dns, connect, tls, first byte), each lost SYN an event, the
//! kernel's retransmit count and rung as attributes, and over `https://`
//! the server name and the certificate's end of validity.

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use std::time::Duration;

use opentelemetry::{Context, KeyValue};

use super::Otlp;
use crate::model::{Outcome, ProbeKind, ProbeResult, TraceRef};

impl Otlp {
    /// Exports a finished probe's trace when it is kept; returns it.
    pub fn trace(&self, r: &ProbeResult) -> Option<TraceRef> {
        (self.traces_on && r.outcome != Outcome::Cancelled && self.keep(r))
            .then(|| self.span(r, Self::dims(r)))
    }

    fn span(&self, r: &ProbeResult, mut attrs: Vec<KeyValue>) -> TraceRef {
        let t = &r.target;
        attrs.extend([
            KeyValue::new("server.address", t.host.clone()),
            KeyValue::new("server.port", i64::from(t.port)),
            KeyValue::new("url.full", t.url.clone()),
            KeyValue::new("tailprobe.outcome", r.outcome.as_str()),
            KeyValue::new("tailprobe.syn_retransmits", i64::from(r.syn_retransmits)),
        ]);
        if t.kind == ProbeKind::Http {
            attrs.push(KeyValue::new("http.request.method", "GET"));
        }
        if let Some(o) = &t.tls {
            attrs.push(KeyValue::new("url.scheme", "https"));
            attrs.push(KeyValue::new("tls.server.name", o.server_name.clone()));
        }
        if let Some(end) = r.cert_not_after {
            // The conventions' tls.server.not_after is an RFC 3339 time.
            let at = std::time::UNIX_EPOCH + Duration::from_secs(end.max(0).unsigned_abs());
            attrs.push(KeyValue::new(
                "tls.server.not_after",
                humantime::format_rfc3339_seconds(at).to_string(),
            ));
        }
        if let Some(s) = r.status {
            attrs.push(KeyValue::new("http.response.status_code", i64::from(s)));
        }
        if let Some(p) = r.peer_addr {
            attrs.push(KeyValue::new("network.peer.address", p.ip().to_string()));
        }
        if let Some(l) = r.local_addr {
            attrs.push(KeyValue::new("network.local.port", i64::from(l.port())));
        }
        if !r.outcome.is_ok() {
            // The conventions: the status code for an HTTP status error.
            let kind = match (r.outcome, r.status) {
                (Outcome::HttpStatus, Some(code)) => code.to_string(),
                _ => r.outcome.as_str().to_string(),
            };
            attrs.push(KeyValue::new("error.type", kind));
        }
        if let Some(rung) = self.schedule.rung_seconds(r.syn_retransmits) {
            attrs.push(KeyValue::new("tailprobe.rung_seconds", rung));
        }
        let start = r.started_at;
        let root = self
            .tracer
            .span_builder(match t.kind {
                ProbeKind::Http => format!("GET {}", t.name),
                ProbeKind::Tcp => format!("connect {}", t.name),
                ProbeKind::Dns(_) => format!("query {}", t.name),
            })
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attrs)
            .start(&self.tracer);
        let cx = Context::current_with_span(root);
        let child = |name: &'static str, from: Duration, to: Duration| {
            let mut s = self
                .tracer
                .span_builder(name)
                .with_kind(SpanKind::Internal)
                .with_start_time(start + from)
                .start_with_context(&self.tracer, &cx);
            s.end_with_timestamp(start + to);
        };
        let p = &r.phases;
        let connect_from = p.dns.unwrap_or_default();
        if let Some(d) = p.dns {
            child("dns", Duration::ZERO, d);
        }
        if let Some(c) = p.connect {
            child("connect", connect_from, c);
            if let Some(tls) = p.tls {
                child("tls", c, tls);
            } else if t.tls.is_some() && r.outcome != crate::model::Outcome::Ok {
                // The handshake that failed or stalled, to its end.
                child("tls", c, p.total);
            }
            if let Some(fb) = p.first_byte {
                child("first byte", p.ready().unwrap_or(c), fb);
            }
        } else if t.kind != ProbeKind::Http || r.syn_retransmits > 0 {
            child("connect", connect_from, p.total);
        }
        let span = cx.span();
        for e in &r.syn_events {
            span.add_event_with_timestamp(
                "SYN retransmitted",
                start + connect_from + e.at,
                vec![KeyValue::new(
                    "tailprobe.syn_retransmits",
                    i64::from(e.retransmits),
                )],
            );
        }
        if !r.outcome.is_ok() {
            span.set_status(Status::error(
                r.error.clone().unwrap_or_else(|| r.outcome.as_str().into()),
            ));
        }
        span.end_with_timestamp(start + p.total);
        let sc = span.span_context();
        TraceRef {
            trace_id: sc.trace_id().to_string(),
            span_id: sc.span_id().to_string(),
        }
    }
}
