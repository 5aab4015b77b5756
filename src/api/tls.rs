//! TLS on the client listeners (gRPC and HTTP), from a certificate chain and key
//! in PEM files (`--tls-cert`, `--tls-key`). rustls with the ring provider; no
//! OpenSSL. The peer listener's TLS is separate (`peer_tls`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Identity, ServerTlsConfig};

use crate::limits::TLS_HANDSHAKE_TIMEOUT_MS;

/// A certificate chain and its key, loaded and checked at start.
#[derive(Clone)]
pub struct ListenerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    http: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenerTls { .. }") // never the key
    }
}

impl ListenerTls {
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let cert_pem =
            std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
        anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
        let private = PrivateKeyDer::from_pem_slice(&key_pem)
            .with_context(|| format!("{}: not a PEM private key", key.display()))?;
        let mut http = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .with_context(|| {
            format!(
                "{} and {} do not make a usable certificate and key",
                cert.display(),
                key.display()
            )
        })?;
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ListenerTls {
            cert_pem,
            key_pem,
            http: Arc::new(http),
        })
    }

    /// For the client gRPC listener.
    pub fn grpc(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(std::time::Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS))
    }

    /// For the HTTP listener.
    pub fn http(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.http.clone())
    }
}
