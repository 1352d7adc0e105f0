//! The HTTP/1.1 fast path over raw sockets: a scripted backend answers with every framing
//! (length, chunked with trailers, close-delimited, 1xx first, HEAD) and a raw client checks
//! the bytes relayed, pipelining, connection reuse, stale pooled connections, and the hand-
//! over to hyper for requests the fast path declines.

mod common;
mod proxy_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hipache_raft::keyspace::Reply;
use proxy_support::{http_addr, resp, start_node};
use serde_json::json;

const CHUNKED_BODY: &str = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
const BIG: usize = 1 << 20;

/// A backend speaking raw HTTP/1.1, one thread per connection; answers by path.
struct Scripted {
    url: String,
    accepted: Arc<AtomicUsize>,
}

impl Scripted {
    fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                a.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve_backend(conn));
            }
        });
        Scripted { url, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn serve_backend(conn: TcpStream) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let Some((head, body)) = read_message(&mut reader) else { return };
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let reply: Vec<u8> = match path.as_str() {
            "/length" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-From: backend\r\n\r\nhello".to_vec(),
            "/chunked" => format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{CHUNKED_BODY}").into_bytes(),
            "/early" => {
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    .to_vec()
            }
            "/echo" => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}{body}", head.len() + body.len())
                .into_bytes(),
            "/big" => {
                [format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes(), vec![b'x'; BIG]].concat()
            }
            "/close" | "/oneshot" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        let reply = if path == "/close" { b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec() } else { reply };
        // A response to HEAD has no body, whatever its Content-Length says.
        let reply = match head.starts_with("HEAD ") {
            true => reply[..reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4].to_vec(),
            false => reply,
        };
        if conn.write_all(&reply).is_err() {
            return;
        }
        // `/close` delimits its body by closing; `/oneshot` closes like a backend whose
        // keep-alive timeout fired right after answering, without saying so.
        if path == "/close" || path == "/oneshot" {
            return;
        }
    }
}

/// A head (request or response) up to its empty line; `None` at EOF.
fn read_head(reader: &mut impl BufRead) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

/// Reads a head (request or response) and a `Content-Length` body; `None` at EOF.
fn read_message(reader: &mut impl BufRead) -> Option<(String, String)> {
    let head = read_head(reader)?;
    let len = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((head, String::from_utf8(body).unwrap()))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A raw client connection to the proxy.
struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { reader: BufReader::new(s.try_clone().unwrap()), writer: s }
    }

    fn send(&mut self, raw: &str) {
        self.writer.write_all(raw.as_bytes()).unwrap();
    }

    fn response(&mut self) -> (String, String) {
        read_message(&mut self.reader).expect("a response")
    }

    /// A chunked body, raw, up to the end of its trailers.
    fn chunked_body(&mut self) -> String {
        let mut body = String::new();
        while !body.ends_with("0\r\nX-Trailer: t\r\n\r\n") {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "EOF inside a chunked body: {body:?}");
            body.push_str(&line);
        }
        body
    }

    fn rest_until_eof(&mut self) -> String {
        let mut rest = String::new();
        self.reader.read_to_string(&mut rest).unwrap();
        rest
    }
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: h1.test\r\n{extra}\r\n")
}

fn node_routing(backends: &[&Scripted]) -> (tempfile::TempDir, common::Node, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({}));
    let mut cmd = vec!["RPUSH", "frontend:h1.test", "h1-app"];
    cmd.extend(backends.iter().map(|b| b.url.as_str()));
    resp(&node, &cmd);
    let addr = http_addr(&node);
    (dir, node, addr)
}

#[test]
fn every_framing_is_relayed_byte_for_byte_on_one_kept_alive_connection() {
    let backend = Scripted::start();
    let (_dir, _node, addr) = node_routing(&[&backend]);
    let mut c = Client::connect(addr);

    c.send(&get("/length", ""));
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!((header(&head, "x-from"), body.as_str()), (Some("backend"), "hello"));
    let date = header(&head, "date").expect("a Date added to a response without one");
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");

    c.send(&get("/chunked", ""));
    let (head, _) = c.response();
    assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
    assert_eq!(c.chunked_body(), CHUNKED_BODY, "chunks, extensions and trailers relayed as sent");

    c.send(&get("/early", ""));
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "the 103 is dropped, as hyper's client does: {head}");
    assert_eq!(body, "ok");

    c.send("HEAD /length HTTP/1.1\r\nHost: h1.test\r\n\r\n");
    let head = read_head(&mut c.reader).expect("a response head");
    assert_eq!(header(&head, "content-length"), Some("5"), "HEAD keeps the length but has no body");

    c.send(&get("/big", ""));
    let (head, body) = c.response();
    assert_eq!(header(&head, "content-length"), Some(BIG.to_string().as_str()));
    assert!(body.len() == BIG && body.bytes().all(|b| b == b'x'));

    // Three pipelined requests in one write, one of them with a body, answered in order.
    c.send(&format!(
        "{}POST /echo HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 4\r\n\r\nbody{}",
        get("/length", ""),
        get("/length", "")
    ));
    assert_eq!(c.response().1, "hello");
    let echoed = c.response().1;
    assert!(echoed.starts_with("POST /echo HTTP/1.1\r\n") && echoed.ends_with("\r\n\r\nbody"), "{echoed}");
    assert_eq!(c.response().1, "hello");
    assert_eq!(backend.accepted(), 1, "one backend connection served everything so far");

    // A body delimited by the backend closing ends the client connection too.
    c.send(&get("/close", ""));
    let head = read_head(&mut c.reader).expect("a response head");
    assert_eq!(header(&head, "connection"), Some("close"));
    assert_eq!(c.rest_until_eof(), "until close");
}

#[test]
fn backend_sees_forwarded_headers_and_no_hop_by_hop_ones() {
    let backend = Scripted::start();
    let (_dir, _node, addr) = node_routing(&[&backend]);
    let mut c = Client::connect(addr);
    c.send("POST /echo HTTP/1.1\r\nHost: H1.test:80\r\nKeep-Alive: 5\r\nX-Forwarded-Proto: spoofed\r\nConnection: keep-alive, close\r\nContent-Length: 3\r\n\r\nabc");
    let (head, echoed) = c.response();
    assert_eq!(header(&head, "connection"), Some("close"), "the client asked to close");
    assert_eq!(c.rest_until_eof(), "", "and the proxy closed after the response");
    assert!(echoed.starts_with("POST /echo HTTP/1.1\r\nHost: H1.test:80\r\n"), "{echoed}");
    assert_eq!(header(&echoed, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&echoed, "x-real-ip"), Some("127.0.0.1"));
    assert_eq!(header(&echoed, "x-forwarded-proto"), Some("spoofed"), "set only when absent, as Hipache");
    assert_eq!(header(&echoed, "x-forwarded-port"), Some(addr.port().to_string().as_str()));
    assert_eq!(header(&echoed, "keep-alive"), None);
    assert_eq!(header(&echoed, "connection"), None);
    assert!(echoed.ends_with("\r\n\r\nabc"));
}

#[test]
fn pooled_connections_the_backend_closed_are_retried_without_marking_it_dead() {
    let (a, b) = (Scripted::start(), Scripted::start());
    let (_dir, node, addr) = node_routing(&[&a, &b]);
    let mut c = Client::connect(addr);
    for i in 0..10 {
        c.send(&get("/oneshot", ""));
        assert_eq!(c.response().1, "ok", "request {i}");
    }
    // Every request after the first on a backend found its pooled connection closed.
    assert_eq!(a.accepted() + b.accepted(), 10, "one fresh connection per request");
    assert_eq!(
        resp(&node, &["SMEMBERS", "dead:h1.test"]),
        Reply::Array(vec![]),
        "a stale connection is not a dead backend"
    );
}

#[test]
fn requests_the_fast_path_declines_go_to_hyper_for_the_rest_of_the_connection() {
    let backend = Scripted::start();
    let (_dir, node, addr) = node_routing(&[&backend]);
    resp(&node, &["RPUSH", "frontend:tls-backend.test", "tls-app", "https://127.0.0.1:1"]);
    let mut c = Client::connect(addr);
    c.send(&get("/length", ""));
    assert_eq!(c.response().1, "hello");
    // X-Debug needs hyper's path (debug headers).
    c.send(&get("/length", "X-Debug: 1\r\n"));
    let (head, body) = c.response();
    assert_eq!(body, "hello");
    assert_eq!(header(&head, "x-debug-backend-url"), Some(backend.url.as_str()));
    // The same connection keeps working, now through hyper.
    c.send(&get("/length", ""));
    assert_eq!(c.response().1, "hello");

    // A lookup that does not pick a plain backend is answered by hyper too: unknown host,
    // HTTP/1.0, a chunked request body (last: the scripted backend does not read it).
    let mut c = Client::connect(addr);
    c.send("GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\n");
    let (head, _) = c.response();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let mut c = Client::connect(addr);
    c.send("GET /length HTTP/1.0\r\nHost: h1.test\r\n\r\n");
    let (head, body) = c.response();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert_eq!(body, "hello");
    let mut c = Client::connect(addr);
    c.send("POST /echo HTTP/1.1\r\nHost: h1.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    let (_, echoed) = c.response();
    assert_eq!(header(&echoed, "transfer-encoding"), Some("chunked"), "hyper streams the unsized body: {echoed}");
}
