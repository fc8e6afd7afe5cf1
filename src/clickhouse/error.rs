//! Errors of the ClickHouse client, and parsing of ClickHouse's own exception messages.
//!
//! Guarantees:
//! - Every message names the server by its URL *without* credentials or query string.
//! - No message contains the configured password: server text goes through [`scrub`] before it
//!   is stored in an error (ClickHouse does not echo passwords today; this is defence in depth).
//! - Exceptions are recognised in both the modern body format
//!   (`Code: 60. DB::Exception: ... (UNKNOWN_TABLE) (version 26.9.2.1)`), the 18.16 one
//!   (`Code: 60, e.displayText() = DB::Exception: ..., e.what() = DB::Exception`) and at the end
//!   of a streamed `200 OK` body, tagged (`__exception__` blocks, 25.x+) or not (older).

use std::time::Duration;

use super::retry::{classify, Class};

/// Errors of connection set-up, queries and metadata look-ups.
#[derive(Debug, thiserror::Error)]
pub enum ChError {
    /// A settings value cannot work (bad URL, unreadable certificate file...).
    #[error("invalid ClickHouse setting `{field}`: {reason}")]
    InvalidSettings {
        /// The settings field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No TCP connection could be made (refused, DNS, no route).
    #[error("ClickHouse at {url} is unreachable: {reason}")]
    Unreachable {
        /// Server URL, without credentials.
        url: String,
        /// Lower-level cause, e.g. "connection refused".
        reason: String,
    },
    /// The server did not answer in time.
    #[error("ClickHouse at {url} did not answer within {}", humantime::format_duration(*timeout))]
    Timeout {
        /// Server URL, without credentials.
        url: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The TLS handshake failed (certificate, CA, client certificate, not a TLS port).
    #[error("TLS handshake failed: {reason} (ClickHouse at {url})")]
    Tls {
        /// Server URL, without credentials.
        url: String,
        /// What went wrong, e.g. "unknown CA".
        reason: String,
    },
    /// The server rejected the credentials.
    #[error("authentication failed for user '{user}' (Code {code}): wrong password, or no such user; check the user and password settings")]
    Auth {
        /// The user name sent ("default" when none is configured).
        user: String,
        /// ClickHouse exception code (192, 193, 194, 516).
        code: u32,
        /// The server's message, scrubbed.
        message: String,
    },
    /// The user is known but not allowed to do this.
    #[error("user '{user}' is not allowed to do this (Code {code}): {message}")]
    AccessDenied {
        /// The user name sent.
        user: String,
        /// ClickHouse exception code (164, 497).
        code: u32,
        /// The server's message, scrubbed.
        message: String,
    },
    /// The table does not exist.
    #[error("table {database}.{table} does not exist")]
    UnknownTable {
        /// Database name.
        database: String,
        /// Table name.
        table: String,
    },
    /// The database does not exist.
    #[error("database {database} does not exist")]
    UnknownDatabase {
        /// Database name.
        database: String,
    },
    /// Any other ClickHouse exception.
    #[error("ClickHouse at {url} failed the request (HTTP {status}{}): {message}", fmt_code(*code))]
    Server {
        /// Server URL, without credentials.
        url: String,
        /// HTTP status (200 when the exception came at the end of a streamed body).
        status: u16,
        /// ClickHouse exception code, when the server sent one.
        code: Option<u32>,
        /// The server's message, scrubbed.
        message: String,
    },
    /// Another HTTP-level failure (connection reset mid-request, body read error...).
    #[error("request to ClickHouse at {url} failed: {reason}")]
    Transport {
        /// Server URL, without credentials.
        url: String,
        /// Lower-level cause.
        reason: String,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from ClickHouse at {url}: {what}")]
    Protocol {
        /// Server URL, without credentials.
        url: String,
        /// What was unexpected.
        what: String,
    },
}

fn fmt_code(code: Option<u32>) -> String {
    code.map(|c| format!(", Code {c}")).unwrap_or_default()
}

impl ChError {
    /// The ClickHouse exception code, when the error came from the server.
    pub fn code(&self) -> Option<u32> {
        match self {
            ChError::Auth { code, .. } | ChError::AccessDenied { code, .. } => Some(*code),
            ChError::UnknownTable { .. } => Some(60),
            ChError::UnknownDatabase { .. } => Some(81),
            ChError::Server { code, .. } => *code,
            _ => None,
        }
    }

    /// True when trying again later may succeed (network trouble, overload). Uses the same
    /// rules as inserts ([`classify`]), except that nothing here is "bad data".
    pub fn is_transient(&self) -> bool {
        match self {
            ChError::Unreachable { .. } | ChError::Timeout { .. } | ChError::Transport { .. } => {
                true
            }
            ChError::Server { status, code, .. } => classify(*code, Some(*status)) == Class::Retry,
            _ => false,
        }
    }
}

/// Outcome of a failed INSERT, already classified by [`classify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// Transient: retry the same bytes (same deduplication token) after a backoff.
    #[error("insert failed, will retry{}: {message}", fmt_code(*code))]
    Retryable {
        /// ClickHouse exception code, `None` for network errors and timeouts.
        code: Option<u32>,
        /// What happened, scrubbed.
        message: String,
    },
    /// The rows were rejected: do not retry; dead-letter the batch.
    #[error("insert rejected the data (Code {code}): {message}")]
    BadData {
        /// ClickHouse exception code.
        code: u32,
        /// The server's message, scrubbed.
        message: String,
    },
    /// A materialized view of the table refused the rows (the server's message ends in
    /// "while pushing to view ..."), after the table itself stored them: splitting the batch
    /// would store its rows again under new tokens, and a retry stores them again wherever
    /// the table does not deduplicate. The caller retries only with the batch's own token on
    /// a deduplicating table (exactly-once), and stops otherwise.
    #[error("a materialized view refused the insert{}: {message}", fmt_code(*code))]
    ViewFailed {
        /// ClickHouse exception code, when there is one.
        code: Option<u32>,
        /// The server's message, scrubbed.
        message: String,
    },
    /// The table is no longer what the insert was planned against: a column it names is
    /// gone (16 NO_SUCH_COLUMN_IN_TABLE, 8 THERE_IS_NO_COLUMN), has become one that takes no
    /// inserts (44 ILLEGAL_COLUMN, e.g. MATERIALIZED), or has another type than the one the
    /// rows were encoded for (117 "while reading header" of a
    /// [`super::InsertFormat::RowBinaryWithNamesAndTypes`] body). Nothing of the insert was
    /// stored: the server refuses it before its first row. The pipeline reads the table's
    /// columns again and starts over from the committed offsets.
    #[error("the table changed since sluice read its columns{}: {message}", fmt_code(*code))]
    SchemaChanged {
        /// ClickHouse exception code.
        code: Option<u32>,
        /// The server's message, scrubbed.
        message: String,
    },
    /// Configuration, schema or permissions: retrying cannot help.
    #[error("insert cannot succeed as configured{}: {message}", fmt_code(*code))]
    Fatal {
        /// ClickHouse exception code, when there is one.
        code: Option<u32>,
        /// What happened, scrubbed.
        message: String,
    },
}

impl InsertError {
    /// Builds the error for a failed attempt from its code and status, via [`classify`].
    pub fn from_failure(code: Option<u32>, http_status: Option<u16>, message: String) -> Self {
        // Both 18.16 and 26.9 word it so, whatever the view's own error (seen: 469, 395, 130).
        if message.contains("while pushing to view") {
            return InsertError::ViewFailed { code, message };
        }
        // 26.9: "Type of 'v' must be Float64, not UInt64: (while reading header)".
        let header_refused = code == Some(117) && message.contains("while reading header");
        if header_refused || matches!(code, Some(8 | 16 | 44)) {
            return InsertError::SchemaChanged { code, message };
        }
        match (classify(code, http_status), code) {
            (Class::BadData, Some(code)) => InsertError::BadData { code, message },
            // classify() only answers BadData for a code; be total anyway.
            (Class::BadData, None) | (Class::Retry, _) => InsertError::Retryable { code, message },
            (Class::Fatal, _) => InsertError::Fatal { code, message },
        }
    }

    /// The ClickHouse exception code, if any.
    pub fn code(&self) -> Option<u32> {
        match self {
            InsertError::Retryable { code, .. }
            | InsertError::SchemaChanged { code, .. }
            | InsertError::Fatal { code, .. }
            | InsertError::ViewFailed { code, .. } => *code,
            InsertError::BadData { code, .. } => Some(*code),
        }
    }

    /// The classification of this error.
    pub fn class(&self) -> Class {
        match self {
            InsertError::Retryable { .. } => Class::Retry,
            InsertError::BadData { .. } => Class::BadData,
            InsertError::Fatal { .. }
            | InsertError::SchemaChanged { .. }
            | InsertError::ViewFailed { .. } => Class::Fatal,
        }
    }
}

/// A ClickHouse exception found in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerException {
    /// The exception code (`Code: N`), when it could be read.
    pub code: Option<u32>,
    /// The message, starting at `Code:`, with format decorations removed.
    pub message: String,
}

/// Reads the exception of an error response: the code from the `X-ClickHouse-Exception-Code`
/// header when present (26.x sends it, 18.16 does not), else from the body.
pub fn parse_error_response(header_code: Option<&str>, body: &str) -> ServerException {
    let header_code = header_code.and_then(|h| h.trim().parse::<u32>().ok());
    match find_exception(body) {
        Some(mut e) => {
            e.code = header_code.or(e.code);
            e
        }
        None => ServerException {
            code: header_code,
            message: truncate(body.trim(), MAX_MESSAGE).to_owned(),
        },
    }
}

/// The exception an answer carries, if any: every answer but `200 OK` is one
/// ([`parse_error_response`]); a `200 OK` is one when it names an exception code in its
/// `X-ClickHouse-Exception-Code` header, or ends its body with an exception
/// ([`find_trailing_exception`]).
///
/// Why the header counts on a `200 OK`: ClickHouse before 24.6 answered an INSERT whose body
/// it timed out reading with `200 OK`, `X-ClickHouse-Exception-Code: 209` and an empty body
/// (ClickHouse#65117), and stored nothing. Taking that answer for success would commit
/// offsets past rows that are not in the table.
pub fn answer_exception(
    ok: bool,
    header_code: Option<&str>,
    body: &str,
) -> Option<ServerException> {
    let Some(header) = header_code.filter(|_| ok) else {
        return if ok {
            find_trailing_exception(body)
        } else {
            Some(parse_error_response(header_code, body))
        };
    };
    let mut exc = parse_error_response(Some(header), body);
    if exc.message.is_empty() {
        exc.message = format!(
            "the server answered 200 OK naming exception code {} in X-ClickHouse-Exception-Code, without a message",
            header.trim()
        );
    }
    Some(exc)
}

/// Finds an exception at the end of a `200 OK` body (ClickHouse had already sent the status
/// when the query failed). `None` when the body ends normally.
///
/// Only the tail is examined: a tagged block (`__exception__` ... `__exception__`) or a final
/// text that starts a line with `Code: N` and contains `DB::Exception`. Data ending in such a
/// line would be a false positive; none of this client's own queries can produce one (they
/// read JSONEachRow or single values).
pub fn find_trailing_exception(body: &str) -> Option<ServerException> {
    let trimmed = body.trim_end();
    if trimmed.ends_with(EXCEPTION_MARKER) {
        return find_exception(trimmed);
    }
    let start = last_code_line(trimmed)?;
    let tail = &trimmed[start..];
    if tail.contains("DB::Exception") {
        find_exception(tail)
    } else {
        None
    }
}

const EXCEPTION_MARKER: &str = "__exception__";
const MAX_MESSAGE: usize = 4096;

/// Position of the last line that starts with `Code: <digit>`.
fn last_code_line(s: &str) -> Option<usize> {
    let mut best = None;
    let mut from = 0;
    while let Some(i) = s[from..].find("Code: ") {
        let pos = from + i;
        let at_line_start = pos == 0 || s[..pos].ends_with('\n');
        let digit_follows = s[pos + 6..].starts_with(|c: char| c.is_ascii_digit());
        if at_line_start && digit_follows {
            best = Some(pos);
        }
        from = pos + 6;
    }
    best
}

fn find_exception(body: &str) -> Option<ServerException> {
    let mut text = body.trim();
    // 25.x+ streamed form: "__exception__\n<tag>\nCode: ...\n<size> <tag>\n__exception__".
    if let Some(inner) = text.strip_suffix(EXCEPTION_MARKER) {
        let inner = inner.trim_end();
        // Drop the "<size> <tag>" trailer line.
        let inner = match inner.rfind('\n') {
            Some(nl) if is_size_tag_line(&inner[nl + 1..]) => &inner[..nl],
            _ => inner,
        };
        text = inner;
    }
    let start = last_code_line(text)?;
    let text = text[start..].trim();
    let code = text["Code: ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse::<u32>().ok());
    // 18.16 decorates: "Code: 60, e.displayText() = DB::Exception: msg, e.what() = DB::Exception".
    let cleaned = text
        .replacen(", e.displayText() = ", ". ", 1)
        .trim_end_matches(", e.what() = DB::Exception")
        .to_owned();
    Some(ServerException {
        code,
        message: truncate(&cleaned, MAX_MESSAGE).to_owned(),
    })
}

fn is_size_tag_line(line: &str) -> bool {
    let mut parts = line.trim().splitn(2, ' ');
    let size_ok = parts
        .next()
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    let tag_ok = parts
        .next()
        .is_some_and(|t| !t.is_empty() && !t.contains(' '));
    size_ok && tag_ok
}

/// Cuts `s` to at most `max` bytes on a character boundary: server messages can embed whole
/// queries, and error values travel through logs.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Replaces every occurrence of `secret` in `text` with `***`. An empty secret changes nothing.
///
/// Even a one-character password is scrubbed: a garbled message is the safe failure, a leaked
/// password is not.
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "***"),
        _ => text.to_owned(),
    }
}

/// Classifies a transport-level error (no HTTP response) into a readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransportFailure {
    Timeout,
    Unreachable(String),
    Tls(String),
    Other(String),
}

/// Describes a reqwest error without its URL (which carries the query string) by walking the
/// source chain. TLS problems are recognised from rustls' messages, since rustls is not a
/// direct dependency we could downcast to.
pub(crate) fn describe_transport(err: &reqwest::Error) -> TransportFailure {
    if err.is_timeout() {
        return TransportFailure::Timeout;
    }
    let mut chain: Vec<String> = Vec::new();
    let mut io_kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        chain.push(e.to_string());
        source = e.source();
    }
    let full = chain.join(": ");
    if let Some(reason) = tls_reason(&full) {
        return TransportFailure::Tls(reason);
    }
    use std::io::ErrorKind as K;
    match io_kind {
        Some(K::ConnectionRefused) => {
            return TransportFailure::Unreachable("connection refused".into())
        }
        Some(K::TimedOut) => return TransportFailure::Timeout,
        Some(K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable) => {
            return TransportFailure::Unreachable(innermost(&chain))
        }
        _ => {}
    }
    if full.contains("dns error") || full.contains("failed to lookup address") {
        return TransportFailure::Unreachable(innermost(&chain));
    }
    if err.is_connect() {
        return TransportFailure::Unreachable(innermost(&chain));
    }
    TransportFailure::Other(innermost(&chain))
}

fn innermost(chain: &[String]) -> String {
    // The outer layers of reqwest/hyper say "error sending request", "client error (Connect)";
    // the innermost cause is the informative one.
    chain
        .last()
        .cloned()
        .unwrap_or_else(|| "unknown error".to_owned())
}

/// Maps rustls' error text to an operator-friendly reason.
pub(crate) fn tls_reason(text: &str) -> Option<String> {
    let reason = if text.contains("UnknownIssuer") {
        "unknown CA (the server certificate is not signed by a trusted CA; set ca_file)".to_owned()
    } else if text.contains("certificate not valid for name") || text.contains("NotValidForName") {
        let detail = text
            .split("invalid peer certificate: ")
            .nth(1)
            .unwrap_or("certificate not valid for this host name");
        format!("host name mismatch: {detail}")
    } else if text.contains("certificate expired") || text.contains("Expired") {
        "server certificate expired".to_owned()
    } else if text.contains("CertificateRequired") {
        "the server requires a client certificate (set client_cert and client_key)".to_owned()
    } else if text.contains("received fatal alert") {
        let alert = text
            .split("received fatal alert: ")
            .nth(1)
            .unwrap_or("unknown");
        format!("the server refused the handshake ({alert}); check the client certificate")
    } else if text.contains("received corrupt message") || text.contains("InvalidContentType") {
        "the server did not answer TLS (is this a plain HTTP port?)".to_owned()
    } else if let Some(detail) = text.split("invalid peer certificate: ").nth(1) {
        format!("invalid server certificate: {detail}")
    } else {
        return None;
    };
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modern_body() {
        let body = "Code: 60. DB::Exception: Unknown table expression identifier 'default.nope'. \
                    (UNKNOWN_TABLE) (version 26.9.2.1)\n";
        let e = parse_error_response(Some("60"), body);
        assert_eq!(e.code, Some(60));
        assert!(e
            .message
            .starts_with("Code: 60. DB::Exception: Unknown table"));
    }

    #[test]
    fn parses_legacy_body_without_header() {
        let body = "Code: 193, e.displayText() = DB::Exception: Wrong password for user default, \
                    e.what() = DB::Exception\n";
        let e = parse_error_response(None, body);
        assert_eq!(e.code, Some(193));
        assert_eq!(
            e.message,
            "Code: 193. DB::Exception: Wrong password for user default"
        );
    }

    #[test]
    fn header_code_wins_over_body() {
        let e = parse_error_response(Some(" 516 "), "Code: 1. DB::Exception: x");
        assert_eq!(e.code, Some(516));
    }

    #[test]
    fn body_without_exception_keeps_text() {
        let e = parse_error_response(None, "<html>502 Bad Gateway</html>");
        assert_eq!(e.code, None);
        assert_eq!(e.message, "<html>502 Bad Gateway</html>");
    }

    #[test]
    fn multi_line_message() {
        let body = "Code: 33. DB::Exception: Cannot read all data. Bytes read: 2. Bytes expected: \
                    4: (at row 1)\n: While executing BinaryRowInputFormat. (CANNOT_READ_ALL_DATA) \
                    (version 26.9.2.1)\n";
        let e = parse_error_response(Some("33"), body);
        assert_eq!(e.code, Some(33));
        assert!(e.message.contains("While executing"));
    }

    #[test]
    fn trailing_exception_tagged_26_9() {
        let body = "0\n0\n0\n__exception__\nbdqfklvorjazuunv\nCode: 395. DB::Exception: Value \
                    passed to 'throwIf' function is non-zero. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO) \
                    (version 26.9.2.1)\n261 bdqfklvorjazuunv\n__exception__\n";
        let e = find_trailing_exception(body).expect("exception");
        assert_eq!(e.code, Some(395));
        assert!(e.message.ends_with("(version 26.9.2.1)"), "{}", e.message);
    }

    #[test]
    fn trailing_exception_untagged_old() {
        let body = "1\n2\nCode: 395, e.displayText() = DB::Exception: Value passed to 'throwIf' \
                    function is non zero, e.what() = DB::Exception\n";
        let e = find_trailing_exception(body).expect("exception");
        assert_eq!(e.code, Some(395));
    }

    #[test]
    fn a_200_naming_an_exception_code_is_a_failure() {
        // ClickHouse before 24.6, an INSERT body it timed out reading (ClickHouse#65117).
        let e = answer_exception(true, Some("209"), "").expect("a failure");
        assert_eq!(e.code, Some(209));
        assert!(
            e.message.contains("200 OK") && e.message.contains("209"),
            "{}",
            e.message
        );
        assert_eq!(
            crate::clickhouse::retry::classify(e.code, Some(200)),
            Class::Retry
        );
        // With a message in the body, that message.
        let e = answer_exception(true, Some("241"), "Code: 241. DB::Exception: Memory limit")
            .expect("a failure");
        assert_eq!(e.code, Some(241));
        assert!(e.message.starts_with("Code: 241"), "{}", e.message);
        // A code that is not a number still fails the answer.
        let e = answer_exception(true, Some("x"), "").expect("a failure");
        assert_eq!(e.code, None);
    }

    #[test]
    fn a_200_without_the_header_fails_only_by_its_body() {
        assert_eq!(answer_exception(true, None, "1\n2\n"), None);
        assert_eq!(answer_exception(true, None, ""), None);
        let body = "1\nCode: 395, e.displayText() = DB::Exception: Value passed\n";
        assert_eq!(
            answer_exception(true, None, body).and_then(|e| e.code),
            Some(395)
        );
        let e = answer_exception(false, Some("60"), "Code: 60. DB::Exception: Unknown table")
            .expect("a failure");
        assert_eq!(e.code, Some(60));
        let e = answer_exception(false, None, "Bad Gateway").expect("a failure");
        assert_eq!((e.code, e.message.as_str()), (None, "Bad Gateway"));
    }

    #[test]
    fn no_trailing_exception_in_normal_bodies() {
        assert_eq!(find_trailing_exception("1\n2\n3\n"), None);
        assert_eq!(find_trailing_exception(""), None);
        assert_eq!(find_trailing_exception("{\"name\":\"Code: 5\"}\n"), None);
        // A line starting with "Code: N" but without DB::Exception is data.
        assert_eq!(find_trailing_exception("Code: 12 is a string\n"), None);
    }

    #[test]
    fn scrub_removes_password() {
        assert_eq!(
            scrub("bad pw s3cr3t for s3cr3t", Some("s3cr3t")),
            "bad pw *** for ***"
        );
        assert_eq!(scrub("text", Some("")), "text");
        assert_eq!(scrub("text", None), "text");
    }

    #[test]
    fn insert_error_from_failure() {
        assert_eq!(
            InsertError::from_failure(Some(27), Some(500), "m".into()),
            InsertError::BadData {
                code: 27,
                message: "m".into()
            }
        );
        assert_eq!(
            InsertError::from_failure(None, None, "refused".into()),
            InsertError::Retryable {
                code: None,
                message: "refused".into()
            }
        );
        assert_eq!(
            InsertError::from_failure(Some(60), Some(404), "m".into()).class(),
            Class::Fatal
        );
        // A view's refusal, whatever its code (26.9's wording, then 18.16's): never bad data,
        // which would split a batch the table already stored.
        for (code, message) in [
            (469, "Code: 469. DB::Exception: Constraint `c` for table default.t is violated at row 2. Expression: (v < 100). Column values: v = 500: while pushing to view default.mv. (VIOLATED_CONSTRAINT)"),
            (395, "Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf' function is non zero: while pushing to view default.mv"),
        ] {
            let e = InsertError::from_failure(Some(code), Some(500), message.into());
            assert!(matches!(e, InsertError::ViewFailed { .. }), "{e:?}");
            assert_eq!(e.class(), Class::Fatal);
            assert_eq!(e.code(), Some(code));
        }
        // The table changed under the run (26.9's and 18.16's wording): not bad data, which
        // would dead-letter every row of every batch from then on.
        for (code, message) in [
            (117, "Code: 117. DB::Exception: Type of 'v' must be Float64, not UInt64: (while reading header): While executing BinaryRowInputFormat. (INCORRECT_DATA) (version 26.9.2.1)"),
            (16, "Code: 16. DB::Exception: No such column c in table default.tt (2ee44164-a414-46ce-84b7-296f90967e73). (NO_SUCH_COLUMN_IN_TABLE) (version 26.9.2.1)"),
            (16, "Code: 16, e.displayText() = DB::Exception: No such column c in table tt, e.what() = DB::Exception"),
            (44, "Code: 44. DB::Exception: Cannot insert column b, because it is MATERIALIZED column. (ILLEGAL_COLUMN) (version 26.9.2.1)"),
        ] {
            let e = InsertError::from_failure(Some(code), Some(400), message.into());
            assert!(matches!(e, InsertError::SchemaChanged { .. }), "{e:?}");
            assert_eq!(e.code(), Some(code));
        }
        // The same code for a row's bytes stays bad data.
        let row = "Code: 117. DB::Exception: Cannot read all data. Bytes read: 3. (INCORRECT_DATA)";
        assert!(matches!(
            InsertError::from_failure(Some(117), Some(400), row.into()),
            InsertError::BadData { code: 117, .. }
        ));
    }

    #[test]
    fn tls_reasons() {
        assert!(tls_reason("invalid peer certificate: UnknownIssuer")
            .is_some_and(|r| r.starts_with("unknown CA")));
        assert!(tls_reason("received fatal alert: CertificateRequired")
            .is_some_and(|r| r.contains("client certificate")));
        assert!(
            tls_reason("received corrupt message of type InvalidContentType")
                .is_some_and(|r| r.contains("plain HTTP"))
        );
        assert_eq!(tls_reason("connection refused"), None);
    }

    #[test]
    fn error_messages_read_well() {
        let e = ChError::Unreachable {
            url: "http://127.0.0.1:18123".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "ClickHouse at http://127.0.0.1:18123 is unreachable: connection refused"
        );
        let e = ChError::Auth {
            user: "x".into(),
            code: 516,
            message: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "authentication failed for user 'x' (Code 516): wrong password, or no such user; check the user and password settings"
        );
        let e = ChError::UnknownTable {
            database: "db".into(),
            table: "t".into(),
        };
        assert_eq!(e.to_string(), "table db.t does not exist");
        let e = ChError::Tls {
            url: "https://h:8443".into(),
            reason: "unknown CA".into(),
        };
        assert_eq!(
            e.to_string(),
            "TLS handshake failed: unknown CA (ClickHouse at https://h:8443)"
        );
        let e = ChError::Server {
            url: "http://h:1".into(),
            status: 400,
            code: Some(62),
            message: "Syntax".into(),
        };
        assert_eq!(
            e.to_string(),
            "ClickHouse at http://h:1 failed the request (HTTP 400, Code 62): Syntax"
        );
    }
}
