//! JSON message → one RowBinary row, directly (no DOM, no per-row allocation).
//!
//! A [`RowPlan`] says, for every column of the target table in INSERT order, where its value
//! comes from (a top-level JSON field or Kafka metadata), its ClickHouse type, and what to do
//! when the value is absent. [`encode_json_row`] then scans the payload once, remembers where
//! each wanted field's value text is, and writes the columns in plan order. While the fields
//! come in the columns' order (a producer's fixed order), each value is written as soon as it
//! is scanned, most types by one loop that validates, converts and writes; the first field out
//! of order or missing hands the rest of the row to the slots, and a value that does not
//! convert hands them the whole row, so results and errors are those of the two-pass path
//! (see `encode_row`).
//!
//! # Guarantees
//! - **All or nothing:** on any error `out` is truncated back to its length at entry.
//! - **Exact conversions:** a value is written only if the column represents it exactly;
//!   otherwise the row fails with a [`RowError`] naming the field, column, type and why, with
//!   the offending text shortened to about 64 characters. Integers and decimals are parsed
//!   from their JSON text (never through `f64`); `5.0` and `1e3` are integers, `5.5` is not;
//!   extra fractional digits are accepted only when they are zeros (`1.50` fits
//!   `Decimal(9, 1)`, `1.55` does not). Floats are the exception: they are rounded to the
//!   nearest representable value, but overflowing the type's range is an error.
//! - **Strict JSON:** the payload must be exactly one JSON object (RFC 8259: no comments, no
//!   trailing commas, no trailing garbage, valid UTF-8, valid escapes). Nesting deeper than
//!   [`MAX_JSON_DEPTH`] is refused; the scanner is iterative, so no input can overflow the stack
//!   and nothing panics. A mapped field given twice is an error; duplicates among ignored
//!   fields are not tracked (that would need per-row allocation).
//! - **No DOM, no per-row allocation** in the steady state: field positions live in a reusable
//!   [`RowScratch`] (a thread-local one for [`encode_json_row`], or your own with
//!   [`encode_json_row_with`]); only `out` grows. Errors allocate (they are the cold path).
//!
//! # Why not sonic-rs's lazy iterator
//! `sonic_rs::to_object_iter` recurses without a depth limit when validating skipped values:
//! a payload of a million `[` aborts the whole process with a stack overflow (checked with
//! sonic-rs 0.5.10). It also allocates a key buffer per call and cannot report trailing
//! garbage. The scanner here is a small validating byte scanner with SWAR string scanning; it
//! reports byte offsets and keeps the per-row cost flat.
//!
//! # Conversion rules (JSON value → column type)
//! - `Nullable(T)`: `null` → NULL, anything else as `T`. `null` for a non-Nullable column is an
//!   error. `LowCardinality(T)` is read as `T`.
//! - Integers (8..256 bits), `Bool`: JSON numbers or strings holding a number, exactly
//!   integral and in range; `Bool` also takes `true`/`false` (JSON or string) and 0/1.
//! - `Float32/64`: numbers or numeric strings; strings `nan`, `inf`, `-inf`, `infinity`.
//! - `Decimal(P, S)`: numbers or numeric strings, at most P significant digits after scaling
//!   by 10^S, no non-zero digit beyond S.
//! - `String`: a JSON string is stored unescaped; any other JSON value (number, bool, object,
//!   array) is stored as its JSON text exactly as it appears in the payload, like ClickHouse's
//!   `input_format_json_read_*_as_strings`. `FixedString(N)`: the same bytes, zero-padded;
//!   more than N bytes is an error.
//! - `UUID`: string in any form the `uuid` crate parses (hyphenated, simple, braced, urn).
//! - `IPv4`: dotted string or a `u32` number. `IPv6`: string; a dotted IPv4 string becomes
//!   IPv4-mapped `::ffff:a.b.c.d`.
//! - `Date`/`Date32`: `"YYYY-MM-DD"` or a number of days since 1970-01-01, within
//!   1970-01-01..=2149-06-06 / 1900-01-01..=2299-12-31.
//! - `DateTime`/`DateTime64(P)`: `"YYYY-MM-DD[( |T)hh:mm[:ss[.fff...]]][Z|±hh[:mm]]"`; a
//!   string without offset is local time in the column's zone (UTC when it has none), and a
//!   local time that does not exist or is ambiguous there (DST changes) is an error rather
//!   than a guess. Numbers (and strings of digits) are seconds since the epoch, with a
//!   fraction allowed for DateTime64. Fractions finer than the column's precision must be
//!   zeros. Ranges: DateTime 1970-01-01 00:00:00..=2106-02-07 06:28:15 UTC, DateTime64
//!   1900-01-01..2300-01-01 UTC (and what fits an `i64` of ticks).
//! - `Enum8/16`: the name, or the numeric value (number or string), which must be defined.
//! - `Array(T)`: JSON array. `Map(K, V)`: JSON object; keys (always JSON strings) are converted
//!   to `K` with the rules above (so `Map(UInt64, _)` takes `{"12": ...}`); duplicate keys are
//!   kept, as ClickHouse does. `Tuple`: JSON array by position, or, for a named tuple, a JSON
//!   object by element name (every element required, no unknown names).
//!
//! # Kafka metadata columns
//! See [`MetaField`] for what each can be stored in.
//!
//! # Where each part lives
//! `plan` (what each column reads), `rows` (the entry points), `one_pass` (the row loop and
//! its fused scan-and-write steps), `scan` and `scratch` (the scanner and where it keeps a
//! row's fields), `values`, `numbers`, `datetime` and `dynamic` (one value as one type),
//! `meta` (Kafka metadata columns), `error` (what a refused row says) and `envelope`
//! (Debezium, Maxwell and Canal change events). The hot path is `one_pass` with `scan`; the
//! split into files changed no instruction it runs (callgrind, `bench/HISTORY.md`).

use std::cell::RefCell;
use std::net::{Ipv4Addr, Ipv6Addr};

use chrono::{LocalResult, NaiveDate, TimeZone};
use chrono_tz::Tz;

mod datetime;
mod dynamic;
mod envelope;
mod error;
mod meta;
mod numbers;
mod one_pass;
mod plan;
mod rows;
mod scan;
mod scratch;
mod values;

use datetime::*;
use dynamic::*;
pub use error::*;
use meta::*;
use numbers::*;
use one_pass::*;
pub use plan::*;
pub use rows::*;
use scan::*;
pub use scratch::*;
use values::*;

pub use envelope::{canal_rows, debezium_operation, debezium_row, maxwell_row, Change, ChangeRows};

use super::time_format::TimeFormat;
use crate::chtype::ChType;
use crate::encode::rowbinary::{self as rb, U256};

/// Deepest JSON nesting accepted anywhere in a payload.
pub const MAX_JSON_DEPTH: usize = 128;

/// Offending values are shown in errors up to this many characters.
const SHOW_CHARS: usize = 64;

/// Fixtures the other decoders' tests share.
#[cfg(test)]
pub(crate) mod tests;

/// The one-pass path of [`encode_row`] against the two-pass one: the same bytes for every row
/// and the same error for every row that fails, over generated rows in and out of column
/// order, with missing, repeated and unknown fields, values of every kind for every column,
/// truncated and malformed JSON, meta columns between the fields and a field read twice.
#[cfg(test)]
mod one_pass_tests;
