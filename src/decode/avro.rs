//! Avro messages in the schema registry's wire format -> rows.
//!
//! A message is the magic byte 0, the writer schema's id (4 bytes, big-endian) and the Avro
//! binary datum of a record. The schema comes from the registry once per id (see
//! [`crate::registry`]) and is compiled here into a flat tree of `Node`s; each message's
//! datum is then walked with that tree, and each top-level field is written in the JSON form
//! the row converter reads ([`super::json::encode_fields_row`]), so that Avro values follow
//! exactly the type rules and error wording of every other format (a top-level `int`,
//! `long`, `float`, `double`, decimal or timestamp is handed over typed instead, and written
//! as that text only where its column reads text: [`super::json::FieldKind::Integer`],
//! `Double`, `Scaled`):
//!
//! - `int`, `long` -> integers; `float`, `double` -> numbers (a `float` widened exactly;
//!   NaN and infinities as "nan", "inf", "-inf", which float columns take);
//! - `string`, `bytes`, `fixed`, `uuid` -> strings (a top-level field's bytes go into the
//!   column as they are, binary included);
//! - `enum` -> its symbol (an Enum column maps it by name);
//! - a union -> its branch (`null` for the null branch);
//! - `array` -> a JSON array, `map` -> an object in the datum's own order, `record` -> an
//!   object (so Array, Map, Tuple and named Tuple columns take them);
//! - `decimal` (bytes or fixed) and `big-decimal` (each value with its own scale) -> the
//!   exact decimal text (unscaled values up to `MAX_DECIMAL_BYTES`, 308 digits; those of
//!   up to 128 bits handed over typed or formatted without big arithmetic);
//! - `date` -> days since 1970-01-01; `time-millis`/`time-micros` -> the integer;
//!   `timestamp-*` and `local-timestamp-*` -> epoch seconds with the exact fraction (a
//!   DateTime64 takes every digit its precision holds; a fraction it cannot hold fails
//!   clearly rather than being cut);
//! - `duration` -> `[months, days, milliseconds]`.
//!
//! With `envelope = "debezium"` the schema is a change event's ([`Bound::debezium`]): its
//! fields are walked in the writer's order, the `before` and `after` records skipped and
//! their positions kept, then the image the `op` names is read as the row's record.
//!
//! Everything read from the datum is bounds-checked: a truncated or corrupt datum, or one
//! with bytes left over after the record, is an error naming the byte and the field, never
//! a panic. Nesting is limited to [`MAX_DEPTH`] levels so that a recursive schema cannot
//! exhaust the stack.

use std::collections::HashMap;
use std::io::Write as _;

use apache_avro::schema::{Name, Schema};

use super::cursor::Cursor;
use super::json::{
    debezium_operation, encode_fields_row, EventSource, FieldKind, FieldValue, MessageMeta,
    NewColumn, RowError, RowPlan, Text,
};
use super::jsontext::{json_string, write_decimal, write_float, write_scaled};
use super::registered::HEADER_LEN;
use super::registered::MAX_DEPTH;

/// One node of a compiled schema; children are indexes into [`Compiled::nodes`] (named
/// types may refer to themselves).
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    /// `bytes`, `string`, `uuid` (as a string).
    Bytes,
    Fixed(usize),
    Enum(Vec<String>),
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Record(Vec<(String, usize)>),
    /// Two's-complement big-endian unscaled value: `bytes` (`None`) or `fixed(n)`.
    Decimal {
        scale: u32,
        fixed: Option<usize>,
    },
    /// `big-decimal` (Avro 1.12): `bytes` holding the unscaled value's own `bytes` (two's
    /// complement, big-endian) and then its scale as an `int`, each value with its own scale.
    BigDecimal,
    /// An integer number of `1/10^scale` seconds since the epoch (int or long).
    Scaled {
        scale: u32,
        int: bool,
    },
    Duration,
    /// A node being compiled (a record's placeholder while its fields are).
    Pending,
}

/// A writer schema compiled for reading datums.
#[derive(Debug, Clone)]
pub struct Compiled {
    nodes: Vec<Node>,
    /// The ClickHouse type of nodes whose [`Node`] does not say it (a date, a UUID, a
    /// decimal's precision), for the columns `unknown_fields = "add"` adds.
    hints: HashMap<usize, String>,
    /// The top-level record's fields: name and node.
    fields: Vec<(String, usize)>,
}

impl Compiled {
    /// Compiles a record schema (the registry's text) and the schemas it references (their
    /// texts, in any order). The error says what is not supported or wrong.
    pub fn new(schema: &str, references: &[String]) -> Result<Compiled, String> {
        let (root, refs) = if references.is_empty() {
            (
                Schema::parse_str(schema).map_err(|e| format!("not a valid Avro schema: {e}"))?,
                Vec::new(),
            )
        } else {
            Schema::parse_str_with_list(schema, references)
                .map_err(|e| format!("not a valid Avro schema: {e}"))?
        };
        let mut c = Compiler::default();
        for r in &refs {
            c.node(r, 0)?;
        }
        let top = c.node(&root, 0)?;
        let fields = match c.nodes.get(top) {
            Some(Node::Record(fields)) => fields.clone(),
            _ => {
                return Err(format!(
                    "the schema is {}, not a record: a row needs named fields",
                    kind_name(&root)
                ))
            }
        };
        Ok(Compiled {
            nodes: c.nodes,
            hints: c.hints,
            fields,
        })
    }

    /// The top-level record's field names, in the writer's order.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(n, _)| n.as_str())
    }
}

fn kind_name(s: &Schema) -> &'static str {
    match s {
        Schema::Null => "null",
        Schema::Boolean => "a boolean",
        Schema::Int | Schema::Date | Schema::TimeMillis => "an int",
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "a long",
        Schema::Float => "a float",
        Schema::Double => "a double",
        Schema::Bytes | Schema::Decimal(_) | Schema::BigDecimal => "bytes",
        Schema::String | Schema::Uuid => "a string",
        Schema::Array(_) => "an array",
        Schema::Map(_) => "a map",
        Schema::Union(_) => "a union",
        Schema::Record(_) => "a record",
        Schema::Enum(_) => "an enum",
        Schema::Fixed(_) | Schema::Duration => "a fixed",
        Schema::Ref { .. } => "a named type",
    }
}

#[derive(Default)]
struct Compiler {
    nodes: Vec<Node>,
    named: HashMap<Name, usize>,
    hints: HashMap<usize, String>,
}

impl Compiler {
    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn node(&mut self, s: &Schema, depth: usize) -> Result<usize, String> {
        if depth > MAX_DEPTH {
            return Err(format!("the schema nests deeper than {MAX_DEPTH} levels"));
        }
        let hint = match s {
            Schema::Date => Some("Date32".to_string()),
            Schema::Uuid => Some("UUID".to_string()),
            Schema::Decimal(d) => Some(format!("Decimal({}, {})", d.precision, d.scale)),
            _ => None,
        };
        let n = match s {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int | Schema::TimeMillis => Node::Int,
            Schema::Long | Schema::TimeMicros => Node::Long,
            Schema::Date => Node::Int,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes | Schema::String | Schema::Uuid => Node::Bytes,
            Schema::TimestampMillis | Schema::LocalTimestampMillis => Node::Scaled {
                scale: 3,
                int: false,
            },
            Schema::TimestampMicros | Schema::LocalTimestampMicros => Node::Scaled {
                scale: 6,
                int: false,
            },
            Schema::TimestampNanos | Schema::LocalTimestampNanos => Node::Scaled {
                scale: 9,
                int: false,
            },
            Schema::Duration => Node::Duration,
            Schema::BigDecimal => Node::BigDecimal,
            Schema::Decimal(d) => {
                let scale = u32::try_from(d.scale).map_err(|_| "decimal scale too large")?;
                if scale > 76 {
                    return Err(format!("decimal scale {scale} is larger than 76"));
                }
                let fixed = match d.inner.as_ref() {
                    Schema::Fixed(f) => {
                        let size = f.size;
                        self.named.insert(f.name.clone(), self.nodes.len());
                        Some(size)
                    }
                    _ => None,
                };
                Node::Decimal { scale, fixed }
            }
            Schema::Fixed(f) => {
                let at = self.push(Node::Fixed(f.size));
                self.named.insert(f.name.clone(), at);
                return Ok(at);
            }
            Schema::Enum(e) => {
                let at = self.push(Node::Enum(e.symbols.clone()));
                self.named.insert(e.name.clone(), at);
                return Ok(at);
            }
            Schema::Array(a) => {
                let at = self.push(Node::Pending);
                let items = self.node(&a.items, depth + 1)?;
                self.nodes[at] = Node::Array(items);
                return Ok(at);
            }
            Schema::Map(m) => {
                let at = self.push(Node::Pending);
                let values = self.node(&m.types, depth + 1)?;
                self.nodes[at] = Node::Map(values);
                return Ok(at);
            }
            Schema::Union(u) => {
                let at = self.push(Node::Pending);
                let mut branches = Vec::with_capacity(u.variants().len());
                for v in u.variants() {
                    branches.push(self.node(v, depth + 1)?);
                }
                self.nodes[at] = Node::Union(branches);
                return Ok(at);
            }
            Schema::Record(r) => {
                let at = self.push(Node::Pending);
                // Registered before the fields, which may refer to the record itself.
                self.named.insert(r.name.clone(), at);
                let mut fields = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    fields.push((f.name.clone(), self.node(&f.schema, depth + 1)?));
                }
                self.nodes[at] = Node::Record(fields);
                return Ok(at);
            }
            Schema::Ref { name } => {
                return self
                    .named
                    .get(name)
                    .copied()
                    .ok_or_else(|| format!("unknown named type {:?}", name.fullname(None)));
            }
        };
        let at = self.push(n);
        if let Some(h) = hint {
            self.hints.insert(at, h);
        }
        Ok(at)
    }
}

/// The column `unknown_fields = "add"` adds for a value of `node`: the type sluice writes
/// such values into as they are (a union with null `Nullable`, a timestamp `DateTime64` in
/// UTC, an enum its symbol as `String`, a record a named `Tuple` of its fields). `None` for
/// what has no one such type (other unions, a union of null and a record, which a Tuple
/// cannot hold, durations, big decimals, nulls): that field gets no column.
fn column_type(c: &Compiled, node: usize, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    if let Some(h) = c.hints.get(&node) {
        return Some(h.clone());
    }
    Some(match c.nodes.get(node)? {
        Node::Boolean => "Bool".into(),
        Node::Int => "Int32".into(),
        Node::Long => "Int64".into(),
        Node::Float => "Float32".into(),
        Node::Double => "Float64".into(),
        Node::Bytes | Node::Enum(_) => "String".into(),
        Node::Fixed(n) => format!("FixedString({n})"),
        Node::Scaled { scale, .. } => format!("DateTime64({scale}, 'UTC')"),
        Node::Array(items) => format!("Array({})", column_type(c, *items, depth + 1)?),
        Node::Map(values) => format!("Map(String, {})", column_type(c, *values, depth + 1)?),
        Node::Record(fields) if !fields.is_empty() => {
            let mut elements = Vec::with_capacity(fields.len());
            for (name, node) in fields {
                let ty = column_type(c, *node, depth + 1)?;
                elements.push(format!(
                    "{} {ty}",
                    crate::clickhouse::sql::quote_ident(name)
                ));
            }
            format!("Tuple({})", elements.join(", "))
        }
        Node::Union(branches) => {
            let mut values = branches
                .iter()
                .filter(|b| c.nodes.get(**b) != Some(&Node::Null));
            let (Some(value), None) = (values.next(), values.next()) else {
                return None;
            };
            let inner = column_type(c, *value, depth + 1)?;
            // Arrays and maps cannot be Nullable: null is their empty value. Nor can a
            // Tuple, and a null record has no value in one.
            if inner.starts_with("Tuple(") {
                return None;
            } else if inner.starts_with("Array(") || inner.starts_with("Map(") {
                inner
            } else {
                format!("Nullable({inner})")
            }
        }
        Node::Null
        | Node::Record(_)
        | Node::Decimal { .. }
        | Node::BigDecimal
        | Node::Duration
        | Node::Pending => return None,
    })
}

/// Arrays and maps of values that take no bytes (nulls, empty records) hold at most this
/// many items.
const MAX_EMPTY_ITEMS: u64 = 1 << 16;

/// Whether a value of `node` can take no bytes at all.
fn empty(nodes: &[Node], node: usize, depth: usize) -> bool {
    match nodes.get(node) {
        Some(Node::Null) | Some(Node::Fixed(0)) => true,
        Some(Node::Record(fields)) if depth < MAX_DEPTH => {
            fields.iter().all(|(_, f)| empty(nodes, *f, depth + 1))
        }
        _ => false,
    }
}

/// A record's fields bound to a route's plan: each field's id in the plan (`None`: no
/// column reads it).
#[derive(Debug, Clone)]
struct RowFields {
    fields: Vec<(String, usize)>,
    ids: Vec<Option<usize>>,
    /// The first field no column reads, for `unknown_fields = "error"`.
    unknown: Option<String>,
}

impl RowFields {
    fn new(fields: &[(String, usize)], plan: &RowPlan) -> RowFields {
        let ids: Vec<Option<usize>> = fields.iter().map(|(name, _)| plan.field_id(name)).collect();
        let unknown = fields
            .iter()
            .zip(&ids)
            .find(|(_, id)| id.is_none())
            .map(|((name, _), _)| name.clone());
        RowFields {
            fields: fields.to_vec(),
            ids,
            unknown,
        }
    }
}

/// What a top-level field of a Debezium change event is to the row.
#[derive(Debug, Clone, Copy, PartialEq)]
enum EventField {
    /// The row before the change (a delete's row).
    Before,
    /// The row after it (a create's, read's or update's).
    After,
    /// The operation's code, a string.
    Op,
    /// When Debezium processed the change (`ts_ms`).
    Time,
    /// Where the change comes from (`source`: its `ts_ms`, `db` and `table` are read).
    Source,
    /// Anything else (`transaction`, ...): skipped.
    Other,
}

/// A Debezium envelope's layout: the role of each top-level field, and the image records
/// (before, after) bound to the plan.
#[derive(Debug, Clone)]
struct EventLayout {
    roles: Vec<EventField>,
    before: RowFields,
    after: RowFields,
}

/// A compiled schema bound to a route's plan: the row's record (the top-level one, or a
/// Debezium event's images) and each of its fields' id in the plan.
#[derive(Debug, Clone)]
pub struct Bound {
    compiled: std::sync::Arc<Compiled>,
    row: RowFields,
    /// `envelope = "debezium"`: the schema is a change event's and the row its image.
    event: Option<Box<EventLayout>>,
}

impl Bound {
    /// `unknown_fields = "add"`: the row's fields that no column reads, each with the column
    /// to add (`column_type`), and the names of those that get none (their type has no
    /// one column type); fields named as a column that reads no field are neither.
    pub fn new_columns(&self, plan: &RowPlan) -> (Vec<NewColumn>, Vec<String>) {
        let (mut add, mut none) = (Vec::new(), Vec::new());
        for ((name, node), id) in self.row.fields.iter().zip(&self.row.ids) {
            if id.is_some() || plan.is_other_column(name.as_bytes()) {
                continue;
            }
            match column_type(&self.compiled, *node, 0) {
                Some(column_type) => add.push(NewColumn {
                    name: name.clone(),
                    column_type,
                }),
                None => none.push(name.clone()),
            }
        }
        (add, none)
    }

    pub fn new(compiled: &std::sync::Arc<Compiled>, plan: &RowPlan) -> Bound {
        Bound {
            compiled: compiled.clone(),
            row: RowFields::new(&compiled.fields, plan),
            event: None,
        }
    }

    /// The schema of a Debezium change event (`envelope = "debezium"`): records with an
    /// `op` string and `before` and `after` fields holding the row's record (nullable, as
    /// Debezium writes them). The error says why the schema is not one.
    pub fn debezium(compiled: &std::sync::Arc<Compiled>, plan: &RowPlan) -> Result<Bound, String> {
        let nodes = &compiled.nodes;
        let not_event = |why: &str| format!("not a Debezium change event's schema: {why}");
        // The record a `before`/`after` field holds, through a union with null.
        let image = |node: usize| -> Option<&Vec<(String, usize)>> {
            let mut records = match nodes.get(node)? {
                Node::Union(branches) => branches
                    .iter()
                    .filter(|b| nodes.get(**b) != Some(&Node::Null))
                    .map(|b| nodes.get(*b))
                    .collect::<Vec<_>>(),
                other => vec![Some(other)],
            };
            match (records.pop(), records.is_empty()) {
                (Some(Some(Node::Record(fields))), true) => Some(fields),
                _ => None,
            }
        };
        let mut roles = Vec::with_capacity(compiled.fields.len());
        let (mut before, mut after, mut op) = (None, None, false);
        for (name, node) in &compiled.fields {
            let role = match name.as_str() {
                "before" => {
                    before = image(*node);
                    if before.is_none() {
                        return Err(not_event("its \"before\" field holds no record"));
                    }
                    EventField::Before
                }
                "after" => {
                    after = image(*node);
                    if after.is_none() {
                        return Err(not_event("its \"after\" field holds no record"));
                    }
                    EventField::After
                }
                "op" => {
                    if !is_string(nodes, *node) {
                        return Err(not_event("its \"op\" field is not a string"));
                    }
                    op = true;
                    EventField::Op
                }
                "ts_ms" => EventField::Time,
                "source" => EventField::Source,
                _ => EventField::Other,
            };
            roles.push(role);
        }
        let (Some(before), Some(after), true) = (before, after, op) else {
            return Err(not_event(
                "it needs the fields \"before\", \"after\" and \"op\"",
            ));
        };
        let after = RowFields::new(after, plan);
        Ok(Bound {
            compiled: compiled.clone(),
            row: after.clone(),
            event: Some(Box::new(EventLayout {
                roles,
                before: RowFields::new(before, plan),
                after,
            })),
        })
    }
}

/// `node`, or for a union the branch the datum holds (read from `r`).
fn branch_of(nodes: &[Node], mut node: usize, r: &mut Reader<'_>) -> Read<usize> {
    while let Some(Node::Union(branches)) = nodes.get(node) {
        node = r.branch(branches)?;
    }
    Ok(node)
}

/// Whether `node` is a string, or a union of a string and null.
fn is_string(nodes: &[Node], node: usize) -> bool {
    match nodes.get(node) {
        Some(Node::Bytes) => true,
        Some(Node::Union(branches)) => branches
            .iter()
            .all(|b| matches!(nodes.get(*b), Some(Node::Bytes | Node::Null))),
        _ => false,
    }
}

/// Per-lane buffers reused from message to message.
#[derive(Debug, Default)]
pub struct AvroScratch {
    text: Vec<u8>,
    fields: Vec<Option<FieldValue>>,
}

/// Appends the row of one message (`payload` in the registry's wire format, written with
/// `bound`'s schema) to `out`; on error `out` is left as it was.
pub fn encode_avro_row(
    plan: &RowPlan,
    bound: &Bound,
    payload: &[u8],
    meta: &MessageMeta<'_>,
    scratch: &mut AvroScratch,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    super::registered::schema_id(payload)?;
    let datum = payload.get(HEADER_LEN..).unwrap_or_default();
    scratch.text.clear();
    scratch.fields.clear();
    scratch.fields.resize(plan.field_count(), None);
    let mut r = Reader::new(datum);
    let Some(event) = &bound.event else {
        read_row(plan, &bound.compiled.nodes, &bound.row, &mut r, scratch)?;
        end_of_datum(&r)?;
        return encode_fields_row(plan, &scratch.text, &scratch.fields, meta, out);
    };
    let nodes = &bound.compiled.nodes;
    // The event's fields in the writer's order; the images are found and skipped, then
    // the one the operation names is read as the row.
    let (mut before, mut after, mut op) = (None, None, None);
    let mut times = (None, None);
    let (mut db, mut table) = (None, None);
    for ((name, node), role) in bound.compiled.fields.iter().zip(&event.roles) {
        let at = r.pos;
        let read = match role {
            EventField::Before | EventField::After => {
                branch_of(nodes, *node, &mut r).and_then(|node| {
                    let start = (nodes.get(node) != Some(&Node::Null)).then_some(r.pos);
                    if *role == EventField::Before {
                        before = start;
                    } else {
                        after = start;
                    }
                    skip(nodes, node, &mut r, 0)
                })
            }
            EventField::Op => branch_of(nodes, *node, &mut r).and_then(|node| {
                if nodes.get(node) == Some(&Node::Bytes) {
                    let n = r.len()?;
                    op = Some(r.pos..r.pos + n);
                    r.take(n)?;
                }
                Ok(())
            }),
            EventField::Time => millis(nodes, *node, &mut r).map(|ms| times.0 = ms),
            EventField::Source => branch_of(nodes, *node, &mut r).and_then(|node| {
                let Some(Node::Record(fields)) = nodes.get(node) else {
                    return skip(nodes, node, &mut r, 0);
                };
                for (name, node) in fields {
                    match name.as_str() {
                        "ts_ms" => times.1 = millis(nodes, *node, &mut r)?,
                        "db" | "table" => {
                            let node = branch_of(nodes, *node, &mut r)?;
                            if nodes.get(node) != Some(&Node::Bytes) {
                                skip(nodes, node, &mut r, 0)?;
                                continue;
                            }
                            let n = r.len()?;
                            let span = Some(r.pos..r.pos + n);
                            r.take(n)?;
                            if name == "db" {
                                db = span;
                            } else {
                                table = span;
                            }
                        }
                        _ => skip(nodes, *node, &mut r, 0)?,
                    }
                }
                Ok(())
            }),
            EventField::Other => skip(nodes, *node, &mut r, 0),
        };
        read.map_err(|reason| RowError::InvalidAvro {
            offset: r.pos.max(at) + HEADER_LEN,
            field: format!("{name:?}"),
            reason,
        })?;
    }
    end_of_datum(&r)?;
    let (code, image) = debezium_operation(op.and_then(|op| datum.get(op)))?;
    let (start, fields) = match image {
        "before" => (before, &event.before),
        _ => (after, &event.after),
    };
    let Some(start) = start else {
        return Err(RowError::Envelope {
            envelope: "Debezium",
            reason: format!("op \"{}\" without its \"{image}\" record", code as char),
        });
    };
    r.pos = start;
    read_row(plan, nodes, fields, &mut r, scratch)?;
    let text =
        |span: Option<std::ops::Range<usize>>| span.and_then(|s| datum.get(s)).map(Text::Bytes);
    let meta = MessageMeta {
        op: Some(code),
        source: EventSource {
            ts_ms: times.0,
            source_ts_ms: times.1,
            db: text(db),
            table: text(table),
        },
        ..*meta
    };
    encode_fields_row(plan, &scratch.text, &scratch.fields, &meta, out)
}

/// A change event's time in epoch milliseconds: a `long` (or `int`, or `timestamp-millis`),
/// through a union; `None` for null or another type (skipped).
fn millis(nodes: &[Node], node: usize, r: &mut Reader<'_>) -> Read<Option<i64>> {
    let node = branch_of(nodes, node, r)?;
    match nodes.get(node) {
        Some(Node::Long | Node::Int | Node::Scaled { scale: 3, .. }) => r.long().map(Some),
        _ => skip(nodes, node, r, 0).map(|()| None),
    }
}

/// Reads the fields of the row's record from `r` into `scratch`.
fn read_row(
    plan: &RowPlan,
    nodes: &[Node],
    row: &RowFields,
    r: &mut Reader<'_>,
    scratch: &mut AvroScratch,
) -> Result<(), RowError> {
    if plan.unknown_fields == crate::decode::json::UnknownFields::Error {
        if let Some(name) = &row.unknown {
            return Err(RowError::UnknownField {
                field: name.clone(),
            });
        }
    }
    for ((name, node), id) in row.fields.iter().zip(&row.ids) {
        let at = r.pos;
        let read = match id {
            Some(id) => {
                let mut spare = None;
                let slot = scratch.fields.get_mut(*id).unwrap_or(&mut spare);
                write_top(nodes, *node, r, &mut scratch.text, slot)
            }
            None => skip(nodes, *node, r, 0),
        };
        read.map_err(|reason| RowError::InvalidAvro {
            offset: r.pos.max(at) + HEADER_LEN,
            field: format!("{name:?}"),
            reason,
        })?;
    }
    Ok(())
}

/// The datum must end where its record does.
fn end_of_datum(r: &Reader<'_>) -> Result<(), RowError> {
    if r.pos != r.b.len() {
        return Err(RowError::InvalidAvro {
            offset: r.pos + HEADER_LEN,
            field: "(after the record)".into(),
            reason: format!(
                "{} bytes left over: the message was not written with schema this id names",
                r.b.len() - r.pos
            ),
        });
    }
    Ok(())
}

type Read<T> = Result<T, String>;

/// The datum's reader; the Avro readings on top of the shared [`Cursor`].
type Reader<'a> = Cursor<'a>;

impl Reader<'_> {
    fn long(&mut self) -> Read<i64> {
        self.zigzag()
    }

    fn int(&mut self) -> Read<i32> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| format!("{v} is out of range for an Avro int"))
    }

    fn len(&mut self) -> Read<usize> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| format!("negative length {n}"))
    }

    fn bytes(&mut self) -> Read<&[u8]> {
        let n = self.len()?;
        self.take(n)
    }

    /// The items of an array or map: blocks of items until an empty one. A block's count
    /// may be negative, then followed by the block's size in bytes, which we do not need.
    /// `each` reads one item and gets its index. Items that take at least a byte cannot
    /// outnumber the bytes left; items of nothing (`empty`: nulls, empty records) are capped
    /// at [`MAX_EMPTY_ITEMS`]: either way a 10-byte count cannot spin or fill memory.
    fn items(
        &mut self,
        empty: bool,
        mut each: impl FnMut(&mut Self, usize) -> Read<()>,
    ) -> Read<()> {
        let mut i = 0u64;
        loop {
            let n = self.long()?;
            if n == 0 {
                return Ok(());
            }
            if n < 0 {
                self.long()?;
            }
            let n = n.unsigned_abs();
            let left = self.left() as u64;
            if (!empty && n > left) || (empty && i + n > MAX_EMPTY_ITEMS) {
                return Err(format!("a block of {n} items with {left} bytes left"));
            }
            for _ in 0..n {
                each(self, i as usize)?;
                i += 1;
            }
        }
    }

    fn branch(&mut self, branches: &[usize]) -> Read<usize> {
        let i = self.long()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| branches.get(i).copied())
            .ok_or_else(|| {
                format!(
                    "union branch {i} does not exist ({} branches)",
                    branches.len()
                )
            })
    }
}

/// A top-level field: written into `text`, its span (or typed value) into `slot`, straight
/// (built elsewhere and copied in, the value cost a store-forwarding stall: 14 % of an Avro
/// row in perf). Strings are written raw (binary bytes kept); `null` from a union is a NULL
/// value.
fn write_top(
    nodes: &[Node],
    mut node: usize,
    r: &mut Reader<'_>,
    text: &mut Vec<u8>,
    slot: &mut Option<FieldValue>,
) -> Read<()> {
    // Unions resolve to their branch first, so that the branch decides the kind.
    while let Some(Node::Union(branches)) = nodes.get(node) {
        node = r.branch(branches)?;
    }
    let start = text.len();
    let kind = match nodes.get(node) {
        Some(Node::Bytes) => {
            let s = r.bytes()?;
            text.push(b'"');
            text.extend_from_slice(s);
            text.push(b'"');
            FieldKind::Raw
        }
        Some(Node::Fixed(n)) => {
            let s = r.take(*n)?;
            text.push(b'"');
            text.extend_from_slice(s);
            text.push(b'"');
            FieldKind::Raw
        }
        // Handed over typed: an integer, Float64 or DateTime64 column takes them without a
        // detour through text (the converter writes the text where a column reads one).
        Some(Node::Int) => FieldKind::Integer(i64::from(r.int()?)),
        Some(Node::Long) => FieldKind::Integer(r.long()?),
        Some(Node::Float) => {
            let b = r.take(4)?;
            FieldKind::Double(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_bits())
        }
        Some(Node::Double) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(r.take(8)?);
            FieldKind::Double(f64::from_le_bytes(a).to_bits())
        }
        Some(Node::Decimal { scale, fixed }) => {
            let b = match fixed {
                Some(n) => r.take(*n)?,
                None => r.bytes()?,
            };
            top_decimal(b, i64::from(*scale), text)?
        }
        Some(Node::BigDecimal) => {
            let (unscaled, scale) = big_decimal(r.bytes()?)?;
            top_decimal(unscaled, scale, text)?
        }
        Some(Node::Scaled { scale, int }) => FieldKind::Scaled {
            value: if *int { i64::from(r.int()?) } else { r.long()? },
            scale: *scale as u8,
        },
        _ => write_json(nodes, node, r, text, 0)?,
    };
    *slot = Some(FieldValue {
        start,
        end: text.len(),
        kind,
    });
    Ok(())
}

/// Writes the value of `node` read from `r` as JSON into `out`, and says what it wrote.
fn write_json(
    nodes: &[Node],
    node: usize,
    r: &mut Reader<'_>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Read<FieldKind> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    let Some(n) = nodes.get(node) else {
        return Err("schema node out of range".into());
    };
    Ok(match n {
        Node::Null | Node::Pending => {
            out.extend_from_slice(b"null");
            FieldKind::Null
        }
        Node::Boolean => match r.take(1)? {
            [0] => {
                out.extend_from_slice(b"false");
                FieldKind::False
            }
            [1] => {
                out.extend_from_slice(b"true");
                FieldKind::True
            }
            [b] => return Err(format!("boolean byte 0x{b:02x} is neither 0 nor 1")),
            _ => return Err("truncated boolean".into()),
        },
        Node::Int => {
            let v = r.int()?;
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
            FieldKind::Int
        }
        Node::Long => {
            let v = r.long()?;
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
            FieldKind::Int
        }
        Node::Float => {
            let b = r.take(4)?;
            let f = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            write_float(f64::from(f), out)
        }
        Node::Double => {
            let b = r.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            write_float(f64::from_le_bytes(a), out)
        }
        Node::Bytes => {
            let s = r.bytes()?;
            json_string(s, out);
            FieldKind::Raw
        }
        Node::Fixed(n) => {
            let s = r.take(*n)?;
            json_string(s, out);
            FieldKind::Raw
        }
        Node::Enum(symbols) => {
            let i = r.long()?;
            let s = usize::try_from(i)
                .ok()
                .and_then(|i| symbols.get(i))
                .ok_or_else(|| {
                    format!("enum index {i} does not exist ({} symbols)", symbols.len())
                })?;
            json_string(s.as_bytes(), out);
            FieldKind::Raw
        }
        Node::Array(items) => {
            out.push(b'[');
            r.items(empty(nodes, *items, 0), |r, i| {
                if i > 0 {
                    out.push(b',');
                }
                write_json(nodes, *items, r, out, depth + 1).map(|_| ())
            })?;
            out.push(b']');
            FieldKind::Arr
        }
        Node::Map(values) => {
            out.push(b'{');
            // A map entry's key takes at least its length byte.
            r.items(false, |r, i| {
                if i > 0 {
                    out.push(b',');
                }
                json_string(r.bytes()?, out);
                out.push(b':');
                write_json(nodes, *values, r, out, depth + 1).map(|_| ())
            })?;
            out.push(b'}');
            FieldKind::Obj
        }
        Node::Union(branches) => {
            let b = r.branch(branches)?;
            write_json(nodes, b, r, out, depth + 1)?
        }
        Node::Record(fields) => {
            out.push(b'{');
            for (i, (name, f)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_string(name.as_bytes(), out);
                out.push(b':');
                write_json(nodes, *f, r, out, depth + 1)?;
            }
            out.push(b'}');
            FieldKind::Obj
        }
        Node::Decimal { scale, fixed } => {
            let b = match fixed {
                Some(n) => r.take(*n)?,
                None => r.bytes()?,
            };
            decimal_text(b, i64::from(*scale), out)?
        }
        Node::BigDecimal => {
            let (unscaled, scale) = big_decimal(r.bytes()?)?;
            decimal_text(unscaled, scale, out)?
        }
        Node::Scaled { scale, int } => {
            let v = if *int {
                i128::from(r.int()?)
            } else {
                i128::from(r.long()?)
            };
            write_scaled(v, *scale, out)
        }
        Node::Duration => {
            let b = r.take(12)?;
            let part = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            let _ = write!(out, "[{},{},{}]", part(0), part(4), part(8));
            FieldKind::Arr
        }
    })
}

/// Skips the value of `node` (a field no column reads) without writing it.
fn skip(nodes: &[Node], node: usize, r: &mut Reader<'_>, depth: usize) -> Read<()> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    match nodes.get(node) {
        None => return Err("schema node out of range".into()),
        Some(Node::Null | Node::Pending) => {}
        Some(Node::Boolean) => {
            r.take(1)?;
        }
        Some(Node::Int | Node::Long | Node::Enum(_) | Node::Scaled { .. }) => {
            r.long()?;
        }
        Some(Node::Float) => {
            r.take(4)?;
        }
        Some(Node::Double) => {
            r.take(8)?;
        }
        Some(Node::Duration) => {
            r.take(12)?;
        }
        Some(Node::Fixed(n) | Node::Decimal { fixed: Some(n), .. }) => {
            r.take(*n)?;
        }
        Some(Node::Bytes | Node::Decimal { fixed: None, .. } | Node::BigDecimal) => {
            r.bytes()?;
        }
        Some(Node::Array(items)) => r.items(empty(nodes, *items, 0), |r, _| {
            skip(nodes, *items, r, depth + 1)
        })?,
        Some(Node::Map(values)) => r.items(false, |r, _| {
            r.bytes()?;
            skip(nodes, *values, r, depth + 1)
        })?,
        Some(Node::Union(branches)) => {
            let b = r.branch(branches)?;
            skip(nodes, b, r, depth + 1)?;
        }
        Some(Node::Record(fields)) => {
            for (_, f) in fields {
                skip(nodes, *f, r, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// The widest unscaled decimal read, in bytes: 308 digits, as far as a Float64 reaches
/// (a Decimal256 holds 76). A wider one is an error, not a slow conversion of a huge number.
const MAX_DECIMAL_BYTES: usize = 128;

/// The largest scale, either way, a `big-decimal` may carry: enough for any column, while its
/// text stays small whatever the writer put there.
const MAX_BIG_DECIMAL_SCALE: i64 = 1000;

/// A top-level decimal: handed over typed ([`FieldKind::Scaled`]) where it fits, written as
/// its exact text otherwise.
fn top_decimal(unscaled: &[u8], scale: i64, text: &mut Vec<u8>) -> Read<FieldKind> {
    if let (Some(v), Ok(scale)) = (twos_complement(unscaled), u8::try_from(scale)) {
        if let Ok(value) = i64::try_from(v) {
            return Ok(FieldKind::Scaled { value, scale });
        }
    }
    decimal_text(unscaled, scale, text)
}

/// `unscaled` (two's complement, big-endian, up to `MAX_DECIMAL_BYTES`) times `10^-scale`
/// as exact decimal text.
fn decimal_text(unscaled: &[u8], scale: i64, out: &mut Vec<u8>) -> Read<FieldKind> {
    if let Some(v) = twos_complement(unscaled) {
        if let Ok(s) = u32::try_from(scale) {
            return Ok(write_scaled(v, s, out));
        }
    }
    if unscaled.len() > MAX_DECIMAL_BYTES {
        return Err(format!(
            "a decimal of {} bytes is wider than the {MAX_DECIMAL_BYTES} bytes (308 digits) sluice reads",
            unscaled.len()
        ));
    }
    let (negative, digits) = wide_digits(unscaled);
    Ok(write_decimal(negative, &digits, scale, out))
}

/// A `big-decimal`'s unscaled bytes and scale, from the value's `bytes`.
fn big_decimal(b: &[u8]) -> Read<(&[u8], i64)> {
    let mut r = Reader::new(b);
    let unscaled = r
        .len()
        .and_then(|n| r.take(n))
        .map_err(|e| format!("a big-decimal's unscaled value: {e}"))?;
    if unscaled.is_empty() {
        return Err("a big-decimal without digits (its unscaled value has no bytes)".into());
    }
    let scale = r
        .long()
        .map_err(|e| format!("a big-decimal's scale: {e}"))?;
    if r.left() != 0 {
        return Err(format!(
            "a big-decimal with {} bytes after its scale",
            r.left()
        ));
    }
    // unsigned_abs: a datum can carry i64::MIN, whose abs() overflows.
    if scale.unsigned_abs() > MAX_BIG_DECIMAL_SCALE.unsigned_abs() {
        return Err(format!(
            "a big-decimal of scale {scale}, beyond the +-{MAX_BIG_DECIMAL_SCALE} sluice reads"
        ));
    }
    Ok((unscaled, scale))
}

/// A two's-complement big-endian integer, if it fits 128 bits.
fn twos_complement(b: &[u8]) -> Option<i128> {
    // Sign-extension bytes beyond 16 are allowed (writers pad fixed decimals).
    let (pad, rest) = b.split_at(b.len().saturating_sub(16));
    let negative = b.first().is_some_and(|&c| c & 0x80 != 0);
    let fill = if negative { 0xff } else { 0x00 };
    if pad.iter().any(|&c| c != fill) {
        return None;
    }
    let mut a = [fill; 16];
    a[16 - rest.len()..].copy_from_slice(rest);
    let v = i128::from_be_bytes(a);
    if !pad.is_empty() && (v < 0) != negative {
        return None;
    }
    Some(v)
}

/// A two's-complement big-endian integer of any width: its sign and its magnitude's decimal
/// digits (schoolbook division by 10^9; only values wider than 128 bits come here).
fn wide_digits(b: &[u8]) -> (bool, Vec<u8>) {
    let negative = b.first().is_some_and(|&c| c & 0x80 != 0);
    let mut mag = b.to_vec();
    if negative {
        // Negated: inverted, plus one. The most negative value's magnitude comes out right
        // too, read as unsigned.
        mag.iter_mut().for_each(|c| *c = !*c);
        for c in mag.iter_mut().rev() {
            let (sum, carry) = c.overflowing_add(1);
            *c = sum;
            if !carry {
                break;
            }
        }
    }
    let pad = (4 - mag.len() % 4) % 4;
    let mut words: Vec<u32> = std::iter::repeat_n(0u8, pad)
        .chain(mag)
        .collect::<Vec<u8>>()
        .chunks_exact(4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .skip_while(|&w| w == 0)
        .collect();
    const BILLION: u64 = 1_000_000_000;
    let mut groups = Vec::new();
    while !words.is_empty() {
        let mut rem = 0u64;
        for w in words.iter_mut() {
            let cur = (rem << 32) | u64::from(*w);
            *w = (cur / BILLION) as u32;
            rem = cur % BILLION;
        }
        groups.push(rem as u32);
        let zeros = words.iter().take_while(|&&w| w == 0).count();
        words.drain(..zeros);
    }
    let mut digits = Vec::with_capacity(groups.len() * 9);
    match groups.split_last() {
        None => digits.push(b'0'),
        Some((top, rest)) => {
            digits.extend_from_slice(itoa::Buffer::new().format(*top).as_bytes());
            for g in rest.iter().rev() {
                let _ = write!(digits, "{g:09}");
            }
        }
    }
    (negative, digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::tests::{
        event_source_plan, event_source_row, named_plan as plan, ty, META,
    };
    use crate::decode::json::{encode_json_row, ColumnPlan, MetaField, UnknownFields};
    use apache_avro::types::Value as V;

    /// `unknown_fields = "add"`: the columns of a schema's fields no column reads, typed from
    /// the schema; what has no one column type is named apart; read and meta columns are
    /// neither.
    #[test]
    fn new_fields_get_the_column_their_schema_type_tells() {
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"id","type":"long"},
            {"name":"ts","type":{"type":"long","logicalType":"local-timestamp-micros"}},
            {"name":"us","type":{"type":"long","logicalType":"timestamp-micros"}},
            {"name":"f","type":{"type":"fixed","name":"F","size":4}},
            {"name":"dec","type":{"type":"fixed","name":"D","size":8,"logicalType":"decimal","precision":12,"scale":3}},
            {"name":"maybe_list","type":["null",{"type":"array","items":["null","int"]}]},
            {"name":"three","type":["null","int","string"]},
            {"name":"rec","type":{"type":"record","name":"In","fields":[{"name":"x","type":"int"},{"name":"ab","type":"string"}]}},
            {"name":"maybe_rec","type":["null","In"]},
            {"name":"nulls","type":"null"},
            {"name":"_offset","type":"long"}
        ]}"#;
        let compiled = std::sync::Arc::new(Compiled::new(schema, &[]).unwrap());
        let mut p = plan(&[("id", "Int64")], UnknownFields::Add);
        p.set_other_columns(&["_offset".to_string()]);
        let (add, none) = Bound::new(&compiled, &p).new_columns(&p);
        let add: Vec<(&str, &str)> = add
            .iter()
            .map(|c| (c.name.as_str(), c.column_type.as_str()))
            .collect();
        assert_eq!(
            add,
            [
                // A local time's ticks shown as written: in UTC.
                ("ts", "DateTime64(6, 'UTC')"),
                ("us", "DateTime64(6, 'UTC')"),
                ("f", "FixedString(4)"),
                ("dec", "Decimal(12, 3)"),
                ("maybe_list", "Array(Nullable(Int32))"),
                ("rec", "Tuple(`x` Int32, `ab` String)"),
            ]
        );
        assert_eq!(none, ["three", "maybe_rec", "nulls"]);
    }

    /// The wire-format message of `value` written with `schema`, schema id 7.
    fn message(schema: &str, value: V) -> Vec<u8> {
        let s = Schema::parse_str(schema).unwrap();
        let mut m = vec![0, 0, 0, 0, 7];
        m.extend(apache_avro::to_avro_datum(&s, value).unwrap());
        m
    }

    fn row(plan: &RowPlan, schema: &str, payload: &[u8]) -> Result<Vec<u8>, RowError> {
        let compiled = std::sync::Arc::new(
            Compiled::new(schema, &[]).map_err(|e| RowError::Schema { id: 7, reason: e })?,
        );
        let bound = Bound::new(&compiled, plan);
        let mut out = vec![0xAA];
        let mut scratch = AvroScratch::default();
        encode_avro_row(plan, &bound, payload, &META, &mut scratch, &mut out)?;
        assert_eq!(out.remove(0), 0xAA, "the row is appended");
        Ok(out)
    }

    /// A Debezium change event's schema as Debezium's Avro converter writes it: the row's
    /// record in nullable `before` and `after`, then the source, the operation and more.
    const CHANGE_EVENT: &str = r#"{"type":"record","name":"Envelope","namespace":"shop.public.orders","fields":[
        {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
            {"name":"id","type":"long"},
            {"name":"name","type":["null","string"],"default":null}]}],"default":null},
        {"name":"after","type":["null","Value"],"default":null},
        {"name":"source","type":{"type":"record","name":"Source","namespace":"io.debezium","fields":[
            {"name":"db","type":"string"},{"name":"lsn","type":["null","long"]}]}},
        {"name":"op","type":"string"},
        {"name":"ts_ms","type":["null","long"],"default":null},
        {"name":"transaction","type":["null",{"type":"record","name":"Tx","fields":[
            {"name":"id","type":"string"}]}],"default":null}
    ]}"#;

    fn change(op: &str, before: Option<(i64, &str)>, after: Option<(i64, &str)>) -> V {
        let image = |r: Option<(i64, &str)>| match r {
            None => V::Union(0, Box::new(V::Null)),
            Some((id, name)) => V::Union(
                1,
                Box::new(V::Record(vec![
                    ("id".into(), V::Long(id)),
                    ("name".into(), V::Union(1, Box::new(V::String(name.into())))),
                ])),
            ),
        };
        V::Record(vec![
            ("before".into(), image(before)),
            ("after".into(), image(after)),
            (
                "source".into(),
                V::Record(vec![
                    ("db".into(), V::String("shop".into())),
                    ("lsn".into(), V::Union(1, Box::new(V::Long(77)))),
                ]),
            ),
            ("op".into(), V::String(op.into())),
            ("ts_ms".into(), V::Union(1, Box::new(V::Long(1)))),
            (
                "transaction".into(),
                V::Union(
                    1,
                    Box::new(V::Record(vec![("id".into(), V::String("tx".into()))])),
                ),
            ),
        ])
    }

    /// `envelope = "debezium"`: the row is the event's `after` (c, r, u) or `before` (d), its
    /// operation and delete flag fill their columns, the rest of the event is skipped, and
    /// events without a row are errors worded as a JSON event's are.
    #[test]
    fn debezium_events_give_the_row_of_their_image() {
        let cdc_plan = |unknown| {
            RowPlan::new(
                vec![
                    ColumnPlan::field("id", ty("UInt64")),
                    ColumnPlan::field("name", ty("Nullable(String)")),
                    ColumnPlan::meta("__op", ty("String"), MetaField::Op),
                    ColumnPlan::meta("__deleted", ty("UInt8"), MetaField::Deleted),
                ],
                unknown,
                false,
            )
            .unwrap()
        };
        let plan = cdc_plan(UnknownFields::Error);
        let compiled = std::sync::Arc::new(Compiled::new(CHANGE_EVENT, &[]).unwrap());
        let bound = Bound::debezium(&compiled, &plan).unwrap();
        let read = |payload: &[u8]| {
            let mut out = Vec::new();
            let mut scratch = AvroScratch::default();
            encode_avro_row(&plan, &bound, payload, &META, &mut scratch, &mut out)
                .map(|()| out)
                .map_err(|e| e.to_string())
        };
        let want = |id: u64, name: &str, op: u8| {
            let mut out = Vec::new();
            let meta = MessageMeta {
                op: Some(op),
                ..META
            };
            let json = format!(r#"{{"id":{id},"name":"{name}"}}"#);
            encode_json_row(&plan, json.as_bytes(), &meta, &mut out).unwrap();
            out
        };
        let event = |op, before, after| message(CHANGE_EVENT, change(op, before, after));
        assert_eq!(
            read(&event("c", None, Some((1, "a")))),
            Ok(want(1, "a", b'c'))
        );
        assert_eq!(
            read(&event("r", None, Some((3, "s")))),
            Ok(want(3, "s", b'r'))
        );
        assert_eq!(
            read(&event("u", Some((1, "a")), Some((1, "b")))),
            Ok(want(1, "b", b'u'))
        );
        let deleted = read(&event("d", Some((2, "x")), None)).unwrap();
        assert_eq!(deleted, want(2, "x", b'd'));
        assert_eq!(deleted.last(), Some(&1), "a delete is flagged");
        for (payload, says) in [
            (event("t", None, None), "a truncate (op \"t\") has no row"),
            (event("m", None, None), "a message (op \"m\") has no row"),
            (
                event("x", None, Some((1, "a"))),
                "op \"x\" is not c, r, u or d",
            ),
            (
                event("c", None, None),
                "op \"c\" without its \"after\" record",
            ),
            (
                event("d", None, Some((1, "a"))),
                "op \"d\" without its \"before\" record",
            ),
        ] {
            let e = read(&payload).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        // A cut-off event names the field it stopped in; a cut-off image, the image's field.
        let full = event("u", Some((1, "a")), Some((1, "b")));
        let e = read(&full[..full.len() - 8]).unwrap_err();
        assert!(e.contains("\"source\"") || e.contains("\"op\""), "{e}");
        let mut bad_image = event("c", None, Some((1, "a")));
        // before null (0), after branch 1 (2), id 1 (2), name branch 1 (2), its length 1
        // (2): make the length 100.
        let at = HEADER_LEN + 4;
        assert_eq!(bad_image[at - 1..at + 1], [0x02, 0x02], "{bad_image:?}");
        bad_image[at] = 0xc8;
        bad_image.insert(at + 1, 0x01);
        // The image is skipped before the operation is known: its field is the event's.
        let e = read(&bad_image).unwrap_err();
        assert!(
            e.contains("field \"after\": truncated: 100 bytes announced"),
            "{e}"
        );

        // A field of the image without a column is unknown; the event's own fields are not.
        let narrow = RowPlan::new(
            vec![ColumnPlan::field("id", ty("UInt64"))],
            UnknownFields::Error,
            false,
        )
        .unwrap();
        let bound_narrow = Bound::debezium(&compiled, &narrow).unwrap();
        let mut scratch = AvroScratch::default();
        let e = encode_avro_row(
            &narrow,
            &bound_narrow,
            &event("c", None, Some((1, "a"))),
            &META,
            &mut scratch,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            RowError::UnknownField {
                field: "name".into()
            }
            .to_string()
        );
        let lax = cdc_plan(UnknownFields::Ignore);
        let bound_lax = Bound::debezium(&compiled, &lax).unwrap();
        let mut out = Vec::new();
        encode_avro_row(
            &lax,
            &bound_lax,
            &event("c", None, Some((5, "e"))),
            &META,
            &mut scratch,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, want(5, "e", b'c'));

        // The event's ts_ms and its source's db fill their columns; the table, which this
        // source does not name, is NULL.
        let meta_plan = event_source_plan("UInt64");
        let bound_meta = Bound::debezium(&compiled, &meta_plan).unwrap();
        let mut out = Vec::new();
        encode_avro_row(
            &meta_plan,
            &bound_meta,
            &event("c", None, Some((1, "a"))),
            &META,
            &mut scratch,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, event_source_row());

        // Schemas that are no change event's are refused, saying what is missing.
        for (schema, says) in [
            (
                EVENT,
                "it needs the fields \"before\", \"after\" and \"op\"",
            ),
            (
                &CHANGE_EVENT.replace(
                    r#"{"name":"op","type":"string"}"#,
                    r#"{"name":"op","type":"int"}"#,
                ),
                "\"op\" field is not a string",
            ),
            (
                &CHANGE_EVENT.replace(
                    r#"{"name":"after","type":["null","Value"],"default":null}"#,
                    r#"{"name":"after","type":"long"}"#,
                ),
                "\"after\" field holds no record",
            ),
        ] {
            let c = std::sync::Arc::new(Compiled::new(schema, &[]).unwrap());
            let e = Bound::debezium(&c, &plan).unwrap_err();
            assert!(
                e.starts_with("not a Debezium change event's schema: "),
                "{e}"
            );
            assert!(e.contains(says), "{e}");
        }
    }

    fn json_row(plan: &RowPlan, json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_json_row(plan, json.as_bytes(), &META, &mut out).unwrap();
        out
    }

    const EVENT: &str = r#"{"type":"record","name":"Event","namespace":"ex","fields":[
        {"name":"id","type":"long"},
        {"name":"n","type":"int"},
        {"name":"ok","type":"boolean"},
        {"name":"score","type":"double"},
        {"name":"ratio","type":"float"},
        {"name":"name","type":"string"},
        {"name":"note","type":["null","string"]},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B","C"]}},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"attrs","type":{"type":"map","values":"long"}},
        {"name":"day","type":{"type":"int","logicalType":"date"}},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
        {"name":"inner","type":{"type":"record","name":"Inner","fields":[
            {"name":"x","type":"int"},{"name":"y","type":"string"}]}},
        {"name":"skipped","type":{"type":"array","items":{"type":"map","values":"string"}}}
    ]}"#;

    fn event(note: Option<&str>) -> V {
        V::Record(vec![
            ("id".into(), V::Long(-9_007_199_254_740_993)),
            ("n".into(), V::Int(-5)),
            ("ok".into(), V::Boolean(true)),
            ("score".into(), V::Double(0.1)),
            ("ratio".into(), V::Float(0.1)),
            ("name".into(), V::String("a \"quoted\" \\ name\n".into())),
            (
                "note".into(),
                match note {
                    Some(n) => V::Union(1, Box::new(V::String(n.into()))),
                    None => V::Union(0, Box::new(V::Null)),
                },
            ),
            ("kind".into(), V::Enum(2, "C".into())),
            (
                "tags".into(),
                V::Array(vec![V::String("x".into()), V::String("y,\"z\"".into())]),
            ),
            (
                "attrs".into(),
                V::Map([("k1".to_string(), V::Long(1))].into_iter().collect()),
            ),
            ("day".into(), V::Date(19_700)),
            ("at".into(), V::TimestampMillis(1_700_000_000_120)),
            (
                "price".into(),
                V::Decimal(apache_avro::Decimal::from(
                    (-12_345i64).to_be_bytes().to_vec(),
                )),
            ),
            (
                "inner".into(),
                V::Record(vec![
                    ("x".into(), V::Int(3)),
                    ("y".into(), V::String("q".into())),
                ]),
            ),
            (
                "skipped".into(),
                V::Array(vec![V::Map(
                    [("a".to_string(), V::String("b".into()))]
                        .into_iter()
                        .collect(),
                )]),
            ),
        ])
    }

    const COLUMNS: &[(&str, &str)] = &[
        ("id", "Int64"),
        ("n", "Int32"),
        ("ok", "Bool"),
        ("score", "Float64"),
        ("ratio", "Float32"),
        ("name", "String"),
        ("note", "Nullable(String)"),
        ("kind", "Enum8('A' = 1, 'B' = 2, 'C' = 3)"),
        ("tags", "Array(String)"),
        ("attrs", "Map(String, Int64)"),
        ("day", "Date"),
        ("at", "DateTime64(3, 'UTC')"),
        ("price", "Decimal(10, 2)"),
        ("inner", "Tuple(x Int32, y String)"),
    ];

    #[test]
    fn every_type_converts_as_its_json_form_does() {
        let p = plan(COLUMNS, UnknownFields::Ignore);
        for note in [None, Some("hi")] {
            let got = row(&p, EVENT, &message(EVENT, event(note))).unwrap();
            let note_json = match note {
                Some(n) => format!("{n:?}"),
                None => "null".into(),
            };
            let want = json_row(
                &p,
                &format!(
                    r#"{{"id":-9007199254740993,"n":-5,"ok":true,"score":0.1,
                    "ratio":{},"name":"a \"quoted\" \\ name\n","note":{note_json},"kind":"C",
                    "tags":["x","y,\"z\""],"attrs":{{"k1":1}},"day":19700,
                    "at":"2023-11-14 22:13:20.12","price":-123.45,"inner":[3,"q"]}}"#,
                    f64::from(0.1f32)
                ),
            );
            assert_eq!(got, want, "note {note:?}");
        }
    }

    #[test]
    fn a_top_level_bytes_field_keeps_binary_and_map_order_is_kept() {
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"blob","type":"bytes"},
            {"name":"fx","type":{"type":"fixed","name":"F4","size":4}},
            {"name":"m","type":{"type":"map","values":"int"}}]}"#;
        // apache-avro's Value map is a HashMap: write the datum by hand to fix the order.
        let mut m = vec![0, 0, 0, 0, 7];
        m.extend([6, 0xff, 0x00, b'"']); // bytes, length 3
        m.extend([1, 2, 0x80, 4]); // fixed(4)
        m.extend([4, 2, b'z', 2, 2, b'a', 4, 0]); // map: 2 entries z=1, a=2, end
        let p = plan(
            &[
                ("blob", "String"),
                ("fx", "FixedString(4)"),
                ("m", "Map(String, Int32)"),
            ],
            UnknownFields::Error,
        );
        let got = row(&p, schema, &m).unwrap();
        let mut want = vec![3, 0xff, 0x00, b'"', 1, 2, 0x80, 4, 2];
        want.extend([1, b'z', 1, 0, 0, 0, 1, b'a', 2, 0, 0, 0]);
        assert_eq!(got, want);
    }

    #[test]
    fn bad_datums_say_which_byte_and_field() {
        let p = plan(COLUMNS, UnknownFields::Ignore);
        let good = message(EVENT, event(Some("hi")));
        // Cut inside the field `name`: id (9 bytes) n ok score ratio come first.
        let cut = &good[..5 + 9 + 1 + 1 + 8 + 4 + 3];
        let e = row(&p, EVENT, cut).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid Avro datum at byte") && e.contains("field \"name\": truncated"),
            "{e}"
        );
        let mut extra = good.clone();
        extra.push(0);
        let e = row(&p, EVENT, &extra).unwrap_err().to_string();
        assert!(e.contains("1 bytes left over"), "{e}");
        let e = row(&p, EVENT, &good[..3]).unwrap_err().to_string();
        assert_eq!(
            e,
            "not in the schema registry's wire format: 3 bytes, shorter than the 5-byte header"
        );
        assert_eq!(
            super::super::registered::schema_id(b"{\"a\":1}").unwrap_err().to_string(),
            "not in the schema registry's wire format: first byte 0x7b, expected the magic byte 0x00"
        );
        assert_eq!(
            super::super::registered::schema_id(&[0, 0, 1, 0, 2, 9]).unwrap(),
            65_538
        );
        // A block count far beyond the bytes left is refused before any item is read.
        let arr = r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"array","items":"null"}}]}"#;
        let p1 = plan(&[("a", "Array(Nullable(Int8))")], UnknownFields::Ignore);
        let mut m = vec![0, 0, 0, 0, 7, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0];
        let e = row(&p1, arr, &m).unwrap_err().to_string();
        assert!(
            e.ends_with("a block of 2147483647 items with 1 bytes left"),
            "{e}"
        );
        m.splice(5..10, [4]); // 2 nulls: fine, they take no bytes
        assert_eq!(row(&p1, arr, &m).unwrap(), [2, 1, 1]);
        let longs = arr.replace("\"null\"", "\"long\"");
        let p2 = plan(&[("a", "Array(Int64)")], UnknownFields::Ignore);
        let e = row(&p2, &longs, &[0, 0, 0, 0, 7, 6, 2, 4])
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("a block of 3 items with 2 bytes left"), "{e}");
        // An enum index out of range, a bad union branch, a bad boolean.
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}},
            {"name":"u","type":["null","int"]},{"name":"b","type":"boolean"}]}"#;
        let p = plan(
            &[("e", "String"), ("u", "Nullable(Int32)"), ("b", "Bool")],
            UnknownFields::Ignore,
        );
        for (datum, want) in [
            (vec![2, 0, 0], "enum index 1 does not exist (1 symbols)"),
            (vec![0, 4, 0], "union branch 2 does not exist (2 branches)"),
            (vec![0, 0, 7], "boolean byte 0x07 is neither 0 nor 1"),
        ] {
            let mut m = vec![0, 0, 0, 0, 7];
            m.extend(datum);
            let e = row(&p, schema, &m).unwrap_err().to_string();
            assert!(e.ends_with(want), "{e}");
        }
    }

    #[test]
    fn value_errors_name_the_field_and_column() {
        let p = plan(&[("n", "UInt8")], UnknownFields::Ignore);
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"n","type":"int"}]}"#;
        let e = row(
            &p,
            schema,
            &message(schema, V::Record(vec![("n".into(), V::Int(300))])),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "field \"n\" -> column n UInt8: 300 out of range 0..=255");
        // A timestamp with milliseconds into a DateTime fails rather than being cut.
        let p = plan(&[("at", "DateTime('UTC')")], UnknownFields::Ignore);
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;
        let ok = row(
            &p,
            schema,
            &message(
                schema,
                V::Record(vec![("at".into(), V::TimestampMillis(1_700_000_000_000))]),
            ),
        );
        assert_eq!(ok.unwrap(), 1_700_000_000u32.to_le_bytes());
        let e = row(
            &p,
            schema,
            &message(
                schema,
                V::Record(vec![("at".into(), V::TimestampMillis(1_700_000_000_001))]),
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("more fractional digits than the column's precision"),
            "{e}"
        );
    }

    #[test]
    fn unknown_and_missing_fields_follow_the_route() {
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"a","type":"int"},{"name":"extra","type":"string"}]}"#;
        let msg = message(
            schema,
            V::Record(vec![
                ("a".into(), V::Int(1)),
                ("extra".into(), V::String("x".into())),
            ]),
        );
        let p = plan(&[("a", "Int32")], UnknownFields::Error);
        assert_eq!(
            row(&p, schema, &msg).unwrap_err().to_string(),
            "unknown field \"extra\""
        );
        let p = plan(
            &[("a", "Int32"), ("b", "Nullable(String)")],
            UnknownFields::Ignore,
        );
        let cols = vec![
            ColumnPlan::field("a", ty("Int32")),
            ColumnPlan::field("b", ty("Nullable(String)"))
                .on_missing(crate::decode::json::OnMissing::Null),
            ColumnPlan::meta("off", ty("Int64"), MetaField::Offset),
        ];
        let p2 = RowPlan::new(cols, UnknownFields::Ignore, false).unwrap();
        assert_eq!(
            row(&p2, schema, &msg).unwrap(),
            [1, 0, 0, 0, 1, 42, 0, 0, 0, 0, 0, 0, 0]
        );
        // Without a default for the missing column, the error names it.
        let e = row(&p, schema, &msg).unwrap_err().to_string();
        assert!(e.starts_with("missing field \"b\" for column b"), "{e}");
    }

    #[test]
    fn floats_decimals_and_timestamps_keep_every_digit() {
        let mut out = Vec::new();
        let mut w = |f: f64| {
            out.clear();
            write_float(f, &mut out);
            String::from_utf8(out.clone()).unwrap()
        };
        assert_eq!(w(0.1), "0.1");
        assert_eq!(w(-2.5e-300), "-2.5e-300");
        assert_eq!(w(1e300), "1e300");
        assert_eq!(w(3.0), "3.0");
        assert_eq!(w(f64::NAN), "\"nan\"");
        assert_eq!(w(f64::NEG_INFINITY), "\"-inf\"");
        let s = |v: i128, scale: u32| {
            let mut o = Vec::new();
            write_scaled(v, scale, &mut o);
            String::from_utf8(o).unwrap()
        };
        assert_eq!(s(-12_345, 2), "-123.45");
        assert_eq!(s(5, 3), "0.005");
        assert_eq!(s(-5, 3), "-0.005");
        assert_eq!(s(1_700_000_000_000, 3), "1700000000");
        assert_eq!(s(1_700_000_000_120, 3), "1700000000.12");
        assert_eq!(s(i128::MIN, 0), i128::MIN.to_string());
        assert_eq!(twos_complement(&[0xff, 0x85]).unwrap(), -123);
        assert_eq!(twos_complement(&[]).unwrap(), 0);
        let mut wide = vec![0u8; 20];
        wide[19] = 1;
        assert_eq!(twos_complement(&wide).unwrap(), 1);
        wide[3] = 1;
        assert_eq!(twos_complement(&wide), None);
        let digits = |b: &[u8]| {
            let (neg, d) = wide_digits(b);
            format!(
                "{}{}",
                if neg { "-" } else { "" },
                String::from_utf8(d).unwrap()
            )
        };
        assert_eq!(digits(&wide), "340282366920938463463374607431768211457");
        let mut min = vec![0u8; 17];
        min[0] = 0x80;
        assert_eq!(digits(&min), "-43556142965880123323311949751266331066368");
        assert_eq!(digits(&[0xff; 20]), "-1");
        assert_eq!(digits(&[0; 20]), "0");
    }

    /// Zigzag varint, as Avro writes an int or long.
    fn zigzag(v: i64) -> Vec<u8> {
        let mut n = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out
    }

    /// A `big-decimal` datum by hand: the value's bytes, holding the unscaled bytes and the
    /// scale.
    fn big_decimal_datum(unscaled: &[u8], scale: i64, trailing: &[u8]) -> Vec<u8> {
        let mut inner = zigzag(unscaled.len() as i64);
        inner.extend_from_slice(unscaled);
        inner.extend(zigzag(scale));
        inner.extend_from_slice(trailing);
        let mut m = vec![0, 0, 0, 0, 7];
        m.extend(zigzag(inner.len() as i64));
        m.extend(inner);
        m
    }

    #[test]
    fn records_and_maps_go_into_json_columns_as_their_json_text() {
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"inner","type":{"type":"record","name":"I","fields":[
                {"name":"x","type":"int"},{"name":"s","type":["null","string"]}]}},
            {"name":"m","type":{"type":"map","values":"long"}},
            {"name":"n","type":"int"}]}"#;
        let p = plan(
            &[("inner", "JSON"), ("m", "JSON"), ("n", "JSON")],
            UnknownFields::Error,
        );
        let value = |n: i32| {
            V::Record(vec![
                (
                    "inner".into(),
                    V::Record(vec![
                        ("x".into(), V::Int(5)),
                        ("s".into(), V::Union(1, Box::new(V::String("a\"b".into())))),
                    ]),
                ),
                ("m".into(), V::Map([("k".to_string(), V::Long(-1))].into())),
                ("n".into(), V::Int(n)),
            ])
        };
        let p2 = plan(&[("inner", "JSON"), ("m", "JSON")], UnknownFields::Ignore);
        let got = row(&p2, schema, &message(schema, value(1))).unwrap();
        let mut want = Vec::new();
        crate::encode::rowbinary::put_str(&mut want, br#"{"x":5,"s":"a\"b"}"#);
        crate::encode::rowbinary::put_str(&mut want, br#"{"k":-1}"#);
        assert_eq!(got, want);
        // An int is no object.
        let e = row(&p, schema, &message(schema, value(1)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("column n JSON: expected a JSON object, found a number 1"),
            "{e}"
        );
    }

    #[test]
    fn decimals_wider_than_128_bits_and_big_decimals_keep_every_digit() {
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":60,"scale":10}},
            {"name":"f","type":{"type":"fixed","name":"F32","size":32,"logicalType":"decimal","precision":76,"scale":4}},
            {"name":"b","type":{"type":"bytes","logicalType":"big-decimal"}},
            {"name":"s","type":{"type":"bytes","logicalType":"big-decimal"}},
            {"name":"e","type":{"type":"bytes","logicalType":"big-decimal"}},
            {"name":"a","type":{"type":"array","items":{"type":"bytes","logicalType":"big-decimal"}}}]}"#;
        let p = plan(
            &[
                ("d", "Decimal(60, 10)"),
                ("f", "Decimal(76, 4)"),
                ("b", "Decimal(40, 6)"),
                ("s", "String"),
                ("e", "Decimal(76, 0)"),
                ("a", "Array(Decimal(50, 5))"),
            ],
            UnknownFields::Error,
        );
        let big = |t: &str| t.parse::<apache_avro::BigDecimal>().unwrap();
        let unscaled = |t: &str, width: usize| {
            let b = big(t).as_bigint_and_exponent().0.to_signed_bytes_be();
            let fill = if b[0] & 0x80 != 0 { 0xff } else { 0 };
            let mut w = vec![fill; width.saturating_sub(b.len())];
            w.extend(b);
            w
        };
        let d = "-123456789012345678901234567890123456789012345.6789012345";
        let f = format!("{}.9999", "9".repeat(71));
        let e = "-170141183460469231731687303715884105729"; // i128::MIN - 1
        let value = V::Record(vec![
            (
                "d".into(),
                V::Decimal(apache_avro::Decimal::from(unscaled(d, 0))),
            ),
            (
                "f".into(),
                V::Decimal(apache_avro::Decimal::from(unscaled(&f, 32))),
            ),
            // Scale 6, trailing zeros: 38 digits, within 128 bits.
            (
                "b".into(),
                V::BigDecimal(big("12345678901234567890123456789012.345600")),
            ),
            // A negative scale: 42 * 10^30.
            ("s".into(), V::BigDecimal(big("4.2E+31"))),
            ("e".into(), V::BigDecimal(big(e))),
            (
                "a".into(),
                V::Array(vec![
                    V::BigDecimal(big("1.5")),
                    V::BigDecimal(big("-0.00001")),
                    V::BigDecimal(big("1E+3")),
                ]),
            ),
        ]);
        let got = row(&p, schema, &message(schema, value)).unwrap();
        let want = json_row(
            &p,
            &format!(
                r#"{{"d":{d},"f":{f},"b":12345678901234567890123456789012.3456,
                "s":"42000000000000000000000000000000","e":{e},"a":[1.5,-0.00001,1000]}}"#
            ),
        );
        assert_eq!(got, want);

        // What cannot be read says why, naming the field.
        let one = r#"{"type":"record","name":"R","fields":[
            {"name":"b","type":{"type":"bytes","logicalType":"big-decimal"}}]}"#;
        let p = plan(&[("b", "String")], UnknownFields::Error);
        let err = |m: Vec<u8>| row(&p, one, &m).unwrap_err().to_string();
        let e = err(big_decimal_datum(&[1; 129], 0, &[]));
        assert!(
            e.contains("field \"b\"")
                && e.contains("a decimal of 129 bytes is wider than the 128 bytes"),
            "{e}"
        );
        let e = err(big_decimal_datum(&[1], 5000, &[]));
        assert!(
            e.contains("a big-decimal of scale 5000, beyond the +-1000"),
            "{e}"
        );
        let e = err(big_decimal_datum(&[1], i64::MIN, &[]));
        assert!(e.contains("beyond the +-1000"), "{e}");
        let e = err(big_decimal_datum(&[1], 2, &[7]));
        assert!(
            e.contains("a big-decimal with 1 bytes after its scale"),
            "{e}"
        );
        let e = err(big_decimal_datum(&[], 2, &[]));
        assert!(e.contains("a big-decimal without digits"), "{e}");
        // More digits than the column holds: the column's own error, not a cut value.
        let p = plan(&[("b", "Decimal(38, 2)")], UnknownFields::Error);
        let e = row(&p, one, &big_decimal_datum(&[0x7f; 20], 0, &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("column b Decimal(38, 2)"), "{e}");
    }

    #[test]
    fn schemas_are_refused_with_the_reason() {
        assert!(Compiled::new("\"long\"", &[])
            .unwrap_err()
            .contains("not a record"));
        assert!(Compiled::new("{", &[])
            .unwrap_err()
            .starts_with("not a valid Avro schema"));
        // A record that refers to itself compiles; a datum nesting past the limit fails.
        let list = r#"{"type":"record","name":"Node","fields":[
            {"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}"#;
        let c = Compiled::new(list, &[]).unwrap();
        assert_eq!(c.field_names().collect::<Vec<_>>(), ["v", "next"]);
        let p = plan(&[("v", "Int32"), ("next", "String")], UnknownFields::Ignore);
        let mut m = vec![0, 0, 0, 0, 7];
        for _ in 0..100 {
            m.extend([2, 2]); // v = 1, next = branch 1 (a Node)
        }
        m.extend([2, 0]);
        let e = row(&p, list, &m).unwrap_err().to_string();
        assert!(e.contains("nested deeper than 64 levels"), "{e}");
        // Named types from a referenced schema.
        let inner = r#"{"type":"record","name":"ex.Inner","fields":[{"name":"x","type":"int"}]}"#;
        let outer =
            r#"{"type":"record","name":"ex.Outer","fields":[{"name":"i","type":"ex.Inner"}]}"#;
        let c = Compiled::new(outer, &[inner.to_string()]).unwrap();
        assert_eq!(c.field_names().collect::<Vec<_>>(), ["i"]);
    }
}
