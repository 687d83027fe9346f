//! A `[[target]]` table into a [`Target`], its gaps filled from `[probe]`.

use std::ops::Range;

use super::{ProbeConfig, TargetConfig};
use crate::model::{Target, TargetNode};

/// Builds a target from its table. Errors carry the span they refer to.
pub fn build(tc: &TargetConfig, p: &ProbeConfig) -> Result<Target, (Range<usize>, String)> {
    let name = tc.name.get_ref().trim();
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err((
            tc.name.span(),
            "a target name must be non-empty and have no spaces; use something like \"svc-on-node1\"".into(),
        ));
    }
    let timeout = tc.timeout.unwrap_or(p.timeout).get();
    let connect_timeout = tc
        .connect_timeout
        .or(p.connect_timeout)
        .map(|d| d.get())
        .unwrap_or(timeout)
        .min(timeout);
    let interval = tc.interval.unwrap_or(p.interval).get();
    if interval.is_zero() {
        return Err((
            tc.name.span(),
            format!("target \"{name}\" has a zero interval; set interval to at least \"1ms\""),
        ));
    }
    let mut t = Target::parse(name, tc.url.get_ref()).map_err(|m| (tc.url.span(), m))?;
    t.node = match &tc.node {
        Some(n) if !n.is_empty() => TargetNode::Known(n.clone()),
        _ => TargetNode::Unknown,
    };
    t.interval = interval;
    t.jitter = tc.jitter.unwrap_or(p.jitter).get();
    t.timeout = timeout;
    t.connect_timeout = connect_timeout;
    t.first_byte_timeout = tc.first_byte_timeout.unwrap_or(p.first_byte_timeout).get();
    t.valid_status = match &tc.valid_status_codes {
        Some(codes) => codes.iter().map(|r| (r.0, r.1)).collect(),
        None => p.valid_status(),
    };
    t.max_body_bytes = tc.max_body_bytes.unwrap_or(p.max_body_bytes);
    Ok(t)
}
