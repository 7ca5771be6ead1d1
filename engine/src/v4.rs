//! The DHCPv4 engine, under the names [`crate::v6`] gives the same things.
//!
//! The crate root re-exports these under their older names ([`crate::Engine`], ...), which
//! stay until every caller uses the ones here.

pub use crate::admin::PutError;
pub use crate::engine::{BindRequest, Engine, Grant, OfferRequest, PoolStats};
pub use crate::error::{AllocError, BindError, Error as ConfigError};
pub use crate::ident::{ClientKey, HostName, HwAddr};
pub use crate::lease::{Lease, LeaseEvent, LeaseInfo, LeaseRef, LeaseView};
pub use crate::pools::{EngineConfig, PoolId, PoolSpec};
pub use crate::replay::RestoreReport;
pub use crate::restore::Restorer;
