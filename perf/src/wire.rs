//! DHCPv4 bytes for the load generator and the null responder: request templates patched in
//! place, and bounds-checked readers that never panic on garbage.
//!
//! Deliberately not `dhcproto`'s builders: a template is built once and each packet is a
//! handful of stores into it (xid, chaddr, client id, addresses), so sending allocates nothing
//! and costs a copy of 300 bytes. The readers look only at what the tools need (message type,
//! yiaddr, server id, client id, relay information) and give up on anything malformed.

use std::net::Ipv4Addr;

use lessor_net::wire::v4::field::{
    CHADDR, CIADDR, GIADDR, HLEN, HOPS, HTYPE, MAGIC_NUMBER, OP, OPTIONS, SECS, SIADDR, SNAME, XID,
    YIADDR,
};

/// Fixed BOOTP header up to the end of `file` (RFC 2131 Figure 1).
const HEADER_LEN: usize = MAGIC_NUMBER.start;
/// The options magic cookie (RFC 2131 §3).
pub(crate) const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// The smallest BOOTP message (RFC 951 pads requests to 300 bytes; many relays and servers
/// expect it), so the templates are padded to it.
const MIN_LEN: usize = 300;

/// BOOTREQUEST / BOOTREPLY.
const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;

/// DHCP message types (option 53, RFC 2132 §9.6).
pub(crate) const DISCOVER: u8 = 1;
pub(crate) const OFFER: u8 = 2;
pub(crate) const REQUEST: u8 = 3;
pub(crate) const ACK: u8 = 5;
pub(crate) const NAK: u8 = 6;
pub(crate) const RELEASE: u8 = 7;

/// Option codes used here.
const OPT_PAD: u8 = 0;
const OPT_SUBNET_MASK: u8 = 1;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_CLIENT_ID: u8 = 61;
const OPT_RELAY_INFO: u8 = 82;
const OPT_END: u8 = 255;

/// The hardware address of client `n` (`n < 2^24`): locally administered, unicast, and the
/// client number big-endian in bytes 2..6. Bytes 2..6 are what the server's kernel steering
/// reads (`lessor_net::v4::STEER_OFFSET`), so client `n` lands on server worker `n % workers`; the
/// null responder derives yiaddr 10.b3.b4.b5 from the last three.
pub(crate) fn mac(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0x00, b[0], b[1], b[2], b[3]]
}

/// Which request a [`Template`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// DHCPDISCOVER.
    Discover,
    /// DHCPREQUEST in SELECTING state: options 50 and 54 name the offer taken.
    Select,
    /// DHCPREQUEST in RENEWING state: ciaddr set, no option 50 or 54 (RFC 2131 §4.3.2).
    Renew,
    /// DHCPRELEASE: ciaddr and option 54 (RFC 2131 §4.4.6).
    Release,
}

/// One request, built once as a relay would forward it, then patched per client.
#[derive(Debug)]
pub(crate) struct Template {
    buf: Vec<u8>,
    /// Offset of the 6 MAC bytes inside option 61 (after its type byte).
    client_id: usize,
    /// Offset of option 50's value, if the kind has one.
    requested: Option<usize>,
    /// Offset of option 54's value, if the kind has one.
    server_id: Option<usize>,
}

impl Template {
    /// A `kind` request relayed by `giaddr` (hops 1, as perfdhcp sends them).
    pub(crate) fn new(kind: RequestKind, giaddr: Ipv4Addr) -> Self {
        let mut buf = vec![0u8; OPTIONS.start];
        buf[OP] = BOOTREQUEST;
        buf[HTYPE] = 1; // Ethernet
        buf[HLEN] = 6;
        buf[HOPS] = 1;
        buf[GIADDR].copy_from_slice(&giaddr.octets());
        buf[MAGIC_NUMBER].copy_from_slice(&MAGIC);
        let msg_type = match kind {
            RequestKind::Discover => DISCOVER,
            RequestKind::Select | RequestKind::Renew => REQUEST,
            RequestKind::Release => RELEASE,
        };
        buf.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, msg_type]);
        // RFC 2132 §9.14: type 1 (Ethernet) then the MAC, as most clients send it.
        buf.extend_from_slice(&[OPT_CLIENT_ID, 7, 1]);
        let client_id = buf.len();
        buf.extend_from_slice(&[0; 6]);
        let mut requested = None;
        let mut server_id = None;
        if kind == RequestKind::Select {
            buf.extend_from_slice(&[OPT_REQUESTED_IP, 4]);
            requested = Some(buf.len());
            buf.extend_from_slice(&[0; 4]);
        }
        if matches!(kind, RequestKind::Select | RequestKind::Release) {
            buf.extend_from_slice(&[OPT_SERVER_ID, 4]);
            server_id = Some(buf.len());
            buf.extend_from_slice(&[0; 4]);
        }
        if kind != RequestKind::Release {
            // subnet mask, router, DNS servers, lease time
            buf.extend_from_slice(&[OPT_PARAMS, 4, 1, 3, 6, 51]);
        }
        buf.push(OPT_END);
        buf.resize(buf.len().max(MIN_LEN), OPT_PAD);
        Template {
            buf,
            client_id,
            requested,
            server_id,
        }
    }

    /// Patch the per-packet fields and return the datagram. `ciaddr`, `requested` and
    /// `server_id` are written only where the kind has them (ciaddr: renew and release).
    pub(crate) fn fill(
        &mut self,
        xid: u32,
        client: u32,
        ciaddr: u32,
        requested: u32,
        server_id: u32,
    ) -> &[u8] {
        let mac = mac(client);
        self.buf[XID].copy_from_slice(&xid.to_be_bytes());
        self.buf[CIADDR].copy_from_slice(&ciaddr.to_be_bytes());
        self.buf[CHADDR.start..CHADDR.start + 6].copy_from_slice(&mac);
        self.buf[self.client_id..self.client_id + 6].copy_from_slice(&mac);
        if let Some(o) = self.requested {
            self.buf[o..o + 4].copy_from_slice(&requested.to_be_bytes());
        }
        if let Some(o) = self.server_id {
            self.buf[o..o + 4].copy_from_slice(&server_id.to_be_bytes());
        }
        &self.buf
    }
}

/// Walk the options area `opts` (from just after the magic cookie), calling `f(code, value)`
/// for each option. `None` when an option runs past the end; pads are skipped, `END` stops.
fn each_option<'a>(opts: &'a [u8], mut f: impl FnMut(u8, &'a [u8])) -> Option<()> {
    let mut i = 0;
    while let Some(&code) = opts.get(i) {
        match code {
            OPT_PAD => i += 1,
            OPT_END => return Some(()),
            _ => {
                let len = usize::from(*opts.get(i + 1)?);
                let value = opts.get(i + 2..i + 2 + len)?;
                f(code, value);
                i += 2 + len;
            }
        }
    }
    // No END: tolerated, as servers and clients do.
    Some(())
}

/// xorshift64: advances a cheap generator, good enough to pick a branch or garble a packet.
#[inline]
pub(crate) fn xorshift64(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// `good` cut or padded (0xff) to `len` bytes, then a few bytes overwritten at random: what the
/// readers' `garbage_never_panics` tests feed them.
#[cfg(test)]
pub(crate) fn garble(good: &[u8], len: usize, state: &mut u64) -> Vec<u8> {
    let mut b = good.to_vec();
    b.resize(len, 0xff);
    for _ in 0..4 {
        let r = xorshift64(state);
        if !b.is_empty() {
            let i = (r as usize) % b.len();
            b[i] = (r >> 32) as u8;
        }
    }
    b
}

/// The big-endian `u32` at `at`, if `b` holds it.
pub(crate) fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// What the load generator needs from a server's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    /// Transaction id.
    pub(crate) xid: u32,
    /// Option 53.
    pub(crate) kind: u8,
    /// The address offered or acknowledged.
    pub(crate) yiaddr: u32,
    /// Option 54, 0 when absent.
    pub(crate) server_id: u32,
    /// The first 6 bytes of chaddr.
    pub(crate) mac: [u8; 6],
}

/// Read a BOOTREPLY carrying a DHCP message type; `None` for anything else or anything
/// malformed (short, wrong op or cookie, an option running past the end).
pub(crate) fn parse_reply(b: &[u8]) -> Option<Reply> {
    if b.len() < OPTIONS.start || b[OP] != BOOTREPLY || b[MAGIC_NUMBER] != MAGIC {
        return None;
    }
    let mut kind = 0;
    let mut server_id = 0;
    each_option(&b[OPTIONS], |code, v| match (code, v) {
        (OPT_MESSAGE_TYPE, [t]) => kind = *t,
        (OPT_SERVER_ID, &[a, b, c, d]) => server_id = u32::from_be_bytes([a, b, c, d]),
        _ => {}
    })?;
    if kind == 0 {
        return None;
    }
    Some(Reply {
        xid: be_u32(b, XID.start)?,
        kind,
        yiaddr: be_u32(b, YIADDR.start)?,
        server_id,
        mac: b.get(CHADDR.start..CHADDR.start + 6)?.try_into().ok()?,
    })
}

/// How the null responder answers: the address it hands out for a chaddr field, the server id
/// and the lease time it puts in every reply.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Responder {
    /// Option 54 (and the address a real server would answer from).
    pub(crate) server_id: Ipv4Addr,
    /// Option 51, seconds.
    pub(crate) lease_time: u32,
}

impl Responder {
    /// Answer the request `req` into `out`: an OFFER for a DISCOVER, an ACK for a REQUEST;
    /// returns the reply's length, or `None` for anything else (other message types, BOOTP,
    /// malformed requests, or a reply that would not fit `out`).
    ///
    /// The reply echoes xid, flags, giaddr and the whole chaddr field, carries yiaddr
    /// 10.c3.c4.c5 from chaddr bytes 3..6 (so it is stable per client and distinct for the
    /// load generator's clients), ciaddr in an ACK (RFC 2131 Table 3), and copies option 61
    /// (RFC 6842) and option 82 (RFC 3046 §2.2) when the request has them.
    pub(crate) fn answer(&self, req: &[u8], out: &mut [u8]) -> Option<usize> {
        if req.len() < OPTIONS.start
            || req[OP] != BOOTREQUEST
            || req[HLEN] > 16
            || req[MAGIC_NUMBER] != MAGIC
        {
            return None;
        }
        let mut kind = 0;
        let mut client_id: Option<&[u8]> = None;
        let mut relay: Option<&[u8]> = None;
        each_option(&req[OPTIONS], |code, v| match (code, v) {
            (OPT_MESSAGE_TYPE, [t]) => kind = *t,
            (OPT_CLIENT_ID, _) => client_id = Some(v),
            (OPT_RELAY_INFO, _) => relay = Some(v),
            _ => {}
        })?;
        let reply_type = match kind {
            DISCOVER => OFFER,
            REQUEST => ACK,
            _ => return None,
        };
        let need = OPTIONS.start
            + 3 // 53
            + 6 // 54
            + 6 // 51
            + 6 // 1
            + client_id.map_or(0, |v| 2 + v.len())
            + relay.map_or(0, |v| 2 + v.len())
            + 1; // end
        let out = out.get_mut(..need)?;
        // xid, flags, ciaddr, giaddr and chaddr come from the request; the rest is set below.
        out[..SNAME.start].copy_from_slice(&req[..SNAME.start]);
        out[SNAME.start..HEADER_LEN].fill(0);
        out[OP] = BOOTREPLY;
        out[HOPS] = 0;
        out[SECS].fill(0);
        if reply_type == OFFER {
            out[CIADDR].fill(0);
        }
        let c = &req[CHADDR.start..CHADDR.start + 6];
        out[YIADDR].copy_from_slice(&[10, c[3], c[4], c[5]]);
        out[SIADDR].fill(0);
        out[MAGIC_NUMBER].copy_from_slice(&MAGIC);
        let mut w = OPTIONS.start;
        let mut put = |code: u8, value: &[u8]| {
            out[w] = code;
            // Lengths come from options read above (at most 255) or from constants.
            out[w + 1] = value.len() as u8;
            out[w + 2..w + 2 + value.len()].copy_from_slice(value);
            w += 2 + value.len();
        };
        put(OPT_MESSAGE_TYPE, &[reply_type]);
        put(OPT_SERVER_ID, &self.server_id.octets());
        put(OPT_LEASE_TIME, &self.lease_time.to_be_bytes());
        put(OPT_SUBNET_MASK, &[255, 0, 0, 0]);
        if let Some(v) = client_id {
            put(OPT_CLIENT_ID, v);
        }
        if let Some(v) = relay {
            put(OPT_RELAY_INFO, v);
        }
        out[w] = OPT_END;
        Some(w + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: Ipv4Addr = Ipv4Addr::LOCALHOST;
    const RESPONDER: Responder = Responder {
        server_id: Ipv4Addr::new(127, 0, 0, 1),
        lease_time: 3600,
    };

    #[test]
    fn templates_parse_as_the_server_reads_them() {
        use dhcproto::v4::{Decodable, DhcpOption, Message, MessageType, OptionCode};
        let cases = [
            (RequestKind::Discover, MessageType::Discover),
            (RequestKind::Select, MessageType::Request),
            (RequestKind::Renew, MessageType::Request),
            (RequestKind::Release, MessageType::Release),
        ];
        for (kind, want) in cases {
            let mut t = Template::new(kind, RELAY);
            let bytes = t.fill(
                0x0100_0007,
                0x00ab_cdef,
                0x0a00_0001,
                0x0aab_cdef,
                0x7f00_0001,
            );
            assert_eq!(bytes.len(), MIN_LEN);
            let m = Message::from_bytes(bytes).expect("decodes");
            assert_eq!(m.xid(), 0x0100_0007);
            assert_eq!(m.hops(), 1);
            assert_eq!(m.giaddr(), RELAY);
            assert_eq!(&m.chaddr()[..6], &[2, 0, 0, 0xab, 0xcd, 0xef]);
            assert_eq!(m.opts().msg_type(), Some(want), "{kind:?}");
            let id = m.opts().get(OptionCode::ClientIdentifier);
            assert_eq!(
                id,
                Some(&DhcpOption::ClientIdentifier(vec![
                    1, 2, 0, 0, 0xab, 0xcd, 0xef
                ]))
            );
            let has = |c| m.opts().get(c).is_some();
            assert_eq!(
                has(OptionCode::RequestedIpAddress),
                kind == RequestKind::Select
            );
            assert_eq!(
                has(OptionCode::ServerIdentifier),
                matches!(kind, RequestKind::Select | RequestKind::Release)
            );
            if kind == RequestKind::Select {
                assert_eq!(
                    m.opts().get(OptionCode::RequestedIpAddress),
                    Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                        10, 0xab, 0xcd, 0xef
                    )))
                );
            }
        }
    }

    #[test]
    fn responder_answers_discover_and_request_and_reads_back() {
        let mut out = [0u8; 1024];
        let mut d = Template::new(RequestKind::Discover, RELAY);
        let n = RESPONDER
            .answer(d.fill(42, 0x0012_3456, 0, 0, 0), &mut out)
            .expect("offer");
        let r = parse_reply(&out[..n]).expect("parses");
        assert_eq!(r.kind, OFFER);
        assert_eq!(r.xid, 42);
        assert_eq!(r.yiaddr, u32::from(Ipv4Addr::new(10, 0x12, 0x34, 0x56)));
        assert_eq!(r.server_id, u32::from(Ipv4Addr::LOCALHOST));
        assert_eq!(r.mac, mac(0x0012_3456));
        assert_eq!(&out[GIADDR], &[127, 0, 0, 1]);

        let mut q = Template::new(RequestKind::Renew, RELAY);
        let n = RESPONDER
            .answer(q.fill(43, 7, 0x0a00_0007, 0, 0), &mut out)
            .expect("ack");
        let r = parse_reply(&out[..n]).expect("parses");
        assert_eq!((r.kind, r.xid, r.yiaddr), (ACK, 43, 0x0a00_0007));
        assert_eq!(&out[CIADDR], &[10, 0, 0, 7]);

        let mut rel = Template::new(RequestKind::Release, RELAY);
        assert_eq!(RESPONDER.answer(rel.fill(1, 1, 1, 0, 1), &mut out), None);
    }

    #[test]
    fn responder_copies_relay_info() {
        let mut t = Template::new(RequestKind::Discover, RELAY);
        let mut req = t.fill(1, 1, 0, 0, 0).to_vec();
        let end = req.iter().rposition(|&b| b == OPT_END).expect("end");
        req.truncate(end);
        req.extend_from_slice(&[OPT_RELAY_INFO, 5, 1, 3, b'e', b't', b'h', OPT_END]);
        let mut out = [0u8; 1024];
        let n = RESPONDER.answer(&req, &mut out).expect("offer");
        let mut got = None;
        each_option(&out[OPTIONS.start..n], |c, v| {
            if c == OPT_RELAY_INFO {
                got = Some(v.to_vec());
            }
        })
        .expect("well formed");
        assert_eq!(got.as_deref(), Some(&[1, 3, b'e', b't', b'h'][..]));
    }

    #[test]
    fn garbage_never_panics() {
        let mut out = [0u8; 1024];
        let mut t = Template::new(RequestKind::Select, RELAY);
        let good = t.fill(9, 9, 0, 9, 9).to_vec();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..good.len() + 8 {
            for _ in 0..64 {
                // A few bytes flipped, mostly in the options, where lengths live.
                let mut b = garble(&good, len, &mut state);
                let _ = parse_reply(&b);
                let _ = RESPONDER.answer(&b, &mut out);
                let _ = RESPONDER.answer(&b, &mut out[..10]);
                if let Some(op) = b.first_mut() {
                    *op = BOOTREPLY;
                }
                let _ = parse_reply(&b);
            }
        }
        // An option whose length runs past the end.
        let mut b = good.clone();
        b[OPTIONS.start + 1] = 250;
        b.truncate(OPTIONS.start + 10);
        assert_eq!(RESPONDER.answer(&b, &mut out), None);
        b[0] = BOOTREPLY;
        assert_eq!(parse_reply(&b), None);
    }
}
