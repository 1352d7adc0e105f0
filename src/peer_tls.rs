//! Optional mutual TLS on the gRPC port (`cluster.tls.{cert,key,ca}`): every node presents
//! its certificate and accepts only peers (and admin clients) whose certificate the cluster CA
//! signed. Complements `cluster.secret`, which authenticates calls but does not encrypt them.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    #[error("cluster.tls: cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cluster.tls: ca must name at least one CA certificate file")]
    NoCa,
}

#[derive(Clone, Debug)]
pub struct PeerTls {
    identity: Identity,
    ca: Certificate,
}

fn read(path: &Path) -> Result<Vec<u8>, PeerTlsError> {
    std::fs::read(path).map_err(|source| PeerTlsError::Read { path: path.to_path_buf(), source })
}

impl PeerTls {
    /// Reads the PEM files; the CA files are concatenated into one trust bundle.
    pub fn load(cert: &Path, key: &Path, ca: &[PathBuf]) -> Result<PeerTls, PeerTlsError> {
        if ca.is_empty() {
            return Err(PeerTlsError::NoCa);
        }
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        let mut bundle = Vec::new();
        for path in ca {
            bundle.extend_from_slice(&read(path)?);
            bundle.push(b'\n');
        }
        Ok(PeerTls { identity, ca: Certificate::from_pem(bundle) })
    }

    /// Server side: present our certificate, require a client certificate from the CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(self.identity.clone()).client_ca_root(self.ca.clone())
    }

    /// Client side towards `addr` (host:port): verify the server against the CA for that host
    /// name or IP, and present our certificate.
    pub fn client(&self, addr: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(host_of(addr))
    }
}

/// The host part of `host:port` or `[v6]:port`, as the server certificate must name it.
pub fn host_of(addr: &str) -> String {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("127.0.0.1:7380"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7380"), "::1");
        assert_eq!(host_of("node-1.cluster:7380"), "node-1.cluster");
        assert_eq!(host_of("node-1"), "node-1");
    }

    #[test]
    fn missing_files_name_the_path() {
        let err =
            PeerTls::load(Path::new("/nonexistent/cert.pem"), Path::new("/x"), &[PathBuf::from("/y")]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
        assert!(matches!(PeerTls::load(Path::new("a"), Path::new("b"), &[]), Err(PeerTlsError::NoCa)));
    }
}
