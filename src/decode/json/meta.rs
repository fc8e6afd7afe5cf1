//! Kafka metadata columns (topic, partition, offset, key, headers, change-event fields): which
//! types each may be stored in, and their values written.

use super::*;

/// Checks that `s` is one JSON object and nothing else (whitespace around it aside).
pub(super) fn json_object(s: &[u8]) -> Result<(), String> {
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

pub(super) fn json_like(ty: &ChType) -> bool {
    matches!(ty, ChType::Json(_))
}

pub(super) fn string_like(ty: &ChType) -> bool {
    match ty {
        ChType::String | ChType::FixedString(_) => true,
        ChType::Nullable(t) | ChType::LowCardinality(t) => string_like(t),
        _ => false,
    }
}

pub(super) fn bool_like(ty: &ChType) -> bool {
    match ty {
        ChType::Nullable(t) | ChType::LowCardinality(t) => bool_like(t),
        t => *t == ChType::Bool,
    }
}

/// The delete flag of a change event (`deleted`) as a column of `ty` (see
/// [`MetaField::Deleted`]).
pub(super) fn put_deleted(ty: &ChType, deleted: bool, out: &mut Vec<u8>) -> Conv {
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

pub(super) fn int_like(ty: &ChType) -> bool {
    match ty {
        ChType::Nullable(t) | ChType::LowCardinality(t) => int_like(t),
        t => is_int_type(t),
    }
}

pub(super) fn meta_type_ok(m: MetaField, ty: &ChType) -> bool {
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
pub(super) fn put_bytes_as(ty: &ChType, b: Option<&[u8]>, out: &mut Vec<u8>) -> Conv {
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

pub(super) fn put_meta_int(ty: &ChType, v: i64, out: &mut Vec<u8>) -> Conv {
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

pub(super) fn put_meta_timestamp(ty: &ChType, ms: i64, out: &mut Vec<u8>) -> Conv {
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
pub(super) fn push_json_str(out: &mut Vec<u8>, s: &[u8]) {
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

pub(super) fn put_headers(
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
