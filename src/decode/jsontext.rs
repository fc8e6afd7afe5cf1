//! The JSON text that decoders of typed formats (Avro, Protobuf) write for each value, so
//! that the row converter ([`super::json::encode_fields_row`]) reads it exactly as it reads
//! a JSON message: one set of type rules and error wording for every format.

use std::io::Write as _;

use super::json::FieldKind;

/// A finite float as its shortest exact text; NaN and the infinities as the strings float
/// columns read.
pub(crate) fn write_float(f: f64, out: &mut Vec<u8>) -> FieldKind {
    if f.is_nan() {
        out.extend_from_slice(b"\"nan\"");
        FieldKind::Raw
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"\"inf\"" } else { b"\"-inf\"" });
        FieldKind::Raw
    } else {
        // The shortest text that reads back as the same double (an exponent for very large
        // or small magnitudes, never 300 digits).
        out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
        FieldKind::Num
    }
}

/// `v / 10^scale` as exact decimal text, trailing fractional zeros dropped.
pub(crate) fn write_scaled(v: i128, scale: u32, out: &mut Vec<u8>) -> FieldKind {
    // itoa's stack buffer: `to_string` allocated a String per value (3 % of an Avro row's
    // time in perf with its u128 formatting).
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(v.unsigned_abs());
    write_decimal(v < 0, digits.as_bytes(), i64::from(scale), out)
}

/// `digits` (a magnitude in ASCII, no sign, no leading zeros) times `10^-scale` as exact
/// decimal text, negative when `negative`: trailing fractional zeros dropped, a negative
/// scale written as that many zeros after the digits.
pub(crate) fn write_decimal(
    negative: bool,
    digits: &[u8],
    scale: i64,
    out: &mut Vec<u8>,
) -> FieldKind {
    if negative {
        out.push(b'-');
    }
    if scale <= 0 {
        out.extend_from_slice(digits);
        if digits != b"0" {
            out.extend(std::iter::repeat_n(b'0', scale.unsigned_abs() as usize));
        }
        return FieldKind::Int;
    }
    let scale = scale.unsigned_abs() as usize;
    let (int, frac) = if digits.len() > scale {
        digits.split_at(digits.len() - scale)
    } else {
        (&b""[..], digits)
    };
    if int.is_empty() {
        out.push(b'0');
    } else {
        out.extend_from_slice(int);
    }
    let lead = scale - frac.len();
    let kept = frac.len() - frac.iter().rev().take_while(|&&c| c == b'0').count();
    if kept == 0 {
        return FieldKind::Int;
    }
    out.push(b'.');
    out.extend(std::iter::repeat_n(b'0', lead));
    out.extend_from_slice(&frac[..kept]);
    FieldKind::Num
}

/// A JSON string of `s`: `"` and `\` escaped, control bytes as `\u00XX`, other bytes kept.
pub(crate) fn json_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            c if c < 0x20 => {
                let _ = write!(out, "\\u{c:04x}");
            }
            c => out.push(c),
        }
    }
    out.push(b'"');
}
