//! Messages whose schema comes from the registry (Avro, Protobuf, JSON Schema): the wire
//! format's header, and a schema bound to a route's plan in whichever format the route reads.
//!
//! All three start with the magic byte 0 and the schema's id (4 bytes, big-endian). A
//! route binds each id it meets once ([`bind`]); the schema's type must be the route's
//! format, so a Protobuf schema id on an Avro topic is that message's error, not a guess.
//!
//! A JSON Schema message is the JSON document after the header, read as a `json` route reads
//! a message (fields to columns by name, the columns' types decide). The document is checked
//! against the schema only where the route says `validate = true` ([`super::json_schema`]),
//! as Confluent's deserializer checks only with `json.fail.invalid.schema`: the table's types
//! already refuse a value they cannot hold, which dead-letters the message with the field and
//! the reason, and a check costs a parse of its own.

use crate::config::{Envelope, Format};
use crate::registry::RawSchema;

use super::avro::{self, AvroScratch};
use super::json::{debezium_row, encode_json_row, MessageMeta, NewColumn, RowError, RowPlan};
use super::json_schema::Checker;
use super::protobuf::{self, ProtobufScratch};

/// Deeper values are refused: a recursive schema lets a small message nest without end, and
/// the decoders recurse once per level.
pub const MAX_DEPTH: usize = 64;

/// The first byte of every message in the registry's wire format.
pub const MAGIC: u8 = 0;

/// The magic byte and the schema id, before the datum in every format.
pub const HEADER_LEN: usize = 5;

/// The schema id of a message in the registry's wire format.
pub fn schema_id(payload: &[u8]) -> Result<u32, RowError> {
    let framing = |reason: String| RowError::NotRegistryFramed { reason };
    let Some((&magic, rest)) = payload.split_first() else {
        return Err(framing("empty payload".into()));
    };
    if magic != MAGIC {
        return Err(framing(format!(
            "first byte 0x{magic:02x}, expected the magic byte 0x00"
        )));
    }
    match rest.first_chunk::<4>() {
        Some(id) => Ok(u32::from_be_bytes(*id)),
        None => Err(framing(format!(
            "{} bytes, shorter than the 5-byte header",
            payload.len()
        ))),
    }
}

/// A registry schema compiled for a route's format and bound to its plan.
#[derive(Debug)]
pub enum Bound {
    Avro(avro::Bound),
    Protobuf(protobuf::Bound),
    /// A JSON Schema: its document is read by the route's JSON plan, after its check if the
    /// route validates; a Debezium change event's row is read from the document's image.
    Json {
        checker: Option<Checker>,
        debezium: bool,
    },
}

impl Bound {
    /// `unknown_fields = "add"`: the columns to add for the schema's fields that no column
    /// reads, and the fields that get none (see `avro::Bound::new_columns`). Avro only: a
    /// Protobuf schema holds several message types, so its new fields are found when a
    /// message names its type (`RowError::NewFields`), and a JSON Schema document's message
    /// by message, as on a json route.
    pub fn new_columns(&self, plan: &RowPlan) -> (Vec<NewColumn>, Vec<String>) {
        match self {
            Bound::Avro(b) => b.new_columns(plan),
            Bound::Protobuf(_) | Bound::Json { .. } => (Vec::new(), Vec::new()),
        }
    }
}

/// Compiles `schema` for `format` (avro, protobuf or json-schema) and binds it to `plan`,
/// a JSON Schema compiled for checks if `validate`; with `envelope` Debezium, the plan reads
/// the change event's row, not the event. The error is why messages with this schema cannot
/// be read.
pub fn bind(
    format: Format,
    schema: &RawSchema,
    plan: &RowPlan,
    validate: bool,
    envelope: Envelope,
) -> Result<Bound, String> {
    let debezium = envelope == Envelope::Debezium;
    let expected = match format {
        Format::Avro => "AVRO",
        Format::Protobuf => "PROTOBUF",
        Format::JsonSchema => "JSON",
        other => return Err(format!("a {other:?} route reads no registry schemas")),
    };
    if schema.schema_type != expected {
        return Err(format!(
            "schema type {}; the route reads {expected}",
            schema.schema_type
        ));
    }
    match format {
        Format::Avro => {
            let texts: Vec<String> = schema.references.iter().map(|(_, t)| t.clone()).collect();
            let compiled = std::sync::Arc::new(avro::Compiled::new(&schema.text, &texts)?);
            Ok(Bound::Avro(if debezium {
                avro::Bound::debezium(&compiled, plan)?
            } else {
                avro::Bound::new(&compiled, plan)
            }))
        }
        Format::JsonSchema => match serde_json::from_str::<serde_json::Value>(&schema.text) {
            // `true` and `false` are schemas too (anything, nothing); anything else is not.
            Ok(doc @ (serde_json::Value::Object(_) | serde_json::Value::Bool(_))) => {
                Ok(Bound::Json {
                    checker: if validate {
                        Some(Checker::new(&doc, &schema.references)?)
                    } else {
                        None
                    },
                    debezium,
                })
            }
            Ok(_) => Err("not a JSON Schema: neither an object nor a boolean".into()),
            Err(e) => Err(format!("not a JSON Schema: {e}")),
        },
        _ => {
            let compiled = protobuf::Compiled::new(&schema.text, &schema.references)?;
            Ok(Bound::Protobuf(protobuf::Bound::new(
                &compiled, plan, debezium,
            )))
        }
    }
}

/// Per-lane buffers of both formats.
#[derive(Debug, Default)]
pub struct Scratch {
    avro: AvroScratch,
    protobuf: ProtobufScratch,
}

/// Appends the row of one message to `out` (left as it was on error).
pub fn encode_registered_row(
    plan: &RowPlan,
    bound: &Bound,
    payload: &[u8],
    meta: &MessageMeta<'_>,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    match bound {
        Bound::Avro(b) => avro::encode_avro_row(plan, b, payload, meta, &mut scratch.avro, out),
        Bound::Protobuf(b) => {
            protobuf::encode_protobuf_row(plan, b, payload, meta, &mut scratch.protobuf, out)
        }
        Bound::Json { checker, debezium } => {
            let doc = payload.get(HEADER_LEN..).unwrap_or_default();
            if let Some(c) = checker {
                c.check(doc)?;
            }
            let read = if *debezium {
                // The schema describes the event; the plan reads the event's row.
                let (op, row, source) = debezium_row(doc)?;
                let meta = MessageMeta {
                    op: Some(op),
                    source,
                    ..*meta
                };
                encode_json_row(plan, row, &meta, out)
            } else {
                encode_json_row(plan, doc, meta, out)
            };
            read.map_err(|e| match e {
                // The offset of the message, as every other format's errors give it.
                RowError::InvalidJson { offset, reason } => RowError::InvalidJson {
                    offset: offset.saturating_add(HEADER_LEN),
                    reason,
                },
                other => other,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::tests::{named_plan, META};
    use crate::decode::json::UnknownFields;

    fn json_schema(text: &str) -> RawSchema {
        RawSchema {
            schema_type: "JSON".into(),
            text: text.into(),
            references: Vec::new(),
        }
    }

    /// The message `doc` written with schema id 9.
    fn framed(doc: &str) -> Vec<u8> {
        let mut m = vec![MAGIC, 0, 0, 0, 9];
        m.extend_from_slice(doc.as_bytes());
        m
    }

    /// Why `doc`, framed, is refused (appending to `row` what a row would be).
    fn refusal(plan: &RowPlan, bound: &Bound, doc: &str, row: &mut Vec<u8>) -> String {
        let mut scratch = Scratch::default();
        encode_registered_row(plan, bound, &framed(doc), &META, &mut scratch, row)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_json_schema_message_is_its_document_read_as_json() {
        let plan = named_plan(
            &[("id", "UInt64"), ("name", "String")],
            UnknownFields::Ignore,
        );
        let schema = r#"{"type":"object","properties":{"id":{"type":"integer"}}}"#;
        let bound = bind(
            Format::JsonSchema,
            &json_schema(schema),
            &plan,
            false,
            Envelope::None,
        )
        .unwrap();
        let mut scratch = Scratch::default();
        let mut row = Vec::new();
        let msg = framed(r#"{"id": 7, "name": "ab", "extra": 1}"#);
        encode_registered_row(&plan, &bound, &msg, &META, &mut scratch, &mut row).unwrap();
        let mut plain = Vec::new();
        encode_json_row(&plan, &msg[HEADER_LEN..], &META, &mut plain).unwrap();
        assert_eq!(row, plain);
        assert_eq!(row, [7, 0, 0, 0, 0, 0, 0, 0, 2, b'a', b'b']);

        // Errors point into the message, header included, as Avro's do.
        assert_eq!(
            refusal(&plan, &bound, r#"{"id": }"#, &mut row),
            "invalid JSON at byte 12: expected a JSON value"
        );
        let e = refusal(&plan, &bound, r#"{"id": -1}"#, &mut row);
        assert!(e.starts_with("field \"id\" -> column id UInt64"), "{e}");
        assert_eq!(
            row,
            [7, 0, 0, 0, 0, 0, 0, 0, 2, b'a', b'b'],
            "left as it was"
        );
    }

    /// A JSON Schema route with `envelope = "debezium"`: the schema is the event's, the row
    /// the event's image, as on a JSON route.
    #[test]
    fn a_json_schema_change_event_is_read_as_its_image() {
        let plan = crate::decode::json::RowPlan::new(
            vec![
                crate::decode::json::ColumnPlan::field(
                    "id",
                    crate::decode::json::tests::ty("UInt64"),
                ),
                crate::decode::json::ColumnPlan::meta(
                    "__op",
                    crate::decode::json::tests::ty("String"),
                    crate::decode::json::MetaField::Op,
                ),
            ],
            UnknownFields::Error,
            false,
        )
        .unwrap();
        let schema = json_schema(r#"{"type":"object","required":["op"]}"#);
        let bound = bind(Format::JsonSchema, &schema, &plan, true, Envelope::Debezium).unwrap();
        let mut scratch = Scratch::default();
        let mut row = Vec::new();
        let msg = framed(r#"{"before":{"id":1},"after":null,"op":"d","source":{"db":"x"}}"#);
        encode_registered_row(&plan, &bound, &msg, &META, &mut scratch, &mut row).unwrap();
        assert_eq!(row, [1, 0, 0, 0, 0, 0, 0, 0, 1, b'd']);
        // The schema checks the whole event; the envelope's errors are the JSON route's.
        assert_eq!(
            refusal(&plan, &bound, r#"{"after":{"id":1}}"#, &mut row),
            "fails its JSON Schema at the document: \"op\" is a required property"
        );
        let lax = bind(
            Format::JsonSchema,
            &schema,
            &plan,
            false,
            Envelope::Debezium,
        )
        .unwrap();
        assert_eq!(
            refusal(&plan, &lax, r#"{"op":"t","after":null}"#, &mut row),
            "Debezium change event: a truncate (op \"t\") has no row"
        );
    }

    #[test]
    fn a_json_schema_route_reads_only_json_schemas() {
        let plan = named_plan(&[("id", "UInt64")], UnknownFields::Ignore);
        let avro = RawSchema {
            schema_type: "AVRO".into(),
            text: r#"{"type":"record","name":"R","fields":[]}"#.into(),
            references: Vec::new(),
        };
        let e = bind(Format::JsonSchema, &avro, &plan, false, Envelope::None).unwrap_err();
        assert_eq!(e, "schema type AVRO; the route reads JSON");
        let e = bind(
            Format::JsonSchema,
            &json_schema("{"),
            &plan,
            false,
            Envelope::None,
        )
        .unwrap_err();
        assert!(e.starts_with("not a JSON Schema: "), "{e}");
        let e = bind(
            Format::JsonSchema,
            &json_schema("[]"),
            &plan,
            false,
            Envelope::None,
        )
        .unwrap_err();
        assert_eq!(e, "not a JSON Schema: neither an object nor a boolean");
        assert!(bind(
            Format::JsonSchema,
            &json_schema("true"),
            &plan,
            false,
            Envelope::None
        )
        .is_ok());
        // And an Avro route refuses a JSON Schema's id.
        let e = bind(
            Format::Avro,
            &json_schema("{}"),
            &plan,
            false,
            Envelope::None,
        )
        .unwrap_err();
        assert_eq!(e, "schema type JSON; the route reads AVRO");
    }

    /// `unknown_fields = "add"` on a JSON Schema route: a document's new fields are named
    /// with their types, as on a json route, and the schema adds none by itself.
    #[test]
    fn a_json_schema_document_names_its_new_fields() {
        let plan = named_plan(&[("id", "UInt64")], UnknownFields::Add);
        let schema = json_schema(r#"{"type":"object"}"#);
        let bound = bind(Format::JsonSchema, &schema, &plan, true, Envelope::None).unwrap();
        assert_eq!(bound.new_columns(&plan), (Vec::new(), Vec::new()));
        let (mut scratch, mut row) = (Scratch::default(), Vec::new());
        let doc = framed(r#"{"id": 1, "price": 2.5}"#);
        let e =
            encode_registered_row(&plan, &bound, &doc, &META, &mut scratch, &mut row).unwrap_err();
        assert!(
            matches!(&e, RowError::NewFields { fields } if fields == &[NewColumn {
                name: "price".into(),
                column_type: "Nullable(Float64)".into()
            }]),
            "{e}"
        );
        assert!(row.is_empty());
    }

    #[test]
    fn a_validating_route_refuses_documents_its_schema_refuses() {
        let plan = named_plan(
            &[("id", "UInt64"), ("name", "String")],
            UnknownFields::Ignore,
        );
        let schema = json_schema(
            r#"{"type":"object","properties":{"id":{"type":"integer","maximum":100},"name":{"maxLength":3}}}"#,
        );
        let mut scratch = Scratch::default();
        let mut row = Vec::new();
        // Both documents fit the columns; only the schema refuses them.
        let over = framed(r#"{"id": 101, "name": "a"}"#);
        let long = framed(r#"{"id": 1, "name": "abcd"}"#);
        let lax = bind(Format::JsonSchema, &schema, &plan, false, Envelope::None).unwrap();
        for msg in [&over, &long] {
            encode_registered_row(&plan, &lax, msg, &META, &mut scratch, &mut row).unwrap();
        }
        let strict = bind(Format::JsonSchema, &schema, &plan, true, Envelope::None).unwrap();
        row.clear();
        let e = encode_registered_row(&plan, &strict, &over, &META, &mut scratch, &mut row)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "fails its JSON Schema at \"/id\": 101 is greater than the maximum of 100"
        );
        let e = encode_registered_row(&plan, &strict, &long, &META, &mut scratch, &mut row)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "fails its JSON Schema at \"/name\": \"abcd\" is longer than 3 characters"
        );
        assert!(row.is_empty(), "nothing written for a refused document");
        let ok = framed(r#"{"id": 100, "name": "a"}"#);
        encode_registered_row(&plan, &strict, &ok, &META, &mut scratch, &mut row).unwrap();
        // A cut-off document is still the row reader's error, at its byte.
        assert_eq!(
            refusal(&plan, &strict, r#"{"id": }"#, &mut row),
            "invalid JSON at byte 12: expected a JSON value"
        );
        // `false` refuses every document; a reference the registry did not list is the
        // schema's error.
        let none = bind(
            Format::JsonSchema,
            &json_schema("false"),
            &plan,
            true,
            Envelope::None,
        )
        .unwrap();
        assert!(encode_registered_row(&plan, &none, &ok, &META, &mut scratch, &mut row).is_err());
        let e = bind(
            Format::JsonSchema,
            &json_schema(r#"{"$ref": "https://example.com/elsewhere.json"}"#),
            &plan,
            true,
            Envelope::None,
        )
        .unwrap_err();
        assert!(e.starts_with("cannot compile the JSON Schema: "), "{e}");
    }
}
