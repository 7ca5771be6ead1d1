//! Fixtures: network namespaces joined by veth links, a running `lessor`, and helpers that run
//! client tools under a deadline and read what they wrote.
//!
//! Nothing here asserts on timing: deadlines exist only so that a broken server fails a test
//! instead of hanging it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub(crate) const LESSOR: &str = env!("CARGO_BIN_EXE_lessor");

/// How long lessor may take to start listening (it is generous: 2 cores, other builds running).
const STARTUP: Duration = Duration::from_secs(20);
/// How long lessor may take to exit after SIGTERM before it is killed and the test fails.
const SHUTDOWN: Duration = Duration::from_secs(20);
/// The deadline given to each client run (`timeout` kills it after this).
pub(crate) const CLIENT_DEADLINE_SECS: u32 = 60;

/// A name fragment unique to this test process and call: `<pid>n<k>`.
///
/// Interface names derive from it, so it must stay short: `lc` + 7 pid digits + `n` + 2 counter
/// digits + 1 suffix letter is 13 characters, within Linux's 15.
pub(crate) fn unique() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}n{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Taken by the tests that load both cores with perfdhcp at thousands of exchanges a second,
/// and by those whose tshark capture must see every ACK: run side by side on a 2-core
/// machine, the load starved dumpcap and captures missed ACKs that perfdhcp received (the
/// check that every ACK is bound then failed for the capture's sake). They take turns.
pub(crate) fn heavy_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fails the test unless it runs as root: namespaces and raw client sockets need it, and CI runs
/// as root, so a non-root run is a broken setup, not a reason to skip.
pub(crate) fn require_root() {
    let status = fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_owned();
    assert_eq!(
        euid, "0",
        "these end-to-end tests create network namespaces and run DHCP clients, so they must run \
         as root (effective uid here is {euid}); run `cargo test` as root, as CI does"
    );
}

/// The path of an installed tool, searched in PATH and the sbin directories (which a non-login
/// root shell may lack). Fails the test, naming the tool, when it is missing.
pub(crate) fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed (not in PATH, /usr/sbin or /sbin); these end-to-end \
                 tests need it (tests/run installs it on Debian)"
            )
        })
}

/// A fresh temporary directory, removed on drop.
pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("creating a temporary directory")
}

/// Runs `ip ARGS`, failing the test with its stderr when it fails.
pub(crate) fn ip(args: &[&str]) {
    let out = Command::new(tool("ip"))
        .args(args)
        .output()
        .expect("running ip");
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A network namespace with `lo` up, deleted on drop together with every process still in it.
#[derive(Debug)]
pub(crate) struct Ns {
    name: String,
}

impl Ns {
    /// Creates namespace `name` (which must be unique: see [`unique`]).
    pub(crate) fn new(name: String) -> Ns {
        require_root();
        ip(&["netns", "add", &name]);
        // From here on Drop removes it, even if the next step fails.
        let ns = Ns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` in this namespace (`ip netns exec` execs it in place, so the
    /// child's PID is the program's).
    pub(crate) fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(tool("ip"));
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// A command that runs the tool `name` in this namespace under `timeout`, so that a client
    /// that never gets an answer is killed instead of hanging the test.
    pub(crate) fn timed(&self, name: &str) -> Command {
        let mut c = self.cmd(tool("timeout"));
        c.args(["-k", "5", &CLIENT_DEADLINE_SECS.to_string()])
            .arg(tool(name));
        c
    }

    /// Runs `f` on a thread that has entered this namespace (`setns`), so sockets it opens
    /// live there; the calling thread stays where it is. Panics in `f` fail the test.
    pub(crate) fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn_in(f)
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Starts `f` on a thread that has entered this namespace, as [`Ns::run_in`] does, without
    /// waiting for it.
    pub(crate) fn spawn_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        thread::spawn(move || {
            let file = fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("entering {path}: {e}"));
            f()
        })
    }

    /// PIDs of the processes running in this namespace.
    fn pids(&self) -> Vec<String> {
        Command::new(tool("ip"))
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // Whatever still runs in a namespace this test created was started by this test (a
        // daemonised dhclient, dhcpcd helpers): kill those, by PID, so the namespace and its
        // links really go away.
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in &pids {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
            thread::sleep(Duration::from_millis(100));
        }
        let ok = Command::new(tool("ip"))
            .args(["netns", "del", &self.name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("warning: could not delete network namespace {}", self.name);
        }
    }
}

/// One client end: its namespace and the interface in it that faces the server.
#[derive(Debug)]
pub(crate) struct ClientLink {
    /// The client's namespace.
    pub(crate) ns: Ns,
    /// Its interface (up, no address).
    pub(crate) ifname: String,
}

impl ClientLink {
    /// Sets the interface's MAC address (down, change, up).
    pub(crate) fn set_mac(&self, mac: &str) {
        let n = self.ns.name();
        ip(&["-n", n, "link", "set", "dev", &self.ifname, "down"]);
        ip(&["-n", n, "link", "set", "dev", &self.ifname, "address", mac]);
        ip(&["-n", n, "link", "set", "dev", &self.ifname, "up"]);
    }

    /// The interface's MAC address.
    pub(crate) fn mac(&self) -> String {
        let path = format!("/sys/class/net/{}/address", self.ifname);
        let out = self
            .ns
            .cmd(tool("cat"))
            .arg(&path)
            .output()
            .expect("reading the MAC");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// The server's address on the test link, and its subnet.
pub(crate) const SERVER_ADDR: &str = "10.231.0.1";

/// A server namespace and client namespaces joined by veth links, as in BENCHMARKING.md.
///
/// The server's interface (`server_if`) holds 10.231.0.1/24; client interfaces are up with no
/// address. Everything is removed on drop (the namespaces, hence the links, and the processes
/// left in them). Links are created directly inside their namespaces, so their names never
/// meet in the root namespace.
#[derive(Debug)]
pub(crate) struct Netns {
    /// Where lessor runs.
    pub(crate) server: Ns,
    /// The interface lessor must serve (`interfaces: [..]`).
    pub(crate) server_if: String,
    /// The clients' ends.
    pub(crate) clients: Vec<ClientLink>,
}

impl Netns {
    /// One client on a veth pair `ls<id>` / `lc<id>`; the server's address is on `ls<id>`.
    pub(crate) fn new() -> Netns {
        require_root();
        let id = unique();
        let server = Ns::new(format!("lsrv-{id}"));
        let server_if = format!("ls{id}");
        let client = Self::link(
            &server,
            &server_if,
            &format!("lcli-{id}"),
            format!("lc{id}"),
        );
        ip(&[
            "-n",
            server.name(),
            "addr",
            "add",
            &format!("{SERVER_ADDR}/24"),
            "dev",
            &server_if,
        ]);
        Netns {
            server,
            server_if,
            clients: vec![client],
        }
    }

    /// `n` clients, each in its own namespace, whose veths meet on a bridge `lb<id>` in the
    /// server's namespace; the server's address is on the bridge.
    pub(crate) fn bridged(n: usize) -> Netns {
        require_root();
        let id = unique();
        let server = Ns::new(format!("lsrv-{id}"));
        let bridge = format!("lb{id}");
        let s = server.name().to_owned();
        ip(&[
            "-n",
            &s,
            "link",
            "add",
            &bridge,
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        ip(&[
            "-n",
            &s,
            "addr",
            "add",
            &format!("{SERVER_ADDR}/24"),
            "dev",
            &bridge,
        ]);
        ip(&["-n", &s, "link", "set", &bridge, "up"]);
        let clients = (0..n)
            .map(|i| {
                let c = char::from(b'a' + u8::try_from(i).expect("few clients"));
                let port = format!("ls{id}{c}");
                let link = Self::link(
                    &server,
                    &port,
                    &format!("lcli-{id}-{c}"),
                    format!("lc{id}{c}"),
                );
                ip(&["-n", &s, "link", "set", &port, "master", &bridge]);
                link
            })
            .collect();
        Netns {
            server,
            server_if: bridge,
            clients,
        }
    }

    /// Creates a client namespace `ns` and a veth pair `server_if` (in `server`) / `ifname` (in
    /// the client namespace), both up.
    fn link(server: &Ns, server_if: &str, ns: &str, ifname: String) -> ClientLink {
        let cns = Ns::new(ns.to_owned());
        ip(&[
            "link",
            "add",
            server_if,
            "netns",
            server.name(),
            "type",
            "veth",
            "peer",
            "name",
            &ifname,
            "netns",
            cns.name(),
        ]);
        ip(&["-n", server.name(), "link", "set", server_if, "up"]);
        ip(&["-n", cns.name(), "link", "set", &ifname, "up"]);
        ClientLink { ns: cns, ifname }
    }

    /// The first (often only) client.
    pub(crate) fn client(&self) -> &ClientLink {
        &self.clients[0]
    }

    /// Readies the links for DHCPv6: duplicate address detection off on both ends (then the
    /// links bounce, so their link-local addresses come back without it), the server's
    /// [`SERVER_ADDR6`]/64 on its interface, and a wait until no address is tentative any more
    /// (a client cannot send from a tentative link-local address).
    pub(crate) fn enable_v6(&self) {
        let mut ends: Vec<(&Ns, &str)> = vec![(&self.server, self.server_if.as_str())];
        ends.extend(self.clients.iter().map(|c| (&c.ns, c.ifname.as_str())));
        for (ns, ifname) in &ends {
            for key in ["all", "default", ifname] {
                sysctl(ns, &format!("net/ipv6/conf/{key}/accept_dad"), "0");
                sysctl(ns, &format!("net/ipv6/conf/{key}/disable_ipv6"), "0");
            }
            ip(&["-n", ns.name(), "link", "set", ifname, "down"]);
            ip(&["-n", ns.name(), "link", "set", ifname, "up"]);
        }
        ip(&[
            "-n",
            self.server.name(),
            "addr",
            "add",
            &format!("{SERVER_ADDR6}/64"),
            "dev",
            &self.server_if,
            "nodad",
        ]);
        for (ns, ifname) in &ends {
            wait_until(Duration::from_secs(10), "IPv6 addresses ready", || {
                let out = ns
                    .cmd(tool("ip"))
                    .args(["-6", "addr", "show", "dev", ifname])
                    .output()
                    .ok()?;
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                (text.contains("fe80::") && !text.contains("tentative")).then_some(())
            });
        }
    }
}

/// The server's IPv6 address on the test link (see [`Netns::enable_v6`]), in fd00:231::/64.
pub(crate) const SERVER_ADDR6: &str = "fd00:231::1";

/// Sets `/proc/sys/{key}` inside a namespace (its network sysctls are its own), failing the
/// test if it cannot. Through `sh`, so the tests do not need procps.
fn sysctl(ns: &Ns, key: &str, value: &str) {
    let status = ns
        .cmd(tool("sh"))
        .args(["-c", &format!("echo {value} > /proc/sys/{key}")])
        .status()
        .expect("running sh");
    assert!(
        status.success(),
        "setting {key} = {value} in {} failed",
        ns.name()
    );
}

/// Lines read from one of lessor's output streams, as they arrive.
#[derive(Debug, Default)]
struct Stream {
    state: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Stream {
    fn follow(self: &Arc<Self>, r: impl Read + Send + 'static) -> thread::JoinHandle<()> {
        let me = Arc::clone(self);
        thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                let mut s = me.state.lock().unwrap_or_else(|e| e.into_inner());
                s.0.push(line);
                me.changed.notify_all();
            }
            let mut s = me.state.lock().unwrap_or_else(|e| e.into_inner());
            s.1 = true;
            me.changed.notify_all();
        })
    }

    fn text(&self) -> String {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0.join("\n")
    }

    /// Waits until a line contains `needle` (true) or the stream ends or `deadline` passes (false).
    fn wait_for(&self, needle: &str, deadline: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.0.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let now = Instant::now();
            if s.1 || now >= deadline {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Tests run many servers at once: each one's control server takes a port of the kernel's
/// choice unless the test's config places it.
fn any_control_port() -> Vec<String> {
    vec!["--control".to_owned(), "127.0.0.1:0".to_owned()]
}

/// A running `lessor`, started on a config file in a temporary directory and stopped with
/// SIGTERM on drop.
#[derive(Debug)]
pub(crate) struct Lessor {
    child: Option<Child>,
    stdout: Arc<Stream>,
    stderr: Arc<Stream>,
    readers: Vec<thread::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

/// What a stopped lessor left behind.
#[derive(Debug)]
pub(crate) struct Stopped {
    /// Its exit status.
    pub(crate) status: ExitStatus,
    /// Everything it printed on stdout.
    pub(crate) stdout: String,
    /// Everything it printed on stderr (its log).
    pub(crate) stderr: String,
}

impl Stopped {
    /// The counters of the shutdown summary (`lessor: received=.. offers=.. ...`), by name.
    pub(crate) fn counters(&self) -> BTreeMap<String, u64> {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("lessor: received="))
            .unwrap_or_else(|| panic!("no counter summary on lessor's stdout:\n{}", self.stdout));
        line.trim_start_matches("lessor: ")
            .split_whitespace()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect()
    }

    /// One counter, 0 when the summary does not list it (drop reasons appear only once seen).
    pub(crate) fn counter(&self, name: &str) -> u64 {
        self.counters().get(name).copied().unwrap_or(0)
    }
}

impl Lessor {
    /// Writes `config` (in which `STATE_DIR` stands for a fresh temporary directory) and starts
    /// `lessor --config FILE ARGS` in `ns` (or in the test's own namespace), then waits until it
    /// says it is listening.
    pub(crate) fn start(ns: Option<&Ns>, config: &str, args: &[&str]) -> Lessor {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let state = dir.path().join("state");
        fs::create_dir(&state).expect("creating the state directory");
        let config = config.replace("STATE_DIR", &state.display().to_string());
        let file = dir.path().join("lessor.yaml");
        fs::write(&file, &config).expect("writing the config");
        let mut full = vec!["--config".to_owned(), file.display().to_string()];
        if !config.lines().any(|l| l.starts_with("control:")) {
            full.extend(any_control_port());
        }
        full.extend(args.iter().map(|&a| a.to_owned()));
        Self::spawn(ns, &full, dir)
    }

    /// Starts `lessor ARGS` without a config file (its embedded loopback default).
    pub(crate) fn start_default(ns: Option<&Ns>, args: &[&str]) -> Lessor {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let mut full = any_control_port();
        full.extend(args.iter().map(|&a| a.to_owned()));
        Self::spawn(ns, &full, dir)
    }

    /// The control server's base URL (`http://127.0.0.1:PORT`), from the startup message.
    pub(crate) fn control_url(&self) -> String {
        let out = self.stdout();
        out.lines()
            .find_map(|l| l.strip_prefix("lessor: control on "))
            .unwrap_or_else(|| panic!("lessor did not say where its control server is:\n{out}"))
            .to_owned()
    }

    fn spawn(ns: Option<&Ns>, args: &[String], dir: tempfile::TempDir) -> Lessor {
        let mut cmd = match ns {
            Some(ns) => ns.cmd(LESSOR),
            None => Command::new(LESSOR),
        };
        let mut child = cmd
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {LESSOR}: {e}"));
        let stdout = Arc::new(Stream::default());
        let stderr = Arc::new(Stream::default());
        let out: ChildStdout = child.stdout.take().expect("piped stdout");
        let err: ChildStderr = child.stderr.take().expect("piped stderr");
        let readers = vec![stdout.follow(out), stderr.follow(err)];
        let mut me = Lessor {
            child: Some(child),
            stdout,
            stderr,
            readers,
            dir,
        };
        // The startup summary ("... leases live ...") comes after every "listening on" line
        // (DHCPv4's, then DHCPv6's): waiting for it means every socket is open.
        if !me.stdout.wait_for("leases live", Instant::now() + STARTUP) {
            let status = me.kill();
            panic!(
                "lessor {} did not say it was listening within {STARTUP:?} ({status});\n\
                 stdout:\n{}\nstderr:\n{}",
                args.join(" "),
                me.stdout.text(),
                me.stderr.text()
            );
        }
        me
    }

    /// The PID of the lessor process.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What lessor printed on stdout so far.
    pub(crate) fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// The temporary directory holding the config and state.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops lessor with SIGTERM and returns what it printed; fails the test if it does not
    /// exit within the shutdown deadline.
    pub(crate) fn stop(self) -> Stopped {
        self.stop_with("TERM")
    }

    /// Stops lessor with `signal` (`TERM` or `INT`).
    pub(crate) fn stop_with(mut self, signal: &str) -> Stopped {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "could not send SIG{signal} to lessor (pid {pid})");
        let status = self.wait(SHUTDOWN);
        let status = match status {
            Some(s) => s,
            None => {
                let s = self.kill();
                panic!(
                    "lessor did not exit within {SHUTDOWN:?} of SIG{signal} (killed: {s});\n\
                     stdout:\n{}\nstderr:\n{}",
                    self.stdout.text(),
                    self.stderr.text()
                );
            }
        };
        self.stopped(status)
    }

    /// Joins the output readers of an exited lessor and returns what it left behind.
    fn stopped(&mut self, status: ExitStatus) -> Stopped {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Stopped {
            status,
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        }
    }

    /// Waits up to `limit` for the child to exit.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => {
                    self.child = None;
                    return Some(s);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => return None,
            }
        }
    }

    /// Kills the child (our own, by PID) and reaps it.
    fn kill(&mut self) -> String {
        match self.child.take() {
            Some(mut c) => {
                let _ = c.kill();
                c.wait().map_or_else(|e| e.to_string(), |s| s.to_string())
            }
            None => "already exited".to_owned(),
        }
    }
}

impl Drop for Lessor {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        if self.wait(SHUTDOWN).is_none() {
            self.kill();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        if thread::panicking() {
            eprintln!(
                "--- lessor stdout:\n{}\n--- lessor stderr:\n{}",
                self.stdout.text(),
                self.stderr.text()
            );
        }
    }
}

/// Runs `cmd` to completion with stdout and stderr going to `log` (files, not pipes: a client
/// that daemonises must not keep the test waiting on a pipe). Returns its status and the log.
pub(crate) fn run_logged(cmd: &mut Command, log: &Path) -> (ExitStatus, String) {
    let status = spawn_logged(cmd, log)
        .wait()
        .unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}"));
    (status, fs::read_to_string(log).unwrap_or_default())
}

/// Starts `cmd` with stdout and stderr going to `log`.
pub(crate) fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let f = fs::File::create(log).expect("creating a log file");
    let g = f.try_clone().expect("duplicating a file handle");
    cmd.stdin(Stdio::null())
        .stdout(f)
        .stderr(g)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

/// Waits for a perfdhcp started with [`spawn_logged`] into `log` and returns its output;
/// fails the test unless it exited 0 or 3 (3: some exchanges were not answered in time).
pub(crate) fn finish_perfdhcp(mut perf: Child, log: &Path) -> String {
    let status = perf.wait().expect("waiting for perfdhcp");
    let out = fs::read_to_string(log).unwrap_or_default();
    assert!(
        status.success() || status.code() == Some(3),
        "perfdhcp: {status}\n{out}"
    );
    out
}

/// Writes an executable shell script.
pub(crate) fn write_script(path: &Path, body: &str) {
    fs::write(path, body).expect("writing a script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod a script");
}

/// Polls `f` until it returns `Some`, or fails the test after `limit` naming `what`.
pub(crate) fn wait_until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The records a client hook script appended to `path`: blocks of `key=value` lines, each
/// block ended by a line `--`.
pub(crate) fn read_records(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = fs::read_to_string(path).unwrap_or_default();
    // Only whole blocks: a hook may be appending one while we read.
    let whole = text.rfind("\n--\n").map_or(0, |i| i + 4);
    text[..whole]
        .split("\n--\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            b.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
                .collect()
        })
        .collect()
}

/// Whether `addr` (dotted quad) lies in `first..=last` of 10.231.0.0/24.
pub(crate) fn in_range(addr: &str, first: u8, last: u8) -> bool {
    addr.strip_prefix("10.231.0.")
        .and_then(|h| h.parse::<u8>().ok())
        .is_some_and(|h| (first..=last).contains(&h))
}

impl Lessor {
    /// Waits until a line of lessor's stdout contains `needle` and returns that line; fails the
    /// test (with everything lessor printed) if none does within the startup deadline.
    pub(crate) fn stdout_line(&self, needle: &str) -> String {
        let found = self.stdout.wait_for(needle, Instant::now() + STARTUP);
        let text = self.stdout.text();
        assert!(
            found,
            "lessor printed no line containing {needle:?} within {STARTUP:?};\nstdout:\n{text}\n\
             stderr:\n{}",
            self.stderr.text()
        );
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_owned()
    }

    /// What lessor logged on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Kills lessor with SIGKILL: a crash, with no shutdown and no final sync. Returns what it
    /// printed up to then.
    pub(crate) fn crash(mut self) -> Stopped {
        let mut child = self.child.take().expect("lessor is running");
        // Child::kill sends SIGKILL, to our own child by PID (`ip netns exec` execs in place).
        child.kill().expect("sending SIGKILL to lessor");
        let status = child.wait().expect("reaping lessor");
        self.stopped(status)
    }
}

/// perfdhcp's report: `section -> key -> value` for the integer-valued lines, e.g.
/// `"DISCOVER-OFFER" -> "sent packets" -> 2500`.
pub(crate) type Report =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>;

/// Parses perfdhcp's statistics output into a [`Report`].
pub(crate) fn perfdhcp_report(out: &str) -> Report {
    let mut report = Report::new();
    let mut section = String::new();
    for line in out.lines().map(str::trim) {
        if let Some(h) = line.strip_prefix("***").and_then(|l| l.strip_suffix("***")) {
            section = h.strip_prefix("Statistics for: ").unwrap_or(h).to_owned();
            continue;
        }
        if let Some((k, v)) = line.split_once(": ")
            && let Ok(v) = v.trim().parse::<u64>()
        {
            report
                .entry(section.clone())
                .or_default()
                .insert(k.to_owned(), v);
        }
    }
    report
}

impl Stopped {
    /// Asserts that lessor exited 0, and returns itself for the counter checks that follow.
    pub(crate) fn assert_success(&self) -> &Stopped {
        self.assert_success_because("")
    }

    /// [`Stopped::assert_success`], with `hint` (what a failure likely means) in the message.
    pub(crate) fn assert_success_because(&self, hint: &str) -> &Stopped {
        assert!(
            self.status.success(),
            "lessor exited with {}{hint}:\n{}",
            self.status,
            self.stderr
        );
        self
    }

    /// Asserts each named counter of the shutdown summary against its expected [`Count`].
    #[track_caller]
    pub(crate) fn assert_counters(&self, want: &[(&str, Count)]) -> &Stopped {
        for &(name, count) in want {
            let got = self.counter(name);
            let ok = match count {
                Count::AtLeast(n) => got >= n,
                Count::Exactly(n) => got == n,
            };
            assert!(
                ok,
                "counter {name} is {got}, want {count:?}:\n{}",
                self.stdout
            );
        }
        self
    }
}

/// What [`Stopped::assert_counters`] expects of one counter.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    AtLeast(u64),
    Exactly(u64),
}

/// The shell line a hook script uses to record `vars` (shell expressions by name) in `out`.
pub(crate) fn record_line<V: AsRef<str>>(vars: &[(&str, V)], out: &Path) -> String {
    let fields: Vec<String> = vars
        .iter()
        .map(|(k, v)| format!("\"{k}={}\"", v.as_ref()))
        .collect();
    format!(
        "printf '%s\\n' {} -- >> '{}'",
        fields.join(" "),
        out.display()
    )
}

/// A one-shot run of a real DHCP client (udhcpc, dhcpcd) on a client link, with a hook script
/// of ours that records the client's variables (see `read_records`).
///
/// Its files are `DIR/NAME-IFNAME.{sh,env,log,conf}`, so two runs on different links or of
/// different clients never share one.
pub(crate) struct HookedClient<'a> {
    link: &'a ClientLink,
    name: &'static str,
    dir: PathBuf,
}

impl<'a> HookedClient<'a> {
    /// The client program `name` on `link` whose hook records `vars` (shell expressions by name).
    pub(crate) fn new<V: AsRef<str>>(
        link: &'a ClientLink,
        dir: &Path,
        name: &'static str,
        vars: &[(&str, V)],
    ) -> HookedClient<'a> {
        let me = HookedClient {
            link,
            name,
            dir: dir.to_owned(),
        };
        let record = record_line(vars, &me.file("env"));
        write_script(&me.file("sh"), &format!("#!/bin/sh\n{record}\nexit 0\n"));
        me
    }

    /// The client's file with extension `ext`.
    pub(crate) fn file(&self, ext: &str) -> PathBuf {
        self.dir
            .join(format!("{}-{}.{ext}", self.name, self.link.ifname))
    }

    /// Runs `NAME ARGS HOOK_FLAG HOOK TAIL` in the link's namespace under the deadline and
    /// asserts it exited 0 (after removing `leftover`, a file the client keeps outside our
    /// directory); returns the records whose `key` is one of `reasons` (at least one) and the
    /// client's log.
    pub(crate) fn run(
        &self,
        args: &[&str],
        hook_flag: &str,
        tail: &[&str],
        (key, reasons): (&str, &[&str]),
        leftover: Option<String>,
    ) -> (Vec<BTreeMap<String, String>>, String) {
        let mut cmd = self.link.ns.timed(self.name);
        cmd.args(args)
            .arg(hook_flag)
            .arg(self.file("sh"))
            .args(tail);
        let (status, text) = run_logged(&mut cmd, &self.file("log"));
        if let Some(f) = leftover {
            let _ = fs::remove_file(f);
        }
        assert!(status.success(), "{} failed: {status}\n{text}", self.name);
        let recs: Vec<_> = read_records(&self.file("env"))
            .into_iter()
            .filter(|r| reasons.contains(&r[key].as_str()))
            .collect();
        assert!(
            !recs.is_empty(),
            "{} exited 0 but its hook saw no binding ({key} in {reasons:?}):\n{text}",
            self.name
        );
        (recs, text)
    }
}

/// Shell variables recorded under their own names (`name=$name`), for `record_line`.
pub(crate) fn same_named<'v>(names: &[&'v str]) -> Vec<(&'v str, String)> {
    names.iter().map(|v| (*v, format!("${v}"))).collect()
}
