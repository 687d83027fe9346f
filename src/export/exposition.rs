//! Which exposition format a scraper gets. The registry encodes OpenMetrics;
//! a scraper that does not ask for it (an `Accept` without
//! `application/openmetrics-text`, curl, old Prometheus) gets the classic
//! text format, converted here, under the content type that says so. A body
//! labelled with the wrong format loses every counter's type and help in
//! Prometheus.

/// The two formats Prometheus reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    /// Picks by `Accept` quality values: OpenMetrics when it is asked for at
    /// least as strongly as `text/plain` (or `*/*`), else the text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut om, mut text) = (0.0f32, 0.0f32);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The body in this format, from the registry's OpenMetrics encoding.
    pub fn render(self, openmetrics: String) -> String {
        match self {
            Format::OpenMetrics => openmetrics,
            Format::Text => to_text(&openmetrics),
        }
    }
}

/// A `/metrics` response in the format the request's `Accept` asks for.
pub fn respond(headers: &axum::http::HeaderMap, openmetrics: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    let format = Format::negotiate(
        headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    (
        [(axum::http::header::CONTENT_TYPE, format.content_type())],
        format.render(openmetrics),
    )
        .into_response()
}

/// OpenMetrics to the text format 0.0.4: a counter family `x` is named by
/// its sample `x_total` in HELP and TYPE, `info` and `stateset` become
/// gauges, `unknown` becomes `untyped`; `# UNIT`, `# EOF`, `_created`
/// samples and exemplars have no place in it and are dropped.
pub fn to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, &str)> = None;
    let mut created: Option<String> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').or(Some((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{family}_total"), "counter"),
                "info" => (format!("{family}_info"), "gauge"),
                "stateset" | "gaugehistogram" => (family.to_string(), "gauge"),
                "unknown" => (family.to_string(), "untyped"),
                other => (family.to_string(), other),
            };
            created = (kind == "counter" || kind == "histogram" || kind == "summary")
                .then(|| format!("{family}_created"));
            if let Some((_, text)) = help.take().filter(|(f, _)| *f == family) {
                // Text-format help escapes only backslash and newline.
                out.push_str(&format!("# HELP {name} {}\n", text.replace("\\\"", "\"")));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if let Some(c) = &created
            && line.starts_with(c.as_str())
            && line[c.len()..].starts_with(['{', ' '])
        {
            continue;
        }
        // An exemplar follows the value after " # ".
        let sample = line.split_once(" # ").map_or(line, |(s, _)| s);
        out.push_str(sample);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics_and_curl_gets_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4,application/openmetrics-text;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }

    #[test]
    fn each_format_is_labelled_as_what_it_is() {
        let om = "# HELP a Probes.\n# TYPE a counter\na_total 1\n# EOF\n".to_string();
        assert_eq!(Format::OpenMetrics.render(om.clone()), om);
        assert_eq!(Format::Text.render(om.clone()), to_text(&om));
        let mut headers = axum::http::HeaderMap::new();
        let r = respond(&headers, om.clone());
        assert_eq!(
            r.headers()[axum::http::header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        headers.insert(
            axum::http::header::ACCEPT,
            "application/openmetrics-text;version=1.0.0"
                .parse()
                .unwrap(),
        );
        let r = respond(&headers, om);
        assert_eq!(r.status(), axum::http::StatusCode::OK);
        assert_eq!(
            r.headers()[axum::http::header::CONTENT_TYPE],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }

    #[test]
    fn counters_take_their_sample_name_and_openmetrics_only_lines_go() {
        let om = "# HELP a_probes Probes \\\"finished\\\".\n# TYPE a_probes counter\n\
                  a_probes_total{x=\"1\"} 3 # {trace_id=\"ab\"} 1.0\na_probes_created{x=\"1\"} 1.7e9\n\
                  # HELP a_up Up.\n# TYPE a_up gauge\n# UNIT a_up seconds\na_up 1\n\
                  # HELP a_build tailprobe.\n# TYPE a_build info\na_build_info{version=\"1\"} 1\n\
                  # HELP a_lag Lag.\n# TYPE a_lag histogram\na_lag_bucket{le=\"+Inf\"} 2\na_lag_sum 0.5\na_lag_count 2\na_lag_created 1.7e9\n\
                  # HELP a_up2 Up.\n# TYPE a_up2 gauge\na_up2_created 1\n# EOF\n";
        assert_eq!(
            to_text(om),
            "# HELP a_probes_total Probes \"finished\".\n# TYPE a_probes_total counter\n\
             a_probes_total{x=\"1\"} 3\n\
             # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n\
             # HELP a_build_info tailprobe.\n# TYPE a_build_info gauge\na_build_info{version=\"1\"} 1\n\
             # HELP a_lag Lag.\n# TYPE a_lag histogram\na_lag_bucket{le=\"+Inf\"} 2\na_lag_sum 0.5\na_lag_count 2\n\
             # HELP a_up2 Up.\n# TYPE a_up2 gauge\na_up2_created 1\n"
        );
    }
}
