//! The crate-wide [`crate::secret::Secret`], re-exported so the ClickHouse client's API
//! (`clickhouse::Secret`, `clickhouse::secret::Secret`) keeps its names. One type for every
//! secret: the config hands its passwords to the client as they are, without re-wrapping.

pub use crate::secret::Secret;
