//! The bearer token the API wants and the hub sends: read from a file (a
//! mounted Secret), never from the command line.

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the API token from {path} ({why}); point [server] token_file (or [hub] token_file) at a readable file holding the token, such as a mounted Secret"
)]
pub struct TokenError {
    pub path: String,
    pub why: String,
}

/// The token in `path`: at least 16 printable characters, no spaces.
pub fn read(path: &std::path::Path) -> Result<Arc<str>, TokenError> {
    let err = |why: String| TokenError {
        path: path.display().to_string(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.trim();
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(
            "the token must be at least 16 printable characters with no spaces".into(),
        ));
    }
    Ok(token.into())
}
