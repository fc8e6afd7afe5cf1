//! The validated configuration: the types the rest of sluice reads (every value in them has
//! passed validation) and the defaults of its limits.

use super::*;

#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    /// The routes that name their topic; those of `patterns` join them once the topics are
    /// known ([`crate::config::patterns::expand`]).
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
pub(super) const PROTECTED_INSERT_PREFIXES: &[&str] =
    &["input_format_", "async_insert_", "format_"];

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
