//! CSV and TSV messages: one line a message, split into fields by position.
//!
//! CSV follows RFC 4180: fields are separated by commas; a field that starts with a double
//! quote runs to the next lone quote (`""` inside it stands for one quote) and may hold
//! commas and line breaks; an unquoted field holds neither a quote nor a line break. TSV
//! follows ClickHouse's TabSeparated: fields are separated by tabs, with the escapes `\t`
//! `\n` `\r` `\\` `\0` `\b` `\f` `\'` `\"` and no raw line break. In both an unquoted `\N`
//! is NULL, and one line break at the end (`\n`, or `\r\n` in CSV) closes the line. Anything
//! else is an error naming the byte where it was found: a line is never guessed at.

/// Which delimited format a line is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimited {
    Csv,
    Tsv,
}

/// Why a line could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineError {
    /// Byte offset in the message.
    pub offset: usize,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy)]
struct Field {
    start: usize,
    end: usize,
    null: bool,
}

/// The fields of one line, unquoted and unescaped into one buffer reused line after line.
#[derive(Debug, Default)]
pub struct Line {
    buf: Vec<u8>,
    fields: Vec<Field>,
}

impl Line {
    pub fn new() -> Line {
        Line::default()
    }

    /// How many fields the line has.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Field `i`: `None` past the end, `Some(None)` for NULL (`\N`), else its bytes.
    pub fn get(&self, i: usize) -> Option<Option<&[u8]>> {
        let f = self.fields.get(i)?;
        Some((!f.null).then(|| self.buf.get(f.start..f.end).unwrap_or_default()))
    }

    /// Splits `msg` (one line) into fields, replacing what the line held before.
    pub fn split(&mut self, format: Delimited, msg: &[u8]) -> Result<(), LineError> {
        self.buf.clear();
        self.fields.clear();
        let body = match format {
            Delimited::Csv => msg
                .strip_suffix(b"\r\n")
                .or_else(|| msg.strip_suffix(b"\n"))
                .unwrap_or(msg),
            Delimited::Tsv => msg.strip_suffix(b"\n").unwrap_or(msg),
        };
        match format {
            Delimited::Csv => self.split_csv(body),
            Delimited::Tsv => self.split_tsv(body),
        }
    }

    fn push(&mut self, start: usize, null: bool) {
        self.fields.push(Field {
            start,
            end: self.buf.len(),
            null,
        });
    }

    fn split_csv(&mut self, b: &[u8]) -> Result<(), LineError> {
        let err = |offset, reason| Err(LineError { offset, reason });
        let mut i = 0;
        loop {
            let start = self.buf.len();
            if b.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return err(i, "a quoted field is not closed"),
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => {
                            self.buf.push(b'"');
                            i += 2;
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            self.buf.push(c);
                            i += 1;
                        }
                    }
                }
                self.push(start, false);
                match b.get(i) {
                    None => return Ok(()),
                    Some(b',') => i += 1,
                    Some(_) => return err(i, "characters after a closing quote"),
                }
            } else {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b',')
                    .map_or(b.len(), |p| i + p);
                let text = &b[i..end];
                if let Some(p) = text.iter().position(|&c| c == b'"') {
                    return err(
                        i + p,
                        "a quote inside an unquoted field (quote the whole field)",
                    );
                }
                if let Some(p) = text.iter().position(|&c| c == b'\n' || c == b'\r') {
                    return err(
                        i + p,
                        "a line break inside an unquoted field (one message is one line)",
                    );
                }
                let null = text == b"\\N";
                if !null {
                    self.buf.extend_from_slice(text);
                }
                self.push(start, null);
                if end == b.len() {
                    return Ok(());
                }
                i = end + 1;
            }
        }
    }

    fn split_tsv(&mut self, b: &[u8]) -> Result<(), LineError> {
        let mut i = 0;
        loop {
            let start = self.buf.len();
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\t')
                .map_or(b.len(), |p| i + p);
            let text = &b[i..end];
            let null = text == b"\\N";
            if !null {
                let mut k = 0;
                while k < text.len() {
                    let c = text[k];
                    match c {
                        b'\\' => {
                            let e = match text.get(k + 1) {
                                Some(b't') => b'\t',
                                Some(b'n') => b'\n',
                                Some(b'r') => b'\r',
                                Some(b'\\') => b'\\',
                                Some(b'0') => 0,
                                Some(b'b') => 8,
                                Some(b'f') => 12,
                                Some(b'\'') => b'\'',
                                Some(b'"') => b'"',
                                Some(_) => {
                                    return Err(LineError {
                                        offset: i + k,
                                        reason: "an unknown escape (\\t \\n \\r \\\\ \\0 \\b \\f \\' \\\" and \\N are known)",
                                    })
                                }
                                None => {
                                    return Err(LineError {
                                        offset: i + k,
                                        reason: "a backslash at the end of a field",
                                    })
                                }
                            };
                            self.buf.push(e);
                            k += 2;
                        }
                        b'\n' | b'\r' => {
                            return Err(LineError {
                                offset: i + k,
                                reason: "a raw line break inside a field (write it as \\n or \\r; one message is one line)",
                            })
                        }
                        c => {
                            self.buf.push(c);
                            k += 1;
                        }
                    }
                }
            }
            self.push(start, null);
            if end == b.len() {
                return Ok(());
            }
            i = end + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(format: Delimited, msg: &str) -> Result<Vec<Option<String>>, LineError> {
        let mut l = Line::new();
        l.split(format, msg.as_bytes())?;
        Ok((0..l.len())
            .map(|i| {
                l.get(i)
                    .expect("in range")
                    .map(|b| String::from_utf8_lossy(b).to_string())
            })
            .collect())
    }

    fn s(v: &[&str]) -> Vec<Option<String>> {
        v.iter()
            .map(|x| (*x != "NULL").then(|| x.to_string()))
            .collect()
    }

    #[test]
    fn csv_fields_quotes_nulls_and_line_ends() {
        use Delimited::Csv;
        assert_eq!(fields(Csv, "1,abc,2.5").unwrap(), s(&["1", "abc", "2.5"]));
        assert_eq!(fields(Csv, "1,abc\n").unwrap(), s(&["1", "abc"]));
        assert_eq!(fields(Csv, "1,abc\r\n").unwrap(), s(&["1", "abc"]));
        assert_eq!(fields(Csv, "").unwrap(), s(&[""]));
        assert_eq!(fields(Csv, ",,").unwrap(), s(&["", "", ""]));
        assert_eq!(
            fields(Csv, "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"\"").unwrap(),
            s(&["a,b", "say \"hi\"", "two\nlines", ""])
        );
        assert_eq!(
            fields(Csv, "\\N,\"\\N\",x").unwrap(),
            s(&["NULL", "\\N", "x"])
        );
        assert_eq!(fields(Csv, "a,\"b\"").unwrap(), s(&["a", "b"]));

        let e = |m: &str| fields(Csv, m).unwrap_err();
        assert_eq!(e("a,\"b").offset, 4);
        assert!(e("a,\"b").reason.contains("not closed"));
        assert_eq!(e("\"a\"x,b").offset, 3);
        assert!(e("\"a\"x,b").reason.contains("after a closing quote"));
        assert_eq!(e("ab\"c").offset, 2);
        assert!(e("a\nb,c").reason.contains("line break"));
        // Only one line break closes the line.
        assert!(e("a,b\n\n").reason.contains("line break"));
    }

    #[test]
    fn tsv_fields_escapes_nulls_and_line_ends() {
        use Delimited::Tsv;
        assert_eq!(
            fields(Tsv, "1\tabc\t2.5\n").unwrap(),
            s(&["1", "abc", "2.5"])
        );
        assert_eq!(
            fields(Tsv, "a\\tb\tc\\nd\\\\e\t\\N\t\\'\\\"\\0").unwrap(),
            s(&["a\tb", "c\nd\\e", "NULL", "'\"\0"])
        );
        assert_eq!(fields(Tsv, "\t").unwrap(), s(&["", ""]));
        assert_eq!(fields(Tsv, "a,b \"c\"").unwrap(), s(&["a,b \"c\""]));
        let e = |m: &str| fields(Tsv, m).unwrap_err();
        assert_eq!(e("ab\\x").offset, 2);
        assert!(e("ab\\x").reason.contains("unknown escape"));
        assert!(e("ab\\").reason.contains("backslash at the end"));
        assert!(e("a\nb").reason.contains("line break"));
        assert!(e("a\r\n").reason.contains("line break"));
    }

    #[test]
    fn a_line_reused_forgets_the_previous_one() {
        let mut l = Line::new();
        l.split(Delimited::Csv, b"a,b,c").unwrap();
        l.split(Delimited::Csv, b"xyz").unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l.get(0), Some(Some(&b"xyz"[..])));
        assert_eq!(l.get(1), None);
    }
}
