//! TLS: a real server with a certificate generated here (a test CA and a
//! server certificate for `localhost` and 127.0.0.1), clients that trust the
//! CA or not, TLS with the token, health and reflection over TLS, the TLS
//! settings' validation, and the `cantina` binary over https.

mod common;

use std::path::{Path, PathBuf};

use cantina::{
    client::{Clients, ConnectError, connect, connect_with},
    v1::DispatchRequest,
};
use cantina_server::config::{Origin, Sources, TlsFiles};
use common::{TestServer, test_config};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tempfile::TempDir;
use tonic::Code;

/// A test CA and a server certificate it signed, as PEM files in a tempdir.
struct Pki {
    dir: TempDir,
    ca: Vec<u8>,
}

impl Pki {
    /// A CA, and a server certificate for `names` signed by it.
    fn new(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("Cantina test CA for {}", names.join(" ")),
        );
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "cantina-server");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();

        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        Self {
            ca: ca_cert.pem().into_bytes(),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
        }
    }
}

/// A server with TLS (and `token`, when given) on a free port.
async fn tls_server(pki: &Pki, token: Option<&str>) -> TestServer {
    let mut config = test_config();
    config.tls = Some(pki.files());
    config.token = token.map(str::to_string);
    TestServer::with_config(config).await
}

fn port(server: &TestServer) -> u16 {
    server.server.local_addr().port()
}

async fn status(clients: &Clients) -> Result<serde_json::Value, tonic::Status> {
    let response = clients
        .command
        .clone()
        .dispatch(DispatchRequest {
            line: "status".into(),
            correlation_id: String::new(),
        })
        .await?
        .into_inner();
    Ok(cantina::json::struct_to_json(
        response.data.as_ref().expect("status returns data"),
    ))
}

#[tokio::test]
async fn a_client_trusting_the_ca_dispatches_over_tls() {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let server = tls_server(&pki, None).await;
    for host in ["localhost", "127.0.0.1"] {
        let address = format!("https://{host}:{}", port(&server));
        let clients = connect_with(&address, None, Some(&pki.ca))
            .await
            .unwrap_or_else(|e| panic!("{address}: {e}"));
        assert_eq!(clients.address, address);
        let data = status(&clients).await.unwrap();
        assert_eq!(data["tls"], true);
        assert_eq!(data["mode"], "IDLE");
    }
    // Without a scheme, a CA means TLS.
    let clients = connect_with(&format!("localhost:{}", port(&server)), None, Some(&pki.ca))
        .await
        .unwrap();
    assert!(
        clients.address.starts_with("https://"),
        "{}",
        clients.address
    );
    status(&clients).await.unwrap();
}

#[tokio::test]
async fn a_plaintext_client_gets_nothing_from_a_tls_server() {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let server = tls_server(&pki, None).await;
    // tonic may only find out on the first call: either way, nothing works.
    match connect(&server.address, None).await {
        Err(ConnectError::Unreachable { .. }) => {}
        Err(other) => panic!("unexpected error: {other}"),
        Ok(clients) => {
            let error = status(&clients).await.unwrap_err();
            // A transport failure (the error carries its cause), not a
            // status the server sent.
            assert!(std::error::Error::source(&error).is_some(), "{error:?}");
        }
    }
}

#[tokio::test]
async fn a_tls_client_refuses_a_certificate_it_cannot_trust() {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let server = tls_server(&pki, None).await;
    let address = format!("https://localhost:{}", port(&server));

    // Another CA than the one that signed the server's certificate.
    let other = Pki::new(&["localhost"]);
    let error = connect_with(&address, None, Some(&other.ca))
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectError::Tls { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("unknown issuer"), "{message}");
    assert!(message.contains("--tls-ca"), "{message}");

    // Another CA of the same name (a regenerated one).
    let same_name = Pki::new(&["localhost", "127.0.0.1"]);
    let error = connect_with(&address, None, Some(&same_name.ca))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("bad signature"), "{message}");
    assert!(message.contains("--tls-ca"), "{message}");

    // No CA: the system's roots, which never signed a test certificate (or
    // there are none here).
    let error = connect_with(&address, None, None).await.unwrap_err();
    assert!(matches!(error, ConnectError::Tls { .. }), "{error:?}");
    assert!(error.to_string().contains("--tls-ca"), "{error}");
}

#[tokio::test]
async fn a_tls_client_refuses_a_certificate_for_another_name() {
    let pki = Pki::new(&["droid.example"]);
    let server = tls_server(&pki, None).await;
    let address = format!("https://localhost:{}", port(&server));
    let error = connect_with(&address, None, Some(&pki.ca))
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectError::Tls { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("not valid for the name"), "{message}");
}

#[tokio::test]
async fn a_tls_client_to_a_plaintext_server_is_told_so() {
    let server = TestServer::start().await;
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let address = format!("https://127.0.0.1:{}", port(&server));
    let error = connect_with(&address, None, Some(&pki.ca))
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectError::Tls { .. }), "{error:?}");
    assert!(error.to_string().contains("http://"), "{error}");
}

#[tokio::test]
async fn a_ca_that_is_not_pem_is_a_usage_error() {
    let error = connect_with("https://localhost:1", None, Some(b"not a certificate"))
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectError::BadCa(_)), "{error:?}");
}

#[tokio::test]
async fn tls_and_the_token_work_together() {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let server = tls_server(&pki, Some("s3cret")).await;
    let address = format!("https://localhost:{}", port(&server));

    let wrong = connect_with(&address, Some("guess"), Some(&pki.ca))
        .await
        .unwrap();
    assert_eq!(
        status(&wrong).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let none = connect_with(&address, None, Some(&pki.ca)).await.unwrap();
    assert_eq!(
        status(&none).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let right = connect_with(&address, Some("s3cret"), Some(&pki.ca))
        .await
        .unwrap();
    let data = status(&right).await.unwrap();
    assert_eq!(data["token_required"], true);
    assert_eq!(data["tls"], true);
}

#[tokio::test]
async fn health_and_reflection_answer_over_tls_without_a_token() {
    use tokio_stream::StreamExt;
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let server = tls_server(&pki, Some("s3cret")).await;
    let address = format!("https://localhost:{}", port(&server));
    let clients = connect_with(&address, None, Some(&pki.ca)).await.unwrap();

    let mut health = HealthClient::new(clients.channel.clone());
    let response = health
        .check(HealthCheckRequest {
            service: cantina::health::SERVER.into(),
        })
        .await
        .unwrap();
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);

    let mut reflection = ServerReflectionClient::new(clients.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(response)) = responses.next().await else {
        panic!("no reflection response");
    };
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list: {response:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "cantina.v1.CommandService"),
        "{list:?}"
    );
}

#[tokio::test]
async fn a_self_signed_certificate_is_its_own_ca() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let mut config = test_config();
    config.tls = Some(TlsFiles { cert, key });
    let server = TestServer::with_config(config).await;
    let address = format!("https://localhost:{}", port(&server));
    let clients = connect_with(&address, None, Some(generated.cert.pem().as_bytes()))
        .await
        .unwrap();
    status(&clients).await.unwrap();
}

fn resolve(settings: &[(&'static str, &Path)]) -> Result<(), String> {
    let sources = Sources {
        file: None,
        overrides: settings
            .iter()
            .map(|(key, path)| {
                (
                    *key,
                    (
                        path.display().to_string(),
                        Origin::Env(if *key == "tls_cert" {
                            "CANTINA_TLS_CERT"
                        } else {
                            "CANTINA_TLS_KEY"
                        }),
                    ),
                )
            })
            .collect(),
    };
    sources.resolve().map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn a_certificate_without_its_key_is_a_bad_setting() {
    let pki = Pki::new(&["localhost"]);
    let error = resolve(&[("tls_cert", &pki.path("server.pem"))]).unwrap_err();
    assert!(error.starts_with("1 bad setting:"), "{error}");
    assert!(error.contains("tls_cert = "), "{error}");
    assert!(error.contains("(from CANTINA_TLS_CERT)"), "{error}");
    assert!(error.contains("tls_key"), "{error}");
}

#[test]
fn garbage_pem_is_a_bad_setting_naming_the_file() {
    let pki = Pki::new(&["localhost"]);
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let error =
        resolve(&[("tls_cert", &garbage), ("tls_key", &pki.path("server.key"))]).unwrap_err();
    assert!(error.contains(&garbage.display().to_string()), "{error}");
    assert!(error.contains("tls_cert = "), "{error}");
    assert!(
        resolve(&[
            ("tls_cert", &pki.path("server.pem")),
            ("tls_key", &pki.path("server.key")),
        ])
        .is_ok()
    );
}

#[tokio::test]
async fn the_cli_speaks_tls_with_the_ca() {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let server = tls_server(&pki, None).await;
    let address = format!("https://localhost:{}", port(&server));
    let cantina_at = |server: &str, args: &[&str]| {
        let mut command = common::cantina(server);
        command.args(args);
        command
    };
    let cantina = |args: &[&str]| cantina_at(&address, args);

    let ca = pki.path("ca.pem");
    let ok = cantina(&["--tls-ca", ca.to_str().unwrap(), "status"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert_eq!(ok.status.code(), Some(0), "{stderr}");

    // The same through the variable.
    let ok = cantina(&["status"])
        .env("CANTINA_TLS_CA", &ca)
        .output()
        .await
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Without the CA: refused, with what to do.
    let refused = cantina(&["status"]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("--tls-ca"), "{stderr}");

    // Plaintext to a TLS server: the connection breaks, as when unreachable.
    let plain = cantina_at(&format!("127.0.0.1:{}", port(&server)), &["status"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert_eq!(plain.status.code(), Some(69), "{stderr}");

    // A CA file that is not one: a usage error naming the file.
    let key = pki.path("server.key");
    let bad = cantina(&["--tls-ca", key.to_str().unwrap(), "status"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("server.key"), "{stderr}");
}
