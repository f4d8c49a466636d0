//! Connecting to a Cantina server: address normalisation, TLS for
//! `https://` addresses, the bearer token on every call, and typed clients for
//! each service.

use std::{str::FromStr, time::Duration};

use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::v1::{
    command_service_client::CommandServiceClient, plan_service_client::PlanServiceClient,
    speech_service_client::SpeechServiceClient,
};

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
    #[error(
        "'{0}' is not a server address (expected host:port, http://host:port or https://host:port)"
    )]
    BadAddress(String),
    /// The token cannot be sent as a header.
    #[error("the token must be printable ASCII")]
    BadToken,
    /// The token file cannot be read, or holds no token (the text says which
    /// file and why).
    #[error("{0}")]
    BadTokenFile(String),
    /// The CA certificate given for TLS cannot be used.
    #[error("the CA certificate for TLS is not usable: {0}")]
    BadCa(String),
    /// The TLS handshake failed: the server's certificate was refused, or
    /// the server does not speak TLS.
    #[error("TLS with the Cantina server at {address} failed: {problem}. {hint}")]
    Tls {
        /// The address that was tried.
        address: String,
        /// What went wrong, in words.
        problem: String,
        /// What to do about it.
        hint: &'static str,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
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
    normalize_address_for(address, false)
}

/// As [`normalize_address`], with `https://` rather than `http://` for an
/// address without a scheme when `tls` (a CA certificate was given, which
/// only TLS uses). An explicit scheme is kept.
pub fn normalize_address_for(address: &str, tls: bool) -> String {
    let address = address.trim();
    let scheme = if tls { "https" } else { "http" };
    if address.contains("://") {
        address.to_string()
    } else if let Some(port) = address.strip_prefix(':') {
        format!("{scheme}://127.0.0.1:{port}")
    } else {
        format!("{scheme}://{address}")
    }
}

/// Advice for a connection failure that TLS caused, or `None` when TLS had
/// nothing to do with it.
fn tls_failure(uri: &str, error: &tonic::transport::Error) -> Option<(String, &'static str)> {
    use rustls::{CertificateError, Error as TlsError};

    const PASS_CA: &str = "Pass the CA certificate that signed the server's certificate with \
                           --tls-ca FILE (or CANTINA_TLS_CA)";
    // rustls' error travels inside an io::Error, whose `source()` skips it.
    let mut chain: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = chain {
        let tls = e.downcast_ref::<TlsError>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<TlsError>())
        });
        if let Some(tls) = tls {
            return Some(match tls {
                TlsError::InvalidCertificate(CertificateError::UnknownIssuer) => (
                    "the server's certificate is signed by a CA this client does not trust \
                     (unknown issuer)"
                        .into(),
                    PASS_CA,
                ),
                // A CA of the same name but another key: a regenerated one.
                TlsError::InvalidCertificate(CertificateError::BadSignature) => (
                    "the server's certificate is not signed by the CA this client trusts, \
                     though that CA has the same name (bad signature)"
                        .into(),
                    PASS_CA,
                ),
                TlsError::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => (
                    format!("the server's certificate is not valid for the name in {uri} ({tls})"),
                    "Connect with a name the certificate holds (--server https://NAME:PORT), \
                     or issue the certificate for this name",
                ),
                TlsError::InvalidCertificate(_) => (
                    format!("the server's certificate was refused ({tls})"),
                    "Check its dates and this machine's clock, and pass the CA that signed it \
                     with --tls-ca FILE (or CANTINA_TLS_CA)",
                ),
                _ => (
                    format!("the handshake failed ({tls})"),
                    "Is the server serving TLS? Use http://HOST:PORT for a plaintext server",
                ),
            });
        }
        let text = e.to_string();
        if text.contains("no native certs found") {
            return Some((
                "this system has no trusted root certificates".into(),
                PASS_CA,
            ));
        }
        if text.contains("HTTP/2 was not negotiated") {
            return Some((
                "the server did not offer HTTP/2 over TLS; it is not a gRPC server".into(),
                "Check the address",
            ));
        }
        chain = e.source();
    }
    None
}

/// Connected clients of every service the CLI uses, sharing one channel.
#[derive(Clone, Debug)]
pub struct Clients {
    /// The URI connected to (`http://` or `https://`).
    pub address: String,
    /// The connection, with the token interceptor.
    pub channel: AuthChannel,
    /// `cantina.v1.CommandService`.
    pub command: CommandServiceClient<AuthChannel>,
    /// `cantina.v1.SpeechService`.
    pub speech: SpeechServiceClient<AuthChannel>,
    /// `cantina.v1.PlanService`.
    pub plan: PlanServiceClient<AuthChannel>,
}

/// Connects to `address` (for example `127.0.0.1:50051`), sending `token` on
/// every call when given. An `https://` address uses TLS with the system's
/// trusted roots; see [`connect_with`] for a CA of one's own.
pub async fn connect(address: &str, token: Option<&str>) -> Result<Clients, ConnectError> {
    connect_with(address, token, None).await
}

/// Connects to `address`, sending `token` on every call when given, and
/// trusting the PEM CA certificate(s) `tls_ca` for TLS.
///
/// An `https://` address uses TLS: with `tls_ca`, only that CA is trusted
/// (a self-signed server certificate is its own CA); without it, the system's
/// roots are. The certificate must hold the address's host name (or IP).
/// An address without a scheme uses TLS when `tls_ca` is given; `http://`
/// never does.
pub async fn connect_with(
    address: &str,
    token: Option<&str>,
    tls_ca: Option<&[u8]>,
) -> Result<Clients, ConnectError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};

    let uri = normalize_address_for(address, tls_ca.is_some());
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|_| ConnectError::BadAddress(address.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // A long `logs -f` or `events` over a network that drops silently
        // notices within a minute and reconnects, instead of hanging.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if endpoint.uri().scheme_str() == Some("https") {
        let tls = match tls_ca {
            Some(pem) => {
                match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
                    Ok(certs) if !certs.is_empty() => {}
                    Ok(_) => {
                        return Err(ConnectError::BadCa(
                            "no certificate in it (expected a PEM file with \
                             -----BEGIN CERTIFICATE-----)"
                                .into(),
                        ));
                    }
                    Err(e) => return Err(ConnectError::BadCa(format!("not valid PEM: {e}"))),
                }
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|source| match tls_failure(&uri, &source) {
                Some((problem, hint)) => ConnectError::Tls {
                    address: uri.clone(),
                    problem,
                    hint,
                    source,
                },
                None => ConnectError::BadCa(root_cause(&source)),
            })?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| match tls_failure(&uri, &source) {
            Some((problem, hint)) => ConnectError::Tls {
                address: uri.clone(),
                problem,
                hint,
                source,
            },
            None => ConnectError::Unreachable {
                address: uri.clone(),
                source,
            },
        })?;
    let channel = InterceptedService::new(channel, BearerAuth::new(token)?);
    Ok(Clients {
        address: uri,
        command: CommandServiceClient::new(channel.clone()),
        speech: SpeechServiceClient::new(channel.clone()),
        plan: PlanServiceClient::new(channel.clone()),
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
        assert_eq!(
            normalize_address_for("droid:50051", true),
            "https://droid:50051"
        );
        assert_eq!(
            normalize_address_for("http://droid:50051", true),
            "http://droid:50051"
        );
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
