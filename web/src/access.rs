//! Who may ask, and how many at once: the bearer token of `--token-file` and the limit of
//! `--max-concurrent`.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::failure::{Failure, Kind};

/// Shorter tokens are guessable over the network in the time a server runs.
const MIN_TOKEN_LEN: usize = 16;
/// How long a request waits for a free slot before it is told the server is busy: longer than a
/// search takes at the pool's size, shorter than a client's own timeout.
const SLOT_WAIT: Duration = Duration::from_secs(10);

pub struct Token(Vec<u8>);

impl Token {
    /// The file's first line. Like `.pgpass`, a file that others may read is refused: the token
    /// is the only thing between the network and the catalogue.
    pub fn read(path: &Path) -> Result<Token, String> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("--token-file {shown}: {e}"))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!("--token-file {shown}: group or others may read it (chmod 600)"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("--token-file {shown}: {e}"))?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("--token-file {shown}: the token must be at least {MIN_TOKEN_LEN} printable characters without spaces"));
        }
        Ok(Token(token.as_bytes().to_vec()))
    }

    /// Compares every byte whatever the first difference, so the time taken tells an attacker
    /// nothing about how much of a guess was right (only, at most, its length).
    pub fn matches(&self, offered: &[u8]) -> bool {
        let mut diff = self.0.len() ^ offered.len();
        for (i, &want) in self.0.iter().enumerate() {
            diff |= usize::from(want ^ offered.get(i).copied().unwrap_or(0));
        }
        std::hint::black_box(diff) == 0
    }
}

/// Every route asks for `Authorization: Bearer <token>` when a token is set.
pub async fn require_token(State(token): State<Arc<Option<Token>>>, req: Request, next: Next) -> Response {
    let Some(token) = token.as_ref() else {
        return next.run(req).await;
    };
    let offered = req.headers().get(header::AUTHORIZATION).and_then(|v| bearer(v.as_bytes()));
    match offered {
        Some(t) if token.matches(t) => next.run(req).await,
        Some(_) => Failure::new(Kind::Unauthorized, "the bearer token is not this server's").into_response(),
        None => Failure::new(Kind::Unauthorized, "this server wants an Authorization: Bearer token").into_response(),
    }
}

/// The credentials of `Bearer <token>`; the scheme's name is case-insensitive (RFC 7235).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| rest.trim_ascii())
}

/// Searches and the page's listings take a slot; beyond `--max-concurrent` they wait at most
/// SLOT_WAIT, then are turned away, so a flood cannot hold every connection of the pool.
pub async fn limit(State(slots): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(SLOT_WAIT, slots.acquire()).await {
        Ok(Ok(_permit)) => next.run(req).await,
        _ => Failure::new(Kind::Busy, "the server is busy with other searches; try again").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::Token;
    use std::os::unix::fs::PermissionsExt;

    fn file(text: &str, mode: u32) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("vs-web-token-{}-{mode:o}-{}", std::process::id(), text.len()));
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn tokens_match_exactly() {
        let t = Token::read(&file("0123456789abcdef-token\n", 0o600)).unwrap();
        assert!(t.matches(b"0123456789abcdef-token"));
        for wrong in [&b""[..], b"0123456789abcdef-toke", b"0123456789abcdef-tokenX", b"1123456789abcdef-token"] {
            assert!(!t.matches(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn bearer_scheme_in_any_case() {
        assert_eq!(super::bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(super::bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(super::bearer(b"Basic abcdefg"), None);
        assert_eq!(super::bearer(b"Bear"), None);
    }

    #[test]
    fn weak_or_readable_token_files_are_refused() {
        assert!(Token::read(&file("0123456789abcdef-token", 0o644)).err().unwrap().contains("chmod 600"));
        assert!(Token::read(&file("short", 0o600)).err().unwrap().contains("at least 16"));
        assert!(Token::read(&file("with a space in it ok", 0o600)).is_err());
        assert!(Token::read(std::path::Path::new("/nonexistent/token")).is_err());
    }
}
