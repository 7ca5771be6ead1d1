//! DHCPv6 (RFC 8415): packet validation, protocol decisions and reply encoding, all sans-IO,
//! and the server's DUID.

mod duid;
mod packet;

pub use duid::{DUID_FILE, duid_llt, duid_uuid, format_duid, load_or_create_duid, server_duid};
pub use packet::{
    HOP_COUNT_LIMIT, Hop, Ia, IaEntry, IaType, Kind, MAX_IAS, Malformed, Request, client_duid,
};
