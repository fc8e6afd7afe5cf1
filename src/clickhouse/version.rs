//! Server version, the capabilities derived from it, and the per-version INSERT settings.
//!
//! Guarantees:
//! - The client only sends settings the server knows: an unknown setting fails the whole
//!   request on old servers (18.16: HTTP 404, Code 115). Each capability is first derived from
//!   the version (thresholds below) and then, at connect, checked against the server itself
//!   ([`ServerInfo::refine`]): the setting must be listed in `system.settings`, the format in
//!   `system.formats`, and `Content-Encoding: lz4` must be accepted by a real request. A server
//!   whose build disagrees with its version number (forks, backports) is therefore handled.
//! - [`insert_settings`] is a pure function of [`ServerInfo`] and the token, unit-tested.
//!
//! Version thresholds (where the probe cannot be made, these decide alone):
//! - `insert_deduplication_token`: 22.2.
//! - `async_insert`: 21.11. 26.9 defaults it to 1; we send 0 so an acknowledged INSERT is
//!   stored, not merely queued.
//! - `RowBinaryWithDefaults`: 23.7 (the format was added mid-2023; on the 26.9 test server it
//!   exists, on 18.16 it does not: "Unknown format RowBinaryWithDefaults", Code 73).
//! - request `Content-Encoding: lz4` (LZ4 frame): 22.1 as a conservative guess; 26.9 accepts it,
//!   18.16 answers Code 89 "Unknown Content-Encoding of HTTP request: lz4". Gzip works on both.
//! - query parameters (`{name:Type}` + `param_name=`): 19.11; 18.16 answers Code 115 for
//!   `param_x`.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// A ClickHouse version: `major.minor.patch` (the build number is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Year-based major version, e.g. 26 or 18.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl Version {
    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `SELECT version()` output such as `26.9.2.1`, `18.16.1` or
    /// `23.8.1.2992.altinitystable`. Needs at least `major.minor`; a missing patch is 0.
    pub fn parse(text: &str) -> Option<Version> {
        // Each part is read up to its first non-digit, so "24.3-lts" is 24.3.0.
        fn leading(part: Option<&str>) -> Option<u32> {
            let digits: String = part?.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        }
        let mut parts = text.trim().split('.');
        let major = leading(parts.next())?;
        let minor = leading(parts.next())?;
        let patch = leading(parts.next()).unwrap_or(0);
        Some(Version {
            major,
            minor,
            patch,
        })
    }

    /// True when this version is `major.minor` or later.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What the connected server is and can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Parsed version.
    pub version: Version,
    /// `SELECT version()` as the server printed it.
    pub version_string: String,
    /// `insert_deduplication_token` exists (>= 22.2).
    pub supports_dedup_token: bool,
    /// `async_insert` exists (>= 21.11), so we must send `async_insert=0`.
    pub supports_async_insert_setting: bool,
    /// `FORMAT RowBinaryWithDefaults` exists (>= 23.7; checked in `system.formats`).
    pub supports_row_binary_with_defaults: bool,
    /// The server accepts `Content-Encoding: lz4` request bodies (checked by a real request).
    pub supports_lz4_content_encoding: bool,
    /// `{name:Type}` query parameters (>= 19.11).
    pub supports_query_params: bool,
    /// `FORMAT RowBinaryWithNamesAndTypes` inserts whose header types the server compares
    /// with the table's (`input_format_with_types_use_header`, >= 22.1 and listed in
    /// `system.settings`): a column whose type changed under a running sluice rejects the
    /// insert instead of reading its bytes as the new type.
    pub supports_typed_header: bool,
    /// The server's HTTP keep-alive timeout (from its `Keep-Alive: timeout=N` header), which
    /// bounds how long an idle pooled connection may be reused.
    pub keep_alive_timeout: Option<Duration>,
    /// The time zone of the server's sessions (`SELECT timezone()`), in which ClickHouse reads
    /// a date-time it infers from text (Dynamic columns); `None` if it could not be read.
    pub time_zone: Option<chrono_tz::Tz>,
    /// Settings from our list that the server's `system.settings` has; `None` when that table
    /// could not be read (the version thresholds alone decide then).
    known_settings: Option<BTreeSet<String>>,
}

/// Every setting this client may put in a URL; the connect probe asks the server which exist.
pub const SETTINGS_WE_SEND: &[&str] = &[
    "async_insert",
    "insert_deduplicate",
    "insert_deduplication_token",
    "input_format_allow_errors_num",
    "input_format_allow_errors_ratio",
    "send_progress_in_http_headers",
    "deduplicate_blocks_in_dependent_materialized_views",
    "input_format_with_names_use_header",
    "input_format_with_types_use_header",
    JSON_AS_TEXT,
];

/// JSON column values in RowBinary read as the text of a JSON object, which is how sluice
/// sends them (ClickHouse 24.10 and later; the JSON type came in 24.8).
pub const JSON_AS_TEXT: &str = "input_format_binary_read_json_as_string";

impl ServerInfo {
    /// Capabilities from the version number alone.
    pub fn from_version(version: Version, version_string: impl Into<String>) -> Self {
        ServerInfo {
            version,
            version_string: version_string.into(),
            supports_dedup_token: version.at_least(22, 2),
            supports_async_insert_setting: version.at_least(21, 11),
            supports_row_binary_with_defaults: version.at_least(23, 7),
            supports_lz4_content_encoding: version.at_least(22, 1),
            supports_query_params: version.at_least(19, 11),
            supports_typed_header: version.at_least(22, 1),
            keep_alive_timeout: None,
            time_zone: None,
            known_settings: None,
        }
    }

    /// Corrects the version-derived flags with what the server itself reported.
    ///
    /// `known_settings`: names from [`SETTINGS_WE_SEND`] present in `system.settings`.
    /// `has_row_binary_with_defaults`: whether `system.formats` lists it as an input format.
    /// `lz4_accepted`: whether an lz4-encoded request succeeded. `None` = not probed.
    pub fn refine(
        mut self,
        known_settings: Option<BTreeSet<String>>,
        has_row_binary_with_defaults: Option<bool>,
        lz4_accepted: Option<bool>,
    ) -> Self {
        if let Some(known) = &known_settings {
            // A setting is sent only if the version says so AND the server lists it.
            self.supports_dedup_token &= known.contains("insert_deduplication_token");
            self.supports_async_insert_setting &= known.contains("async_insert");
            self.supports_typed_header &= known.contains("input_format_with_types_use_header")
                && known.contains("input_format_with_names_use_header");
        }
        self.known_settings = known_settings;
        if let Some(has) = has_row_binary_with_defaults {
            self.supports_row_binary_with_defaults = has;
        }
        if let Some(ok) = lz4_accepted {
            self.supports_lz4_content_encoding = ok;
        }
        self
    }

    /// True when `name` may be sent: listed by the server, or (if the list could not be read)
    /// not one of the settings known to be version-dependent.
    pub fn knows_setting(&self, name: &str) -> bool {
        match &self.known_settings {
            Some(known) => known.contains(name),
            None => match name {
                "async_insert" => self.supports_async_insert_setting,
                "insert_deduplication_token" => self.supports_dedup_token,
                "input_format_with_names_use_header" | "input_format_with_types_use_header" => {
                    self.supports_typed_header
                }
                JSON_AS_TEXT => self.version.at_least(24, 10),
                // Not in 18.16's system.settings (checked); present in 19.x and later.
                "deduplicate_blocks_in_dependent_materialized_views" => {
                    self.version.at_least(19, 1)
                }
                _ => true,
            },
        }
    }
}

/// The settings of an INSERT for this server, in URL order.
///
/// - `async_insert=0`: acknowledged means stored (26.9 defaults to 1, which acknowledges a
///   queued insert and deduplicates differently).
/// - `insert_deduplicate=1`: the block-level deduplication exactly-once relies on.
/// - `insert_deduplication_token`: only when given and supported; on older servers
///   deduplication falls back to the block hash, which holds because retries re-send the very
///   same bytes.
/// - `input_format_allow_errors_num=0`, `input_format_allow_errors_ratio=0`: never skip a bad
///   row silently; reject the batch so it can be dead-lettered whole.
/// - `send_progress_in_http_headers=0`: no progress headers, so the status line is final.
/// - `input_format_binary_read_json_as_string=1`: JSON columns' values are JSON text.
pub fn insert_settings(
    server: &ServerInfo,
    dedup_token: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::with_capacity(6);
    let mut push = |name: &'static str, value: String| {
        if server.knows_setting(name) {
            out.push((name, value));
        }
    };
    if server.supports_async_insert_setting {
        push("async_insert", "0".into());
    }
    push("insert_deduplicate", "1".into());
    if let Some(token) = dedup_token {
        if server.supports_dedup_token {
            push("insert_deduplication_token", token.to_owned());
        }
    }
    push("input_format_allow_errors_num", "0".into());
    push("input_format_allow_errors_ratio", "0".into());
    push("send_progress_in_http_headers", "0".into());
    // Materialized views fed by the table are deduplicated with it only when asked; without
    // this a retried (deduplicated) block would still reach the views a second time.
    push(
        "deduplicate_blocks_in_dependent_materialized_views",
        "1".into(),
    );
    // Only JSON columns read it; sent to every insert so that a table's plan need not say.
    push(JSON_AS_TEXT, "1".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &[(&'static str, String)]) -> Vec<&'static str> {
        s.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn parse_versions() {
        assert_eq!(Version::parse("26.9.2.1"), Some(Version::new(26, 9, 2)));
        assert_eq!(Version::parse("18.16.1\n"), Some(Version::new(18, 16, 1)));
        assert_eq!(
            Version::parse("23.8.1.2992.altinitystable"),
            Some(Version::new(23, 8, 1))
        );
        assert_eq!(Version::parse("24.3"), Some(Version::new(24, 3, 0)));
        assert_eq!(Version::parse("24.3-lts"), Some(Version::new(24, 3, 0)));
        assert_eq!(Version::parse(""), None);
        assert_eq!(Version::parse("abc"), None);
        assert!(Version::new(22, 2, 0).at_least(22, 2));
        assert!(!Version::new(22, 1, 9).at_least(22, 2));
        assert!(Version::new(23, 1, 0).at_least(22, 12));
    }

    #[test]
    fn flags_by_version() {
        let old = ServerInfo::from_version(Version::new(18, 16, 1), "18.16.1");
        assert!(!old.supports_dedup_token);
        assert!(!old.supports_async_insert_setting);
        assert!(!old.supports_row_binary_with_defaults);
        assert!(!old.supports_lz4_content_encoding);
        assert!(!old.supports_query_params);

        let mid = ServerInfo::from_version(Version::new(21, 11, 0), "21.11");
        assert!(mid.supports_async_insert_setting);
        assert!(!mid.supports_dedup_token);
        assert!(mid.supports_query_params);

        let new = ServerInfo::from_version(Version::new(26, 9, 2), "26.9.2.1");
        assert!(new.supports_dedup_token);
        assert!(new.supports_async_insert_setting);
        assert!(new.supports_row_binary_with_defaults);
        assert!(new.supports_lz4_content_encoding);
        assert!(new.supports_query_params);
    }

    #[test]
    fn settings_for_18_16() {
        let s = ServerInfo::from_version(Version::new(18, 16, 1), "18.16.1");
        let got = insert_settings(&s, Some("tok"));
        assert_eq!(
            names(&got),
            [
                "insert_deduplicate",
                "input_format_allow_errors_num",
                "input_format_allow_errors_ratio",
                "send_progress_in_http_headers"
            ]
        );
    }

    #[test]
    fn settings_for_26_9() {
        let s = ServerInfo::from_version(Version::new(26, 9, 2), "26.9.2.1");
        let got = insert_settings(&s, Some("t-1"));
        assert_eq!(got[0], ("async_insert", "0".to_owned()));
        assert!(got.contains(&("insert_deduplication_token", "t-1".to_owned())));
        assert!(got.contains(&("insert_deduplicate", "1".to_owned())));
        let without = insert_settings(&s, None);
        assert!(!names(&without).contains(&"insert_deduplication_token"));
    }

    #[test]
    fn refine_drops_settings_the_server_lacks() {
        // A build claiming 26.9 whose system.settings lacks the token setting (a fork).
        let known: BTreeSet<String> = ["async_insert", "insert_deduplicate"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = ServerInfo::from_version(Version::new(26, 9, 2), "26.9.2.1").refine(
            Some(known),
            Some(false),
            Some(false),
        );
        assert!(!s.supports_dedup_token);
        assert!(!s.supports_row_binary_with_defaults);
        assert!(!s.supports_lz4_content_encoding);
        let got = insert_settings(&s, Some("tok"));
        assert_eq!(names(&got), ["async_insert", "insert_deduplicate"]);
    }

    #[test]
    fn refine_never_enables_a_setting_the_version_lacks() {
        let known: BTreeSet<String> = SETTINGS_WE_SEND.iter().map(|s| s.to_string()).collect();
        let s = ServerInfo::from_version(Version::new(18, 16, 1), "18.16.1").refine(
            Some(known),
            None,
            Some(true),
        );
        assert!(!s.supports_dedup_token);
        assert!(s.supports_lz4_content_encoding);
    }
}
