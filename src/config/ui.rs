//! `[ui]`: the page's links out.

use serde::Deserialize;

/// `[ui]`: read by the page the probers and the hub serve, and by the
/// HTML reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// A trace viewer's URL with `{trace_id}` where the id goes, such as
    /// "https://jaeger.example/trace/{trace_id}": each cell's example
    /// probes link there.
    pub trace_url: Option<String>,
    /// Where the README is read: `tailprobe rules` points every alert's
    /// `runbook_url` at its sections. A fork or an internal mirror sets its
    /// own.
    pub runbook_base: String,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            trace_url: None,
            runbook_base: "https://github.com/tailprobe/tailprobe/blob/main/README.md".into(),
        }
    }
}

impl UiConfig {
    /// What is wrong with the table, if anything.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let base = &self.runbook_base;
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains('#') {
            return Some((
                "runbook_base",
                format!(
                    "runbook_base \"{base}\" is not an http(s) URL without a #fragment; write the README's URL, such as \"https://git.example/tailprobe/blob/main/README.md\""
                ),
            ));
        }
        let url = self.trace_url.as_deref()?;
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && url.contains("{trace_id}");
        (!ok).then(|| {
            (
                "trace_url",
                format!(
                "trace_url \"{url}\" is not an http(s) URL with {{trace_id}} in it; write it as \"https://jaeger.example/trace/{{trace_id}}\""
                ),
            )
        })
    }
}
