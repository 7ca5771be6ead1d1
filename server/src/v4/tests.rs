//! Sans-IO scenarios for the DHCPv4 handler: requests in, replies decoded by dhcproto's owned
//! decoder (an implementation independent of ours).

mod balanced;

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};
use lessor_engine::EventKind;
use lessor_engine::v4::{Engine, LeaseEvent};
use proptest::prelude::*;

use super::*;
use crate::config::Config;
use crate::proto::{assert_no_reply, reply};

/// Relays, reservations of every kind, an interface subnet and a shared network.
const YAML: &str = include_str!("../../tests/fixtures/v4.yaml");

const RELAY: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 2);
const NOW: u64 = 1_800_000_000;

struct Fixture {
    ctx: Context,
    engine: Engine,
    scratch: Scratch,
    out: Vec<u8>,
    events: Vec<LeaseEvent>,
    /// The load-balancing scopes served (`crate::scope`).
    scopes: u8,
}

impl Fixture {
    fn new(yaml: &str) -> Self {
        let config = Config::from_yaml_str(yaml).expect("test config is valid");
        let ifaces = [InterfaceInfo {
            index: 9,
            name: "eth9".into(),
            addrs: vec![Ipv4Addr::new(10, 232, 0, 1)],
        }];
        let ctx = Context::new(&config, &ifaces);
        let engine = Engine::new(ctx.engine_config(2)).unwrap();
        Fixture {
            ctx,
            engine,
            scratch: Scratch::default(),
            out: Vec::new(),
            events: Vec::new(),
            scopes: crate::scope::ALL,
        }
    }

    /// Handles `pkt` as if it came from the relay at `RELAY` (or from `src` if given).
    fn send(&mut self, pkt: &Pkt, now: u64) -> (Outcome, Option<v4::Message>) {
        let src = if pkt.giaddr.is_unspecified() {
            SocketAddrV4::new(pkt.ciaddr, CLIENT_PORT)
        } else {
            SocketAddrV4::new(pkt.giaddr, SERVER_PORT)
        };
        let arrival = Arrival {
            src,
            ifindex: pkt.ifindex,
            local: SERVER,
        };
        let bytes = pkt.encode();
        let o = handle(
            &self.ctx,
            &self.engine,
            Received::new(&bytes, arrival, now).serving(self.scopes),
            &mut self.scratch,
            &mut self.out,
            &mut self.events,
        );
        let msg = match o {
            Outcome::Reply(_) => Some(
                v4::Message::decode(&mut Decoder::new(&self.out))
                    .expect("our reply decodes with dhcproto"),
            ),
            Outcome::NoReply(_) => None,
        };
        (o, msg)
    }

    fn dora(&mut self, pkt: Pkt) -> Ipv4Addr {
        let (_, offer) = self.send(&pkt.clone().kind(1), NOW);
        let offer = offer.expect("an offer");
        assert_eq!(msg_type(&offer), MessageType::Offer);
        let yiaddr = offer.yiaddr();
        let (_, ack) = self.send(
            &pkt.kind(3)
                .opt(50, &yiaddr.octets())
                .opt(54, &SERVER.octets()),
            NOW,
        );
        let ack = ack.expect("an ack");
        assert_eq!(msg_type(&ack), MessageType::Ack);
        assert_eq!(ack.yiaddr(), yiaddr);
        yiaddr
    }
}

/// A request under construction.
#[derive(Clone, Debug)]
struct Pkt {
    chaddr: [u8; 6],
    htype: u8,
    flags: u16,
    ciaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    ifindex: u32,
    opts: Vec<(u8, Vec<u8>)>,
}

impl Pkt {
    fn relayed(mac_last: u8) -> Self {
        Pkt {
            chaddr: [2, 0, 0, 0, 0, mac_last],
            htype: 1,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: RELAY,
            ifindex: 1,
            opts: vec![(55, vec![1, 3, 6, 15, 12])],
        }
    }
    fn kind(mut self, t: u8) -> Self {
        self.opts.retain(|(c, _)| *c != 53);
        self.opts.insert(0, (53, vec![t]));
        self
    }
    fn opt(mut self, code: u8, v: &[u8]) -> Self {
        self.opts.retain(|(c, _)| *c != code);
        self.opts.push((code, v.to_vec()));
        self
    }
    fn no_opt(mut self, code: u8) -> Self {
        self.opts.retain(|(c, _)| *c != code);
        self
    }
    fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; 236];
        b[0] = 1;
        b[1] = self.htype;
        b[2] = 6;
        b[3] = u8::from(!self.giaddr.is_unspecified());
        b[4..8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        b[10..12].copy_from_slice(&self.flags.to_be_bytes());
        b[12..16].copy_from_slice(&self.ciaddr.octets());
        b[24..28].copy_from_slice(&self.giaddr.octets());
        b[28..34].copy_from_slice(&self.chaddr);
        b.extend_from_slice(&[99, 130, 83, 99]);
        for (c, v) in &self.opts {
            b.push(*c);
            b.push(v.len() as u8);
            b.extend_from_slice(v);
        }
        b.push(255);
        b
    }
}

fn msg_type(m: &v4::Message) -> MessageType {
    match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => *t,
        other => panic!("no message type: {other:?}"),
    }
}

#[test]
fn dora_through_a_relay() {
    let mut f = Fixture::new(YAML);
    let (o, offer) = f.send(&Pkt::relayed(1).kind(1), NOW);
    let r = reply(o);
    assert!(!r.needs_durable, "an OFFER never waits for the disk");
    assert_eq!(r.dst, Destination::Unicast(SocketAddrV4::new(RELAY, 67)));
    let offer = offer.unwrap();
    assert_eq!(msg_type(&offer), MessageType::Offer);
    let ip = offer.yiaddr();
    assert!((Ipv4Addr::new(10, 231, 0, 100)..=Ipv4Addr::new(10, 231, 0, 103)).contains(&ip));
    assert_eq!(offer.giaddr(), RELAY);
    assert_eq!(offer.xid(), 0xdeadbeef);
    let o = offer.opts();
    assert_eq!(
        o.get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(
        o.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    assert_eq!(
        o.get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(3150))
    );
    assert_eq!(
        o.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![RELAY]))
    );
    assert_eq!(
        o.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        o.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("example.test".into()))
    );
    assert!(f.events.is_empty(), "an OFFER is not journaled");

    let req = Pkt::relayed(1)
        .kind(3)
        .opt(50, &ip.octets())
        .opt(54, &SERVER.octets());
    let (o, ack) = f.send(&req, NOW);
    let r = reply(o);
    assert!(r.needs_durable, "an ACK that binds waits for the journal");
    let ack = ack.unwrap();
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), ip);
    assert_eq!(f.events.len(), 1);
    assert_eq!(f.events[0].kind, EventKind::Bound);
    assert_eq!(f.events[0].lease.address, ip);
    assert_eq!(f.events[0].lease.expires, NOW + 3600);
}

#[test]
fn two_clients_two_addresses_and_exhaustion() {
    let mut f = Fixture::new(YAML);
    let mut seen = std::collections::BTreeSet::new();
    for i in 1..=4 {
        assert!(
            seen.insert(f.dora(Pkt::relayed(i))),
            "address handed out twice"
        );
    }
    // Four pool addresses, four clients: the fifth gets nothing (shards lent their space).
    let (o, _) = f.send(&Pkt::relayed(5).kind(1), NOW);
    assert_no_reply(o, NoReply::PoolExhausted);
}

#[test]
fn renew_keeps_the_address_and_unicasts_to_ciaddr() {
    let mut f = Fixture::new(YAML);
    let ip = f.dora(Pkt::relayed(1));
    f.events.clear();
    // RENEWING: unicast from the client, ciaddr set, no option 50/54 (RFC 2131 §4.3.2).
    let mut renew = Pkt::relayed(1).kind(3);
    renew.giaddr = Ipv4Addr::UNSPECIFIED;
    renew.ciaddr = ip;
    renew.ifindex = 77; // arrives unicast via some interface with no subnet of its own
    let (o, ack) = f.send(&renew, NOW + 1000);
    let r = reply(o);
    assert_eq!(r.dst, Destination::Unicast(SocketAddrV4::new(ip, 68)));
    let ack = ack.unwrap();
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), ip);
    assert_eq!(ack.ciaddr(), ip);
    assert_eq!(f.events[0].kind, EventKind::Renewed);
    assert_eq!(f.events[0].lease.expires, NOW + 1000 + 3600);
}

#[test]
fn release_frees_but_keeps_affinity() {
    let mut f = Fixture::new(YAML);
    let ip = f.dora(Pkt::relayed(1));
    let mut rel = Pkt::relayed(1).kind(7).opt(54, &SERVER.octets());
    rel.ciaddr = ip;
    let (o, _) = f.send(&rel, NOW + 5);
    assert_no_reply(o, NoReply::Released);
    assert_eq!(f.events.last().unwrap().kind, EventKind::Released);
    // The same client comes back and gets the same address (affinity).
    assert_eq!(f.dora(Pkt::relayed(1)), ip);
    // A release by someone else for that address does nothing.
    let mut rel = Pkt::relayed(9).kind(7);
    rel.ciaddr = ip;
    assert_no_reply(f.send(&rel, NOW + 6).0, NoReply::NoSuchLease);
}

#[test]
fn decline_quarantines_the_address() {
    let mut f = Fixture::new(YAML);
    let ip = f.dora(Pkt::relayed(1));
    let dec = Pkt::relayed(1)
        .kind(4)
        .opt(50, &ip.octets())
        .opt(54, &SERVER.octets());
    assert_no_reply(f.send(&dec, NOW).0, NoReply::Declined);
    assert_eq!(f.events.last().unwrap().kind, EventKind::Declined);
    for i in 2..=4 {
        assert_ne!(
            f.dora(Pkt::relayed(i)),
            ip,
            "a declined address was handed out"
        );
    }
}

#[test]
fn reservations_by_every_key() {
    let mut f = Fixture::new(YAML);
    let mut by_hw = Pkt::relayed(0);
    by_hw.chaddr = [2, 0x23, 0x10, 0, 0, 0x50];
    assert_eq!(f.dora(by_hw.clone()), Ipv4Addr::new(10, 231, 0, 50));
    // The reservation's hostname is sent when asked for (option 12 in the PRL).
    let (_, offer) = f.send(&by_hw.kind(1), NOW);
    assert_eq!(
        offer.unwrap().opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("printer".into()))
    );

    let by_cid = Pkt::relayed(20).opt(61, &[1, 2, 0x23, 0x10, 0, 0, 0x51]);
    assert_eq!(f.dora(by_cid.clone()), Ipv4Addr::new(10, 231, 0, 51));
    let (_, offer) = f.send(&by_cid.kind(1), NOW);
    // RFC 6842: the client identifier is echoed.
    assert_eq!(
        offer.unwrap().opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(vec![
            1, 2, 0x23, 0x10, 0, 0, 0x51
        ]))
    );

    let circuit = Pkt::relayed(21).opt(82, &[1, 5, b'p', b'o', b'r', b't', b'7']);
    assert_eq!(f.dora(circuit), Ipv4Addr::new(10, 231, 0, 57));
    let remote = Pkt::relayed(22).opt(82, &[2, 2, 0xca, 0xfe]);
    assert_eq!(f.dora(remote), Ipv4Addr::new(10, 231, 0, 58));

    // Reserved addresses are never handed to anyone else, even when asked for.
    let thief = Pkt::relayed(23).opt(50, &[10, 231, 0, 50]);
    assert_ne!(f.dora(thief), Ipv4Addr::new(10, 231, 0, 50));
}

#[test]
fn relay_agent_information_is_echoed_last() {
    let mut f = Fixture::new(YAML);
    let opt82 = [1u8, 3, b'a', b'b', b'c', 2, 1, 9];
    let (_, offer) = f.send(&Pkt::relayed(1).kind(1).opt(82, &opt82), NOW);
    let raw = &f.out;
    let offer = offer.unwrap();
    assert!(
        offer
            .opts()
            .get(OptionCode::RelayAgentInformation)
            .is_some()
    );
    // Walk the raw options: 82 must be the last one before END (RFC 3046 §2.1).
    let mut i = 240;
    let mut last = 0;
    while raw[i] != 255 {
        last = raw[i];
        i += 2 + usize::from(raw[i + 1]);
    }
    assert_eq!(last, 82);
    assert_eq!(&raw[i - opt82.len()..i], &opt82);
}

#[test]
fn client_fqdn_is_answered_and_stored() {
    let mut f = Fixture::new(YAML);
    // S=1 (please update A), E=1 (wire-format name: dhcproto decodes only that form).
    let p = Pkt::relayed(1).opt(81, b"\x05\0\0\x06laptop\x07example\x04test\0");
    f.dora(p.clone());
    assert_eq!(f.events[0].lease.hostname.as_deref(), Some("laptop"));
    let (_, ack) = f.send(&p.kind(1), NOW);
    let ack = ack.unwrap();
    match ack.opts().get(OptionCode::ClientFQDN) {
        Some(DhcpOption::ClientFQDN(fqdn)) => {
            // N set, O set (we override the client's S), S clear.
            let f = fqdn.flags();
            assert!(f.n() && f.o() && !f.s() && f.e(), "{fqdn:?}");
            assert_eq!(fqdn.r1(), 255);
        }
        other => panic!("no FQDN option in reply: {other:?}"),
    }
}

#[test]
fn requested_address_is_honoured_when_free() {
    let mut f = Fixture::new(YAML);
    let want = Ipv4Addr::new(10, 231, 0, 102);
    let (_, offer) = f.send(&Pkt::relayed(1).kind(1).opt(50, &want.octets()), NOW);
    assert_eq!(offer.unwrap().yiaddr(), want);
    // Outside the pool: ignored, an address from the pool instead.
    let (_, offer) = f.send(&Pkt::relayed(2).kind(1).opt(50, &[10, 231, 0, 7]), NOW);
    assert_ne!(offer.unwrap().yiaddr(), Ipv4Addr::new(10, 231, 0, 7));
}

#[test]
fn lease_time_is_negotiated_within_bounds() {
    let mut f = Fixture::new(YAML);
    for (asked, got) in [(30u32, 60u32), (600, 600), (100_000, 7200)] {
        let (_, offer) = f.send(&Pkt::relayed(1).kind(1).opt(51, &asked.to_be_bytes()), NOW);
        assert_eq!(
            offer.unwrap().opts().get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(got))
        );
    }
}

#[test]
fn init_reboot_on_the_wrong_network_is_naked() {
    let mut f = Fixture::new(YAML);
    // INIT-REBOOT: option 50, no server id, no ciaddr; the address is not on this link.
    let req = Pkt::relayed(1).kind(3).opt(50, &[192, 168, 1, 9]);
    let (o, nak) = f.send(&req, NOW);
    let r = reply(o);
    assert_eq!(r.kind, ReplyKind::Nak);
    assert_eq!(
        r.refused, None,
        "a client that moved is no allocation failure"
    );
    let nak = nak.unwrap();
    assert_eq!(msg_type(&nak), MessageType::Nak);
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(nak.opts().get(OptionCode::AddressLeaseTime).is_none());

    // Not authoritative: silence instead.
    let mut f = Fixture::new(&YAML.replace(
        "lease_time: 3600\n",
        "lease_time: 3600\n  authoritative: false\n",
    ));
    assert_no_reply(f.send(&req, NOW).0, NoReply::NotAuthoritative);
    // ... and for a client it does not know asking for an address on the right network.
    let req = Pkt::relayed(1).kind(3).opt(50, &[10, 231, 0, 101]);
    assert_no_reply(f.send(&req, NOW).0, NoReply::UnknownClient);
}

#[test]
fn init_reboot_for_a_known_client_is_acked() {
    let mut f = Fixture::new(YAML);
    let ip = f.dora(Pkt::relayed(1));
    let (_, ack) = f.send(&Pkt::relayed(1).kind(3).opt(50, &ip.octets()), NOW + 10);
    assert_eq!(msg_type(&ack.unwrap()), MessageType::Ack);
    // Asking for a different address than the bound one is refused.
    let other = Ipv4Addr::new(10, 231, 0, 103);
    let other = if other == ip {
        Ipv4Addr::new(10, 231, 0, 102)
    } else {
        other
    };
    let (_, nak) = f.send(&Pkt::relayed(1).kind(3).opt(50, &other.octets()), NOW + 10);
    assert_eq!(msg_type(&nak.unwrap()), MessageType::Nak);
}

#[test]
fn request_for_another_server_is_ignored() {
    let mut f = Fixture::new(YAML);
    let req = Pkt::relayed(1)
        .kind(3)
        .opt(50, &[10, 231, 0, 100])
        .opt(54, &[10, 9, 9, 9]);
    assert_no_reply(f.send(&req, NOW).0, NoReply::NotForUs);
    assert!(f.events.is_empty());
}

#[test]
fn request_for_an_address_held_by_another_is_naked() {
    let mut f = Fixture::new(YAML);
    let ip = f.dora(Pkt::relayed(1));
    let req = Pkt::relayed(2)
        .kind(3)
        .opt(50, &ip.octets())
        .opt(54, &SERVER.octets());
    let (o, nak) = f.send(&req, NOW);
    assert_eq!(msg_type(&nak.unwrap()), MessageType::Nak);
    assert_eq!(
        reply(o).refused,
        Some("address_taken"),
        "an allocation failure"
    );
}

#[test]
fn inform_gets_options_and_no_lease() {
    let mut f = Fixture::new(YAML);
    let mut inf = Pkt::relayed(1).kind(8);
    inf.ciaddr = Ipv4Addr::new(10, 231, 0, 9);
    inf.giaddr = Ipv4Addr::UNSPECIFIED;
    let (o, ack) = f.send(&inf, NOW);
    assert_eq!(
        reply(o).dst,
        Destination::Unicast(SocketAddrV4::new(inf.ciaddr, 68))
    );
    let ack = ack.unwrap();
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.ciaddr(), inf.ciaddr);
    assert!(ack.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert_eq!(
        ack.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![RELAY]))
    );
    assert!(f.events.is_empty());
}

#[test]
fn bootp_only_for_reservations() {
    let mut f = Fixture::new(YAML);
    let mut bootp = Pkt::relayed(0).no_opt(53);
    bootp.chaddr = [2, 0x23, 0x10, 0, 0, 0x50];
    let (o, rep) = f.send(&bootp, NOW);
    assert!(reply(o).needs_durable);
    let rep = rep.unwrap();
    assert_eq!(rep.yiaddr(), Ipv4Addr::new(10, 231, 0, 50));
    assert!(rep.opts().get(OptionCode::MessageType).is_none());
    assert!(f.out.len() >= 300, "BOOTP replies are at least 300 bytes");
    let stranger = Pkt::relayed(3).no_opt(53);
    assert_no_reply(f.send(&stranger, NOW).0, NoReply::BootpUnknown);
}

#[test]
fn direct_clients_are_served_by_their_interface_and_routed_per_rfc2131() {
    let mut f = Fixture::new(YAML);
    let mut d = Pkt::relayed(1).kind(1);
    d.giaddr = Ipv4Addr::UNSPECIFIED;
    d.ifindex = 9;
    let (o, offer) = f.send(&d, NOW);
    let ip = offer.unwrap().yiaddr();
    assert!((Ipv4Addr::new(10, 232, 0, 10)..=Ipv4Addr::new(10, 232, 0, 20)).contains(&ip));
    assert_eq!(
        reply(o).dst,
        Destination::UnicastToHardware {
            ip,
            mac: [2, 0, 0, 0, 0, 1],
            ifindex: 9
        }
    );
    d.flags = 0x8000;
    let (o, _) = f.send(&d, NOW);
    assert_eq!(
        reply(o).dst,
        Destination::Broadcast {
            port: 68,
            ifindex: 9
        }
    );
    // An interface with no subnet: nothing to offer.
    d.ifindex = 3;
    assert_no_reply(f.send(&d, NOW).0, NoReply::NoSubnet);
}

#[test]
fn link_and_subnet_selection_pick_the_subnet() {
    let mut f = Fixture::new(YAML);
    // RFC 3011 option 118 overrides the relay address.
    let (_, offer) = f.send(&Pkt::relayed(1).kind(1).opt(118, &[10, 232, 0, 0]), NOW);
    assert!(offer.unwrap().yiaddr().octets().starts_with(&[10, 232]));
    // RFC 3527 link selection (82/5) wins over everything.
    let (_, offer) = f.send(
        &Pkt::relayed(2)
            .kind(1)
            .opt(118, &[10, 231, 0, 0])
            .opt(82, &[5, 4, 10, 232, 0, 0]),
        NOW,
    );
    assert!(offer.unwrap().yiaddr().octets().starts_with(&[10, 232]));
    // RFC 5107 server identifier override becomes our identifier.
    let (_, offer) = f.send(
        &Pkt::relayed(3).kind(1).opt(82, &[11, 4, 10, 231, 0, 1]),
        NOW,
    );
    assert_eq!(
        offer.unwrap().opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(RELAY))
    );
}

#[test]
fn shared_network_spills_into_its_second_subnet() {
    let mut f = Fixture::new(YAML);
    let mut got = Vec::new();
    for i in 1..=3 {
        let mut p = Pkt::relayed(i);
        p.giaddr = Ipv4Addr::new(10, 240, 0, 1);
        got.push(f.dora(p));
    }
    got.sort();
    assert_eq!(
        got,
        [
            Ipv4Addr::new(10, 240, 0, 10),
            Ipv4Addr::new(10, 241, 0, 10),
            Ipv4Addr::new(10, 241, 0, 11)
        ]
    );
}

#[test]
fn options_respect_the_maximum_message_size() {
    let yaml = YAML.replace(
        "options: { routers: [10.231.0.1], domain_name_servers: [10.231.0.1], domain_name: example.test }",
        &format!("options: {{ routers: [10.231.0.1], \"250\": {{ hex: \"{}\" }} }}", vec!["ab"; 700].join(":")),
    );
    let mut f = Fixture::new(&yaml);
    // No PRL: every configured option is a candidate; the 700-byte one cannot fit in 576.
    let (_, offer) = f.send(&Pkt::relayed(1).kind(1).no_opt(55), NOW);
    assert!(
        f.out.len() <= 576 - 28,
        "reply of {} bytes exceeds 548",
        f.out.len()
    );
    assert!(offer.unwrap().opts().get(OptionCode::Router).is_some());
    // With a large maximum the long option is sent, split per RFC 3396.
    let (_, _) = f.send(
        &Pkt::relayed(1)
            .kind(1)
            .no_opt(55)
            .opt(57, &1500u16.to_be_bytes()),
        NOW,
    );
    let count = f
        .out
        .windows(2)
        .filter(|w| w[0] == 250 && w[1] == 255)
        .count();
    assert!(count >= 2, "a 700-byte option is split into 255-byte parts");
}

#[test]
fn malformed_input_is_counted_not_fatal() {
    let mut f = Fixture::new(YAML);
    let mut bad = Pkt::relayed(1).kind(1).encode();
    bad[2] = 64; // hlen
    let arrival = Arrival {
        src: SocketAddrV4::new(RELAY, 67),
        ifindex: 1,
        local: SERVER,
    };
    let o = handle(
        &f.ctx,
        &f.engine,
        Received::new(&bad, arrival, NOW),
        &mut f.scratch,
        &mut f.out,
        &mut f.events,
    );
    assert_eq!(o, Outcome::NoReply(NoReply::Malformed(Malformed::BadHlen)));
}

/// A relayed INIT-REBOOT REQUEST: option 50, no server identifier, ciaddr 0.
fn init_reboot(mac_last: u8, ip: Ipv4Addr) -> Pkt {
    Pkt::relayed(mac_last).kind(3).opt(50, &ip.octets())
}

/// The NUL-terminated text of a reply's header field `range` (`sname` 44..108, `file` 108..236).
fn header_text(out: &[u8], range: std::ops::Range<usize>) -> &str {
    let field = &out[range];
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end]).expect("header text is UTF-8")
}

#[test]
fn an_init_reboot_from_an_unknown_client_is_dropped_and_counted() {
    let mut f = Fixture::new(YAML);
    let ip = Ipv4Addr::new(10, 231, 0, 101);
    // Relayed, then direct on eth9's subnet: the address is right for the network, but the
    // server has no record of the client (RFC 2131 §4.3.2: it MUST remain silent).
    let (o, _) = f.send(&init_reboot(1, ip), NOW);
    assert_no_reply(o, NoReply::UnknownClient);
    assert_eq!(NoReply::UnknownClient.label(), "unknown_client");
    let mut direct = init_reboot(2, Ipv4Addr::new(10, 232, 0, 15));
    direct.giaddr = Ipv4Addr::UNSPECIFIED;
    direct.ifindex = 9;
    assert_no_reply(f.send(&direct, NOW).0, NoReply::UnknownClient);
    assert!(f.events.is_empty(), "nothing was bound");
    // The address stays free: another client is offered it when it asks.
    let (_, offer) = f.send(&Pkt::relayed(3).kind(1).opt(50, &ip.octets()), NOW);
    assert_eq!(offer.unwrap().yiaddr(), ip);
}

#[test]
fn renewing_and_rebinding_from_an_unknown_client_are_dropped() {
    let mut f = Fixture::new(YAML);
    let ip = Ipv4Addr::new(10, 231, 0, 102);
    // RENEWING: unicast, ciaddr set, no option 50 or 54.
    let mut renew = Pkt::relayed(1).kind(3);
    renew.giaddr = Ipv4Addr::UNSPECIFIED;
    renew.ciaddr = ip;
    renew.ifindex = 77;
    assert_no_reply(f.send(&renew, NOW).0, NoReply::UnknownClient);
    // REBINDING: broadcast, reaching the server through the relay.
    let mut rebind = Pkt::relayed(1).kind(3);
    rebind.ciaddr = ip;
    assert_no_reply(f.send(&rebind, NOW).0, NoReply::UnknownClient);
    assert!(f.events.is_empty(), "nothing was bound");
}

#[test]
fn a_rebinding_client_on_the_wrong_network_is_naked() {
    let mut f = Fixture::new(YAML);
    let ip = f.dora(Pkt::relayed(1));
    // REBINDING through the relay of another link (the client moved): RFC 2131 §4.3.2, the
    // server checks ciaddr for correctness; it is wrong for this network.
    let mut rebind = Pkt::relayed(1).kind(3);
    rebind.ciaddr = ip;
    rebind.giaddr = Ipv4Addr::new(10, 240, 0, 1);
    let (o, nak) = f.send(&rebind, NOW + 3000);
    assert_eq!(reply(o).kind, ReplyKind::Nak);
    assert_eq!(msg_type(&nak.unwrap()), MessageType::Nak);
    // Through its own relay: ACKed, the lease extended.
    rebind.giaddr = RELAY;
    let (_, ack) = f.send(&rebind, NOW + 3000);
    assert_eq!(ack.unwrap().yiaddr(), ip);
    assert_eq!(f.events.last().unwrap().kind, EventKind::Renewed);
}

#[test]
fn an_init_reboot_for_an_address_other_than_the_record_is_naked() {
    let mut f = Fixture::new(YAML);
    let ip = f.dora(Pkt::relayed(1));
    let mut rel = Pkt::relayed(1).kind(7).opt(54, &SERVER.octets());
    rel.ciaddr = ip;
    assert_no_reply(f.send(&rel, NOW + 5).0, NoReply::Released);
    // The record is Released now, still for `ip`: another address is wrong for this client.
    let other = if ip == Ipv4Addr::new(10, 231, 0, 103) {
        Ipv4Addr::new(10, 231, 0, 102)
    } else {
        Ipv4Addr::new(10, 231, 0, 103)
    };
    let (o, nak) = f.send(&init_reboot(1, other), NOW + 6);
    assert_eq!(reply(o).kind, ReplyKind::Nak);
    assert_eq!(msg_type(&nak.unwrap()), MessageType::Nak);
    // Its own address again, still free: ACKed.
    let (_, ack) = f.send(&init_reboot(1, ip), NOW + 7);
    assert_eq!(msg_type(&ack.unwrap()), MessageType::Ack);
    // The server knows this address is wrong for the client even when not authoritative.
    let mut f = Fixture::new(&YAML.replace(
        "lease_time: 3600\n",
        "lease_time: 3600\n  authoritative: false\n",
    ));
    let ip = f.dora(Pkt::relayed(1));
    let other = if ip == Ipv4Addr::new(10, 231, 0, 103) {
        Ipv4Addr::new(10, 231, 0, 102)
    } else {
        Ipv4Addr::new(10, 231, 0, 103)
    };
    let (o, _) = f.send(&init_reboot(1, other), NOW + 6);
    assert_eq!(reply(o).kind, ReplyKind::Nak);
}

#[test]
fn an_init_reboot_from_a_reserved_client_without_a_lease_is_acked() {
    let mut f = Fixture::new(YAML);
    let mut p = init_reboot(0, Ipv4Addr::new(10, 231, 0, 50));
    p.chaddr = [2, 0x23, 0x10, 0, 0, 0x50];
    let (o, ack) = f.send(&p, NOW);
    assert!(reply(o).needs_durable);
    assert_eq!(ack.unwrap().yiaddr(), Ipv4Addr::new(10, 231, 0, 50));
    // Any other address is wrong for it.
    let p = p.opt(50, &[10, 231, 0, 101]);
    assert_eq!(msg_type(&f.send(&p, NOW).1.unwrap()), MessageType::Nak);
}

#[test]
fn an_inform_without_ciaddr_is_dropped_and_counted() {
    let mut f = Fixture::new(YAML);
    // Relayed and direct: ciaddr 0.0.0.0 leaves nowhere to reply (RFC 2131 §4.4.3).
    let (o, _) = f.send(&Pkt::relayed(1).kind(8), NOW);
    assert_no_reply(o, NoReply::InformWithoutAddress);
    assert_eq!(
        NoReply::InformWithoutAddress.label(),
        "inform_without_ciaddr"
    );
    let mut direct = Pkt::relayed(1).kind(8);
    direct.giaddr = Ipv4Addr::UNSPECIFIED;
    direct.ifindex = 9;
    assert_no_reply(f.send(&direct, NOW).0, NoReply::InformWithoutAddress);
}

#[test]
fn an_inform_through_a_relay_is_answered_through_the_relay() {
    let mut f = Fixture::new(YAML);
    let mut inf = Pkt::relayed(1).kind(8);
    inf.ciaddr = Ipv4Addr::new(10, 231, 0, 9);
    let (o, ack) = f.send(&inf, NOW);
    // RFC 2131 §4.1: giaddr set, so the reply goes to the relay's server port; the relay
    // delivers it to ciaddr.
    assert_eq!(
        reply(o).dst,
        Destination::Unicast(SocketAddrV4::new(RELAY, SERVER_PORT))
    );
    let ack = ack.unwrap();
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(ack.ciaddr(), inf.ciaddr);
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(ack.opts().get(OptionCode::AddressLeaseTime).is_none());
}

#[test]
fn a_nak_through_a_relay_has_the_broadcast_bit_set() {
    let mut f = Fixture::new(YAML);
    // RFC 2131 §4.3.2: the relay must broadcast the NAK, so the server sets the bit.
    let (o, nak) = f.send(&init_reboot(1, Ipv4Addr::new(192, 168, 1, 9)), NOW);
    let r = reply(o);
    assert_eq!(r.kind, ReplyKind::Nak);
    assert_eq!(
        r.dst,
        Destination::Unicast(SocketAddrV4::new(RELAY, SERVER_PORT))
    );
    assert!(nak.unwrap().flags().broadcast(), "broadcast bit in the NAK");
    // An OFFER through the relay keeps the client's flags.
    let (_, offer) = f.send(&Pkt::relayed(2).kind(1), NOW);
    assert!(!offer.unwrap().flags().broadcast());
    // A direct client's NAK is broadcast by the server itself (RFC 2131 §4.1).
    let mut direct = init_reboot(3, Ipv4Addr::new(192, 168, 1, 9));
    direct.giaddr = Ipv4Addr::UNSPECIFIED;
    direct.ifindex = 9;
    let (o, _) = f.send(&direct, NOW);
    assert_eq!(
        reply(o).dst,
        Destination::Broadcast {
            port: CLIENT_PORT,
            ifindex: 9
        }
    );
}

#[test]
fn subnet_selection_is_echoed_in_every_reply() {
    let mut f = Fixture::new(YAML);
    let want = Some(&DhcpOption::SubnetSelection(Ipv4Addr::new(10, 232, 0, 0)));
    // RFC 3011 §3: echoed whether or not the parameter request list asks for it.
    let p = Pkt::relayed(1).opt(118, &[10, 232, 0, 0]);
    let (_, offer) = f.send(&p.clone().kind(1), NOW);
    let offer = offer.unwrap();
    assert_eq!(offer.opts().get(OptionCode::SubnetSelection), want);
    let (_, ack) = f.send(
        &p.clone()
            .kind(3)
            .opt(50, &offer.yiaddr().octets())
            .opt(54, &SERVER.octets()),
        NOW,
    );
    assert_eq!(ack.unwrap().opts().get(OptionCode::SubnetSelection), want);
    let (_, nak) = f.send(&p.kind(3).opt(50, &[192, 168, 1, 9]), NOW);
    let nak = nak.unwrap();
    assert_eq!(msg_type(&nak), MessageType::Nak);
    assert_eq!(nak.opts().get(OptionCode::SubnetSelection), want);
    // Not sent to a client that did not send it.
    let (_, offer) = f.send(&Pkt::relayed(2).kind(1), NOW);
    let offer = offer.expect("an OFFER");
    let echoed = offer.opts().get(OptionCode::SubnetSelection);
    assert!(echoed.is_none(), "{echoed:?}");
}

#[test]
fn relay_suboptions_select_the_subnet_and_the_server_id_but_not_the_route() {
    let mut f = Fixture::new(YAML);
    // RFC 3527: link selection picks 10.232.0.0/24; the reply still goes to giaddr.
    let linked = Pkt::relayed(1).opt(82, &[5, 4, 10, 232, 0, 0]);
    let (o, offer) = f.send(&linked.clone().kind(1), NOW);
    assert_eq!(
        reply(o).dst,
        Destination::Unicast(SocketAddrV4::new(RELAY, SERVER_PORT))
    );
    assert!(offer.unwrap().yiaddr().octets().starts_with(&[10, 232]));
    // RFC 5107: with a server identifier override, a REQUEST naming the override is for us
    // (and its ACK names it too); one naming our own address is not.
    let over = Ipv4Addr::new(10, 231, 0, 1);
    let p = Pkt::relayed(2).opt(82, &[11, 4, 10, 231, 0, 1]);
    let (_, offer) = f.send(&p.clone().kind(1), NOW);
    let ip = offer.unwrap().yiaddr();
    let req = p.kind(3).opt(50, &ip.octets());
    let (_, ack) = f.send(&req.clone().opt(54, &over.octets()), NOW);
    let ack = ack.expect("an ACK for a REQUEST naming the override");
    assert_eq!(msg_type(&ack), MessageType::Ack);
    assert_eq!(
        ack.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(over))
    );
    assert_no_reply(
        f.send(&req.opt(54, &SERVER.octets()), NOW).0,
        NoReply::NotForUs,
    );
}

#[test]
fn a_request_from_an_unknown_link_is_naked_only_when_authoritative() {
    let mut f = Fixture::new(YAML);
    let mut p = init_reboot(1, Ipv4Addr::new(10, 231, 0, 101));
    p.giaddr = Ipv4Addr::new(192, 0, 2, 1); // a relay no subnet is reached through
    let (o, _) = f.send(&p, NOW);
    assert_eq!(reply(o).kind, ReplyKind::Nak);
    let mut f = Fixture::new(&YAML.replace(
        "lease_time: 3600\n",
        "lease_time: 3600\n  authoritative: false\n",
    ));
    assert_no_reply(f.send(&p, NOW).0, NoReply::NoSubnet);
}

#[test]
fn a_selecting_request_without_a_requested_address_is_dropped() {
    let mut f = Fixture::new(YAML);
    // RFC 2131 Table 5: SELECTING MUST carry option 50; ciaddr is not used instead.
    let mut p = Pkt::relayed(1).kind(3).opt(54, &SERVER.octets());
    p.ciaddr = Ipv4Addr::new(10, 231, 0, 100);
    assert_no_reply(f.send(&p, NOW).0, NoReply::Incomplete);
    assert!(f.events.is_empty());
}

const BOOT_YAML: &str = r#"
port: 67
v4:
  next_server: 10.231.0.9
  server_hostname: boot.example.test
  boot_file_name: global.efi
  bootp_dynamic: true
  subnets:
    - subnet: 10.231.0.0/24
      relays: [ 10.231.0.1 ]
      boot_file_name: subnet.efi
      pools:
        - { pool: "10.231.0.100-10.231.0.100", next_server: 10.231.0.8 }
        - "10.231.0.101-10.231.0.103"
      options: { routers: [10.231.0.1] }
      reservations:
        - { hw_address: "02:23:10:00:00:50", address: 10.231.0.50, boot_file_name: printer.bin }
    - subnet: 10.232.0.0/24
      relays: [ 10.232.0.1 ]
      pools: [ "10.232.0.10-10.232.0.20" ]
      options: { routers: [10.232.0.1] }
"#;

#[test]
fn boot_fields_fill_siaddr_sname_and_file_most_specific_first() {
    let mut f = Fixture::new(BOOT_YAML);
    // The first pool sets next_server; the subnet sets the file; sname is global.
    let (_, offer) = f.send(&Pkt::relayed(1).kind(1).opt(50, &[10, 231, 0, 100]), NOW);
    let offer = offer.unwrap();
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 231, 0, 100));
    assert_eq!(offer.siaddr(), Ipv4Addr::new(10, 231, 0, 8));
    assert_eq!(header_text(&f.out, 44..108), "boot.example.test");
    assert_eq!(header_text(&f.out, 108..236), "subnet.efi");
    // The ACK carries them too.
    let ip = f.dora(Pkt::relayed(1).opt(50, &[10, 231, 0, 100]));
    assert_eq!(ip, Ipv4Addr::new(10, 231, 0, 100));
    assert_eq!(
        u32::from_be_bytes(f.out[20..24].try_into().unwrap()),
        u32::from(Ipv4Addr::new(10, 231, 0, 8))
    );
    assert_eq!(header_text(&f.out, 108..236), "subnet.efi");
    // The second pool inherits the global next_server.
    let (_, offer) = f.send(&Pkt::relayed(2).kind(1), NOW);
    assert_eq!(offer.unwrap().siaddr(), Ipv4Addr::new(10, 231, 0, 9));
    // A reservation's own file wins.
    let mut res = Pkt::relayed(0).kind(1);
    res.chaddr = [2, 0x23, 0x10, 0, 0, 0x50];
    let (_, offer) = f.send(&res, NOW);
    assert_eq!(offer.unwrap().siaddr(), Ipv4Addr::new(10, 231, 0, 9));
    assert_eq!(header_text(&f.out, 108..236), "printer.bin");
    // Another subnet has only the global ones; a NAK has none.
    let mut other = Pkt::relayed(3).kind(1);
    other.giaddr = Ipv4Addr::new(10, 232, 0, 1);
    f.send(&other, NOW);
    assert_eq!(header_text(&f.out, 108..236), "global.efi");
    let (o, _) = f.send(&init_reboot(1, Ipv4Addr::new(192, 168, 0, 1)), NOW);
    assert_eq!(reply(o).kind, ReplyKind::Nak);
    assert!(f.out[20..24].iter().all(|&b| b == 0), "a NAK has no siaddr");
    assert!(
        f.out[44..236].iter().all(|&b| b == 0),
        "a NAK has no sname or file"
    );
}

#[test]
fn bootp_dynamic_gives_a_pool_address_for_good() {
    let mut f = Fixture::new(BOOT_YAML);
    let bootp = Pkt::relayed(7).no_opt(53);
    let (o, rep) = f.send(&bootp, NOW);
    assert!(reply(o).needs_durable, "the binding is journaled first");
    let rep = rep.unwrap();
    let ip = rep.yiaddr();
    assert!((Ipv4Addr::new(10, 231, 0, 100)..=Ipv4Addr::new(10, 231, 0, 103)).contains(&ip));
    assert!(rep.opts().get(OptionCode::MessageType).is_none());
    assert!(rep.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert_eq!(header_text(&f.out, 108..236), "subnet.efi");
    // RFC 1534 §2: an infinite lease (kept as the end of time, u32::MAX seconds), journaled
    // like any other.
    assert_eq!(f.events.len(), 1);
    assert_eq!(f.events[0].kind, EventKind::Bound);
    assert_eq!(f.events[0].lease.address, ip);
    assert_eq!(f.events[0].lease.expires, u64::from(u32::MAX));
    // The same client asking again, much later, keeps its address.
    let (_, again) = f.send(&bootp, NOW + 10 * 86_400);
    assert_eq!(again.unwrap().yiaddr(), ip);
    // Off by default: only reservations are served.
    let mut f = Fixture::new(&BOOT_YAML.replace("  bootp_dynamic: true\n", ""));
    assert_no_reply(f.send(&bootp, NOW).0, NoReply::BootpUnknown);
}

const GLOBAL_YAML: &str = r#"
port: 67
v4:
  reservations:
    - hw_address: "02:00:00:00:00:61"
      address: 10.232.0.61
      hostname: roamer
      next_server: 10.0.0.5
      boot_file_name: roamer.efi
      options: { domain_name: roam.example.test }
    - { hw_address: "02:00:00:00:00:62", address: 10.232.0.62, hostname: global-name }
  subnets:
    - subnet: 10.231.0.0/24
      relays: [ 10.231.0.1 ]
      pools: [ "10.231.0.100-10.231.0.103" ]
      options: { routers: [10.231.0.1], domain_name: example.test }
      reservations:
        - { hw_address: "02:00:00:00:00:62", address: 10.231.0.62, hostname: subnet-name }
    - subnet: 10.232.0.0/24
      relays: [ 10.232.0.1 ]
      pools: [ "10.232.0.60-10.232.0.70" ]
      options: { routers: [10.232.0.1] }
"#;

#[test]
fn a_global_reservation_holds_in_whichever_subnet_the_client_arrives_in() {
    let mut f = Fixture::new(GLOBAL_YAML);
    let mut roamer = Pkt::relayed(0x61);
    roamer.giaddr = Ipv4Addr::new(10, 232, 0, 1);
    // In the subnet holding its address: that address, with its own options and boot fields
    // over the subnet's.
    assert_eq!(f.dora(roamer.clone()), Ipv4Addr::new(10, 232, 0, 61));
    let (_, offer) = f.send(&roamer.clone().kind(1), NOW);
    let offer = offer.unwrap();
    assert_eq!(offer.siaddr(), Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(header_text(&f.out, 108..236), "roamer.efi");
    let o = offer.opts();
    assert_eq!(
        o.get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("roamer".into()))
    );
    assert_eq!(
        o.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("roam.example.test".into()))
    );
    assert_eq!(
        o.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 232, 0, 1)]))
    );
    // Its address is out of the pool for everyone else.
    let mut thief = Pkt::relayed(9).opt(50, &[10, 232, 0, 61]);
    thief.giaddr = Ipv4Addr::new(10, 232, 0, 1);
    assert_ne!(f.dora(thief), Ipv4Addr::new(10, 232, 0, 61));
    // In another subnet: a pool address there, but still its host name and boot fields.
    let roamer = Pkt::relayed(0x61);
    let ip = f.dora(roamer.clone());
    assert!((Ipv4Addr::new(10, 231, 0, 100)..=Ipv4Addr::new(10, 231, 0, 103)).contains(&ip));
    let (_, offer) = f.send(&roamer.kind(1), NOW);
    let offer = offer.unwrap();
    assert_eq!(offer.siaddr(), Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(
        offer.opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("roamer".into()))
    );
    assert_eq!(
        offer.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![RELAY]))
    );
}

#[test]
fn a_subnet_reservation_wins_over_a_global_one() {
    let mut f = Fixture::new(GLOBAL_YAML);
    // 02:..:62 is reserved in 10.231.0.0/24 and globally: the subnet's reservation applies.
    let p = Pkt::relayed(0x62);
    assert_eq!(f.dora(p.clone()), Ipv4Addr::new(10, 231, 0, 62));
    let (_, offer) = f.send(&p.kind(1), NOW);
    assert_eq!(
        offer.unwrap().opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("subnet-name".into()))
    );
    // In the other subnet only the global one exists.
    let mut p = Pkt::relayed(0x62);
    p.giaddr = Ipv4Addr::new(10, 232, 0, 1);
    assert_eq!(f.dora(p), Ipv4Addr::new(10, 232, 0, 62));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// No input stalls (docs/ARCHITECTURE.md): no input panics the handler.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut f = Fixture::new(YAML);
        let arrival = Arrival { src: SocketAddrV4::new(RELAY, 67), ifindex: 9, local: SERVER };
        let got = Received::new(&data, arrival, NOW);
        let _ = handle(&f.ctx, &f.engine, got, &mut f.scratch, &mut f.out, &mut f.events);
    }

    /// Valid headers with arbitrary option bytes: decoded, never a panic, and every reply is a
    /// message dhcproto can decode.
    #[test]
    fn arbitrary_options_never_panic(opts in proptest::collection::vec(any::<u8>(), 0..400), t in 1u8..9) {
        let mut f = Fixture::new(YAML);
        let mut data = Pkt::relayed(1).kind(t).encode();
        data.pop();
        data.extend_from_slice(&opts);
        let arrival = Arrival { src: SocketAddrV4::new(RELAY, 67), ifindex: 9, local: SERVER };
        let got = Received::new(&data, arrival, NOW);
        if let Outcome::Reply(_) = handle(&f.ctx, &f.engine, got, &mut f.scratch, &mut f.out, &mut f.events) {
            prop_assert!(v4::Message::decode(&mut Decoder::new(&f.out)).is_ok());
        }
    }
}
