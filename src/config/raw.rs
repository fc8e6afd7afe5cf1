//! The config file as written: serde structs that mirror the TOML one to one.
//!
//! Every struct denies unknown fields so a typo (`max_row = 10`) is an error at start-up rather
//! than a silently ignored setting. Durations and sizes stay strings here; [`super::validate`]
//! turns them into typed values and names the field when one is wrong.
//!
//! Scalars are read leniently: a string field takes a number or a boolean as its text, and a
//! number or boolean field takes a string that parses as one. Environment overrides are
//! always strings (a numeric password stays a password), and serde's own type errors, which
//! quote the value, never get to quote a secret.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub kafka: RawKafka,
    pub clickhouse: RawClickHouse,
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub service: RawService,
    /// The Confluent-compatible schema registry Avro routes read their schemas from.
    #[serde(default)]
    pub schema_registry: Option<RawSchemaRegistry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchemaRegistry {
    #[serde(deserialize_with = "required_scalar")]
    pub url: String,
    /// HTTP basic authentication (Confluent's `basic.auth.user.info`).
    #[serde(default, deserialize_with = "scalar")]
    pub username: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub password: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub password_file: Option<String>,
    /// Bearer authentication with tokens from an OIDC issuer by client credentials
    /// (Confluent's `bearer.auth.credentials.source = OAUTHBEARER`): the token endpoint.
    #[serde(default, deserialize_with = "scalar")]
    pub bearer_auth_issuer_endpoint_url: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub bearer_auth_client_id: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub bearer_auth_client_secret: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub bearer_auth_client_secret_file: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub bearer_auth_scope: Option<String>,
    /// Confluent Cloud: the registry's logical cluster (`target-sr-cluster` header) and the
    /// identity pool (`Confluent-Identity-Pool-Id`) the token is mapped by.
    #[serde(default, deserialize_with = "scalar")]
    pub bearer_auth_logical_cluster: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub bearer_auth_identity_pool_id: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ca_file: Option<String>,
    /// A Java truststore (JKS or PKCS#12) instead of ca_file.
    #[serde(default, deserialize_with = "scalar")]
    pub truststore_location: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub truststore_password: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub request_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    #[serde(deserialize_with = "required_scalar")]
    pub brokers: String,
    #[serde(default, deserialize_with = "scalar")]
    pub group_id: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub client_id: Option<String>,
    /// Static group membership (`group.instance.id`): a restarted instance with the same id
    /// gets its partitions back at once, without a rebalance of the whole group.
    #[serde(default, deserialize_with = "scalar")]
    pub instance_id: Option<String>,
    /// "earliest" (default) or "latest": where a partition with no committed offset starts.
    #[serde(default, deserialize_with = "scalar")]
    pub auto_offset_reset: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub session_timeout: Option<String>,
    /// PLAINTEXT (default), SSL, SASL_PLAINTEXT, SASL_SSL.
    #[serde(default, deserialize_with = "scalar")]
    pub security_protocol: Option<String>,
    /// Who fetches records: "auto" (default: "sluice" wherever its own path connects exactly
    /// as librdkafka would, else "librdkafka"; `validate::own_fetch_refusal`), "sluice" (its
    /// own fetch path, `kafka/own_fetch.rs`) or "librdkafka".
    #[serde(default, deserialize_with = "scalar")]
    pub fetch: Option<String>,
    /// PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, GSSAPI.
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_mechanism: Option<String>,
    /// GSSAPI: the Kerberos principal sluice logs in as (`sluice@EXAMPLE.COM`); with a keytab,
    /// required (librdkafka's `kinit` logs in with it and renews the ticket).
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_kerberos_principal: Option<String>,
    /// GSSAPI: the keytab holding the principal's keys. Without one, the ticket cache a `kinit`
    /// left (`KRB5CCNAME`) is used as it is, and renewing it is up to whoever made it.
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_kerberos_keytab: Option<String>,
    /// GSSAPI: the brokers' Kerberos service name (their principals are
    /// `<service>/<broker host>@REALM`); "kafka" unless set.
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_kerberos_service_name: Option<String>,
    /// OAUTHBEARER: the OIDC issuer's token endpoint, where tokens are fetched with the client
    /// credentials below (librdkafka's OIDC client, `sasl.oauthbearer.method = oidc`).
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_oauthbearer_token_endpoint_url: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_oauthbearer_client_id: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_oauthbearer_client_secret: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_oauthbearer_client_secret_file: Option<String>,
    /// OAUTHBEARER: the scope asked for (space-separated), if the issuer wants one.
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_oauthbearer_scope: Option<String>,
    /// OAUTHBEARER: SASL extensions sent with the token, "key=value,key=value" (Confluent
    /// Cloud: "logicalCluster=lkc-...,identityPoolId=pool-...").
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_oauthbearer_extensions: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_username: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_password: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub sasl_password_file: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ssl_ca_location: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ssl_certificate_location: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ssl_key_location: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ssl_key_password: Option<String>,
    /// A Java keystore (PKCS#12 or JKS) with the client certificate and key.
    #[serde(default, deserialize_with = "scalar")]
    pub ssl_keystore_location: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ssl_keystore_password: Option<String>,
    /// A Java truststore (JKS or PKCS#12) with the CA certificates, instead of ssl_ca_location.
    #[serde(default, deserialize_with = "scalar")]
    pub ssl_truststore_location: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ssl_truststore_password: Option<String>,
    /// Hostname verification of the broker certificate; on unless set to false.
    #[serde(default, deserialize_with = "scalar")]
    pub ssl_endpoint_identification: Option<bool>,
    /// Extra librdkafka properties, passed through unless they would override a setting
    /// sluice relies on (see `validate::PROTECTED_KAFKA_PROPERTIES`).
    #[serde(default, deserialize_with = "scalar_map")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClickHouse {
    #[serde(deserialize_with = "required_scalar")]
    pub url: String,
    #[serde(default, deserialize_with = "scalar")]
    pub database: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub password: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub password_file: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ca_file: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub client_cert: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub client_key: Option<String>,
    /// A Java truststore (JKS or PKCS#12) instead of ca_file.
    #[serde(default, deserialize_with = "scalar")]
    pub truststore_location: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub truststore_password: Option<String>,
    /// A Java keystore (JKS or PKCS#12) instead of client_cert and client_key.
    #[serde(default, deserialize_with = "scalar")]
    pub keystore_location: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub keystore_password: Option<String>,
    /// A JKS keystore's key password, when it is not the store's.
    #[serde(default, deserialize_with = "scalar")]
    pub key_password: Option<String>,
    /// auto (default), none, lz4, gzip.
    #[serde(default, deserialize_with = "scalar")]
    pub compression: Option<String>,
    /// Stream batches the memory budget would cut short (default true).
    #[serde(default, deserialize_with = "scalar")]
    pub stream_inserts: Option<bool>,
    #[serde(default, deserialize_with = "scalar")]
    pub connect_timeout: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub request_timeout: Option<String>,
    /// ClickHouse settings sent with every INSERT (Kafka Connect's `clickhouseSettings`),
    /// except those sluice sets itself (`validate::PROTECTED_INSERT_SETTINGS`).
    #[serde(default, deserialize_with = "scalar_map")]
    pub insert_settings: BTreeMap<String, String>,
    /// Every shard's URL, `url` first: each partition's rows go to one shard's table.
    #[serde(default)]
    pub shards: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// The topic, or (exactly one of the two) `topic_pattern`.
    #[serde(default, deserialize_with = "scalar")]
    pub topic: Option<String>,
    /// Column -> how its dates and date-times are written in the messages (Kafka Connect's
    /// `dateTimeFormats`): epoch_seconds/millis/micros/nanos or a strftime pattern.
    #[serde(default, deserialize_with = "scalar_map")]
    pub date_time_formats: BTreeMap<String, String>,
    /// A regular expression every topic the route reads matches as a whole (Kafka Connect's
    /// `topics.regex`); `{topic}` in `table` and `dead_letter_table` stands for each topic.
    #[serde(default, deserialize_with = "scalar")]
    pub topic_pattern: Option<String>,
    #[serde(deserialize_with = "required_scalar")]
    pub table: String,
    #[serde(default, deserialize_with = "scalar")]
    pub database: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub format: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub delivery: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub max_rows: Option<u64>,
    pub max_bytes: Option<RawSize>,
    #[serde(default, deserialize_with = "scalar")]
    pub max_age: Option<String>,
    /// "ignore" (default) or "error".
    #[serde(default, deserialize_with = "scalar")]
    pub unknown_fields: Option<String>,
    /// json-schema routes: check each document against its schema (default false).
    #[serde(default, deserialize_with = "scalar")]
    pub validate: Option<bool>,
    /// "dead-letter" (default: a topic), "dead-letter-table" or "drop" (still counted and
    /// logged).
    #[serde(default, deserialize_with = "scalar")]
    pub on_bad_message: Option<String>,
    /// What a message without a value (a tombstone) becomes: "dead-letter" (default) or
    /// "skip" (counted, nothing stored: compacted and CDC topics carry them by design).
    #[serde(default, deserialize_with = "scalar")]
    pub tombstones: Option<String>,
    /// How a message carries its row: "none" (default: it is the row), "debezium" (a
    /// change event in JSON, JSON Schema, Avro or Protobuf: its `after`, or for a delete its
    /// `before`), "maxwell" (a Maxwell JSON event: its `data`) or "canal" (a Canal flat
    /// JSON message: each element of its `data`).
    #[serde(default, deserialize_with = "scalar")]
    pub envelope: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub dead_letter_topic: Option<String>,
    /// `table` (in the route's database) or `database.table`.
    #[serde(default, deserialize_with = "scalar")]
    pub dead_letter_table: Option<String>,
    /// Insert attempts before the route fails; 0 or absent means retry forever.
    #[serde(default, deserialize_with = "scalar")]
    pub max_insert_retries: Option<u32>,
    #[serde(default)]
    pub metadata: RawMetadataColumns,
    /// CSV/TSV: the columns the fields of a line fill, in order.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

/// Which table columns receive Kafka metadata. An empty string switches one off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetadataColumns {
    #[serde(default, deserialize_with = "scalar")]
    pub topic: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub partition: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub offset: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub timestamp: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub key: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub headers: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub value: Option<String>,
    /// Change events only (an `envelope`): the event's operation and delete flag.
    #[serde(default, deserialize_with = "scalar")]
    pub op: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub deleted: Option<String>,
    /// Change events only: when the event was made and when its change (Debezium's `ts_ms`,
    /// `source.ts_ms`, `source.db`, `source.table`; Canal's `ts`, `es`, `database`, `table`;
    /// Maxwell's `ts` in seconds as `source_ts_ms`, `database`, `table`).
    #[serde(default, deserialize_with = "scalar")]
    pub ts_ms: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub source_ts_ms: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub db: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub table: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// How long a graceful shutdown may take to flush and commit before sluice gives up.
    #[serde(default, deserialize_with = "scalar")]
    pub shutdown_timeout: Option<String>,
    /// Address of the HTTP endpoint serving /metrics and /health; absent means off.
    #[serde(default, deserialize_with = "scalar")]
    pub metrics_listen: Option<String>,
    /// "text" (default) or "json".
    #[serde(default, deserialize_with = "scalar")]
    pub log_format: Option<String>,
    /// Memory all lanes' open batches may hold together (records + encoded rows).
    pub batch_memory: Option<RawSize>,
    /// How often the routes' tables are read again for columns added or changed; "0s" = never.
    #[serde(default, deserialize_with = "scalar")]
    pub table_refresh: Option<String>,
}

/// A byte size written either as a number (bytes) or a string with a unit ("16MiB").
#[derive(Debug, Clone)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::Integer(i) => u64::try_from(i)
                .map(RawSize::Bytes)
                .map_err(|_| D::Error::custom(format!("a size cannot be negative ({i})"))),
            toml::Value::String(s) => Ok(RawSize::Text(s)),
            _ => Err(D::Error::custom(
                "expected a size: a number of bytes or a string such as \"16MiB\"",
            )),
        }
    }
}

/// A scalar's text: strings as they are, numbers and booleans as TOML writes them.
fn scalar_text<E: serde::de::Error>(v: toml::Value, expected: &str) -> Result<String, E> {
    match v {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(E::custom(format!(
            "expected {expected}, found {}",
            match other {
                toml::Value::Array(_) => "a list",
                toml::Value::Table(_) => "a table",
                _ => "a date",
            }
        ))),
    }
}

/// What a field of type `T` holds, for error messages.
fn expected<T>() -> &'static str {
    match std::any::type_name::<T>() {
        "bool" => "true or false",
        "u64" | "u32" => "a whole number",
        _ => "a string",
    }
}

fn parse_scalar<T, E>(v: toml::Value) -> Result<T, E>
where
    T: FromStr,
    T::Err: Display,
    E: serde::de::Error,
{
    let text = scalar_text(v, expected::<T>())?;
    text.trim()
        .parse()
        .map_err(|e| E::custom(format!("expected {}: {e}", expected::<T>())))
}

/// An optional scalar field, written natively or as a string (see the module doc).
fn scalar<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    match Option::<toml::Value>::deserialize(d)? {
        None => Ok(None),
        Some(v) => parse_scalar(v).map(Some),
    }
}

/// A required string field that also takes a number or a boolean as its text.
fn required_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parse_scalar(toml::Value::deserialize(d)?)
}

/// librdkafka properties: every value a string, whether written as one or not.
fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    BTreeMap::<String, toml::Value>::deserialize(d)?
        .into_iter()
        .map(|(k, v)| {
            let text = scalar_text::<D::Error>(v, "a string")
                .map_err(|e| D::Error::custom(format!("{k}: {e}")))?;
            Ok((k, text))
        })
        .collect()
}
