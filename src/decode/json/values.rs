//! One JSON value written as one ClickHouse column type (the conversion rules of the parent
//! module's docs).

use super::*;

/// Writes JSON value `v` as type `ty`.
/// `ty` without Nullable and LowCardinality around it.
pub(super) fn base_type(ty: &ChType) -> &ChType {
    match ty {
        ChType::Nullable(t) | ChType::LowCardinality(t) => base_type(t),
        t => t,
    }
}

pub(super) fn is_time_type(ty: &ChType) -> bool {
    matches!(
        ty,
        ChType::Date | ChType::Date32 | ChType::DateTime { .. } | ChType::DateTime64 { .. }
    )
}

/// Writes the value `v` of column `i` of `plan`: through its date-time format first where the
/// route gives it one ([`RowPlan::set_time_formats`]), then as [`write_value`] does.
#[inline]
pub(super) fn write_col(
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

pub(super) fn write_value(ty: &ChType, v: Val<'_>, tmp: &mut Vec<u8>, out: &mut Vec<u8>) -> Conv {
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
                .and_then(|b| crate::decode::cursor::Cursor::new(b).varint().ok())
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

pub(super) fn enum_value<T: Copy + Into<i16>>(
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

pub(super) fn write_tuple(
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
