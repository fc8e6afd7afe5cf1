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
                    // Copy the run up to the next byte that needs a look, at once.
                    let run = text[k..]
                        .iter()
                        .position(|&c| matches!(c, b'\\' | b'\n' | b'\r'))
                        .map_or(text.len(), |p| k + p);
                    self.buf.extend_from_slice(&text[k..run]);
                    k = run;
                    match text.get(k) {
                        None => break,
                        Some(b'\\') => {
                            let e = match text.get(k + 1) {
                                Some(&c) => match unescape(c) {
                                    Some(e) => e,
                                    None => {
                                        return Err(LineError {
                                            offset: i + k,
                                            reason: UNKNOWN_ESCAPE,
                                        })
                                    }
                                },
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
                        Some(_) => {
                            return Err(LineError {
                                offset: i + k,
                                reason: "a raw line break inside a field (write it as \\n or \\r; one message is one line)",
                            })
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

const UNKNOWN_ESCAPE: &str =
    "an unknown escape (\\t \\n \\r \\\\ \\0 \\b \\f \\' \\\" and \\N are known)";

/// The byte a backslash escape stands for in ClickHouse's text formats (`\t` `\n` `\r`
/// `\\` `\0` `\b` `\f` `\'` `\"`), `None` for an escape it does not know.
fn unescape(c: u8) -> Option<u8> {
    Some(match c {
        b't' => b'\t',
        b'n' => b'\n',
        b'r' => b'\r',
        b'\\' => b'\\',
        b'0' => 0,
        b'b' => 8,
        b'f' => 12,
        b'\'' => b'\'',
        b'"' => b'"',
        _ => return None,
    })
}

/// Rewrites a composite value written as ClickHouse writes one in text formats (`[1,2]`,
/// `['a','b\'c']`, `{'k':1}`, `('a',NULL)`, nested) as the JSON the row writer reads
/// (`[1,2]`, `["a","b'c"]`, `{"k":1}`, `["a",null]`), into `out`. Strings are single-quoted
/// with backslash escapes; unquoted, only numbers, `true`, `false`, `NULL`, `inf` and `nan`
/// (the last two as strings, which the float columns read). A map key becomes a JSON string
/// (its column converts it back). `Err` gives the byte and why.
pub fn composite_to_json(text: &[u8], out: &mut Vec<u8>) -> Result<(), LineError> {
    out.clear();
    let mut c = Composite { b: text, i: 0 };
    c.ws();
    c.value(out, 0)?;
    c.ws();
    if c.i != text.len() {
        return Err(c.err("characters after the value"));
    }
    Ok(())
}

/// How deep composites may nest in a field (as for JSON, a bound on the recursion).
const MAX_COMPOSITE_DEPTH: usize = 64;

struct Composite<'a> {
    b: &'a [u8],
    i: usize,
}

impl Composite<'_> {
    fn err(&self, reason: &'static str) -> LineError {
        LineError {
            offset: self.i,
            reason,
        }
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), LineError> {
        if depth > MAX_COMPOSITE_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.b.get(self.i) {
            Some(b'[') => self.items(b']', false, out, depth),
            Some(b'(') => self.items(b')', false, out, depth),
            Some(b'{') => self.items(b'}', true, out, depth),
            Some(b'\'') => self.string(out),
            Some(_) => self.bare(out),
            None => Err(self.err("a value is missing")),
        }
    }

    /// `open ... close`: a list or tuple as a JSON array, or (`pairs`) a map's `key:value`
    /// items as a JSON object.
    fn items(
        &mut self,
        close: u8,
        pairs: bool,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), LineError> {
        let (json_open, json_close) = if pairs { (b'{', b'}') } else { (b'[', b']') };
        self.i += 1;
        out.push(json_open);
        self.ws();
        if self.b.get(self.i) == Some(&close) {
            self.i += 1;
            out.push(json_close);
            return Ok(());
        }
        loop {
            if pairs {
                self.key(out, depth)?;
                self.ws();
                if self.b.get(self.i) != Some(&b':') {
                    return Err(self.err("expected ':' after a map key"));
                }
                self.i += 1;
                out.push(b':');
                self.ws();
            }
            self.value(out, depth + 1)?;
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    out.push(b',');
                    self.ws();
                }
                Some(&c) if c == close => {
                    self.i += 1;
                    out.push(json_close);
                    return Ok(());
                }
                _ if pairs => return Err(self.err("expected ',' or the end of the map")),
                _ => return Err(self.err("expected ',' or the end of the list")),
            }
        }
    }

    /// A map key, as a JSON string whatever it was written as.
    fn key(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), LineError> {
        let mark = out.len();
        self.value(out, depth + 1)?;
        match out.get(mark) {
            Some(b'"') => Ok(()),
            Some(b'[' | b'{') | None => Err(self.err("a map key must be a plain value")),
            Some(_) if out[mark..] == *b"null" => Err(self.err("a map key cannot be NULL")),
            Some(_) => {
                out.insert(mark, b'"');
                out.push(b'"');
                Ok(())
            }
        }
    }

    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), LineError> {
        self.i += 1;
        out.push(b'"');
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return Err(self.err("a quoted string is not closed"));
            };
            self.i += 1;
            let byte = match c {
                b'\'' => {
                    out.push(b'"');
                    return Ok(());
                }
                b'\\' => {
                    let Some(e) = self.b.get(self.i).and_then(|&c| unescape(c)) else {
                        return Err(self.err("an unknown escape in a quoted string"));
                    };
                    self.i += 1;
                    e
                }
                c => c,
            };
            match byte {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                c if c < 0x20 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
                c => out.push(c),
            }
        }
    }

    fn bare(&mut self, out: &mut Vec<u8>) -> Result<(), LineError> {
        let start = self.i;
        while matches!(self.b.get(self.i), Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.' | b'_'))
        {
            self.i += 1;
        }
        let token = &self.b[start..self.i];
        match token {
            b"" => Err(self.err("expected a value")),
            b"NULL" => {
                out.extend_from_slice(b"null");
                Ok(())
            }
            b"true" | b"false" => {
                out.extend_from_slice(token);
                Ok(())
            }
            b"inf" | b"-inf" | b"+inf" | b"nan" | b"-nan" | b"+nan" => {
                out.push(b'"');
                out.extend_from_slice(token);
                out.push(b'"');
                Ok(())
            }
            t if is_json_number(t) => {
                out.extend_from_slice(t);
                Ok(())
            }
            _ => Err(LineError {
                offset: start,
                reason: "an unquoted value that is not a number (quote strings with ')",
            }),
        }
    }
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(t: &[u8]) -> bool {
    let mut i = 0;
    let digits = |i: &mut usize| {
        let s = *i;
        while t.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > s
    };
    if t.first() == Some(&b'-') {
        i += 1;
    }
    if t.get(i) == Some(&b'0') {
        i += 1;
    } else if !digits(&mut i) {
        return false;
    }
    if t.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == t.len()
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
    fn composites_in_clickhouse_text_become_json() {
        let j = |t: &str| {
            let mut out = Vec::new();
            composite_to_json(t.as_bytes(), &mut out)
                .map(|()| String::from_utf8_lossy(&out).to_string())
        };
        assert_eq!(j("[1, 2,3]").unwrap(), "[1,2,3]");
        assert_eq!(j("[]").unwrap(), "[]");
        assert_eq!(
            j(r#"['a','b\'c', 'd"e\\f', 'x,y']"#).unwrap(),
            r#"["a","b'c","d\"e\\f","x,y"]"#
        );
        assert_eq!(j(r"['tab\tend']").unwrap(), r#"["tab\u0009end"]"#);
        assert_eq!(j("[[1],[],[2,3]]").unwrap(), "[[1],[],[2,3]]");
        assert_eq!(j("{'k':1, 'l': NULL}").unwrap(), r#"{"k":1,"l":null}"#);
        assert_eq!(j("{1:'a',22:'b'}").unwrap(), r#"{"1":"a","22":"b"}"#);
        assert_eq!(
            j("('a', -1.5e3, true, NULL)").unwrap(),
            r#"["a",-1.5e3,true,null]"#
        );
        assert_eq!(j("[inf,-inf,nan]").unwrap(), r#"["inf","-inf","nan"]"#);
        assert_eq!(
            j("['2024-01-01 00:00:00']").unwrap(),
            r#"["2024-01-01 00:00:00"]"#
        );
        for (bad, at, why) in [
            ("[1,2", 4, "end of the list"),
            ("['a", 3, "not closed"),
            ("[abc]", 1, "not a number"),
            ("[01]", 1, "not a number"),
            ("[1] x", 4, "after the value"),
            ("{NULL:1}", 5, "cannot be NULL"),
            ("{[1]:1}", 4, "plain value"),
            ("{'k' 1}", 5, "expected ':'"),
            ("['\\q']", 3, "unknown escape"),
        ] {
            let e = j(bad).unwrap_err();
            assert_eq!(
                (e.offset, e.reason.contains(why)),
                (at, true),
                "{bad}: {e:?}"
            );
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(j(&deep).unwrap_err().reason.contains("too deeply"));
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
