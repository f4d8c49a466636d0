//! Bearer-token authentication for every RPC but health and reflection.
//! The comparison takes the same time however much of a guess is right and
//! however long it is (both sides are hashed to SHA-256 first, then the
//! digests compared without an early exit). Refusals are counted for
//! GetStatus and logged at most once a minute per peer ([`peers`]).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Instant,
};

use sha2::{Digest, Sha256};
use tonic::{Request, Status, service::Interceptor};
use tracing::warn;

use super::peers::{self, Throttle};

/// A token's SHA-256 digest: what is kept and compared, so the comparison
/// is over 32 bytes whatever the token's length.
type Fingerprint = [u8; 32];

fn fingerprint(token: &[u8]) -> Fingerprint {
    Sha256::digest(token).into()
}

/// Checks `authorization: Bearer <token>` when a token is configured.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    /// The expected token's fingerprint; `None` lets every request through.
    expected: Option<Fingerprint>,
    /// Refusals, shared by the clones on every service.
    failures: Arc<Failures>,
}

/// Refusals since the server started, and when to log them.
#[derive(Debug, Default)]
struct Failures {
    count: AtomicU64,
    warnings: Mutex<Throttle>,
}

impl Auth {
    /// An interceptor expecting `token`, or none.
    pub fn new(token: Option<&str>) -> Self {
        Self {
            expected: token.map(|t| fingerprint(t.as_bytes())),
            failures: Arc::default(),
        }
    }

    /// Requests refused for their token since the server started.
    pub fn failures(&self) -> u64 {
        self.failures.count.load(Relaxed)
    }

    /// Counts a refusal of `request`'s token and logs it when its peer's
    /// line is due; returns `status`.
    fn refuse(&self, request: &Request<()>, why: &'static str, status: Status) -> Status {
        self.failures.count.fetch_add(1, Relaxed);
        let peer = request.remote_addr().map(peers::canonical);
        let due = self
            .failures
            .warnings
            .lock()
            .expect("auth warnings lock")
            .note(peer, Instant::now());
        if let Some(due) = due {
            let from = due
                .peer
                .map_or_else(|| "other peers".to_string(), |ip| ip.to_string());
            warn!(
                peer = %from,
                failures = due.count,
                last = why,
                "requests refused for their bearer token \
                 (the count is since this peer's last such line)"
            );
        }
        status
    }
}

/// Whether `given` is the token whose fingerprint is `expected`, in a time
/// that depends on neither how much of it is right nor the expected length.
fn same(given: &[u8], expected: &Fingerprint) -> bool {
    fingerprint(given)
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let Some(header) = request.metadata().get("authorization") else {
            return Err(self.refuse(
                &request,
                "no authorization header",
                Status::unauthenticated(
                    "this server requires a token: send `authorization: Bearer <token>` \
                     (cantina --token or --token-file, or CANTINA_TOKEN or CANTINA_TOKEN_FILE)",
                ),
            ));
        };
        let header = header.as_bytes();
        let token = header
            .split_at_checked(7)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token);
        match token {
            Some(token) if same(token, expected) => Ok(request),
            Some(_) => Err(self.refuse(
                &request,
                "wrong token",
                Status::unauthenticated("invalid token"),
            )),
            None => Err(self.refuse(
                &request,
                "malformed authorization header",
                Status::unauthenticated("the authorization header must be `Bearer <token>`"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: &str) -> Request<()> {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
        request
    }

    #[test]
    fn checks_the_bearer_token() {
        let mut auth = Auth::new(Some("s3cret"));
        assert!(auth.call(with_header("Bearer s3cret")).is_ok());
        assert!(auth.call(with_header("bearer s3cret")).is_ok());
        let wrong = auth.call(with_header("Bearer s3cre7")).unwrap_err();
        assert_eq!(
            (wrong.code(), wrong.message()),
            (tonic::Code::Unauthenticated, "invalid token")
        );
        let missing = auth.call(Request::new(())).unwrap_err();
        assert!(missing.message().contains("requires a token"));
        assert!(auth.call(with_header("Basic czNjcmV0")).is_err());
        assert!(Auth::new(None).call(Request::new(())).is_ok());
    }

    #[test]
    fn compares_whole_tokens_only() {
        let expected = fingerprint(b"s3cret");
        assert!(same(b"s3cret", &expected));
        for wrong in [
            &b"s3cre7"[..],
            b"s3cre",
            b"s3crets",
            b"s3cret\n",
            b"",
            b"S3CRET",
        ] {
            assert!(!same(wrong, &expected), "{wrong:?}");
        }
        assert!(!same(b"s3cret", &fingerprint(b"")));
    }

    #[test]
    fn counts_every_refusal_across_clones() {
        let auth = Auth::new(Some("s3cret"));
        let mut one = auth.clone();
        let mut two = auth.clone();
        assert!(one.call(with_header("Bearer nope")).is_err());
        assert!(two.call(Request::new(())).is_err());
        assert!(two.call(with_header("Token s3cret")).is_err());
        assert!(one.call(with_header("Bearer s3cret")).is_ok());
        assert_eq!(auth.failures(), 3);
    }
}
