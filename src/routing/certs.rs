//! Certificates from PEM: the `tls:<servername>` hashes of the routing data (§3.11, §9.4) and
//! the listeners' configured files, into rustls signing keys. Pure: parsing only, no IO.

use std::sync::Arc;

use bytes::Bytes;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    #[error("no certificate in the PEM data")]
    NoCertificate,
    #[error("bad certificate PEM: {0}")]
    Certificate(rustls_pki_types::pem::Error),
    #[error("bad private key PEM: {0}")]
    Key(rustls_pki_types::pem::Error),
    #[error("unsupported private key: {0}")]
    Signer(rustls::Error),
    #[error("certificate and key do not match: {0}")]
    Mismatch(rustls::Error),
}

/// The one crypto provider we compile (ring), passed explicitly so another dependency
/// enabling a second provider can never make rustls pick at random or panic.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificate chain and key, both PEM, into a signing key.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, CertError> {
    let chain =
        CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>().map_err(CertError::Certificate)?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(CertError::Key)?;
    let signer = provider().key_provider.load_private_key(key).map_err(CertError::Signer)?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(CertError::Mismatch)?;
    Ok(certified)
}

/// A `tls:<name>` hash (`certificate`, `key`). Takes any map-like value of the keyspace.
pub fn certified_key_from_hash<'a, M>(fields: &'a M) -> Result<CertifiedKey, CertError>
where
    &'a M: IntoIterator<Item = (&'a Bytes, &'a Bytes)>,
{
    let (mut cert, mut key) = (None, None);
    for (name, value) in fields {
        match name.as_ref() {
            b"certificate" => cert = Some(value),
            b"key" => key = Some(value),
            _ => {}
        }
    }
    certified_key(cert.ok_or(CertError::MissingField("certificate"))?, key.ok_or(CertError::MissingField("key"))?)
}
