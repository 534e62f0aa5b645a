//! TLS for the HTTP API: a rustls server configuration from a certificate chain and a private
//! key in PEM files.
//!
//! Bearer tokens travel in every request, so the API must be served over TLS wherever the
//! network between dashboard and service is not trusted. The handshake runs inside the accept
//! loop's connection task ([`crate::http::serve`]), bounded by the header timeout, so a client
//! that opens a connection and never completes the handshake holds its place no longer than
//! one that never sends its headers. The files are read once at start: restart the service to
//! load a renewed certificate.
//!
//! The crypto provider is named explicitly (aws-lc-rs): other crates in the process enable
//! rustls's ring provider too, and with two compiled in rustls cannot pick a default itself.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// Why the TLS configuration cannot be built. Each names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the TLS file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`): {source}")]
    Certificates {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {source}")]
    PrivateKey {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the certificate in {cert} and the key in {key} cannot be used together: {source}")]
    Config {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
}

/// A TLS acceptor serving the chain in `cert` (leaf first) with the key in `key`, for HTTP/1.1.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsSetupError> {
    let chain = certificates(cert, std::fs::read(cert))?;
    let private = private_key(key, std::fs::read(key))?;
    let config_error = |source| TlsSetupError::Config {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        source,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate in the file, in order; at least one.
fn certificates(
    path: &Path,
    read: std::io::Result<Vec<u8>>,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let shown = || path.display().to_string();
    let pem = read.map_err(|source| TlsSetupError::Read {
        path: shown(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsSetupError::Certificates {
            path: shown(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsSetupError::Certificates {
            path: shown(),
            source: rustls::pki_types::pem::Error::NoItemsFound,
        });
    }
    Ok(chain)
}

/// The first private key in the file.
fn private_key(
    path: &Path,
    read: std::io::Result<Vec<u8>>,
) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let shown = || path.display().to_string();
    let pem = read.map_err(|source| TlsSetupError::Read {
        path: shown(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| TlsSetupError::PrivateKey {
        path: shown(),
        source,
    })
}
