//! What the control API's tests share: Kea commands over HTTP, the configurations they run
//! lessor with, and crafted relayed DHCPv4 and DHCPv6 clients (this test is the relay, on
//! loopback) that see what a command changed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{tempdir, tool};

/// One HTTP/1.1 exchange: `(status, body)`.
pub(crate) fn http(url: &str, method: &str, path: &str, auth: bool, body: &[u8]) -> (u16, String) {
    let addr = url.strip_prefix("http://").expect("an http:// URL");
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if auth {
        // RFC 7617: base64("ops:s3cret").
        req.push_str("Authorization: Basic b3BzOnMzY3JldA==\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (413) before it has read a large body; a failed write is fine then.
    let _ = s.write_all(body);
    let mut out = String::new();
    s.read_to_string(&mut out).expect("reading the answer");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {out:?}"));
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// Sends a Kea command and returns its one answer.
pub(crate) fn command(url: &str, cmd: Value) -> Value {
    let (status, body) = http(url, "POST", "/", true, cmd.to_string().as_bytes());
    assert_eq!(status, 200, "{cmd}: {body}");
    let answers: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(answers.as_array().map(Vec::len), Some(1), "{body}");
    answers[0].clone()
}

/// Command `name` for the `dhcp6` service with `args`.
pub(crate) fn command6(url: &str, name: &str, args: Value) -> Value {
    command(
        url,
        json!({"command": name, "service": ["dhcp6"], "arguments": args}),
    )
}

/// An answer's `result`.
pub(crate) fn result(answer: &Value) -> u64 {
    answer["result"]
        .as_u64()
        .unwrap_or_else(|| panic!("{answer}"))
}

/// An answer's `text` ("" when it has none).
pub(crate) fn text(answer: &Value) -> &str {
    answer["text"].as_str().unwrap_or("")
}

/// The entries of the list `key` in `answer`'s arguments (none when it has no such list),
/// each as `f` reads it, sorted.
pub(crate) fn listed<T: Ord>(answer: &Value, key: &str, f: impl Fn(&Value) -> T) -> Vec<T> {
    let entries = answer["arguments"][key].as_array();
    let mut out: Vec<T> = entries.into_iter().flatten().map(f).collect();
    out.sort();
    out
}

/// The string `key` of `entry`.
pub(crate) fn string(entry: &Value, key: &str) -> String {
    let s = entry[key].as_str();
    s.unwrap_or_else(|| panic!("no string {key:?} in {entry}"))
        .to_owned()
}

/// A new temporary directory and the empty state directory inside it.
pub(crate) fn state_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("creating the state directory");
    (dir, state)
}

/// A two-worker server on port 6767, its state in `state`, whose control server asks for
/// credentials; `body` is the rest of the configuration.
pub(crate) fn config(state: &Path, body: &str) -> String {
    format!(
        r#"port: 6767
state_dir: {}
workers: 2
control: {{ listen: "127.0.0.1:0", user: ops, password: s3cret }}
{body}"#,
        state.display()
    )
}

/// [`config`] with subnet 7 (10.233.0.0/16, pool .10-.200) reached through relay
/// 127.0.0.1; `subnet` goes into the subnet.
pub(crate) fn config4(state: &Path, subnet: &str) -> String {
    let v4 = r#"v4:
  lease_time: 3600
  subnets:
    - id: 7
      subnet: 10.233.0.0/16
      pools: [ "10.233.0.10-10.233.0.200" ]
      relays: [ 127.0.0.1 ]
"#;
    config(state, &format!("{v4}{subnet}"))
}

/// [`config`] with rapid-commit subnet 9, fd00:`net`::/64 with prefixes of fd00:`net`0::/48,
/// reached through relay ::1.
pub(crate) fn config6(state: &Path, net: u16) -> String {
    let v6 = format!(
        r#"v6:
  port: 6767
  rapid_commit: true
  preferred_lifetime: 1800
  valid_lifetime: 3600
  subnets:
    - id: 9
      subnet: fd00:{net:x}::/64
      relays: [ "::1" ]
      pools: [ "fd00:{net:x}::1000-fd00:{net:x}::10ff" ]
      pd_pools: [ {{ prefix: "fd00:{net:x}0::/48", delegated_len: 56 }} ]
"#
    );
    config(state, &v6)
}

/// DHCPv4 clients 02:`tag`:00:00:00:`n` behind a relay (127.0.0.1 unless told).
pub(crate) mod v4 {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
    use dhcproto::{Decodable, Decoder};

    /// Client `n`'s MAC address among those of `tag`.
    pub(crate) fn mac(tag: u8, n: u8) -> String {
        format!("02:{tag:02x}:00:00:00:{n:02x}")
    }

    /// Address `last` of 10.233.0.0/24.
    pub(crate) fn ip(last: u8) -> String {
        format!("10.233.0.{last}")
    }

    /// The relay's socket, its address (the giaddr) and its clients' `tag`.
    pub(crate) struct Relay {
        sock: UdpSocket,
        giaddr: Ipv4Addr,
        tag: u8,
    }

    impl Relay {
        /// A relay 127.0.0.1 for `tag`'s clients on a new loopback socket (3-second read
        /// timeout).
        pub(crate) fn new(tag: u8) -> Relay {
            Relay::at(Ipv4Addr::LOCALHOST, tag)
        }

        /// [`Relay::new`] with relay address `giaddr`, a loopback address it binds to.
        pub(crate) fn at(giaddr: Ipv4Addr, tag: u8) -> Relay {
            let sock = UdpSocket::bind((giaddr, 0)).expect("binding the relay's socket");
            sock.set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            Relay { sock, giaddr, tag }
        }

        /// A relayed DISCOVER (1) or REQUEST (3, to server 127.0.0.1) from client `n`.
        fn packet(&self, n: u8, kind: u8, requested: Option<Ipv4Addr>) -> Vec<u8> {
            let mut b = vec![0u8; 236];
            b[..4].copy_from_slice(&[1, 1, 6, 1]); // BOOTREQUEST, Ethernet, hlen 6, one hop
            b[4..8].copy_from_slice(&[0x72, self.tag, n, kind]);
            b[24..28].copy_from_slice(&self.giaddr.octets());
            b[28..34].copy_from_slice(&[2, self.tag, 0, 0, 0, n]);
            b.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
            if let Some(a) = requested {
                b.extend_from_slice(&[50, 4]);
                b.extend_from_slice(&a.octets());
            }
            if kind == 3 {
                b.extend_from_slice(&[54, 4, 127, 0, 0, 1]);
            }
            b.push(255);
            b
        }

        /// The reply to client `n`'s DISCOVER, if one comes before the socket's timeout.
        pub(crate) fn offer(&self, n: u8) -> Option<Message> {
            self.ask(n, 1, None)
        }

        fn ask(&self, n: u8, kind: u8, requested: Option<Ipv4Addr>) -> Option<Message> {
            let pkt = self.packet(n, kind, requested);
            self.sock
                .send_to(&pkt, "127.0.0.1:6767")
                .expect("sending to lessor");
            let mut buf = [0u8; 1500];
            let len = self.sock.recv(&mut buf).ok()?;
            Some(Message::decode(&mut Decoder::new(&buf[..len])).expect("lessor's reply decodes"))
        }

        /// Lessor's answer to client `n`'s REQUEST for `ip` (an ACK or a NAK), if one comes.
        pub(crate) fn request(&self, n: u8, ip: Ipv4Addr) -> Option<(MessageType, Ipv4Addr)> {
            let reply = self.ask(n, 3, Some(ip))?;
            Some((kind(&reply)?, reply.yiaddr()))
        }

        /// What lessor offers client `n` when it asks for `requested`.
        pub(crate) fn offered(&self, n: u8, requested: Option<&str>) -> Ipv4Addr {
            let req = requested.map(|r| r.parse().expect("an address"));
            let offer = self.ask(n, 1, req).expect("an OFFER");
            assert_eq!(kind(&offer), Some(MessageType::Offer), "client {n}");
            offer.yiaddr()
        }

        /// DISCOVER then REQUEST for client `n`; returns the ACKed address.
        pub(crate) fn dora(&self, n: u8, requested: Option<&str>) -> Ipv4Addr {
            let ip = self.offered(n, requested);
            let ack = self.ask(n, 3, Some(ip)).expect("an ACK");
            let got = (kind(&ack), ack.yiaddr());
            assert_eq!(got, (Some(MessageType::Ack), ip), "client {n}");
            ip
        }
    }

    fn kind(m: &Message) -> Option<MessageType> {
        match m.opts().get(OptionCode::MessageType) {
            Some(DhcpOption::MessageType(t)) => Some(*t),
            _ => None,
        }
    }
}

/// DHCPv6 clients of DUID-LL 02:`tag`:00:00:00:`n`, whose rapid-commit SOLICITs this test
/// relays from link address ::1.
pub(crate) mod v6 {
    use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
    use std::time::Duration;

    /// Client `n`'s DUID as Kea writes it.
    pub(crate) fn duid_text(tag: u8, n: u8) -> String {
        format!("00:03:00:01:02:{tag:02x}:00:00:00:{n:02x}")
    }

    fn put_option(out: &mut Vec<u8>, code: u16, payload: &[u8]) {
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(payload);
    }

    fn options(mut buf: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while buf.len() >= 4 {
            let code = u16::from_be_bytes([buf[0], buf[1]]);
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            out.push((code, buf[4..4 + len].to_vec()));
            buf = &buf[4 + len..];
        }
        out
    }

    /// The payload of option `code` inside the option `outer` of `opts`.
    fn inner(opts: &[(u16, Vec<u8>)], outer: u16, code: u16, what: &str) -> Vec<u8> {
        let ia = &opts.iter().find(|(c, _)| *c == outer).expect(what).1;
        let found = options(&ia[12..]).into_iter().find(|(c, _)| *c == code);
        found
            .unwrap_or_else(|| panic!("nothing in the {what}: {ia:?}"))
            .1
    }

    /// The relay's socket, its clients' `tag` and the server's port on loopback.
    pub(crate) struct Relay {
        sock: UdpSocket,
        tag: u8,
        port: u16,
    }

    impl Relay {
        /// A relay for `tag`'s clients on a new loopback socket (3-second read timeout), to
        /// a server on port 6767.
        pub(crate) fn new(tag: u8) -> Relay {
            Self::to(tag, 6767)
        }

        /// [`Relay::new`] to a server on `port`.
        pub(crate) fn to(tag: u8, port: u16) -> Relay {
            let sock = UdpSocket::bind("[::1]:0").expect("binding the relay's socket");
            sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            Relay { sock, tag, port }
        }

        /// A RELAY-FORW around a rapid-commit SOLICIT from client `n` for IA_NA 1, hinting
        /// at `hint`, and IA_PD 2 when `pd`.
        fn solicit(&self, n: u8, hint: Option<Ipv6Addr>, pd: bool) -> Vec<u8> {
            let mut inner = vec![1u8, 0, self.tag, n];
            put_option(&mut inner, 1, &[0, 3, 0, 1, 2, self.tag, 0, 0, 0, n]);
            put_option(&mut inner, 14, &[]);
            put_option(&mut inner, 8, &[0, 0]);
            let mut ia = 1u32.to_be_bytes().to_vec();
            ia.extend_from_slice(&[0; 8]);
            if let Some(h) = hint {
                let mut addr = h.octets().to_vec();
                addr.extend_from_slice(&[0; 8]);
                put_option(&mut ia, 5, &addr);
            }
            put_option(&mut inner, 3, &ia);
            if pd {
                let mut pd = 2u32.to_be_bytes().to_vec();
                pd.extend_from_slice(&[0; 8]);
                put_option(&mut inner, 25, &pd);
            }
            let mut msg = vec![12u8, 0];
            msg.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
            let peer: Ipv6Addr = format!("fe80::{n:x}").parse().unwrap();
            msg.extend_from_slice(&peer.octets());
            put_option(&mut msg, 9, &inner);
            msg
        }

        /// The options of the REPLY to client `n`'s SOLICIT.
        fn reply(&self, n: u8, hint: Option<Ipv6Addr>, pd: bool) -> Vec<(u16, Vec<u8>)> {
            let server = SocketAddrV6::new(Ipv6Addr::LOCALHOST, self.port, 0, 0);
            let msg = self.solicit(n, hint, pd);
            self.sock.send_to(&msg, server).expect("sending");
            let mut buf = [0u8; 1500];
            let len = self.sock.recv(&mut buf).expect("a RELAY-REPL");
            let relay = options(&buf[34..len]);
            let inner = &relay
                .iter()
                .find(|(c, _)| *c == 9)
                .expect("relay-message")
                .1;
            assert_eq!(inner[0], 7, "a REPLY: {inner:?}");
            options(&inner[4..])
        }

        /// The address the REPLY to client `n`'s SOLICIT (IA_NA only) binds.
        pub(crate) fn address(&self, n: u8, hint: Option<Ipv6Addr>) -> Ipv6Addr {
            let addr = inner(&self.reply(n, hint, false), 3, 5, "IA_NA");
            Ipv6Addr::from(<[u8; 16]>::try_from(&addr[..16]).unwrap())
        }

        /// The address and prefix the REPLY to client `n`'s SOLICIT (IA_NA and IA_PD) binds.
        pub(crate) fn address_and_prefix(&self, n: u8) -> (String, String) {
            let opts = self.reply(n, None, true);
            let addr = inner(&opts, 3, 5, "IA_NA");
            let addr = Ipv6Addr::from(<[u8; 16]>::try_from(&addr[..16]).unwrap());
            let prefix = inner(&opts, 25, 26, "IA_PD");
            let net = Ipv6Addr::from(<[u8; 16]>::try_from(&prefix[9..25]).unwrap());
            (addr.to_string(), format!("{net}/{}", prefix[8]))
        }
    }
}

/// Asserts that `promtool check metrics` (Debian's prometheus) finds nothing wrong in `metrics`.
pub(crate) fn promtool_check(metrics: &str) {
    let mut promtool = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    let mut stdin = promtool.stdin.take().expect("piped stdin");
    stdin
        .write_all(metrics.as_bytes())
        .expect("feeding promtool");
    drop(stdin);
    let out = promtool.wait_with_output().expect("running promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
