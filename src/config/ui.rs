//! `[ui]`: the page's links out.

use serde::Deserialize;

/// `[ui]`: read by the page the probers and the hub serve, and by the
/// HTML reports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// A trace viewer's URL with `{trace_id}` where the id goes, such as
    /// "https://jaeger.example/trace/{trace_id}": each cell's example
    /// probes link there.
    pub trace_url: Option<String>,
}

impl UiConfig {
    /// What is wrong with the table, if anything.
    pub fn problem(&self) -> Option<String> {
        let url = self.trace_url.as_deref()?;
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && url.contains("{trace_id}");
        (!ok).then(|| {
            format!(
                "trace_url \"{url}\" is not an http(s) URL with {{trace_id}} in it; write it as \"https://jaeger.example/trace/{{trace_id}}\""
            )
        })
    }
}
