//! ClickHouse HTTP client: connect, inspect tables, insert RowBinary.
//!
//! # What this module guarantees
//! - **One INSERT = one HTTP POST, no hidden retry.** [`Client::insert`] sends the caller's
//!   bytes once and returns an acknowledgement or an [`InsertError`] already classified into
//!   retry / bad data / fatal ([`retry::classify`], codes documented there). Retrying is the
//!   caller's decision, with the same [`InsertRequest`] (same bytes, same token) and a
//!   [`retry::Backoff`].
//! - **Acknowledged means stored.** Inserts are synchronous (`async_insert=0` where the server
//!   has the setting; 26.9 defaults it to 1), with `insert_deduplicate=1`, the deduplication
//!   token when given and supported (>= 22.2), and zero tolerated bad rows. A `200 OK` whose
//!   body ends in an exception, or that names one in `X-ClickHouse-Exception-Code` (servers
//!   before 24.6 answered a timed-out INSERT body so, with nothing stored), is a failure.
//! - **Only settings the server knows are sent.** Capabilities come from the version and are
//!   checked against the server at connect ([`version`]); 18.16 fails a request carrying any
//!   unknown setting (Code 115).
//! - **Credentials never leave the headers.** They travel as `X-ClickHouse-User` /
//!   `X-ClickHouse-Key` (marked sensitive; both accepted by 18.16 and 26.9), never in the URL;
//!   URLs in errors carry no credentials (a URL with `user:pass@` is refused); server messages
//!   are scrubbed of the password; redirects are not followed, so the key header is never
//!   replayed to another host.
//! - **TLS:** `https` URLs verify the server certificate and host name always (webpki roots plus
//!   the optional `ca_file`); `client_cert` + `client_key` give mTLS.
//!
//! # Compression (measured)
//! Request bodies are compressed per [`Compression`]. Measured on the 26.9 test server over
//! loopback (`tests/clickhouse_client.rs::bench_encodings`, release build, 1M rows of
//! (UInt64, String, Float64) = 30.8 MB of RowBinary per INSERT, 9 interleaved rounds, median;
//! 2-core machine with other builds running, so absolute numbers are noisy, the order was
//! the same in every run):
//!
//! | encoding | wire size | INSERT median | client compression |
//! |----------|-----------|---------------|--------------------|
//! | none     | 30.8 MB   | 210-240 ms    | 0                  |
//! | lz4      | 16.7 MB   | 270-330 ms    | 95-240 ms          |
//! | gzip (1) | 10.6 MB   | 460-560 ms    | 175-390 ms         |
//!
//! On loopback, bandwidth is free and compression is pure CPU on both sides, so
//! [`Compression::Auto`] sends raw bytes to a loopback server (`localhost`, 127.0.0.0/8, ::1).
//! To any other address it sends LZ4 where the server accepts `Content-Encoding: lz4` (26.9
//! yes; 18.16 no, Code 89), else gzip level 1: LZ4 halves the bytes for roughly half of gzip's
//! CPU, and a real network is where the bytes cost time. That remote choice is reasoned, not
//! measured here (the test bed has no real network).
//!
//! Batches held compressed in memory ([`compress::Packing`]) travel in another format:
//! ClickHouse's own LZ4 blocks with `decompress=1` ([`native_lz4`]), which every version reads.
//!
//! # Server differences seen (18.16.1 and 26.9.2.1)
//! - Exception code header `X-ClickHouse-Exception-Code`: 26.9 only; 18.16 puts it in the body
//!   as `Code: N, e.displayText() = ...`. Both are parsed ([`error`]).
//! - `system.columns` has `position` on 26.9 only; 18.16 lists ordinary columns first, then
//!   MATERIALIZED, then ALIAS (declaration order is lost there).
//! - A RowBinary byte outside an Enum8's values is *accepted* by both servers (HTTP 200) and
//!   makes later SELECTs fail: the encoder must validate Enum values itself.
//! - A query failing after 26.9 has started streaming ends with an `__exception__` block, and
//!   then the server closes the connection without the final chunk; the client keeps the
//!   partial body and reports the exception rather than the broken transfer.
//! - On 18.16 an absurd string length prefix is answered with Code 241 MEMORY_LIMIT_EXCEEDED
//!   (retryable), not 131 as on 26.9: a corrupt batch can look transient there.

pub mod add_column;
pub mod client;
pub mod compress;
pub mod error;
pub mod native_lz4;
pub mod retry;
pub mod secret;
pub mod shards;
pub mod sql;
pub mod stream;
pub mod version;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{
    typed_header, Client, ColumnInfo, DefaultKind, DefaultValue, InsertAck, InsertFormat,
    InsertRequest, QualifiedName, TableInfo,
};
pub use compress::Compression;
pub use error::{ChError, InsertError};
pub use retry::{classify, Backoff, Class};
pub use secret::Secret;
pub use stream::{InsertStream, Streaming};
pub use version::{ServerInfo, Version, JSON_AS_TEXT};

/// How to reach ClickHouse.
#[derive(Debug, Clone)]
pub struct ClickHouseSettings {
    /// `http://host:port` or `https://host:port` (an optional path prefix is kept, for
    /// proxies). Must not contain credentials.
    pub url: String,
    /// Database for unqualified names in [`Client::query`] (sent as the `database` parameter).
    pub database: String,
    /// User name; `None` means the server's `default` user.
    pub user: Option<String>,
    /// Password; `None` means empty.
    pub password: Option<Secret>,
    /// Extra trusted CA (PEM), for servers with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS; needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS; needs `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Trusted CA certificates (DER) read from a Java truststore, instead of `ca_file`.
    pub trusted: Vec<Vec<u8>>,
    /// A client certificate chain and key as one PEM text (from a Java keystore), instead of
    /// `client_cert` and `client_key`.
    pub identity_pem: Option<Secret>,
    /// Request body compression for inserts.
    pub compression: Compression,
    /// Stream batches the memory budget would cut short, where the server allows it
    /// ([`Client::streams_inserts`]).
    pub stream_inserts: bool,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (send, server work, response).
    pub request_timeout: Duration,
    /// The user's settings for every INSERT (`clickhouse.insert_settings`), sent after
    /// sluice's own; checked by the server when the client connects.
    pub insert_settings: Vec<(String, String)>,
}

impl ClickHouseSettings {
    /// Settings for `url` with defaults: database `default`, no credentials, no TLS files,
    /// auto compression, 5 s connect timeout, 60 s request timeout.
    pub fn new(url: impl Into<String>) -> Self {
        ClickHouseSettings {
            url: url.into(),
            database: "default".to_owned(),
            user: None,
            password: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            trusted: Vec::new(),
            identity_pem: None,
            compression: Compression::Auto,
            stream_inserts: true,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            insert_settings: Vec::new(),
        }
    }
}
