//! Dates and date-times from JSON strings or numbers, checked against the column's range and
//! read in its time zone.

use super::*;

/// Days from 1970-01-01 to the proleptic Gregorian date (Howard Hinnant's algorithm).
#[inline]
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = ((m + 9) % 12) as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[inline]
pub(super) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

pub(super) fn digits_at(s: &[u8], at: usize, n: usize) -> Option<u32> {
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
pub(super) fn parse_ymd(s: &[u8]) -> Option<(i64, u32, u32)> {
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

pub(super) fn looks_like_date(s: &[u8]) -> bool {
    s.len() >= 10 && s.get(4) == Some(&b'-') && s.get(7) == Some(&b'-')
}

pub(super) const DATE32_MIN: i64 = -25_567; // 1900-01-01
pub(super) const DATE32_MAX: i64 = 120_529; // 2299-12-31
pub(super) const DT64_MIN_SECS: i64 = -2_208_988_800; // 1900-01-01 00:00:00 UTC
pub(super) const DT64_END_SECS: i64 = 10_413_792_000; // 2300-01-01 00:00:00 UTC

#[inline]
pub(super) fn pow10(p: u32) -> i64 {
    10i64.pow(p.min(18))
}

/// Parses a date-time string into ticks of 10^-precision s since the epoch (UTC).
pub(super) fn parse_datetime(
    s: &[u8],
    tz: Option<Tz>,
    precision: u32,
) -> Result<i128, &'static str> {
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
pub(super) fn read_ticks(
    v: Val<'_>,
    tmp: &mut Vec<u8>,
    tz: Option<Tz>,
    precision: u32,
) -> Conv<i128> {
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
pub(super) const MAX_TIME_SECONDS: i128 = 999 * 3600 + 59 * 60 + 59;

/// A Time or Time64 value in ticks of 10^-precision s: `[-]h:mm:ss[.fraction]` (1 to 3 hour
/// digits), or seconds as a number or a numeric string, with an exact fraction. Out of range
/// or more fractional digits than the precision: an error, never a cut.
pub(super) fn read_time(v: Val<'_>, tmp: &mut Vec<u8>, precision: u32) -> Conv<i128> {
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
pub(super) fn parse_time(s: &[u8], precision: u32) -> Result<i128, &'static str> {
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

pub(super) fn dt64_range(precision: u32) -> (i128, i128) {
    let p = pow10(precision) as i128;
    let lo = (DT64_MIN_SECS as i128 * p).max(i64::MIN as i128);
    let hi = (DT64_END_SECS as i128 * p - 1).min(i64::MAX as i128);
    (lo, hi)
}

pub(super) fn put_date_days(ty: &ChType, days: i64, shown: &str, out: &mut Vec<u8>) -> Conv {
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
