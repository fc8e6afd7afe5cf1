//! The entry points that turn one message into one row: JSON payloads, metadata-only rows,
//! typed field values from the other decoders, and text formats; missing values and the
//! columns `unknown_fields = "add"` asks for.

use super::*;

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

pub(super) fn write_meta_row(
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
pub(super) fn write_typed(ty: &ChType, kind: FieldKind, out: &mut Vec<u8>) -> bool {
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
pub(super) fn rescale_exactly(value: i64, from: u32, to: u32) -> Option<i128> {
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

pub(super) fn write_fields_row(
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
                        crate::decode::jsontext::write_float(f64::from_bits(bits), typed_text)
                    }
                    FieldKind::Scaled { value, scale } => crate::decode::jsontext::write_scaled(
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
/// [`crate::decode::text::composite_to_json`]), or NULL for `\N`. An empty field is
/// missing (the column's DEFAULT, NULL or type default), except into a String-like column,
/// where it is the empty string. On error `out` is left exactly as it was.
pub fn encode_text_row(
    plan: &RowPlan,
    line: &crate::decode::text::Line,
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

pub(super) fn write_text_row(
    plan: &RowPlan,
    line: &crate::decode::text::Line,
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
                crate::decode::text::composite_to_json(b, quoted).map_err(|e| RowError::Value {
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

pub(super) fn json_err(e: JsonErr) -> RowError {
    RowError::InvalidJson {
        offset: e.pos,
        reason: e.reason,
    }
}

/// `UnknownFields::Add`: a field `name` (unescaped) no column reads. The column to add
/// when its value tells the type; `None` (ignored) when it is null, an array of nulls or
/// nothing, or names a column that reads no field. An empty name, or one that is not UTF-8,
/// cannot be a column: the message's error.
#[cold]
pub(super) fn new_field(
    plan: &RowPlan,
    name: &[u8],
    value: Val<'_>,
) -> Result<Option<NewColumn>, RowError> {
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
pub(super) fn added_column_type(v: Val<'_>) -> Option<String> {
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
pub(super) fn write_meta(
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
pub(super) fn plan_changed(col: &ColumnPlan) -> RowError {
    RowError::Value {
        origin: "plan".into(),
        column: col.name.clone(),
        ty: col.ty.to_string(),
        reason: "RowPlan was modified after RowPlan::new; rebuild it".into(),
    }
}

pub(super) fn write_missing(
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
