//! How a column's dates and date-times are written in the messages, where that is not the
//! default (ISO 8601 text, numbers in epoch seconds): `[route.date_time_formats]`, Kafka
//! Connect's `dateTimeFormats`.
//!
//! A format turns a value into the form the default conversion reads, before that conversion
//! runs, so every range and precision check of the column still applies:
//! - `epoch_millis`, `epoch_micros`, `epoch_nanos` (and `epoch_seconds`, the default): an
//!   integer value (a JSON number or string of digits, an Avro or Protobuf int or long, a
//!   CSV/TSV field of digits) counts that unit since the epoch, exactly: `1700000000123` in
//!   milliseconds is `1700000000.123` seconds, which a DateTime64(3) holds and a DateTime
//!   refuses (a fraction it cannot hold is an error, never a cut). Date-time text is still
//!   read as text. A number in exponent form is refused: its digits would be a guess.
//! - a strftime pattern (chrono's, e.g. `%d/%m/%Y %H:%M:%S%.f`): a string value is parsed by
//!   it; without an offset (`%z`) it is local time in the column's time zone, as ISO text
//!   without one is; a pattern of a date alone gives midnight. Numbers stay epoch seconds.
//!
//! Avro and Protobuf timestamp types carry their unit, and are not affected.

use chrono::format::{Item, StrftimeItems};
use chrono::{NaiveDate, NaiveDateTime};

/// A column's date-time format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// Integers count 10^-digits seconds since the epoch (3, 6 or 9; 0 is the default).
    Epoch { digits: u32 },
    /// Strings parse by this strftime pattern.
    Pattern(String),
}

impl std::fmt::Display for TimeFormat {
    /// As the config writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeFormat::Epoch { digits: 0 } => f.write_str("epoch_seconds"),
            TimeFormat::Epoch { digits: 3 } => f.write_str("epoch_millis"),
            TimeFormat::Epoch { digits: 6 } => f.write_str("epoch_micros"),
            TimeFormat::Epoch { digits: 9 } => f.write_str("epoch_nanos"),
            TimeFormat::Epoch { digits } => write!(f, "epoch_1e-{digits}"),
            TimeFormat::Pattern(p) => write!(f, "{p:?}"),
        }
    }
}

impl TimeFormat {
    /// Reads a format as the config writes it; why not, otherwise.
    pub fn parse(text: &str) -> Result<TimeFormat, String> {
        let digits = match text {
            "epoch_seconds" => 0,
            "epoch_millis" => 3,
            "epoch_micros" => 6,
            "epoch_nanos" => 9,
            t if t.contains('%') => {
                if StrftimeItems::new(t).any(|i| matches!(i, Item::Error)) {
                    return Err(format!("{t:?} is not a valid strftime pattern"));
                }
                return Ok(TimeFormat::Pattern(t.to_string()));
            }
            t => {
                return Err(format!(
                    "{t:?} is not one of epoch_seconds, epoch_millis, epoch_micros, epoch_nanos, or a strftime pattern (with %)"
                ))
            }
        };
        Ok(TimeFormat::Epoch { digits })
    }

    /// Whether a value of this form (`is_string`: a JSON string, or a text field) is
    /// rewritten by [`TimeFormat::rewrite`]; the others are read as they are.
    pub fn applies_to(&self, is_string: bool) -> bool {
        match self {
            TimeFormat::Epoch { digits } => *digits > 0,
            TimeFormat::Pattern(_) => is_string,
        }
    }

    /// The value `text` (a number's text, or a string's content) rewritten into what the
    /// default conversion reads: epoch seconds with a fraction, or `YYYY-MM-DD hh:mm:ss.f`
    /// (with an offset when the pattern has one). `Ok(None)`: leave the value as it is (a
    /// date-time string under an epoch format). `date_only`: the column is a Date or Date32.
    pub fn rewrite(&self, text: &[u8], date_only: bool) -> Result<Option<String>, String> {
        match self {
            TimeFormat::Epoch { digits } => epoch_seconds(text, *digits),
            TimeFormat::Pattern(p) => {
                let s = std::str::from_utf8(text).map_err(|_| "is not UTF-8 text".to_string())?;
                pattern(s, p, date_only).map(Some)
            }
        }
    }
}

/// `text`, an integer (or decimal) count of 10^-`digits` seconds, as seconds: the decimal
/// point moved `digits` places left. `None` for text that is not a plain number (date-time
/// text, read as it is).
fn epoch_seconds(text: &[u8], digits: u32) -> Result<Option<String>, String> {
    let (neg, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (int, frac) = match body.iter().position(|&c| c == b'.') {
        Some(at) => (&body[..at], &body[at + 1..]),
        None => (body, &[][..]),
    };
    let is_digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if body.iter().any(|&c| c == b'e' || c == b'E') {
        return Err("is in exponent form: an epoch count must be written in digits".into());
    }
    if int.is_empty() || !is_digits(int) || !is_digits(frac) {
        return Ok(None);
    }
    let d = digits as usize;
    let mut out = String::with_capacity(int.len() + frac.len() + d + 3);
    if neg {
        out.push('-');
    }
    if int.len() > d {
        out.push_str(&String::from_utf8_lossy(&int[..int.len() - d]));
        out.push('.');
        out.push_str(&String::from_utf8_lossy(&int[int.len() - d..]));
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', d - int.len()));
        out.push_str(&String::from_utf8_lossy(int));
    }
    out.push_str(&String::from_utf8_lossy(frac));
    Ok(Some(out))
}

/// `s` parsed by the strftime `pattern`, in the text the default conversion reads.
fn pattern(s: &str, pattern: &str, date_only: bool) -> Result<String, String> {
    let refused =
        |e: chrono::ParseError| format!("does not match the date-time format {pattern:?} ({e})");
    if date_only {
        return NaiveDate::parse_from_str(s, pattern)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .map_err(refused);
    }
    if let Ok(t) = chrono::DateTime::parse_from_str(s, pattern) {
        return Ok(t.format("%Y-%m-%d %H:%M:%S%.9f%:z").to_string());
    }
    match NaiveDateTime::parse_from_str(s, pattern) {
        Ok(t) => Ok(t.format("%Y-%m-%d %H:%M:%S%.9f").to_string()),
        // A pattern of a date alone: midnight.
        Err(e) => match NaiveDate::parse_from_str(s, pattern) {
            Ok(d) => Ok(d.format("%Y-%m-%d 00:00:00").to_string()),
            Err(_) => Err(refused(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(format: &str, text: &str) -> Result<Option<String>, String> {
        TimeFormat::parse(format)
            .unwrap()
            .rewrite(text.as_bytes(), false)
    }

    #[test]
    fn epoch_units_move_the_decimal_point_exactly() {
        let ok = |f: &str, t: &str| rewrite(f, t).unwrap().unwrap();
        assert_eq!(ok("epoch_millis", "1700000000123"), "1700000000.123");
        assert_eq!(ok("epoch_micros", "1700000000123456"), "1700000000.123456");
        assert_eq!(
            ok("epoch_nanos", "1700000000123456789"),
            "1700000000.123456789"
        );
        assert_eq!(ok("epoch_millis", "5"), "0.005");
        assert_eq!(ok("epoch_millis", "-1500"), "-1.500");
        assert_eq!(ok("epoch_millis", "1700000000123.5"), "1700000000.1235");
        assert_eq!(rewrite("epoch_millis", "2024-01-01 00:00:00"), Ok(None));
        assert!(rewrite("epoch_millis", "1.7e12")
            .unwrap_err()
            .contains("exponent"));
        let f = TimeFormat::parse("epoch_seconds").unwrap();
        assert!(!f.applies_to(false) && !f.applies_to(true));
    }

    #[test]
    fn patterns_parse_strings_into_the_default_text() {
        let ok = |f: &str, t: &str| rewrite(f, t).unwrap().unwrap();
        assert_eq!(
            ok("%d/%m/%Y %H:%M:%S%.f", "05/12/2026 10:15:30.25"),
            "2026-12-05 10:15:30.250000000"
        );
        assert_eq!(
            ok("%d/%m/%Y %H:%M %z", "05/12/2026 10:15 +0200"),
            "2026-12-05 10:15:00.000000000+02:00"
        );
        assert_eq!(ok("%Y%m%d", "20261205"), "2026-12-05 00:00:00");
        let date = TimeFormat::parse("%d.%m.%Y").unwrap();
        assert_eq!(
            date.rewrite(b"05.12.2026", true),
            Ok(Some("2026-12-05".into()))
        );
        let e = rewrite("%d/%m/%Y", "2026-12-05").unwrap_err();
        assert!(
            e.contains("does not match the date-time format \"%d/%m/%Y\""),
            "{e}"
        );
        let f = TimeFormat::parse("%Y").unwrap();
        assert!(f.applies_to(true) && !f.applies_to(false));
    }

    #[test]
    fn formats_are_checked_when_read() {
        assert!(TimeFormat::parse("millis")
            .unwrap_err()
            .contains("epoch_millis"));
        assert!(TimeFormat::parse("%Q")
            .unwrap_err()
            .contains("not a valid strftime"));
    }
}
