//! Who may call what on the API listener: principals, roles, the check every request goes
//! through, and the `audit` log of writes and refusals.
//!
//! Authentication is on when the settings name a principals file (`auth_principals_file`).
//! Each principal has one role. It proves who it is with a client certificate whose common
//! name is its name (with TLS), or with a bearer token the file keeps as its SHA-256 only:
//!
//! ```toml
//! [[principal]]
//! name = "alice"
//! role = "operator"                  # or "reader", or "broker:<id>"
//! token_sha256 = "9f86d081884c7d65..." # optional; `kraftd new-token` prints one
//! ```
//!
//! The roles (SECURITY.md): `operator` may do everything on the API; `reader` may only GET;
//! `broker:<id>` may register, heartbeat and report ISR changes (AlterPartition) for its own
//! broker id only, and read the metadata log, the snapshots and the image. A request with
//! no valid token gets 401 SASL_AUTHENTICATION_FAILED; a principal whose role does not
//! grant the call gets 403 CLUSTER_AUTHORIZATION_FAILED. Both change nothing. `/healthz`,
//! `/readyz` and `/metrics` stay closed too unless `open_health = true` is in the file.
//!
//! A follower forwards a write with its `Authorization` header, or, for a caller that used
//! a certificate, names the principal in [`FORWARDED_PRINCIPAL`] over its own controller
//! certificate; the leader checks it again.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ApiError, MAX_BODY};
use crate::contract::ErrorCode;
use crate::tls::{FileStamp, PeerIdentity};

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything on the API.
    Operator,
    /// GET only.
    Reader,
    /// Registration, heartbeats and AlterPartition as this broker id; reading the metadata
    /// log, snapshots and image.
    Broker(i32),
}

impl Role {
    /// Parses `operator`, `reader` or `broker:<id>`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "reader" => Some(Role::Reader),
            _ => s
                .strip_prefix("broker:")
                .and_then(|id| id.parse::<i32>().ok())
                .filter(|id| *id >= 0)
                .map(Role::Broker),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Operator => f.write_str("operator"),
            Role::Reader => f.write_str("reader"),
            Role::Broker(id) => write!(f, "broker:{id}"),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Its name in the principals file.
    pub name: String,
    /// Its role.
    pub role: Role,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    #[serde(default)]
    open_health: bool,
    #[serde(default)]
    principal: Vec<PrincipalEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    name: String,
    role: String,
    #[serde(default)]
    token_sha256: Option<String>,
}

/// Why the principals file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalsError {
    /// It cannot be read.
    #[error("reading the principals file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not what this module's documentation describes.
    #[error("principals file {path}: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

/// The principals of the API listener, by the SHA-256 of their token.
#[derive(Debug, Default)]
pub struct Principals {
    by_hash: HashMap<[u8; 32], Principal>,
    /// Every principal, for client certificates (whose common name is the principal).
    by_name: HashMap<String, Principal>,
    open_health: bool,
}

/// The hex SHA-256 of a token, as the principals file keeps it.
pub fn token_sha256(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Principals {
    /// Reads and checks a principals file: names unique, roles known, hashes 64 hex digits
    /// and unique.
    pub fn load(path: &Path) -> Result<Principals, PrincipalsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PrincipalsError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|detail| PrincipalsError::Invalid {
            path: shown,
            detail,
        })
    }

    fn parse(text: &str) -> Result<Principals, String> {
        let file: PrincipalsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.principal.is_empty() {
            return Err("no [[principal]]: nobody could call the API".into());
        }
        let mut out = Principals {
            by_hash: HashMap::new(),
            by_name: HashMap::new(),
            open_health: file.open_health,
        };
        let mut names = std::collections::BTreeSet::new();
        for p in file.principal {
            let role = Role::parse(&p.role).ok_or_else(|| {
                format!(
                    "principal {:?}: role {:?} is none of operator, reader, broker:<id>",
                    p.name, p.role
                )
            })?;
            let hash = match &p.token_sha256 {
                None => None,
                Some(h) => Some(unhex32(&h.to_ascii_lowercase()).ok_or_else(|| {
                    format!(
                        "principal {:?}: token_sha256 is not 64 hex digits (kraftd new-token \
                         prints one)",
                        p.name
                    )
                })?),
            };
            if p.name.is_empty() || !names.insert(p.name.clone()) {
                return Err(format!("principal name {:?} is empty or repeated", p.name));
            }
            let principal = Principal { name: p.name, role };
            out.by_name
                .insert(principal.name.clone(), principal.clone());
            if let Some(hash) = hash {
                if out.by_hash.insert(hash, principal).is_some() {
                    return Err("two principals share a token".into());
                }
            }
        }
        Ok(out)
    }

    /// The principal a request proves it is: by its `Authorization: Bearer` token; else by
    /// the client certificate of its TLS connection (its common name); else, over a
    /// controller's connection, by the principal the forwarding controller vouches for.
    /// None when it has no credentials.
    fn authenticate(&self, req: &Request) -> Result<Option<&Principal>, ApiError> {
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            let Some(conn) = req.extensions().get::<Arc<PeerIdentity>>() else {
                return Ok(None);
            };
            if conn.controller_id().is_some() {
                if let Some(name) = req
                    .headers()
                    .get(FORWARDED_PRINCIPAL)
                    .and_then(|v| v.to_str().ok())
                {
                    return self
                        .by_name
                        .get(name)
                        .map(Some)
                        .ok_or_else(|| unauthenticated("the forwarded principal is not known"));
                }
            }
            return match conn.principal() {
                None => Ok(None),
                Some(name) => self.by_name.get(name).map(Some).ok_or_else(|| {
                    unauthenticated(&format!(
                        "the client certificate's name {name:?} is not a principal"
                    ))
                }),
            };
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("the Authorization header is not `Bearer TOKEN`"))?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_hash
            .get(&hash)
            .map(Some)
            .ok_or_else(|| unauthenticated("the bearer token is not known"))
    }
}

/// The principals file as the API listener uses it: read at start, and again on SIGHUP or
/// when the file changes (checked every 5 s), so that adding, removing or re-keying a
/// principal needs no restart. A file that does not load is reported and the principals
/// read last stay in force.
#[derive(Debug)]
pub struct PrincipalsWatch {
    path: PathBuf,
    current: RwLock<(Arc<Principals>, FileStamp)>,
}

impl PrincipalsWatch {
    /// Reads the file; an error stops the node before it serves.
    pub fn load(path: &Path) -> Result<Arc<PrincipalsWatch>, PrincipalsError> {
        let stamp = FileStamp::of(&[path]);
        let principals = Arc::new(Principals::load(path)?);
        Ok(Arc::new(PrincipalsWatch {
            path: path.to_path_buf(),
            current: RwLock::new((principals, stamp)),
        }))
    }

    /// The file it reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The principals in force.
    pub fn get(&self) -> Arc<Principals> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Reads the file again; the next request is checked against it. Returns how many
    /// principals it names. On an error the principals in force stay.
    pub fn reload(&self) -> Result<usize, PrincipalsError> {
        let stamp = FileStamp::of(&[&self.path]);
        let principals = Arc::new(Principals::load(&self.path)?);
        let n = principals.by_name.len();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (principals, stamp);
        Ok(n)
    }

    /// [`PrincipalsWatch::reload`] if the file's time or size changed since the last read.
    pub fn reload_if_changed(&self) -> Result<Option<usize>, PrincipalsError> {
        let same = self.current.read().unwrap_or_else(|p| p.into_inner()).1
            == FileStamp::of(&[&self.path]);
        if same {
            return Ok(None);
        }
        self.reload().map(Some)
    }
}

/// The principal a forwarding controller vouches for, when its caller proved who it is with
/// a client certificate (which the leader cannot see). Trusted only over a connection whose
/// own certificate is a controller's.
pub const FORWARDED_PRINCIPAL: &str = "kraft-forwarded-principal";

fn unauthenticated(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::SaslAuthenticationFailed,
        format!(
            "{why}: present a client certificate of a principal (over TLS), or send \
             `Authorization: Bearer TOKEN` with a token of the principals file"
        ),
    )
}

fn forbidden(p: &Principal, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::ClusterAuthorizationFailed,
        format!("principal {} (role {}) may not {what}", p.name, p.role),
    )
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// `/healthz`, `/readyz`, `/metrics`: anyone when the file opens them, else a reader.
    Health,
    /// Any GET: operator or reader.
    Read,
    /// The metadata log, snapshots and image: operator, reader or any broker.
    MetadataRead,
    /// Registration and heartbeats of the broker id in the path: that broker or an operator.
    BrokerInPath,
    /// AlterPartition: the broker its body names, or an operator.
    BrokerInBody,
    /// Everything else: operator.
    Operator,
}

fn need(method: &Method, route: &str) -> Need {
    match (method, route) {
        (&Method::GET, "/healthz" | "/readyz" | "/metrics") => Need::Health,
        (&Method::GET, r) if r.starts_with("/v1/metadata/") => Need::MetadataRead,
        (&Method::GET | &Method::HEAD, _) => Need::Read,
        (&Method::POST, "/v1/brokers/{id}/registration" | "/v1/brokers/{id}/heartbeat") => {
            Need::BrokerInPath
        }
        (&Method::POST, "/v1/partitions/alter") => Need::BrokerInBody,
        _ => Need::Operator,
    }
}

/// The broker id a path names: `/v1/brokers/{id}/...`.
fn broker_in_path(path: &str) -> Option<i32> {
    path.strip_prefix("/v1/brokers/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

#[derive(Deserialize)]
struct BrokerIdOnly {
    broker_id: i32,
}

/// The API listener's check: authenticates, authorizes by route, and writes the `audit`
/// line. Installed as a route layer, so the route template is known.
pub async fn check(
    State(watch): State<Arc<PrincipalsWatch>>,
    req: Request,
    next: Next,
) -> Response {
    let principals = watch.get();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let resource = req.uri().path().to_string();
    let need = need(&method, &route);
    if need == Need::Health && principals.open_health {
        return next.run(req).await;
    }
    let who = match principals.authenticate(&req) {
        Ok(p) => p.cloned(),
        Err(e) => return audited(None, &method, &route, &resource, e.into_response()),
    };
    let Some(p) = who else {
        let e = unauthenticated("no credentials");
        return audited(None, &method, &route, &resource, e.into_response());
    };
    let mut req = req;
    // Only this node may vouch for the caller when it forwards the call.
    req.headers_mut().remove(FORWARDED_PRINCIPAL);
    if req.headers().get(header::AUTHORIZATION).is_none() {
        if let Ok(v) = axum::http::HeaderValue::from_str(&p.name) {
            req.headers_mut().insert(FORWARDED_PRINCIPAL, v);
        }
    }
    let (req, verdict) = decide(&p, need, req).await;
    let resp = match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    if method == Method::GET || method == Method::HEAD {
        if resp.status() == StatusCode::FORBIDDEN {
            return audited(Some(&p), &method, &route, &resource, resp);
        }
        return resp;
    }
    audited(Some(&p), &method, &route, &resource, resp)
}

/// Whether `p` may make the call; AlterPartition's body is read (within [`MAX_BODY`]) for
/// the broker id it acts for, and handed on unchanged.
async fn decide(p: &Principal, need: Need, req: Request) -> (Request, Result<(), ApiError>) {
    let verdict = match (p.role, need) {
        (Role::Operator, _) => Ok(()),
        (Role::Reader, Need::Health | Need::Read | Need::MetadataRead) => Ok(()),
        (Role::Broker(_), Need::MetadataRead) => Ok(()),
        (Role::Broker(id), Need::BrokerInPath) => {
            if broker_in_path(req.uri().path()) == Some(id) {
                Ok(())
            } else {
                Err(forbidden(p, "act for another broker"))
            }
        }
        (Role::Broker(id), Need::BrokerInBody) => {
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
                Ok(b) => b,
                Err(_) => {
                    let req = Request::from_parts(parts, Body::empty());
                    return (
                        req,
                        Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            ErrorCode::InvalidRequest,
                            format!("request body is over {MAX_BODY} bytes"),
                        )),
                    );
                }
            };
            let named = serde_json::from_slice::<BrokerIdOnly>(&bytes)
                .ok()
                .map(|b| b.broker_id);
            let verdict = if named == Some(id) {
                Ok(())
            } else {
                Err(forbidden(p, "report ISR changes for another broker"))
            };
            return (Request::from_parts(parts, Body::from(bytes)), verdict);
        }
        (Role::Reader | Role::Broker(_), _) => Err(forbidden(
            p,
            match need {
                Need::Operator => "make this call (it needs role operator)",
                _ => "read this (it is not granted to this role)",
            },
        )),
    };
    (req, verdict)
}

/// Writes the `audit` line of a call and passes its answer on.
fn audited(
    p: Option<&Principal>,
    method: &Method,
    route: &str,
    resource: &str,
    resp: Response,
) -> Response {
    let status = resp.status().as_u16();
    let principal = p.map_or_else(|| "anonymous".to_string(), |p| p.name.clone());
    let role = p.map_or_else(|| "none".to_string(), |p| p.role.to_string());
    // Where the write was committed (on the leader; a follower forwarding it does not know).
    let offset = resp
        .extensions()
        .get::<super::Committed>()
        .map(|c| c.0.offset.to_string())
        .unwrap_or_else(|| "-".into());
    let result = if resp.status().is_success() {
        "accepted"
    } else if status == 401 || status == 403 {
        "refused"
    } else {
        "failed"
    };
    tracing::info!(
        target: "audit",
        principal = %principal,
        role = %role,
        method = %method,
        route,
        resource,
        status,
        result,
        offset = %offset,
        "api call"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_principals_file_is_read_again_when_it_changes_and_a_broken_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("principals.toml");
        let entry = |name: &str, role: &str| {
            format!("[[principal]]\nname = \"{name}\"\nrole = \"{role}\"\n")
        };
        std::fs::write(&path, entry("alice", "operator")).unwrap();
        let watch = PrincipalsWatch::load(&path).unwrap();
        assert!(watch.get().by_name.contains_key("alice"));
        assert_eq!(watch.reload_if_changed().unwrap(), None, "unchanged");

        let both = format!("{}{}", entry("alice", "reader"), entry("bob", "operator"));
        std::fs::write(&path, &both).unwrap();
        assert_eq!(watch.reload_if_changed().unwrap(), Some(2));
        assert_eq!(watch.get().by_name["alice"].role, Role::Reader);

        std::fs::write(&path, "[[principal]\nname = ").unwrap();
        assert!(watch.reload_if_changed().is_err());
        assert!(watch.reload().is_err());
        assert_eq!(watch.get().by_name.len(), 2, "the principals in force stay");
        std::fs::remove_file(&path).unwrap();
        assert!(
            watch.reload().is_err(),
            "a missing file changes nothing either"
        );
        assert_eq!(watch.get().by_name["bob"].role, Role::Operator);
    }

    fn file(principals: &[(&str, &str, &str)]) -> String {
        let mut s = String::new();
        for (name, role, token) in principals {
            s.push_str(&format!(
                "[[principal]]\nname = {name:?}\nrole = {role:?}\ntoken_sha256 = {:?}\n",
                token_sha256(token)
            ));
        }
        s
    }

    #[test]
    fn roles_parse_as_the_principals_file_writes_them() {
        for r in ["operator", "reader", "broker:0", "broker:7"] {
            assert_eq!(Role::parse(r).unwrap().to_string(), r);
        }
        for bad in ["", "admin", "broker:", "broker:-1", "broker:x", "Operator"] {
            assert_eq!(Role::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_principals_file_is_refused_when_it_would_be_ambiguous_or_empty() {
        assert!(Principals::parse("").is_err());
        let ok = file(&[("a", "operator", "t1"), ("b", "broker:1", "t2")]);
        assert_eq!(Principals::parse(&ok).unwrap().by_hash.len(), 2);
        let same_token = file(&[("a", "operator", "t1"), ("b", "reader", "t1")]);
        assert!(Principals::parse(&same_token).is_err());
        let same_name = file(&[("a", "operator", "t1"), ("a", "reader", "t2")]);
        assert!(Principals::parse(&same_name).is_err());
        let bad_role = file(&[("a", "root", "t1")]);
        assert!(Principals::parse(&bad_role).unwrap_err().contains("root"));
        let bad_hash = "[[principal]]\nname = \"a\"\nrole = \"reader\"\ntoken_sha256 = \"abc\"\n";
        assert!(Principals::parse(bad_hash).is_err());
        let clear = "[[principal]]\nname = \"a\"\nrole = \"reader\"\ntoken = \"t\"\n";
        assert!(
            Principals::parse(clear).is_err(),
            "a token in clear is refused"
        );
    }

    #[test]
    fn routes_need_what_the_roles_table_says() {
        assert_eq!(need(&Method::GET, "/healthz"), Need::Health);
        assert_eq!(need(&Method::GET, "/v1/metadata/log"), Need::MetadataRead);
        assert_eq!(need(&Method::GET, "/v1/topics"), Need::Read);
        assert_eq!(need(&Method::GET, "/v1/quorum/health"), Need::Read);
        assert_eq!(
            need(&Method::POST, "/v1/brokers/{id}/heartbeat"),
            Need::BrokerInPath
        );
        assert_eq!(
            need(&Method::POST, "/v1/partitions/alter"),
            Need::BrokerInBody
        );
        for (m, r) in [
            (Method::DELETE, "/v1/brokers/{id}"),
            (Method::POST, "/v1/quorum/voters"),
            (Method::DELETE, "/v1/quorum/voters/{id}"),
            (Method::PATCH, "/v1/quorum/voters/{id}"),
            (Method::POST, "/v1/quorum/snapshot"),
            (Method::POST, "/v1/quorum/transfer-leader"),
            (Method::POST, "/v1/topics"),
            (Method::PATCH, "/v1/configs/{kind}/{name}"),
            (Method::POST, "/v1/elections"),
        ] {
            assert_eq!(need(&m, r), Need::Operator, "{m} {r}");
        }
        assert_eq!(broker_in_path("/v1/brokers/12/heartbeat"), Some(12));
        assert_eq!(broker_in_path("/v1/brokers/x/heartbeat"), None);
    }
}
