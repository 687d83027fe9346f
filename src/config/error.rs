//! Configuration errors that point at the offending text.

use std::fmt;

/// What was wrong with a configuration file, and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the file ({source}); check the path and that it is readable")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    At(Located),
}

/// `FILE:LINE:COL: message`, with 1-based line and column.
#[derive(Debug)]
pub struct Located {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path, self.line, self.column, self.message
        )
    }
}

impl ConfigError {
    /// An error at byte `offset` of `text`.
    pub fn at(path: &str, text: &str, offset: usize, message: String) -> Self {
        let (line, column) = line_col(text, offset);
        ConfigError::At(Located {
            path: path.to_string(),
            line,
            column,
            message,
        })
    }

    pub(crate) fn from_toml(path: &str, text: &str, e: &toml::de::Error) -> Self {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let message = rewrite(text, offset, e.message());
        Self::at(path, text, offset, message)
    }

    /// The position, when the error has one.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            ConfigError::At(l) => Some((l.line, l.column)),
            ConfigError::Read { .. } => None,
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a sentence
/// that names the table and suggests the nearest key.
fn rewrite(text: &str, offset: usize, message: &str) -> String {
    let message = message.trim();
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return with_hint(message);
    };
    let Some((key, expected)) = rest.split_once('`') else {
        return with_hint(message);
    };
    let keys: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let table = enclosing_table(text, offset);
    let place = match table {
        Some(t) => format!(" in [{t}]"),
        None => " at the top level".to_string(),
    };
    match nearest(key, &keys) {
        Some(k) => format!("unknown key \"{key}\"{place}; did you mean \"{k}\"?"),
        None if keys.is_empty() => format!("unknown key \"{key}\"{place}; remove it"),
        None => format!(
            "unknown key \"{key}\"{place}; expected one of: {}",
            keys.join(", ")
        ),
    }
}

fn with_hint(message: &str) -> String {
    if message.contains("; ") {
        message.to_string()
    } else {
        format!(
            "{message}; fix this line (config.toml in the project root is a documented example)"
        )
    }
}

/// The `[table]` or `[[table]]` header above `offset`, if any.
fn enclosing_table(text: &str, offset: usize) -> Option<String> {
    text[..offset.min(text.len())]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
}

fn nearest<'a>(key: &str, keys: &[&'a str]) -> Option<&'a str> {
    keys.iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn suggests_the_nearest_key() {
        assert_eq!(nearest("timout", &["interval", "timeout"]), Some("timeout"));
        assert_eq!(nearest("zzzzzz", &["interval", "timeout"]), None);
    }
}
