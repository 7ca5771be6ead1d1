//! The DHCPv4 engine: IPv4 addresses keyed by client key, under the names [`crate::v6`]
//! gives the same things.

pub use crate::admin::PutError;
pub use crate::engine::{BindRequest, Engine, Grant, OfferRequest, PoolStats};
pub use crate::error::{AllocError, BindError, ConfigError};
pub use crate::ident::{ClientKey, HostName, HwAddr};
pub use crate::lease::{Lease, LeaseEvent, LeaseInfo, LeaseRef, LeaseView};
pub use crate::pools::{EngineConfig, PoolId, PoolSpec};
pub use crate::replay::RestoreReport;
pub use crate::restore::Restorer;
