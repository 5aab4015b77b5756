//! The peer credential: mutual TLS between nodes, derived from one cluster secret.
//!
//! Every node of a cluster is given the same secret file. From it each node derives
//! the same Ed25519 key (BLAKE3 `derive_key`), and with it the same certificate
//! authority; at start a node issues itself a fresh certificate signed by that CA.
//! A peer connection is TLS in both directions: the server proves itself to the
//! dialing node and the dialing node presents its certificate, which the server
//! checks against the CA. Holding the secret is therefore what makes a process a
//! peer; nothing has to be distributed but the one file. Client API tokens play no
//! part here, and the peer certificate is never accepted on the client listeners.

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ED25519,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::limits::{CLUSTER_SECRET_BYTES_MIN, TLS_HANDSHAKE_TIMEOUT_MS};

/// The name every node's peer certificate carries and every dialing node checks:
/// nodes are told apart by the CA, not by host names (addresses may be IPs).
pub const PEER_TLS_NAME: &str = "cairn-peer";

/// Domain separation for the CA key; changing it changes every cluster's CA.
const CA_KEY_CONTEXT: &str = "cairn 2026-12 peer CA ed25519 seed";

/// The secret file's name inside the data directory when none is configured.
pub const SECRET_FILE_NAME: &str = "cluster.secret";

/// The CA and this process's certificate, as PEM.
#[derive(Clone)]
pub struct PeerTls {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls { .. }") // never the key
    }
}

impl PeerTls {
    /// Derives the CA from `secret` and issues a certificate for `node_name`.
    pub fn from_secret(secret: &[u8], node_name: &str) -> Result<Self, rcgen::Error> {
        let (ca_params, ca_key) = ca(secret)?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![PEER_TLS_NAME.to_string()])?;
        params.distinguished_name = name(node_name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &issuer)?;
        Ok(PeerTls {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA certificate (PEM): what a dialing party trusts.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The peer listener's TLS: our certificate, and a client certificate signed
    /// by the CA required. A caller without one, or with one from another CA,
    /// fails the handshake, so it never gets an HTTP/2 session (or a connection
    /// slot beyond the handshake timeout) on the peer port; `require_peer` checks
    /// again per request.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(false)
            .timeout(std::time::Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS))
    }

    /// How a node dials a peer: trust only the CA, present our certificate.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(PEER_TLS_NAME)
            .timeout(std::time::Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS))
    }
}

/// BLAKE3 context of the node token (domain separation from the CA key).
const NODE_TOKEN_CONTEXT: &str = "cairn 2026-12 node api token";

/// The API token the node's own helper processes (the rsync daemon's mount) use:
/// derived from the cluster secret, so every node accepts it and only holders of
/// the secret can know it. `Auth` accepts it without counting it as a token that
/// closes an open cluster.
pub fn node_token(secret: &[u8]) -> String {
    let key = blake3::derive_key(NODE_TOKEN_CONTEXT, secret);
    format!("cairn_node_{}", hex::encode(key))
}

/// The cluster CA: the same parameters and key on every node holding `secret`.
fn ca(secret: &[u8]) -> Result<(CertificateParams, KeyPair), rcgen::Error> {
    let seed = blake3::derive_key(CA_KEY_CONTEXT, secret);
    // PKCS#8 v1 of an Ed25519 private key: a fixed 16-byte prefix, then the seed.
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    pkcs8.extend_from_slice(&seed);
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.into(), &PKCS_ED25519)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("cairn peer CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from_slice(&[1]));
    Ok((params, key))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Where the secret is read from: the configured file, else `<data_dir>/cluster.secret`.
pub fn secret_path(configured: Option<&Path>, data_dir: &Path) -> PathBuf {
    configured
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join(SECRET_FILE_NAME))
}

/// Reads the cluster secret. Refused: a file others can read (it is the key to
/// every peer's data), and fewer than `CLUSTER_SECRET_BYTES_MIN` bytes.
pub fn read_secret(path: &Path) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is readable by others (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            ),
        ));
    }
    let text = std::fs::read(path)?;
    let secret = text.trim_ascii().to_vec();
    if secret.len() < CLUSTER_SECRET_BYTES_MIN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} holds {} bytes; a cluster secret needs at least {CLUSTER_SECRET_BYTES_MIN}",
                path.display(),
                secret.len()
            ),
        ));
    }
    Ok(secret)
}

/// Writes a new random secret (hex, mode 0600) at `path`; fails if it exists.
pub fn create_secret(path: &Path) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bytes: [u8; 32] = rand::random();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())?;
    file.sync_all()?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => crate::durable::sync_dir(dir),
        _ => Ok(()),
    }
}

/// The interceptor of the peer listener: a request must come over a connection
/// whose client certificate the CA signed. The TLS layer already refuses others;
/// this keeps the rule if that configuration ever changes.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
pub fn require_peer(request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    match request.peer_certs() {
        Some(certs) if !certs.is_empty() => Ok(request),
        _ => Err(tonic::Status::unauthenticated(
            "peer RPCs need the cluster's peer certificate (derived from the cluster secret)",
        )),
    }
}

/// The interceptor of the peer service on the client listener: peers never call
/// there, so every request is refused, API token or not.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
pub fn refuse_on_client_port(
    _request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    Err(tonic::Status::unauthenticated(
        "peer RPCs are served only on the peer listener (--peer-addr), to nodes holding the cluster secret",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_secret_gives_the_same_ca_key() {
        let a = ca(b"0123456789abcdef0123456789abcdef").unwrap().1;
        let b = ca(b"0123456789abcdef0123456789abcdef").unwrap().1;
        let c = ca(b"0123456789abcdef0123456789abcdeX").unwrap().1;
        assert_eq!(a.public_key_raw(), b.public_key_raw());
        assert_ne!(a.public_key_raw(), c.public_key_raw());
    }

    #[test]
    fn a_readable_secret_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        create_secret(&path).unwrap();
        assert_eq!(read_secret(&path).unwrap().len(), 64);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secret(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "short").unwrap();
        assert!(read_secret(&path).is_err());
    }
}
