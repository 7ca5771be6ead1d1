//! Sans-IO scenarios for the DHCPv6 handler: requests in, replies unwrapped from their relay
//! layers here and decoded by dhcproto's owned decoder (an implementation independent of ours).

mod balanced;

use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;

use dhcproto::v6::{self, DhcpOption, DhcpOptions, IANA, IAPD, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};
use lessor_engine::EventKind;
use lessor_engine::v6::{Engine, LeaseEvent};
use proptest::prelude::*;

use super::packet::tests::{ia_na, ia_pd, iaaddr, iaprefix, message, option, relay};
use super::packet::{Options, msg, opt};
use super::*;
use crate::config::{Assignments, Config};
use crate::proto::{assert_no_reply, no_reply, reply};

const YAML: &str = r#"
v6:
  preferred_lifetime: 1000
  valid_lifetime: 2000
  preference: 10
  subnets:
    - subnet: "2001:db8:1::/64"
      interface: eth9
      pools: ["2001:db8:1::100-2001:db8:1::103"]
      pd_pools:
        - { prefix: "2001:db8:100::/54", delegated_len: 56, excluded_prefix: "2001:db8:100:ff::/64" }
      options: { dns_servers: ["2001:db8:1::53"], domain_search: [example.test], sntp_servers: ["2001:db8:1::123"] }
      reservations:
        - { duid: "00:03:00:01:02:00:00:00:00:50", address: "2001:db8:1::50" }
        - { remote_id: "3561:CUST1", prefix: "2001:db8:f000:100::/56" }
        - { interface_id: "port9", address: "2001:db8:1::59", options: { dns_servers: ["2001:db8:1::5353"] } }
    - subnet: "2001:db8:2::/64"
      relays: ["2001:db8:99::1"]
      interface_ids: ["olt/7"]
      rapid_commit: true
      preference: 200
      pools: ["2001:db8:2::/120"]
      pd_pools: [ { prefix: "2001:db8:200::/48", delegated_len: 64 } ]
      options: { dns_servers: ["2001:db8:2::53"] }
"#;

const CSV: &str = "id,address,prefix\n\
    remote-id-str:3561:CUST2,,2001:db8:f000:200::/56\n\
    duid:000300010200000000a0,2001:db8:2::1:a0,\n";

const SERVER_DUID: &[u8] = &[0, 2, 0, 0, 0, 9, 0x6c, 0x65, 0x73, 0x73];
const NOW: u64 = 1_800_000_000;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn duid(n: u8) -> Vec<u8> {
    vec![0, 3, 0, 1, 2, 0, 0, 0, 0, n]
}

struct Fixture {
    ctx: Context,
    engine: Engine,
    out: Vec<u8>,
    events: Vec<LeaseEvent>,
    /// The load-balancing scopes served (`crate::scope`).
    scopes: u8,
}

/// The relay agent the tests' relayed requests come from, with its link-address on subnet 1.
const RELAY_SRC: &str = "2001:db8:1::1";

impl Fixture {
    fn new(yaml: &str) -> Self {
        Self::with_csv(yaml, CSV)
    }

    /// A fixture with the assignments file `csv`.
    fn with_csv(yaml: &str, csv: &str) -> Self {
        let config = Config::from_yaml_str(yaml).expect("test config is valid");
        let assignments = Assignments::parse(csv, &config.v6).unwrap();
        let ifaces = [InterfaceInfo {
            index: 9,
            name: "eth9".into(),
            addrs: vec![a("fe80::9")],
        }];
        let ctx = Context::new(&config, SERVER_DUID, &ifaces, Arc::new(assignments));
        let engine = Engine::new(ctx.engine_config(2)).unwrap();
        Fixture {
            ctx,
            engine,
            out: Vec::new(),
            events: Vec::new(),
            scopes: crate::scope::ALL,
        }
    }

    fn handle(&mut self, data: &[u8], arrival: &Arrival, now: u64) -> Outcome {
        handle(
            &self.ctx,
            &self.engine,
            Received::new(data, *arrival, now).serving(self.scopes),
            &mut self.out,
            &mut self.events,
        )
    }

    /// Sends `data` straight from a client on eth9 (multicast).
    fn direct(&mut self, data: &[u8], now: u64) -> (Outcome, Option<Decoded>) {
        let o = self.handle(data, &direct_arrival(), now);
        (o, self.decoded(o))
    }

    /// Sends `data` wrapped in one RELAY-FORW whose link-address is on subnet 1.
    fn relayed(&mut self, data: &[u8], now: u64) -> (Outcome, Option<Decoded>) {
        let wrapped = relayed(data, "fe80::c1", &[]);
        self.raw(&wrapped, now)
    }

    /// The first prefix advertised to client `n` (one IA_NA, one IA_PD) relayed for
    /// `fe80::c<n>` with the 3561 remote id `id`.
    fn prefix_for_remote_id(&mut self, n: u8, id: &[u8]) -> Ipv6Addr {
        let solicit = Client::new(n).na(&[]).pd(&[1]).solicit();
        let m = relayed(&solicit, &format!("fe80::c{n}"), &[remote_id_3561(id)]);
        first_prefix(&self.raw(&m, NOW).1.expect("an ADVERTISE").msg)
    }

    /// Sends an already relay-wrapped datagram from the relay.
    fn raw(&mut self, data: &[u8], now: u64) -> (Outcome, Option<Decoded>) {
        let o = self.handle(data, &relay_arrival(), now);
        (o, self.decoded(o))
    }

    fn decoded(&self, o: Outcome) -> Option<Decoded> {
        match o {
            Outcome::Reply(_) => Some(unwrap(&self.out)),
            Outcome::NoReply(_) => None,
        }
    }

    /// SOLICIT then REQUEST for `ias`; returns the REPLY.
    fn lease(&mut self, c: &Client) -> Decoded {
        let (_, adv) = self.relayed(&c.solicit(), NOW);
        let adv = adv.expect("an advertise");
        assert_eq!(adv.msg.msg_type(), MessageType::Advertise);
        let (o, rep) = self.relayed(&c.request_from(&adv.msg), NOW);
        assert!(
            reply(o).needs_durable,
            "a binding REPLY waits for the journal"
        );
        let rep = rep.unwrap();
        assert_eq!(rep.msg.msg_type(), MessageType::Reply);
        rep
    }
}

fn direct_arrival() -> Arrival {
    Arrival {
        src: SocketAddrV6::new(a("fe80::c1"), CLIENT_PORT, 0, 9),
        ifindex: 9,
        dst: a("ff02::1:2"),
    }
}

fn relay_arrival() -> Arrival {
    Arrival {
        src: SocketAddrV6::new(a(RELAY_SRC), SERVER_PORT, 0, 0),
        ifindex: 1,
        dst: a("2001:db8:ffff::2"),
    }
}

/// A client: its DUID, IAs and option request.
#[derive(Clone, Debug)]
struct Client {
    duid: Vec<u8>,
    na: Vec<u32>,
    pd: Vec<u32>,
    oro: Vec<u16>,
    extra: Vec<Vec<u8>>,
}

impl Client {
    fn new(n: u8) -> Self {
        Client {
            duid: duid(n),
            na: vec![1],
            pd: vec![],
            oro: vec![23, 24],
            extra: vec![],
        }
    }
    fn pd(mut self, iaids: &[u32]) -> Self {
        self.pd = iaids.to_vec();
        self
    }
    fn na(mut self, iaids: &[u32]) -> Self {
        self.na = iaids.to_vec();
        self
    }
    fn with(mut self, o: Vec<u8>) -> Self {
        self.extra.push(o);
        self
    }
    fn base(&self) -> Vec<Vec<u8>> {
        let oro: Vec<u8> = self.oro.iter().flat_map(|c| c.to_be_bytes()).collect();
        let mut v = vec![
            option(opt::CLIENTID, &self.duid),
            option(opt::ELAPSED_TIME, &[0, 0]),
            option(opt::ORO, &oro),
        ];
        v.extend(self.extra.iter().cloned());
        v
    }
    fn solicit(&self) -> Vec<u8> {
        let mut o = self.base();
        o.extend(self.na.iter().map(|&i| ia_na(i, &[])));
        o.extend(self.pd.iter().map(|&i| ia_pd(i, &[])));
        message(msg::SOLICIT, &o)
    }
    /// A message of type `t` with the IAs of `from` (an ADVERTISE or REPLY), and our server id
    /// when `t` is a message that names its server.
    fn echo(&self, t: u8, from: &v6::Message) -> Vec<u8> {
        let mut o = self.base();
        if matches!(t, msg::REQUEST | msg::RENEW | msg::RELEASE | msg::DECLINE) {
            o.push(option(opt::SERVERID, SERVER_DUID));
        }
        o.extend(echo_ias(from));
        message(t, &o)
    }
    fn request_from(&self, adv: &v6::Message) -> Vec<u8> {
        self.echo(msg::REQUEST, adv)
    }
}

/// The IA options of a server message, as a client would send them back.
fn echo_ias(m: &v6::Message) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for ia in nas(m) {
        let addrs: Vec<_> = ia
            .opts
            .iter()
            .filter_map(|o| match o {
                DhcpOption::IAAddr(x) => Some(iaaddr(x.addr, 0, 0)),
                _ => None,
            })
            .collect();
        out.push(ia_na(ia.id, &addrs));
    }
    for ia in pds(m) {
        let ps: Vec<_> = ia
            .opts
            .iter()
            .filter_map(|o| match o {
                DhcpOption::IAPrefix(x) => Some(iaprefix(x.prefix_ip, x.prefix_len, 0, 0)),
                _ => None,
            })
            .collect();
        out.push(ia_pd(ia.id, &ps));
    }
    out
}

/// One RELAY-REPL layer as received.
#[derive(Debug)]
struct Layer {
    hop_count: u8,
    link: Ipv6Addr,
    peer: Ipv6Addr,
    interface_id: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Decoded {
    layers: Vec<Layer>,
    msg: v6::Message,
}

/// Peels the RELAY-REPL layers (dhcproto decodes a Relay Message's content as another relay
/// message, so the layers are walked here) and decodes the client message with dhcproto.
fn unwrap(mut buf: &[u8]) -> Decoded {
    let mut layers = Vec::new();
    while buf[0] == msg::RELAY_REPL {
        let mut layer = Layer {
            hop_count: buf[1],
            link: Ipv6Addr::from(<[u8; 16]>::try_from(&buf[2..18]).unwrap()),
            peer: Ipv6Addr::from(<[u8; 16]>::try_from(&buf[18..34]).unwrap()),
            interface_id: None,
        };
        let mut inner = None;
        let opts = &buf[34..];
        let total: usize = Options(opts).map(|(_, d)| d.len() + 4).sum();
        assert_eq!(total, opts.len(), "RELAY-REPL options do not add up");
        for (code, d) in Options(opts) {
            match code {
                opt::RELAY_MSG => inner = Some(d),
                opt::INTERFACE_ID => layer.interface_id = Some(d.to_vec()),
                other => panic!("unexpected option {other} in a RELAY-REPL"),
            }
        }
        layers.push(layer);
        buf = inner.expect("a relay message");
    }
    let msg = v6::Message::decode(&mut Decoder::new(buf)).expect("our reply decodes with dhcproto");
    Decoded { layers, msg }
}

fn nas(m: &v6::Message) -> Vec<&IANA> {
    m.opts()
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IANA(x) => Some(x),
            _ => None,
        })
        .collect()
}

fn pds(m: &v6::Message) -> Vec<&IAPD> {
    m.opts()
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAPD(x) => Some(x),
            _ => None,
        })
        .collect()
}

fn status(opts: &DhcpOptions) -> Option<v6::Status> {
    match opts.get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(s)) => Some(s.status),
        _ => None,
    }
}

/// The address of an IA_NA (with lifetimes), if it holds one.
fn addr_of(ia: &IANA) -> Option<(Ipv6Addr, u32, u32)> {
    ia.opts.iter().find_map(|o| match o {
        DhcpOption::IAAddr(x) => Some((x.addr, x.preferred_life, x.valid_life)),
        _ => None,
    })
}

/// The prefix of an IA_PD, if it holds one.
fn prefix_of(ia: &IAPD) -> Option<(Ipv6Addr, u8, u32, u32)> {
    ia.opts.iter().find_map(|o| match o {
        DhcpOption::IAPrefix(x) => Some((
            x.prefix_ip,
            x.prefix_len,
            x.preferred_lifetime,
            x.valid_lifetime,
        )),
        _ => None,
    })
}

/// The first delegated prefix in `m`.
fn first_prefix(m: &v6::Message) -> Ipv6Addr {
    prefix_of(pds(m)[0]).expect("an IA_PD with a prefix").0
}

/// OPTION_REMOTE_ID of enterprise 3561 (the Broadband Forum's) with `id`.
fn remote_id_3561(id: &[u8]) -> Vec<u8> {
    let mut value = 3561u32.to_be_bytes().to_vec();
    value.extend_from_slice(id);
    option(opt::REMOTE_ID, &value)
}

/// `inner` relayed by the first-hop relay at `RELAY_SRC` for the client at `peer`, with `opts`.
fn relayed(inner: &[u8], peer: &str, opts: &[Vec<u8>]) -> Vec<u8> {
    relay(inner, 0, a(RELAY_SRC), a(peer), opts)
}

/// The payload of an option dhcproto does not know.
fn unknown(opts: &DhcpOptions, code: u16) -> Option<Vec<u8>> {
    opts.iter().find_map(|o| match o {
        DhcpOption::Unknown(u) if u16::from(u.code()) == code => Some(u.data().to_vec()),
        _ => None,
    })
}

fn in_pool1(x: Ipv6Addr) -> bool {
    (a("2001:db8:1::100")..=a("2001:db8:1::103")).contains(&x)
}

#[test]
fn solicit_request_renew_rebind_release_straight_from_a_client() {
    let mut f = Fixture::new(YAML);
    let mut c = Client::new(1).pd(&[7]);
    c.oro = vec![23, 24, 31, 67];
    let (o, adv) = f.direct(&c.solicit(), NOW);
    let r = reply(o);
    assert_eq!(r.kind, ReplyKind::Advertise);
    assert!(!r.needs_durable, "an ADVERTISE never waits for the disk");
    assert_eq!(r.dst, SocketAddrV6::new(a("fe80::c1"), CLIENT_PORT, 0, 9));
    assert_eq!((r.ifindex, r.src), (9, None));
    let adv = adv.unwrap();
    assert!(adv.layers.is_empty());
    let m = &adv.msg;
    assert_eq!(m.msg_type(), MessageType::Advertise);
    assert_eq!(m.xid(), [0x12, 0x34, 0x56]);
    assert_eq!(
        m.opts().get(OptionCode::ServerId),
        Some(&DhcpOption::ServerId(SERVER_DUID.to_vec()))
    );
    assert_eq!(
        m.opts().get(OptionCode::ClientId),
        Some(&DhcpOption::ClientId(duid(1)))
    );
    assert_eq!(
        m.opts().get(OptionCode::Preference),
        Some(&DhcpOption::Preference(10))
    );
    assert_eq!(
        m.opts().get(OptionCode::DomainNameServers),
        Some(&DhcpOption::DomainNameServers(vec![a("2001:db8:1::53")]))
    );
    assert!(m.opts().get(OptionCode::DomainSearchList).is_some());
    assert_eq!(
        unknown(m.opts(), 31),
        Some(a("2001:db8:1::123").octets().to_vec())
    );
    let [na] = nas(m)[..] else { panic!("{m:?}") };
    assert_eq!((na.id, na.t1, na.t2), (1, 500, 800));
    let (addr, pref, valid) = addr_of(na).unwrap();
    assert!(in_pool1(addr), "{addr}");
    assert_eq!((pref, valid), (1000, 2000));
    let [pd] = pds(m)[..] else { panic!() };
    assert_eq!((pd.id, pd.t1, pd.t2), (7, 500, 800));
    let (p, len, _, _) = prefix_of(pd).unwrap();
    assert_eq!(len, 56);
    assert!(
        ipnet::Ipv6Net::new(a("2001:db8:100::"), 54)
            .unwrap()
            .contains(&p)
    );
    // RFC 6603: the client asked for option 67; the pool's excluded /64 is subnet id 0xff.
    let DhcpOption::IAPrefix(iap) = pd.opts.get(OptionCode::IAPrefix).unwrap() else {
        panic!()
    };
    assert_eq!(unknown(&iap.opts, 67), Some(vec![64, 0xff]));
    assert!(f.events.is_empty(), "an ADVERTISE is not journaled");

    let (o, rep) = f.direct(&c.request_from(m), NOW);
    let r = reply(o);
    assert_eq!(r.kind, ReplyKind::Reply);
    assert!(r.needs_durable);
    let rep = rep.unwrap();
    assert_eq!(addr_of(nas(&rep.msg)[0]).unwrap().0, addr);
    assert_eq!(first_prefix(&rep.msg), p);
    assert!(
        rep.msg.opts().get(OptionCode::Preference).is_none(),
        "Preference is for ADVERTISE"
    );
    let kinds: Vec<_> = f
        .events
        .iter()
        .map(|e| (e.kind, e.lease.resource.len))
        .collect();
    assert_eq!(kinds, [(EventKind::Bound, 128), (EventKind::Bound, 56)]);
    assert_eq!(f.events[0].lease.resource.addr, addr);
    assert_eq!(f.events[0].lease.expires, NOW + 2000);
    f.events.clear();

    for (t, when) in [(msg::RENEW, NOW + 500), (msg::REBIND, NOW + 800)] {
        let (o, again) = f.direct(&c.echo(t, &rep.msg), when);
        assert!(reply(o).needs_durable);
        let again = again.unwrap();
        assert_eq!(addr_of(nas(&again.msg)[0]).unwrap(), (addr, 1000, 2000));
        assert_eq!(nas(&again.msg)[0].t1, 500);
        assert_eq!(first_prefix(&again.msg), p);
        assert!(
            f.events.iter().all(|e| e.kind == EventKind::Renewed),
            "{:?}",
            f.events
        );
        assert_eq!(f.events[0].lease.expires, when + 2000);
        f.events.clear();
    }

    let (o, rel) = f.direct(&c.echo(msg::RELEASE, &rep.msg), NOW + 900);
    assert!(!reply(o).needs_durable);
    let rel = rel.unwrap();
    assert_eq!(status(rel.msg.opts()), Some(v6::Status::Success));
    assert!(
        nas(&rel.msg).is_empty(),
        "no NoBinding IAs: both were released"
    );
    let kinds: Vec<_> = f.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Released, EventKind::Released]);
}

#[test]
fn several_ias_get_distinct_resources() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1).na(&[1, 2, 3]).pd(&[10, 11]);
    let rep = f.lease(&c);
    let addrs: Vec<_> = nas(&rep.msg)
        .iter()
        .map(|ia| (ia.id, addr_of(ia).unwrap().0))
        .collect();
    assert_eq!(addrs.len(), 3);
    let mut set: Vec<_> = addrs.iter().map(|x| x.1).collect();
    set.sort();
    set.dedup();
    assert_eq!(set.len(), 3, "{addrs:?}");
    let prefixes: Vec<_> = pds(&rep.msg)
        .iter()
        .map(|ia| prefix_of(ia).unwrap().0)
        .collect();
    assert_eq!(prefixes.len(), 2);
    assert_ne!(prefixes[0], prefixes[1]);
    assert_eq!(f.events.len(), 5);
}

#[test]
fn a_reply_counts_each_address_and_prefix_it_binds() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1).na(&[1, 2]).pd(&[10]);
    let (o, adv) = f.relayed(&c.solicit(), NOW);
    assert_eq!(reply(o).granted, [[0; 2]; 2], "an ADVERTISE binds nothing");
    let (o, rep) = f.relayed(&c.request_from(&adv.unwrap().msg), NOW);
    assert_eq!(
        reply(o).granted,
        [[2, 0], [1, 0]],
        "bound: [[addresses], [prefixes]]"
    );
    let (o, _) = f.relayed(&c.echo(msg::RENEW, &rep.unwrap().msg), NOW + 500);
    assert_eq!(reply(o).granted, [[0, 2], [0, 1]], "extended");
}

#[test]
fn exhaustion_gives_no_addrs_avail_and_no_prefix_avail() {
    let mut f = Fixture::new(YAML);
    for i in 1..=4 {
        f.lease(&Client::new(i).pd(&[1]));
    }
    // Addresses only, none left: RFC 8415 §18.3.9: the IA comes back with NoAddrsAvail in it,
    // and the options the ORO asks for still come (not RFC 3315's bare status-only ADVERTISE).
    let (o, adv) = f.relayed(&Client::new(5).solicit(), NOW);
    assert!(!reply(o).needs_durable);
    assert_eq!(reply(o).exhausted, 1, "counted as an allocation failure");
    let m = adv.unwrap().msg;
    assert_eq!(m.msg_type(), MessageType::Advertise);
    assert_eq!(status(m.opts()), None, "the status is per IA");
    assert_eq!(nas(&m).len(), 1);
    assert_eq!(status(&nas(&m)[0].opts), Some(v6::Status::NoAddrsAvail));
    assert!(addr_of(nas(&m)[0]).is_none());
    assert_eq!(
        m.opts().get(OptionCode::DomainNameServers),
        Some(&DhcpOption::DomainNameServers(vec![a("2001:db8:1::53")]))
    );
    // Both kinds, neither left: each IA says why, in the ADVERTISE and in the REPLY to a
    // REQUEST (RFC 8415 §18.3.2).
    let c = Client::new(5).pd(&[1]);
    let (o, adv) = f.relayed(&c.solicit(), NOW);
    assert_eq!(reply(o).exhausted, 2);
    let m = adv.unwrap().msg;
    assert_eq!(status(&nas(&m)[0].opts), Some(v6::Status::NoAddrsAvail));
    assert_eq!(status(&pds(&m)[0].opts), Some(v6::Status::NoPrefixAvail));
    assert!(m.opts().get(OptionCode::DomainNameServers).is_some());
    let mut o = c.base();
    o.push(option(opt::SERVERID, SERVER_DUID));
    o.push(ia_na(1, &[]));
    o.push(ia_pd(1, &[]));
    let (r, rep) = f.relayed(&message(msg::REQUEST, &o), NOW);
    assert!(!reply(r).needs_durable);
    assert_eq!(reply(r).exhausted, 2);
    let m = rep.unwrap().msg;
    assert_eq!(status(m.opts()), None);
    assert_eq!(status(&nas(&m)[0].opts), Some(v6::Status::NoAddrsAvail));
    assert_eq!(status(&pds(&m)[0].opts), Some(v6::Status::NoPrefixAvail));
    assert!(addr_of(nas(&m)[0]).is_none());
    assert_eq!((nas(&m)[0].t1, nas(&m)[0].t2), (0, 0));
    assert!(m.opts().get(OptionCode::DomainNameServers).is_some());
}

#[test]
fn ia_ta_is_refused_cleanly() {
    let mut f = Fixture::new(YAML);
    let mut ta = 5u32.to_be_bytes().to_vec();
    ta.extend(iaaddr(a("2001:db8:1::77"), 0, 0));
    let c = Client::new(1).with(option(opt::IA_TA, &ta));
    let (_, adv) = f.relayed(&c.solicit(), NOW);
    let m = adv.unwrap().msg;
    let tas: Vec<_> = m
        .opts()
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IATA(x) => Some(x),
            _ => None,
        })
        .collect();
    assert_eq!(tas.len(), 1);
    assert_eq!(tas[0].id, 5);
    assert_eq!(status(&tas[0].opts), Some(v6::Status::NoAddrsAvail));
    assert!(tas[0].opts.get(OptionCode::IAAddr).is_none());
    assert!(
        addr_of(nas(&m)[0]).is_some(),
        "the IA_NA beside it is served"
    );
}

#[test]
fn rapid_commit_binds_at_once_where_the_subnet_allows_it() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1).pd(&[2]).with(option(opt::RAPID_COMMIT, &[]));
    // Subnet 2, selected by the relay's link-address listed in `relays`.
    let m = relay(&c.solicit(), 0, a("2001:db8:99::1"), a("fe80::c1"), &[]);
    let (o, rep) = f.raw(&m, NOW);
    let r = reply(o);
    assert_eq!(r.kind, ReplyKind::Reply);
    assert!(r.needs_durable);
    let m = rep.unwrap().msg;
    assert_eq!(m.msg_type(), MessageType::Reply);
    assert_eq!(
        m.opts().get(OptionCode::RapidCommit),
        Some(&DhcpOption::RapidCommit)
    );
    assert!(m.opts().get(OptionCode::Preference).is_none());
    let (addr, _, _) = addr_of(nas(&m)[0]).unwrap();
    assert!(
        ipnet::Ipv6Net::new(a("2001:db8:2::"), 120)
            .unwrap()
            .contains(&addr)
    );
    assert_eq!(prefix_of(pds(&m)[0]).unwrap().1, 64);
    assert_eq!(f.events.len(), 2);
    assert!(f.events.iter().all(|e| e.kind == EventKind::Bound));

    // Subnet 1 does not allow it: an ordinary ADVERTISE, nothing bound.
    f.events.clear();
    let (o, adv) = f.relayed(
        &Client::new(2)
            .with(option(opt::RAPID_COMMIT, &[]))
            .solicit(),
        NOW,
    );
    assert_eq!(reply(o).kind, ReplyKind::Advertise);
    assert!(
        adv.unwrap()
            .msg
            .opts()
            .get(OptionCode::RapidCommit)
            .is_none()
    );
    assert!(f.events.is_empty());
}

#[test]
/// RFC 8415 §7.6 limits relays (HOP_COUNT_LIMIT 8), not servers: 12 layers are answered as
/// Kea does, up to our bound of 32; a 33rd is dropped and counted.
fn relays_nest_up_to_32_layers_every_layer_is_answered_and_33_are_dropped() {
    let mut f = Fixture::new(YAML);
    let mut m = Client::new(1).solicit();
    // Literal numbers, not the constant: the bound is part of the behaviour.
    for depth in 1..=33 {
        // Only the first relay (closest to the client) has a real link-address; the others
        // add an interface-id each.
        let link = if depth == 1 {
            a(RELAY_SRC)
        } else {
            Ipv6Addr::UNSPECIFIED
        };
        let iid = format!("hop{depth}");
        m = relay(
            &m,
            depth as u8 - 1,
            link,
            a(&format!("fe80::{depth}")),
            &[option(opt::INTERFACE_ID, iid.as_bytes())],
        );
        let (o, adv) = f.raw(&m, NOW);
        if depth > 32 {
            assert_no_reply(o, NoReply::Malformed(Malformed::TooManyHops));
            assert_eq!(no_reply(o).label(), "v6_too_many_hops");
            continue;
        }
        let r = reply(o);
        assert_eq!(r.dst, SocketAddrV6::new(a(RELAY_SRC), SERVER_PORT, 0, 0));
        assert_eq!(r.src, Some(a("2001:db8:ffff::2")));
        let adv = adv.unwrap();
        assert_eq!(adv.layers.len(), depth);
        for (i, l) in adv.layers.iter().enumerate() {
            // Outermost first: the relay that added it last.
            let hop = depth - i;
            assert_eq!(l.hop_count as usize, hop - 1);
            assert_eq!(l.peer, a(&format!("fe80::{hop}")));
            assert_eq!(
                l.interface_id.as_deref(),
                Some(format!("hop{hop}").as_bytes()),
                "interface-id echoed"
            );
            assert_eq!(
                l.link,
                if hop == 1 {
                    a(RELAY_SRC)
                } else {
                    Ipv6Addr::UNSPECIFIED
                }
            );
        }
        assert!(in_pool1(addr_of(nas(&adv.msg)[0]).unwrap().0));
    }
}

#[test]
fn remote_id_assignment_returns_the_configured_prefix() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1).na(&[]).pd(&[1, 2]);
    let fwd = |m: &[u8]| relayed(m, "fe80::c1", &[remote_id_3561(b"CUST1")]);
    let (_, adv) = f.raw(&fwd(&c.solicit()), NOW);
    let adv = adv.unwrap().msg;
    let got: Vec<_> = pds(&adv).iter().map(|ia| prefix_of(ia).unwrap()).collect();
    // The first IA_PD gets the static /56, the second one a dynamic prefix.
    assert_eq!(got[0], (a("2001:db8:f000:100::"), 56, 1000, 2000));
    assert_ne!(got[1].0, got[0].0);
    let (o, rep) = f.raw(&fwd(&c.request_from(&adv)), NOW);
    assert!(reply(o).needs_durable);
    assert_eq!(first_prefix(&rep.unwrap().msg), a("2001:db8:f000:100::"));
    assert_eq!(f.events[0].lease.resource.addr, a("2001:db8:f000:100::"));
    assert_eq!(f.events[0].lease.resource.len, 56);

    // The same line id in the assignments file, for another customer: CUST2's /56.
    assert_eq!(
        f.prefix_for_remote_id(2, b"CUST2"),
        a("2001:db8:f000:200::")
    );
}

#[test]
fn reservations_by_duid_and_interface_id_and_their_options() {
    let mut f = Fixture::new(YAML);
    let rep = f.lease(&Client::new(0x50));
    assert_eq!(addr_of(nas(&rep.msg)[0]).unwrap().0, a("2001:db8:1::50"));
    // Someone else asking for it in a hint does not get it.
    let c = Client::new(3);
    let mut o = c.base();
    o.push(ia_na(1, &[iaaddr(a("2001:db8:1::50"), 0, 0)]));
    let (_, adv) = f.relayed(&message(msg::SOLICIT, &o), NOW);
    assert_ne!(
        addr_of(nas(&adv.unwrap().msg)[0]).unwrap().0,
        a("2001:db8:1::50")
    );

    // Interface-id of the relay: its reservation, and the reservation's own DNS server.
    let m = relayed(
        &Client::new(4).solicit(),
        "fe80::c4",
        &[option(opt::INTERFACE_ID, b"port9")],
    );
    let (_, adv) = f.raw(&m, NOW);
    let adv = adv.unwrap();
    assert_eq!(adv.layers[0].interface_id.as_deref(), Some(&b"port9"[..]));
    assert_eq!(addr_of(nas(&adv.msg)[0]).unwrap().0, a("2001:db8:1::59"));
    assert_eq!(
        adv.msg.opts().get(OptionCode::DomainNameServers),
        Some(&DhcpOption::DomainNameServers(vec![a("2001:db8:1::5353")]))
    );

    // A DUID from the assignments file, on subnet 2.
    let m = relay(
        &Client {
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 0xa0],
            ..Client::new(0)
        }
        .solicit(),
        0,
        a("2001:db8:99::1"),
        a("fe80::c5"),
        &[],
    );
    let (_, adv) = f.raw(&m, NOW);
    assert_eq!(
        addr_of(nas(&adv.unwrap().msg)[0]).unwrap().0,
        a("2001:db8:2::1:a0")
    );
}

#[test]
fn a_reloaded_assignments_table_applies_to_the_next_packet() {
    let mut f = Fixture::new(YAML);
    let config = Config::from_yaml_str(YAML).unwrap();
    assert_ne!(
        f.prefix_for_remote_id(1, b"CUST3"),
        a("2001:db8:f000:300::")
    );
    let table = Assignments::parse(
        "id,address,prefix\nremote-id-str:3561:CUST3,,2001:db8:f000:300::/56\n",
        &config.v6,
    )
    .unwrap();
    f.ctx = f.ctx.with_assignments(Arc::new(table));
    assert_eq!(
        f.prefix_for_remote_id(1, b"CUST3"),
        a("2001:db8:f000:300::")
    );
}

#[test]
fn interface_id_and_link_address_select_the_subnet() {
    let mut f = Fixture::new(YAML);
    // A lightweight relay (link-address ::) with subnet 2's interface-id, under a relay whose
    // link-address is on subnet 1: the interface-id wins.
    let ldra = relay(
        &Client::new(1).solicit(),
        0,
        Ipv6Addr::UNSPECIFIED,
        a("fe80::c1"),
        &[option(opt::INTERFACE_ID, b"olt/7")],
    );
    let l3 = relay(&ldra, 1, a(RELAY_SRC), a("fe80::1da"), &[]);
    let (_, adv) = f.raw(&l3, NOW);
    let adv = adv.unwrap();
    let (addr, _, _) = addr_of(nas(&adv.msg)[0]).unwrap();
    assert!(
        ipnet::Ipv6Net::new(a("2001:db8:2::"), 64)
            .unwrap()
            .contains(&addr),
        "{addr}"
    );
    assert_eq!(
        adv.msg.opts().get(OptionCode::Preference),
        Some(&DhcpOption::Preference(200))
    );
    // Without it the L3 relay's link-address decides: subnet 1.
    let ldra = relay(
        &Client::new(2).solicit(),
        0,
        Ipv6Addr::UNSPECIFIED,
        a("fe80::c2"),
        &[],
    );
    let (_, adv) = f.raw(&relay(&ldra, 1, a(RELAY_SRC), a("fe80::1da"), &[]), NOW);
    assert!(in_pool1(addr_of(nas(&adv.unwrap().msg)[0]).unwrap().0));
    // A link nobody serves: NoAddrsAvail, flagged no_subnet (see
    // a_relayed_solicit_from_a_link_no_subnet_matches_gets_no_addrs_avail_per_ia).
    let m = relay(
        &Client::new(3).solicit(),
        0,
        a("2001:db8:77::1"),
        a("fe80::c3"),
        &[],
    );
    assert!(reply(f.raw(&m, NOW).0).no_subnet);
    // Straight from a client on an interface with no subnet.
    let mut arr = direct_arrival();
    arr.ifindex = 3;
    let r = reply(f.handle(&Client::new(4).solicit(), &arr, NOW));
    assert!(r.no_subnet);
    assert_eq!(
        status(&nas(&unwrap(&f.out).msg)[0].opts),
        Some(v6::Status::NoAddrsAvail)
    );
}

#[test]
fn server_identifier_rules() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1);
    let other = option(opt::SERVERID, &[0, 2, 0, 0, 0, 1, 1, 2]);
    let ours = option(opt::SERVERID, SERVER_DUID);
    let ia = ia_na(1, &[iaaddr(a("2001:db8:1::100"), 0, 0)]);
    let with = |t: u8, extra: &[Vec<u8>]| {
        let mut o = c.base();
        o.extend(extra.iter().cloned());
        message(t, &o)
    };
    for t in [msg::REQUEST, msg::RENEW, msg::RELEASE, msg::DECLINE] {
        assert_eq!(
            no_reply(f.relayed(&with(t, std::slice::from_ref(&ia)), NOW).0),
            NoReply::NoServerId,
            "{t}"
        );
        assert_eq!(
            no_reply(f.relayed(&with(t, &[ia.clone(), other.clone()]), NOW).0),
            NoReply::NotForUs,
            "{t}"
        );
    }
    for t in [
        msg::SOLICIT,
        msg::REBIND,
        msg::CONFIRM,
        msg::INFORMATION_REQUEST,
    ] {
        let extra = if t == msg::INFORMATION_REQUEST {
            vec![other.clone()]
        } else {
            vec![ia.clone(), other.clone()]
        };
        assert_eq!(
            no_reply(f.relayed(&with(t, &extra), NOW).0),
            NoReply::NotForUs,
            "{t}"
        );
    }
    // RFC 8415 §16.2, §16.5, §16.7: even our own Server Identifier makes a SOLICIT, CONFIRM
    // or REBIND one to discard.
    for t in [msg::SOLICIT, msg::CONFIRM, msg::REBIND] {
        let why = no_reply(f.relayed(&with(t, &[ia.clone(), ours.clone()]), NOW).0);
        assert_eq!(why, NoReply::ServerIdForbidden, "{t}");
        assert_eq!(why.label(), "v6_server_id_forbidden");
    }
    // An INFORMATION-REQUEST may name us (§16.12).
    assert!(matches!(
        f.relayed(&with(msg::INFORMATION_REQUEST, &[ours]), NOW).0,
        Outcome::Reply(_)
    ));
    // No client identifier.
    let m = message(msg::SOLICIT, &[ia_na(1, &[])]);
    assert_no_reply(f.relayed(&m, NOW).0, NoReply::NoClientId);
    assert!(f.events.is_empty());
}

#[test]
fn unicast_is_refused_unless_the_server_offered_it() {
    let mut f = Fixture::new(YAML);
    let mut uni = direct_arrival();
    uni.src = SocketAddrV6::new(a("2001:db8:1::100"), CLIENT_PORT, 0, 0);
    uni.dst = a("2001:db8:1::2");
    let c = Client::new(1);
    assert_no_reply(f.handle(&c.solicit(), &uni, NOW), NoReply::Unicast);
    let mut o = c.base();
    o.push(option(opt::SERVERID, SERVER_DUID));
    o.push(ia_na(1, &[iaaddr(a("2001:db8:1::100"), 0, 0)]));
    let renew = message(msg::RENEW, &o);
    let r = reply(f.handle(&renew, &uni, NOW));
    assert_eq!(r.src, Some(a("2001:db8:1::2")));
    assert_eq!(r.dst, uni.src);
    let m = unwrap(&f.out).msg;
    assert_eq!(status(m.opts()), Some(v6::Status::UseMulticast));
    assert!(nas(&m).is_empty());
    assert!(
        m.opts().get(OptionCode::ServerId).is_some()
            && m.opts().get(OptionCode::ClientId).is_some()
    );
    assert!(f.events.is_empty());

    // With server_unicast the ADVERTISE offers it, and a unicast REQUEST is served.
    let mut f = Fixture::new(&YAML.replace(
        "  preference: 10\n",
        "  preference: 10\n  server_unicast: \"2001:db8:1::2\"\n",
    ));
    let (_, adv) = f.direct(&c.solicit(), NOW);
    let adv = adv.unwrap().msg;
    assert_eq!(
        adv.opts().get(OptionCode::ServerUnicast),
        Some(&DhcpOption::ServerUnicast(a("2001:db8:1::2")))
    );
    let r = reply(f.handle(&c.request_from(&adv), &uni, NOW));
    assert!(r.needs_durable);
    // Relayed clients are not offered it.
    let (_, adv) = f.relayed(&Client::new(2).solicit(), NOW);
    assert!(
        adv.unwrap()
            .msg
            .opts()
            .get(OptionCode::ServerUnicast)
            .is_none()
    );
}

#[test]
fn not_on_link_and_confirm() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1);
    let mut o = c.base();
    o.push(option(opt::SERVERID, SERVER_DUID));
    o.push(ia_na(1, &[iaaddr(a("2001:db8:77::5"), 0, 0)]));
    let (_, rep) = f.relayed(&message(msg::REQUEST, &o), NOW);
    assert_eq!(
        status(&nas(&rep.unwrap().msg)[0].opts),
        Some(v6::Status::NotOnLink)
    );
    assert!(f.events.is_empty());

    let confirm = |addr: &str| {
        let mut o = c.base();
        o.push(ia_na(1, &[iaaddr(a(addr), 0, 0)]));
        message(msg::CONFIRM, &o)
    };
    let (o, rep) = f.relayed(&confirm("2001:db8:1::9999"), NOW);
    assert!(!reply(o).needs_durable);
    assert_eq!(status(rep.unwrap().msg.opts()), Some(v6::Status::Success));
    let (_, rep) = f.relayed(&confirm("2001:db8:2::5"), NOW);
    assert_eq!(status(rep.unwrap().msg.opts()), Some(v6::Status::NotOnLink));
    let mut o = c.base();
    o.push(ia_na(1, &[]));
    assert_no_reply(
        f.relayed(&message(msg::CONFIRM, &o), NOW).0,
        NoReply::NothingToConfirm,
    );
}

#[test]
fn renew_and_release_without_a_binding() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1).pd(&[4]);
    let mut o = c.base();
    o.push(option(opt::SERVERID, SERVER_DUID));
    o.push(ia_na(1, &[iaaddr(a("2001:db8:1::101"), 0, 0)]));
    o.push(ia_pd(4, &[iaprefix(a("2001:db8:100:100::"), 56, 0, 0)]));
    let (o1, rep) = f.relayed(&message(msg::RENEW, &o), NOW);
    assert!(!reply(o1).needs_durable);
    let m = rep.unwrap().msg;
    assert_eq!(status(&nas(&m)[0].opts), Some(v6::Status::NoBinding));
    assert_eq!(status(&pds(&m)[0].opts), Some(v6::Status::NoBinding));
    let (_, rep) = f.relayed(&message(msg::RELEASE, &o), NOW);
    let m = rep.unwrap().msg;
    assert_eq!(status(m.opts()), Some(v6::Status::Success));
    assert_eq!(status(&nas(&m)[0].opts), Some(v6::Status::NoBinding));
    assert_eq!(status(&pds(&m)[0].opts), Some(v6::Status::NoBinding));
    assert!(f.events.is_empty());
}

#[test]
fn renew_returns_what_is_not_the_clients_with_zero_lifetimes() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1);
    let rep = f.lease(&c);
    let (mine, _, _) = addr_of(nas(&rep.msg)[0]).unwrap();
    let other = if mine == a("2001:db8:1::100") {
        a("2001:db8:1::101")
    } else {
        a("2001:db8:1::100")
    };
    let mut o = c.base();
    o.push(option(opt::SERVERID, SERVER_DUID));
    o.push(ia_na(1, &[iaaddr(other, 0, 0), iaaddr(mine, 0, 0)]));
    let (_, rep) = f.relayed(&message(msg::RENEW, &o), NOW + 100);
    let m = rep.unwrap().msg;
    let got: Vec<_> = nas(&m)[0]
        .opts
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAAddr(x) => Some((x.addr, x.valid_life)),
            _ => None,
        })
        .collect();
    assert!(
        got.contains(&(mine, 2000)) && got.contains(&(other, 0)),
        "{got:?}"
    );

    // REBIND after the server lost nothing but the client lists an address of another link.
    let mut o = Client::new(9).base();
    o.push(ia_na(1, &[iaaddr(a("2001:db8:1:0:ffff::1"), 0, 0)]));
    let (_, rep) = f.relayed(&message(msg::REBIND, &o), NOW);
    let m = rep.unwrap().msg;
    assert_eq!(
        addr_of(nas(&m)[0]).unwrap(),
        (a("2001:db8:1:0:ffff::1"), 0, 0)
    );
    // REBIND of a free pool address with no binding: taken back (RFC 8415 §18.3.5).
    let free = [a("2001:db8:1::102"), a("2001:db8:1::103")]
        .into_iter()
        .find(|x| *x != mine)
        .unwrap();
    let mut o = Client::new(10).base();
    o.push(ia_na(1, &[iaaddr(free, 0, 0)]));
    let (r, rep) = f.relayed(&message(msg::REBIND, &o), NOW);
    assert!(reply(r).needs_durable);
    assert_eq!(
        addr_of(nas(&rep.unwrap().msg)[0]).unwrap(),
        (free, 1000, 2000)
    );
    // ... but not one bound to another client: that comes back with lifetimes 0.
    let mut o = Client::new(11).base();
    o.push(ia_na(1, &[iaaddr(mine, 0, 0)]));
    let (r, rep) = f.relayed(&message(msg::REBIND, &o), NOW);
    assert!(!reply(r).needs_durable);
    assert_eq!(addr_of(nas(&rep.unwrap().msg)[0]).unwrap(), (mine, 0, 0));
}

#[test]
fn decline_quarantines_and_the_next_solicit_gets_another_address() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1);
    let rep = f.lease(&c);
    let (bad, _, _) = addr_of(nas(&rep.msg)[0]).unwrap();
    f.events.clear();
    let (o, dec) = f.relayed(&c.echo(msg::DECLINE, &rep.msg), NOW);
    assert!(!reply(o).needs_durable);
    assert_eq!(status(dec.unwrap().msg.opts()), Some(v6::Status::Success));
    assert_eq!(f.events.last().unwrap().kind, EventKind::Declined);
    for i in 1..=4 {
        let (_, adv) = f.relayed(&Client::new(i).solicit(), NOW + 1);
        let m = adv.unwrap().msg;
        if let Some((x, _, _)) = nas(&m).first().and_then(|ia| addr_of(ia)) {
            assert_ne!(x, bad, "a declined address was handed out");
        }
    }
}

#[test]
fn information_request_gets_options_only() {
    let mut f = Fixture::new(YAML);
    let m = message(
        msg::INFORMATION_REQUEST,
        &[option(opt::ORO, &[0, 23, 0, 31])],
    );
    let (o, rep) = f.direct(&m, NOW);
    assert!(!reply(o).needs_durable);
    let m = rep.unwrap().msg;
    assert_eq!(m.msg_type(), MessageType::Reply);
    assert!(m.opts().get(OptionCode::ClientId).is_none());
    assert!(nas(&m).is_empty());
    assert_eq!(
        m.opts().get(OptionCode::DomainNameServers),
        Some(&DhcpOption::DomainNameServers(vec![a("2001:db8:1::53")]))
    );
    assert!(
        m.opts().get(OptionCode::DomainSearchList).is_none(),
        "not in the ORO"
    );
    let m = message(msg::INFORMATION_REQUEST, &[ia_na(1, &[])]);
    assert_no_reply(f.direct(&m, NOW).0, NoReply::IaInInformationRequest);
}

#[test]
fn the_oro_decides_which_options_are_sent() {
    let mut f = Fixture::new(YAML);
    let mut c = Client::new(1);
    c.oro = vec![];
    let (_, adv) = f.relayed(&c.solicit(), NOW);
    let m = adv.unwrap().msg;
    assert!(m.opts().get(OptionCode::DomainNameServers).is_none());
    assert!(m.opts().get(OptionCode::DomainSearchList).is_none());
    c.oro = vec![24];
    let (_, adv) = f.relayed(&c.solicit(), NOW);
    let m = adv.unwrap().msg;
    assert!(m.opts().get(OptionCode::DomainNameServers).is_none());
    assert!(m.opts().get(OptionCode::DomainSearchList).is_some());
}

#[test]
fn test_mode_answers_relays_on_their_source_port() {
    let mut f = Fixture::new(&format!(
        "port: 6767\n{}",
        YAML.replace("v6:\n", "v6:\n  port: 5547\n")
    ));
    let mut arr = relay_arrival();
    arr.src.set_port(40000);
    let m = relayed(&Client::new(1).solicit(), "fe80::c1", &[]);
    let r = reply(f.handle(&m, &arr, NOW));
    assert_eq!(r.dst.port(), 40000);
    // Unicast straight from a "client" is fine in test mode (tools send unicast).
    let mut uni = direct_arrival();
    uni.dst = a("::1");
    uni.src = SocketAddrV6::new(a("::1"), 40001, 0, 0);
    uni.ifindex = 9;
    let r = reply(f.handle(&Client::new(2).solicit(), &uni, NOW));
    assert_eq!(r.dst, uni.src);
    // Not in test mode, a relay is answered on 547.
    let mut f = Fixture::new(YAML);
    assert_eq!(reply(f.handle(&m, &arr, NOW)).dst.port(), SERVER_PORT);
}

#[test]
fn owner_shard_follows_the_duid_through_relays() {
    let f = Fixture::new(YAML);
    for n in 0..50u8 {
        let m = Client::new(n).solicit();
        let want = f.engine.owner(&duid(n));
        assert_eq!(owner_shard(&m, &f.engine), Some(want));
        let nested = relay(
            &relayed(&m, "fe80::1", &[]),
            1,
            a(RELAY_SRC),
            a("fe80::2"),
            &[],
        );
        assert_eq!(owner_shard(&nested, &f.engine), Some(want));
    }
    assert_eq!(owner_shard(&[], &f.engine), None);
    assert_eq!(
        owner_shard(&message(msg::INFORMATION_REQUEST, &[]), &f.engine),
        None
    );
}

/// The kernel's steering program (`lessor_net::v6::attach_steering`, mirrored by its
/// `steer_index`) picks the worker the server's own rule names, for clients sent direct and
/// through relays that add options of their own, with any number of workers.
#[test]
fn the_steering_program_picks_the_owner() {
    let f = Fixture::new(YAML);
    for workers in 1..=6 {
        let engine = Engine::new(f.ctx.engine_config(workers)).unwrap();
        for n in 0..=255u8 {
            let m = Client::new(n).solicit();
            let once = relayed(&m, "fe80::1", &[option(18, b"eth0")]);
            let twice = relay(&once, 1, a(RELAY_SRC), a("fe80::2"), &[option(37, &[0; 8])]);
            for p in [&m, &once, &twice] {
                assert_eq!(
                    lessor_net::v6::steer_index(p, workers),
                    owner_shard(p, &engine),
                    "client {n}, {workers} workers"
                );
            }
        }
    }
}

#[test]
fn malformed_input_is_counted_not_fatal() {
    let mut f = Fixture::new(YAML);
    let mut m = Client::new(1).solicit();
    m.extend([0, 23, 0, 200, 1]);
    assert_no_reply(
        f.relayed(&m, NOW).0,
        NoReply::Malformed(Malformed::OptionOverrun),
    );
    assert_eq!(
        no_reply(f.relayed(&[msg::ADVERTISE, 0, 0, 0], NOW).0).label(),
        "v6_not_client_message"
    );
}

/// The server's own unicast addresses on eth9, where a client could send to.
fn unicast_arrivals() -> [Arrival; 2] {
    let mut global = direct_arrival();
    global.src = SocketAddrV6::new(a("2001:db8:1::100"), CLIENT_PORT, 0, 0);
    global.dst = a("2001:db8:1::2");
    let mut link_local = direct_arrival();
    link_local.dst = a("fe80::9");
    [global, link_local]
}

#[test]
fn an_information_request_sent_to_a_unicast_address_is_dropped_and_counted() {
    let with_unicast = YAML.replace(
        "  preference: 10\n",
        "  preference: 10\n  server_unicast: \"2001:db8:1::2\"\n",
    );
    let ir = message(
        msg::INFORMATION_REQUEST,
        &[option(opt::CLIENTID, &duid(1)), option(opt::ORO, &[0, 23])],
    );
    for yaml in [YAML, with_unicast.as_str()] {
        let mut f = Fixture::new(yaml);
        for arrival in unicast_arrivals() {
            // RFC 8415 §16: discarded even when Server Unicast was offered.
            let why = no_reply(f.handle(&ir, &arrival, NOW));
            assert_eq!(why, NoReply::Unicast, "to {}", arrival.dst);
            assert_eq!(why.label(), "v6_unicast");
        }
        // To the multicast address it is answered, and through a relay (which sends to our
        // unicast address) too.
        assert!(f.direct(&ir, NOW).1.is_some());
        let (o, rep) = f.relayed(&ir, NOW);
        assert_eq!(reply(o).src, Some(relay_arrival().dst));
        assert_eq!(rep.unwrap().msg.msg_type(), MessageType::Reply);
    }
}

#[test]
fn solicit_confirm_and_rebind_to_a_unicast_address_are_dropped_and_the_rest_get_use_multicast() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1);
    let mut ia = c.base();
    ia.push(ia_na(1, &[iaaddr(a("2001:db8:1::100"), 0, 0)]));
    let mut named = ia.clone();
    named.push(option(opt::SERVERID, SERVER_DUID));
    for arrival in unicast_arrivals() {
        // RFC 8415 §16.
        for t in [msg::SOLICIT, msg::CONFIRM, msg::REBIND] {
            assert_eq!(
                no_reply(f.handle(&message(t, &ia), &arrival, NOW)),
                NoReply::Unicast,
                "message type {t}"
            );
        }
        // RFC 8415 §18.4: no Server Unicast offered: UseMulticast, the identifiers, no IA.
        for t in [msg::REQUEST, msg::RENEW, msg::RELEASE, msg::DECLINE] {
            let r = reply(f.handle(&message(t, &named), &arrival, NOW));
            assert_eq!(r.src, Some(arrival.dst));
            let m = unwrap(&f.out).msg;
            assert_eq!(status(m.opts()), Some(v6::Status::UseMulticast), "type {t}");
            assert!(nas(&m).is_empty());
        }
    }
    assert!(f.events.is_empty());
}

#[test]
fn a_release_or_decline_of_an_ia_without_a_binding_names_that_ia_with_no_binding() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1).na(&[1]);
    let rep = f.lease(&c);
    let (mine, _, _) = addr_of(nas(&rep.msg)[0]).unwrap();
    let other = f.lease(&Client::new(2));
    let (theirs, _, _) = addr_of(nas(&other.msg)[0]).unwrap();
    f.events.clear();
    for t in [msg::RELEASE, msg::DECLINE] {
        let mut o = c.base();
        o.push(option(opt::SERVERID, SERVER_DUID));
        // IA 2 was never bound; IA 3 lists another client's address; the IA_PD has none.
        o.push(ia_na(2, &[iaaddr(mine, 0, 0)]));
        o.push(ia_na(3, &[iaaddr(theirs, 0, 0)]));
        o.push(ia_pd(4, &[iaprefix(a("2001:db8:100:100::"), 56, 0, 0)]));
        let (r, rep) = f.relayed(&message(t, &o), NOW);
        assert!(!reply(r).needs_durable);
        let m = rep.unwrap().msg;
        // RFC 8415 §18.3.7 / §18.3.8: Success at the top, NoBinding inside each such IA.
        assert_eq!(status(m.opts()), Some(v6::Status::Success), "type {t}");
        let ias: Vec<_> = nas(&m).iter().map(|ia| (ia.id, status(&ia.opts))).collect();
        assert_eq!(
            ias,
            [
                (2, Some(v6::Status::NoBinding)),
                (3, Some(v6::Status::NoBinding))
            ],
            "type {t}"
        );
        assert!(nas(&m).iter().all(|ia| addr_of(ia).is_none()));
        if t == msg::RELEASE {
            assert_eq!(status(&pds(&m)[0].opts), Some(v6::Status::NoBinding));
        } else {
            // §18.3.8: a DECLINE is about addresses; an IA_PD in it is ignored.
            assert!(pds(&m).is_empty());
        }
        assert!(f.events.is_empty(), "nobody's lease changed");
    }
    // The IA that is bound is released, and is not named in the reply.
    let (_, rep) = f.relayed(&c.echo(msg::RELEASE, &rep.msg), NOW);
    let m = rep.unwrap().msg;
    assert_eq!(status(m.opts()), Some(v6::Status::Success));
    assert!(nas(&m).is_empty());
    assert_eq!(f.events.last().unwrap().kind, EventKind::Released);
    // Released twice: now it has no binding.
    let (_, rep) = f.relayed(&c.echo(msg::RELEASE, &rep_with(mine)), NOW);
    let m = rep.unwrap().msg;
    assert_eq!(status(&nas(&m)[0].opts), Some(v6::Status::NoBinding));
}

/// A REPLY-shaped message holding IA_NA 1 with `addr`, for [`Client::echo`].
fn rep_with(addr: Ipv6Addr) -> v6::Message {
    let mut m = v6::Message::new(MessageType::Reply);
    let ia = IANA {
        id: 1,
        t1: 0,
        t2: 0,
        opts: vec![DhcpOption::IAAddr(v6::IAAddr {
            addr,
            preferred_life: 0,
            valid_life: 0,
            opts: DhcpOptions::new(),
        })]
        .into_iter()
        .collect(),
    };
    m.opts_mut().insert(DhcpOption::IANA(ia));
    m
}

#[test]
fn a_subnet_without_pools_still_sends_the_requested_options_with_no_addrs_avail() {
    let yaml = "v6:\n  subnets:\n    - subnet: \"2001:db8:1::/64\"\n      interface: eth9\n      options: { dns_servers: [\"2001:db8:1::53\"] }\n";
    let mut f = Fixture::with_csv(yaml, "id,address,prefix\n");
    let c = Client::new(1).pd(&[2]);
    let (o, adv) = f.direct(&c.solicit(), NOW);
    assert_eq!(reply(o).kind, ReplyKind::Advertise);
    let m = adv.unwrap().msg;
    // RFC 8415 §18.3.9.
    assert_eq!(status(&nas(&m)[0].opts), Some(v6::Status::NoAddrsAvail));
    assert_eq!(status(&pds(&m)[0].opts), Some(v6::Status::NoPrefixAvail));
    assert_eq!(
        m.opts().get(OptionCode::DomainNameServers),
        Some(&DhcpOption::DomainNameServers(vec![a("2001:db8:1::53")]))
    );
}

/// YAML with global options, so an answer without a subnet has something to carry.
fn yaml_with_global_options() -> String {
    YAML.replace(
        "  preference: 10\n",
        "  preference: 10\n  options: { dns_servers: [\"2001:db8:ff::53\"] }\n",
    )
}

#[test]
fn a_relayed_solicit_from_a_link_no_subnet_matches_gets_no_addrs_avail_per_ia() {
    let mut f = Fixture::new(&yaml_with_global_options());
    let c = Client::new(1).pd(&[2]);
    // A link-address outside every subnet, and an interface-id no subnet lists (with no
    // link-address, as a lightweight relay sends).
    let off_link = relay(&c.solicit(), 0, a("2001:db8:77::1"), a("fe80::c1"), &[]);
    let unknown_iid = relay(
        &c.solicit(),
        0,
        Ipv6Addr::UNSPECIFIED,
        a("fe80::c1"),
        &[option(opt::INTERFACE_ID, b"nobody/1")],
    );
    for m in [off_link, unknown_iid] {
        let (o, adv) = f.raw(&m, NOW);
        let r = reply(o);
        assert_eq!(r.kind, ReplyKind::Advertise);
        assert!(r.no_subnet, "counted as no_subnet");
        assert!(!r.needs_durable);
        let adv = adv.unwrap();
        assert_eq!(adv.layers.len(), 1);
        let m = adv.msg;
        // As Kea: each IA says why (RFC 8415 §18.3.9), the global options come along.
        assert_eq!(status(&nas(&m)[0].opts), Some(v6::Status::NoAddrsAvail));
        assert_eq!(status(&pds(&m)[0].opts), Some(v6::Status::NoPrefixAvail));
        assert_eq!(
            m.opts().get(OptionCode::DomainNameServers),
            Some(&DhcpOption::DomainNameServers(vec![a("2001:db8:ff::53")]))
        );
        assert!(m.opts().get(OptionCode::ServerId).is_some());
    }
    assert!(f.events.is_empty());
    // A matching link is not flagged.
    let (o, _) = f.relayed(&c.solicit(), NOW);
    assert!(!reply(o).no_subnet);
}

#[test]
fn request_renew_rebind_and_confirm_from_a_link_no_subnet_matches() {
    let mut f = Fixture::new(&yaml_with_global_options());
    let c = Client::new(1);
    let send = |f: &mut Fixture, t: u8, named: bool| {
        let mut o = c.base();
        if named {
            o.push(option(opt::SERVERID, SERVER_DUID));
        }
        o.push(ia_na(1, &[iaaddr(a("2001:db8:77::5"), 0, 0)]));
        o.push(ia_pd(2, &[]));
        let m = relay(&message(t, &o), 0, a("2001:db8:77::1"), a("fe80::c1"), &[]);
        let (o, d) = f.raw(&m, NOW);
        (o, d.map(|d| d.msg))
    };
    // RFC 8415 §18.3.2: nothing to assign there.
    let (o, m) = send(&mut f, msg::REQUEST, true);
    assert!(reply(o).no_subnet);
    let m = m.unwrap();
    assert_eq!(m.msg_type(), MessageType::Reply);
    assert_eq!(status(&nas(&m)[0].opts), Some(v6::Status::NoAddrsAvail));
    assert_eq!(status(&pds(&m)[0].opts), Some(v6::Status::NoPrefixAvail));
    // §18.3.4: no binding can be found without the link.
    let (o, m) = send(&mut f, msg::RENEW, true);
    assert!(reply(o).no_subnet);
    let m = m.unwrap();
    assert_eq!(status(&nas(&m)[0].opts), Some(v6::Status::NoBinding));
    assert_eq!(status(&pds(&m)[0].opts), Some(v6::Status::NoBinding));
    // §18.3.5 and §18.3.3: the server cannot judge the addresses, so it stays silent.
    let (o, _) = send(&mut f, msg::REBIND, false);
    assert_no_reply(o, NoReply::NoSubnet);
    let (o, _) = send(&mut f, msg::CONFIRM, false);
    assert_no_reply(o, NoReply::NoSubnet);
    assert_eq!(NoReply::NoSubnet.label(), "v6_no_subnet");
    // RELEASE needs no link: NoBinding, as anywhere.
    let (o, m) = send(&mut f, msg::RELEASE, true);
    assert!(!reply(o).no_subnet);
    assert_eq!(
        status(&nas(&m.unwrap())[0].opts),
        Some(v6::Status::NoBinding)
    );
    assert!(f.events.is_empty());
}

#[test]
fn a_stateless_server_answers_information_requests_and_refuses_ias() {
    let yaml = "v6:\n  options: { dns_servers: [\"2001:db8:ff::53\"], sntp_servers: [\"2001:db8:ff::123\"] }\n";
    let mut f = Fixture::with_csv(yaml, "id,address,prefix\n");
    assert!(f.ctx.config().enabled());
    // RFC 8415 §18.3.6: the options the ORO asks for, no IA, no lease.
    let ir = message(
        msg::INFORMATION_REQUEST,
        &[option(opt::CLIENTID, &duid(1)), option(opt::ORO, &[0, 23])],
    );
    let (o, rep) = f.direct(&ir, NOW);
    assert!(!reply(o).no_subnet);
    let m = rep.unwrap().msg;
    assert_eq!(m.msg_type(), MessageType::Reply);
    assert_eq!(
        m.opts().get(OptionCode::DomainNameServers),
        Some(&DhcpOption::DomainNameServers(vec![a("2001:db8:ff::53")]))
    );
    assert!(unknown(m.opts(), 31).is_none(), "not in the ORO");
    // Relayed too.
    let (_, rep) = f.relayed(&ir, NOW);
    assert!(
        rep.unwrap()
            .msg
            .opts()
            .get(OptionCode::DomainNameServers)
            .is_some()
    );
    // A SOLICIT learns there is nothing to assign, with the options (RFC 8415 §18.3.9).
    let (o, adv) = f.direct(&Client::new(2).pd(&[3]).solicit(), NOW);
    assert!(reply(o).no_subnet);
    let m = adv.unwrap().msg;
    assert_eq!(status(&nas(&m)[0].opts), Some(v6::Status::NoAddrsAvail));
    assert_eq!(status(&pds(&m)[0].opts), Some(v6::Status::NoPrefixAvail));
    assert!(m.opts().get(OptionCode::DomainNameServers).is_some());
    assert!(f.events.is_empty());
}

const SHARED: &str = r#"
v6:
  options: { dns_servers: ["2001:db8::53"] }
  subnets:
    - { subnet: "2001:db8:9::/64", relays: ["2001:db8:99::9"], pools: ["2001:db8:9::10-2001:db8:9::1f"] }
  shared_networks:
    - name: floor1
      relays: ["2001:db8:ffff::1"]
      interface_ids: ["olt/1"]
      subnets:
        - subnet: "2001:db8:1::/64"
          pools: ["2001:db8:1::10-2001:db8:1::11"]
          preferred_lifetime: 1000
          valid_lifetime: 2000
        - subnet: "2001:db8:2::/64"
          pools: ["2001:db8:2::10-2001:db8:2::1f"]
          preferred_lifetime: 500
          valid_lifetime: 1500
          reservations:
            - { duid: "00:03:00:01:02:00:00:00:00:40", address: "2001:db8:2::40" }
"#;

/// Sends `m` from a relay whose link-address is `link` (and interface-id `iid`, if any).
fn via(f: &mut Fixture, m: &[u8], link: &str, iid: Option<&[u8]>) -> Decoded {
    let opts: Vec<Vec<u8>> = iid
        .map(|i| option(opt::INTERFACE_ID, i))
        .into_iter()
        .collect();
    let wrapped = relay(m, 0, a(link), a("fe80::c1"), &opts);
    f.raw(&wrapped, NOW).1.expect("a reply")
}

#[test]
fn a_shared_network_fills_its_subnets_in_order_each_with_its_own_lifetimes() {
    let mut f = Fixture::with_csv(SHARED, "id,address,prefix\n");
    let mut got = Vec::new();
    for n in 1..=3u8 {
        let c = Client::new(n).with(option(opt::RAPID_COMMIT, &[]));
        let (o, adv) = f.raw(
            &relay(&c.solicit(), 0, a("2001:db8:ffff::1"), a("fe80::c1"), &[]),
            NOW,
        );
        assert!(!reply(o).no_subnet);
        let m = adv.unwrap().msg;
        got.push(addr_of(nas(&m)[0]).expect("an address"));
    }
    // The first subnet's two addresses, then the second subnet's, each with its lifetimes.
    assert_eq!(got[0].1, 1000);
    assert_eq!(got[1].1, 1000);
    assert!([a("2001:db8:1::10"), a("2001:db8:1::11")].contains(&got[0].0));
    assert!([a("2001:db8:1::10"), a("2001:db8:1::11")].contains(&got[1].0));
    assert!((a("2001:db8:2::10")..=a("2001:db8:2::1f")).contains(&got[2].0));
    assert_eq!((got[2].1, got[2].2), (500, 1500));
    // The interface-id selects the same link: its next client also lands in the second subnet.
    let m = via(&mut f, &Client::new(4).solicit(), "::", Some(b"olt/1")).msg;
    let (x, _, _) = addr_of(nas(&m)[0]).unwrap();
    assert!(
        (a("2001:db8:2::10")..=a("2001:db8:2::1f")).contains(&x),
        "{x}"
    );
    // A reservation in the second subnet holds when the link was chosen by the shared relay.
    let mut r = Client::new(0x40);
    r.duid = vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 0x40];
    let m = via(&mut f, &r.solicit(), "2001:db8:ffff::1", None).msg;
    assert_eq!(addr_of(nas(&m)[0]).unwrap().0, a("2001:db8:2::40"));
    // Every subnet of the link is on-link (RFC 8415 §18.3.3); another subnet is not.
    let confirm = |addr: &str| {
        let mut o = Client::new(9).base();
        o.push(ia_na(1, &[iaaddr(a(addr), 0, 0)]));
        message(msg::CONFIRM, &o)
    };
    for (addr, want) in [
        ("2001:db8:1::99", v6::Status::Success),
        ("2001:db8:2::99", v6::Status::Success),
        ("2001:db8:9::99", v6::Status::NotOnLink),
    ] {
        let m = via(&mut f, &confirm(addr), "2001:db8:ffff::1", None).msg;
        assert_eq!(status(m.opts()), Some(want), "{addr}");
    }
    // The lone subnet is a link of its own.
    let m = via(&mut f, &Client::new(5).solicit(), "2001:db8:99::9", None).msg;
    let (x, _, _) = addr_of(nas(&m)[0]).unwrap();
    assert!(
        (a("2001:db8:9::10")..=a("2001:db8:9::1f")).contains(&x),
        "{x}"
    );
}

#[test]
fn a_shared_network_offers_its_first_subnet_first_whatever_the_clients_shard() {
    let yaml = SHARED.replace(
        "pools: [\"2001:db8:1::10-2001:db8:1::11\"]",
        "pools: [\"2001:db8:1::10\"]",
    );
    // The engine splits the one address of the first subnet to one of its two shards; clients
    // of either shard get it first, and the second subnet after it.
    for n in [1u8, 2] {
        let mut f = Fixture::with_csv(&yaml, "id,address,prefix\n");
        let m = via(&mut f, &Client::new(n).solicit(), "2001:db8:ffff::1", None).msg;
        assert_eq!(
            addr_of(nas(&m)[0]).unwrap().0,
            a("2001:db8:1::10"),
            "client {n}"
        );
        let rep = f.lease(&Client::new(n)).msg;
        assert_eq!(addr_of(nas(&rep)[0]).unwrap().0, a("2001:db8:1::10"));
        let other = via(
            &mut f,
            &Client::new(n + 2).solicit(),
            "2001:db8:ffff::1",
            None,
        )
        .msg;
        let (x, _, _) = addr_of(nas(&other)[0]).unwrap();
        assert!(
            (a("2001:db8:2::10")..=a("2001:db8:2::1f")).contains(&x),
            "{x}"
        );
        // The first subnet's address is free again, but a client that holds one in the
        // second subnet keeps getting that one (its record's subnet is tried first).
        let (_, rel) = f.relayed(&Client::new(n).echo(msg::RELEASE, &rep), NOW);
        assert_eq!(status(rel.unwrap().msg.opts()), Some(v6::Status::Success));
        let again = via(
            &mut f,
            &Client::new(n + 2).solicit(),
            "2001:db8:ffff::1",
            None,
        )
        .msg;
        assert_eq!(addr_of(nas(&again)[0]).unwrap().0, x);
    }
}

const GLOBAL: &str = r#"
v6:
  options: { dns_servers: ["2001:db8::53"] }
  subnets:
    - subnet: "2001:db8:1::/64"
      pools: ["2001:db8:1::100-2001:db8:1::1ff"]
      pd_pools: [ { prefix: "2001:db8:100::/48", delegated_len: 56 } ]
      reservations:
        - { duid: "00:03:00:01:02:00:00:00:00:03", address: "2001:db8:1::33" }
    - subnet: "2001:db8:2::/64"
      relays: ["2001:db8:99::1"]
      pools: ["2001:db8:2::100-2001:db8:2::1ff"]
  reservations:
    - { duid: "00:03:00:01:02:00:00:00:00:01", address: "2001:db8:1::11", options: { sntp_servers: ["2001:db8::123"] } }
    - { duid: "00:03:00:01:02:00:00:00:00:02", prefix: "2001:db8:100:ab00::/56" }
    - { duid: "00:03:00:01:02:00:00:00:00:03", address: "2001:db8:1::34", options: { sntp_servers: ["2001:db8::124"] } }
    - { remote_id: "3561:FAR", prefix: "2001:db8:f000::/56" }
"#;

#[test]
fn global_reservations_hold_where_they_fit_and_their_options_always() {
    let mut f = Fixture::with_csv(GLOBAL, "id,address,prefix\n");
    let mut c = Client::new(1).pd(&[2]);
    c.oro = vec![23, 31];
    // Arriving in subnet 1: the reserved address, its options over the subnet's.
    let m = f.lease(&c).msg;
    assert_eq!(addr_of(nas(&m)[0]).unwrap().0, a("2001:db8:1::11"));
    assert_eq!(
        unknown(m.opts(), 31),
        Some(a("2001:db8::123").octets().to_vec())
    );
    assert_eq!(
        m.opts().get(OptionCode::DomainNameServers),
        Some(&DhcpOption::DomainNameServers(vec![a("2001:db8::53")]))
    );
    // Arriving in subnet 2: the address is off-link, so a dynamic one; the options still apply.
    let mut c2 = c.clone();
    c2.na = vec![7];
    let m = via(&mut f, &c2.solicit(), "2001:db8:99::1", None).msg;
    let (x, _, _) = addr_of(nas(&m)[0]).unwrap();
    assert!(
        (a("2001:db8:2::100")..=a("2001:db8:2::1ff")).contains(&x),
        "{x}"
    );
    assert_eq!(
        unknown(m.opts(), 31),
        Some(a("2001:db8::123").octets().to_vec())
    );
    // A reserved prefix inside the link's delegation pools is used; never handed to others.
    let m = f.lease(&Client::new(2).pd(&[1])).msg;
    assert_eq!(first_prefix(&m), a("2001:db8:100:ab00::"));
    // One outside them is not: a dynamic prefix.
    let far = relayed(
        &Client::new(4).pd(&[1]).solicit(),
        "fe80::c4",
        &[remote_id_3561(b"FAR")],
    );
    let m = f.raw(&far, NOW).1.unwrap().msg;
    let (p, len, _, _) = prefix_of(pds(&m)[0]).unwrap();
    assert_eq!(len, 56);
    assert!(
        ipnet::Ipv6Net::new(a("2001:db8:100::"), 48)
            .unwrap()
            .contains(&p),
        "{p}"
    );
    // The subnet's own reservation wins over the global one, options included.
    let mut c3 = Client::new(3);
    c3.oro = vec![31];
    let m = f.lease(&c3).msg;
    assert_eq!(addr_of(nas(&m)[0]).unwrap().0, a("2001:db8:1::33"));
    assert!(unknown(m.opts(), 31).is_none());
    // Dynamic clients never get a globally reserved address or prefix.
    for n in 10..40u8 {
        let m = f.lease(&Client::new(n).pd(&[1])).msg;
        assert_ne!(addr_of(nas(&m)[0]).unwrap().0, a("2001:db8:1::11"));
        assert_ne!(first_prefix(&m), a("2001:db8:100:ab00::"));
    }
}

#[test]
fn a_global_reservations_options_answer_an_information_request() {
    let mut f = Fixture::with_csv(GLOBAL, "id,address,prefix\n");
    let ir = message(
        msg::INFORMATION_REQUEST,
        &[
            option(opt::CLIENTID, &duid(1)),
            option(opt::ORO, &[0, 23, 0, 31]),
        ],
    );
    let m = f.relayed(&ir, NOW).1.unwrap().msg;
    assert_eq!(
        unknown(m.opts(), 31),
        Some(a("2001:db8::123").octets().to_vec())
    );
    assert!(m.opts().get(OptionCode::DomainNameServers).is_some());
}

#[test]
fn pd_exclude_is_sent_only_when_the_oro_asks_for_it() {
    let mut f = Fixture::new(YAML);
    let mut c = Client::new(1).na(&[]).pd(&[7]);
    // RFC 6603 §4.2: not in the ORO, not sent, though the pool has an excluded prefix.
    c.oro = vec![23];
    let (_, adv) = f.direct(&c.solicit(), NOW);
    let m = adv.unwrap().msg;
    let DhcpOption::IAPrefix(iap) = pds(&m)[0].opts.get(OptionCode::IAPrefix).unwrap() else {
        panic!("{m:?}")
    };
    assert_eq!(unknown(&iap.opts, 67), None);
    c.oro = vec![23, 67];
    let (_, adv) = f.direct(&c.solicit(), NOW);
    let m = adv.unwrap().msg;
    let DhcpOption::IAPrefix(iap) = pds(&m)[0].opts.get(OptionCode::IAPrefix).unwrap() else {
        panic!("{m:?}")
    };
    assert_eq!(unknown(&iap.opts, 67), Some(vec![64, 0xff]));
}

#[test]
fn a_subscriber_id_reservation_holds_and_relay_options_are_not_echoed() {
    let yaml = YAML.replace(
        "        - { remote_id: \"3561:CUST1\", prefix: \"2001:db8:f000:100::/56\" }\n",
        "        - { remote_id: \"3561:CUST1\", prefix: \"2001:db8:f000:100::/56\" }\n        \
         - { subscriber_id: \"sub-42\", prefix: \"2001:db8:f000:4200::/56\" }\n",
    );
    let mut f = Fixture::new(&yaml);
    // RFC 4580: the subscriber-id (option 38) names the customer; with a remote-id (RFC 4649)
    // and an interface-id beside it.
    let m = relayed(
        &Client::new(1).na(&[]).pd(&[1]).solicit(),
        "fe80::c1",
        &[
            option(opt::SUBSCRIBER_ID, b"sub-42"),
            remote_id_3561(b"NOBODY"),
            option(opt::INTERFACE_ID, b"port1"),
        ],
    );
    let (_, adv) = f.raw(&m, NOW);
    // `unwrap` refuses any RELAY-REPL option but Interface-ID and Relay Message (RFC 8415
    // §19.3: only the Interface-ID is copied back).
    let adv = adv.unwrap();
    assert_eq!(adv.layers[0].interface_id.as_deref(), Some(&b"port1"[..]));
    assert_eq!(first_prefix(&adv.msg), a("2001:db8:f000:4200::"));
}

/// A deliberate deviation (docs/CONFORMANCE.md): RFC 8415 §18.3.8 answers NoBinding for an
/// IA without a binding, but an address only advertised to the client is quarantined all the
/// same, so it is handed to nobody else while it may be in use.
#[test]
fn a_decline_of_an_advertised_address_quarantines_it() {
    let mut f = Fixture::new(YAML);
    let c = Client::new(1);
    let (_, adv) = f.relayed(&c.solicit(), NOW);
    let adv = adv.unwrap().msg;
    let (x, _, _) = addr_of(nas(&adv)[0]).unwrap();
    let (_, rep) = f.relayed(&c.echo(msg::DECLINE, &adv), NOW);
    let m = rep.unwrap().msg;
    assert_eq!(status(m.opts()), Some(v6::Status::Success));
    assert!(nas(&m).is_empty(), "{m:?}");
    assert_eq!(f.events.last().unwrap().kind, EventKind::Declined);
    assert_eq!(f.events.last().unwrap().lease.resource.addr, x);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// No input stalls (docs/ARCHITECTURE.md): no input panics the handler.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut f = Fixture::new(YAML);
        let _ = f.handle(&data, &relay_arrival(), NOW);
        let _ = f.handle(&data, &direct_arrival(), NOW);
    }

    /// Valid headers with arbitrary option bytes, relayed or not: never a panic, and every
    /// reply unwraps and decodes.
    #[test]
    fn arbitrary_options_never_panic(
        opts in proptest::collection::vec(any::<u8>(), 0..400),
        t in 1u8..14,
        via_relay in any::<bool>(),
    ) {
        let mut f = Fixture::new(YAML);
        let mut data = message(t, &[option(opt::CLIENTID, &duid(1))]);
        data.extend_from_slice(&opts);
        if via_relay {
            data = relayed(&data, "fe80::1", &[option(opt::INTERFACE_ID, b"x")]);
        }
        if let Outcome::Reply(_) = f.handle(&data, &direct_arrival(), NOW) {
            let _ = unwrap(&f.out);
        }
    }
}
