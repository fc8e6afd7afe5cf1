//! ClickHouse column types: parsing the spelling that `system.columns.type` prints, and printing
//! it back.
//!
//! Guarantees:
//! - [`ChType::parse`] accepts exactly the canonical spellings ClickHouse prints (plus
//!   insignificant whitespace, `Decimal32/64/128/256(S)`, `Decimal(P)`, `Enum` values without an
//!   explicit `= n`, and `SimpleAggregateFunction(f, T)`, which is read as `T` because that is
//!   its storage and wire format).
//! - It never panics and never recurses deeper than [`MAX_TYPE_DEPTH`], whatever the input.
//! - `JSON` (with or without parameters) is kept with its parameters as written: its values
//!   are sent as JSON text, which the server parses (see [`ChType::Json`]).
//! - The geo types (`Point` ... `MultiPolygon`) are the tuples and arrays they are stored as,
//!   printed by their names ([`ChType::Geo`]).
//! - `Variant(...)` keeps its types in ClickHouse's numbering and the order ClickHouse tries
//!   them in when it reads text ([`ChType::Variant`]).
//! - Types sluice cannot encode (Object, Dynamic, Geometry, AggregateFunction,
//!   Nothing, Interval*, Nested, ...) and unknown names give [`TypeError::Unsupported`];
//!   malformed text gives [`TypeError::Syntax`] with the byte offset of the problem.
//! - `Display` prints the canonical ClickHouse spelling, and `ChType::parse(&t.to_string())`
//!   gives back `t` for every value the parser can produce.

use std::fmt;

use chrono_tz::Tz;

/// Nesting limit for type expressions. Real schemas nest a handful of levels; the limit only
/// exists so that a hostile string cannot overflow the stack of the recursive parser.
pub const MAX_TYPE_DEPTH: usize = 32;

/// ClickHouse refuses `FixedString(N)` above this size; we do too, so that a bogus schema
/// cannot make every row allocate gigabytes of padding.
pub const MAX_FIXED_STRING: usize = 0xFF_FFFF;

/// A ClickHouse column type that sluice can encode into RowBinary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChType {
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    UInt128,
    UInt256,
    Int8,
    Int16,
    Int32,
    Int64,
    Int128,
    Int256,
    Float32,
    Float64,
    /// The upper 16 bits of a Float32 (ClickHouse 24.11+).
    BFloat16,
    Bool,
    /// `Decimal(P, S)`: 1 <= P <= 76, 0 <= S <= P. `Decimal32(S)` is `Decimal(9, S)`,
    /// `Decimal64(S)` is P = 18, `Decimal128(S)` is P = 38 and `Decimal256(S)` is P = 76.
    Decimal {
        precision: u8,
        scale: u8,
    },
    String,
    /// `FixedString(N)`, 1 <= N <= [`MAX_FIXED_STRING`].
    FixedString(usize),
    Uuid,
    IPv4,
    IPv6,
    Date,
    Date32,
    DateTime {
        tz: Option<Tz>,
    },
    /// A signed time of day or duration in seconds, -999:59:59 to 999:59:59 (ClickHouse 25.6+).
    Time,
    /// `Time64(P)`, 0 <= P <= 9: [`ChType::Time`] in ticks of 10^-P seconds.
    Time64 {
        precision: u8,
    },
    /// `DateTime64(P[, 'tz'])`, 0 <= P <= 9.
    DateTime64 {
        precision: u8,
        tz: Option<Tz>,
    },
    Enum8(Vec<(String, i8)>),
    Enum16(Vec<(String, i16)>),
    Nullable(Box<ChType>),
    LowCardinality(Box<ChType>),
    Array(Box<ChType>),
    Map(Box<ChType>, Box<ChType>),
    /// Elements with their optional names (`Tuple(a UInt8, b String)` or `Tuple(UInt8, String)`).
    Tuple(Vec<(Option<String>, ChType)>),
    /// `JSON` and its parameters exactly as the server prints them (`""` or
    /// `"(max_dynamic_paths = 10, a.b UInt32)"`): sluice does not read them. A value is sent
    /// as the text of a JSON object (`input_format_binary_read_json_as_string`), and the
    /// server applies the parameters (typed paths, SKIP) as it parses it.
    Json(String),
    /// A geo type, printed by its name and stored and sent as the tuples and arrays it stands
    /// for (the second field): `Point` is `Tuple(Float64, Float64)` (x, y), `Ring` and
    /// `LineString` `Array(Point)`, `MultiLineString` `Array(LineString)`, `Polygon`
    /// `Array(Ring)` (the outer ring, then holes), `MultiPolygon` `Array(Polygon)`.
    Geo(Geo, Box<ChType>),
    /// `Variant(T1, ..., Tn)`: `variants` in the order ClickHouse numbers them (sorted by
    /// name, as it prints them), a value's RowBinary being that number and the value, 255 for
    /// NULL. `order` is the order in which a value is tried against them: ClickHouse's own
    /// for text input ([`variant_try_order`]), so that a value lands in the variant its
    /// JSONEachRow would choose.
    Variant {
        variants: Vec<ChType>,
        order: Vec<u8>,
    },
    /// `Dynamic` or `Dynamic(max_types=N)`: a value is sent with the type ClickHouse's
    /// JSONEachRow infers for it (see `decode::json`), in the binary type encoding. `tz` is
    /// the server's time zone, in which inferred date-times are read: not part of the type,
    /// set by the planner ([`ChType::with_server_time_zone`]).
    Dynamic {
        max_types: Option<u8>,
        tz: Option<Tz>,
    },
    /// `QBit(T, N)`: a vector of exactly N BFloat16, Float32 or Float64 values, sent as the
    /// array it is in RowBinary (the server bit-slices it as it stores it). `array` is
    /// `Array(T)`.
    QBit {
        array: Box<ChType>,
        n: u32,
    },
    /// `Nested(a T, b U)` as a table created with `flatten_nested = 0` keeps it: stored and
    /// sent as `Array(Tuple(a T, b U))`, the field held in `0`.
    Nested(Box<ChType>),
}

/// The order in which ClickHouse tries a Variant's types when it reads a value from text
/// (`SerializationVariant::getVariantsDeserializeTextOrder`): the most deeply nested types
/// first, then by a priority per type (containers, enums, UUID and IPs, integers small to
/// large, decimals, floats, dates, strings last), then Nullable/LowCardinality first. Ties
/// keep the variants' order.
pub fn variant_try_order(variants: &[ChType]) -> Vec<u8> {
    let mut order: Vec<(usize, (usize, usize, usize))> = variants
        .iter()
        .enumerate()
        .map(|(i, t)| (i, text_priority(t, 0, 0)))
        .collect();
    order.sort_by_key(|b| std::cmp::Reverse(b.1));
    order.into_iter().map(|(i, _)| i as u8).collect()
}

/// ClickHouse's text-deserialization priority of a type: (nesting depth, priority, depth of
/// Nullable and LowCardinality).
fn text_priority(ty: &ChType, depth: usize, simple: usize) -> (usize, usize, usize) {
    // ClickHouse's list, highest first; a type's priority is the list's length minus its place.
    const LIST: usize = 33;
    let rank = |place: usize| LIST - place;
    let leaf = |place: usize| (depth, rank(place), simple);
    match ty {
        ChType::Nullable(t) | ChType::LowCardinality(t) => text_priority(t, depth, simple + 1),
        ChType::Array(t) => {
            let (d, p, s) = text_priority(t, depth + 1, simple);
            (d, p + rank(0), s)
        }
        ChType::Tuple(elems) => {
            let mut out = (0, rank(1), 0);
            for (_, t) in elems {
                let (d, p, s) = text_priority(t, depth + 1, simple);
                out = (out.0.max(d), out.1 + p, out.2.max(s));
            }
            out
        }
        ChType::Map(k, v) => {
            let (kd, kp, ks) = text_priority(k, depth + 1, simple);
            let (vd, vp, vs) = text_priority(v, depth + 1, simple);
            (kd.max(vd), kp + vp + rank(2), ks.max(vs))
        }
        // Point is a Tuple to ClickHouse, the others Arrays.
        ChType::Geo(_, storage) => text_priority(storage, depth, simple),
        ChType::Variant { variants, .. } => variants
            .iter()
            .map(|t| text_priority(t, depth, simple))
            .fold((0, 0, 0), |a, b| (a.0.max(b.0), a.1.max(b.1), a.2.max(b.2))),
        ChType::Bool => (depth, rank(9) + 1, simple),
        ChType::Enum8(_) => leaf(4),
        ChType::Enum16(_) => leaf(5),
        ChType::Uuid => leaf(6),
        ChType::IPv4 => leaf(7),
        ChType::IPv6 => leaf(8),
        ChType::Int8 => leaf(9),
        ChType::UInt8 => leaf(10),
        ChType::Int16 => leaf(11),
        ChType::UInt16 => leaf(12),
        ChType::Int32 => leaf(13),
        ChType::UInt32 => leaf(14),
        ChType::Int64 => leaf(15),
        ChType::UInt64 => leaf(16),
        ChType::Int128 => leaf(17),
        ChType::UInt128 => leaf(18),
        ChType::Int256 => leaf(19),
        ChType::UInt256 => leaf(20),
        ChType::Decimal { precision, .. } => leaf(match precision {
            0..=9 => 21,
            10..=18 => 22,
            19..=38 => 23,
            _ => 24,
        }),
        ChType::Float32 => leaf(25),
        ChType::Float64 => leaf(26),
        ChType::Date => leaf(27),
        ChType::Date32 => leaf(28),
        ChType::DateTime { .. } => leaf(29),
        ChType::DateTime64 { .. } => leaf(30),
        ChType::FixedString(_) => leaf(31),
        ChType::String => leaf(32),
        // Not in ClickHouse's list: tried last.
        ChType::BFloat16
        | ChType::Time
        | ChType::Time64 { .. }
        | ChType::Json(_)
        | ChType::Dynamic { .. }
        | ChType::QBit { .. } => (depth, 0, simple),
        ChType::Nested(storage) => text_priority(storage, depth, simple),
    }
}

/// The geo types ClickHouse stores as tuples and arrays of points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Geo {
    Point,
    MultiPoint,
    Ring,
    LineString,
    MultiLineString,
    Polygon,
    MultiPolygon,
    /// Any one of the others: a Variant of them.
    Geometry,
}

impl Geo {
    fn of(name: &str) -> Option<Geo> {
        Some(match name {
            "Point" => Geo::Point,
            "MultiPoint" => Geo::MultiPoint,
            "Ring" => Geo::Ring,
            "LineString" => Geo::LineString,
            "MultiLineString" => Geo::MultiLineString,
            "Polygon" => Geo::Polygon,
            "MultiPolygon" => Geo::MultiPolygon,
            "Geometry" => Geo::Geometry,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Geo::Point => "Point",
            Geo::MultiPoint => "MultiPoint",
            Geo::Ring => "Ring",
            Geo::LineString => "LineString",
            Geo::MultiLineString => "MultiLineString",
            Geo::Polygon => "Polygon",
            Geo::MultiPolygon => "MultiPolygon",
            Geo::Geometry => "Geometry",
        }
    }

    /// The type it is stored as.
    fn storage(self) -> ChType {
        let array = |t: ChType| ChType::Array(Box::new(t));
        match self {
            Geo::Point => ChType::Tuple(vec![(None, ChType::Float64), (None, ChType::Float64)]),
            Geo::MultiPoint | Geo::Ring | Geo::LineString => array(Geo::Point.storage()),
            Geo::MultiLineString => array(Geo::LineString.storage()),
            Geo::Polygon => array(Geo::Ring.storage()),
            Geo::MultiPolygon => array(Geo::Polygon.storage()),
            // Numbered by name, as ClickHouse numbers a Variant's types; tried deepest first
            // (a ring and a line string are the same array of points: LineString, the first
            // by name, takes it, as on the server).
            Geo::Geometry => {
                let variants: Vec<ChType> = [
                    Geo::LineString,
                    Geo::MultiLineString,
                    Geo::MultiPolygon,
                    Geo::Point,
                    Geo::Polygon,
                    Geo::Ring,
                ]
                .into_iter()
                .map(|g| ChType::Geo(g, Box::new(g.storage())))
                .collect();
                let order = variant_try_order(&variants);
                ChType::Variant { variants, order }
            }
        }
    }
}

/// Why a type string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// A well-formed type that sluice cannot encode (or does not know). `ty` is the
    /// offending (sub-)type as written, e.g. `Object('json')` inside `Array(Object('json'))`.
    #[error("unsupported ClickHouse type {ty}: {}", unsupported_reason(ty))]
    Unsupported { ty: String },
    /// The text is not a valid type expression.
    #[error("invalid ClickHouse type {input:?}: {message} at byte {pos}")]
    Syntax {
        input: String,
        pos: usize,
        message: String,
    },
    /// `DateTime('Mars/Olympus')`: the zone is not in the IANA database we ship.
    #[error("unknown time zone {tz:?} in ClickHouse type {input:?}")]
    UnknownTimeZone { input: String, tz: String },
}

fn unsupported_reason(ty: &str) -> &'static str {
    let name = ty.split('(').next().unwrap_or(ty).trim();
    match name {
        "Object" => "the deprecated Object('json') type is not supported; use a JSON column (or store the raw JSON in a String column)",
        "AggregateFunction" => "aggregate states cannot be produced from messages; insert into the source table of the materialized view instead",
        "Nothing" => "Nothing holds no values (it is the type of a bare NULL literal)",
        n if n.starts_with("Interval") => "Interval types cannot be stored in tables",
        _ => "not a type sluice knows how to encode",
    }
}

impl ChType {
    /// Parses a type exactly as ClickHouse prints it in `system.columns.type`.
    pub fn parse(s: &str) -> Result<ChType, TypeError> {
        let mut p = Parser {
            s,
            pos: 0,
            depth: 0,
        };
        let ty = p.ty()?;
        p.ws();
        if p.pos != s.len() {
            return Err(p.syntax(p.pos, "unexpected text after the type"));
        }
        Ok(ty)
    }

    /// True when the type is or holds a `JSON` (sent as text: see [`ChType::Json`]).
    pub fn contains_json(&self) -> bool {
        self.contains(&|t| matches!(t, ChType::Json(_)))
    }

    /// True when the type is or holds a `Dynamic`.
    pub fn contains_dynamic(&self) -> bool {
        self.contains(&|t| matches!(t, ChType::Dynamic { .. }))
    }

    fn contains(&self, is: &dyn Fn(&ChType) -> bool) -> bool {
        is(self)
            || match self {
                ChType::Nullable(t) | ChType::LowCardinality(t) | ChType::Array(t) => {
                    t.contains(is)
                }
                ChType::Map(k, v) => k.contains(is) || v.contains(is),
                ChType::Tuple(elems) => elems.iter().any(|(_, t)| t.contains(is)),
                ChType::Variant { variants, .. } => variants.iter().any(|t| t.contains(is)),
                ChType::Nested(t) => t.contains(is),
                _ => false,
            }
    }

    /// The type with every `Dynamic` in it reading inferred date-times in `tz`, the server's
    /// time zone (where ClickHouse's own inference reads them).
    pub fn with_server_time_zone(mut self, tz: Option<Tz>) -> ChType {
        fn set(t: &mut ChType, tz: Option<Tz>) {
            match t {
                ChType::Dynamic { tz: z, .. } => *z = tz,
                ChType::Nullable(t) | ChType::LowCardinality(t) | ChType::Array(t) => set(t, tz),
                ChType::Map(k, v) => {
                    set(k, tz);
                    set(v, tz);
                }
                ChType::Tuple(elems) => elems.iter_mut().for_each(|(_, t)| set(t, tz)),
                ChType::Variant { variants, .. } => variants.iter_mut().for_each(|t| set(t, tz)),
                ChType::Nested(t) => set(t, tz),
                _ => {}
            }
        }
        set(&mut self, tz);
        self
    }

    /// True when the column accepts NULL: `Nullable(T)` or `LowCardinality(Nullable(T))`.
    pub fn is_nullable(&self) -> bool {
        match self {
            ChType::Nullable(_) | ChType::Variant { .. } | ChType::Dynamic { .. } => true,
            ChType::LowCardinality(inner) | ChType::Geo(_, inner) => inner.is_nullable(),
            _ => false,
        }
    }

    /// The type with `LowCardinality` removed: in RowBinary `LowCardinality(T)` is sent as `T`.
    pub fn strip_low_cardinality(&self) -> &ChType {
        match self {
            ChType::LowCardinality(inner) => inner.strip_low_cardinality(),
            other => other,
        }
    }
}

impl std::str::FromStr for ChType {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChType::parse(s)
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn syntax(&self, pos: usize, message: impl Into<String>) -> TypeError {
        TypeError::Syntax {
            input: self.s.to_owned(),
            pos,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), TypeError> {
        if self.eat(c) {
            Ok(())
        } else {
            let found = match self.peek() {
                Some(b) => format!("found {:?}", b as char),
                None => "found end of input".to_owned(),
            };
            Err(self.syntax(self.pos, format!("expected '{}', {found}", c as char)))
        }
    }

    fn ident(&mut self) -> Result<&'a str, TypeError> {
        self.ws();
        let start = self.pos;
        let b = self.s.as_bytes();
        while let Some(&c) = b.get(self.pos) {
            let ok =
                c.is_ascii_alphabetic() || c == b'_' || (self.pos > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.syntax(start, "expected a type name"));
        }
        Ok(&self.s[start..self.pos])
    }

    /// An optionally signed decimal integer literal.
    fn int(&mut self) -> Result<i64, TypeError> {
        self.ws();
        let start = self.pos;
        let b = self.s.as_bytes();
        if matches!(b.get(self.pos), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        while b.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.s[start..self.pos]
            .parse::<i64>()
            .map_err(|_| self.syntax(start, "expected an integer"))
    }

    /// An unsigned integer argument in `lo..=hi`.
    fn arg(&mut self, what: &str, lo: i64, hi: i64) -> Result<i64, TypeError> {
        self.ws();
        let start = self.pos;
        let v = self.int()?;
        if v < lo || v > hi {
            return Err(self.syntax(start, format!("{what} {v} is outside {lo}..={hi}")));
        }
        Ok(v)
    }

    /// A quoted literal: `'...'` (strings), or `` `...` `` / `"..."` (identifiers), with the
    /// backslash escapes ClickHouse writes and doubled quotes.
    fn quoted(&mut self, q: u8) -> Result<String, TypeError> {
        self.ws();
        let start = self.pos;
        if self.peek() != Some(q) {
            return Err(self.syntax(start, format!("expected a {}-quoted literal", q as char)));
        }
        self.pos += 1;
        let b = self.s.as_bytes();
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = b.get(self.pos) else {
                return Err(self.syntax(start, "unterminated quoted literal"));
            };
            self.pos += 1;
            if c == q {
                // SQL style doubled quote stands for one quote character.
                if b.get(self.pos) == Some(&q) {
                    self.pos += 1;
                    out.push(q);
                    continue;
                }
                break;
            }
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let Some(&e) = b.get(self.pos) else {
                return Err(self.syntax(start, "unterminated quoted literal"));
            };
            self.pos += 1;
            match e {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'0' => out.push(0),
                b'b' => out.push(8),
                b'f' => out.push(12),
                b'a' => out.push(7),
                b'v' => out.push(11),
                b'e' => out.push(27),
                b'x' => {
                    let hex = b
                        .get(self.pos..self.pos + 2)
                        .and_then(|h| std::str::from_utf8(h).ok());
                    let v = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                    let Some(v) = v else {
                        return Err(self.syntax(self.pos, "expected two hex digits after \\x"));
                    };
                    self.pos += 2;
                    out.push(v);
                }
                // `\'`, `\\`, `\"`, `` \` `` and any other escaped character stand for themselves.
                other => out.push(other),
            }
        }
        String::from_utf8(out).map_err(|_| self.syntax(start, "quoted literal is not valid UTF-8"))
    }

    fn tz(&mut self) -> Result<Tz, TypeError> {
        let name = self.quoted(b'\'')?;
        name.parse::<Tz>().map_err(|_| TypeError::UnknownTimeZone {
            input: self.s.to_owned(),
            tz: name,
        })
    }

    /// Skips a balanced argument list starting at `(`, honouring quotes, so that an
    /// unsupported type can be reported as written.
    fn skip_args(&mut self) -> Result<(), TypeError> {
        self.ws();
        if self.peek() != Some(b'(') {
            return Ok(());
        }
        let start = self.pos;
        let b = self.s.as_bytes();
        let mut depth = 0usize;
        while let Some(&c) = b.get(self.pos) {
            match c {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                b'\'' | b'`' | b'"' => {
                    self.quoted(c)?;
                    continue;
                }
                _ => {}
            }
            self.pos += 1;
        }
        Err(self.syntax(start, "unbalanced parentheses"))
    }

    fn no_args(&mut self, name: &str) -> Result<(), TypeError> {
        self.ws();
        if self.peek() == Some(b'(') {
            return Err(self.syntax(self.pos, format!("{name} takes no arguments")));
        }
        Ok(())
    }

    fn ty(&mut self) -> Result<ChType, TypeError> {
        self.depth += 1;
        if self.depth > MAX_TYPE_DEPTH {
            return Err(self.syntax(
                self.pos,
                format!("type nested deeper than {MAX_TYPE_DEPTH} levels"),
            ));
        }
        let r = self.ty_inner();
        self.depth -= 1;
        r
    }

    fn ty_inner(&mut self) -> Result<ChType, TypeError> {
        self.ws();
        let start = self.pos;
        let name = self.ident()?;
        let simple = match name {
            "UInt8" => Some(ChType::UInt8),
            "UInt16" => Some(ChType::UInt16),
            "UInt32" => Some(ChType::UInt32),
            "UInt64" => Some(ChType::UInt64),
            "UInt128" => Some(ChType::UInt128),
            "UInt256" => Some(ChType::UInt256),
            "Int8" => Some(ChType::Int8),
            "Int16" => Some(ChType::Int16),
            "Int32" => Some(ChType::Int32),
            "Int64" => Some(ChType::Int64),
            "Int128" => Some(ChType::Int128),
            "Int256" => Some(ChType::Int256),
            "Float32" => Some(ChType::Float32),
            "BFloat16" => Some(ChType::BFloat16),
            "Time" => Some(ChType::Time),
            "Float64" => Some(ChType::Float64),
            "Bool" | "Boolean" => Some(ChType::Bool),
            "String" => Some(ChType::String),
            "UUID" => Some(ChType::Uuid),
            "IPv4" => Some(ChType::IPv4),
            "IPv6" => Some(ChType::IPv6),
            "Date" => Some(ChType::Date),
            "Date32" => Some(ChType::Date32),
            _ => None,
        };
        if let Some(t) = simple {
            self.no_args(name)?;
            return Ok(t);
        }
        if let Some(g) = Geo::of(name) {
            self.no_args(name)?;
            return Ok(ChType::Geo(g, Box::new(g.storage())));
        }
        match name {
            "Decimal" => {
                self.expect(b'(')?;
                let p = self.arg("Decimal precision", 1, 76)?;
                let s = if self.eat(b',') {
                    self.ws();
                    let at = self.pos;
                    let s = self.arg("Decimal scale", 0, 76)?;
                    if s > p {
                        return Err(
                            self.syntax(at, format!("Decimal scale {s} exceeds precision {p}"))
                        );
                    }
                    s
                } else {
                    0
                };
                self.expect(b')')?;
                Ok(ChType::Decimal {
                    precision: p as u8,
                    scale: s as u8,
                })
            }
            "Decimal32" | "Decimal64" | "Decimal128" | "Decimal256" => {
                let p: i64 = match name {
                    "Decimal32" => 9,
                    "Decimal64" => 18,
                    "Decimal128" => 38,
                    _ => 76,
                };
                self.expect(b'(')?;
                let s = self.arg("Decimal scale", 0, p)?;
                self.expect(b')')?;
                Ok(ChType::Decimal {
                    precision: p as u8,
                    scale: s as u8,
                })
            }
            "FixedString" => {
                self.expect(b'(')?;
                let n = self.arg("FixedString length", 1, MAX_FIXED_STRING as i64)?;
                self.expect(b')')?;
                Ok(ChType::FixedString(n as usize))
            }
            "DateTime" => {
                let tz = if self.eat(b'(') {
                    let tz = self.tz()?;
                    self.expect(b')')?;
                    Some(tz)
                } else {
                    None
                };
                Ok(ChType::DateTime { tz })
            }
            "Time64" => {
                self.expect(b'(')?;
                let p = self.arg("Time64 precision", 0, 9)? as u8;
                self.expect(b')')?;
                Ok(ChType::Time64 { precision: p })
            }
            "DateTime64" => {
                self.expect(b'(')?;
                let p = self.arg("DateTime64 precision", 0, 9)? as u8;
                let tz = if self.eat(b',') {
                    Some(self.tz()?)
                } else {
                    None
                };
                self.expect(b')')?;
                Ok(ChType::DateTime64 { precision: p, tz })
            }
            "Enum8" => Ok(ChType::Enum8(self.enum_values::<i8>()?)),
            "Enum16" => Ok(ChType::Enum16(self.enum_values::<i16>()?)),
            "Nullable" | "LowCardinality" | "Array" => {
                self.expect(b'(')?;
                let inner = Box::new(self.ty()?);
                self.expect(b')')?;
                Ok(match name {
                    "Nullable" => ChType::Nullable(inner),
                    "LowCardinality" => ChType::LowCardinality(inner),
                    _ => ChType::Array(inner),
                })
            }
            "Map" => {
                self.expect(b'(')?;
                let k = self.ty()?;
                self.expect(b',')?;
                let v = self.ty()?;
                self.expect(b')')?;
                Ok(ChType::Map(Box::new(k), Box::new(v)))
            }
            "Tuple" => self.tuple(),
            "Variant" => {
                self.expect(b'(')?;
                let at = self.pos;
                let mut variants = vec![self.ty()?];
                while self.eat(b',') {
                    variants.push(self.ty()?);
                }
                self.expect(b')')?;
                if variants.len() > 255 {
                    return Err(self.syntax(at, "a Variant holds at most 255 types"));
                }
                // NULL is the Variant's own: no variant may hold it (ClickHouse refuses them too).
                if let Some(t) = variants.iter().find(|t| t.is_nullable()) {
                    return Err(self.syntax(at, format!("{t} cannot be inside a Variant")));
                }
                // ClickHouse numbers the variants in the order of their names.
                variants.sort_by_cached_key(|t| t.to_string());
                let order = variant_try_order(&variants);
                Ok(ChType::Variant { variants, order })
            }
            "Nested" => {
                let at = self.pos;
                match self.tuple()? {
                    ChType::Tuple(elems) if elems.iter().all(|(n, _)| n.is_some()) => Ok(
                        ChType::Nested(Box::new(ChType::Array(Box::new(ChType::Tuple(elems))))),
                    ),
                    _ => Err(self.syntax(at, "Nested names each of its columns")),
                }
            }
            "QBit" => {
                self.expect(b'(')?;
                let at = self.pos;
                let elem = self.ty()?;
                if !matches!(elem, ChType::BFloat16 | ChType::Float32 | ChType::Float64) {
                    return Err(self.syntax(
                        at,
                        format!("QBit holds BFloat16, Float32 or Float64, not {elem}"),
                    ));
                }
                self.expect(b',')?;
                self.ws();
                let n = self.arg("QBit dimension", 1, i64::from(u32::MAX))? as u32;
                self.expect(b')')?;
                Ok(ChType::QBit {
                    array: Box::new(ChType::Array(Box::new(elem))),
                    n,
                })
            }
            "Dynamic" => {
                let max_types = if self.eat(b'(') {
                    self.ws();
                    let at = self.pos;
                    if self.ident()? != "max_types" {
                        return Err(self.syntax(at, "expected max_types"));
                    }
                    self.expect(b'=')?;
                    self.ws();
                    let n = self.arg("Dynamic max_types", 0, 254)? as u8;
                    self.expect(b')')?;
                    Some(n)
                } else {
                    None
                };
                Ok(ChType::Dynamic {
                    max_types,
                    tz: None,
                })
            }
            "JSON" => {
                let at = self.pos;
                self.skip_args()?;
                Ok(ChType::Json(self.s[at..self.pos].trim().to_owned()))
            }
            "SimpleAggregateFunction" => {
                // Stored and sent exactly like its argument type; the function (which may
                // itself have parameters) only matters to merges.
                self.expect(b'(')?;
                self.ident()?;
                self.skip_args()?;
                self.expect(b',')?;
                let t = self.ty()?;
                self.expect(b')')?;
                Ok(t)
            }
            _ => {
                self.skip_args()?;
                Err(TypeError::Unsupported {
                    ty: self.s[start..self.pos].to_owned(),
                })
            }
        }
    }

    fn enum_values<T>(&mut self) -> Result<Vec<(String, T)>, TypeError>
    where
        T: TryFrom<i64> + Copy + Into<i64>,
    {
        self.expect(b'(')?;
        let mut out: Vec<(String, T)> = Vec::new();
        loop {
            let name = self.quoted(b'\'')?;
            let value = if self.eat(b'=') {
                self.ws();
                let at = self.pos;
                let v = self.int()?;
                T::try_from(v)
                    .map_err(|_| self.syntax(at, format!("enum value {v} out of range")))?
            } else {
                // ClickHouse numbers implicit values from 1, or from the previous value + 1.
                let next = out.last().map_or(1, |(_, v)| (*v).into() + 1);
                T::try_from(next)
                    .map_err(|_| self.syntax(self.pos, "implicit enum value out of range"))?
            };
            if out
                .iter()
                .any(|(n, v)| *n == name || (*v).into() == value.into())
            {
                return Err(self.syntax(
                    self.pos,
                    format!("duplicate enum name or value for '{name}'"),
                ));
            }
            out.push((name, value));
            if self.eat(b')') {
                return Ok(out);
            }
            self.expect(b',')?;
        }
    }

    fn tuple(&mut self) -> Result<ChType, TypeError> {
        self.expect(b'(')?;
        let mut elems = Vec::new();
        loop {
            self.ws();
            let name = match self.peek() {
                Some(q @ (b'`' | b'"')) => Some(self.quoted(q)?),
                _ => {
                    // `a UInt8` (named) vs `UInt8` / `Array(...)` (unnamed): an identifier
                    // followed by another identifier is an element name.
                    let save = self.pos;
                    let id = self.ident()?;
                    self.ws();
                    match self.peek() {
                        Some(b',' | b')' | b'(') | None => {
                            self.pos = save;
                            None
                        }
                        _ => Some(id.to_owned()),
                    }
                }
            };
            let t = self.ty()?;
            elems.push((name, t));
            if self.eat(b')') {
                return Ok(ChType::Tuple(elems));
            }
            self.expect(b',')?;
        }
    }
}

/// Writes `s` between single quotes with the escapes ClickHouse uses.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str, q: char) -> fmt::Result {
    f.write_str(q.encode_utf8(&mut [0; 4]))?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            '\0' => f.write_str("\\0")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            c if c == q => {
                f.write_str("\\")?;
                f.write_str(c.encode_utf8(&mut [0; 4]))?;
            }
            c => f.write_str(c.encode_utf8(&mut [0; 4]))?,
        }
    }
    f.write_str(q.encode_utf8(&mut [0; 4]))
}

fn is_plain_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn write_enum<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    values: &[(String, T)],
) -> fmt::Result {
    write!(f, "{name}(")?;
    for (i, (n, v)) in values.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_quoted(f, n, '\'')?;
        write!(f, " = {v}")?;
    }
    f.write_str(")")
}

impl fmt::Display for ChType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChType::UInt8 => f.write_str("UInt8"),
            ChType::UInt16 => f.write_str("UInt16"),
            ChType::UInt32 => f.write_str("UInt32"),
            ChType::UInt64 => f.write_str("UInt64"),
            ChType::UInt128 => f.write_str("UInt128"),
            ChType::UInt256 => f.write_str("UInt256"),
            ChType::Int8 => f.write_str("Int8"),
            ChType::Int16 => f.write_str("Int16"),
            ChType::Int32 => f.write_str("Int32"),
            ChType::Int64 => f.write_str("Int64"),
            ChType::Int128 => f.write_str("Int128"),
            ChType::Int256 => f.write_str("Int256"),
            ChType::Float32 => f.write_str("Float32"),
            ChType::Float64 => f.write_str("Float64"),
            ChType::BFloat16 => f.write_str("BFloat16"),
            ChType::Time => f.write_str("Time"),
            ChType::Time64 { precision } => write!(f, "Time64({precision})"),
            ChType::Bool => f.write_str("Bool"),
            ChType::Decimal { precision, scale } => write!(f, "Decimal({precision}, {scale})"),
            ChType::String => f.write_str("String"),
            ChType::FixedString(n) => write!(f, "FixedString({n})"),
            ChType::Uuid => f.write_str("UUID"),
            ChType::IPv4 => f.write_str("IPv4"),
            ChType::IPv6 => f.write_str("IPv6"),
            ChType::Date => f.write_str("Date"),
            ChType::Date32 => f.write_str("Date32"),
            ChType::DateTime { tz: None } => f.write_str("DateTime"),
            ChType::DateTime { tz: Some(tz) } => {
                f.write_str("DateTime(")?;
                write_quoted(f, tz.name(), '\'')?;
                f.write_str(")")
            }
            ChType::DateTime64 { precision, tz } => {
                write!(f, "DateTime64({precision}")?;
                if let Some(tz) = tz {
                    f.write_str(", ")?;
                    write_quoted(f, tz.name(), '\'')?;
                }
                f.write_str(")")
            }
            ChType::Enum8(v) => write_enum(f, "Enum8", v),
            ChType::Enum16(v) => write_enum(f, "Enum16", v),
            ChType::Nullable(t) => write!(f, "Nullable({t})"),
            ChType::LowCardinality(t) => write!(f, "LowCardinality({t})"),
            ChType::Array(t) => write!(f, "Array({t})"),
            ChType::Map(k, v) => write!(f, "Map({k}, {v})"),
            ChType::Json(params) => write!(f, "JSON{params}"),
            ChType::Geo(g, _) => f.write_str(g.name()),
            ChType::Dynamic {
                max_types: None, ..
            } => f.write_str("Dynamic"),
            ChType::Nested(storage) => match &**storage {
                ChType::Array(t) => match &**t {
                    ChType::Tuple(_) => {
                        let tuple = t.to_string();
                        write!(f, "Nested{}", tuple.strip_prefix("Tuple").unwrap_or(&tuple))
                    }
                    t => write!(f, "Nested({t})"),
                },
                t => write!(f, "Nested({t})"),
            },
            ChType::QBit { array, n } => match &**array {
                ChType::Array(t) => write!(f, "QBit({t}, {n})"),
                t => write!(f, "QBit({t}, {n})"),
            },
            ChType::Dynamic {
                max_types: Some(n), ..
            } => write!(f, "Dynamic(max_types={n})"),
            ChType::Variant { variants, .. } => {
                f.write_str("Variant(")?;
                for (i, t) in variants.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str(")")
            }
            ChType::Tuple(elems) => {
                f.write_str("Tuple(")?;
                for (i, (name, t)) in elems.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if let Some(name) = name {
                        if is_plain_ident(name) {
                            f.write_str(name)?;
                        } else {
                            write_quoted(f, name, '`')?;
                        }
                        f.write_str(" ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) -> ChType {
        let t = ChType::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(t.to_string(), s, "canonical spelling of {s}");
        assert_eq!(ChType::parse(&t.to_string()).unwrap(), t);
        t
    }

    #[test]
    fn canonical_round_trips() {
        for s in [
            "UInt8",
            "UInt16",
            "UInt32",
            "UInt64",
            "UInt128",
            "UInt256",
            "Int8",
            "Int16",
            "Int32",
            "Int64",
            "Int128",
            "Int256",
            "Float32",
            "Float64",
            "Bool",
            "String",
            "UUID",
            "IPv4",
            "IPv6",
            "Date",
            "Date32",
            "DateTime",
            "FixedString(16)",
            "Decimal(10, 2)",
            "Decimal(76, 76)",
            "Decimal(1, 0)",
            "DateTime('Europe/Berlin')",
            "DateTime64(3)",
            "DateTime64(9, 'UTC')",
            "DateTime64(0, 'Asia/Kolkata')",
            "Nullable(Decimal(10, 2))",
            "LowCardinality(Nullable(String))",
            "LowCardinality(String)",
            "Map(String, Array(Nullable(UInt8)))",
            "Tuple(a UInt8, b String)",
            "Tuple(UInt8, String)",
            "JSON",
            "JSON(max_dynamic_paths = 10, a.b UInt32, SKIP a.c, SKIP REGEXP 'x(y')",
            "Array(JSON)",
            "Point",
            "MultiPoint",
            "BFloat16",
            "Array(BFloat16)",
            "Time",
            "Time64(0)",
            "Time64(9)",
            "Ring",
            "LineString",
            "MultiLineString",
            "Polygon",
            "MultiPolygon",
            "Array(Point)",
            "Dynamic",
            "Dynamic(max_types=8)",
            "Geometry",
            "Array(Geometry)",
            "QBit(BFloat16, 3)",
            "Nested(a UInt8, b String)",
            "Nested(`x y` Array(String), n Nested(q Int8))",
            "QBit(Float64, 1536)",
            "Array(Dynamic)",
            "Map(String, JSON(a Array(String)))",
            "Array(Nullable(Map(String, Array(Int8))))",
            "Enum8('a' = 1, 'b\\'c' = -2)",
            "Enum16('x' = -32768, 'y' = 32767)",
            "Tuple(`a b` UInt8, `c\\`d` Array(Tuple(x Int8)))",
            "Map(LowCardinality(String), Tuple(n Nullable(Int64), s Array(String)))",
        ] {
            rt(s);
        }
    }

    #[test]
    fn structure() {
        assert_eq!(
            rt("DateTime64(3, 'Europe/Berlin')"),
            ChType::DateTime64 {
                precision: 3,
                tz: Some(chrono_tz::Europe::Berlin)
            }
        );
        assert_eq!(
            rt("Enum8('a' = 1, 'b\\'c' = -2)"),
            ChType::Enum8(vec![("a".into(), 1), ("b'c".into(), -2)])
        );
        assert_eq!(
            rt("Tuple(a UInt8, b String)"),
            ChType::Tuple(vec![
                (Some("a".into()), ChType::UInt8),
                (Some("b".into()), ChType::String)
            ])
        );
        assert_eq!(
            rt("Map(String, Array(Nullable(UInt8)))"),
            ChType::Map(
                Box::new(ChType::String),
                Box::new(ChType::Array(Box::new(ChType::Nullable(Box::new(
                    ChType::UInt8
                )))))
            )
        );
    }

    #[test]
    fn aliases_and_shorthands() {
        assert_eq!(
            ChType::parse("Decimal32(4)").unwrap(),
            ChType::Decimal {
                precision: 9,
                scale: 4
            }
        );
        assert_eq!(
            ChType::parse("Decimal64(4)").unwrap(),
            ChType::Decimal {
                precision: 18,
                scale: 4
            }
        );
        assert_eq!(
            ChType::parse("Decimal128(0)").unwrap(),
            ChType::Decimal {
                precision: 38,
                scale: 0
            }
        );
        assert_eq!(
            ChType::parse("Decimal256(70)").unwrap(),
            ChType::Decimal {
                precision: 76,
                scale: 70
            }
        );
        assert_eq!(
            ChType::parse("Decimal(12)").unwrap(),
            ChType::Decimal {
                precision: 12,
                scale: 0
            }
        );
        assert_eq!(ChType::parse("Boolean").unwrap(), ChType::Bool);
        assert_eq!(
            ChType::parse(" Array( UInt8 ) ").unwrap(),
            ChType::Array(Box::new(ChType::UInt8))
        );
        assert_eq!(
            ChType::parse("SimpleAggregateFunction(sum, UInt64)").unwrap(),
            ChType::UInt64
        );
        assert_eq!(
            ChType::parse("SimpleAggregateFunction(groupUniqArrayArray(10), Array(String))")
                .unwrap(),
            ChType::Array(Box::new(ChType::String))
        );
        assert_eq!(
            ChType::parse("Enum8('a', 'b', 'c' = 10, 'd')").unwrap(),
            ChType::Enum8(vec![
                ("a".into(), 1),
                ("b".into(), 2),
                ("c".into(), 10),
                ("d".into(), 11)
            ])
        );
        assert_eq!(
            ChType::parse("Enum8('\\x41\\n' = 1)").unwrap(),
            ChType::Enum8(vec![("A\n".into(), 1)])
        );
    }

    #[test]
    fn nullable() {
        assert!(ChType::parse("Nullable(UInt8)").unwrap().is_nullable());
        assert!(ChType::parse("LowCardinality(Nullable(String))")
            .unwrap()
            .is_nullable());
        assert!(!ChType::parse("Array(Nullable(UInt8))")
            .unwrap()
            .is_nullable());
        assert!(!ChType::parse("String").unwrap().is_nullable());
    }

    #[test]
    fn variants_are_numbered_by_name_and_tried_in_clickhouses_order() {
        let t = rt("Variant(Array(UInt64), String, UInt64)");
        let ChType::Variant { variants, order } = &t else {
            panic!("{t:?}")
        };
        assert_eq!(variants.len(), 3);
        // Arrays first, then the integer, the string last.
        assert_eq!(order, &[0, 2, 1]);
        // Written in any order, numbered as ClickHouse numbers them: by name.
        assert_eq!(
            ChType::parse("Variant(UInt64, String, Array(UInt64))").unwrap(),
            t
        );
        let ChType::Variant { order, .. } =
            ChType::parse("Variant(Bool, Date, IPv4, String, DateTime64(3), Decimal(10, 2))")
                .unwrap()
        else {
            panic!()
        };
        // Sorted by name: Bool, Date, DateTime64(3), Decimal(10, 2), IPv4, String. Tried:
        // IPv4, Bool (above every integer), Decimal, Date, DateTime64, String.
        assert_eq!(order, [4, 0, 3, 1, 2, 5]);
        for bad in [
            "Variant(Nullable(String), UInt8)",
            "Variant(LowCardinality(Nullable(String)))",
        ] {
            assert!(
                matches!(ChType::parse(bad), Err(TypeError::Syntax { .. })),
                "{bad}"
            );
        }
        assert!(t.is_nullable());
    }

    #[test]
    fn unsupported() {
        for (s, ty) in [
            ("Object('json')", "Object('json')"),
            (
                "AggregateFunction(uniq, UInt64)",
                "AggregateFunction(uniq, UInt64)",
            ),
            ("Nullable(Nothing)", "Nothing"),
            ("IntervalSecond", "IntervalSecond"),
            ("Array(Object('json'))", "Object('json')"),
            ("Frobnicate", "Frobnicate"),
        ] {
            match ChType::parse(s) {
                Err(TypeError::Unsupported { ty: got }) => assert_eq!(got, ty, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        let msg = ChType::parse("Map(String, Object('json'))")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("Object('json')") && msg.contains("use a JSON column"),
            "{msg}"
        );
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let cases = [
            ("Array(UInt8", 11),
            ("Array(UInt8))", 12),
            ("Decimal(10, 11)", 12),
            ("Decimal(77, 1)", 8),
            ("DateTime64(10)", 11),
            ("FixedString(0)", 12),
            ("Enum8('a' = 300)", 12),
            ("Enum8('a' = 1, 'a' = 2)", 22),
            ("UInt8(3)", 5),
            ("Map(String)", 10),
            ("", 0),
            ("Enum8('abc", 6),
            ("Tuple()", 6),
        ];
        for (s, pos) in cases {
            match ChType::parse(s) {
                Err(TypeError::Syntax { pos: p, .. }) => assert_eq!(p, pos, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        let msg = ChType::parse("Array(UInt8").unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid ClickHouse type \"Array(UInt8\": expected ')', found end of input at byte 11"
        );
    }

    #[test]
    fn time_zones() {
        assert!(matches!(
            ChType::parse("DateTime('Mars/Olympus')"),
            Err(TypeError::UnknownTimeZone { tz, .. }) if tz == "Mars/Olympus"
        ));
        assert_eq!(
            ChType::parse("DateTime('UTC')").unwrap(),
            ChType::DateTime {
                tz: Some(chrono_tz::UTC)
            }
        );
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let deep = "Array(".repeat(100_000) + "UInt8" + &")".repeat(100_000);
        assert!(matches!(
            ChType::parse(&deep),
            Err(TypeError::Syntax { .. })
        ));
        for s in [
            "(",
            ")",
            "'",
            "Enum8('\\",
            "Enum8('\\x4",
            "Tuple(a",
            "Map(",
            "Decimal(99999999999999999999, 1)",
            "DateTime('",
            "Nested((((",
            "Object('",
            "\u{e9}",
            "Tuple(`",
            "FixedString(-1)",
            "Enum8('a' = )",
        ] {
            assert!(ChType::parse(s).is_err(), "{s}");
        }
    }
}
