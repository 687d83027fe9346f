//! The page: one self-contained HTML file (no CDN, no network), embedded in
//! the binary. Served live at `/` by every prober (its own rows) and by the
//! hub (the cluster), where it polls `api/v1/matrix`; written with the
//! matrix inside by `matrix --format html`, `cluster matrix --format html`
//! and `lab demo --html`.

use super::report::ClusterMatrix;

const PAGE: &str = include_str!("page.html");
const MARKER: &str = "/*TAILPROBE_DATA*/";

/// The live page: it reads `api/v1/matrix` relative to where it is served.
pub fn live() -> &'static str {
    PAGE
}

/// The page with `m` inside: a report that opens anywhere, offline.
pub fn report(m: &ClusterMatrix) -> String {
    let json = serde_json::to_string(m).expect("a matrix always serializes");
    // `<` only occurs inside JSON strings, where \u003c means the same: no
    // node name or evidence line can close the script element.
    PAGE.replacen(MARKER, &json.replace('<', "\\u003c"), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_page_waits_for_data_and_the_report_carries_it_safely() {
        assert!(live().contains(MARKER));
        let m = ClusterMatrix {
            rests_on: "</script><script>alert(1)</script>".into(),
            ..Default::default()
        };
        let html = report(&m);
        assert!(!html.contains(MARKER));
        assert!(!html.contains("</script><script>alert(1)"));
        let start = html.find("type=\"application/json\">").unwrap() + 24;
        let end = start + html[start..].find("</script>").unwrap();
        let back: ClusterMatrix = serde_json::from_str(&html[start..end]).unwrap();
        assert_eq!(back.rests_on, m.rests_on);
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing is fetched from elsewhere"
        );
    }
}
