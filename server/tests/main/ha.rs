//! High availability, part 1 (docs/HA.md): two lessor servers in hot-standby on a three-member
//! etcd cluster, all on loopback. Only the leader answers; when it is killed the standby takes
//! the leader key with a higher epoch and answers; when etcd stops answering the leader fences
//! itself, and takes its role back once etcd is back.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    Lessor, Ns, require_root, run_logged, spawn_logged, tempdir, tool, unique, wait_until,
};
use crate::kea_client::{http, promtool_check};

mod balance;
mod partition;
mod perfdhcp;
mod v6;

/// Generous: a takeover needs the old lease's TTL (3 s) plus a few ticks.
const ROLE_DEADLINE: Duration = Duration::from_secs(30);

/// What rustls says when etcd refuses the handshake (etcd 3.4 sends `BadCertificate`).
const TLS_ALERT: &str = "received fatal alert";

/// A relay's giaddr that the pair's subnet accepts besides loopback ([`partition`]).
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 236, 9, 1);

/// Free TCP ports on loopback, as the kernel hands them out.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// Two free UDP ports on loopback, for two servers' DHCPv4 sockets.
fn free_udp_ports() -> [u16; 2] {
    [0, 1].map(|_| {
        UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port()
    })
}

/// A three-member etcd cluster, killed (and its data removed) on drop.
struct Etcd {
    members: Vec<Child>,
    /// Its client URLs, as seen from where it runs.
    clients: Vec<String>,
    /// The namespace it runs in, if not the test's own.
    ns: Option<String>,
    /// Its clients speak TLS, with the certificates of [`make_pki`] in `dir`.
    tls: bool,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// On loopback, on free ports.
    fn start() -> Etcd {
        Self::launch(None, "127.0.0.1", &free_ports(6), false)
    }

    /// On loopback, on free ports, its clients on `https` with client certificates required
    /// ([`make_pki`]; its peers stay on `http`).
    fn start_tls() -> Etcd {
        Self::launch(None, "127.0.0.1", &free_ports(6), true)
    }

    /// In `ns`, serving clients on every address of the namespace (ports 2379, 2381, 2383).
    fn start_in(ns: &Ns) -> Etcd {
        let ports: Vec<u16> = (2379..2385).collect();
        Self::launch(Some(ns), "0.0.0.0", &ports, false)
    }

    /// Member `i` serves clients on `host:ports[2i]` and its peers on loopback `ports[2i+1]`.
    fn launch(ns: Option<&Ns>, host: &str, ports: &[u16], tls: bool) -> Etcd {
        let dir = tempdir();
        let scheme = if tls { "https" } else { "http" };
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let client = |i: usize, host: &str| format!("{scheme}://{host}:{}", ports[2 * i]);
        let initial: Vec<String> = (0..3).map(|i| format!("e{i}={}", peer(i))).collect();
        if tls {
            make_pki(dir.path());
        }
        let mut etcd = Etcd {
            members: Vec::new(),
            clients: (0..3).map(|i| client(i, "127.0.0.1")).collect(),
            ns: ns.map(|ns| ns.name().to_owned()),
            tls,
            dir,
        };
        let token = unique();
        for i in 0..3 {
            let data = etcd.dir.path().join(format!("e{i}"));
            let mut cmd = match ns {
                Some(ns) => ns.cmd(tool("etcd")),
                None => Command::new(tool("etcd")),
            };
            cmd.args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &client(i, host)])
                .args(["--advertise-client-urls", &etcd.clients[i]])
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token]);
            if tls {
                let pem = |name: &str| etcd.dir.path().join(name);
                cmd.arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(pem("ca.pem"))
                    .arg("--cert-file")
                    .arg(pem("server.pem"))
                    .arg("--key-file")
                    .arg(pem("server.key"));
            }
            let log = etcd.dir.path().join(format!("e{i}.log"));
            etcd.members.push(spawn_logged(&mut cmd, &log));
        }
        wait_until(ROLE_DEADLINE, "the etcd cluster to be healthy", || {
            etcd.etcdctl(&["endpoint", "health"])
                .output()
                .ok()
                .filter(|o| o.status.success())
        });
        etcd
    }

    /// `etcdctl ARGS` against every member, run where the cluster runs.
    fn etcdctl(&self, args: &[&str]) -> Command {
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new(tool("ip"));
                c.args(["netns", "exec", ns]).arg(tool("etcdctl"));
                c
            }
            None => Command::new(tool("etcdctl")),
        };
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.clients.join(",")]);
        if self.tls {
            let pem = |name: &str| self.dir.path().join(name);
            cmd.arg("--cacert")
                .arg(pem("ca.pem"))
                .arg("--cert")
                .arg(pem("client.pem"))
                .arg("--key")
                .arg(pem("client.key"));
        }
        cmd.args(args);
        cmd
    }

    /// `ha.etcd_tls` for a server that trusts this cluster's CA and shows the client
    /// certificate `client` of [`make_pki`] (`client` or `stranger`).
    fn etcd_tls(&self, client: &str) -> String {
        let pem = |name: String| format!("{:?}", self.dir.path().join(name).display().to_string());
        format!(
            "{{ ca: {}, cert: {}, key: {} }}",
            pem("ca.pem".into()),
            pem(format!("{client}.pem")),
            pem(format!("{client}.key"))
        )
    }

    /// The index of a member that is not etcd's raft leader.
    fn follower(&self) -> usize {
        let out = self
            .etcdctl(&["endpoint", "status", "-w", "json"])
            .output()
            .expect("running etcdctl endpoint status");
        let status: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        let members = status.as_array().expect("a list of endpoints");
        let i = members
            .iter()
            .find(|m| m["Status"]["leader"] != m["Status"]["header"]["member_id"])
            .and_then(|m| m["Endpoint"].as_str())
            .and_then(|url| self.clients.iter().position(|c| c == url));
        i.unwrap_or_else(|| panic!("no follower in {status}"))
    }

    /// Sends `signal` (`STOP`, `CONT`) to every member.
    fn signal(&self, signal: &str) {
        self.signal_some(0..self.members.len(), signal);
    }

    /// Sends `signal` to members `which`.
    fn signal_some(&self, which: std::ops::Range<usize>, signal: &str) {
        for m in &self.members[which] {
            let sent = Command::new("kill")
                .args([&format!("-{signal}"), &m.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(sent, "could not send SIG{signal} to etcd {}", m.id());
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            // SIGKILL ends a stopped process too.
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

/// Writes into `dir`, with the `openssl` CLI: a CA (`ca.pem`); the etcd members' certificate
/// and key (`server.pem`, `server.key`, for IP 127.0.0.1); a client's (`client.pem`,
/// `client.key`) signed by that CA; and a stranger's (`stranger.pem`, `stranger.key`), signed
/// by a CA of its own. Keys are EC P-256 and 0600.
fn make_pki(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let mut cmd = Command::new(tool("openssl"));
        let (status, log) = run_logged(cmd.current_dir(dir).args(args), &dir.join("openssl.log"));
        assert!(status.success(), "openssl {args:?}: {log}");
    };
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for ca in ["ca", "stranger-ca"] {
        let subject = format!("/CN=lessor test {ca}");
        let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        let args = [
            "-x509", "-days", "2", "-subj", &subject, "-keyout", &key, "-out", &pem,
        ];
        openssl(&[&["req"], &new_key[..], &args[..]].concat());
    }
    let uses = [
        (
            "server",
            "ca",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        ),
        ("client", "ca", "extendedKeyUsage=clientAuth\n"),
        ("stranger", "stranger-ca", "extendedKeyUsage=clientAuth\n"),
    ];
    for (name, ca, extensions) in uses {
        let (key, csr, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        std::fs::write(dir.join(&ext), extensions).expect("writing the extensions");
        let subject = format!("/CN=lessor test {name}");
        openssl(
            &[
                &["req"],
                &new_key[..],
                &["-subj", &subject, "-keyout", &key, "-out", &csr],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.pem"),
        ]);
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(dir.join(&key), mode).expect("chmod 600");
    }
}

/// The config of server `node` of the pair, answering DHCP on `port`.
fn config(node: &str, port: u16, cluster: &str, etcd: &Etcd) -> String {
    config_with(node, port, cluster, &etcd.clients, None)
}

/// [`config`] with etcd at `endpoints`, streaming the journal between the pair when `stream`
/// gives the two servers' stream addresses and whether replies wait for the partner
/// (`ha.sync`).
fn config_with(
    node: &str,
    port: u16,
    cluster: &str,
    endpoints: &[String],
    stream: Option<([String; 2], bool)>,
) -> String {
    // A loaded machine (the test's own relays and etcd on two cores) can miss a keepalive:
    // the streaming tests give the leader more slack so that it keeps its role.
    let ttl = if stream.is_some() { 5 } else { 3 };
    // A debug build scans a preallocated segment's zeros byte by byte when it reads the
    // journal (a snapshot for the partner, a takeover): seconds, on a loaded machine.
    let journal = if stream.is_some() {
        "journal: { preallocate: false }\n"
    } else {
        ""
    };
    let endpoints: Vec<String> = endpoints.iter().map(|c| format!("{c:?}")).collect();
    let (streams, sync) = match stream {
        Some((p, sync)) => (p.map(|p| format!(", stream: {p:?}")), sync),
        None => ([String::new(), String::new()], true),
    };
    format!(
        r#"port: {port}
state_dir: STATE_DIR
workers: 1
{journal}v4:
  lease_time: 3600
  subnets:
    - subnet: 10.234.0.0/16
      relays: [ 127.0.0.1, {RELAY} ]
      pools: [ "10.234.0.10-10.234.250.200" ]
ha:
  mode: hot-standby
  node: {node}
  cluster: {cluster}
  lease_ttl: {ttl}
  sync: {sync}
  etcd: [ {} ]
  peers:
    - {{ name: a, url: "http://127.0.0.1:1"{} }}
    - {{ name: b, url: "http://127.0.0.1:2"{} }}
"#,
        endpoints.join(", "),
        streams[0],
        streams[1],
    )
}

/// `status-get`'s `ha` object.
fn ha(lessor: &Lessor) -> Value {
    ha_at(&lessor.control_url())
}

/// `status-get`'s `ha` object from the control server at `url`.
fn ha_at(url: &str) -> Value {
    let cmd = json!({"command": "status-get"}).to_string();
    let (status, body) = http(url, "POST", "/", false, cmd.as_bytes());
    assert_eq!(status, 200, "{body}");
    let answers: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    answers[0]["arguments"]["ha"].clone()
}

/// Waits until `lessor` reports `role`, and returns its `ha` object then.
fn wait_role(lessor: &Lessor, role: &str) -> Value {
    wait_ha(
        &format!("role {role}"),
        || ha(lessor),
        |ha| ha["role"] == role,
    )
}

/// Waits until the `ha` object that `get` reads passes `done`, and returns it.
fn wait_ha(what: &str, get: impl Fn() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    wait_until(ROLE_DEADLINE, what, || Some(get()).filter(&done))
}

/// Whether a relayed DISCOVER to `port` gets an OFFER within a second.
fn offers(port: u16, mac_last: u8) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("binding the relay's socket");
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut b = vec![0u8; 236];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1;
    b[2] = 6;
    b[3] = 1; // one relay hop
    b[4..8].copy_from_slice(&[0x4c, 0x53, 0x48, mac_last]);
    b[24..28].copy_from_slice(&Ipv4Addr::LOCALHOST.octets());
    b[28..34].copy_from_slice(&[2, 0x48, 0x41, 0, 0, mac_last]);
    b.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 255]);
    sock.send_to(&b, SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
        .expect("sending a DISCOVER");
    let mut buf = [0u8; 1500];
    match sock.recv(&mut buf) {
        // An OFFER: BOOTREPLY with message type 2.
        Ok(n) => buf[0] == 2 && buf[..n].windows(3).any(|w| w == [53, 1, 2]),
        Err(_) => false,
    }
}

/// Waits until a DISCOVER to `port` gets an OFFER (a loaded machine may miss a keepalive and
/// hold DHCP back for a moment).
fn answers(port: u16, mac_last: u8) {
    wait_until(ROLE_DEADLINE, &format!("an OFFER from port {port}"), || {
        offers(port, mac_last).then_some(())
    });
}

/// The `/ready` status code.
fn ready(lessor: &Lessor) -> u16 {
    http(&lessor.control_url(), "GET", "/ready", false, b"").0
}

#[test]
fn hot_standby_fails_over_on_a_crash_and_fences_without_etcd() {
    require_root();
    let etcd = Etcd::start();
    let cluster = unique();
    let ports = free_udp_ports();
    let a = Lessor::start(None, &config("a", ports[0], &cluster, &etcd), &[]);
    let first = wait_role(&a, "leader");
    assert_eq!(first["leader"], "a", "{first}");
    let b = Lessor::start(None, &config("b", ports[1], &cluster, &etcd), &[]);
    let standby = wait_role(&b, "standby");
    assert_eq!(standby["leader"], "a", "{standby}");
    assert_eq!(standby["epoch"], first["epoch"], "both see the same term");
    assert_eq!(ready(&b), 503, "a standby is not ready");
    let healthy = ha(&a);
    assert_eq!(
        healthy["keepalive-failures"], 0,
        "a healthy etcd renews: {healthy}"
    );
    assert!(
        healthy["etcd"]
            .as_array()
            .is_some_and(|e| e.len() == 3 && e.iter().all(|e| e["healthy"] == true)),
        "every etcd member is probed healthy: {healthy}"
    );
    answers(ports[0], 1);
    assert!(!offers(ports[1], 2), "the standby does not answer");

    // One etcd follower hangs: the quorum goes on, and so does the leader. (Losing etcd's raft
    // leader costs an election first: docs/HA.md.)
    let hung = etcd.follower();
    etcd.signal_some(hung..hung + 1, "STOP");
    std::thread::sleep(Duration::from_secs(6));
    let still = ha(&a);
    assert_eq!(still["role"], "leader", "{still}");
    assert_eq!(
        still["transitions"], healthy["transitions"],
        "no flap: {still}"
    );
    answers(ports[0], 6);
    etcd.signal_some(hung..hung + 1, "CONT");

    // kill -9 the leader: the standby takes the key once the old lease expires.
    let epoch = first["epoch"].as_u64().expect("an epoch");
    a.crash();
    let second = wait_role(&b, "leader");
    assert_eq!(second["leader"], "b", "{second}");
    let new_epoch = second["epoch"].as_u64().expect("an epoch");
    assert!(new_epoch > epoch, "epoch {new_epoch} is not above {epoch}");
    answers(ports[1], 3);
    assert_eq!(ready(&b), 200);

    // etcd stops answering: the leader fences itself and stops answering.
    etcd.signal("STOP");
    let fenced = wait_role(&b, "fenced");
    assert!(
        fenced["keepalive-failures"].as_u64() > Some(0),
        "fencing follows failed keepalives: {fenced}"
    );
    assert!(!offers(ports[1], 4), "a fenced server does not answer");
    assert_eq!(ready(&b), 503);
    etcd.signal("CONT");
    let back = wait_role(&b, "leader");
    assert!(
        back["epoch"].as_u64() > Some(new_epoch),
        "a new term after fencing: {back}"
    );
    answers(ports[1], 5);

    let text = http(&b.control_url(), "GET", "/metrics", false, b"").1;
    assert!(text.contains("lessor_ha_role{role=\"leader\"} 1"), "{text}");
    assert!(text.contains("lessor_ha_transitions_total"), "{text}");
    promtool_check(&text);
    let stopped = b.stop();
    stopped.assert_success();
    assert!(stopped.counter("ha_standby") >= 1, "{}", stopped.stdout);
    assert!(stopped.counter("ha_fenced") >= 1, "{}", stopped.stdout);
}

#[test]
fn a_pair_runs_on_etcd_over_tls_and_a_stranger_certificate_stays_fenced() {
    require_root();
    let etcd = Etcd::start_tls();
    let tls_config = |node: &str, port: u16, cluster: &str, client: &str| {
        config(node, port, cluster, &etcd).replace(
            "\nha:\n",
            &format!("\nha:\n  etcd_tls: {}\n", etcd.etcd_tls(client)),
        )
    };
    let cluster = unique();
    let ports = free_udp_ports();
    let a = Lessor::start(None, &tls_config("a", ports[0], &cluster, "client"), &[]);
    let first = wait_role(&a, "leader");
    assert_eq!(first["leader"], "a", "{first}");
    let b = Lessor::start(None, &tls_config("b", ports[1], &cluster, "client"), &[]);
    let standby = wait_role(&b, "standby");
    assert_eq!(standby["leader"], "a", "{standby}");
    answers(ports[0], 1);
    assert!(!offers(ports[1], 2), "the standby does not answer");
    let healthy = wait_ha(
        "every etcd member to be probed healthy",
        || ha(&a),
        |h| {
            h["etcd"]
                .as_array()
                .is_some_and(|e| e.len() == 3 && e.iter().all(|e| e["healthy"] == true))
        },
    );
    assert!(
        healthy["etcd"][0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "{healthy}"
    );

    // A certificate of another CA: etcd refuses the handshake, so the server never leads,
    // not even in a cluster of its own.
    let port = free_udp_ports()[0];
    let c = Lessor::start(None, &tls_config("a", port, &unique(), "stranger"), &[]);
    let refused = wait_ha(
        "an etcd member's probe to name the refused handshake",
        || ha(&c),
        |h| {
            let probes = h["etcd"].as_array().cloned().unwrap_or_default();
            probes.iter().any(|e| {
                e["error"]
                    .as_str()
                    .is_some_and(|why| why.contains(TLS_ALERT))
            })
        },
    );
    assert!(
        refused["etcd"]
            .as_array()
            .is_some_and(|e| e.iter().all(|e| e["healthy"] == false)),
        "{refused}"
    );
    // A lease TTL on, it has still not led.
    std::thread::sleep(Duration::from_secs(3));
    let fenced = ha(&c);
    assert_eq!(fenced["role"], "fenced", "{fenced}");
    assert_eq!(fenced["transitions"], 0, "it never led: {fenced}");
    assert!(!offers(port, 3), "a fenced server does not answer");
    let log = c.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("HA: fenced: granting a lease") && l.contains(TLS_ALERT)),
        "the log says why: {log}"
    );
    assert_eq!(ha(&a)["role"], "leader", "the pair goes on");
}

/// A relay for clients 02:`tag`:`hi`:`lo`:00:00, each of which does a whole DORA with one
/// server. On loopback with [`Clients::new`]; [`Clients::via`] relays as `giaddr` from any
/// address of the namespace it runs in.
struct Clients {
    sock: UdpSocket,
    tag: u8,
    giaddr: Ipv4Addr,
    /// The ACKs that came after their client gave up waiting: address and client.
    late: std::cell::RefCell<Vec<(Ipv4Addr, String)>>,
}

impl Clients {
    fn new(tag: u8) -> Clients {
        Self::via(tag, Ipv4Addr::LOCALHOST)
    }

    fn via(tag: u8, giaddr: Ipv4Addr) -> Clients {
        let bind = if giaddr.is_loopback() {
            Ipv4Addr::LOCALHOST
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let sock = UdpSocket::bind((bind, 0)).expect("binding the relay's socket");
        sock.set_read_timeout(Some(Duration::from_millis(1500)))
            .expect("timeout");
        Clients {
            sock,
            tag,
            giaddr,
            late: Default::default(),
        }
    }

    fn mac(&self, n: u16) -> String {
        let [hi, lo] = n.to_be_bytes();
        format!("02:{:02x}:{hi:02x}:{lo:02x}:00:00", self.tag)
    }

    /// A relayed DISCOVER (1) or REQUEST (3) of client `n`.
    fn packet(&self, n: u16, kind: u8, requested: Option<(Ipv4Addr, Ipv4Addr)>) -> Vec<u8> {
        let [hi, lo] = n.to_be_bytes();
        let mut b = vec![0u8; 236];
        b[..4].copy_from_slice(&[1, 1, 6, 1]);
        b[4..8].copy_from_slice(&[self.tag, hi, lo, kind]);
        b[24..28].copy_from_slice(&self.giaddr.octets());
        b[28..34].copy_from_slice(&[2, self.tag, hi, lo, 0, 0]);
        b.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
        if let Some((addr, server)) = requested {
            b.extend_from_slice(&[50, 4]);
            b.extend_from_slice(&addr.octets());
            b.extend_from_slice(&[54, 4]);
            b.extend_from_slice(&server.octets());
        }
        b.push(255);
        b
    }

    /// Sends to every one of `servers` and waits for the reply of the same xid: its message
    /// type, `yiaddr` and server identifier. An ACK of another xid goes to `late`.
    fn ask(&self, servers: &[SocketAddrV4], pkt: &[u8]) -> Option<(u8, Ipv4Addr, Ipv4Addr)> {
        for server in servers {
            self.sock.send_to(pkt, server).expect("sending to lessor");
        }
        let mut buf = [0u8; 1500];
        loop {
            let n = self.sock.recv(&mut buf).ok()?;
            if n < 240 {
                continue;
            }
            let (mut kind, mut server) = (0, Ipv4Addr::UNSPECIFIED);
            let mut at = 240;
            while at + 1 < n && buf[at] != 255 {
                let (code, len) = (buf[at], usize::from(buf[at + 1]));
                let value = buf.get(at + 2..at + 2 + len)?;
                match (code, len) {
                    (53, 1) => kind = value[0],
                    (54, 4) => server = Ipv4Addr::new(value[0], value[1], value[2], value[3]),
                    _ => {}
                }
                at += 2 + len;
            }
            let yiaddr = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
            if buf[4..8] == pkt[4..8] {
                return Some((kind, yiaddr, server));
            }
            if kind == 5 {
                let n = u16::from_be_bytes([buf[5], buf[6]]);
                self.late.borrow_mut().push((yiaddr, self.mac(n)));
            }
        }
    }

    /// DISCOVER, then REQUEST what was offered: the address ACKed to client `n`, if one was.
    fn dora(&self, port: u16, n: u16) -> Option<Ipv4Addr> {
        self.dora_via(&[SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)], n)
            .map(|(ip, _)| ip)
    }

    /// [`Clients::dora`] through every one of `servers` (as a relay with several server
    /// addresses does): the address ACKed and the server that ACKed it.
    fn dora_via(&self, servers: &[SocketAddrV4], n: u16) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let (kind, offered, server) = self.ask(servers, &self.packet(n, 1, None))?;
        if kind != 2 {
            return None;
        }
        let req = self.packet(n, 3, Some((offered, server)));
        match self.ask(servers, &req)? {
            (5, acked, by) if acked == offered => Some((acked, by)),
            _ => None,
        }
    }
}

/// An ACK the relay heard: the address, the client it went to, the server that sent it
/// (unspecified for a late one) and the test's step then.
type Ack = (Ipv4Addr, String, Ipv4Addr, usize);

/// Two relay threads (in namespace `ns`, or the test's own), each running new clients' DORAs
/// through both servers until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    step: Arc<AtomicUsize>,
    acks: Arc<Mutex<Vec<Ack>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(ns: Option<&Ns>, giaddr: Ipv4Addr, servers: [SocketAddrV4; 2]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let step = Arc::new(AtomicUsize::new(0));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let threads = (1..=2u8)
            .map(|tag| {
                let (stop, step, acks) = (Arc::clone(&stop), Arc::clone(&step), Arc::clone(&acks));
                let relay = move || {
                    let clients = Clients::via(tag, giaddr);
                    for n in 1..=u16::MAX {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let now = step.load(Ordering::SeqCst);
                        if let Some((ip, by)) = clients.dora_via(&servers, n) {
                            acks.lock().unwrap().push((ip, clients.mac(n), by, now));
                        }
                    }
                    let late = clients.late.take().into_iter();
                    let now = step.load(Ordering::SeqCst);
                    acks.lock()
                        .unwrap()
                        .extend(late.map(|(ip, mac)| (ip, mac, Ipv4Addr::UNSPECIFIED, now)));
                };
                match ns {
                    Some(ns) => ns.spawn_in(relay),
                    None => std::thread::spawn(relay),
                }
            })
            .collect();
        Load {
            stop,
            step,
            acks,
            threads,
        }
    }

    /// Marks the ACKs from here on as the test's step `n`.
    fn step(&self, n: usize) {
        self.step.store(n, Ordering::SeqCst);
    }

    /// Waits until `more` ACKs have come after those heard so far.
    fn wait_more(&self, more: usize, what: &str) {
        let goal = self.acks.lock().unwrap().len() + more;
        wait_until(ROLE_DEADLINE, what, || {
            (self.acks.lock().unwrap().len() >= goal).then_some(())
        });
    }

    /// Stops the clients; every ACK heard, late ones included.
    fn finish(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("a relay thread");
        }
        Arc::try_unwrap(self.acks)
            .expect("the relays are done")
            .into_inner()
            .unwrap()
    }
}

/// Each ACKed address with its one client; fails if an address was ACKed to two.
fn owners(acks: &[Ack]) -> BTreeMap<Ipv4Addr, String> {
    let mut owners: BTreeMap<Ipv4Addr, &Ack> = BTreeMap::new();
    for ack in acks {
        let other = owners.insert(ack.0, ack);
        assert!(
            other.is_none_or(|o| o.1 == ack.1),
            "ACKed to two clients (address, client, server, step): {ack:?} and {other:?}"
        );
    }
    owners
        .into_iter()
        .map(|(ip, a)| (ip, a.1.clone()))
        .collect()
}

/// Fails unless `held` binds every address of `owners` to its client.
fn holds_all(held: &BTreeMap<Ipv4Addr, String>, owners: &BTreeMap<Ipv4Addr, String>, who: &str) {
    let lost: Vec<_> = owners
        .iter()
        .filter(|(ip, mac)| held.get(ip) != Some(mac))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} ACKed leases are not bound in {who}, e.g. {:?}",
        lost.len(),
        owners.len(),
        &lost[..lost.len().min(5)]
    );
}

/// A test of `ha["role"]`.
fn role(want: &'static str) -> impl Fn(&Value) -> bool {
    move |ha| ha["role"] == want
}

/// Every bound lease of `lessor` as address -> hardware address.
fn bound(lessor: &Lessor) -> std::collections::BTreeMap<Ipv4Addr, String> {
    bound_at(&lessor.control_url())
}

/// [`bound`] of the control server at `url`.
fn bound_at(url: &str) -> std::collections::BTreeMap<Ipv4Addr, String> {
    let cmd = json!({"command": "lease4-get-all"}).to_string();
    let (status, body) = http(url, "POST", "/", false, cmd.as_bytes());
    assert_eq!(status, 200, "{body}");
    let answers: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let leases = answers[0]["arguments"]["leases"].as_array().cloned();
    leases
        .unwrap_or_default()
        .iter()
        .filter(|l| l["state"] == 0)
        .map(|l| {
            let ip = l["ip-address"].as_str().expect("an address").parse();
            let hw = l["hw-address"].as_str().expect("a hardware address");
            (ip.expect("an IPv4 address"), hw.to_owned())
        })
        .collect()
}

/// A stream key file for a pair: 0600, 64 characters of `c` and a newline; removed on drop.
fn stream_key(c: char) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().expect("a key file");
    std::fs::write(f.path(), format!("{}\n", c.to_string().repeat(64))).expect("the key");
    f
}

/// The configs of servers `a` and `b` of a new cluster on two free DHCP ports, the journal
/// streamed with `sync: true` and authenticated with the key in `key`; with their ports.
fn synced_configs(etcd: &Etcd, key: &std::path::Path) -> ([String; 2], [u16; 2]) {
    let cluster = unique();
    let ports = free_udp_ports();
    let streams = free_ports(2);
    let streams = [0, 1].map(|i| format!("127.0.0.1:{}", streams[i]));
    let configs = [("a", ports[0]), ("b", ports[1])].map(|(node, port)| {
        let stream = Some((streams.clone(), true));
        config_with(node, port, &cluster, &etcd.clients, stream).replace(
            "\nha:\n",
            &format!(
                "\nha:\n  stream_key_file: {:?}\n",
                key.display().to_string()
            ),
        )
    });
    (configs, ports)
}

/// [`synced_configs`] edited by `edit`, each server's state in a directory of its own under
/// `state`, so that a restart finds it.
fn kept_configs(
    etcd: &Etcd,
    key: &std::path::Path,
    state: &std::path::Path,
    edit: impl Fn(&str) -> String,
) -> ([String; 2], [u16; 2]) {
    let (configs, ports) = synced_configs(etcd, key);
    let configs = [0, 1].map(|i| {
        let dir = state.join(i.to_string());
        std::fs::create_dir(&dir).expect("a state directory");
        edit(&configs[i]).replace("STATE_DIR", &dir.display().to_string())
    });
    (configs, ports)
}

/// Starts leader `a`, then standby `b`, each once it has its role.
fn start_pair(configs: &[String; 2]) -> (Lessor, Lessor) {
    let a = Lessor::start(None, &configs[0], &[]);
    wait_role(&a, "leader");
    let b = Lessor::start(None, &configs[1], &[]);
    wait_role(&b, "standby");
    (a, b)
}

/// [`start_pair`] of [`synced_configs`], with the ports.
fn synced_pair(etcd: &Etcd, key: &std::path::Path) -> (Lessor, Lessor, [u16; 2]) {
    let (configs, ports) = synced_configs(etcd, key);
    let (a, b) = start_pair(&configs);
    (a, b, ports)
}

/// Waits until `a`'s partner is in sync and `a`'s replies wait for it; `a`'s HA status.
fn wait_in_sync(a: &Lessor) -> Value {
    wait_ha("the standby to be in sync", || ha(a), in_sync)
}

/// Whether the leader whose `ha` object this is has its partner in sync and waits for it.
fn in_sync(ha: &Value) -> bool {
    ha["stream"]["state"] == "in-sync" && ha["stream"]["waiting-for-partner"] == true
}

#[test]
fn a_synced_standby_takes_over_every_lease_the_active_acked() {
    require_root();
    let etcd = Etcd::start();
    let key = stream_key('k');
    let (a, b, ports) = synced_pair(&etcd, key.path());
    let synced = wait_in_sync(&a);
    assert_eq!(synced["stream"]["partner"], "b", "{synced}");
    assert_eq!(synced["stream"]["keyed"], true, "{synced}");
    let before = ha(&b);

    // Four relays load the active with DORAs; it is killed -9 in the middle of them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let relays: Vec<_> = (1..=4u8)
        .map(|tag| {
            let (stop, acks) = (stop.clone(), acks.clone());
            let port = ports[0];
            std::thread::spawn(move || {
                let clients = Clients::new(tag);
                for n in 1..=2000u16 {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    if let Some(ip) = clients.dora(port, n) {
                        acks.lock().unwrap().push((ip, clients.mac(n), tag, n));
                    }
                }
            })
        })
        .collect();
    wait_until(ROLE_DEADLINE, "400 ACKs from the active", || {
        (acks.lock().unwrap().len() >= 400).then_some(())
    });
    let during = ha(&b);
    let dead = a.crash();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        (during["role"].as_str(), &during["transitions"]),
        (Some("standby"), &before["transitions"]),
        "the pair kept its roles under load: {during}"
    );
    for r in relays {
        r.join().expect("a relay thread");
    }
    let acked = acks.lock().unwrap().clone();
    let mut owners = std::collections::BTreeMap::new();
    for (ip, mac, _, _) in &acked {
        let other = owners.insert(*ip, mac.clone());
        assert!(
            other.as_ref().is_none_or(|o| o == mac),
            "{ip} was ACKed to {mac} and {other:?}"
        );
    }

    let leader = wait_role(&b, "leader");
    let held = bound(&b);
    eprintln!(
        "{} ACKs before the crash, {} leases bound in the new leader",
        acked.len(),
        held.len()
    );
    let lost: Vec<_> = acked
        .iter()
        .filter(|(ip, mac, _, _)| held.get(ip) != Some(mac))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} leases ACKed by the dead active are not bound in the new one, e.g. {:?}\n{}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)],
        dead.stderr
    );
    assert!(
        leader["stream"]["replayed-at-takeover"].as_u64() >= Some(acked.len() as u64),
        "{} ACKs: {leader}",
        acked.len()
    );

    // Clients come back to the new leader: each keeps its address, and a new client gets
    // none of theirs.
    answers(ports[1], 7);
    for (ip, mac, tag, n) in acked.iter().rev().take(20) {
        let clients = Clients::new(*tag);
        assert_eq!(clients.dora(ports[1], *n), Some(*ip), "client {mac}");
    }
    let newcomer = Clients::new(9)
        .dora(ports[1], 1)
        .expect("an ACK for a new client");
    assert!(
        !owners.contains_key(&newcomer),
        "{newcomer} is bound to {:?} already",
        owners.get(&newcomer)
    );
    let text = http(&b.control_url(), "GET", "/metrics", false, b"").1;
    assert!(
        text.contains("lessor_ha_stream_state{state=\"connecting\"} 1")
            || text.contains("lessor_ha_stream_state{state=\"alone\"} 1"),
        "the partner is dead: {text}"
    );
    promtool_check(&text);
    b.stop().assert_success();
}

#[test]
fn a_synced_leader_holds_acks_for_a_hung_partner_then_goes_on_alone() {
    require_root();
    let etcd = Etcd::start();
    let key = stream_key('k');
    let (a, b, ports) = synced_pair(&etcd, key.path());
    let in_sync = || wait_in_sync(&a);
    in_sync();
    let clients = Clients::new(5);
    assert!(
        clients.dora(ports[0], 1).is_some(),
        "in sync, the leader ACKs: {}\n{}",
        ha(&a),
        ha(&b)
    );

    // The standby hangs: its acks stop, and so do the leader's ACKs (OFFERs still go out).
    let signal = |sig: &str| {
        let sent = std::process::Command::new("kill")
            .args([sig, &b.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill {sig} of the standby");
    };
    signal("-STOP");
    assert_eq!(
        clients.dora(ports[0], 2),
        None,
        "an ACK went out unacknowledged"
    );
    let alone = wait_ha(
        "the leader to go on alone",
        || ha(&a),
        |ha| ha["stream"]["state"] == "alone",
    );
    assert_eq!(alone["stream"]["waiting-for-partner"], false, "{alone}");
    assert_eq!(alone["stream"]["alone"], 1, "{alone}");
    assert!(
        clients.dora(ports[0], 3).is_some(),
        "alone, the leader ACKs"
    );
    let text = http(&a.control_url(), "GET", "/metrics", false, b"").1;
    assert!(text.contains("lessor_ha_stream_alone_total 1"), "{text}");
    assert!(
        text.contains("lessor_ha_stream_state{state=\"alone\"} 1"),
        "{text}"
    );
    promtool_check(&text);

    // Back: it catches up, and replies wait for it again.
    signal("-CONT");
    let back = in_sync();
    assert_eq!(back["stream"]["lag"], 0, "{back}");
    assert!(
        clients.dora(ports[0], 4).is_some(),
        "in sync again, the leader ACKs"
    );
    let held = bound(&a);
    assert_eq!(held.len(), 4, "clients 1 to 4 are bound: {held:?}");
}

#[test]
fn a_standby_sweeps_no_lease_of_its_stale_engine() {
    require_root();
    let etcd = Etcd::start();
    let state = tempdir();
    let key = stream_key('k');
    // Short leases, and b's state kept across its restart.
    let (configs, ports) = kept_configs(&etcd, key.path(), state.path(), |c| {
        c.replace("lease_time: 3600", "lease_time: 2")
    });
    let (a, b) = start_pair(&configs);
    wait_in_sync(&a);
    let clients = Clients::new(6);
    for n in 1..=20 {
        assert!(clients.dora(ports[0], n).is_some(), "client {n}");
    }
    wait_ha(
        "b to have every lease",
        || ha(&a),
        |h| in_sync(h) && h["stream"]["lag"] == 0,
    );

    // Restarted on its state, b holds the 20 leases in its engines; they run out there while
    // it stands by. The leader sweeps them; b must not: an expiry of its own could outrank a
    // renewal the leader made meanwhile (docs/HA.md, "Standing by").
    b.stop().assert_success();
    let b = Lessor::start(None, &configs[1], &[]);
    let replayed = b.stdout_line("leases live");
    assert!(replayed.contains("20 leases live"), "{replayed}");
    wait_role(&b, "standby");
    std::thread::sleep(Duration::from_secs(5));
    let stopped = b.stop();
    stopped.assert_success();
    assert_eq!(stopped.counter("expired"), 0, "{}", stopped.stdout);
    let leader = a.stop();
    assert_eq!(leader.counter("expired"), 20, "{}", leader.stdout);
}

#[test]
fn a_returning_primary_resyncs_and_takes_the_lead_back() {
    require_root();
    let etcd = Etcd::start();
    let state = tempdir();
    let key = stream_key('k');
    // a is the primary, b the standby; both keep their state across a restart.
    let (configs, ports) = kept_configs(&etcd, key.path(), state.path(), |c| {
        c.replace("{ name: a,", "{ name: a, role: primary,")
            .replace("{ name: b,", "{ name: b, role: standby,")
    });
    let servers = ports.map(|p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));
    let b = Lessor::start(None, &configs[1], &[]);
    wait_role(&b, "leader");
    let load = Load::start(None, Ipv4Addr::LOCALHOST, servers);
    load.wait_more(50, "ACKs from b alone");

    // The primary comes up: it catches up from b, which then hands it the lead.
    let a = Lessor::start(None, &configs[0], &[]);
    let first = wait_role(&a, "leader");
    assert_eq!(first["leader"], "a", "{first}");
    wait_role(&b, "standby");
    load.wait_more(50, "ACKs from the primary");

    // It crashes, b takes over; restarted on its state it resyncs and leads again.
    load.step(1);
    a.crash();
    wait_role(&b, "leader");
    load.wait_more(50, "ACKs from b after the crash");
    let a = Lessor::start(None, &configs[0], &[]);
    let back = wait_role(&a, "leader");
    assert!(back["epoch"].as_u64() > first["epoch"].as_u64(), "{back}");
    wait_ha(
        "b to stand by for a",
        || ha(&b),
        |h| h["role"] == "standby" && h["leader"] == "a",
    );
    load.step(2);
    load.wait_more(50, "ACKs from the primary back");
    let acks = load.finish();
    let owners = owners(&acks);
    eprintln!("{} ACKs, {} addresses", acks.len(), owners.len());
    holds_all(&bound(&a), &owners, "the primary");

    // b, in sync, holds them all too: it leads with every one once a stops.
    wait_ha(
        "b in sync",
        || ha(&a),
        |h| in_sync(h) && h["stream"]["lag"] == 0,
    );
    a.stop().assert_success();
    wait_role(&b, "leader");
    holds_all(&bound(&b), &owners, "the standby");
    let stopped = b.stop();
    stopped.assert_success();
}

/// A leader fenced by an etcd outage and elected again, without a restart, streams the same
/// journal run in its new term: the standby goes on from its position, with no snapshot.
#[test]
fn a_leader_elected_again_resumes_its_stream_without_a_snapshot() {
    require_root();
    let etcd = Etcd::start();
    let key = stream_key('k');
    let (configs, ports) = synced_configs(&etcd, key.path());
    // a is the primary: once etcd is back, it leads again.
    let configs = configs.map(|c| {
        c.replace("{ name: a,", "{ name: a, role: primary,")
            .replace("{ name: b,", "{ name: b, role: standby,")
    });
    let (a, b) = start_pair(&configs);
    let first = wait_in_sync(&a);
    answers(ports[0], 1);
    let before = ha(&b);
    assert_eq!(before["stream"]["received"]["snapshots"], 1, "{before}");

    // etcd stops: a fences itself. When it resumes, b may lead for a moment, until it hands
    // the lead back to the primary; either way b still holds a's journal run, and a's new
    // term goes on from b's position.
    etcd.signal("STOP");
    wait_role(&a, "fenced");
    etcd.signal("CONT");
    let back = wait_role(&a, "leader");
    assert!(back["epoch"].as_u64() > first["epoch"].as_u64(), "{back}");
    wait_in_sync(&a);
    answers(ports[0], 2);
    let after = wait_ha(
        "b to hold a's new lease",
        || ha(&b),
        |h| h["stream"]["received"]["epoch"] == back["epoch"],
    );
    assert_eq!(
        after["stream"]["received"]["snapshots"], 1,
        "resumed, not resynced: {after}"
    );
    a.stop().assert_success();
    b.stop().assert_success();
}

#[test]
fn an_async_leader_holds_acks_past_its_lag_bound_then_goes_on_alone() {
    require_root();
    let etcd = Etcd::start();
    let key = stream_key('k');
    let (configs, ports) = synced_configs(&etcd, key.path());
    let configs = configs.map(|c| c.replace("sync: true", "sync: false\n  max_lag: 4"));
    let (a, b) = start_pair(&configs);
    let synced = wait_in_sync(&a);
    assert_eq!(synced["stream"]["max-lag"], 4, "{synced}");
    let clients = Clients::new(8);
    assert!(clients.dora(ports[0], 1).is_some(), "in sync, a ACKs");

    // The standby hangs: the leader goes on ACKing until it is four records ahead of the
    // standby's last ack, then holds its ACKs until it goes on alone.
    let signal = |sig: &str| {
        let sent = Command::new("kill")
            .args([sig, &b.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill {sig} of the standby");
    };
    signal("-STOP");
    let ahead = (2..=20).take_while(|&n| clients.dora(ports[0], n).is_some());
    let ahead = ahead.count();
    assert!(
        (1..=4).contains(&ahead),
        "{ahead} DORAs ACKed past a hung standby with max_lag 4"
    );
    wait_ha(
        "a to go on alone",
        || ha(&a),
        |h| h["stream"]["state"] == "alone",
    );
    assert!(clients.dora(ports[0], 30).is_some(), "alone, a ACKs");
    signal("-CONT");
    wait_in_sync(&a);
    assert!(
        clients.dora(ports[0], 31).is_some(),
        "in sync again, a ACKs"
    );
}

#[test]
fn a_standby_with_another_stream_key_is_refused() {
    require_root();
    let etcd = Etcd::start();
    let (key, other) = (stream_key('k'), stream_key('x'));
    let (mut configs, _) = synced_configs(&etcd, key.path());
    let path = |f: &tempfile::NamedTempFile| format!("{:?}", f.path().display().to_string());
    configs[1] = configs[1].replace(&path(&key), &path(&other));
    let (a, b) = start_pair(&configs);
    let synced = std::cell::Cell::new(false);
    let alone = wait_ha(
        "the leader to go on alone",
        || ha(&a),
        |h| {
            synced.set(synced.get() || h["stream"]["state"] == "in-sync");
            h["stream"]["state"] == "alone"
        },
    );
    assert!(!synced.get(), "the standby was in sync: {alone}");
    assert_eq!(alone["stream"]["acked"], 0, "{alone}");
    let error = alone["stream"]["last-error"].as_str().unwrap_or_default();
    assert!(error.contains("stream key mismatch"), "{alone}");
    let standby = ha(&b);
    let theirs = standby["stream"]["last-error"].as_str().unwrap_or_default();
    assert!(theirs.contains("stream key mismatch"), "{standby}");
    assert_eq!(standby["stream"]["received"]["snapshots"], 0, "{standby}");
}
