//! A network namespace for one test, made with `ip netns add` and deleted on drop (also when the
//! test panics), and a way to run code inside it.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use lessor_net::interface_index;
use nix::sched::{CloneFlags, setns};
use socket2::{Domain, Protocol, Type};

/// What these tests need, repeated in every failure message so a CI log says what is missing.
const NEEDS: &str =
    "the namespace tests need iproute2 (`ip`) and root (CAP_SYS_ADMIN, CAP_NET_ADMIN)";

/// A named network namespace, `lessor-net-test-<pid>-<tag>`.
#[derive(Debug)]
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    /// Create the namespace, or panic saying why not.
    pub(crate) fn new(tag: &str) -> Self {
        let name = format!("lessor-net-test-{}-{tag}", std::process::id());
        // A namespace of this name can only be left over from a killed run whose pid was
        // reused; remove it quietly so `add` does not fail with "File exists".
        if std::path::Path::new(&format!("/var/run/netns/{name}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name, for `ip ... netns NAME`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Run `ip -n NAME ARGS...`, panicking with its stderr if it fails.
    pub(crate) fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Waits until `dev` reports operstate UP. A veth's carrier is applied asynchronously by the
    /// kernel's linkwatch (up to a second after `ip link set up`); until then its queueing
    /// discipline is still the no-op one and drops what is sent, which made exchanges right
    /// after setup fail about once in a hundred runs.
    pub(crate) fn wait_up(&self, dev: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let out = Command::new("ip")
                .args(["-n", self.name.as_str(), "-br", "link", "show", "dev", dev])
                .output()
                .unwrap_or_else(|e| panic!("cannot run ip: {e}; {NEEDS}"));
            let text = String::from_utf8_lossy(&out.stdout);
            if text.split_whitespace().nth(1) == Some("UP") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{dev} in {} never came up: {text}",
                self.name
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Run `f` on a fresh thread that has joined this namespace (setns affects only the calling
    /// thread, so the test's own thread stays where it was). Sockets made inside stay in the
    /// namespace wherever they are used afterwards. A panic in `f` is re-raised here.
    pub(crate) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            let worker = s.spawn(move || {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}; {NEEDS}"));
                setns(&ns, CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns({path}): {e}; {NEEDS}"));
                f()
            });
            match worker.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A UDP socket made inside the namespace: `prepare` sets its options, then it is bound to
    /// `addr` and given a 10 s receive timeout, so that a datagram that never comes fails the
    /// test instead of hanging it.
    pub(crate) fn udp_socket(
        &self,
        addr: SocketAddr,
        prepare: impl FnOnce(&socket2::Socket) + Send,
    ) -> UdpSocket {
        self.run(|| {
            let domain = Domain::for_address(addr);
            let s = socket2::Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
            prepare(&s);
            s.bind(&addr.into())
                .unwrap_or_else(|e| panic!("bind {addr} in {}: {e}", self.name));
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("receive timeout");
            UdpSocket::from(s)
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its interfaces, and with a veth end the whole pair.
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: `ip netns del {}` failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("warning: cannot run `ip netns del {}`: {e}", self.name),
        }
    }
}

/// Run `ip ARGS...`, panicking with a clear message if `ip` is missing or the command fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}; {NEEDS}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {}; {NEEDS}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Two fresh namespaces joined by a veth pair, both ends up: `v0` in the server's (`{tag}-s`),
/// `v1` in the client's (`{tag}-c`).
pub(crate) struct VethLink {
    // Field order is drop order: the client namespace goes first, then the server's (and with
    // it the veth pair).
    pub(crate) client: Netns,
    pub(crate) server: Netns,
    /// `v0`'s index, in the server namespace.
    pub(crate) v0: u32,
    /// `v1`'s index, in the client namespace.
    pub(crate) v1: u32,
}

/// A [`VethLink`] tagged `tag`; `configure(server, client)` sets what must be set while the
/// ends are still down (addresses, options). Returns once both ends report UP.
pub(crate) fn veth_link(tag: &str, configure: impl FnOnce(&Netns, &Netns)) -> VethLink {
    let server = Netns::new(&format!("{tag}-s"));
    let client = Netns::new(&format!("{tag}-c"));
    server.ip(&[
        "link",
        "add",
        "v0",
        "type",
        "veth",
        "peer",
        "name",
        "v1",
        "netns",
        client.name(),
    ]);
    configure(&server, &client);
    server.ip(&["link", "set", "v0", "up"]);
    client.ip(&["link", "set", "v1", "up"]);
    server.wait_up("v0");
    client.wait_up("v1");
    let v0 = server.run(|| interface_index("v0")).expect("index of v0");
    let v1 = client.run(|| interface_index("v1")).expect("index of v1");
    VethLink {
        client,
        server,
        v0,
        v1,
    }
}
