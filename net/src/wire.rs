//! Byte offsets of the DHCP message headers, named once for the parsers and the steering
//! programs.
//!
//! Each `field` module names a header field as a byte range ([`Field`]) or, for the area that
//! runs to the end of the message, its start ([`Rest`]); single bytes are plain offsets. The
//! layout follows smoltcp's `wire::dhcpv4::field`.

/// A header field: the byte range it occupies.
pub type Field = core::ops::Range<usize>;
/// An area that runs from its start to the end of the message (or option).
pub type Rest = core::ops::RangeFrom<usize>;

/// DHCPv4 (BOOTP) wire layout.
pub mod v4 {
    /// The DHCP server port (RFC 2131 §4.1).
    pub const SERVER_PORT: u16 = 67;
    /// The DHCP client port (RFC 2131 §4.1).
    pub const CLIENT_PORT: u16 = 68;

    /// The fixed BOOTP header (RFC 2131 Figure 1) and the options that follow the magic cookie.
    pub mod field {
        use crate::wire::{Field, Rest};

        /// Message op code: 1 BOOTREQUEST, 2 BOOTREPLY.
        pub const OP: usize = 0;
        /// Hardware address type.
        pub const HTYPE: usize = 1;
        /// Hardware address length.
        pub const HLEN: usize = 2;
        /// Relay hop count.
        pub const HOPS: usize = 3;
        /// Transaction id.
        pub const XID: Field = 4..8;
        /// Seconds since the client began.
        pub const SECS: Field = 8..10;
        /// Flags (the broadcast bit is the top one).
        pub const FLAGS: Field = 10..12;
        /// Client IP address.
        pub const CIADDR: Field = 12..16;
        /// "Your" (client) IP address.
        pub const YIADDR: Field = 16..20;
        /// Next server IP address.
        pub const SIADDR: Field = 20..24;
        /// Relay agent IP address.
        pub const GIADDR: Field = 24..28;
        /// Client hardware address, `HLEN` bytes of it meaningful.
        pub const CHADDR: Field = 28..44;
        /// Server host name; holds options under option overload (RFC 2132 §9.3).
        pub const SNAME: Field = 44..108;
        /// Boot file name; holds options under option overload (RFC 2132 §9.3).
        pub const FILE: Field = 108..236;
        /// The options magic cookie (RFC 2131 §3); the fixed header ends where it starts.
        pub const MAGIC_NUMBER: Field = 236..240;
        /// The options, to the end of the message.
        pub const OPTIONS: Rest = 240..;
    }
}

/// DHCPv6 wire layout (RFC 8415 §8, §9, §21.1).
pub mod v6 {
    /// The DHCPv6 server and relay port (RFC 8415 §7.2).
    pub const SERVER_PORT: u16 = 547;
    /// The DHCPv6 client port (RFC 8415 §7.2).
    pub const CLIENT_PORT: u16 = 546;

    /// The client/server message header, the relay message header and the option header.
    pub mod field {
        use crate::wire::{Field, Rest};

        /// Message type, the first byte of every message: client, server or relay
        /// (RFC 8415 §7.3 lists them).
        pub const MSG_TYPE: usize = 0;
        /// Transaction id of a client/server message, three bytes
        /// (RFC 8415 §8).
        pub const TRANSACTION_ID: Field = 1..4;
        /// Options of a client/server message, to its end
        /// (RFC 8415 §8).
        pub const OPTIONS: Rest = 4..;
        /// Hop count of a relay message: how many relays the message passed
        /// (RFC 8415 §9).
        pub const HOP_COUNT: usize = 1;
        /// Link address of a relay message: an address on the client's link, or unspecified
        /// (RFC 8415 §9).
        pub const LINK_ADDRESS: Field = 2..18;
        /// Peer address of a relay message: where the relay got the message from
        /// (RFC 8415 §9).
        pub const PEER_ADDRESS: Field = 18..34;
        /// Options of a relay message, to its end
        /// (RFC 8415 §9).
        pub const RELAY_OPTIONS: Rest = 34..;
        /// Option code, relative to the option's start
        /// (RFC 8415 §21.1).
        pub const OPTION_CODE: Field = 0..2;
        /// Option length, relative to the option's start: of the data, not counting the header
        /// (RFC 8415 §21.1).
        pub const OPTION_LEN: Field = 2..4;
        /// Option data, relative to the option's start; its start is the option header's length
        /// (RFC 8415 §21.1).
        pub const OPTION_DATA: Rest = 4..;
    }
}
