//! sluice moves data from Apache Kafka topics into ClickHouse tables.
//!
//! # Data flow
//! Kafka partition -> decode -> batch -> encode -> insert into ClickHouse -> commit offsets.
//! One lane (tokio task) per assigned partition: its own batch, its own in-flight insert, its
//! own commits. Lanes share only the consumer handle, the ClickHouse client and the metrics.
//! With `clickhouse.shards` each lane inserts into its partition's shard
//! ([`clickhouse::shards`]), so every guarantee below holds per shard.
//! The consumer group (librdkafka) spreads partitions over sluice instances; within one
//! instance the lanes run on every core.
//!
//! # Delivery guarantee (at-least-once)
//! An offset is committed only after every message below it is stored in ClickHouse (an
//! acknowledged INSERT) or acknowledged by the dead-letter topic. Retries never skip data.
//! After a crash, the range since the last commit is read and inserted again: rows can be
//! duplicated, never lost. at-most-once commits before inserting (lossy on crash, documented).
//!
//! # Modules
//! - [`config`]: TOML + env overrides, validated before anything connects.
//! - [`kafka`]: client settings, the group consumer thread, record chunks.
//! - [`lane`], [`batch`], [`commit`], [`checkpoint`]: the per-partition pipeline.
//! - [`decode`], [`encode`], [`chtype`], [`schema`]: JSON, Avro, Protobuf, CSV/TSV and CDC
//!   envelopes (Debezium, Maxwell, Canal) -> RowBinary for the table's columns.
//! - [`clickhouse`]: the HTTP client, version detection, retry classification, shards, the
//!   columns `unknown_fields = "add"` adds.
//! - [`dlq`]: dead letters; [`telemetry`]: metrics; [`shutdown`]: the stop signal;
//!   [`reload`]: a new configuration on SIGHUP.
//! - [`check`], [`tools`]: `sluice check` and the Kafka CLI tools.

pub mod batch;
pub mod budget;
pub mod check;
pub mod checkpoint;
pub mod chtype;
pub mod clickhouse;
pub mod commit;
pub mod config;
pub mod dead_letter_table;
pub mod decode;
pub mod dedup;
pub mod dlq;
pub mod encode;
pub mod exactly_once;
pub mod failpoint;
pub mod kafka;
pub mod lane;
pub mod pipeline;
pub mod registry;
pub mod reload;
pub mod schema;
pub mod secret;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod tools;

/// Structured logs to stderr; RUST_LOG overrides the default level (info).
pub fn telemetry_init(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
