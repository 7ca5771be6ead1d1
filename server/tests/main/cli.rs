//! The `lessor` command line: `check-config`, startup errors, the embedded default config and
//! the `--port` / `--workers` overrides, and stopping on SIGTERM / SIGINT.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{LESSOR, Lessor, Ns, unique};

/// The handler tests' config, with the top-level keys a served config has.
const GOOD: &str = concat!(
    "interfaces: [ls0]\nstate_dir: /tmp/lessor-cli-test-state\nworkers: 2\n",
    include_str!("../fixtures/v4.yaml")
);

/// A config whose only pool starts after it ends.
const BAD_POOL: &str = r#"port: 6767
v4:
  subnets:
    - subnet: 10.231.0.0/24
      pools: [ "10.231.0.199-10.231.0.100" ]
"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("writing a config");
    p
}

/// Runs `lessor ARGS` to completion; it must exit within a deadline (these commands never serve).
fn lessor(args: &[&std::ffi::OsStr]) -> Output {
    let mut child = Command::new(LESSOR)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting lessor");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("polling lessor").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reaping lessor");
            panic!(
                "lessor {args:?} did not exit within 30 s; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
        .wait_with_output()
        .expect("collecting lessor's output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_config_accepts_a_good_file_and_prints_the_effective_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(&dir, "good.yaml", GOOD);
    let out = lessor(&["check-config".as_ref(), file.as_os_str()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "check-config failed ({}):\n{stderr}",
        out.status
    );
    for needle in [
        "10.231.0.0/24",
        "10.231.0.100",
        "10.231.0.103",
        "02:23:10:00:00:50",
        "10.231.0.50",
        "printer",
        "example.test",
        "lease_time",
        "/tmp/lessor-cli-test-state",
    ] {
        assert!(
            stdout.contains(needle),
            "effective config lacks {needle:?}:\n{stdout}"
        );
    }

    // The effective config is itself a valid config, and a fixed point.
    let again = write(&dir, "effective.yaml", &stdout);
    let out2 = lessor(&["check-config".as_ref(), again.as_os_str()]);
    assert!(
        out2.status.success(),
        "the effective config does not validate ({}):\n{}\n{stdout}",
        out2.status,
        text(&out2.stderr)
    );
    assert_eq!(
        text(&out2.stdout),
        stdout,
        "check-config of its own output differs"
    );

    // --config FILE check-config is the same as check-config FILE.
    let out3 = lessor(&[
        "--config".as_ref(),
        file.as_os_str(),
        "check-config".as_ref(),
    ]);
    assert!(out3.status.success(), "{}", text(&out3.stderr));
    assert_eq!(text(&out3.stdout), stdout);
}

#[test]
fn check_config_rejects_a_pool_that_ends_before_it_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(&dir, "bad.yaml", BAD_POOL);
    let out = lessor(&["check-config".as_ref(), file.as_os_str()]);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check-config of a bad file: {}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("lessor: error:"), "{stderr}");
    assert!(
        stderr.contains("v4.subnets[0].pools[0]"),
        "the error does not name the key:\n{stderr}"
    );
}

#[test]
fn check_config_rejects_an_unknown_key_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        &dir,
        "typo.yaml",
        "v4:\n  subnets:\n    - subnet: 10.231.0.0/24\n      pool: [ \"10.231.0.100-10.231.0.199\" ]\n",
    );
    let out = lessor(&["check-config".as_ref(), file.as_os_str()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lessor: error:"), "{stderr}");
    assert!(
        stderr.contains("pool"),
        "the error does not name the unknown key:\n{stderr}"
    );
}

#[test]
fn check_config_of_a_missing_file_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.yaml");
    let out = lessor(&["check-config".as_ref(), missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nope.yaml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_server_refuses_to_start_on_a_bad_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(&dir, "bad.yaml", BAD_POOL);
    let out = lessor(&["--config".as_ref(), file.as_os_str()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(stderr.contains("v4.subnets[0].pools[0]"), "{stderr}");
}

#[test]
fn without_a_config_it_serves_loopback_on_6767_and_stops_on_sigterm() {
    // A namespace of its own: 6767 is surely free there, whatever else runs on the host.
    let ns = Ns::new(format!("lcfg-{}", unique()));
    let lessor = Lessor::start_default(Some(&ns), &[]);
    assert!(
        lessor
            .stdout()
            .contains("DHCPv4 listening on 127.0.0.1:6767"),
        "{}",
        lessor.stdout()
    );
    let stopped = lessor.stop();
    stopped.assert_success();
    assert_eq!(stopped.counter("received"), 0, "{}", stopped.stdout);
}

#[test]
fn port_and_workers_override_the_config_and_sigint_stops_it() {
    // A port that was free a moment ago, in the test's own namespace: no root needed.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("finding a free port")
        .port()
        .to_string();
    let lessor = Lessor::start_default(None, &["--port", &port, "--workers", "3"]);
    let stdout = lessor.stdout();
    assert!(
        stdout.contains(&format!("DHCPv4 listening on 127.0.0.1:{port}")),
        "{stdout}"
    );
    assert!(stdout.contains("test mode"), "{stdout}");
    crate::common::wait_until(Duration::from_secs(20), "the worker count line", || {
        lessor.stdout().contains("3 worker(s)").then_some(())
    });
    let stopped = lessor.stop_with("INT");
    stopped.assert_success();
    assert!(
        stopped.stdout.contains("lessor: received="),
        "{}",
        stopped.stdout
    );
}

#[test]
fn zero_workers_is_refused() {
    let out = lessor(&[
        "--workers".as_ref(),
        "0".as_ref(),
        "--port".as_ref(),
        "1".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("lessor: error:"),
        "{}",
        text(&out.stderr)
    );
}
