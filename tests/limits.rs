//! The proxy's and the RESP listener's limits over real sockets, each with its documented
//! answer: a request head that trickles in past `server.headerTimeout` gets 408, one larger
//! than `server.maxHeaderSize` gets 431, connections beyond `server.maxConnections` wait in
//! the listen backlog until one ends, a backend silent mid-body past `server.backendTimeout`
//! is cut off and marked dead (so is one that stops taking an upload), a client that stops
//! reading its response is cut after `server.tcpTimeout`, a request body over `server.maxRetryBody` gets one attempt
//! (smaller ones are retried), a RESP client beyond `cluster.maxclients` gets Redis's
//! `-ERR max number of clients reached`, and a subscriber that does not read is disconnected
//! once its queue passes `cluster.pubsubBufferLimit`. Connections are spread evenly over the
//! `server.workers`.

mod common;
mod proxy_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proxy_support::{http_addr, resp, start_node};
use serde_json::{json, Value};

/// A backend that answers `200 ok` to every request, one thread per connection.
fn backend() -> String {
    common::raw_backend(|mut conn| {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = conn.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
            while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                seen.drain(..end + 4);
                if conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                    return;
                }
            }
        }
    })
}

/// A node routing `lim.test` to a `backend()`, with `server` settings merged in.
fn node_with(server: Value) -> (tempfile::TempDir, common::Node, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "server": server }));
    resp(&node, &["RPUSH", "frontend:lim.test", "lim", &backend()]);
    let addr = http_addr(&node);
    (dir, node, addr)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

const GET: &str = "GET / HTTP/1.1\r\nHost: lim.test\r\n\r\n";

/// Reads one `Content-Length` response (or whatever arrives before EOF) as text.
fn response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if got.len() >= end + 4 + len {
                return String::from_utf8_lossy(&got).into_owned();
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading a response: {e} (so far {:?})", String::from_utf8_lossy(&got)),
        }
    }
}

/// After a refusal the proxy closes: the next read sees EOF (or a reset).
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0)) || matches!(s.read(&mut buf), Err(e) if e.kind() == ErrorKind::ConnectionReset)
}

#[test]
fn a_head_trickled_one_byte_a_second_gets_408_at_the_deadline() {
    // `tcpTimeout` (5 s) restarts at every byte; only the head's own deadline can end this.
    let (_dir, _node, addr) = node_with(json!({ "headerTimeout": 3, "tcpTimeout": 5 }));
    let mut s = connect(addr);
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: lim.test\r\n").unwrap();
    let mut trickle = s.try_clone().unwrap();
    std::thread::spawn(move || {
        for b in b"X-Slow: ".iter().cycle().take(30) {
            std::thread::sleep(Duration::from_secs(1));
            if trickle.write_all(&[*b]).is_err() {
                return;
            }
        }
    });
    let answer = response(&mut s);
    let took = start.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer:?}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer:?}");
    assert!(took >= Duration::from_millis(2900), "answered before the deadline: {took:?}");
    assert!(took < Duration::from_secs(10), "not at the deadline: {took:?}");
    assert!(closed(&mut s));
}

#[test]
fn a_head_over_max_header_size_gets_431_and_one_under_it_is_served() {
    let (_dir, _node, addr) = node_with(json!({ "maxHeaderSize": 4096 }));
    let mut s = connect(addr);
    s.write_all(format!("GET / HTTP/1.1\r\nHost: lim.test\r\nX-Pad: {}\r\n\r\n", "a".repeat(3000)).as_bytes()).unwrap();
    let answer = response(&mut s);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    // Over the limit, whether it arrives whole or is still coming.
    for complete in [true, false] {
        let mut s = connect(addr);
        let end = if complete { "\r\n\r\n" } else { "\r\n" };
        let _ = s.write_all(format!("GET / HTTP/1.1\r\nHost: lim.test\r\nX-Pad: {}{end}", "a".repeat(5000)).as_bytes());
        let answer = response(&mut s);
        assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{answer:?}");
        assert!(closed(&mut s));
    }
}

#[test]
fn connections_beyond_max_connections_wait_in_the_backlog_until_one_ends() {
    // The limit is the node's, over all workers, and the kernel spreads connections over the
    // workers' sockets: with four, the waiting connection is most likely in the backlog of a
    // worker other than the one whose connection ends.
    let (_dir, _node, addr) = node_with(json!({ "maxConnections": 2, "tcpTimeout": 30, "workers": 4 }));
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    for s in &mut held {
        s.write_all(GET.as_bytes()).unwrap();
        assert!(response(s).starts_with("HTTP/1.1 200 OK\r\n"));
    }
    // The third connects (the kernel's backlog completes the handshake) but is not served.
    let mut third = connect(addr);
    third.write_all(GET.as_bytes()).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 64];
    match third.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("served beyond maxConnections: {other:?}"),
    }
    // One ends: the waiting connection is accepted and answered.
    drop(held.remove(0));
    third.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let answer = response(&mut third);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    // The one still held is still served.
    held[0].write_all(GET.as_bytes()).unwrap();
    assert!(response(&mut held[0]).starts_with("HTTP/1.1 200 OK\r\n"));
}

/// Workers spread connections by count: each new connection goes to the worker with the
/// fewest, whichever worker accepted it. Eight connections opened at once on four workers
/// (left alone, the first worker awake takes such a burst whole) are about two per worker,
/// and those handed to another worker are served there like any other.
#[test]
fn connections_are_spread_evenly_over_the_workers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(
        dir.path(),
        json!({ "server": { "workers": 4, "tcpTimeout": 30 }, "cluster": { "metrics": metrics.to_string() } }),
    );
    resp(&node, &["RPUSH", "frontend:lim.test", "lim", &backend()]);
    let addr = http_addr(&node);
    let mut held: Vec<TcpStream> = (0..8).map(|_| connect(addr)).collect();
    for s in &mut held {
        s.write_all(GET.as_bytes()).unwrap();
    }
    for s in &mut held {
        assert!(response(s).starts_with("HTTP/1.1 200 OK\r\n"));
    }
    let open = proxy_support::scrape(metrics);
    let per_worker: Vec<f64> = (0..4)
        .map(|w| open.get(&format!(r#"hipache_open_connections{{worker="{w}"}}"#)).copied().unwrap_or(0.0))
        .collect();
    assert_eq!(per_worker.iter().sum::<f64>(), 8.0, "{open:?}");
    // Two picks racing on two threads may send one connection more to the same worker.
    assert!(per_worker.iter().all(|&n| (1.0..=3.0).contains(&n)), "{per_worker:?}");
    // Every one of them, wherever it went, goes on being served.
    for s in &mut held {
        s.write_all(GET.as_bytes()).unwrap();
        assert!(response(s).starts_with("HTTP/1.1 200 OK\r\n"));
    }
}

#[test]
fn resp_clients_beyond_maxclients_get_the_redis_error() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "cluster": { "maxclients": 2 } }));
    let resp_addr: SocketAddr = node.listening["resp"].as_str().unwrap().parse().unwrap();
    let ping = |s: &mut TcpStream| -> String {
        s.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut first = connect(resp_addr);
    let mut second = connect(resp_addr);
    assert_eq!(ping(&mut first), "+PONG\r\n");
    assert_eq!(ping(&mut second), "+PONG\r\n");
    let mut third = connect(resp_addr);
    let mut answer = String::new();
    third.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "-ERR max number of clients reached\r\n");
    // A place frees when a client leaves.
    drop(first);
    assert!(common::eventually(Duration::from_secs(10), || {
        let mut c = connect(resp_addr);
        let _ = c.write_all(b"PING\r\n");
        let mut buf = [0u8; 64];
        matches!(c.read(&mut buf), Ok(n) if &buf[..n] == b"+PONG\r\n")
    }));
    assert_eq!(ping(&mut second), "+PONG\r\n");
}

/// A backend that answers every request with a head promising 100 bytes, sends 10 of them,
/// then holds the connection without a word.
fn stalling_backend() -> String {
    common::raw_backend(|mut conn| {
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        std::thread::sleep(Duration::from_secs(60));
    })
}

#[test]
fn a_backend_stalling_mid_body_is_cut_off_and_marked_dead_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "server": { "backendTimeout": 1, "tcpTimeout": 30 } }));
    let stalling = stalling_backend();
    resp(&node, &["RPUSH", "frontend:stall.test", "stall", &stalling, &stalling]);
    let addr = http_addr(&node);
    // The fast path, then hyper (it takes requests with `X-Debug`).
    for (path, extra) in [("fast path", ""), ("hyper", "X-Debug: 1\r\n")] {
        resp(&node, &["DEL", "dead:stall.test"]);
        let mut s = connect(addr);
        let start = Instant::now();
        s.write_all(format!("GET / HTTP/1.1\r\nHost: stall.test\r\n{extra}\r\n").as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("{path}: the client was not cut off: {e}"),
            }
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("0123456789"), "{path}: {text:?}");
        assert!(start.elapsed() < Duration::from_secs(10), "{path}: cut after {:?}", start.elapsed());
        assert!(
            common::eventually(Duration::from_secs(10), || {
                resp(&node, &["SCARD", "dead:stall.test"]) == hipache_raft::keyspace::Reply::Int(1)
            }),
            "{path}: the stalling backend was not marked dead"
        );
    }
}

/// A backend that reads a request head and then neither reads the body nor answers.
fn upload_stalling_backend() -> String {
    common::raw_backend(|mut conn| {
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf);
        std::thread::sleep(Duration::from_secs(60));
    })
}

/// The other direction of `server.backendTimeout`: a backend that stops taking an upload (its
/// socket buffers full, no answer) is given up on after the timeout: the client gets a 5xx page
/// while it is still sending, and the backend is marked dead.
#[test]
fn a_backend_that_stops_taking_an_upload_is_given_up_on_and_marked_dead() {
    let dir = tempfile::tempdir().unwrap();
    let node =
        start_node(dir.path(), json!({ "server": { "backendTimeout": 1, "tcpTimeout": 30, "retryOnError": 0 } }));
    let stalling = upload_stalling_backend();
    // Twice: a lone backend is never marked dead (Hipache's rule).
    resp(&node, &["RPUSH", "frontend:upload.test", "upload", &stalling, &stalling]);
    let mut s = connect(http_addr(&node));
    const LEN: usize = 64 << 20;
    let start = Instant::now();
    s.write_all(format!("POST / HTTP/1.1\r\nHost: upload.test\r\nContent-Length: {LEN}\r\n\r\n").as_bytes()).unwrap();
    // The body goes out from another thread until the proxy stops reading it or closes.
    let mut sender = s.try_clone().unwrap();
    sender.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..LEN / chunk.len() {
            if sender.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let answer = response(&mut s);
    assert!(answer.starts_with("HTTP/1.1 50"), "{answer:?}");
    assert!(start.elapsed() < Duration::from_secs(10), "answered after {:?}", start.elapsed());
    assert!(
        common::eventually(Duration::from_secs(10), || {
            resp(&node, &["SCARD", "dead:upload.test"]) == hipache_raft::keyspace::Reply::Int(1)
        }),
        "the stalling backend was not marked dead (answer: {answer:?})"
    );
}

/// An idle keep-alive connection is closed after `tcpTimeout` without a word (no 408: the
/// client sent nothing), on both HTTP paths.
#[test]
fn an_idle_keep_alive_connection_is_closed_silently_after_tcp_timeout() {
    let (_dir, _node, addr) = node_with(json!({ "tcpTimeout": 1, "headerTimeout": 30 }));
    for (path, extra) in [("fast path", ""), ("hyper", "X-Debug: 1\r\n")] {
        let mut s = connect(addr);
        s.write_all(format!("GET / HTTP/1.1\r\nHost: lim.test\r\n{extra}\r\n").as_bytes()).unwrap();
        let answer = response(&mut s);
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{path}: {answer}");
        let idle = Instant::now();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let waited = idle.elapsed();
        assert!(rest.is_empty(), "{path}: {:?}", String::from_utf8_lossy(&rest));
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
            "{path}: closed after {waited:?}"
        );
    }
}

/// When the `big_response` backend's write failed: the proxy closed its connection.
static BIG_RESPONSE_CUT: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// A backend that answers every request with a 256 MiB body, written until the proxy takes no
/// more.
fn big_response(mut conn: TcpStream) {
    const LEN: usize = 256 << 20;
    let mut buf = [0u8; 1024];
    let _ = conn.read(&mut buf);
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n");
    let chunk = vec![b'x'; 64 << 10];
    let sent =
        conn.write_all(head.as_bytes()).and_then(|()| (0..LEN / chunk.len()).try_for_each(|_| conn.write_all(&chunk)));
    if sent.is_err() {
        *BIG_RESPONSE_CUT.lock().unwrap() = Some(Instant::now());
    }
}

/// A client that stops reading its response is cut after `tcpTimeout` (the proxy's writes to
/// it make no progress that long), and the backend connection with it; not held open as long
/// as the backend has more to send.
#[test]
fn a_client_that_stops_reading_its_response_is_cut_after_tcp_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "server": { "tcpTimeout": 1, "backendTimeout": 30 } }));
    resp(&node, &["RPUSH", "frontend:big.test", "big", &common::raw_backend(big_response)]);
    let mut s = connect(http_addr(&node));
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: big.test\r\n\r\n").unwrap();
    // Not reading: the client's and the proxy's socket buffers fill, the proxy's writes stall.
    assert!(
        common::eventually(Duration::from_secs(15), || BIG_RESPONSE_CUT.lock().unwrap().is_some()),
        "the backend was still sending after 15 s"
    );
    let cut = BIG_RESPONSE_CUT.lock().unwrap().unwrap().duration_since(start);
    assert!(cut >= Duration::from_millis(900), "cut after {cut:?}, before tcpTimeout");
    // What was buffered can still be read; then the connection ends, far short of the body.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < 64 << 20, "{got} bytes reached the client");
}

/// Connections each `hang_up::<N>` backend took (one counter per test case).
static HANG_UPS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// A backend that reads a request and hangs up without answering: every attempt fails.
fn hang_up<const N: usize>(mut conn: TcpStream) {
    HANG_UPS[N].fetch_add(1, Ordering::SeqCst);
    let mut buf = [0u8; 4096];
    let _ = conn.read(&mut buf);
}

/// `server.maxRetryBody`: a request body up to it is kept, so a failed attempt is retried on
/// the next backend (two attempts with `retryOnError: 1`); a larger one streams to a single
/// attempt. Both end in 502 here, as every backend hangs up.
#[test]
fn bodies_up_to_max_retry_body_are_retried_and_larger_ones_get_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let node =
        start_node(dir.path(), json!({ "server": { "retryOnError": 1, "maxRetryBody": 1024, "deadBackendTTL": 60 } }));
    let addr = http_addr(&node);
    // (host, body length, attempts); case i uses the backends `hang_up::<i>`.
    let cases = [("kept.test", 1024, 2), ("streamed.test", 1025, 1)];
    let backends: [fn(TcpStream); 2] = [hang_up::<0>, hang_up::<1>];
    for (i, (host, len, attempts)) in cases.into_iter().enumerate() {
        let (a, b) = (common::raw_backend(backends[i]), common::raw_backend(backends[i]));
        resp(&node, &["RPUSH", &format!("frontend:{host}"), "app", &a, &b]);
        let mut s = connect(addr);
        let body = "x".repeat(len);
        s.write_all(format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len}\r\n\r\n{body}").as_bytes())
            .unwrap();
        let answer = response(&mut s);
        assert!(answer.starts_with("HTTP/1.1 502 "), "{host}: {answer}");
        assert_eq!(HANG_UPS[i].load(Ordering::SeqCst), attempts, "{host}: attempts for a {len}-byte body");
    }
}

#[test]
fn a_subscriber_that_does_not_read_is_disconnected_past_its_buffer_limit() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "cluster": { "pubsubBufferLimit": 1_048_576 } }));
    let resp_addr: SocketAddr = node.listening["resp"].as_str().unwrap().parse().unwrap();
    let mut subscriber = connect(resp_addr);
    subscriber.write_all(b"SUBSCRIBE feed\r\n").unwrap();
    let mut buf = [0u8; 256];
    let n = subscriber.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"*3\r\n$9\r\nsubscribe\r\n"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    // 40 MB published while the subscriber reads nothing: far more than its 1 MB queue and
    // what the kernel's socket buffers hold.
    let payload = "x".repeat(100_000);
    let mut publisher = node.resp();
    let mut delivered = 0;
    for _ in 0..400 {
        if let hipache_raft::keyspace::Reply::Int(n) = publisher.cmd(&["PUBLISH", "feed", &payload]) {
            delivered += n;
        }
    }
    assert!(delivered < 400, "every message was queued for a subscriber that reads nothing");
    // What was written before the queue overflowed arrives, then the connection ends.
    let mut total = 0usize;
    loop {
        let mut chunk = vec![0u8; 1 << 16];
        match subscriber.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the subscriber was not disconnected: {e} after {total} bytes"),
        }
    }
    assert!(total < 40_000_000, "{total} bytes reached a subscriber past its limit");
    // The node is unharmed: other clients are served.
    assert_eq!(publisher.cmd(&["PUBLISH", "feed", "after"]), hipache_raft::keyspace::Reply::Int(0));
}

/// (RSS in KiB, open descriptors) of a process.
fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (rss.trim().parse().unwrap(), fds)
}

#[test]
fn ten_thousand_idle_clients_cost_bounded_memory_and_give_their_descriptors_back() {
    const IDLE: usize = 10_000;
    let (_dir, node, addr) = node_with(json!({ "maxConnections": 12_000, "tcpTimeout": 60 }));
    let (rss_before, fds_before) = usage(node.pid());
    // In steps the listen backlog (1,024) holds, so a busy machine's slower accepts never
    // overflow it (the kernel would then retry those handshakes for seconds).
    let mut idle: Vec<TcpStream> = Vec::with_capacity(IDLE);
    while idle.len() < IDLE {
        idle.extend((0..500).map(|_| TcpStream::connect(addr).unwrap()));
        assert!(
            // Some slack: descriptors the node held at the baseline (the RESP client that set
            // the route up, closing) may be gone since.
            common::eventually(Duration::from_secs(30), || usage(node.pid()).1 + 32 >= fds_before + idle.len()),
            "the node did not accept {} connections: {:?}",
            idle.len(),
            usage(node.pid())
        );
    }
    // Served while they idle.
    let mut s = connect(addr);
    s.write_all(GET.as_bytes()).unwrap();
    assert!(response(&mut s).starts_with("HTTP/1.1 200 OK\r\n"));
    let (rss, _) = usage(node.pid());
    let per_connection = (rss.saturating_sub(rss_before)) * 1024 / IDLE as u64;
    eprintln!("{IDLE} idle connections: {per_connection} bytes of RSS each");
    assert!(per_connection < 64 * 1024, "{per_connection} bytes of RSS per idle connection");
    drop(idle);
    drop(s);
    assert!(
        common::eventually(Duration::from_secs(30), || usage(node.pid()).1 <= fds_before + 16),
        "descriptors not given back: {} open, {fds_before} before",
        usage(node.pid()).1
    );
}
