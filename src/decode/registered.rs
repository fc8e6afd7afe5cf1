//! Messages whose schema comes from the registry (Avro, Protobuf): the wire format's header,
//! and a schema bound to a route's plan in whichever format the route reads.
//!
//! Both formats start with the magic byte 0 and the schema's id (4 bytes, big-endian). A
//! route binds each id it meets once ([`bind`]); the schema's type must be the route's
//! format, so a Protobuf schema id on an Avro topic is that message's error, not a guess.

use crate::config::Format;
use crate::registry::RawSchema;

use super::avro::{self, AvroScratch};
use super::json::{MessageMeta, RowError, RowPlan};
use super::protobuf::{self, ProtobufScratch};

/// Deeper values are refused: a recursive schema lets a small message nest without end, and
/// the decoders recurse once per level.
pub const MAX_DEPTH: usize = 64;

/// The first byte of every message in the registry's wire format.
pub const MAGIC: u8 = 0;

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
}

/// Compiles `schema` for `format` (avro or protobuf) and binds it to `plan`; the error is
/// why messages with this schema cannot be read.
pub fn bind(format: Format, schema: &RawSchema, plan: &RowPlan) -> Result<Bound, String> {
    let expected = match format {
        Format::Avro => "AVRO",
        Format::Protobuf => "PROTOBUF",
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
            Ok(Bound::Avro(avro::Bound::new(&compiled, plan)))
        }
        _ => {
            let compiled = protobuf::Compiled::new(&schema.text, &schema.references)?;
            Ok(Bound::Protobuf(protobuf::Bound::new(&compiled, plan)))
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
    }
}
