//! The row loop of [`encode_json_row`](super::encode_json_row): one pass while the fields come
//! in the columns' order, the slots when they do not, and the fused scan-and-write loops of
//! the common types.

use super::*;

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
pub(super) fn encode_row(
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
pub(super) fn next_field(s: &mut Scan<'_>) -> Result<bool, RowError> {
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
pub(super) enum Step {
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
pub(super) fn field_step(
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
pub(super) fn emit_up_to(
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
pub(super) fn emit_metas(
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
pub(super) fn write_scanned(
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
pub(super) fn scan_write(ty: FastTy, s: &mut Scan<'_>, out: &mut Vec<u8>) -> Option<Kind> {
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
pub(super) struct Digits {
    pub(super) neg: bool,
    /// The digits as one integer: 123.45 is 12345.
    pub(super) value: u64,
    pub(super) int_digits: usize,
    /// `None` without a point; `Some(0)` for a point with no digit after it.
    pub(super) frac_digits: Option<usize>,
    /// Every digit, leading zeros included.
    pub(super) all: usize,
    /// The position after the last digit.
    pub(super) end: usize,
}

impl Digits {
    /// Digits from the first non-zero one on.
    pub(super) fn significant(&self) -> u32 {
        self.value.checked_ilog10().map_or(0, |l| l + 1)
    }
}

/// Scans [`Digits`]; `None` past 19 digits, which a `u64` may not hold.
#[inline(always)]
pub(super) fn scan_digits(b: &[u8], start: usize) -> Option<Digits> {
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
pub(super) fn plain_json_number(b: &[u8], start: usize, d: &Digits) -> bool {
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
pub(super) fn scan_fast_f64(b: &[u8], start: usize) -> Option<(f64, usize, Kind)> {
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
pub(super) fn utc_like(tz: Option<Tz>) -> bool {
    matches!(tz, None | Some(Tz::UTC))
}

/// A decimal at `b[start..]` as [`decimal_i64`] converts its text, as a JSON string of
/// `-?digits[.digits]` (either part may be empty, not both) or as a JSON number without
/// exponent, scanned and converted in one loop: the unscaled value, the position after it
/// and its kind. `None` for anything else, valid or not (the general path decides, with
/// [`decimal_i64`] first, so a value answered here is the one it gives).
#[inline(always)]
pub(super) fn scan_decimal_i64(
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
pub(super) fn scan_datetime(b: &[u8], start: usize, precision: u32) -> Option<(i64, usize)> {
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
pub(super) fn scan_write_strings(s: &mut Scan<'_>, out: &mut Vec<u8>) -> bool {
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
pub(super) fn scan_small_int(b: &[u8], start: usize) -> Option<(i64, usize)> {
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
