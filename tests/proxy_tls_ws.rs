//! WebSocket (ws and wss) and TLS with SNI from `tls:` hashes, over real sockets.

mod common;
mod proxy_support;

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use proxy_support::*;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

struct Cert {
    pem: String,
    key: String,
    der: CertificateDer<'static>,
}

fn cert(name: &str) -> Cert {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    Cert { pem: c.cert.pem(), key: c.signing_key.serialize_pem(), der: c.cert.der().clone() }
}

/// Connects with SNI `name`, accepting any certificate, and returns the one served.
async fn handshake(
    addr: std::net::SocketAddr,
    name: &str,
) -> (tokio_rustls::client::TlsStream<TcpStream>, CertificateDer<'static>) {
    handshake_offering(addr, name, &[]).await
}

/// `handshake`, offering these ALPN protocols.
async fn handshake_offering(
    addr: std::net::SocketAddr,
    name: &str,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, CertificateDer<'static>) {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
    (tls, served)
}

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

fn tls_node(dir: &std::path::Path) -> (common::Node, Cert) {
    let default = cert("default.test");
    std::fs::write(dir.join("cert.pem"), &default.pem).unwrap();
    std::fs::write(dir.join("key.pem"), &default.key).unwrap();
    let https = json!({ "port": 0, "bind": ["127.0.0.1"], "cert": dir.join("cert.pem"), "key": dir.join("key.pem") });
    (start_node(dir, json!({ "https": https })), default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_certificates_from_the_store_including_runtime_additions() {
    let dir = tempfile::tempdir().unwrap();
    let (node, default) = tls_node(dir.path());
    let addr = https_addr(&node);
    let (a, b, wild, late) = (cert("a.test"), cert("b.test"), cert("*.w.test"), cert("late.test"));
    for (name, c) in [("a.test", &a), ("b.test", &b), ("*.w.test", &wild)] {
        resp(&node, &["HSET", &format!("tls:{name}"), "certificate", &c.pem, "key", &c.key]);
    }
    resp(&node, &["HSET", "tls:broken.test", "certificate", "garbage", "key", "garbage"]);

    assert_eq!(handshake(addr, "a.test").await.1, a.der);
    assert_eq!(handshake(addr, "B.test").await.1, b.der);
    assert_eq!(handshake(addr, "x.w.test").await.1, wild.der, "tls:*.<parent>");
    assert_eq!(handshake(addr, "other.test").await.1, default.der, "configured certificate is the default");
    assert_eq!(handshake(addr, "broken.test").await.1, default.der, "a malformed entry is skipped");
    assert_eq!(handshake(addr, "late.test").await.1, default.der);
    resp(&node, &["HSET", "tls:late.test", "certificate", &late.pem, "key", &late.key]);
    assert_eq!(handshake(addr, "late.test").await.1, late.der, "added at runtime, no restart");

    // HTTPS requests are proxied with the TLS listener's scheme and port.
    let be = Backend::start("tls-be").await;
    resp(&node, &["RPUSH", "frontend:a.test", "app", &be.url]);
    let (tls, _) = handshake(addr, "a.test").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req =
        http::Request::get("/").header("host", "a.test").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    let seen = be.last_headers();
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-port"], addr.port().to_string().as_str());
}

async fn ws_roundtrip<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, text: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    reply.to_text().unwrap().to_string()
}

fn ws_request(host: &str) -> http::Request<()> {
    let mut req = format!("ws://{host}/socket").into_client_request().unwrap();
    req.headers_mut().insert("host", host.parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_survives_rewrites_of_its_frontend() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({}));
    let addr = http_addr(&node);
    let (one, two) = (ws_echo("one").await, ws_echo("two").await);
    resp(&node, &["RPUSH", "frontend:ws.test", "app", &one]);

    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(ws_request("ws.test"), tcp).await.unwrap();
    assert_eq!(ws_roundtrip(&mut ws, "hello").await, "one:hello");

    // Rewrite the frontend: the open tunnel keeps working, new ones go to the new backend.
    resp(&node, &["DEL", "frontend:ws.test"]);
    resp(&node, &["RPUSH", "frontend:ws.test", "app", &two]);
    assert_eq!(ws_roundtrip(&mut ws, "still").await, "one:still");
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws2, _) = tokio_tungstenite::client_async(ws_request("ws.test"), tcp).await.unwrap();
    assert_eq!(ws_roundtrip(&mut ws2, "new").await, "two:new");
    assert_eq!(ws_roundtrip(&mut ws, "after").await, "one:after");

    // A failed lookup answers a real status and closes, instead of hanging (Hipache).
    let tcp = TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(ws_request("nowhere.test"), tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("expected an HTTP 400 refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_websocket_echo() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = tls_node(dir.path());
    let echo = ws_echo("secure").await;
    resp(&node, &["RPUSH", "frontend:wss.test", "app", &echo]);
    let (tls, _) = handshake(https_addr(&node), "wss.test").await;
    let mut req = "wss://wss.test/socket".into_client_request().unwrap();
    req.headers_mut().insert("host", "wss.test".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(ws_roundtrip(&mut ws, "hi").await, "secure:hi");
}

/// A client offering `h2` over TLS gets HTTP/2, and a WebSocket (HTTP/1.1) on the same
/// listener still works beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_by_alpn_beside_websockets() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = tls_node(dir.path());
    let addr = https_addr(&node);
    let be = Backend::start("h2-be").await;
    let echo = ws_echo("ws-beside").await;
    resp(&node, &["RPUSH", "frontend:h2.test", "app", &be.url]);
    resp(&node, &["RPUSH", "frontend:wsh2.test", "app", &echo]);

    let (tls, _) = handshake_offering(addr, "h2.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()), "the server picks h2");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = http::Request::get("https://h2.test/x").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!((resp.version(), resp.status().as_u16()), (http::Version::HTTP_2, 200));
        let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        assert_eq!(body, "h2-be");
    }
    assert_eq!(be.last_headers()["x-forwarded-proto"], "https");

    let (tls, _) = handshake_offering(addr, "wsh2.test", &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"http/1.1".as_slice()));
    let mut req = "wss://wsh2.test/socket".into_client_request().unwrap();
    req.headers_mut().insert("host", "wsh2.test".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(ws_roundtrip(&mut ws, "hi").await, "ws-beside:hi");
}

/// A backend behind TLS with a certificate from its own CA, for 127.0.0.1 and `localhost`.
/// Answers every request with `tls-backend` and the X-Forwarded-Proto it received.
async fn tls_backend(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let ca_file = dir.join("backend-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let proto = req.headers().get("x-forwarded-proto").cloned();
                    let body = format!("tls-backend {}", proto.as_ref().and_then(|p| p.to_str().ok()).unwrap_or("-"));
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from(body),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, ca_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_are_reached_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (url, ca_file) = tls_backend(dir.path()).await;
    let c = client();

    // Trusted through SSL_CERT_FILE (the backend trust store is the system's, which honours it).
    let trusting = dir.path().join("trusting");
    std::fs::create_dir(&trusting).unwrap();
    let node = common::Node::start_with_env(&trusting, &common::base_config(&trusting), &[("SSL_CERT_FILE", &ca_file)]);
    resp(&node, &["RPUSH", "frontend:secure.test", "secure", &url]);
    let answer = get(&c, http_addr(&node), "secure.test", &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "tls-backend http"), "plain client, TLS to the backend");

    // A node that does not trust the backend's CA refuses it: TLS is verified, not just used.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let node = start_node(&other, json!({ "server": { "retryOnError": 0 } }));
    resp(&node, &["RPUSH", "frontend:secure.test", "secure", &url]);
    let answer = get(&c, http_addr(&node), "secure.test", &[]).await;
    assert_eq!(answer.status, 502, "an untrusted backend certificate is a backend error");
}
