//! Bearer-token authentication for every RPC but health and reflection.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

/// Checks `authorization: Bearer <token>` when a token is configured.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    /// The expected token; `None` lets every request through.
    token: Option<Arc<[u8]>>,
}

impl Auth {
    /// An interceptor expecting `token`, or none.
    pub fn new(token: Option<&str>) -> Self {
        Self {
            token: token.map(|t| Arc::from(t.as_bytes())),
        }
    }
}

/// Compares without an early exit, so the time taken does not reveal how
/// much of a guessed token was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.token else {
            return Ok(request);
        };
        let Some(header) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "this server requires a token: send `authorization: Bearer <token>` \
                 (cantina --token, or CANTINA_TOKEN)",
            ));
        };
        let header = header.as_bytes();
        let token = header
            .split_at_checked(7)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token);
        match token {
            Some(token) if same(token, expected) => Ok(request),
            Some(_) => Err(Status::unauthenticated("invalid token")),
            None => Err(Status::unauthenticated(
                "the authorization header must be `Bearer <token>`",
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
}
