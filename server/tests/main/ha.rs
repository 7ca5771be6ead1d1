//! High availability, part 1 (docs/HA.md): two lessor servers in hot-standby on a three-member
//! etcd cluster, all on loopback. Only the leader answers; when it is killed the standby takes
//! the leader key with a higher epoch and answers; when etcd stops answering the leader fences
//! itself, and takes its role back once etcd is back.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Lessor, require_root, spawn_logged, tempdir, tool, unique, wait_until};
use crate::kea_client::{http, promtool_check};

/// Generous: a takeover needs the old lease's TTL (3 s) plus a few ticks.
const ROLE_DEADLINE: Duration = Duration::from_secs(30);

/// Free TCP ports on loopback, as the kernel hands them out.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// A three-member etcd cluster on loopback, killed (and its data removed) on drop.
struct Etcd {
    members: Vec<Child>,
    clients: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempdir();
        let ports = free_ports(6);
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let clients: Vec<String> = (0..3)
            .map(|i| format!("http://127.0.0.1:{}", ports[2 * i]))
            .collect();
        let initial: Vec<String> = (0..3).map(|i| format!("e{i}={}", peer(i))).collect();
        let mut etcd = Etcd {
            members: Vec::new(),
            clients,
            _dir: dir,
        };
        let token = unique();
        for i in 0..3 {
            let data = etcd._dir.path().join(format!("e{i}"));
            let mut cmd = Command::new(tool("etcd"));
            cmd.args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &etcd.clients[i]])
                .args(["--advertise-client-urls", &etcd.clients[i]])
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token]);
            let log = etcd._dir.path().join(format!("e{i}.log"));
            etcd.members.push(spawn_logged(&mut cmd, &log));
        }
        let endpoints = etcd.clients.join(",");
        wait_until(ROLE_DEADLINE, "the etcd cluster to be healthy", || {
            Command::new(tool("etcdctl"))
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &endpoints, "endpoint", "health"])
                .output()
                .ok()
                .filter(|o| o.status.success())
        });
        etcd
    }

    /// The index of a member that is not etcd's raft leader.
    fn follower(&self) -> usize {
        let out = Command::new(tool("etcdctl"))
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.clients.join(","), "endpoint", "status"])
            .args(["-w", "json"])
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

/// The config of server `node` of the pair, answering DHCP on `port`.
fn config(node: &str, port: u16, cluster: &str, etcd: &Etcd) -> String {
    let endpoints: Vec<String> = etcd.clients.iter().map(|c| format!("{c:?}")).collect();
    format!(
        r#"port: {port}
state_dir: STATE_DIR
workers: 1
v4:
  lease_time: 3600
  subnets:
    - subnet: 10.234.0.0/24
      relays: [ 127.0.0.1 ]
      pools: [ "10.234.0.10-10.234.0.200" ]
ha:
  mode: hot-standby
  node: {node}
  cluster: {cluster}
  lease_ttl: 3
  etcd: [ {} ]
  peers:
    - {{ name: a, url: "http://127.0.0.1:1" }}
    - {{ name: b, url: "http://127.0.0.1:2" }}
"#,
        endpoints.join(", ")
    )
}

/// `status-get`'s `ha` object.
fn ha(lessor: &Lessor) -> Value {
    let cmd = json!({"command": "status-get"}).to_string();
    let (status, body) = http(&lessor.control_url(), "POST", "/", false, cmd.as_bytes());
    assert_eq!(status, 200, "{body}");
    let answers: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    answers[0]["arguments"]["ha"].clone()
}

/// Waits until `lessor` reports `role`, and returns its `ha` object then.
fn wait_role(lessor: &Lessor, role: &str) -> Value {
    wait_until(ROLE_DEADLINE, &format!("role {role}"), || {
        let ha = ha(lessor);
        (ha["role"] == role).then_some(ha)
    })
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
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .expect("a free UDP port")
                .port()
        })
        .collect();
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
