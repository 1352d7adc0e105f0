//! The HTTP data plane over real sockets: the real binary, real backends, routes written over
//! RESP.

mod common;
mod proxy_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hipache_raft::keyspace::Reply;
use proxy_support::*;
use serde_json::json;

use common::{bulk, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_precedence_and_live_route_changes() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({}));
    let addr = http_addr(&node);
    let c = client();
    let [exact, wild, five, six, all] = [
        Backend::start("exact").await,
        Backend::start("wild").await,
        Backend::start("five").await,
        Backend::start("six").await,
        Backend::start("all").await,
    ];
    resp(&node, &["RPUSH", "frontend:www.example.com", "exact-id", &exact.url]);
    resp(&node, &["RPUSH", "frontend:*.example.com", "wild-id", &wild.url]);
    resp(&node, &["RPUSH", "frontend:*.a.b.c.d.e", "five-id", &five.url]);
    resp(&node, &["RPUSH", "frontend:*.z.a.b.c.d.e", "six-id", &six.url]);
    resp(&node, &["RPUSH", "frontend:idonly.example.com", "lonely"]);

    assert_eq!(get(&c, addr, "www.example.com", &[]).await.body, "exact");
    assert_eq!(get(&c, addr, "WWW.EXAMPLE.COM", &[]).await.body, "exact", "upper-case Host");
    assert_eq!(get(&c, addr, "www.example.com:8080", &[]).await.body, "exact", "Host with a port");
    assert_eq!(get(&c, addr, "api.example.com", &[]).await.body, "wild");
    assert_eq!(get(&c, addr, "x.a.b.c.d.e", &[]).await.body, "five", "6-label host matches *.a.b.c.d.e");
    assert_eq!(get(&c, addr, "q.z.a.b.c.d.e", &[]).await.body, "five", "6 suffix labels never match");
    let idonly = get(&c, addr, "idonly.example.com", &[("x-debug", "1")]).await;
    assert_eq!(idonly.status, 502, "identifier-only list does not fall through");
    assert_eq!(idonly.headers["x-debug-error"], "Cannot find a valid backend");
    assert!(idonly.body.contains("Application Not Responding"));
    let unknown = get(&c, addr, "unknown.org", &[("x-debug", "1")]).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.headers["x-debug-error"], "frontend not found");
    assert!(unknown.body.contains("No Application Configured"));
    assert_eq!(unknown.headers["cache-control"], "no-cache");
    let ping = get(&c, addr, "__ping__", &[]).await;
    assert_eq!((ping.status, ping.body.as_str()), (200, "ok"));

    // A route added over RESP is served on the very next request; DEL makes it 400 at once.
    resp(&node, &["RPUSH", "frontend:*", "all-id", &all.url]);
    assert_eq!(get(&c, addr, "unknown.org", &[]).await.body, "all", "catch-all");
    resp(&node, &["DEL", "frontend:www.example.com"]);
    assert_eq!(get(&c, addr, "www.example.com", &[]).await.body, "wild");
    resp(&node, &["DEL", "frontend:*", "frontend:*.example.com"]);
    assert_eq!(get(&c, addr, "www.example.com", &[]).await.status, 400);
    drop(six);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_randomly_over_live_backends() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({}));
    let addr = http_addr(&node);
    let c = client();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    resp(&node, &["RPUSH", "frontend:lb.test", "lb", &a.url, &b.url]);
    for _ in 0..1000 {
        assert_eq!(get(&c, addr, "lb.test", &[]).await.status, 200);
    }
    for n in [a.hits(), b.hits()] {
        assert!((350..=650).contains(&n), "split {} / {}", a.hits(), b.hits());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_is_marked_dead_published_and_retried_after_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "server": { "deadBackendTTL": 2 } }));
    let addr = http_addr(&node);
    let c = client();
    let live = Backend::start("live").await;
    let dead_url = refused_url();
    resp(&node, &["RPUSH", "frontend:dead.test", "app", &dead_url, &live.url]);

    let mut sub = node.resp();
    sub.cmd(&["SUBSCRIBE", "dead"]);
    for _ in 0..20 {
        let a = get(&c, addr, "dead.test", &[]).await;
        assert_eq!((a.status, a.body.as_str()), (200, "live"), "the client never sees the refused backend");
    }
    let message = sub.read_reply();
    let expected = format!("dead.test;{dead_url};0;2");
    assert_eq!(message, Reply::Array(vec![bulk("message"), bulk("dead"), bulk(&expected)]));
    assert_eq!(resp(&node, &["SMEMBERS", "dead:dead.test"]), Reply::Array(vec![bulk("0")]));
    let ttl = resp(&node, &["TTL", "dead:dead.test"]);
    assert!(matches!(ttl, Reply::Int(1..=2)), "TTL is deadBackendTTL: {ttl:?}");

    // After the TTL the backend is tried again: bring it up on the same port.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let revived = Backend::start_on(dead_url.trim_start_matches("http://"), "revived").await;
    let mut seen = false;
    for _ in 0..50 {
        seen |= get(&c, addr, "dead.test", &[]).await.body == "revived";
    }
    assert!(seen && revived.hits() > 0, "the expired mark no longer excludes the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_502_marks_dead_but_500_and_503_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({}));
    let addr = http_addr(&node);
    let c = client();
    for (status, marks) in [(502u16, true), (500, false), (503, false)] {
        let host = format!("s{status}.test");
        let (bad, good) = (Backend::start("bad").await, Backend::start("good").await);
        bad.set_status(status);
        resp(&node, &["RPUSH", &format!("frontend:{host}"), "app", &bad.url, &good.url]);
        let mut relayed = false;
        for _ in 0..30 {
            relayed |= get(&c, addr, &host, &[]).await.status == status;
        }
        assert!(relayed, "{status} is passed through to the client");
        let key = format!("dead:{host}");
        let marked =
            eventually(Duration::from_secs(5), || resp(&node, &["SMEMBERS", &key]) == Reply::Array(vec![bulk("0")]));
        assert_eq!(marked, marks, "status {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_messages() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "server": { "retryOnError": 2 } }));
    let addr = http_addr(&node);
    let c = client();
    resp(&node, &["RPUSH", "frontend:gone.test", "app", &refused_url()]);
    let a = get(&c, addr, "gone.test", &[("x-debug", "1")]).await;
    assert_eq!((a.status, a.headers["x-debug-error"].to_str().unwrap()), (502, "Reached max retries limit"));
    resp(&node, &["RPUSH", "frontend:bad.test", "app", "not-a-url"]);
    let a = get(&c, addr, "bad.test", &[("x-debug", "1")]).await;
    assert_eq!((a.status, a.headers["x-debug-error"].to_str().unwrap()), (502, "backend is invalid"));

    let dir2 = tempfile::tempdir().unwrap();
    let node2 = start_node(dir2.path(), json!({ "server": { "retryOnError": 0 } }));
    resp(&node2, &["RPUSH", "frontend:gone.test", "app", &refused_url()]);
    let a = get(&c, http_addr(&node2), "gone.test", &[("x-debug", "1")]).await;
    assert_eq!((a.status, a.headers["x-debug-error"].to_str().unwrap()), (502, "Retry on error is disabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_and_debug_headers_and_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({}));
    let addr = http_addr(&node);
    let c = client();
    let be = Backend::start("be").await;
    resp(&node, &["RPUSH", "frontend:h.test", "my-vhost", &be.url]);

    let a = get(&c, addr, "h.test", &[("x-debug", "yes"), ("user-agent", "probe/1"), ("referer", "http://r/")]).await;
    assert_eq!(a.status, 200);
    let seen = be.last_headers();
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-protocol"], "http");
    assert_eq!(seen["x-forwarded-port"], addr.port().to_string().as_str(), "the real listener port");
    assert_eq!(seen["host"], "h.test", "Host is kept as received");
    assert_eq!(seen["x-debug"], "yes", "X-Debug reaches the backend");
    for name in ["x-debug-version-hipache", "x-debug-time-total", "x-debug-time-backend"] {
        assert!(a.headers.contains_key(name), "{name}");
    }
    assert_eq!(a.headers["x-debug-backend-url"], be.url.as_str());
    assert_eq!(a.headers["x-debug-backend-id"], "0");
    assert_eq!(a.headers["x-debug-vhost"], "my-vhost");
    assert_eq!(a.headers["x-debug-frontend-key"], "h.test");

    // Client-sent values pass through (Hipache's only-when-absent rule).
    get(&c, addr, "h.test", &[("x-forwarded-for", "9.9.9.9"), ("x-forwarded-proto", "https")]).await;
    let seen = be.last_headers();
    assert_eq!(seen["x-forwarded-for"], "9.9.9.9");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");

    // A buffered POST body arrives intact.
    let posted = send(&c, addr, "POST", "h.test", &[], Bytes::from(vec![b'x'; 1000])).await;
    assert_eq!(posted.body, "be:1000");

    // Access log (`accessLog: "-"`): Hipache's nginx-like line, one per proxied request.
    let expected = r#"] "GET /path?q=1 HTTP/1.1" 200 2 "http://r/" "probe/1" "my-vhost" "#;
    let is_line = |l: &String| {
        let Some((head, tail)) = l.split_once(expected) else { return false };
        let date = head.strip_prefix("127.0.0.1 - - [").unwrap_or("");
        let times: Vec<&str> = tail.split(' ').collect();
        date.len() == 26
            && date.ends_with(" +0000")
            && date.as_bytes()[2] == b'/'
            && times.len() == 2
            && times.iter().all(|t| t.split_once('.').is_some_and(|(_, ms)| ms.len() == 3))
    };
    let logged = eventually(Duration::from_secs(5), || node.stdout.lock().unwrap().iter().any(is_line));
    assert!(logged, "no access-log line like {expected} in {:?}", node.stdout.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({}));
    let be = Backend::start("h2").await;
    resp(&node, &["RPUSH", "frontend:h2.test", "app", &be.url]);
    let c: HttpClient = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let req = http::Request::get(format!("http://{}/", http_addr(&node)))
        .header("host", "h2.test")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_node(dir.path(), json!({ "server": { "shutdownTimeout": 5 } }));
    let addr = http_addr(&node);
    let slow = Backend::start("slow").await;
    slow.delay_ms.store(1000, std::sync::atomic::Ordering::SeqCst);
    resp(&node, &["RPUSH", "frontend:slow.test", "app", &slow.url]);
    let c = client();
    let in_flight = tokio::spawn(async move { get(&c, addr, "slow.test", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let exit = tokio::task::spawn_blocking(move || node.terminate());
    let answer = in_flight.await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "slow"), "the in-flight request completes");
    let status = exit.await.unwrap();
    assert!(status.success(), "exit 0 after draining: {status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(std::net::TcpStream::connect(addr).is_err(), "no longer accepting");
}

/// Sends requests for `host` through `addr` until the proxy has tried `flaky` (which answers
/// 502) once, then waits until its passive mark of backend 0 is applied.
async fn mark_backend_zero(
    node: &common::Node,
    c: &HttpClient,
    addr: std::net::SocketAddr,
    host: &str,
    flaky: &Backend,
) {
    for _ in 0..200 {
        if flaky.hits() > 0 {
            break;
        }
        get(c, addr, host, &[]).await;
    }
    assert!(flaky.hits() > 0, "the proxy never picked backend 0");
    let key = format!("dead:{host}");
    let marked =
        eventually(Duration::from_secs(5), || resp(node, &["SMEMBERS", &key]) == Reply::Array(vec![bulk("0")]));
    assert!(marked, "backend 0 of {host} is marked dead");
}

/// The replicated `dead:<host>` set is the truth: a checker's `DEL` revives the backend on the
/// node whose proxy marked it, without waiting out that node's own mark (120 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_dead_set_revives_the_backend_on_the_marking_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "server": { "deadBackendTTL": 120 } }));
    let (addr, c) = (http_addr(&node), client());
    let (flaky, other) = (Backend::start("flaky").await, Backend::start("other").await);
    flaky.set_status(502);
    resp(&node, &["RPUSH", "frontend:revive.test", "app", &flaky.url, &other.url]);
    mark_backend_zero(&node, &c, addr, "revive.test", &flaky).await;
    flaky.set_status(200);
    assert_eq!(resp(&node, &["DEL", "dead:revive.test"]), Reply::Int(1));
    let mut revived = 0;
    for _ in 0..40 {
        revived += usize::from(get(&c, addr, "revive.test", &[]).await.body == "flaky");
    }
    assert!(revived > 0, "backend 0 is back in rotation at once");
}

/// Replacing a frontend (`DEL frontend:<host> dead:<host>`, then `RPUSH` the new list, as tools
/// and test suites do) forgets marks made by index under the old list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_frontend_forgets_marks_of_the_old_list() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "server": { "deadBackendTTL": 120 } }));
    let (addr, c) = (http_addr(&node), client());
    let (flaky, other, fresh) =
        (Backend::start("flaky").await, Backend::start("other").await, Backend::start("fresh").await);
    flaky.set_status(502);
    resp(&node, &["RPUSH", "frontend:rewrite.test", "app", &flaky.url, &other.url]);
    mark_backend_zero(&node, &c, addr, "rewrite.test", &flaky).await;
    resp(&node, &["DEL", "frontend:rewrite.test", "dead:rewrite.test"]);
    resp(&node, &["RPUSH", "frontend:rewrite.test", "app2", &fresh.url]);
    for _ in 0..5 {
        let a = get(&c, addr, "rewrite.test", &[]).await;
        assert_eq!((a.status, a.body.as_str()), (200, "fresh"), "the new list's backend 0 is healthy");
    }
}

/// Hipache's `driver: "redis://…/DB#prefix"`: routes are read from database DB under the
/// prefix, and the proxy's own dead marks are written there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_database_and_prefix_choose_the_routing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "driver": "redis://:@127.0.0.1:6379/3#hip_" }));
    let (addr, c) = (http_addr(&node), client());
    let (be, live) = (Backend::start("be").await, Backend::start("live").await);
    let mut db3 = node.resp();
    assert_eq!(db3.cmd(&["SELECT", "3"]), Reply::Status("OK".into()));
    db3.cmd(&["RPUSH", "hip_frontend:drv.test", "app", &be.url]);
    db3.cmd(&["RPUSH", "frontend:unprefixed.test", "app", &be.url]);
    resp(&node, &["RPUSH", "frontend:db0.test", "app", &be.url]);
    assert_eq!(get(&c, addr, "drv.test", &[]).await.body, "be");
    assert_eq!(get(&c, addr, "unprefixed.test", &[]).await.status, 400, "no prefix: not a route");
    assert_eq!(get(&c, addr, "db0.test", &[]).await.status, 400, "database 0: not a route");

    db3.cmd(&["RPUSH", "hip_frontend:mark.test", "app", &refused_url(), &live.url]);
    for _ in 0..20 {
        assert_eq!(get(&c, addr, "mark.test", &[]).await.body, "live");
    }
    let marked = eventually(Duration::from_secs(5), || {
        db3.cmd(&["SMEMBERS", "hip_dead:mark.test"]) == Reply::Array(vec![bulk("0")])
    });
    assert!(marked, "the mark is written as hip_dead:<host> in database 3");
    assert_eq!(resp(&node, &["EXISTS", "dead:mark.test"]), Reply::Int(0));

    // The gRPC admin API reads and writes the same keys.
    use hipache_raft::proto::admin_v1::{
        admin_client::AdminClient, Frontend, ListDeadRequest, ListFrontendsRequest, PutFrontendRequest,
    };
    let grpc = node.listening["grpc"].as_str().unwrap().to_string();
    let mut api = AdminClient::connect(format!("http://{grpc}")).await.unwrap();
    let put = Frontend { host: "grpc.test".into(), identifier: "app".into(), backends: vec![be.url.clone()] };
    api.put_frontend(PutFrontendRequest { frontend: Some(put), options: None }).await.unwrap();
    assert_eq!(db3.cmd(&["LLEN", "hip_frontend:grpc.test"]), Reply::Int(2));
    assert_eq!(get(&c, addr, "grpc.test", &[]).await.body, "be");
    let listed = api.list_frontends(ListFrontendsRequest { pattern: String::new() }).await.unwrap().into_inner();
    let mut hosts: Vec<String> = listed.frontends.into_iter().map(|f| f.host).collect();
    hosts.sort();
    assert_eq!(hosts, ["drv.test", "grpc.test", "mark.test"], "prefixed keys of database 3 only");
    let dead = api.list_dead(ListDeadRequest { host: String::new() }).await.unwrap().into_inner();
    assert_eq!(dead.dead.iter().map(|d| d.host.as_str()).collect::<Vec<_>>(), ["mark.test"]);

    // A password in the URL becomes requirepass, so the same tools authenticate unchanged.
    let dir2 = tempfile::tempdir().unwrap();
    let locked = start_node(dir2.path(), json!({ "driver": ["redis://:s3cret@127.0.0.1:6379/3#hip_"] }));
    let mut r = locked.resp();
    assert!(matches!(r.cmd(&["GET", "x"]), Reply::Error(e) if e.starts_with("NOAUTH")));
    assert_eq!(r.cmd(&["AUTH", "s3cret"]), Reply::Status("OK".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "cluster": { "metrics": metrics.to_string() } }));
    let (addr, c) = (http_addr(&node), client());
    let live = Backend::start("live").await;
    resp(&node, &["RPUSH", "frontend:m.test", "app", &live.url]);
    let refused = refused_url();
    resp(&node, &["RPUSH", "frontend:r.test", "app", &refused, &live.url]);
    let metric = |m: &std::collections::HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let before = tokio::task::spawn_blocking(move || scrape(metrics)).await.unwrap();
    for _ in 0..5 {
        assert_eq!(get(&c, addr, "m.test", &[]).await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(&c, addr, "unknown.test", &[]).await.status, 400);
    }
    // Until the proxy picks the refused backend once: each such request fails over to the
    // live one (a retry), marks the refused one dead, and still answers 200.
    let mut extra = 0;
    while resp(&node, &["EXISTS", "dead:r.test"]) == Reply::Int(0) {
        assert_eq!(get(&c, addr, "r.test", &[]).await.status, 200);
        extra += 1;
        assert!(extra < 200, "the refused backend was never picked");
    }
    let after = tokio::task::spawn_blocking(move || scrape(metrics)).await.unwrap();
    let delta = |k: &str| metric(&after, k) - metric(&before, k);
    assert_eq!(delta(r#"hipache_requests_total{class="2xx"}"#), (5 + extra) as f64, "{after:?}");
    assert_eq!(delta(r#"hipache_requests_total{class="4xx"}"#), 3.0);
    assert_eq!(delta("hipache_response_head_seconds_count"), (8 + extra) as f64, "one latency sample per response");
    assert!(delta("hipache_response_head_seconds_sum") > 0.0);
    assert_eq!(delta(r#"hipache_backend_errors_total{kind="connect"}"#), 1.0);
    assert_eq!(delta("hipache_dead_marks_total"), 1.0);
    assert_eq!(delta("hipache_retries_total"), 1.0);
    assert_eq!(
        metric(&after, r#"hipache_response_head_seconds_bucket{le="+Inf"}"#),
        metric(&after, "hipache_response_head_seconds_count")
    );
}

/// A request the HTTP/1.1 fast path hands over to hyper after a failed attempt keeps its retry
/// count. Each host has a refused `http://` backend (the fast path's) and a refused `https://`
/// one (hyper's only), and `retryOnError: 1`: two attempts per request in all, one retry,
/// whichever backend is picked first. With the count reset at the hand-over, a request that
/// failed on the fast path first got two more attempts there (two retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_count_carries_over_the_hand_over_to_hyper() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = json!({ "server": { "retryOnError": 1 }, "cluster": { "metrics": metrics.to_string() } });
    let node = start_node(dir.path(), config);
    let (addr, c) = (http_addr(&node), client());
    const HOSTS: usize = 20;
    for i in 0..HOSTS {
        let tls = refused_url().replace("http://", "https://");
        resp(&node, &["RPUSH", &format!("frontend:h{i}.test"), "app", &refused_url(), &tls]);
    }
    let before = tokio::task::spawn_blocking(move || scrape(metrics)).await.unwrap();
    for i in 0..HOSTS {
        // A new client connection each: hyper keeps the rest of a connection it took over.
        let answer = get(&c, addr, &format!("h{i}.test"), &[("connection", "close")]).await;
        assert_eq!(answer.status, 502, "h{i}.test");
    }
    let after = tokio::task::spawn_blocking(move || scrape(metrics)).await.unwrap();
    let delta = |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    assert_eq!(delta("hipache_retries_total"), HOSTS as f64, "one retry per request");
    assert_eq!(delta(r#"hipache_backend_errors_total{kind="connect"}"#), 2.0 * HOSTS as f64, "two attempts each");
}

/// A backend that never completes the TCP handshake, on loopback: a listener with the smallest
/// backlog that never accepts, its queue filled by our own connections, so the kernel drops
/// further SYNs. The proxy gives up after `connectTimeout`, marks it dead and retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_marks_a_silent_backend_dead_and_retries() {
    let silent = tokio::net::TcpSocket::new_v4().unwrap();
    silent.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _listener = silent.listen(0).unwrap();
    let mut held = Vec::new();
    let full = tokio::task::spawn_blocking(move || {
        for _ in 0..16 {
            match std::net::TcpStream::connect_timeout(&silent_addr, Duration::from_millis(300)) {
                Ok(s) => held.push(s),
                Err(_) => return Some(held),
            }
        }
        None
    })
    .await
    .unwrap();
    let _held = full.expect("the accept queue never filled");

    let dir = tempfile::tempdir().unwrap();
    // backendTimeout far above connectTimeout: only the connect timer can end the attempt soon.
    let node = start_node(
        dir.path(),
        json!({ "server": { "connectTimeout": 1, "backendTimeout": 30, "deadBackendTTL": 60 } }),
    );
    let (addr, c) = (http_addr(&node), client());
    let live = Backend::start("live").await;
    resp(&node, &["RPUSH", "frontend:silent.test", "app", &format!("http://{silent_addr}"), &live.url]);
    // The request that drew the silent backend is the one after which it is marked dead (a
    // request merely slowed by a loaded machine leaves no mark).
    let mut timed = None;
    for _ in 0..50 {
        let started = Instant::now();
        let a = get(&c, addr, "silent.test", &[]).await;
        let took = started.elapsed();
        assert_eq!((a.status, a.body.as_str()), (200, "live"), "the client never sees the silent backend");
        let marked = || resp(&node, &["SMEMBERS", "dead:silent.test"]) == Reply::Array(vec![bulk("0")]);
        if took >= Duration::from_millis(900) && eventually(Duration::from_secs(5), marked) {
            timed = Some(took);
            break;
        }
    }
    let waited = timed.expect("the silent backend was never tried, or never marked dead");
    assert!(
        waited < Duration::from_secs(5),
        "gave up after connectTimeout (1 s), not backendTimeout (30 s): {waited:?}"
    );
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// While a health checker keeps `hchecker_ping` fresh (≤ 30 s old) it owns `dead:*`: the proxy
/// only publishes its finding. Once the ping is stale, the proxy marks again (§2.3.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_hchecker_ping_leaves_marks_to_the_checker() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), json!({ "server": { "deadBackendTTL": 60 } }));
    let (addr, c) = (http_addr(&node), client());
    let live = Backend::start("live").await;
    let refused = refused_url();
    resp(&node, &["SET", "hchecker_ping", &unix_now().to_string()]);
    resp(&node, &["RPUSH", "frontend:checked.test", "app", &refused, &live.url]);
    let mut sub = node.resp();
    sub.cmd(&["SUBSCRIBE", "dead"]);
    let expected = Reply::Array(vec![bulk("message"), bulk("dead"), bulk(&format!("checked.test;{refused};0;2"))]);

    // Each time the refused backend is picked it is published, never marked: with the checker
    // in charge the proxy keeps picking it, its retries included, so a request whose every
    // attempt drew it answers 502 (Hipache alike); most reach the live backend.
    for _ in 0..2 {
        loop {
            let status = get(&c, addr, "checked.test", &[]).await.status;
            assert!(status == 200 || status == 502, "{status}");
            if sub.has_pending() {
                break;
            }
        }
        assert_eq!(sub.read_reply(), expected);
    }
    assert_eq!(resp(&node, &["EXISTS", "dead:checked.test"]), Reply::Int(0), "no dead: write while the ping is fresh");

    // The checker went quiet 31 s ago: passive checks are back.
    resp(&node, &["SET", "hchecker_ping", &(unix_now() - 31).to_string()]);
    let mut marked = false;
    for _ in 0..200 {
        assert_eq!(get(&c, addr, "checked.test", &[]).await.body, "live");
        marked = eventually(Duration::from_millis(50), || {
            resp(&node, &["SMEMBERS", "dead:checked.test"]) == Reply::Array(vec![bulk("0")])
        });
        if marked {
            break;
        }
    }
    assert!(marked, "a stale ping lets the proxy mark again");
}

/// SIGHUP reopens the access log, as SIGUSR1 does (logrotate moves the file, then signals);
/// it no longer kills the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_sigusr1_reopen_the_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let node = start_node(dir.path(), json!({ "server": { "accessLog": log } }));
    let (addr, c) = (http_addr(&node), client());
    let be = Backend::start("be").await;
    resp(&node, &["RPUSH", "frontend:log.test", "app", &be.url]);
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).map(|t| t.lines().count()).unwrap_or(0);
    for (n, signal) in ["HUP", "USR1"].into_iter().enumerate() {
        assert_eq!(get(&c, addr, "log.test", &[]).await.status, 200);
        assert!(eventually(Duration::from_secs(5), || lines(&log) == 1), "logged before {signal}");
        let rotated = dir.path().join(format!("access.log.{n}"));
        std::fs::rename(&log, &rotated).unwrap();
        common::signal(node.pid(), signal);
        assert!(eventually(Duration::from_secs(5), || log.exists()), "SIG{signal} reopened the log");
        assert_eq!(resp(&node, &["PING"]), Reply::Status("PONG".into()), "alive after SIG{signal}");
        assert_eq!(lines(&rotated), 1);
    }
    assert_eq!(get(&c, addr, "log.test", &[]).await.status, 200);
    assert!(eventually(Duration::from_secs(5), || lines(&log) == 1), "the new file gets the next line");
}
