//! Proxy test helpers on top of `common`: a node with its proxy addresses, small real backend
//! servers (HTTP and WebSocket echo), and an HTTP client.
#![allow(dead_code)] // each test binary uses a different part

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::common::{base_config, Node, Resp};

pub fn http_addr(node: &Node) -> SocketAddr {
    node.listening["http"][0].as_str().expect("http address in the listening line").parse().unwrap()
}

pub fn https_addr(node: &Node) -> SocketAddr {
    node.listening["https"][0].as_str().expect("https address in the listening line").parse().unwrap()
}

/// Starts a node with `base_config` patched by `patch` (a JSON merge at the top level
/// sections).
pub fn start_node(dir: &Path, patch: Value) -> Node {
    let mut config = base_config(dir);
    for (section, values) in patch.as_object().unwrap() {
        match (config.get_mut(section), values) {
            (Some(Value::Object(existing)), Value::Object(new)) => {
                for (k, v) in new {
                    existing.insert(k.clone(), v.clone());
                }
            }
            _ => {
                config[section] = values.clone();
            }
        }
    }
    Node::start(dir, &config)
}

/// Runs a RESP command and returns its reply (the blocking client, off the async runtime).
pub fn resp(node: &Node, args: &[&str]) -> hipache_raft::keyspace::Reply {
    let mut r: Resp = node.resp();
    r.cmd(args)
}

/// What a backend saw.
#[derive(Default)]
pub struct Seen {
    pub hits: AtomicUsize,
    pub headers: Mutex<Vec<HeaderMap>>,
}

/// A real HTTP backend: answers `status` with body `name` and records each request's headers.
pub struct Backend {
    pub addr: SocketAddr,
    pub url: String,
    pub seen: Arc<Seen>,
    pub status: Arc<AtomicU16>,
    /// Milliseconds to wait before answering.
    pub delay_ms: Arc<AtomicU64>,
}

impl Backend {
    pub async fn start(name: &'static str) -> Backend {
        Self::start_on("127.0.0.1:0", name).await
    }

    pub async fn start_on(bind: &str, name: &'static str) -> Backend {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (s, st, d) = (seen.clone(), status.clone(), delay_ms.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (s, st, d) = (s.clone(), st.clone(), d.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (s, st, d) = (s.clone(), st.clone(), d.clone());
                        async move {
                            tokio::time::sleep(Duration::from_millis(d.load(Ordering::SeqCst))).await;
                            s.hits.fetch_add(1, Ordering::SeqCst);
                            s.headers.lock().unwrap().push(req.headers().clone());
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let text =
                                if body.is_empty() { name.to_string() } else { format!("{name}:{}", body.len()) };
                            let mut resp = Response::new(Full::new(Bytes::from(text)));
                            *resp.status_mut() = StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend { addr, url: format!("http://{addr}"), seen, status, delay_ms }
    }

    pub fn hits(&self) -> usize {
        self.seen.hits.load(Ordering::SeqCst)
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn last_headers(&self) -> HeaderMap {
        self.seen.headers.lock().unwrap().last().cloned().expect("backend saw a request")
    }
}

/// A WebSocket echo backend that prefixes each text message with its name.
pub async fn ws_echo(name: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() {
                        let reply = format!("{name}:{}", msg.to_text().unwrap());
                        if ws.send(tokio_tungstenite::tungstenite::Message::text(reply)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// A free port with nothing listening (connections are refused).
pub fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

/// GET `path` through the proxy at `addr` with `Host: host` and extra headers.
pub async fn get(c: &HttpClient, addr: SocketAddr, host: &str, headers: &[(&str, &str)]) -> Answer {
    send(c, addr, "GET", host, headers, Bytes::new()).await
}

pub async fn send(
    c: &HttpClient,
    addr: SocketAddr,
    method: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Answer {
    let mut req = Request::builder().method(method).uri(format!("http://{addr}/path?q=1")).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = c.request(req.body(Full::new(body)).unwrap()).await.expect("proxy answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// `/metrics` as a map from `name{labels}` to value.
pub fn scrape(addr: std::net::SocketAddr) -> std::collections::HashMap<String, f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect()
}
