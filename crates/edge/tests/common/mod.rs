//! Helpers shared by the edge server's integration tests.

use std::sync::Arc;

/// A QUIC client endpoint on loopback speaking h3 over TLS 1.3 and
/// trusting `cert_der` only.
pub fn h3_endpoint(cert_der: &[u8]) -> quinn::Endpoint {
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(h3_tls(cert_der)).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    endpoint
}

/// TLS 1.3 with ALPN `h3`, trusting `cert_der` only.
#[allow(dead_code)]
pub fn h3_tls(cert_der: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cert_der.to_vec()))
        .unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls
}
