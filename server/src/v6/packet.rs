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

use lessor_net::wire::{Field, v6::field};

use ia::{check_ia_options, ia};
use options::{check_duid, find, scan, set_once};

pub use ia::{Ia, IaEntry, IaType};
pub(super) use options::Options;

mod ia;
mod options;
#[cfg(test)]
pub(crate) mod tests;

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

/// Parses and validates `buf`: relay layers first (at most [`MAX_RELAY_LAYERS`]), then the
/// client message. [`handle`](super::handle) does this itself; it is public for tools and
/// the fuzz target.
pub fn parse(buf: &[u8]) -> Result<Request<'_>, Malformed> {
    let mut hops = [NO_HOP; MAX_RELAY_LAYERS];
    let mut relay_count = 0;
    let mut cur = buf;
    loop {
        let &t = cur.get(field::MSG_TYPE).ok_or(Malformed::TooShort)?;
        if t != msg::RELAY_FORW {
            break;
        }
        if relay_count == MAX_RELAY_LAYERS {
            return Err(Malformed::TooManyHops);
        }
        if cur.len() < field::RELAY_OPTIONS.start {
            return Err(Malformed::TooShort);
        }
        let addr = |f: Field| {
            let b: [u8; 16] = cur[f].try_into().unwrap_or_default();
            Ipv6Addr::from(b)
        };
        let mut hop = Hop {
            hop_count: cur[field::HOP_COUNT],
            link_address: addr(field::LINK_ADDRESS),
            peer_address: addr(field::PEER_ADDRESS),
            ..NO_HOP
        };
        let mut inner = None;
        scan(&cur[field::RELAY_OPTIONS], |code, d| {
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

    if cur.len() < field::OPTIONS.start {
        return Err(Malformed::TooShort);
    }
    let kind = match cur[field::MSG_TYPE] {
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
    let opts = &cur[field::OPTIONS];
    let mut req = Request {
        kind,
        xid: cur[field::TRANSACTION_ID].try_into().unwrap_or_default(),
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
        match *cur.get(field::MSG_TYPE)? {
            msg::RELAY_FORW => {
                cur = find(cur.get(field::RELAY_OPTIONS)?, opt::RELAY_MSG)?;
            }
            msg::RELAY_REPL | msg::ADVERTISE | msg::REPLY => return None,
            _ => {
                return find(cur.get(field::OPTIONS)?, opt::CLIENTID)
                    .filter(|d| (3..=130).contains(&d.len()));
            }
        }
    }
    None
}
