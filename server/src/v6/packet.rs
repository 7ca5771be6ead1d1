//! Validated, borrowed view of a DHCPv6 client message, possibly inside relay layers: every
//! length is checked in one pass before anything is trusted.
//!
//! Our own parser rather than dhcproto's v6 decoder: that decoder allocates per option, sorts
//! options (losing their order), recurses into relay messages without a depth limit, silently
//! stops at a lying option length instead of rejecting it, and subtracts from option lengths
//! without checking them (a Status Code shorter than 2 bytes, a Vendor Class shorter than 4, an
//! Authentication option shorter than 11), which panics in debug builds. dhcproto is used only in
//! the tests, to decode our replies independently.

use std::net::Ipv6Addr;

/// At most this many nested RELAY-FORW layers are answered; deeper ones are dropped as
/// [`Malformed::TooManyHops`]. RFC 8415 §7.6 bounds what relays forward (HOP_COUNT_LIMIT, 8)
/// but sets the server no limit, and Kea answers deeper nesting; the bound keeps the per-message
/// work and the stack arrays fixed.
pub const MAX_RELAY_LAYERS: usize = 32;

/// At most this many IA options per message; more is refused (bounds the per-message work, and
/// no client has a use for more).
pub const MAX_IAS: usize = 32;

/// DHCPv6 message types (RFC 8415 §7.3).
pub(super) mod msg {
    pub(crate) const SOLICIT: u8 = 1;
    pub(crate) const ADVERTISE: u8 = 2;
    pub(crate) const REQUEST: u8 = 3;
    pub(crate) const CONFIRM: u8 = 4;
    pub(crate) const RENEW: u8 = 5;
    pub(crate) const REBIND: u8 = 6;
    pub(crate) const REPLY: u8 = 7;
    pub(crate) const RELEASE: u8 = 8;
    pub(crate) const DECLINE: u8 = 9;
    pub(crate) const INFORMATION_REQUEST: u8 = 11;
    pub(crate) const RELAY_FORW: u8 = 12;
    pub(crate) const RELAY_REPL: u8 = 13;
}

/// DHCPv6 option codes the server reads or writes (RFC 8415 §21 and others).
pub(super) mod opt {
    pub(crate) const CLIENTID: u16 = 1;
    pub(crate) const SERVERID: u16 = 2;
    pub(crate) const IA_NA: u16 = 3;
    pub(crate) const IA_TA: u16 = 4;
    pub(crate) const IAADDR: u16 = 5;
    pub(crate) const ORO: u16 = 6;
    pub(crate) const PREFERENCE: u16 = 7;
    pub(crate) const ELAPSED_TIME: u16 = 8;
    pub(crate) const RELAY_MSG: u16 = 9;
    pub(crate) const UNICAST: u16 = 12;
    pub(crate) const STATUS_CODE: u16 = 13;
    pub(crate) const RAPID_COMMIT: u16 = 14;
    pub(crate) const INTERFACE_ID: u16 = 18;
    pub(crate) const RECONF_ACCEPT: u16 = 20;
    pub(crate) const IA_PD: u16 = 25;
    pub(crate) const IAPREFIX: u16 = 26;
    pub(crate) const REMOTE_ID: u16 = 37;
    pub(crate) const SUBSCRIBER_ID: u16 = 38;
    pub(crate) const PD_EXCLUDE: u16 = 67;
}

/// The client messages the server acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// SOLICIT (1).
    Solicit,
    /// REQUEST (3).
    Request,
    /// CONFIRM (4).
    Confirm,
    /// RENEW (5).
    Renew,
    /// REBIND (6).
    Rebind,
    /// RELEASE (8).
    Release,
    /// DECLINE (9).
    Decline,
    /// INFORMATION-REQUEST (11).
    InformationRequest,
}

impl Kind {
    /// A stable short name, used as a counter label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Solicit => "solicit",
            Kind::Request => "request",
            Kind::Confirm => "confirm",
            Kind::Renew => "renew",
            Kind::Rebind => "rebind",
            Kind::Release => "release",
            Kind::Decline => "decline",
            Kind::InformationRequest => "information_request",
        }
    }
}

/// Why a datagram was dropped before any protocol logic ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// Shorter than a message header (4 bytes; 34 for a relay message).
    TooShort,
    /// A message type a server does not accept (ADVERTISE, REPLY, RELAY-REPL, RECONFIGURE,
    /// unknown).
    NotClientMessage(u8),
    /// An option's header or length runs past the end of its area.
    OptionOverrun,
    /// An option whose length is wrong for its type (e.g. an Elapsed Time that is not 2 bytes).
    BadOptionLength(u16),
    /// A RELAY-FORW without a Relay Message option.
    NoRelayMessage,
    /// More nested RELAY-FORW layers than [`MAX_RELAY_LAYERS`].
    TooManyHops,
    /// An option that may appear once appears twice (Client/Server Identifier, Relay Message).
    DuplicateOption(u16),
    /// Two IAs of the same type with the same IAID.
    DuplicateIa,
    /// More than [`MAX_IAS`] IA options.
    TooManyIas,
}

impl Malformed {
    /// A stable short name, used as a counter label.
    pub fn label(self) -> &'static str {
        match self {
            Malformed::TooShort => "v6_too_short",
            Malformed::NotClientMessage(_) => "v6_not_client_message",
            Malformed::OptionOverrun => "v6_option_overrun",
            Malformed::BadOptionLength(_) => "v6_bad_option_length",
            Malformed::NoRelayMessage => "v6_no_relay_message",
            Malformed::TooManyHops => "v6_too_many_hops",
            Malformed::DuplicateOption(_) => "v6_duplicate_option",
            Malformed::DuplicateIa => "v6_duplicate_ia",
            Malformed::TooManyIas => "v6_too_many_ias",
        }
    }
}

/// One RELAY-FORW layer (RFC 8415 §9.1) and the options the server uses from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop<'a> {
    /// The relay's hop count.
    pub hop_count: u8,
    /// An address on the client's link, or unspecified (RFC 6221 lightweight relays).
    pub link_address: Ipv6Addr,
    /// The address the relay got the inner message from.
    pub peer_address: Ipv6Addr,
    /// Option 18, echoed in the RELAY-REPL (RFC 8415 §19.3).
    pub interface_id: Option<&'a [u8]>,
    /// Option 37 (RFC 4649): enterprise number (4 bytes), then the remote-id.
    pub remote_id: Option<&'a [u8]>,
    /// Option 38 (RFC 4580).
    pub subscriber_id: Option<&'a [u8]>,
}

const NO_HOP: Hop<'static> = Hop {
    hop_count: 0,
    link_address: Ipv6Addr::UNSPECIFIED,
    peer_address: Ipv6Addr::UNSPECIFIED,
    interface_id: None,
    remote_id: None,
    subscriber_id: None,
};

/// The kind of an identity association.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IaType {
    /// IA_NA (3): non-temporary addresses.
    Na,
    /// IA_TA (4): temporary addresses (refused by this server).
    Ta,
    /// IA_PD (25): delegated prefixes.
    Pd,
}

/// An address or prefix listed inside an IA (IAADDR or IAPREFIX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IaEntry {
    /// The address, or the prefix's first address.
    pub addr: Ipv6Addr,
    /// 128 for an address, the prefix length for a prefix.
    pub len: u8,
    /// Preferred lifetime the client gave.
    pub preferred: u32,
    /// Valid lifetime the client gave.
    pub valid: u32,
}

/// One validated IA option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ia<'a> {
    /// IA_NA, IA_TA or IA_PD.
    pub kind: IaType,
    /// The client's identifier for this IA.
    pub iaid: u32,
    /// The T1 the client suggested (0 for IA_TA).
    pub t1: u32,
    /// The T2 the client suggested (0 for IA_TA).
    pub t2: u32,
    /// The IA's own options (validated).
    opts: &'a [u8],
}

impl<'a> Ia<'a> {
    /// The addresses (IA_NA, IA_TA) or prefixes (IA_PD) the client listed, in order.
    pub fn entries(&self) -> impl Iterator<Item = IaEntry> + 'a {
        let want = if self.kind == IaType::Pd {
            opt::IAPREFIX
        } else {
            opt::IAADDR
        };
        Options(self.opts)
            .filter_map(move |(code, d)| (code == want).then(|| entry(code, d)).flatten())
    }

    /// The first address or prefix the client listed, if any.
    pub fn first(&self) -> Option<IaEntry> {
        self.entries().next()
    }
}

fn entry(code: u16, d: &[u8]) -> Option<IaEntry> {
    let u32_at = |i: usize| Some(u32::from_be_bytes(d.get(i..i + 4)?.try_into().ok()?));
    let addr = |i: usize| {
        Some(Ipv6Addr::from(
            <[u8; 16]>::try_from(d.get(i..i + 16)?).ok()?,
        ))
    };
    if code == opt::IAADDR {
        Some(IaEntry {
            addr: addr(0)?,
            len: 128,
            preferred: u32_at(16)?,
            valid: u32_at(20)?,
        })
    } else {
        Some(IaEntry {
            preferred: u32_at(0)?,
            valid: u32_at(4)?,
            len: *d.get(8)?,
            addr: addr(9)?,
        })
    }
}

/// A client message whose relay layers and options have been validated. Borrowed from the
/// receive buffer.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Message type.
    pub kind: Kind,
    /// Transaction id.
    pub xid: [u8; 3],
    /// Option 1, the client's DUID.
    pub client_id: Option<&'a [u8]>,
    /// Option 2, the server the client addresses.
    pub server_id: Option<&'a [u8]>,
    /// Option 6: requested option codes, big-endian pairs (validated even length).
    pub oro: Option<&'a [u8]>,
    /// Option 14 present.
    pub rapid_commit: bool,
    /// Option 20 present.
    pub reconfigure_accept: bool,
    /// Whether the message carries any IA_NA, IA_TA or IA_PD.
    pub has_ias: bool,
    /// Relay layers, outermost (the one the server received) first.
    hops: [Hop<'a>; MAX_RELAY_LAYERS],
    relay_count: usize,
    /// The client message's options (validated).
    opts: &'a [u8],
}

impl<'a> Request<'a> {
    /// The relay layers, outermost first; empty for a message straight from the client.
    pub fn hops(&self) -> &[Hop<'a>] {
        &self.hops[..self.relay_count]
    }

    /// Whether the message came through at least one relay.
    pub fn relayed(&self) -> bool {
        self.relay_count > 0
    }

    /// The relay closest to the client, if relayed.
    pub fn closest_hop(&self) -> Option<&Hop<'a>> {
        self.hops().last()
    }

    /// The IA options, in message order.
    pub fn ias(&self) -> impl Iterator<Item = Ia<'a>> + 'a {
        Options(self.opts).filter_map(|(code, d)| ia(code, d))
    }

    /// Whether the Option Request option asks for `code`.
    pub fn requests(&self, code: u16) -> bool {
        self.oro.is_some_and(|o| {
            o.chunks_exact(2)
                .any(|c| u16::from_be_bytes([c[0], c[1]]) == code)
        })
    }

    /// The first value of option `code` set by a relay, closest relay first (interface-id,
    /// remote-id, subscriber-id are usually added by the first relay, sometimes by a
    /// lightweight relay's upstream instead).
    pub fn relay_option(&self, pick: impl Fn(&Hop<'a>) -> Option<&'a [u8]>) -> Option<&'a [u8]> {
        self.hops().iter().rev().find_map(pick)
    }
}

fn ia(code: u16, d: &[u8]) -> Option<Ia<'_>> {
    let word = |i: usize| Some(u32::from_be_bytes(d.get(i..i + 4)?.try_into().ok()?));
    match code {
        opt::IA_NA | opt::IA_PD => Some(Ia {
            kind: if code == opt::IA_NA {
                IaType::Na
            } else {
                IaType::Pd
            },
            iaid: word(0)?,
            t1: word(4)?,
            t2: word(8)?,
            opts: d.get(12..)?,
        }),
        opt::IA_TA => Some(Ia {
            kind: IaType::Ta,
            iaid: word(0)?,
            t1: 0,
            t2: 0,
            opts: d.get(4..)?,
        }),
        _ => None,
    }
}

/// Iterates `code, data` over an option area that has already been validated; stops at the
/// first inconsistency (which validation has ruled out).
#[derive(Clone, Copy, Debug)]
pub(super) struct Options<'a>(pub(super) &'a [u8]);

impl<'a> Iterator for Options<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.0;
        let code = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]));
        let data = b.get(4..4 + len)?;
        self.0 = &b[4 + len..];
        Some((code, data))
    }
}

/// Walks an option area checking every header and length against its end.
fn scan<'a>(
    area: &'a [u8],
    mut f: impl FnMut(u16, &'a [u8]) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    let mut rest = area;
    while !rest.is_empty() {
        let header = rest.get(..4).ok_or(Malformed::OptionOverrun)?;
        let code = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let data = rest.get(4..4 + len).ok_or(Malformed::OptionOverrun)?;
        f(code, data)?;
        rest = &rest[4 + len..];
    }
    Ok(())
}

/// RFC 8415 §11.1: a DUID is a 2-byte type and at most 128 bytes more; at least one.
fn check_duid(code: u16, d: &[u8]) -> Result<(), Malformed> {
    if (3..=130).contains(&d.len()) {
        Ok(())
    } else {
        Err(Malformed::BadOptionLength(code))
    }
}

fn set_once<'a>(slot: &mut Option<&'a [u8]>, code: u16, d: &'a [u8]) -> Result<(), Malformed> {
    if slot.replace(d).is_some() {
        return Err(Malformed::DuplicateOption(code));
    }
    Ok(())
}

/// Validates the options inside an IA (and those inside its IAADDR/IAPREFIX options).
fn check_ia_options(kind: IaType, area: &[u8]) -> Result<(), Malformed> {
    scan(area, |code, d| {
        let inner = match code {
            opt::IAADDR if kind != IaType::Pd => {
                if d.len() < 24 {
                    return Err(Malformed::BadOptionLength(code));
                }
                &d[24..]
            }
            opt::IAPREFIX if kind == IaType::Pd => {
                // RFC 8415 §21.22: lifetimes, prefix length (at most 128), prefix.
                if d.len() < 25 || d[8] > 128 {
                    return Err(Malformed::BadOptionLength(code));
                }
                &d[25..]
            }
            opt::STATUS_CODE if d.len() < 2 => return Err(Malformed::BadOptionLength(code)),
            _ => return Ok(()),
        };
        scan(inner, |c, d| match c {
            opt::STATUS_CODE if d.len() < 2 => Err(Malformed::BadOptionLength(c)),
            _ => Ok(()),
        })
    })
}

/// Parses and validates `buf`: relay layers first (at most [`MAX_RELAY_LAYERS`]), then the
/// client message. [`handle`](super::handle) does this itself; it is public for tools and
/// the fuzz target.
pub fn parse(buf: &[u8]) -> Result<Request<'_>, Malformed> {
    let mut hops = [NO_HOP; MAX_RELAY_LAYERS];
    let mut relay_count = 0;
    let mut cur = buf;
    loop {
        let &t = cur.first().ok_or(Malformed::TooShort)?;
        if t != msg::RELAY_FORW {
            break;
        }
        if relay_count == MAX_RELAY_LAYERS {
            return Err(Malformed::TooManyHops);
        }
        if cur.len() < 34 {
            return Err(Malformed::TooShort);
        }
        let addr = |i: usize| {
            let b: [u8; 16] = cur[i..i + 16].try_into().unwrap_or_default();
            Ipv6Addr::from(b)
        };
        let mut hop = Hop {
            hop_count: cur[1],
            link_address: addr(2),
            peer_address: addr(18),
            ..NO_HOP
        };
        let mut inner = None;
        scan(&cur[34..], |code, d| {
            match code {
                opt::RELAY_MSG => set_once(&mut inner, code, d)?,
                opt::INTERFACE_ID if d.is_empty() => {
                    return Err(Malformed::BadOptionLength(code));
                }
                opt::INTERFACE_ID => set_once(&mut hop.interface_id, code, d)?,
                // RFC 4649 §3: enterprise number, then a remote-id of at least one byte.
                opt::REMOTE_ID if d.len() < 5 => return Err(Malformed::BadOptionLength(code)),
                opt::REMOTE_ID => set_once(&mut hop.remote_id, code, d)?,
                opt::SUBSCRIBER_ID if d.is_empty() => {
                    return Err(Malformed::BadOptionLength(code));
                }
                opt::SUBSCRIBER_ID => set_once(&mut hop.subscriber_id, code, d)?,
                _ => {}
            }
            Ok(())
        })?;
        hops[relay_count] = hop;
        relay_count += 1;
        cur = inner.ok_or(Malformed::NoRelayMessage)?;
    }

    if cur.len() < 4 {
        return Err(Malformed::TooShort);
    }
    let kind = match cur[0] {
        msg::SOLICIT => Kind::Solicit,
        msg::REQUEST => Kind::Request,
        msg::CONFIRM => Kind::Confirm,
        msg::RENEW => Kind::Renew,
        msg::REBIND => Kind::Rebind,
        msg::RELEASE => Kind::Release,
        msg::DECLINE => Kind::Decline,
        msg::INFORMATION_REQUEST => Kind::InformationRequest,
        other => return Err(Malformed::NotClientMessage(other)),
    };
    let opts = &cur[4..];
    let mut req = Request {
        kind,
        xid: [cur[1], cur[2], cur[3]],
        client_id: None,
        server_id: None,
        oro: None,
        rapid_commit: false,
        reconfigure_accept: false,
        has_ias: false,
        hops,
        relay_count,
        opts,
    };
    // (type, IAID) of each IA, to refuse duplicates; bounded by MAX_IAS.
    let mut seen = [(IaType::Na, 0u32); MAX_IAS];
    let mut n_ias = 0;
    scan(opts, |code, d| {
        match code {
            opt::CLIENTID => {
                check_duid(code, d)?;
                set_once(&mut req.client_id, code, d)?;
            }
            opt::SERVERID => {
                check_duid(code, d)?;
                set_once(&mut req.server_id, code, d)?;
            }
            opt::ORO if d.len() % 2 != 0 => return Err(Malformed::BadOptionLength(code)),
            opt::ORO => {
                req.oro.get_or_insert(d);
            }
            opt::ELAPSED_TIME if d.len() != 2 => return Err(Malformed::BadOptionLength(code)),
            opt::RAPID_COMMIT if !d.is_empty() => return Err(Malformed::BadOptionLength(code)),
            opt::RAPID_COMMIT => req.rapid_commit = true,
            opt::RECONF_ACCEPT if !d.is_empty() => return Err(Malformed::BadOptionLength(code)),
            opt::RECONF_ACCEPT => req.reconfigure_accept = true,
            opt::IA_NA | opt::IA_TA | opt::IA_PD => {
                let ia = ia(code, d).ok_or(Malformed::BadOptionLength(code))?;
                check_ia_options(ia.kind, ia.opts)?;
                if n_ias == MAX_IAS {
                    return Err(Malformed::TooManyIas);
                }
                if seen[..n_ias].contains(&(ia.kind, ia.iaid)) {
                    return Err(Malformed::DuplicateIa);
                }
                seen[n_ias] = (ia.kind, ia.iaid);
                n_ias += 1;
                req.has_ias = true;
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(req)
}

/// The client DUID of `buf` (option 1 of the client message, through any relay layers), read
/// with just enough checking to be safe; `None` when there is none or the datagram is not a
/// well-formed client message up to it. For steering a datagram to its owner before the full
/// validation.
pub fn client_duid(buf: &[u8]) -> Option<&[u8]> {
    let mut cur = buf;
    for _ in 0..=MAX_RELAY_LAYERS {
        match *cur.first()? {
            msg::RELAY_FORW => {
                cur = find(cur.get(34..)?, opt::RELAY_MSG)?;
            }
            msg::RELAY_REPL | msg::ADVERTISE | msg::REPLY => return None,
            _ => {
                return find(cur.get(4..)?, opt::CLIENTID).filter(|d| (3..=130).contains(&d.len()));
            }
        }
    }
    None
}

/// The first option `code` in `area`, stopping at the first malformed header.
fn find(area: &[u8], code: u16) -> Option<&[u8]> {
    Options(area).find(|(c, _)| *c == code).map(|(_, d)| d)
}

#[cfg(test)]
pub(crate) mod tests {
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
}
