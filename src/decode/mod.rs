//! Message decoders: turning Kafka message payloads into RowBinary rows.
//!
//! [`json`] converts one JSON object per message straight into one RowBinary (or
//! RowBinaryWithDefaults) row, without building a DOM, with exact type conversions.

pub mod json;
