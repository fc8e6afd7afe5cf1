//! Row errors (which field, which column, why) and the conversion errors they are made from.

use super::*;

/// A column `unknown_fields = "add"` adds for a field: its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewColumn {
    pub name: String,
    pub column_type: String,
}

/// Why a message could not be turned into a row. Every variant is a property of the message
/// (with this plan), so retrying the same message cannot succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("invalid JSON at byte {offset}: {reason}")]
    InvalidJson { offset: usize, reason: &'static str },
    #[error("payload is not a JSON object: {found}")]
    NotAnObject { found: String },
    #[error("unknown field \"{field}\"")]
    UnknownField { field: String },
    /// `unknown_fields = "add"`: fields without a column yet; the lane adds them and reads
    /// the message again. Not a bad message.
    #[error("{} without a column yet", fields.iter().map(|f| format!("field {:?} ({})", f.name, f.column_type)).collect::<Vec<_>>().join(", "))]
    NewFields { fields: Vec<NewColumn> },
    #[error("duplicate field \"{field}\"")]
    DuplicateField { field: String },
    #[error("invalid line at byte {offset}: {reason}")]
    InvalidLine { offset: usize, reason: &'static str },
    #[error("{found} fields, the route reads {expected} (one a column, in order)")]
    FieldCount { found: usize, expected: usize },
    #[error("not in the schema registry's wire format: {reason}")]
    NotRegistryFramed { reason: String },
    /// The registry has no usable schema under the message's id (not found, not Avro...).
    #[error("schema id {id}: {reason}")]
    Schema { id: u32, reason: String },
    /// A JSON Schema message whose document its schema refuses (`validate = true`): where
    /// (`"/tags/1"` or `the document`), the first violation, and how many more there are.
    #[error("fails its JSON Schema at {at}: {reason}{}", match more {
        0 => String::new(),
        1 => " (and 1 more violation)".to_string(),
        n => format!(" (and {n} more violations)"),
    })]
    SchemaViolation {
        at: String,
        reason: String,
        more: usize,
    },
    #[error("invalid Protobuf message: {reason}")]
    InvalidProtobuf { reason: String },
    /// A route with an `envelope`: the message is no change event with a row
    /// (`envelope`: whose events, "Debezium", "Maxwell", "Canal").
    #[error("{envelope} change event: {reason}")]
    Envelope {
        envelope: &'static str,
        reason: String,
    },
    #[error("invalid Avro datum at byte {offset}, field {field}: {reason}")]
    InvalidAvro {
        offset: usize,
        field: String,
        reason: String,
    },
    /// `origin` is `field "id"` or `Kafka timestamp`.
    #[error("missing {origin} for column {column} {ty} (no default sluice can apply here)")]
    Missing {
        origin: String,
        column: String,
        ty: String,
    },
    /// `origin` is `field "age"`, `Kafka offset`, or `value` (for [`encode_json_value`]).
    #[error("{origin} -> column {column} {ty}: {reason}")]
    Value {
        origin: String,
        column: String,
        ty: String,
        reason: String,
    },
}

/// A conversion failure deep inside a value, before we know which column it belongs to.
/// Boxed so that the hot path's `Result` stays one word.
#[derive(Debug)]
pub(super) struct ConvErr {
    pub(super) reason: String,
    /// The value has more fractional digits than the type holds: ClickHouse would round or
    /// cut it, sluice refuses it (see the Variant arm of [`write_value`]).
    pub(super) inexact: bool,
    /// Innermost last; rendered outermost first.
    pub(super) path: Vec<PathSeg>,
}

#[derive(Debug)]
pub(super) enum PathSeg {
    Index(usize),
    Key(String),
}

pub(super) type Conv<T = ()> = Result<T, Box<ConvErr>>;

#[cold]
pub(super) fn fail(reason: String) -> Box<ConvErr> {
    Box::new(ConvErr {
        reason,
        inexact: false,
        path: Vec::new(),
    })
}

/// [`fail`] for a value with more fractional digits than its type holds.
#[cold]
pub(super) fn fail_inexact(reason: String) -> Box<ConvErr> {
    let mut e = fail(reason);
    e.inexact = true;
    e
}

pub(super) fn at_index(i: usize) -> impl FnOnce(Box<ConvErr>) -> Box<ConvErr> {
    move |mut e| {
        e.path.push(PathSeg::Index(i));
        e
    }
}

/// `k` is a key's text without quotes (escapes, if any, are shown as written).
pub(super) fn at_key(k: &[u8]) -> impl FnOnce(Box<ConvErr>) -> Box<ConvErr> + '_ {
    move |mut e| {
        e.path
            .push(PathSeg::Key(String::from_utf8_lossy(k).into_owned()));
        e
    }
}

impl ConvErr {
    pub(super) fn into_row_error(self, origin: String, col: &ColumnPlan) -> RowError {
        let mut reason = String::new();
        for seg in self.path.iter().rev() {
            match seg {
                PathSeg::Index(i) => reason.push_str(&format!("[{i}]")),
                PathSeg::Key(k) => reason.push_str(&format!("[{:?}]", shorten(k))),
            }
        }
        if !reason.is_empty() {
            reason.push_str(": ");
        }
        reason.push_str(&self.reason);
        RowError::Value {
            origin,
            column: col.name.clone(),
            ty: col.ty.to_string(),
            reason,
        }
    }
}

pub(super) fn shorten(s: &str) -> String {
    match s.char_indices().nth(SHOW_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

/// The offending text, shortened, for messages.
pub(super) fn show(raw: &[u8]) -> String {
    shorten(&String::from_utf8_lossy(raw))
}

pub(super) fn field_origin(name: &str) -> String {
    format!("field {:?}", shorten(name))
}
