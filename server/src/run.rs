//! The start-up and wiring API under its historical path: [`Server`] and the state-directory
//! and replay helpers that the `perf` tools and benches use.
//!
//! The code lives in [`crate::server`], [`crate::state_dir`], [`crate::replay`] and
//! [`crate::worker`].

pub use crate::replay::{replay_journal, restore_into};
pub use crate::server::Server;
pub use crate::state_dir::{journal_dir, journal_options, lock_state_dir};
pub use crate::worker::now;
