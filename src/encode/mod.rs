//! Encoders: turning typed values into the bytes ClickHouse ingests.
//!
//! [`rowbinary`] holds the RowBinary / RowBinaryWithDefaults wire primitives; message
//! decoders (see [`crate::decode`]) drive them to produce whole rows.

pub mod rowbinary;
