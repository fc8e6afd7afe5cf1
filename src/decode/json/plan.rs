//! The row plan: which column reads which top-level field or Kafka metadata, in what type,
//! what a missing value becomes, and the field steps the one-pass path compares names with.

use super::*;

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
pub(super) enum Src {
    Field(usize),
    Meta(MetaField),
}

/// Field name → field slot, built once per plan. Open addressing over a power-of-two table
/// with an Fx-style hash: for the dozen-key objects we see, hashing a short key costs a few
/// multiplications, far less than SipHash, and the sequential guess in [`FieldIndex::find`]
/// usually avoids even that.
#[derive(Debug, Clone, Default)]
pub(super) struct FieldIndex {
    pub(super) names: Vec<Box<[u8]>>,
    /// Per name: it has no `"`, `\` or control character, so the payload bytes `"name"` can
    /// only be a string that is exactly this name (see [`FieldIndex::expected_at`]).
    pub(super) plain: Vec<bool>,
    /// slot id + 1; 0 = empty bucket.
    pub(super) table: Vec<u32>,
    pub(super) shift: u32,
}

#[inline]
pub(super) fn fx_hash(key: &[u8]) -> u64 {
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
pub(super) fn key_eq(a: &[u8], b: &[u8]) -> bool {
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
    pub(super) fn build(names: Vec<Box<[u8]>>) -> FieldIndex {
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
    pub(super) fn bucket(&self, key: &[u8]) -> usize {
        // The multiply in fx_hash mixes into the high bits, so take those.
        (fx_hash(key) >> self.shift) as usize
    }

    /// The field name at `at` (its opening quote) when it is the one expected next (`guess`)
    /// written plainly: then the bytes are exactly `"name"`, which is valid JSON and that
    /// name, so neither the string scan nor the lookup is needed. Returns the slot and the
    /// position after the closing quote; `None` means "scan and look it up".
    #[inline(always)]
    pub(super) fn expected_at(&self, b: &[u8], at: usize, guess: usize) -> Option<(usize, usize)> {
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
    pub(super) fn find(&self, key: &[u8], guess: &mut usize) -> Option<usize> {
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
    pub(super) index: FieldIndex,
    pub(super) sources: Vec<Src>,
    /// CSV/TSV: the field read at each position of a line ([`RowPlan::set_positions`]).
    pub(super) positions: Vec<usize>,
    /// The inverse: each field's position in a line, `usize::MAX` for none.
    pub(super) position_of: Vec<usize>,
    /// Per field id: the first column that reads it (the others are written from the slots,
    /// see [`encode_row`]).
    pub(super) field_col: Vec<usize>,
    /// Per column: how [`scan_write`] writes its values.
    pub(super) fast: Vec<FastTy>,
    /// Per field id: what the one-compare step of [`encode_row`] needs, for fields whose
    /// name is plain and whose first column [`scan_write`] writes (`None` otherwise).
    pub(super) steps: Vec<Option<FieldStep>>,
    /// Write values as they are scanned while the fields come in column order (see
    /// [`encode_row`]). Always true; the tests turn it off to compare with the two-pass path.
    pub(super) one_pass: bool,
    /// Per column: the date-time format its values are written in, where the route gives one
    /// ([`RowPlan::set_time_formats`]); empty when no column has one.
    pub(super) times: Vec<Option<TimeFormat>>,
    /// `UnknownFields::Add`: names, sorted, of the table's columns that read no field (meta
    /// and computed columns, [`RowPlan::set_other_columns`]): a field so named gets no column.
    pub(super) others: Vec<Box<[u8]>>,
}

/// A column type as the one-pass writer ([`scan_write`]) sees it, compiled once per plan so
/// that each value costs one small, dense dispatch rather than a walk of the type tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FastTy {
    pub(super) nullable: bool,
    pub(super) kind: FastKind,
}

/// A field as the one-compare step of [`encode_row`] reads it: while the fields come in the
/// columns' order and a producer writes them compactly, the bytes at a field's start are
/// exactly `pattern`, so its name, colon and column are known from one compare, without the
/// scan, the lookup and the per-column tables.
#[derive(Debug, Clone)]
pub(super) struct FieldStep {
    /// `"name":`, the name plain (no `"`, `\` or control character, so those bytes can only
    /// be this name).
    pub(super) pattern: Box<[u8]>,
    /// The first column that reads the field.
    pub(super) col: usize,
    pub(super) fast: FastTy,
    /// `pattern` as a little-endian word and the mask of its bytes, when it has at most 8:
    /// one load and compare instead of a byte loop for names of up to 5 bytes.
    pub(super) word: u64,
    pub(super) mask: u64,
}

impl FieldStep {
    pub(super) fn new(name: &[u8], col: usize, fast: FastTy) -> FieldStep {
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
    pub(super) fn matches(&self, b: &[u8], at: usize) -> bool {
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
pub(super) enum FastKind {
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
pub(super) enum IntTy {
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
    pub(super) fn of(ty: &ChType) -> Option<IntTy> {
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
    pub(super) fn of(ty: &ChType) -> FastTy {
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
pub(super) fn put_int_as(t: IntTy, x: i64, out: &mut Vec<u8>) -> bool {
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
pub(super) const MAX_COLUMNS: usize = 1 << 20;

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
