//! The config file as written: serde structs that mirror the TOML one to one.
//!
//! Every struct denies unknown fields so a typo (`max_row = 10`) is an error at start-up rather
//! than a silently ignored setting. Durations and sizes stay strings here; [`super::validate`]
//! turns them into typed values and names the field when one is wrong.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub kafka: RawKafka,
    pub clickhouse: RawClickHouse,
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub service: RawService,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    pub brokers: String,
    pub group_id: Option<String>,
    pub client_id: Option<String>,
    /// Static group membership (`group.instance.id`): a restarted instance with the same id
    /// gets its partitions back at once, without a rebalance of the whole group.
    pub instance_id: Option<String>,
    /// "earliest" (default) or "latest": where a partition with no committed offset starts.
    pub auto_offset_reset: Option<String>,
    pub session_timeout: Option<String>,
    /// PLAINTEXT (default), SSL, SASL_PLAINTEXT, SASL_SSL.
    pub security_protocol: Option<String>,
    /// PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    pub sasl_password_file: Option<String>,
    pub ssl_ca_location: Option<String>,
    pub ssl_certificate_location: Option<String>,
    pub ssl_key_location: Option<String>,
    pub ssl_key_password: Option<String>,
    /// Hostname verification of the broker certificate; on unless set to false.
    pub ssl_endpoint_identification: Option<bool>,
    /// Extra librdkafka properties, passed through unless they would override a setting
    /// sluice relies on (see `validate::PROTECTED_KAFKA_PROPERTIES`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClickHouse {
    pub url: String,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// auto (default), none, lz4, gzip.
    pub compression: Option<String>,
    /// Stream batches the memory budget would cut short (default true).
    pub stream_inserts: Option<bool>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub topic: String,
    pub table: String,
    pub database: Option<String>,
    pub format: Option<String>,
    pub delivery: Option<String>,
    pub max_rows: Option<u64>,
    pub max_bytes: Option<RawSize>,
    pub max_age: Option<String>,
    /// "ignore" (default) or "error".
    pub unknown_fields: Option<String>,
    /// "dead-letter" (default) or "drop" (still counted and logged).
    pub on_bad_message: Option<String>,
    pub dead_letter_topic: Option<String>,
    /// Insert attempts before the route fails; 0 or absent means retry forever.
    pub max_insert_retries: Option<u32>,
    #[serde(default)]
    pub metadata: RawMetadataColumns,
}

/// Which table columns receive Kafka metadata. An empty string switches one off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetadataColumns {
    pub topic: Option<String>,
    pub partition: Option<String>,
    pub offset: Option<String>,
    pub timestamp: Option<String>,
    pub key: Option<String>,
    pub headers: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// How long a graceful shutdown may take to flush and commit before sluice gives up.
    pub shutdown_timeout: Option<String>,
    /// Address of the HTTP endpoint serving /metrics and /health; absent means off.
    pub metrics_listen: Option<String>,
    /// "text" (default) or "json".
    pub log_format: Option<String>,
    /// Memory all lanes' open batches may hold together (records + encoded rows).
    pub batch_memory: Option<RawSize>,
}

/// A byte size written either as a number (bytes) or a string with a unit ("16MiB").
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}
