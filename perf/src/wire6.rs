//! DHCPv6 bytes for `load6` and `null-responder6`: relayed requests written into a reused
//! buffer, and bounds-checked readers that never panic on garbage (RFC 8415).
//!
//! As in [`crate::wire`], no `dhcproto` builders: a request is a RELAY-FORW header copied from
//! a prebuilt one plus a handful of short options written in place (the per-client parts are
//! the peer-address, the DUID, the relay's ids, the IA contents and the server's DUID, several
//! of variable length, so a fixed template would not do), and a reply is read by walking its
//! options once. Nothing allocates per packet.
//!
//! Client `n` (`n < 2^24`) has MAC [`crate::wire::mac`]`(n)`, DUID-LL `00 03 00 01` + MAC
//! (RFC 8415 §11.4) and, as the relay's peer-address, the link-local address built from the
//! MAC by modified EUI-64 (RFC 4291 §2.5.1), so a RELAY-REPL names its client in a fixed place.

use std::net::Ipv6Addr;

use lessor_net::wire::v6::field::{OPTION_CODE, OPTION_DATA, OPTION_LEN, OPTIONS, RELAY_OPTIONS};

use crate::wire::{be_u32, mac};

/// Client/server message types (RFC 8415 §7.3).
pub(crate) const SOLICIT: u8 = 1;
pub(crate) const ADVERTISE: u8 = 2;
pub(crate) const REQUEST: u8 = 3;
pub(crate) const RENEW: u8 = 5;
pub(crate) const REBIND: u8 = 6;
pub(crate) const REPLY: u8 = 7;
pub(crate) const RELEASE: u8 = 8;
pub(crate) const RELAY_FORW: u8 = 12;
pub(crate) const RELAY_REPL: u8 = 13;

/// Option codes used here (RFC 8415 §21, RFC 4649, RFC 4580, RFC 8357).
const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ORO: u16 = 6;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_RELAY_MSG: u16 = 9;
const OPT_STATUS_CODE: u16 = 13;
const OPT_RAPID_COMMIT: u16 = 14;
const OPT_INTERFACE_ID: u16 = 18;
const OPT_DNS_SERVERS: u16 = 23;
const OPT_DOMAIN_LIST: u16 = 24;
const OPT_IA_PD: u16 = 25;
const OPT_IAPREFIX: u16 = 26;
const OPT_REMOTE_ID: u16 = 37;
const OPT_SUBSCRIBER_ID: u16 = 38;
const OPT_RELAY_SOURCE_PORT: u16 = 135;

/// Status codes (RFC 8415 §21.13).
pub(crate) const STATUS_SUCCESS: u16 = 0;
pub(crate) const STATUS_NO_ADDRS_AVAIL: u16 = 2;
pub(crate) const STATUS_NO_BINDING: u16 = 3;
pub(crate) const STATUS_NOT_ON_LINK: u16 = 4;
pub(crate) const STATUS_NO_PREFIX_AVAIL: u16 = 6;

/// msg-type, hop-count, link-address, peer-address (RFC 8415 §9).
pub(crate) const RELAY_HEADER: usize = RELAY_OPTIONS.start;
/// msg-type and transaction-id (RFC 8415 §8).
const MSG_HEADER: usize = OPTIONS.start;
/// Relay nesting the responder unwraps (RFC 8415 §7.6 HOP_COUNT_LIMIT).
pub(crate) const MAX_HOPS: usize = 8;
/// The IAID of every IA the load generator sends.
pub(crate) const IAID: u32 = 1;
/// A DUID is at most 128 bytes plus its 2-byte type (RFC 8415 §11.1).
pub(crate) const MAX_DUID: usize = 130;
/// Longest id a pattern may produce (an option length must fit; 128 is plenty for a test).
const MAX_ID: usize = 128;
/// Room for any request [`Builder`] writes: relay header, three ids, the relay message with a
/// maximal server DUID and both IAs.
pub(crate) const MAX_REQUEST: usize = 1024;

/// The DUID-LL of client `n` (RFC 8415 §11.4: type 3, hardware type 1, the MAC).
pub(crate) fn duid(n: u32) -> [u8; 10] {
    let m = mac(n);
    [0, 3, 0, 1, m[0], m[1], m[2], m[3], m[4], m[5]]
}

/// The link-local address of client `n`: fe80:: + the modified EUI-64 of its MAC (the U/L bit
/// of the first byte inverted, ff:fe in the middle; RFC 4291 Appendix A).
pub(crate) fn peer_address(n: u32) -> [u8; 16] {
    let m = mac(n);
    [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ]
}

/// The client number a peer-address of [`peer_address`]'s shape names, if it has that shape.
pub(crate) fn client_of_peer(a: &[u8]) -> Option<u32> {
    let want = peer_address(0);
    let shape = a.len() == 16
        && a[..10] == want[..10]
        && a[11..13] == want[11..13]
        && a[10] == 0 /* clients fit 24 bits: the MAC's third byte is 0 */;
    shape.then(|| u32::from_be_bytes([0, a[13], a[14], a[15]]))
}

/// An identifier whose text may hold `{n}`, replaced by the client number in decimal (e.g.
/// `CUST{n}`: `CUST0`, `CUST1`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdPattern {
    head: Vec<u8>,
    /// `Some(tail)` when the text has `{n}`: the bytes after it.
    tail: Option<Vec<u8>>,
}

impl IdPattern {
    /// Parse `text`; at most one `{n}`, and the longest expansion (8 digits) at most 128 bytes.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let p = match text.split_once("{n}") {
            Some((h, t)) => {
                if t.contains("{n}") {
                    return Err(format!("{text:?}: at most one {{n}}"));
                }
                IdPattern {
                    head: h.as_bytes().to_vec(),
                    tail: Some(t.as_bytes().to_vec()),
                }
            }
            None => IdPattern {
                head: text.as_bytes().to_vec(),
                tail: None,
            },
        };
        if p.max_len() == 0 || p.max_len() > MAX_ID {
            return Err(format!(
                "{text:?}: an id must be 1 to {MAX_ID} bytes once {{n}} is expanded"
            ));
        }
        Ok(p)
    }

    fn max_len(&self) -> usize {
        self.head.len() + self.tail.as_ref().map_or(0, |t| 8 + t.len())
    }

    /// Write the id of client `n` (`n < 2^24`: at most 8 digits) at the start of `out`
    /// (at least 128 bytes); returns its length.
    fn write(&self, n: u32, out: &mut [u8]) -> usize {
        let mut w = self.head.len();
        out[..w].copy_from_slice(&self.head);
        if let Some(tail) = &self.tail {
            let mut digits = [0u8; 10];
            let mut i = digits.len();
            let mut v = n;
            loop {
                i -= 1;
                digits[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            let d = &digits[i..];
            out[w..w + d.len()].copy_from_slice(d);
            w += d.len();
            out[w..w + tail.len()].copy_from_slice(tail);
            w += tail.len();
        }
        w
    }
}

/// What the relay puts around every client message.
#[derive(Clone, Debug)]
pub(crate) struct Relay {
    /// link-address (RFC 8415 §9.1): the server picks the subnet by it.
    pub(crate) link_address: Ipv6Addr,
    /// Interface-ID option (18), which the server must echo (RFC 8415 §21.18).
    pub(crate) interface_id: Option<IdPattern>,
    /// Remote-ID option (37, RFC 4649): enterprise number and id.
    pub(crate) remote_id: Option<(u32, IdPattern)>,
    /// Subscriber-ID option (38, RFC 4580).
    pub(crate) subscriber_id: Option<IdPattern>,
    /// Relay Source Port option (135, RFC 8357): the relay's own UDP port when it is not 547,
    /// so that a server replies there (Kea does; lessor in test mode answers the source port
    /// anyway). Set per worker.
    pub(crate) source_port: Option<u16>,
}

/// Which request [`Builder::build`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Solicit,
    Request,
    Renew,
    Release,
}

/// The per-packet parts of a request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request<'a> {
    pub(crate) kind: Kind,
    /// Transaction id (24 bits used).
    pub(crate) xid: u32,
    pub(crate) client: u32,
    /// Elapsed Time option, hundredths of a second since the exchange began (RFC 8415 §21.9).
    pub(crate) elapsed_cs: u16,
    /// A SOLICIT asks for rapid commit (option 14).
    pub(crate) rapid_commit: bool,
    /// Send an IA_NA (IAID 1), with this address in an IAADDR unless it is 0.
    pub(crate) na: Option<u128>,
    /// Send an IA_PD (IAID 1), with this prefix and length in an IAPREFIX unless the length is 0.
    pub(crate) pd: Option<(u128, u8)>,
    /// Server Identifier option (REQUEST, RENEW, RELEASE).
    pub(crate) server_id: Option<&'a [u8]>,
}

/// A cursor over an output buffer the caller sized for what is written (the builder's
/// [`MAX_REQUEST`], the responder's checked need).
struct W<'a> {
    b: &'a mut [u8],
    at: usize,
}

impl W<'_> {
    fn put(&mut self, v: &[u8]) {
        self.b[self.at..self.at + v.len()].copy_from_slice(v);
        self.at += v.len();
    }
    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
    /// Start an option; returns where its length goes, for [`W::close`].
    fn open(&mut self, code: u16) -> usize {
        self.u16(code);
        self.u16(0);
        self.at - 2
    }
    /// Patch the length of the option opened at `len_at` to end here.
    fn close(&mut self, len_at: usize) {
        // Every option written here is far shorter than 64 KiB (the buffers are 1-2 KiB).
        let len = (self.at - len_at - 2) as u16;
        self.b[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    }
    fn option(&mut self, code: u16, value: &[u8]) {
        let at = self.open(code);
        self.put(value);
        self.close(at);
    }
}

/// Writes the load generator's relayed requests into one reused buffer.
#[derive(Debug)]
pub(crate) struct Builder {
    relay: Relay,
    /// The RELAY-FORW header with hop-count 0 and the link-address; the peer-address is
    /// patched per packet.
    header: [u8; RELAY_HEADER],
    buf: Vec<u8>,
}

impl Builder {
    pub(crate) fn new(relay: Relay) -> Self {
        let mut header = [0u8; RELAY_HEADER];
        header[0] = RELAY_FORW;
        header[1] = 0; // hop-count: the first relay (RFC 8415 §19.1.1)
        header[2..18].copy_from_slice(&relay.link_address.octets());
        Builder {
            relay,
            header,
            buf: vec![0; MAX_REQUEST],
        }
    }

    pub(crate) fn relay(&self) -> &Relay {
        &self.relay
    }

    /// The RELAY-FORW datagram carrying `r`.
    pub(crate) fn build(&mut self, r: &Request<'_>) -> &[u8] {
        let relay = &self.relay;
        let mut w = W {
            b: &mut self.buf,
            at: 0,
        };
        w.put(&self.header);
        w.b[18..34].copy_from_slice(&peer_address(r.client));
        let mut id = [0u8; MAX_ID];
        if let Some(p) = &relay.interface_id {
            let n = p.write(r.client, &mut id);
            w.option(OPT_INTERFACE_ID, &id[..n]);
        }
        if let Some((enterprise, p)) = &relay.remote_id {
            let at = w.open(OPT_REMOTE_ID);
            w.u32(*enterprise);
            let n = p.write(r.client, &mut id);
            w.put(&id[..n]);
            w.close(at);
        }
        if let Some(p) = &relay.subscriber_id {
            let n = p.write(r.client, &mut id);
            w.option(OPT_SUBSCRIBER_ID, &id[..n]);
        }
        if let Some(port) = relay.source_port {
            w.option(OPT_RELAY_SOURCE_PORT, &port.to_be_bytes());
        }
        let msg = w.open(OPT_RELAY_MSG);
        w.u8(match r.kind {
            Kind::Solicit => SOLICIT,
            Kind::Request => REQUEST,
            Kind::Renew => RENEW,
            Kind::Release => RELEASE,
        });
        w.put(&r.xid.to_be_bytes()[1..]);
        w.option(OPT_CLIENTID, &duid(r.client));
        if let Some(sid) = r.server_id {
            w.option(OPT_SERVERID, &sid[..sid.len().min(MAX_DUID)]);
        }
        w.option(OPT_ELAPSED_TIME, &r.elapsed_cs.to_be_bytes());
        if r.kind != Kind::Release {
            let oro = w.open(OPT_ORO);
            w.u16(OPT_DNS_SERVERS);
            w.u16(OPT_DOMAIN_LIST);
            w.close(oro);
        }
        if r.kind == Kind::Solicit && r.rapid_commit {
            w.option(OPT_RAPID_COMMIT, &[]);
        }
        if let Some(addr) = r.na {
            let ia = w.open(OPT_IA_NA);
            w.u32(IAID);
            w.u32(0); // T1, T2: the server's choice (RFC 8415 §21.4)
            w.u32(0);
            if addr != 0 {
                let a = w.open(OPT_IAADDR);
                w.put(&addr.to_be_bytes());
                w.u32(0); // lifetimes: a hint only (RFC 8415 §18.2.2)
                w.u32(0);
                w.close(a);
            }
            w.close(ia);
        }
        if let Some((prefix, len)) = r.pd {
            let ia = w.open(OPT_IA_PD);
            w.u32(IAID);
            w.u32(0);
            w.u32(0);
            if len != 0 {
                let p = w.open(OPT_IAPREFIX);
                w.u32(0);
                w.u32(0);
                w.u8(len);
                w.put(&prefix.to_be_bytes());
                w.close(p);
            }
            w.close(ia);
        }
        w.close(msg);
        let end = w.at;
        &self.buf[..end]
    }
}

/// Walk the options in `b`, calling `f(code, value)` for each; `None` when an option header or
/// value runs past the end (a lying length), so the caller drops the whole message.
fn each_option<'a>(b: &'a [u8], mut f: impl FnMut(u16, &'a [u8])) -> Option<()> {
    let mut rest = b;
    while !rest.is_empty() {
        let code = u16::from_be_bytes(rest.get(OPTION_CODE)?.try_into().ok()?);
        let len = usize::from(u16::from_be_bytes(rest.get(OPTION_LEN)?.try_into().ok()?));
        let (option, next) = rest.split_at_checked(OPTION_DATA.start + len)?;
        f(code, &option[OPTION_DATA]);
        rest = next;
    }
    Some(())
}

fn be_u128(b: &[u8], at: usize) -> Option<u128> {
    Some(u128::from_be_bytes(b.get(at..at + 16)?.try_into().ok()?))
}

/// An Status Code option's code; a value shorter than 2 bytes is malformed.
fn status(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

/// What a reply said about one IA (the one with the load generator's IAID).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ia {
    /// The IA was in the reply.
    pub(crate) present: bool,
    /// The first address (IA_NA) or prefix (IA_PD) in it, 0 when none.
    pub(crate) resource: u128,
    /// 128 for an address, the prefix length for a prefix; 0 when none.
    pub(crate) len: u8,
    /// Its valid lifetime, seconds.
    pub(crate) valid: u32,
    /// The IA's Status Code (0, Success, when absent).
    pub(crate) status: u16,
}

impl Ia {
    /// It carries a usable lease: a resource with a valid lifetime, and no error status.
    pub(crate) fn granted(&self) -> bool {
        self.present && self.status == STATUS_SUCCESS && self.len != 0 && self.valid > 0
    }
}

/// Read the options of an IA_NA or IA_PD value (`v` after the option header) if its IAID is
/// [`IAID`]; `None` when malformed. `sub` is IAADDR or IAPREFIX.
fn read_ia(v: &[u8], sub: u16) -> Option<Option<Ia>> {
    let iaid = be_u32(v, 0)?;
    let opts = v.get(12..)?;
    let mut ia = Ia {
        present: true,
        ..Ia::default()
    };
    let mut bad = false;
    each_option(opts, |code, o| match code {
        OPT_STATUS_CODE => match status(o) {
            Some(s) => ia.status = s,
            None => bad = true,
        },
        OPT_IAADDR if sub == OPT_IAADDR && ia.len == 0 => match (be_u128(o, 0), be_u32(o, 20)) {
            (Some(a), Some(valid)) => {
                ia.resource = a;
                ia.len = 128;
                ia.valid = valid;
            }
            _ => bad = true,
        },
        OPT_IAPREFIX if sub == OPT_IAPREFIX && ia.len == 0 => {
            match (be_u32(o, 4), o.get(8), be_u128(o, 9)) {
                (Some(valid), Some(&len), Some(p)) if (1..=128).contains(&len) => {
                    ia.resource = p;
                    ia.len = len;
                    ia.valid = valid;
                }
                _ => bad = true,
            }
        }
        _ => {}
    })?;
    if bad {
        return None;
    }
    Some((iaid == IAID).then_some(ia))
}

/// What the load generator needs from a RELAY-REPL.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reply {
    /// The client named by the peer-address.
    pub(crate) client: u32,
    /// The inner message's type.
    pub(crate) kind: u8,
    /// Its transaction id.
    pub(crate) xid: u32,
    /// Its Client Identifier is the client's DUID.
    pub(crate) duid_ok: bool,
    /// The relay's Interface-ID came back as sent (true when none was sent).
    pub(crate) interface_id_ok: bool,
    /// Server Identifier, `server_id[..server_id_len]`; length 0 when absent.
    pub(crate) server_id: [u8; MAX_DUID],
    pub(crate) server_id_len: u8,
    /// The message's own Status Code (0 when absent).
    pub(crate) status: u16,
    /// The message has the Rapid Commit option.
    pub(crate) rapid_commit: bool,
    pub(crate) na: Ia,
    pub(crate) pd: Ia,
}

impl Reply {
    pub(crate) fn server_id(&self) -> &[u8] {
        &self.server_id[..usize::from(self.server_id_len)]
    }
}

/// Read a RELAY-REPL from one relay (the load generator) around a server message; `None` for
/// anything else or anything malformed: short headers, an option (at any level) whose length
/// runs past its container, nested relay messages, a peer-address that names no client.
pub(crate) fn parse_reply(b: &[u8], relay: &Relay) -> Option<Reply> {
    if b.len() < RELAY_HEADER || b[0] != RELAY_REPL {
        return None;
    }
    let client = client_of_peer(&b[18..34])?;
    let mut inner: Option<&[u8]> = None;
    let mut iface: Option<&[u8]> = None;
    each_option(&b[RELAY_HEADER..], |code, v| match code {
        OPT_RELAY_MSG => inner = Some(v),
        OPT_INTERFACE_ID => iface = Some(v),
        _ => {}
    })?;
    let m = inner?;
    if m.len() < MSG_HEADER || matches!(m[0], RELAY_FORW | RELAY_REPL) {
        return None;
    }
    let interface_id_ok = match &relay.interface_id {
        None => true,
        Some(p) => {
            let mut want = [0u8; MAX_ID];
            let n = p.write(client, &mut want);
            iface == Some(&want[..n])
        }
    };
    let mut r = Reply {
        client,
        kind: m[0],
        xid: u32::from_be_bytes([0, m[1], m[2], m[3]]),
        duid_ok: false,
        interface_id_ok,
        server_id: [0; MAX_DUID],
        server_id_len: 0,
        status: STATUS_SUCCESS,
        rapid_commit: false,
        na: Ia::default(),
        pd: Ia::default(),
    };
    let want = duid(client);
    let mut bad = false;
    each_option(&m[MSG_HEADER..], |code, v| match code {
        OPT_CLIENTID => r.duid_ok = v == want,
        OPT_SERVERID => {
            if v.is_empty() || v.len() > MAX_DUID {
                bad = true;
            } else {
                r.server_id[..v.len()].copy_from_slice(v);
                r.server_id_len = v.len() as u8;
            }
        }
        OPT_STATUS_CODE => match status(v) {
            Some(s) => r.status = s,
            None => bad = true,
        },
        OPT_RAPID_COMMIT => r.rapid_commit = true,
        OPT_IA_NA => match read_ia(v, OPT_IAADDR) {
            Some(Some(ia)) if !r.na.present => r.na = ia,
            Some(_) => {}
            None => bad = true,
        },
        OPT_IA_PD => match read_ia(v, OPT_IAPREFIX) {
            Some(Some(ia)) if !r.pd.present => r.pd = ia,
            Some(_) => {}
            None => bad = true,
        },
        _ => {}
    })?;
    (!bad).then_some(r)
}

/// How the null responder answers: the server DUID, the prefixes it derives addresses and
/// delegated prefixes from, and the lifetimes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Responder {
    /// Its Server Identifier (a DUID-EN).
    pub(crate) server_duid: [u8; 18],
    /// IA_NA addresses: these upper 64 bits, the lower 64 from the client's DUID.
    pub(crate) na_prefix: u64,
    /// IA_PD prefixes: `pd_base` (`pd_base_len` bits), then client bits up to `pd_len`.
    pub(crate) pd_base: u128,
    pub(crate) pd_base_len: u8,
    pub(crate) pd_len: u8,
    pub(crate) preferred: u32,
    pub(crate) valid: u32,
    /// Answer a SOLICIT with Rapid Commit with a REPLY (RFC 8415 §18.3.1).
    pub(crate) rapid_commit: bool,
}

/// The responder's default Server Identifier: DUID-EN (type 2, RFC 8415 §11.3) with the
/// documentation enterprise number 32473 (RFC 5612) and "null-rsp6".
pub(crate) const NULL_SERVER_DUID: [u8; 18] = [
    0, 2, 0, 0, 0x7e, 0xd9, b'n', b'u', b'l', b'l', b'-', b'r', b's', b'p', b'6', 0, 0, 1,
];

/// The IAs of one request the responder answers (at most this many of each kind).
const MAX_IAS: usize = 4;

/// A relay level of a request: where its header is, and its Interface-ID (option value range).
#[derive(Clone, Copy, Debug, Default)]
struct Hop {
    header: usize,
    iface: Option<(usize, usize)>,
}

impl Responder {
    /// The lower 64 bits the client's DUID stands for: its last 8 bytes (fewer, right-aligned,
    /// for a short DUID), varied by IAID beyond the first so two IAs differ.
    fn client_bits(duid: &[u8], iaid: u32) -> u64 {
        let mut last = [0u8; 8];
        let n = duid.len().min(8);
        last[8 - n..].copy_from_slice(&duid[duid.len() - n..]);
        u64::from_be_bytes(last) ^ (u64::from(iaid ^ IAID) << 32)
    }

    /// The address of the client with `duid` in its IA_NA `iaid`.
    pub(crate) fn address(&self, duid: &[u8], iaid: u32) -> u128 {
        (u128::from(self.na_prefix) << 64) | u128::from(Self::client_bits(duid, iaid))
    }

    /// The delegated prefix of the client with `duid` in its IA_PD `iaid`.
    pub(crate) fn prefix(&self, duid: &[u8], iaid: u32) -> u128 {
        let bits = u32::from(self.pd_len - self.pd_base_len).min(64);
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let v = u128::from(Self::client_bits(duid, iaid) & mask);
        self.pd_base | (v << (128 - u32::from(self.pd_len)))
    }

    /// Answer the datagram `req` into `out`: ADVERTISE to a SOLICIT (REPLY with Rapid Commit
    /// when asked and allowed), REPLY to a REQUEST, RENEW, REBIND or RELEASE, each wrapped back
    /// in one RELAY-REPL per RELAY-FORW of the request with its hop-count, link- and
    /// peer-address and Interface-ID echoed (RFC 8415 §19.3). `None` for other messages, for
    /// anything malformed, and when the reply would not fit `out`.
    pub(crate) fn answer(&self, req: &[u8], out: &mut [u8]) -> Option<usize> {
        // Unwrap the relay levels, outermost first.
        let mut hops = [Hop::default(); MAX_HOPS];
        let mut nhops = 0;
        let mut at = 0; // start of the current message in `req`
        let mut end = req.len();
        while req.get(at) == Some(&RELAY_FORW) {
            if nhops == MAX_HOPS || end - at < RELAY_HEADER {
                return None;
            }
            let mut inner = None;
            let mut iface = None;
            let base = at + RELAY_HEADER;
            each_option(&req[base..end], |code, v| {
                // Offsets of `v` inside `req`, from its address inside the walked slice.
                let off = v.as_ptr() as usize - req.as_ptr() as usize;
                match code {
                    OPT_RELAY_MSG => inner = Some((off, off + v.len())),
                    OPT_INTERFACE_ID => iface = Some((off, off + v.len())),
                    _ => {}
                }
            })?;
            hops[nhops] = Hop { header: at, iface };
            nhops += 1;
            (at, end) = inner?;
        }
        let m = &req[at..end];
        if m.len() < MSG_HEADER {
            return None;
        }
        let mut client_id: Option<&[u8]> = None;
        let mut rapid = false;
        let mut na = [0u32; MAX_IAS];
        let mut nna = 0;
        let mut pd = [0u32; MAX_IAS];
        let mut npd = 0;
        each_option(&m[MSG_HEADER..], |code, v| match code {
            OPT_CLIENTID => client_id = Some(v),
            OPT_RAPID_COMMIT => rapid = true,
            OPT_IA_NA | OPT_IA_PD if v.len() >= 12 => {
                let iaid = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                let (list, n) = if code == OPT_IA_NA {
                    (&mut na, &mut nna)
                } else {
                    (&mut pd, &mut npd)
                };
                if *n < MAX_IAS {
                    list[*n] = iaid;
                    *n += 1;
                }
            }
            _ => {}
        })?;
        let duid = client_id.filter(|d| (1..=MAX_DUID).contains(&d.len()))?;
        let (kind, with_ias) = match m[0] {
            SOLICIT if rapid && self.rapid_commit => (REPLY, true),
            SOLICIT => (ADVERTISE, true),
            REQUEST | RENEW | REBIND => (REPLY, true),
            RELEASE => (REPLY, false),
            _ => return None,
        };

        // Sizes, to check `out` once and to write each relay level's RELAY_MSG length.
        let ias = if with_ias {
            nna * (16 + 28) + npd * (16 + 29)
        } else {
            0
        };
        let inner_len = MSG_HEADER
            + 4
            + duid.len()
            + 4
            + self.server_duid.len()
            + ias
            + if kind == REPLY && m[0] == SOLICIT {
                4
            } else {
                0
            }
            + if with_ias { 0 } else { 6 }; // Status Code Success for a RELEASE
        let mut level_len = [0usize; MAX_HOPS];
        let mut len = inner_len;
        for i in (0..nhops).rev() {
            let iface = hops[i].iface.map_or(0, |(s, e)| 4 + e - s);
            len += RELAY_HEADER + iface + 4;
            level_len[i] = len;
        }
        let out = out.get_mut(..len)?;
        let mut w = W { b: out, at: 0 };
        for (i, hop) in hops[..nhops].iter().enumerate() {
            let h = hop.header;
            w.u8(RELAY_REPL);
            w.put(&req[h + 1..h + RELAY_HEADER]);
            if let Some((s, e)) = hop.iface {
                w.option(OPT_INTERFACE_ID, &req[s..e]);
            }
            w.u16(OPT_RELAY_MSG);
            // Bounded by the datagram size (checked against `out` above).
            let rest = level_len.get(i + 1).copied().filter(|_| i + 1 < nhops);
            w.u16(rest.unwrap_or(inner_len) as u16);
        }
        w.u8(kind);
        w.put(&m[1..4]);
        w.option(OPT_CLIENTID, duid);
        w.option(OPT_SERVERID, &self.server_duid);
        if kind == REPLY && m[0] == SOLICIT {
            w.option(OPT_RAPID_COMMIT, &[]);
        }
        if !with_ias {
            w.option(OPT_STATUS_CODE, &STATUS_SUCCESS.to_be_bytes());
        } else {
            let (t1, t2) = (self.preferred / 2, self.preferred / 5 * 4);
            for &iaid in &na[..nna] {
                let ia = w.open(OPT_IA_NA);
                w.u32(iaid);
                w.u32(t1);
                w.u32(t2);
                let a = w.open(OPT_IAADDR);
                w.put(&self.address(duid, iaid).to_be_bytes());
                w.u32(self.preferred);
                w.u32(self.valid);
                w.close(a);
                w.close(ia);
            }
            for &iaid in &pd[..npd] {
                let ia = w.open(OPT_IA_PD);
                w.u32(iaid);
                w.u32(t1);
                w.u32(t2);
                let p = w.open(OPT_IAPREFIX);
                w.u32(self.preferred);
                w.u32(self.valid);
                w.u8(self.pd_len);
                w.put(&self.prefix(duid, iaid).to_be_bytes());
                w.close(p);
                w.close(ia);
            }
        }
        debug_assert_eq!(w.at, len);
        (w.at == len).then_some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::garble;

    fn relay() -> Relay {
        Relay {
            link_address: "fd00:231::1".parse().expect("address"),
            interface_id: Some(IdPattern::parse("eth{n}").expect("pattern")),
            remote_id: Some((3561, IdPattern::parse("CUST{n}").expect("pattern"))),
            subscriber_id: Some(IdPattern::parse("sub-{n}-x").expect("pattern")),
            source_port: Some(6548),
        }
    }

    fn responder() -> Responder {
        Responder {
            server_duid: NULL_SERVER_DUID,
            na_prefix: 0xfd00_0231_0000_0000,
            pd_base: u128::from_be_bytes(
                "fd00:2300::".parse::<Ipv6Addr>().expect("address").octets(),
            ),
            pd_base_len: 32,
            pd_len: 56,
            preferred: 3600,
            valid: 7200,
            rapid_commit: true,
        }
    }

    const SERVER: &[u8] = &[0, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

    fn request(kind: Kind, client: u32) -> Request<'static> {
        Request {
            kind,
            xid: 0x00ab_cdef,
            client,
            elapsed_cs: 7,
            rapid_commit: true,
            na: Some(if kind == Kind::Solicit {
                0
            } else {
                0xfd00_0231_0000_0000_0000_0000_0000_1234
            }),
            pd: Some(if kind == Kind::Solicit {
                (0, 0)
            } else {
                (0xfd00_2300_0012_3400 << 64, 56)
            }),
            server_id: (kind != Kind::Solicit).then_some(SERVER),
        }
    }

    #[test]
    fn client_identity_round_trips() {
        for n in [0, 1, 0x00ab_cdef, (1 << 24) - 1] {
            assert_eq!(client_of_peer(&peer_address(n)), Some(n));
            let d = duid(n);
            assert_eq!(&d[..4], &[0, 3, 0, 1]);
            assert_eq!(&d[4..], &mac(n));
        }
        let a: Ipv6Addr = "fe80::ab:cdef".parse().expect("address");
        assert_eq!(client_of_peer(&a.octets()), None);
        assert_eq!(
            Ipv6Addr::from(peer_address(0x0012_3456)).to_string(),
            "fe80::ff:fe12:3456"
        );
    }

    #[test]
    fn patterns() {
        let mut out = [0u8; MAX_ID];
        let p = IdPattern::parse("CUST{n}").expect("pattern");
        let n = p.write(0, &mut out);
        assert_eq!(&out[..n], b"CUST0");
        let n = p.write(16_777_215, &mut out);
        assert_eq!(&out[..n], b"CUST16777215");
        let fixed = IdPattern::parse("eth0").expect("pattern");
        let n = fixed.write(99, &mut out);
        assert_eq!(&out[..n], b"eth0");
        assert!(IdPattern::parse("").is_err());
        assert!(IdPattern::parse("{n}{n}").is_err());
        // 128 bytes at most, counting 8 digits for {n}.
        assert!(IdPattern::parse(&"x".repeat(129)).is_err());
        assert!(IdPattern::parse(&"x".repeat(128)).is_ok());
        assert!(IdPattern::parse(&format!("{}{{n}}", "x".repeat(121))).is_err());
        assert!(IdPattern::parse(&format!("{}{{n}}", "x".repeat(120))).is_ok());
    }

    /// The relay options of a RELAY-FORW or RELAY-REPL, raw: (code, value) in order.
    fn relay_options(b: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut v = Vec::new();
        each_option(&b[RELAY_HEADER..], |c, o| v.push((c, o.to_vec()))).expect("well formed");
        v
    }

    /// Every request is the relay header meant, and its client message decodes with dhcproto
    /// (the parser lessor's tests trust; its RELAY_MSG decoder expects a relay message inside,
    /// so the relay level is read by hand) as the message meant.
    #[test]
    fn relay_forw_parses_back() {
        use dhcproto::v6::{DhcpOption, Message, MessageType, OptionCode};
        use dhcproto::{Decodable, Decoder};
        let cases = [
            (Kind::Solicit, MessageType::Solicit),
            (Kind::Request, MessageType::Request),
            (Kind::Renew, MessageType::Renew),
            (Kind::Release, MessageType::Release),
        ];
        let mut b = Builder::new(relay());
        for (kind, want) in cases {
            let n = 0x0001_2345;
            let bytes = b.build(&request(kind, n)).to_vec();
            assert_eq!(bytes[0], RELAY_FORW);
            assert_eq!(bytes[1], 0, "hop-count");
            let link: Ipv6Addr = "fd00:231::1".parse().expect("address");
            assert_eq!(&bytes[2..18], &link.octets());
            assert_eq!(&bytes[18..34], &peer_address(n));
            let opts = relay_options(&bytes);
            let codes: Vec<u16> = opts.iter().map(|(c, _)| *c).collect();
            assert_eq!(
                codes,
                [
                    OPT_INTERFACE_ID,
                    OPT_REMOTE_ID,
                    OPT_SUBSCRIBER_ID,
                    OPT_RELAY_SOURCE_PORT,
                    OPT_RELAY_MSG
                ]
            );
            assert_eq!(opts[0].1, b"eth74565");
            let mut want_remote = 3561u32.to_be_bytes().to_vec();
            want_remote.extend_from_slice(b"CUST74565");
            assert_eq!(opts[1].1, want_remote);
            assert_eq!(opts[2].1, b"sub-74565-x");
            assert_eq!(opts[3].1, 6548u16.to_be_bytes());
            // The relay message is the last option and ends the datagram.
            assert!(bytes.ends_with(&opts[4].1));

            let m = Message::decode(&mut Decoder::new(&opts[4].1)).expect("decodes");
            assert_eq!(m.msg_type(), want, "{kind:?}");
            assert_eq!(m.xid(), [0xab, 0xcd, 0xef]);
            let opts = m.opts();
            match opts.get(OptionCode::ClientId) {
                Some(DhcpOption::ClientId(d)) => assert_eq!(d, &duid(n).to_vec()),
                o => panic!("client id {o:?}"),
            }
            match opts.get(OptionCode::ServerId) {
                Some(DhcpOption::ServerId(d)) => assert_eq!(d.as_slice(), SERVER),
                None => assert_eq!(kind, Kind::Solicit),
                o => panic!("server id {o:?}"),
            }
            assert_eq!(
                opts.get(OptionCode::RapidCommit).is_some(),
                kind == Kind::Solicit
            );
            assert_eq!(
                opts.get(OptionCode::ElapsedTime),
                Some(&DhcpOption::ElapsedTime(7))
            );
            match opts.get(OptionCode::IANA) {
                Some(DhcpOption::IANA(ia)) => {
                    assert_eq!(ia.id, IAID);
                    match (kind, ia.opts.get(OptionCode::IAAddr)) {
                        (Kind::Solicit, None) => {}
                        (_, Some(DhcpOption::IAAddr(a))) => assert_eq!(
                            a.addr,
                            "fd00:231::1234".parse::<Ipv6Addr>().expect("address")
                        ),
                        other => panic!("{other:?}"),
                    }
                }
                o => panic!("IA_NA {o:?}"),
            }
            match opts.get(OptionCode::IAPD) {
                Some(DhcpOption::IAPD(ia)) => {
                    assert_eq!(ia.id, IAID);
                    match (kind, ia.opts.get(OptionCode::IAPrefix)) {
                        (Kind::Solicit, None) => {}
                        (_, Some(DhcpOption::IAPrefix(p))) => {
                            assert_eq!(p.prefix_len, 56);
                            assert_eq!(
                                p.prefix_ip,
                                "fd00:2300:12:3400::".parse::<Ipv6Addr>().expect("address")
                            );
                        }
                        other => panic!("{other:?}"),
                    }
                }
                o => panic!("IA_PD {o:?}"),
            }
        }
    }

    #[test]
    fn responder_answers_and_replies_read_back() {
        let rel = relay();
        let rsp = responder();
        let mut b = Builder::new(rel.clone());
        let mut out = [0u8; 1500];
        let n = 0x0012_3456;

        // Rapid commit asked and allowed: REPLY with option 14.
        let len = rsp
            .answer(b.build(&request(Kind::Solicit, n)), &mut out)
            .expect("answer");
        let r = parse_reply(&out[..len], &rel).expect("parses");
        assert_eq!((r.kind, r.client, r.xid), (REPLY, n, 0x00ab_cdef));
        assert!(r.rapid_commit && r.duid_ok && r.interface_id_ok);
        assert_eq!(r.server_id(), &NULL_SERVER_DUID);
        assert!(r.na.granted() && r.pd.granted());
        assert_eq!(r.na.resource, rsp.address(&duid(n), IAID));
        assert_eq!(
            Ipv6Addr::from(r.na.resource).to_string(),
            "fd00:231::1:200:12:3456"
        );
        assert_eq!(
            (Ipv6Addr::from(r.pd.resource).to_string(), r.pd.len),
            ("fd00:2300:1234:5600::".to_owned(), 56)
        );

        // Without rapid commit: ADVERTISE.
        let mut req = request(Kind::Solicit, n);
        req.rapid_commit = false;
        let len = rsp.answer(b.build(&req), &mut out).expect("answer");
        let r = parse_reply(&out[..len], &rel).expect("parses");
        assert_eq!(r.kind, ADVERTISE);
        assert!(!r.rapid_commit);

        for kind in [Kind::Request, Kind::Renew] {
            let len = rsp
                .answer(b.build(&request(kind, n)), &mut out)
                .expect("answer");
            let r = parse_reply(&out[..len], &rel).expect("parses");
            assert_eq!(r.kind, REPLY);
            assert!(r.na.granted() && r.pd.granted());
        }
        let len = rsp
            .answer(b.build(&request(Kind::Release, n)), &mut out)
            .expect("answer");
        let r = parse_reply(&out[..len], &rel).expect("parses");
        assert_eq!((r.kind, r.status), (REPLY, STATUS_SUCCESS));
        assert!(!r.na.present && !r.pd.present);

        // The reply's client message also decodes with dhcproto.
        use dhcproto::{Decodable, Decoder};
        let len = rsp
            .answer(b.build(&request(Kind::Request, n)), &mut out)
            .expect("answer");
        let opts = relay_options(&out[..len]);
        assert_eq!(opts[0], (OPT_INTERFACE_ID, b"eth1193046".to_vec()));
        assert_eq!(opts[1].0, OPT_RELAY_MSG);
        let m = dhcproto::v6::Message::decode(&mut Decoder::new(&opts[1].1))
            .expect("dhcproto decodes the REPLY");
        assert_eq!(m.msg_type(), dhcproto::v6::MessageType::Reply);

        // An interface-id that does not come back is noticed.
        let other = Relay {
            interface_id: Some(IdPattern::parse("other").expect("pattern")),
            ..rel.clone()
        };
        let r = parse_reply(&out[..len], &other).expect("parses");
        assert!(!r.interface_id_ok);
        // A reply for another client's DUID.
        let mut wrong = out[..len].to_vec();
        wrong[33] ^= 1; // peer-address names client n ^ 1, the DUID stays n's
        let r = parse_reply(&wrong, &rel).expect("parses");
        assert!(!r.duid_ok);
    }

    /// Two relays deep: both levels come back in order with their interface-ids.
    #[test]
    fn responder_unwraps_nested_relays() {
        let rel = relay();
        let mut b = Builder::new(Relay {
            interface_id: None,
            ..rel.clone()
        });
        let inner = b.build(&request(Kind::Solicit, 5)).to_vec();
        let mut outer = vec![RELAY_FORW, 1];
        outer.extend_from_slice(&[0x20; 16]);
        outer.extend_from_slice(&[0x30; 16]);
        outer.extend_from_slice(&OPT_INTERFACE_ID.to_be_bytes());
        outer.extend_from_slice(&3u16.to_be_bytes());
        outer.extend_from_slice(b"top");
        outer.extend_from_slice(&OPT_RELAY_MSG.to_be_bytes());
        outer.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        outer.extend_from_slice(&inner);
        let mut out = [0u8; 1500];
        let len = responder().answer(&outer, &mut out).expect("answer");
        assert_eq!(out[0], RELAY_REPL);
        assert_eq!(out[1], 1);
        assert_eq!(&out[2..34], &outer[2..34]);
        let mut got_iface = None;
        let mut got_inner = None;
        each_option(&out[RELAY_HEADER..len], |c, v| match c {
            OPT_INTERFACE_ID => got_iface = Some(v.to_vec()),
            OPT_RELAY_MSG => got_inner = Some(v.to_vec()),
            _ => {}
        })
        .expect("well formed");
        assert_eq!(got_iface.as_deref(), Some(&b"top"[..]));
        let r = parse_reply(&got_inner.expect("inner relay"), &rel).expect("inner parses");
        assert_eq!((r.client, r.kind), (5, REPLY));
    }

    /// A RELAY-REPL whose lengths lie is garbage: never trusted, never a panic.
    #[test]
    fn bad_lengths_are_garbage() {
        let rel = relay();
        let rsp = responder();
        let mut b = Builder::new(rel.clone());
        let mut out = [0u8; 1500];
        let len = rsp
            .answer(b.build(&request(Kind::Request, 9)), &mut out)
            .expect("answer");
        let good = out[..len].to_vec();
        assert!(parse_reply(&good, &rel).is_some());

        // The RELAY_MSG option (after the echoed interface-id) claims more than there is.
        let iface = 4 + 4; // "eth9"
        let at = RELAY_HEADER + iface;
        assert_eq!(&good[at..at + 2], &OPT_RELAY_MSG.to_be_bytes());
        let mut long = good.clone();
        long[at + 2..at + 4].copy_from_slice(&((len - at - 4 + 1) as u16).to_be_bytes());
        assert!(parse_reply(&long, &rel).is_none());
        // ... or less: the inner message's last option then runs past its end.
        let mut short = good.clone();
        short[at + 2..at + 4].copy_from_slice(&((len - at - 4 - 3) as u16).to_be_bytes());
        assert!(parse_reply(&short, &rel).is_none());
        // Cut anywhere: never a reply (the relay message, last, is cut or gone).
        for cut in 0..len {
            assert!(parse_reply(&good[..cut], &rel).is_none(), "cut at {cut}");
        }
        // An IAADDR shorter than 24 bytes inside the IA_NA.
        let ia = good
            .windows(4)
            .position(|w| w[..2] == OPT_IAADDR.to_be_bytes())
            .expect("iaaddr");
        let mut tiny = good.clone();
        tiny[ia + 2..ia + 4].copy_from_slice(&8u16.to_be_bytes());
        assert!(parse_reply(&tiny, &rel).is_none());
        // A relay header cut short, and a wrong message type.
        assert!(parse_reply(&good[..RELAY_HEADER - 1], &rel).is_none());
        let mut forw = good.clone();
        forw[0] = RELAY_FORW;
        assert!(parse_reply(&forw, &rel).is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let rel = relay();
        let rsp = responder();
        let mut b = Builder::new(rel.clone());
        let mut out = [0u8; 1500];
        let req = b.build(&request(Kind::Request, 77)).to_vec();
        let len = rsp.answer(&req, &mut out).expect("answer");
        let rep = out[..len].to_vec();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for good in [&req, &rep] {
            for len in 0..good.len() + 8 {
                for _ in 0..32 {
                    let b = garble(good, len, &mut state);
                    let _ = parse_reply(&b, &rel);
                    let _ = rsp.answer(&b, &mut out);
                    let _ = rsp.answer(&b, &mut out[..40]);
                }
            }
        }
        // Relays nested past the limit are refused.
        let mut deep = b.build(&request(Kind::Solicit, 1)).to_vec();
        for _ in 0..MAX_HOPS {
            let mut outer = vec![RELAY_FORW, 0];
            outer.extend_from_slice(&[0; 32]);
            outer.extend_from_slice(&OPT_RELAY_MSG.to_be_bytes());
            outer.extend_from_slice(&(deep.len() as u16).to_be_bytes());
            outer.extend_from_slice(&deep);
            deep = outer;
        }
        assert_eq!(rsp.answer(&deep, &mut out), None);
    }
}
