//! Integers and decimals parsed exactly from their JSON text (never through `f64`), floats, and
//! integers written at their column's width.

use super::*;

/// A signed integer as sign + magnitude, wide enough for every ClickHouse integer and decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BigInt {
    pub(super) neg: bool,
    pub(super) mag: U256,
    /// Significant decimal digits of `mag` (0 for zero).
    pub(super) digits: u32,
}

pub(super) enum NumErr {
    Syntax,
    /// Non-zero digits beyond the wanted scale.
    Inexact,
    Overflow,
}

/// Parses decimal text (`[+-]digits[.digits][e[+-]digits]`; JSON numbers are a subset) and
/// returns value × 10^scale, which must be an integer. The text is never rounded.
pub(super) fn parse_scaled(text: &[u8], scale: u32) -> Result<BigInt, NumErr> {
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
pub(super) fn decimal_i64(text: &[u8], scale: u32, precision: u32) -> Option<i64> {
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
pub(super) fn decimal_from_digits(d: &Digits, scale: u32, precision: u32) -> Option<i64> {
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
pub(super) fn parse_plain_int(raw: &[u8]) -> Option<BigInt> {
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
pub(super) const POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A scanned JSON number without exponent whose digits, read as one integer `m`, fit in 53
/// bits and whose fraction has at most 22 digits: then `m` and `10^fraction` are exact
/// doubles and one IEEE division rounds their quotient correctly (Clinger's fast path, which
/// `str::parse` takes too, after a UTF-8 check and a generic parse). None: take the full
/// parser. The wide bench spent 12 % of its time parsing its 10 Float64 fields per row.
#[inline]
pub(super) fn fast_f64(raw: &[u8]) -> Option<f64> {
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
pub(super) fn eight_digits(w: u64) -> Option<u32> {
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
pub(super) fn parse_i64(raw: &[u8]) -> Option<i64> {
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
pub(super) fn put_small_int(ty: &ChType, x: i64, out: &mut Vec<u8>) -> bool {
    IntTy::of(ty).is_some_and(|t| put_int_as(t, x, out))
}

/// Reads an integer from a JSON number or a string holding one, exactly.
#[inline]
pub(super) fn read_int(v: Val<'_>, tmp: &mut Vec<u8>) -> Conv<BigInt> {
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
    pub(super) fn to_i128(self) -> Option<i128> {
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

    pub(super) fn from_i128(v: i128) -> BigInt {
        BigInt {
            neg: v < 0,
            mag: U256::from_u128(v.unsigned_abs()),
            digits: 0,
        }
    }
}

pub(super) const INT256_RANGE: &str = "-57896044618658097711785492504343953926634992332820282019728792003956564819968..=57896044618658097711785492504343953926634992332820282019728792003956564819967";
pub(super) const UINT256_RANGE: &str =
    "0..=115792089237316195423570985008687907853269984665640564039457584007913129639935";

/// Writes `n` as integer type `ty` (plain integer types only); `Err` carries the range text.
#[inline]
pub(super) fn put_int(ty: &ChType, n: BigInt, out: &mut Vec<u8>) -> Result<(), String> {
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

pub(super) fn is_int_type(ty: &ChType) -> bool {
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
pub(super) fn is_inf_literal(s: &str) -> bool {
    let t = s.trim_start_matches(['+', '-']);
    t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity")
}

/// The text of a number, or of a string (unescaped): what the numeric types read. `what` names
/// the expected value in the error for any other kind (`expected a number, found an array`).
pub(super) fn scalar_text<'t>(v: Val<'t>, tmp: &'t mut Vec<u8>, what: &str) -> Conv<&'t [u8]> {
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

pub(super) fn read_float<F>(v: Val<'_>, tmp: &mut Vec<u8>, what: &str) -> Conv<F>
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
