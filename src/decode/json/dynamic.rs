//! Values of the self-describing types (`Dynamic`, `Variant`, `JSON`): their type inferred from
//! the JSON or chosen among the variants, and written with its type code.

use super::*;

/// Arrays, maps and tuples (under Nullable or LowCardinality too).
pub(super) fn composite(ty: &ChType) -> bool {
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
pub(super) fn write_dynamic(
    v: Val<'_>,
    tz: Option<Tz>,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Conv {
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
pub(super) fn infer_dynamic(
    v: Val<'_>,
    tz: Option<Tz>,
    tmp: &mut Vec<u8>,
    depth: usize,
) -> Conv<ChType> {
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
pub(super) fn not_a_date(raw: &[u8]) -> Box<ConvErr> {
    fail(format!(
        "{} looks like a date but is none sluice reads: the type ClickHouse infers for it is not certain",
        show(raw)
    ))
}

/// The common type of two inferred element types, as ClickHouse merges them (checked against
/// the server), or None when they have none: then the array holds Dynamic elements.
pub(super) fn unify(a: ChType, b: ChType) -> Option<ChType> {
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
pub(super) fn bool_as_number(b: bool) -> Val<'static> {
    Val {
        raw: if b { b"1" } else { b"0" },
        kind: Kind::Int,
    }
}

/// A JSON array's items as a RowBinary array: the count, then each item written by `each`;
/// an item's error names its index.
pub(super) fn write_items(
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
pub(super) fn write_inferred(t: &ChType, v: Val<'_>, tmp: &mut Vec<u8>, out: &mut Vec<u8>) -> Conv {
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
pub(super) fn put_type_code(t: &ChType, out: &mut Vec<u8>) -> Conv {
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
pub(super) const DEFAULT_DYNAMIC_TYPES: u8 = 32;

/// Whether the variant `t` of a Variant is tried for `v`, and as what: the JSON kinds each
/// type reads inside a Variant in ClickHouse (checked value by value against the server,
/// tests/rowbinary_roundtrip.rs), narrower than what a column of that type reads in sluice.
/// Integers take plain integers (also quoted) and booleans as 1 or 0, not `1e3`; floats
/// numbers, numeric strings and booleans; decimals numbers only; dates and date-times
/// numbers and date strings, not numeric strings; UUIDs and IPs strings only; Bool only
/// `true`/`false`; a named Tuple only an object. Inside a variant's own arrays, maps and
/// tuples the usual rules apply.
pub(super) fn variant_candidate<'a>(
    t: &ChType,
    v: Val<'a>,
    tmp: &mut Vec<u8>,
) -> Conv<Option<Val<'a>>> {
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
