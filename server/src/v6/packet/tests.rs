//! Parser tests, and the message builders the handler tests share.

use super::*;

/// One option: code, length, value.
pub(crate) fn option(code: u16, value: &[u8]) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    b.extend((value.len() as u16).to_be_bytes());
    b.extend_from_slice(value);
    b
}

/// A client message of type `t` with xid 0x123456 and the given options.
pub(crate) fn message(t: u8, opts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![t, 0x12, 0x34, 0x56];
    for o in opts {
        b.extend_from_slice(o);
    }
    b
}

/// Wraps `inner` in a RELAY-FORW with the given addresses and extra options.
pub(crate) fn relay(
    inner: &[u8],
    hop: u8,
    link: Ipv6Addr,
    peer: Ipv6Addr,
    opts: &[Vec<u8>],
) -> Vec<u8> {
    let mut b = vec![msg::RELAY_FORW, hop];
    b.extend(link.octets());
    b.extend(peer.octets());
    for o in opts {
        b.extend_from_slice(o);
    }
    b.extend(option(opt::RELAY_MSG, inner));
    b
}

pub(crate) fn ia_na(iaid: u32, addrs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = iaid.to_be_bytes().to_vec();
    v.extend([0; 8]);
    for a in addrs {
        v.extend_from_slice(a);
    }
    option(opt::IA_NA, &v)
}

pub(crate) fn ia_pd(iaid: u32, prefixes: &[Vec<u8>]) -> Vec<u8> {
    let mut v = iaid.to_be_bytes().to_vec();
    v.extend([0; 8]);
    for p in prefixes {
        v.extend_from_slice(p);
    }
    option(opt::IA_PD, &v)
}

pub(crate) fn iaaddr(a: Ipv6Addr, preferred: u32, valid: u32) -> Vec<u8> {
    let mut v = a.octets().to_vec();
    v.extend(preferred.to_be_bytes());
    v.extend(valid.to_be_bytes());
    option(opt::IAADDR, &v)
}

pub(crate) fn iaprefix(p: Ipv6Addr, len: u8, preferred: u32, valid: u32) -> Vec<u8> {
    let mut v = preferred.to_be_bytes().to_vec();
    v.extend(valid.to_be_bytes());
    v.push(len);
    v.extend(p.octets());
    option(opt::IAPREFIX, &v)
}

const DUID: &[u8] = &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1];

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn parses_a_solicit() {
    let m = message(
        msg::SOLICIT,
        &[
            option(opt::CLIENTID, DUID),
            option(opt::ELAPSED_TIME, &[0, 0]),
            option(opt::ORO, &[0, 23, 0, 24]),
            option(opt::RAPID_COMMIT, &[]),
            ia_na(7, &[iaaddr(a("2001:db8::5"), 1, 2)]),
            ia_pd(8, &[iaprefix(a("2001:db8:100::"), 56, 3, 4)]),
        ],
    );
    let r = parse(&m).unwrap();
    assert_eq!(r.kind, Kind::Solicit);
    assert_eq!(r.xid, [0x12, 0x34, 0x56]);
    assert_eq!(r.client_id, Some(DUID));
    assert!(r.rapid_commit && r.has_ias && !r.relayed());
    assert!(r.requests(23) && r.requests(24) && !r.requests(31));
    let ias: Vec<_> = r.ias().collect();
    assert_eq!(ias.len(), 2);
    assert_eq!((ias[0].kind, ias[0].iaid), (IaType::Na, 7));
    assert_eq!(
        ias[0].first(),
        Some(IaEntry {
            addr: a("2001:db8::5"),
            len: 128,
            preferred: 1,
            valid: 2
        })
    );
    assert_eq!((ias[1].kind, ias[1].iaid), (IaType::Pd, 8));
    assert_eq!(
        ias[1].first(),
        Some(IaEntry {
            addr: a("2001:db8:100::"),
            len: 56,
            preferred: 3,
            valid: 4
        })
    );
    assert_eq!(client_duid(&m), Some(DUID));
}

#[test]
fn collects_every_relay_hop() {
    let m = message(msg::REQUEST, &[option(opt::CLIENTID, DUID)]);
    let l1 = relay(
        &m,
        0,
        Ipv6Addr::UNSPECIFIED,
        a("fe80::1"),
        &[
            option(opt::INTERFACE_ID, b"port7"),
            option(opt::REMOTE_ID, &[0, 0, 0x0d, 0xe9, b'C']),
        ],
    );
    let l2 = relay(
        &l1,
        1,
        a("2001:db8:1::1"),
        a("fe80::2"),
        &[option(opt::SUBSCRIBER_ID, b"sub")],
    );
    let r = parse(&l2).unwrap();
    assert_eq!(r.kind, Kind::Request);
    let hops = r.hops();
    assert_eq!(hops.len(), 2);
    assert_eq!(hops[0].link_address, a("2001:db8:1::1"));
    assert_eq!(hops[0].subscriber_id, Some(&b"sub"[..]));
    assert_eq!(hops[1].peer_address, a("fe80::1"));
    assert_eq!(hops[1].interface_id, Some(&b"port7"[..]));
    assert_eq!(r.closest_hop().unwrap().hop_count, 0);
    assert_eq!(r.relay_option(|h| h.subscriber_id), Some(&b"sub"[..]));
    assert_eq!(r.relay_option(|h| h.interface_id), Some(&b"port7"[..]));
    assert_eq!(client_duid(&l2), Some(DUID));
}

#[test]
fn nesting_stops_past_the_relay_layer_bound() {
    let mut m = message(msg::SOLICIT, &[option(opt::CLIENTID, DUID)]);
    for depth in 1..=33 {
        m = relay(&m, depth as u8 - 1, a("2001:db8::1"), a("fe80::1"), &[]);
        let got = parse(&m).map(|r| r.hops().len());
        if depth <= 32 {
            assert_eq!(got, Ok(depth));
            assert_eq!(client_duid(&m), Some(DUID));
        } else {
            assert_eq!(got, Err(Malformed::TooManyHops));
            assert_eq!(client_duid(&m), None);
        }
    }
}

#[test]
fn rejects_lies_and_oddities() {
    let ok = option(opt::CLIENTID, DUID);
    let cases: Vec<(Vec<u8>, Malformed)> = vec![
        (vec![1, 2, 3], Malformed::TooShort),
        (vec![], Malformed::TooShort),
        (message(msg::ADVERTISE, &[]), Malformed::NotClientMessage(2)),
        (
            message(msg::RELAY_REPL, &[]),
            Malformed::NotClientMessage(13),
        ),
        (message(10, &[]), Malformed::NotClientMessage(10)),
        (message(200, &[]), Malformed::NotClientMessage(200)),
        // An option claiming 40 bytes with 3 left; a header cut short.
        (
            {
                let mut m = message(1, std::slice::from_ref(&ok));
                m.extend([0, 6, 0, 40, 0, 23, 0]);
                m
            },
            Malformed::OptionOverrun,
        ),
        (
            {
                let mut m = message(1, std::slice::from_ref(&ok));
                m.extend([0, 6, 0]);
                m
            },
            Malformed::OptionOverrun,
        ),
        (
            message(1, &[option(opt::CLIENTID, &[0, 1])]),
            Malformed::BadOptionLength(1),
        ),
        (
            message(1, &[option(opt::CLIENTID, &[0; 131])]),
            Malformed::BadOptionLength(1),
        ),
        (
            message(1, &[ok.clone(), ok.clone()]),
            Malformed::DuplicateOption(1),
        ),
        (
            message(
                3,
                &[
                    ok.clone(),
                    option(opt::SERVERID, DUID),
                    option(opt::SERVERID, DUID),
                ],
            ),
            Malformed::DuplicateOption(2),
        ),
        (
            message(1, &[option(opt::ORO, &[0, 23, 0])]),
            Malformed::BadOptionLength(6),
        ),
        (
            message(1, &[option(opt::ELAPSED_TIME, &[0])]),
            Malformed::BadOptionLength(8),
        ),
        (
            message(1, &[option(opt::RAPID_COMMIT, &[1])]),
            Malformed::BadOptionLength(14),
        ),
        (
            message(1, &[option(opt::IA_NA, &[0; 11])]),
            Malformed::BadOptionLength(3),
        ),
        (
            message(1, &[option(opt::IA_TA, &[0; 3])]),
            Malformed::BadOptionLength(4),
        ),
        (
            message(1, &[ia_na(1, &[option(opt::IAADDR, &[0; 23])])]),
            Malformed::BadOptionLength(5),
        ),
        (
            message(1, &[ia_pd(1, &[option(opt::IAPREFIX, &[0; 24])])]),
            Malformed::BadOptionLength(26),
        ),
        (
            message(1, &[ia_pd(1, &[iaprefix(a("2001:db8::"), 129, 0, 0)])]),
            Malformed::BadOptionLength(26),
        ),
        // Lying lengths inside an IA and inside its address.
        (
            message(1, &[ia_na(1, &[vec![0, 5, 0, 30, 1]])]),
            Malformed::OptionOverrun,
        ),
        (
            message(
                1,
                &[ia_na(
                    1,
                    &[{
                        let mut o = iaaddr(a("::1"), 0, 0);
                        o[3] += 4;
                        o.extend([0, 13, 0, 9]);
                        o
                    }],
                )],
            ),
            Malformed::OptionOverrun,
        ),
        (
            message(1, &[ia_na(1, &[option(opt::STATUS_CODE, &[0])])]),
            Malformed::BadOptionLength(13),
        ),
        (
            message(1, &[ia_na(1, &[]), ia_na(1, &[])]),
            Malformed::DuplicateIa,
        ),
        (
            message(
                1,
                &(0..=MAX_IAS as u32)
                    .map(|i| ia_na(i, &[]))
                    .collect::<Vec<_>>(),
            ),
            Malformed::TooManyIas,
        ),
        // Relays.
        (vec![msg::RELAY_FORW; 33], Malformed::TooShort),
        (relay(&[], 0, a("::1"), a("::1"), &[]), Malformed::TooShort),
        (
            {
                let mut r = relay(&message(1, &[]), 0, a("::1"), a("::1"), &[]);
                r.truncate(34);
                r
            },
            Malformed::NoRelayMessage,
        ),
        (
            {
                let mut r = relay(&message(1, &[]), 0, a("::1"), a("::1"), &[]);
                r.pop();
                r
            },
            Malformed::OptionOverrun,
        ),
        (
            relay(
                &message(1, &[]),
                0,
                a("::1"),
                a("::1"),
                &[option(opt::RELAY_MSG, &message(1, &[]))],
            ),
            Malformed::DuplicateOption(9),
        ),
        (
            relay(
                &message(1, &[]),
                0,
                a("::1"),
                a("::1"),
                &[option(opt::REMOTE_ID, &[0, 0, 0, 9])],
            ),
            Malformed::BadOptionLength(37),
        ),
        (
            relay(
                &message(1, &[]),
                0,
                a("::1"),
                a("::1"),
                &[option(opt::INTERFACE_ID, &[])],
            ),
            Malformed::BadOptionLength(18),
        ),
        (
            relay(&message(msg::REPLY, &[]), 0, a("::1"), a("::1"), &[]),
            Malformed::NotClientMessage(7),
        ),
    ];
    for (i, (m, want)) in cases.iter().enumerate() {
        assert_eq!(parse(m).err(), Some(*want), "case {i}: {m:?}");
    }
}

#[test]
fn ia_ta_and_ordinary_options_are_accepted() {
    let mut ta = 9u32.to_be_bytes().to_vec();
    ta.extend(iaaddr(a("2001:db8::9"), 0, 0));
    let m = message(
        msg::SOLICIT,
        &[
            option(opt::CLIENTID, DUID),
            option(opt::IA_TA, &ta),
            option(opt::ORO, &[]),
            option(1234, &[1, 2, 3]),
        ],
    );
    let r = parse(&m).unwrap();
    let [t] = r.ias().collect::<Vec<_>>()[..] else {
        panic!()
    };
    assert_eq!(
        (t.kind, t.iaid, t.first().unwrap().addr),
        (IaType::Ta, 9, a("2001:db8::9"))
    );
    assert_eq!(r.oro, Some(&[][..]));
}
