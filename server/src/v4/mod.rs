//! DHCPv4: packet validation, protocol decisions and reply encoding, all sans-IO.

mod context;
mod handler;
mod packet;
mod reply;
#[cfg(test)]
mod tests;

pub(crate) use context::layout;
pub use context::{Context, InterfaceInfo};
pub use handler::{
    Arrival, CLIENT_PORT, Destination, NoReply, Outcome, Received, Reply, SERVER_PORT, Scratch,
    client_key, handle, owner_shard, steer_hash, writes_lease,
};
pub use packet::{Kind, Malformed};
pub use reply::ReplyKind;
