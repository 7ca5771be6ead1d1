//! DHCPv6 options: the name catalogue and its rules, as a [`Scheme`] of `options.rs`.
//!
//! The same scheme as DHCPv4's: known names (`dns_servers: [2001:db8::1]`) or numeric codes with
//! a typed value (`"65000": { ip: [2001:db8::5] }`), encoded once into the option's payload; the
//! packet path only copies bytes. DHCPv6 option codes are 16 bits and payloads up to 65535 bytes
//! (RFC 8415 §21.1), so nothing is ever split.

use std::net::Ipv6Addr;

use super::error::{ConfigError, invalid};
use super::options::{EncodedOptions, Kind, Named, Scheme, name_of, named, parse_map, render};
use super::wire::Value;

/// Encoded DHCPv6 options: [`EncodedOptions`] with 16-bit codes.
pub type OptionSet6 = EncodedOptions<u16>;

/// DHCPv6 (RFC 8415).
pub(super) struct V6;

impl Scheme for V6 {
    type Code = u16;
    type Addr = Ipv6Addr;
    const NAMED: &'static [Named<u16>] = &[
        named("sip_server_domains", 21, Kind::Domains),
        named("sip_servers", 22, Kind::Ips),
        named("dns_servers", 23, Kind::Ips),
        named("domain_search", 24, Kind::Domains),
        named("nis_servers", 27, Kind::Ips),
        named("nisp_servers", 28, Kind::Ips),
        named("nis_domain", 29, Kind::Domains),
        named("nisp_domain", 30, Kind::Domains),
        named("sntp_servers", 31, Kind::Ips),
        named("information_refresh_time", 32, Kind::U32),
        named("posix_timezone", 41, Kind::Str),
        named("tz_database", 42, Kind::Str),
        named("ntp_servers", 56, Kind::Ntp),
        named("bootfile_url", 59, Kind::Str),
        named("aftr_name", 64, Kind::Domain),
        named("captive_portal", 103, Kind::Str),
    ];
    const SERVER_MANAGED: &'static [(u16, &'static str)] = &[
        (0, "reserved"),
        (1, "client identifier"),
        (2, "server identifier; set v6.server_duid"),
        (3, "IA_NA"),
        (4, "IA_TA"),
        (5, "IA address"),
        (6, "option request"),
        (7, "preference; set preference"),
        (8, "elapsed time"),
        (9, "relay message"),
        (11, "authentication"),
        (12, "server unicast; set v6.server_unicast"),
        (13, "status code"),
        (14, "rapid commit; set rapid_commit"),
        (18, "interface-id"),
        (19, "reconfigure message"),
        (20, "reconfigure accept"),
        (25, "IA_PD"),
        (26, "IA prefix"),
        (37, "remote-id"),
        (38, "subscriber-id"),
        (67, "prefix exclude; set a pd_pool's excluded_prefix"),
        (79, "client link-layer address"),
    ];
    const MAX_CODE: &'static str = "65535";
    const OPTION: &'static str = "DHCPv6 option";
    const EXAMPLE_CODE: &'static str = "65000";
    const EXAMPLE_IP: &'static str = "2001:db8::5";

    fn check_named(code: u16, bytes: &[u8], path: &str) -> Result<(), ConfigError> {
        match code {
            // RFC 8415 §21.23: IRT_MINIMUM is 600 seconds; clients raise anything lower to it.
            32 if u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) < 600 => {
                Err(invalid(
                    path,
                    "information_refresh_time must be at least 600 seconds (RFC 8415 §21.23)",
                ))
            }
            _ => Ok(()),
        }
    }

    fn check_len(len: usize, path: &str) -> Result<(), ConfigError> {
        if len > usize::from(u16::MAX) {
            return Err(invalid(
                path,
                format!("encodes to {len} bytes; a DHCPv6 option holds at most 65535"),
            ));
        }
        Ok(())
    }
}

/// The config name of DHCPv6 option `code`, if it has one (for logs and messages).
pub fn option6_name(code: u16) -> Option<&'static str> {
    name_of::<V6>(code)
}

/// Parses and encodes the DHCPv6 `options:` map at `path` (absent or null: no options).
pub(super) fn parse_options6(path: &str, value: Option<&Value>) -> Result<OptionSet6, ConfigError> {
    parse_map::<V6>(path, value, |_, _| Ok(()))
}

/// `set` written back as a DHCPv6 `options:` map (see [`render`]).
pub(super) fn render_options6(set: &OptionSet6) -> Value {
    render::<V6>(set)
}

#[cfg(test)]
mod tests {
    use super::super::options::decode_ntp;
    use super::super::options::testing::Encode as _;
    use super::*;

    fn a(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn named_options_encode() {
        assert_eq!(
            V6::one("dns_servers: \"2001:db8::1\"", 23),
            a("2001:db8::1")
        );
        let two = V6::one("sntp_servers: [\"2001:db8::1\", \"2001:db8::2\"]", 31);
        assert_eq!(two, [a("2001:db8::1"), a("2001:db8::2")].concat());
        assert_eq!(
            V6::one("domain_search: [example.test]", 24),
            b"\x07example\x04test\x00"
        );
        assert_eq!(
            V6::one("information_refresh_time: 86400", 32),
            86400u32.to_be_bytes()
        );
        assert_eq!(
            V6::one("aftr_name: aftr.example", 64),
            b"\x04aftr\x07example\x00"
        );
        assert_eq!(
            V6::one("bootfile_url: \"tftp://[2001:db8::1]/x\"", 59),
            b"tftp://[2001:db8::1]/x"
        );
    }

    /// RFC 5908 §4: each server is a sub-option (code, length, value).
    #[test]
    fn ntp_servers_use_suboptions() {
        let got = V6::one(
            "ntp_servers: [\"2001:db8::123\", \"ff05::101\", ntp.example]",
            56,
        );
        let mut want = vec![0, 1, 0, 16];
        want.extend(a("2001:db8::123"));
        want.extend([0, 2, 0, 16]);
        want.extend(a("ff05::101"));
        want.extend([0, 3, 0, 13]);
        want.extend(b"\x03ntp\x07example\x00");
        assert_eq!(got, want);
        assert_eq!(
            decode_ntp(&got).unwrap(),
            ["2001:db8::123", "ff05::101", "ntp.example"]
        );
    }

    #[test]
    fn by_code_typed_values() {
        assert_eq!(
            V6::one("\"65000\": { ip: \"2001:db8::5\" }", 65000),
            a("2001:db8::5")
        );
        assert_eq!(V6::one("\"300\": { u16: [1, 2] }", 300), [0, 1, 0, 2]);
        assert_eq!(V6::one("\"300\": { i32: -1 }", 300), [0xff; 4]);
        assert_eq!(V6::one("\"300\": { hex: \"0x0102\" }", 300), [1, 2]);
        assert_eq!(V6::one("\"300\": { string: x }", 300), b"x");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                "dns_servers: [\"2001:db8::1\", nope]",
                "o.dns_servers[1]: \"nope\" is not an IPv6 address",
            ),
            (
                "dns_servers: [10.0.0.1]",
                "o.dns_servers[0]: \"10.0.0.1\" is not an IPv6 address",
            ),
            (
                "dns_servers: []",
                "o.dns_servers: expected at least one of IPv6 addresses",
            ),
            (
                "routers: [\"2001:db8::1\"]",
                "o.routers: unknown DHCPv6 option name `routers`",
            ),
            (
                "\"23\": [x]",
                "o.23: an option given by code needs a typed value",
            ),
            (
                "\"2\": { hex: \"01\" }",
                "o.2: option 2 (server identifier; set v6.server_duid) is managed",
            ),
            (
                "\"25\": { hex: \"01\" }",
                "o.25: option 25 (IA_PD) is managed",
            ),
            (
                "\"70000\": { u8: 1 }",
                "o.70000: option code 70000 is out of range 1..=65535",
            ),
            (
                "ntp_servers: [\"a..b\"]",
                "o.ntp_servers[0]: neither an IPv6 address nor a host name",
            ),
            (
                "information_refresh_time: 60",
                "o.information_refresh_time: information_refresh_time must be at least 600",
            ),
            (
                "dns_servers: \"2001:db8::1\"\n\"23\": { ip: \"2001:db8::2\" }",
                "o.23: option 23 is already set by `dns_servers`",
            ),
        ];
        V6::assert_refused(&cases);
    }

    #[test]
    fn render_parses_back_to_the_same_bytes() {
        // 64 with bytes that are no domain name cannot be written by name.
        V6::assert_renders_back(
            "dns_servers: [\"2001:db8::1\"]\ndomain_search: [a.b, c.d]\n\
             ntp_servers: [\"2001:db8::123\", ntp.example]\ninformation_refresh_time: 3600\n\
             \"65000\": { u8: 7 }\n\"64\": { hex: \"01:02\" }",
            &[
                "dns_servers",
                "domain_search",
                "information_refresh_time",
                "ntp_servers",
                "64",
                "65000",
            ],
        );
        let set = V6::enc("dns_servers: [\"2001:db8::1\"]\n\"64\": { hex: \"01:02\" }").unwrap();
        let again = parse_options6("o", Some(&render_options6(&set))).unwrap();
        assert_eq!(again, set, "through the family's own functions");
    }
}
