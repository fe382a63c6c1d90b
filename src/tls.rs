//! TLS for both listeners and every client (SECURITY.md), with rustls and the ring
//! provider: PEM files named in the settings, the server and client configurations, the
//! identity a peer's certificate carries, and certificate rotation without a restart.
//!
//! One [`Identity`] (this process's certificate and key) serves both as the listeners'
//! server certificate and as the client certificate of every outgoing call. It is read
//! from its files again by [`Identity::reload`] (on SIGHUP, or when the files change), and
//! the next handshake uses the new pair; connections already open keep theirs. The CA is
//! read once: a new CA needs a restart (rotate it by issuing certificates under a bundle
//! of the old and the new CA first).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The PEM files of one process: its certificate chain, its key, and the cluster's CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA (or CAs) every peer and client certificate must chain to.
    pub ca: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the configuration (a key that does not fit its certificate, ...).
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_err(path: &Path, detail: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

/// The provider every configuration uses: rustls' ring backend.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

/// The CA file as a root store.
pub fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path)? {
        roots.add(c).map_err(|e| file_err(path, e))?;
    }
    Ok(Arc::new(roots))
}

fn certified_key(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_err(&files.key, e))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|e| {
        TlsError::Config(format!(
            "{} and {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    Ok(Arc::new(ck))
}

/// Modification times of the files, to notice a rotation.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &TlsFiles) -> Stamp {
    [&files.cert, &files.key]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// This process's certificate and key, swapped in place by [`Identity::reload`].
#[derive(Debug)]
pub struct Identity {
    files: TlsFiles,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

impl Identity {
    /// Reads the certificate and key.
    pub fn load(files: TlsFiles) -> Result<Arc<Identity>, TlsError> {
        let key = certified_key(&files)?;
        let st = stamp(&files);
        Ok(Arc::new(Identity {
            files,
            current: RwLock::new((key, st)),
        }))
    }

    /// The files it was read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    fn key(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Reads the files again and uses the new pair from the next handshake on. A pair that
    /// does not load leaves the current one in use. Returns whether anything changed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let st = stamp(&self.files);
        let key = certified_key(&self.files)?;
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        let changed = cur.0.cert != key.cert;
        *cur = (key, st);
        Ok(changed)
    }

    /// [`Identity::reload`] when the files' times or sizes differ from the last read.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let same = {
            let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
            cur.1 == stamp(&self.files)
        };
        if same {
            return Ok(false);
        }
        self.reload()
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Whether a listener requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// Peer listener: mutual TLS, a certificate from the CA is required.
    Required,
    /// API listener: a client may prove who it is with a certificate from the CA, or with
    /// a bearer token instead.
    Optional,
}

/// A listener's configuration: `identity` as its certificate, client certificates checked
/// against `roots`.
pub fn server_config(
    identity: Arc<Identity>,
    roots: Arc<RootCertStore>,
    client_certs: ClientCerts,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = WebPkiClientVerifier::builder_with_provider(roots, provider());
    let builder = match client_certs {
        ClientCerts::Required => builder,
        ClientCerts::Optional => builder.allow_unauthenticated(),
    };
    let verifier = builder
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// An outgoing configuration: servers checked against `roots`; `identity`, if any, sent
/// as the client certificate.
pub fn client_config(
    roots: Arc<RootCertStore>,
    identity: Option<Arc<Identity>>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    Ok(match identity {
        Some(id) => builder.with_client_cert_resolver(id),
        None => builder.with_no_client_auth(),
    })
}

/// A client configuration from files: the CA, and optionally a certificate and key to
/// present (the CLI's `--ca-file`, `--cert-file`, `--key-file`).
pub fn client_config_from_files(
    ca: &Path,
    cert_and_key: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let identity = match cert_and_key {
        Some((cert, key)) => Some(Identity::load(TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            ca: ca.to_path_buf(),
        })?),
        None => None,
    };
    client_config(read_roots(ca)?, identity)
}

/// Who is on the other end of a TLS connection: the names of the certificate it presented
/// (verified against the CA), if it presented one. Requests carry it as an extension.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerIdentity {
    /// The DNS subject alternative names, then the common name, if any; empty without a
    /// certificate.
    pub names: Vec<String>,
    /// The common name, if any.
    pub common_name: Option<String>,
}

impl PeerIdentity {
    /// The identity a certificate carries; an empty one when it does not parse.
    pub fn of(cert: &CertificateDer<'_>) -> PeerIdentity {
        let Ok((_, x)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            return PeerIdentity::default();
        };
        let mut names = Vec::new();
        if let Ok(Some(san)) = x.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push(d.to_string());
                }
            }
        }
        let common_name = x
            .subject()
            .iter_common_name()
            .find_map(|cn| cn.as_str().ok())
            .map(str::to_string);
        names.extend(common_name.clone());
        PeerIdentity { names, common_name }
    }

    /// The controller node id its certificate names (`controller-<id>`), if any.
    pub fn controller_id(&self) -> Option<u64> {
        self.names
            .iter()
            .find_map(|n| n.strip_prefix("controller-")?.parse().ok())
    }

    /// The principal name for the API: the common name, else the first SAN.
    pub fn principal(&self) -> Option<&str> {
        self.common_name
            .as_deref()
            .or(self.names.first().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_controller_identity_is_read_from_its_names() {
        let id = PeerIdentity {
            names: vec![
                "localhost".into(),
                "controller-3".into(),
                "controller-3".into(),
            ],
            common_name: Some("controller-3".into()),
        };
        assert_eq!(id.controller_id(), Some(3));
        let broker = PeerIdentity {
            names: vec!["broker-1".into()],
            common_name: Some("broker-1".into()),
        };
        assert_eq!(broker.controller_id(), None);
        assert_eq!(broker.principal(), Some("broker-1"));
        let sans_only = PeerIdentity {
            names: vec!["a".into(), "b".into()],
            common_name: None,
        };
        assert_eq!(
            sans_only.principal(),
            Some("a"),
            "the first SAN, as documented"
        );
        let bad = PeerIdentity {
            names: vec!["controller-x".into()],
            common_name: None,
        };
        assert_eq!(bad.controller_id(), None);
    }

    #[test]
    fn files_that_are_not_pem_are_refused_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pem");
        std::fs::write(&p, "not pem").unwrap();
        let e = read_certs(&p).unwrap_err();
        assert!(e.to_string().contains("x.pem"), "{e}");
        assert!(read_key(&p).is_err());
        assert!(read_certs(&dir.path().join("missing.pem")).is_err());
    }
}
