//! `kraftd certs`: a development CA and the certificates a secure cluster needs, so that
//! turning TLS on is one command. Run again on the same directory, it keeps the CA and
//! issues new leaf certificates under it (a rotation: the nodes pick the new files up on
//! SIGHUP or within seconds).
//!
//! Files, all PEM (keys written mode 0600):
//! - `ca.pem`, `ca-key.pem`: the CA;
//! - `controller-<id>.pem` and `-key.pem`: server and client certificate of controller
//!   `<id>`, names `controller-<id>`, `localhost`, 127.0.0.1, ::1 and every `--host`;
//! - `broker-<id>.pem`, `operator.pem`, `reader.pem` (and keys): client certificates whose
//!   common name is the principal;
//! - `principals.toml`: those principals with their roles (`auth_principals_file`).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// What to issue.
#[derive(clap::Args, Debug, Clone)]
pub struct CertsArgs {
    /// Directory for the files (created; an existing CA in it is kept and reused).
    #[arg(long)]
    pub dir: PathBuf,
    /// Controller node ids.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub controllers: Vec<u64>,
    /// Broker ids.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub brokers: Vec<i32>,
    /// More names (host names or IP addresses) for the controller certificates.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Days the leaf certificates are valid (0: already expired, to test that they are
    /// refused).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// One issued leaf: a name, its role in principals.toml (None for controllers).
struct Leaf {
    name: String,
    role: Option<String>,
    sans: Vec<SanType>,
    server: bool,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Writes `text` to `path` (temp file, fsync, rename), private when `secret`.
fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Valid from an hour ago for `days` days; 0 days: expired an hour ago (to test refusal).
fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    if days == 0 {
        params.not_before = now - Duration::from_secs(7200);
        params.not_after = now - Duration::from_secs(3600);
        return;
    }
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(u64::from(days) * 86_400);
}

/// The CA of `dir`: the one already there, or a new one.
fn ca(dir: &Path) -> Result<(Issuer<'static, KeyPair>, bool), String> {
    let (cert, key) = (ca_file(dir), cert_files(dir, "ca").1);
    if cert.exists() && key.exists() {
        let key_pem = std::fs::read_to_string(&key).map_err(err)?;
        let cert_pem = std::fs::read_to_string(&cert).map_err(err)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("{}: {e}", key.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        return Ok((issuer, false));
    }
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kraftd development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, 3650);
    let c = params.self_signed(&key).map_err(err)?;
    write_file(&cert, &c.pem(), false)?;
    write_file(&cert_files(dir, "ca").1, &key.serialize_pem(), true)?;
    Ok((Issuer::new(params, key), true))
}

/// The certificate and key of `name` (`controller-1`, `operator`, ...) in a directory
/// `kraftd certs` wrote.
pub fn cert_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    )
}

/// The CA of a directory `kraftd certs` wrote.
pub fn ca_file(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// A client configuration trusting `ca` and presenting `name`'s certificate from `dir`
/// (none when `name` is None).
pub fn client_tls(
    ca: &Path,
    dir: &Path,
    name: Option<&str>,
) -> Result<rustls::ClientConfig, crate::tls::TlsError> {
    let pair = name.map(|n| cert_files(dir, n));
    crate::tls::client_config_from_files(ca, pair.as_ref().map(|(c, k)| (c.as_path(), k.as_path())))
}

/// Issues everything; returns what it did, for a person.
pub fn run(a: &CertsArgs) -> Result<String, String> {
    std::fs::create_dir_all(&a.dir).map_err(|e| format!("{}: {e}", a.dir.display()))?;
    let (issuer, new_ca) = ca(&a.dir)?;
    let mut leaves = Vec::new();
    for id in &a.controllers {
        let mut sans = vec![
            SanType::DnsName(format!("controller-{id}").try_into().map_err(err)?),
            SanType::DnsName("localhost".try_into().map_err(err)?),
            SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
            SanType::IpAddress(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
        ];
        for h in &a.hosts {
            sans.push(match h.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(h.clone().try_into().map_err(err)?),
            });
        }
        leaves.push(Leaf {
            name: format!("controller-{id}"),
            role: None,
            sans,
            server: true,
        });
    }
    for id in &a.brokers {
        leaves.push(Leaf {
            name: format!("broker-{id}"),
            role: Some(format!("broker:{id}")),
            sans: Vec::new(),
            server: false,
        });
    }
    for role in ["operator", "reader"] {
        leaves.push(Leaf {
            name: role.into(),
            role: Some(role.into()),
            sans: Vec::new(),
            server: false,
        });
    }
    let mut principals = String::from(
        "# Principals of the API, by the common name of their client certificate\n\
         # (kraftd certs). Add token_sha256 = \"...\" to let one use a bearer token too.\n\
         # /healthz, /readyz and /metrics answer anyone (health checks, Prometheus); set\n\
         # false to require a principal for them too.\n\
         open_health = true\n",
    );
    for leaf in &leaves {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.subject_alt_names = leaf.sans.clone();
        params
            .distinguished_name
            .push(DnType::CommonName, &leaf.name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if leaf.server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, a.days);
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        let (cert_path, key_path) = cert_files(&a.dir, &leaf.name);
        write_file(&key_path, &key.serialize_pem(), true)?;
        write_file(&cert_path, &cert.pem(), false)?;
        if let Some(role) = &leaf.role {
            principals.push_str(&format!(
                "\n[[principal]]\nname = {:?}\nrole = {role:?}\n",
                leaf.name
            ));
        }
    }
    write_file(&a.dir.join("principals.toml"), &principals, false)?;
    Ok(format!(
        "{} CA in {dir}/ca.pem; issued {} certificates (valid {} days) and principals.toml\n",
        if new_ca { "new" } else { "kept the" },
        leaves.len(),
        a.days,
        dir = a.dir.display()
    ))
}
