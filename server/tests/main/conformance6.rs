//! RFC 8415 rules that are easy to get wrong, checked over the wire against the `lessor`
//! binary: what a whole server answers (or does not) through a relay on loopback, and to a
//! client on a veth link sending to the server's unicast address. The sans-IO handler tests
//! (`server/src/v6/tests.rs`) check the same rules in more detail.

use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::time::Duration;

use crate::common::{Lessor, Netns, Ns, SERVER_ADDR6, ip, tool, unique};

const SOLICIT: u8 = 1;
const ADVERTISE: u8 = 2;
const RELEASE: u8 = 8;
const DECLINE: u8 = 9;
const REPLY: u8 = 7;
const INFORMATION_REQUEST: u8 = 11;
const RELAY_FORW: u8 = 12;
const RELAY_REPL: u8 = 13;

const CLIENTID: u16 = 1;
const SERVERID: u16 = 2;
const IA_NA: u16 = 3;
const IAADDR: u16 = 5;
const ORO: u16 = 6;
const ELAPSED_TIME: u16 = 8;
const RELAY_MSG: u16 = 9;
const STATUS_CODE: u16 = 13;
const RAPID_COMMIT: u16 = 14;
const DNS_SERVERS: u16 = 23;
const IA_PD: u16 = 25;

const NO_ADDRS_AVAIL: u16 = 2;
const NO_BINDING: u16 = 3;
const NO_PREFIX_AVAIL: u16 = 6;

fn option(code: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(
        &u16::try_from(payload.len())
            .expect("short option")
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

fn message(t: u8, xid: u32, opts: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![t];
    m.extend_from_slice(&xid.to_be_bytes()[1..]);
    for o in opts {
        m.extend_from_slice(o);
    }
    m
}

fn relay(inner: &[u8], hop_count: u8, link: Ipv6Addr, peer: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![RELAY_FORW, hop_count];
    m.extend_from_slice(&link.octets());
    m.extend_from_slice(&peer.octets());
    m.extend(option(RELAY_MSG, inner));
    m
}

/// A DUID-LL for client `n`.
fn duid(n: u8) -> Vec<u8> {
    vec![0, 3, 0, 1, 2, 0x23, 0x30, 0, 0, n]
}

/// An IA_NA (`code` 3) or IA_PD (25) with IAID `iaid` holding `inner` options.
fn ia(code: u16, iaid: u32, inner: &[Vec<u8>]) -> Vec<u8> {
    let mut p = iaid.to_be_bytes().to_vec();
    p.extend_from_slice(&[0; 8]);
    for o in inner {
        p.extend_from_slice(o);
    }
    option(code, &p)
}

fn iaaddr(addr: Ipv6Addr) -> Vec<u8> {
    let mut p = addr.octets().to_vec();
    p.extend_from_slice(&[0; 8]);
    option(IAADDR, &p)
}

/// The client's usual options: its DUID, elapsed time, an ORO asking for DNS servers.
fn base(n: u8) -> Vec<Vec<u8>> {
    vec![
        option(CLIENTID, &duid(n)),
        option(ELAPSED_TIME, &[0, 0]),
        option(ORO, &DNS_SERVERS.to_be_bytes()),
    ]
}

/// The options of `buf` as (code, payload); panics if a length lies.
fn options(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let code = u16::from_be_bytes([buf[0], buf[1]]);
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        out.push((code, &buf[4..4 + len]));
        buf = &buf[4 + len..];
    }
    out
}

fn find<'a>(opts: &[(u16, &'a [u8])], code: u16) -> Option<&'a [u8]> {
    opts.iter().find(|(c, _)| *c == code).map(|(_, p)| *p)
}

/// A client message as received: type, options, and how many RELAY-REPL layers it was in.
#[derive(Debug)]
struct Answer {
    kind: u8,
    opts: Vec<(u16, Vec<u8>)>,
    layers: usize,
}

impl Answer {
    fn parse(mut buf: &[u8]) -> Answer {
        let mut layers = 0;
        while buf[0] == RELAY_REPL {
            buf = find(&options(&buf[34..]), RELAY_MSG).expect("a relay message");
            layers += 1;
        }
        Answer {
            kind: buf[0],
            opts: options(&buf[4..])
                .into_iter()
                .map(|(c, p)| (c, p.to_vec()))
                .collect(),
            layers,
        }
    }

    fn get(&self, code: u16) -> Option<&[u8]> {
        self.opts
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, p)| p.as_slice())
    }

    /// The top-level status code, if any.
    fn status(&self) -> Option<u16> {
        self.get(STATUS_CODE)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
    }

    /// Each IA of type `code`: (IAID, its status code, whether it holds an address/prefix).
    fn ias(&self, code: u16) -> Vec<(u32, Option<u16>, bool)> {
        self.opts
            .iter()
            .filter(|(c, _)| *c == code)
            .map(|(_, p)| {
                let inner = options(&p[12..]);
                let status = find(&inner, STATUS_CODE).map(|s| u16::from_be_bytes([s[0], s[1]]));
                let iaid = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                (iaid, status, inner.iter().any(|(c, _)| *c == 5 || *c == 26))
            })
            .collect()
    }

    /// The address of the first IA_NA, if it holds one.
    fn address(&self) -> Option<Ipv6Addr> {
        let p = self.get(IA_NA)?;
        let a = find(&options(&p[12..]), IAADDR)?;
        Some(Ipv6Addr::from(<[u8; 16]>::try_from(&a[..16]).ok()?))
    }
}

/// Sends `msg` and returns the answer, or `None` when none comes within the socket's timeout.
fn ask(sock: &UdpSocket, to: SocketAddrV6, msg: &[u8]) -> Option<Answer> {
    let mut buf = [0u8; 4096];
    sock.send_to(msg, to).expect("sending");
    let len = sock.recv(&mut buf).ok()?;
    Some(Answer::parse(&buf[..len]))
}

/// One subnet of two addresses and a /56 pool of one prefix, selected by the relay address
/// `::1`; DNS servers globally and in the subnet.
const RELAYED: &str = r#"port: 6767
state_dir: STATE_DIR
workers: 2
v6:
  port: 6767
  options: { dns_servers: [ "fd00:ff::53" ] }
  subnets:
    - subnet: fd00:233::/64
      relays: [ "::1" ]
      rapid_commit: true
      pools: [ "fd00:233::1000-fd00:233::1001" ]
      pd_pools: [ { prefix: "fd00:2330::/56", delegated_len: 56 } ]
      options: { dns_servers: [ "fd00:233::53" ] }
"#;

/// What the relayed exchanges gave, for the assertions outside the namespace's thread.
#[derive(Debug)]
struct Seen {
    exhausted: Answer,
    release: Answer,
    decline: Answer,
    no_subnet: Answer,
    twelve: Option<Answer>,
    thirty_three: Option<Answer>,
    named_solicit: Option<Answer>,
}

#[test]
fn relayed_exhaustion_no_binding_unknown_links_and_deep_relays_follow_rfc_8415() {
    let ns = Ns::new(format!("lcf6-{}", unique()));
    let lessor = Lessor::start(Some(&ns), RELAYED, &[]);
    let seen = ns.run_in(|| {
        let sock = UdpSocket::bind("[::1]:0").expect("binding the relay's socket");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let server = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 6767, 0, 0);
        let on_link =
            |m: &[u8]| relay(m, 0, Ipv6Addr::LOCALHOST, "fe80::c1".parse().expect("peer"));
        // Clients 1 and 2 take both addresses (rapid commit binds at once).
        let mut bound = Vec::new();
        for n in 1..=2u8 {
            let mut o = base(n);
            o.push(option(RAPID_COMMIT, &[]));
            o.push(ia(IA_NA, 1, &[]));
            let a = ask(&sock, server, &on_link(&message(SOLICIT, n.into(), &o)))
                .expect("a rapid-commit reply");
            bound.push((
                a.address().expect("an address"),
                a.get(SERVERID).expect("server id").to_vec(),
            ));
        }
        let server_id = bound[0].1.clone();
        // Client 3: nothing left (RFC 8415 §18.3.9).
        let mut o = base(3);
        o.push(ia(IA_NA, 1, &[]));
        o.push(ia(IA_PD, 2, &[]));
        let mut first = base(4);
        first.push(ia(IA_PD, 9, &[]));
        first.push(option(RAPID_COMMIT, &[]));
        // Client 4 takes the only prefix first.
        ask(&sock, server, &on_link(&message(SOLICIT, 4, &first))).expect("a reply");
        let exhausted =
            ask(&sock, server, &on_link(&message(SOLICIT, 5, &o))).expect("an advertise");
        // Client 3 releases and declines an IA it has no binding for, naming client 1's
        // address (RFC 8415 §18.3.7, §18.3.8).
        let mut o = base(3);
        o.push(option(SERVERID, &server_id));
        o.push(ia(IA_NA, 1, &[iaaddr(bound[0].0)]));
        let release = ask(&sock, server, &on_link(&message(RELEASE, 6, &o))).expect("a reply");
        let decline = ask(&sock, server, &on_link(&message(DECLINE, 7, &o))).expect("a reply");
        // A relay on a link no subnet serves (Kea answers it).
        let mut o = base(8);
        o.push(ia(IA_NA, 1, &[]));
        let far = relay(
            &message(SOLICIT, 8, &o),
            0,
            "fd00:999::1".parse().expect("link"),
            "fe80::c8".parse().expect("peer"),
        );
        let no_subnet = ask(&sock, server, &far).expect("an advertise");
        // 12 and 33 nested relays: the innermost on the served link, the others with no
        // link-address.
        let mut deep = on_link(&message(SOLICIT, 9, &o));
        let (mut twelve, mut thirty_three) = (None, None);
        for depth in 2..=33u8 {
            deep = relay(
                &deep,
                depth - 1,
                Ipv6Addr::UNSPECIFIED,
                "fe80::d".parse().expect("peer"),
            );
            if depth == 12 {
                twelve = ask(&sock, server, &deep);
            }
        }
        if twelve.is_some() {
            thirty_three = ask(&sock, server, &deep);
        }
        // A Solicit naming this very server (RFC 8415 §16.2: discarded).
        let mut o = base(10);
        o.push(option(SERVERID, &server_id));
        o.push(ia(IA_NA, 1, &[]));
        let named_solicit = ask(&sock, server, &on_link(&message(SOLICIT, 10, &o)));
        Seen {
            exhausted,
            release,
            decline,
            no_subnet,
            twelve,
            thirty_three,
            named_solicit,
        }
    });
    let stopped = lessor.stop();
    stopped.assert_success();

    let a = &seen.exhausted;
    assert_eq!(a.kind, ADVERTISE);
    assert_eq!(a.status(), None, "statuses are per IA: {a:?}");
    assert_eq!(a.ias(IA_NA), [(1, Some(NO_ADDRS_AVAIL), false)]);
    assert_eq!(a.ias(IA_PD), [(2, Some(NO_PREFIX_AVAIL), false)]);
    assert_eq!(
        a.get(DNS_SERVERS),
        Some(&"fd00:233::53".parse::<Ipv6Addr>().expect("dns").octets()[..]),
        "the ORO's options come with it"
    );
    for (what, r) in [("release", &seen.release), ("decline", &seen.decline)] {
        assert_eq!(r.kind, REPLY, "{what}");
        assert_eq!(r.status(), Some(0), "{what}: Success at the top");
        assert_eq!(r.ias(IA_NA), [(1, Some(NO_BINDING), false)], "{what}");
    }
    let n = &seen.no_subnet;
    assert_eq!(n.kind, ADVERTISE);
    assert_eq!(n.ias(IA_NA), [(1, Some(NO_ADDRS_AVAIL), false)]);
    assert_eq!(
        n.get(DNS_SERVERS),
        Some(&"fd00:ff::53".parse::<Ipv6Addr>().expect("dns").octets()[..]),
        "the global options"
    );
    let twelve = seen.twelve.as_ref().expect("12 relay layers are answered");
    assert_eq!(twelve.layers, 12);
    assert_eq!(twelve.kind, ADVERTISE);
    assert!(
        seen.thirty_three.is_none(),
        "33 layers are past the bound: {:?}",
        seen.thirty_three
    );
    assert_eq!(stopped.counter("v6_no_subnet"), 1, "{}", stopped.stdout);
    assert_eq!(stopped.counter("v6_too_many_hops"), 1, "{}", stopped.stdout);
    assert!(seen.named_solicit.is_none(), "{:?}", seen.named_solicit);
    assert_eq!(
        stopped.counter("v6_server_id_forbidden"),
        1,
        "{}",
        stopped.stdout
    );
}

/// The link's subnet with DNS servers, on the standard ports (unicast rules apply there).
fn on_link_config(iface: &str) -> String {
    format!(
        r#"interfaces: [{iface}]
port: 67
state_dir: STATE_DIR
v6:
  subnets:
    - subnet: fd00:231::/64
      pools: [ "fd00:231::1000-fd00:231::1fff" ]
      options: {{ dns_servers: [ "{SERVER_ADDR6}" ] }}
"#
    )
}

/// The kernel index of interface `ifname` in namespace `ns`.
fn ifindex(ns: &Ns, ifname: &str) -> u32 {
    let out = ns
        .cmd(tool("cat"))
        .arg(format!("/sys/class/net/{ifname}/ifindex"))
        .output()
        .expect("reading the interface index");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no index for {ifname}"))
}

#[test]
fn an_information_request_to_the_servers_unicast_address_is_dropped_and_counted() {
    let net = Netns::new();
    net.enable_v6();
    let link = net.client();
    ip(&[
        "-n",
        link.ns.name(),
        "addr",
        "add",
        "fd00:231::99/64",
        "dev",
        &link.ifname,
        "nodad",
    ]);
    let index = ifindex(&link.ns, &link.ifname);
    let lessor = Lessor::start(Some(&net.server), &on_link_config(&net.server_if), &[]);
    let (unicast, multicast) = link.ns.run_in(move || {
        let sock = UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 546, 0, 0))
            .expect("binding the client port");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let ir = message(INFORMATION_REQUEST, 1, &base(1));
        let server: Ipv6Addr = SERVER_ADDR6.parse().expect("server address");
        // RFC 8415 §16: discarded.
        let unicast = ask(&sock, SocketAddrV6::new(server, 547, 0, 0), &ir);
        let all_servers: Ipv6Addr = "ff02::1:2".parse().expect("multicast");
        let multicast = ask(&sock, SocketAddrV6::new(all_servers, 547, 0, index), &ir);
        (unicast, multicast)
    });
    let stopped = lessor.stop();
    stopped.assert_success();
    assert!(unicast.is_none(), "answered on unicast: {unicast:?}");
    let m = multicast.expect("the multicast Information-request is answered");
    assert_eq!(m.kind, REPLY);
    assert!(m.get(DNS_SERVERS).is_some(), "{m:?}");
    assert_eq!(stopped.counter("v6_unicast"), 1, "{}", stopped.stdout);
}

#[test]
fn a_v6_section_with_options_and_no_subnets_answers_information_requests() {
    let ns = Ns::new(format!("lsl6-{}", unique()));
    let config = "port: 6767\nstate_dir: STATE_DIR\nv6:\n  port: 6767\n  \
                  options: { dns_servers: [ \"fd00:ff::53\" ] }\n";
    let lessor = Lessor::start(Some(&ns), config, &[]);
    let (info, advertise) = ns.run_in(|| {
        let sock = UdpSocket::bind("[::1]:0").expect("binding the relay's socket");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let server = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 6767, 0, 0);
        let wrap = |m: &[u8]| relay(m, 0, Ipv6Addr::LOCALHOST, "fe80::c1".parse().expect("peer"));
        let info = ask(
            &sock,
            server,
            &wrap(&message(INFORMATION_REQUEST, 1, &base(1))),
        );
        let mut o = base(2);
        o.push(ia(IA_NA, 1, &[]));
        let advertise = ask(&sock, server, &wrap(&message(SOLICIT, 2, &o)));
        (info, advertise)
    });
    let stopped = lessor.stop();
    stopped.assert_success();
    // RFC 8415 §18.3.6.
    let info = info.expect("the Information-request is answered");
    assert_eq!(info.kind, REPLY);
    assert_eq!(
        info.get(DNS_SERVERS),
        Some(&"fd00:ff::53".parse::<Ipv6Addr>().expect("dns").octets()[..])
    );
    assert!(info.ias(IA_NA).is_empty());
    let adv = advertise.expect("the Solicit is answered");
    assert_eq!(adv.ias(IA_NA), [(1, Some(NO_ADDRS_AVAIL), false)]);
}

/// A shared network of two subnets (one address in the first) selected by the relay `::1`, and
/// a global reservation whose address lies in the second.
const SHARED: &str = r#"port: 6767
state_dir: STATE_DIR
v6:
  port: 6767
  rapid_commit: true
  shared_networks:
    - name: floor1
      relays: [ "::1" ]
      subnets:
        - { subnet: "fd00:234::/64", pools: [ "fd00:234::1000" ] }
        - { subnet: "fd00:235::/64", pools: [ "fd00:235::1000-fd00:235::10ff" ], preferred_lifetime: 20m }
  reservations:
    - { duid: "00:03:00:01:02:23:30:00:00:09", address: "fd00:235::9", options: { dns_servers: [ "fd00:ff::9" ] } }
"#;

#[test]
fn a_shared_network_and_a_global_reservation_over_the_wire() {
    let ns = Ns::new(format!("lsh6-{}", unique()));
    let lessor = Lessor::start(Some(&ns), SHARED, &[]);
    let answers = ns.run_in(|| {
        let sock = UdpSocket::bind("[::1]:0").expect("binding the relay's socket");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let server = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 6767, 0, 0);
        // Clients 1 and 2 (rapid commit), then the reserved client 9.
        [1u8, 2, 9].map(|n| {
            let mut o = base(n);
            o.push(option(RAPID_COMMIT, &[]));
            o.push(ia(IA_NA, 1, &[]));
            let m = relay(
                &message(SOLICIT, n.into(), &o),
                0,
                Ipv6Addr::LOCALHOST,
                "fe80::c1".parse().expect("peer"),
            );
            ask(&sock, server, &m).expect("an answer")
        })
    });
    let stopped = lessor.stop();
    stopped.assert_success();
    let addr = |i: usize| answers[i].address().expect("an address");
    // The first subnet's only address, then the second subnet, with its own lifetimes.
    assert_eq!(addr(0), "fd00:234::1000".parse::<Ipv6Addr>().expect("addr"));
    assert_eq!(addr(1), "fd00:235::1000".parse::<Ipv6Addr>().expect("addr"));
    let lifetimes = |a: &Answer| {
        let p = a.get(IA_NA).expect("an IA_NA");
        let x = find(&options(&p[12..]), IAADDR).expect("an IAADDR");
        u32::from_be_bytes([x[16], x[17], x[18], x[19]])
    };
    assert_eq!(lifetimes(&answers[0]), 3600);
    assert_eq!(lifetimes(&answers[1]), 1200);
    // The global reservation: its address (on this link), its options.
    assert_eq!(addr(2), "fd00:235::9".parse::<Ipv6Addr>().expect("addr"));
    assert_eq!(
        answers[2].get(DNS_SERVERS),
        Some(&"fd00:ff::9".parse::<Ipv6Addr>().expect("dns").octets()[..])
    );
}
