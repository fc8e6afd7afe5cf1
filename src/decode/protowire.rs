//! The Protobuf wire format read straight from the bytes, for messages whose columns are
//! filled by scalar fields (numbers, bools, enums, strings, bytes, Google's Timestamp and
//! Duration, and repeated ones of those): the common flat event. Each value is written as the JSON text the row converter
//! reads, exactly as [`super::protobuf`] writes it from a decoded `DynamicMessage`, without
//! building one (which keeps every field in a map: most of that path's time).
//!
//! Protobuf semantics kept: the last value of a singular field wins; repeated fields may come
//! packed or not, and interleaved with others; a field the schema does not know is skipped;
//! a proto3 field without presence that is absent is its default value, one with presence is
//! missing. Message types with a mapped nested message, map, group or member of a real
//! `oneof` (where a later member clears an earlier one) are left to the `DynamicMessage`
//! path ([`FlatPlan::new`] returns `None`).

use std::collections::HashMap;

use prost_reflect::{FieldDescriptor, Kind};

use super::cursor::Cursor;
use super::json::{FieldKind, FieldValue, RowError};
use super::jsontext::{json_string, write_float, write_scaled};

/// How a scalar field is encoded and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Bool,
    Enum,
    Fixed32,
    Sfixed32,
    Float,
    Fixed64,
    Sfixed64,
    Double,
    String,
    Bytes,
    /// `google.protobuf.Timestamp` or `Duration`: seconds (1) and nanos (2) in a nested
    /// message, written as seconds with the exact fraction.
    Seconds,
}

impl Scalar {
    fn of(kind: &Kind) -> Option<Scalar> {
        Some(match kind {
            Kind::Int32 => Scalar::Int32,
            Kind::Int64 => Scalar::Int64,
            Kind::Uint32 => Scalar::Uint32,
            Kind::Uint64 => Scalar::Uint64,
            Kind::Sint32 => Scalar::Sint32,
            Kind::Sint64 => Scalar::Sint64,
            Kind::Bool => Scalar::Bool,
            Kind::Enum(_) => Scalar::Enum,
            Kind::Fixed32 => Scalar::Fixed32,
            Kind::Sfixed32 => Scalar::Sfixed32,
            Kind::Float => Scalar::Float,
            Kind::Fixed64 => Scalar::Fixed64,
            Kind::Sfixed64 => Scalar::Sfixed64,
            Kind::Double => Scalar::Double,
            Kind::String => Scalar::String,
            Kind::Bytes => Scalar::Bytes,
            Kind::Message(m)
                if matches!(
                    m.full_name(),
                    "google.protobuf.Timestamp" | "google.protobuf.Duration"
                ) =>
            {
                Scalar::Seconds
            }
            Kind::Message(_) => return None,
        })
    }

    /// The wire type of one value.
    fn wire_type(self) -> u64 {
        match self {
            Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double => 1,
            Scalar::String | Scalar::Bytes | Scalar::Seconds => 2,
            Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float => 5,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone)]
struct FlatField {
    name: String,
    /// Its id in the row plan; `None`: no column reads it.
    id: Option<usize>,
    ty: Scalar,
    repeated: bool,
    presence: bool,
    /// Enum value names by number.
    names: HashMap<i32, String>,
    /// What an absent field without presence is: its default's text.
    default: (Vec<u8>, FieldKind),
}

/// The fields of one message type, by field number.
#[derive(Debug, Clone)]
pub(super) struct FlatPlan {
    fields: Vec<FlatField>,
    /// Field number -> index in `fields`.
    by_number: FieldIndex,
}

/// Field numbers up to this are looked up in a table (numbers are small in practice, and
/// a hash of each tag cost more than the rest of reading a number: criterion, 2026-12-04).
const DENSE_NUMBERS: u32 = 1024;

/// Field number -> index in the plan's fields.
#[derive(Debug, Clone)]
enum FieldIndex {
    /// Indexed by number: the field's index + 1, 0 for none.
    Dense(Vec<u16>),
    Sparse(HashMap<u32, usize>),
}

impl FieldIndex {
    fn new(numbers: &[(u32, usize)]) -> FieldIndex {
        let max = numbers.iter().map(|(n, _)| *n).max().unwrap_or(0);
        if max <= DENSE_NUMBERS && numbers.len() < usize::from(u16::MAX) {
            let mut table = vec![0u16; max as usize + 1];
            for &(n, i) in numbers {
                table[n as usize] = i as u16 + 1;
            }
            FieldIndex::Dense(table)
        } else {
            FieldIndex::Sparse(numbers.iter().copied().collect())
        }
    }

    #[inline]
    fn get(&self, number: u64) -> Option<usize> {
        match self {
            FieldIndex::Dense(table) => {
                match usize::try_from(number).ok().and_then(|n| table.get(n)) {
                    Some(&i) if i > 0 => Some(usize::from(i) - 1),
                    _ => None,
                }
            }
            FieldIndex::Sparse(map) => u32::try_from(number)
                .ok()
                .and_then(|n| map.get(&n).copied()),
        }
    }
}

impl FlatPlan {
    /// The plan of a message type whose mapped fields are all scalars (or repeated scalars),
    /// none of them in a real `oneof`; `None` otherwise. `fields`: each field with its id
    /// in the row plan and its default value's text.
    pub(super) fn new(
        fields: &[(FieldDescriptor, Option<usize>, Vec<u8>, FieldKind)],
    ) -> Option<FlatPlan> {
        let mut out = Vec::with_capacity(fields.len());
        let mut by_number = Vec::with_capacity(fields.len());
        for (f, id, default, kind) in fields {
            let flat_ok = !f.is_map()
                && !f.is_group()
                && f.containing_oneof().is_none_or(|o| o.is_synthetic());
            let ty = match Scalar::of(&f.kind()) {
                Some(ty) if flat_ok => ty,
                // A field no column reads is skipped whatever it is.
                _ if id.is_none() => {
                    continue;
                }
                _ => return None,
            };
            let names = match f.kind() {
                Kind::Enum(e) => e
                    .values()
                    .map(|v| (v.number(), v.name().to_string()))
                    .collect(),
                _ => HashMap::new(),
            };
            by_number.push((f.number(), out.len()));
            out.push(FlatField {
                name: f.name().to_string(),
                id: *id,
                ty,
                repeated: f.is_list(),
                presence: f.supports_presence(),
                names,
                default: (default.clone(), *kind),
            });
        }
        Some(FlatPlan {
            fields: out,
            by_number: FieldIndex::new(&by_number),
        })
    }
}

/// Per-lane buffers of the flat path.
#[derive(Debug, Default)]
pub(super) struct FlatScratch {
    /// The elements of each repeated field, in `values` (as JSON: strings escaped).
    elements: Vec<Vec<FieldValue>>,
    values: Vec<u8>,
}

fn bad(reason: String) -> RowError {
    RowError::InvalidProtobuf { reason }
}

/// The message's reader: the shared [`Cursor`] with Protobuf's readings.
type Wire<'a> = Cursor<'a>;

impl<'a> Wire<'a> {
    fn len_delimited(&mut self) -> Result<&'a [u8], String> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| format!("length {n} too large"))?;
        self.take(n)
    }

    fn skip(&mut self, wire_type: u64) -> Result<(), String> {
        match wire_type {
            0 => self.varint().map(|_| ()),
            1 => self.take(8).map(|_| ()),
            2 => self.len_delimited().map(|_| ()),
            5 => self.take(4).map(|_| ()),
            3 | 4 => Err("groups are not supported".into()),
            w => Err(format!("wire type {w} does not exist")),
        }
    }
}

/// A field's value on the wire, as far as a change event's envelope needs it.
pub(super) enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 2: a string, bytes, a message or a packed run.
    Delimited(&'a [u8]),
    /// Wire types 1 and 5 (skipped).
    Fixed,
}

/// Calls `each` with the number and value of every field of `body`, in wire order (a
/// message field may come more than once: its pieces merge). The error says where the
/// message does not decode, or is `each`'s.
pub(super) fn each_field<'a>(
    body: &'a [u8],
    mut each: impl FnMut(u64, WireValue<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut w = Wire::new(body);
    while w.pos < body.len() {
        let at = w.pos;
        let tag = w.varint().map_err(|e| format!("at byte {at}: {e}"))?;
        let (number, wire_type) = (tag >> 3, tag & 7);
        let located = |e: String| format!("field number {number}: {e}");
        let value = match wire_type {
            0 => WireValue::Varint(w.varint().map_err(located)?),
            2 => WireValue::Delimited(w.len_delimited().map_err(located)?),
            _ => {
                w.skip(wire_type).map_err(located)?;
                WireValue::Fixed
            }
        };
        each(number, value)?;
    }
    Ok(())
}

/// Reads one value of `f` and writes its JSON text to `out`; `raw` (a top-level value): a
/// string or bytes value goes in as it is (between quotes, nothing escaped), and an integer,
/// double, float or timestamp is handed over typed ([`FieldKind::Integer`],
/// [`FieldKind::Double`], [`FieldKind::Scaled`]), nothing written.
fn value(
    f: &FlatField,
    w: &mut Wire<'_>,
    raw: bool,
    out: &mut Vec<u8>,
) -> Result<FieldKind, String> {
    let int = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(s.as_bytes());
        FieldKind::Int
    };
    let mut buf = itoa::Buffer::new();
    // A top-level integer is handed over typed; an element goes into its array's text.
    let integer = |out: &mut Vec<u8>, x: i64| {
        if raw {
            FieldKind::Integer(x)
        } else {
            int(out, itoa::Buffer::new().format(x))
        }
    };
    let unsigned = |out: &mut Vec<u8>, x: u64| match i64::try_from(x) {
        Ok(x) => integer(out, x),
        Err(_) => int(out, itoa::Buffer::new().format(x)),
    };
    Ok(match f.ty {
        Scalar::Int32 => integer(out, i64::from(w.varint()? as i32)),
        Scalar::Int64 => integer(out, w.varint()? as i64),
        Scalar::Uint32 => integer(out, i64::from(w.varint()? as u32)),
        Scalar::Uint64 => unsigned(out, w.varint()?),
        Scalar::Sint32 => {
            let v = w.varint()? as u32;
            integer(out, i64::from((v >> 1) as i32 ^ -((v & 1) as i32)))
        }
        Scalar::Sint64 => {
            let v = w.varint()?;
            integer(out, (v >> 1) as i64 ^ -((v & 1) as i64))
        }
        Scalar::Bool => {
            if w.varint()? != 0 {
                out.extend_from_slice(b"true");
                FieldKind::True
            } else {
                out.extend_from_slice(b"false");
                FieldKind::False
            }
        }
        Scalar::Enum => {
            let n = w.varint()? as i32;
            match f.names.get(&n) {
                Some(name) => {
                    json_string(name.as_bytes(), out);
                    FieldKind::Raw
                }
                None => int(out, buf.format(n)),
            }
        }
        Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float => {
            let b = w.take(4)?;
            let a = [b[0], b[1], b[2], b[3]];
            match f.ty {
                Scalar::Fixed32 => integer(out, i64::from(u32::from_le_bytes(a))),
                Scalar::Sfixed32 => integer(out, i64::from(i32::from_le_bytes(a))),
                // A top-level value is handed over typed (the converter writes its text
                // where the column reads one); an element goes into its array's text.
                _ if raw => FieldKind::Double(f64::from(f32::from_le_bytes(a)).to_bits()),
                _ => write_float(f64::from(f32::from_le_bytes(a)), out),
            }
        }
        Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double => {
            let mut a = [0u8; 8];
            a.copy_from_slice(w.take(8)?);
            match f.ty {
                Scalar::Fixed64 => unsigned(out, u64::from_le_bytes(a)),
                Scalar::Sfixed64 => integer(out, i64::from_le_bytes(a)),
                _ if raw => FieldKind::Double(f64::from_le_bytes(a).to_bits()),
                _ => write_float(f64::from_le_bytes(a), out),
            }
        }
        Scalar::Seconds => {
            let body = w.len_delimited()?;
            let mut inner = Wire::new(body);
            let (mut secs, mut nanos) = (0i64, 0i32);
            while inner.pos < body.len() {
                let tag = inner.varint()?;
                match (tag >> 3, tag & 7) {
                    (1, 0) => secs = inner.varint()? as i64,
                    (2, 0) => nanos = inner.varint()? as i32,
                    (_, wire_type) => inner.skip(wire_type)?,
                }
            }
            let ticks = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
            match i64::try_from(ticks) {
                Ok(value) if raw => FieldKind::Scaled { value, scale: 9 },
                _ => write_scaled(ticks, 9, out),
            }
        }
        Scalar::String | Scalar::Bytes => {
            let s = w.len_delimited()?;
            if f.ty == Scalar::String && std::str::from_utf8(s).is_err() {
                return Err("a string that is not valid UTF-8".into());
            }
            if raw {
                out.push(b'"');
                out.extend_from_slice(s);
                out.push(b'"');
            } else {
                json_string(s, out);
            }
            FieldKind::Raw
        }
    })
}

/// Reads the encoded message `body` with `plan` and writes each mapped field's JSON text
/// into `text`, its span into `fields[id]` (left `None` for a missing field).
pub(super) fn write_flat(
    plan: &FlatPlan,
    body: &[u8],
    unknown_is_error: bool,
    scratch: &mut FlatScratch,
    text: &mut Vec<u8>,
    fields: &mut [Option<FieldValue>],
) -> Result<(), RowError> {
    let n = plan.fields.len();
    if scratch.elements.len() < n {
        scratch.elements.resize_with(n, Vec::new);
    }
    for e in &mut scratch.elements[..n] {
        e.clear();
    }
    scratch.values.clear();
    let mut w = Wire::new(body);
    while w.pos < body.len() {
        let at = w.pos;
        let tag = w.varint().map_err(|e| bad(format!("at byte {at}: {e}")))?;
        let (number, wire_type) = (tag >> 3, tag & 7);
        let field = plan
            .by_number
            .get(number)
            .and_then(|i| plan.fields.get(i).map(|f| (i, f)));
        let Some((i, f)) = field else {
            w.skip(wire_type)
                .map_err(|e| bad(format!("field number {number}: {e}")))?;
            continue;
        };
        let located = |e: String| bad(format!("field {:?}: {e}", f.name));
        if f.id.is_none() {
            if unknown_is_error {
                return Err(RowError::UnknownField {
                    field: f.name.clone(),
                });
            }
            w.skip(wire_type).map_err(located)?;
            continue;
        }
        if f.repeated && wire_type == 2 && f.ty.wire_type() != 2 {
            // Packed: one length-delimited run of values.
            let run = w.len_delimited().map_err(located)?;
            let mut inner = Wire::new(run);
            while inner.pos < run.len() {
                let start = scratch.values.len();
                let kind = value(f, &mut inner, false, &mut scratch.values).map_err(located)?;
                scratch.elements[i].push(FieldValue {
                    start,
                    end: scratch.values.len(),
                    kind,
                });
            }
            continue;
        }
        if wire_type != f.ty.wire_type() {
            return Err(located(format!(
                "wire type {wire_type}, the schema's type has {}",
                f.ty.wire_type()
            )));
        }
        if f.repeated {
            let start = scratch.values.len();
            let kind = value(f, &mut w, false, &mut scratch.values).map_err(located)?;
            scratch.elements[i].push(FieldValue {
                start,
                end: scratch.values.len(),
                kind,
            });
        } else {
            // Straight into the row's text and its field; a later value of the field (the
            // last one wins) leaves this one's bytes unused there.
            let start = text.len();
            let kind = value(f, &mut w, true, text).map_err(located)?;
            if let Some(slot) = f.id.and_then(|id| fields.get_mut(id)) {
                *slot = Some(FieldValue {
                    start,
                    end: text.len(),
                    kind,
                });
            }
        }
    }
    for (i, f) in plan.fields.iter().enumerate() {
        let Some(slot) = f.id.and_then(|id| fields.get_mut(id)) else {
            continue;
        };
        let value = if f.repeated {
            let start = text.len();
            text.push(b'[');
            for (k, e) in scratch.elements[i].iter().enumerate() {
                if k > 0 {
                    text.push(b',');
                }
                text.extend_from_slice(&scratch.values[e.start..e.end]);
            }
            text.push(b']');
            FieldValue {
                start,
                end: text.len(),
                kind: FieldKind::Arr,
            }
        } else {
            match slot {
                Some(_) => continue,
                None if f.presence => continue,
                None => {
                    let start = text.len();
                    text.extend_from_slice(&f.default.0);
                    FieldValue {
                        start,
                        end: text.len(),
                        kind: f.default.1,
                    }
                }
            }
        };
        *slot = Some(value);
    }
    Ok(())
}
