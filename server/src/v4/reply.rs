//! Encodes BOOTREPLY messages into a reused buffer, without allocating.

use std::net::Ipv4Addr;

use super::packet::Request;

/// Reply message types (RFC 2132 §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    /// A BOOTP reply: no option 53.
    Bootp,
    /// DHCPOFFER.
    Offer,
    /// DHCPACK.
    Ack,
    /// DHCPNAK.
    Nak,
}

impl ReplyKind {
    fn code(self) -> Option<u8> {
        match self {
            ReplyKind::Bootp => None,
            ReplyKind::Offer => Some(2),
            ReplyKind::Ack => Some(5),
            ReplyKind::Nak => Some(6),
        }
    }
}

/// The smallest message every client must accept (RFC 2131 §2: 576-byte IP datagram).
const MIN_MAX_SIZE: usize = 576 - 28;
/// BOOTP replies are padded to at least this size (RFC 1542 §2.1).
const BOOTP_MIN: usize = 300;

/// Writes one reply. Options are appended in order; [`Encoder::finish`] adds the relay agent
/// option (last, RFC 3046 §2.1), the end option and padding.
#[derive(Debug)]
pub(super) struct Encoder<'b> {
    buf: &'b mut Vec<u8>,
    /// Room for options, leaving space for option 82, the end option.
    limit: usize,
    /// Options dropped because they did not fit.
    pub(super) truncated: u32,
}

impl<'b> Encoder<'b> {
    /// Starts a reply to `req` in `buf` (cleared first).
    pub(super) fn new(
        buf: &'b mut Vec<u8>,
        req: &Request<'_>,
        kind: ReplyKind,
        ciaddr: Ipv4Addr,
        yiaddr: Ipv4Addr,
        siaddr: Ipv4Addr,
    ) -> Self {
        buf.clear();
        buf.extend_from_slice(&[2, req.htype, req.chaddr.len() as u8, 0]);
        buf.extend_from_slice(&req.xid.to_be_bytes());
        buf.extend_from_slice(&[0, 0]); // secs
        buf.extend_from_slice(&req.flags.to_be_bytes());
        buf.extend_from_slice(&ciaddr.octets());
        buf.extend_from_slice(&yiaddr.octets());
        buf.extend_from_slice(&siaddr.octets());
        buf.extend_from_slice(&req.giaddr.octets());
        buf.extend_from_slice(req.chaddr_field);
        buf.resize(236, 0); // sname, file
        buf.extend_from_slice(&[99, 130, 83, 99]);
        let max = req
            .max_message_size
            .map_or(MIN_MAX_SIZE, |m| usize::from(m).saturating_sub(28))
            .clamp(MIN_MAX_SIZE, 1500 - 28);
        let relay = req.relay.map_or(0, |r| r.raw.len() + 2);
        let mut enc = Encoder {
            limit: max.saturating_sub(relay + 1),
            buf,
            truncated: 0,
        };
        if let Some(code) = kind.code() {
            enc.put(53, &[code]);
        }
        enc
    }

    /// Writes `sname` and `file` into the header (RFC 2131 §2), each cut to leave its
    /// terminating NUL (the config allows no longer value).
    pub(super) fn set_boot_names(&mut self, sname: Option<&str>, file: Option<&str>) {
        for (value, field) in [(sname, 44..108), (file, 108..236)] {
            if let Some(v) = value {
                let n = v.len().min(field.len() - 1);
                self.buf[field.start..field.start + n].copy_from_slice(&v.as_bytes()[..n]);
            }
        }
    }

    /// Sets the broadcast bit of `flags` (RFC 2131 §2).
    pub(super) fn set_broadcast(&mut self) {
        self.buf[10] |= 0x80;
    }

    /// Appends option `code`, split into 255-byte instances when longer (RFC 3396). An option
    /// that does not fit within the client's maximum message size is left out and counted.
    pub(super) fn put(&mut self, code: u8, value: &[u8]) {
        let instances = value.len().div_ceil(255).max(1);
        if self.buf.len() + value.len() + 2 * instances > self.limit {
            self.truncated += 1;
            return;
        }
        if value.is_empty() {
            self.buf.extend_from_slice(&[code, 0]);
        }
        for chunk in value.chunks(255) {
            self.buf.push(code);
            self.buf.push(chunk.len() as u8);
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Appends a 4-byte address option.
    pub(super) fn put_ip(&mut self, code: u8, ip: Ipv4Addr) {
        self.put(code, &ip.octets());
    }

    /// Appends a 32-bit option.
    pub(super) fn put_u32(&mut self, code: u8, v: u32) {
        self.put(code, &v.to_be_bytes());
    }

    /// Echoes option 82 (RFC 3046 §2.2), ends the options and pads to the BOOTP minimum.
    pub(super) fn finish(self, req: &Request<'_>) {
        if let Some(relay) = req.relay {
            self.buf.push(82);
            self.buf.push(relay.raw.len() as u8);
            self.buf.extend_from_slice(relay.raw);
        }
        self.buf.push(255);
        if self.buf.len() < BOOTP_MIN {
            self.buf.resize(BOOTP_MIN, 0);
        }
    }
}
