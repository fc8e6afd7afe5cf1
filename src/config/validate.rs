//! Raw config -> validated config. Pure: no sockets, no clocks; files are read only for
//! `*_file` secrets, through an injectable reader so tests stay pure.
//!
//! Every error names the field it is about (`route[1].max_age`), so a wrong config fails at
//! start-up with a message that says where to look, before anything connects.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use super::patterns::TopicPattern;
use super::raw::{RawClickHouse, RawConfig, RawKafka, RawRoute, RawSchemaRegistry, RawSize};
use crate::decode::time_format::TimeFormat;
use crate::kafka::java_stores::{self, Identity, StoreFormat};
use crate::kafka::topic_name;
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    /// The routes that name their topic; those of `patterns` join them once the topics are
    /// known ([`super::patterns::expand`]).
    pub routes: Vec<Route>,
    /// Routes by topic pattern, not yet expanded.
    pub patterns: Vec<TopicPattern>,
    pub service: ServiceConfig,
    /// Present when a `[schema_registry]` is configured (required by Avro and Protobuf routes).
    pub schema_registry: Option<SchemaRegistryConfig>,
}

/// A Confluent-compatible schema registry (Confluent, Karapace, Apicurio's `ccompat` API,
/// Redpanda): schemas by id from `GET {url}/schemas/ids/{id}`.
#[derive(Debug, Clone)]
pub struct SchemaRegistryConfig {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Bearer tokens from an OIDC issuer instead of basic credentials.
    pub bearer: Option<RegistryBearer>,
    pub ca_file: Option<PathBuf>,
    /// The certificates of `truststore_location`, instead of `ca_file`.
    pub trusted: Option<Trusted>,
    pub request_timeout: Duration,
}

/// The schema registry's bearer authentication: a token from `oidc` (client credentials) in
/// each request's `Authorization`, and Confluent Cloud's two routing headers if given.
#[derive(Debug, Clone)]
pub struct RegistryBearer {
    pub oidc: OidcClient,
    pub logical_cluster: Option<String>,
    pub identity_pool_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub client_id: String,
    pub instance_id: Option<String>,
    pub auto_offset_reset: String,
    pub session_timeout: Duration,
    pub security_protocol: SecurityProtocol,
    pub sasl: Option<SaslConfig>,
    pub tls: TlsFiles,
    pub ssl_key_password: Option<Secret>,
    pub ssl_keystore_password: Option<Secret>,
    pub ssl_endpoint_identification: bool,
    /// What a JKS keystore and a truststore hold, read when the config is validated.
    pub stores: JavaStores,
    pub properties: BTreeMap<String, String>,
    pub fetch: FetchPath,
}

/// A truststore's path and the certificates (DER) it trusts.
pub type Trusted = (PathBuf, Vec<Vec<u8>>);

/// The contents of Java stores the clients do not open themselves, read at validation: a
/// keystore's client identity and a truststore's certificates (JKS or PKCS#12), which
/// replace the PEM files. For Kafka only a JKS keystore is read here (librdkafka and OpenSSL
/// open a PKCS#12 one from `tls.keystore`); the HTTPS clients take every keystore this way.
#[derive(Debug, Clone, Default)]
pub struct JavaStores {
    /// The client certificate chain and key of a keystore.
    pub identity: Option<Identity>,
    /// The truststore and the certificates it trusts (DER).
    pub trusted: Option<Trusted>,
}

/// Who fetches the records of the assigned partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FetchPath {
    /// librdkafka's fetcher, for everything.
    #[default]
    Librdkafka,
    /// sluice's own Fetch requests once librdkafka has started each partition, falling back
    /// to librdkafka for whatever they do not read (`kafka/own_fetch.rs`).
    Sluice,
}

impl KafkaConfig {
    /// Plain, unauthenticated access to `brokers`: what the CLI tools use without a config.
    pub fn plaintext(brokers: &str) -> Self {
        KafkaConfig {
            brokers: brokers.to_string(),
            group_id: "sluice".to_string(),
            client_id: "sluice".to_string(),
            instance_id: None,
            auto_offset_reset: "earliest".to_string(),
            session_timeout: Duration::from_secs(45),
            security_protocol: SecurityProtocol::Plaintext,
            sasl: None,
            tls: TlsFiles::default(),
            ssl_key_password: None,
            ssl_keystore_password: None,
            stores: JavaStores::default(),
            ssl_endpoint_identification: true,
            properties: BTreeMap::new(),
            fetch: FetchPath::Librdkafka,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SaslConfig {
    /// PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI.
    pub mechanism: String,
    pub credentials: SaslCredentials,
}

/// Who sluice is to the broker.
#[derive(Debug, Clone)]
pub enum SaslCredentials {
    /// PLAIN and SCRAM: a user and its password.
    Password { username: String, password: Secret },
    /// OAUTHBEARER: tokens from an OIDC issuer, fetched with client credentials.
    Oidc(OidcClient),
    /// GSSAPI: a Kerberos principal, by a keytab or an existing ticket cache.
    Kerberos(Kerberos),
}

/// A Kerberos identity for SASL/GSSAPI (librdkafka through Cyrus SASL and the system's
/// Kerberos library, which reads `/etc/krb5.conf` or `KRB5_CONFIG` for the realm's KDC).
#[derive(Debug, Clone)]
pub struct Kerberos {
    /// Who sluice is (`sluice@EXAMPLE.COM`); `None` only without a keytab (the ticket
    /// cache's own principal).
    pub principal: Option<String>,
    /// With a keytab, librdkafka runs `kinit` with it before it connects and again every
    /// `sasl.kerberos.min.time.before.relogin` (1 minute); without one, the ticket cache is
    /// used as it is and librdkafka runs no `kinit`.
    pub keytab: Option<std::path::PathBuf>,
    /// The brokers' service name: their principals are `<service_name>/<host>@REALM`.
    pub service_name: String,
}

/// An OIDC client (the client-credentials grant, RFC 6749 4.4): librdkafka fetches a token from
/// the issuer before it connects and again before the token expires, and authenticates again
/// on its open connections with each new one (KIP-368).
#[derive(Debug, Clone)]
pub struct OidcClient {
    pub token_endpoint_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: Option<String>,
    pub extensions: Option<String>,
}

impl SaslConfig {
    /// The secret that authenticates: the password or the client secret; none for GSSAPI,
    /// whose keys stay in the keytab file or the ticket cache.
    pub fn secret(&self) -> Option<&Secret> {
        match &self.credentials {
            SaslCredentials::Password { password, .. } => Some(password),
            SaslCredentials::Oidc(o) => Some(&o.client_secret),
            SaslCredentials::Kerberos(_) => None,
        }
    }

    /// `text` with the secret (if any) replaced, for messages that may quote it.
    pub fn scrub(&self, text: &str) -> String {
        match self.secret() {
            Some(s) => s.scrub(text),
            None => text.to_string(),
        }
    }

    /// Who authenticates, for messages: `user "u"`, `OIDC client "c"` or `Kerberos principal
    /// "p"`.
    pub fn principal(&self) -> String {
        match &self.credentials {
            SaslCredentials::Password { username, .. } => format!("user {username:?}"),
            SaslCredentials::Oidc(o) => format!("OIDC client {:?}", o.client_id),
            SaslCredentials::Kerberos(k) => match &k.principal {
                Some(p) => format!("Kerberos principal {p:?}"),
                None => "the Kerberos ticket cache's principal".to_string(),
            },
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// PKCS#12: certificate and key in one file (instead of `cert` and `key`).
    pub keystore: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Auto,
    None,
    Lz4,
    Gzip,
}

#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub tls: TlsFiles,
    pub compression: Compression,
    /// See `clickhouse::stream`; used only where the server and the wire allow it.
    pub stream_inserts: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The Java key and trust stores given instead of the PEM files.
    pub stores: JavaStores,
    /// Settings sent with every INSERT, in name order; none of them one sluice sets itself.
    pub insert_settings: Vec<(String, String)>,
    /// Shard-aware writes: every shard's URL, `url` first (empty: one server). Each
    /// partition's rows go to one of them (`clickhouse::shards::shard_of`).
    pub shards: Vec<String>,
}

/// INSERT settings `clickhouse.insert_settings` may not give, by name or prefix: those sluice
/// sets itself and its guarantees depend on (acknowledged means stored, deduplication,
/// nothing skipped or dropped, the rows read as sent), and the block sizes streamed inserts
/// are made safe for.
pub const PROTECTED_INSERT_SETTINGS: &[&str] = &[
    "async_insert",
    "wait_for_async_insert",
    "insert_deduplicate",
    "insert_deduplication_token",
    "deduplicate_blocks_in_dependent_materialized_views",
    "materialized_views_ignore_errors",
    "send_progress_in_http_headers",
    "max_insert_block_size",
    "min_insert_block_size_rows",
    "min_insert_block_size_bytes",
    "decompress",
    "compress",
    "query",
    "database",
    "user",
    "password",
    "readonly",
    "session_id",
    "query_id",
];
/// Prefixes of settings refused for the same reasons (every `input_format_*` changes how
/// the rows sluice sends are read).
const PROTECTED_INSERT_PREFIXES: &[&str] = &["input_format_", "async_insert_", "format_"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON object per message, its fields mapped to columns by name.
    Json,
    /// The message value stored as it is, unparsed, in the value column
    /// ([`MetadataColumns::value`]).
    Raw,
    /// One line of comma-separated values (RFC 4180 quoting), fields by position.
    Csv,
    /// One line of tab-separated values (ClickHouse's TabSeparated escapes), fields by position.
    Tsv,
    /// An Avro record in the schema registry's wire format (magic byte 0, a 4-byte schema
    /// id, the binary datum), its fields mapped to columns by name.
    Avro,
    /// A Protobuf message in the schema registry's wire format (magic byte 0, a 4-byte
    /// schema id, the message indexes, the encoded message), its fields mapped by name.
    Protobuf,
    /// A JSON object in the schema registry's wire format (magic byte 0, a 4-byte schema id,
    /// the JSON document), as Confluent's JSON Schema serializer writes it: the id must name
    /// a JSON Schema, and the document is then read as [`Format::Json`] reads a message.
    JsonSchema,
}

impl Format {
    /// Avro, Protobuf or JSON Schema: the schema of each message comes from the schema
    /// registry.
    pub fn uses_registry(self) -> bool {
        matches!(self, Format::Avro | Format::Protobuf | Format::JsonSchema)
    }
}

impl Format {
    /// The name a config gives it (`format = "..."`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Raw => "raw",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Avro => "avro",
            Format::Protobuf => "protobuf",
            Format::JsonSchema => "json-schema",
        }
    }

    /// CSV or TSV: fields by position, not by name.
    pub fn is_delimited(self) -> bool {
        matches!(self, Format::Csv | Format::Tsv)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    ExactlyOnce,
    AtLeastOnce,
    AtMostOnce,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::ExactlyOnce => "exactly-once",
            Delivery::AtLeastOnce => "at-least-once",
            Delivery::AtMostOnce => "at-most-once",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownFields {
    Ignore,
    Error,
    /// A field without a column gets one (`ALTER TABLE ... ADD COLUMN`), json routes.
    Add,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadMessages {
    DeadLetter {
        topic: String,
    },
    /// Rows of a ClickHouse table (`dead_letter_table.rs`).
    DeadLetterTable {
        database: String,
        table: String,
    },
    Drop,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataColumns {
    pub topic: Option<String>,
    pub partition: Option<String>,
    pub offset: Option<String>,
    pub timestamp: Option<String>,
    pub key: Option<String>,
    pub headers: Option<String>,
    /// The message value, unparsed (bytes as they are).
    pub value: Option<String>,
    /// A change event's operation and delete flag (`envelope = "debezium"` only).
    pub op: Option<String>,
    pub deleted: Option<String>,
    /// A change event's `ts_ms`, `source.ts_ms`, `source.db` and `source.table`
    /// (`envelope = "debezium"` only).
    pub ts_ms: Option<String>,
    pub source_ts_ms: Option<String>,
    pub db: Option<String>,
    pub table: Option<String>,
}

/// How a message carries its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Envelope {
    /// The message is the row.
    #[default]
    None,
    /// A Debezium change event: the row is its `after` (or for a delete its `before`),
    /// `decode::json::debezium_row`.
    Debezium,
    /// A Maxwell change event (JSON): the row is its `data`, `decode::json::maxwell_row`.
    Maxwell,
    /// A Canal flat message (JSON): one row per element of its `data`,
    /// `decode::json::canal_rows`.
    Canal,
}

impl Envelope {
    /// Whether messages are change events, which give the operation and source metadata.
    pub fn is_change_event(self) -> bool {
        self != Envelope::None
    }

    /// The envelope's name as configured.
    pub fn name(self) -> &'static str {
        match self {
            Envelope::None => "none",
            Envelope::Debezium => "debezium",
            Envelope::Maxwell => "maxwell",
            Envelope::Canal => "canal",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub topic: String,
    pub database: String,
    pub table: String,
    pub format: Format,
    pub delivery: Delivery,
    pub batch: BatchLimits,
    pub unknown_fields: UnknownFields,
    /// json-schema routes: each document is checked against its schema before its row is
    /// built, and one that fails is dead-lettered with the first violation.
    pub validate: bool,
    pub bad_messages: BadMessages,
    /// None: retry forever.
    pub max_insert_retries: Option<u32>,
    pub metadata: MetadataColumns,
    /// CSV/TSV: the columns the fields of a line fill, in order (default: the table's
    /// columns that are not metadata, in the table's order).
    pub columns: Option<Vec<String>>,
    /// Column -> the form its dates and date-times take in the messages
    /// (`decode::time_format`); checked against the table when it is planned.
    pub date_time_formats: BTreeMap<String, TimeFormat>,
    /// A message without a value (a tombstone) is skipped and counted, instead of going the
    /// way of a bad message (`tombstones = "skip"`).
    pub skip_tombstones: bool,
    /// How a message carries its row (`envelope`).
    pub envelope: Envelope,
}

impl Route {
    /// `route TOPIC -> DB.TABLE`, the context every route-level error starts with.
    pub fn label(&self) -> String {
        format!("route {} -> {}.{}", self.topic, self.database, self.table)
    }
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub shutdown_timeout: Duration,
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub log_json: bool,
    /// Bytes all lanes' open batches hold together at most (see budget.rs).
    pub batch_memory: usize,
    /// How often a running pipeline reads its tables' columns again and, when they differ
    /// from its plan (a column added, or changed where inserts carry no types), plans again;
    /// `None`: only when an insert is refused (see `pipeline.rs`).
    pub table_refresh: Option<Duration>,
}

/// `max_bytes` is what bounds memory; the row cap only matters for rows of a few bytes. Fewer,
/// larger parts spare ClickHouse merge work (bench/e2e: 16 -> 8 parts per 1M narrow rows).
pub const DEFAULT_MAX_ROWS: usize = 1_000_000;
/// 128 MiB lets a packed batch hold a whole partition of a 1M wide-message backlog on 8
/// partitions (about 122 MiB of rows) as one insert into a server that cannot take streamed
/// inserts; streamed batches are cut by it too.
pub const DEFAULT_MAX_BYTES: usize = 128 * 1024 * 1024;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(1);
/// Sized so that a default sluice stays under 300 MB RSS with any backlog (bench/e2e). With
/// batches held compressed 128 MiB peaked at 280-323 MiB on 1M wide messages, 96 MiB at 249-262
/// MiB and faster (140-144k against 129-131k rows/s, e2e-2026-11-24T215007Z vs T214833Z): the
/// packed batches still reach 64 MiB. With glibc's mmap threshold fixed (main.rs) 96 MiB peaks
/// at 186-216 MiB; 128 MiB (with `max_bytes` 128 MiB) at 234-272 MiB, faster on wide rows but
/// too close to the target (e2e-2026-11-24-larger-batches.md). With packed batches in buffers
/// mapped on their own (batch.rs) 96 MiB peaks at 154-188 MiB, 128 MiB with `max_bytes` 128
/// MiB still at 225-267 MiB (bench/e2e-style runs on one topic, 12 runs). With librdkafka
/// fetching up to 4 MiB a partition (kafka/client.rs), a backlog drains a few partitions at a
/// time and 128 MiB (with `max_bytes` 128 MiB) peaks lower than 96 MiB did before: 144-148
/// MiB wide into 18.16 (was 172-183), 103-109 into 26.9, 169-184 on 32 partitions, 168-182
/// narrow (bench/e2e, 2026-11-25, 2 runs each).
pub const DEFAULT_BATCH_MEMORY: usize = 128 * 1024 * 1024;

/// librdkafka properties sluice sets itself and that the passthrough may not change: the
/// delivery guarantee depends on them (manual commits only after ClickHouse acknowledged).
pub const PROTECTED_KAFKA_PROPERTIES: &[&str] = &[
    "group.id",
    "group.instance.id",
    "bootstrap.servers",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "isolation.level",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.credentials.client.id",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.extensions",
    "sasl.kerberos.principal",
    "sasl.kerberos.keytab",
    "sasl.kerberos.service.name",
    "ssl.key.password",
    // The TLS files and checks have dedicated settings; a passthrough copy would silently win.
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.certificate.location",
    "ssl.certificate.pem",
    "ssl.key.location",
    "ssl.key.pem",
    "ssl.keystore.location",
    "ssl.endpoint.identification.algorithm",
];

/// Reads the Java stores the config names, so that a wrong password or an unreadable file
/// stops the start before anything connects: a JKS keystore is opened here (a PKCS#12 one
/// only recognised: librdkafka and OpenSSL open it, and report its errors), and a truststore
/// of either format is read for its certificates. `ssl_key_password` is a JKS key's own
/// password (as Java's `ssl.key.password`); with a PKCS#12 keystore it has no use.
fn open_java_stores(
    k: &RawKafka,
    tls: &TlsFiles,
    truststore: Option<PathBuf>,
) -> Result<JavaStores, ConfigError> {
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| err(field, format!("cannot read {}: {e}", path.display())))
    };
    let mut stores = JavaStores::default();
    if let Some(path) = &tls.keystore {
        let field = "kafka.ssl_keystore_location";
        let at = |e: String| err(field, format!("{}: {e}", path.display()));
        let bytes = read(field, path)?;
        match java_stores::format_of(&bytes).map_err(at)? {
            StoreFormat::Pkcs12 if k.ssl_key_password.is_some() => {
                return Err(err(
                    "kafka.ssl_key_password",
                    "a PKCS#12 keystore's key is opened with ssl_keystore_password; ssl_key_password is for a PEM key or a JKS keystore's key",
                ))
            }
            StoreFormat::Pkcs12 => {}
            StoreFormat::Jks => {
                let Some(password) = k.ssl_keystore_password.clone().map(Secret::new) else {
                    return Err(err(
                        "kafka.ssl_keystore_password",
                        "a JKS keystore is opened with its password: set it",
                    ));
                };
                let key_password = k.ssl_key_password.clone().map(Secret::new);
                stores.identity = Some(
                    java_stores::jks_identity(&bytes, &password, key_password.as_ref())
                        .map_err(at)?,
                );
            }
        }
    }
    if let Some(path) = truststore {
        let password = k.ssl_truststore_password.clone().map(Secret::new);
        let certs = java_stores::read_truststore(&path, password.as_ref()).map_err(|e| {
            err(
                "kafka.ssl_truststore_location",
                format!("{}: {e}", path.display()),
            )
        })?;
        stores.trusted = Some((path, certs));
    }
    Ok(stores)
}

/// Why the own fetch path (`kafka/own_fetch.rs`, secured by `kafka/secure.rs`) cannot connect
/// exactly as librdkafka would with these settings, or `None` when it can: on PLAINTEXT,
/// SASL_PLAINTEXT, SSL and SASL_SSL with PEM files or a PKCS#12 keystore (a CA file or
/// directory, or the system's CA store) and every SASL mechanism sluice takes. What it does
/// not reproduce (passthrough properties that only librdkafka applies) stays with librdkafka.
pub(super) fn own_fetch_refusal(properties: &BTreeMap<String, String>) -> Option<String> {
    properties
        .keys()
        .find(|key| {
            // `https.*`: how librdkafka's OIDC client checks the token endpoint.
            key.starts_with("ssl.")
                || key.starts_with("sasl.")
                || key.starts_with("https.")
                || key.starts_with("enable.ssl.")
                || key.as_str() == "ssl_engine_location"
        })
        .map(|key| format!("kafka.properties sets {key:?}, which only librdkafka applies"))
}

/// Why a protected property is refused: the dedicated setting it would silently override, or
/// the guarantee that depends on it.
fn protected_property_reason(key: &str) -> String {
    let dedicated = match key {
        "group.id" => "kafka.group_id",
        "group.instance.id" => "kafka.instance_id",
        "bootstrap.servers" => "kafka.brokers",
        "security.protocol" => "kafka.security_protocol",
        "sasl.mechanism" | "sasl.mechanisms" => "kafka.sasl_mechanism",
        "sasl.username" => "kafka.sasl_username",
        "sasl.password" => "kafka.sasl_password (or sasl_password_file, or the environment variable SLUICE__KAFKA__SASL_PASSWORD)",
        "sasl.oauthbearer.method" => "kafka.sasl_mechanism = \"OAUTHBEARER\" (with kafka.sasl_oauthbearer_token_endpoint_url: the OIDC method)",
        "sasl.oauthbearer.client.id" | "sasl.oauthbearer.client.credentials.client.id" => "kafka.sasl_oauthbearer_client_id",
        "sasl.oauthbearer.token.endpoint.url" => "kafka.sasl_oauthbearer_token_endpoint_url",
        "sasl.oauthbearer.scope" => "kafka.sasl_oauthbearer_scope",
        "sasl.oauthbearer.extensions" => "kafka.sasl_oauthbearer_extensions",
        "sasl.kerberos.principal" => "kafka.sasl_kerberos_principal",
        "sasl.kerberos.keytab" => "kafka.sasl_kerberos_keytab",
        "sasl.kerberos.service.name" => "kafka.sasl_kerberos_service_name",
        "ssl.key.password" => "kafka.ssl_key_password (or SLUICE__KAFKA__SSL_KEY_PASSWORD)",
        "ssl.ca.location" | "ssl.ca.pem" => "kafka.ssl_ca_location",
        "ssl.certificate.location" | "ssl.certificate.pem" => "kafka.ssl_certificate_location",
        "ssl.key.location" | "ssl.key.pem" => "kafka.ssl_key_location",
        "ssl.keystore.location" => "kafka.ssl_keystore_location",
        "ssl.endpoint.identification.algorithm" => "kafka.ssl_endpoint_identification",
        _ => {
            return "sluice sets this property itself: its delivery guarantee depends on it (offsets are committed manually, only for rows ClickHouse acknowledged)".to_string()
        }
    };
    format!("sluice sets this property from {dedicated}; here it would silently override that setting: use {dedicated} instead")
}

/// Reads a `*_file` secret. Injected so validation stays testable without files.
pub type FileReader<'a> = &'a dyn Fn(&str) -> std::io::Result<String>;

pub fn validate(raw: RawConfig, read_file: FileReader<'_>) -> Result<Config, ConfigError> {
    let kafka = validate_kafka(&raw.kafka, read_file)?;
    let clickhouse = validate_clickhouse(&raw.clickhouse, read_file)?;
    if raw.routes.is_empty() {
        return Err(err(
            "route",
            "at least one [[route]] (topic -> table) is required",
        ));
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut patterns = Vec::new();
    let mut registry_users = Vec::new();
    let mut topics = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        if r.topic_pattern.is_some() {
            if r.topic.is_some() {
                return Err(err(
                    format!("route[{i}].topic_pattern"),
                    "set together with topic: a route reads one topic or the topics of a pattern, not both",
                ));
            }
            let pattern = TopicPattern::new(i, r, &clickhouse.database)?;
            if pattern.sample().format.uses_registry() {
                registry_users.push(i);
            }
            patterns.push(pattern);
            continue;
        }
        let route = validate_route(i, r, &clickhouse.database)?;
        if route.format.uses_registry() {
            registry_users.push(i);
        }
        if !topics.insert(route.topic.clone()) {
            // One consumer group reads a topic once; two tables from one topic would need two
            // independent offset positions, which a single group cannot hold.
            return Err(err(
                format!("route[{i}].topic"),
                format!(
                    "topic {:?} already has a route; run a second sluice with another group_id to fill a second table from it",
                    route.topic
                ),
            ));
        }
        routes.push(route);
    }
    let service = validate_service(&raw)?;
    let schema_registry = match &raw.schema_registry {
        Some(r) => Some(validate_schema_registry(r, read_file)?),
        None => None,
    };
    if schema_registry.is_none() {
        if let Some(i) = registry_users.first() {
            return Err(err(
                format!("route[{i}].format"),
                "an avro, protobuf or json-schema route reads its schemas from a registry: add [schema_registry] url = \"http://...\"",
            ));
        }
    }
    Ok(Config {
        kafka,
        clickhouse,
        routes,
        patterns,
        service,
        schema_registry,
    })
}

fn validate_schema_registry(
    r: &RawSchemaRegistry,
    read_file: FileReader<'_>,
) -> Result<SchemaRegistryConfig, ConfigError> {
    let url = http_url(
        "schema_registry.url",
        &r.url,
        "schema_registry.username and schema_registry.password",
    )?;
    let ca_file = path(&r.ca_file);
    if ca_file.is_some() && url.starts_with("http://") {
        return Err(err(
            "schema_registry.url",
            "a CA file is given but the URL is http://; use https://",
        ));
    }
    let trusted = https_truststore(
        "schema_registry",
        &url,
        ca_file.is_some(),
        &r.truststore_location,
        &r.truststore_password,
    )?;
    let password = secret(
        "schema_registry.password",
        &r.password,
        &r.password_file,
        read_file,
    )?;
    let username = r.username.as_ref().map(|u| u.trim().to_string());
    if password.is_some() && username.as_deref().is_none_or(str::is_empty) {
        return Err(err(
            "schema_registry.username",
            "required when schema_registry.password is set",
        ));
    }
    let bearer = registry_bearer(r, read_file)?;
    if bearer.is_some() && (username.is_some() || password.is_some()) {
        return Err(err(
            "schema_registry.username",
            "basic credentials (username, password) and bearer_auth_* settings exclude each other: the registry gets one Authorization header",
        ));
    }
    Ok(SchemaRegistryConfig {
        url: url.trim_end_matches('/').to_string(),
        username,
        password,
        bearer,
        ca_file,
        trusted,
        request_timeout: match &r.request_timeout {
            Some(s) => parse_duration("schema_registry.request_timeout", s)?,
            None => Duration::from_secs(10),
        },
    })
}

/// The registry's bearer authentication, if any `bearer_auth_*` setting is given: then the
/// token endpoint, the client id and its secret are required.
fn registry_bearer(
    r: &RawSchemaRegistry,
    read_file: FileReader<'_>,
) -> Result<Option<RegistryBearer>, ConfigError> {
    let secret = secret(
        "schema_registry.bearer_auth_client_secret",
        &r.bearer_auth_client_secret,
        &r.bearer_auth_client_secret_file,
        read_file,
    )?;
    let given = r.bearer_auth_issuer_endpoint_url.is_some()
        || r.bearer_auth_client_id.is_some()
        || secret.is_some()
        || r.bearer_auth_scope.is_some()
        || r.bearer_auth_logical_cluster.is_some()
        || r.bearer_auth_identity_pool_id.is_some();
    if !given {
        return Ok(None);
    }
    let oidc = client_credentials(
        OidcFields {
            prefix: "schema_registry.bearer_auth_",
            url_name: "issuer_endpoint_url",
            url: &r.bearer_auth_issuer_endpoint_url,
            client_id: &r.bearer_auth_client_id,
            scope: &r.bearer_auth_scope,
            required_with:
                "required with bearer authentication (any schema_registry.bearer_auth_* setting)",
        },
        secret,
    )?;
    // HTTP header values: a control character would make every request fail at run time.
    let optional = |field: &str, v: &Option<String>| -> Result<Option<String>, ConfigError> {
        let field = format!("schema_registry.{field}");
        let Some(v) = v.as_deref() else {
            return Ok(None);
        };
        let v = non_empty(&field, v)?;
        if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(err(field, "goes into an HTTP header: printable ASCII only"));
        }
        Ok(Some(v))
    };
    Ok(Some(RegistryBearer {
        oidc,
        logical_cluster: optional(
            "bearer_auth_logical_cluster",
            &r.bearer_auth_logical_cluster,
        )?,
        identity_pool_id: optional(
            "bearer_auth_identity_pool_id",
            &r.bearer_auth_identity_pool_id,
        )?,
    }))
}

fn topic_name(field: &str, v: &str) -> Result<String, ConfigError> {
    let t = non_empty(field, v)?;
    topic_name::check(&t).map_err(|e| err(field, e))?;
    Ok(t)
}

fn non_empty(field: &str, v: &str) -> Result<String, ConfigError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(err(field, "must not be empty"));
    }
    Ok(t.to_string())
}

/// The longest duration any setting takes. Deadlines are instants plus a duration (a batch's
/// age limit is up to 8 times `max_age`), and a duration of billions of years overflows
/// them; nothing sluice waits for is sensibly longer than a week.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

pub fn parse_duration(field: &str, v: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(v.trim()).map_err(|e| {
        err(
            field,
            format!("invalid duration {v:?} ({e}); write e.g. \"500ms\", \"1s\", \"2m\""),
        )
    })?;
    if d > MAX_DURATION {
        return Err(err(
            field,
            format!("{v:?} is longer than the 7 days any setting allows"),
        ));
    }
    Ok(d)
}

/// librdkafka's range for `session.timeout.ms`; the broker narrows it further
/// (`group.min.session.timeout.ms`, 6 s, and `group.max.session.timeout.ms`, 30 min, by default).
const SESSION_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(3600);

/// `host[:port]` entries, comma-separated, each optionally `PROTOCOL://`-prefixed, as
/// librdkafka reads `bootstrap.servers`; a port must be 1-65535 (librdkafka would wrap
/// 99999 into another port and report that one).
pub fn check_brokers(brokers: &str) -> Result<(), ConfigError> {
    for entry in brokers.split(',').map(str::trim) {
        let addr = entry.split_once("://").map_or(entry, |(_, a)| a);
        let port = match addr.rsplit_once(':') {
            // An IPv6 literal without a port: "[::1]".
            Some((host, _)) if addr.ends_with(']') && host.starts_with('[') => None,
            Some((host, port)) if !host.is_empty() => Some(port),
            Some(_) => return Err(err("kafka.brokers", format!("{entry:?} has no host"))),
            None => None,
        };
        if addr.is_empty() {
            return Err(err("kafka.brokers", "an entry of the list is empty"));
        }
        if let Some(p) = port {
            if !p.parse::<u16>().is_ok_and(|p| p > 0) {
                return Err(err(
                    "kafka.brokers",
                    format!("{entry:?}: the port must be a number from 1 to 65535"),
                ));
            }
        }
    }
    Ok(())
}

/// librdkafka takes its settings as C strings: a NUL byte would end one early (rust-rdkafka
/// refuses it with "FFI nul error", naming no setting). Secrets are not quoted.
fn no_nul(field: &str, v: &str) -> Result<(), ConfigError> {
    if v.contains('\0') {
        return Err(err(field, "contains a NUL byte"));
    }
    Ok(())
}

fn kafka_strings_have_no_nul(k: &RawKafka) -> Result<(), ConfigError> {
    let fields = [
        ("kafka.brokers", Some(&k.brokers)),
        ("kafka.group_id", k.group_id.as_ref()),
        ("kafka.client_id", k.client_id.as_ref()),
        ("kafka.instance_id", k.instance_id.as_ref()),
        ("kafka.sasl_username", k.sasl_username.as_ref()),
        ("kafka.sasl_password", k.sasl_password.as_ref()),
        ("kafka.ssl_key_password", k.ssl_key_password.as_ref()),
        ("kafka.ssl_ca_location", k.ssl_ca_location.as_ref()),
        (
            "kafka.ssl_certificate_location",
            k.ssl_certificate_location.as_ref(),
        ),
        ("kafka.ssl_key_location", k.ssl_key_location.as_ref()),
        (
            "kafka.ssl_keystore_location",
            k.ssl_keystore_location.as_ref(),
        ),
        (
            "kafka.ssl_keystore_password",
            k.ssl_keystore_password.as_ref(),
        ),
        (
            "kafka.ssl_truststore_location",
            k.ssl_truststore_location.as_ref(),
        ),
        (
            "kafka.ssl_truststore_password",
            k.ssl_truststore_password.as_ref(),
        ),
        ("kafka.sasl_password_file", k.sasl_password_file.as_ref()),
        (
            "kafka.sasl_oauthbearer_token_endpoint_url",
            k.sasl_oauthbearer_token_endpoint_url.as_ref(),
        ),
        (
            "kafka.sasl_oauthbearer_client_id",
            k.sasl_oauthbearer_client_id.as_ref(),
        ),
        (
            "kafka.sasl_oauthbearer_client_secret",
            k.sasl_oauthbearer_client_secret.as_ref(),
        ),
        (
            "kafka.sasl_oauthbearer_client_secret_file",
            k.sasl_oauthbearer_client_secret_file.as_ref(),
        ),
        (
            "kafka.sasl_oauthbearer_scope",
            k.sasl_oauthbearer_scope.as_ref(),
        ),
        (
            "kafka.sasl_oauthbearer_extensions",
            k.sasl_oauthbearer_extensions.as_ref(),
        ),
        (
            "kafka.sasl_kerberos_principal",
            k.sasl_kerberos_principal.as_ref(),
        ),
        (
            "kafka.sasl_kerberos_keytab",
            k.sasl_kerberos_keytab.as_ref(),
        ),
        (
            "kafka.sasl_kerberos_service_name",
            k.sasl_kerberos_service_name.as_ref(),
        ),
    ];
    for (field, v) in fields {
        if let Some(v) = v {
            no_nul(field, v)?;
        }
    }
    for (key, value) in &k.properties {
        no_nul(&format!("kafka.properties.{}", key.escape_debug()), key)?;
        no_nul(&format!("kafka.properties.{}", key.escape_debug()), value)?;
    }
    Ok(())
}

pub fn parse_size(field: &str, v: &RawSize) -> Result<usize, ConfigError> {
    let bytes = match v {
        RawSize::Bytes(b) => *b,
        RawSize::Text(t) => {
            let t = t.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: u64 = num.parse().map_err(|_| {
                err(
                    field,
                    format!("invalid size {t:?}; write e.g. 1048576, \"512KiB\", \"16MiB\""),
                )
            })?;
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "KB" => 1000,
                "KiB" => 1024,
                "MB" => 1000 * 1000,
                "MiB" => 1024 * 1024,
                "GB" => 1000 * 1000 * 1000,
                "GiB" => 1024 * 1024 * 1024,
                other => {
                    return Err(err(
                        field,
                        format!("unknown size unit {other:?}; use B, KB, KiB, MB, MiB, GB or GiB"),
                    ))
                }
            };
            n.checked_mul(mult)
                .ok_or_else(|| err(field, format!("size {t:?} is too large")))?
        }
    };
    usize::try_from(bytes).map_err(|_| err(field, "size is too large"))
}

fn secret(
    field: &str,
    inline: &Option<String>,
    file: &Option<String>,
    read_file: FileReader<'_>,
) -> Result<Option<Secret>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(err(
            field,
            format!("set either {field} or {field}_file, not both"),
        )),
        (Some(v), None) => Ok(Some(Secret::new(v.clone()))),
        (None, Some(path)) => {
            let text = read_file(path).map_err(|e| {
                err(
                    format!("{field}_file"),
                    format!("cannot read {path:?}: {e}"),
                )
            })?;
            // A trailing newline comes from `echo pw > file`; it is never part of a password.
            Ok(Some(Secret::new(text.trim_end_matches(['\n', '\r']))))
        }
        (None, None) => Ok(None),
    }
}

/// PLAIN and SCRAM: a user name and a password, both required.
fn password_sasl(
    k: &RawKafka,
    mechanism: String,
    password: Option<Secret>,
) -> Result<SaslConfig, ConfigError> {
    let username = k.sasl_username.as_deref().ok_or_else(|| {
        err(
            "kafka.sasl_username",
            "required when security_protocol uses SASL",
        )
    })?;
    let password = password.ok_or_else(|| {
        err(
            "kafka.sasl_password",
            "required when security_protocol uses SASL (or sasl_password_file)",
        )
    })?;
    Ok(SaslConfig {
        mechanism,
        credentials: SaslCredentials::Password {
            username: non_empty("kafka.sasl_username", username)?,
            password,
        },
    })
}

/// GSSAPI: a keytab must be a readable file and comes with its principal; without one the
/// ticket cache is used, its principal by default. Checked here, not when librdkafka's
/// `kinit` first fails after sluice has started.
fn kerberos(k: &RawKafka) -> Result<Kerberos, ConfigError> {
    let principal = match &k.sasl_kerberos_principal {
        Some(p) => {
            let p = non_empty("kafka.sasl_kerberos_principal", p)?;
            // librdkafka pastes it into a shell command line (its kinit command).
            if !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "@/._-".contains(c))
            {
                return Err(err(
                    "kafka.sasl_kerberos_principal",
                    format!("{p:?}: a principal is name[/instance]@REALM, of letters, digits and . _ - only"),
                ));
            }
            Some(p)
        }
        None => None,
    };
    let keytab = match &k.sasl_kerberos_keytab {
        Some(path) => {
            let path = non_empty("kafka.sasl_kerberos_keytab", path)?;
            // librdkafka pastes it into its kinit command line, in double quotes.
            if path.contains(['"', '$', '`', '\\']) {
                return Err(err(
                    "kafka.sasl_kerberos_keytab",
                    format!("{path:?}: a keytab path must not contain \" $ ` or \\ (it goes into librdkafka's kinit command line)"),
                ));
            }
            if let Err(e) = std::fs::File::open(&path) {
                return Err(err(
                    "kafka.sasl_kerberos_keytab",
                    format!("cannot read {path}: {e}"),
                ));
            }
            if principal.is_none() {
                return Err(err(
                    "kafka.sasl_kerberos_principal",
                    "required with kafka.sasl_kerberos_keytab: the principal whose keys the keytab holds",
                ));
            }
            Some(std::path::PathBuf::from(path))
        }
        None => None,
    };
    let service_name = match &k.sasl_kerberos_service_name {
        Some(s) => non_empty("kafka.sasl_kerberos_service_name", s)?,
        None => "kafka".to_string(),
    };
    Ok(Kerberos {
        principal,
        keytab,
        service_name,
    })
}

/// OAUTHBEARER: the issuer's token endpoint, the client id and its secret are required; the
/// extensions are checked as librdkafka reads them (it would refuse them only when it first
/// asks for a token, after sluice had started).
fn oidc_client(k: &RawKafka, client_secret: Option<Secret>) -> Result<OidcClient, ConfigError> {
    let extensions = match &k.sasl_oauthbearer_extensions {
        Some(e) => Some(sasl_extensions(e)?),
        None => None,
    };
    Ok(OidcClient {
        extensions,
        ..client_credentials(
            OidcFields {
                prefix: "kafka.sasl_oauthbearer_",
                url_name: "token_endpoint_url",
                url: &k.sasl_oauthbearer_token_endpoint_url,
                client_id: &k.sasl_oauthbearer_client_id,
                scope: &k.sasl_oauthbearer_scope,
                required_with: "required with sasl_mechanism = \"OAUTHBEARER\"",
            },
            client_secret,
        )?
    })
}

/// Where an OIDC client's settings stand: `<prefix><url_name>`, `<prefix>client_id`,
/// `<prefix>client_secret`, `<prefix>scope`.
struct OidcFields<'a> {
    prefix: &'a str,
    url_name: &'a str,
    url: &'a Option<String>,
    client_id: &'a Option<String>,
    scope: &'a Option<String>,
    /// Why a missing one is required.
    required_with: &'a str,
}

/// An OIDC client for the client-credentials grant, its token endpoint, id and secret
/// required (no extensions), wherever its settings stand.
fn client_credentials(
    f: OidcFields<'_>,
    client_secret: Option<Secret>,
) -> Result<OidcClient, ConfigError> {
    let field = |name: &str| format!("{}{name}", f.prefix);
    let required = |name: &str, v: &Option<String>| -> Result<String, ConfigError> {
        let v = v
            .as_deref()
            .ok_or_else(|| err(field(name), f.required_with))?;
        non_empty(&field(name), v)
    };
    let url = required(f.url_name, f.url)?;
    let token_endpoint_url = http_url(
        &field(f.url_name),
        &url,
        &format!("{} and {}", field("client_id"), field("client_secret")),
    )?;
    let client_id = required("client_id", f.client_id)?;
    let (section, setting) = field("client_secret")
        .split_once('.')
        .map(|(s, n)| (s.to_ascii_uppercase(), n.to_string()))
        .unwrap_or_default();
    let client_secret = client_secret.filter(|s| !s.is_empty()).ok_or_else(|| {
        err(
            field("client_secret"),
            format!(
                "{} (or {setting}_file, or the environment variable SLUICE__{section}__{})",
                f.required_with,
                setting.to_ascii_uppercase()
            ),
        )
    })?;
    let scope = match f.scope {
        Some(s) => Some(non_empty(&field("scope"), s)?),
        None => None,
    };
    Ok(OidcClient {
        token_endpoint_url,
        client_id,
        client_secret,
        scope,
        extensions: None,
    })
}

/// "key=value,key=value", as RFC 7628 3.1 allows them: keys of letters only, not "auth"
/// (the token's own key), values of printable ASCII without the separator.
fn sasl_extensions(text: &str) -> Result<String, ConfigError> {
    const FIELD: &str = "kafka.sasl_oauthbearer_extensions";
    let text = non_empty(FIELD, text)?;
    for pair in text.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| err(FIELD, format!("{pair:?} is not key=value")))?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(err(
                FIELD,
                format!("key {key:?}: an extension key is letters only"),
            ));
        }
        if key == "auth" {
            return Err(err(
                FIELD,
                "\"auth\" is the token's own key, not an extension",
            ));
        }
        if !value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) || b == b' ')
        {
            return Err(err(
                FIELD,
                format!("the value of {key:?} has a character outside printable ASCII"),
            ));
        }
    }
    Ok(text)
}

fn path(v: &Option<String>) -> Option<PathBuf> {
    v.as_ref()
        .filter(|s| !s.trim().is_empty())
        .map(PathBuf::from)
}

fn validate_kafka(k: &RawKafka, read_file: FileReader<'_>) -> Result<KafkaConfig, ConfigError> {
    kafka_strings_have_no_nul(k)?;
    let brokers = non_empty("kafka.brokers", &k.brokers)?;
    check_brokers(&brokers)?;
    let group_id = match &k.group_id {
        Some(g) => non_empty("kafka.group_id", g)?,
        None => "sluice".to_string(),
    };
    let auto_offset_reset = match k.auto_offset_reset.as_deref().unwrap_or("earliest") {
        v @ ("earliest" | "latest") => v.to_string(),
        other => {
            return Err(err(
                "kafka.auto_offset_reset",
                format!("{other:?} is not one of \"earliest\", \"latest\""),
            ))
        }
    };
    let session_timeout = match &k.session_timeout {
        Some(s) => parse_duration("kafka.session_timeout", s)?,
        None => Duration::from_secs(45),
    };
    if !SESSION_TIMEOUT_RANGE.contains(&session_timeout) {
        return Err(err(
            "kafka.session_timeout",
            "must be between 1ms and 1h (librdkafka's range; brokers allow 6s-30m by default)",
        ));
    }
    let security_protocol = match k
        .security_protocol
        .as_deref()
        .unwrap_or("PLAINTEXT")
        .to_ascii_uppercase()
        .as_str()
    {
        "PLAINTEXT" => SecurityProtocol::Plaintext,
        "SSL" => SecurityProtocol::Ssl,
        "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
        "SASL_SSL" => SecurityProtocol::SaslSsl,
        other => {
            return Err(err(
                "kafka.security_protocol",
                format!("{other:?} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
            ))
        }
    };
    let sasl_password = secret(
        "kafka.sasl_password",
        &k.sasl_password,
        &k.sasl_password_file,
        read_file,
    )?;
    let client_secret = secret(
        "kafka.sasl_oauthbearer_client_secret",
        &k.sasl_oauthbearer_client_secret,
        &k.sasl_oauthbearer_client_secret_file,
        read_file,
    )?;
    let oauth_given = k.sasl_oauthbearer_token_endpoint_url.is_some()
        || k.sasl_oauthbearer_client_id.is_some()
        || client_secret.is_some()
        || k.sasl_oauthbearer_scope.is_some()
        || k.sasl_oauthbearer_extensions.is_some();
    let kerberos_given = k.sasl_kerberos_principal.is_some()
        || k.sasl_kerberos_keytab.is_some()
        || k.sasl_kerberos_service_name.is_some();
    let sasl = if security_protocol.uses_sasl() {
        let mechanism = k
            .sasl_mechanism
            .as_deref()
            .unwrap_or("PLAIN")
            .to_ascii_uppercase();
        if !matches!(
            mechanism.as_str(),
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" | "OAUTHBEARER" | "GSSAPI"
        ) {
            return Err(err(
                "kafka.sasl_mechanism",
                format!(
                    "{mechanism:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, GSSAPI"
                ),
            ));
        }
        if kerberos_given && mechanism != "GSSAPI" {
            return Err(err(
                "kafka.sasl_mechanism",
                format!("sasl_kerberos_* settings are given, but sasl_mechanism is {mechanism:?}, not \"GSSAPI\""),
            ));
        }
        if mechanism == "GSSAPI" {
            if k.sasl_username.is_some() || sasl_password.is_some() || oauth_given {
                return Err(err(
                    "kafka.sasl_username",
                    "GSSAPI authenticates as a Kerberos principal (kafka.sasl_kerberos_principal and kafka.sasl_kerberos_keytab), not with a user name and password or an OIDC client",
                ));
            }
            Some(SaslConfig {
                mechanism,
                credentials: SaslCredentials::Kerberos(kerberos(k)?),
            })
        } else if mechanism == "OAUTHBEARER" {
            if k.sasl_username.is_some() || sasl_password.is_some() {
                return Err(err(
                    "kafka.sasl_username",
                    "OAUTHBEARER authenticates with a token from the OIDC issuer (kafka.sasl_oauthbearer_client_id and its secret), not with a user name and password",
                ));
            }
            Some(SaslConfig {
                mechanism,
                credentials: SaslCredentials::Oidc(oidc_client(k, client_secret)?),
            })
        } else {
            if oauth_given {
                return Err(err(
                    "kafka.sasl_mechanism",
                    format!("sasl_oauthbearer_* settings are given, but sasl_mechanism is {mechanism:?}, not \"OAUTHBEARER\""),
                ));
            }
            Some(password_sasl(k, mechanism, sasl_password)?)
        }
    } else {
        if k.sasl_mechanism.is_some()
            || k.sasl_username.is_some()
            || sasl_password.is_some()
            || oauth_given
            || kerberos_given
        {
            return Err(err(
                "kafka.security_protocol",
                "SASL settings are given but security_protocol is not SASL_PLAINTEXT or SASL_SSL",
            ));
        }
        None
    };
    let tls = TlsFiles {
        ca: path(&k.ssl_ca_location),
        cert: path(&k.ssl_certificate_location),
        key: path(&k.ssl_key_location),
        keystore: path(&k.ssl_keystore_location),
    };
    let truststore = path(&k.ssl_truststore_location);
    if (tls.ca.is_some() || tls.cert.is_some() || tls.keystore.is_some() || truststore.is_some())
        && !security_protocol.uses_tls()
    {
        return Err(err(
            "kafka.security_protocol",
            "TLS files are given but security_protocol is not SSL or SASL_SSL",
        ));
    }
    let fetch_setting = k.fetch.as_deref().unwrap_or("auto");
    if !matches!(fetch_setting, "auto" | "sluice" | "librdkafka") {
        return Err(err(
            "kafka.fetch",
            format!("{fetch_setting:?} is not one of \"auto\", \"sluice\", \"librdkafka\""),
        ));
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(err(
            "kafka.ssl_key_location",
            "a client certificate needs its key, and a key its certificate",
        ));
    }
    if tls.keystore.is_some() && tls.cert.is_some() {
        return Err(err(
            "kafka.ssl_keystore_location",
            "a keystore holds the client certificate and key: give it, or ssl_certificate_location and ssl_key_location, not both",
        ));
    }
    if k.ssl_keystore_password.is_some() && tls.keystore.is_none() {
        return Err(err(
            "kafka.ssl_keystore_password",
            "set, but there is no ssl_keystore_location for it to open",
        ));
    }
    if truststore.is_some() && tls.ca.is_some() {
        return Err(err(
            "kafka.ssl_truststore_location",
            "a truststore holds the CA certificates: give it, or ssl_ca_location, not both",
        ));
    }
    if k.ssl_truststore_password.is_some() && truststore.is_none() {
        return Err(err(
            "kafka.ssl_truststore_password",
            "set, but there is no ssl_truststore_location for it to open",
        ));
    }
    for key in k.properties.keys() {
        if PROTECTED_KAFKA_PROPERTIES.contains(&key.as_str()) {
            return Err(err(
                format!("kafka.properties.{key:?}"),
                protected_property_reason(key),
            ));
        }
        if key.contains("password") || key.contains("secret") {
            // The passthrough is plain text (printed in debug output); secrets are not taken.
            return Err(err(
                format!("kafka.properties.{key:?}"),
                "a secret is not accepted in the passthrough (it is not redacted); for TLS client authentication use a PEM certificate and key (kafka.ssl_certificate_location, kafka.ssl_key_location, kafka.ssl_key_password) or a PKCS#12 keystore (kafka.ssl_keystore_location, kafka.ssl_keystore_password)",
            ));
        }
    }
    let fetch = match (
        fetch_setting,
        own_fetch_refusal(&k.properties),
    ) {
        ("auto" | "sluice", None) => FetchPath::Sluice,
        ("sluice", Some(why)) => {
            return Err(err(
                "kafka.fetch",
                format!("\"sluice\" cannot fetch over this connection: {why} (with \"auto\", librdkafka fetches)"),
            ))
        }
        _ => FetchPath::Librdkafka,
    };
    let stores = open_java_stores(k, &tls, truststore)?;
    Ok(KafkaConfig {
        brokers,
        group_id,
        client_id: k.client_id.clone().unwrap_or_else(|| "sluice".to_string()),
        instance_id: match &k.instance_id {
            Some(i) => Some(non_empty("kafka.instance_id", i)?),
            None => None,
        },
        auto_offset_reset,
        session_timeout,
        security_protocol,
        sasl,
        tls,
        ssl_key_password: k.ssl_key_password.clone().map(Secret::new),
        ssl_keystore_password: k.ssl_keystore_password.clone().map(Secret::new),
        stores,
        ssl_endpoint_identification: k.ssl_endpoint_identification.unwrap_or(true),
        properties: k.properties.clone(),
        fetch,
    })
}

/// An http:// or https:// URL without credentials in it (they would end up in logs;
/// `use_instead` names the keys that take them).
fn http_url(field: &str, url: &str, use_instead: &str) -> Result<String, ConfigError> {
    let url = non_empty(field, url)?;
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            err(
                field,
                format!("{url:?} must start with http:// or https://"),
            )
        })?;
    if rest.contains('@') {
        return Err(err(
            field,
            format!("credentials in the URL are not allowed (they would end up in logs); use {use_instead}"),
        ));
    }
    Ok(url)
}

fn validate_clickhouse(
    c: &RawClickHouse,
    read_file: FileReader<'_>,
) -> Result<ClickHouseConfig, ConfigError> {
    let url = http_url(
        "clickhouse.url",
        &c.url,
        "clickhouse.user and clickhouse.password",
    )?;
    let url = url.trim_end_matches('/').to_string();
    let compression = match c.compression.as_deref().unwrap_or("auto") {
        "auto" => Compression::Auto,
        "none" => Compression::None,
        "lz4" => Compression::Lz4,
        "gzip" => Compression::Gzip,
        other => {
            return Err(err(
                "clickhouse.compression",
                format!("{other:?} is not one of auto, none, lz4, gzip"),
            ))
        }
    };
    let tls = TlsFiles {
        ca: path(&c.ca_file),
        cert: path(&c.client_cert),
        key: path(&c.client_key),
        // PKCS#12 is for Kafka (librdkafka reads it); the HTTPS client takes PEM files.
        keystore: None,
    };
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(err(
            "clickhouse.client_key",
            "a client certificate needs its key, and a key its certificate",
        ));
    }
    if (tls.ca.is_some() || tls.cert.is_some()) && url.starts_with("http://") {
        return Err(err(
            "clickhouse.url",
            "TLS files are given but the URL is http://; use https://",
        ));
    }
    let trusted = https_truststore(
        "clickhouse",
        &url,
        tls.ca.is_some(),
        &c.truststore_location,
        &c.truststore_password,
    )?;
    let identity = match path(&c.keystore_location) {
        None => {
            for (name, v) in [("keystore_password", &c.keystore_password), ("key_password", &c.key_password)] {
                if v.is_some() {
                    return Err(err(format!("clickhouse.{name}"), "set, but there is no keystore_location for it to open"));
                }
            }
            None
        }
        Some(_) if tls.cert.is_some() => {
            return Err(err(
                "clickhouse.keystore_location",
                "a keystore holds the client certificate and key: give it, or client_cert and client_key, not both",
            ))
        }
        Some(_) if url.starts_with("http://") => {
            return Err(err("clickhouse.url", "a keystore is given but the URL is http://; use https://"))
        }
        Some(p) => Some(
            java_stores::read_keystore(
                &p,
                c.keystore_password.clone().map(Secret::new).as_ref(),
                c.key_password.clone().map(Secret::new).as_ref(),
            )
            .map_err(|e| err("clickhouse.keystore_location", format!("{}: {e}", p.display())))?,
        ),
    };
    let shards = shard_urls(c.shards.as_deref(), &url)?;
    Ok(ClickHouseConfig {
        url,
        database: non_empty(
            "clickhouse.database",
            c.database.as_deref().unwrap_or("default"),
        )?,
        user: c.user.clone(),
        password: secret(
            "clickhouse.password",
            &c.password,
            &c.password_file,
            read_file,
        )?,
        tls,
        compression,
        stream_inserts: c.stream_inserts.unwrap_or(true),
        connect_timeout: match &c.connect_timeout {
            Some(s) => parse_duration("clickhouse.connect_timeout", s)?,
            None => Duration::from_secs(5),
        },
        request_timeout: match &c.request_timeout {
            Some(s) => parse_duration("clickhouse.request_timeout", s)?,
            None => Duration::from_secs(120),
        },
        stores: JavaStores { identity, trusted },
        insert_settings: insert_settings(&c.insert_settings)?,
        shards,
    })
}

/// `clickhouse.shards`, checked: at least two distinct URLs, `url` the first (the server
/// `check`, the tools and the table refresh talk to), every one of `url`'s scheme (the TLS
/// settings are for all of them). None given: one server, no list.
fn shard_urls(given: Option<&[String]>, url: &str) -> Result<Vec<String>, ConfigError> {
    const FIELD: &str = "clickhouse.shards";
    let Some(given) = given else {
        return Ok(Vec::new());
    };
    let mut shards = Vec::with_capacity(given.len());
    for u in given {
        let u = http_url(FIELD, u, "clickhouse.user and clickhouse.password")?;
        let u = u.trim_end_matches('/').to_string();
        if shards.contains(&u) {
            return Err(err(FIELD, format!("{u} is listed twice")));
        }
        if u.split_once("://").map(|(s, _)| s) != url.split_once("://").map(|(s, _)| s) {
            return Err(err(
                FIELD,
                format!(
                    "{u}: every shard takes clickhouse.url's scheme (its TLS settings are theirs)"
                ),
            ));
        }
        shards.push(u);
    }
    if shards.len() < 2 {
        return Err(err(
            FIELD,
            "list every shard, two at least (one server needs only url)",
        ));
    }
    if shards[0] != url {
        return Err(err(
            FIELD,
            format!("the first shard must be clickhouse.url ({url}): the order decides where each partition goes"),
        ));
    }
    Ok(shards)
}

/// The truststore of an HTTPS client (`section.truststore_location`, JKS or PKCS#12) and
/// the certificates it trusts, read now; refused beside a CA file or on an http:// URL.
fn https_truststore(
    section: &str,
    url: &str,
    has_ca_file: bool,
    location: &Option<String>,
    password: &Option<String>,
) -> Result<Option<Trusted>, ConfigError> {
    let field = format!("{section}.truststore_location");
    let Some(p) = path(location) else {
        if password.is_some() {
            return Err(err(
                format!("{section}.truststore_password"),
                "set, but there is no truststore_location for it to open",
            ));
        }
        return Ok(None);
    };
    if has_ca_file {
        return Err(err(
            field,
            "a truststore holds the CA certificates: give it, or ca_file, not both",
        ));
    }
    if url.starts_with("http://") {
        return Err(err(
            field,
            "a truststore is given but the URL is http://; use https://",
        ));
    }
    let certs = java_stores::read_truststore(&p, password.clone().map(Secret::new).as_ref())
        .map_err(|e| err(&field, format!("{}: {e}", p.display())))?;
    Ok(Some((p, certs)))
}

/// `clickhouse.insert_settings`, checked: names as ClickHouse spells settings, none that
/// sluice sets itself, values without NUL. Whether the server knows each one (and takes its
/// value) is asked when sluice connects.
fn insert_settings(given: &BTreeMap<String, String>) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::with_capacity(given.len());
    for (name, value) in given {
        let field = format!("clickhouse.insert_settings.{name}");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(err(field, "not a setting name (letters, digits and _)"));
        }
        let lower = name.to_ascii_lowercase();
        if PROTECTED_INSERT_SETTINGS.contains(&lower.as_str())
            || PROTECTED_INSERT_PREFIXES
                .iter()
                .any(|p| lower.starts_with(p))
        {
            return Err(err(
                field,
                "sluice sets this itself, or depends on its default: acknowledged inserts stored, deduplicated and read exactly as sent (see README \"Insert settings\")",
            ));
        }
        if value.contains('\0') {
            return Err(err(field, "contains a NUL byte"));
        }
        out.push((name.clone(), value.clone()));
    }
    Ok(out)
}

fn metadata_name(v: &Option<String>, default: &str) -> Option<String> {
    match v {
        None => Some(default.to_string()),
        Some(s) if s.trim().is_empty() => None,
        Some(s) => Some(s.trim().to_string()),
    }
}

pub(super) fn validate_route(
    i: usize,
    r: &RawRoute,
    default_db: &str,
) -> Result<Route, ConfigError> {
    let f = |name: &str| format!("route[{i}].{name}");
    let Some(topic) = &r.topic else {
        return Err(err(f("topic"), "required (or topic_pattern)"));
    };
    let topic = topic_name(&f("topic"), topic)?;
    let table = non_empty(&f("table"), &r.table)?;
    let database = match &r.database {
        Some(d) => non_empty(&f("database"), d)?,
        None => default_db.to_string(),
    };
    const FORMATS: [Format; 7] = [
        Format::Json,
        Format::JsonSchema,
        Format::Avro,
        Format::Protobuf,
        Format::Raw,
        Format::Csv,
        Format::Tsv,
    ];
    let name = r.format.as_deref().unwrap_or("json");
    let Some(format) = FORMATS.into_iter().find(|k| k.as_str() == name) else {
        let names: Vec<&str> = FORMATS.iter().map(|k| k.as_str()).collect();
        return Err(err(
            f("format"),
            format!("unknown format {name:?}; supported: {}", names.join(", ")),
        ));
    };
    let delivery = match r.delivery.as_deref().unwrap_or("exactly-once") {
        "exactly-once" => Delivery::ExactlyOnce,
        "at-least-once" => Delivery::AtLeastOnce,
        "at-most-once" => Delivery::AtMostOnce,
        other => {
            return Err(err(
                f("delivery"),
                format!(
                    "{other:?} is not one of \"exactly-once\", \"at-least-once\", \"at-most-once\""
                ),
            ))
        }
    };
    let max_rows = match r.max_rows {
        Some(0) => return Err(err(f("max_rows"), "must be at least 1")),
        Some(n) => usize::try_from(n).map_err(|_| err(f("max_rows"), "too large"))?,
        None => DEFAULT_MAX_ROWS,
    };
    let max_bytes = match &r.max_bytes {
        Some(s) => parse_size(&f("max_bytes"), s)?,
        None => DEFAULT_MAX_BYTES,
    };
    if max_bytes < 1024 {
        return Err(err(f("max_bytes"), "must be at least 1KiB"));
    }
    let max_age = match &r.max_age {
        Some(s) => parse_duration(&f("max_age"), s)?,
        None => DEFAULT_MAX_AGE,
    };
    if max_age.is_zero() {
        return Err(err(f("max_age"), "must be greater than zero"));
    }
    let unknown_fields = match r.unknown_fields.as_deref().unwrap_or("ignore") {
        "ignore" => UnknownFields::Ignore,
        "error" => UnknownFields::Error,
        "add"
            if matches!(
                format,
                Format::Json | Format::JsonSchema | Format::Avro | Format::Protobuf
            ) =>
        {
            UnknownFields::Add
        }
        "add" => return Err(err(
            f("unknown_fields"),
            "\"add\" adds columns for the fields of json, json-schema, avro and protobuf routes",
        )),
        other => {
            return Err(err(
                f("unknown_fields"),
                format!("{other:?} is not one of \"ignore\", \"error\", \"add\""),
            ))
        }
    };
    let bad_messages = match r.on_bad_message.as_deref().unwrap_or("dead-letter") {
        "dead-letter" => BadMessages::DeadLetter {
            topic: match &r.dead_letter_topic {
                Some(t) => topic_name(&f("dead_letter_topic"), t)?,
                None => {
                    let dlq = format!("{topic}.dlq");
                    topic_name::check(&dlq).map_err(|e| {
                        err(
                            f("dead_letter_topic"),
                            format!("the default {dlq:?} is not a legal name ({e}); set one"),
                        )
                    })?;
                    dlq
                }
            },
        },
        "dead-letter-table" => {
            if r.dead_letter_topic.is_some() {
                return Err(err(
                    f("dead_letter_topic"),
                    "set, but on_bad_message = \"dead-letter-table\" writes to dead_letter_table",
                ));
            }
            let (dl_database, dl_table) = match r.dead_letter_table.as_deref() {
                None => (database.clone(), format!("{table}_dead_letters")),
                Some(name) => match name.split_once('.') {
                    Some((d, t)) if !d.is_empty() && !t.is_empty() && !t.contains('.') => {
                        (d.to_string(), t.to_string())
                    }
                    None if !name.is_empty() => (database.clone(), name.to_string()),
                    _ => {
                        return Err(err(
                            f("dead_letter_table"),
                            format!("{name:?} is not `table` or `database.table`"),
                        ))
                    }
                },
            };
            if dl_database == database && dl_table == table {
                return Err(err(
                    f("dead_letter_table"),
                    "must differ from the route's own table",
                ));
            }
            BadMessages::DeadLetterTable {
                database: dl_database,
                table: dl_table,
            }
        }
        "drop" => {
            if r.dead_letter_topic.is_some() {
                return Err(err(
                    f("dead_letter_topic"),
                    "set, but on_bad_message = \"drop\" sends nothing there",
                ));
            }
            BadMessages::Drop
        }
        other => {
            return Err(err(
                f("on_bad_message"),
                format!("{other:?} is not one of \"dead-letter\", \"dead-letter-table\", \"drop\""),
            ))
        }
    };
    if r.dead_letter_table.is_some() && !matches!(bad_messages, BadMessages::DeadLetterTable { .. })
    {
        return Err(err(
            f("dead_letter_table"),
            "set, but only on_bad_message = \"dead-letter-table\" writes there",
        ));
    }
    if let BadMessages::DeadLetter { topic: dlq } = &bad_messages {
        if *dlq == topic {
            return Err(err(
                f("dead_letter_topic"),
                "must differ from the route's own topic",
            ));
        }
    }
    let m = &r.metadata;
    let metadata = MetadataColumns {
        topic: metadata_name(&m.topic, "_topic"),
        partition: metadata_name(&m.partition, "_partition"),
        offset: metadata_name(&m.offset, "_offset"),
        timestamp: metadata_name(&m.timestamp, "_timestamp"),
        key: metadata_name(&m.key, "_key"),
        headers: metadata_name(&m.headers, "_headers"),
        value: metadata_name(&m.value, "_value"),
        op: None,
        deleted: None,
        ts_ms: None,
        source_ts_ms: None,
        db: None,
        table: None,
    };
    let envelope = match r.envelope.as_deref() {
        None | Some("none") => Envelope::None,
        Some("debezium")
            if matches!(
                format,
                Format::Json | Format::JsonSchema | Format::Avro | Format::Protobuf
            ) =>
        {
            Envelope::Debezium
        }
        Some("debezium") => {
            return Err(err(
                f("envelope"),
                "\"debezium\" reads change events in JSON, JSON Schema, Avro or Protobuf, \
                 not in this format",
            ))
        }
        Some(name @ ("maxwell" | "canal")) if format == Format::Json => {
            if name == "maxwell" {
                Envelope::Maxwell
            } else {
                Envelope::Canal
            }
        }
        Some(name @ ("maxwell" | "canal")) => {
            return Err(err(
                f("envelope"),
                format!("{name:?} reads JSON change events: it needs format = \"json\""),
            ))
        }
        Some(other) => {
            return Err(err(
                f("envelope"),
                format!("{other:?} is not one of \"none\", \"debezium\", \"maxwell\", \"canal\""),
            ))
        }
    };
    let metadata = match envelope {
        Envelope::Debezium | Envelope::Maxwell | Envelope::Canal => MetadataColumns {
            op: metadata_name(&m.op, "__op"),
            deleted: metadata_name(&m.deleted, "__deleted"),
            // The names Kafka Connect's ExtractNewRecordState gives them (`add.fields`).
            ts_ms: metadata_name(&m.ts_ms, "__ts_ms"),
            source_ts_ms: metadata_name(&m.source_ts_ms, "__source_ts_ms"),
            db: metadata_name(&m.db, "__db"),
            table: metadata_name(&m.table, "__table"),
            ..metadata
        },
        Envelope::None => {
            let event = [
                &m.op,
                &m.deleted,
                &m.ts_ms,
                &m.source_ts_ms,
                &m.db,
                &m.table,
            ];
            if event.iter().any(|v| v.is_some()) {
                return Err(err(
                    f("metadata"),
                    "op, deleted, ts_ms, source_ts_ms, db and table are a change event's: they need an envelope (\"debezium\", \"maxwell\" or \"canal\")",
                ));
            }
            metadata
        }
    };
    if format == Format::Raw && metadata.value.is_none() {
        return Err(err(
            f("metadata.value"),
            "a raw route stores each message value in this column; it cannot be switched off",
        ));
    }
    if !matches!(
        format,
        Format::Json | Format::JsonSchema | Format::Avro | Format::Protobuf
    ) && r.unknown_fields.is_some()
    {
        return Err(err(
            f("unknown_fields"),
            "applies to the fields of JSON, Avro and Protobuf messages by name; a raw route parses no fields, and a csv or tsv line must have exactly one field per column",
        ));
    }
    if format != Format::JsonSchema && r.validate.is_some() {
        return Err(err(
            f("validate"),
            "checks documents against their JSON Schema: it applies to format = \"json-schema\" routes only",
        ));
    }
    let columns = match &r.columns {
        None => None,
        Some(_) if !format.is_delimited() => return Err(err(
            f("columns"),
            "names the columns of csv and tsv fields, by position; this route reads another format",
        )),
        Some(list) => {
            if list.is_empty() {
                return Err(err(f("columns"), "is empty: name at least one column"));
            }
            for (k, c) in list.iter().enumerate() {
                if c.trim().is_empty() {
                    return Err(err(f("columns"), format!("entry {k} is empty")));
                }
                if list[..k].contains(c) {
                    return Err(err(f("columns"), format!("{c:?} is named twice")));
                }
            }
            Some(list.clone())
        }
    };
    let mut date_time_formats = BTreeMap::new();
    for (column, text) in &r.date_time_formats {
        let parsed = TimeFormat::parse(text)
            .map_err(|why| err(f(&format!("date_time_formats.{column}")), why))?;
        date_time_formats.insert(column.clone(), parsed);
    }
    let skip_tombstones = match r.tombstones.as_deref().unwrap_or("dead-letter") {
        "dead-letter" => false,
        "skip" => true,
        other => {
            return Err(err(
                f("tombstones"),
                format!("{other:?} is not one of \"dead-letter\", \"skip\""),
            ))
        }
    };
    if format == Format::Raw && !date_time_formats.is_empty() {
        return Err(err(
            f("date_time_formats"),
            "a raw route parses no fields, so no column reads a date-time from one",
        ));
    }
    Ok(Route {
        topic,
        database,
        table,
        format,
        delivery,
        batch: BatchLimits {
            max_rows,
            max_bytes,
            max_age,
        },
        unknown_fields,
        validate: r.validate.unwrap_or(false),
        bad_messages,
        max_insert_retries: r.max_insert_retries.filter(|n| *n > 0),
        metadata,
        columns,
        date_time_formats,
        skip_tombstones,
        envelope,
    })
}

fn validate_service(raw: &RawConfig) -> Result<ServiceConfig, ConfigError> {
    let s = &raw.service;
    let metrics_listen = match &s.metrics_listen {
        Some(a) if !a.trim().is_empty() => Some(a.trim().parse().map_err(|e| {
            err(
                "service.metrics_listen",
                format!("{a:?} is not an address like 127.0.0.1:9464 ({e})"),
            )
        })?),
        _ => None,
    };
    let log_json = match s.log_format.as_deref().unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => {
            return Err(err(
                "service.log_format",
                format!("{other:?} is not one of \"text\", \"json\""),
            ))
        }
    };
    let batch_memory = match &s.batch_memory {
        Some(v) => parse_size("service.batch_memory", v)?,
        None => DEFAULT_BATCH_MEMORY,
    };
    if batch_memory < 1024 * 1024 {
        return Err(err("service.batch_memory", "must be at least 1MiB"));
    }
    Ok(ServiceConfig {
        shutdown_timeout: match &s.shutdown_timeout {
            Some(t) => parse_duration("service.shutdown_timeout", t)?,
            None => Duration::from_secs(30),
        },
        metrics_listen,
        log_json,
        batch_memory,
        table_refresh: match &s.table_refresh {
            Some(t) => Some(parse_duration("service.table_refresh", t)?).filter(|d| !d.is_zero()),
            None => Some(DEFAULT_TABLE_REFRESH),
        },
    })
}

/// Reading a table's columns is two small queries: every 10 s costs nothing measurable, and
/// a column added under a running sluice is filled within that.
pub const DEFAULT_TABLE_REFRESH: Duration = Duration::from_secs(10);
