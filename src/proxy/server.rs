//! Listeners, connections and the graceful drain.
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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::access_log::{AccessLog, AccessLogError};
use super::client;
use super::dead::DeadMarker;
use super::forward::ClientInfo;
use super::h1::{self, Ended, Rewind};
use super::handler;
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
}

/// How often, at most, a full connection limit is logged.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// A TLS handshake that takes longer than this is dropped (slow or stuck clients).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

struct Listener {
    tcp: TcpListener,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
}

/// A bound, not yet serving, proxy.
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    tcp_timeout: Option<Duration>,
    shutdown_timeout: Duration,
    max_header_size: usize,
    max_connections: usize,
}

impl Proxy {
    /// Binds every listener, loads certificates and pages, and starts following the node's
    /// applied state. Must run inside the tokio runtime.
    pub async fn bind(opts: ProxyOptions, node: Arc<RaftNode>) -> Result<Proxy, ProxyError> {
        let metrics = Metrics::new();
        let view = Arc::new(SharedView::new(opts.routing.clone()));
        node.add_apply_listener(view.clone());

        let mut listeners = Vec::new();
        for addr in &opts.http {
            listeners.push(Listener { tcp: bind(*addr).await?, addr: *addr, tls: None });
        }
        for l in &opts.https {
            let tls_err = |source| ProxyError::Tls { addr: l.addr, source };
            let default = tls::load_default(&l.cert, &l.key, &l.ca, l.passphrase).map_err(tls_err)?;
            let config = tls::server_config(view.clone(), default, l.honor_cipher_order).map_err(tls_err)?;
            listeners.push(Listener {
                tcp: bind(l.addr).await?,
                addr: l.addr,
                tls: Some(TlsAcceptor::from(Arc::new(config))),
            });
        }
        for l in &mut listeners {
            l.addr = l.tcp.local_addr().map_err(|source| ProxyError::Bind { addr: l.addr, source })?;
        }

        let shared = Arc::new(Shared {
            client: client::build(opts.connect_timeout, opts.idle_per_backend()).map_err(ProxyError::BackendTls)?,
            h1_pool: h1::Pool::new(opts.idle_per_backend()),
            connect_timeout: opts.connect_timeout,
            pages: opts.static_dir.as_deref().map_or_else(Pages::bundled, Pages::load),
            dead: DeadMarker { view: view.clone(), node, ttl: opts.dead_backend_ttl, metrics: metrics.clone() },
            access_log: opts.access_log.map(AccessLog::start).transpose()?,
            metrics,
            backend_timeout: opts.backend_timeout,
            retry_on_error: opts.retry_on_error,
            header_timeout: opts.header_timeout,
            max_header_size: opts.max_header_size,
            max_retry_body: opts.max_retry_body,
            invalid: Default::default(),
            view,
        });
        Ok(Proxy {
            shared,
            listeners,
            tcp_timeout: opts.tcp_timeout,
            shutdown_timeout: opts.shutdown_timeout,
            max_header_size: opts.max_header_size,
            max_connections: opts.max_connections,
        })
    }

    /// Bound plain-HTTP addresses (the real port when the config said 0).
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter(|l| l.tls.is_none()).map(|l| l.addr).collect()
    }

    pub fn https_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter(|l| l.tls.is_some()).map(|l| l.addr).collect()
    }

    /// Serves until `shutdown` becomes true, then stops accepting and waits for in-flight
    /// requests, at most `shutdownTimeout`. Returns when drained (or timed out).
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Hipache's tcpTimeout: a client connection idle this long is closed.
            .header_read_timeout(self.tcp_timeout)
            // The fast path's head limit on this path too (hyper answers 431); hyper's
            // smallest read buffer is 8 KiB.
            .max_buf_size(self.max_header_size.max(8192));
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
        let graceful = GracefulShutdown::new();
        tokio::spawn(evict_idle_backends(Arc::downgrade(&self.shared)));

        let mut accepting: Vec<_> = self.listeners.into_iter().map(|l| Box::pin(accept_one(l))).collect();
        // `server.maxConnections`: a connection is accepted only with a permit, so beyond the
        // limit new connections wait in the kernel's listen backlog (and time out there, as at
        // any full server) instead of the process running out of descriptors.
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let mut warned_full: Option<std::time::Instant> = None;
        loop {
            let permit = match limit.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                        tracing::warn!(
                            max_connections = self.max_connections,
                            "connection limit reached; new connections wait in the listen backlog"
                        );
                        warned_full = Some(std::time::Instant::now());
                    }
                    tokio::select! {
                        stopped = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => {
                            if stopped.is_err() {
                                tracing::warn!("shutdown sender dropped; stopping");
                            }
                            break;
                        }
                        permit = limit.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => break, // never closed
                        },
                    }
                }
            };
            let next = futures::future::select_all(accepting.iter_mut().map(|f| f.as_mut()));
            tokio::select! {
                stopped = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => {
                    if stopped.is_err() {
                        tracing::warn!("shutdown sender dropped; stopping");
                    }
                    break;
                }
                ((result, listener), i, _) = next => {
                    match result {
                        Ok((stream, peer)) => {
                            let conn = Connection {
                                shared: self.shared.clone(),
                                builder: builder.clone(),
                                tls: listener.tls.clone(),
                                client: Arc::new(ClientInfo::new(peer.ip(), listener.tls.is_some(), listener.addr.port())),
                                tcp_timeout: self.tcp_timeout,
                                shutdown: shutdown.clone(),
                                _permit: permit,
                            };
                            tokio::spawn(conn.run(stream, graceful.watcher()));
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(addr = %listener.addr, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    accepting[i] = Box::pin(accept_one(listener));
                }
            }
        }
        drop(accepting);
        tracing::info!(connections = graceful.count(), "draining");
        if tokio::time::timeout(self.shutdown_timeout, graceful.shutdown()).await.is_err() {
            tracing::warn!(timeout = ?self.shutdown_timeout, "drain timed out; closing remaining connections");
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr).await.map_err(|source| ProxyError::Bind { addr, source })
}

/// Accepts one connection and hands the listener back, so the accept loop can re-arm it.
async fn accept_one(l: Listener) -> (std::io::Result<(TcpStream, SocketAddr)>, Listener) {
    let r = l.tcp.accept().await;
    (r, l)
}

/// Closes the fast path's expired idle backend connections while the proxy lives.
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
