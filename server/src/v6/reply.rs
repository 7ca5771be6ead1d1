//! Encodes DHCPv6 replies, wrapped in one RELAY-REPL per relay hop, into a reused buffer.
//!
//! Everything is written in one pass: the RELAY-REPL headers first (outermost first, each with
//! the Interface-ID its RELAY-FORW carried, RFC 8415 §19.3), then the client message; the
//! lengths of the Relay Message options and of nested options (IA, IAADDR) are patched when
//! their end is known.

use std::net::Ipv6Addr;

use super::packet::{MAX_RELAY_LAYERS, Request, msg, opt};

/// The message sent to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    /// ADVERTISE (2): an answer to SOLICIT.
    Advertise,
    /// REPLY (7): everything else, including a rapid-commit SOLICIT.
    Reply,
}

impl ReplyKind {
    fn code(self) -> u8 {
        match self {
            ReplyKind::Advertise => msg::ADVERTISE,
            ReplyKind::Reply => msg::REPLY,
        }
    }
}

/// Status codes (RFC 8415 §21.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// 0.
    Success,
    /// 2: no addresses for the IA.
    NoAddrsAvail,
    /// 3: the client's IA is unknown.
    NoBinding,
    /// 4: the address is not on the client's link.
    NotOnLink,
    /// 5: send to the multicast address.
    UseMulticast,
    /// 6: no prefixes for the IA_PD.
    NoPrefixAvail,
}

impl Status {
    fn code(self) -> u16 {
        match self {
            Status::Success => 0,
            Status::NoAddrsAvail => 2,
            Status::NoBinding => 3,
            Status::NotOnLink => 4,
            Status::UseMulticast => 5,
            Status::NoPrefixAvail => 6,
        }
    }

    /// The status message sent with the code (for people reading logs and captures).
    fn text(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::NoAddrsAvail => "no addresses available",
            Status::NoBinding => "no binding for this IA",
            Status::NotOnLink => "address not on this link",
            Status::UseMulticast => "use multicast",
            Status::NoPrefixAvail => "no prefixes available",
        }
    }
}

/// A reply under construction. Option writes past 65535 bytes in one option cannot be
/// represented; the encoder then marks itself overflowed and [`Encoder::finish`] fails.
#[derive(Debug)]
pub(super) struct Encoder {
    buf: Vec<u8>,
    /// Offsets of the Relay Message options' length fields, outermost first.
    relay_lens: [usize; MAX_RELAY_LAYERS],
    relays: usize,
    overflow: bool,
}

impl Encoder {
    /// Starts a reply of `kind` to `req` in `buf` (cleared first, its allocation reused): the
    /// RELAY-REPL layers and the client message header.
    pub(super) fn new(mut buf: Vec<u8>, req: &Request<'_>, kind: ReplyKind) -> Self {
        buf.clear();
        let mut relay_lens = [0; MAX_RELAY_LAYERS];
        let hops = req.hops();
        for (i, hop) in hops.iter().enumerate() {
            buf.push(msg::RELAY_REPL);
            buf.push(hop.hop_count);
            buf.extend_from_slice(&hop.link_address.octets());
            buf.extend_from_slice(&hop.peer_address.octets());
            if let Some(id) = hop.interface_id {
                // Validated at most 65535 bytes by the parser (it came in one option).
                put_raw(&mut buf, opt::INTERFACE_ID, id);
            }
            buf.extend_from_slice(&opt::RELAY_MSG.to_be_bytes());
            relay_lens[i] = buf.len();
            buf.extend_from_slice(&[0, 0]);
        }
        buf.push(kind.code());
        buf.extend_from_slice(&req.xid);
        Encoder {
            buf,
            relay_lens,
            relays: hops.len(),
            overflow: false,
        }
    }

    /// Appends option `code` with `value`.
    pub(super) fn put(&mut self, code: u16, value: &[u8]) {
        if value.len() > usize::from(u16::MAX) {
            self.overflow = true;
            return;
        }
        put_raw(&mut self.buf, code, value);
    }

    /// Opens option `code` whose body follows; returns the mark to [`Encoder::close`] it with.
    pub(super) fn open(&mut self, code: u16) -> usize {
        self.buf.extend_from_slice(&code.to_be_bytes());
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        at
    }

    /// Closes the option opened at `mark`, writing its length.
    pub(super) fn close(&mut self, mark: usize) {
        let len = self.buf.len() - mark - 2;
        match u16::try_from(len) {
            Ok(l) => self.buf[mark..mark + 2].copy_from_slice(&l.to_be_bytes()),
            Err(_) => self.overflow = true,
        }
    }

    /// Appends raw bytes inside an open option.
    pub(super) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// A Status Code option (RFC 8415 §21.13).
    pub(super) fn status(&mut self, s: Status) {
        let m = self.open(opt::STATUS_CODE);
        self.extend(&s.code().to_be_bytes());
        self.extend(s.text().as_bytes());
        self.close(m);
    }

    /// An IAADDR (or IAPREFIX when `len < 128` or `prefix`) with lifetimes, and an optional
    /// nested PD-Exclude payload.
    pub(super) fn resource(
        &mut self,
        prefix: bool,
        addr: Ipv6Addr,
        len: u8,
        preferred: u32,
        valid: u32,
        pd_exclude: Option<&[u8]>,
    ) {
        if prefix {
            let m = self.open(opt::IAPREFIX);
            self.extend(&preferred.to_be_bytes());
            self.extend(&valid.to_be_bytes());
            self.extend(&[len]);
            self.extend(&addr.octets());
            if let Some(x) = pd_exclude {
                self.put(opt::PD_EXCLUDE, x);
            }
            self.close(m);
        } else {
            let m = self.open(opt::IAADDR);
            self.extend(&addr.octets());
            self.extend(&preferred.to_be_bytes());
            self.extend(&valid.to_be_bytes());
            self.close(m);
        }
    }

    /// Patches the Relay Message lengths and gives the buffer back, with an error if some
    /// length does not fit 16 bits.
    pub(super) fn finish(mut self) -> (Vec<u8>, Result<(), TooLarge>) {
        let end = self.buf.len();
        let mut ok = !self.overflow;
        for &at in &self.relay_lens[..self.relays] {
            match u16::try_from(end - at - 2) {
                Ok(len) => self.buf[at..at + 2].copy_from_slice(&len.to_be_bytes()),
                Err(_) => ok = false,
            }
        }
        (self.buf, if ok { Ok(()) } else { Err(TooLarge) })
    }
}

/// A reply that cannot be encoded: some option or relay message would pass 65535 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TooLarge;

fn put_raw(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    buf.extend_from_slice(&code.to_be_bytes());
    buf.extend_from_slice(&(value.len() as u16).to_be_bytes());
    buf.extend_from_slice(value);
}
