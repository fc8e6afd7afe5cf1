//! The validating JSON scanner: values as byte ranges, strings by SWAR, iterative (no input
//! can overflow the stack), and the array and object iterators built on it.

use super::*;

/// Kind of a scanned JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Kind {
    #[default]
    Null,
    True,
    False,
    /// A number without fraction or exponent.
    Int,
    /// A number with fraction and/or exponent.
    Num,
    /// A string without escapes.
    Str,
    /// A string with backslash escapes.
    StrEsc,
    Arr,
    Obj,
}

impl Kind {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::True | Kind::False => "a boolean",
            Kind::Int | Kind::Num => "a number",
            Kind::Str | Kind::StrEsc => "a string",
            Kind::Arr => "an array",
            Kind::Obj => "an object",
        }
    }
}

/// A scanned JSON value: its complete text (with quotes for strings) and kind.
#[derive(Debug, Clone, Copy)]
pub(super) struct Val<'a> {
    pub(super) raw: &'a [u8],
    pub(super) kind: Kind,
}

impl<'a> Val<'a> {
    /// A string's text between the quotes, escapes as written.
    #[inline]
    pub(super) fn inner(&self) -> &'a [u8] {
        self.raw
            .get(1..self.raw.len().saturating_sub(1))
            .unwrap_or_default()
    }

    /// String content: borrowed when there are no escapes, else unescaped into `tmp`.
    #[inline]
    pub(super) fn str_bytes<'t>(&self, tmp: &'t mut Vec<u8>) -> Conv<&'t [u8]>
    where
        'a: 't,
    {
        let inner = self
            .raw
            .get(1..self.raw.len().saturating_sub(1))
            .unwrap_or_default();
        if self.kind == Kind::StrEsc {
            tmp.clear();
            unescape(inner, tmp).map_err(|why| fail(format!("{}: {why}", show(self.raw))))?;
            Ok(tmp.as_slice())
        } else {
            Ok(inner)
        }
    }
}

#[derive(Debug)]
pub(super) struct JsonErr {
    pub(super) pos: usize,
    pub(super) reason: &'static str,
}

pub(super) struct Scan<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
}

pub(super) const ONES: u64 = 0x0101_0101_0101_0101;
pub(super) const HIGH: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that is `"`, `\` or a control character. Only the lowest
/// flagged byte is guaranteed exact (borrows can flag bytes above a true match), which is all
/// the scanner uses.
#[inline(always)]
pub(super) fn string_specials(w: u64) -> u64 {
    let q = w ^ (ONES * b'"' as u64);
    let bs = w ^ (ONES * b'\\' as u64);
    let m_q = q.wrapping_sub(ONES) & !q;
    let m_bs = bs.wrapping_sub(ONES) & !bs;
    let m_ctl = w.wrapping_sub(ONES * 0x20) & !w;
    (m_q | m_bs | m_ctl) & HIGH
}

/// [`string_specials`] for 16 bytes with SSE2 (part of every x86_64 CPU, so no runtime check):
/// a bit per byte that is `"`, `\\` or a control character (exact, unlike the SWAR form), and a
/// bit per byte with its high bit set (non-ASCII).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn string_specials16(chunk: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is in the x86_64 baseline; the load is unaligned and reads exactly the 16
    // bytes `chunk` borrows.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // v <= 0x1f (unsigned): min(v, 0x1f) == v.
        let ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        let special = _mm_or_si128(_mm_or_si128(quote, backslash), ctl);
        (
            _mm_movemask_epi8(special) as u32,
            _mm_movemask_epi8(v) as u32,
        )
    }
}

impl<'a> Scan<'a> {
    #[inline]
    pub(super) fn new(b: &'a [u8]) -> Scan<'a> {
        Scan { b, pos: 0 }
    }

    #[inline]
    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[cold]
    pub(super) fn err(&self, pos: usize, reason: &'static str) -> JsonErr {
        JsonErr { pos, reason }
    }

    #[inline]
    pub(super) fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Scans a string starting at its opening quote; returns whether it has escapes.
    #[inline]
    pub(super) fn string(&mut self) -> Result<bool, JsonErr> {
        let b = self.b;
        let start = self.pos;
        let mut i = start + 1;
        let mut escaped = false;
        let mut non_ascii = false;
        loop {
            // 16 bytes at a time (SSE2), then 8, until something needs a look.
            'plain: {
                #[cfg(target_arch = "x86_64")]
                while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<16>) {
                    let (m, high) = string_specials16(chunk);
                    if m != 0 {
                        let n = m.trailing_zeros();
                        // Only bytes before the special one belong to the string for sure.
                        non_ascii |= high & ((1u32 << n) - 1) != 0;
                        i += n as usize;
                        break 'plain;
                    }
                    non_ascii |= high != 0;
                    i += 16;
                }
                while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
                    let w = u64::from_le_bytes(*chunk);
                    let m = string_specials(w);
                    if m != 0 {
                        let n = (m.trailing_zeros() / 8) as usize;
                        let before = if n == 0 {
                            0
                        } else {
                            w & (u64::MAX >> (64 - 8 * n as u32))
                        };
                        non_ascii |= before & HIGH != 0;
                        i += n;
                        break 'plain;
                    }
                    non_ascii |= w & HIGH != 0;
                    i += 8;
                }
            }
            let Some(&c) = b.get(i) else {
                return Err(self.err(start, "unterminated string"));
            };
            match c {
                b'"' => {
                    if non_ascii && std::str::from_utf8(&b[start + 1..i]).is_err() {
                        return Err(self.err(start, "string is not valid UTF-8"));
                    }
                    self.pos = i + 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let hex = b.get(i + 2..i + 6);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err(i, "invalid \\u escape"));
                            }
                            i += 6;
                        }
                        _ => return Err(self.err(i, "invalid escape in string")),
                    }
                }
                c if c < 0x20 => return Err(self.err(i, "control character in string")),
                c => {
                    non_ascii |= c >= 0x80;
                    i += 1;
                }
            }
        }
    }

    /// Scans a number; returns whether it is integral in form (no fraction or exponent).
    #[inline]
    pub(super) fn number(&mut self) -> Result<bool, JsonErr> {
        let b = self.b;
        let start = self.pos;
        let mut i = start;
        let digits = |i: &mut usize| {
            let s = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > s
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(self.err(start, "invalid number")),
        }
        let mut integral = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            integral = false;
            if !digits(&mut i) {
                return Err(self.err(i, "expected digits after the decimal point"));
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            integral = false;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return Err(self.err(i, "expected digits in the exponent"));
            }
        }
        self.pos = i;
        Ok(integral)
    }

    #[inline]
    pub(super) fn literal(&mut self, lit: &'static [u8], kind: Kind) -> Result<Kind, JsonErr> {
        if self.b.get(self.pos..self.pos + lit.len()) == Some(lit) {
            self.pos += lit.len();
            Ok(kind)
        } else {
            Err(self.err(self.pos, "invalid literal"))
        }
    }

    /// Scans (and fully validates) one value at the current position.
    #[inline(always)]
    pub(super) fn value(&mut self) -> Result<Kind, JsonErr> {
        match self.peek() {
            Some(b'"') => Ok(if self.string()? {
                Kind::StrEsc
            } else {
                Kind::Str
            }),
            Some(b'-' | b'0'..=b'9') => Ok(if self.number()? { Kind::Int } else { Kind::Num }),
            Some(b't') => self.literal(b"true", Kind::True),
            Some(b'f') => self.literal(b"false", Kind::False),
            Some(b'n') => self.literal(b"null", Kind::Null),
            Some(b'{') => self.container().map(|_| Kind::Obj),
            Some(b'[') => self.container().map(|_| Kind::Arr),
            Some(_) => Err(self.err(self.pos, "expected a JSON value")),
            None => Err(self.err(self.pos, "unexpected end of input")),
        }
    }

    /// `"key"` `:` with surrounding whitespace, inside an object being skipped.
    #[inline]
    pub(super) fn key_colon(&mut self) -> Result<(), JsonErr> {
        if self.peek() != Some(b'"') {
            return Err(self.err(self.pos, "expected a field name"));
        }
        self.string()?;
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.err(self.pos, "expected ':'"));
        }
        self.pos += 1;
        self.ws();
        Ok(())
    }

    /// Validates an object or array without recursion: the open containers are a bit stack
    /// (1 = object), so depth costs no stack frames.
    #[inline(never)]
    pub(super) fn container(&mut self) -> Result<(), JsonErr> {
        let mut stack = [0u64; MAX_JSON_DEPTH.div_ceil(64)];
        let mut depth = 0usize;
        let mut need_value = true;
        loop {
            if need_value {
                match self.peek() {
                    Some(c @ (b'{' | b'[')) => {
                        if depth >= MAX_JSON_DEPTH {
                            return Err(self.err(self.pos, "JSON nested too deeply"));
                        }
                        let is_obj = c == b'{';
                        let (w, bit) = (depth / 64, depth % 64);
                        if let Some(word) = stack.get_mut(w) {
                            if is_obj {
                                *word |= 1 << bit;
                            } else {
                                *word &= !(1 << bit);
                            }
                        }
                        depth += 1;
                        self.pos += 1;
                        self.ws();
                        let close = if is_obj { b'}' } else { b']' };
                        if self.peek() == Some(close) {
                            self.pos += 1;
                            depth -= 1;
                        } else {
                            if is_obj {
                                self.key_colon()?;
                            }
                            continue;
                        }
                    }
                    _ => {
                        self.value()?;
                    }
                }
            }
            // A value just ended: close containers or move to the next element.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let d = depth - 1;
                let is_obj = stack.get(d / 64).is_some_and(|w| w & (1 << (d % 64)) != 0);
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.ws();
                        if is_obj {
                            self.key_colon()?;
                        }
                        need_value = true;
                        break;
                    }
                    Some(b'}') if is_obj => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    Some(b']') if !is_obj => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    None => return Err(self.err(self.pos, "unexpected end of input")),
                    _ => {
                        return Err(self.err(
                            self.pos,
                            if is_obj {
                                "expected ',' or '}'"
                            } else {
                                "expected ',' or ']'"
                            },
                        ))
                    }
                }
            }
        }
    }
}

/// Appends the unescaped content of a (validated) JSON string body.
pub(super) fn unescape(s: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    let mut i = 0;
    while i < s.len() {
        let Some(off) = s[i..].iter().position(|&c| c == b'\\') else {
            out.extend_from_slice(&s[i..]);
            return Ok(());
        };
        out.extend_from_slice(&s[i..i + off]);
        i += off;
        let esc = s.get(i + 1).copied().ok_or("truncated escape")?;
        i += 2;
        let c = match esc {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = hex4(s.get(i..i + 4))?;
                i += 4;
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    if s.get(i..i + 2) != Some(b"\\u") {
                        return Err("unpaired surrogate in \\u escape");
                    }
                    let lo = hex4(s.get(i + 2..i + 6))?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err("unpaired surrogate in \\u escape");
                    }
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..0xE000).contains(&hi) {
                    return Err("unpaired surrogate in \\u escape");
                } else {
                    hi
                };
                let ch = char::from_u32(cp).ok_or("invalid \\u escape")?;
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            _ => return Err("invalid escape"),
        };
        out.push(c);
    }
    Ok(())
}

pub(super) fn hex4(h: Option<&[u8]>) -> Result<u32, &'static str> {
    let h = h.ok_or("truncated \\u escape")?;
    let mut v = 0u32;
    for &c in h {
        let d = (c as char).to_digit(16).ok_or("invalid \\u escape")?;
        v = v * 16 + d;
    }
    Ok(v)
}

/// Iterates the elements of a validated JSON array text.
pub(super) struct ArrayIter<'a> {
    pub(super) s: Scan<'a>,
    pub(super) first: bool,
}

impl<'a> ArrayIter<'a> {
    pub(super) fn new(raw: &'a [u8]) -> ArrayIter<'a> {
        let mut s = Scan::new(raw);
        s.pos = 1; // past '['
        ArrayIter { s, first: true }
    }

    pub(super) fn next_val(&mut self) -> Conv<Option<Val<'a>>> {
        let s = &mut self.s;
        s.ws();
        if s.peek() == Some(b']') {
            return Ok(None);
        }
        if !self.first {
            if s.peek() != Some(b',') {
                return Err(fail("malformed array".into()));
            }
            s.pos += 1;
            s.ws();
        }
        self.first = false;
        let start = s.pos;
        let kind = s
            .value()
            .map_err(|e| fail(format!("malformed array: {}", e.reason)))?;
        Ok(Some(Val {
            raw: s.b.get(start..s.pos).unwrap_or_default(),
            kind,
        }))
    }
}

/// Iterates the members of a validated JSON object text: (key as a string value, value).
pub(super) struct ObjectIter<'a> {
    pub(super) s: Scan<'a>,
    pub(super) first: bool,
}

impl<'a> ObjectIter<'a> {
    pub(super) fn new(raw: &'a [u8]) -> ObjectIter<'a> {
        let mut s = Scan::new(raw);
        s.pos = 1; // past '{'
        ObjectIter { s, first: true }
    }

    pub(super) fn next_pair(&mut self) -> Conv<Option<(Val<'a>, Val<'a>)>> {
        let s = &mut self.s;
        s.ws();
        if s.peek() == Some(b'}') {
            return Ok(None);
        }
        if !self.first {
            if s.peek() != Some(b',') {
                return Err(fail("malformed object".into()));
            }
            s.pos += 1;
            s.ws();
        }
        self.first = false;
        let bad = |e: JsonErr| fail(format!("malformed object: {}", e.reason));
        let kstart = s.pos;
        if s.peek() != Some(b'"') {
            return Err(fail("malformed object".into()));
        }
        let kesc = s.string().map_err(bad)?;
        let key = Val {
            raw: s.b.get(kstart..s.pos).unwrap_or_default(),
            kind: if kesc { Kind::StrEsc } else { Kind::Str },
        };
        s.ws();
        if s.peek() != Some(b':') {
            return Err(fail("malformed object".into()));
        }
        s.pos += 1;
        s.ws();
        let vstart = s.pos;
        let kind = s.value().map_err(bad)?;
        Ok(Some((
            key,
            Val {
                raw: s.b.get(vstart..s.pos).unwrap_or_default(),
                kind,
            },
        )))
    }
}
