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

use std::cell::RefCell;
use std::net::{Ipv4Addr, Ipv6Addr};

use chrono::{LocalResult, NaiveDate, TimeZone};
use chrono_tz::Tz;

mod envelope;

pub use envelope::{canal_rows, debezium_operation, debezium_row, maxwell_row, Change, ChangeRows};

use super::time_format::TimeFormat;
use crate::chtype::ChType;
use crate::encode::rowbinary::{self as rb, U256};

/// Deepest JSON nesting accepted anywhere in a payload.
pub const MAX_JSON_DEPTH: usize = 128;

/// Offending values are shown in errors up to this many characters.
const SHOW_CHARS: usize = 64;

// ------------------------------------------------------------------------------------------
// Plan
// ------------------------------------------------------------------------------------------

/// What to do with top-level JSON fields that no column reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownFields {
    #[default]
    Ignore,
    Error,
    /// The table gets a column for it, of the type its value tells ([`RowError::NewFields`]).
    Add,
}

/// Kafka message metadata a column can be filled from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaField {
    /// Topic name → String-like column (`String`, `FixedString(N)`, `LowCardinality`/`Nullable`
    /// of those).
    Topic,
    /// Partition → any integer column (range-checked).
    Partition,
    /// Offset → any integer column (range-checked).
    Offset,
    /// Message timestamp in ms → `DateTime` (seconds, sub-second part dropped as the type
    /// requires), `DateTime64(P)` (exact for P >= 3, floored for P < 3), or an integer column
    /// (milliseconds). A message without timestamp is a missing value: the column's
    /// [`OnMissing`] applies.
    Timestamp,
    /// Key bytes → String-like column; no key is NULL in a Nullable column, else empty.
    Key,
    /// Headers → `Map(String, String)`, `Array(Tuple(String, String))` (a null header value
    /// is an empty string there, or NULL if the value type is Nullable), or a String-like
    /// column holding a JSON object text (`{"k":"v","n":null}`; invalid UTF-8 in header bytes
    /// is replaced by U+FFFD in that form only; repeated header names are kept).
    Headers,
    /// The message value, unparsed → String-like column (`String` holds any bytes;
    /// `FixedString(N)` refuses a longer value and pads a shorter one with zero bytes).
    Value,
    /// A change event's operation (`c`, `r`, `u`, `d`) → String-like column.
    Op,
    /// Whether a change event is a delete → an integer or Bool column (1/0), or a String-like
    /// one (`true`/`false`, as Kafka Connect's `ExtractNewRecordState` rewrites it).
    Deleted,
    /// A change event's `ts_ms` (when Debezium processed it) → as [`MetaField::Timestamp`].
    EventTime,
    /// A change event's `source.ts_ms` (when the source database made the change) → as
    /// [`MetaField::Timestamp`].
    SourceTime,
    /// A change event's `source.db` → String-like column.
    SourceDb,
    /// A change event's `source.table` → String-like column.
    SourceTable,
}

impl MetaField {
    /// What the column is filled from, as `check` and errors say it.
    pub fn name(self) -> &'static str {
        match self {
            MetaField::Topic => "topic",
            MetaField::Partition => "partition",
            MetaField::Offset => "offset",
            MetaField::Timestamp => "timestamp",
            MetaField::Key => "key",
            MetaField::Headers => "headers",
            MetaField::Value => "value",
            MetaField::Op => "change event op",
            MetaField::Deleted => "change event deleted flag",
            MetaField::EventTime => "change event ts_ms",
            MetaField::SourceTime => "change event source.ts_ms",
            MetaField::SourceDb => "change event source.db",
            MetaField::SourceTable => "change event source.table",
        }
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnSource {
    /// A top-level field of the JSON object, by exact (unescaped) name.
    Field(String),
    /// Kafka message metadata.
    Meta(MetaField),
}

/// What to write when the value is absent (field not in the object, or no Kafka timestamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnMissing {
    /// Let the server compute the column DEFAULT (RowBinaryWithDefaults prefix 1). Only valid
    /// in a plan with `with_defaults`.
    ServerDefault,
    /// Precomputed RowBinary bytes of the value (see [`encode_json_value`] to make them).
    Bytes(Vec<u8>),
    /// NULL; only valid for a Nullable column.
    Null,
    /// Fail the row.
    Error,
}

/// One column of the INSERT, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPlan {
    pub name: String,
    pub ty: ChType,
    pub source: ColumnSource,
    pub on_missing: OnMissing,
}

impl ColumnPlan {
    /// A column read from the JSON field of the same name, failing the row when absent.
    pub fn field(name: impl Into<String>, ty: ChType) -> ColumnPlan {
        let name = name.into();
        ColumnPlan {
            source: ColumnSource::Field(name.clone()),
            name,
            ty,
            on_missing: OnMissing::Error,
        }
    }

    /// A column filled from Kafka metadata.
    pub fn meta(name: impl Into<String>, ty: ChType, meta: MetaField) -> ColumnPlan {
        ColumnPlan {
            name: name.into(),
            ty,
            source: ColumnSource::Meta(meta),
            on_missing: OnMissing::Error,
        }
    }

    /// Same column with another [`OnMissing`].
    pub fn on_missing(mut self, on_missing: OnMissing) -> ColumnPlan {
        self.on_missing = on_missing;
        self
    }
}

/// Why a plan was refused by [`RowPlan::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("column {column} appears twice in the plan")]
    DuplicateColumn { column: String },
    #[error("column {column} is not a column the fields of a line can fill (no such column, or a metadata or computed one)")]
    NoSuchField { column: String },
    #[error(
        "column {column}: a server DEFAULT needs the RowBinaryWithDefaults format (with_defaults)"
    )]
    ServerDefaultNeedsWithDefaults { column: String },
    #[error("column {column} {ty}: NULL as the missing value needs a Nullable column")]
    NullDefaultNotNullable { column: String, ty: String },
    #[error("column {column} {ty}: Kafka {meta} cannot be stored in this type")]
    MetaType {
        column: String,
        ty: String,
        meta: &'static str,
    },
    #[error("plan has {n} columns, more than the supported {max}")]
    TooManyColumns { n: usize, max: usize },
    #[error("date_time_formats names column {column}, which {why}")]
    TimeFormatColumn { column: String, why: String },
}

/// Compiled source of one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Field(usize),
    Meta(MetaField),
}

/// Field name → field slot, built once per plan. Open addressing over a power-of-two table
/// with an Fx-style hash: for the dozen-key objects we see, hashing a short key costs a few
/// multiplications, far less than SipHash, and the sequential guess in [`FieldIndex::find`]
/// usually avoids even that.
#[derive(Debug, Clone, Default)]
struct FieldIndex {
    names: Vec<Box<[u8]>>,
    /// Per name: it has no `"`, `\` or control character, so the payload bytes `"name"` can
    /// only be a string that is exactly this name (see [`FieldIndex::expected_at`]).
    plain: Vec<bool>,
    /// slot id + 1; 0 = empty bucket.
    table: Vec<u32>,
    shift: u32,
}

#[inline]
fn fx_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        let mut w = [0u8; 8];
        w[..rem.len()].copy_from_slice(rem);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h
}

/// Byte equality for field names: word compares instead of a `memcmp` call, which dominated
/// the lookup for typical 2..16-byte names. Short names are compared byte by byte in
/// registers: packing them into a stack array first made the CPU stall on store forwarding.
#[inline(always)]
fn key_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    if n <= 16 {
        let w = |s: &[u8], at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&s[at..at + 8]);
            u64::from_le_bytes(x)
        };
        // Two possibly overlapping words cover 8..=16 bytes.
        return w(a, 0) == w(b, 0) && w(a, n - 8) == w(b, n - 8);
    }
    a == b
}

impl FieldIndex {
    fn build(names: Vec<Box<[u8]>>) -> FieldIndex {
        let size = (names.len() * 2).next_power_of_two().max(8);
        let bits = size.trailing_zeros();
        let plain = names
            .iter()
            .map(|n| !n.iter().any(|&c| c == b'"' || c == b'\\' || c < 0x20))
            .collect();
        let mut idx = FieldIndex {
            names,
            plain,
            table: vec![0; size],
            shift: 64 - bits,
        };
        for id in 0..idx.names.len() {
            let mut b = idx.bucket(&idx.names[id]);
            while idx.table[b] != 0 {
                b = (b + 1) & (size - 1);
            }
            idx.table[b] = id as u32 + 1;
        }
        idx
    }

    #[inline]
    fn bucket(&self, key: &[u8]) -> usize {
        // The multiply in fx_hash mixes into the high bits, so take those.
        (fx_hash(key) >> self.shift) as usize
    }

    /// The field name at `at` (its opening quote) when it is the one expected next (`guess`)
    /// written plainly: then the bytes are exactly `"name"`, which is valid JSON and that
    /// name, so neither the string scan nor the lookup is needed. Returns the slot and the
    /// position after the closing quote; `None` means "scan and look it up".
    #[inline(always)]
    fn expected_at(&self, b: &[u8], at: usize, guess: usize) -> Option<(usize, usize)> {
        let name = self.names.get(guess)?;
        let end = at + 1 + name.len();
        (self.plain.get(guess) == Some(&true)
            && b.get(end) == Some(&b'"')
            && b.get(at + 1..end).is_some_and(|k| key_eq(k, name)))
        .then_some((guess, end + 1))
    }

    /// Finds `key`'s slot. `guess` is the slot expected next: producers usually emit fields in
    /// a fixed order, so one comparison often replaces the hash.
    #[inline]
    fn find(&self, key: &[u8], guess: &mut usize) -> Option<usize> {
        if let Some(n) = self.names.get(*guess) {
            if key_eq(n, key) {
                *guess += 1;
                return Some(*guess - 1);
            }
        }
        let mask = self.table.len().wrapping_sub(1);
        let mut b = self.bucket(key) & mask;
        loop {
            let e = *self.table.get(b)? as usize;
            if e == 0 {
                return None;
            }
            if self.names.get(e - 1).is_some_and(|n| key_eq(n, key)) {
                *guess = e;
                return Some(e - 1);
            }
            b = (b + 1) & mask;
        }
    }
}

/// A validated, compiled description of one INSERT's columns.
///
/// The public fields are what [`RowPlan::new`] was given; do not change them afterwards
/// (build a new plan instead): the compiled field index is derived from them. A plan changed
/// anyway never causes a panic, only wrong-column errors.
#[derive(Debug, Clone)]
pub struct RowPlan {
    pub columns: Vec<ColumnPlan>,
    pub unknown_fields: UnknownFields,
    /// RowBinaryWithDefaults: prefix each column with 0 (value follows) or 1 (use DEFAULT).
    pub with_defaults: bool,
    index: FieldIndex,
    sources: Vec<Src>,
    /// CSV/TSV: the field read at each position of a line ([`RowPlan::set_positions`]).
    positions: Vec<usize>,
    /// The inverse: each field's position in a line, `usize::MAX` for none.
    position_of: Vec<usize>,
    /// Per field id: the first column that reads it (the others are written from the slots,
    /// see [`encode_row`]).
    field_col: Vec<usize>,
    /// Per column: how [`scan_write`] writes its values.
    fast: Vec<FastTy>,
    /// Per field id: what the one-compare step of [`encode_row`] needs, for fields whose
    /// name is plain and whose first column [`scan_write`] writes (`None` otherwise).
    steps: Vec<Option<FieldStep>>,
    /// Write values as they are scanned while the fields come in column order (see
    /// [`encode_row`]). Always true; the tests turn it off to compare with the two-pass path.
    one_pass: bool,
    /// Per column: the date-time format its values are written in, where the route gives one
    /// ([`RowPlan::set_time_formats`]); empty when no column has one.
    times: Vec<Option<TimeFormat>>,
    /// `UnknownFields::Add`: names, sorted, of the table's columns that read no field (meta
    /// and computed columns, [`RowPlan::set_other_columns`]): a field so named gets no column.
    others: Vec<Box<[u8]>>,
}

/// A column type as the one-pass writer ([`scan_write`]) sees it, compiled once per plan so
/// that each value costs one small, dense dispatch rather than a walk of the type tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FastTy {
    nullable: bool,
    kind: FastKind,
}

/// A field as the one-compare step of [`encode_row`] reads it: while the fields come in the
/// columns' order and a producer writes them compactly, the bytes at a field's start are
/// exactly `pattern`, so its name, colon and column are known from one compare, without the
/// scan, the lookup and the per-column tables.
#[derive(Debug, Clone)]
struct FieldStep {
    /// `"name":`, the name plain (no `"`, `\` or control character, so those bytes can only
    /// be this name).
    pattern: Box<[u8]>,
    /// The first column that reads the field.
    col: usize,
    fast: FastTy,
    /// `pattern` as a little-endian word and the mask of its bytes, when it has at most 8:
    /// one load and compare instead of a byte loop for names of up to 5 bytes.
    word: u64,
    mask: u64,
}

impl FieldStep {
    fn new(name: &[u8], col: usize, fast: FastTy) -> FieldStep {
        let pattern: Box<[u8]> = [&b"\""[..], name, &b"\":"[..]].concat().into();
        let mut w = [0u8; 8];
        let n = pattern.len().min(8);
        w[..n].copy_from_slice(&pattern[..n]);
        let mask = if n == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        };
        FieldStep {
            word: u64::from_le_bytes(w),
            mask,
            pattern,
            col,
            fast,
        }
    }

    /// Whether the payload's bytes at `at` start with `pattern`.
    #[inline(always)]
    fn matches(&self, b: &[u8], at: usize) -> bool {
        let n = self.pattern.len();
        if n <= 8 {
            if let Some(c) = b.get(at..).and_then(<[u8]>::first_chunk::<8>) {
                return u64::from_le_bytes(*c) & self.mask == self.word;
            }
        }
        b.get(at..at + n).is_some_and(|k| key_eq(k, &self.pattern))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FastKind {
    Str,
    StrArray,
    Int(IntTy),
    Float64,
    Bool,
    /// `Decimal(P <= 18, S)`: written as 4 or 8 bytes.
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// `DateTime64(P)` (`P` capped at 9, as [`write_value`] does) in UTC or without a zone:
    /// the date-time text a naive or UTC column reads without a zone lookup.
    DateTime64 {
        precision: u8,
    },
    /// `DateTime` in UTC or without a zone.
    DateTime,
    /// Everything else: scanned, then converted by [`write_value`].
    General,
}

/// The integer types of at most 64 bits, whose values [`put_int_as`] writes from an `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntTy {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
}

impl IntTy {
    #[inline(always)]
    fn of(ty: &ChType) -> Option<IntTy> {
        Some(match ty {
            ChType::UInt8 => IntTy::U8,
            ChType::UInt16 => IntTy::U16,
            ChType::UInt32 => IntTy::U32,
            ChType::UInt64 => IntTy::U64,
            ChType::Int8 => IntTy::I8,
            ChType::Int16 => IntTy::I16,
            ChType::Int32 => IntTy::I32,
            ChType::Int64 => IntTy::I64,
            _ => return None,
        })
    }
}

impl FastTy {
    fn of(ty: &ChType) -> FastTy {
        // X, Nullable(X), LowCardinality(X) and both nestings of the two; write_value writes
        // exactly these as [NOT_NULL or NULL] + X.
        let (nullable, base) = match ty {
            ChType::Nullable(t) => match &**t {
                ChType::LowCardinality(x) => (true, &**x),
                x => (true, x),
            },
            ChType::LowCardinality(t) => match &**t {
                ChType::Nullable(x) => (true, &**x),
                x => (false, x),
            },
            x => (false, x),
        };
        let is_str = |t: &ChType| match t {
            ChType::String => true,
            ChType::LowCardinality(x) => **x == ChType::String,
            _ => false,
        };
        let kind = match base {
            ChType::String => FastKind::Str,
            ChType::Array(e) if is_str(e) => FastKind::StrArray,
            ChType::Float64 => FastKind::Float64,
            ChType::Bool => FastKind::Bool,
            ChType::Decimal { precision, scale } if *precision <= 18 => FastKind::Decimal {
                precision: *precision,
                scale: *scale,
            },
            ChType::DateTime64 { precision, tz } if utc_like(*tz) => FastKind::DateTime64 {
                precision: (*precision).min(9),
            },
            ChType::DateTime { tz } if utc_like(*tz) => FastKind::DateTime,
            t => IntTy::of(t).map_or(FastKind::General, FastKind::Int),
        };
        FastTy { nullable, kind }
    }
}

/// Writes `x` as `t` if it fits; false otherwise (the general path then words the error).
#[inline(always)]
fn put_int_as(t: IntTy, x: i64, out: &mut Vec<u8>) -> bool {
    macro_rules! w {
        ($t:ty) => {
            match <$t>::try_from(x) {
                Ok(v) => {
                    out.extend_from_slice(&v.to_le_bytes());
                    true
                }
                Err(_) => false,
            }
        };
    }
    match t {
        IntTy::U8 => w!(u8),
        IntTy::U16 => w!(u16),
        IntTy::U32 => w!(u32),
        IntTy::U64 => w!(u64),
        IntTy::I8 => w!(i8),
        IntTy::I16 => w!(i16),
        IntTy::I32 => w!(i32),
        IntTy::I64 => w!(i64),
    }
}

/// Upper bound on columns, so that slot ids fit the compact index.
const MAX_COLUMNS: usize = 1 << 20;

impl RowPlan {
    /// Validates and compiles a plan: checks defaults against the format and column types,
    /// meta columns against their types, and builds the field-name lookup.
    pub fn new(
        columns: Vec<ColumnPlan>,
        unknown_fields: UnknownFields,
        with_defaults: bool,
    ) -> Result<RowPlan, PlanError> {
        if columns.len() > MAX_COLUMNS {
            return Err(PlanError::TooManyColumns {
                n: columns.len(),
                max: MAX_COLUMNS,
            });
        }
        let mut names: Vec<Box<[u8]>> = Vec::new();
        let mut sources = Vec::with_capacity(columns.len());
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].iter().any(|o| o.name == c.name) {
                return Err(PlanError::DuplicateColumn {
                    column: c.name.clone(),
                });
            }
            match &c.on_missing {
                OnMissing::ServerDefault if !with_defaults => {
                    return Err(PlanError::ServerDefaultNeedsWithDefaults {
                        column: c.name.clone(),
                    })
                }
                OnMissing::Null if !c.ty.is_nullable() => {
                    return Err(PlanError::NullDefaultNotNullable {
                        column: c.name.clone(),
                        ty: c.ty.to_string(),
                    })
                }
                _ => {}
            }
            sources.push(match &c.source {
                ColumnSource::Field(f) => {
                    // Several columns may read the same field (e.g. as String and as UInt64).
                    let id = match names.iter().position(|n| **n == *f.as_bytes()) {
                        Some(id) => id,
                        None => {
                            names.push(f.as_bytes().into());
                            names.len() - 1
                        }
                    };
                    Src::Field(id)
                }
                ColumnSource::Meta(m) => {
                    if !meta_type_ok(*m, &c.ty) {
                        return Err(PlanError::MetaType {
                            column: c.name.clone(),
                            ty: c.ty.to_string(),
                            meta: m.name(),
                        });
                    }
                    Src::Meta(*m)
                }
            });
        }
        let mut field_col = vec![usize::MAX; names.len()];
        // Backwards, so that the first column reading a field is the one that stays.
        for (i, src) in sources.iter().enumerate().rev() {
            if let Src::Field(id) = *src {
                if let Some(c) = field_col.get_mut(id) {
                    *c = i;
                }
            }
        }
        let fast: Vec<FastTy> = columns.iter().map(|c| FastTy::of(&c.ty)).collect();
        let index = FieldIndex::build(names);
        let steps = (0..index.names.len())
            .map(|id| {
                let name = index.names.get(id)?;
                let col = *field_col.get(id)?;
                let fast = *fast.get(col)?;
                let plain = index.plain.get(id) == Some(&true);
                (plain && fast.kind != FastKind::General).then(|| FieldStep::new(name, col, fast))
            })
            .collect();
        Ok(RowPlan {
            columns,
            unknown_fields,
            with_defaults,
            index,
            fast,
            steps,
            sources,
            positions: Vec::new(),
            position_of: Vec::new(),
            field_col,
            one_pass: true,
            times: Vec::new(),
            others: Vec::new(),
        })
    }

    /// The table's columns that read no field besides this plan's own meta columns: those
    /// ClickHouse computes (MATERIALIZED, ALIAS). With `UnknownFields::Add` a field named as
    /// any column of the table is ignored, never a column to add.
    pub fn set_other_columns(&mut self, computed: &[String]) {
        let mut others: Vec<Box<[u8]>> = computed
            .iter()
            .map(|n| n.as_bytes().into())
            .chain(self.columns.iter().map(|c| c.name.as_bytes().into()))
            .collect();
        others.sort_unstable();
        others.dedup();
        self.others = others;
    }

    /// Whether the table has a column `name` that reads no field of that name.
    pub(crate) fn is_other_column(&self, name: &[u8]) -> bool {
        self.others.binary_search_by(|n| (**n).cmp(name)).is_ok()
    }

    /// The route's date-time formats (`date_time_formats`), by column name: each must name a
    /// column filled from a field, of a Date, Date32, DateTime or DateTime64 type (Nullable
    /// or not). Such a column's values go through the general path, where the format is
    /// applied before the column's own conversion (`write_col`).
    pub fn set_time_formats(
        &mut self,
        formats: &std::collections::BTreeMap<String, TimeFormat>,
    ) -> Result<(), PlanError> {
        if formats.is_empty() {
            return Ok(());
        }
        let mut times = vec![None; self.columns.len()];
        for (name, format) in formats {
            let refuse = |why: &str| PlanError::TimeFormatColumn {
                column: name.clone(),
                why: why.to_string(),
            };
            let i = self
                .columns
                .iter()
                .position(|c| c.name == *name)
                .ok_or_else(|| refuse("the table does not have"))?;
            if !matches!(self.sources.get(i), Some(Src::Field(_))) {
                return Err(refuse("is not filled from a field of the message"));
            }
            if !is_time_type(base_type(&self.columns[i].ty)) {
                return Err(refuse(&format!(
                    "is a {}, not a Date, Date32, DateTime or DateTime64",
                    self.columns[i].ty
                )));
            }
            times[i] = Some(format.clone());
            if let Some(f) = self.fast.get_mut(i) {
                f.kind = FastKind::General;
            }
            for (id, col) in self.field_col.iter().enumerate() {
                if *col == i {
                    if let Some(step) = self.steps.get_mut(id) {
                        *step = None;
                    }
                }
            }
        }
        self.times = times;
        Ok(())
    }

    /// For CSV and TSV lines: the field columns their fields fill, in order. A field column
    /// not named takes its missing value in every row.
    pub fn set_positions(&mut self, columns: &[String]) -> Result<(), PlanError> {
        let mut positions = Vec::with_capacity(columns.len());
        for c in columns {
            let id = self
                .columns
                .iter()
                .zip(&self.sources)
                .find_map(|(col, src)| match src {
                    Src::Field(id) if col.name == *c => Some(*id),
                    _ => None,
                })
                .ok_or_else(|| PlanError::NoSuchField { column: c.clone() })?;
            positions.push(id);
        }
        let mut position_of = vec![usize::MAX; self.index.names.len()];
        for (pos, id) in positions.iter().enumerate() {
            if let Some(p) = position_of.get_mut(*id) {
                *p = pos;
            }
        }
        self.positions = positions;
        self.position_of = position_of;
        Ok(())
    }

    /// Whether a column stores the message's headers: only then are they read at all.
    pub fn stores_headers(&self) -> bool {
        self.sources
            .iter()
            .any(|s| matches!(s, Src::Meta(MetaField::Headers)))
    }
}

/// Kafka metadata of the message being converted.
#[derive(Debug, Clone, Copy)]
pub struct MessageMeta<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// The message value (`None`: a tombstone).
    pub value: Option<&'a [u8]>,
    /// A change event's operation (`c`, `r`, `u`, `d`), read from its envelope
    /// ([`debezium_row`]); `None` for a message that is not one.
    pub op: Option<u8>,
    /// Where and when a change event's change happened ([`EventSource::NONE`] for a
    /// message that is not one).
    pub source: EventSource<'a>,
}

/// What a Debezium change event says besides its row and operation, for the metadata
/// columns that take it (Kafka Connect's `ExtractNewRecordState` `add.fields`): each `None`
/// where the event does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSource<'a> {
    /// `ts_ms`: when Debezium processed the change, epoch milliseconds.
    pub ts_ms: Option<i64>,
    /// `source.ts_ms`: when the change was made in the source database.
    pub source_ts_ms: Option<i64>,
    /// `source.db`: the source database.
    pub db: Option<Text<'a>>,
    /// `source.table`: the source table.
    pub table: Option<Text<'a>>,
}

impl EventSource<'_> {
    /// Nothing known: a message that is not a change event.
    pub const NONE: EventSource<'static> = EventSource {
        ts_ms: None,
        source_ts_ms: None,
        db: None,
        table: None,
    };
}

/// A string of a change event: its bytes, or (JSON events) its JSON text with quotes and
/// escapes as written, unescaped when it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text<'a> {
    Bytes(&'a [u8]),
    Json(&'a [u8]),
}

// ------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------

/// A column `unknown_fields = "add"` adds for a field: its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewColumn {
    pub name: String,
    pub column_type: String,
}

/// Why a message could not be turned into a row. Every variant is a property of the message
/// (with this plan), so retrying the same message cannot succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("invalid JSON at byte {offset}: {reason}")]
    InvalidJson { offset: usize, reason: &'static str },
    #[error("payload is not a JSON object: {found}")]
    NotAnObject { found: String },
    #[error("unknown field \"{field}\"")]
    UnknownField { field: String },
    /// `unknown_fields = "add"`: fields without a column yet; the lane adds them and reads
    /// the message again. Not a bad message.
    #[error("{} without a column yet", fields.iter().map(|f| format!("field {:?} ({})", f.name, f.column_type)).collect::<Vec<_>>().join(", "))]
    NewFields { fields: Vec<NewColumn> },
    #[error("duplicate field \"{field}\"")]
    DuplicateField { field: String },
    #[error("invalid line at byte {offset}: {reason}")]
    InvalidLine { offset: usize, reason: &'static str },
    #[error("{found} fields, the route reads {expected} (one a column, in order)")]
    FieldCount { found: usize, expected: usize },
    #[error("not in the schema registry's wire format: {reason}")]
    NotRegistryFramed { reason: String },
    /// The registry has no usable schema under the message's id (not found, not Avro...).
    #[error("schema id {id}: {reason}")]
    Schema { id: u32, reason: String },
    /// A JSON Schema message whose document its schema refuses (`validate = true`): where
    /// (`"/tags/1"` or `the document`), the first violation, and how many more there are.
    #[error("fails its JSON Schema at {at}: {reason}{}", match more {
        0 => String::new(),
        1 => " (and 1 more violation)".to_string(),
        n => format!(" (and {n} more violations)"),
    })]
    SchemaViolation {
        at: String,
        reason: String,
        more: usize,
    },
    #[error("invalid Protobuf message: {reason}")]
    InvalidProtobuf { reason: String },
    /// A route with an `envelope`: the message is no change event with a row
    /// (`envelope`: whose events, "Debezium", "Maxwell", "Canal").
    #[error("{envelope} change event: {reason}")]
    Envelope {
        envelope: &'static str,
        reason: String,
    },
    #[error("invalid Avro datum at byte {offset}, field {field}: {reason}")]
    InvalidAvro {
        offset: usize,
        field: String,
        reason: String,
    },
    /// `origin` is `field "id"` or `Kafka timestamp`.
    #[error("missing {origin} for column {column} {ty} (no default sluice can apply here)")]
    Missing {
        origin: String,
        column: String,
        ty: String,
    },
    /// `origin` is `field "age"`, `Kafka offset`, or `value` (for [`encode_json_value`]).
    #[error("{origin} -> column {column} {ty}: {reason}")]
    Value {
        origin: String,
        column: String,
        ty: String,
        reason: String,
    },
}

/// A conversion failure deep inside a value, before we know which column it belongs to.
/// Boxed so that the hot path's `Result` stays one word.
#[derive(Debug)]
struct ConvErr {
    reason: String,
    /// The value has more fractional digits than the type holds: ClickHouse would round or
    /// cut it, sluice refuses it (see the Variant arm of [`write_value`]).
    inexact: bool,
    /// Innermost last; rendered outermost first.
    path: Vec<PathSeg>,
}

#[derive(Debug)]
enum PathSeg {
    Index(usize),
    Key(String),
}

type Conv<T = ()> = Result<T, Box<ConvErr>>;

#[cold]
fn fail(reason: String) -> Box<ConvErr> {
    Box::new(ConvErr {
        reason,
        inexact: false,
        path: Vec::new(),
    })
}

/// [`fail`] for a value with more fractional digits than its type holds.
#[cold]
fn fail_inexact(reason: String) -> Box<ConvErr> {
    let mut e = fail(reason);
    e.inexact = true;
    e
}

fn at_index(i: usize) -> impl FnOnce(Box<ConvErr>) -> Box<ConvErr> {
    move |mut e| {
        e.path.push(PathSeg::Index(i));
        e
    }
}

/// `k` is a key's text without quotes (escapes, if any, are shown as written).
fn at_key(k: &[u8]) -> impl FnOnce(Box<ConvErr>) -> Box<ConvErr> + '_ {
    move |mut e| {
        e.path
            .push(PathSeg::Key(String::from_utf8_lossy(k).into_owned()));
        e
    }
}

impl ConvErr {
    fn into_row_error(self, origin: String, col: &ColumnPlan) -> RowError {
        let mut reason = String::new();
        for seg in self.path.iter().rev() {
            match seg {
                PathSeg::Index(i) => reason.push_str(&format!("[{i}]")),
                PathSeg::Key(k) => reason.push_str(&format!("[{:?}]", shorten(k))),
            }
        }
        if !reason.is_empty() {
            reason.push_str(": ");
        }
        reason.push_str(&self.reason);
        RowError::Value {
            origin,
            column: col.name.clone(),
            ty: col.ty.to_string(),
            reason,
        }
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(SHOW_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

/// The offending text, shortened, for messages.
fn show(raw: &[u8]) -> String {
    shorten(&String::from_utf8_lossy(raw))
}

fn field_origin(name: &str) -> String {
    format!("field {:?}", shorten(name))
}

// ------------------------------------------------------------------------------------------
// Scratch
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Row generation that filled the slot; a stale generation means "absent", which saves
    /// clearing all slots for every row.
    gen: u32,
    start: usize,
    end: usize,
    kind: Kind,
}

/// Reusable per-thread state for [`encode_json_row_with`]. Holds no meaning between rows;
/// one scratch may serve any number of plans.
#[derive(Debug, Default)]
pub struct RowScratch {
    gen: u32,
    slots: Vec<Slot>,
    /// Unescaped string values.
    tmp: Vec<u8>,
    /// Unescaped field names (only for names written with escapes).
    key: Vec<u8>,
    /// The text of a typed field value ([`FieldKind::Double`], [`FieldKind::Scaled`]) whose
    /// column reads it as text.
    typed_text: Vec<u8>,
    /// `UnknownFields::Add`: the row's fields without a column, each once.
    new_fields: Vec<NewColumn>,
}

impl RowScratch {
    pub fn new() -> RowScratch {
        RowScratch::default()
    }

    /// Records field `id`'s value span for row `gen`; `false` if that row filled it already
    /// (the field is given twice). On the slots alone, so a borrowed `key` may stay alive.
    #[inline(always)]
    fn fill(slots: &mut [Slot], gen: u32, id: usize, start: usize, end: usize, kind: Kind) -> bool {
        match slots.get_mut(id) {
            Some(slot) if slot.gen == gen => false,
            Some(slot) => {
                *slot = Slot {
                    gen,
                    start,
                    end,
                    kind,
                };
                true
            }
            None => true,
        }
    }

    fn start_row(&mut self, fields: usize) {
        if self.slots.len() < fields {
            self.slots.resize(fields, Slot::default());
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            // Wrapped: old generations could alias the new ones, so clear for real.
            self.slots.iter_mut().for_each(|s| s.gen = 0);
            self.gen = 1;
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<RowScratch> = RefCell::new(RowScratch::new());
}

// ------------------------------------------------------------------------------------------
// Scanner
// ------------------------------------------------------------------------------------------

/// Kind of a scanned JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Kind {
    #[default]
    Null,
    True,
    False,
    /// A number without fraction or exponent.
    Int,
    /// A number with fraction and/or exponent.
    Num,
    /// A string without escapes.
    Str,
    /// A string with backslash escapes.
    StrEsc,
    Arr,
    Obj,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::True | Kind::False => "a boolean",
            Kind::Int | Kind::Num => "a number",
            Kind::Str | Kind::StrEsc => "a string",
            Kind::Arr => "an array",
            Kind::Obj => "an object",
        }
    }
}

/// A scanned JSON value: its complete text (with quotes for strings) and kind.
#[derive(Debug, Clone, Copy)]
struct Val<'a> {
    raw: &'a [u8],
    kind: Kind,
}

impl<'a> Val<'a> {
    /// A string's text between the quotes, escapes as written.
    #[inline]
    fn inner(&self) -> &'a [u8] {
        self.raw
            .get(1..self.raw.len().saturating_sub(1))
            .unwrap_or_default()
    }

    /// String content: borrowed when there are no escapes, else unescaped into `tmp`.
    #[inline]
    fn str_bytes<'t>(&self, tmp: &'t mut Vec<u8>) -> Conv<&'t [u8]>
    where
        'a: 't,
    {
        let inner = self
            .raw
            .get(1..self.raw.len().saturating_sub(1))
            .unwrap_or_default();
        if self.kind == Kind::StrEsc {
            tmp.clear();
            unescape(inner, tmp).map_err(|why| fail(format!("{}: {why}", show(self.raw))))?;
            Ok(tmp.as_slice())
        } else {
            Ok(inner)
        }
    }
}

#[derive(Debug)]
struct JsonErr {
    pos: usize,
    reason: &'static str,
}

struct Scan<'a> {
    b: &'a [u8],
    pos: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that is `"`, `\` or a control character. Only the lowest
/// flagged byte is guaranteed exact (borrows can flag bytes above a true match), which is all
/// the scanner uses.
#[inline(always)]
fn string_specials(w: u64) -> u64 {
    let q = w ^ (ONES * b'"' as u64);
    let bs = w ^ (ONES * b'\\' as u64);
    let m_q = q.wrapping_sub(ONES) & !q;
    let m_bs = bs.wrapping_sub(ONES) & !bs;
    let m_ctl = w.wrapping_sub(ONES * 0x20) & !w;
    (m_q | m_bs | m_ctl) & HIGH
}

/// [`string_specials`] for 16 bytes with SSE2 (part of every x86_64 CPU, so no runtime check):
/// a bit per byte that is `"`, `\\` or a control character (exact, unlike the SWAR form), and a
/// bit per byte with its high bit set (non-ASCII).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn string_specials16(chunk: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is in the x86_64 baseline; the load is unaligned and reads exactly the 16
    // bytes `chunk` borrows.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // v <= 0x1f (unsigned): min(v, 0x1f) == v.
        let ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        let special = _mm_or_si128(_mm_or_si128(quote, backslash), ctl);
        (
            _mm_movemask_epi8(special) as u32,
            _mm_movemask_epi8(v) as u32,
        )
    }
}

impl<'a> Scan<'a> {
    #[inline]
    fn new(b: &'a [u8]) -> Scan<'a> {
        Scan { b, pos: 0 }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[cold]
    fn err(&self, pos: usize, reason: &'static str) -> JsonErr {
        JsonErr { pos, reason }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Scans a string starting at its opening quote; returns whether it has escapes.
    #[inline]
    fn string(&mut self) -> Result<bool, JsonErr> {
        let b = self.b;
        let start = self.pos;
        let mut i = start + 1;
        let mut escaped = false;
        let mut non_ascii = false;
        loop {
            // 16 bytes at a time (SSE2), then 8, until something needs a look.
            'plain: {
                #[cfg(target_arch = "x86_64")]
                while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<16>) {
                    let (m, high) = string_specials16(chunk);
                    if m != 0 {
                        let n = m.trailing_zeros();
                        // Only bytes before the special one belong to the string for sure.
                        non_ascii |= high & ((1u32 << n) - 1) != 0;
                        i += n as usize;
                        break 'plain;
                    }
                    non_ascii |= high != 0;
                    i += 16;
                }
                while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
                    let w = u64::from_le_bytes(*chunk);
                    let m = string_specials(w);
                    if m != 0 {
                        let n = (m.trailing_zeros() / 8) as usize;
                        let before = if n == 0 {
                            0
                        } else {
                            w & (u64::MAX >> (64 - 8 * n as u32))
                        };
                        non_ascii |= before & HIGH != 0;
                        i += n;
                        break 'plain;
                    }
                    non_ascii |= w & HIGH != 0;
                    i += 8;
                }
            }
            let Some(&c) = b.get(i) else {
                return Err(self.err(start, "unterminated string"));
            };
            match c {
                b'"' => {
                    if non_ascii && std::str::from_utf8(&b[start + 1..i]).is_err() {
                        return Err(self.err(start, "string is not valid UTF-8"));
                    }
                    self.pos = i + 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let hex = b.get(i + 2..i + 6);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err(i, "invalid \\u escape"));
                            }
                            i += 6;
                        }
                        _ => return Err(self.err(i, "invalid escape in string")),
                    }
                }
                c if c < 0x20 => return Err(self.err(i, "control character in string")),
                c => {
                    non_ascii |= c >= 0x80;
                    i += 1;
                }
            }
        }
    }

    /// Scans a number; returns whether it is integral in form (no fraction or exponent).
    #[inline]
    fn number(&mut self) -> Result<bool, JsonErr> {
        let b = self.b;
        let start = self.pos;
        let mut i = start;
        let digits = |i: &mut usize| {
            let s = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > s
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(self.err(start, "invalid number")),
        }
        let mut integral = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            integral = false;
            if !digits(&mut i) {
                return Err(self.err(i, "expected digits after the decimal point"));
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            integral = false;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return Err(self.err(i, "expected digits in the exponent"));
            }
        }
        self.pos = i;
        Ok(integral)
    }

    #[inline]
    fn literal(&mut self, lit: &'static [u8], kind: Kind) -> Result<Kind, JsonErr> {
        if self.b.get(self.pos..self.pos + lit.len()) == Some(lit) {
            self.pos += lit.len();
            Ok(kind)
        } else {
            Err(self.err(self.pos, "invalid literal"))
        }
    }

    /// Scans (and fully validates) one value at the current position.
    #[inline(always)]
    fn value(&mut self) -> Result<Kind, JsonErr> {
        match self.peek() {
            Some(b'"') => Ok(if self.string()? {
                Kind::StrEsc
            } else {
                Kind::Str
            }),
            Some(b'-' | b'0'..=b'9') => Ok(if self.number()? { Kind::Int } else { Kind::Num }),
            Some(b't') => self.literal(b"true", Kind::True),
            Some(b'f') => self.literal(b"false", Kind::False),
            Some(b'n') => self.literal(b"null", Kind::Null),
            Some(b'{') => self.container().map(|_| Kind::Obj),
            Some(b'[') => self.container().map(|_| Kind::Arr),
            Some(_) => Err(self.err(self.pos, "expected a JSON value")),
            None => Err(self.err(self.pos, "unexpected end of input")),
        }
    }

    /// `"key"` `:` with surrounding whitespace, inside an object being skipped.
    #[inline]
    fn key_colon(&mut self) -> Result<(), JsonErr> {
        if self.peek() != Some(b'"') {
            return Err(self.err(self.pos, "expected a field name"));
        }
        self.string()?;
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.err(self.pos, "expected ':'"));
        }
        self.pos += 1;
        self.ws();
        Ok(())
    }

    /// Validates an object or array without recursion: the open containers are a bit stack
    /// (1 = object), so depth costs no stack frames.
    #[inline(never)]
    fn container(&mut self) -> Result<(), JsonErr> {
        let mut stack = [0u64; MAX_JSON_DEPTH.div_ceil(64)];
        let mut depth = 0usize;
        let mut need_value = true;
        loop {
            if need_value {
                match self.peek() {
                    Some(c @ (b'{' | b'[')) => {
                        if depth >= MAX_JSON_DEPTH {
                            return Err(self.err(self.pos, "JSON nested too deeply"));
                        }
                        let is_obj = c == b'{';
                        let (w, bit) = (depth / 64, depth % 64);
                        if let Some(word) = stack.get_mut(w) {
                            if is_obj {
                                *word |= 1 << bit;
                            } else {
                                *word &= !(1 << bit);
                            }
                        }
                        depth += 1;
                        self.pos += 1;
                        self.ws();
                        let close = if is_obj { b'}' } else { b']' };
                        if self.peek() == Some(close) {
                            self.pos += 1;
                            depth -= 1;
                        } else {
                            if is_obj {
                                self.key_colon()?;
                            }
                            continue;
                        }
                    }
                    _ => {
                        self.value()?;
                    }
                }
            }
            // A value just ended: close containers or move to the next element.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let d = depth - 1;
                let is_obj = stack.get(d / 64).is_some_and(|w| w & (1 << (d % 64)) != 0);
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.ws();
                        if is_obj {
                            self.key_colon()?;
                        }
                        need_value = true;
                        break;
                    }
                    Some(b'}') if is_obj => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    Some(b']') if !is_obj => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    None => return Err(self.err(self.pos, "unexpected end of input")),
                    _ => {
                        return Err(self.err(
                            self.pos,
                            if is_obj {
                                "expected ',' or '}'"
                            } else {
                                "expected ',' or ']'"
                            },
                        ))
                    }
                }
            }
        }
    }
}

/// Appends the unescaped content of a (validated) JSON string body.
fn unescape(s: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    let mut i = 0;
    while i < s.len() {
        let Some(off) = s[i..].iter().position(|&c| c == b'\\') else {
            out.extend_from_slice(&s[i..]);
            return Ok(());
        };
        out.extend_from_slice(&s[i..i + off]);
        i += off;
        let esc = s.get(i + 1).copied().ok_or("truncated escape")?;
        i += 2;
        let c = match esc {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = hex4(s.get(i..i + 4))?;
                i += 4;
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    if s.get(i..i + 2) != Some(b"\\u") {
                        return Err("unpaired surrogate in \\u escape");
                    }
                    let lo = hex4(s.get(i + 2..i + 6))?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err("unpaired surrogate in \\u escape");
                    }
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..0xE000).contains(&hi) {
                    return Err("unpaired surrogate in \\u escape");
                } else {
                    hi
                };
                let ch = char::from_u32(cp).ok_or("invalid \\u escape")?;
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            _ => return Err("invalid escape"),
        };
        out.push(c);
    }
    Ok(())
}

fn hex4(h: Option<&[u8]>) -> Result<u32, &'static str> {
    let h = h.ok_or("truncated \\u escape")?;
    let mut v = 0u32;
    for &c in h {
        let d = (c as char).to_digit(16).ok_or("invalid \\u escape")?;
        v = v * 16 + d;
    }
    Ok(v)
}

/// Iterates the elements of a validated JSON array text.
struct ArrayIter<'a> {
    s: Scan<'a>,
    first: bool,
}

impl<'a> ArrayIter<'a> {
    fn new(raw: &'a [u8]) -> ArrayIter<'a> {
        let mut s = Scan::new(raw);
        s.pos = 1; // past '['
        ArrayIter { s, first: true }
    }

    fn next_val(&mut self) -> Conv<Option<Val<'a>>> {
        let s = &mut self.s;
        s.ws();
        if s.peek() == Some(b']') {
            return Ok(None);
        }
        if !self.first {
            if s.peek() != Some(b',') {
                return Err(fail("malformed array".into()));
            }
            s.pos += 1;
            s.ws();
        }
        self.first = false;
        let start = s.pos;
        let kind = s
            .value()
            .map_err(|e| fail(format!("malformed array: {}", e.reason)))?;
        Ok(Some(Val {
            raw: s.b.get(start..s.pos).unwrap_or_default(),
            kind,
        }))
    }
}

/// Iterates the members of a validated JSON object text: (key as a string value, value).
struct ObjectIter<'a> {
    s: Scan<'a>,
    first: bool,
}

impl<'a> ObjectIter<'a> {
    fn new(raw: &'a [u8]) -> ObjectIter<'a> {
        let mut s = Scan::new(raw);
        s.pos = 1; // past '{'
        ObjectIter { s, first: true }
    }

    fn next_pair(&mut self) -> Conv<Option<(Val<'a>, Val<'a>)>> {
        let s = &mut self.s;
        s.ws();
        if s.peek() == Some(b'}') {
            return Ok(None);
        }
        if !self.first {
            if s.peek() != Some(b',') {
                return Err(fail("malformed object".into()));
            }
            s.pos += 1;
            s.ws();
        }
        self.first = false;
        let bad = |e: JsonErr| fail(format!("malformed object: {}", e.reason));
        let kstart = s.pos;
        if s.peek() != Some(b'"') {
            return Err(fail("malformed object".into()));
        }
        let kesc = s.string().map_err(bad)?;
        let key = Val {
            raw: s.b.get(kstart..s.pos).unwrap_or_default(),
            kind: if kesc { Kind::StrEsc } else { Kind::Str },
        };
        s.ws();
        if s.peek() != Some(b':') {
            return Err(fail("malformed object".into()));
        }
        s.pos += 1;
        s.ws();
        let vstart = s.pos;
        let kind = s.value().map_err(bad)?;
        Ok(Some((
            key,
            Val {
                raw: s.b.get(vstart..s.pos).unwrap_or_default(),
                kind,
            },
        )))
    }
}

// ------------------------------------------------------------------------------------------
// Numbers
// ------------------------------------------------------------------------------------------

/// A signed integer as sign + magnitude, wide enough for every ClickHouse integer and decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BigInt {
    neg: bool,
    mag: U256,
    /// Significant decimal digits of `mag` (0 for zero).
    digits: u32,
}

enum NumErr {
    Syntax,
    /// Non-zero digits beyond the wanted scale.
    Inexact,
    Overflow,
}

/// Parses decimal text (`[+-]digits[.digits][e[+-]digits]`; JSON numbers are a subset) and
/// returns value × 10^scale, which must be an integer. The text is never rounded.
fn parse_scaled(text: &[u8], scale: u32) -> Result<BigInt, NumErr> {
    let mut i = 0;
    let neg = match text.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let int_start = i;
    while text.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int_part = &text[int_start..i];
    let mut frac_part: &[u8] = &[];
    if text.get(i) == Some(&b'.') {
        i += 1;
        let s = i;
        while text.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac_part = &text[s..i];
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(NumErr::Syntax);
    }
    let mut exp: i64 = 0;
    if let Some(b'e' | b'E') = text.get(i) {
        i += 1;
        let eneg = match text.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let s = i;
        while let Some(&d) = text.get(i).filter(|c| c.is_ascii_digit()) {
            // Saturate: any exponent this large overflows or underflows every type anyway.
            exp = (exp * 10 + (d - b'0') as i64).min(1 << 40);
            i += 1;
        }
        if i == s {
            return Err(NumErr::Syntax);
        }
        if eneg {
            exp = -exp;
        }
    }
    if i != text.len() {
        return Err(NumErr::Syntax);
    }
    // value × 10^scale = D × 10^e where D = int_part ++ frac_part.
    let n = int_part.len() + frac_part.len();
    let e = exp - frac_part.len() as i64 + scale as i64;
    // Digits of D at index >= keep are dropped by a negative e and must be zero.
    let keep = if e < 0 {
        (n as i64 + e).max(0) as usize
    } else {
        n
    };
    let digit = |k: usize| -> u8 {
        let c = if k < int_part.len() {
            int_part[k]
        } else {
            frac_part[k - int_part.len()]
        };
        c - b'0'
    };
    if (keep..n).any(|k| digit(k) != 0) {
        return Err(NumErr::Inexact);
    }
    // Accumulate in u128 (38 digits) and only go to 256 bits for the rare longer numbers.
    let mut small: u128 = 0;
    let mut big: Option<U256> = None;
    let mut sig: u32 = 0;
    for k in 0..keep {
        let d = digit(k);
        if sig == 0 && d == 0 {
            continue;
        }
        sig += 1;
        match big {
            None if sig <= 38 => small = small * 10 + d as u128,
            None => {
                big = Some(
                    U256::from_u128(small)
                        .checked_mul10_add(d)
                        .ok_or(NumErr::Overflow)?,
                )
            }
            Some(b) => big = Some(b.checked_mul10_add(d).ok_or(NumErr::Overflow)?),
        }
    }
    let mut mag = big.unwrap_or(U256::from_u128(small));
    if e > 0 && sig > 0 {
        if e > 80 {
            return Err(NumErr::Overflow);
        }
        for _ in 0..e {
            mag = mag.checked_mul10_add(0).ok_or(NumErr::Overflow)?;
        }
        sig += e as u32;
    }
    Ok(BigInt {
        neg: neg && sig > 0,
        mag,
        digits: sig,
    })
}

/// Fast path for `Decimal(P <= 18, S)` from plain `-?digits[.digits]` text whose fraction has
/// at most `scale` digits: the scaled value, if it has at most `precision` digits. Anything
/// else (exponents, extra zeros, errors) returns None and goes through [`parse_scaled`].
#[inline]
fn decimal_i64(text: &[u8], scale: u32, precision: u32) -> Option<i64> {
    let d = scan_digits(text, 0)?;
    if d.end != text.len() {
        return None;
    }
    decimal_from_digits(&d, scale, precision)
}

/// The unscaled `Decimal(precision <= 18, scale)` value of `d`: `None` without a digit, with a
/// point not followed by one, past 18 significant digits (an i64 might not hold it scaled),
/// with more fractional digits than the scale (the general path refuses them: no rounding)
/// or with more digits than the precision once scaled.
#[inline(always)]
fn decimal_from_digits(d: &Digits, scale: u32, precision: u32) -> Option<i64> {
    let significant = d.significant();
    if d.all == 0 || d.frac_digits == Some(0) || significant > 18 {
        return None;
    }
    let up = scale.checked_sub(u32::try_from(d.frac_digits.unwrap_or(0)).ok()?)?;
    if significant > 0 && significant + up > precision {
        return None;
    }
    let v = i64::try_from(d.value)
        .ok()?
        .checked_mul(10i64.checked_pow(up)?)?;
    Some(if d.neg { -v } else { v })
}

/// Fast path for the overwhelmingly common plain JSON integer that fits an `i64`-ish range.
#[inline]
fn parse_plain_int(raw: &[u8]) -> Option<BigInt> {
    let (neg, digits) = match raw.first() {
        Some(b'-') => (true, raw.get(1..)?),
        _ => (false, raw),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    // `digits` is only used for Decimal precision, which never takes this path.
    Some(BigInt {
        neg: neg && v != 0,
        mag: U256::from_u128(v as u128),
        digits: 0,
    })
}

/// Exact powers of ten as `f64` (10^22 is the largest one a double holds exactly).
const POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A scanned JSON number without exponent whose digits, read as one integer `m`, fit in 53
/// bits and whose fraction has at most 22 digits: then `m` and `10^fraction` are exact
/// doubles and one IEEE division rounds their quotient correctly (Clinger's fast path, which
/// `str::parse` takes too, after a UTF-8 check and a generic parse). None: take the full
/// parser. The wide bench spent 12 % of its time parsing its 10 Float64 fields per row.
#[inline]
fn fast_f64(raw: &[u8]) -> Option<f64> {
    let (neg, digits) = match raw.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, raw),
    };
    let mut m: u64 = 0;
    let mut n = 0usize;
    let mut frac: Option<usize> = None;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                n += 1;
                if n > 19 {
                    return None;
                }
                m = m * 10 + u64::from(c - b'0');
            }
            b'.' if frac.is_none() => frac = Some(n),
            _ => return None,
        }
    }
    let scale = n - frac.unwrap_or(n);
    if m > 1 << 53 || scale >= POW10_F64.len() {
        return None;
    }
    let x = m as f64 / POW10_F64[scale];
    Some(if neg { -x } else { x })
}

/// The value of eight ASCII digits read as a little-endian word (the first digit in the low
/// byte), or `None` if any byte is not a digit: three multiplies instead of eight dependent
/// multiply-adds (the SWAR form fast_float and simdjson use).
#[inline(always)]
fn eight_digits(w: u64) -> Option<u32> {
    let d = w.wrapping_sub(0x3030_3030_3030_3030);
    // A byte below '0' wraps to >= 0x80 in d; a byte above '9' reaches 0x80 in w + 0x46.
    if (w.wrapping_add(0x4646_4646_4646_4646) | d) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    // Pairs of digits, then fours, then the eight.
    let d = d.wrapping_mul(10).wrapping_add(d >> 8);
    let lo = (d & 0x0000_00FF_0000_00FF).wrapping_mul(0x000F_4240_0000_0064);
    let hi = ((d >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(0x0000_2710_0000_0001);
    Some((lo.wrapping_add(hi) >> 32) as u32)
}

/// A plain JSON integer of at most 18 digits (so it cannot overflow `i64`).
#[inline(always)]
fn parse_i64(raw: &[u8]) -> Option<i64> {
    let (neg, digits) = match raw.first() {
        Some(b'-') => (true, raw.get(1..)?),
        _ => (false, raw),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    let mut digits = digits;
    // Long numbers (ids, epochs, Int64s): their first 8 digits in one word.
    if let Some((head, rest)) = digits.split_first_chunk::<8>() {
        v = eight_digits(u64::from_le_bytes(*head))? as i64;
        digits = rest;
    }
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as i64;
    }
    Some(if neg { -v } else { v })
}

/// Writes `x` if `ty` is an integer type of at most 64 bits and `x` fits; false otherwise
/// (the caller then takes the general path, which also produces the error).
#[inline(always)]
fn put_small_int(ty: &ChType, x: i64, out: &mut Vec<u8>) -> bool {
    IntTy::of(ty).is_some_and(|t| put_int_as(t, x, out))
}

/// Reads an integer from a JSON number or a string holding one, exactly.
#[inline]
fn read_int(v: Val<'_>, tmp: &mut Vec<u8>) -> Conv<BigInt> {
    let text: &[u8] = match v.kind {
        Kind::Int => {
            if let Some(n) = parse_plain_int(v.raw) {
                return Ok(n);
            }
            v.raw
        }
        Kind::Num => v.raw,
        Kind::Str | Kind::StrEsc => v.str_bytes(tmp)?,
        k => {
            return Err(fail(format!(
                "expected an integer, found {} {}",
                k.describe(),
                show(v.raw)
            )))
        }
    };
    parse_scaled(text, 0).map_err(|e| {
        fail(match e {
            NumErr::Syntax => format!("{} is not an integer", show(v.raw)),
            NumErr::Inexact => format!(
                "{} is not an integer (it has a fractional part)",
                show(v.raw)
            ),
            NumErr::Overflow => format!("{} is out of range", show(v.raw)),
        })
    })
}

impl BigInt {
    /// The value as i128 if it fits.
    #[inline]
    fn to_i128(self) -> Option<i128> {
        let m = self.mag.to_u128()?;
        if self.neg {
            if m <= i128::MAX as u128 {
                Some(-(m as i128))
            } else if m == 1u128 << 127 {
                Some(i128::MIN)
            } else {
                None
            }
        } else {
            i128::try_from(m).ok()
        }
    }

    fn from_i128(v: i128) -> BigInt {
        BigInt {
            neg: v < 0,
            mag: U256::from_u128(v.unsigned_abs()),
            digits: 0,
        }
    }
}

const INT256_RANGE: &str = "-57896044618658097711785492504343953926634992332820282019728792003956564819968..=57896044618658097711785492504343953926634992332820282019728792003956564819967";
const UINT256_RANGE: &str =
    "0..=115792089237316195423570985008687907853269984665640564039457584007913129639935";

/// Writes `n` as integer type `ty` (plain integer types only); `Err` carries the range text.
#[inline]
fn put_int(ty: &ChType, n: BigInt, out: &mut Vec<u8>) -> Result<(), String> {
    macro_rules! small {
        ($t:ty) => {{
            match n.to_i128().and_then(|v| <$t>::try_from(v).ok()) {
                Some(v) => {
                    out.extend_from_slice(&v.to_le_bytes());
                    Ok(())
                }
                None => Err(format!("{}..={}", <$t>::MIN, <$t>::MAX)),
            }
        }};
    }
    match ty {
        ChType::UInt8 => small!(u8),
        ChType::UInt16 => small!(u16),
        ChType::UInt32 => small!(u32),
        ChType::UInt64 => small!(u64),
        ChType::Int8 => small!(i8),
        ChType::Int16 => small!(i16),
        ChType::Int32 => small!(i32),
        ChType::Int64 => small!(i64),
        ChType::Int128 => small!(i128),
        ChType::UInt128 => match n.mag.to_u128() {
            Some(m) if !n.neg => {
                rb::put_u128(out, m);
                Ok(())
            }
            _ => Err(format!("0..={}", u128::MAX)),
        },
        ChType::UInt256 => {
            if n.neg {
                return Err(UINT256_RANGE.into());
            }
            rb::put_u256(out, n.mag);
            Ok(())
        }
        ChType::Int256 => {
            let fits = if n.neg {
                n.mag <= U256::HALF
            } else {
                n.mag < U256::HALF
            };
            if !fits {
                return Err(INT256_RANGE.into());
            }
            rb::put_signed(out, n.neg, n.mag, 32);
            Ok(())
        }
        _ => Err(format!("(not an integer type: {ty})")),
    }
}

fn is_int_type(ty: &ChType) -> bool {
    matches!(
        ty,
        ChType::UInt8
            | ChType::UInt16
            | ChType::UInt32
            | ChType::UInt64
            | ChType::UInt128
            | ChType::UInt256
            | ChType::Int8
            | ChType::Int16
            | ChType::Int32
            | ChType::Int64
            | ChType::Int128
            | ChType::Int256
    )
}

/// True for `inf`, `-infinity`, ... (what makes an infinite parse legitimate).
fn is_inf_literal(s: &str) -> bool {
    let t = s.trim_start_matches(['+', '-']);
    t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity")
}

/// The text of a number, or of a string (unescaped): what the numeric types read. `what` names
/// the expected value in the error for any other kind (`expected a number, found an array`).
fn scalar_text<'t>(v: Val<'t>, tmp: &'t mut Vec<u8>, what: &str) -> Conv<&'t [u8]> {
    match v.kind {
        Kind::Int | Kind::Num => Ok(v.raw),
        Kind::Str | Kind::StrEsc => v.str_bytes(tmp),
        k => Err(fail(format!(
            "expected {what}, found {} {}",
            k.describe(),
            show(v.raw)
        ))),
    }
}

fn read_float<F>(v: Val<'_>, tmp: &mut Vec<u8>, what: &str) -> Conv<F>
where
    F: std::str::FromStr + Copy + Into<f64>,
{
    let text = scalar_text(v, tmp, "a number")?;
    let s =
        std::str::from_utf8(text).map_err(|_| fail(format!("{} is not a number", show(v.raw))))?;
    // Rust's float parser accepts `1_0`? No; it accepts exactly decimal/exponent forms,
    // inf/infinity/nan, and rounds correctly to the target type (no double rounding).
    let f: F = s
        .parse()
        .map_err(|_| fail(format!("{} is not a number", show(v.raw))))?;
    let x: f64 = f.into();
    if x.is_infinite() && !is_inf_literal(s) {
        return Err(fail(format!("{} is out of {what} range", show(v.raw))));
    }
    Ok(f)
}

// ------------------------------------------------------------------------------------------
// Dates and times
// ------------------------------------------------------------------------------------------

/// Days from 1970-01-01 to the proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = ((m + 9) % 12) as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits_at(s: &[u8], at: usize, n: usize) -> Option<u32> {
    let d = s.get(at..at + n)?;
    let mut v = 0u32;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// `YYYY-MM-DD` at the start of `s`: (year, month, day), validated.
fn parse_ymd(s: &[u8]) -> Option<(i64, u32, u32)> {
    let y = digits_at(s, 0, 4)? as i64;
    let m = digits_at(s, 5, 2)?;
    let d = digits_at(s, 8, 2)?;
    if s.get(4) != Some(&b'-')
        || s.get(7) != Some(&b'-')
        || !(1..=12).contains(&m)
        || d == 0
        || d > days_in_month(y, m)
    {
        return None;
    }
    Some((y, m, d))
}

fn looks_like_date(s: &[u8]) -> bool {
    s.len() >= 10 && s.get(4) == Some(&b'-') && s.get(7) == Some(&b'-')
}

const DATE32_MIN: i64 = -25_567; // 1900-01-01
const DATE32_MAX: i64 = 120_529; // 2299-12-31
const DT64_MIN_SECS: i64 = -2_208_988_800; // 1900-01-01 00:00:00 UTC
const DT64_END_SECS: i64 = 10_413_792_000; // 2300-01-01 00:00:00 UTC

fn pow10(p: u32) -> i64 {
    10i64.pow(p.min(18))
}

/// Parses a date-time string into ticks of 10^-precision s since the epoch (UTC).
fn parse_datetime(s: &[u8], tz: Option<Tz>, precision: u32) -> Result<i128, &'static str> {
    const BAD: &str = "is not a date-time (expected YYYY-MM-DD hh:mm:ss[.fff][Z|+hh:mm])";
    let (y, mo, d) = parse_ymd(s).ok_or(BAD)?;
    let mut i = 10;
    let (mut h, mut mi, mut sec) = (0u32, 0u32, 0u32);
    let mut frac: &[u8] = &[];
    if let Some(b' ' | b'T' | b't') = s.get(i) {
        h = digits_at(s, i + 1, 2).ok_or(BAD)?;
        if s.get(i + 3) != Some(&b':') {
            return Err(BAD);
        }
        mi = digits_at(s, i + 4, 2).ok_or(BAD)?;
        i += 6;
        if s.get(i) == Some(&b':') {
            sec = digits_at(s, i + 1, 2).ok_or(BAD)?;
            i += 3;
            if s.get(i) == Some(&b'.') {
                let st = i + 1;
                i = st;
                while s.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                frac = &s[st..i];
                if frac.is_empty() {
                    return Err(BAD);
                }
            }
        }
        if h > 23 || mi > 59 || sec > 59 {
            return Err("has an invalid time of day");
        }
    }
    // Optional offset.
    let offset: Option<i64> = match s.get(i) {
        None => None,
        Some(b'Z' | b'z') => {
            i += 1;
            Some(0)
        }
        Some(&c @ (b'+' | b'-')) => {
            let oh = digits_at(s, i + 1, 2).ok_or(BAD)? as i64;
            i += 3;
            let om = if s.get(i) == Some(&b':') {
                let m = digits_at(s, i + 1, 2).ok_or(BAD)?;
                i += 3;
                m
            } else if let Some(m) = digits_at(s, i, 2) {
                i += 2;
                m
            } else {
                0
            } as i64;
            if oh > 23 || om > 59 {
                return Err("has an invalid UTC offset");
            }
            let o = oh * 3600 + om * 60;
            Some(if c == b'-' { -o } else { o })
        }
        Some(_) => return Err(BAD),
    };
    if i != s.len() {
        return Err(BAD);
    }
    let local = days_from_civil(y, mo, d) * 86_400 + (h * 3600 + mi * 60 + sec) as i64;
    let utc = match (offset, tz) {
        (Some(o), _) => local - o,
        (None, None) | (None, Some(Tz::UTC)) => local,
        (None, Some(tz)) => {
            let ndt = NaiveDate::from_ymd_opt(y as i32, mo, d)
                .and_then(|nd| nd.and_hms_opt(h, mi, sec))
                .ok_or(BAD)?;
            match tz.from_local_datetime(&ndt) {
                LocalResult::Single(t) => t.timestamp(),
                LocalResult::Ambiguous(..) => {
                    return Err(
                        "is ambiguous in the column's time zone (DST change); add a UTC offset",
                    )
                }
                LocalResult::None => {
                    return Err(
                        "does not exist in the column's time zone (DST gap); add a UTC offset",
                    )
                }
            }
        }
    };
    // Fraction: keep `precision` digits; any further digit must be zero.
    let p = precision as usize;
    if frac.iter().skip(p).any(|&c| c != b'0') {
        return Err("has more fractional digits than the column's precision");
    }
    let mut f: i128 = 0;
    for k in 0..p {
        f = f * 10 + frac.get(k).map_or(0, |c| (c - b'0') as i128);
    }
    Ok(utc as i128 * pow10(precision) as i128 + f)
}

/// Epoch or date-time for `DateTime`/`DateTime64`: ticks of 10^-precision s.
fn read_ticks(v: Val<'_>, tmp: &mut Vec<u8>, tz: Option<Tz>, precision: u32) -> Conv<i128> {
    let text: &[u8] = match v.kind {
        Kind::Int | Kind::Num => v.raw,
        Kind::Str | Kind::StrEsc => {
            let s = v.str_bytes(tmp)?;
            if looks_like_date(s) {
                return parse_datetime(s, tz, precision).map_err(|why| {
                    let reason = format!("{} {why}", show(v.raw));
                    if why.contains("fractional digits") {
                        fail_inexact(reason)
                    } else {
                        fail(reason)
                    }
                });
            }
            s
        }
        k => {
            return Err(fail(format!(
                "expected a date-time, found {} {}",
                k.describe(),
                show(v.raw)
            )))
        }
    };
    let n = parse_scaled(text, precision).map_err(|e| match e {
        NumErr::Syntax => fail(format!(
            "{} is not a date-time or epoch seconds",
            show(v.raw)
        )),
        NumErr::Inexact => fail_inexact(format!(
            "{} has more fractional digits than the column's precision",
            show(v.raw)
        )),
        NumErr::Overflow => fail(format!("{} is out of range", show(v.raw))),
    })?;
    n.to_i128()
        .ok_or_else(|| fail(format!("{} is out of range", show(v.raw))))
}

/// The largest time a Time or Time64 holds: 999:59:59 (and any fraction of that second).
const MAX_TIME_SECONDS: i128 = 999 * 3600 + 59 * 60 + 59;

/// A Time or Time64 value in ticks of 10^-precision s: `[-]h:mm:ss[.fraction]` (1 to 3 hour
/// digits), or seconds as a number or a numeric string, with an exact fraction. Out of range
/// or more fractional digits than the precision: an error, never a cut.
fn read_time(v: Val<'_>, tmp: &mut Vec<u8>, precision: u32) -> Conv<i128> {
    let text = scalar_text(v, tmp, "a time")?;
    let scale = pow10(precision) as i128;
    let ticks = if text.contains(&b':') {
        parse_time(text, precision)
            .map_err(|why| fail(format!("{} is not a time: {why}", show(v.raw))))?
    } else {
        parse_scaled(text, precision)
            .map_err(|e| {
                fail(match e {
                    NumErr::Syntax => {
                        format!("{} is not a time (hh:mm:ss) or seconds", show(v.raw))
                    }
                    NumErr::Inexact => format!(
                        "{} has more fractional digits than the column's precision",
                        show(v.raw)
                    ),
                    NumErr::Overflow => format!("{} is out of range", show(v.raw)),
                })
            })?
            .to_i128()
            .ok_or_else(|| fail(format!("{} is out of range", show(v.raw))))?
    };
    let max = MAX_TIME_SECONDS * scale + (scale - 1);
    // unsigned_abs: i128::MIN's abs() overflows.
    if ticks.unsigned_abs() > max.unsigned_abs() {
        return Err(fail(format!(
            "{} is out of range -999:59:59..=999:59:59",
            show(v.raw)
        )));
    }
    Ok(ticks)
}

/// `[-]h:mm:ss[.fraction]` in ticks of 10^-precision s.
fn parse_time(s: &[u8], precision: u32) -> Result<i128, &'static str> {
    let (negative, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let colon = s.iter().position(|&c| c == b':').ok_or("no hours")?;
    let (hours, rest) = s.split_at(colon);
    if hours.is_empty() || hours.len() > 3 || !hours.iter().all(u8::is_ascii_digit) {
        return Err("hours are 1 to 3 digits");
    }
    let h = hours
        .iter()
        .fold(0i128, |a, &c| a * 10 + i128::from(c - b'0'));
    let two = |at: usize| -> Option<i128> {
        match rest.get(at..at + 2) {
            Some([a, b]) if a.is_ascii_digit() && b.is_ascii_digit() => {
                Some(i128::from((a - b'0') * 10 + (b - b'0')))
            }
            _ => None,
        }
    };
    // rest is ":mm:ss[.f]"
    let (m, sec) = match (rest.get(3), two(1), two(4)) {
        (Some(b':'), Some(m), Some(sec)) => (m, sec),
        _ => return Err("expected hh:mm:ss"),
    };
    if m > 59 || sec > 59 {
        return Err("minutes and seconds are 00 to 59");
    }
    let scale = pow10(precision) as i128;
    let frac = match rest.get(6..) {
        None | Some([]) => 0,
        Some([b'.', digits @ ..])
            if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) =>
        {
            // Keep `precision` digits (missing ones are zeros); any further digit must be 0.
            let p = precision as usize;
            if digits.iter().skip(p).any(|&c| c != b'0') {
                return Err("more fractional digits than the column's precision");
            }
            (0..p).fold(0i128, |f, k| {
                f * 10 + digits.get(k).map_or(0, |&c| i128::from(c - b'0'))
            })
        }
        _ => return Err("expected hh:mm:ss[.fraction]"),
    };
    let ticks = ((h * 3600 + m * 60 + sec) * scale) + frac;
    Ok(if negative { -ticks } else { ticks })
}

fn dt64_range(precision: u32) -> (i128, i128) {
    let p = pow10(precision) as i128;
    let lo = (DT64_MIN_SECS as i128 * p).max(i64::MIN as i128);
    let hi = (DT64_END_SECS as i128 * p - 1).min(i64::MAX as i128);
    (lo, hi)
}

fn put_date_days(ty: &ChType, days: i64, shown: &str, out: &mut Vec<u8>) -> Conv {
    match ty {
        ChType::Date => match u16::try_from(days) {
            Ok(d) => {
                rb::put_date(out, d);
                Ok(())
            }
            Err(_) => Err(fail(format!(
                "{shown} is out of Date range 1970-01-01..=2149-06-06"
            ))),
        },
        _ => {
            if !(DATE32_MIN..=DATE32_MAX).contains(&days) {
                return Err(fail(format!(
                    "{shown} is out of Date32 range 1900-01-01..=2299-12-31"
                )));
            }
            rb::put_date32(out, days as i32);
            Ok(())
        }
    }
}

// ------------------------------------------------------------------------------------------
// Values
// ------------------------------------------------------------------------------------------

/// Writes JSON value `v` as type `ty`.
/// `ty` without Nullable and LowCardinality around it.
fn base_type(ty: &ChType) -> &ChType {
    match ty {
        ChType::Nullable(t) | ChType::LowCardinality(t) => base_type(t),
        t => t,
    }
}

fn is_time_type(ty: &ChType) -> bool {
    matches!(
        ty,
        ChType::Date | ChType::Date32 | ChType::DateTime { .. } | ChType::DateTime64 { .. }
    )
}

/// Writes the value `v` of column `i` of `plan`: through its date-time format first where the
/// route gives it one ([`RowPlan::set_time_formats`]), then as [`write_value`] does.
#[inline]
fn write_col(
    plan: &RowPlan,
    i: usize,
    col: &ColumnPlan,
    v: Val<'_>,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Conv {
    let Some(Some(format)) = plan.times.get(i) else {
        return write_value(&col.ty, v, tmp, out);
    };
    let is_string = matches!(v.kind, Kind::Str | Kind::StrEsc);
    if !(is_string || matches!(v.kind, Kind::Int | Kind::Num)) || !format.applies_to(is_string) {
        return write_value(&col.ty, v, tmp, out);
    }
    let mut text = Vec::new();
    let content: &[u8] = if is_string {
        text.extend_from_slice(v.str_bytes(tmp)?);
        &text
    } else {
        v.raw
    };
    let date_only = matches!(base_type(&col.ty), ChType::Date | ChType::Date32);
    let rewritten = format
        .rewrite(content, date_only)
        .map_err(|why| fail(format!("{} {why}", show(v.raw))))?;
    let Some(rewritten) = rewritten else {
        return write_value(&col.ty, v, tmp, out);
    };
    let (raw, kind) = match format {
        TimeFormat::Epoch { .. } => (rewritten, Kind::Num),
        TimeFormat::Pattern(_) => (format!("\"{rewritten}\""), Kind::Str),
    };
    write_value(
        &col.ty,
        Val {
            raw: raw.as_bytes(),
            kind,
        },
        tmp,
        out,
    )
}

fn write_value(ty: &ChType, v: Val<'_>, tmp: &mut Vec<u8>, out: &mut Vec<u8>) -> Conv {
    match ty {
        ChType::Nullable(inner) => {
            if v.kind == Kind::Null {
                out.push(rb::NULL);
                return Ok(());
            }
            out.push(rb::NOT_NULL);
            return write_value(inner, v, tmp, out);
        }
        ChType::LowCardinality(inner) => return write_value(inner, v, tmp, out),
        // Geometry: a Variant, NULL included.
        ChType::Geo(_, storage) | ChType::Nested(storage) => {
            return write_value(storage, v, tmp, out)
        }
        ChType::Variant { .. } if v.kind == Kind::Null => {
            out.push(rb::VARIANT_NULL);
            return Ok(());
        }
        ChType::Dynamic { .. } if v.kind == Kind::Null => {
            out.push(rb::DYNAMIC_NULL);
            return Ok(());
        }
        _ => {}
    }
    if v.kind == Kind::Null {
        return Err(fail("null for non-Nullable column".into()));
    }
    match ty {
        ChType::String => {
            match v.kind {
                Kind::Str | Kind::StrEsc => {
                    let s = v.str_bytes(tmp)?;
                    rb::put_str(out, s);
                }
                // Numbers, booleans, objects, arrays: their JSON text, as written.
                _ => rb::put_str(out, v.raw),
            }
            Ok(())
        }
        ChType::FixedString(n) => {
            let s = match v.kind {
                Kind::Str | Kind::StrEsc => v.str_bytes(tmp)?,
                _ => v.raw,
            };
            rb::put_fixed_string(out, s, *n).map_err(|e| fail(format!("{}: {e}", show(v.raw))))
        }
        // UInt8 is how ClickHouse stored booleans before it had Bool (and still accepts
        // true/false into it in JSONEachRow): JSON booleans are 1 and 0 there, nowhere else.
        ChType::UInt8 if matches!(v.kind, Kind::True | Kind::False) => {
            out.push(u8::from(v.kind == Kind::True));
            Ok(())
        }
        t if is_int_type(t) => {
            // Fast path: a plain JSON integer into a <= 64-bit column, no 256-bit detour.
            if v.kind == Kind::Int {
                if let Some(x) = parse_i64(v.raw) {
                    if put_small_int(t, x, out) {
                        return Ok(());
                    }
                }
            }
            let n = read_int(v, tmp)?;
            put_int(t, n, out)
                .map_err(|range| fail(format!("{} out of range {range}", show(v.raw))))
        }
        ChType::Float64 => {
            let fast = match v.kind {
                Kind::Int | Kind::Num => fast_f64(v.raw),
                _ => None,
            };
            let f: f64 = match fast {
                Some(f) => f,
                None => read_float(v, tmp, "Float64")?,
            };
            rb::put_f64(out, f);
            Ok(())
        }
        ChType::Float32 => {
            let f: f32 = read_float(v, tmp, "Float32")?;
            rb::put_f32(out, f);
            Ok(())
        }
        ChType::BFloat16 => {
            // The Float32's upper half, cut rather than rounded, as ClickHouse's own parser
            // does (1.1 is 0x3F8C, 1.09375; 65504.7 is 65280).
            let f: f32 = read_float(v, tmp, "BFloat16")?;
            out.extend_from_slice(&((f.to_bits() >> 16) as u16).to_le_bytes());
            Ok(())
        }
        ChType::Time => {
            let secs = read_time(v, tmp, 0)?;
            rb::put_i32(out, secs as i32);
            Ok(())
        }
        ChType::Time64 { precision } => {
            let ticks = read_time(v, tmp, u32::from((*precision).min(9)))?;
            rb::put_i64(out, ticks as i64);
            Ok(())
        }
        ChType::Bool => {
            let b = match v.kind {
                Kind::True => true,
                Kind::False => false,
                Kind::Str | Kind::StrEsc => match v.str_bytes(tmp)? {
                    b"true" | b"1" => true,
                    b"false" | b"0" => false,
                    _ => return Err(fail(format!("{} is not a boolean", show(v.raw)))),
                },
                _ => match read_int(v, tmp)?.to_i128() {
                    Some(0) => false,
                    Some(1) => true,
                    _ => {
                        return Err(fail(format!(
                            "{} is not a boolean (only 0 and 1 are)",
                            show(v.raw)
                        )))
                    }
                },
            };
            rb::put_bool(out, b);
            Ok(())
        }
        ChType::Decimal { precision, scale } => {
            let text = scalar_text(v, tmp, "a decimal")?;
            if *precision <= 18 {
                if let Some(x) = decimal_i64(text, *scale as u32, *precision as u32) {
                    rb::put_signed(
                        out,
                        x < 0,
                        U256::from_u128(x.unsigned_abs() as u128),
                        rb::decimal_width(*precision),
                    );
                    return Ok(());
                }
            }
            let n = match parse_scaled(text, *scale as u32) {
                Ok(n) if n.digits <= *precision as u32 => n,
                Ok(_) | Err(NumErr::Overflow) => {
                    return Err(fail(format!(
                        "{} out of range: more than {} digits before the decimal point",
                        show(v.raw),
                        precision - scale
                    )))
                }
                Err(NumErr::Inexact) => {
                    return Err(fail_inexact(format!(
                        "{} has more than {scale} fractional digits (no rounding)",
                        show(v.raw)
                    )))
                }
                Err(NumErr::Syntax) => {
                    return Err(fail(format!("{} is not a decimal number", show(v.raw))))
                }
            };
            rb::put_decimal(out, *precision, n.neg, n.mag);
            Ok(())
        }
        ChType::Uuid => {
            let s = match v.kind {
                Kind::Str | Kind::StrEsc => v.str_bytes(tmp)?,
                k => {
                    return Err(fail(format!(
                        "expected a UUID string, found {} {}",
                        k.describe(),
                        show(v.raw)
                    )))
                }
            };
            let u = uuid::Uuid::try_parse_ascii(s)
                .map_err(|_| fail(format!("{} is not a UUID", show(v.raw))))?;
            rb::put_uuid(out, u.as_u128());
            Ok(())
        }
        ChType::IPv4 => {
            match v.kind {
                Kind::Str | Kind::StrEsc => {
                    let s = v.str_bytes(tmp)?;
                    let ip = std::str::from_utf8(s)
                        .ok()
                        .and_then(|s| s.parse::<Ipv4Addr>().ok())
                        .ok_or_else(|| fail(format!("{} is not an IPv4 address", show(v.raw))))?;
                    rb::put_ipv4(out, ip);
                }
                _ => {
                    let n = read_int(v, tmp)?;
                    put_int(&ChType::UInt32, n, out)
                        .map_err(|r| fail(format!("{} out of IPv4 range {r}", show(v.raw))))?;
                }
            }
            Ok(())
        }
        ChType::IPv6 => {
            let s = match v.kind {
                Kind::Str | Kind::StrEsc => v.str_bytes(tmp)?,
                k => {
                    return Err(fail(format!(
                        "expected an IPv6 string, found {} {}",
                        k.describe(),
                        show(v.raw)
                    )))
                }
            };
            let s = std::str::from_utf8(s).unwrap_or_default();
            let ip = match s.parse::<Ipv6Addr>() {
                Ok(ip) => ip,
                Err(_) => s
                    .parse::<Ipv4Addr>()
                    .map(|v4| v4.to_ipv6_mapped())
                    .map_err(|_| fail(format!("{} is not an IP address", show(v.raw))))?,
            };
            rb::put_ipv6(out, ip);
            Ok(())
        }
        ChType::Date | ChType::Date32 => {
            let days = match v.kind {
                Kind::Str | Kind::StrEsc => {
                    let s = v.str_bytes(tmp)?;
                    match parse_ymd(s) {
                        Some((y, m, d)) if s.len() == 10 => days_from_civil(y, m, d),
                        _ => {
                            return Err(fail(format!(
                                "{} is not a date (expected YYYY-MM-DD)",
                                show(v.raw)
                            )))
                        }
                    }
                }
                _ => {
                    let n = read_int(v, tmp)?;
                    n.to_i128()
                        .and_then(|d| i64::try_from(d).ok())
                        .ok_or_else(|| fail(format!("{} is out of range", show(v.raw))))?
                }
            };
            put_date_days(ty, days, &show(v.raw), out)
        }
        ChType::DateTime { tz } => {
            let secs = read_ticks(v, tmp, *tz, 0)?;
            let secs = u32::try_from(secs).map_err(|_| {
                fail(format!(
                    "{} is out of DateTime range 1970-01-01 00:00:00..=2106-02-07 06:28:15 UTC",
                    show(v.raw)
                ))
            })?;
            rb::put_datetime(out, secs);
            Ok(())
        }
        ChType::DateTime64 { precision, tz } => {
            let p = (*precision).min(9) as u32;
            let ticks = read_ticks(v, tmp, *tz, p)?;
            let (lo, hi) = dt64_range(p);
            if !(lo..=hi).contains(&ticks) {
                // Nanosecond ticks in an i64 end before 2300.
                let end = if p >= 9 {
                    "..=2262-04-11 23:47:16.854775807"
                } else {
                    "..2300-01-01"
                };
                return Err(fail(format!(
                    "{} is out of DateTime64({p}) range 1900-01-01{end} UTC",
                    show(v.raw)
                )));
            }
            rb::put_datetime64(out, ticks as i64);
            Ok(())
        }
        ChType::Enum8(values) => {
            let n = enum_value(values, v, tmp, ty)?;
            rb::put_i8(out, n as i8);
            Ok(())
        }
        ChType::Enum16(values) => {
            let n = enum_value(values, v, tmp, ty)?;
            rb::put_i16(out, n);
            Ok(())
        }
        ChType::Array(inner) => {
            if v.kind != Kind::Arr {
                return Err(fail(format!(
                    "expected an array, found {} {}",
                    v.kind.describe(),
                    show(v.raw)
                )));
            }
            write_items(v, out, |e, out| write_value(inner, e, tmp, out))
        }
        ChType::Map(kt, vt) => {
            if v.kind != Kind::Obj {
                return Err(fail(format!(
                    "expected an object, found {} {}",
                    v.kind.describe(),
                    show(v.raw)
                )));
            }
            let pos = rb::reserve_count(out);
            let mut it = ObjectIter::new(v.raw);
            let mut n = 0usize;
            while let Some((k, val)) = it.next_pair()? {
                write_value(kt, k, tmp, out).map_err(|e| {
                    let mut e = at_key(k.inner())(e);
                    e.reason = format!("key: {}", e.reason);
                    e
                })?;
                write_value(vt, val, tmp, out).map_err(at_key(k.inner()))?;
                n += 1;
            }
            rb::patch_count(out, pos, n);
            Ok(())
        }
        ChType::Tuple(elems) => write_tuple(elems, v, tmp, out),
        ChType::Variant { variants, order } => {
            // The first variant, in ClickHouse's order for text, that takes the value: the
            // one ClickHouse's JSONEachRow would choose (see `variant_candidate`).
            let start = out.len();
            for &i in order {
                let Some(t) = variants.get(usize::from(i)) else {
                    continue;
                };
                let Some(candidate) = variant_candidate(t, v, tmp)? else {
                    continue;
                };
                out.push(i);
                match write_value(t, candidate, tmp, out) {
                    Ok(()) => return Ok(()),
                    // ClickHouse would store this number in this variant, rounded or cut;
                    // sluice does not round, and storing it as another variant instead
                    // would be a different value: the message fails.
                    Err(e) if e.inexact => return Err(e),
                    Err(_) => out.truncate(start),
                }
            }
            Err(fail(format!(
                "{} is none of the types of {ty}",
                show(v.raw)
            )))
        }
        ChType::Dynamic { tz, .. } => write_dynamic(v, *tz, tmp, out),
        ChType::QBit { array, n } => {
            let start = out.len();
            write_value(array, v, tmp, out)?;
            // The count the array wrote: the vector must have exactly n values.
            let got = out
                .get(start..)
                .and_then(|b| super::cursor::Cursor::new(b).varint().ok())
                .unwrap_or(0);
            if got != u64::from(*n) {
                out.truncate(start);
                return Err(fail(format!(
                    "expected a vector of {n} values, found {got}"
                )));
            }
            Ok(())
        }
        ChType::Json(_) => {
            // The object's text, which the server parses (typed paths and SKIPs included); a
            // string is taken when it holds an object (JSON sent as a string, or a CSV field).
            let text = match v.kind {
                Kind::Obj => v.raw,
                Kind::Str | Kind::StrEsc => {
                    let s = v.str_bytes(tmp)?;
                    json_object(s).map_err(|why| {
                        fail(format!("{} is not a JSON object: {why}", show(v.raw)))
                    })?;
                    s
                }
                k => {
                    return Err(fail(format!(
                        "expected a JSON object, found {} {}",
                        k.describe(),
                        show(v.raw)
                    )))
                }
            };
            rb::put_str(out, text);
            Ok(())
        }
        // Nullable and LowCardinality are handled above.
        ChType::Nullable(_) | ChType::LowCardinality(_) => {
            Err(fail(format!("unexpected nesting in {ty}")))
        }
        _ => Err(fail(format!("type {ty} is not supported"))),
    }
}

fn enum_value<T: Copy + Into<i16>>(
    values: &[(String, T)],
    v: Val<'_>,
    tmp: &mut Vec<u8>,
    ty: &ChType,
) -> Conv<i16> {
    let by_number = |n: Option<i128>| {
        let n = n?;
        values
            .iter()
            .map(|(_, x)| (*x).into())
            .find(|x: &i16| *x as i128 == n)
    };
    let found = match v.kind {
        Kind::Str | Kind::StrEsc => {
            let s = v.str_bytes(tmp)?;
            match values.iter().find(|(name, _)| name.as_bytes() == s) {
                Some((_, x)) => Some((*x).into()),
                // Not a name: a number in a string names a value too.
                None => by_number(parse_scaled(s, 0).ok().and_then(BigInt::to_i128)),
            }
        }
        Kind::Int | Kind::Num => by_number(read_int(v, tmp)?.to_i128()),
        k => {
            return Err(fail(format!(
                "expected an enum name or value, found {} {}",
                k.describe(),
                show(v.raw)
            )))
        }
    };
    found.ok_or_else(|| {
        fail(format!(
            "{} is not a value of {}",
            show(v.raw),
            shorten(&ty.to_string())
        ))
    })
}

fn write_tuple(
    elems: &[(Option<String>, ChType)],
    v: Val<'_>,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Conv {
    match v.kind {
        Kind::Arr => {
            let mut it = ArrayIter::new(v.raw);
            let mut n = 0usize;
            while let Some(e) = it.next_val()? {
                let Some((_, t)) = elems.get(n) else {
                    return Err(fail(format!(
                        "expected {} tuple elements, found more",
                        elems.len()
                    )));
                };
                write_value(t, e, tmp, out).map_err(at_index(n))?;
                n += 1;
            }
            if n != elems.len() {
                return Err(fail(format!(
                    "expected {} tuple elements, found {n}",
                    elems.len()
                )));
            }
            Ok(())
        }
        Kind::Obj if elems.iter().all(|(n, _)| n.is_some()) => {
            // Named tuple from an object: validate the key set, then write in element order.
            // Tuples are small, so the quadratic lookups cost less than any index would.
            let mut key_buf = Vec::new();
            let mut seen = vec![false; elems.len()];
            let mut it = ObjectIter::new(v.raw);
            while let Some((k, _)) = it.next_pair()? {
                let name = k.str_bytes(&mut key_buf)?;
                match elems
                    .iter()
                    .position(|(n, _)| n.as_deref().map(str::as_bytes) == Some(name))
                {
                    Some(i) if !seen[i] => seen[i] = true,
                    Some(_) => {
                        return Err(fail(format!("duplicate tuple element {}", show(k.raw))))
                    }
                    None => return Err(fail(format!("unknown tuple element {}", show(k.raw)))),
                }
            }
            for (i, (name, t)) in elems.iter().enumerate() {
                let name = name.as_deref().unwrap_or_default();
                if !seen[i] {
                    return Err(fail(format!("missing tuple element {name:?}")));
                }
                let mut it = ObjectIter::new(v.raw);
                while let Some((k, val)) = it.next_pair()? {
                    if k.str_bytes(&mut key_buf)? == name.as_bytes() {
                        write_value(t, val, tmp, out).map_err(at_key(name.as_bytes()))?;
                        break;
                    }
                }
            }
            Ok(())
        }
        k => Err(fail(format!(
            "expected a tuple as an array, found {} {}",
            k.describe(),
            show(v.raw)
        ))),
    }
}

// ------------------------------------------------------------------------------------------
// Kafka metadata
// ------------------------------------------------------------------------------------------

/// Arrays, maps and tuples (under Nullable or LowCardinality too).
fn composite(ty: &ChType) -> bool {
    match ty {
        ChType::Nullable(t) | ChType::LowCardinality(t) => composite(t),
        ChType::Array(_)
        | ChType::Map(..)
        | ChType::Tuple(_)
        | ChType::Geo(..)
        | ChType::Nested(_) => true,
        _ => false,
    }
}

/// A Dynamic value: the type ClickHouse's JSONEachRow infers for `v` (see [`infer_dynamic`])
/// in the binary type encoding, then the value as that type.
fn write_dynamic(v: Val<'_>, tz: Option<Tz>, tmp: &mut Vec<u8>, out: &mut Vec<u8>) -> Conv {
    let t = infer_dynamic(v, tz, tmp, 0)?;
    put_type_code(&t, out)?;
    write_inferred(&t, v, tmp, out)
}

/// The type ClickHouse infers for a JSON value in a Dynamic column (schema inference with its
/// default settings, checked value by value against the server in
/// tests/rowbinary_roundtrip.rs): an integer is Int64 (UInt64 above it, a String beyond
/// that), any other number Float64, `true`/`false` Bool; a string is a Date
/// (`YYYY-MM-DD`), a DateTime (`YYYY-MM-DD hh:mm:ss`, in the server's time zone), a
/// DateTime64(9) (with a fraction) or a String; an object a named Tuple of its fields; an
/// array an Array of its elements' common type (integers and floats: Float64; with nulls:
/// Nullable; empty: String), or of Dynamic when they have none. Shapes whose inferred type is
/// not certain (arrays of objects or of arrays that differ, nulls beside arrays) fail.
fn infer_dynamic(v: Val<'_>, tz: Option<Tz>, tmp: &mut Vec<u8>, depth: usize) -> Conv<ChType> {
    if depth > crate::chtype::MAX_TYPE_DEPTH {
        return Err(fail("nested too deeply for a Dynamic value".into()));
    }
    Ok(match v.kind {
        Kind::Null => ChType::Nullable(Box::new(ChType::String)),
        Kind::True | Kind::False => ChType::Bool,
        Kind::Int => {
            let text = std::str::from_utf8(v.raw).unwrap_or_default();
            if text.parse::<i64>().is_ok() {
                ChType::Int64
            } else if text.parse::<u64>().is_ok() {
                ChType::UInt64
            } else {
                ChType::String
            }
        }
        Kind::Num => ChType::Float64,
        Kind::Str | Kind::StrEsc => {
            let s = v.str_bytes(tmp)?;
            let trimmed = s.trim_ascii();
            if !looks_like_date(trimmed) {
                ChType::String
            } else if trimmed.len() != s.len() {
                return Err(fail(format!(
                    "{} is a date-time with spaces around it: the type ClickHouse infers for it is not certain",
                    show(v.raw)
                )));
            } else if s.len() == 10 {
                match parse_ymd(s) {
                    Some(_) if parse_datetime(s, tz, 0).is_ok() => ChType::Date,
                    _ => return Err(not_a_date(v.raw)),
                }
            } else if parse_datetime(s, tz, 9).is_err() {
                return Err(not_a_date(v.raw));
            } else if s.get(19) == Some(&b'.') {
                ChType::DateTime64 { precision: 9, tz }
            } else {
                ChType::DateTime { tz }
            }
        }
        Kind::Obj => {
            let mut elems: Vec<(Option<String>, ChType)> = Vec::new();
            let mut it = ObjectIter::new(v.raw);
            let mut key = Vec::new();
            while let Some((k, val)) = it.next_pair()? {
                let name = String::from_utf8_lossy(k.str_bytes(&mut key)?).into_owned();
                let t = infer_dynamic(val, tz, tmp, depth + 1).map_err(at_key(name.as_bytes()))?;
                elems.push((Some(name), t));
            }
            // Sorted, not compared pair by pair: a message may hold a great many keys.
            let mut names: Vec<&str> = elems.iter().filter_map(|(n, _)| n.as_deref()).collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(fail(format!(
                    "key {:?} twice in an object for a Dynamic column",
                    w[0]
                )));
            }
            if elems.is_empty() {
                return Err(fail(
                    "an empty object has no type to infer for a Dynamic column".into(),
                ));
            }
            ChType::Tuple(elems)
        }
        Kind::Arr => {
            let mut common: Option<ChType> = None;
            let mut nulls = false;
            let mut mixed = false;
            let mut it = ArrayIter::new(v.raw);
            let mut i = 0usize;
            while let Some(e) = it.next_val()? {
                if e.kind == Kind::Null {
                    nulls = true;
                } else {
                    let t = infer_dynamic(e, tz, tmp, depth + 1).map_err(at_index(i))?;
                    common = match common.take() {
                        None => Some(t),
                        Some(c) => match unify(c, t) {
                            Some(u) => Some(u),
                            None => {
                                mixed = true;
                                break;
                            }
                        },
                    };
                }
                i += 1;
            }
            let element = match (mixed, common) {
                (true, _) => ChType::Dynamic {
                    max_types: None,
                    tz,
                },
                (false, None) => ChType::String,
                (false, Some(t)) => t,
            };
            let element = match element {
                t @ (ChType::Dynamic { .. } | ChType::Nullable(_)) => t,
                ChType::Array(_) | ChType::Tuple(_) if nulls => return Err(fail(
                    "an array of arrays or objects beside nulls: its inferred type is not certain"
                        .into(),
                )),
                t if nulls => ChType::Nullable(Box::new(t)),
                t => t,
            };
            ChType::Array(Box::new(element))
        }
    })
}

/// A string that starts like a date but that sluice does not read as one (2024-02-30, which
/// ClickHouse stores as 2024-03-01; a form only its best-effort parser reads).
fn not_a_date(raw: &[u8]) -> Box<ConvErr> {
    fail(format!(
        "{} looks like a date but is none sluice reads: the type ClickHouse infers for it is not certain",
        show(raw)
    ))
}

/// The common type of two inferred element types, as ClickHouse merges them (checked against
/// the server), or None when they have none: then the array holds Dynamic elements.
fn unify(a: ChType, b: ChType) -> Option<ChType> {
    use ChType as T;
    let number = |t: &T| matches!(t, T::Bool | T::Int64 | T::UInt64 | T::Float64);
    let rank = |t: &T| match t {
        T::Bool => 0,
        T::Int64 => 1,
        T::UInt64 => 2,
        _ => 3,
    };
    let date = |t: &T| matches!(t, T::Date | T::DateTime { .. } | T::DateTime64 { .. });
    Some(match (a, b) {
        (a, b) if a == b => a,
        // Booleans as 1 and 0 beside numbers; the wider number.
        (a, b) if number(&a) && number(&b) => {
            if rank(&a) >= rank(&b) {
                a
            } else {
                b
            }
        }
        // Dates and booleans beside other strings are strings (`true` as its text).
        (a, T::String) | (T::String, a) if date(&a) || a == T::Bool => T::String,
        // A date beside a date-time is a date-time (midnight), the finer one.
        (a, b) if date(&a) && date(&b) => {
            let fine = |t: &T| match t {
                T::Date => 0,
                T::DateTime { .. } => 1,
                _ => 2,
            };
            if fine(&a) >= fine(&b) {
                a
            } else {
                b
            }
        }
        (T::Array(a), T::Array(b)) => T::Array(Box::new(unify(*a, *b)?)),
        _ => return None,
    })
}

/// A boolean read as the number ClickHouse makes of it where a number is wanted (inside a
/// Variant or a Dynamic's merged array): 1 or 0.
fn bool_as_number(b: bool) -> Val<'static> {
    Val {
        raw: if b { b"1" } else { b"0" },
        kind: Kind::Int,
    }
}

/// A JSON array's items as a RowBinary array: the count, then each item written by `each`;
/// an item's error names its index.
fn write_items(
    v: Val<'_>,
    out: &mut Vec<u8>,
    mut each: impl FnMut(Val<'_>, &mut Vec<u8>) -> Conv,
) -> Conv {
    let pos = rb::reserve_count(out);
    let mut it = ArrayIter::new(v.raw);
    let mut n = 0usize;
    while let Some(e) = it.next_val()? {
        each(e, out).map_err(at_index(n))?;
        n += 1;
    }
    rb::patch_count(out, pos, n);
    Ok(())
}

/// Writes `v` as the type [`infer_dynamic`] gave it: as that type's column would, except that
/// booleans are 1 and 0 where they were merged into numbers.
fn write_inferred(t: &ChType, v: Val<'_>, tmp: &mut Vec<u8>, out: &mut Vec<u8>) -> Conv {
    match (t, v.kind) {
        (ChType::Int64 | ChType::UInt64 | ChType::Float64, Kind::True | Kind::False) => {
            write_value(t, bool_as_number(v.kind == Kind::True), tmp, out)
        }
        (ChType::Nullable(inner), k) if k != Kind::Null => {
            out.push(rb::NOT_NULL);
            write_inferred(inner, v, tmp, out)
        }
        (ChType::Array(e), Kind::Arr) => {
            write_items(v, out, |x, out| write_inferred(e, x, tmp, out))
        }
        (ChType::Tuple(elems), Kind::Obj) => {
            // The tuple was inferred from this very object: its fields, in its order.
            let mut it = ObjectIter::new(v.raw);
            for (name, t) in elems {
                let Some((_, x)) = it.next_pair()? else {
                    return Err(fail(format!("{} ended early", show(v.raw))));
                };
                write_inferred(t, x, tmp, out)
                    .map_err(at_key(name.as_deref().unwrap_or_default().as_bytes()))?;
            }
            Ok(())
        }
        _ => write_value(t, v, tmp, out),
    }
}

/// The binary encoding of an inferred type (ClickHouse's "data types binary encoding"), which
/// starts each Dynamic value.
fn put_type_code(t: &ChType, out: &mut Vec<u8>) -> Conv {
    match t {
        ChType::UInt64 => out.push(0x04),
        ChType::Int64 => out.push(0x0A),
        ChType::Float64 => out.push(0x0E),
        ChType::Date => out.push(0x0F),
        ChType::DateTime { .. } => out.push(0x11),
        ChType::DateTime64 { precision, .. } => out.extend_from_slice(&[0x13, *precision]),
        ChType::String => out.push(0x15),
        ChType::Array(e) => {
            out.push(0x1E);
            put_type_code(e, out)?;
        }
        ChType::Tuple(elems) => {
            out.push(0x20);
            rb::put_count(out, elems.len());
            for (name, t) in elems {
                rb::put_str(out, name.as_deref().unwrap_or_default().as_bytes());
                put_type_code(t, out)?;
            }
        }
        ChType::Nullable(t) => {
            out.push(0x23);
            put_type_code(t, out)?;
        }
        ChType::Dynamic { max_types, .. } => {
            out.extend_from_slice(&[0x2B, max_types.unwrap_or(DEFAULT_DYNAMIC_TYPES)])
        }
        ChType::Bool => out.push(0x2D),
        // Not a type `infer_dynamic` gives.
        t => return Err(fail(format!("no binary type encoding for {t}"))),
    }
    Ok(())
}

/// `max_types` of a Dynamic that does not name it (ClickHouse's default).
const DEFAULT_DYNAMIC_TYPES: u8 = 32;

/// Whether the variant `t` of a Variant is tried for `v`, and as what: the JSON kinds each
/// type reads inside a Variant in ClickHouse (checked value by value against the server,
/// tests/rowbinary_roundtrip.rs), narrower than what a column of that type reads in sluice.
/// Integers take plain integers (also quoted) and booleans as 1 or 0, not `1e3`; floats
/// numbers, numeric strings and booleans; decimals numbers only; dates and date-times
/// numbers and date strings, not numeric strings; UUIDs and IPs strings only; Bool only
/// `true`/`false`; a named Tuple only an object. Inside a variant's own arrays, maps and
/// tuples the usual rules apply.
fn variant_candidate<'a>(t: &ChType, v: Val<'a>, tmp: &mut Vec<u8>) -> Conv<Option<Val<'a>>> {
    let string = matches!(v.kind, Kind::Str | Kind::StrEsc);
    let boolean = match v.kind {
        Kind::True => Some(true),
        Kind::False => Some(false),
        Kind::Str | Kind::StrEsc => match v.str_bytes(tmp)? {
            b"true" => Some(true),
            b"false" => Some(false),
            _ => None,
        },
        _ => None,
    };
    let base = match t {
        ChType::LowCardinality(inner) => &**inner,
        t => t,
    };
    Ok(match base {
        t if is_int_type(t) => match boolean {
            Some(b) => Some(bool_as_number(b)),
            None if v.kind == Kind::Int => Some(v),
            None if string => {
                let s = v.str_bytes(tmp)?;
                let digits = s.strip_prefix(b"-").unwrap_or(s);
                (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit)).then_some(v)
            }
            None => None,
        },
        ChType::Float32 | ChType::Float64 | ChType::BFloat16 => match boolean {
            Some(b) => Some(bool_as_number(b)),
            None => (matches!(v.kind, Kind::Int | Kind::Num) || string).then_some(v),
        },
        ChType::Decimal { .. } => matches!(v.kind, Kind::Int | Kind::Num).then_some(v),
        ChType::Bool => matches!(v.kind, Kind::True | Kind::False).then_some(v),
        ChType::Date | ChType::Date32 => {
            (v.kind == Kind::Int || (string && looks_like_date(v.str_bytes(tmp)?))).then_some(v)
        }
        ChType::DateTime { .. } | ChType::DateTime64 { .. } => {
            (matches!(v.kind, Kind::Int | Kind::Num)
                || (string && looks_like_date(v.str_bytes(tmp)?)))
            .then_some(v)
        }
        ChType::Uuid | ChType::IPv4 | ChType::IPv6 => string.then_some(v),
        ChType::Tuple(elems) if elems.iter().any(|(name, _)| name.is_some()) => {
            (v.kind == Kind::Obj).then_some(v)
        }
        // Containers read only their own JSON kind (a string is never parsed as one).
        ChType::Array(_)
        | ChType::Tuple(_)
        | ChType::Nested(_)
        | ChType::QBit { .. }
        | ChType::Geo(..) => (v.kind == Kind::Arr).then_some(v),
        ChType::Map(..) => (v.kind == Kind::Obj).then_some(v),
        _ => Some(v),
    })
}

/// Checks that `s` is one JSON object and nothing else (whitespace around it aside).
fn json_object(s: &[u8]) -> Result<(), String> {
    let mut scan = Scan::new(s);
    scan.ws();
    if scan.peek() != Some(b'{') {
        return Err("it does not start with {".into());
    }
    scan.value()
        .map_err(|e| format!("{} at byte {}", e.reason, e.pos))?;
    scan.ws();
    if scan.pos != s.len() {
        return Err(format!("text after the object at byte {}", scan.pos));
    }
    Ok(())
}

fn json_like(ty: &ChType) -> bool {
    matches!(ty, ChType::Json(_))
}

fn string_like(ty: &ChType) -> bool {
    match ty {
        ChType::String | ChType::FixedString(_) => true,
        ChType::Nullable(t) | ChType::LowCardinality(t) => string_like(t),
        _ => false,
    }
}

fn bool_like(ty: &ChType) -> bool {
    match ty {
        ChType::Nullable(t) | ChType::LowCardinality(t) => bool_like(t),
        t => *t == ChType::Bool,
    }
}

/// The delete flag of a change event (`deleted`) as a column of `ty` (see
/// [`MetaField::Deleted`]).
fn put_deleted(ty: &ChType, deleted: bool, out: &mut Vec<u8>) -> Conv {
    if string_like(ty) {
        let text: &[u8] = if deleted { b"true" } else { b"false" };
        return put_bytes_as(ty, Some(text), out);
    }
    if bool_like(ty) {
        if ty.is_nullable() {
            out.push(rb::NOT_NULL);
        }
        rb::put_bool(out, deleted);
        return Ok(());
    }
    put_meta_int(ty, i64::from(deleted), out)
}

fn int_like(ty: &ChType) -> bool {
    match ty {
        ChType::Nullable(t) | ChType::LowCardinality(t) => int_like(t),
        t => is_int_type(t),
    }
}

fn meta_type_ok(m: MetaField, ty: &ChType) -> bool {
    match m {
        MetaField::Topic => string_like(ty),
        MetaField::Key | MetaField::Value => string_like(ty) || json_like(ty),
        MetaField::Op | MetaField::SourceDb | MetaField::SourceTable => string_like(ty),
        MetaField::Deleted => string_like(ty) || int_like(ty) || bool_like(ty),
        MetaField::Partition | MetaField::Offset => int_like(ty),
        MetaField::Timestamp | MetaField::EventTime | MetaField::SourceTime => match ty {
            ChType::Nullable(t) | ChType::LowCardinality(t) => meta_type_ok(m, t),
            ChType::DateTime { .. } | ChType::DateTime64 { .. } => true,
            t => is_int_type(t),
        },
        MetaField::Headers => match ty {
            ChType::Map(k, v) => string_like(k) && string_like(v),
            ChType::Array(t) => {
                matches!(&**t, ChType::Tuple(e) if e.len() == 2 && string_like(&e[0].1) && string_like(&e[1].1))
            }
            t => string_like(t),
        },
    }
}

/// Writes bytes (or their absence) into a String-like type.
fn put_bytes_as(ty: &ChType, b: Option<&[u8]>, out: &mut Vec<u8>) -> Conv {
    match ty {
        ChType::Nullable(t) => {
            if b.is_none() {
                out.push(rb::NULL);
                return Ok(());
            }
            out.push(rb::NOT_NULL);
            put_bytes_as(t, b, out)
        }
        ChType::LowCardinality(t) => put_bytes_as(t, b, out),
        ChType::String => {
            rb::put_str(out, b.unwrap_or_default());
            Ok(())
        }
        ChType::FixedString(n) => {
            let b = b.unwrap_or_default();
            rb::put_fixed_string(out, b, *n).map_err(|e| fail(format!("{}: {e}", show(b))))
        }
        ChType::Json(_) => {
            let b = b.ok_or_else(|| fail("no bytes for a JSON column".into()))?;
            json_object(b)
                .map_err(|why| fail(format!("{} is not a JSON object: {why}", show(b))))?;
            rb::put_str(out, b);
            Ok(())
        }
        _ => Err(fail(format!("cannot store bytes in {ty}"))),
    }
}

fn put_meta_int(ty: &ChType, v: i64, out: &mut Vec<u8>) -> Conv {
    match ty {
        ChType::Nullable(t) => {
            out.push(rb::NOT_NULL);
            put_meta_int(t, v, out)
        }
        ChType::LowCardinality(t) => put_meta_int(t, v, out),
        t => put_int(t, BigInt::from_i128(v as i128), out)
            .map_err(|r| fail(format!("{v} out of range {r}"))),
    }
}

fn put_meta_timestamp(ty: &ChType, ms: i64, out: &mut Vec<u8>) -> Conv {
    match ty {
        ChType::Nullable(t) => {
            out.push(rb::NOT_NULL);
            put_meta_timestamp(t, ms, out)
        }
        ChType::LowCardinality(t) => put_meta_timestamp(t, ms, out),
        ChType::DateTime { .. } => {
            let secs = u32::try_from(ms.div_euclid(1000))
                .map_err(|_| fail(format!("{ms} ms is out of DateTime range 1970..2106")))?;
            rb::put_datetime(out, secs);
            Ok(())
        }
        ChType::DateTime64 { precision, .. } => {
            let p = (*precision).min(9) as u32;
            let ticks: i128 = if p >= 3 {
                ms as i128 * pow10(p - 3) as i128
            } else {
                (ms as i128).div_euclid(pow10(3 - p) as i128)
            };
            let (lo, hi) = dt64_range(p);
            if !(lo..=hi).contains(&ticks) {
                return Err(fail(format!(
                    "{ms} ms is out of DateTime64 range 1900..2300"
                )));
            }
            rb::put_datetime64(out, ticks as i64);
            Ok(())
        }
        t => put_int(t, BigInt::from_i128(ms as i128), out)
            .map_err(|r| fail(format!("{ms} out of range {r}"))),
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut Vec<u8>, s: &[u8]) {
    let s = String::from_utf8_lossy(s);
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.push(b'"');
}

fn put_headers(
    ty: &ChType,
    headers: &[(&str, Option<&[u8]>)],
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Conv {
    match ty {
        ChType::Map(k, v) => {
            rb::put_count(out, headers.len());
            for (i, (name, val)) in headers.iter().enumerate() {
                put_bytes_as(k, Some(name.as_bytes()), out).map_err(at_index(i))?;
                put_bytes_as(v, *val, out).map_err(at_index(i))?;
            }
            Ok(())
        }
        ChType::Array(t) => {
            let ChType::Tuple(e) = &**t else {
                return Err(fail(format!("cannot store headers in {ty}")));
            };
            let [(_, kt), (_, vt)] = e.as_slice() else {
                return Err(fail(format!("cannot store headers in {ty}")));
            };
            rb::put_count(out, headers.len());
            for (i, (name, val)) in headers.iter().enumerate() {
                put_bytes_as(kt, Some(name.as_bytes()), out).map_err(at_index(i))?;
                put_bytes_as(vt, *val, out).map_err(at_index(i))?;
            }
            Ok(())
        }
        t => {
            tmp.clear();
            tmp.push(b'{');
            for (i, (name, val)) in headers.iter().enumerate() {
                if i > 0 {
                    tmp.push(b',');
                }
                push_json_str(tmp, name.as_bytes());
                tmp.push(b':');
                match val {
                    Some(v) => push_json_str(tmp, v),
                    None => tmp.extend_from_slice(b"null"),
                }
            }
            tmp.push(b'}');
            put_bytes_as(t, Some(tmp.as_slice()), out)
        }
    }
}

// ------------------------------------------------------------------------------------------
// Rows
// ------------------------------------------------------------------------------------------

/// Converts one JSON object into one row appended to `out`, using this thread's scratch.
/// On error `out` is left exactly as it was.
pub fn encode_json_row(
    plan: &RowPlan,
    payload: &[u8],
    meta: &MessageMeta<'_>,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => encode_json_row_with(plan, &mut s, payload, meta, out),
        // Only reachable through re-entrancy, which this module never does; stay correct anyway.
        Err(_) => encode_json_row_with(plan, &mut RowScratch::new(), payload, meta, out),
    })
}

/// [`encode_json_row`] with an explicit scratch (e.g. one per worker, no thread-local access).
pub fn encode_json_row_with(
    plan: &RowPlan,
    scratch: &mut RowScratch,
    payload: &[u8],
    meta: &MessageMeta<'_>,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    let len = out.len();
    let mut r = encode_row(plan, scratch, payload, meta, out);
    if plan.unknown_fields == UnknownFields::Add && !scratch.new_fields.is_empty() {
        // Read whole, so that one message names all its new fields; a row written without
        // them is not kept (the message is read again once the table has them).
        let fields = std::mem::take(&mut scratch.new_fields);
        if r.is_ok() {
            r = Err(RowError::NewFields { fields });
        }
    }
    if r.is_err() {
        out.truncate(len);
    }
    r
}

/// The row of a message whose value is not parsed (`format = "raw"`): the metadata columns
/// from `meta` (the value column among them), every other column as missing (its DEFAULT,
/// NULL or the type's default value, as its [`OnMissing`] says). On error `out` is left
/// exactly as it was.
pub fn encode_meta_row(
    plan: &RowPlan,
    meta: &MessageMeta<'_>,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    let len = out.len();
    let r = SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => write_meta_row(plan, meta, &mut s.tmp, out),
        // Only reachable through re-entrancy, which this module never does; stay correct anyway.
        Err(_) => write_meta_row(plan, meta, &mut Vec::new(), out),
    });
    if r.is_err() {
        out.truncate(len);
    }
    r
}

fn write_meta_row(
    plan: &RowPlan,
    meta: &MessageMeta<'_>,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    for (col, src) in plan.columns.iter().zip(&plan.sources) {
        match (src, &col.source) {
            (Src::Meta(m), _) => write_meta(plan, col, *m, meta, tmp, out)?,
            (Src::Field(_), ColumnSource::Field(f)) => write_missing(
                plan,
                col,
                format!("{} (a raw message has none)", field_origin(f)),
                out,
            )?,
            (Src::Field(_), ColumnSource::Meta(_)) => return Err(plan_changed(col)),
        }
    }
    Ok(())
}

/// Writes a typed field value where its column takes it exactly as the value's text would
/// be read (an integer into an integer column that holds it, as the text's own fast path
/// does; a finite double into Float64; ticks a DateTime64 holds without rounding, within its
/// range); `false` (nothing written) anywhere else, where the text is read instead.
fn write_typed(ty: &ChType, kind: FieldKind, out: &mut Vec<u8>) -> bool {
    let (nullable, ty) = match ty {
        ChType::Nullable(inner) => (true, &**inner),
        t => (false, t),
    };
    let put_not_null = |out: &mut Vec<u8>| {
        if nullable {
            out.push(rb::NOT_NULL);
        }
    };
    match (ty, kind) {
        (t, FieldKind::Integer(x)) if is_int_type(t) => {
            let len = out.len();
            put_not_null(out);
            if put_small_int(t, x, out) {
                return true;
            }
            out.truncate(len);
            false
        }
        (ChType::Float64, FieldKind::Double(bits)) => {
            let f = f64::from_bits(bits);
            // NaN and infinities go through their text ("nan", "inf"), as JSON's do.
            if !f.is_finite() {
                return false;
            }
            put_not_null(out);
            rb::put_f64(out, f);
            true
        }
        (ChType::DateTime64 { precision, .. }, FieldKind::Scaled { value, scale }) => {
            let p = (*precision).min(9) as u32;
            let Some(ticks) = rescale_exactly(value, u32::from(scale), p) else {
                return false;
            };
            let (lo, hi) = dt64_range(p);
            if !(lo..=hi).contains(&ticks) {
                return false;
            }
            put_not_null(out);
            rb::put_datetime64(out, ticks as i64);
            true
        }
        (
            ChType::Decimal {
                precision,
                scale: s,
            },
            FieldKind::Scaled { value, scale },
        ) if *precision <= 18 => {
            let Some(unscaled) = rescale_exactly(value, u32::from(scale), u32::from(*s)) else {
                return false;
            };
            // The text path's bound: no more digits than the precision.
            if unscaled.unsigned_abs() >= 10u128.pow(u32::from(*precision)) {
                return false;
            }
            put_not_null(out);
            rb::put_signed(
                out,
                unscaled < 0,
                U256::from_u128(unscaled.unsigned_abs()),
                rb::decimal_width(*precision),
            );
            true
        }
        _ => false,
    }
}

/// `value / 10^from` as a multiple of `10^-to`, if exact (`None` if digits would be lost).
fn rescale_exactly(value: i64, from: u32, to: u32) -> Option<i128> {
    let v = i128::from(value);
    if to >= from {
        v.checked_mul(10i128.checked_pow(to - from)?)
    } else {
        let d = 10i128.checked_pow(from - to)?;
        (v % d == 0).then_some(v / d)
    }
}

/// How [`encode_fields_row`] reads one decoded field's text (another format's value,
/// written in the JSON form the converter reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Null,
    True,
    False,
    /// A number without fraction or exponent.
    Int,
    /// A number with a fraction or an exponent.
    Num,
    /// A string: the text between the first and the last byte (the quotes) is taken as it
    /// is, any bytes, no escapes read.
    Raw,
    /// A JSON array.
    Arr,
    /// A JSON object.
    Obj,
    /// An integer, not written as text: an integer column up to 64 bits that holds it takes
    /// it as it is, any other column (or one it is out of range for) reads its text. The span
    /// is empty.
    Integer(i64),
    /// A double (its bits), not written as text: a Float64 column takes it as it is, any
    /// other column reads the text `jsontext::write_float` makes of it, so the type
    /// rules and errors stay those of every format. The span is empty.
    Double(u64),
    /// `value / 10^scale` (an exact decimal: a timestamp's ticks, a decimal's unscaled
    /// value), not written as text: a DateTime64 or a Decimal column (up to 18 digits) takes
    /// it where it holds it exactly, anything else (a fraction the column cannot hold, a
    /// value out of its range, another column type) reads the text
    /// `jsontext::write_scaled` makes of it. The span is empty.
    Scaled {
        value: i64,
        scale: u8,
    },
}

/// One decoded field: its text in a buffer, `start..end`, and how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldValue {
    pub start: usize,
    pub end: usize,
    pub kind: FieldKind,
}

impl RowPlan {
    /// The id of the field that fills a column under `name` (for formats whose messages
    /// name their fields, decoded elsewhere), or `None` if no column reads it.
    pub fn field_id(&self, name: &str) -> Option<usize> {
        let mut guess = 0;
        self.index.find(name.as_bytes(), &mut guess)
    }

    /// How many distinct fields the plan's columns read: the length of the slice
    /// [`encode_fields_row`] takes.
    pub fn field_count(&self) -> usize {
        self.index.names.len()
    }
}

/// The row of a message another decoder has split into fields (Avro): `fields[id]` is
/// field `id`'s value in `buf` ([`RowPlan::field_id`]), `None` when the message has none.
/// Values convert exactly as JSON values do; a missing field takes the column's DEFAULT,
/// NULL or type default, as a missing JSON field does. On error `out` is left exactly as
/// it was.
pub fn encode_fields_row(
    plan: &RowPlan,
    buf: &[u8],
    fields: &[Option<FieldValue>],
    meta: &MessageMeta<'_>,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    let len = out.len();
    let r = SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => {
            let s = &mut *s;
            write_fields_row(plan, buf, fields, meta, &mut s.tmp, &mut s.typed_text, out)
        }
        // Only reachable through re-entrancy, which this module never does; stay correct anyway.
        Err(_) => write_fields_row(
            plan,
            buf,
            fields,
            meta,
            &mut Vec::new(),
            &mut Vec::new(),
            out,
        ),
    });
    if r.is_err() {
        out.truncate(len);
    }
    r
}

fn write_fields_row(
    plan: &RowPlan,
    buf: &[u8],
    fields: &[Option<FieldValue>],
    meta: &MessageMeta<'_>,
    tmp: &mut Vec<u8>,
    typed_text: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    for (i, (col, src)) in plan.columns.iter().zip(&plan.sources).enumerate() {
        let (id, name) = match (src, &col.source) {
            (Src::Meta(m), _) => {
                write_meta(plan, col, *m, meta, tmp, out)?;
                continue;
            }
            (Src::Field(id), ColumnSource::Field(f)) => (*id, f),
            (Src::Field(_), ColumnSource::Meta(_)) => return Err(plan_changed(col)),
        };
        let Some(f) = fields.get(id).copied().flatten() else {
            write_missing(plan, col, field_origin(name), out)?;
            continue;
        };
        if plan.with_defaults {
            out.push(rb::VALUE_FOLLOWS);
        }
        let (raw, kind) = match f.kind {
            FieldKind::Integer(_) | FieldKind::Double(_) | FieldKind::Scaled { .. } => {
                if write_typed(&col.ty, f.kind, out) {
                    continue;
                }
                typed_text.clear();
                let kind = match f.kind {
                    FieldKind::Integer(x) => {
                        typed_text.extend_from_slice(itoa::Buffer::new().format(x).as_bytes());
                        FieldKind::Int
                    }
                    FieldKind::Double(bits) => {
                        super::jsontext::write_float(f64::from_bits(bits), typed_text)
                    }
                    FieldKind::Scaled { value, scale } => super::jsontext::write_scaled(
                        i128::from(value),
                        u32::from(scale),
                        typed_text,
                    ),
                    other => other,
                };
                (&typed_text[..], kind)
            }
            kind => (buf.get(f.start..f.end).unwrap_or_default(), kind),
        };
        let kind = match kind {
            FieldKind::Null => Kind::Null,
            FieldKind::True => Kind::True,
            FieldKind::False => Kind::False,
            FieldKind::Int | FieldKind::Integer(_) => Kind::Int,
            FieldKind::Num | FieldKind::Double(_) | FieldKind::Scaled { .. } => Kind::Num,
            FieldKind::Raw => Kind::Str,
            FieldKind::Arr => Kind::Arr,
            FieldKind::Obj => Kind::Obj,
        };
        let v = Val { raw, kind };
        write_col(plan, i, col, v, tmp, out)
            .map_err(|e| e.into_row_error(field_origin(name), col))?;
    }
    Ok(())
}

/// The row of a CSV or TSV message, split into `line`: field `i` fills the column named
/// `i`-th in [`RowPlan::set_positions`], read as that column's type reads a JSON string
/// (numbers, dates, booleans, enums... from their text), an array, map or tuple from
/// ClickHouse's text form of it (`['a','b']`, `{'k':1}`, `(1,'x')`, see
/// [`super::text::composite_to_json`]), or NULL for `\N`. An empty field is
/// missing (the column's DEFAULT, NULL or type default), except into a String-like column,
/// where it is the empty string. On error `out` is left exactly as it was.
pub fn encode_text_row(
    plan: &RowPlan,
    line: &super::text::Line,
    meta: &MessageMeta<'_>,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    if line.len() != plan.positions.len() {
        return Err(RowError::FieldCount {
            found: line.len(),
            expected: plan.positions.len(),
        });
    }
    let len = out.len();
    let r = SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => {
            let s = &mut *s;
            write_text_row(plan, line, meta, &mut s.key, &mut s.tmp, out)
        }
        // Only reachable through re-entrancy, which this module never does; stay correct anyway.
        Err(_) => write_text_row(plan, line, meta, &mut Vec::new(), &mut Vec::new(), out),
    });
    if r.is_err() {
        out.truncate(len);
    }
    r
}

fn write_text_row(
    plan: &RowPlan,
    line: &super::text::Line,
    meta: &MessageMeta<'_>,
    quoted: &mut Vec<u8>,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    for (i, (col, src)) in plan.columns.iter().zip(&plan.sources).enumerate() {
        let id = match src {
            Src::Meta(m) => {
                write_meta(plan, col, *m, meta, tmp, out)?;
                continue;
            }
            Src::Field(id) => *id,
        };
        let pos = plan.position_of.get(id).copied().unwrap_or(usize::MAX);
        let origin = || format!("field {} ({})", pos.saturating_add(1), shorten(&col.name));
        let value = match line.get(pos) {
            None => {
                // A field column the route's `columns` do not name: never in a line.
                write_missing(
                    plan,
                    col,
                    "field (the route's columns do not name it)".into(),
                    out,
                )?;
                continue;
            }
            Some(v) => v,
        };
        let v = match value {
            None => Val {
                raw: b"null",
                kind: Kind::Null,
            },
            Some(b) if b.is_empty() && !string_like(&col.ty) => {
                write_missing(plan, col, origin(), out)?;
                continue;
            }
            Some(b) if composite(&col.ty) => {
                // `[1,2]`, `['a']`, `{'k':1}`, `(1,'a')`: rewritten as JSON, then read as
                // JSON arrays and objects are.
                super::text::composite_to_json(b, quoted).map_err(|e| RowError::Value {
                    origin: origin(),
                    column: col.name.clone(),
                    ty: col.ty.to_string(),
                    reason: format!("{} (at byte {} of {})", e.reason, e.offset, show(b)),
                })?;
                Val {
                    raw: quoted.as_slice(),
                    kind: if quoted.first() == Some(&b'{') {
                        Kind::Obj
                    } else {
                        Kind::Arr
                    },
                }
            }
            Some(b) => {
                // The JSON string form, so that a field converts as a JSON string does; the
                // text between the quotes is taken as it is (no escapes are read).
                quoted.clear();
                quoted.push(b'"');
                quoted.extend_from_slice(b);
                quoted.push(b'"');
                Val {
                    raw: quoted.as_slice(),
                    kind: Kind::Str,
                }
            }
        };
        if plan.with_defaults {
            out.push(rb::VALUE_FOLLOWS);
        }
        write_col(plan, i, col, v, tmp, out).map_err(|e| e.into_row_error(origin(), col))?;
    }
    Ok(())
}

fn json_err(e: JsonErr) -> RowError {
    RowError::InvalidJson {
        offset: e.pos,
        reason: e.reason,
    }
}

/// One pass when it can, two when it must.
///
/// The scan records every field's value (start, end, kind) in a slot, then the columns are
/// written in order from the slots. While the fields arrive in the columns' order (the
/// producer's fixed order, met by the one-compare name check), each value is written as soon
/// as it is scanned instead: `emit` is the first column not yet written. Strings, arrays of
/// strings, integers, Float64, booleans, decimals and plain date-times are then scanned and
/// written by one loop ([`scan_write`]),
/// the rest are written from the span just scanned; nothing is read twice and no slot is read
/// back. The first field out of order or missing, or a second column reading a field already
/// written, ends that for the row, and the columns from `emit` on are written from the slots.
/// A value that cannot be written drops what the row wrote and leaves every column to the
/// slot pass, which runs only after the whole object was scanned: so the error reported is
/// exactly the two-pass one (invalid JSON anywhere before any value's error, then the first
/// column's error).
///
/// Within that, [`field_step`] takes a compactly written field in one compare of its
/// `"name":` and one call of [`scan_write`]; whatever it does not take, the general path
/// below reads from the same position, so it changes the cost, never the result.
fn encode_row(
    plan: &RowPlan,
    scratch: &mut RowScratch,
    payload: &[u8],
    meta: &MessageMeta<'_>,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    scratch.start_row(plan.index.names.len());
    let gen = scratch.gen;
    let row_start = out.len();
    let mut emit = 0usize;
    let mut direct = plan.one_pass;
    let mut s = Scan::new(payload);
    s.ws();
    match s.peek() {
        Some(b'{') => s.pos += 1,
        None => {
            return Err(RowError::NotAnObject {
                found: "empty payload".into(),
            })
        }
        Some(_) => {
            return Err(RowError::NotAnObject {
                found: show(payload.trim_ascii()),
            })
        }
    }
    s.ws();
    if s.peek() == Some(b'}') {
        s.pos += 1;
    } else {
        let mut guess = 0usize;
        loop {
            if direct {
                match field_step(plan, scratch, &mut s, guess, emit, out)? {
                    Step::Next(col) => {
                        guess += 1;
                        emit = col + 1;
                        continue;
                    }
                    Step::Last(col) => {
                        emit = col + 1;
                        break;
                    }
                    Step::Scan => {}
                }
            }
            if s.peek() != Some(b'"') {
                return Err(RowError::InvalidJson {
                    offset: s.pos,
                    reason: "expected a field name",
                });
            }
            let kstart = s.pos;
            // Producers write fields in a fixed order: the expected name is one compare.
            let expected = plan.index.expected_at(payload, kstart, guess);
            let kesc = match expected {
                Some((_, after)) => {
                    s.pos = after;
                    false
                }
                None => s.string().map_err(json_err)?,
            };
            let kraw = payload.get(kstart + 1..s.pos - 1).unwrap_or_default();
            let key: &[u8] = if kesc {
                scratch.key.clear();
                unescape(kraw, &mut scratch.key).map_err(|reason| RowError::InvalidJson {
                    offset: kstart,
                    reason,
                })?;
                &scratch.key
            } else {
                kraw
            };
            s.ws();
            if s.peek() != Some(b':') {
                return Err(RowError::InvalidJson {
                    offset: s.pos,
                    reason: "expected ':'",
                });
            }
            s.pos += 1;
            s.ws();
            let vstart = s.pos;
            let found = match expected {
                Some((id, _)) => {
                    guess = id + 1;
                    Some(id)
                }
                None => {
                    let id = plan.index.find(key, &mut guess);
                    // Found out of order: its column may be behind `emit`.
                    direct &= id.is_none();
                    id
                }
            };
            let mut written: Option<Kind> = None;
            if direct {
                if let Some(id) = found {
                    let col = plan.field_col.get(id).copied().unwrap_or(usize::MAX);
                    match emit_up_to(plan, col, emit, meta, &mut scratch.tmp, out) {
                        Some(true) => {
                            emit = col;
                            match write_scanned(plan, col, &mut s, &mut scratch.tmp, out)
                                .map_err(json_err)?
                            {
                                Some((true, kind)) => {
                                    emit = col + 1;
                                    written = Some(kind);
                                }
                                Some((false, kind)) => {
                                    out.truncate(row_start);
                                    emit = 0;
                                    direct = false;
                                    written = Some(kind);
                                }
                                None => direct = false,
                            }
                        }
                        Some(false) => {
                            out.truncate(row_start);
                            emit = 0;
                            direct = false;
                        }
                        None => direct = false,
                    }
                }
            }
            let kind = match written {
                Some(kind) => kind,
                None => s.value().map_err(json_err)?,
            };
            match found {
                Some(id) if !RowScratch::fill(&mut scratch.slots, gen, id, vstart, s.pos, kind) => {
                    return Err(RowError::DuplicateField { field: show(key) });
                }
                Some(_) => {}
                None if plan.unknown_fields == UnknownFields::Error => {
                    return Err(RowError::UnknownField { field: show(key) })
                }
                None if plan.unknown_fields == UnknownFields::Add => {
                    let value = Val {
                        raw: s.b.get(vstart..s.pos).unwrap_or_default(),
                        kind,
                    };
                    if let Some(c) = new_field(plan, key, value)? {
                        if !scratch.new_fields.iter().any(|f| f.name == c.name) {
                            scratch.new_fields.push(c);
                        }
                    }
                }
                None => {}
            }
            if !next_field(&mut s)? {
                break;
            }
        }
    }
    s.ws();
    if s.pos != payload.len() {
        return Err(RowError::InvalidJson {
            offset: s.pos,
            reason: "trailing characters after the JSON object",
        });
    }

    let tmp = &mut scratch.tmp;
    for (i, col) in plan.columns.iter().enumerate().skip(emit) {
        let src = plan.sources.get(i).copied();
        match src {
            Some(Src::Field(id)) => {
                let slot = scratch.slots.get(id).copied().filter(|sl| sl.gen == gen);
                match slot {
                    Some(sl) => {
                        if plan.with_defaults {
                            out.push(rb::VALUE_FOLLOWS);
                        }
                        let v = Val {
                            raw: payload.get(sl.start..sl.end).unwrap_or_default(),
                            kind: sl.kind,
                        };
                        write_col(plan, i, col, v, tmp, out).map_err(|e| {
                            let ColumnSource::Field(f) = &col.source else {
                                return e.into_row_error("value".into(), col);
                            };
                            e.into_row_error(field_origin(f), col)
                        })?;
                    }
                    None => {
                        let ColumnSource::Field(f) = &col.source else {
                            return Err(plan_changed(col));
                        };
                        write_missing(plan, col, field_origin(f), out)?;
                    }
                }
            }
            Some(Src::Meta(m)) => write_meta(plan, col, m, meta, tmp, out)?,
            None => return Err(plan_changed(col)),
        }
    }
    Ok(())
}

/// After a field's value: `true` when another field follows (`s.pos` then at its name),
/// `false` at the object's end (`s.pos` past the `}`).
#[inline]
fn next_field(s: &mut Scan<'_>) -> Result<bool, RowError> {
    s.ws();
    match s.peek() {
        Some(b',') => {
            s.pos += 1;
            s.ws();
            Ok(true)
        }
        Some(b'}') => {
            s.pos += 1;
            Ok(false)
        }
        None => Err(RowError::InvalidJson {
            offset: s.pos,
            reason: "unexpected end of input",
        }),
        Some(_) => Err(RowError::InvalidJson {
            offset: s.pos,
            reason: "expected ',' or '}'",
        }),
    }
}

/// What [`field_step`] did.
enum Step {
    /// Wrote the field's column (the `usize`); another field follows.
    Next(usize),
    /// Wrote the field's column; the object ended.
    Last(usize),
    /// Nothing consumed or written: the general path reads the field.
    Scan,
}

/// The one-compare step for the field expected next (`guess`) while the one-pass path holds:
/// when its bytes start with the field's plain `"name":`, its column is the next to write
/// (`emit`) and [`scan_write`] takes the value, the value is written and its slot recorded,
/// as the general path would, without scanning the name, looking it up or consulting the
/// per-column tables. Anything else (whitespace before the colon, a field out of order, a
/// meta column in between, a value [`scan_write`] refuses) leaves the field to the general
/// path untouched, so the rows written and the errors reported are the same.
#[inline(always)]
fn field_step(
    plan: &RowPlan,
    scratch: &mut RowScratch,
    s: &mut Scan<'_>,
    guess: usize,
    emit: usize,
    out: &mut Vec<u8>,
) -> Result<Step, RowError> {
    let Some(Some(step)) = plan.steps.get(guess) else {
        return Ok(Step::Scan);
    };
    let kstart = s.pos;
    if step.col != emit || !step.matches(s.b, kstart) {
        return Ok(Step::Scan);
    }
    s.pos = kstart + step.pattern.len();
    s.ws();
    let vstart = s.pos;
    let mark = out.len();
    if plan.with_defaults {
        out.push(rb::VALUE_FOLLOWS);
    }
    let Some(kind) = scan_write(step.fast, s, out) else {
        out.truncate(mark);
        s.pos = kstart;
        return Ok(Step::Scan);
    };
    if !RowScratch::fill(&mut scratch.slots, scratch.gen, guess, vstart, s.pos, kind) {
        // Unreachable while the fields come in order (a field seen before is behind
        // `guess`); kept so that this path can never differ from the general one.
        return Err(RowError::DuplicateField {
            field: show(plan.index.names.get(guess).map_or(&[][..], |n| &n[..])),
        });
    }
    // Compact JSON: `}` or `,"` right after the value.
    match s.b.get(s.pos) {
        Some(b'}') => {
            s.pos += 1;
            return Ok(Step::Last(step.col));
        }
        Some(b',') if s.b.get(s.pos + 1) == Some(&b'"') => {
            s.pos += 1;
            return Ok(Step::Next(step.col));
        }
        _ => {}
    }
    Ok(if next_field(s)? {
        Step::Next(step.col)
    } else {
        Step::Last(step.col)
    })
}

/// Before the value of the field read by column `col` is written in the scan: writes the meta
/// columns from `emit` up to `col`. `None` when that cannot be done in order (`col` is behind
/// `emit`, or a field column lies in between: its field is missing, comes later or is the one
/// just scanned, read by a second column), `Some(false)` when a meta column cannot be written
/// (the slot pass reports why).
#[inline(always)]
fn emit_up_to(
    plan: &RowPlan,
    col: usize,
    emit: usize,
    meta: &MessageMeta<'_>,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Option<bool> {
    if col == emit {
        return Some(true);
    }
    emit_metas(plan, col, emit, meta, tmp, out)
}

#[inline(never)]
fn emit_metas(
    plan: &RowPlan,
    col: usize,
    emit: usize,
    meta: &MessageMeta<'_>,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Option<bool> {
    if col < emit {
        return None;
    }
    let between = plan.sources.get(emit..col)?;
    if !between.iter().all(|s| matches!(s, Src::Meta(_))) {
        return None;
    }
    for (i, src) in between.iter().enumerate() {
        if let (Src::Meta(m), Some(c)) = (*src, plan.columns.get(emit + i)) {
            if write_meta(plan, c, m, meta, tmp, out).is_err() {
                return Some(false);
            }
        }
    }
    Some(true)
}

/// Scans the value at `s.pos` and writes it as column `col`, whose source is the field just
/// named, `s.pos` then past it. `Some((true, kind))`: written. `Some((false, kind))`: scanned
/// but it does not convert (the slot pass reports why). `None`: `col` is not a field column;
/// nothing was consumed or written. Invalid JSON is an error as in [`Scan::value`].
#[inline]
fn write_scanned(
    plan: &RowPlan,
    col: usize,
    s: &mut Scan<'_>,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<Option<(bool, Kind)>, JsonErr> {
    let (Some(c), Some(Src::Field(_))) = (plan.columns.get(col), plan.sources.get(col)) else {
        return Ok(None);
    };
    if plan.with_defaults {
        out.push(rb::VALUE_FOLLOWS);
    }
    let fast = plan.fast.get(col).copied().unwrap_or(FastTy {
        nullable: false,
        kind: FastKind::General,
    });
    if let Some(kind) = scan_write(fast, s, out) {
        return Ok(Some((true, kind)));
    }
    let start = s.pos;
    let kind = s.value()?;
    let v = Val {
        raw: s.b.get(start..s.pos).unwrap_or_default(),
        kind,
    };
    Ok(Some((write_col(plan, col, c, v, tmp, out).is_ok(), kind)))
}

/// The types whose JSON form one loop can scan, validate and write (plain strings, arrays
/// of them, integers of up to 18 digits into 8..64-bit columns, Float64 from numbers without
/// exponent of up to 19 digits, `true`/`false` into Bool, Decimal(P <= 18) from plain digits,
/// `"YYYY-MM-DD hh:mm:ss[.f]"` into a UTC or zone-less DateTime/DateTime64, their Nullable
/// and LowCardinality forms). `Some(kind)`:
/// written, `s.pos` past the value. `None`: nothing consumed or written; the caller scans the
/// value with [`Scan::value`] and converts it with [`write_value`], which also handles (and
/// words the errors of) everything refused here.
#[inline(always)]
fn scan_write(ty: FastTy, s: &mut Scan<'_>, out: &mut Vec<u8>) -> Option<Kind> {
    let start = s.pos;
    let mark = out.len();
    if ty.nullable {
        if s.peek() == Some(b'n') {
            s.literal(b"null", Kind::Null).ok()?;
            out.push(rb::NULL);
            return Some(Kind::Null);
        }
        out.push(rb::NOT_NULL);
    }
    let kind = match ty.kind {
        FastKind::Str => {
            if s.peek() == Some(b'"') && matches!(s.string(), Ok(false)) {
                rb::put_str(out, s.b.get(start + 1..s.pos - 1).unwrap_or_default());
                Some(Kind::Str)
            } else {
                None
            }
        }
        FastKind::StrArray => {
            (s.peek() == Some(b'[') && scan_write_strings(s, out)).then_some(Kind::Arr)
        }
        FastKind::Int(t) => match scan_small_int(s.b, start) {
            Some((x, end)) if put_int_as(t, x, out) => {
                s.pos = end;
                Some(Kind::Int)
            }
            _ => None,
        },
        FastKind::Float64 => scan_fast_f64(s.b, start).map(|(x, end, kind)| {
            rb::put_f64(out, x);
            s.pos = end;
            kind
        }),
        FastKind::Bool => match s.peek() {
            Some(b't') => s
                .literal(b"true", Kind::True)
                .ok()
                .inspect(|_| rb::put_bool(out, true)),
            Some(b'f') => s
                .literal(b"false", Kind::False)
                .ok()
                .inspect(|_| rb::put_bool(out, false)),
            _ => None,
        },
        FastKind::Decimal { precision, scale } => {
            scan_decimal_i64(s.b, start, precision, scale).map(|(x, end, kind)| {
                if rb::decimal_width(precision) == 4 {
                    // |x| < 10^9 here: the precision was checked.
                    out.extend_from_slice(&(x as i32).to_le_bytes());
                } else {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                s.pos = end;
                kind
            })
        }
        FastKind::DateTime64 { precision } => {
            scan_datetime(s.b, start, u32::from(precision)).map(|(ticks, end)| {
                rb::put_datetime64(out, ticks);
                s.pos = end;
                Kind::Str
            })
        }
        FastKind::DateTime => scan_datetime(s.b, start, 0)
            .and_then(|(secs, end)| Some((u32::try_from(secs).ok()?, end)))
            .map(|(secs, end)| {
                rb::put_datetime(out, secs);
                s.pos = end;
                Kind::Str
            }),
        FastKind::General => None,
    };
    if kind.is_none() {
        s.pos = start;
        out.truncate(mark);
    }
    kind
}

/// `-?[0-9]*(.[0-9]*)?` at `b[start..]`, its digits read as one integer (the point
/// ignored): what the one-pass number writers share. No JSON grammar is checked here.
#[derive(Clone, Copy)]
struct Digits {
    neg: bool,
    /// The digits as one integer: 123.45 is 12345.
    value: u64,
    int_digits: usize,
    /// `None` without a point; `Some(0)` for a point with no digit after it.
    frac_digits: Option<usize>,
    /// Every digit, leading zeros included.
    all: usize,
    /// The position after the last digit.
    end: usize,
}

impl Digits {
    /// Digits from the first non-zero one on.
    fn significant(&self) -> u32 {
        self.value.checked_ilog10().map_or(0, |l| l + 1)
    }
}

/// Scans [`Digits`]; `None` past 19 digits, which a `u64` may not hold.
#[inline(always)]
fn scan_digits(b: &[u8], start: usize) -> Option<Digits> {
    let mut i = start;
    let neg = b.get(i) == Some(&b'-');
    if neg {
        i += 1;
    }
    let mut value: u64 = 0;
    let mut all = 0usize;
    let mut run = |i: &mut usize| -> Option<usize> {
        let from = *i;
        while let Some(d) = b.get(*i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9) {
            all += 1;
            if all > 19 {
                return None;
            }
            value = value * 10 + u64::from(d);
            *i += 1;
        }
        Some(*i - from)
    };
    let int_digits = run(&mut i)?;
    let frac_digits = if b.get(i) == Some(&b'.') {
        i += 1;
        Some(run(&mut i)?)
    } else {
        None
    };
    Some(Digits {
        neg,
        value,
        int_digits,
        frac_digits,
        all,
        end: i,
    })
}

/// Whether [`Digits`] at `start` are a JSON number without exponent: an integer part without
/// a leading zero, digits after a point, and no exponent or second point after them.
#[inline(always)]
fn plain_json_number(b: &[u8], start: usize, d: &Digits) -> bool {
    let int_at = start + usize::from(d.neg);
    d.int_digits > 0
        && !(b.get(int_at) == Some(&b'0') && d.int_digits > 1)
        && d.frac_digits != Some(0)
        && !matches!(b.get(d.end), Some(b'.' | b'e' | b'E'))
}

/// A JSON number without exponent at `b[start..]` that [`fast_f64`] converts exactly, scanned
/// and converted in one pass (the same arithmetic, so the same bits): the value, the position
/// after it and its kind. `None` for anything else, valid or not.
#[inline(always)]
fn scan_fast_f64(b: &[u8], start: usize) -> Option<(f64, usize, Kind)> {
    let d = scan_digits(b, start)?;
    if !plain_json_number(b, start, &d) {
        return None;
    }
    let scale = d.frac_digits.unwrap_or(0);
    if d.value > 1 << 53 || scale >= POW10_F64.len() {
        return None;
    }
    let kind = if d.frac_digits.is_some() {
        Kind::Num
    } else {
        Kind::Int
    };
    let x = d.value as f64 / POW10_F64[scale];
    Some((if d.neg { -x } else { x }, d.end, kind))
}

/// A zone that reads a date-time text without an offset as UTC, as [`parse_datetime`] does.
fn utc_like(tz: Option<Tz>) -> bool {
    matches!(tz, None | Some(Tz::UTC))
}

/// A decimal at `b[start..]` as [`decimal_i64`] converts its text, as a JSON string of
/// `-?digits[.digits]` (either part may be empty, not both) or as a JSON number without
/// exponent, scanned and converted in one loop: the unscaled value, the position after it
/// and its kind. `None` for anything else, valid or not (the general path decides, with
/// [`decimal_i64`] first, so a value answered here is the one it gives).
#[inline(always)]
fn scan_decimal_i64(
    b: &[u8],
    start: usize,
    precision: u8,
    scale: u8,
) -> Option<(i64, usize, Kind)> {
    let quoted = b.get(start) == Some(&b'"');
    let at = start + usize::from(quoted);
    let d = scan_digits(b, at)?;
    let (end, kind) = if quoted {
        if b.get(d.end) != Some(&b'"') {
            return None;
        }
        (d.end + 1, Kind::Str)
    } else if plain_json_number(b, at, &d) {
        let kind = if d.frac_digits.is_some() {
            Kind::Num
        } else {
            Kind::Int
        };
        (d.end, kind)
    } else {
        return None;
    };
    let v = decimal_from_digits(&d, u32::from(scale), u32::from(precision))?;
    Some((v, end, kind))
}

/// A date-time string at `b[start..]` in the form most producers write,
/// `"YYYY-MM-DD hh:mm:ss[.f…]"` (or with `T`), no offset, as ticks of 10^-`precision` s in
/// UTC, within DateTime64's range; fraction digits beyond the precision must be zeros, as in
/// [`parse_datetime`]. The position after the closing quote comes with it. `None` for
/// anything else, valid or not: [`read_ticks`] then parses it and words any error.
#[inline(always)]
fn scan_datetime(b: &[u8], start: usize, precision: u32) -> Option<(i64, usize)> {
    if b.get(start) != Some(&b'"') {
        return None;
    }
    let s = b.get(start + 1..)?;
    let head = s.first_chunk::<19>()?;
    let digit = |i: usize| -> Option<u32> {
        let d = head[i].wrapping_sub(b'0');
        (d <= 9).then_some(u32::from(d))
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    if head[4] != b'-'
        || head[7] != b'-'
        || !matches!(head[10], b' ' | b'T' | b't')
        || head[13] != b':'
        || head[16] != b':'
    {
        return None;
    }
    let y = i64::from(two(0)? * 100 + two(2)?);
    let (mo, d, h, mi, sec) = (two(5)?, two(8)?, two(11)?, two(14)?, two(17)?);
    if !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut frac: i64 = 0;
    let mut kept = 0u32;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let from = i;
        while let Some(c) = s.get(i).map(|c| c.wrapping_sub(b'0')).filter(|c| *c <= 9) {
            if kept < precision {
                frac = frac * 10 + i64::from(c);
                kept += 1;
            } else if c != 0 {
                return None;
            }
            i += 1;
        }
        if i == from {
            return None;
        }
    }
    if s.get(i) != Some(&b'"') {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + sec);
    if !(DT64_MIN_SECS..DT64_END_SECS).contains(&secs) {
        return None;
    }
    // Nanoseconds end in 2262: the checked arithmetic leaves those to the general path.
    let ticks = secs
        .checked_mul(pow10(precision))?
        .checked_add(frac * pow10(precision - kept))?;
    Some((ticks, start + 1 + i + 1))
}

/// `[` plain strings `]` at `s.pos` as RowBinary Array(String); false at anything else (an
/// escaped string, another value, invalid JSON), with `s` and `out` left to the caller to reset.
#[inline]
fn scan_write_strings(s: &mut Scan<'_>, out: &mut Vec<u8>) -> bool {
    s.pos += 1;
    s.ws();
    let count_at = rb::reserve_count(out);
    let mut n = 0usize;
    if s.peek() == Some(b']') {
        s.pos += 1;
        return true;
    }
    loop {
        let start = s.pos;
        if s.peek() != Some(b'"') || !matches!(s.string(), Ok(false)) {
            return false;
        }
        rb::put_str(out, s.b.get(start + 1..s.pos - 1).unwrap_or_default());
        n += 1;
        s.ws();
        match s.peek() {
            Some(b',') => {
                s.pos += 1;
                s.ws();
            }
            Some(b']') => {
                s.pos += 1;
                rb::patch_count(out, count_at, n);
                return true;
            }
            _ => return false,
        }
    }
}

/// A JSON integer of at most 18 digits (no fraction or exponent) at `b[start..]`, scanned and
/// parsed in one pass: its value and the position after it. `None` for anything else, valid
/// or not (the general path decides).
#[inline(always)]
fn scan_small_int(b: &[u8], start: usize) -> Option<(i64, usize)> {
    let mut i = start;
    let neg = b.get(i) == Some(&b'-');
    if neg {
        i += 1;
    }
    let first = b.get(i)?.wrapping_sub(b'0');
    if first > 9 {
        return None;
    }
    let digits_at = i;
    let mut v: i64 = 0;
    if first == 0 {
        i += 1;
    } else {
        // Long numbers (ids, epochs, Int64s): their first 8 digits in one word.
        if let Some(x) = b
            .get(i..)
            .and_then(<[u8]>::first_chunk::<8>)
            .and_then(|w| eight_digits(u64::from_le_bytes(*w)))
        {
            v = x as i64;
            i += 8;
        }
        while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')) {
            if d > 9 {
                break;
            }
            if i - digits_at >= 18 {
                return None;
            }
            v = v * 10 + d as i64;
            i += 1;
        }
    }
    // A fraction, an exponent or a digit after a leading zero: not this fast path's.
    if let Some(b'.' | b'e' | b'E' | b'0'..=b'9') = b.get(i) {
        return None;
    }
    Some((if neg { -v } else { v }, i))
}

/// `UnknownFields::Add`: a field `name` (unescaped) no column reads. The column to add
/// when its value tells the type; `None` (ignored) when it is null, an array of nulls or
/// nothing, or names a column that reads no field. An empty name, or one that is not UTF-8,
/// cannot be a column: the message's error.
#[cold]
fn new_field(plan: &RowPlan, name: &[u8], value: Val<'_>) -> Result<Option<NewColumn>, RowError> {
    if plan.is_other_column(name) {
        return Ok(None);
    }
    let Some(column_type) = added_column_type(value) else {
        return Ok(None);
    };
    match std::str::from_utf8(name) {
        Ok(field) if !field.is_empty() => Ok(Some(NewColumn {
            name: field.to_owned(),
            column_type,
        })),
        _ => Err(RowError::UnknownField { field: show(name) }),
    }
}

/// The type of the column `unknown_fields = "add"` adds for a field first seen with value
/// `v`, as clickhouse_sinker's dynamic schema infers it: an integer `Int64`, another number
/// `Float64`, a string `String`, a boolean `Bool`, an object `String` (its JSON text), all
/// Nullable so that rows without the field hold NULL; an array `Array(Nullable(T))` of its
/// elements' type (integers and other numbers `Float64`, any other mix or nesting
/// `String`). `None` for null and for an array of nulls or nothing: no type to tell yet,
/// and nothing lost (a row without the column holds NULL or `[]`).
fn added_column_type(v: Val<'_>) -> Option<String> {
    fn scalar(kind: Kind) -> Option<&'static str> {
        match kind {
            Kind::Null => None,
            Kind::Int => Some("Int64"),
            Kind::Num => Some("Float64"),
            Kind::True | Kind::False => Some("Bool"),
            Kind::Str | Kind::StrEsc | Kind::Obj | Kind::Arr => Some("String"),
        }
    }
    if v.kind != Kind::Arr {
        return scalar(v.kind).map(|t| format!("Nullable({t})"));
    }
    let mut it = ArrayIter::new(v.raw);
    let mut elem: Option<&'static str> = None;
    while let Ok(Some(e)) = it.next_val() {
        let Some(t) = scalar(e.kind) else { continue };
        elem = Some(match elem {
            None => t,
            Some(seen) if seen == t => t,
            Some("Int64" | "Float64") if matches!(t, "Int64" | "Float64") => "Float64",
            Some(_) => "String",
        });
    }
    elem.map(|t| format!("Array(Nullable({t}))"))
}

/// Writes meta column `col` (source `m`) from the message's metadata.
fn write_meta(
    plan: &RowPlan,
    col: &ColumnPlan,
    m: MetaField,
    meta: &MessageMeta<'_>,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    let event_field = matches!(
        m,
        MetaField::EventTime | MetaField::SourceTime | MetaField::SourceDb | MetaField::SourceTable
    );
    let origin = || {
        if event_field {
            m.name().to_string()
        } else {
            format!("Kafka {}", m.name())
        }
    };
    let ev = &meta.source;
    let missing = match m {
        MetaField::Timestamp => meta.timestamp_ms.is_none(),
        MetaField::EventTime => ev.ts_ms.is_none(),
        MetaField::SourceTime => ev.source_ts_ms.is_none(),
        MetaField::SourceDb => ev.db.is_none(),
        MetaField::SourceTable => ev.table.is_none(),
        _ => false,
    };
    if missing {
        return write_missing(plan, col, origin(), out);
    }
    if plan.with_defaults {
        out.push(rb::VALUE_FOLLOWS);
    }
    let r = match m {
        MetaField::Topic => put_bytes_as(&col.ty, Some(meta.topic.as_bytes()), out),
        MetaField::Key => put_bytes_as(&col.ty, meta.key, out),
        MetaField::Value => put_bytes_as(&col.ty, meta.value, out),
        MetaField::Partition => put_meta_int(&col.ty, meta.partition as i64, out),
        MetaField::Offset => put_meta_int(&col.ty, meta.offset, out),
        MetaField::Timestamp => {
            put_meta_timestamp(&col.ty, meta.timestamp_ms.unwrap_or_default(), out)
        }
        MetaField::Headers => put_headers(&col.ty, meta.headers, tmp, out),
        MetaField::Op => put_bytes_as(&col.ty, meta.op.as_ref().map(std::slice::from_ref), out),
        MetaField::Deleted => put_deleted(&col.ty, meta.op == Some(b'd'), out),
        MetaField::EventTime => put_meta_timestamp(&col.ty, ev.ts_ms.unwrap_or_default(), out),
        MetaField::SourceTime => {
            put_meta_timestamp(&col.ty, ev.source_ts_ms.unwrap_or_default(), out)
        }
        MetaField::SourceDb | MetaField::SourceTable => {
            let text = if m == MetaField::SourceDb {
                ev.db
            } else {
                ev.table
            };
            match text {
                Some(Text::Json(raw)) => Val {
                    raw,
                    kind: Kind::StrEsc,
                }
                .str_bytes(tmp)
                .and_then(|b| put_bytes_as(&col.ty, Some(b), out)),
                Some(Text::Bytes(b)) => put_bytes_as(&col.ty, Some(b), out),
                None => put_bytes_as(&col.ty, None, out),
            }
        }
    };
    r.map_err(|e| e.into_row_error(origin(), col))
}

#[cold]
fn plan_changed(col: &ColumnPlan) -> RowError {
    RowError::Value {
        origin: "plan".into(),
        column: col.name.clone(),
        ty: col.ty.to_string(),
        reason: "RowPlan was modified after RowPlan::new; rebuild it".into(),
    }
}

fn write_missing(
    plan: &RowPlan,
    col: &ColumnPlan,
    origin: String,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    match &col.on_missing {
        OnMissing::ServerDefault if plan.with_defaults => {
            out.push(rb::USE_DEFAULT);
            Ok(())
        }
        OnMissing::Bytes(b) => {
            if plan.with_defaults {
                out.push(rb::VALUE_FOLLOWS);
            }
            out.extend_from_slice(b);
            Ok(())
        }
        OnMissing::Null if col.ty.is_nullable() => {
            if plan.with_defaults {
                out.push(rb::VALUE_FOLLOWS);
            }
            out.push(rb::NULL);
            Ok(())
        }
        _ => Err(RowError::Missing {
            origin,
            column: col.name.clone(),
            ty: col.ty.to_string(),
        }),
    }
}

/// Encodes one standalone JSON value (e.g. `0`, `"n/a"`, `[1,2]`) as RowBinary of `ty`,
/// appending to `out` (left unchanged on error). Useful to precompute [`OnMissing::Bytes`].
pub fn encode_json_value(ty: &ChType, json: &[u8], out: &mut Vec<u8>) -> Result<(), RowError> {
    let mut s = Scan::new(json);
    s.ws();
    let start = s.pos;
    let kind = s.value().map_err(json_err)?;
    let end = s.pos;
    s.ws();
    if s.pos != json.len() {
        return Err(RowError::InvalidJson {
            offset: s.pos,
            reason: "trailing characters after the JSON value",
        });
    }
    let len = out.len();
    let mut tmp = Vec::new();
    let v = Val {
        raw: json.get(start..end).unwrap_or_default(),
        kind,
    };
    write_value(ty, v, &mut tmp, out).map_err(|e| {
        out.truncate(len);
        let col = ColumnPlan::field("<value>", ty.clone());
        e.into_row_error("value".into(), &col)
    })
}

/// Fixtures the other decoders' tests share.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const META: MessageMeta<'static> = MessageMeta {
        topic: "events",
        partition: 3,
        offset: 42,
        timestamp_ms: Some(1_700_000_000_123),
        key: Some(b"k1"),
        headers: &[],
        value: None,
        op: None,
        source: EventSource::NONE,
    };

    pub(crate) fn ty(s: &str) -> ChType {
        ChType::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A plan of a change event's row id (an `id_ty` column) and of its `ts_ms`,
    /// `source.db` and `source.table` (NULL when the event has none): the Avro and Protobuf
    /// envelopes' tests read their events with it.
    pub(crate) fn event_source_plan(id_ty: &str) -> RowPlan {
        RowPlan::new(
            vec![
                ColumnPlan::field("id", ty(id_ty)),
                ColumnPlan::meta("ts", ty("Int64"), MetaField::EventTime),
                ColumnPlan::meta("db", ty("String"), MetaField::SourceDb),
                ColumnPlan::meta("tbl", ty("Nullable(String)"), MetaField::SourceTable)
                    .on_missing(OnMissing::Bytes(vec![1])),
            ],
            UnknownFields::Ignore,
            false,
        )
        .unwrap()
    }

    /// What [`event_source_plan`] makes of row id 1 of an event with `ts_ms` 1 from the
    /// database "shop", its source naming no table.
    pub(crate) fn event_source_row() -> Vec<u8> {
        let mut row = 1u64.to_le_bytes().to_vec();
        row.extend(1i64.to_le_bytes());
        row.push(4);
        row.extend(b"shop");
        row.push(1);
        row
    }

    /// A plan of field columns, each `(name, type)`.
    pub(crate) fn named_plan(cols: &[(&str, &str)], unknown: UnknownFields) -> RowPlan {
        let columns = cols
            .iter()
            .map(|(n, t)| ColumnPlan::field(*n, ty(t)))
            .collect();
        RowPlan::new(columns, unknown, false).unwrap()
    }

    /// Encodes `{"c": <json>}` into one column `c` of type `t`.
    fn one(t: &str, json: &str) -> Result<Vec<u8>, RowError> {
        let plan = RowPlan::new(
            vec![ColumnPlan::field("c", ty(t))],
            UnknownFields::Error,
            false,
        )
        .unwrap();
        let mut out = Vec::new();
        let payload = format!("{{\"c\": {json}}}");
        encode_json_row(&plan, payload.as_bytes(), &META, &mut out).map(|_| out)
    }

    /// `unknown_fields = "add"`: the first field without a column names the column to add,
    /// typed by its value; fields that tell no type, and names of columns that read no
    /// field, are ignored; a message with no new field encodes as with "ignore".
    #[test]
    fn a_new_field_names_the_column_to_add_and_its_type() {
        let mut plan = named_plan(&[("id", "UInt64")], UnknownFields::Add);
        plan.set_other_columns(&["computed".to_string()]);
        let new = |json: &str| {
            let mut out = vec![7];
            let r = encode_json_row(&plan, json.as_bytes(), &META, &mut out);
            // A message stopped at a new field leaves nothing behind.
            assert!(r.is_ok() || out == [7], "{json}");
            match r {
                Ok(()) => None,
                Err(RowError::NewFields { fields }) => Some(
                    fields
                        .into_iter()
                        .map(|c| (c.name, c.column_type))
                        .collect::<Vec<_>>(),
                ),
                Err(e) => panic!("{json}: {e}"),
            }
        };
        let some = |f: &str, t: &str| Some(vec![(f.to_string(), t.to_string())]);
        for (json, added) in [
            (r#"{"id":1,"n":5}"#, some("n", "Nullable(Int64)")),
            (r#"{"n":-5e3,"id":1}"#, some("n", "Nullable(Float64)")),
            (r#"{"id":1,"s":"x"}"#, some("s", "Nullable(String)")),
            (
                r#"{"id":1,"s\"q\u00e9":"x"}"#,
                some("s\"qé", "Nullable(String)"),
            ),
            (r#"{"id":1,"b":false}"#, some("b", "Nullable(Bool)")),
            (r#"{"id":1,"o":{"a":[1]}}"#, some("o", "Nullable(String)")),
            (
                r#"{"id":1,"a":[null,1,2]}"#,
                some("a", "Array(Nullable(Int64))"),
            ),
            (
                r#"{"id":1,"a":[1,2.5]}"#,
                some("a", "Array(Nullable(Float64))"),
            ),
            (r#"{"id":1,"a":[true]}"#, some("a", "Array(Nullable(Bool))")),
            (
                r#"{"id":1,"a":[1,"x"]}"#,
                some("a", "Array(Nullable(String))"),
            ),
            (
                r#"{"id":1,"a":[[1],{"b":2}]}"#,
                some("a", "Array(Nullable(String))"),
            ),
            (
                r#"{"id":1,"z":null,"a":[],"e":[null],"n":1}"#,
                some("n", "Nullable(Int64)"),
            ),
            (
                r#"{"n":1,"id":1,"s":"x","n":2}"#,
                Some(vec![
                    ("n".to_string(), "Nullable(Int64)".to_string()),
                    ("s".to_string(), "Nullable(String)".to_string()),
                ]),
            ),
            (r#"{"id":1,"z":null,"a":[],"computed":5}"#, None),
            (r#"{"id":1}"#, None),
        ] {
            assert_eq!(new(json), added, "{json}");
        }
        let mut out = Vec::new();
        let e = encode_json_row(&plan, br#"{"id":1,"":2}"#, &META, &mut out).unwrap_err();
        assert!(matches!(e, RowError::UnknownField { .. }), "{e}");
        // The row without new fields is the row "ignore" writes.
        let lax = named_plan(&[("id", "UInt64")], UnknownFields::Ignore);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let row = br#"{"id":3,"z":null,"computed":1}"#;
        encode_json_row(&plan, row, &META, &mut a).unwrap();
        encode_json_row(&lax, row, &META, &mut b).unwrap();
        assert_eq!((a.clone(), a), (b, 3u64.to_le_bytes().to_vec()));
    }

    #[track_caller]
    fn ok(t: &str, json: &str) -> Vec<u8> {
        one(t, json).unwrap_or_else(|e| panic!("{t} <- {json}: {e}"))
    }

    #[track_caller]
    fn err(t: &str, json: &str) -> String {
        match one(t, json) {
            Ok(b) => panic!("{t} <- {json}: expected an error, got {b:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn le<const N: usize>(b: [u8; N]) -> Vec<u8> {
        b.to_vec()
    }

    /// A change event's `ts_ms`, `source.ts_ms`, `source.db` and `source.table` fill their
    /// metadata columns (milliseconds as a Kafka timestamp is, strings unescaped); an event
    /// that does not say leaves the column to its missing value.
    #[test]
    fn debezium_events_carry_their_source_and_times() {
        let plan = RowPlan::new(
            vec![
                ColumnPlan::field("id", ty("UInt64")),
                ColumnPlan::meta("ts", ty("DateTime64(3, 'UTC')"), MetaField::EventTime)
                    .on_missing(OnMissing::Bytes(0i64.to_le_bytes().to_vec())),
                ColumnPlan::meta("src_ts", ty("Int64"), MetaField::SourceTime)
                    .on_missing(OnMissing::Bytes(0i64.to_le_bytes().to_vec())),
                ColumnPlan::meta("db", ty("String"), MetaField::SourceDb)
                    .on_missing(OnMissing::Bytes(vec![0])),
                ColumnPlan::meta("tbl", ty("Nullable(String)"), MetaField::SourceTable)
                    .on_missing(OnMissing::Bytes(vec![1])),
            ],
            UnknownFields::Error,
            false,
        )
        .unwrap();
        let row = |payload: &str| {
            let (op, r, source) = debezium_row(payload.as_bytes()).unwrap();
            let mut out = Vec::new();
            let meta = MessageMeta {
                op: Some(op),
                source,
                ..META
            };
            encode_json_row(&plan, r, &meta, &mut out).map(|()| out)
        };
        let mut want = 7u64.to_le_bytes().to_vec();
        want.extend(1_700_000_000_123i64.to_le_bytes());
        want.extend(1_700_000_000_100i64.to_le_bytes());
        want.extend([4]);
        want.extend(b"shop");
        want.extend([0, 7]);
        want.extend(b"or\"ders");
        assert_eq!(
            row(
                r#"{"op":"c","after":{"id":7},"ts_ms":1700000000123,"source":{"db":"shop","table":"or\"ders","ts_ms":1700000000100,"lsn":5}}"#
            ),
            Ok(want)
        );
        // Wrapped in the JSON converter's envelope: the same.
        let wrapped = row(
            r#"{"schema":{},"payload":{"op":"c","after":{"id":7},"ts_ms":1700000000123,"source":{"db":"shop","table":"or\"ders","ts_ms":1700000000100}}}"#,
        );
        assert_eq!(wrapped.map(|r| r.len()), Ok(8 + 8 + 8 + 5 + 9));
        // Without source and time: the columns' missing values (type defaults, NULL).
        let mut want = 7u64.to_le_bytes().to_vec();
        want.extend(0i64.to_le_bytes());
        want.extend(0i64.to_le_bytes());
        want.extend([0, 1]);
        assert_eq!(
            row(r#"{"op":"r","after":{"id":7},"source":null}"#),
            Ok(want)
        );
        // A column that must have one says which the event lacks.
        let strict = RowPlan::new(
            vec![
                ColumnPlan::field("id", ty("UInt64")),
                ColumnPlan::meta("src_ts", ty("Int64"), MetaField::SourceTime),
            ],
            UnknownFields::Error,
            false,
        )
        .unwrap();
        let (op, r, source) = debezium_row(br#"{"op":"c","after":{"id":1}}"#).unwrap();
        let meta = MessageMeta {
            op: Some(op),
            source,
            ..META
        };
        let e = encode_json_row(&strict, r, &meta, &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("missing change event source.ts_ms for column src_ts Int64"),
            "{e}"
        );
    }

    /// Debezium change events: the row is `after` (c, r, u) or `before` (d), bare or inside
    /// the JSON converter's schema wrapper, and its op and delete flag fill their columns;
    /// events without a row are errors naming what is missing.
    #[test]
    fn debezium_events_give_their_row_and_operation() {
        let row = |p: &str| {
            debezium_row(p.as_bytes())
                .map(|(op, r, _)| (op as char, String::from_utf8_lossy(r).into_owned()))
        };
        assert_eq!(
            row(r#"{"before":null,"after":{"id":1},"op":"c","ts_ms":1}"#),
            Ok(('c', r#"{"id":1}"#.into()))
        );
        assert_eq!(
            row(r#" {"op":"u","before":{"id":1,"v":"a"},"after":{"id":1,"v":"b"}} "#),
            Ok(('u', r#"{"id":1,"v":"b"}"#.into()))
        );
        assert_eq!(
            row(r#"{"op":"d","before":{"id":2},"after":null}"#),
            Ok(('d', r#"{"id":2}"#.into()))
        );
        assert_eq!(
            row(
                r#"{"schema":{"type":"struct"},"payload":{"op":"r","after":{"id":3},"before":null}}"#
            ),
            Ok(('r', r#"{"id":3}"#.into()))
        );
        for (p, says) in [
            (r#"{"op":"t","before":null,"after":null}"#, "truncate"),
            (r#"{"op":"m"}"#, "message"),
            (r#"{"op":"x","after":{}}"#, "is not c, r, u or d"),
            (
                r#"{"op":"d","before":null}"#,
                "without its \"before\" object",
            ),
            (r#"{"op":"c","after":[1]}"#, "without its \"after\" object"),
            (r#"{"id":1}"#, "no \"op\" field"),
            (
                r#"{"schema":{},"payload":7}"#,
                "\"payload\" is not an object",
            ),
            (r#"{"op":"c","after":{}} x"#, "trailing"),
            (r#"{"op":"c","after":{"#, "malformed"),
        ] {
            let e = row(p).unwrap_err().to_string();
            assert!(e.contains(says), "{p}: {e}");
        }
        assert!(matches!(
            debezium_row(b"[1]"),
            Err(RowError::NotAnObject { .. })
        ));

        let plan = RowPlan::new(
            vec![
                ColumnPlan::field("id", ty("UInt64")),
                ColumnPlan::meta("op", ty("LowCardinality(String)"), MetaField::Op),
                ColumnPlan::meta("del", ty("UInt8"), MetaField::Deleted),
                ColumnPlan::meta("del_b", ty("Bool"), MetaField::Deleted),
                ColumnPlan::meta("del_s", ty("String"), MetaField::Deleted),
            ],
            UnknownFields::Error,
            false,
        )
        .unwrap();
        let encode = |payload: &str| {
            let (op, r, source) = debezium_row(payload.as_bytes()).unwrap();
            let mut out = Vec::new();
            encode_json_row(
                &plan,
                r,
                &MessageMeta {
                    op: Some(op),
                    source,
                    ..META
                },
                &mut out,
            )
            .unwrap();
            out
        };
        let mut want = 2u64.to_le_bytes().to_vec();
        want.extend([1, b'd', 1, 1, 4]);
        want.extend(b"true");
        assert_eq!(encode(r#"{"op":"d","before":{"id":2},"after":null}"#), want);
        let mut want = 2u64.to_le_bytes().to_vec();
        want.extend([1, b'u', 0, 0, 5]);
        want.extend(b"false");
        assert_eq!(encode(r#"{"op":"u","before":null,"after":{"id":2}}"#), want);
        assert!(!meta_type_ok(MetaField::Deleted, &ty("Date")));
        assert!(!meta_type_ok(MetaField::Op, &ty("UInt8")));
    }

    /// `date_time_formats`: each column's values are what the default text gives for the
    /// same instant, through the one-pass JSON writer, the typed fields of Avro and Protobuf
    /// and CSV's text alike; errors name the value and the format; a format on a column that
    /// is no date-time, or no column, refuses the plan.
    #[test]
    fn date_time_formats_read_epoch_units_and_patterns() {
        let cols = [
            ("ms", "DateTime64(3)"),
            ("us", "Nullable(DateTime64(6, 'UTC'))"),
            ("s", "DateTime"),
            ("p", "DateTime64(3, 'Europe/Berlin')"),
            ("d", "Date32"),
            ("n", "UInt64"),
        ];
        let formats: std::collections::BTreeMap<String, TimeFormat> = [
            ("ms", "epoch_millis"),
            ("us", "epoch_micros"),
            ("s", "epoch_millis"),
            ("p", "%d/%m/%Y %H:%M:%S%.f"),
            ("d", "%d.%m.%Y"),
        ]
        .into_iter()
        .map(|(c, f)| (c.to_string(), TimeFormat::parse(f).unwrap()))
        .collect();
        let mut plan = named_plan(&cols, UnknownFields::Error);
        plan.set_time_formats(&formats).unwrap();
        let plain = named_plan(&cols, UnknownFields::Error);
        let row = |plan: &RowPlan, json: &str| {
            let mut out = Vec::new();
            encode_json_row(plan, json.as_bytes(), &META, &mut out).map(|_| out)
        };
        let want = row(
            &plain,
            r#"{"ms":"2023-11-14 22:13:20.123","us":"2023-11-14 22:13:20.123456","s":"2023-11-14 22:13:20","p":"2026-12-05 10:15:30.25","d":"2026-12-05","n":7}"#,
        )
        .unwrap();
        for got in [
            r#"{"ms":1700000000123,"us":1700000000123456,"s":1700000000000,"p":"05/12/2026 10:15:30.25","d":"05.12.2026","n":7}"#,
            r#"{"ms":"1700000000123","us":"1700000000123456","s":"1700000000000","p":"05/12/2026 10:15:30.250","d":"05.12.2026","n":7}"#,
            // Out of column order: the two-pass path.
            r#"{"n":7,"d":"05.12.2026","p":"05/12/2026 10:15:30.25","s":1700000000000,"us":1700000000123456,"ms":1700000000123}"#,
        ] {
            assert_eq!(row(&plan, got).unwrap(), want, "{got}");
        }
        // Date-time text still reads as text under an epoch format; NULL stays NULL.
        let text = row(&plan, r#"{"ms":"2023-11-14 22:13:20.123","us":null,"s":0,"p":"01/01/2000 00:00:00","d":"01.01.2000","n":1}"#).unwrap();
        assert_eq!(&text[..8], &want[..8]);
        assert_eq!(text[8], rb::NULL);
        // Typed fields (Avro, Protobuf): a long counts the unit, as a JSON integer does.
        let fields = [
            Some(FieldValue {
                start: 0,
                end: 0,
                kind: FieldKind::Integer(1_700_000_000_123),
            }),
            Some(FieldValue {
                start: 0,
                end: 0,
                kind: FieldKind::Integer(1_700_000_000_123_456),
            }),
            Some(FieldValue {
                start: 0,
                end: 0,
                kind: FieldKind::Integer(1_700_000_000_000),
            }),
        ];
        let mut out = Vec::new();
        let mut tmp = Vec::new();
        let mut typed = Vec::new();
        let _ = write_fields_row(&plan, b"", &fields, &META, &mut tmp, &mut typed, &mut out);
        assert_eq!(&out[..8 + 9 + 4], &want[..8 + 9 + 4]);

        let e = row(
            &plan,
            r#"{"ms":1,"us":1,"s":1700000000123,"p":"x","d":"05.12.2026","n":7}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("column s DateTime") && e.contains("fractional"),
            "{e}"
        );
        let e = row(
            &plan,
            r#"{"ms":1,"us":1,"s":0,"p":"2026-12-05","d":"05.12.2026","n":7}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("does not match the date-time format \"%d/%m/%Y %H:%M:%S%.f\""),
            "{e}"
        );
        let e = row(&plan, r#"{"ms":1.7e12,"us":1,"s":0,"p":"x","d":"x","n":7}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exponent"), "{e}");

        for (column, why) in [("n", "not a Date"), ("none", "does not have")] {
            let mut p = named_plan(&cols, UnknownFields::Error);
            let one: std::collections::BTreeMap<String, TimeFormat> = [(
                column.to_string(),
                TimeFormat::parse("epoch_millis").unwrap(),
            )]
            .into();
            let e = p.set_time_formats(&one).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    /// A typed value (a double, a timestamp's ticks) handed over by Avro or Protobuf gives
    /// the same bytes, or the same error, as the text it stands for, in every column type
    /// (those it is written into directly, and those that read its text), with and without
    /// the DEFAULT marker.
    #[test]
    fn typed_values_convert_exactly_as_their_text_does() {
        let columns = [
            "Float64",
            "Nullable(Float64)",
            "LowCardinality(Nullable(Float64))",
            "Float32",
            "Decimal(18, 4)",
            "Int64",
            "UInt8",
            "Bool",
            "String",
            "DateTime64(3)",
            "DateTime64(9, 'UTC')",
            "DateTime64(0, 'Asia/Tokyo')",
            "Nullable(DateTime64(6))",
            "DateTime",
            "Date32",
            "Int8",
            "UInt16",
            "Nullable(Int32)",
            "UInt32",
            "UInt64",
            "Int128",
            "UInt256",
            "Date",
            "Enum8('a' = 1, 'b' = -128)",
            "Decimal(18, 4)",
            "Decimal(9, 2)",
            "Decimal(4, 4)",
            "Nullable(Decimal(18, 0))",
            "Decimal(38, 10)",
        ];
        let integers = [
            0i64,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            65_535,
            65_536,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::from(u32::MAX),
            1_700_000_000_123,
            i64::MAX,
            i64::MIN,
        ];
        let doubles = [
            0.0,
            -0.0,
            1.5,
            0.1,
            f64::from(0.1f32),
            123_456_789.0,
            1e300,
            -2.5e-300,
            5e-324,
            f64::MAX,
            1_700_000_000.123,
            f64::NAN,
            // A NaN with a payload: its text is "nan", which reads as the plain NaN.
            f64::from_bits(0x7ff8_0000_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let scaled: [(i64, u8); 24] = [
            // Decimals: scales below, at and above the columns', trailing zeros, at the
            // precision's edge, scales past what an i64 or i128 power holds.
            (15_000, 4),
            (-12_345_678, 4),
            (99_999_999_999_999_999, 4),
            (999_999_999, 2),
            (1_000_000_000, 2),
            (9_999, 4),
            (12, 0),
            (5, 20),
            (0, 40),
            (1_000_000_000_000_000_000, 30),
            (0, 3),
            (1_700_000_000_123, 3),
            (-1, 3),
            (1_700_000_000_123_456, 6),
            (1_700_000_000_123_456_789, 9),
            (1_700_000_000_000_000_000, 9),
            (i64::MAX, 9),
            (i64::MIN, 3),
            (-2_208_988_800_000, 3),
            (-2_208_988_800_001, 3),
            (10_413_792_000_000, 3),
            (10_413_791_999_999, 3),
            (1_700_000_000, 0),
            (7, 6),
        ];
        let mut typed: Vec<FieldKind> = doubles
            .iter()
            .map(|d| FieldKind::Double(d.to_bits()))
            .collect();
        typed.extend(integers.iter().map(|&x| FieldKind::Integer(x)));
        typed.extend(
            scaled
                .iter()
                .map(|&(value, scale)| FieldKind::Scaled { value, scale }),
        );
        let mut direct = 0;
        for t in columns {
            for with_defaults in [false, true] {
                let plan = RowPlan::new(
                    vec![ColumnPlan::field("c", ty(t))],
                    UnknownFields::Ignore,
                    with_defaults,
                )
                .unwrap();
                for &kind in &typed {
                    let mut text = Vec::new();
                    let text_kind = match kind {
                        FieldKind::Integer(x) => {
                            text.extend_from_slice(x.to_string().as_bytes());
                            FieldKind::Int
                        }
                        FieldKind::Double(bits) => {
                            super::super::jsontext::write_float(f64::from_bits(bits), &mut text)
                        }
                        FieldKind::Scaled { value, scale } => super::super::jsontext::write_scaled(
                            i128::from(value),
                            u32::from(scale),
                            &mut text,
                        ),
                        _ => unreachable!(),
                    };
                    let run = |buf: &[u8], v: FieldValue| {
                        let mut out = vec![0xaa];
                        encode_fields_row(&plan, buf, &[Some(v)], &META, &mut out)
                            .map(|()| out)
                            .map_err(|e| e.to_string())
                    };
                    let from_text = run(
                        &text,
                        FieldValue {
                            start: 0,
                            end: text.len(),
                            kind: text_kind,
                        },
                    );
                    let from_typed = run(
                        b"",
                        FieldValue {
                            start: 0,
                            end: 0,
                            kind,
                        },
                    );
                    assert_eq!(
                        from_typed,
                        from_text,
                        "{t} <- {kind:?} ({})",
                        String::from_utf8_lossy(&text)
                    );
                    let mut probe = Vec::new();
                    if write_typed(&ty(t), kind, &mut probe) {
                        direct += 1;
                    }
                }
            }
        }
        // Both ways were exercised: written directly, and read from the text.
        assert!(direct > 100, "{direct} written directly");
    }

    #[test]
    fn integers_edges() {
        assert_eq!(ok("UInt8", "0"), [0]);
        assert_eq!(ok("UInt8", "255"), [255]);
        assert_eq!(
            err("UInt8", "256"),
            "field \"c\" -> column c UInt8: 256 out of range 0..=255"
        );
        assert_eq!(
            err("UInt8", "-1"),
            "field \"c\" -> column c UInt8: -1 out of range 0..=255"
        );
        assert_eq!(ok("Int8", "-128"), [0x80]);
        assert_eq!(ok("Int8", "127"), [127]);
        assert_eq!(
            err("Int8", "300"),
            "field \"c\" -> column c Int8: 300 out of range -128..=127"
        );
        assert!(err("Int8", "-129").contains("out of range -128..=127"));
        assert_eq!(ok("UInt16", "65535"), le(65535u16.to_le_bytes()));
        assert!(err("UInt16", "65536").contains("out of range"));
        assert_eq!(ok("Int16", "-32768"), le((-32768i16).to_le_bytes()));
        assert!(err("Int16", "32768").contains("out of range"));
        assert_eq!(ok("UInt32", "4294967295"), le(u32::MAX.to_le_bytes()));
        assert!(err("UInt32", "4294967296").contains("out of range"));
        assert_eq!(ok("Int32", "-2147483648"), le(i32::MIN.to_le_bytes()));
        assert!(err("Int32", "2147483648").contains("out of range"));
        assert_eq!(
            ok("UInt64", "18446744073709551615"),
            le(u64::MAX.to_le_bytes())
        );
        assert!(
            err("UInt64", "18446744073709551616").contains("out of range 0..=18446744073709551615")
        );
        assert_eq!(
            ok("Int64", "-9223372036854775808"),
            le(i64::MIN.to_le_bytes())
        );
        assert_eq!(
            ok("Int64", "9223372036854775807"),
            le(i64::MAX.to_le_bytes())
        );
        assert!(err("Int64", "9223372036854775808").contains("out of range"));
        assert!(err("Int64", "-9223372036854775809").contains("out of range"));
        assert_eq!(
            ok("UInt128", "340282366920938463463374607431768211455"),
            le(u128::MAX.to_le_bytes())
        );
        assert!(err("UInt128", "340282366920938463463374607431768211456").contains("out of range"));
        assert_eq!(
            ok("Int128", "-170141183460469231731687303715884105728"),
            le(i128::MIN.to_le_bytes())
        );
        assert_eq!(
            ok("Int128", "170141183460469231731687303715884105727"),
            le(i128::MAX.to_le_bytes())
        );
        assert!(err("Int128", "170141183460469231731687303715884105728").contains("out of range"));
        assert!(err("Int128", "-170141183460469231731687303715884105729").contains("out of range"));
        let umax = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(ok("UInt256", umax), vec![0xff; 32]);
        assert!(err(
            "UInt256",
            "115792089237316195423570985008687907853269984665640564039457584007913129639936"
        )
        .contains("out of range"));
        assert!(err("UInt256", "-1").contains("out of range"));
        let imax = "57896044618658097711785492504343953926634992332820282019728792003956564819967";
        let imin = "-57896044618658097711785492504343953926634992332820282019728792003956564819968";
        let mut want = vec![0xff; 32];
        want[31] = 0x7f;
        assert_eq!(ok("Int256", imax), want);
        let mut want = vec![0; 32];
        want[31] = 0x80;
        assert_eq!(ok("Int256", imin), want);
        assert_eq!(ok("Int256", "-1"), vec![0xff; 32]);
        assert!(err(
            "Int256",
            "57896044618658097711785492504343953926634992332820282019728792003956564819968"
        )
        .contains("out of range"));
        assert!(err(
            "Int256",
            "-57896044618658097711785492504343953926634992332820282019728792003956564819969"
        )
        .contains("out of range"));
    }

    #[test]
    fn integers_exact_forms() {
        assert_eq!(ok("Int32", "\"123\""), le(123i32.to_le_bytes()));
        assert_eq!(ok("Int32", "\"-123\""), le((-123i32).to_le_bytes()));
        assert_eq!(ok("Int32", "1e3"), le(1000i32.to_le_bytes()));
        assert_eq!(ok("Int32", "5.0"), le(5i32.to_le_bytes()));
        assert_eq!(ok("Int32", "-0"), le(0i32.to_le_bytes()));
        assert_eq!(ok("UInt8", "-0.0"), [0]);
        assert_eq!(ok("Int32", "1.5e1"), le(15i32.to_le_bytes()));
        assert_eq!(ok("UInt64", "0e999999999999999"), le(0u64.to_le_bytes()));
        assert_eq!(
            err("Int32", "5.5"),
            "field \"c\" -> column c Int32: 5.5 is not an integer (it has a fractional part)"
        );
        assert!(err("Int32", "1e-400").contains("fractional part"));
        assert!(err("Int32", "1e400").contains("out of range"));
        assert!(err("Int32", "1e99999999999999999999").contains("out of range"));
        assert!(err("Int32", "\"abc\"").contains("\"abc\" is not an integer"));
        assert!(err("Int32", "\"\"").contains("is not an integer"));
        assert!(err("Int32", "\"1 \"").contains("is not an integer"));
        assert!(err("Int32", "true").contains("expected an integer, found a boolean true"));
        assert!(err("UInt16", "false").contains("expected an integer, found a boolean false"));
        assert_eq!(ok("UInt8", "true"), vec![1]);
        assert_eq!(ok("UInt8", "false"), vec![0]);
        assert_eq!(ok("Nullable(UInt8)", "true"), vec![0, 1]);
        assert!(err("Int32", "[1]").contains("expected an integer, found an array"));
        assert_eq!(
            err("Int32", "null"),
            "field \"c\" -> column c Int32: null for non-Nullable column"
        );
        // Beyond 64 bits through the slow path, still exact.
        assert_eq!(
            ok("UInt64", "18446744073709551615.000"),
            le(u64::MAX.to_le_bytes())
        );
        assert_eq!(ok("Int128", "1e38"), le(10i128.pow(38).to_le_bytes()));
    }

    #[test]
    fn booleans() {
        assert_eq!(ok("Bool", "true"), [1]);
        assert_eq!(ok("Bool", "false"), [0]);
        assert_eq!(ok("Bool", "1"), [1]);
        assert_eq!(ok("Bool", "0"), [0]);
        assert_eq!(ok("Bool", "\"true\""), [1]);
        assert!(err("Bool", "2").contains("only 0 and 1"));
        assert!(err("Bool", "\"yes\"").contains("not a boolean"));
    }

    #[test]
    fn floats() {
        assert_eq!(ok("Float64", "1.5"), le(1.5f64.to_le_bytes()));
        assert_eq!(ok("Float64", "-0.0"), le((-0.0f64).to_le_bytes()));
        assert_eq!(ok("Float64", "1e308"), le(1e308f64.to_le_bytes()));
        assert_eq!(ok("Float64", "0.1"), le(0.1f64.to_le_bytes()));
        assert_eq!(ok("Float64", "\"2.5\""), le(2.5f64.to_le_bytes()));
        assert_eq!(
            ok("Float64", "12345678901234567890"),
            le(12345678901234567890f64.to_le_bytes())
        );
        assert!(err("Float64", "1e309").contains("1e309 is out of Float64 range"));
        assert_eq!(ok("Float64", "\"inf\""), le(f64::INFINITY.to_le_bytes()));
        assert_eq!(
            ok("Float64", "\"-Infinity\""),
            le(f64::NEG_INFINITY.to_le_bytes())
        );
        assert!(f64::from_le_bytes(ok("Float64", "\"nan\"").try_into().unwrap()).is_nan());
        assert_eq!(ok("Float32", "0.1"), le(0.1f32.to_le_bytes()));
        assert_eq!(ok("Float32", "3.4e38"), le(3.4e38f32.to_le_bytes()));
        assert!(err("Float32", "1e39").contains("out of Float32 range"));
        assert!(err("Float32", "\"x1\"").contains("is not a number"));
        assert!(err("Float32", "{}").contains("expected a number"));
    }

    #[test]
    fn decimals() {
        let d = |t: &str, j: &str| ok(t, j);
        assert_eq!(d("Decimal(10, 2)", "12.34"), le(1234i64.to_le_bytes()));
        assert_eq!(d("Decimal(10, 2)", "\"12.34\""), le(1234i64.to_le_bytes()));
        assert_eq!(d("Decimal(10, 2)", "12.340"), le(1234i64.to_le_bytes()));
        assert_eq!(d("Decimal(10, 2)", "-0.01"), le((-1i64).to_le_bytes()));
        assert_eq!(d("Decimal(10, 2)", "1e2"), le(10000i64.to_le_bytes()));
        assert_eq!(d("Decimal(10, 2)", "1.5e-1"), le(15i64.to_le_bytes()));
        assert_eq!(
            d("Decimal(10, 2)", "99999999.99"),
            le(9999999999i64.to_le_bytes())
        );
        assert_eq!(d("Decimal(10, 2)", "12"), le(1200i64.to_le_bytes()));
        assert_eq!(
            err("Decimal(10, 2)", "12.345"),
            "field \"c\" -> column c Decimal(10, 2): 12.345 has more than 2 fractional digits (no rounding)"
        );
        assert_eq!(
            err("Decimal(10, 2)", "999999999.99"),
            "field \"c\" -> column c Decimal(10, 2): 999999999.99 out of range: more than 8 digits before the decimal point"
        );
        assert_eq!(d("Decimal(9, 0)", "-5"), le((-5i32).to_le_bytes()));
        assert_eq!(
            d("Decimal(9, 9)", "0.999999999"),
            le(999999999i32.to_le_bytes())
        );
        assert!(err("Decimal(9, 9)", "1").contains("out of range"));
        assert_eq!(
            d("Decimal(38, 10)", "1234567890123456789012345678.0123456789"),
            le(12345678901234567890123456780123456789i128.to_le_bytes())
        );
        let n76 = "9".repeat(76);
        let mut want = U256::ZERO;
        for _ in 0..76 {
            want = want.checked_mul10_add(9).unwrap();
        }
        assert_eq!(d("Decimal(76, 0)", &n76), want.to_le_bytes().to_vec());
        assert_eq!(
            d("Decimal(76, 0)", &format!("-{n76}")),
            want.wrapping_neg().to_le_bytes().to_vec()
        );
        assert!(err("Decimal(76, 0)", &format!("{n76}9")).contains("out of range"));
        // 0.1 at scale 76 is 10^75.
        let mut p75 = U256::from_u128(1);
        for _ in 0..75 {
            p75 = p75.checked_mul10_add(0).unwrap();
        }
        assert_eq!(d("Decimal(76, 76)", "0.1"), p75.to_le_bytes().to_vec());
        assert!(err("Decimal(10, 2)", "\"1,5\"").contains("is not a decimal number"));
        assert!(err("Decimal(10, 2)", "true").contains("expected a decimal"));
    }

    #[test]
    fn strings() {
        assert_eq!(ok("String", "\"abc\""), b"\x03abc");
        assert_eq!(ok("String", r#""a\u00e9\n""#), b"\x04a\xc3\xa9\n");
        assert_eq!(ok("String", r#""\ud83d\ude00""#), "\x04😀".as_bytes());
        assert_eq!(
            ok("String", r#""\"\\\/\b\f\r\t""#),
            b"\x07\"\\/\x08\x0c\r\t"
        );
        assert_eq!(ok("String", "\"é\""), "\x02é".as_bytes());
        assert!(err("String", r#""\ud83d""#).contains("unpaired surrogate"));
        assert!(err("String", r#""\udc00x""#).contains("unpaired surrogate"));
        // Non-strings keep their JSON text as written.
        assert_eq!(ok("String", "12.50"), b"\x0512.50");
        assert_eq!(ok("String", "true"), b"\x04true");
        assert_eq!(ok("String", r#"{"a": [1, 2]}"#), b"\x0d{\"a\": [1, 2]}");
        assert_eq!(ok("String", "[]"), b"\x02[]");
        let long = "x".repeat(300);
        let b = ok("String", &format!("\"{long}\""));
        assert_eq!(&b[..2], &[0xac, 0x02]);
        assert_eq!(b.len(), 302);
        assert_eq!(ok("FixedString(3)", "\"ab\""), b"ab\0");
        assert_eq!(ok("FixedString(3)", "\"abc\""), b"abc");
        assert_eq!(ok("FixedString(2)", "\"é\""), "é".as_bytes());
        assert_eq!(
            err("FixedString(3)", "\"abcd\""),
            "field \"c\" -> column c FixedString(3): \"abcd\": 4 bytes do not fit FixedString(3)"
        );
        assert_eq!(ok("FixedString(4)", "12"), b"12\0\0");
        assert_eq!(ok("LowCardinality(String)", "\"x\""), b"\x01x");
        // Long offending values are shortened.
        let e = err("Int8", &format!("\"{}\"", "9".repeat(200)));
        assert!(e.contains('…') && e.len() < 200, "{e}");
    }

    #[test]
    fn uuid_and_ips() {
        assert_eq!(
            ok("UUID", "\"61f0c404-5cb3-11e7-907b-a6006ad3dba0\""),
            [
                0xe7, 0x11, 0xb3, 0x5c, 0x04, 0xc4, 0xf0, 0x61, 0xa0, 0xdb, 0xd3, 0x6a, 0x00, 0xa6,
                0x7b, 0x90
            ]
        );
        assert!(err("UUID", "\"61f0c404-5cb3-11e7-907b\"").contains("is not a UUID"));
        assert!(err("UUID", "1").contains("expected a UUID string"));
        assert_eq!(ok("IPv4", "\"1.2.3.4\""), [4, 3, 2, 1]);
        assert_eq!(ok("IPv4", "16909060"), [4, 3, 2, 1]);
        assert!(err("IPv4", "\"1.2.3.256\"").contains("not an IPv4 address"));
        assert!(err("IPv4", "4294967296").contains("out of IPv4 range"));
        assert!(err("IPv4", "-1").contains("out of IPv4 range"));
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(ok("IPv6", "\"::1\""), v6);
        assert_eq!(
            ok("IPv6", "\"1.2.3.4\""),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]
        );
        assert!(err("IPv6", "\"::g\"").contains("not an IP address"));
    }

    #[test]
    fn dates() {
        assert_eq!(ok("Date", "\"1970-01-01\""), [0, 0]);
        assert_eq!(ok("Date", "\"2024-02-29\""), le(19782u16.to_le_bytes()));
        assert_eq!(ok("Date", "\"2149-06-06\""), le(65535u16.to_le_bytes()));
        assert_eq!(ok("Date", "65535"), le(65535u16.to_le_bytes()));
        assert!(err("Date", "65536").contains("out of Date range"));
        assert!(err("Date", "\"2149-06-07\"").contains("out of Date range"));
        assert!(err("Date", "\"1969-12-31\"").contains("out of Date range"));
        assert!(err("Date", "\"2023-02-29\"").contains("is not a date"));
        assert!(err("Date", "\"2023-13-01\"").contains("is not a date"));
        assert!(err("Date", "\"2023-01-01 00:00:00\"").contains("is not a date"));
        assert_eq!(ok("Date32", "\"1969-12-31\""), le((-1i32).to_le_bytes()));
        assert_eq!(
            ok("Date32", "\"1900-01-01\""),
            le((-25567i32).to_le_bytes())
        );
        assert_eq!(ok("Date32", "\"2299-12-31\""), le(120529i32.to_le_bytes()));
        assert!(err("Date32", "\"2300-01-01\"").contains("out of Date32 range"));
        assert!(err("Date32", "\"1899-12-31\"").contains("out of Date32 range"));
        assert_eq!(ok("Date32", "-25567"), le((-25567i32).to_le_bytes()));
    }

    #[test]
    fn datetimes() {
        let secs = |v: Vec<u8>| u32::from_le_bytes(v.try_into().unwrap());
        assert_eq!(
            secs(ok("DateTime", "\"2023-11-14 22:13:20\"")),
            1_700_000_000
        );
        assert_eq!(
            secs(ok("DateTime", "\"2023-11-14T22:13:20Z\"")),
            1_700_000_000
        );
        assert_eq!(
            secs(ok("DateTime", "\"2023-11-14T23:13:20+01:00\"")),
            1_700_000_000
        );
        assert_eq!(
            secs(ok("DateTime", "\"2023-11-14T23:13:20+0100\"")),
            1_700_000_000
        );
        assert_eq!(
            secs(ok("DateTime", "\"2023-11-14T17:13:20-05\"")),
            1_700_000_000
        );
        assert_eq!(
            secs(ok("DateTime", "\"2023-11-14 22:13:20.000\"")),
            1_700_000_000
        );
        assert_eq!(secs(ok("DateTime", "\"2023-11-14 22:13\"")), 1_699_999_980);
        assert_eq!(secs(ok("DateTime", "\"2023-11-14\"")), 1_699_920_000);
        assert_eq!(secs(ok("DateTime", "1700000000")), 1_700_000_000);
        assert_eq!(secs(ok("DateTime", "\"1700000000\"")), 1_700_000_000);
        assert_eq!(secs(ok("DateTime", "4294967295")), u32::MAX);
        assert_eq!(secs(ok("DateTime", "\"2106-02-07 06:28:15\"")), u32::MAX);
        assert!(err("DateTime", "4294967296").contains("out of DateTime range"));
        assert!(err("DateTime", "-1").contains("out of DateTime range"));
        assert!(err("DateTime", "\"1969-12-31 23:59:59\"").contains("out of DateTime range"));
        assert!(err("DateTime", "\"2023-11-14 22:13:20.5\"").contains("more fractional digits"));
        assert!(err("DateTime", "1700000000.5").contains("more fractional digits"));
        assert!(err("DateTime", "\"2023-11-14 24:00:00\"").contains("invalid time of day"));
        assert!(err("DateTime", "\"2023-11-14 22:13:20 UTC\"").contains("is not a date-time"));
        assert!(err("DateTime", "\"2023-11-14X22:13:20\"").contains("is not a date-time"));
        assert!(err("DateTime", "\"yesterday\"").contains("is not a date-time or epoch seconds"));
        // Zone-less strings are local time in the column's zone.
        assert_eq!(
            secs(ok("DateTime('Europe/Berlin')", "\"2023-11-14 23:13:20\"")),
            1_700_000_000
        );
        assert_eq!(
            secs(ok("DateTime('Asia/Kolkata')", "\"2023-11-15 03:43:20\"")),
            1_700_000_000
        );
        // ...but an explicit offset wins.
        assert_eq!(
            secs(ok("DateTime('Europe/Berlin')", "\"2023-11-14 22:13:20Z\"")),
            1_700_000_000
        );
        assert_eq!(
            secs(ok("DateTime('UTC')", "\"2023-11-14 22:13:20\"")),
            1_700_000_000
        );
        assert!(err("DateTime('Europe/Berlin')", "\"2024-03-31 02:30:00\"").contains("DST gap"));
        assert!(err("DateTime('Europe/Berlin')", "\"2024-10-27 02:30:00\"").contains("ambiguous"));
        assert_eq!(
            secs(ok(
                "DateTime('Europe/Berlin')",
                "\"2024-10-27 02:30:00+01:00\""
            )),
            1_729_992_600
        );

        let ticks = |v: Vec<u8>| i64::from_le_bytes(v.try_into().unwrap());
        assert_eq!(
            ticks(ok("DateTime64(3)", "\"2023-11-14 22:13:20.123\"")),
            1_700_000_000_123
        );
        assert_eq!(
            ticks(ok("DateTime64(3)", "\"2023-11-14T22:13:20.1Z\"")),
            1_700_000_000_100
        );
        assert_eq!(
            ticks(ok("DateTime64(3)", "\"2023-11-14 22:13:20.1230\"")),
            1_700_000_000_123
        );
        assert_eq!(
            ticks(ok("DateTime64(3)", "1700000000.123")),
            1_700_000_000_123
        );
        assert_eq!(
            ticks(ok("DateTime64(3)", "\"1700000000.5\"")),
            1_700_000_000_500
        );
        assert_eq!(ticks(ok("DateTime64(3)", "1700000000")), 1_700_000_000_000);
        assert_eq!(
            ticks(ok(
                "DateTime64(6, 'Europe/Berlin')",
                "\"2023-11-14 23:13:20.000001\""
            )),
            1_700_000_000_000_001
        );
        assert_eq!(
            ticks(ok("DateTime64(9)", "\"2023-11-14 22:13:20.123456789\"")),
            1_700_000_000_123_456_789
        );
        assert_eq!(
            ticks(ok("DateTime64(0)", "\"2023-11-14 22:13:20\"")),
            1_700_000_000
        );
        assert!(
            err("DateTime64(3)", "\"2023-11-14 22:13:20.1234\"").contains("more fractional digits")
        );
        assert!(err("DateTime64(3)", "1700000000.1234").contains("more fractional digits"));
        assert!(
            err("DateTime64(0)", "\"2023-11-14 22:13:20.5\"").contains("more fractional digits")
        );
        assert_eq!(
            ticks(ok("DateTime64(3)", "\"1900-01-01 00:00:00\"")),
            -2_208_988_800_000
        );
        assert_eq!(
            ticks(ok("DateTime64(3)", "-2208988800")),
            -2_208_988_800_000
        );
        assert_eq!(
            ticks(ok("DateTime64(3)", "\"2299-12-31 23:59:59.999\"")),
            10_413_791_999_999
        );
        assert!(
            err("DateTime64(3)", "\"1899-12-31 23:59:59\"").contains("out of DateTime64(3) range")
        );
        assert!(err("DateTime64(3)", "\"2300-01-01 00:00:00\"")
            .contains("out of DateTime64(3) range 1900-01-01..2300-01-01 UTC"));
        assert!(err("DateTime64(9)", "\"2262-04-12 00:00:00\"")
            .contains("out of DateTime64(9) range 1900-01-01..=2262-04-11 23:47:16.854775807 UTC"));
        // Precision 9 is limited by i64 ticks (2262-04-11).
        assert!(
            err("DateTime64(9)", "\"2262-04-12 00:00:00\"").contains("out of DateTime64(9) range")
        );
        assert_eq!(
            ticks(ok("DateTime64(9)", "\"2262-04-11 00:00:00\"")),
            9_223_286_400_000_000_000
        );
        // A millisecond epoch number is not silently read as seconds in the year 55000.
        assert!(err("DateTime64(3)", "1700000000123").contains("out of DateTime64(3) range"));
    }

    #[test]
    fn enums() {
        let e8 = "Enum8('a' = 1, 'b' = -2)";
        assert_eq!(ok(e8, "\"a\""), [1]);
        assert_eq!(ok(e8, "\"b\""), [0xfe]);
        assert_eq!(ok(e8, "-2"), [0xfe]);
        assert_eq!(ok(e8, "\"1\""), [1]);
        assert_eq!(err(e8, "\"c\""), "field \"c\" -> column c Enum8('a' = 1, 'b' = -2): \"c\" is not a value of Enum8('a' = 1, 'b' = -2)");
        assert!(err(e8, "3").contains("is not a value of"));
        assert!(err(e8, "true").contains("expected an enum name or value"));
        let e16 = "Enum16('x' = -32768, 'y\\'z' = 32767)";
        assert_eq!(ok(e16, "\"y'z\""), le(32767i16.to_le_bytes()));
        assert_eq!(ok(e16, "-32768"), le((-32768i16).to_le_bytes()));
    }

    #[test]
    fn nullable_and_low_cardinality() {
        assert_eq!(ok("Nullable(Int8)", "null"), [1]);
        assert_eq!(ok("Nullable(Int8)", "5"), [0, 5]);
        assert_eq!(ok("LowCardinality(Nullable(String))", "null"), [1]);
        assert_eq!(
            ok("LowCardinality(Nullable(String))", "\"a\""),
            [0, 1, b'a']
        );
        assert_eq!(
            err("String", "null"),
            "field \"c\" -> column c String: null for non-Nullable column"
        );
        assert!(err("Nullable(Int8)", "300").contains("out of range"));
    }

    #[test]
    fn arrays_maps_tuples() {
        assert_eq!(ok("Array(Int8)", "[1, 2, -1]"), [3, 1, 2, 0xff]);
        assert_eq!(ok("Array(Int8)", "[]"), [0]);
        assert_eq!(
            ok("Array(Array(String))", r#"[["a"], [], ["b", "c"]]"#),
            b"\x03\x01\x01a\x00\x02\x01b\x01c"
        );
        let big: Vec<String> = (0..200).map(|i| (i % 100).to_string()).collect();
        let b = ok("Array(UInt8)", &format!("[{}]", big.join(",")));
        assert_eq!(&b[..2], &[0xc8, 0x01]);
        assert_eq!(b.len(), 202);
        assert_eq!(b[2 + 150], 50);
        assert_eq!(
            err("Array(Int8)", "[1, 300]"),
            "field \"c\" -> column c Array(Int8): [1]: 300 out of range -128..=127"
        );
        assert!(err("Array(Int8)", "{}").contains("expected an array, found an object"));

        let t = "Array(Nullable(Map(String, Array(Int8))))";
        let b = ok(t, r#"[null, {"a": [1, -1], "b\u00e9": []}, {}]"#);
        assert_eq!(
            b,
            b"\x03\x01\x00\x02\x01a\x02\x01\xff\x03b\xc3\xa9\x00\x00\x00"
        );
        assert_eq!(
            err(t, r#"[null, {"k": [1, 2, 128]}]"#),
            format!("field \"c\" -> column c {t}: [1][\"k\"][2]: 128 out of range -128..=127")
        );

        assert_eq!(
            ok("Map(String, UInt64)", r#"{"a": 1, "b": 2}"#),
            b"\x02\x01a\x01\0\0\0\0\0\0\0\x01b\x02\0\0\0\0\0\0\0"
        );
        assert_eq!(
            ok("Map(UInt16, String)", r#"{"12": "x"}"#),
            b"\x01\x0c\x00\x01x"
        );
        assert_eq!(
            ok("Map(String, String)", r#"{"a": "1", "a": "2"}"#),
            b"\x02\x01a\x011\x01a\x012"
        );
        assert!(err("Map(UInt16, String)", r#"{"x": "y"}"#)
            .contains("[\"x\"]: key: \"x\" is not an integer"));
        assert!(err("Map(String, String)", "[]").contains("expected an object"));

        let tup = "Tuple(a UInt8, b String)";
        assert_eq!(ok(tup, r#"[1, "x"]"#), b"\x01\x01x");
        assert_eq!(ok(tup, r#"{"b": "x", "a": 1}"#), b"\x01\x01x");
        assert!(err(tup, "[1]").contains("expected 2 tuple elements, found 1"));
        assert!(err(tup, r#"[1, "x", 3]"#).contains("found more"));
        assert!(err(tup, r#"{"a": 1}"#).contains("missing tuple element \"b\""));
        assert!(err(tup, r#"{"a": 1, "b": "x", "z": 0}"#).contains("unknown tuple element \"z\""));
        assert!(err(tup, r#"{"a": 1, "a": 2, "b": "x"}"#).contains("duplicate tuple element"));
        assert_eq!(ok(tup, r#"{"a": 1, "b": 2}"#), b"\x01\x012");
        assert!(err("Tuple(UInt8, String)", r#"{"a": 1}"#).contains("expected a tuple as an array"));
        assert!(err(tup, r#"[300, "x"]"#).contains("[0]: 300 out of range"));
    }

    fn plan(cols: Vec<ColumnPlan>, unknown: UnknownFields, with_defaults: bool) -> RowPlan {
        RowPlan::new(cols, unknown, with_defaults).unwrap()
    }

    #[test]
    fn rows_in_plan_order_with_any_field_order() {
        let p = plan(
            vec![
                ColumnPlan::field("id", ty("UInt64")),
                ColumnPlan::field("name", ty("String")),
                ColumnPlan::meta("off", ty("Int64"), MetaField::Offset),
                ColumnPlan::field("age", ty("Int8")),
            ],
            UnknownFields::Ignore,
            false,
        );
        let mut want = Vec::new();
        rb::put_u64(&mut want, 7);
        rb::put_str(&mut want, b"bo");
        rb::put_i64(&mut want, 42);
        rb::put_i8(&mut want, 30);
        for payload in [
            r#"{"id": 7, "name": "bo", "age": 30}"#,
            r#"{"age":30,"name":"bo","id":7}"#,
            r#" { "x": {"deep": [1, {"y": null}]}, "name" : "bo" , "id":7,"age":30, "z": "\u1234" } "#,
            "{\"\\u0069d\": 7, \"name\": \"bo\", \"age\": 30}",
        ] {
            let mut out = Vec::new();
            encode_json_row(&p, payload.as_bytes(), &META, &mut out)
                .unwrap_or_else(|e| panic!("{payload}: {e}"));
            assert_eq!(out, want, "{payload}");
        }
    }

    #[test]
    fn expected_field_names_are_taken_by_their_bytes_only_when_that_is_exact() {
        let p = plan(
            vec![
                ColumnPlan::field("id", ty("UInt8")),
                ColumnPlan::field("idx", ty("UInt8")),
                ColumnPlan::field("a\"b", ty("UInt8")),
                ColumnPlan::field("c\\d", ty("UInt8")),
            ],
            UnknownFields::Error,
            false,
        );
        let row = |payload: &str| {
            let mut out = Vec::new();
            encode_json_row(&p, payload.as_bytes(), &META, &mut out).map(|_| out)
        };
        // In order, out of order, a name that extends the expected one, escaped names.
        for payload in [
            r#"{"id":1,"idx":2,"a\"b":3,"c\\d":4}"#,
            r#"{"idx":2,"id":1,"c\\d":4,"a\"b":3}"#,
            r#"{"\u0069d":1,"id\u0078":2,"a\u0022b":3,"c\u005cd":4}"#,
        ] {
            assert_eq!(row(payload).ok(), Some(vec![1, 2, 3, 4]), "{payload}");
        }
        // The expected name's bytes followed by more of a string are another name.
        let e = row(r#"{"idy":1}"#).unwrap_err().to_string();
        assert!(e.contains("idy"), "{e}");
        // A name given twice is caught whichever way each was matched.
        for payload in [
            r#"{"id":1,"id":1,"idx":2,"a\"b":3,"c\\d":4}"#,
            r#"{"id":1,"\u0069d":1,"idx":2,"a\"b":3,"c\\d":4}"#,
            r#"{"idx":2,"id":1,"idx":2,"a\"b":3,"c\\d":4}"#,
        ] {
            let e = row(payload).unwrap_err();
            assert!(
                matches!(e, RowError::DuplicateField { .. }),
                "{payload}: {e}"
            );
        }

        // A name ending in a backslash: its bytes and a quote are an escaped quote in JSON.
        let p = plan(
            vec![ColumnPlan::field("x\\", ty("UInt8"))],
            UnknownFields::Error,
            false,
        );
        let mut out = Vec::new();
        encode_json_row(&p, br#"{"x\\":1}"#, &META, &mut out).unwrap();
        assert_eq!(out, [1]);
        let e = encode_json_row(&p, br#"{"x\"":1}"#, &META, &mut out).unwrap_err();
        assert!(matches!(e, RowError::UnknownField { .. }), "{e}");
    }

    fn row_err(p: &RowPlan, payload: &str) -> String {
        let mut out = vec![9, 9];
        let e = encode_json_row(p, payload.as_bytes(), &META, &mut out).unwrap_err();
        assert_eq!(out, [9, 9], "output not rolled back for {payload}");
        e.to_string()
    }

    #[test]
    fn dynamic_values_carry_the_type_clickhouse_infers() {
        let p = named_plan(&[("d", "Dynamic")], UnknownFields::Error);
        let row = |v: &str| {
            let mut out = Vec::new();
            encode_json_row(&p, format!(r#"{{"d":{v}}}"#).as_bytes(), &META, &mut out)
                .map(|()| out.iter().map(|b| format!("{b:02x}")).collect::<String>())
                .map_err(|e| e.to_string())
        };
        // ClickHouse 26.9's own RowBinary output for the same values (dynamicType in the note).
        for (v, hex) in [
            ("42", "0a2a00000000000000"),                                   // Int64
            ("18446744073709551615", "04ffffffffffffffff"),                 // UInt64
            ("1.5", "0e000000000000f83f"),                                  // Float64
            (r#""hello""#, "150568656c6c6f"),                               // String
            ("true", "2d01"),                                               // Bool
            ("null", "00"),                                                 // Nothing: NULL
            (r#""2024-01-01""#, "0f0b4d"),                                  // Date
            (r#""2024-05-17 12:34:56""#, "11f04e4766"),                     // DateTime (UTC server)
            (r#""2024-05-17 12:34:56.789""#, "1309408fb03fcb46d017"),       // DateTime64(9)
            ("[1,2]", "1e0a0201000000000000000200000000000000"),            // Array(Int64)
            (r#"[1,"a"]"#, "1e2b20020a0100000000000000150161"),             // Array(Dynamic)
            ("[]", "1e1500"),                                               // Array(String)
            ("[null,1]", "1e230a0201000100000000000000"), // Array(Nullable(Int64))
            (r#"{"a":1,"b":"x"}"#, "200201610a01621501000000000000000178"), // Tuple(a Int64, b String)
        ] {
            assert_eq!(row(v).unwrap(), hex, "{v}");
        }
        // Date-times without a zone are read in the server's time zone, as ClickHouse does.
        let berlin = RowPlan::new(
            vec![ColumnPlan::field(
                "d",
                ty("Dynamic(max_types=8)").with_server_time_zone(Some(chrono_tz::Europe::Berlin)),
            )],
            UnknownFields::Error,
            false,
        )
        .unwrap();
        let mut out = Vec::new();
        encode_json_row(&berlin, br#"{"d":"2024-05-17 12:34:56"}"#, &META, &mut out).unwrap();
        let mut want = vec![0x11];
        want.extend_from_slice(&(1_715_949_296u32 - 2 * 3600).to_le_bytes());
        assert_eq!(out, want);
        for (v, why) in [
            ("{}", "an empty object"),
            (r#""2024-02-30""#, "not certain"),
            (r#"" 2024-01-01""#, "not certain"),
            ("[null,[1]]", "not certain"),
            (r#"[{"a":1},{"b":2}]"#, ""),
            (r#"{"a":1,"a":2}"#, "key \"a\" twice"),
        ] {
            match row(v) {
                Err(e) => assert!(e.contains(why), "{v}: {e}"),
                // Arrays of differing objects are Dynamic elements: each its own tuple.
                Ok(hex) => assert!(hex.starts_with("1e2b20"), "{v}: {hex}"),
            }
        }
    }

    #[test]
    fn times_and_bfloat16_read_exactly_or_fail() {
        let p = named_plan(
            &[("t", "Time"), ("t3", "Time64(3)"), ("b", "BFloat16")],
            UnknownFields::Error,
        );
        let row = |t: &str, t3: &str, b: &str| {
            let mut out = Vec::new();
            encode_json_row(
                &p,
                format!(r#"{{"t":{t},"t3":{t3},"b":{b}}}"#).as_bytes(),
                &META,
                &mut out,
            )
            .map(|()| out)
            .map_err(|e| e.to_string())
        };
        let mut want = (-(3600 + 2 * 60 + 3i32)).to_le_bytes().to_vec();
        want.extend_from_slice(&(45_296_100i64).to_le_bytes());
        want.extend_from_slice(&0xBF80u16.to_le_bytes()); // -1.0
        assert_eq!(row(r#""-1:02:03""#, r#""12:34:56.1""#, "-1").unwrap(), want);
        let mut want = 3_599_999i32.to_le_bytes().to_vec();
        want.extend_from_slice(&(-1500i64).to_le_bytes());
        want.extend_from_slice(&0x3F8Cu16.to_le_bytes()); // 1.1, cut to 1.09375
        assert_eq!(row(r#""999:59:59""#, "-1.5", r#""1.1""#).unwrap(), want);
        for (t, t3, why) in [
            (r#""1000:00:00""#, "0", "hours are 1 to 3 digits"),
            ("3600000", "0", "out of range -999:59:59..=999:59:59"),
            (
                "-170141183460469231731687303715884105728",
                "0",
                "out of range",
            ),
            (r#""12:60:00""#, "0", "minutes and seconds are 00 to 59"),
            (r#""1:2:3""#, "0", "expected hh:mm:ss"),
            (
                r#""12:00:00.5""#,
                "0",
                "more fractional digits than the column's precision",
            ),
            (
                "0",
                r#""00:00:00.0001""#,
                "more fractional digits than the column's precision",
            ),
            (
                "0",
                "0.0001",
                "more fractional digits than the column's precision",
            ),
            ("true", "0", "expected a time, found a boolean"),
            (r#""noon""#, "0", "is not a time (hh:mm:ss) or seconds"),
        ] {
            let e = row(t, t3, "0").unwrap_err();
            assert!(e.contains(why), "{t} {t3}: {e}");
        }
        assert!(row("0", "0", r#""x""#)
            .unwrap_err()
            .contains("column b BFloat16"));
        // A QBit is a vector of exactly its dimension.
        let p = named_plan(&[("q", "QBit(Float32, 3)")], UnknownFields::Error);
        let mut out = Vec::new();
        encode_json_row(&p, br#"{"q":[1,2,3]}"#, &META, &mut out).unwrap();
        let mut want = vec![3];
        for f in [1f32, 2.0, 3.0] {
            want.extend_from_slice(&f.to_le_bytes());
        }
        assert_eq!(out, want);
        let e = encode_json_row(&p, br#"{"q":[1,2]}"#, &META, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("column q QBit(Float32, 3): expected a vector of 3 values, found 2"),
            "{e}"
        );
    }

    #[test]
    fn json_columns_take_objects_as_their_text() {
        let p = named_plan(
            &[
                ("j", "JSON"),
                ("s", "JSON(a UInt32, SKIP b)"),
                ("arr", "Array(JSON)"),
                ("m", "Map(String, JSON)"),
            ],
            UnknownFields::Error,
        );
        let mut out = Vec::new();
        encode_json_row(
            &p,
            br#"{"j":{ "a": 1, "b": [1, {"c": "\u00e9"}] },"s":"{\"a\": 5}","arr":[{"x":1},{}],"m":{"k":{"z":null}}}"#,
            &META,
            &mut out,
        )
        .unwrap();
        let mut want = Vec::new();
        // Objects as written, whitespace and escapes kept; a string's object unescaped.
        rb::put_str(&mut want, br#"{ "a": 1, "b": [1, {"c": "\u00e9"}] }"#);
        rb::put_str(&mut want, br#"{"a": 5}"#);
        want.push(2);
        rb::put_str(&mut want, br#"{"x":1}"#);
        rb::put_str(&mut want, b"{}");
        want.push(1);
        rb::put_str(&mut want, b"k");
        rb::put_str(&mut want, br#"{"z":null}"#);
        assert_eq!(out, want);

        let p = named_plan(&[("j", "JSON")], UnknownFields::Error);
        for (doc, why) in [
            (r#"{"j":5}"#, "expected a JSON object, found a number 5"),
            (
                r#"{"j":[{"a":1}]}"#,
                "expected a JSON object, found an array",
            ),
            (r#"{"j":null}"#, "null for non-Nullable column"),
            (
                r#"{"j":"[1]"}"#,
                "is not a JSON object: it does not start with {",
            ),
            (r#"{"j":"{\"a\":"}"#, "is not a JSON object: "),
            (
                r#"{"j":"{} {}"}"#,
                "is not a JSON object: text after the object at byte 3",
            ),
        ] {
            let e = row_err(&p, doc);
            assert!(e.contains("column j JSON") && e.contains(why), "{doc}: {e}");
        }

        // The message itself into a JSON column: only when it is one object.
        let p = RowPlan::new(
            vec![ColumnPlan::meta("v", ty("JSON"), MetaField::Value)],
            UnknownFields::Ignore,
            false,
        )
        .unwrap();
        let mut out = Vec::new();
        let meta = MessageMeta {
            value: Some(br#" {"a":1} "#),
            ..META
        };
        encode_meta_row(&p, &meta, &mut out).unwrap();
        let mut want = Vec::new();
        rb::put_str(&mut want, br#" {"a":1} "#);
        assert_eq!(out, want);
        let meta = MessageMeta {
            value: Some(b"{\"a\":1"),
            ..META
        };
        let e = encode_meta_row(&p, &meta, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a JSON object"), "{e}");
        assert!(matches!(
            RowPlan::new(
                vec![ColumnPlan::meta("t", ty("JSON"), MetaField::Topic)],
                UnknownFields::Ignore,
                false,
            ),
            Err(PlanError::MetaType { .. })
        ));
    }

    #[test]
    fn row_errors_and_rollback() {
        let p = plan(
            vec![
                ColumnPlan::field("id", ty("UInt64")),
                ColumnPlan::field("age", ty("Int8")),
            ],
            UnknownFields::Error,
            false,
        );
        assert_eq!(
            row_err(&p, r#"{"id": 1, "age": 300}"#),
            "field \"age\" -> column age Int8: 300 out of range -128..=127"
        );
        assert_eq!(
            row_err(&p, r#"{"age": 3}"#),
            "missing field \"id\" for column id UInt64 (no default sluice can apply here)"
        );
        assert_eq!(
            row_err(&p, r#"{"id": 1, "age": 3, "foo": 1}"#),
            "unknown field \"foo\""
        );
        assert_eq!(
            row_err(&p, r#"{"id": 1, "id": 2, "age": 3}"#),
            "duplicate field \"id\""
        );
        assert_eq!(
            row_err(&p, r#"[1, 2]"#),
            "payload is not a JSON object: [1, 2]"
        );
        assert_eq!(
            row_err(&p, "  "),
            "payload is not a JSON object: empty payload"
        );
        assert_eq!(row_err(&p, "42"), "payload is not a JSON object: 42");
        assert_eq!(
            row_err(&p, r#"{"id": 1, "age": 3,}"#),
            "invalid JSON at byte 19: expected a field name"
        );
        assert_eq!(
            row_err(&p, r#"{"id": 1, "age": 3} x"#),
            "invalid JSON at byte 20: trailing characters after the JSON object"
        );
        assert_eq!(
            row_err(&p, r#"{"id": 01}"#),
            "invalid JSON at byte 8: expected ',' or '}'"
        );
        assert_eq!(
            row_err(&p, r#"{"id": 1"#),
            "invalid JSON at byte 8: unexpected end of input"
        );
        assert_eq!(
            row_err(&p, r#"{"id": tru}"#),
            "invalid JSON at byte 7: invalid literal"
        );
        assert_eq!(
            row_err(&p, r#"{"id" 1}"#),
            "invalid JSON at byte 6: expected ':'"
        );
        assert_eq!(
            row_err(&p, "{\"id\": \"a\tb\"}"),
            "invalid JSON at byte 9: control character in string"
        );
        assert_eq!(
            row_err(&p, r#"{"id": "\x"}"#),
            "invalid JSON at byte 8: invalid escape in string"
        );
        assert_eq!(
            row_err(&p, r#"{"id": "\u12"}"#),
            "invalid JSON at byte 8: invalid \\u escape"
        );
        assert_eq!(
            row_err(&p, r#"{"id": "abc"#),
            "invalid JSON at byte 7: unterminated string"
        );
        assert_eq!(
            row_err(&p, r#"{"id": 1.}"#),
            "invalid JSON at byte 9: expected digits after the decimal point"
        );
        assert_eq!(
            row_err(&p, r#"{"id": -}"#),
            "invalid JSON at byte 7: invalid number"
        );
        assert_eq!(
            row_err(&p, r#"{"id": [1,]}"#),
            "invalid JSON at byte 10: expected a JSON value"
        );
        assert_eq!(
            row_err(&p, r#"{"id": {"a" 1}}"#),
            "invalid JSON at byte 12: expected ':'"
        );
        assert_eq!(
            row_err(&p, r#"{"id": [1}"#),
            "invalid JSON at byte 9: expected ',' or ']'"
        );
        // Invalid UTF-8 inside a string value and as a bare byte.
        let mut out = Vec::new();
        let e = encode_json_row(&p, b"{\"id\": \"\xff\xfe\"}", &META, &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid JSON at byte 7: string is not valid UTF-8"
        );
        let e = encode_json_row(&p, b"{\"id\": 1, \"age\": \xff}", &META, &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid JSON at byte 17: expected a JSON value"
        );
        // Invalid JSON is reported even inside ignored fields, and a late error rolls back.
        let p2 = plan(
            vec![ColumnPlan::field("id", ty("UInt64"))],
            UnknownFields::Ignore,
            false,
        );
        assert_eq!(
            row_err(&p2, r#"{"id": 1, "x": [1 2]}"#),
            "invalid JSON at byte 18: expected ',' or ']'"
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_crashing() {
        let p = plan(
            vec![ColumnPlan::field("id", ty("UInt64"))],
            UnknownFields::Ignore,
            false,
        );
        for n in [MAX_JSON_DEPTH + 1, 1_000_000] {
            let payload = format!("{{\"x\": {}{}, \"id\": 1}}", "[".repeat(n), "]".repeat(n));
            let e = row_err(&p, &payload);
            assert!(e.contains("nested too deeply"), "{e}");
        }
        let ok_depth = MAX_JSON_DEPTH - 1;
        let payload = format!(
            "{{\"x\": {}1{}, \"id\": 1}}",
            "[{\"a\":".repeat(ok_depth / 2),
            "}]".repeat(ok_depth / 2)
        );
        let mut out = Vec::new();
        encode_json_row(&p, payload.as_bytes(), &META, &mut out).unwrap();
        assert_eq!(out, 1u64.to_le_bytes());
    }

    #[test]
    fn missing_values_and_defaults() {
        let mut default_bytes = Vec::new();
        encode_json_value(&ty("Int32"), b"-7", &mut default_bytes).unwrap();
        assert_eq!(default_bytes, (-7i32).to_le_bytes());
        let cols = vec![
            ColumnPlan::field("a", ty("UInt8")),
            ColumnPlan::field("b", ty("Int32")).on_missing(OnMissing::Bytes(default_bytes.clone())),
            ColumnPlan::field("c", ty("Nullable(String)")).on_missing(OnMissing::Null),
            ColumnPlan::field("d", ty("String")).on_missing(OnMissing::ServerDefault),
        ];
        let p = plan(cols.clone(), UnknownFields::Ignore, true);
        let mut out = Vec::new();
        encode_json_row(&p, br#"{"a": 1}"#, &META, &mut out).unwrap();
        assert_eq!(out, [0, 1, 0, 0xf9, 0xff, 0xff, 0xff, 0, 1, 1]);
        out.clear();
        encode_json_row(
            &p,
            br#"{"a": 1, "b": 2, "c": null, "d": "x"}"#,
            &META,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 1, b'x']);

        // Without RowBinaryWithDefaults a server default is not possible.
        assert_eq!(
            RowPlan::new(cols.clone(), UnknownFields::Ignore, false).unwrap_err(),
            PlanError::ServerDefaultNeedsWithDefaults { column: "d".into() }
        );
        let p = plan(cols[..3].to_vec(), UnknownFields::Ignore, false);
        out.clear();
        encode_json_row(&p, br#"{"a": 1}"#, &META, &mut out).unwrap();
        assert_eq!(out, [1, 0xf9, 0xff, 0xff, 0xff, 1]);
        assert_eq!(
            RowPlan::new(
                vec![ColumnPlan::field("a", ty("UInt8")).on_missing(OnMissing::Null)],
                UnknownFields::Ignore,
                false
            )
            .unwrap_err()
            .to_string(),
            "column a UInt8: NULL as the missing value needs a Nullable column"
        );
        assert_eq!(
            RowPlan::new(
                vec![
                    ColumnPlan::field("a", ty("UInt8")),
                    ColumnPlan::field("a", ty("UInt8"))
                ],
                UnknownFields::Ignore,
                false
            )
            .unwrap_err(),
            PlanError::DuplicateColumn { column: "a".into() }
        );
        assert!(encode_json_value(&ty("Int8"), b"1000", &mut out)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(encode_json_value(&ty("Int8"), b"1 2", &mut out).is_err());
    }

    #[test]
    fn two_columns_from_one_field() {
        let p = plan(
            vec![
                ColumnPlan {
                    name: "raw".into(),
                    ty: ty("String"),
                    source: ColumnSource::Field("n".into()),
                    on_missing: OnMissing::Error,
                },
                ColumnPlan::field("n", ty("UInt16")),
            ],
            UnknownFields::Error,
            false,
        );
        let mut out = Vec::new();
        encode_json_row(&p, br#"{"n": 513}"#, &META, &mut out).unwrap();
        assert_eq!(out, b"\x03513\x01\x02");
    }

    #[test]
    fn meta_columns() {
        let headers: &[(&str, Option<&[u8]>)] =
            &[("h1", Some(b"v1")), ("h2", None), ("q\"", Some(b"\xff"))];
        let meta = MessageMeta { headers, ..META };
        let cols = vec![
            ColumnPlan::meta("topic", ty("LowCardinality(String)"), MetaField::Topic),
            ColumnPlan::meta("topic_fs", ty("FixedString(8)"), MetaField::Topic),
            ColumnPlan::meta("part", ty("UInt8"), MetaField::Partition),
            ColumnPlan::meta("off", ty("UInt64"), MetaField::Offset),
            ColumnPlan::meta("ts", ty("DateTime"), MetaField::Timestamp),
            ColumnPlan::meta("ts3", ty("DateTime64(3)"), MetaField::Timestamp),
            ColumnPlan::meta("ts6", ty("DateTime64(6, 'UTC')"), MetaField::Timestamp),
            ColumnPlan::meta("ts1", ty("DateTime64(1)"), MetaField::Timestamp),
            ColumnPlan::meta("tsms", ty("Int64"), MetaField::Timestamp),
            ColumnPlan::meta("key", ty("Nullable(String)"), MetaField::Key),
            ColumnPlan::meta("hm", ty("Map(String, String)"), MetaField::Headers),
            ColumnPlan::meta(
                "ha",
                ty("Array(Tuple(String, Nullable(String)))"),
                MetaField::Headers,
            ),
            ColumnPlan::meta("hj", ty("String"), MetaField::Headers),
        ];
        let p = plan(cols, UnknownFields::Ignore, false);
        assert!(p.stores_headers());
        let without = plan(
            vec![ColumnPlan::meta(
                "key",
                ty("Nullable(String)"),
                MetaField::Key,
            )],
            UnknownFields::Ignore,
            false,
        );
        assert!(
            !without.stores_headers(),
            "headers are read only when stored"
        );
        let mut out = Vec::new();
        encode_json_row(&p, b"{}", &meta, &mut out).unwrap();
        let mut w = Vec::new();
        rb::put_str(&mut w, b"events");
        w.extend_from_slice(b"events\0\0");
        w.push(3);
        rb::put_u64(&mut w, 42);
        rb::put_u32(&mut w, 1_700_000_000);
        rb::put_i64(&mut w, 1_700_000_000_123);
        rb::put_i64(&mut w, 1_700_000_000_123_000);
        rb::put_i64(&mut w, 17_000_000_001);
        rb::put_i64(&mut w, 1_700_000_000_123);
        w.extend_from_slice(b"\x00\x02k1");
        w.extend_from_slice(b"\x03\x02h1\x02v1\x02h2\x00\x02q\"\x01\xff");
        w.extend_from_slice(b"\x03\x02h1\x00\x02v1\x02h2\x01\x02q\"\x00\x01\xff");
        rb::put_str(
            &mut w,
            "{\"h1\":\"v1\",\"h2\":null,\"q\\\"\":\"\u{fffd}\"}".as_bytes(),
        );
        assert_eq!(out, w);

        // No key: NULL in a Nullable column, empty string otherwise.
        let p = plan(
            vec![
                ColumnPlan::meta("k1", ty("Nullable(String)"), MetaField::Key),
                ColumnPlan::meta("k2", ty("String"), MetaField::Key),
                ColumnPlan::meta("ts", ty("Nullable(DateTime)"), MetaField::Timestamp)
                    .on_missing(OnMissing::Null),
            ],
            UnknownFields::Ignore,
            false,
        );
        out.clear();
        encode_json_row(
            &p,
            b"{}",
            &MessageMeta {
                key: None,
                timestamp_ms: None,
                ..META
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [1, 0, 1]);

        // Range checks and plan-time type checks.
        let p = plan(
            vec![ColumnPlan::meta("part", ty("Int8"), MetaField::Partition)],
            UnknownFields::Ignore,
            false,
        );
        let e = encode_json_row(
            &p,
            b"{}",
            &MessageMeta {
                partition: 300,
                ..META
            },
            &mut out,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Kafka partition -> column part Int8: 300 out of range -128..=127"
        );
        let p = plan(
            vec![ColumnPlan::meta("ts", ty("DateTime"), MetaField::Timestamp)],
            UnknownFields::Ignore,
            false,
        );
        let e = encode_json_row(
            &p,
            b"{}",
            &MessageMeta {
                timestamp_ms: None,
                ..META
            },
            &mut out,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "missing Kafka timestamp for column ts DateTime (no default sluice can apply here)"
        );
        for (t, m) in [
            ("Int32", MetaField::Topic),
            ("String", MetaField::Offset),
            ("Float64", MetaField::Timestamp),
            ("Map(String, UInt8)", MetaField::Headers),
            ("Array(Tuple(String))", MetaField::Headers),
        ] {
            let r = RowPlan::new(
                vec![ColumnPlan::meta("m", ty(t), m)],
                UnknownFields::Ignore,
                false,
            );
            assert!(matches!(r, Err(PlanError::MetaType { .. })), "{t} {m:?}");
        }
    }

    #[test]
    fn parse_scaled_cases() {
        let v = |t: &str, s: u32| {
            parse_scaled(t.as_bytes(), s).map(|n| (n.neg, n.mag.to_u128(), n.digits))
        };
        assert!(matches!(v("0", 0), Ok((false, Some(0), 0))));
        assert!(matches!(v("-0.000", 2), Ok((false, Some(0), 0))));
        assert!(matches!(v("007", 0), Ok((false, Some(7), 1))));
        assert!(matches!(v("+1.5", 1), Ok((false, Some(15), 2))));
        assert!(matches!(v(".5", 1), Ok((false, Some(5), 1))));
        assert!(matches!(v("5.", 1), Ok((false, Some(50), 2))));
        assert!(matches!(v("12e-1", 1), Ok((false, Some(12), 2))));
        assert!(matches!(v("1.20e1", 0), Ok((false, Some(12), 2))));
        assert!(matches!(v("-1e2", 0), Ok((true, Some(100), 3))));
        assert!(matches!(v("1e-1", 0), Err(NumErr::Inexact)));
        assert!(matches!(v("1e81", 0), Err(NumErr::Overflow)));
        assert!(matches!(v("", 0), Err(NumErr::Syntax)));
        assert!(matches!(v(".", 0), Err(NumErr::Syntax)));
        assert!(matches!(v("1e", 0), Err(NumErr::Syntax)));
        assert!(matches!(v("1x", 0), Err(NumErr::Syntax)));
        assert!(matches!(v("--1", 0), Err(NumErr::Syntax)));
        assert!(matches!(
            v("1e-99999999999999999999999", 0),
            Err(NumErr::Inexact)
        ));
        assert!(matches!(
            v("0e-99999999999999999999999", 0),
            Ok((false, Some(0), 0))
        ));
    }

    /// The Decimal fast path agrees with the general parser wherever it answers.
    #[test]
    fn decimal_fast_path_agrees() {
        let mut seed: u64 = 77;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let alphabet = b"0123456789.-e+";
        let mut answered = 0;
        for _ in 0..200_000 {
            let len = 1 + next() % 22;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    if next() % 6 == 0 {
                        alphabet[10 + next() % 4]
                    } else {
                        alphabet[next() % 10]
                    }
                })
                .collect();
            let precision = 1 + (next() % 18) as u32;
            let scale = (next() % (precision as usize + 1)) as u32;
            if let Some(fast) = decimal_i64(&text, scale, precision) {
                answered += 1;
                let slow = match parse_scaled(&text, scale) {
                    Ok(n) if n.digits <= precision => n.to_i128(),
                    _ => None,
                };
                assert_eq!(
                    Some(fast as i128),
                    slow,
                    "{} scale {scale} precision {precision}",
                    show(&text)
                );
            }
        }
        assert!(answered > 10_000, "{answered}");
    }

    #[test]
    fn field_index_many_names() {
        let names: Vec<Box<[u8]>> = (0..300)
            .map(|i| format!("field_{i:03}").into_bytes().into())
            .collect();
        let idx = FieldIndex::build(names.clone());
        let mut guess = 0;
        for (i, n) in names.iter().enumerate().rev() {
            assert_eq!(idx.find(n, &mut guess), Some(i));
        }
        assert_eq!(idx.find(b"field_300", &mut guess), None);
        assert_eq!(idx.find(b"", &mut guess), None);
        let empty = FieldIndex::build(Vec::new());
        assert_eq!(empty.find(b"x", &mut 0), None);
    }

    /// Strings of every length and escape position agree with serde_json (SWAR boundaries).
    #[test]
    fn strings_agree_with_serde_json() {
        let pieces = [
            "a",
            "é",
            "\\n",
            "\\u00e9",
            "\\\"",
            "\\\\",
            "😀",
            "\\ud83d\\ude00",
            "/",
            " ",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let len = (next() % 30) as usize;
            let body: String = (0..len)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let json = format!("\"{body}\"");
            let want: String = serde_json::from_str(&json).unwrap();
            let mut w = Vec::new();
            rb::put_str(&mut w, want.as_bytes());
            assert_eq!(ok("String", &json), w, "{json}");
        }
    }

    /// Mutated payloads never panic, and failures always roll back.
    #[test]
    fn mutations_never_panic() {
        let p = plan(
            vec![
                ColumnPlan::field("id", ty("UInt64")),
                ColumnPlan::field("s", ty("String")),
                ColumnPlan::field("a", ty("Array(Nullable(Map(String, Array(Int8))))")),
                ColumnPlan::field("t", ty("Tuple(x Decimal(10, 2), y DateTime64(3))")),
                ColumnPlan::field("f", ty("Float32")).on_missing(OnMissing::Bytes(vec![0; 4])),
            ],
            UnknownFields::Ignore,
            false,
        );
        let base = br#"{"id": 12, "s": "h\u00e9\"y", "a": [null, {"k": [1, -2]}], "t": {"x": "1.25", "y": "2023-11-14 22:13:20.5"}, "z": [true, false, null, 1e5]}"#;
        let mut out = Vec::new();
        encode_json_row(&p, base, &META, &mut out).unwrap();
        let mut seed: u64 = 12345;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let alphabet = b"{}[]\",:\\ u0123456789eE.-+tfnalsr\xff\xc3\xa9\x00\x1f";
        for _ in 0..20_000 {
            let mut m = base.to_vec();
            for _ in 0..(1 + next() % 3) {
                let i = next() % m.len();
                match next() % 3 {
                    0 => m[i] = alphabet[next() % alphabet.len()],
                    1 => {
                        m.remove(i);
                    }
                    _ => m.insert(i, alphabet[next() % alphabet.len()]),
                }
            }
            let mut out = vec![7u8];
            if encode_json_row(&p, &m, &META, &mut out).is_err() {
                assert_eq!(out, [7u8]);
            }
        }
    }

    #[test]
    fn the_float64_fast_path_agrees_with_the_full_parser_or_declines() {
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "0.1",
            "0.3",
            "2.0000",
            "14285.7143",
            "-5.5",
            "9007199254740992",
            "9007199254740993",
            "900719925474099.3",
            "1234567890123456789",
            "12345678901234567890",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
            "1.7976931348623157",
            "123.4567890123456789",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 21 + 1) as usize;
            let mut d = (x >> 8).to_string();
            d.truncate(digits);
            let digits = d.len();
            let point = (x >> 40) as usize % (digits + 1);
            let mut s = String::new();
            if x & 1 == 1 {
                s.push('-');
            }
            if point == 0 || point == digits {
                s.push_str(&d);
            } else {
                s.push_str(&d[..point]);
                s.push('.');
                s.push_str(&d[point..]);
            }
            cases.push(s);
        }
        let mut taken = 0;
        for s in &cases {
            let mut scan = Scan::new(s.as_bytes());
            if scan.number().is_err() || scan.pos != s.len() {
                continue; // not JSON (a leading zero): never reaches the Float64 writer
            }
            if let Some(f) = fast_f64(s.as_bytes()) {
                taken += 1;
                let full: f64 = s.parse().unwrap();
                assert_eq!(f.to_bits(), full.to_bits(), "{s}");
            }
        }
        assert!(taken > 100_000, "the fast path took {taken} cases");
        assert_eq!(fast_f64(b"9007199254740993"), None, "beyond 2^53");
        assert_eq!(fast_f64(b"1e5"), None, "exponent: full parser");
        assert_eq!(
            fast_f64(b"1.0000000000000000000000"),
            None,
            "23 fraction digits"
        );
    }

    /// The string scan's 16- and 8-byte steps find a quote, backslash, control character or
    /// bad UTF-8 byte at every position, and keep scanning over valid non-ASCII anywhere.
    #[test]
    fn string_scan_sees_specials_at_every_position() {
        for len in 0..48 {
            for at in 0..len {
                let mut body = vec![b'x'; len];
                // A string of `at` plain bytes, then the closing quote: ends right there.
                body[at] = b'"';
                let mut json = vec![b'"'];
                json.extend_from_slice(&body);
                let mut scan = Scan::new(&json);
                assert_eq!(scan.string().ok(), Some(false), "quote at {at} of {len}");
                assert_eq!(scan.pos, at + 2, "quote at {at} of {len}");

                for (bad, why) in [(0x01u8, "control"), (0x1f, "control"), (0xff, "UTF-8")] {
                    let mut raw = vec![b'x'; len + 2];
                    raw[0] = b'"';
                    raw[at + 1] = bad;
                    raw[len + 1] = b'"';
                    let r = Scan::new(&raw).string();
                    assert!(
                        r.is_err(),
                        "{why} byte {bad:#x} at {at} of {len} was accepted"
                    );
                }

                let mut body = "x".repeat(len);
                body.replace_range(at..at + 1, "\\n");
                body.push('\u{e9}');
                let json = format!("\"{body}\"");
                let mut scan = Scan::new(json.as_bytes());
                assert_eq!(scan.string().ok(), Some(true), "escape at {at} of {len}");
                assert_eq!(scan.pos, json.len(), "escape at {at} of {len}");
            }
        }
    }

    /// The 8-digit word parse agrees with the digit loop, and any non-digit byte (just below
    /// '0', just above '9', high-bit bytes) in any position sends it back to the caller.
    #[test]
    fn eight_digits_parse_and_reject() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..20_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = if i < 100 { i } else { seed % 100_000_000 };
            let text = format!("{n:08}");
            let word = u64::from_le_bytes(text.as_bytes().try_into().unwrap());
            assert_eq!(eight_digits(word), Some(n as u32), "{text}");
            for (at, bad) in [b'/', b':', b' ', b'.', 0x80, 0xff, 0xb0, 0x00]
                .iter()
                .enumerate()
            {
                let mut b: [u8; 8] = text.as_bytes().try_into().unwrap();
                b[(at + i as usize) % 8] = *bad;
                assert_eq!(eight_digits(u64::from_le_bytes(b)), None, "{b:?}");
            }
        }
        assert_eq!(parse_i64(b"-4999999993"), Some(-4_999_999_993));
        assert_eq!(
            parse_i64(b"123456789012345678"),
            Some(123_456_789_012_345_678)
        );
        assert_eq!(parse_i64(b"1234567x9"), None);
        assert_eq!(parse_i64(b"12345678"), Some(12_345_678));
        assert_eq!(
            parse_i64(b"1234567890123456789"),
            None,
            "19 digits: the wide path"
        );
    }
}

/// The one-pass path of [`encode_row`] against the two-pass one: the same bytes for every row
/// and the same error for every row that fails, over generated rows in and out of column
/// order, with missing, repeated and unknown fields, values of every kind for every column,
/// truncated and malformed JSON, meta columns between the fields and a field read twice.
#[cfg(test)]
mod one_pass_tests {
    use super::tests::{ty, META};
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Values of every JSON kind, valid and invalid for the columns below.
    const VALUES: &[&str] = &[
        "0",
        "7",
        "-7",
        "-0",
        "01",
        "255",
        "256",
        "-129",
        "4294967296",
        "40000",
        "3000000000",
        "-40000",
        "123456789012",
        "123456789012345678",
        "1234567890123456789",
        "18446744073709551615",
        "99999999999999999999",
        "1.5",
        "2.0000",
        "1e3",
        "-2.5E-3",
        "1.",
        "-",
        "--1",
        "12a",
        "-0.0",
        "0.5",
        "00.5",
        "-.5",
        "9007199254740993",
        "9007199254740993.0",
        "9007199254740992.5",
        "0.1234567890123456789",
        "1.2.3",
        "3.14abc",
        "\"abc\"",
        "\"\"",
        "\"a\\\"b\"",
        "\"\\u00e9t\\u00e9\"",
        "\"\\x\"",
        "\"caf\u{e9}\"",
        "\"12\"",
        "\"2024-05-01 00:00:00.123\"",
        "\"2024-05-01 00:00:00\"",
        "\"2024-05-01T23:59:59.5\"",
        "\"2024-05-01t00:00:00.000000001\"",
        "\"2024-05-01 00:00:00.1230\"",
        "\"2024-05-01 00:00:00.1231\"",
        "\"2024-05-01 00:00:00.\"",
        "\"2024-05-01 00:00:00Z\"",
        "\"2024-05-01 00:00:00+02:00\"",
        "\"2024-05-01 00:00\"",
        "\"2024-05-01\"",
        "\"2024-02-29 12:00:00\"",
        "\"2023-02-29 12:00:00\"",
        "\"2024-13-01 00:00:00\"",
        "\"2024-05-01 24:00:00\"",
        "\"2024-05-01 00:60:00\"",
        "\"2024-05-01 00:00:60\"",
        "\"2024-05-01x00:00:00\"",
        "\"2024-05-01 00:00:00.123 \"",
        "\"2024-05-01 00:00:00\\u0030\"",
        "\"1899-12-31 23:59:59\"",
        "\"1900-01-01 00:00:00\"",
        "\"1969-12-31 23:59:59.999\"",
        "\"2106-02-07 06:28:15\"",
        "\"2106-02-07 06:28:16\"",
        "\"2262-04-11 23:47:16.854775807\"",
        "\"2262-04-11 23:47:16.854775808\"",
        "\"2299-12-31 23:59:59.999999999\"",
        "\"2300-01-01 00:00:00\"",
        "\"9999-12-31 23:59:59\"",
        "\"13.0001\"",
        "\"-13.0001\"",
        "\"13.00010\"",
        "\"13.00011\"",
        "\"0.0000\"",
        "\"-0\"",
        "\"007.5\"",
        "\".5\"",
        "\"5.\"",
        "\"-\"",
        "\"1-2\"",
        "\"1.2.3\"",
        "\"1e3\"",
        "\" 1\"",
        "\"9999999.99\"",
        "\"10000000.00\"",
        "\"99999999999999.9999\"",
        "\"100000000000000.0000\"",
        "\"999999999999999999\"",
        "13.0001",
        "-13.00010",
        "13.00011",
        "9999999.99",
        "99999999999999.9999",
        "100000000000000",
        "0.00001",
        "-0.5",
        "\"true\"",
        "true",
        "false",
        "null",
        "nul",
        "tru",
        "[]",
        "[\"a\",\"bb\"]",
        "[ \"a\" , \"b\" ]",
        "[\"a\\n\"]",
        "[1,2]",
        "[\"a\",1]",
        "[\"a\",]",
        "[\"a\"",
        "[[\"x\"]]",
        "{}",
        "{\"k\":1}",
        "{\"k\":",
        "\"unterminated",
    ];

    fn plans() -> Vec<RowPlan> {
        let fields = [
            ("id", "UInt64"),
            ("name", "String"),
            ("tags", "Array(String)"),
            ("n", "Nullable(Int32)"),
            ("lc", "LowCardinality(String)"),
            ("f", "Float64"),
            ("b", "Bool"),
            ("u8", "UInt8"),
            ("ts", "DateTime64(3)"),
            ("d", "Decimal(18, 4)"),
            ("ltags", "Array(LowCardinality(String))"),
            ("ns", "Nullable(String)"),
            ("i8", "Int8"),
        ];
        let cols = |with_meta: bool, defaults: bool, shared: bool| {
            let mut c: Vec<ColumnPlan> = Vec::new();
            if with_meta {
                c.push(ColumnPlan::meta("_offset", ty("UInt64"), MetaField::Offset));
            }
            for (i, (n, t)) in fields.iter().enumerate() {
                let mut col = ColumnPlan::field(*n, ty(t));
                if t.starts_with("Nullable") {
                    col = col.on_missing(OnMissing::Null);
                } else if defaults && i % 2 == 0 {
                    col = col.on_missing(OnMissing::ServerDefault);
                } else if i % 3 == 0 {
                    col = col.on_missing(OnMissing::Bytes(vec![0; 8]));
                }
                c.push(col);
                if with_meta && i == 4 {
                    c.push(ColumnPlan::meta("_topic", ty("String"), MetaField::Topic));
                    c.push(ColumnPlan::meta(
                        "_ts",
                        ty("DateTime64(3)"),
                        MetaField::Timestamp,
                    ));
                }
                if shared && i == 7 {
                    // A field read by a second column.
                    let mut again = ColumnPlan::field("b_text", ty("String"));
                    again.source = ColumnSource::Field("b".into());
                    c.push(again);
                }
            }
            if with_meta {
                c.push(ColumnPlan::meta("_key", ty("String"), MetaField::Key));
            }
            c
        };
        let mut out = Vec::new();
        for (with_meta, defaults, shared, unknown) in [
            (false, false, false, UnknownFields::Ignore),
            (true, false, true, UnknownFields::Error),
            (true, true, false, UnknownFields::Ignore),
            (false, true, true, UnknownFields::Error),
            (true, false, false, UnknownFields::Ignore),
        ] {
            let columns = cols(with_meta, defaults, shared);
            // Meta columns have a name no field has; index 0 is the first field column.
            out.push(RowPlan::new(columns, unknown, defaults).unwrap_or_else(|e| panic!("{e}")));
        }
        out
    }

    /// A generated row: mostly the plan's fields in order with plausible values, sometimes
    /// anything else.
    fn row(rng: &mut StdRng, names: &[&str]) -> String {
        let mut order: Vec<&str> = names.to_vec();
        if rng.gen_bool(0.15) {
            let (a, b) = (rng.gen_range(0..order.len()), rng.gen_range(0..order.len()));
            order.swap(a, b);
        }
        if rng.gen_bool(0.1) {
            order.remove(rng.gen_range(0..order.len()));
        }
        if rng.gen_bool(0.05) {
            let f = order[rng.gen_range(0..order.len())];
            order.insert(rng.gen_range(0..order.len()), f);
        }
        if rng.gen_bool(0.1) {
            order.insert(rng.gen_range(0..order.len()), "extra");
        }
        let plausible = |f: &str, rng: &mut StdRng| -> String {
            let v: &[&str] = match f {
                "id" => &["7", "123456789012", "0", "18446744073709551615"],
                "u8" => &["7", "255", "0", "true"],
                "i8" => &["7", "-128", "-0", "127"],
                "n" => &["null", "-7", "12345"],
                "name" | "lc" | "ns" => &["\"abc\"", "\"\"", "\"a\\\"b\"", "\"caf\u{e9}\""],
                "tags" | "ltags" => &["[\"a\",\"bb\"]", "[]", "[ \"a\" , \"b\" ]", "[\"a\\n\"]"],
                "f" => &["1.5", "2.0000", "7", "-2.5E-3"],
                "b" => &["true", "false", "1"],
                "ts" => &["\"2024-05-01 00:00:00.123\"", "1700000000123"],
                "d" => &["\"13.0001\"", "2.5", "7"],
                _ => &["{\"k\":1}", "\"x\""],
            };
            v[rng.gen_range(0..v.len())].to_string()
        };
        let mut s = String::from(if rng.gen_bool(0.5) { "{" } else { " { " });
        for (i, f) in order.iter().enumerate() {
            if i > 0 {
                s.push_str([",", ",", ",", ",", " ,\n", ", "][rng.gen_range(0..6)]);
            }
            let key = if rng.gen_bool(0.02) {
                // The same name, escaped: found by lookup, not by the one-compare check.
                format!("\"\\u{:04x}{}\"", f.as_bytes()[0], &f[1..])
            } else {
                format!("\"{f}\"")
            };
            let v = if rng.gen_bool(0.97) {
                plausible(f, rng)
            } else {
                VALUES[rng.gen_range(0..VALUES.len())].to_string()
            };
            s.push_str(&key);
            // Whitespace after the colon only is what the one-compare step skips itself.
            s.push_str([":", ":", ":", ":", ":", ":", ":", ":", " : ", ": "][rng.gen_range(0..10)]);
            s.push_str(&v);
        }
        s.push('}');
        if rng.gen_bool(0.05) {
            let mut cut = rng.gen_range(0..s.len());
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        if rng.gen_bool(0.02) {
            s.push_str(" x");
        }
        s
    }

    fn encode(plan: &RowPlan, payload: &[u8]) -> (Vec<u8>, Result<(), String>) {
        // Bytes before the row must survive a failed row untouched.
        let mut out = b"prefix".to_vec();
        let r = encode_json_row(plan, payload, &META, &mut out).map_err(|e| e.to_string());
        (out, r)
    }

    #[test]
    fn one_pass_writes_what_two_passes_write() {
        let names = [
            "id", "name", "tags", "n", "lc", "f", "b", "u8", "ts", "d", "ltags", "ns", "i8",
        ];
        let mut rng = StdRng::seed_from_u64(0x51_1ce);
        let (mut ok, mut failed) = (0usize, 0usize);
        for plan in plans() {
            let mut two = plan.clone();
            two.one_pass = false;
            for _ in 0..20_000 {
                let payload = row(&mut rng, &names);
                let one_r = encode(&plan, payload.as_bytes());
                let two_r = encode(&two, payload.as_bytes());
                assert_eq!(one_r, two_r, "{payload}");
                if one_r.1.is_ok() {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
        }
        // Both outcomes are exercised in quantity, or the comparison proves little.
        assert!(ok > 25_000 && failed > 10_000, "ok {ok}, failed {failed}");
    }

    #[test]
    fn one_pass_fast_paths_agree_with_the_general_conversion() {
        // Every value of VALUES into every column type, alone in the object.
        for t in [
            "UInt64",
            "UInt32",
            "UInt8",
            "Int8",
            "Int64",
            "String",
            "LowCardinality(String)",
            "Nullable(Int32)",
            "Nullable(String)",
            "Array(String)",
            "Array(LowCardinality(String))",
            "Nullable(UInt8)",
            "Int128",
            "UInt256",
            "Float64",
            "Nullable(Float64)",
            "Float32",
            "LowCardinality(Nullable(String))",
            "Nullable(Int64)",
            "UInt16",
            "Int16",
            "Int32",
            "Bool",
            "Nullable(Bool)",
            "Decimal(18, 4)",
            "Decimal(9, 2)",
            "Decimal(18, 0)",
            "Nullable(Decimal(18, 4))",
            "Decimal(38, 4)",
            "DateTime64(3)",
            "DateTime64(0)",
            "DateTime64(6, 'UTC')",
            "DateTime64(9)",
            "Nullable(DateTime64(3))",
            "DateTime64(3, 'Europe/Berlin')",
            "DateTime",
            "DateTime('UTC')",
            "Nullable(DateTime)",
        ] {
            let plan = RowPlan::new(
                vec![
                    ColumnPlan::field("c", ty(t)),
                    ColumnPlan::meta("_p", ty("Int32"), MetaField::Partition),
                ],
                UnknownFields::Error,
                false,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let mut two = plan.clone();
            two.one_pass = false;
            // 200 elements: a count of two varint bytes, patched after the elements.
            let long = format!("[{}]", ["\"ab\""; 200].join(","));
            let long_escaped = format!("[{},\"a\\nb\"]", ["\"ab\""; 150].join(","));
            let dynamic = [long.as_str(), long_escaped.as_str()];
            for v in VALUES.iter().chain(dynamic.iter()) {
                let payload = format!("{{\"c\":{v}}}");
                assert_eq!(
                    encode(&plan, payload.as_bytes()),
                    encode(&two, payload.as_bytes()),
                    "{t} <- {v}"
                );
            }
        }
    }
}
