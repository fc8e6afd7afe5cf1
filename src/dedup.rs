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
