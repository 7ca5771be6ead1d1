//! DHCPv4 options: the name catalogue and its rules, as a [`Scheme`] of `options.rs`.
//!
//! Known names (`routers: [10.0.0.1]`) or numeric codes with a typed value (`"150": { ip:
//! [10.0.0.5] }`), encoded once into the option's payload. Payloads longer than 255 bytes are
//! kept whole: splitting them into several instances of the option is the packet encoder's job
//! (RFC 3396).

use std::net::Ipv4Addr;

use super::error::{ConfigError, invalid};
use super::options::{EncodedOptions, Kind, Named, Scheme, name_of, named, parse_map, render};
use super::wire::Value;

/// Encoded DHCPv4 options, sorted by code, at most one entry per code.
pub type OptionSet = EncodedOptions<u8>;

/// DHCPv4 (RFC 2132).
pub(super) struct V4;

impl Scheme for V4 {
    type Code = u8;
    type Addr = Ipv4Addr;
    const NAMED: &'static [Named<u8>] = &[
        named("subnet_mask", 1, Kind::Ip),
        named("time_offset", 2, Kind::I32),
        named("routers", 3, Kind::Ips),
        named("time_servers", 4, Kind::Ips),
        named("name_servers", 5, Kind::Ips),
        named("domain_name_servers", 6, Kind::Ips),
        named("log_servers", 7, Kind::Ips),
        named("lpr_servers", 9, Kind::Ips),
        named("host_name", 12, Kind::Str),
        named("domain_name", 15, Kind::Str),
        named("root_path", 17, Kind::Str),
        named("ip_forwarding", 19, Kind::Bool),
        named("default_ip_ttl", 23, Kind::U8),
        named("interface_mtu", 26, Kind::U16),
        named("broadcast_address", 28, Kind::Ip),
        named("static_routes", 33, Kind::Routes),
        named("arp_cache_timeout", 35, Kind::U32),
        named("nis_domain", 40, Kind::Str),
        named("nis_servers", 41, Kind::Ips),
        named("ntp_servers", 42, Kind::Ips),
        named("vendor_encapsulated_options", 43, Kind::Hex),
        named("netbios_name_servers", 44, Kind::Ips),
        named("netbios_dd_servers", 45, Kind::Ips),
        named("netbios_node_type", 46, Kind::U8),
        named("netbios_scope", 47, Kind::Str),
        named("tftp_server_name", 66, Kind::Str),
        named("bootfile_name", 67, Kind::Str),
        named("smtp_servers", 69, Kind::Ips),
        named("tz_posix", 100, Kind::Str),
        named("tz_database", 101, Kind::Str),
        named("captive_portal", 114, Kind::Str),
        named("domain_search", 119, Kind::Domains),
        named("classless_static_routes", 121, Kind::ClasslessRoutes),
    ];
    const SERVER_MANAGED: &'static [(u8, &'static str)] = &[
        (0, "pad"),
        (50, "requested address"),
        (51, "lease time; set lease_time"),
        (52, "option overload"),
        (53, "message type"),
        (54, "server identifier; set v4.server_id"),
        (55, "parameter request list"),
        (57, "maximum message size"),
        (58, "renewal time; set v4.renew_time"),
        (59, "rebinding time; set v4.rebind_time"),
        (61, "client identifier"),
        (82, "relay agent information"),
        (118, "subnet selection; echoed from the client, RFC 3011"),
        (255, "end"),
    ];
    const MAX_CODE: &'static str = "254";
    const OPTION: &'static str = "option";
    const EXAMPLE_CODE: &'static str = "150";
    const EXAMPLE_IP: &'static str = "10.0.0.5";

    fn check_named(code: u8, bytes: &[u8], path: &str) -> Result<(), ConfigError> {
        match code {
            // RFC 1191 / RFC 2132 §5.1: the minimum legal MTU is 68.
            26 if u16::from_be_bytes([bytes[0], bytes[1]]) < 68 => {
                Err(invalid(path, "interface_mtu must be at least 68"))
            }
            // RFC 2132 §8.7: B-node, P-node, M-node, H-node.
            46 if ![1, 2, 4, 8].contains(&bytes[0]) => Err(invalid(
                path,
                "netbios_node_type must be 1 (B), 2 (P), 4 (M) or 8 (H)",
            )),
            _ => Ok(()),
        }
    }
}

/// The config name of option `code`, if it has one (for logs and messages).
pub fn option_name(code: u8) -> Option<&'static str> {
    name_of::<V4>(code)
}

/// Where an `options:` map sits; decides which codes it may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    /// `v4.options` or a shared network's: shared by subnets of different sizes.
    Wide,
    /// A subnet, pool or reservation.
    Narrow,
}

/// Parses and encodes the `options:` map at `path` (absent or null: no options).
pub(super) fn parse_options(
    path: &str,
    value: Option<&Value>,
    level: Level,
) -> Result<OptionSet, ConfigError> {
    parse_map::<V4>(path, value, |kpath, code| {
        if level == Level::Wide && (code == 1 || code == 28) {
            return Err(invalid(
                kpath,
                format!(
                    "option {code} ({}) is derived from each subnet; set it in a subnet's options \
                     if the derived value is wrong",
                    option_name(code).unwrap_or_default()
                ),
            ));
        }
        Ok(())
    })
}

/// The `options:` map that parses back to exactly `set`, as [`render`] writes it.
pub(super) fn render_options(set: &OptionSet) -> Value {
    render::<V4>(set)
}

#[cfg(test)]
mod tests {
    use super::super::options::testing::Encode as _;
    use super::*;

    #[test]
    fn named_scalars_encode_big_endian() {
        assert_eq!(V4::one("time_offset: -3600", 2), (-3600i32).to_be_bytes());
        assert_eq!(V4::one("interface_mtu: 1500", 26), [0x05, 0xdc]);
        assert_eq!(V4::one("arp_cache_timeout: 70000", 35), [0, 1, 0x11, 0x70]);
        assert_eq!(V4::one("netbios_node_type: 8", 46), [8]);
        assert_eq!(V4::one("ip_forwarding: false", 19), [0]);
        assert_eq!(V4::one("domain_name: example.test", 15), b"example.test");
        assert_eq!(V4::one("subnet_mask: 255.255.255.0", 1), [255, 255, 255, 0]);
        assert_eq!(
            V4::one("routers: [10.0.0.1, 10.0.0.2]", 3),
            [10, 0, 0, 1, 10, 0, 0, 2]
        );
        // A single address is a list of one.
        assert_eq!(V4::one("ntp_servers: 10.0.0.9", 42), [10, 0, 0, 9]);
        assert_eq!(
            V4::one("vendor_encapsulated_options: \"01:04:c0:a8:00:01\"", 43),
            [1, 4, 0xc0, 0xa8, 0, 1]
        );
        assert_eq!(
            V4::one("static_routes: [\"192.168.5.0 via 10.0.0.1\"]", 33),
            [192, 168, 5, 0, 10, 0, 0, 1]
        );
    }

    #[test]
    fn by_code_typed_values() {
        assert_eq!(V4::one("\"150\": { ip: [10.0.0.5] }", 150), [10, 0, 0, 5]);
        assert_eq!(
            V4::one("150: { ips: [1.2.3.4, 5.6.7.8] }", 150),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(V4::one("\"200\": { u8: 1 }", 200), [1]);
        assert_eq!(V4::one("\"200\": { u16: [1, 2] }", 200), [0, 1, 0, 2]);
        assert_eq!(V4::one("\"200\": { u32: 1 }", 200), [0, 0, 0, 1]);
        assert_eq!(V4::one("\"200\": { i32: -1 }", 200), [0xff; 4]);
        assert_eq!(V4::one("\"200\": { bool: true }", 200), [1]);
        assert_eq!(V4::one("\"200\": { string: \"x y\" }", 200), b"x y");
        assert_eq!(V4::one("\"200\": { hex: \"0x01020a\" }", 200), [1, 2, 10]);
        assert_eq!(V4::one("\"200\": { hex: \"01-02-0a\" }", 200), [1, 2, 10]);
        // A known code by number is fine too.
        assert_eq!(V4::one("\"3\": { ip: 10.0.0.1 }", 3), [10, 0, 0, 1]);
    }

    /// RFC 3397 §2's example names, without the compression pointer that example uses.
    #[test]
    fn domain_search_rfc3397() {
        let got = V4::one("domain_search: [eng.apple.com., marketing.apple.com]", 119);
        let want: &[u8] = b"\x03eng\x05apple\x03com\x00\x09marketing\x05apple\x03com\x00";
        assert_eq!(got, want);
        // The first name is byte for byte the RFC's.
        assert_eq!(
            &got[..15],
            [
                0x03, b'e', b'n', b'g', 0x05, b'a', b'p', b'p', b'l', b'e', 0x03, b'c', b'o', b'm',
                0
            ]
        );
    }

    /// RFC 3442 §3's destination descriptor table, each with router 10.0.0.1.
    #[test]
    fn classless_routes_rfc3442() {
        let cases: &[(&str, &[u8])] = &[
            ("default", &[0]),
            ("0.0.0.0/0", &[0]),
            ("10.0.0.0/8", &[8, 10]),
            ("10.0.0.0/24", &[24, 10, 0, 0]),
            ("10.17.0.0/16", &[16, 10, 17]),
            ("10.27.129.0/24", &[24, 10, 27, 129]),
            ("10.229.0.128/25", &[25, 10, 229, 0, 128]),
            ("10.198.122.47/32", &[32, 10, 198, 122, 47]),
        ];
        for (dest, descriptor) in cases {
            let got = V4::one(
                &format!("classless_static_routes: [\"{dest} via 10.0.0.1\"]"),
                121,
            );
            let mut want = descriptor.to_vec();
            want.extend([10, 0, 0, 1]);
            assert_eq!(got, want, "{dest}");
        }
        let two = V4::one(
            "classless_static_routes: [\"10.17.0.0/16 via 10.0.0.1\", \"default via 10.0.0.2\"]",
            121,
        );
        assert_eq!(two, [16, 10, 17, 10, 0, 0, 1, 0, 10, 0, 0, 2]);
    }

    #[test]
    fn bad_values_name_the_key_and_the_expectation() {
        let cases = [
            (
                "routers: [10.0.0.1, nope]",
                "o.routers[1]: \"nope\" is not an IPv4 address",
            ),
            (
                "routers: []",
                "o.routers: expected at least one of IPv4 addresses",
            ),
            (
                "routers: {a: 1}",
                "o.routers: expected a list of IPv4 addresses, got a map",
            ),
            (
                "interface_mtu: 70000",
                "o.interface_mtu: expected an integer in 0..=65535, got 70000",
            ),
            (
                "interface_mtu: 60",
                "o.interface_mtu: interface_mtu must be at least 68",
            ),
            (
                "interface_mtu: \"1500\"",
                "expected an integer in 0..=65535, got the string \"1500\"",
            ),
            (
                "domain_name: 5",
                "o.domain_name: expected a string (quote it), got the number 5",
            ),
            (
                "netbios_node_type: 3",
                "o.netbios_node_type: netbios_node_type must be 1",
            ),
            ("bogus: 1", "o.bogus: unknown option name `bogus`"),
            (
                "\"0\": { u8: 1 }",
                "o.0: option 0 (pad) is managed by the server",
            ),
            (
                "\"53\": { u8: 1 }",
                "o.53: option 53 (message type) is managed by the server",
            ),
            ("\"255\": { u8: 1 }", "o.255: option 255 (end) is managed"),
            (
                "\"256\": { u8: 1 }",
                "o.256: option code 256 is out of range 1..=254",
            ),
            (
                "\"150\": [10.0.0.1]",
                "o.150: an option given by code needs a typed value",
            ),
            (
                "\"150\": { ipv4: 1 }",
                "o.150.ipv4: unknown value type `ipv4`",
            ),
            (
                "\"150\": { ip: 1, u8: 2 }",
                "o.150: expected exactly one type key",
            ),
            (
                "\"150\": { u8: 256 }",
                "o.150.u8: expected an integer in 0..=255, got 256",
            ),
            (
                "\"150\": { hex: \"0x123\" }",
                "o.150.hex: \"0x123\" is not hex bytes",
            ),
            (
                "routers: 10.0.0.1\n\"3\": { ip: 10.0.0.2 }",
                "o.3: option 3 is already set by `routers`",
            ),
            (
                "domain_search: [\"a..b\"]",
                "o.domain_search[0]: \"a..b\" is not a domain name",
            ),
            (
                "classless_static_routes: [\"10.0.0.1/8 via 10.0.0.1\"]",
                "has host bits set",
            ),
            (
                "classless_static_routes: [\"10.0.0.0/8 10.0.0.1\"]",
                "expected \"DEST/LEN via ROUTER\"",
            ),
            (
                "static_routes: [\"0.0.0.0 via 10.0.0.1\"]",
                "not a valid static_routes destination",
            ),
            ("host_name: \"\"", "o.host_name: must not be empty"),
        ];
        V4::assert_refused(&cases);
    }

    #[test]
    fn wide_level_rejects_derived_codes() {
        let v: Value = serde_saphyr::from_str("subnet_mask: 255.0.0.0").unwrap();
        let e = parse_options("v4.options", Some(&v), Level::Wide).unwrap_err();
        assert!(
            e.to_string().contains("v4.options.subnet_mask: option 1"),
            "{e}"
        );
    }

    #[test]
    fn merge_child_wins_per_code() {
        let parent = V4::enc("routers: 10.0.0.1\ndomain_name: a").unwrap();
        let child = V4::enc("domain_name: b\nntp_servers: 10.0.0.2").unwrap();
        let m = parent.merged(&child);
        assert_eq!(m.get(3), Some(&[10, 0, 0, 1][..]));
        assert_eq!(m.get(15), Some(&b"b"[..]));
        assert_eq!(m.get(42), Some(&[10, 0, 0, 2][..]));
        assert_eq!(m.iter().map(|(c, _)| c).collect::<Vec<_>>(), [3, 15, 42]);
        assert_eq!(parent.merged(&m.diff_from(&parent)), m);
    }

    #[test]
    fn render_parses_back_to_the_same_bytes() {
        // 26 with MTU 16 and 12 with invalid UTF-8 cannot be written by name.
        V4::assert_renders_back(
            "routers: [10.0.0.1]\ntime_offset: -5\ndomain_search: [a.b, c.d]\n\
             classless_static_routes: [\"default via 10.0.0.1\", \"10.1.0.0/16 via 10.0.0.2\"]\n\
             static_routes: [\"10.9.0.0 via 10.0.0.1\"]\nip_forwarding: true\n\
             \"150\": { ip: 10.0.0.5 }\n\"26\": { hex: \"00:10\" }\n\"12\": { hex: \"ff\" }",
            &[
                "time_offset",
                "routers",
                "12",
                "ip_forwarding",
                "26",
                "static_routes",
                "domain_search",
                "classless_static_routes",
                "150",
            ],
        );
        let set = V4::enc("routers: [10.0.0.1]\n\"26\": { hex: \"00:10\" }").unwrap();
        let again = parse_options("o", Some(&render_options(&set)), Level::Narrow).unwrap();
        assert_eq!(again, set, "through the family's own functions");
    }
}
