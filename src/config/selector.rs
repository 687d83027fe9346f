//! Equality-based label selectors (`a=b`, `a==b`, `a!=b`, `a`, `!a`, joined by
//! commas), as `kubectl -l` writes them. They narrow the opted-in Services on
//! the prober's side, so a single watch serves every selector.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// A parsed selector; the empty one selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Term>);

impl std::str::FromStr for LabelSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let term = if let Some((k, v)) = raw.split_once("!=") {
                Term::NotEquals(key(k, s)?, value(v, s)?)
            } else if let Some((k, v)) = raw.split_once("==").or_else(|| raw.split_once('=')) {
                Term::Equals(key(k, s)?, value(v, s)?)
            } else if let Some(k) = raw.strip_prefix('!') {
                Term::Absent(key(k, s)?)
            } else {
                Term::Exists(key(raw, s)?)
            };
            terms.push(term);
        }
        Ok(Self(terms))
    }
}

fn key(k: &str, whole: &str) -> Result<String, String> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!(
            "label selector \"{whole}\": \"{k}\" is not a label key; write terms like \"team=payments,tier!=batch\""
        ))
    }
}

fn value(v: &str, whole: &str) -> Result<String, String> {
    let v = v.trim();
    if v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        Ok(v.to_string())
    } else {
        Err(format!(
            "label selector \"{whole}\": \"{v}\" is not a label value (at most 63 letters, digits, '-', '_' or '.')"
        ))
    }
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|t| match t {
            Term::Equals(k, v) => labels.get(k) == Some(v),
            Term::NotEquals(k, v) => labels.get(k) != Some(v),
            Term::Exists(k) => labels.contains_key(k),
            Term::Absent(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_like_kubectl() {
        let labels: BTreeMap<String, String> = [("team", "payments"), ("tier", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sel = |s: &str| s.parse::<LabelSelector>().unwrap().matches(&labels);
        assert!(sel(""));
        assert!(sel("team=payments"));
        assert!(sel("team==payments, tier"));
        assert!(sel("tier!=batch,!canary"));
        assert!(!sel("team=search"));
        assert!(!sel("tier!=web"));
        assert!(!sel("canary"));
        assert!(!sel("!team"));
        assert!(sel("app.kubernetes.io/part-of!=x"));
        let err = "team=pay ments".parse::<LabelSelector>().unwrap_err();
        assert!(err.contains("not a label value"), "{err}");
        assert!("=x".parse::<LabelSelector>().is_err());
    }
}
