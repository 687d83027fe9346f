//! Certificates that end soon. Every `https://` handshake reads the
//! server certificate's end of validity; the earliest one a target served
//! in the window is judged against the newest probe's time (not the
//! clock: a replayed recording judges the same), so a renewal that
//! stalled is said weeks before the handshakes start to fail.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use super::{Finding, FindingKind};
use crate::detect::Locus;
use crate::detect::cell::Cell;
use crate::detect::scope::{Grouping, ScopeKey};
use crate::model::{DetectorConfig, Severity};

pub fn findings(cells: &[Cell], cfg: &DetectorConfig) -> Vec<Finding> {
    // target -> (earliest end, newest probe, its cells)
    let mut by: BTreeMap<&str, (i64, i64, Vec<&Cell>)> = BTreeMap::new();
    for c in cells {
        let Some(end) = c.w.cert_not_after else {
            continue;
        };
        let newest =
            c.w.samples
                .iter()
                .map(|s| s.at)
                .max()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
        let Some(newest) = newest else { continue };
        let e = by
            .entry(&c.w.dims.target)
            .or_insert((end, newest, Vec::new()));
        e.0 = e.0.min(end);
        e.1 = e.1.max(newest);
        e.2.push(c);
    }
    let warn = cfg.cert_expiry_warning.as_secs() as i64;
    by.into_iter()
        .filter(|(_, (end, now, _))| end - now < warn)
        .map(|(target, (end, now, of))| {
            let left = end - now;
            let sources: std::collections::BTreeSet<&str> =
                of.iter().map(|c| &*c.w.dims.source_node).collect();
            let until = humantime::format_rfc3339_seconds(
                UNIX_EPOCH + Duration::from_secs(end.max(0).unsigned_abs()),
            );
            let when = if left <= 0 {
                format!(
                    "it ended {} before the newest probe",
                    humantime::format_duration(Duration::from_secs(left.unsigned_abs()))
                )
            } else {
                format!(
                    "{} after the newest probe, inside the {} warning",
                    humantime::format_duration(Duration::from_secs(left.unsigned_abs())),
                    humantime::format_duration(cfg.cert_expiry_warning)
                )
            };
            let mut f = Finding {
                targets: vec![target.to_string()],
                samples: of.iter().map(|c| c.n).sum(),
                share: 1.0,
                locus: Locus::Backend,
                locus_why: "the certificate is the server's own".into(),
                evidence: vec![
                    format!("the certificate {target} serves is valid until {until}: {when}"),
                    "renew it, or see why the renewal has not happened (cert-manager: kubectl describe certificate; the API server's: kubeadm certs check-expiration)".into(),
                ],
                ..Finding::new(
                    FindingKind::TlsCertExpiring,
                    ScopeKey::of(Grouping::Target, &of[0].w.dims),
                    sources.len(),
                    of.len(),
                )
            }
            .with_confidence(1.0);
            f.severity = if left <= 0 {
                Severity::Error
            } else {
                Severity::Warn
            };
            f
        })
        .collect()
}
