//! TLS configurations, in one place for the hub and its clients: always the `ring` crypto
//! provider (so no process-wide default is needed, and no aws-lc C build), certificates and keys
//! from PEM files.
//!
//! - [`server_config`]: the hub's certificate chain and key (`--tls-cert`, `--tls-key`).
//! - [`client_config`]: the system's trusted roots plus, optionally, a CA file of one's own (for
//!   a hub with a self-signed or private-CA certificate).
//!
//! reqwest is built without a crypto provider of its own (its default would be aws-lc), so every
//! `reqwest::Client` here is built with `.tls_backend_preconfigured(client_config(..)?)`:
//! `reqwest::get` and `Client::new()` would panic for want of a provider.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("{path} holds no {what}")]
    Empty { path: String, what: &'static str },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |e: rustls::pki_types::pem::Error| TlsError::Read {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.display().to_string(),
            what: "PEM certificate",
        });
    }
    Ok(certs)
}

/// The hub's side: its certificate chain and private key, both PEM.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let chain = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
        path: key.display().to_string(),
        detail: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // HTTP/1.1 only: the hub speaks nothing else (WebSockets included).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// For a client that never speaks TLS (an `http://` hub): no roots to load. reqwest still needs a
/// configuration (it has no provider of its own here), and a TLS connection with this one fails.
pub fn plain_client_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// A client's side: the system's roots, and the certificates in `ca_file` when given.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::debug!(%error, "a system certificate could not be read");
    }
    let (added, _) = roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        for cert in certificates(path)? {
            roots.add(cert)?;
        }
    } else if added == 0 {
        tracing::warn!("no trusted root certificates found on this system; https will fail");
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
