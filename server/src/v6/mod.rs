//! DHCPv6 (RFC 8415): packet validation, protocol decisions and reply encoding, all sans-IO,
//! and the server's DUID.
//!
//! The handler mirrors v4's: [`handle`] takes a datagram, how it arrived and the time, applies
//! it to the engine shard that owns the client ([`owner_shard`]: by DUID, through any relay
//! layers) and writes the reply, wrapped in one RELAY-REPL per relay, into the caller's buffer.
//! Replies that bind or extend a lease say so (`needs_durable`) and wait for the journal.

mod context;
mod duid;
mod handler;
mod ia;
mod packet;
mod reply;
#[cfg(test)]
mod tests;

pub(crate) use context::layout;
pub use context::{Context, InterfaceInfo};
pub use duid::{DUID_FILE, duid_llt, duid_uuid, format_duid, load_or_create_duid, server_duid};
pub use handler::{
    Arrival, CLIENT_PORT, NoReply, Outcome, Received, Reply, SERVER_PORT, handle, owner_shard,
    writes_lease,
};
pub use packet::{
    Hop, Ia, IaEntry, IaType, Kind, MAX_IAS, MAX_RELAY_LAYERS, Malformed, Request, client_duid,
    parse,
};
pub use reply::{ReplyKind, Status};
