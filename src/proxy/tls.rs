//! TLS termination with SNI from the replicated store, and the backend TLS client config.
//!
//! Certificates come from `tls:<servername>` hashes (fields `certificate` and `key`, PEM), the
//! convention of the `MangoRaft/hipache` fork and PlanB (§3.11, §9.4). The resolver tries the
//! exact name first, then `tls:*.<parent>`, then the listener's configured certificate.
//! (PlanB tries the wildcard first; exact-first is the usual rule and lets one host override
//! its wildcard.) Hashes are parsed when the routing view is updated, so a certificate written
//! with `redis-cli -x hset tls:example.com certificate` is served at the next handshake on
//! every node; a malformed one is logged and skipped without touching other names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::view::SharedView;
use crate::routing::certs::{certified_key, provider, CertError};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// rustls cannot decrypt keys; Hipache passed the passphrase to OpenSSL.
    #[error("encrypted private keys (passphrase) are not supported; decrypt the key file")]
    Passphrase,
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// A listener's configured certificate: the fallback when no `tls:` hash matches (or the
/// client sent no SNI).
pub fn load_default(cert: &Path, key: &Path, ca: &[PathBuf], passphrase: bool) -> Result<CertifiedKey, TlsError> {
    if passphrase {
        return Err(TlsError::Passphrase);
    }
    let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source });
    let mut chain = read(cert)?;
    for extra in ca {
        chain.push(b'\n');
        chain.extend(read(extra)?);
    }
    Ok(certified_key(&chain, &read(key)?)?)
}

#[derive(Debug)]
struct SniResolver {
    view: Arc<SharedView>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls has already lowercased the name (and dropped a trailing dot).
        let from_store = hello.server_name().and_then(|name| self.view.load().cert_for(name));
        Some(from_store.unwrap_or_else(|| self.default.clone()))
    }
}

/// Server config for one HTTPS listener: SNI from the view, ALPN h2 and http/1.1.
pub fn server_config(
    view: Arc<SharedView>,
    default: CertifiedKey,
    honor_cipher_order: bool,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { view, default: Arc::new(default) }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = honor_cipher_order;
    Ok(config)
}

/// Client config for `https://` backends. Backends are verified against the system trust
/// store (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`) with the URL's host as the
/// expected name: a router must not silently accept any certificate, and internal CAs are
/// added to the system store (or named by `SSL_CERT_FILE`) the usual way.
pub fn backend_client_config() -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "loading system CA certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "backend TLS trust store");
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
