//! The HTTPS client side of the edge load tools.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_rustls::TlsConnector;

/// A TLS connector speaking HTTP/1.1 (ALPN) that trusts only the PEM
/// certificates in `cert`.
pub fn http1_connector(cert: &Path) -> Result<TlsConnector> {
    connector(cert, b"http/1.1")
}

/// A TLS connector offering ALPN `alpn` only (`http/1.1`, `h2`) that
/// trusts only the PEM certificates in `cert`.
pub fn connector(cert: &Path, alpn: &[u8]) -> Result<TlsConnector> {
    Ok(TlsConnector::from(Arc::new(client_config(cert, alpn)?)))
}

/// A QUIC client configuration for HTTP/3 (TLS 1.3, ALPN `h3`) that trusts
/// only the PEM certificates in `cert`.
pub fn h3_client_config(cert: &Path) -> Result<quinn::ClientConfig> {
    let tls = client_config(cert, b"h3")?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .context("a QUIC client configuration from the TLS one")?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

fn client_config(cert: &Path, alpn: &[u8]) -> Result<rustls::ClientConfig> {
    let pem = std::fs::read(cert).with_context(|| format!("reading {cert:?}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    Ok(tls)
}
