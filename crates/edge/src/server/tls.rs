//! Certificates and the two rustls configurations: TCP (ALPN `h2`,
//! `http/1.1`) and QUIC (TLS 1.3, ALPN `h3`).
//!
//! The crypto provider is given explicitly (ring) rather than taken from
//! the process default, so a workspace build that also enables aws-lc-rs
//! cannot make the choice ambiguous (rustls then panics: "Could not
//! automatically determine the process-level CryptoProvider").

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rcgen::PublicKeyData;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::ServerError;

/// A certificate chain and its key.
pub(crate) struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Base64 of the SHA-256 of the leaf's DER SubjectPublicKeyInfo (what
    /// Chromium's `--ignore-certificate-errors-spki-list` and HPKP-style
    /// pins take).
    pub spki_sha256: String,
}

/// Reads a PEM chain and key.
pub(crate) fn load(cert: &Path, key: &Path) -> Result<Identity, ServerError> {
    let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| ServerError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if chain.is_empty() {
        return Err(ServerError::Pem {
            path: cert.to_owned(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    // The leaf's SPKI as webpki parses it (the outer SEQUENCE included,
    // RFC 5280 §4.1.2.7), the same bytes rustls presents.
    let leaf = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| ServerError::Pem {
        path: cert.to_owned(),
        reason: format!("first certificate unreadable: {e}"),
    })?;
    let spki_sha256 = spki_sha256(&leaf.subject_public_key_info());
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    Ok(Identity {
        chain,
        key,
        spki_sha256,
    })
}

/// Standard base64 of SHA-256 over a DER SubjectPublicKeyInfo.
fn spki_sha256(spki: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki))
}

/// Generates a self-signed certificate for `localhost`, the loopback
/// addresses and `listen_ip` (when it is a specific address).
pub(crate) fn self_signed(listen_ip: IpAddr) -> Result<Identity, ServerError> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    if !listen_ip.is_unspecified() && !listen_ip.is_loopback() {
        names.push(listen_ip.to_string());
    }
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ServerError::Tls(format!("generating a certificate: {e}")))?;
    let spki_sha256 = spki_sha256(&generated.signing_key.subject_public_key_info());
    Ok(Identity {
        chain: vec![generated.cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            generated.signing_key.serialize_der(),
        )),
        spki_sha256,
    })
}

fn builder() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS over TCP: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`.
pub(crate) fn tcp_config(identity: &Identity) -> Result<ServerConfig, ServerError> {
    let mut config = ServerConfig::builder_with_provider(builder())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| ServerError::Tls(format!("certificate or key refused: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// TLS inside QUIC: TLS 1.3 only (RFC 9001 §4.2), ALPN `h3`.
///
/// The transport carries the connection limits QUIC enforces itself: the
/// idle timeout (RFC 9000 §10.1 `max_idle_timeout`) and the concurrent
/// request streams a client may open (§4.6 `initial_max_streams_bidi`).
pub(crate) fn quic_config(
    identity: &Identity,
    limits: &ferrocast_connections::ConnectionLimits,
) -> Result<quinn::ServerConfig, ServerError> {
    let mut config = ServerConfig::builder_with_provider(builder())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| ServerError::Tls(format!("certificate or key refused: {e}")))?;
    config.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config)
        .map_err(|e| ServerError::Tls(format!("QUIC TLS configuration: {e}")))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(
            quinn::IdleTimeout::try_from(limits.idle_timeout())
                .ok()
                .or_else(|| Some(quinn::VarInt::MAX.into())),
        )
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(limits.max_streams_per_connection))
        // HTTP/3 needs three unidirectional streams from a client (control,
        // QPACK encoder and decoder; RFC 9114 §6.2); a few spare.
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(8));
    server.transport_config(Arc::new(transport));
    Ok(server)
}
