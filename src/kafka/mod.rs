//! Kafka side: client settings (security included), the group consumer, record chunks.
//! Nothing here knows about ClickHouse.

pub mod batches;
pub mod client;
pub mod consumer;
pub mod fetch_queue;
pub mod gssapi;
pub mod java_stores;
pub mod oidc;
pub mod own_fetch;
pub mod preflight;
pub mod records;
pub mod refetch;
pub mod secure;
pub mod start_offsets;
pub mod topic_name;
pub mod wire;
