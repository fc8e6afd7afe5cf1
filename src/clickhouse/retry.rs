//! What to do after a failed INSERT: retry the same bytes, dead-letter them, or stop.
//!
//! Guarantees:
//! - [`classify`] is a pure function of the ClickHouse exception code and the HTTP status; each
//!   rule below names the codes behind it, and the table is unit-tested.
//! - Nothing is ever classified [`Class::BadData`] unless the server told us, with a code, that
//!   the *rows* are the problem. Anything unknown is [`Class::Retry`]: retrying the very same
//!   bytes (with the same deduplication token) is always safe, dropping or dead-lettering data
//!   on a guess is not.
//! - [`Class::Fatal`] means "retrying cannot help and the data is not at fault": the
//!   configuration, the schema or the permissions are wrong. The caller stops (keeping its
//!   offsets uncommitted) rather than dead-lettering every batch.
//!
//! [`Backoff`] is exponential with full jitter (AWS architecture blog, "Exponential Backoff And
//! Jitter"): delay `n` is uniform in `[0, min(cap, base * 2^n)]`, which spreads the retries of
//! many partition lanes hitting the same overloaded server.

use std::time::Duration;

use rand::Rng;

/// The decision for one failed insert attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Transient: send the same bytes again after a backoff.
    Retry,
    /// The rows themselves are rejected: retrying cannot succeed; dead-letter the batch.
    BadData,
    /// Configuration, schema or permission problem: stop and tell the operator.
    Fatal,
}

/// Codes meaning "the server or the network is temporarily unable": retry.
///
/// - 3 UNEXPECTED_END_OF_FILE: the server saw the body end early. Our body is a complete
///   in-memory buffer, so a short read is the connection dying mid-upload, not our data
///   (a RowBinary row cut short by an encoder bug reports 33, see [`BAD_DATA`]).
/// - 159 TIMEOUT_EXCEEDED, 209 SOCKET_TIMEOUT, 210 NETWORK_ERROR, 279 ALL_CONNECTION_TRIES_FAILED:
///   time and network.
/// - 202 TOO_MANY_SIMULTANEOUS_QUERIES, 203 NO_FREE_CONNECTION, 241 MEMORY_LIMIT_EXCEEDED,
///   173 CANNOT_ALLOCATE_MEMORY, 252 TOO_MANY_PARTS, 439 CANNOT_SCHEDULE_TASK,
///   201 QUOTA_EXCEEDED: load and quotas, which pass.
/// - 242 TABLE_IS_READ_ONLY: a replica lost its (Zoo)Keeper session; it comes back read-write.
///   (164 READONLY, the *user* is read-only, is [`FATAL`].)
/// - 225 NO_ZOOKEEPER, 999 KEEPER_EXCEPTION, 285 TOO_FEW_LIVE_REPLICAS,
///   319 UNKNOWN_STATUS_OF_INSERT: coordination trouble; with deduplication a retry of the same
///   block is exactly what ClickHouse expects after an unknown insert status.
/// - 218 TABLE_IS_DROPPED: the table is being dropped or re-created right now; if it stays
///   gone the next attempt answers 60 UNKNOWN_TABLE, which is fatal.
/// - 236 ABORTED, 394 QUERY_WAS_CANCELLED, 735 QUERY_WAS_CANCELLED_BY_CLIENT: someone killed
///   the query or the server is shutting down.
/// - 425 SYSTEM_ERROR, 1000 POCO_EXCEPTION, 1001 STD_EXCEPTION: server-side OS/library errors.
pub const RETRY: &[u32] = &[
    3, 159, 173, 201, 202, 203, 209, 210, 218, 225, 236, 241, 242, 252, 279, 285, 319, 394, 425,
    439, 735, 999, 1000, 1001,
];

/// Codes meaning "these rows cannot be stored": dead-letter, do not retry.
///
/// - Parsing: 6 CANNOT_PARSE_TEXT, 26 CANNOT_PARSE_QUOTED_STRING,
///   27 CANNOT_PARSE_INPUT_ASSERTION_FAILED, 38 CANNOT_PARSE_DATE, 41 CANNOT_PARSE_DATETIME,
///   72 CANNOT_PARSE_NUMBER, 376 CANNOT_PARSE_UUID, 441 CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING,
///   467 CANNOT_PARSE_BOOL.
/// - Truncated or malformed binary rows: 32 ATTEMPT_TO_READ_AFTER_EOF, 33 CANNOT_READ_ALL_DATA
///   (measured on both servers for a row cut short), 131 TOO_LARGE_STRING_SIZE (26.9 for an
///   absurd length prefix; 18.16 answers that with 241 MEMORY_LIMIT_EXCEEDED, which stays
///   retryable), 117 INCORRECT_DATA, 128 TOO_LARGE_ARRAY_SIZE.
/// - Values the column type rejects: 53 TYPE_MISMATCH, 69 ARGUMENT_OUT_OF_BOUND,
///   70 CANNOT_CONVERT_TYPE, 321 VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE,
///   349 CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN, 190 SIZES_OF_ARRAYS_DONT_MATCH (Nested).
/// - 36 BAD_ARGUMENTS: classify() only sees INSERT failures, where this code comes from checks
///   on values (judgement, not measured here). Note what is *not* caught: a RowBinary byte
///   outside an Enum8's values is accepted by both 18.16 and 26.9 (HTTP 200) and breaks later
///   SELECTs, so the encoder must validate Enum values itself.
/// - 469 VIOLATED_CONSTRAINT: a table CHECK constraint rejected a row.
/// - 395 FUNCTION_THROW_IF_VALUE_IS_NON_ZERO: a throwIf() in a materialized view or a
///   constraint fired on a row value.
pub const BAD_DATA: &[u32] = &[
    6, 26, 27, 32, 33, 36, 38, 41, 53, 69, 70, 72, 117, 128, 131, 190, 321, 349, 376, 395, 441,
    467, 469,
];

/// Codes meaning "the request can never succeed as configured": stop.
///
/// - The target does not match: 60 UNKNOWN_TABLE, 81 UNKNOWN_DATABASE,
///   16 NO_SUCH_COLUMN_IN_TABLE, 8 THERE_IS_NO_COLUMN, 10 NOT_FOUND_COLUMN_IN_BLOCK,
///   15 DUPLICATE_COLUMN, 44 ILLEGAL_COLUMN (e.g. inserting into a MATERIALIZED column),
///   7 INCORRECT_NUMBER_OF_COLUMNS (with RowBinary the column count is in the statement, not in
///   the rows, so a mismatch is schema drift rather than bad data).
/// - Schema-level expression errors, e.g. in a DEFAULT or a materialized view's SELECT, which
///   every batch would hit again: 43 ILLEGAL_TYPE_OF_ARGUMENT, 46 UNKNOWN_FUNCTION,
///   47 UNKNOWN_IDENTIFIER, 48 NOT_IMPLEMENTED.
/// - Access: 192 UNKNOWN_USER, 193 WRONG_PASSWORD, 194 REQUIRED_PASSWORD,
///   516 AUTHENTICATION_FAILED, 497 ACCESS_DENIED, 164 READONLY, 195 IP_ADDRESS_NOT_ALLOWED.
/// - The request itself: 62 SYNTAX_ERROR, 73 UNKNOWN_FORMAT, 89 UNKNOWN_COMPRESSION_METHOD
///   (18.16 answers it for `Content-Encoding: lz4`), 115 UNKNOWN_SETTING,
///   452 SETTING_CONSTRAINT_VIOLATION.
pub const FATAL: &[u32] = &[
    7, 8, 10, 15, 16, 43, 44, 46, 47, 48, 60, 62, 73, 81, 89, 115, 164, 192, 193, 194, 195, 452,
    497, 516,
];

/// Classifies a failed insert attempt.
///
/// `code` is the ClickHouse exception code (from the `X-ClickHouse-Exception-Code` header or
/// the body), `None` when the failure happened below ClickHouse (connection refused, timeout,
/// a proxy answering). `http_status` is `None` when no HTTP response arrived at all.
///
/// Rules, first match wins:
/// 1. A known code decides: [`RETRY`], [`BAD_DATA`], [`FATAL`] lists.
/// 2. Any other code: [`Class::Retry`] (unknown is never treated as bad data).
/// 3. No code, no response (network error, timeout): [`Class::Retry`].
/// 4. No code, HTTP 401/403 (an authenticating proxy): [`Class::Fatal`].
/// 5. No code, any other status (5xx, 408, 429, a proxy's 404 while ClickHouse restarts):
///    [`Class::Retry`].
pub fn classify(code: Option<u32>, http_status: Option<u16>) -> Class {
    match code {
        Some(c) if BAD_DATA.contains(&c) => Class::BadData,
        Some(c) if FATAL.contains(&c) => Class::Fatal,
        // RETRY and unknown codes both retry; RETRY is listed to document the intent.
        Some(_) => Class::Retry,
        None => match http_status {
            Some(401 | 403) => Class::Fatal,
            _ => Class::Retry,
        },
    }
}

/// Exponential backoff with full jitter.
///
/// Delay for attempt `n` (0-based since the last [`Backoff::reset`]) is uniform in
/// `[0, min(cap, base * 2^n)]`. The exponent stops growing once the ceiling reaches `cap`, so
/// a lane retrying for hours never overflows.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    /// Base 100 ms, cap 30 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `cap` (`cap` is raised to `base` if
    /// smaller, so the bounds are always ordered).
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// Attempts made since creation or the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The upper bound of the next delay, without jitter.
    pub fn ceiling(&self) -> Duration {
        // 2^31 * base overflows Duration only for absurd bases; saturate instead of panicking.
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The delay to wait before the next attempt; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        // Stop incrementing once the ceiling is pinned at the cap: keeps the counter meaningful
        // as "attempts" while the exponent is irrelevant.
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
    }

    /// Back to the first attempt, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_disjoint() {
        for c in RETRY {
            assert!(
                !BAD_DATA.contains(c) && !FATAL.contains(c),
                "code {c} in two lists"
            );
        }
        for c in BAD_DATA {
            assert!(!FATAL.contains(c), "code {c} in two lists");
        }
    }

    #[test]
    fn classify_table() {
        let cases: &[(Option<u32>, Option<u16>, Class)] = &[
            // transport
            (None, None, Class::Retry),
            (None, Some(500), Class::Retry),
            (None, Some(502), Class::Retry),
            (None, Some(503), Class::Retry),
            (None, Some(429), Class::Retry),
            (None, Some(404), Class::Retry),
            (None, Some(401), Class::Fatal),
            (None, Some(403), Class::Fatal),
            // transient server states
            (Some(159), Some(500), Class::Retry),
            (Some(209), Some(500), Class::Retry),
            (Some(210), Some(500), Class::Retry),
            (Some(202), Some(500), Class::Retry),
            (Some(241), Some(500), Class::Retry),
            (Some(242), Some(500), Class::Retry),
            (Some(252), Some(500), Class::Retry),
            (Some(999), Some(500), Class::Retry),
            (Some(236), Some(500), Class::Retry),
            (Some(218), Some(500), Class::Retry),
            (Some(3), Some(500), Class::Retry),
            (Some(279), Some(500), Class::Retry),
            (Some(225), Some(500), Class::Retry),
            (Some(394), Some(500), Class::Retry),
            (Some(319), Some(500), Class::Retry),
            // bad data
            (Some(6), Some(500), Class::BadData),
            (Some(26), Some(500), Class::BadData),
            (Some(27), Some(500), Class::BadData),
            (Some(38), Some(500), Class::BadData),
            (Some(41), Some(500), Class::BadData),
            (Some(72), Some(500), Class::BadData),
            (Some(117), Some(500), Class::BadData),
            (Some(53), Some(500), Class::BadData),
            (Some(469), Some(500), Class::BadData),
            (Some(69), Some(500), Class::BadData),
            (Some(70), Some(500), Class::BadData),
            (Some(33), Some(500), Class::BadData),
            (Some(131), Some(500), Class::BadData),
            (Some(349), Some(500), Class::BadData),
            (Some(321), Some(500), Class::BadData),
            (Some(36), Some(500), Class::BadData),
            // fatal
            (Some(60), Some(404), Class::Fatal),
            (Some(81), Some(404), Class::Fatal),
            (Some(16), Some(400), Class::Fatal),
            (Some(8), Some(400), Class::Fatal),
            (Some(7), Some(400), Class::Fatal),
            (Some(43), Some(400), Class::Fatal),
            (Some(516), Some(403), Class::Fatal),
            (Some(194), Some(401), Class::Fatal),
            (Some(497), Some(403), Class::Fatal),
            (Some(192), Some(401), Class::Fatal),
            (Some(193), Some(401), Class::Fatal),
            (Some(115), Some(404), Class::Fatal),
            (Some(164), Some(500), Class::Fatal),
            (Some(62), Some(400), Class::Fatal),
            (Some(89), Some(500), Class::Fatal),
            // a code decides even on a 200 (exception at the end of a streamed response)
            (Some(60), Some(200), Class::Fatal),
            // unknown codes retry, whatever the status
            (Some(12345), Some(400), Class::Retry),
            (Some(0), None, Class::Retry),
        ];
        for &(code, status, want) in cases {
            assert_eq!(
                classify(code, status),
                want,
                "code {code:?} status {status:?}"
            );
        }
    }

    #[test]
    fn backoff_stays_within_bounds() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(30);
        let mut b = Backoff::new(base, cap);
        for n in 0..200u32 {
            let ceiling = b.ceiling();
            let expected = base.saturating_mul(1u32 << n.min(20)).min(cap);
            assert_eq!(ceiling, expected, "attempt {n}");
            let d = b.next_delay();
            assert!(d <= ceiling, "attempt {n}: {d:?} > {ceiling:?}");
        }
        assert_eq!(b.attempts(), 200);
        assert_eq!(b.ceiling(), cap);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.ceiling(), base);
    }

    #[test]
    fn backoff_jitter_spreads() {
        // Full jitter: over many draws at a 30 s ceiling, both halves of the range occur.
        let mut low = false;
        let mut high = false;
        for _ in 0..1000 {
            let mut b = Backoff::new(Duration::from_secs(30), Duration::from_secs(30));
            let d = b.next_delay();
            low |= d < Duration::from_secs(15);
            high |= d >= Duration::from_secs(15);
        }
        assert!(low && high);
    }

    #[test]
    fn backoff_cap_below_base_is_raised() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert!(b.next_delay() <= Duration::from_secs(2));
        assert_eq!(b.ceiling(), Duration::from_secs(2));
    }

    #[test]
    fn backoff_huge_base_saturates() {
        let mut b = Backoff::new(Duration::from_secs(u64::MAX / 4), Duration::MAX);
        for _ in 0..40 {
            let _ = b.next_delay();
        }
    }
}
