//! `sluice produce --value-schema`: JSON lines turned into Avro, Protobuf or JSON Schema
//! messages in the schema registry's wire format, as Confluent's console producers
//! (`kafka-avro-console-producer`, `kafka-protobuf-console-producer`,
//! `kafka-json-schema-console-producer`) write them.
//!
//! The schema is registered under the topic's value subject (`<topic>-value`, the default
//! TopicNameStrategy) and its id goes into every message. Avro: each JSON object is read
//! into Avro values and resolved against the schema by apache-avro (numbers into int, long,
//! float, double; strings into enums, bytes, fixed; `null` or a value into a union's
//! matching branch). Protobuf: each line is read with Protobuf's JSON mapping
//! (prost-reflect), so 64-bit integers may be strings, enums names, bytes base64. JSON
//! Schema: each line must be a JSON object and is written as it is, after the header; it is
//! not validated against the schema (Confluent's serializer does so only when told to).

use std::path::Path;

use anyhow::{bail, Context, Result};
use prost_reflect::{DynamicMessage, MessageDescriptor};
use protox::prost::Message as _;

use crate::decode::registered::MAGIC;

/// Which kind of schema a `--value-schema` file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    Avro,
    Protobuf,
    JsonSchema,
}

impl SchemaKind {
    /// From the file's extension and, for `.json`, its content: `.avsc` is Avro, `.proto`
    /// Protobuf; a `.json` file is a JSON Schema when it names its `$schema`, describes an
    /// `object` or lists `properties`, and an Avro schema otherwise (Avro's types are
    /// `record`, `enum`, ... and a union is an array).
    pub fn of(path: &Path, text: &str) -> Result<SchemaKind> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("avsc") => Ok(SchemaKind::Avro),
            Some("proto") => Ok(SchemaKind::Protobuf),
            Some("json") => {
                let doc: serde_json::Value = serde_json::from_str(text)
                    .with_context(|| format!("{}: not JSON", path.display()))?;
                let json_schema = doc.as_object().is_some_and(|o| {
                    o.contains_key("$schema")
                        || o.contains_key("properties")
                        || o.get("type").and_then(|t| t.as_str()) == Some("object")
                });
                Ok(if json_schema {
                    SchemaKind::JsonSchema
                } else {
                    SchemaKind::Avro
                })
            }
            _ => bail!(
                "{}: a value schema is an Avro .avsc, a Protobuf .proto or a .json file (Avro or JSON Schema)",
                path.display()
            ),
        }
    }

    /// The registry's name for it.
    pub fn registry_type(self) -> &'static str {
        match self {
            SchemaKind::Avro => "AVRO",
            SchemaKind::Protobuf => "PROTOBUF",
            SchemaKind::JsonSchema => "JSON",
        }
    }
}

/// Encodes JSON lines as messages of one registered schema.
pub enum ValueEncoder {
    Avro {
        schema: apache_avro::Schema,
        header: Vec<u8>,
    },
    Protobuf {
        message: MessageDescriptor,
        header: Vec<u8>,
    },
    JsonSchema {
        header: Vec<u8>,
    },
}

/// The magic byte and the schema id.
fn header(id: u32) -> Vec<u8> {
    let mut h = vec![MAGIC];
    h.extend(id.to_be_bytes());
    h
}

impl ValueEncoder {
    /// An encoder for `text` (the schema file's content), registered as `id`. Protobuf:
    /// `message` names the message type (default: the file's first message).
    pub fn new(
        kind: SchemaKind,
        text: &str,
        id: u32,
        message: Option<&str>,
    ) -> Result<ValueEncoder> {
        match kind {
            SchemaKind::Avro => Ok(ValueEncoder::Avro {
                schema: apache_avro::Schema::parse_str(text).context("not a valid Avro schema")?,
                header: header(id),
            }),
            SchemaKind::Protobuf => {
                let compiled = crate::decode::protobuf::Compiled::new(text, &[])
                    .map_err(|e| anyhow::anyhow!(e))?;
                let (path, message) = compiled
                    .top_level(message)
                    .map_err(|e| anyhow::anyhow!(e))?;
                let mut header = header(id);
                // Message indexes: a lone 0 for the first message, else the count and the
                // indexes, each a zigzag varint.
                if path == [0] {
                    header.push(0);
                } else {
                    put_zigzag(&mut header, path.len() as i64);
                    for i in path {
                        put_zigzag(&mut header, i);
                    }
                }
                Ok(ValueEncoder::Protobuf { message, header })
            }
            SchemaKind::JsonSchema => match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(_) | serde_json::Value::Bool(_)) => {
                    Ok(ValueEncoder::JsonSchema { header: header(id) })
                }
                Ok(_) => bail!("not a JSON Schema: neither an object nor a boolean"),
                Err(e) => bail!("not a JSON Schema: {e}"),
            },
        }
    }

    /// The message for one JSON line, or why the line does not fit the schema.
    pub fn encode(&self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        out.clear();
        match self {
            ValueEncoder::Avro { schema, header } => {
                let json: serde_json::Value =
                    serde_json::from_slice(line).map_err(|e| format!("is not JSON: {e}"))?;
                let value = apache_avro::types::Value::from(json)
                    .resolve(schema)
                    .map_err(|e| format!("does not fit the Avro schema: {e}"))?;
                let datum = apache_avro::to_avro_datum(schema, value)
                    .map_err(|e| format!("cannot be written as Avro: {e}"))?;
                out.extend_from_slice(header);
                out.extend(datum);
            }
            ValueEncoder::Protobuf { message, header } => {
                let mut de = serde_json::Deserializer::from_slice(line);
                let msg = DynamicMessage::deserialize(message.clone(), &mut de)
                    .map_err(|e| format!("does not fit {}: {e}", message.full_name()))?;
                de.end()
                    .map_err(|e| format!("trailing characters after the JSON object: {e}"))?;
                out.extend_from_slice(header);
                msg.encode(out)
                    .map_err(|e| format!("cannot be written as Protobuf: {e}"))?;
            }
            ValueEncoder::JsonSchema { header } => {
                // Parsed only to refuse what no JSON Schema consumer could read; the line's
                // own bytes are what goes out.
                match serde_json::from_slice::<serde_json::Value>(line) {
                    Ok(serde_json::Value::Object(_)) => {}
                    Ok(_) => return Err("is not a JSON object".into()),
                    Err(e) => return Err(format!("is not JSON: {e}")),
                }
                out.extend_from_slice(header);
                out.extend_from_slice(line);
            }
        }
        Ok(())
    }
}

fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avro_lines_become_framed_datums() {
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"},
            {"name":"k","type":{"type":"enum","name":"K","symbols":["A","B"]}},
            {"name":"n","type":["null","string"]}]}"#;
        let e = ValueEncoder::new(SchemaKind::Avro, schema, 258, None).unwrap();
        let mut out = Vec::new();
        e.encode(br#"{"id": 3, "k": "B", "n": null}"#, &mut out)
            .unwrap();
        assert_eq!(out, [0, 0, 0, 1, 2, 6, 2, 0]);
        e.encode(br#"{"id": 3, "k": "B", "n": "x"}"#, &mut out)
            .unwrap();
        assert_eq!(out, [0, 0, 0, 1, 2, 6, 2, 2, 2, b'x']);
        let err = e
            .encode(br#"{"id": "x", "k": "B", "n": null}"#, &mut out)
            .unwrap_err();
        assert!(err.starts_with("does not fit the Avro schema"), "{err}");
        assert!(e
            .encode(b"{", &mut out)
            .unwrap_err()
            .starts_with("is not JSON"));
    }

    #[test]
    fn protobuf_lines_carry_their_message_indexes() {
        let proto = "syntax = \"proto3\"; message A { int64 id = 1; } message B { string s = 1; }";
        let first = ValueEncoder::new(SchemaKind::Protobuf, proto, 1, None).unwrap();
        let mut out = Vec::new();
        first.encode(br#"{"id": "5"}"#, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 0, 1, 0, 8, 5]);
        let second = ValueEncoder::new(SchemaKind::Protobuf, proto, 1, Some("B")).unwrap();
        second.encode(br#"{"s": "hi"}"#, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 0, 1, 2, 2, 10, 2, b'h', b'i']);
        let err = first.encode(br#"{"nope": 1}"#, &mut out).unwrap_err();
        assert!(err.starts_with("does not fit A"), "{err}");
        assert!(ValueEncoder::new(SchemaKind::Protobuf, proto, 1, Some("C")).is_err());
    }

    #[test]
    fn json_schema_lines_go_out_as_they_are_behind_the_header() {
        let schema = r#"{"type":"object","properties":{"id":{"type":"integer"}}}"#;
        let e = ValueEncoder::new(SchemaKind::JsonSchema, schema, 258, None).unwrap();
        let mut out = Vec::new();
        e.encode(br#"{"id": 3}"#, &mut out).unwrap();
        assert_eq!(out, b"\x00\x00\x00\x01\x02{\"id\": 3}");
        assert_eq!(
            e.encode(b"[1]", &mut out).unwrap_err(),
            "is not a JSON object"
        );
        assert!(e
            .encode(b"{", &mut out)
            .unwrap_err()
            .starts_with("is not JSON"));
        assert!(ValueEncoder::new(SchemaKind::JsonSchema, "[1]", 1, None).is_err());
        assert!(ValueEncoder::new(SchemaKind::JsonSchema, "true", 1, None).is_ok());
    }

    #[test]
    fn schema_kinds_come_from_the_extension_and_a_json_file_s_content() {
        let of = |path: &str, text: &str| SchemaKind::of(Path::new(path), text);
        assert_eq!(of("a/o.avsc", "").unwrap(), SchemaKind::Avro);
        assert_eq!(of("o.proto", "").unwrap(), SchemaKind::Protobuf);
        assert!(of("o.txt", "").is_err());
        let avro = r#"{"type":"record","name":"R","fields":[]}"#;
        assert_eq!(of("o.json", avro).unwrap(), SchemaKind::Avro);
        assert_eq!(
            of("o.json", r#"["null","long"]"#).unwrap(),
            SchemaKind::Avro
        );
        for json_schema in [
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema"}"#,
            r#"{"type":"object"}"#,
            r#"{"title":"T","properties":{"id":{"type":"integer"}}}"#,
        ] {
            assert_eq!(of("o.json", json_schema).unwrap(), SchemaKind::JsonSchema);
        }
        assert!(of("o.json", "{").is_err());
    }
}
