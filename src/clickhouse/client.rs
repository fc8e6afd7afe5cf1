//! The HTTP client: connection set-up, queries, table metadata and INSERTs.
//!
//! Guarantees (see also the parent module):
//! - [`Client`] is cheap to clone (an `Arc`); clones share one keep-alive pool. Idle pooled
//!   connections are dropped a little before the server's own keep-alive timeout (read from its
//!   `Keep-Alive` header at connect; 18.16's default is 3 s), so a request is rarely written
//!   into a connection the server is closing.
//! - [`Client::insert`] makes exactly one POST and never retries; it compresses the caller's
//!   bytes afresh on every call (LZ4 costs about a millisecond per MB; retries are rare), so the
//!   caller keeps only the uncompressed `Bytes`.
//! - Metadata look-ups work on 18.16 and 26.9 alike: they use only `system.columns` /
//!   `system.tables` columns both versions have, and string literals instead of query
//!   parameters (which 18.16 lacks).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::compress::{Encoding, Packing};
use super::error::{
    answer_exception, describe_transport, find_trailing_exception, parse_error_response, scrub,
    ServerException, TransportFailure,
};
use super::native_lz4::Method;
use super::sql::{qualified, quote_ident, quote_str};
use super::stream::{InsertStream, Streaming};
use super::version::{insert_settings, ServerInfo, Version, SETTINGS_WE_SEND};
use super::{ChError, ClickHouseSettings, InsertError};

/// Bodies above this size are compressed on the blocking thread pool, so a multi-megabyte
/// gzip does not stall the async worker that also drives other partitions' requests.
const BLOCKING_COMPRESS_THRESHOLD: usize = 256 * 1024;

/// Keep-alive timeout assumed when the server does not announce one (ClickHouse's historical
/// default is 3 s).
const DEFAULT_SERVER_KEEP_ALIVE: Duration = Duration::from_secs(3);

/// How long `table_info` keeps asking an 18.16 server whose `system.tables` fails over a table
/// dropped meanwhile. Start-up waits this long at worst; a server that drops tables for longer
/// than this without pause is reported as the error it gave.
const OTHER_TABLE_DROPPED_PATIENCE: Duration = Duration::from_secs(5);

/// A ClickHouse HTTP client. Clone it freely.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Base URL without credentials or query string.
    base: Url,
    /// `base` as printed in errors and logs.
    display_url: String,
    database: String,
    /// The user name as reported in errors ("default" when none is configured).
    user: String,
    /// For scrubbing server messages.
    password: Option<super::Secret>,
    connect_timeout: Duration,
    request_timeout: Duration,
    server: ServerInfo,
    encoding: Encoding,
    packing: Packing,
    /// How batches the memory budget would cut short are streamed ([`Client::streaming`]).
    streaming: Streaming,
    /// The user's INSERT settings (`clickhouse.insert_settings`).
    insert_settings: Vec<(String, String)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.display_url)
            .field("user", &self.inner.user)
            .field("server", &self.inner.server.version_string)
            .field("encoding", &self.inner.encoding)
            .field("packing", &self.inner.packing)
            .finish()
    }
}

/// The RowBinary flavour of an INSERT body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertFormat {
    /// Plain RowBinary: every listed column, every row.
    RowBinary,
    /// RowBinaryWithDefaults: a prefix byte per value, 1 = use the column DEFAULT
    /// (needs [`ServerInfo::supports_row_binary_with_defaults`]).
    RowBinaryWithDefaults,
    /// RowBinary after a header naming each column and its type
    /// ([`InsertRequest::header`], [`typed_header`]; needs
    /// [`ServerInfo::supports_typed_header`]). The server compares those types with the
    /// table's before it reads a row, so an insert planned against a column type that has
    /// since changed is refused (Code 117, "while reading header") instead of being read as
    /// the new type: plain RowBinary carries no types and would store wrong values.
    RowBinaryWithNamesAndTypes,
}

impl InsertFormat {
    fn as_sql(self) -> &'static str {
        match self {
            InsertFormat::RowBinary => "RowBinary",
            InsertFormat::RowBinaryWithDefaults => "RowBinaryWithDefaults",
            InsertFormat::RowBinaryWithNamesAndTypes => "RowBinaryWithNamesAndTypes",
        }
    }
}

/// The header of a `RowBinaryWithNamesAndTypes` body: the column count as a LEB128 varint,
/// then each name, then each type, as RowBinary strings. `types` are the table's own type
/// names (`system.columns`), which is what the server compares them with.
pub fn typed_header(columns: &[String], types: &[String]) -> Bytes {
    use crate::encode::rowbinary::{put_str, put_varint};
    let mut out = Vec::new();
    put_varint(&mut out, columns.len() as u64);
    for text in columns.iter().chain(types) {
        put_str(&mut out, text.as_bytes());
    }
    Bytes::from(out)
}

/// One INSERT. Keep it to retry: the same request re-sends the same bytes and token.
#[derive(Debug, Clone)]
pub struct InsertRequest {
    /// Target database.
    pub database: String,
    /// Target table.
    pub table: String,
    /// Columns in body order; empty means all ordinary columns in table order.
    pub columns: Vec<String>,
    /// Body format.
    pub format: InsertFormat,
    /// What goes before the rows: the [`typed_header`] for
    /// [`InsertFormat::RowBinaryWithNamesAndTypes`], empty for the other formats. Sent with
    /// every body (each retry, each half of a split batch, each stream).
    pub header: Bytes,
    /// The rows.
    pub body: InsertBody,
    /// `insert_deduplication_token`, sent when the server supports it (>= 22.2); otherwise
    /// deduplication relies on the block hash of identical bytes (Replicated* tables).
    pub dedup_token: Option<String>,
}

/// The rows of an INSERT, in the request's format.
#[derive(Debug, Clone)]
pub enum InsertBody {
    /// Uncompressed; the client compresses them per the settings on every send.
    Plain(Bytes),
    /// Already compressed in ClickHouse's own LZ4 blocks (a packed batch, see
    /// [`crate::batch`]), sent as is with `decompress=1` whatever the setting: every server
    /// version reads those.
    Packed { blocks: Bytes, raw_len: usize },
}

impl InsertBody {
    /// Uncompressed bytes of the rows.
    pub fn raw_len(&self) -> usize {
        match self {
            InsertBody::Plain(b) => b.len(),
            InsertBody::Packed { raw_len, .. } => *raw_len,
        }
    }
}

impl From<Bytes> for InsertBody {
    fn from(rows: Bytes) -> Self {
        InsertBody::Plain(rows)
    }
}

/// A successful INSERT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertAck {
    /// Rows written, from `X-ClickHouse-Summary` (absent on 18.16). 26.9 counts the rows of a
    /// deduplicated (dropped) block as written too, so this cannot tell a retry from a fresh
    /// insert.
    pub written_rows: Option<u64>,
    /// Wall time of the call: compression, request and response.
    pub elapsed: Duration,
}

/// How a column gets its value when an INSERT does not provide it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultKind {
    /// No default expression: the type's zero value.
    None,
    /// `DEFAULT expr`: used when the column is omitted; may be inserted.
    Default,
    /// `MATERIALIZED expr`: always computed; cannot be inserted.
    Materialized,
    /// `ALIAS expr`: not stored; cannot be inserted.
    Alias,
    /// `EPHEMERAL [expr]`: insertable, not stored.
    Ephemeral,
    /// A kind this client does not know (newer server).
    Other(String),
}

impl DefaultKind {
    fn parse(s: &str) -> DefaultKind {
        match s {
            "" => DefaultKind::None,
            "DEFAULT" => DefaultKind::Default,
            "MATERIALIZED" => DefaultKind::Materialized,
            "ALIAS" => DefaultKind::Alias,
            "EPHEMERAL" => DefaultKind::Ephemeral,
            other => DefaultKind::Other(other.to_owned()),
        }
    }

    /// True when an INSERT may list the column.
    pub fn insertable(&self) -> bool {
        matches!(
            self,
            DefaultKind::None | DefaultKind::Default | DefaultKind::Ephemeral
        )
    }
}

/// A column of a table, as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Type as the server prints it, e.g. `Nullable(String)`.
    pub type_name: String,
    /// DEFAULT / MATERIALIZED / ALIAS / EPHEMERAL.
    pub default_kind: DefaultKind,
    /// The default expression, `None` when there is none.
    pub default_expression: Option<String>,
}

/// `database.name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName {
    /// Database.
    pub database: String,
    /// Table or view.
    pub name: String,
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.database, self.name)
    }
}

/// What the server says about a table, for the exactly-once checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Database.
    pub database: String,
    /// Table.
    pub name: String,
    /// Engine name, e.g. `MergeTree`, `ReplicatedMergeTree`.
    pub engine: String,
    /// Engine clause with its arguments and SETTINGS.
    pub engine_full: String,
    /// The full CREATE statement.
    pub create_table_query: String,
    /// Effective `non_replicated_deduplication_window`: the table's SETTINGS override, else the
    /// server default from `system.merge_tree_settings`; `None` when the server has no such
    /// setting (18.16) or the engine is not a MergeTree.
    pub non_replicated_deduplication_window: Option<u64>,
    /// Effective `replicated_deduplication_window`, same rules.
    pub replicated_deduplication_window: Option<u64>,
    /// Materialized views reading from this table (`system.tables.dependencies_*`, present on
    /// both 18.16 and 26.9).
    pub materialized_views: Vec<QualifiedName>,
}

impl TableInfo {
    /// `*MergeTree` engines (the only ones that deduplicate inserts).
    pub fn is_merge_tree(&self) -> bool {
        self.engine.ends_with("MergeTree")
    }

    /// Replicated (or cloud Shared) MergeTree: deduplicates through (Zoo)Keeper by default.
    pub fn is_replicated(&self) -> bool {
        self.is_merge_tree()
            && (self.engine.starts_with("Replicated") || self.engine.starts_with("Shared"))
    }
}

/// The evaluated DEFAULT of one column, for servers without RowBinaryWithDefaults.
#[derive(Debug)]
pub struct DefaultValue {
    /// Column name.
    pub column: String,
    /// The expression that was evaluated.
    pub expression: String,
    /// True when the expression calls a function whose value changes between evaluations
    /// (`now()`, `rand()`, `generateUUIDv4()`...): the bytes are a snapshot, not the default.
    pub volatile: bool,
    /// RowBinary bytes of `CAST(expr AS type)`, or why it could not be evaluated (e.g. the
    /// expression reads another column: Code 47).
    pub value: Result<Bytes, ChError>,
}

/// Functions whose result differs per evaluation: a DEFAULT using them cannot be pre-computed.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "now",
    "now64",
    "nowinblock",
    "today",
    "yesterday",
    "rand",
    "rand32",
    "rand64",
    "randconstant",
    "randomstring",
    "randomfixedstring",
    "randomprintableascii",
    "randomstringutf8",
    "generateuuidv4",
    "generateuuidv7",
    "generateulid",
    "generatesnowflakeid",
    "uuidv4",
    "uuidv7",
    "serveruuid",
    "rownumberinblock",
    "rownumberinallblocks",
    "blocknumber",
    "currenttimestamp",
    "uptime",
];

fn is_volatile(expression: &str) -> bool {
    let lower = expression.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    VOLATILE_FUNCTIONS.iter().any(|f| {
        lower.match_indices(f).any(|(i, _)| {
            let before_ok =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            let after = lower[i + f.len()..].trim_start();
            before_ok && after.starts_with('(')
        })
    })
}

/// The INSERT statement for `req`, identifiers quoted.
pub fn insert_sql(req: &InsertRequest) -> String {
    let mut sql = format!("INSERT INTO {}", qualified(&req.database, &req.table));
    if !req.columns.is_empty() {
        let cols: Vec<String> = req.columns.iter().map(|c| quote_ident(c)).collect();
        sql.push_str(" (");
        sql.push_str(&cols.join(", "));
        sql.push(')');
    }
    sql.push_str(" FORMAT ");
    sql.push_str(req.format.as_sql());
    sql
}

/// Reads `name = value` from the SETTINGS clause of an `engine_full` text.
///
/// Values in SETTINGS are numbers or quoted strings; a quoted value containing a comma can
/// confuse the split for *that* entry only, and the settings read here are numeric.
pub fn engine_setting(engine_full: &str, name: &str) -> Option<String> {
    let idx = engine_full.rfind("SETTINGS ")?;
    engine_full[idx + "SETTINGS ".len()..]
        .split(',')
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('\'').to_owned())
        })
}

fn parse_keep_alive(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("keep-alive")?.to_str().ok()?;
    v.split(',').find_map(|p| {
        let (k, val) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("timeout"))
            .then(|| val.trim().parse::<u64>().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

/// How long an idle pooled connection may be reused: a margin below the server's timeout.
fn pool_idle_for(server_keep_alive: Duration) -> Duration {
    server_keep_alive
        .saturating_sub(Duration::from_secs(1))
        .max(server_keep_alive / 2)
}

fn written_rows(headers: &HeaderMap) -> Option<u64> {
    let summary = headers.get("x-clickhouse-summary")?.to_str().ok()?;
    let v: serde_json::Value = serde_json::from_str(summary).ok()?;
    match v.get("written_rows")? {
        // ClickHouse quotes 64-bit integers in JSON.
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Validates the URL: http(s), a host, no credentials, no query string.
fn parse_url(raw: &str) -> Result<(Url, String), ChError> {
    let invalid = |reason: String| ChError::InvalidSettings {
        field: "url",
        reason,
    };
    let mut url = Url::parse(raw.trim()).map_err(|e| invalid(format!("not a URL ({e})")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(format!(
            "scheme must be http or https, not '{}'",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // The message must not echo the URL: it contains the password.
        return Err(invalid(
            "credentials in the URL are not allowed; use the user and password settings".into(),
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| invalid("no host".into()))?
        .to_owned();
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query string or fragment".into()));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    let port = url
        .port_or_known_default()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let path = url.path().trim_end_matches('/');
    let display = format!("{}://{}{}{}", url.scheme(), host, port, path);
    Ok((url, display))
}

/// True for `localhost` and loopback IP addresses, where compression costs CPU and saves nothing.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed: "[::1]".
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn read_pem(field: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ChError> {
    std::fs::read(path).map_err(|e| ChError::InvalidSettings {
        field,
        reason: format!("cannot read {}: {e}", path.display()),
    })
}

/// Parts of the reqwest client that do not depend on the server.
struct HttpConfig {
    headers: HeaderMap,
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl HttpConfig {
    fn from_settings(s: &ClickHouseSettings, https: bool) -> Result<HttpConfig, ChError> {
        let mut headers = HeaderMap::new();
        if s.user.is_some() || s.password.is_some() {
            let user = s.user.as_deref().unwrap_or("default");
            let mut user_v = HeaderValue::from_str(user).map_err(|_| ChError::InvalidSettings {
                field: "user",
                reason: "contains characters not allowed in an HTTP header".into(),
            })?;
            user_v.set_sensitive(true);
            let key = s.password.as_ref().map(|p| p.expose()).unwrap_or("");
            // Never format the password into the error.
            let mut key_v = HeaderValue::from_str(key).map_err(|_| ChError::InvalidSettings {
                field: "password",
                reason: "contains characters not allowed in an HTTP header".into(),
            })?;
            key_v.set_sensitive(true);
            headers.insert("x-clickhouse-user", user_v);
            headers.insert("x-clickhouse-key", key_v);
        }
        let tls_files = s.ca_file.is_some()
            || s.client_cert.is_some()
            || s.client_key.is_some()
            || !s.trusted.is_empty()
            || s.identity_pem.is_some();
        if tls_files && !https {
            return Err(ChError::InvalidSettings {
                field: "url",
                reason: "ca_file/client_cert/client_key are set but the URL is not https".into(),
            });
        }
        let mut roots = Vec::new();
        if let Some(path) = &s.ca_file {
            let pem = read_pem("ca_file", path)?;
            roots.push(reqwest::Certificate::from_pem(&pem).map_err(|e| {
                ChError::InvalidSettings {
                    field: "ca_file",
                    reason: format!("{} is not a PEM certificate: {e}", path.display()),
                }
            })?);
        }
        for der in &s.trusted {
            roots.push(reqwest::Certificate::from_der(der).map_err(|e| {
                ChError::InvalidSettings {
                    field: "truststore_location",
                    reason: format!("a certificate of the truststore: {e}"),
                }
            })?);
        }
        let identity = match (&s.client_cert, &s.client_key) {
            (None, None) if s.identity_pem.is_some() => {
                let pem = s
                    .identity_pem
                    .as_ref()
                    .map(|p| p.expose())
                    .unwrap_or_default();
                Some(reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| {
                    ChError::InvalidSettings {
                        field: "keystore_location",
                        reason: format!("the keystore's certificate and key: {e}"),
                    }
                })?)
            }
            (Some(cert), Some(key)) => {
                let mut pem = read_pem("client_cert", cert)?;
                pem.push(b'\n');
                pem.extend_from_slice(&read_pem("client_key", key)?);
                Some(
                    reqwest::Identity::from_pem(&pem).map_err(|e| ChError::InvalidSettings {
                        field: "client_cert",
                        reason: format!(
                            "{} + {} do not form a PEM certificate and private key: {e}",
                            cert.display(),
                            key.display()
                        ),
                    })?,
                )
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(ChError::InvalidSettings {
                    field: "client_key",
                    reason: "client_cert is set without client_key".into(),
                })
            }
            (None, Some(_)) => {
                return Err(ChError::InvalidSettings {
                    field: "client_cert",
                    reason: "client_key is set without client_cert".into(),
                })
            }
        };
        Ok(HttpConfig {
            headers,
            roots,
            identity,
            connect_timeout: s.connect_timeout,
            request_timeout: s.request_timeout,
        })
    }

    fn build(&self, pool_idle: Duration) -> Result<reqwest::Client, ChError> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .default_headers(self.headers.clone())
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            // ClickHouse speaks HTTP/1.1; skip h2 negotiation.
            .http1_only()
            // A redirect would replay X-ClickHouse-Key to wherever it points, and a POST body
            // cannot be replayed blindly anyway.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .pool_idle_timeout(pool_idle)
            .tcp_nodelay(true)
            .https_only(false);
        for root in &self.roots {
            b = b.add_root_certificate(root.clone());
        }
        if let Some(id) = &self.identity {
            b = b.identity(id.clone());
        }
        b.build().map_err(|e| ChError::InvalidSettings {
            field: "url",
            reason: format!("cannot build the HTTP client: {e}"),
        })
    }
}

#[derive(Deserialize)]
struct ColumnRow {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    default_kind: String,
    default_expression: String,
}

#[derive(Deserialize)]
struct TableRow {
    engine: String,
    engine_full: String,
    create_table_query: String,
    dependencies_database: Vec<String>,
    dependencies_table: Vec<String>,
}

#[derive(Deserialize)]
struct SettingRow {
    name: String,
    value: String,
}

/// A raw response: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Client {
    /// Builds the client, checks the server answers (`SELECT version()`), and detects what it
    /// supports. Fails with a readable [`ChError`] when the server is unreachable, refuses the
    /// credentials, fails TLS, or lacks the configured database.
    pub async fn connect(settings: ClickHouseSettings) -> Result<Client, ChError> {
        let (base, display_url) = parse_url(&settings.url)?;
        let https = base.scheme() == "https";
        let config = HttpConfig::from_settings(&settings, https)?;
        let user = settings
            .user
            .clone()
            .unwrap_or_else(|| "default".to_owned());

        // First a client with a conservative idle timeout, to learn the server's keep-alive.
        let probe_http = config.build(pool_idle_for(DEFAULT_SERVER_KEEP_ALIVE))?;
        let mut inner = Inner {
            http: probe_http,
            base,
            display_url,
            database: settings.database.clone(),
            user,
            password: settings.password.clone(),
            connect_timeout: settings.connect_timeout,
            request_timeout: settings.request_timeout,
            server: ServerInfo::from_version(Version::new(0, 0, 0), ""),
            encoding: Encoding::Identity,
            packing: Packing::Never,
            streaming: Streaming::Off,
            insert_settings: settings.insert_settings.clone(),
        };

        let answer = inner
            .post(&[], Bytes::from_static(b"SELECT version()"), None)
            .await
            .map_err(|e| match inner.transport_error(e) {
                // A TLS port answers a plain HTTP request by closing the connection.
                ChError::Transport { url, reason } if !https => ChError::Transport {
                    url,
                    reason: format!("{reason} (if this port serves HTTPS, use an https:// URL)"),
                },
                other => other,
            })?;
        let text = inner.check_query_answer(&answer).map_err(|e| match e {
            ChError::Server { code: Some(81), .. } => ChError::UnknownDatabase {
                database: settings.database.clone(),
            },
            other => other,
        })?;
        let version_string = text.trim().to_owned();
        let version = Version::parse(&version_string).ok_or_else(|| ChError::Protocol {
            url: inner.display_url.clone(),
            what: format!("cannot parse version {version_string:?}"),
        })?;
        let keep_alive = parse_keep_alive(&answer.headers);

        let (known, rbwd, lz4, block_rows, time_zone) = tokio::join!(
            inner.probe_settings(),
            inner.probe_rbwd(),
            inner.probe_lz4(),
            inner.probe_max_insert_block_size(),
            inner.probe_query("SELECT timezone()")
        );
        inner.check_insert_settings().await?;
        let mut server = ServerInfo::from_version(version, version_string).refine(known, rbwd, lz4);
        server.keep_alive_timeout = keep_alive;
        server.time_zone = time_zone.and_then(|t| t.trim().parse().ok());

        inner.encoding = Encoding::resolve(
            settings.compression,
            server.supports_lz4_content_encoding,
            is_loopback(&inner.base),
        )
        .map_err(|reason| ChError::InvalidSettings {
            field: "compression",
            reason: reason.into(),
        })?;
        inner.packing = Packing::resolve(settings.compression, inner.encoding);
        inner.streaming = Streaming::resolve(
            settings.stream_inserts,
            &server,
            inner.encoding,
            inner.packing,
            block_rows,
        );
        inner.http = config.build(pool_idle_for(
            keep_alive.unwrap_or(DEFAULT_SERVER_KEEP_ALIVE),
        ))?;
        inner.server = server;
        tracing::info!(
            url = %inner.display_url,
            version = %inner.server.version_string,
            encoding = ?inner.encoding,
            packing = ?inner.packing,
            streamed_inserts = ?inner.streaming,
            dedup_token = inner.server.supports_dedup_token,
            row_binary_with_defaults = inner.server.supports_row_binary_with_defaults,
            "connected to ClickHouse"
        );
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    /// The connected server's version and capabilities.
    pub fn server(&self) -> &ServerInfo {
        &self.inner.server
    }

    /// The server URL without credentials, as used in messages.
    pub fn url(&self) -> &str {
        &self.inner.display_url
    }

    /// The wire encoding chosen for INSERT bodies.
    pub fn encoding(&self) -> Encoding {
        self.inner.encoding
    }

    /// Whether lanes compress their batches as rows arrive (see [`Packing`]).
    pub fn packing(&self) -> Packing {
        self.inner.packing
    }

    /// The whole-request timeout (connect, body, server work, answer).
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// Whether a lane streams a batch the memory budget would otherwise cut short, instead of
    /// holding it compressed ([`Client::open_insert_stream`]).
    pub fn streams_inserts(&self) -> bool {
        self.inner.streaming != Streaming::Off
    }

    /// How streamed inserts are made safe on this server (see [`Streaming`]).
    pub fn streaming(&self) -> Streaming {
        self.inner.streaming
    }

    /// Starts an INSERT whose body is sent as it is encoded; `req.body` is ignored. The body
    /// is uncompressed rows, or with `packed` ClickHouse's own LZ4 blocks (`decompress=1`,
    /// as packed batches go). See [`InsertStream`] for what is stored when.
    pub fn open_insert_stream(&self, req: InsertRequest, packed: bool) -> InsertStream {
        let first = match (req.header.is_empty(), packed) {
            (true, _) => Bytes::new(),
            (false, false) => req.header.clone(),
            // A body of blocks (`decompress=1`) carries its header in a block of its own, of
            // the method its other blocks have.
            (false, true) => header_block(
                &req.header,
                match self.inner.streaming {
                    Streaming::Guarded { blocks, .. } => blocks,
                    Streaming::Off | Streaming::Safe => Method::Lz4,
                },
            ),
        };
        let (tx, body) = super::stream::body_channel(first);
        let client = self.clone();
        let task = tokio::spawn(async move {
            let sql = insert_sql(&req);
            client
                .inner
                .send_insert(&req, &sql, body, None, packed)
                .await
        });
        InsertStream::new(tx, task)
    }

    /// Runs a statement (SELECT, DDL) with the configured database and returns the body text.
    /// An exception at the end of a streamed `200 OK` body is reported as an error.
    pub async fn query(&self, sql: &str) -> Result<String, ChError> {
        let answer = self
            .inner
            .post(&[], Bytes::copy_from_slice(sql.as_bytes()), None)
            .await
            .map_err(|e| self.inner.transport_error(e))?;
        self.inner.check_query_answer(&answer)
    }

    /// Runs a query and returns the raw body bytes (for binary formats).
    async fn query_bytes(&self, sql: String) -> Result<Bytes, ChError> {
        let answer = self
            .inner
            .post(&[], Bytes::from(sql), None)
            .await
            .map_err(|e| self.inner.transport_error(e))?;
        // A binary body is not searched for a trailing exception; the status and the
        // exception header are.
        if answer.status != StatusCode::OK || exception_header(&answer).is_some() {
            if let Some(exc) = self.inner.answer_exception(&answer) {
                return Err(self.inner.server_error(answer.status.as_u16(), exc));
            }
        }
        Ok(answer.body)
    }

    async fn query_rows<T: for<'de> Deserialize<'de>>(&self, sql: &str) -> Result<Vec<T>, ChError> {
        let text = self.query(sql).await?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).map_err(|e| ChError::Protocol {
                    url: self.inner.display_url.clone(),
                    what: format!("cannot read a JSONEachRow line ({e})"),
                })
            })
            .collect()
    }

    /// The columns of `database.table` from `system.columns`, in position order on servers that
    /// have `position` (26.9); on 18.16 in the server's order (ordinary, MATERIALIZED, ALIAS).
    /// A missing table is [`ChError::UnknownTable`].
    pub async fn table_columns(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Vec<ColumnInfo>, ChError> {
        // `position` arrived in system.columns long after 18.16; test for it instead of guessing
        // a version threshold.
        let has_position = self
            .query(
                "SELECT count() FROM system.columns WHERE database = 'system' AND table = 'columns' \
                 AND name = 'position' FORMAT TSV"
            )
            .await?
            .trim()
            == "1";
        let order = if has_position {
            " ORDER BY position"
        } else {
            ""
        };
        let rows: Vec<ColumnRow> = self
            .query_rows(&format!(
                "SELECT name, type, default_kind, default_expression FROM system.columns \
                 WHERE database = {} AND table = {}{order} FORMAT JSONEachRow",
                quote_str(database),
                quote_str(table)
            ))
            .await?;
        if rows.is_empty() {
            // system.columns is silent about missing tables; every table has a column.
            return Err(ChError::UnknownTable {
                database: database.to_owned(),
                table: table.to_owned(),
            });
        }
        Ok(rows
            .into_iter()
            .map(|r| ColumnInfo {
                name: r.name,
                type_name: r.type_name,
                default_kind: DefaultKind::parse(&r.default_kind),
                default_expression: (!r.default_expression.is_empty())
                    .then_some(r.default_expression),
            })
            .collect())
    }

    /// Engine, deduplication windows and dependent materialized views of `database.table`.
    pub async fn table_info(&self, database: &str, table: &str) -> Result<TableInfo, ChError> {
        let sql = format!(
            "SELECT engine, engine_full, create_table_query, dependencies_database, \
             dependencies_table FROM system.tables WHERE database = {} AND name = {} \
             FORMAT JSONEachRow",
            quote_str(database),
            quote_str(table)
        );
        // 18.16 builds system.tables by visiting every table of the database, whichever
        // columns are asked for, and fails the whole query when one of them is dropped
        // meanwhile, with Code 60 (the table does not exist) or 107 (its metadata file is
        // gone). Ask again, whichever table the error names (another table's name may hold
        // this one's): if it was this table, the next answer has no row for it, which is
        // reported as the unknown table it now is. The failures come in runs while a busy
        // server drops tables (up to 4 in a row with 16 tasks creating and dropping side by
        // side; 5 in a row in CI), so the pauses grow and the bound is time, not a count.
        let table_row = async {
            let started = std::time::Instant::now();
            let mut pause = Duration::from_millis(20);
            loop {
                match self.query_rows::<TableRow>(&sql).await {
                    Err(ChError::Server {
                        code: Some(60 | 107),
                        message,
                        ..
                    }) if started.elapsed() < OTHER_TABLE_DROPPED_PATIENCE => {
                        tracing::debug!(%message, "system.tables failed over a table dropped meanwhile; asking again");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(500));
                    }
                    other => break other,
                }
            }
        };
        // The server's defaults do not depend on the table: asked for side by side.
        let defaults = self.query_rows::<SettingRow>(
            "SELECT name, value FROM system.merge_tree_settings WHERE name IN \
             ('non_replicated_deduplication_window', 'replicated_deduplication_window') \
             FORMAT JSONEachRow",
        );
        let (rows, defaults) = tokio::join!(table_row, defaults);
        let row = rows?
            .into_iter()
            .next()
            .ok_or_else(|| ChError::UnknownTable {
                database: database.to_owned(),
                table: table.to_owned(),
            })?;
        let defaults = defaults?;
        let is_merge_tree = row.engine.ends_with("MergeTree");
        let effective = |name: &str| -> Option<u64> {
            if !is_merge_tree {
                return None;
            }
            let server_default = defaults.iter().find(|s| s.name == name)?;
            // The setting exists on this server; a table-level override wins.
            engine_setting(&row.engine_full, name)
                .unwrap_or_else(|| server_default.value.clone())
                .parse()
                .ok()
        };
        let materialized_views = row
            .dependencies_database
            .iter()
            .zip(row.dependencies_table.iter())
            .map(|(d, t)| QualifiedName {
                database: d.clone(),
                name: t.clone(),
            })
            .collect();
        Ok(TableInfo {
            database: database.to_owned(),
            name: table.to_owned(),
            non_replicated_deduplication_window: effective("non_replicated_deduplication_window"),
            replicated_deduplication_window: effective("replicated_deduplication_window"),
            engine: row.engine,
            engine_full: row.engine_full,
            create_table_query: row.create_table_query,
            materialized_views,
        })
    }

    /// Evaluates the `DEFAULT` expression of each given column that has one, as
    /// `SELECT CAST((expr) AS type) FORMAT RowBinary`, for servers without
    /// RowBinaryWithDefaults. One result per DEFAULT column; other columns are skipped.
    /// Expressions reading other columns fail (Code 47) in their own entry only. They are
    /// evaluated over a one-row subquery with no column they could name: without a FROM,
    /// ClickHouse reads `system.one`, and a DEFAULT reading a column called `dummy` would
    /// pass for a constant (its value 0 for every row).
    pub async fn select_default_values(&self, columns: &[ColumnInfo]) -> Vec<DefaultValue> {
        let mut out = Vec::new();
        for col in columns {
            let (DefaultKind::Default, Some(expr)) = (&col.default_kind, &col.default_expression)
            else {
                continue;
            };
            let sql = format!(
                "SELECT CAST(({expr}) AS {}) FROM (SELECT 1 AS sluice_constant) FORMAT RowBinary",
                col.type_name
            );
            let value = self.query_bytes(sql).await;
            out.push(DefaultValue {
                column: col.name.clone(),
                expression: expr.clone(),
                volatile: is_volatile(expr),
                value,
            });
        }
        out
    }

    /// Sends one INSERT (one POST, no retry). On failure the error is classified: retry the
    /// same request on [`InsertError::Retryable`], dead-letter on [`InsertError::BadData`],
    /// stop on [`InsertError::Fatal`].
    pub async fn insert(&self, req: &InsertRequest) -> Result<InsertAck, InsertError> {
        let started = Instant::now();
        let inner = &self.inner;
        if req.format == InsertFormat::RowBinaryWithDefaults
            && !inner.server.supports_row_binary_with_defaults
        {
            return Err(InsertError::Fatal {
                code: None,
                message: format!(
                    "ClickHouse {} at {} has no RowBinaryWithDefaults format",
                    inner.server.version_string, inner.display_url
                ),
            });
        }
        let sql = insert_sql(req);
        let packed = matches!(req.body, InsertBody::Packed { .. });
        let (head, body, content_encoding) = match &req.body {
            // Uncompressed: the header and the rows go out as two chunks, never copied.
            InsertBody::Plain(rows) if inner.encoding == Encoding::Identity => {
                (req.header.clone(), rows.clone(), None)
            }
            InsertBody::Plain(rows) => {
                let whole = if req.header.is_empty() {
                    rows.clone()
                } else {
                    let mut joined = BytesMut::with_capacity(req.header.len() + rows.len());
                    joined.extend_from_slice(&req.header);
                    joined.extend_from_slice(rows);
                    joined.freeze()
                };
                let body =
                    encode_body(inner.encoding, &whole)
                        .await
                        .map_err(|e| InsertError::Fatal {
                            code: None,
                            message: format!("cannot compress the insert body: {e}"),
                        })?;
                (Bytes::new(), body, inner.encoding.header())
            }
            InsertBody::Packed { blocks, .. } if req.header.is_empty() => {
                (Bytes::new(), blocks.clone(), None)
            }
            InsertBody::Packed { blocks, .. } => {
                let method = super::native_lz4::first_method(blocks).unwrap_or(Method::Lz4);
                (header_block(&req.header, method), blocks.clone(), None)
            }
        };
        inner
            .send_insert(
                req,
                &sql,
                failpoint_body(head, body),
                content_encoding,
                packed,
            )
            .await
            .map(|mut ack| {
                ack.elapsed = started.elapsed();
                ack
            })
    }
}

impl Inner {
    /// POSTs one INSERT of `req`'s table and columns with `body` and classifies the outcome.
    async fn send_insert(
        &self,
        req: &InsertRequest,
        sql: &str,
        body: reqwest::Body,
        content_encoding: Option<&'static str>,
        packed: bool,
    ) -> Result<InsertAck, InsertError> {
        let started = Instant::now();
        let settings = insert_settings(&self.server, req.dedup_token.as_deref());
        let mut params: Vec<(&str, &str)> = Vec::with_capacity(settings.len() + 2);
        params.push(("query", sql));
        params.extend(settings.iter().map(|(k, v)| (*k, v.as_str())));
        params.extend(
            self.insert_settings
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if packed {
            params.push(("decompress", "1"));
        }
        if req.format == InsertFormat::RowBinaryWithNamesAndTypes {
            // Map by the header's names and compare its types, whatever the user's profile
            // says (either set to 0 would skip the header's rows unread).
            params.push(("input_format_with_names_use_header", "1"));
            params.push(("input_format_with_types_use_header", "1"));
        }
        let answer = match self.post_body(&params, body, content_encoding).await {
            Ok(a) => a,
            Err(e) => {
                let err = self.transport_error(e);
                return Err(InsertError::Retryable {
                    code: None,
                    message: err.to_string(),
                });
            }
        };
        // Nothing is streamed back for an INSERT, but a failure after the status line would
        // show in the body or the exception header; never acknowledge it.
        if let Some(exc) = self.answer_exception(&answer) {
            let message = format!(
                "{}.{} at {}: {}",
                req.database,
                req.table,
                self.display_url,
                scrub(&exc.message, self.password.as_ref().map(|p| p.expose()))
            );
            let err = InsertError::from_failure(exc.code, Some(answer.status.as_u16()), message);
            tracing::debug!(table = %req.table, code = ?exc.code, class = ?err.class(), "insert failed");
            return Err(err);
        }
        let ack = InsertAck {
            written_rows: written_rows(&answer.headers),
            elapsed: started.elapsed(),
        };
        tracing::debug!(
            table = %req.table,
            bytes = req.body.raw_len(),
            written_rows = ?ack.written_rows,
            elapsed_ms = ack.elapsed.as_millis() as u64,
            "insert acknowledged"
        );
        Ok(ack)
    }
}

/// The `X-ClickHouse-Exception-Code` header of `answer`, if any (26.x sends it, 18.16 not).
fn exception_header(answer: &Answer) -> Option<&str> {
    answer
        .headers
        .get("x-clickhouse-exception-code")
        // A value that is not text still names an exception.
        .map(|v| v.to_str().unwrap_or("?"))
}

/// `data` as one block of ClickHouse's compressed format, to lead a `decompress=1` body whose
/// blocks are of `method`: the server refuses a body whose blocks mix methods ("Data
/// compressed with different methods", seen on 26.9 for a stored block before LZ4 ones).
fn header_block(data: &[u8], method: Method) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 32);
    // Writing into a Vec cannot fail; an empty block stands in if it ever did, and the
    // server then refuses the body for its missing header (nothing is stored).
    if super::native_lz4::append_block_as(&mut out, data, method).is_err() {
        out.clear();
    }
    Bytes::from(out)
}

async fn encode_body(encoding: Encoding, body: &Bytes) -> std::io::Result<Bytes> {
    if encoding == Encoding::Identity || body.len() < BLOCKING_COMPRESS_THRESHOLD {
        return encoding.encode(body);
    }
    let body = body.clone();
    tokio::task::spawn_blocking(move || encoding.encode(&body))
        .await
        .map_err(std::io::Error::other)?
}

impl Inner {
    /// POSTs `body` with `params` (plus `database`) in the URL.
    async fn post(
        &self,
        params: &[(&str, &str)],
        body: Bytes,
        content_encoding: Option<&'static str>,
    ) -> Result<Answer, reqwest::Error> {
        self.post_body(params, failpoint_body(Bytes::new(), body), content_encoding)
            .await
    }

    /// [`Inner::post`] with any body, a streamed one included.
    async fn post_body(
        &self,
        params: &[(&str, &str)],
        body: reqwest::Body,
        content_encoding: Option<&'static str>,
    ) -> Result<Answer, reqwest::Error> {
        let mut url = self.base.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("database", &self.database);
            for (k, v) in params {
                q.append_pair(k, v);
            }
        }
        let mut req = self.http.post(url).body(body);
        if let Some(enc) = content_encoding {
            req = req.header(CONTENT_ENCODING, enc);
        }
        let mut resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = BytesMut::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                // 26.9 ends a streamed response that failed mid-way with an `__exception__`
                // block and then closes the connection without the final chunk. Keep what
                // arrived when it carries the exception: that is the error worth reporting.
                Err(e) => {
                    if find_trailing_exception(&String::from_utf8_lossy(&body)).is_some() {
                        break;
                    }
                    return Err(e);
                }
            }
        }
        Ok(Answer {
            status,
            headers,
            body: body.freeze(),
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> ChError {
        let url = self.display_url.clone();
        match describe_transport(&e) {
            TransportFailure::Timeout => ChError::Timeout {
                url,
                timeout: if e.is_connect() {
                    self.connect_timeout
                } else {
                    self.request_timeout
                },
            },
            TransportFailure::Unreachable(reason) => ChError::Unreachable { url, reason },
            TransportFailure::Tls(reason) => ChError::Tls { url, reason },
            TransportFailure::Other(reason) => ChError::Transport { url, reason },
        }
    }

    fn parse_exception(&self, answer: &Answer) -> ServerException {
        parse_error_response(
            exception_header(answer),
            &String::from_utf8_lossy(&answer.body),
        )
    }

    /// The exception `answer` carries, a `200 OK` included (see [`answer_exception`]).
    fn answer_exception(&self, answer: &Answer) -> Option<ServerException> {
        answer_exception(
            answer.status == StatusCode::OK,
            exception_header(answer),
            &String::from_utf8_lossy(&answer.body),
        )
    }

    fn server_error(&self, status: u16, exc: ServerException) -> ChError {
        let message = scrub(&exc.message, self.password.as_ref().map(|p| p.expose()));
        match exc.code {
            Some(code @ (192 | 193 | 194 | 516)) => ChError::Auth {
                user: self.user.clone(),
                code,
                message,
            },
            Some(code @ (164 | 497)) => ChError::AccessDenied {
                user: self.user.clone(),
                code,
                message,
            },
            code => ChError::Server {
                url: self.display_url.clone(),
                status,
                code,
                message,
            },
        }
    }

    /// Body text of a successful query, or the server's error.
    fn check_query_answer(&self, answer: &Answer) -> Result<String, ChError> {
        if let Some(exc) = self.answer_exception(answer) {
            return Err(self.server_error(answer.status.as_u16(), exc));
        }
        Ok(String::from_utf8_lossy(&answer.body).into_owned())
    }

    /// Which of our settings `system.settings` lists; `None` if it cannot be read.
    async fn probe_settings(&self) -> Option<BTreeSet<String>> {
        let names: Vec<String> = SETTINGS_WE_SEND.iter().map(|s| quote_str(s)).collect();
        let sql = format!(
            "SELECT name FROM system.settings WHERE name IN ({}) FORMAT TSV",
            names.join(", ")
        );
        let text = self.probe_query(sql).await?;
        Some(
            text.lines()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect(),
        )
    }

    /// The server's `max_insert_block_size` for this user: the most rows its insert reads
    /// into one block ([`Streaming::Guarded`]).
    async fn probe_max_insert_block_size(&self) -> Option<u64> {
        self.probe_query(
            "SELECT value FROM system.settings WHERE name = 'max_insert_block_size' FORMAT TSV",
        )
        .await?
        .trim()
        .parse()
        .ok()
    }

    /// Whether `system.formats` lists RowBinaryWithDefaults as an input format.
    async fn probe_rbwd(&self) -> Option<bool> {
        let text = self
            .probe_query(
                "SELECT count() FROM system.formats WHERE name = 'RowBinaryWithDefaults' \
                 AND is_input FORMAT TSV",
            )
            .await?;
        Some(text.trim() != "0")
    }

    /// The answer to a start-up probe, `None` when the server could not give one.
    /// Asks the server to run `SELECT 1` with the user's INSERT settings, so that a setting it
    /// does not know, a value it does not take, or one the user may not change (a readonly
    /// profile, a constraint) stops the start with the server's reason, not every insert.
    async fn check_insert_settings(&self) -> Result<(), ChError> {
        if self.insert_settings.is_empty() {
            return Ok(());
        }
        let params: Vec<(&str, &str)> = self
            .insert_settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let answer = self
            .post(&params, Bytes::from_static(b"SELECT 1"), None)
            .await
            .map_err(|e| self.transport_error(e))?;
        self.check_query_answer(&answer)
            .map(|_| ())
            .map_err(|e| ChError::InvalidSettings {
                field: "insert_settings",
                reason: format!("the server refuses them: {e}"),
            })
    }

    async fn probe_query(&self, sql: impl Into<Bytes>) -> Option<String> {
        let answer = self.post(&[], sql.into(), None).await.ok()?;
        self.check_query_answer(&answer).ok()
    }

    /// Sends `SELECT 1` with an lz4-encoded empty body: 26.9 answers 1, 18.16 answers Code 89
    /// (unknown Content-Encoding). Any other outcome is "unknown" (`None`).
    async fn probe_lz4(&self) -> Option<bool> {
        let empty = Encoding::Lz4.encode(&Bytes::new()).ok()?;
        let answer = self
            .post(&[("query", "SELECT 1")], empty, Some("lz4"))
            .await
            .ok()?;
        if answer.status == StatusCode::OK {
            return Some(String::from_utf8_lossy(&answer.body).trim() == "1");
        }
        (self.parse_exception(&answer).code == Some(89)).then_some(false)
    }
}

/// The request body, or in debug builds with the `insert_mid_body` failpoint due, a stream
/// that sends the first half, waits so it reaches the server, and crashes the process: a kill
/// in the middle of an HTTP body, for the torture tests.
/// `head` then `body` as one request body (`head` may be empty). The `insert_mid_body`
/// failpoint sends the head and half the body, then crashes the process.
fn failpoint_body(head: Bytes, body: Bytes) -> reqwest::Body {
    if body.len() < 2 || !crate::failpoint::due("insert_mid_body") {
        if head.is_empty() {
            return reqwest::Body::from(body);
        }
        return reqwest::Body::wrap_stream(futures::stream::iter([
            Ok::<Bytes, std::io::Error>(head),
            Ok(body),
        ]));
    }
    let mut first = BytesMut::from(&head[..]);
    first.extend_from_slice(&body[..body.len() / 2]);
    let half = first.freeze();
    let parts = futures::stream::unfold(0u8, move |step| {
        let half = half.clone();
        async move {
            match step {
                0 => Some((Ok::<Bytes, std::io::Error>(half), 1)),
                _ => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    crate::failpoint::crash("insert_mid_body")
                }
            }
        }
    });
    reqwest::Body::wrap_stream(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(columns: &[&str]) -> InsertRequest {
        InsertRequest {
            database: "db".into(),
            table: "t`x".into(),
            columns: columns.iter().map(|s| s.to_string()).collect(),
            format: InsertFormat::RowBinary,
            header: Bytes::new(),
            body: Bytes::new().into(),
            dedup_token: None,
        }
    }

    #[test]
    fn insert_statement() {
        assert_eq!(
            insert_sql(&req(&["a", "b c"])),
            "INSERT INTO `db`.`t\\`x` (`a`, `b c`) FORMAT RowBinary"
        );
        assert_eq!(
            insert_sql(&req(&[])),
            "INSERT INTO `db`.`t\\`x` FORMAT RowBinary"
        );
        let mut r = req(&["a"]);
        r.format = InsertFormat::RowBinaryWithDefaults;
        assert!(insert_sql(&r).ends_with("FORMAT RowBinaryWithDefaults"));
    }

    #[test]
    fn url_validation() {
        let (u, d) = parse_url("http://127.0.0.1:18123").expect("valid");
        assert_eq!(d, "http://127.0.0.1:18123");
        assert_eq!(u.path(), "/");
        let (_, d) = parse_url("https://ch.example.com/proxy/").expect("valid");
        assert_eq!(d, "https://ch.example.com:443/proxy");
        let err = parse_url("http://bob:s3cret@h:8123").expect_err("credentials");
        assert!(!err.to_string().contains("s3cret"));
        assert!(parse_url("ftp://h").is_err());
        assert!(parse_url("http://h:8123/?user=x").is_err());
        assert!(parse_url("not a url").is_err());
    }

    #[test]
    fn loopback_hosts() {
        let lb = |u: &str| is_loopback(&Url::parse(u).expect("url"));
        assert!(lb("http://127.0.0.1:8123/"));
        assert!(lb("http://127.1.2.3:8123/"));
        assert!(lb("http://localhost:8123/"));
        assert!(lb("http://[::1]:8123/"));
        assert!(!lb("http://10.0.0.1:8123/"));
        assert!(!lb("https://ch.example.com/"));
        assert!(!lb("http://[2001:db8::1]:8123/"));
    }

    #[test]
    fn engine_settings_parse() {
        let full = "MergeTree ORDER BY a SETTINGS non_replicated_deduplication_window = 100, \
                    index_granularity = 8192";
        assert_eq!(
            engine_setting(full, "non_replicated_deduplication_window").as_deref(),
            Some("100")
        );
        assert_eq!(
            engine_setting(full, "index_granularity").as_deref(),
            Some("8192")
        );
        assert_eq!(
            engine_setting(full, "replicated_deduplication_window"),
            None
        );
        assert_eq!(
            engine_setting("MergeTree ORDER BY a", "index_granularity"),
            None
        );
        let q =
            "ReplicatedMergeTree('/p', '{replica}') ORDER BY a SETTINGS storage_policy = 'a,b', \
                 replicated_deduplication_window = 7";
        assert_eq!(
            engine_setting(q, "replicated_deduplication_window").as_deref(),
            Some("7")
        );
    }

    #[test]
    fn keep_alive_header() {
        let mut h = HeaderMap::new();
        h.insert(
            "keep-alive",
            HeaderValue::from_static("timeout=30, max=9999"),
        );
        assert_eq!(parse_keep_alive(&h), Some(Duration::from_secs(30)));
        h.insert("keep-alive", HeaderValue::from_static("timeout=3"));
        assert_eq!(parse_keep_alive(&h), Some(Duration::from_secs(3)));
        assert_eq!(
            pool_idle_for(Duration::from_secs(3)),
            Duration::from_secs(2)
        );
        assert_eq!(
            pool_idle_for(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(parse_keep_alive(&HeaderMap::new()), None);
    }

    #[test]
    fn summary_header() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-clickhouse-summary",
            HeaderValue::from_static(
                r#"{"read_rows":"0","written_rows":"3","written_bytes":"12"}"#,
            ),
        );
        assert_eq!(written_rows(&h), Some(3));
        assert_eq!(written_rows(&HeaderMap::new()), None);
    }

    #[test]
    fn volatile_defaults() {
        assert!(is_volatile("now()"));
        assert!(is_volatile("toDate(now ())"));
        assert!(is_volatile("generateUUIDv4()"));
        assert!(!is_volatile("'now'"));
        assert!(!is_volatile("snow()"));
        assert!(!is_volatile("42"));
        assert!(!is_volatile("know_now"));
    }

    #[test]
    fn default_kinds() {
        assert_eq!(DefaultKind::parse(""), DefaultKind::None);
        assert_eq!(DefaultKind::parse("EPHEMERAL"), DefaultKind::Ephemeral);
        assert!(!DefaultKind::parse("MATERIALIZED").insertable());
        assert!(DefaultKind::parse("DEFAULT").insertable());
        assert_eq!(DefaultKind::parse("X"), DefaultKind::Other("X".into()));
    }

    #[test]
    fn credentials_header_rejects_control_chars_without_echo() {
        let mut s = ClickHouseSettings::new("http://h:1");
        s.password = Some(super::super::Secret::new("bad\npw"));
        let err = HttpConfig::from_settings(&s, false)
            .err()
            .expect("rejected");
        assert!(!err.to_string().contains("bad"), "{err}");
    }
}
