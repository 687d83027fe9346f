//! The prober's own page: `/` (the page, live) and `/api/v1/matrix` (its
//! own rows as a cluster matrix: the same document the hub serves, so one
//! page reads both).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::api::ApiState;
use crate::model::Dims;
use crate::wire::report::{Cell, ClusterCell, ClusterMatrix, rungs_of};

/// The windows `/api/v1/matrix?window=` offers.
const WINDOWS: [&str; 3] = ["1m", "10m", "cumulative"];

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        crate::wire::page::live(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct MatrixQuery {
    window: Option<String>,
}

pub async fn matrix(State(s): State<ApiState>, Query(q): Query<MatrixQuery>) -> Response {
    let name = q.window.unwrap_or_else(|| "10m".into());
    let since = match name.as_str() {
        "cumulative" => None,
        "1m" => Some(Duration::from_secs(60)),
        "10m" => Some(Duration::from_secs(600)),
        other => {
            return (
                StatusCode::BAD_REQUEST,
                format!("window \"{other}\" is not one of 1m, 10m or cumulative\n"),
            )
                .into_response();
        }
    };
    let (findings, facts, generated_at) = {
        let v = s.verdict.read().unwrap_or_else(|e| e.into_inner());
        (v.findings.clone(), v.facts.clone(), v.generated_at.clone())
    };
    let (node, kind, stats) = (
        Arc::clone(&s.source_node),
        s.source_kind,
        Arc::clone(&s.stats),
    );
    let (trace_url, labels) = (s.trace_url.clone(), s.node_labels.clone());
    // Copying every series is CPU work: off the runtime's workers.
    let built = tokio::task::spawn_blocking(move || {
        let prober = format!("{node} {}", kind.as_str());
        let now = SystemTime::now();
        let mut cells: Vec<Cell> = Vec::new();
        let reading = stats.reading();
        reading.visit(|series| {
            cells.push(match since {
                None => Cell::from_series(series),
                Some(w) => {
                    let recent: Vec<_> = series
                        .recent
                        .iter()
                        .filter(|p| p.at >= now - w)
                        .cloned()
                        .collect();
                    Cell::from_samples(series.key.clone(), &series.url, &recent)
                        .with_cert_not_after(series.cert_not_after)
                }
            });
        });
        let mut index: BTreeMap<Dims, usize> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.dims.clone(), i))
            .collect();
        for stall in reading
            .stalls
            .iter()
            .filter(|s| s.pending.syn_retransmits > 0)
        {
            let i = *index.entry(stall.dims.clone()).or_insert_with(|| {
                cells.push(Cell::from_samples(stall.dims.clone(), &stall.url, &[]));
                cells.len() - 1
            });
            *cells[i]
                .waiting
                .entry(stall.pending.syn_retransmits)
                .or_default() += 1;
        }
        ClusterMatrix {
            generated_at,
            rests_on: format!("this prober alone: {prober} network"),
            probers: [("up".to_string(), 1)].into(),
            cells: cells
                .into_iter()
                .map(|cell| ClusterCell {
                    cell,
                    prober: prober.clone(),
                })
                .collect(),
            rungs: rungs_of(facts.as_slice()),
            facts: facts.into_iter().collect(),
            findings,
            window: name,
            windows: WINDOWS.iter().map(|w| w.to_string()).collect(),
            trace_url,
            node_labels: if labels.is_empty() {
                BTreeMap::new()
            } else {
                [(node.to_string(), labels)].into()
            },
        }
    })
    .await;
    match built {
        Ok(m) => axum::Json(m).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("building the matrix failed ({e})\n"),
        )
            .into_response(),
    }
}
