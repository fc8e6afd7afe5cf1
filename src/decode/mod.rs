//! Message decoders: turning Kafka message payloads into RowBinary rows.
//!
//! [`json`] converts one JSON object per message straight into one RowBinary (or
//! RowBinaryWithDefaults) row, without building a DOM, with exact type conversions; its
//! [`json::RowPlan`] also writes the rows of raw messages and, with [`text`] splitting the
//! lines, of CSV and TSV messages, and with [`avro`] walking the datums, of Avro messages,
//! so that every format follows the same type rules.

pub mod avro;
mod cursor;
pub mod json;
pub mod json_schema;
pub mod jsontext;
pub mod protobuf;
mod protowire;
pub mod registered;
pub mod text;
pub mod time_format;
