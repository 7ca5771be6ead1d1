//! Validated, borrowed view of a DHCPv4/BOOTP request: every length is checked before use.

use std::net::Ipv4Addr;

use dhcproto::v4::borrowed::Message;
use lessor_net::wire::v4::field;

/// The options magic cookie (RFC 2131 §3).
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// DHCP message types the server acts on (RFC 2132 §9.6), plus plain BOOTP (no option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A BOOTP request (RFC 951/1497): no message type option.
    Bootp,
    /// DHCPDISCOVER.
    Discover,
    /// DHCPREQUEST.
    Request,
    /// DHCPDECLINE.
    Decline,
    /// DHCPRELEASE.
    Release,
    /// DHCPINFORM.
    Inform,
}

/// Why a datagram was dropped before any protocol logic ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// Shorter than the 240-byte BOOTP header plus magic cookie.
    TooShort,
    /// `op` is not BOOTREQUEST.
    NotRequest,
    /// `hlen` is larger than the 16-byte `chaddr` field.
    BadHlen,
    /// An option's length runs past the end of its area.
    OptionOverrun,
    /// An option whose length is wrong for its type (e.g. option 50 not 4 bytes).
    BadOptionLength(u8),
    /// Option 53 holds a value that is not a client message type.
    BadMessageType(u8),
    /// The relay agent information option (82) has a sub-option running past its end.
    BadRelayInfo,
}

impl Malformed {
    /// A stable short name, used as a counter label.
    pub fn label(self) -> &'static str {
        match self {
            Malformed::TooShort => "too_short",
            Malformed::NotRequest => "not_request",
            Malformed::BadHlen => "bad_hlen",
            Malformed::OptionOverrun => "option_overrun",
            Malformed::BadOptionLength(_) => "bad_option_length",
            Malformed::BadMessageType(_) => "bad_message_type",
            Malformed::BadRelayInfo => "bad_relay_info",
        }
    }
}

/// The sub-options of relay agent information (RFC 3046) that the server uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayInfo<'a> {
    /// The whole option 82 payload, echoed back verbatim (RFC 3046 §2.2).
    pub raw: &'a [u8],
    /// Sub-option 1.
    pub circuit_id: Option<&'a [u8]>,
    /// Sub-option 2.
    pub remote_id: Option<&'a [u8]>,
    /// Sub-option 5, link selection (RFC 3527).
    pub link_selection: Option<Ipv4Addr>,
    /// Sub-option 11, server identifier override (RFC 5107).
    pub server_id_override: Option<Ipv4Addr>,
}

/// A request whose header and options have been validated. Borrowed from the receive buffer
/// (or from the caller's scratch buffer when split options had to be joined, RFC 3396).
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Message type.
    pub kind: Kind,
    /// Hardware type.
    pub htype: u8,
    /// Relay hop count.
    pub hops: u8,
    /// Transaction id.
    pub xid: u32,
    /// Flags field; bit 15 is the broadcast flag.
    pub flags: u16,
    /// Client address (set in BOUND, RENEWING, REBINDING and for INFORM).
    pub ciaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// Client hardware address, `hlen` bytes.
    pub chaddr: &'a [u8],
    /// The whole 16-byte chaddr field, echoed in replies.
    pub chaddr_field: &'a [u8; 16],
    /// Option 61.
    pub client_id: Option<&'a [u8]>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 51.
    pub lease_time: Option<u32>,
    /// Option 55.
    pub parameter_list: Option<&'a [u8]>,
    /// Option 57.
    pub max_message_size: Option<u16>,
    /// Option 12.
    pub hostname: Option<&'a [u8]>,
    /// Option 81 (RFC 4702), raw.
    pub fqdn: Option<&'a [u8]>,
    /// Option 82.
    pub relay: Option<RelayInfo<'a>>,
    /// Option 118 (RFC 3011).
    pub subnet_selection: Option<Ipv4Addr>,
}

impl<'a> Request<'a> {
    /// The broadcast bit of `flags` (RFC 2131 §2).
    pub fn broadcast(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// The hostname the client gave: option 12, else the name in option 81 (RFC 4702 §2.3).
    pub fn hostname_str(&self) -> Option<&'a str> {
        if let Some(h) = self.hostname {
            return std::str::from_utf8(trim_nul(h))
                .ok()
                .filter(|s| !s.is_empty());
        }
        let fqdn = self.fqdn?;
        // flags, rcode1, rcode2, then the name: ASCII if the E bit (0x04) is clear, else
        // RFC 1035 wire format, of which the first label is the host name.
        let (flags, name) = (fqdn.first()?, fqdn.get(3..)?);
        if flags & 0x04 == 0 {
            std::str::from_utf8(trim_nul(name))
                .ok()
                .map(|s| s.split('.').next().unwrap_or(s))
                .filter(|s| !s.is_empty())
        } else {
            let len = usize::from(*name.first()?);
            std::str::from_utf8(name.get(1..1 + len)?)
                .ok()
                .filter(|s| !s.is_empty())
        }
    }
}

fn trim_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// Codes whose repeated instances must be joined before use (RFC 3396 §5).
fn joined_code(code: u8) -> bool {
    matches!(code, 12 | 55 | 61 | 81 | 82)
}

/// Parses and validates `buf`. When a client split a long option across several instances
/// (RFC 3396), the joined options are written to `scratch` and the request borrows from it.
pub(super) fn parse<'a>(buf: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<Request<'a>, Malformed> {
    let msg = Message::new(buf).map_err(|_| Malformed::TooShort)?;
    // Header: the borrowed message trusts `hlen` when slicing chaddr, so check it first.
    if buf[field::OP] != 1 {
        return Err(Malformed::NotRequest);
    }
    let hlen = usize::from(msg.hlen());
    if hlen > 16 {
        return Err(Malformed::BadHlen);
    }
    let chaddr_field: &[u8; 16] = buf[field::CHADDR]
        .try_into()
        .map_err(|_| Malformed::TooShort)?;

    let mut req = Request {
        kind: Kind::Bootp,
        htype: buf[field::HTYPE],
        hops: msg.hops(),
        xid: msg.xid(),
        flags: u16::from_be_bytes([buf[field::FLAGS.start], buf[field::FLAGS.start + 1]]),
        ciaddr: msg.ciaddr(),
        giaddr: msg.giaddr(),
        chaddr: &chaddr_field[..hlen],
        chaddr_field,
        client_id: None,
        requested_ip: None,
        server_id: None,
        lease_time: None,
        parameter_list: None,
        max_message_size: None,
        hostname: None,
        fqdn: None,
        relay: None,
        subnet_selection: None,
    };
    if buf[field::MAGIC_NUMBER] != MAGIC {
        // RFC 951 BOOTP with a vendor area that is not RFC 1497 options: no options at all.
        return Ok(req);
    }

    let mut repeated = false;
    let mut seen = [false; 256];
    let mut visit = |req: &mut Request<'a>, code: u8, data: &'a [u8]| {
        if joined_code(code) && std::mem::replace(&mut seen[usize::from(code)], true) {
            repeated = true;
        }
        set_option(req, code, data)
    };
    let main = &buf[field::OPTIONS];
    let overload = scan(main, &mut |c, d| visit(&mut req, c, d))?.overload;
    // RFC 2132 §9.3: with option 52, `file` and then `sname` hold more options.
    let file: &[u8] = if overload & 1 != 0 {
        &buf[field::FILE]
    } else {
        &[]
    };
    let sname: &[u8] = if overload & 2 != 0 {
        &buf[field::SNAME]
    } else {
        &[]
    };
    for area in [file, sname] {
        scan(area, &mut |c, d| visit(&mut req, c, d))?;
    }
    let areas = [main, file, sname];
    if repeated {
        // Rare: rebuild the joined values in `scratch` and read those instead.
        join_into(&areas, scratch);
        scan(scratch, &mut |code, data| {
            if joined_code(code) {
                set_option(&mut req, code, data)?;
            }
            Ok(())
        })?;
    }
    Ok(req)
}

struct ScanInfo {
    overload: u8,
}

/// Walks one option area (RFC 2132 §2), checking every length against the area's end.
fn scan<'a>(
    area: &'a [u8],
    f: &mut dyn FnMut(u8, &'a [u8]) -> Result<(), Malformed>,
) -> Result<ScanInfo, Malformed> {
    let mut info = ScanInfo { overload: 0 };
    let mut i = 0;
    while i < area.len() {
        let code = area[i];
        match code {
            0 => i += 1,
            255 => break,
            _ => {
                let len = usize::from(*area.get(i + 1).ok_or(Malformed::OptionOverrun)?);
                let data = area
                    .get(i + 2..i + 2 + len)
                    .ok_or(Malformed::OptionOverrun)?;
                if code == 52 {
                    if len != 1 || data[0] > 3 {
                        return Err(Malformed::BadOptionLength(52));
                    }
                    info.overload = data[0];
                }
                f(code, data)?;
                i += 2 + len;
            }
        }
    }
    Ok(info)
}

/// Writes every option that appears more than once as one joined value, for the codes the
/// server reads. The output is itself a valid option area (long values use 2-byte lengths
/// nowhere: a joined value longer than 255 bytes is truncated to 255, which no field we read
/// needs more than).
fn join_into(areas: &[&[u8]; 3], scratch: &mut Vec<u8>) {
    scratch.clear();
    for code in [12u8, 55, 61, 81, 82] {
        let start = scratch.len();
        scratch.extend_from_slice(&[code, 0]);
        for area in areas {
            // The areas were validated by `scan` already; errors cannot occur here.
            let _ = scan(area, &mut |c, data| {
                if c == code {
                    let room = 255 - usize::from(scratch[start + 1]);
                    let take = data.len().min(room);
                    scratch.extend_from_slice(&data[..take]);
                    scratch[start + 1] += take as u8;
                }
                Ok(())
            });
        }
        if scratch[start + 1] == 0 {
            scratch.truncate(start);
        }
    }
    scratch.push(255);
}

fn ip(code: u8, data: &[u8]) -> Result<Ipv4Addr, Malformed> {
    let b: [u8; 4] = data
        .try_into()
        .map_err(|_| Malformed::BadOptionLength(code))?;
    Ok(Ipv4Addr::from(b))
}

fn set_option<'a>(req: &mut Request<'a>, code: u8, data: &'a [u8]) -> Result<(), Malformed> {
    match code {
        53 => {
            let &[t] = data else {
                return Err(Malformed::BadOptionLength(53));
            };
            req.kind = match t {
                1 => Kind::Discover,
                3 => Kind::Request,
                4 => Kind::Decline,
                7 => Kind::Release,
                8 => Kind::Inform,
                other => return Err(Malformed::BadMessageType(other)),
            };
        }
        50 => req.requested_ip = Some(ip(code, data)?),
        54 => req.server_id = Some(ip(code, data)?),
        118 => req.subnet_selection = Some(ip(code, data)?),
        51 => {
            let b: [u8; 4] = data
                .try_into()
                .map_err(|_| Malformed::BadOptionLength(51))?;
            req.lease_time = Some(u32::from_be_bytes(b));
        }
        57 => {
            let b: [u8; 2] = data
                .try_into()
                .map_err(|_| Malformed::BadOptionLength(57))?;
            req.max_message_size = Some(u16::from_be_bytes(b));
        }
        // RFC 2132 §9.14: a client identifier is at least 2 bytes (type + 1).
        61 if data.len() < 2 => return Err(Malformed::BadOptionLength(61)),
        61 => req.client_id = Some(data),
        55 => req.parameter_list = Some(data),
        12 if data.is_empty() => return Err(Malformed::BadOptionLength(12)),
        12 => req.hostname = Some(data),
        81 if data.len() < 3 => return Err(Malformed::BadOptionLength(81)),
        81 => req.fqdn = Some(data),
        82 => req.relay = Some(parse_relay(data)?),
        _ => {}
    }
    Ok(())
}

/// Relay agent information sub-options (RFC 3046 §2.0): code, length, value.
fn parse_relay(raw: &[u8]) -> Result<RelayInfo<'_>, Malformed> {
    let mut info = RelayInfo {
        raw,
        ..RelayInfo::default()
    };
    let mut i = 0;
    while i < raw.len() {
        let code = raw[i];
        let len = usize::from(*raw.get(i + 1).ok_or(Malformed::BadRelayInfo)?);
        let data = raw.get(i + 2..i + 2 + len).ok_or(Malformed::BadRelayInfo)?;
        match code {
            1 => info.circuit_id = Some(data),
            2 => info.remote_id = Some(data),
            5 => info.link_selection = Some(ip(82, data).map_err(|_| Malformed::BadRelayInfo)?),
            11 => {
                info.server_id_override = Some(ip(82, data).map_err(|_| Malformed::BadRelayInfo)?)
            }
            _ => {}
        }
        i += 2 + len;
    }
    Ok(info)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a BOOTREQUEST with the given options (each `(code, value)`), chaddr 02:00:00:00:00:01.
    pub(crate) fn request(opts: &[(u8, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; field::MAGIC_NUMBER.start];
        b[field::OP] = 1;
        b[field::HTYPE] = 1;
        b[field::HLEN] = 6;
        b[field::XID].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[field::CHADDR.start..field::CHADDR.start + 6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        b.extend_from_slice(&MAGIC);
        for (code, val) in opts {
            b.push(*code);
            b.push(val.len() as u8);
            b.extend_from_slice(val);
        }
        b.push(255);
        b
    }

    #[test]
    fn parses_a_discover() {
        let buf = request(&[
            (53, &[1]),
            (50, &[10, 0, 0, 5]),
            (55, &[1, 3, 6]),
            (61, &[1, 2, 0, 0, 0, 0, 1]),
            (57, &[5, 220]),
            (12, b"host1"),
        ]);
        let mut scratch = Vec::new();
        let r = parse(&buf, &mut scratch).unwrap();
        assert_eq!(r.kind, Kind::Discover);
        assert_eq!(r.requested_ip, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(r.parameter_list, Some(&[1u8, 3, 6][..]));
        assert_eq!(r.client_id, Some(&[1u8, 2, 0, 0, 0, 0, 1][..]));
        assert_eq!(r.max_message_size, Some(1500));
        assert_eq!(r.chaddr, &[2, 0, 0, 0, 0, 1]);
        assert_eq!(r.xid, 0x1234_5678);
        assert_eq!(r.hostname_str(), Some("host1"));
    }

    #[test]
    fn no_message_type_is_bootp() {
        let buf = request(&[(55, &[1, 3])]);
        assert_eq!(parse(&buf, &mut Vec::new()).unwrap().kind, Kind::Bootp);
    }

    #[test]
    fn rejects_lies_about_lengths() {
        let mut scratch = Vec::new();
        assert_eq!(
            parse(&[1u8; 100], &mut scratch).unwrap_err(),
            Malformed::TooShort
        );
        let mut buf = request(&[(53, &[1])]);
        buf[field::HLEN] = 200;
        assert_eq!(parse(&buf, &mut scratch).unwrap_err(), Malformed::BadHlen);

        // Option 12 claims 40 bytes but the packet ends after 3.
        let mut buf = request(&[(53, &[1])]);
        buf.pop();
        buf.extend_from_slice(&[12, 40, b'a', b'b', b'c']);
        assert_eq!(
            parse(&buf, &mut scratch).unwrap_err(),
            Malformed::OptionOverrun
        );
        // A length byte missing altogether.
        let mut buf = request(&[]);
        buf.pop();
        buf.push(61);
        assert_eq!(
            parse(&buf, &mut scratch).unwrap_err(),
            Malformed::OptionOverrun
        );

        for (code, val) in [
            (50u8, &[1u8, 2, 3][..]),
            (54, &[1]),
            (51, &[0; 5]),
            (57, &[1]),
        ] {
            let buf = request(&[(53, &[1]), (code, val)]);
            assert_eq!(
                parse(&buf, &mut scratch).unwrap_err(),
                Malformed::BadOptionLength(code)
            );
        }
        let buf = request(&[(53, &[2])]);
        assert_eq!(
            parse(&buf, &mut scratch).unwrap_err(),
            Malformed::BadMessageType(2)
        );
        let buf = request(&[(53, &[1]), (82, &[1, 10, 0])]);
        assert_eq!(
            parse(&buf, &mut scratch).unwrap_err(),
            Malformed::BadRelayInfo
        );
        let mut buf = request(&[(53, &[1])]);
        buf[field::OP] = 2;
        assert_eq!(
            parse(&buf, &mut scratch).unwrap_err(),
            Malformed::NotRequest
        );
    }

    #[test]
    fn relay_agent_information_suboptions() {
        let opt82 = [
            1, 3, b'e', b't', b'h', 2, 2, 0xaa, 0xbb, 5, 4, 10, 1, 2, 0, 11, 4, 192, 0, 2, 1,
        ];
        let buf = request(&[(53, &[3]), (82, &opt82)]);
        let mut scratch = Vec::new();
        let r = parse(&buf, &mut scratch).unwrap();
        let relay = r.relay.unwrap();
        assert_eq!(relay.raw, &opt82[..]);
        assert_eq!(relay.circuit_id, Some(&b"eth"[..]));
        assert_eq!(relay.remote_id, Some(&[0xaa, 0xbb][..]));
        assert_eq!(relay.link_selection, Some(Ipv4Addr::new(10, 1, 2, 0)));
        assert_eq!(relay.server_id_override, Some(Ipv4Addr::new(192, 0, 2, 1)));
    }

    #[test]
    fn split_options_are_joined() {
        // RFC 3396: option 55 split into two instances is one list.
        let buf = request(&[(53, &[1]), (55, &[1, 3]), (12, b"x"), (55, &[6, 15])]);
        let mut scratch = Vec::new();
        let r = parse(&buf, &mut scratch).unwrap();
        assert_eq!(r.parameter_list, Some(&[1u8, 3, 6, 15][..]));
        assert_eq!(r.hostname, Some(&b"x"[..]));
    }

    #[test]
    fn overloaded_file_field_holds_options() {
        let mut buf = request(&[(53, &[1]), (52, &[1])]);
        buf[field::FILE.start..field::FILE.start + 7]
            .copy_from_slice(&[12, 4, b'h', b'o', b's', b't', 255]);
        let mut scratch = Vec::new();
        let r = parse(&buf, &mut scratch).unwrap();
        assert_eq!(r.hostname, Some(&b"host"[..]));
    }

    #[test]
    fn fqdn_gives_a_hostname() {
        let buf = request(&[(53, &[1]), (81, &[0, 0, 0, b'a', b'.', b'b'])]);
        assert_eq!(
            parse(&buf, &mut Vec::new()).unwrap().hostname_str(),
            Some("a")
        );
        let buf = request(&[(53, &[1]), (81, &[4, 0, 0, 2, b'h', b'n', 1, b'x', 0])]);
        assert_eq!(
            parse(&buf, &mut Vec::new()).unwrap().hostname_str(),
            Some("hn")
        );
    }
}
