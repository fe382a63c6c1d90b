//! TLS for both listeners and every client (SECURITY.md), with rustls and the ring
//! provider: PEM files named in the settings, the server and client configurations, the
//! identity a peer's certificate carries, and certificate rotation without a restart.
//!
//! One [`Identity`] (this process's certificate, key and CA) serves both as the listeners'
//! server certificate and as the client certificate of every outgoing call, and its CA
//! checks the other side in both directions. It is read from its files again by
//! [`Identity::reload`] (on SIGHUP, or when the files change), and the next handshake uses
//! the new certificate and CA; connections already open keep theirs. A CA is rotated
//! without a restart: trust a bundle of the old and the new CA, move every certificate to
//! the new CA, then trust the new CA alone (deploy/README.md).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

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

/// The SHA-256 of some files' contents, to notice that they were rewritten (a certificate
/// rotation, an edited principals file). Contents, not times and sizes: a token hash
/// swapped for another keeps the file's size, and a coarse clock can keep its time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileStamp(Vec<Option<[u8; 32]>>);

impl FileStamp {
    /// The stamp of `paths` now; a file that cannot be read stamps as missing.
    pub fn of(paths: &[&Path]) -> FileStamp {
        use sha2::{Digest, Sha256};
        FileStamp(
            paths
                .iter()
                .map(|p| std::fs::read(p).ok().map(|b| Sha256::digest(&b).into()))
                .collect(),
        )
    }
}

fn stamp(files: &TlsFiles) -> FileStamp {
    FileStamp::of(&[&files.cert, &files.key, &files.ca])
}

/// The CA as read from its file: the certificates, and the verifiers built on them.
#[derive(Debug)]
struct Trust {
    ders: Vec<CertificateDer<'static>>,
    /// Peer listener: a certificate from the CA is required.
    required: Arc<dyn ClientCertVerifier>,
    /// API listener: a certificate from the CA, or none (then a bearer token).
    optional: Arc<dyn ClientCertVerifier>,
    /// Outgoing calls: the server's certificate must chain to the CA.
    server: Arc<dyn ServerCertVerifier>,
}

impl Trust {
    fn read(path: &Path) -> Result<Trust, TlsError> {
        let ders = read_certs(path)?;
        let mut roots = RootCertStore::empty();
        for c in &ders {
            roots.add(c.clone()).map_err(|e| file_err(path, e))?;
        }
        let roots = Arc::new(roots);
        let config = |e: rustls::server::VerifierBuilderError| TlsError::Config(e.to_string());
        let required = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(config)?;
        let optional = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(config)?;
        let server = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Trust {
            ders,
            required,
            optional,
            server,
        })
    }
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    trust: Arc<Trust>,
    stamp: FileStamp,
}

/// This process's certificate and key, and the CA it trusts, swapped in place by
/// [`Identity::reload`].
#[derive(Debug)]
pub struct Identity {
    files: TlsFiles,
    current: RwLock<Current>,
    /// Counts the CA reloads that changed it: connections made under an older CA end.
    trust_generation: tokio::sync::watch::Sender<u64>,
}

/// What [`Identity::reload`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reloaded {
    /// A new certificate (or chain) is served from the next handshake on.
    pub certificate: bool,
    /// A new CA file is trusted from the next handshake on, on both listeners and for
    /// outgoing calls.
    pub ca: bool,
}

impl Identity {
    /// Reads the certificate, the key and the CA.
    pub fn load(files: TlsFiles) -> Result<Arc<Identity>, TlsError> {
        let st = stamp(&files);
        let key = certified_key(&files)?;
        let trust = Arc::new(Trust::read(&files.ca)?);
        Ok(Arc::new(Identity {
            files,
            current: RwLock::new(Current {
                key,
                trust,
                stamp: st,
            }),
            trust_generation: tokio::sync::watch::Sender::new(0),
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
            .key
            .clone()
    }

    fn trust(&self) -> Arc<Trust> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .trust
            .clone()
    }

    /// Whether the CA in force vouches for a client's certificate chain (leaf first), now:
    /// a connection checked at its handshake under an older CA is checked again with this.
    pub fn still_vouches_for(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        self.trust()
            .required
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .is_ok()
    }

    /// Changes when a reload brings a new CA: a connection whose client certificate the
    /// new CA does not vouch for should end (see `app::serve_tls`).
    pub fn ca_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.trust_generation.subscribe()
    }

    /// Reads the files again and uses the new certificate, key and CA from the next
    /// handshake on; connections already open keep theirs. If any of the three does not
    /// load, nothing changes.
    pub fn reload(&self) -> Result<Reloaded, TlsError> {
        let st = stamp(&self.files);
        let key = certified_key(&self.files)?;
        let trust = Trust::read(&self.files.ca)?;
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        let changed = Reloaded {
            certificate: cur.key.cert != key.cert,
            ca: cur.trust.ders != trust.ders,
        };
        cur.key = key;
        if changed.ca {
            cur.trust = Arc::new(trust);
        }
        cur.stamp = st;
        drop(cur);
        if changed.ca {
            self.trust_generation.send_modify(|g| *g += 1);
        }
        Ok(changed)
    }

    /// [`Identity::reload`] when the files' times or sizes differ from the last read.
    pub fn reload_if_changed(&self) -> Result<Reloaded, TlsError> {
        let same = {
            let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
            cur.stamp == stamp(&self.files)
        };
        if same {
            return Ok(Reloaded::default());
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

/// Checks client certificates against the CA the identity holds now, so that a CA
/// reloaded with [`Identity::reload`] counts from the next handshake on.
#[derive(Debug)]
struct ClientVerifier {
    identity: Arc<Identity>,
    mode: ClientCerts,
}

impl ClientVerifier {
    fn now(&self) -> Arc<dyn ClientCertVerifier> {
        let trust = self.identity.trust();
        match self.mode {
            ClientCerts::Required => trust.required.clone(),
            ClientCerts::Optional => trust.optional.clone(),
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mode == ClientCerts::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would have to outlive a reload; they are optional in TLS, and every
        // client here has one certificate to offer.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.now()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.now().supported_verify_schemes()
    }
}

/// Checks servers' certificates against the CA the identity holds now.
#[derive(Debug)]
struct ServerVerifier(Arc<Identity>);

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.trust().server.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .trust()
            .server
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .trust()
            .server
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.trust().server.supported_verify_schemes()
    }
}

/// A listener's configuration: `identity`'s certificate served, client certificates
/// checked against its CA; both follow [`Identity::reload`].
pub fn server_config(
    identity: Arc<Identity>,
    client_certs: ClientCerts,
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = Arc::new(ClientVerifier {
        identity: identity.clone(),
        mode: client_certs,
    });
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    // No session resumption: a resumed session skips the check of the client's
    // certificate, so a certificate from a CA since dropped, or one that has since
    // expired, would go on being accepted. Every connection makes a full handshake;
    // clients keep their connections open, so this costs little.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// An outgoing configuration presenting `identity`'s certificate and checking servers
/// against its CA; both follow [`Identity::reload`].
pub fn client_config(identity: Arc<Identity>) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerVerifier(identity.clone())))
        .with_client_cert_resolver(identity))
}

/// A client configuration from files: the CA, and optionally a certificate and key to
/// present (the CLI's `--ca-file`, `--cert-file`, `--key-file`).
pub fn client_config_from_files(
    ca: &Path,
    cert_and_key: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    match cert_and_key {
        Some((cert, key)) => client_config(Identity::load(TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            ca: ca.to_path_buf(),
        })?),
        None => Ok(ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(read_roots(ca)?)
            .with_no_client_auth()),
    }
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
    /// When the certificate expires, if it presented one.
    pub not_after: Option<SystemTime>,
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
        let not_after = u64::try_from(x.validity().not_after.timestamp())
            .ok()
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        PeerIdentity {
            names,
            common_name,
            not_after,
        }
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
            not_after: None,
        };
        assert_eq!(id.controller_id(), Some(3));
        let broker = PeerIdentity {
            names: vec!["broker-1".into()],
            common_name: Some("broker-1".into()),
            not_after: None,
        };
        assert_eq!(broker.controller_id(), None);
        assert_eq!(broker.principal(), Some("broker-1"));
        let sans_only = PeerIdentity {
            names: vec!["a".into(), "b".into()],
            common_name: None,
            not_after: None,
        };
        assert_eq!(
            sans_only.principal(),
            Some("a"),
            "the first SAN, as documented"
        );
        let bad = PeerIdentity {
            names: vec!["controller-x".into()],
            common_name: None,
            not_after: None,
        };
        assert_eq!(bad.controller_id(), None);
    }

    fn self_signed(name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_reload_takes_a_new_ca_and_certificate_and_a_broken_file_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("node.pem"),
            key: dir.path().join("node-key.pem"),
            ca: dir.path().join("ca.pem"),
        };
        let (cert, key) = self_signed("controller-1");
        let (ca1, _) = self_signed("ca-one");
        std::fs::write(&files.cert, &cert).unwrap();
        std::fs::write(&files.key, &key).unwrap();
        std::fs::write(&files.ca, &ca1).unwrap();
        let id = Identity::load(files.clone()).unwrap();
        assert_eq!(id.reload_if_changed().unwrap(), Reloaded::default());
        assert_eq!(id.reload().unwrap(), Reloaded::default(), "same files");

        let (ca2, _) = self_signed("ca-two");
        std::fs::write(&files.ca, format!("{ca1}{ca2}")).unwrap();
        let r = id.reload().unwrap();
        assert!(r.ca && !r.certificate, "{r:?}");
        assert_eq!(id.trust().ders.len(), 2, "the bundle is trusted");

        // A CA file that is not PEM: refused, the bundle stays.
        std::fs::write(&files.ca, "garbage").unwrap();
        assert!(id.reload().is_err());
        assert_eq!(id.trust().ders.len(), 2);
        // A certificate without its key: refused, the CA is not taken either.
        std::fs::write(&files.ca, &ca2).unwrap();
        let (other_cert, _) = self_signed("controller-9");
        std::fs::write(&files.cert, &other_cert).unwrap();
        assert!(
            id.reload().is_err(),
            "a certificate that does not fit the key"
        );
        assert_eq!(
            id.trust().ders.len(),
            2,
            "nothing of a failed reload is used"
        );

        let (cert2, key2) = self_signed("controller-1");
        std::fs::write(&files.cert, &cert2).unwrap();
        std::fs::write(&files.key, &key2).unwrap();
        let r = id.reload().unwrap();
        assert!(r.ca && r.certificate, "{r:?}");
        assert_eq!(id.trust().ders.len(), 1);
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
