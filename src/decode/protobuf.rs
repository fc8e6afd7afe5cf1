//! Protobuf messages in the schema registry's wire format -> rows.
//!
//! A message is the magic byte 0, the schema's id (4 bytes, big-endian), the message
//! indexes (which message of the `.proto` file: a zigzag varint count, then that many zigzag
//! varints; a lone 0 means the first message) and the Protobuf encoding of that message. The
//! registry serves the schema as `.proto` source; it is compiled here, with the files it
//! imports (its references) and Google's well-known types, by protox, and messages are
//! decoded by prost-reflect. Each top-level field is then written in the JSON form the row
//! converter reads ([`super::json::encode_fields_row`]), so Protobuf values follow exactly
//! the type rules and error wording of every other format:
//!
//! - integers (all ten encodings) -> integers; `float` (widened exactly), `double` -> numbers
//!   (NaN and infinities as "nan", "inf", "-inf");
//! - `string`, `bytes` -> strings (a top-level `bytes` field's bytes go into the column as
//!   they are, binary included); `bool` -> true/false; an enum -> its name (its number when
//!   the schema does not name it);
//! - `repeated` -> an array; `map` -> an object, keys in sorted order (the encoding keeps no
//!   order); a message -> an object of its fields (a field without a value in it: `null`);
//! - `google.protobuf.Timestamp` and `Duration` -> seconds with the exact fraction (up to
//!   nanoseconds); the wrapper types (`Int64Value`, `StringValue`, ...) -> their value;
//!   `Struct`, `Value`, `ListValue` -> the JSON they stand for (an object with sorted keys,
//!   any value, an array; whole numbers as integers); `Any` -> the message it wraps, with
//!   `"@type"` first (a type the schema does not define refuses the message).
//!
//! With `envelope = "debezium"` the message is a change event: its `op` and the image it
//! names (`before` or `after`, a message field) are found on the wire, and the image is
//! read as the row's message, by either path below.
//!
//! A field that has presence (`optional`, a message, a `oneof` member) and is not set is
//! missing: its column takes its DEFAULT, NULL or type default, as a missing JSON field.
//! A proto3 scalar without presence that is not on the wire is its zero value, as Protobuf
//! defines it (the encoding cannot tell it from an unset one).

use std::collections::HashMap;

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::cursor::Cursor;
use super::json::{
    debezium_operation, encode_fields_row, EventSource, FieldKind, FieldValue, MessageMeta,
    NewColumn, RowError, RowPlan, Text, UnknownFields,
};
use super::jsontext::{json_string, write_float, write_scaled};
use super::protowire::{each_field, write_flat, FlatPlan, FlatScratch, WireValue};
use super::registered::MAX_DEPTH;

/// The name the registry's schema is compiled under (its imports keep theirs).
const MAIN_FILE: &str = "sluice-registry-schema.proto";

/// A `.proto` file compiled for decoding, and every message it defines, with its message
/// index path.
#[derive(Debug, Clone)]
pub struct Compiled {
    messages: Vec<(Vec<i64>, MessageDescriptor)>,
}

/// Opens the registry's schema and its references from memory.
struct Sources(HashMap<String, String>);

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.get(name) {
            Some(src) => File::from_source(name, src),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

impl Compiled {
    /// Compiles `.proto` source and the files it imports (`references`: import path and
    /// source). The error says what is wrong.
    pub fn new(schema: &str, references: &[(String, String)]) -> Result<Compiled, String> {
        let mut files: HashMap<String, String> = references.iter().cloned().collect();
        files.insert(MAIN_FILE.to_string(), schema.to_string());
        let mut chain = ChainFileResolver::new();
        chain.add(Sources(files));
        chain.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(chain);
        compiler
            .open_file(MAIN_FILE)
            .map_err(|e| format!("not a valid Protobuf schema: {e}"))?;
        let pool: DescriptorPool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(MAIN_FILE)
            .ok_or("the compiled schema has no file")?;
        let mut messages = Vec::new();
        for (i, m) in file.messages().enumerate() {
            collect(vec![i as i64], m, &mut messages);
        }
        if messages.is_empty() {
            return Err("the schema defines no message".into());
        }
        Ok(Compiled { messages })
    }

    /// The message named `name` (its full or its simple name), or the file's first message,
    /// with its message index path.
    pub fn top_level(&self, name: Option<&str>) -> Result<(Vec<i64>, MessageDescriptor), String> {
        let found = match name {
            None => self.messages.iter().find(|(p, _)| p == &[0]),
            Some(n) => self
                .messages
                .iter()
                .find(|(_, m)| m.full_name() == n || m.name() == n),
        };
        found.cloned().ok_or_else(|| {
            let names: Vec<&str> = self.messages.iter().map(|(_, m)| m.full_name()).collect();
            format!(
                "no message {:?} in the schema (it has {})",
                name.unwrap_or(""),
                names.join(", ")
            )
        })
    }
}

/// `m` at `path` and its nested types after it, numbered as the wire format's message
/// indexes number them: in declaration order, map entry types included (they are nested
/// types of the descriptor, as Confluent's serializer counts them).
fn collect(path: Vec<i64>, m: MessageDescriptor, out: &mut Vec<(Vec<i64>, MessageDescriptor)>) {
    for (i, child) in m.child_messages().enumerate() {
        let mut p = path.clone();
        p.push(i as i64);
        collect(p, child, out);
    }
    out.push((path, m));
}

/// A field of a bound message, with what the descriptor would otherwise work out per
/// message (a profile had `kind()` and `is_map()` at 8 % of the time).
#[derive(Debug, Clone)]
struct BoundField {
    desc: FieldDescriptor,
    /// Its id in the plan; `None`: no column reads it.
    id: Option<usize>,
    kind: Kind,
    presence: bool,
    repeated: bool,
}

/// A message type bound to a route's plan: each field's id in the plan.
#[derive(Debug, Clone)]
struct BoundMessage {
    path: Vec<i64>,
    desc: MessageDescriptor,
    fields: Vec<BoundField>,
    /// Read straight from the wire when every mapped field is a scalar
    /// ([`super::protowire`]); `None`: decoded into a `DynamicMessage`.
    flat: Option<FlatPlan>,
    /// `envelope = "debezium"`: this message type as a change event, if it is one.
    event: Option<Box<EventLayout>>,
    /// `unknown_fields = "add"`: the columns its fields that no column reads need
    /// ([`column_type`]); a message of this type is [`RowError::NewFields`] until the table
    /// has them.
    new_columns: Vec<NewColumn>,
}

/// A Debezium change event's message type: the numbers of its `before`, `after` and `op`
/// fields, and the row's message type (of `before` and of `after`) bound to the plan; and
/// where its times and source are ([`EventSource`]).
#[derive(Debug, Clone)]
struct EventLayout {
    numbers: [u32; 3],
    before: BoundMessage,
    after: BoundMessage,
    /// `ts_ms`: an integer, or a message holding one in field 1 (`Int64Value`).
    ts_ms: Option<u32>,
    /// `source`, and in it `ts_ms`, `db` and `table` (strings).
    source: Option<(u32, [Option<u32>; 3])>,
}

/// The names of a change event's fields, in [`EventLayout::numbers`]' order.
const EVENT_FIELDS: [&str; 3] = ["before", "after", "op"];

/// Whether `f` holds epoch milliseconds: a varint integer, or a wrapper message of one.
fn is_millis(f: &FieldDescriptor) -> bool {
    match f.kind() {
        Kind::Int64 | Kind::Uint64 | Kind::Int32 | Kind::Uint32 => true,
        Kind::Message(m) => matches!(
            m.full_name(),
            "google.protobuf.Int64Value" | "google.protobuf.UInt64Value"
        ),
        _ => false,
    }
}

impl BoundMessage {
    fn new(path: &[i64], desc: &MessageDescriptor, plan: &RowPlan) -> BoundMessage {
        let fields: Vec<BoundField> = desc
            .fields()
            .map(|f| BoundField {
                id: plan.field_id(f.name()),
                kind: f.kind(),
                presence: f.supports_presence(),
                repeated: f.is_list() || f.is_map(),
                desc: f,
            })
            .collect();
        let with_defaults: Vec<_> = fields
            .iter()
            .map(|f| {
                let mut text = Vec::new();
                let kind =
                    top_level(&f.desc.default_value(), f, &mut text).unwrap_or(FieldKind::Null);
                (f.desc.clone(), f.id, text, kind)
            })
            .collect();
        let new_columns = match plan.unknown_fields {
            UnknownFields::Add => fields
                .iter()
                .filter(|f| f.id.is_none() && !plan.is_other_column(f.desc.name().as_bytes()))
                .filter_map(|f| {
                    Some(NewColumn {
                        name: f.desc.name().to_string(),
                        column_type: column_type(&f.desc, 0)?,
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        BoundMessage {
            path: path.to_vec(),
            desc: desc.clone(),
            flat: FlatPlan::new(&with_defaults),
            fields,
            event: None,
            new_columns,
        }
    }

    /// `unknown_fields = "add"`: a message of this type cannot be read before the table has
    /// the columns of its new fields.
    fn check_columns(&self) -> Result<(), RowError> {
        match self.new_columns.is_empty() {
            true => Ok(()),
            false => Err(RowError::NewFields {
                fields: self.new_columns.clone(),
            }),
        }
    }

    /// `desc` as a Debezium change event: singular message fields `before` and `after` and a
    /// string `op`; `None` if it is not one.
    fn event(desc: &MessageDescriptor, plan: &RowPlan) -> Option<EventLayout> {
        let field = |name: &str| {
            desc.get_field_by_name(name)
                .filter(|f| !f.is_list() && !f.is_map())
        };
        let image = |name: &str| {
            let f = field(name)?;
            match f.kind() {
                Kind::Message(m) => Some((f.number(), BoundMessage::new(&[], &m, plan))),
                _ => None,
            }
        };
        let (before_number, before) = image("before")?;
        let (after_number, after) = image("after")?;
        let op = field("op").filter(|f| f.kind() == Kind::String)?;
        let ts_ms = field("ts_ms").filter(is_millis).map(|f| f.number());
        let source = field("source").and_then(|f| match f.kind() {
            Kind::Message(m) => {
                let get = |name: &str, ok: &dyn Fn(&FieldDescriptor) -> bool| {
                    m.get_field_by_name(name)
                        .filter(|f| ok(f))
                        .map(|f| f.number())
                };
                let string = |f: &FieldDescriptor| f.kind() == Kind::String && !f.is_list();
                Some((
                    f.number(),
                    [
                        get("ts_ms", &is_millis),
                        get("db", &string),
                        get("table", &string),
                    ],
                ))
            }
            _ => None,
        });
        Some(EventLayout {
            ts_ms,
            source,
            numbers: [before_number, after_number, op.number()],
            before,
            after,
        })
    }
}

/// A compiled schema bound to a route's plan (every message type of its file).
#[derive(Debug, Clone)]
pub struct Bound {
    messages: Vec<BoundMessage>,
    /// `envelope = "debezium"`: each message is a change event and the row its image.
    debezium: bool,
}

impl Bound {
    /// Binds every message type of `compiled` to `plan`; with `debezium`, each is read as a
    /// change event whose image is the row.
    pub fn new(compiled: &Compiled, plan: &RowPlan, debezium: bool) -> Bound {
        let messages = compiled
            .messages
            .iter()
            .map(|(path, desc)| {
                let mut m = BoundMessage::new(path, desc, plan);
                if debezium {
                    m.event = BoundMessage::event(desc, plan).map(Box::new);
                }
                m
            })
            .collect();
        Bound { messages, debezium }
    }

    /// Every message decoded into a `DynamicMessage` (the tests compare both paths).
    #[cfg(test)]
    fn without_flat(mut self) -> Bound {
        for m in &mut self.messages {
            m.flat = None;
            if let Some(e) = &mut m.event {
                e.before.flat = None;
                e.after.flat = None;
            }
        }
        self
    }
}

/// Per-lane buffers reused from message to message.
#[derive(Debug, Default)]
pub struct ProtobufScratch {
    text: Vec<u8>,
    fields: Vec<Option<FieldValue>>,
    path: Vec<i64>,
    flat: FlatScratch,
    /// A change event's image when it came in pieces.
    image: Vec<u8>,
}

/// Reads the message indexes after the 5-byte header into `path`; returns the rest.
fn message_path<'a>(payload: &'a [u8], path: &mut Vec<i64>) -> Result<&'a [u8], RowError> {
    let bad = |reason: String| RowError::InvalidProtobuf {
        reason: format!("message indexes: {reason}"),
    };
    let mut c = Cursor::new(payload.get(5..).unwrap_or_default());
    path.clear();
    let n = c.zigzag().map_err(bad)?;
    if n == 0 {
        path.push(0);
    } else if !(1..=MAX_DEPTH as i64).contains(&n) {
        return Err(bad(format!("{n} of them")));
    } else {
        for _ in 0..n {
            path.push(c.zigzag().map_err(bad)?);
        }
    }
    Ok(c.b.get(c.pos..).unwrap_or_default())
}

/// Appends the row of one message (`payload` in the registry's wire format, written with
/// `bound`'s schema) to `out`; on error `out` is left as it was.
pub fn encode_protobuf_row(
    plan: &RowPlan,
    bound: &Bound,
    payload: &[u8],
    meta: &MessageMeta<'_>,
    scratch: &mut ProtobufScratch,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    super::registered::schema_id(payload)?;
    let body = message_path(payload, &mut scratch.path)?;
    let Some(m) = bound.messages.iter().find(|m| m.path == scratch.path) else {
        return Err(RowError::InvalidProtobuf {
            reason: format!(
                "message index {:?} names no message of the schema",
                scratch.path
            ),
        });
    };
    if !bound.debezium {
        m.check_columns()?;
        return encode_message(plan, m, body, meta, scratch, out);
    }
    let Some(event) = &m.event else {
        return Err(RowError::Envelope {
            envelope: "Debezium",
            reason: format!(
                "{} is not a change event: it needs message fields \"before\" and \"after\" \
                 and a string \"op\"",
                m.desc.full_name()
            ),
        });
    };
    // The operation (its last value wins), the times and source, then the pieces of the
    // image it names (a message field's pieces merge, which for the wire format is their
    // concatenation).
    let name = m.desc.full_name();
    let bad = |reason: String| RowError::InvalidProtobuf {
        reason: format!("{name} does not decode: {reason}"),
    };
    let mut op = None;
    let mut pieces = [0usize; 2];
    let mut source = EventSource::NONE;
    each_field(body, |number, v| {
        let Some(i) = event.numbers.iter().position(|n| u64::from(*n) == number) else {
            if event.ts_ms.map(u64::from) == Some(number) {
                source.ts_ms = wire_millis(&v).or(source.ts_ms);
            } else if let (Some((n, inner)), WireValue::Delimited(b)) = (event.source, &v) {
                if u64::from(n) == number {
                    read_source(b, inner, &mut source)?;
                }
            }
            return Ok(());
        };
        let WireValue::Delimited(b) = v else {
            return Err(format!(
                "field {:?}: not length-delimited, as the schema's type is",
                EVENT_FIELDS[i]
            ));
        };
        match i {
            2 => op = Some(b),
            _ => pieces[i] += 1,
        }
        Ok(())
    })
    .map_err(bad)?;
    let (code, image) = debezium_operation(op.filter(|op| !op.is_empty()))?;
    let (i, row) = match image {
        "before" => (0, &event.before),
        _ => (1, &event.after),
    };
    row.check_columns()?;
    let meta = MessageMeta {
        op: Some(code),
        source,
        ..*meta
    };
    let mut merged = std::mem::take(&mut scratch.image);
    merged.clear();
    let mut one = None;
    each_field(body, |number, v| {
        if let (true, WireValue::Delimited(b)) = (u64::from(event.numbers[i]) == number, v) {
            if pieces[i] == 1 {
                one = Some(b);
            } else {
                merged.extend_from_slice(b);
            }
        }
        Ok(())
    })
    .map_err(bad)?;
    let read = match (pieces[i], one) {
        (0, _) => Err(RowError::Envelope {
            envelope: "Debezium",
            reason: format!("op \"{}\" without its \"{image}\" message", code as char),
        }),
        (_, Some(v)) => encode_message(plan, row, v, &meta, scratch, out),
        _ => encode_message(plan, row, &merged, &meta, scratch, out),
    };
    scratch.image = merged;
    read
}

/// Epoch milliseconds from a varint, or from a wrapper message's field 1.
fn wire_millis(v: &WireValue<'_>) -> Option<i64> {
    match v {
        WireValue::Varint(n) => i64::try_from(*n).ok(),
        WireValue::Delimited(b) => {
            let mut ms = None;
            each_field(b, |number, v| {
                if number == 1 {
                    ms = wire_millis(&v);
                }
                Ok(())
            })
            .ok()?;
            // A wrapper of 0 leaves its field off the wire.
            Some(ms.unwrap_or(0))
        }
        WireValue::Fixed => None,
    }
}

/// The `ts_ms`, `db` and `table` fields (numbers `fields`) of a change event's `source`.
fn read_source<'a>(
    body: &'a [u8],
    fields: [Option<u32>; 3],
    source: &mut EventSource<'a>,
) -> Result<(), String> {
    each_field(body, |number, v| {
        let is = |f: Option<u32>| f.map(u64::from) == Some(number);
        if is(fields[0]) {
            source.source_ts_ms = wire_millis(&v).or(source.source_ts_ms);
        } else if let WireValue::Delimited(b) = v {
            if is(fields[1]) {
                source.db = Some(Text::Bytes(b));
            } else if is(fields[2]) {
                source.table = Some(Text::Bytes(b));
            }
        }
        Ok(())
    })
    .map_err(|e| format!("field \"source\": {e}"))
}

/// Appends the row of the encoded message `body` of type `m` to `out`.
fn encode_message(
    plan: &RowPlan,
    m: &BoundMessage,
    body: &[u8],
    meta: &MessageMeta<'_>,
    scratch: &mut ProtobufScratch,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    if let Some(flat) = &m.flat {
        scratch.text.clear();
        scratch.fields.clear();
        scratch.fields.resize(plan.field_count(), None);
        write_flat(
            flat,
            body,
            plan.unknown_fields == UnknownFields::Error,
            &mut scratch.flat,
            &mut scratch.text,
            &mut scratch.fields,
        )
        .map_err(|e| match e {
            RowError::InvalidProtobuf { reason } => RowError::InvalidProtobuf {
                reason: format!("{} does not decode: {reason}", m.desc.full_name()),
            },
            other => other,
        })?;
        return encode_fields_row(plan, &scratch.text, &scratch.fields, meta, out);
    }
    let msg =
        DynamicMessage::decode(m.desc.clone(), body).map_err(|e| RowError::InvalidProtobuf {
            reason: format!("{} does not decode: {e}", m.desc.full_name()),
        })?;
    if plan.unknown_fields == UnknownFields::Error {
        if let Some(f) = m
            .fields
            .iter()
            .find(|f| f.id.is_none() && msg.has_field(&f.desc))
        {
            return Err(RowError::UnknownField {
                field: f.desc.name().to_string(),
            });
        }
    }
    scratch.text.clear();
    scratch.fields.clear();
    scratch.fields.resize(plan.field_count(), None);
    for f in &m.fields {
        let Some(id) = f.id else { continue };
        if f.presence && !msg.has_field(&f.desc) {
            continue;
        }
        let value = msg.get_field(&f.desc);
        let start = scratch.text.len();
        let kind = top_level(&value, f, &mut scratch.text).map_err(|reason| {
            RowError::InvalidProtobuf {
                reason: format!("field {:?}: {reason}", f.desc.name()),
            }
        })?;
        if let Some(slot) = scratch.fields.get_mut(id) {
            *slot = Some(FieldValue {
                start,
                end: scratch.text.len(),
                kind,
            });
        }
    }
    encode_fields_row(plan, &scratch.text, &scratch.fields, meta, out)
}

/// A top-level field's value: strings and bytes go in as they are (no escaping, binary
/// kept), everything else as JSON.
fn top_level(v: &Value, f: &BoundField, out: &mut Vec<u8>) -> Result<FieldKind, String> {
    match (v, f.repeated) {
        (Value::String(s), false) => Ok(raw(s.as_bytes(), out)),
        (Value::Bytes(b), false) => Ok(raw(b, out)),
        (v, _) => write_json(v, &f.kind, out, 0),
    }
}

fn raw(b: &[u8], out: &mut Vec<u8>) -> FieldKind {
    out.push(b'"');
    out.extend_from_slice(b);
    out.push(b'"');
    FieldKind::Raw
}

/// Writes `v` (a value of `kind`: a field's, a list's element's, a map's value's) as JSON.
fn write_json(
    v: &Value,
    kind: &Kind,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<FieldKind, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(match v {
        Value::Bool(b) => {
            out.extend_from_slice(if *b { b"true" } else { b"false" });
            if *b {
                FieldKind::True
            } else {
                FieldKind::False
            }
        }
        Value::I32(n) => int(itoa::Buffer::new().format(*n), out),
        Value::I64(n) => int(itoa::Buffer::new().format(*n), out),
        Value::U32(n) => int(itoa::Buffer::new().format(*n), out),
        Value::U64(n) => int(itoa::Buffer::new().format(*n), out),
        Value::F32(x) => write_float(f64::from(*x), out),
        Value::F64(x) => write_float(*x, out),
        Value::String(s) => {
            json_string(s.as_bytes(), out);
            FieldKind::Raw
        }
        Value::Bytes(b) => {
            json_string(b, out);
            FieldKind::Raw
        }
        Value::EnumNumber(n) => match kind {
            Kind::Enum(e) => match e.get_value(*n) {
                Some(ev) => {
                    json_string(ev.name().as_bytes(), out);
                    FieldKind::Raw
                }
                None => int(itoa::Buffer::new().format(*n), out),
            },
            _ => int(itoa::Buffer::new().format(*n), out),
        },
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, kind, out, depth + 1)?;
            }
            out.push(b']');
            FieldKind::Arr
        }
        Value::Map(entries) => {
            let value_field = match kind {
                Kind::Message(entry) => entry.map_entry_value_field(),
                _ => return Err("a map without its entry type".into()),
            };
            let value_kind = value_field.kind();
            let mut keys: Vec<&MapKey> = entries.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let key = match k {
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                    MapKey::String(s) => s.clone(),
                };
                json_string(key.as_bytes(), out);
                out.push(b':');
                if let Some(v) = entries.get(k) {
                    write_json(v, &value_kind, out, depth + 1)?;
                }
            }
            out.push(b'}');
            FieldKind::Obj
        }
        Value::Message(m) => write_message(m, out, depth)?,
    })
}

/// The column `unknown_fields = "add"` adds for field `f`: the type sluice writes its values
/// into as they are. Scalars by their width and sign, `bytes` and enums (their names) as
/// `String`; a field with presence (proto3 `optional`, proto2, a `Timestamp`) `Nullable`, so
/// that an absent value is NULL; `repeated` an `Array`, a map a `Map`; `Timestamp`
/// `DateTime64(9, 'UTC')` and the wrapper types `Nullable` of their value; another message
/// a named `Tuple` of its fields (never Nullable: an absent one is the Tuple of defaults).
/// `None` for a field of no such type (`Any`, `Struct`, `Duration`, a message nested in
/// itself deeper than the decoder reads): it gets no column and is skipped.
fn column_type(f: &FieldDescriptor, depth: usize) -> Option<String> {
    fn of(kind: &Kind, depth: usize) -> Option<(String, bool)> {
        // (type, whether it may be Nullable)
        Some(match kind {
            Kind::Double => ("Float64".into(), true),
            Kind::Float => ("Float32".into(), true),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => ("Int32".into(), true),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => ("Int64".into(), true),
            Kind::Uint32 | Kind::Fixed32 => ("UInt32".into(), true),
            Kind::Uint64 | Kind::Fixed64 => ("UInt64".into(), true),
            Kind::Bool => ("Bool".into(), true),
            Kind::String | Kind::Bytes | Kind::Enum(_) => ("String".into(), true),
            Kind::Message(m) => match m.full_name() {
                "google.protobuf.Timestamp" => ("DateTime64(9, 'UTC')".into(), true),
                wrapper => {
                    let inner = match wrapper {
                        "google.protobuf.DoubleValue" => "Float64",
                        "google.protobuf.FloatValue" => "Float32",
                        "google.protobuf.Int64Value" => "Int64",
                        "google.protobuf.UInt64Value" => "UInt64",
                        "google.protobuf.Int32Value" => "Int32",
                        "google.protobuf.UInt32Value" => "UInt32",
                        "google.protobuf.BoolValue" => "Bool",
                        "google.protobuf.StringValue" | "google.protobuf.BytesValue" => "String",
                        name if name.starts_with("google.protobuf.") || depth >= MAX_DEPTH => {
                            return None
                        }
                        _ => {
                            let mut elements = Vec::new();
                            for f in m.fields() {
                                let ty = column_type(&f, depth + 1)?;
                                elements.push(format!(
                                    "{} {ty}",
                                    crate::clickhouse::sql::quote_ident(f.name())
                                ));
                            }
                            if elements.is_empty() {
                                return None;
                            }
                            return Some((format!("Tuple({})", elements.join(", ")), false));
                        }
                    };
                    (format!("Nullable({inner})"), false)
                }
            },
        })
    }
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            return None;
        };
        let (key, _) = of(&entry.map_entry_key_field().kind(), depth)?;
        let (value, _) = of(&entry.map_entry_value_field().kind(), depth)?;
        return Some(format!("Map({key}, {value})"));
    }
    let (ty, nullable) = of(&f.kind(), depth)?;
    Some(if f.is_list() {
        format!("Array({ty})")
    } else if nullable && f.supports_presence() {
        format!("Nullable({ty})")
    } else {
        ty
    })
}

/// Well-known types whose JSON form is not an object of their fields: inside an `Any` they go
/// under `"value"` (proto3's JSON mapping).
const JSON_FORM_OF_THEIR_OWN: &[&str] = &[
    "google.protobuf.Any",
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
];

/// `google.protobuf.Any` as proto3's JSON mapping writes it: the message it wraps, decoded by
/// the type its URL names, as an object with `"@type"` first and then its fields, or
/// `{"@type": ..., "value": ...}` for a well-known type with a JSON form of its own; an Any
/// with no type set is `{}`. The type must be one the schema, its imports or Google's
/// well-known types define: otherwise (or if its bytes do not decode as that type) the
/// message is refused with the type URL, as a JSON writer of Protobuf refuses it.
fn write_any(m: &DynamicMessage, out: &mut Vec<u8>, depth: usize) -> Result<FieldKind, String> {
    let url = match m.get_field_by_name("type_url").as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    if url.is_empty() {
        out.extend_from_slice(b"{}");
        return Ok(FieldKind::Obj);
    }
    let bytes = match m.get_field_by_name("value").as_deref() {
        Some(Value::Bytes(b)) => b.clone(),
        _ => Default::default(),
    };
    let name = url.rsplit('/').next().unwrap_or(&url);
    let desc = m
        .descriptor()
        .parent_pool()
        .get_message_by_name(name)
        .ok_or_else(|| {
            format!("google.protobuf.Any holds {url:?}, a type the schema does not define")
        })?;
    let inner = DynamicMessage::decode(desc, bytes).map_err(|e| {
        format!("google.protobuf.Any of type {url:?} does not decode as that type: {e}")
    })?;
    let mut body = Vec::new();
    write_message(&inner, &mut body, depth + 1)?;
    out.extend_from_slice(b"{\"@type\":");
    json_string(url.as_bytes(), out);
    if JSON_FORM_OF_THEIR_OWN.contains(&inner.descriptor().full_name()) || !body.starts_with(b"{") {
        out.extend_from_slice(b",\"value\":");
        out.extend_from_slice(&body);
        out.push(b'}');
    } else if body.len() > 2 {
        out.push(b',');
        out.extend_from_slice(&body[1..]);
    } else {
        out.push(b'}');
    }
    Ok(FieldKind::Obj)
}

fn int(text: &str, out: &mut Vec<u8>) -> FieldKind {
    out.extend_from_slice(text.as_bytes());
    FieldKind::Int
}

/// A message as an object of its fields, or a well-known type as the value it stands for.
fn write_message(m: &DynamicMessage, out: &mut Vec<u8>, depth: usize) -> Result<FieldKind, String> {
    let desc = m.descriptor();
    let field = |name: &str| m.get_field_by_name(name);
    match desc.full_name() {
        "google.protobuf.Any" => return write_any(m, out, depth),
        "google.protobuf.Timestamp" | "google.protobuf.Duration" => {
            let secs = match field("seconds").as_deref() {
                Some(Value::I64(s)) => *s,
                _ => 0,
            };
            let nanos = match field("nanos").as_deref() {
                Some(Value::I32(n)) => *n,
                _ => 0,
            };
            let total = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
            return Ok(write_scaled(total, 9, out));
        }
        // The JSON they stand for (proto3's JSON mapping): an object, any JSON value, an
        // array. A `Value` with no kind set is null.
        "google.protobuf.Struct" => {
            out.push(b'{');
            if let Some(Value::Map(entries)) = field("fields").as_deref() {
                let mut keys: Vec<&MapKey> = entries.keys().collect();
                keys.sort();
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let MapKey::String(key) = k else {
                        return Err("a Struct key that is not a string".into());
                    };
                    json_string(key.as_bytes(), out);
                    out.push(b':');
                    match entries.get(k) {
                        Some(Value::Message(v)) => {
                            write_message(v, out, depth + 1)?;
                        }
                        _ => out.extend_from_slice(b"null"),
                    }
                }
            }
            out.push(b'}');
            return Ok(FieldKind::Obj);
        }
        "google.protobuf.ListValue" => {
            out.push(b'[');
            if let Some(Value::List(items)) = field("values").as_deref() {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    match item {
                        Value::Message(v) => {
                            write_message(v, out, depth + 1)?;
                        }
                        _ => out.extend_from_slice(b"null"),
                    }
                }
            }
            out.push(b']');
            return Ok(FieldKind::Arr);
        }
        "google.protobuf.Value" => {
            // A JSON number is a double here; a whole one is written as the integer JSON
            // writers print (1, not 1.0), exactly up to 2^53.
            if let Some(Value::F64(x)) = desc
                .get_field_by_name("number_value")
                .filter(|f| m.has_field(f))
                .map(|f| m.get_field(&f).into_owned())
            {
                if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
                    return Ok(int(itoa::Buffer::new().format(x as i64), out));
                }
                return Ok(write_float(x, out));
            }
            for name in [
                "number_value",
                "string_value",
                "bool_value",
                "struct_value",
                "list_value",
            ] {
                if let Some(f) = desc.get_field_by_name(name) {
                    if m.has_field(&f) {
                        return write_json(&m.get_field(&f), &f.kind(), out, depth + 1);
                    }
                }
            }
            // `null_value`, or no kind at all.
            out.extend_from_slice(b"null");
            return Ok(FieldKind::Null);
        }
        "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue" => {
            if let Some(f) = desc.get_field_by_name("value") {
                let v = m.get_field(&f);
                return write_json(&v, &f.kind(), out, depth + 1);
            }
        }
        _ => {}
    }
    out.push(b'{');
    for (i, f) in desc.fields().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_string(f.name().as_bytes(), out);
        out.push(b':');
        if f.supports_presence() && !m.has_field(&f) {
            out.extend_from_slice(b"null");
        } else {
            write_json(&m.get_field(&f), &f.kind(), out, depth + 1)?;
        }
    }
    out.push(b'}');
    Ok(FieldKind::Obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::tests::{
        event_source_plan, event_source_row, named_plan as plan, ty, META,
    };
    use crate::decode::json::{encode_json_row, ColumnPlan, MetaField};
    use protox::prost::Message as _;

    const PROTO: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        import "google/protobuf/wrappers.proto";
        message Order {
            int64 id = 1;
            sint32 delta = 2;
            fixed64 big = 3;
            bool ok = 4;
            double score = 5;
            float ratio = 6;
            string name = 7;
            optional string note = 8;
            Kind kind = 9;
            repeated string tags = 10;
            map<string, int64> attrs = 11;
            google.protobuf.Timestamp at = 12;
            google.protobuf.Int32Value maybe = 13;
            Inner inner = 14;
            bytes blob = 15;
            repeated Inner skipped = 16;
            enum Kind { A = 0; B = 1; C = 2; }
            message Inner { int32 x = 1; string y = 2; }
        }
        message Other { string only = 1; }
    "#;

    fn order_desc(c: &Compiled) -> MessageDescriptor {
        c.messages
            .iter()
            .find(|(_, m)| m.full_name() == "shop.Order")
            .map(|(_, m)| m.clone())
            .unwrap()
    }

    /// The wire-format message: schema id 7, message indexes `indexes`, then `msg`.
    fn framed(indexes: &[u8], msg: &DynamicMessage) -> Vec<u8> {
        let mut m = vec![0, 0, 0, 0, 7];
        m.extend_from_slice(indexes);
        m.extend(msg.encode_to_vec());
        m
    }

    fn row(plan: &RowPlan, payload: &[u8]) -> Result<Vec<u8>, RowError> {
        row_of(&Compiled::new(PROTO, &[]).unwrap(), plan, payload)
    }

    /// The row `payload` (a framed message of `c`'s schema) makes under `plan`.
    fn row_of(c: &Compiled, plan: &RowPlan, payload: &[u8]) -> Result<Vec<u8>, RowError> {
        let bound = Bound::new(c, plan, false);
        let mut out = vec![0xAA];
        encode_protobuf_row(
            plan,
            &bound,
            payload,
            &META,
            &mut ProtobufScratch::default(),
            &mut out,
        )?;
        assert_eq!(out.remove(0), 0xAA, "the row is appended");
        Ok(out)
    }

    /// A Debezium change event as Confluent's Protobuf converter writes one: the row's
    /// message in `before` and `after`, then the source and the operation.
    const CHANGE_EVENT: &str = r#"
        syntax = "proto3";
        package shop.public.orders;
        message Envelope {
            Value before = 1;
            Value after = 2;
            Source source = 3;
            string op = 4;
            optional int64 ts_ms = 5;
            message Value { int64 id = 1; optional string name = 2; }
            message Source { string db = 1; }
        }
        message NotAnEvent { string op = 1; }
    "#;

    /// `envelope = "debezium"`: the row is the event's `after` (c, r, u) or `before` (d),
    /// on the wire path and the `DynamicMessage` path alike; an image in pieces merges;
    /// events without a row, and message types that are no event, are errors.
    #[test]
    fn debezium_events_give_the_row_of_their_image() {
        let c = Compiled::new(CHANGE_EVENT, &[]).unwrap();
        let plan = RowPlan::new(
            vec![
                ColumnPlan::field("id", ty("Int64")),
                ColumnPlan::field("name", ty("Nullable(String)")),
                ColumnPlan::meta("__op", ty("String"), MetaField::Op),
                ColumnPlan::meta("__deleted", ty("UInt8"), MetaField::Deleted),
            ],
            UnknownFields::Error,
            false,
        )
        .unwrap();
        let desc = |name: &str| {
            c.messages
                .iter()
                .find(|(_, m)| m.full_name() == name)
                .map(|(_, m)| m.clone())
                .unwrap()
        };
        let (envelope, value, source) = (
            desc("shop.public.orders.Envelope"),
            desc("shop.public.orders.Envelope.Value"),
            desc("shop.public.orders.Envelope.Source"),
        );
        let image = |id: i64, name: Option<&str>| {
            let mut v = DynamicMessage::new(value.clone());
            v.set_field_by_name("id", Value::I64(id));
            if let Some(n) = name {
                v.set_field_by_name("name", Value::String(n.into()));
            }
            Value::Message(v)
        };
        let event = |op: &str, before: Option<Value>, after: Option<Value>| {
            let mut e = DynamicMessage::new(envelope.clone());
            let mut src = DynamicMessage::new(source.clone());
            src.set_field_by_name("db", Value::String("shop".into()));
            if let Some(b) = before {
                e.set_field_by_name("before", b);
            }
            if let Some(a) = after {
                e.set_field_by_name("after", a);
            }
            e.set_field_by_name("source", Value::Message(src));
            e.set_field_by_name("op", Value::String(op.into()));
            e.set_field_by_name("ts_ms", Value::I64(1));
            let mut m = vec![0, 0, 0, 0, 7, 0];
            m.extend(e.encode_to_vec());
            m
        };
        let want = |json: &str, op: u8| {
            let mut out = Vec::new();
            let meta = MessageMeta {
                op: Some(op),
                ..META
            };
            encode_json_row(&plan, json.as_bytes(), &meta, &mut out).unwrap();
            out
        };
        // An image sent in two pieces (as a merged message may be): id, then name.
        let mut pieces = event("u", None, Some(image(9, None)));
        pieces.extend(DynamicMessage::encode_to_vec(&{
            let mut e = DynamicMessage::new(envelope.clone());
            e.set_field_by_name("after", image(0, Some("late")));
            e
        }));
        for slow in [false, true] {
            let mut bound = Bound::new(&c, &plan, true);
            if slow {
                bound = bound.without_flat();
            }
            let read = |payload: &[u8]| {
                let mut out = Vec::new();
                let mut scratch = ProtobufScratch::default();
                encode_protobuf_row(&plan, &bound, payload, &META, &mut scratch, &mut out)
                    .map(|()| out)
                    .map_err(|e| e.to_string())
            };
            let a = || Some(image(1, Some("a")));
            assert_eq!(
                read(&event("c", None, a())),
                Ok(want(r#"{"id":1,"name":"a"}"#, b'c'))
            );
            assert_eq!(
                read(&event("r", None, Some(image(3, Some("s"))))),
                Ok(want(r#"{"id":3,"name":"s"}"#, b'r'))
            );
            assert_eq!(
                read(&event("u", a(), Some(image(1, Some("b"))))),
                Ok(want(r#"{"id":1,"name":"b"}"#, b'u'))
            );
            let deleted = read(&event("d", Some(image(2, Some("x"))), None)).unwrap();
            assert_eq!(deleted, want(r#"{"id":2,"name":"x"}"#, b'd'), "slow {slow}");
            assert_eq!(deleted.last(), Some(&1), "a delete is flagged");
            // The second piece's id is proto3's zero, not on the wire: the first one's stays.
            assert_eq!(read(&pieces), Ok(want(r#"{"id":9,"name":"late"}"#, b'u')));
            // The event's ts_ms and its source's db fill their columns; the table, which
            // this source does not name, is NULL.
            let meta_plan = event_source_plan("Int64");
            let mut bound_meta = Bound::new(&c, &meta_plan, true);
            if slow {
                bound_meta = bound_meta.without_flat();
            }
            let mut out = Vec::new();
            encode_protobuf_row(
                &meta_plan,
                &bound_meta,
                &event("c", None, a()),
                &META,
                &mut ProtobufScratch::default(),
                &mut out,
            )
            .unwrap();
            assert_eq!(out, event_source_row(), "slow {slow}");
            for (payload, says) in [
                (event("t", None, None), "a truncate (op \"t\") has no row"),
                (event("m", None, None), "a message (op \"m\") has no row"),
                (event("", None, a()), "no \"op\" field"),
                (event("x", None, a()), "op \"x\" is not c, r, u or d"),
                (
                    event("c", None, None),
                    "op \"c\" without its \"after\" message",
                ),
                (
                    event("d", None, a()),
                    "op \"d\" without its \"before\" message",
                ),
                // op as a varint (field 4, wire type 0).
                (
                    [vec![0, 0, 0, 0, 7, 0], vec![0x20, 1]].concat(),
                    "field \"op\": not length-delimited",
                ),
                // Message index [1]: NotAnEvent.
                (
                    vec![0, 0, 0, 0, 7, 2, 2],
                    "NotAnEvent is not a change event",
                ),
            ] {
                let e = read(&payload).unwrap_err();
                assert!(e.contains(says), "slow {slow}: {e}");
            }
        }
    }

    fn order(c: &Compiled, full: bool) -> DynamicMessage {
        let d = order_desc(c);
        let mut m = DynamicMessage::new(d.clone());
        let set = |m: &mut DynamicMessage, name: &str, v: Value| m.set_field_by_name(name, v);
        set(&mut m, "id", Value::I64(-9_007_199_254_740_993));
        set(&mut m, "delta", Value::I32(-7));
        set(&mut m, "big", Value::U64(u64::MAX));
        set(&mut m, "ok", Value::Bool(true));
        set(&mut m, "score", Value::F64(0.1));
        set(&mut m, "ratio", Value::F32(0.1));
        set(&mut m, "name", Value::String("a \"q\" \\ n\n".into()));
        set(&mut m, "kind", Value::EnumNumber(2));
        set(
            &mut m,
            "tags",
            Value::List(vec![Value::String("x".into()), Value::String("y".into())]),
        );
        set(
            &mut m,
            "attrs",
            Value::Map(
                [
                    (MapKey::String("z".into()), Value::I64(1)),
                    (MapKey::String("a".into()), Value::I64(2)),
                ]
                .into_iter()
                .collect(),
            ),
        );
        set(&mut m, "blob", Value::Bytes(vec![0xff, 0x00, 0x22].into()));
        if full {
            set(&mut m, "note", Value::String("hi".into()));
            let ts = d.get_field_by_name("at").unwrap();
            let Kind::Message(ts_desc) = ts.kind() else {
                unreachable!()
            };
            let mut t = DynamicMessage::new(ts_desc);
            t.set_field_by_name("seconds", Value::I64(1_700_000_000));
            t.set_field_by_name("nanos", Value::I32(120_000_000));
            set(&mut m, "at", Value::Message(t));
            let w = d.get_field_by_name("maybe").unwrap();
            let Kind::Message(w_desc) = w.kind() else {
                unreachable!()
            };
            let mut wv = DynamicMessage::new(w_desc);
            wv.set_field_by_name("value", Value::I32(-3));
            set(&mut m, "maybe", Value::Message(wv));
            let i = d.get_field_by_name("inner").unwrap();
            let Kind::Message(i_desc) = i.kind() else {
                unreachable!()
            };
            let mut inner = DynamicMessage::new(i_desc);
            inner.set_field_by_name("x", Value::I32(3));
            inner.set_field_by_name("y", Value::String("q".into()));
            set(&mut m, "inner", Value::Message(inner));
        }
        m
    }

    const COLUMNS: &[(&str, &str)] = &[
        ("id", "Int64"),
        ("delta", "Int32"),
        ("big", "UInt64"),
        ("ok", "Bool"),
        ("score", "Float64"),
        ("ratio", "Float32"),
        ("name", "String"),
        ("note", "Nullable(String)"),
        ("kind", "Enum8('A' = 0, 'B' = 1, 'C' = 2)"),
        ("tags", "Array(String)"),
        ("attrs", "Map(String, Int64)"),
        ("at", "Nullable(DateTime64(3, 'UTC'))"),
        ("maybe", "Nullable(Int32)"),
        ("inner", "Nullable(Tuple(x Int32, y String))"),
        ("blob", "String"),
    ];

    #[test]
    fn every_type_converts_as_its_json_form_does() {
        let c = Compiled::new(PROTO, &[]).unwrap();
        // Nullable columns so that unset fields have somewhere to go.
        let cols: Vec<ColumnPlan> = COLUMNS
            .iter()
            .map(|(n, t)| {
                let col = ColumnPlan::field(*n, ty(t));
                if t.starts_with("Nullable") {
                    col.on_missing(crate::decode::json::OnMissing::Null)
                } else {
                    col
                }
            })
            .collect();
        let p = RowPlan::new(cols, UnknownFields::Error, false).unwrap();
        for full in [false, true] {
            // A lone 0 is the first message; [1, 0] the same, written out.
            for indexes in [&[0u8][..], &[2, 0][..]] {
                let got = row(&p, &framed(indexes, &order(&c, full))).unwrap();
                let (note, at, maybe, inner) = if full {
                    ("\"hi\"", "\"2023-11-14 22:13:20.12\"", "-3", "[3,\"q\"]")
                } else {
                    ("null", "null", "null", "null")
                };
                let json = format!(
                    r#"{{"id":-9007199254740993,"delta":-7,"big":18446744073709551615,"ok":true,
                    "score":0.1,"ratio":{},"name":"a \"q\" \\ n\n","note":{note},"kind":"C",
                    "tags":["x","y"],"attrs":{{"a":2,"z":1}},"at":{at},"maybe":{maybe},
                    "inner":{inner},"blob":"__"}}"#,
                    f64::from(0.1f32)
                );
                let mut want = Vec::new();
                encode_json_row(&p, json.as_bytes(), &META, &mut want).unwrap();
                // The blob's bytes are not valid JSON text: patch them into the JSON row.
                let at = want.len() - 3;
                want.splice(at.., [3, 0xff, 0x00, 0x22]);
                assert_eq!(got, want, "full {full}, indexes {indexes:?}");
            }
        }
    }

    #[test]
    fn proto3_scalars_not_on_the_wire_are_zero_and_unknown_fields_follow_the_route() {
        let c = Compiled::new(PROTO, &[]).unwrap();
        let empty = DynamicMessage::new(order_desc(&c));
        let p = plan(&[("id", "Int64"), ("name", "String")], UnknownFields::Error);
        assert_eq!(
            row(&p, &framed(&[0], &empty)).unwrap(),
            [0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let e = row(&p, &framed(&[0], &order(&c, false)))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "unknown field \"delta\"");
        // An optional field that is not set is missing: no default, an error naming it.
        let p = plan(&[("note", "String")], UnknownFields::Ignore);
        let e = row(&p, &framed(&[0], &empty)).unwrap_err().to_string();
        assert!(
            e.starts_with("missing field \"note\" for column note String"),
            "{e}"
        );
    }

    #[test]
    fn bad_messages_say_why() {
        let c = Compiled::new(PROTO, &[]).unwrap();
        let p = plan(
            &[("id", "Int64"), ("only", "String")],
            UnknownFields::Ignore,
        );
        let good = framed(&[0], &order(&c, true));
        let e = row(&p, &good[..good.len() - 3]).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid Protobuf message: shop.Order does not decode"),
            "{e}"
        );
        let e = row(&p, &framed(&[2, 6], &order(&c, true)))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid Protobuf message: message index [3] names no message of the schema"
        );
        let e = row(&p, &[0, 0, 0, 0, 7, 0x80]).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid Protobuf message: message indexes: truncated: the message ends inside a number"
        );
        // Index 1 is `Other`, the file's second message: another message type, same id.
        let mut other = DynamicMessage::new(
            c.messages
                .iter()
                .find(|(_, m)| m.full_name() == "shop.Other")
                .map(|(_, m)| m.clone())
                .unwrap(),
        );
        other.set_field_by_name("only", Value::String("o".into()));
        let only = plan(&[("only", "String")], UnknownFields::Error);
        assert_eq!(row(&only, &framed(&[2, 2], &other)).unwrap(), [1, b'o']);
        // A wrong value for its column names the field and the column.
        let p = plan(&[("delta", "UInt8")], UnknownFields::Ignore);
        let e = row(&p, &good).unwrap_err().to_string();
        assert_eq!(
            e,
            "field \"delta\" -> column delta UInt8: -7 out of range 0..=255"
        );
    }

    const FLAT: &str = r#"
        syntax = "proto3";
        import "google/protobuf/timestamp.proto";
        import "google/protobuf/duration.proto";
        message Flat {
            int32 i32 = 1; int64 i64 = 2; uint32 u32 = 3; uint64 u64 = 4; sint32 s32 = 5;
            sint64 s64 = 6; bool b = 7; E e = 8; fixed32 f32 = 9; sfixed32 sf32 = 10;
            float fl = 11; fixed64 f64 = 12; sfixed64 sf64 = 13; double d = 14; string s = 15;
            bytes by = 16; optional int64 opt = 17; repeated int32 ri = 18;
            repeated string rs = 19; repeated double rd = 20; repeated E re = 21;
            int64 skipped = 22; repeated bytes rb = 23; google.protobuf.Timestamp at = 24;
            repeated google.protobuf.Duration ds = 25;
            enum E { Z = 0; ONE = 1; }
        }
    "#;

    fn flat_plan() -> RowPlan {
        let cols = [
            ("i32", "Int32"),
            ("i64", "Int64"),
            ("u32", "UInt32"),
            ("u64", "UInt64"),
            ("s32", "Int32"),
            ("s64", "Int64"),
            ("b", "Bool"),
            ("e", "String"),
            ("f32", "UInt32"),
            ("sf32", "Int32"),
            ("fl", "Float32"),
            ("f64", "UInt64"),
            ("sf64", "Int64"),
            ("d", "Float64"),
            ("s", "String"),
            ("by", "String"),
            ("opt", "Nullable(Int64)"),
            ("ri", "Array(Int32)"),
            ("rs", "Array(String)"),
            ("rd", "Array(Float64)"),
            ("re", "Array(String)"),
            ("rb", "Array(String)"),
            ("at", "Nullable(DateTime64(9, 'UTC'))"),
            ("ds", "Array(Decimal(38, 9))"),
        ];
        let columns = cols
            .iter()
            .map(|(n, t)| {
                let c = ColumnPlan::field(*n, ty(t));
                if *n == "opt" || *n == "at" {
                    c.on_missing(crate::decode::json::OnMissing::Null)
                } else {
                    c
                }
            })
            .collect();
        RowPlan::new(columns, UnknownFields::Ignore, false).unwrap()
    }

    /// Both paths' row (or error) for one wire-format message body.
    fn both_paths(
        plan: &RowPlan,
        c: &Compiled,
        body: &[u8],
    ) -> (Result<Vec<u8>, String>, Result<Vec<u8>, String>) {
        let mut payload = vec![0, 0, 0, 0, 7, 0];
        payload.extend_from_slice(body);
        let fast = Bound::new(c, plan, false);
        assert!(
            fast.messages[0].flat.is_some(),
            "Flat is read from the wire"
        );
        let slow = Bound::new(c, plan, false).without_flat();
        let run = |b: &Bound| {
            let mut out = Vec::new();
            encode_protobuf_row(
                plan,
                b,
                &payload,
                &META,
                &mut ProtobufScratch::default(),
                &mut out,
            )
            .map(|_| out)
            .map_err(|e| e.to_string())
        };
        (run(&fast), run(&slow))
    }

    #[test]
    fn the_wire_path_writes_what_the_dynamic_message_path_writes() {
        let c = Compiled::new(FLAT, &[]).unwrap();
        let plan = flat_plan();
        let desc = c.messages[0].1.clone();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let texts = ["", "plain", "q\"uote\\slash\n\t\u{1}", "ünï✓", "a,b"];
        let floats = [
            0.0,
            -0.0,
            0.1,
            -1e300,
            3.5e-310,
            f64::NAN,
            f64::INFINITY,
            1.0,
        ];
        let (mut ok, mut errs) = (0, 0);
        for i in 0..400u64 {
            let mut m = DynamicMessage::new(desc.clone());
            let r = next();
            let mut set = |name: &str, v: Value| {
                // Leave about a third of the fields unset (absent on the wire).
                if next() % 3 != 0 {
                    m.set_field_by_name(name, v);
                }
            };
            let edge = |k: u64| k % 4 == 0;
            set("i32", Value::I32(if edge(r) { i32::MIN } else { r as i32 }));
            set(
                "i64",
                Value::I64(if edge(r >> 2) { i64::MIN } else { r as i64 }),
            );
            set("u32", Value::U32(r as u32));
            set(
                "u64",
                Value::U64(if edge(r >> 4) { u64::MAX } else { r >> 3 }),
            );
            set("s32", Value::I32(-(r as i32 >> 3)));
            set("s64", Value::I64(-(r as i64 >> 5)));
            set("b", Value::Bool(r % 2 == 0));
            set(
                "e",
                Value::EnumNumber((r % 3) as i32 * if edge(r >> 6) { 5 } else { 1 }),
            );
            set("f32", Value::U32((r >> 7) as u32));
            set("sf32", Value::I32(-((r >> 9) as i32)));
            set("fl", Value::F32(floats[(r % 8) as usize] as f32));
            set("f64", Value::U64(r));
            set("sf64", Value::I64(r as i64));
            set("d", Value::F64(floats[((r >> 3) % 8) as usize]));
            set("s", Value::String(texts[(r % 5) as usize].into()));
            let mut blob = vec![0xff, 0, b'"', (i % 256) as u8];
            blob.truncate((r % 5) as usize);
            set("by", Value::Bytes(blob.into()));
            set("opt", Value::I64(i as i64 - 200));
            set(
                "ri",
                Value::List((0..r % 4).map(|k| Value::I32(k as i32 - 1)).collect()),
            );
            set(
                "rs",
                Value::List(
                    (0..r % 3)
                        .map(|k| Value::String(texts[k as usize + 2].into()))
                        .collect(),
                ),
            );
            set(
                "rd",
                Value::List(
                    (0..r % 3)
                        .map(|k| Value::F64(floats[k as usize + 2]))
                        .collect(),
                ),
            );
            set(
                "re",
                Value::List((0..r % 3).map(|k| Value::EnumNumber(k as i32)).collect()),
            );
            set("skipped", Value::I64(77));
            let rb: Vec<Value> = (0..r % 3)
                .map(|k| {
                    Value::Bytes(
                        if edge(r >> 11) && k == 1 {
                            vec![0xff]
                        } else {
                            b"ok".to_vec()
                        }
                        .into(),
                    )
                })
                .collect();
            set("rb", Value::List(rb));
            let seconds = |s: i64, n: i32, name: &str| {
                let Some(Kind::Message(d)) = desc.get_field_by_name(name).map(|f| f.kind()) else {
                    unreachable!()
                };
                let mut t = DynamicMessage::new(d);
                t.set_field_by_name("seconds", Value::I64(s));
                t.set_field_by_name("nanos", Value::I32(n));
                Value::Message(t)
            };
            set(
                "at",
                seconds(
                    (r >> 20) as i64 % 4_000_000_000,
                    (r % 1_000_000_000) as i32,
                    "at",
                ),
            );
            let ds = (0..r % 3)
                .map(|k| seconds(k as i64 - 1, -(k as i32) * 250_000_000, "ds"))
                .collect();
            set("ds", Value::List(ds));
            let (fast, slow) = both_paths(&plan, &c, &m.encode_to_vec());
            assert_eq!(fast, slow, "message {i}: {m:?}");
            if fast.is_ok() {
                ok += 1
            } else {
                errs += 1
            }
        }
        // Both outcomes were exercised: rows, and values their columns refuse.
        assert!(ok > 100 && errs > 10, "{ok} rows, {errs} errors");
    }

    #[test]
    fn the_wire_path_reads_unpacked_interleaved_and_repeated_values() {
        let c = Compiled::new(FLAT, &[]).unwrap();
        let plan = flat_plan();
        // ri (18) unpacked: 1; i32 (1): 5; ri: 2; unknown field 99: 7; i32: 6 (the last wins);
        // s (15): "x" twice; rd (20) unpacked and packed.
        let mut body = vec![0x90, 0x01, 1, 8, 5, 0x90, 0x01, 2, 0x98, 0x06, 7, 8, 6];
        body.extend([0x7a, 1, b'y', 0x7a, 1, b'x']);
        body.extend([0xa1, 0x01]);
        body.extend(1.5f64.to_le_bytes());
        body.extend([0xa2, 0x01, 8]);
        body.extend(2.5f64.to_le_bytes());
        let (fast, slow) = both_paths(&plan, &c, &body);
        assert_eq!(fast, slow);
        let row = fast.unwrap();
        assert_eq!(&row[..4], &6i32.to_le_bytes(), "the last i32 wins");
        // Truncated, a wrong wire type, a bad string: errors in both, the wire path's naming
        // the field.
        for bad in [
            &[0x90, 0x01][..],
            &[0x0d, 1, 2, 3, 4][..],
            &[0x7a, 2, 0xc3, 0x28][..],
        ] {
            let (fast, slow) = both_paths(&plan, &c, bad);
            let (f, s) = (fast.unwrap_err(), slow.unwrap_err());
            assert!(
                f.starts_with("invalid Protobuf message: Flat does not decode"),
                "{f}"
            );
            assert!(
                s.starts_with("invalid Protobuf message: Flat does not decode"),
                "{s}"
            );
        }
        let (fast, _) = both_paths(&plan, &c, &[0x0d, 1, 2, 3, 4]);
        assert!(fast.unwrap_err().contains("field \"i32\": wire type 5"));
    }

    #[test]
    fn field_numbers_beyond_the_table_are_found_too() {
        // 1, 1024 (the table's last) and numbers past it, up to Protobuf's largest.
        let c = Compiled::new(
            "syntax = \"proto3\"; message Flat { int32 a = 1; string b = 1024; int64 c = 5000; uint32 d = 536870911; }",
            &[],
        )
        .unwrap();
        let columns = [
            ("a", "Int32"),
            ("b", "String"),
            ("c", "Int64"),
            ("d", "UInt32"),
        ]
        .iter()
        .map(|(n, t)| ColumnPlan::field(*n, ty(t)))
        .collect();
        let plan = RowPlan::new(columns, UnknownFields::Ignore, false).unwrap();
        let tag = |number: u64, wire_type: u64| {
            let mut v = (number << 3) | wire_type;
            let mut out = Vec::new();
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
            out
        };
        let mut body = tag(536870911, 0);
        body.push(9);
        body.extend(tag(5000, 0));
        body.push(7);
        body.extend(tag(1024, 2));
        body.extend([2, b'h', b'i']);
        body.extend(tag(1, 0));
        body.push(3);
        body.extend(tag(2000, 0)); // a number the schema does not have: skipped
        body.push(1);
        let (fast, slow) = both_paths(&plan, &c, &body);
        assert_eq!(fast, slow);
        let mut want = 3i32.to_le_bytes().to_vec();
        want.extend([2, b'h', b'i']);
        want.extend(7i64.to_le_bytes());
        want.extend(9u32.to_le_bytes());
        assert_eq!(fast.unwrap(), want);
    }

    /// `google.protobuf.Struct`, `Value` and `ListValue` become the JSON they stand for, at the
    /// top level and nested: a String column receives the JSON text, a Nullable one NULL for
    /// a null `Value`, an Array column the list's elements.
    #[test]
    fn struct_value_and_list_value_are_the_json_they_stand_for() {
        let schema = r#"
            syntax = "proto3";
            import "google/protobuf/struct.proto";
            message Doc {
                int64 id = 1;
                google.protobuf.Struct attrs = 2;
                google.protobuf.Value v = 3;
                google.protobuf.ListValue l = 4;
                google.protobuf.Value gone = 5;
            }
        "#;
        let c = Compiled::new(schema, &[]).unwrap();
        let p = RowPlan::new(
            vec![
                ColumnPlan::field("id", ty("Int64")),
                ColumnPlan::field("attrs", ty("String")),
                ColumnPlan::field("v", ty("String")),
                ColumnPlan::field("l", ty("Array(String)")),
                ColumnPlan::field("gone", ty("Nullable(String)"))
                    .on_missing(crate::decode::json::OnMissing::Null),
            ],
            UnknownFields::Error,
            false,
        )
        .unwrap();
        let (_, desc) = c.top_level(None).unwrap();
        // Built through prost-reflect's own proto3 JSON mapping, as a producer's would be.
        let msg = DynamicMessage::deserialize(
            desc,
            &mut serde_json::Deserializer::from_str(
                r#"{"id":"7","attrs":{"b":[1,"x",null],"a":{"n":1.5,"t":true}},"v":"plain","l":["p",2,{"k":null}],"gone":null}"#,
            ),
        )
        .unwrap();
        let out = row_of(&c, &p, &framed(&[0], &msg)).unwrap();
        // The same row from the JSON a reader of the Struct would expect.
        let mut want = Vec::new();
        encode_json_row(
            &p,
            br#"{"id":7,"attrs":{"a":{"n":1.5,"t":true},"b":[1,"x",null]},"v":"plain","l":["p",2,{"k":null}],"gone":null}"#,
            &META,
            &mut want,
        )
        .unwrap();
        assert_eq!(out, want);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains(r#"{"a":{"n":1.5,"t":true},"b":[1,"x",null]}"#),
            "{text}"
        );
    }

    /// `google.protobuf.Any` is the message it wraps, as proto3's JSON mapping writes it: the
    /// wrapped message's fields after `"@type"`, a well-known type under `"value"`; a type the
    /// schema does not define refuses the message, naming the type URL.
    #[test]
    fn any_is_the_message_it_wraps() {
        let schema = r#"
            syntax = "proto3";
            package shop;
            import "google/protobuf/any.proto";
            import "google/protobuf/timestamp.proto";
            message Item { int64 sku = 1; string name = 2; }
            message Order {
                int64 id = 1;
                google.protobuf.Any detail = 2;
                google.protobuf.Any at = 3;
                google.protobuf.Any none = 4;
                google.protobuf.Any empty = 5;
            }
        "#;
        let c = Compiled::new(schema, &[]).unwrap();
        let p = RowPlan::new(
            vec![
                ColumnPlan::field("id", ty("Int64")),
                ColumnPlan::field("detail", ty("String")),
                ColumnPlan::field("at", ty("String")),
                ColumnPlan::field("none", ty("Nullable(String)"))
                    .on_missing(crate::decode::json::OnMissing::Null),
                ColumnPlan::field("empty", ty("String")),
            ],
            UnknownFields::Error,
            false,
        )
        .unwrap();
        let (_, desc) = c.top_level(Some("shop.Order")).unwrap();
        assert_eq!(desc.full_name(), "shop.Order");
        // Built through prost-reflect's own proto3 JSON mapping, as a producer's would be.
        let msg = DynamicMessage::deserialize(
            desc.clone(),
            &mut serde_json::Deserializer::from_str(
                r#"{"id":"7","detail":{"@type":"type.googleapis.com/shop.Item","sku":"5","name":"x"},
                   "at":{"@type":"type.googleapis.com/google.protobuf.Timestamp","value":"2024-01-01T00:00:01.5Z"}}"#,
            ),
        )
        .unwrap();
        // An Any that is set but holds no type (JSON readers refuse to write one).
        let any_desc = desc
            .get_field_by_name("detail")
            .and_then(|f| f.kind().as_message().cloned())
            .unwrap();
        let mut msg = msg;
        msg.set_field_by_name(
            "empty",
            Value::Message(DynamicMessage::new(any_desc.clone())),
        );
        // Order is the file's second message: indexes [1] (count 1, then 1, zigzag).
        let row = |msg: &DynamicMessage| row_of(&c, &p, &framed(&[2, 2], msg));
        let out = row(&msg).unwrap();
        let mut want = Vec::new();
        encode_json_row(
            &p,
            br#"{"id":7,"detail":{"@type":"type.googleapis.com/shop.Item","sku":5,"name":"x"},"at":{"@type":"type.googleapis.com/google.protobuf.Timestamp","value":1704067201.5},"none":null,"empty":{}}"#,
            &META,
            &mut want,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );

        // A type the schema does not define, and bytes that are not the type they claim.
        for (url, bytes, why) in [
            (
                "type.googleapis.com/shop.Nope",
                vec![8, 1],
                "a type the schema does not define",
            ),
            (
                "type.googleapis.com/shop.Item",
                vec![0xff, 0xff],
                "does not decode as that type",
            ),
        ] {
            let mut m = msg.clone();
            let mut any = DynamicMessage::new(any_desc.clone());
            any.set_field_by_name("type_url", Value::String(url.into()));
            any.set_field_by_name("value", Value::Bytes(bytes.into()));
            m.set_field_by_name("detail", Value::Message(any));
            let e = row(&m).unwrap_err().to_string();
            assert!(
                e.contains(url) && e.contains(why) && e.contains("\"detail\""),
                "{e}"
            );
        }
    }

    #[test]
    fn schemas_compile_with_their_imports_or_say_why() {
        let dep = (
            "common/money.proto".to_string(),
            "syntax = \"proto3\"; package m; message Money { int64 cents = 1; }".to_string(),
        );
        let main =
            "syntax = \"proto3\"; import \"common/money.proto\"; message P { m.Money price = 1; }";
        let c = Compiled::new(main, std::slice::from_ref(&dep)).unwrap();
        assert_eq!(c.messages.len(), 1);
        let e = Compiled::new(main, &[]).unwrap_err();
        assert!(e.starts_with("not a valid Protobuf schema"), "{e}");
        assert!(Compiled::new("syntax = \"proto3\";", &[])
            .unwrap_err()
            .contains("no message"));
        // Nested types are numbered in declaration order, map entries included.
        let c = Compiled::new(
            "syntax = \"proto3\"; message A { map<string, int32> m = 1; message B {} } message C {}",
            &[],
        )
        .unwrap();
        let mut paths: Vec<(Vec<i64>, String)> = c
            .messages
            .iter()
            .map(|(p, m)| (p.clone(), m.name().to_string()))
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                (vec![0], "A".to_string()),
                (vec![0, 0], "MEntry".to_string()),
                (vec![0, 1], "B".to_string()),
                (vec![1], "C".to_string()),
            ]
        );
    }
}
