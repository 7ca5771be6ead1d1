//! lessor-server: the DHCP server itself, minus lease state and sockets.
//!
//! It holds the configuration (YAML or JSON, validated into typed form), the DHCPv4 and DHCPv6
//! protocol logic and the wiring that joins the engine, the journal and the sockets into worker
//! loops. The protocol handlers are sans-IO: a function from (config, engine shard, request
//! bytes, arrival, now) to a reply decision. Lease state lives only in `lessor-engine`; sockets
//! only in `lessor-net`.

pub mod config;
pub mod control;
pub mod error;
pub mod ha;
pub mod journal_cli;
pub mod kea;
pub mod lease_record;
pub(crate) mod proto;
pub mod reload;
pub mod replay;
pub mod scope;
pub mod server;
pub mod state_dir;
pub mod stats;
pub mod v4;
pub mod v6;
mod waiting;
mod worker;

pub use error::{Error, Result};
pub use server::Server;
pub use worker::now;
