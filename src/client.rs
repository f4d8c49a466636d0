//! Connecting to a Cantina server: address normalisation, the bearer token on
//! every call, and typed clients for each service.

use std::{str::FromStr, time::Duration};

use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::v1::command_service_client::CommandServiceClient;

/// Where the server listens unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// A channel that adds `authorization: Bearer <token>` to every call.
pub type AuthChannel = InterceptedService<Channel, BearerAuth>;

/// Adds the bearer token, when there is one, to every request.
#[derive(Clone, Debug, Default)]
pub struct BearerAuth {
    /// The prepared header value; `None` sends no header at all.
    header: Option<MetadataValue<Ascii>>,
}

impl BearerAuth {
    /// An interceptor for `token`; `None` or an empty token sends nothing.
    pub fn new(token: Option<&str>) -> Result<Self, ConnectError> {
        let header = match token.filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => Some(
                MetadataValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| ConnectError::BadToken)?,
            ),
        };
        Ok(Self { header })
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address is not a valid URI.
    #[error("'{0}' is not a server address (expected host:port or http://host:port)")]
    BadAddress(String),
    /// The token cannot be sent as a header.
    #[error("the token must be printable ASCII")]
    BadToken,
    /// Nothing answered at the address.
    #[error(
        "cannot reach the Cantina server at {address}: {cause}. Is it running? Start it with `cantina-server`, or pass --server",
        cause = root_cause(.source)
    )]
    Unreachable {
        /// The address that was tried.
        address: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
}

/// The innermost error of a chain: tonic's own message ("transport error") is
/// generic, the cause ("Connection refused") says what happened.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Turns `host:port`, `:port` or a full URI into a URI tonic accepts.
pub fn normalize_address(address: &str) -> String {
    let address = address.trim();
    if address.contains("://") {
        address.to_string()
    } else if let Some(port) = address.strip_prefix(':') {
        format!("http://127.0.0.1:{port}")
    } else {
        format!("http://{address}")
    }
}

/// Connected clients of every service the CLI uses, sharing one channel.
#[derive(Clone, Debug)]
pub struct Clients {
    /// The connection, with the token interceptor.
    pub channel: AuthChannel,
    /// `cantina.v1.CommandService`.
    pub command: CommandServiceClient<AuthChannel>,
}

/// Connects to `address` (for example `127.0.0.1:50051`), sending `token` on
/// every call when given.
pub async fn connect(address: &str, token: Option<&str>) -> Result<Clients, ConnectError> {
    let uri = normalize_address(address);
    let endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|_| ConnectError::BadAddress(address.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| ConnectError::Unreachable {
            address: uri,
            source,
        })?;
    let channel = InterceptedService::new(channel, BearerAuth::new(token)?);
    Ok(Clients {
        command: CommandServiceClient::new(channel.clone()),
        channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(
            normalize_address("localhost:50051"),
            "http://localhost:50051"
        );
        assert_eq!(normalize_address(":7000"), "http://127.0.0.1:7000");
        assert_eq!(normalize_address("https://droid:443"), "https://droid:443");
    }

    #[test]
    fn token_header_is_added_only_when_set() {
        let mut none = BearerAuth::new(None).unwrap();
        let request = none.call(Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());

        let mut some = BearerAuth::new(Some("s3cret")).unwrap();
        let request = some.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );

        assert!(BearerAuth::new(Some("bad\ntoken")).is_err());
    }
}
