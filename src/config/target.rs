//! A `[[target]]` table into a [`Target`], its gaps filled from `[probe]`.

use std::ops::Range;
use std::path::PathBuf;

use super::{ProbeConfig, TargetConfig};
use crate::model::{ProbeKind, Target, TargetNode};

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
    t.tls_timeout = tc.tls_timeout.unwrap_or(p.tls_timeout).get();
    t.bearer_token_file = tc.bearer_token_file.as_ref().map(PathBuf::from);
    if let Some(all) = tc.all_addresses.as_ref().filter(|a| *a.get_ref()) {
        if t.ip.is_some() || matches!(t.kind, ProbeKind::Dns(_)) {
            return Err((
                all.span(),
                format!(
                    "all_addresses needs a host name to resolve; target \"{name}\" names {}",
                    tc.url.get_ref()
                ),
            ));
        }
        t.all_addresses = true;
    }
    tls(tc, &mut t)?;
    match tc.family {
        Some(f) => t.with_family(f).map_err(|m| (tc.url.span(), m)),
        None => Ok(t),
    }
}

/// The `https://` fields: refused on other schemes, and each file read now,
/// so an unreadable CA fails `tailprobe check`, not every probe.
fn tls(tc: &TargetConfig, t: &mut Target) -> Result<(), (Range<usize>, String)> {
    let name = &t.name;
    let Some(o) = t.tls.as_mut() else {
        let set = [
            ("server_name", tc.server_name.as_ref().map(|s| s.span())),
            ("ca_file", tc.ca_file.as_ref().map(|s| s.span())),
            ("client_cert", tc.client_cert.as_ref().map(|s| s.span())),
            ("client_key", tc.client_key.as_ref().map(|s| s.span())),
        ];
        if let Some((key, Some(span))) = set.into_iter().find(|(_, s)| s.is_some()) {
            return Err((
                span,
                format!(
                    "{key} applies to https:// targets only; target \"{name}\" is {}",
                    tc.url.get_ref()
                ),
            ));
        }
        return Ok(());
    };
    if let Some(s) = &tc.server_name {
        let v = s.get_ref().trim();
        if v.is_empty() {
            return Err((s.span(), "server_name is empty; write the name the certificate carries, such as \"kubernetes.default.svc\"".into()));
        }
        o.server_name = v.to_string();
    }
    if let Some(ca) = &tc.ca_file {
        let path = PathBuf::from(ca.get_ref());
        pem_certificates("CA file", &path).map_err(|e| (ca.span(), e))?;
        o.ca_file = Some(path);
    }
    match (&tc.client_cert, &tc.client_key) {
        (None, None) => {}
        (Some(c), Some(k)) => {
            let cert = PathBuf::from(c.get_ref());
            pem_certificates("client certificate", &cert).map_err(|e| (c.span(), e))?;
            let key = PathBuf::from(k.get_ref());
            std::fs::read(&key).map_err(|e| {
                (
                    k.span(),
                    format!("cannot read the client key {} ({e})", key.display()),
                )
            })?;
            o.client_cert = Some((cert, key));
        }
        (Some(s), None) | (None, Some(s)) => {
            return Err((
                s.span(),
                "client_cert and client_key go together; set both, or neither".into(),
            ));
        }
    }
    Ok(())
}

/// The PEM certificates a file holds: at least one.
fn pem_certificates(what: &str, path: &std::path::Path) -> Result<usize, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the {what} {} ({e}); give a readable PEM file",
            path.display()
        )
    })?;
    let n = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the {what} {} is not PEM ({e})", path.display()))?
        .len();
    if n == 0 {
        return Err(format!(
            "the {what} {} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
            path.display()
        ));
    }
    Ok(n)
}
