//! Listeners, worker threads, connections and the graceful drain.
//!
//! The proxy runs shared-nothing, as nginx and Envoy do: `server.workers` threads, each with
//! its own current-thread tokio runtime, waiting on every listen socket (the first worker free
//! takes the next connection), with its own backend connection pools and its own access-log
//! buffer. A connection lives and dies on the thread that accepted it:
//! no work stealing, no wake-up of another thread, no lock taken by every request. What the
//! workers do share is read-mostly: the routing view (one `ArcSwap`), the error pages, the
//! metric handles and the connection limit. Raft writes (dead marks) are handed to the
//! node's own runtime. The A/B against one multi-threaded runtime is in docs/benchmarks.md.
//!
//! [`Proxy::bind`] does everything that can fail (ports, certificates, access log, metrics
//! listener) so `main` can report the bound addresses (port 0 in tests) before serving;
//! [`Proxy::serve`] accepts until the shutdown signal, then drains for at most
//! `server.shutdownTimeout` (Hipache had no drain at all, §4.1).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::access_log::{AccessLog, AccessLogError, AccessLogOutput, LogWriter};
use super::balance::{Balance, Incoming, Open};
use super::client;
use super::dead::DeadMarker;
use super::forward::ClientInfo;
use super::h1::{self, Ended, Rewind};
use super::handler;
use super::invalid::InvalidBackends;
use super::metrics::Metrics;
use super::options::ProxyOptions;
use super::pages::Pages;
use super::retry::Attempts;
use super::shared::Shared;
use super::tls::{self, TlsError};
use super::view::SharedView;
use crate::raft::RaftNode;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("HTTPS listener {addr}: {source}")]
    Tls { addr: SocketAddr, source: TlsError },
    #[error("backend TLS client: {0}")]
    BackendTls(TlsError),
    #[error(transparent)]
    AccessLog(#[from] AccessLogError),
    #[error("cannot start proxy worker thread {worker}: {source}")]
    Worker { worker: usize, source: std::io::Error },
}

/// How often, at most, a full connection limit is logged.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// A TLS handshake that takes longer than this is dropped (slow or stuck clients).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping worker waits for its access-log writer to finish.
const LOG_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// One worker's descriptor of a listen socket.
struct Listener {
    tcp: std::net::TcpListener,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
}

/// One worker thread's share: its sockets, its request-path state, its access-log writer and
/// the connections other workers hand it.
struct Worker {
    index: usize,
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    log: Option<LogWriter>,
    balance: Arc<Balance>,
    handoff: mpsc::UnboundedReceiver<Incoming>,
}

/// What every worker's accept loop and connections are configured with.
struct Settings {
    tcp_timeout: Option<Duration>,
    shutdown_timeout: Duration,
    max_header_size: usize,
    max_connections: usize,
    /// `server.maxConnections`, for all workers together.
    limit: Arc<Semaphore>,
}

/// A bound, not yet serving, proxy.
pub struct Proxy {
    workers: Vec<Worker>,
    http: Vec<SocketAddr>,
    https: Vec<SocketAddr>,
    settings: Arc<Settings>,
}

impl Proxy {
    /// Binds every listener (one descriptor of it per worker), loads certificates and
    /// pages, opens the access log and starts following the node's applied state. Must run
    /// inside the node's tokio runtime, which also carries the proxy's Raft writes.
    pub async fn bind(opts: ProxyOptions, node: Arc<RaftNode>) -> Result<Proxy, ProxyError> {
        let workers = opts.workers.max(1);
        // Hipache's example configs say 10 (processes); here each worker is a thread that keeps
        // its connections, and more of them than cores only adds preemption (docs/benchmarks.md).
        if let Ok(cores) = std::thread::available_parallelism() {
            if workers > cores.get() {
                tracing::warn!(
                    workers,
                    cores = cores.get(),
                    "server.workers is more than the cores this node may use; one per core is best (leave it unset)"
                );
            }
        }
        let metrics = Metrics::new();
        let view = Arc::new(SharedView::new(opts.routing.clone()));
        node.add_apply_listener(view.clone());

        // Per address: its TLS acceptor (shared: one session cache) and a descriptor per worker.
        let mut addresses: Vec<(Vec<std::net::TcpListener>, SocketAddr, Option<TlsAcceptor>)> = Vec::new();
        let (mut http, mut https) = (Vec::new(), Vec::new());
        for addr in &opts.http {
            let (sockets, bound) = listen(*addr, workers).await?;
            http.push(bound);
            addresses.push((sockets, bound, None));
        }
        for l in &opts.https {
            let tls_err = |source| ProxyError::Tls { addr: l.addr, source };
            let default = tls::load_default(&l.cert, &l.key, &l.ca, l.passphrase).map_err(tls_err)?;
            let config = tls::server_config(view.clone(), default, l.honor_cipher_order).map_err(tls_err)?;
            let (sockets, bound) = listen(l.addr, workers).await?;
            https.push(bound);
            addresses.push((sockets, bound, Some(TlsAcceptor::from(Arc::new(config)))));
        }

        // `maxSockets` idle per backend for each worker, as each of Hipache's worker processes
        // had its own agent (and nginx's `keepalive` is per worker): divided among the workers,
        // a few busy ones would close and reopen backend connections.
        let idle_per_backend = opts.idle_per_backend();
        let access_log = opts.access_log.map(AccessLogOutput::open).transpose()?;
        let pages = opts.static_dir.as_deref().map_or_else(Pages::bundled, Pages::load);
        let invalid = Arc::new(InvalidBackends::default());
        let dead = DeadMarker {
            view: view.clone(),
            node,
            ttl: opts.dead_backend_ttl,
            metrics: metrics.clone(),
            raft_runtime: tokio::runtime::Handle::current(),
        };
        let (balance, handoffs) = Balance::new(workers);
        let mut built = Vec::with_capacity(workers);
        for (index, handoff) in handoffs.into_iter().enumerate() {
            let listeners = addresses
                .iter_mut()
                .map(|(sockets, addr, tls)| Listener { tcp: sockets.remove(0), addr: *addr, tls: tls.clone() })
                .collect();
            let (access_log, log) = access_log.as_ref().map(AccessLog::new).unzip();
            let shared = Arc::new(Shared {
                client: client::build(opts.connect_timeout, idle_per_backend).map_err(ProxyError::BackendTls)?,
                h1_pool: h1::Pool::new(idle_per_backend),
                connect_timeout: opts.connect_timeout,
                pages: pages.clone(),
                dead: dead.clone(),
                access_log,
                metrics: metrics.for_worker(index),
                backend_timeout: opts.backend_timeout,
                retry_on_error: opts.retry_on_error,
                header_timeout: opts.header_timeout,
                max_header_size: opts.max_header_size,
                max_retry_body: opts.max_retry_body,
                invalid: invalid.clone(),
                view: view.clone(),
            });
            built.push(Worker { index, shared, listeners, log, balance: balance.clone(), handoff });
        }
        Ok(Proxy {
            workers: built,
            http,
            https,
            settings: Arc::new(Settings {
                tcp_timeout: opts.tcp_timeout,
                shutdown_timeout: opts.shutdown_timeout,
                max_header_size: opts.max_header_size,
                max_connections: opts.max_connections,
                limit: Arc::new(Semaphore::new(opts.max_connections)),
            }),
        })
    }

    /// Bound plain-HTTP addresses (the real port when the config said 0).
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http.clone()
    }

    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.https.clone()
    }

    /// Starts the worker threads. They serve until `shutdown` becomes true, then each stops
    /// accepting and waits for its in-flight requests, at most `shutdownTimeout`
    /// ([`Serving::drained`]).
    pub fn start(self, shutdown: watch::Receiver<bool>) -> Result<Serving, ProxyError> {
        let mut threads = Vec::with_capacity(self.workers.len());
        for (i, worker) in self.workers.into_iter().enumerate() {
            let (settings, shutdown) = (self.settings.clone(), shutdown.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| ProxyError::Worker { worker: i, source })?;
            let thread = std::thread::Builder::new()
                .name(format!("proxy-{i}"))
                .spawn(move || runtime.block_on(worker.serve(settings, shutdown)))
                .map_err(|source| ProxyError::Worker { worker: i, source })?;
            threads.push(thread);
        }
        Ok(Serving { threads })
    }
}

/// The running workers.
pub struct Serving {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Serving {
    /// Returns when every worker thread has ended: drained (or timed out) after the shutdown
    /// signal, and its runtime with what was left on it dropped. Joined, not just signalled,
    /// so the process does not exit while a worker is still freeing its connections (exit
    /// tears down the allocator's process state under a thread still using it).
    pub async fn drained(self) {
        let joined = tokio::task::spawn_blocking(move || {
            for thread in self.threads {
                if thread.join().is_err() {
                    tracing::error!("a proxy worker thread panicked");
                }
            }
        });
        if joined.await.is_err() {
            tracing::error!("the proxy workers could not be waited for");
        }
    }
}

impl Worker {
    async fn serve(self, settings: Arc<Settings>, mut shutdown: watch::Receiver<bool>) {
        let Worker { index, shared, listeners, log, balance, mut handoff } = self;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Hipache's tcpTimeout: a client connection idle this long is closed.
            .header_read_timeout(settings.tcp_timeout)
            // The fast path's head limit on this path too (hyper answers 431); hyper's
            // smallest read buffer is 8 KiB.
            .max_buf_size(settings.max_header_size.max(8192));
        builder.http2().timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();
        tokio::spawn(evict_idle_backends(Arc::downgrade(&shared)));
        let log = log.map(|w| tokio::spawn(w.run()));
        let serving = Serve {
            shared,
            builder: Arc::new(builder),
            balance,
            tcp_timeout: settings.tcp_timeout,
            shutdown: shutdown.clone(),
        };

        let mut waiting = Vec::with_capacity(listeners.len());
        for l in listeners {
            // SAFETY: the `AsyncFd` owns the listener, whose descriptor stays open and the
            // same until the `AsyncFd` drops it (tokio's `register` contract). tokio's own
            // `TcpListener` cannot wait for a connection without taking it, which the
            // connection limit below needs.
            match unsafe { AsyncFd::register_with_interest(l.tcp, Interest::READABLE) } {
                Ok(fd) => waiting.push(Box::pin(ready(Accepting { fd, addr: l.addr, tls: l.tls }))),
                Err(e) => {
                    tracing::error!(addr = %l.addr, error = %e, "listener not registered with the worker; not accepting on it")
                }
            }
        }
        // `server.maxConnections`, over all workers: a connection is accepted only with a
        // permit, so beyond the limit new connections wait in the kernel's listen backlog (and
        // time out there, as at any full server) instead of the process running out of
        // descriptors. A worker asks for a permit only once a listen socket has a connection
        // waiting: one that held a permit while waiting would keep it from a worker that does
        // have a connection to take.
        let limit = settings.limit.clone();
        let mut warned_full: Option<std::time::Instant> = None;
        let stopping = |stopped: Result<(), watch::error::RecvError>| {
            if stopped.is_err() {
                tracing::warn!("shutdown sender dropped; stopping");
            }
        };
        'accepting: loop {
            // (`select_all` of nothing would panic: a worker whose listeners all failed still
            // serves what others hand it.)
            let next = async {
                if waiting.is_empty() {
                    std::future::pending().await
                } else {
                    futures::future::select_all(waiting.iter_mut().map(|f| f.as_mut())).await
                }
            };
            let (listener, i) = tokio::select! {
                stopped = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => {
                    stopping(stopped);
                    break;
                }
                Some(incoming) = handoff.recv() => {
                    serving.spawn(incoming, &graceful);
                    continue;
                }
                ((result, listener), i, _) = next => match result {
                    Ok(()) => (listener, i),
                    Err(e) => {
                        tracing::error!(addr = %listener.addr, error = %e, "listener failed; not accepting on it");
                        drop(waiting.remove(i));
                        continue;
                    }
                },
            };
            let permit = loop {
                if let Ok(permit) = limit.clone().try_acquire_owned() {
                    break permit;
                }
                if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                    tracing::warn!(
                        max_connections = settings.max_connections,
                        "connection limit reached; new connections wait in the listen backlog"
                    );
                    warned_full = Some(std::time::Instant::now());
                }
                tokio::select! {
                    stopped = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => {
                        stopping(stopped);
                        break 'accepting;
                    }
                    // Connections handed over come with their permit: serve them meanwhile.
                    Some(incoming) = handoff.recv() => serving.spawn(incoming, &graceful),
                    permit = limit.clone().acquire_owned() => match permit {
                        Ok(permit) => break permit,
                        Err(_) => break 'accepting, // never closed
                    },
                }
            };
            match listener.fd.try_io(Interest::READABLE, |l| l.accept()) {
                Ok((stream, peer)) => {
                    let to = serving.balance.pick(index);
                    let incoming = Incoming {
                        stream,
                        peer,
                        port: listener.addr.port(),
                        tls: listener.tls.clone(),
                        permit,
                        open: serving.balance.open(to),
                    };
                    let mine = if to == index { Some(incoming) } else { serving.balance.hand_off(to, incoming).err() };
                    if let Some(incoming) = mine {
                        serving.spawn(incoming, &graceful);
                    }
                }
                // Taken by another worker, or gone from the backlog (reset): the permit goes back.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(addr = %listener.addr, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            waiting[i] = Box::pin(ready(listener));
        }
        drop(waiting);
        // Connections handed over after this are served by the worker that accepted them.
        drop(handoff);
        tracing::debug!(connections = graceful.count(), "draining");
        if tokio::time::timeout(settings.shutdown_timeout, graceful.shutdown()).await.is_err() {
            tracing::warn!(timeout = ?settings.shutdown_timeout, "drain timed out; closing remaining connections");
        }
        // The writer ends once every request holding a log handle has (dropping the last
        // sender), after writing what they logged; connections a timed-out drain left behind
        // are not waited for.
        drop(serving);
        if let Some(log) = log {
            let _ = tokio::time::timeout(LOG_CLOSE_TIMEOUT, log).await;
        }
    }
}

/// What a worker starts its connections with.
struct Serve {
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    balance: Arc<Balance>,
    tcp_timeout: Option<Duration>,
    shutdown: watch::Receiver<bool>,
}

impl Serve {
    /// Serves `incoming` on this worker's runtime.
    fn spawn(&self, incoming: Incoming, graceful: &GracefulShutdown) {
        let Incoming { stream, peer, port, tls, permit, open } = incoming;
        let stream = match stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream)) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepted connection not registered with its worker; closed");
                return;
            }
        };
        let conn = Connection {
            shared: self.shared.clone(),
            builder: self.builder.clone(),
            client: Arc::new(ClientInfo::new(peer.ip(), tls.is_some(), port)),
            tls,
            tcp_timeout: self.tcp_timeout,
            shutdown: self.shutdown.clone(),
            _permit: permit,
            _open: open,
        };
        tokio::spawn(conn.run(stream, graceful.watcher()));
    }
}

/// A worker's listener, registered with its runtime.
struct Accepting {
    fd: AsyncFd<std::net::TcpListener>,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
}

/// Binds `addr` once and gives each worker its own descriptor of the one listen socket. Every
/// worker waits on it and the first one free takes the next connection, so connections go to
/// the workers with time for them, as with nginx's shared listen sockets. (`SO_REUSEPORT`,
/// one socket per worker, spread them by a hash instead: measured, the worker that drew more
/// connections set a worse p99, docs/benchmarks.md.)
async fn listen(addr: SocketAddr, workers: usize) -> Result<(Vec<std::net::TcpListener>, SocketAddr), ProxyError> {
    let failed = |source| ProxyError::Bind { addr, source };
    let tcp = TcpListener::bind(addr).await.map_err(failed)?;
    let bound = tcp.local_addr().map_err(failed)?;
    // Non-blocking still, and no longer registered with the runtime that bound it.
    let first = tcp.into_std().map_err(failed)?;
    let mut all = (1..workers).map(|_| first.try_clone()).collect::<std::io::Result<Vec<_>>>().map_err(failed)?;
    all.push(first);
    Ok((all, bound))
}

/// Waits until the listener has a connection to accept (without taking it) and hands the
/// listener back, so the accept loop can take it once it has a permit, then re-arm.
async fn ready(l: Accepting) -> (std::io::Result<()>, Accepting) {
    // The guard is dropped without clearing the readiness: `try_io`'s accept clears it when
    // the backlog is empty.
    let r = l.fd.readable().await.map(drop);
    (r, l)
}

/// Closes the fast path's expired idle backend connections while the worker lives.
async fn evict_idle_backends(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        shared.h1_pool.evict_expired();
    }
}

/// One client connection.
struct Connection {
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
    client: Arc<ClientInfo>,
    tcp_timeout: Option<Duration>,
    shutdown: watch::Receiver<bool>,
    /// Its place under `server.maxConnections`, given back when the connection ends.
    _permit: OwnedSemaphorePermit,
    /// Counted among its worker's connections while it lives.
    _open: Open,
}

impl Connection {
    async fn run(self, stream: TcpStream, watcher: Watcher) {
        let _ = stream.set_nodelay(true);
        let metrics = self.shared.metrics.clone();
        metrics.open_connections.increment(1.0);
        match self.tls.clone() {
            None => self.serve(stream, watcher, false).await,
            Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    self.serve(tls, watcher, h2).await
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            },
        }
        metrics.open_connections.decrement(1.0);
    }

    /// HTTP/1.1 on the fast path until a request needs hyper; then, or at once for ALPN
    /// `h2`, hyper: HTTP/1.1 with upgrades or HTTP/2 (h2c prior knowledge is auto-detected).
    /// The watcher is held throughout, so the drain waits for fast-path connections too.
    async fn serve<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self, io: I, watcher: Watcher, h2: bool) {
        let Connection { shared, builder, client, tcp_timeout, shutdown, .. } = self;
        let (io, attempts) = if h2 {
            (Rewind::new(bytes::Bytes::new(), io), Attempts::default())
        } else {
            match h1::serve(shared.clone(), client.clone(), io, tcp_timeout, shutdown).await {
                Ended::Closed => return,
                Ended::Hyper(io, attempts) => (io, attempts),
            }
        };
        // The fast path's attempts belong to the request it handed over, hyper's first.
        let carried = std::sync::Mutex::new(Some(attempts));
        let service = service_fn(move |req| {
            let attempts = carried.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
            handler::handle(shared.clone(), client.clone(), req, attempts)
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(error = %e, "client connection ended with an error");
        }
    }
}
