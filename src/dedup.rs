//! The deduplication token of an insert: one small function, derived from what the insert
//! holds and nothing else.
//!
//! `insert_deduplication_token` replaces ClickHouse's content hash as the identity of an
//! inserted block. Deriving it from (table, topic, partition, offset range) means:
//! - a retry of the same range (a timeout after the server stored it) is dropped by the server;
//! - two different ranges never collide, even when their rows are byte-identical (with the
//!   content hash, a table with a deduplication window would drop the second one).
//!
//! The range is that of the rows in the insert: a split insert (around a rejected row) has
//! sub-ranges of its own, so its parts never shadow each other.

use crate::checkpoint::{OffsetRange, PartitionId};

pub fn token(database: &str, table: &str, partition: &PartitionId, range: OffsetRange) -> String {
    format!(
        "sluice:{database}.{table}:{}:{}:{}-{}",
        partition.topic, partition.partition, range.first, range.last
    )
}

/// The token of a streamed insert ([`crate::clickhouse::InsertStream`]): the URL carrying it
/// is sent before the range's end is known, so it names the first offset and a `nonce`
/// drawn when the stream opens instead of the last offset. The nonce keeps a later range
/// that starts at the same offset (the stream was abandoned unstored, or the offsets were
/// reset to replay the topic) from being taken for this one and dropped; exactly-once
/// records it with the range ([`crate::checkpoint::Inflight`]) so that a re-formed copy
/// carries this same token. The `+` keeps it apart from every held range's token.
pub fn stream_token(
    database: &str,
    table: &str,
    partition: &PartitionId,
    first: i64,
    nonce: u64,
) -> String {
    format!(
        "sluice:{database}.{table}:{}:{}:{first}+{nonce}",
        partition.topic, partition.partition
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names_table_partition_and_range() {
        let p = PartitionId::new("events", 3);
        let t = token(
            "db",
            "t",
            &p,
            OffsetRange {
                first: 10,
                last: 19,
            },
        );
        assert_eq!(t, "sluice:db.t:events:3:10-19");
        assert_eq!(
            stream_token("db", "t", &p, 10, 77),
            "sluice:db.t:events:3:10+77"
        );
        assert_ne!(
            t,
            token(
                "db",
                "t",
                &p,
                OffsetRange {
                    first: 10,
                    last: 20
                }
            )
        );
        assert_ne!(
            t,
            token(
                "db",
                "t",
                &PartitionId::new("events", 4),
                OffsetRange {
                    first: 10,
                    last: 19
                }
            )
        );
    }
}
