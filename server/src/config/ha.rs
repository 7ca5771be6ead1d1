//! `ha:`: high availability, a pair of servers sharing one etcd cluster (docs/HA.md).

use std::fmt;
use std::path::PathBuf;

use lessor_journal::stream::wire::{MIN_KEY_LEN, StreamKey};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{ConfigError, invalid};
use super::path::at;
use super::times::opt_seconds;
use super::wire::{self, Value};

type Result<T> = std::result::Result<T, ConfigError>;

/// Default of `ha.lease_ttl`, in seconds.
pub(super) const DEFAULT_LEASE_TTL: u32 = 5;
/// Default of `ha.max_lag`, in records.
pub(super) const DEFAULT_MAX_LAG: u64 = 10_000;
/// Default of `ha.mclt`, in seconds.
pub(super) const DEFAULT_MCLT: u32 = 3600;
/// Default of `ha.cluster`.
pub(super) const DEFAULT_CLUSTER: &str = "default";
/// Bounds of `ha.lease_ttl`: below 2 seconds a scheduling hiccup fences a healthy server.
const LEASE_TTL_BOUNDS: (u32, u32) = (2, 300);

/// `ha:` when it is set; without it the server runs alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaConfig {
    /// How the servers share the work.
    pub mode: HaMode,
    /// This server's name: one of `peers`.
    pub node: String,
    /// The name under `/lessor/` that this pair's keys live in, so clusters can share an etcd.
    pub cluster: String,
    /// Every server of the pair, this one included.
    pub peers: Vec<HaPeer>,
    /// The etcd client URLs, all `http://` or all `https://`.
    pub etcd: Vec<String>,
    /// How the etcd clients speak TLS: set exactly when `etcd` is `https://`.
    pub etcd_tls: Option<EtcdTls>,
    /// A binding reply waits for the partner's acknowledgement.
    pub sync: bool,
    /// Without `sync`: a binding reply waits while the partner's ack is more than this many
    /// records behind the reply's own (unused with `sync`).
    pub max_lag: u64,
    /// Maximum client lead time, in seconds.
    pub mclt: u32,
    /// The TTL of this server's etcd lease, in seconds.
    pub lease_ttl: u32,
    /// `ha.stream_key_file`: where the journal stream's pre-shared key is.
    pub stream_key_file: Option<PathBuf>,
    /// The key read from `stream_key_file` when the config was loaded (docs/HA.md, "Stream
    /// key"); the effective config writes back the file, never the key.
    pub stream_key: Option<StreamKey>,
}

impl HaConfig {
    /// This server's own entry of `peers`.
    pub fn me(&self) -> Option<&HaPeer> {
        self.peers.iter().find(|p| p.name == self.node)
    }

    /// This server's index in `peers` (0 if absent, which the config refuses).
    pub fn my_index(&self) -> usize {
        self.peers
            .iter()
            .position(|p| p.name == self.node)
            .unwrap_or(0)
    }

    /// The partner: the first of `peers` that is not this server.
    pub fn partner(&self) -> Option<&HaPeer> {
        self.peers.iter().find(|p| p.name != self.node)
    }

    /// The peer that leads whenever it is up and in sync (`role: primary`), if one is named.
    pub fn primary(&self) -> Option<&HaPeer> {
        self.peers
            .iter()
            .find(|p| p.role == Some(PeerRole::Primary))
    }

    /// The scopes of `load-balancing`, one per peer in `peers` order, as [`crate::scope`]
    /// numbers them; `None` in hot-standby.
    pub fn scopes(&self) -> Option<[&str; 2]> {
        match (self.mode, self.peers.as_slice()) {
            (HaMode::LoadBalancing, [a, b]) => Some([a.name.as_str(), b.name.as_str()]),
            _ => None,
        }
    }

    /// Where this server receives the partner's journal stream and where it sends its own,
    /// when both are set: the journal is streamed only then.
    pub fn stream(&self) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        Some((self.me()?.stream?, self.partner()?.stream?))
    }
}

/// `ha.etcd_tls`: what the etcd clients trust and which certificate they show (docs/HA.md,
/// "etcd over TLS").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTls {
    /// `ca`: the CA certificates that the etcd members' certificates must chain to.
    pub ca: PemFile,
    /// `cert` and `key`: this server's client certificate (chain) and its private key, for an
    /// etcd run with `--client-cert-auth`.
    pub identity: Option<(PemFile, PemFile)>,
}

/// A PEM file read when the config was loaded; the effective config writes back its path.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    /// Where it is.
    pub path: PathBuf,
    /// What it held then.
    pub pem: Vec<u8>,
}

/// The path and the size: a private key is not for logs.
impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PemFile({:?}, {} bytes)", self.path, self.pem.len())
    }
}

/// `ha.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaMode {
    /// One server answers; the other waits to take the leader key.
    HotStandby,
    /// Both answer, each the clients of its own scope (RFC 3074 buckets) from its own half
    /// of every pool; a survivor takes its partner's scope (docs/HA.md, "Load balancing").
    LoadBalancing,
}

impl HaMode {
    /// The name the config file uses.
    pub fn name(self) -> &'static str {
        match self {
            HaMode::HotStandby => "hot-standby",
            HaMode::LoadBalancing => "load-balancing",
        }
    }
}

/// One `ha.peers[i]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaPeer {
    /// The server's name.
    pub name: String,
    /// Where its partner reaches it.
    pub url: String,
    /// Where it receives its partner's journal stream (`IP:PORT`); without it on both
    /// servers the journal is not streamed.
    pub stream: Option<std::net::SocketAddr>,
    /// Its role in hot-standby, if roles are named (then both peers have one).
    pub role: Option<PeerRole>,
}

/// `ha.peers[].role`: which server leads when both can (docs/HA.md, "Roles").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRole {
    /// Leads whenever it is up and its partner's journal is in it.
    Primary,
    /// Leads only while the primary cannot, and hands the lead back.
    Standby,
}

impl PeerRole {
    /// The name the config file uses.
    pub fn name(self) -> &'static str {
        match self {
            PeerRole::Primary => "primary",
            PeerRole::Standby => "standby",
        }
    }
}

/// The most servers `ha.peers` may list: a lease version names the one that wrote it in 4
/// bits (docs/HA.md, "Terms").
const MAX_PEERS: usize = 16;

/// Builds `ha` from its wire form, naming the key of any error.
pub(super) fn ha(w: Option<wire::Ha>) -> Result<Option<HaConfig>> {
    let Some(w) = w else { return Ok(None) };
    let mode = match w.mode.as_deref() {
        None => {
            return Err(invalid(
                "ha.mode",
                "missing (hot-standby or load-balancing)",
            ));
        }
        Some("hot-standby") => HaMode::HotStandby,
        Some("load-balancing") => HaMode::LoadBalancing,
        Some(other) => {
            return Err(invalid(
                "ha.mode",
                format!("unknown mode {other:?}, expected hot-standby or load-balancing"),
            ));
        }
    };
    let node = w
        .node
        .ok_or_else(|| invalid("ha.node", "missing: this server's name among ha.peers"))?;
    check_name("ha.node", &node)?;
    let cluster = w.cluster.unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
    check_name("ha.cluster", &cluster)?;
    let mut peers: Vec<HaPeer> = Vec::new();
    for (i, p) in w.peers.unwrap_or_default().into_iter().enumerate() {
        let path = at("ha.peers", i);
        check_name(&format!("{path}.name"), &p.name)?;
        if peers.iter().any(|q| q.name == p.name) {
            return Err(invalid(
                format!("{path}.name"),
                format!("{:?} is listed twice", p.name),
            ));
        }
        check_url(&format!("{path}.url"), &p.url, &["http", "https"])?;
        let stream = p
            .stream
            .as_deref()
            .map(|s| check_stream(&format!("{path}.stream"), s))
            .transpose()?;
        if let Some(addr) = stream
            && let Some(twin) = peers.iter().position(|q| q.stream == Some(addr))
        {
            return Err(invalid(
                format!("{path}.stream"),
                format!("{addr} is already ha.peers[{twin}].stream"),
            ));
        }
        let role = match p.role.as_deref() {
            None => None,
            Some("primary") => Some(PeerRole::Primary),
            Some("standby") => Some(PeerRole::Standby),
            Some(other) => {
                return Err(invalid(
                    format!("{path}.role"),
                    format!("unknown role {other:?}, expected primary or standby"),
                ));
            }
        };
        peers.push(HaPeer {
            name: p.name,
            url: p.url,
            stream,
            role,
        });
    }
    check_roles(&peers)?;
    if mode == HaMode::LoadBalancing {
        check_balanced(&peers)?;
    }
    if !peers.iter().any(|p| p.name == node) {
        return Err(invalid(
            "ha.node",
            format!("{node:?} is not one of the names in ha.peers"),
        ));
    }
    if peers.len() < 2 {
        return Err(invalid(
            "ha.peers",
            "must list at least two servers (this one and its partner)",
        ));
    }
    if peers.len() > MAX_PEERS {
        return Err(invalid(
            "ha.peers",
            format!(
                "lists {} servers; a version names its writer among {MAX_PEERS} at most",
                peers.len()
            ),
        ));
    }
    let etcd = w.etcd.unwrap_or_default();
    if etcd.is_empty() {
        return Err(invalid(
            "ha.etcd",
            "must list at least one etcd client URL (http://HOST:PORT)",
        ));
    }
    let mut scheme = String::new();
    for (i, url) in etcd.iter().enumerate() {
        let this = check_url(&at("ha.etcd", i), url, &["http", "https"])?;
        if i == 0 {
            scheme = this.scheme().to_owned();
        } else if this.scheme() != scheme {
            return Err(invalid(
                at("ha.etcd", i),
                format!(
                    "{url:?} is {}:// where ha.etcd[0] is {scheme}://: every endpoint takes \
                     the same scheme",
                    this.scheme()
                ),
            ));
        }
    }
    let etcd_tls = etcd_tls(w.etcd_tls, scheme == "https")?;
    let lease_ttl = opt_seconds("ha.lease_ttl", w.lease_ttl.as_ref())?.unwrap_or(DEFAULT_LEASE_TTL);
    let (lo, hi) = LEASE_TTL_BOUNDS;
    if !(lo..=hi).contains(&lease_ttl) {
        return Err(invalid(
            "ha.lease_ttl",
            format!("must be {lo} to {hi} seconds, not {lease_ttl}"),
        ));
    }
    let mclt = opt_seconds("ha.mclt", w.mclt.as_ref())?.unwrap_or(DEFAULT_MCLT);
    let sync = w.sync.unwrap_or(true);
    let max_lag = match w.max_lag {
        Some(0) => {
            return Err(invalid(
                "ha.max_lag",
                "must be at least 1 (or use sync: true)",
            ));
        }
        Some(n) => n,
        None => DEFAULT_MAX_LAG,
    };
    let stream_key = w.stream_key_file.as_deref().map(stream_key).transpose()?;
    Ok(Some(HaConfig {
        mode,
        node,
        cluster,
        peers,
        etcd,
        etcd_tls,
        sync,
        max_lag,
        mclt,
        lease_ttl,
        stream_key_file: w.stream_key_file.map(PathBuf::from),
        stream_key,
    }))
}

/// Load balancing takes two peers that stream to each other, and no roles: each leads its
/// own scope.
fn check_balanced(peers: &[HaPeer]) -> Result<()> {
    if peers.len() != 2 {
        return Err(invalid(
            "ha.peers",
            format!(
                "load-balancing takes exactly two servers, not {}",
                peers.len()
            ),
        ));
    }
    for (i, p) in peers.iter().enumerate() {
        let path = at("ha.peers", i);
        if p.role.is_some() {
            return Err(invalid(
                format!("{path}.role"),
                "roles are for hot-standby: in load-balancing each server leads its own scope",
            ));
        }
        if p.stream.is_none() {
            return Err(invalid(
                format!("{path}.stream"),
                "missing: in load-balancing each server streams its journal to the other",
            ));
        }
    }
    Ok(())
}

/// Reads `ha.stream_key_file`: the file's bytes, a trailing newline trimmed. Refused if it
/// cannot be read, group or others may read it, or it holds fewer than [`MIN_KEY_LEN`] bytes.
fn stream_key(path: &str) -> Result<StreamKey> {
    const KEY: &str = "ha.stream_key_file";
    let bytes = read(KEY, path, true)?;
    let key = match bytes.strip_suffix(b"\n") {
        Some(b) => b.strip_suffix(b"\r").unwrap_or(b),
        None => &bytes,
    };
    StreamKey::new(key).ok_or_else(|| {
        invalid(
            KEY,
            format!(
                "{path:?} holds {} bytes, a stream key needs at least {MIN_KEY_LEN} \
                 (head -c 48 /dev/urandom | base64 > FILE makes one)",
                key.len()
            ),
        )
    })
}

/// Builds `ha.etcd_tls`, which `https` endpoints need and `http://` ones refuse, reading
/// its files.
fn etcd_tls(w: Option<wire::EtcdTls>, https: bool) -> Result<Option<EtcdTls>> {
    let w = match (w, https) {
        (None, false) => return Ok(None),
        (Some(_), false) => {
            return Err(invalid(
                "ha.etcd_tls",
                "set, but ha.etcd is http://: use https:// endpoints or leave it out",
            ));
        }
        (None, true) => {
            return Err(invalid(
                "ha.etcd_tls",
                "missing: https:// endpoints need at least ha.etcd_tls.ca",
            ));
        }
        (Some(w), true) => w,
    };
    let ca = w.ca.ok_or_else(|| {
        invalid(
            "ha.etcd_tls.ca",
            "missing: the PEM file of the CA that signed the etcd members' certificates",
        )
    })?;
    let ca = pem_file("ha.etcd_tls.ca", ca, Pem::Certificates)?;
    let identity = match (w.cert, w.key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((
            pem_file("ha.etcd_tls.cert", cert, Pem::Certificates)?,
            pem_file("ha.etcd_tls.key", key, Pem::PrivateKey)?,
        )),
        (Some(_), None) => {
            return Err(invalid(
                "ha.etcd_tls.key",
                "missing: ha.etcd_tls.cert needs its private key",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "ha.etcd_tls.cert",
                "missing: ha.etcd_tls.key needs its certificate",
            ));
        }
    };
    Ok(Some(EtcdTls { ca, identity }))
}

/// What a [`PemFile`] must hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pem {
    /// At least one `CERTIFICATE`.
    Certificates,
    /// A private key (PKCS #8, PKCS #1 or SEC1), in a file only its owner may read.
    PrivateKey,
}

/// Reads config key `key`'s PEM file at `path`, refused unless it holds `what`.
fn pem_file(key: &str, path: String, what: Pem) -> Result<PemFile> {
    let pem = read(key, &path, what == Pem::PrivateKey)?;
    let refused = |why: String| invalid(key, format!("{path:?} {why}"));
    match what {
        Pem::Certificates => {
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| refused(format!("is not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(refused(
                    "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                ));
            }
        }
        Pem::PrivateKey => {
            PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                refused(format!(
                    "holds no PEM private key (-----BEGIN PRIVATE KEY-----): {e}"
                ))
            })?;
        }
    }
    Ok(PemFile {
        path: path.into(),
        pem,
    })
}

/// Reads the file at `path` that config key `key` names. A `secret` is refused when group or
/// others may read it.
fn read(key: &str, path: &str, secret: bool) -> Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;

    let cannot = |e: std::io::Error| invalid(key, format!("cannot read {path:?}: {e}"));
    let mut f = std::fs::File::open(path).map_err(cannot)?;
    let mode = f.metadata().map_err(cannot)?.permissions().mode() & 0o777;
    if secret && mode & 0o077 != 0 {
        return Err(invalid(
            key,
            format!("{path:?} may be read by group or others (mode {mode:03o}): chmod 600 it"),
        ));
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(cannot)?;
    Ok(bytes)
}

/// Roles: none at all, or one each with exactly one primary.
fn check_roles(peers: &[HaPeer]) -> Result<()> {
    let named = peers.iter().filter(|p| p.role.is_some()).count();
    if named == 0 {
        return Ok(());
    }
    if let Some(i) = peers.iter().position(|p| p.role.is_none()) {
        return Err(invalid(
            format!("{}.role", at("ha.peers", i)),
            "missing: when one peer has a role, every peer needs one",
        ));
    }
    let primaries = peers
        .iter()
        .filter(|p| p.role == Some(PeerRole::Primary))
        .count();
    if primaries != 1 {
        return Err(invalid(
            "ha.peers",
            format!("needs exactly one peer with role: primary, not {primaries}"),
        ));
    }
    Ok(())
}

/// A name that goes into an etcd key: not empty, no `/`, no spaces or control characters.
fn check_name(path: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(path, "must not be empty"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            path,
            format!("{name:?} must not contain {c:?} (it is part of an etcd key)"),
        ));
    }
    Ok(())
}

/// `IP:PORT` (a port other than 0) where a server receives its partner's journal stream.
fn check_stream(path: &str, text: &str) -> Result<std::net::SocketAddr> {
    let addr: std::net::SocketAddr = text.parse().map_err(|_| {
        invalid(
            path,
            format!("{text:?} is not an IP:PORT address such as 10.0.0.1:8068 or [fd00::1]:8068"),
        )
    })?;
    if addr.port() == 0 {
        return Err(invalid(path, format!("{text:?} needs a port other than 0")));
    }
    Ok(addr)
}

/// `SCHEME://HOST:PORT[/]`, with one of `schemes` and nothing else (no path, user or query).
fn check_url(path: &str, text: &str, schemes: &[&str]) -> Result<url::Url> {
    let bad = |why: String| {
        invalid(
            path,
            format!(
                "{text:?} is not a {} URL such as {}://127.0.0.1:2379 ({why})",
                schemes.join(" or "),
                schemes[0]
            ),
        )
    };
    let url = url::Url::parse(text).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => bad("no scheme".into()),
        e => bad(e.to_string()),
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(bad(format!("scheme {:?}", url.scheme())));
    }
    if url.host().is_none() {
        return Err(bad("no host".into()));
    }
    if url.port_or_known_default().is_none_or(|p| p == 0) {
        return Err(bad("no port".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("user names go nowhere".into()));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a path, query or fragment".into()));
    }
    Ok(url)
}

/// `ha` as the effective config writes it back.
pub(super) fn to_wire(c: &HaConfig) -> wire::Ha {
    wire::Ha {
        mode: Some(c.mode.name().to_owned()),
        node: Some(c.node.clone()),
        cluster: Some(c.cluster.clone()),
        peers: Some(
            c.peers
                .iter()
                .map(|p| wire::HaPeer {
                    name: p.name.clone(),
                    url: p.url.clone(),
                    stream: p.stream.map(|a| a.to_string()),
                    role: p.role.map(|r| r.name().to_owned()),
                })
                .collect(),
        ),
        etcd: Some(c.etcd.clone()),
        etcd_tls: c.etcd_tls.as_ref().map(|t| {
            let path = |f: &PemFile| Some(f.path.to_string_lossy().into_owned());
            wire::EtcdTls {
                ca: path(&t.ca),
                cert: t.identity.as_ref().and_then(|(cert, _)| path(cert)),
                key: t.identity.as_ref().and_then(|(_, key)| path(key)),
            }
        }),
        sync: Some(c.sync),
        max_lag: Some(c.max_lag),
        mclt: Some(Value::Int(c.mclt.into())),
        lease_ttl: Some(Value::Int(c.lease_ttl.into())),
        stream_key_file: c
            .stream_key_file
            .as_ref()
            .map(|f| f.to_string_lossy().into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use lessor_journal::stream::wire::{MIN_KEY_LEN, StreamKey};

    use crate::config::{Config, HaMode};

    /// A valid `ha` section with the keys of `set` replaced or added (`KEY: VALUE` each).
    fn with(set: &str) -> String {
        let mut keys = vec![
            ("mode", "hot-standby".to_owned()),
            ("node", "a".to_owned()),
            ("etcd", "[\"http://127.0.0.1:2379\"]".to_owned()),
            (
                "peers",
                "[{name: a, url: \"http://10.0.0.1:8067\"}, {name: b, url: \"http://10.0.0.2:8067\"}]"
                    .to_owned(),
            ),
        ];
        for (k, v) in set.split(";").filter_map(|kv| kv.split_once(": ")) {
            match keys.iter_mut().find(|(key, _)| *key == k.trim()) {
                Some(slot) => slot.1 = v.to_owned(),
                None => keys.push((k.trim(), v.to_owned())),
            }
        }
        let body: Vec<String> = keys.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("ha: {{{}}}", body.join(", "))
    }

    fn error(yaml: &str) -> String {
        Config::from_yaml_str(yaml).unwrap_err().to_string()
    }

    #[test]
    fn no_ha_section_means_no_ha_and_defaults_fill_the_rest() {
        assert_eq!(Config::from_yaml_str("{}").unwrap().ha, None);
        let ha = Config::from_yaml_str(&with("")).unwrap().ha.unwrap();
        assert_eq!(ha.mode, HaMode::HotStandby);
        assert_eq!((ha.node.as_str(), ha.cluster.as_str()), ("a", "default"));
        assert_eq!((ha.lease_ttl, ha.mclt, ha.sync), (5, 3600, true));
        let ha = Config::from_yaml_str(&with("lease_ttl: 3s; mclt: 10m; sync: false"))
            .unwrap()
            .ha
            .unwrap();
        assert_eq!((ha.lease_ttl, ha.mclt, ha.sync), (3, 600, false));
        assert_eq!(ha.max_lag, 10_000);
        let ha = Config::from_yaml_str(&with("sync: false; max_lag: 50"));
        let ha = ha.unwrap().ha.unwrap();
        assert_eq!(ha.max_lag, 50);
        let back = Config::from_yaml_str(&with("sync: false; max_lag: 50")).unwrap();
        let again = Config::from_yaml_str(&back.effective_yaml()).unwrap();
        assert_eq!(again.ha, back.ha);
    }

    #[test]
    fn changing_ha_needs_a_restart() {
        let a = Config::from_yaml_str(&with("")).unwrap();
        let b = Config::from_yaml_str(&with("lease_ttl: 3")).unwrap();
        let changed: Vec<&str> = crate::reload::FIXED_KEYS
            .iter()
            .filter(|(_, same)| !same(&a, &b))
            .map(|(key, _)| *key)
            .collect();
        assert_eq!(changed, ["ha"]);
    }

    #[test]
    fn the_full_example_runs_hot_standby() {
        let (_files, full) = crate::config::examples::full_example();
        let ha = Config::from_yaml_str(&full).unwrap().ha.unwrap();
        assert_eq!(
            (ha.node.as_str(), ha.peers.len(), ha.etcd.len()),
            ("dhcp1", 2, 3)
        );
        let tls = ha.etcd_tls.as_ref().expect("https endpoints with etcd_tls");
        assert!(tls.ca.path.ends_with("etcd-ca.pem"), "{tls:?}");
        assert!(tls.identity.is_some(), "{tls:?}");
        assert_eq!((ha.lease_ttl, ha.mclt), (5, 3600));
        let (listen, partner) = ha.stream().expect("both peers stream");
        assert_eq!(
            (listen.to_string(), partner.to_string()),
            ("10.231.0.1:8068".into(), "10.231.0.2:8068".into())
        );
    }

    #[test]
    fn the_effective_config_reads_back_to_the_same_ha() {
        let c = Config::from_yaml_str(&with(
            "cluster: lab; lease_ttl: 3; peers: [{name: a, url: \"http://x:1\", stream: \"10.0.0.1:8068\", role: standby}, \
             {name: b, url: \"http://y:1\", stream: \"[fd00::2]:8068\", role: primary}, \
             {name: c, url: \"http://z:1\", role: standby}]",
        ))
        .unwrap();
        let peers = &c.ha.as_ref().unwrap().peers;
        assert_eq!(peers[1].stream, Some("[fd00::2]:8068".parse().unwrap()));
        let primary = c.ha.as_ref().unwrap().primary().map(|p| p.name.as_str());
        assert_eq!(primary, Some("b"));
        let back = Config::from_yaml_str(&c.effective_yaml()).unwrap();
        assert_eq!(back.ha, c.ha);
        let json = Config::from_json_str(&c.effective_json().to_string()).unwrap();
        assert_eq!(json.ha, c.ha);
    }

    /// A key file holding `text`, with `mode`.
    fn key_file(text: &[u8], mode: u32) -> tempfile::NamedTempFile {
        use std::os::unix::fs::PermissionsExt as _;
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    fn with_key(path: &std::path::Path) -> String {
        with(&format!(
            "stream_key_file: {:?}",
            path.display().to_string()
        ))
    }

    #[test]
    fn the_stream_key_is_read_at_load_and_only_its_file_written_back() {
        let text = "an operator's secret of forty bytes......";
        let f = key_file(format!("{text}\n").as_bytes(), 0o600);
        let c = Config::from_yaml_str(&with_key(f.path())).unwrap();
        let ha = c.ha.as_ref().unwrap();
        assert_eq!(ha.stream_key_file.as_deref(), Some(f.path()));
        assert_eq!(
            ha.stream_key,
            StreamKey::new(text.as_bytes()),
            "newline trimmed"
        );
        let shown = [
            format!("{c:?}"),
            c.effective_yaml(),
            c.effective_json().to_string(),
        ];
        for s in &shown {
            assert!(!s.contains("secret"), "{s}");
        }
        assert!(shown[1].contains(&f.path().display().to_string()));
        let back = Config::from_yaml_str(&c.effective_yaml()).unwrap();
        assert_eq!(back.ha, c.ha);
        // Without the file's key: no key.
        let none = Config::from_yaml_str(&with("")).unwrap().ha.unwrap();
        assert_eq!((none.stream_key_file, none.stream_key), (None, None));
    }

    #[test]
    fn a_stream_key_file_that_is_missing_short_or_open_to_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let missing = dir.path().join("none");
        let short = key_file(&[b'k'; MIN_KEY_LEN - 1], 0o600);
        let open = key_file(&[b'k'; MIN_KEY_LEN], 0o640);
        let cases = [
            (missing.as_path(), "cannot read"),
            (dir.path(), "Is a directory"),
            (
                short.path(),
                "holds 31 bytes, a stream key needs at least 32",
            ),
            (
                open.path(),
                "may be read by group or others (mode 640): chmod 600 it",
            ),
        ];
        for (path, want) in cases {
            let e = error(&with_key(path));
            assert!(e.starts_with("ha.stream_key_file: "), "{e}");
            assert!(e.contains(want), "{path:?}: {e}");
        }
        let ok = key_file(&[b'k'; MIN_KEY_LEN], 0o400);
        assert!(Config::from_yaml_str(&with_key(ok.path())).is_ok());
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAwQF\n-----END PRIVATE KEY-----\n";

    /// Stand-ins for a CA, a client certificate and its key (0600), in a new folder.
    fn tls_files() -> (tempfile::TempDir, [std::path::PathBuf; 3]) {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let files =
            [("ca.pem", CERT), ("client.pem", CERT), ("client.key", KEY)].map(|(name, text)| {
                let path = dir.path().join(name);
                std::fs::write(&path, text).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                path
            });
        (dir, files)
    }

    /// [`with`] over `https` endpoints, with `ha.etcd_tls` `tls` (`{ca: ..}`) and `set`.
    fn with_tls(tls: &str, set: &str) -> String {
        with(&format!(
            "etcd: [\"https://127.0.0.1:2379\", \"https://127.0.0.2:2379\"]; etcd_tls: {tls}; {set}"
        ))
    }

    /// `ha.etcd_tls` naming `ca`, `cert` and `key` (each left out when `None`).
    fn tls(
        ca: Option<&std::path::Path>,
        cert: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
    ) -> String {
        let keys: Vec<String> = [("ca", ca), ("cert", cert), ("key", key)]
            .into_iter()
            .filter_map(|(k, p)| Some(format!("{k}: {:?}", p?.display().to_string())))
            .collect();
        format!("{{{}}}", keys.join(", "))
    }

    #[test]
    fn etcd_tls_files_are_read_at_load_and_only_their_paths_written_back() {
        let (_dir, [ca, cert, key]) = tls_files();
        let c = Config::from_yaml_str(&with_tls(&tls(Some(&ca), Some(&cert), Some(&key)), ""));
        let c = c.unwrap();
        let t = c.ha.as_ref().unwrap().etcd_tls.clone().unwrap();
        assert_eq!(
            (t.ca.path.as_path(), t.ca.pem.as_slice()),
            (ca.as_path(), CERT.as_bytes())
        );
        let (client, private) = t.identity.clone().unwrap();
        assert_eq!((client.path, private.path), (cert.clone(), key.clone()));
        assert_eq!(private.pem, KEY.as_bytes());
        let shown = [
            format!("{c:?}"),
            c.effective_yaml(),
            c.effective_json().to_string(),
        ];
        for s in &shown {
            assert!(!s.contains("AwQF") && !s.contains("AAEC"), "{s}");
        }
        for f in [&ca, &cert, &key] {
            assert!(shown[1].contains(&f.display().to_string()), "{}", shown[1]);
        }
        let back = Config::from_yaml_str(&c.effective_yaml()).unwrap();
        assert_eq!(back.ha, c.ha);
        let json = Config::from_json_str(&c.effective_json().to_string()).unwrap();
        assert_eq!(json.ha, c.ha);
        // A CA alone: the server shows no certificate.
        let ca_only = Config::from_yaml_str(&with_tls(&tls(Some(&ca), None, None), ""));
        assert_eq!(
            ca_only.unwrap().ha.unwrap().etcd_tls.unwrap().identity,
            None
        );
        // Plain http: no TLS.
        assert_eq!(
            Config::from_yaml_str(&with(""))
                .unwrap()
                .ha
                .unwrap()
                .etcd_tls,
            None
        );
    }

    #[test]
    fn etcd_tls_paths_are_relative_to_the_config_file() {
        let (dir, _) = tls_files();
        let stream_key = dir.path().join("stream.key");
        std::fs::copy(key_file(&[b'k'; MIN_KEY_LEN], 0o600).path(), &stream_key).unwrap();
        let [ca, cert, private] = ["ca.pem", "client.pem", "client.key"].map(std::path::Path::new);
        let yaml = with_tls(
            &tls(Some(ca), Some(cert), Some(private)),
            "stream_key_file: stream.key",
        );
        std::fs::write(dir.path().join("lessor.yaml"), yaml).unwrap();
        let c = Config::from_file(&dir.path().join("lessor.yaml")).unwrap();
        let ha = c.ha.unwrap();
        let t = ha.etcd_tls.unwrap();
        let (cert, key_file) = t.identity.unwrap();
        assert_eq!(t.ca.path, dir.path().join("ca.pem"));
        assert_eq!(cert.path, dir.path().join("client.pem"));
        assert_eq!(key_file.path, dir.path().join("client.key"));
        assert_eq!(ha.stream_key_file, Some(stream_key));
    }

    #[test]
    fn etcd_tls_goes_with_https_endpoints_and_readable_pem_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let (dir, files) = tls_files();
        let [ca, cert, key] = files.each_ref().map(|p| Some(p.as_path()));
        let missing = dir.path().join("none");
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "just text\n").unwrap();
        let open_key = dir.path().join("open.key");
        std::fs::write(&open_key, KEY).unwrap();
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAEC\n").unwrap();
        let [missing, not_pem, open_key, broken] =
            [&missing, &not_pem, &open_key, &broken].map(|p| Some(p.as_path()));
        let mixed = with(&format!(
            "etcd: [\"https://e:2379\", \"http://f:2379\"]; etcd_tls: {}",
            tls(ca, None, None)
        ));
        let cases = [
            (
                mixed,
                "ha.etcd[1]: \"http://f:2379\" is http:// where ha.etcd[0] is https://: every \
                 endpoint takes the same scheme",
            ),
            (
                with("etcd: [\"https://e:2379\"]"),
                "ha.etcd_tls: missing: https:// endpoints need at least ha.etcd_tls.ca",
            ),
            (
                with(&format!("etcd_tls: {}", tls(ca, None, None))),
                "ha.etcd_tls: set, but ha.etcd is http://: use https:// endpoints or leave it out",
            ),
            (
                with_tls(&tls(None, cert, key), ""),
                "ha.etcd_tls.ca: missing: the PEM file of the CA that signed the etcd members' \
                 certificates",
            ),
            (
                with_tls(&tls(ca, cert, None), ""),
                "ha.etcd_tls.key: missing: ha.etcd_tls.cert needs its private key",
            ),
            (
                with_tls(&tls(ca, None, key), ""),
                "ha.etcd_tls.cert: missing: ha.etcd_tls.key needs its certificate",
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(error(&yaml), want, "{yaml}");
        }
        let cannot = format!(
            "cannot read {:?}",
            dir.path().join("none").display().to_string()
        );
        let open = "may be read by group or others (mode 640): chmod 600 it";
        let no_cert = "holds no PEM certificate";
        let cases: [(&str, [Option<&std::path::Path>; 3], &str); 8] = [
            ("ca", [missing, cert, key], &cannot),
            ("ca", [not_pem, cert, key], no_cert),
            ("ca", [broken, cert, key], "is not PEM: missing section end"),
            ("cert", [ca, missing, key], "cannot read"),
            ("cert", [ca, key, key], no_cert),
            ("key", [ca, cert, missing], "cannot read"),
            ("key", [ca, cert, cert], "holds no PEM private key"),
            ("key", [ca, cert, open_key], open),
        ];
        for (bad, [ca, cert, key], want) in cases {
            let e = error(&with_tls(&tls(ca, cert, key), ""));
            let named = format!("ha.etcd_tls.{bad}: ");
            assert!(e.starts_with(&named) && e.contains(want), "{e}");
        }
    }

    #[test]
    fn load_balancing_takes_two_streaming_peers_without_roles() {
        let peers = |a: &str, b: &str| {
            with(&format!(
                "mode: load-balancing; peers: [{{name: a, url: \"http://x:1\"{a}}}, \
                 {{name: b, url: \"http://y:1\"{b}}}]"
            ))
        };
        let (sa, sb) = (", stream: \"10.0.0.1:8068\"", ", stream: \"10.0.0.2:8068\"");
        let ha = Config::from_yaml_str(&peers(sa, sb)).unwrap().ha.unwrap();
        assert_eq!(ha.mode, HaMode::LoadBalancing);
        assert_eq!(ha.scopes(), Some(["a", "b"]));
        let hot = Config::from_yaml_str(&with("")).unwrap().ha.unwrap();
        assert_eq!(hot.scopes(), None);
        let cases = [
            (
                peers(sa, ""),
                "ha.peers[1].stream: missing: in load-balancing each server streams its \
                 journal to the other"
                    .to_owned(),
            ),
            (
                peers(
                    &format!("{sa}, role: primary"),
                    &format!("{sb}, role: standby"),
                ),
                "ha.peers[0].role: roles are for hot-standby: in load-balancing each server \
                 leads its own scope"
                    .to_owned(),
            ),
            (
                with(&format!(
                    "mode: load-balancing; peers: [{{name: a, url: \"http://x:1\"{sa}}}, \
                     {{name: b, url: \"http://y:1\"{sb}}}, {{name: c, url: \"http://z:1\"}}]"
                )),
                "ha.peers: load-balancing takes exactly two servers, not 3".to_owned(),
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(error(&yaml), want, "{yaml}");
        }
    }

    #[test]
    fn roles_are_all_or_none_with_one_primary() {
        let peers = |a: &str, b: &str| {
            with(&format!(
                "peers: [{{name: a, url: \"http://x:1\"{a}}}, {{name: b, url: \"http://y:1\"{b}}}]"
            ))
        };
        let none = Config::from_yaml_str(&peers("", "")).unwrap().ha.unwrap();
        assert_eq!(none.primary(), None);
        let roles = Config::from_yaml_str(&peers(", role: standby", ", role: primary"));
        let roles = roles.unwrap().ha.unwrap();
        assert_eq!(roles.primary().map(|p| p.name.as_str()), Some("b"));
        let cases = [
            (
                peers(", role: primary", ""),
                "ha.peers[1].role: missing: when one peer has a role, every peer needs one",
            ),
            (
                peers(", role: primary", ", role: primary"),
                "ha.peers: needs exactly one peer with role: primary, not 2",
            ),
            (
                peers(", role: standby", ", role: standby"),
                "ha.peers: needs exactly one peer with role: primary, not 0",
            ),
            (
                peers(", role: active", ", role: primary"),
                "ha.peers[0].role: unknown role \"active\", expected primary or standby",
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(error(&yaml), want, "{yaml}");
        }
    }

    #[test]
    fn bad_ha_keys_are_named() {
        let cases = [
            (
                "ha: {node: a}",
                "ha.mode: missing (hot-standby or load-balancing)",
            ),
            (
                "ha: {mode: load-balancing}",
                "ha.node: missing: this server's name among ha.peers",
            ),
            (
                "ha: {mode: active}",
                "ha.mode: unknown mode \"active\", expected hot-standby or load-balancing",
            ),
            (
                "ha: {mode: hot-standby}",
                "ha.node: missing: this server's name among ha.peers",
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(error(yaml), want, "{yaml}");
        }
        let bad = [
            (
                &with("node: c") as &str,
                "ha.node: \"c\" is not one of the names in ha.peers",
            ),
            (
                &with("node: \"a/b\""),
                "ha.node: \"a/b\" must not contain '/' (it is part of an etcd key)",
            ),
            (&with("cluster: \"\""), "ha.cluster: must not be empty"),
            (
                &with("etcd: []"),
                "ha.etcd: must list at least one etcd client URL (http://HOST:PORT)",
            ),
            (
                &with("etcd: [\"127.0.0.1:2379\"]"),
                "ha.etcd[0]: \"127.0.0.1:2379\" is not a http or https URL such as \
                 http://127.0.0.1:2379 (no scheme)",
            ),
            (
                &with("etcd: [\"unix://e:2379\"]"),
                "ha.etcd[0]: \"unix://e:2379\" is not a http or https URL such as \
                 http://127.0.0.1:2379 (scheme \"unix\")",
            ),
            (
                &with("etcd: [\"http://e:0\"]"),
                "ha.etcd[0]: \"http://e:0\" is not a http or https URL such as \
                 http://127.0.0.1:2379 (no port)",
            ),
            (
                &with("lease_ttl: 1"),
                "ha.lease_ttl: must be 2 to 300 seconds, not 1",
            ),
            (
                &with("sync: false; max_lag: 0"),
                "ha.max_lag: must be at least 1 (or use sync: true)",
            ),
            (
                &with("lease_ttl: 1h"),
                "ha.lease_ttl: must be 2 to 300 seconds, not 3600",
            ),
            (
                &with("mclt: soon"),
                "ha.mclt: \"soon\" is not a duration (expected number at 0); write seconds or \
                 e.g. \"1h\", \"30m\", \"90s\"",
            ),
            (
                &with("peers: [{name: a, url: \"http://x:1\"}]"),
                "ha.peers: must list at least two servers (this one and its partner)",
            ),
            (
                &with("peers: [{name: a, url: \"http://x:1\"}, {name: a, url: \"http://y:1\"}]"),
                "ha.peers[1].name: \"a\" is listed twice",
            ),
            (
                &with("peers: [{name: a, url: \"http://x:1\"}, {name: b, url: \"ftp://y:1\"}]"),
                "ha.peers[1].url: \"ftp://y:1\" is not a http or https URL such as \
                 http://127.0.0.1:2379 (scheme \"ftp\")",
            ),
            (
                &with(
                    "peers: [{name: a, url: \"http://x:1\", stream: \"x:1\"}, {name: b, url: \"http://y:1\"}]",
                ),
                "ha.peers[0].stream: \"x:1\" is not an IP:PORT address such as 10.0.0.1:8068 or \
                 [fd00::1]:8068",
            ),
            (
                &with(
                    "peers: [{name: a, url: \"http://x:1\", stream: \"10.0.0.1:0\"}, {name: b, url: \"http://y:1\"}]",
                ),
                "ha.peers[0].stream: \"10.0.0.1:0\" needs a port other than 0",
            ),
            (
                &with(
                    "peers: [{name: a, url: \"http://x:1\", stream: \"10.0.0.1:9\"}, {name: b, url: \"http://y:1\", stream: \"10.0.0.1:9\"}]",
                ),
                "ha.peers[1].stream: 10.0.0.1:9 is already ha.peers[0].stream",
            ),
        ];
        for (yaml, want) in bad {
            assert_eq!(error(yaml), want, "{yaml}");
        }
        assert!(error("ha: {mode: hot-standby, leader: a}").contains("leader"));
    }
}
