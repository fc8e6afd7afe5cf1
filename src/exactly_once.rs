//! Whether exactly-once can hold for a target table, decided before anything is consumed.
//!
//! # The design (no state store beyond Kafka's offsets and ClickHouse's own deduplication)
//! 1. One INSERT carries one partition's contiguous offset range, with a deduplication token
//!    derived from (table, topic, partition, range) only ([`crate::dedup`]).
//! 2. Before the insert, the lane commits the range's first offset with the range in the
//!    commit metadata ([`crate::checkpoint::inflight_metadata`]): the in-flight record.
//! 3. After ClickHouse acknowledged, the lane commits `last + 1` with empty metadata.
//! 4. Whoever resumes the partition (the same process after kill -9, or a new owner after a
//!    rebalance) reads the committed offset and metadata. If a range was in flight it re-forms
//!    exactly that batch (same messages -> same rows -> same token, bytes encoded the same
//!    way) before anything else. If the first insert had reached ClickHouse, the server drops
//!    the repeat as a duplicate; if not, it stores it now. Either way: once.
//!    A streamed insert (`lane/stream.rs`) names its range by the first offset and a nonce, since
//!    its URL goes out before the range's end is known; its record (step 2) carries the nonce
//!    and is committed once the range is closed, before the rows that end it and the body's
//!    last chunk are sent, and ClickHouse stores nothing of a body that never got its end (on
//!    18.16, which stores a body cut off where a row ends, because every block of a guarded
//!    stream but the last ends inside a row: `clickhouse::stream`). A recorded streamed range
//!    is re-formed as a held batch with the recorded token.
//! 5. A revoked lane is fenced: it can no longer commit, so it can neither record a new range
//!    nor move the offset; anything it still sends is a range it recorded, which the new owner
//!    re-forms with the same token.
//!
//! # What the table must provide (checked here)
//! ClickHouse deduplicates only MergeTree-family inserts, and only within a window of recent
//! blocks per table:
//! - Replicated*/Shared* MergeTree: `replicated_deduplication_window` (server default 100 or
//!   1000) blocks, plus `replicated_deduplication_window_seconds`.
//! - plain MergeTree: only with `non_replicated_deduplication_window > 0` (ClickHouse >= 21.x).
//! - anything else (Log, Memory, Distributed, Buffer, Null, ...): no deduplication at all.
//!
//! The window must be larger than the number of blocks that can reach the table between an
//! insert and its repetition after a crash: every lane of the table may insert a few batches
//! meanwhile, so sluice asks for at least [`required_window`] blocks. On servers without
//! `insert_deduplication_token` (18.16) the identity of a block is the hash of its bytes:
//! re-formed batches are byte-identical, so Replicated tables still deduplicate them.

use crate::clickhouse::client::TableInfo;
use crate::clickhouse::ServerInfo;

/// Server default of `replicated_deduplication_window` on versions that do not report it.
const OLD_REPLICATED_WINDOW_DEFAULT: u64 = 100;

/// Blocks the deduplication window must hold for `partitions` lanes feeding the table: each
/// lane can land a few inserts (its recovered batch, bisection parts of a bad batch, a new
/// batch) before another lane repeats its interrupted one.
pub fn required_window(partitions: usize) -> u64 {
    (8 * partitions as u64).max(64)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exactly-once cannot hold for {table}: {reason}. Fix: {fix}; or set delivery = \"at-least-once\" for this route")]
pub struct Refusal {
    pub table: String,
    pub reason: String,
    pub fix: String,
}

/// What holds when exactly-once is possible: notes for the log and `sluice check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub window: u64,
    pub notes: Vec<String>,
}

/// Decides whether exactly-once can hold for `table` fed by `lanes` partitions.
pub fn check_table(
    table: &TableInfo,
    server: &ServerInfo,
    lanes: usize,
) -> Result<Accepted, Refusal> {
    let name = format!("{}.{}", table.database, table.name);
    let need = required_window(lanes);
    let refuse = |reason: String, fix: String| Refusal {
        table: name.clone(),
        reason,
        fix,
    };
    if !table.is_merge_tree() {
        let fix = if table.engine == "Distributed" {
            "point the route at the local (Replicated)MergeTree table behind the Distributed one"
                .to_string()
        } else {
            "use a MergeTree-family table (ReplicatedMergeTree, or MergeTree with non_replicated_deduplication_window)".to_string()
        };
        return Err(refuse(
            format!("engine {} does not deduplicate inserts", table.engine),
            fix,
        ));
    }
    let mut notes = Vec::new();
    let window = if table.is_replicated() {
        let window = table
            .replicated_deduplication_window
            .unwrap_or(OLD_REPLICATED_WINDOW_DEFAULT);
        if window < need {
            return Err(refuse(
                format!(
                    "replicated_deduplication_window = {window} blocks is below the {need} that {lanes} partition(s) need"
                ),
                format!("ALTER TABLE {name} MODIFY SETTING replicated_deduplication_window = {}", need.max(1000)),
            ));
        }
        if !server.supports_dedup_token {
            notes.push(format!(
                "ClickHouse {} has no insert_deduplication_token: repeated batches are recognised by their content hash (sluice re-sends them byte for byte)",
                server.version
            ));
        }
        window
    } else {
        let Some(window) = table.non_replicated_deduplication_window else {
            return Err(refuse(
                format!(
                    "ClickHouse {} cannot deduplicate inserts into a non-replicated {}",
                    server.version, table.engine
                ),
                "use a ReplicatedMergeTree table (or ClickHouse >= 22.2 with non_replicated_deduplication_window)".to_string(),
            ));
        };
        if !server.supports_dedup_token {
            return Err(refuse(
                format!(
                    "ClickHouse {} has no insert_deduplication_token for non-replicated tables",
                    server.version
                ),
                "use a ReplicatedMergeTree table or ClickHouse >= 22.2".to_string(),
            ));
        }
        if window < need {
            return Err(refuse(
                format!(
                    "non_replicated_deduplication_window = {window} blocks is below the {need} that {lanes} partition(s) need{}",
                    if window == 0 { " (0 switches deduplication off)" } else { "" }
                ),
                format!(
                    "ALTER TABLE {name} MODIFY SETTING non_replicated_deduplication_window = {}",
                    need.max(1000)
                ),
            ));
        }
        window
    };
    if !table.materialized_views.is_empty() {
        let views: Vec<String> = table
            .materialized_views
            .iter()
            .map(|v| v.to_string())
            .collect();
        notes.push(format!(
            "materialized views read from this table ({}): inserts carry deduplicate_blocks_in_dependent_materialized_views=1 so a repeated block does not reach them twice",
            views.join(", ")
        ));
    }
    Ok(Accepted { window, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clickhouse::client::QualifiedName;
    use crate::clickhouse::Version;

    fn table(engine: &str, nr: Option<u64>, r: Option<u64>) -> TableInfo {
        TableInfo {
            database: "db".into(),
            name: "t".into(),
            engine: engine.into(),
            engine_full: engine.into(),
            create_table_query: String::new(),
            non_replicated_deduplication_window: nr,
            replicated_deduplication_window: r,
            materialized_views: Vec::new(),
        }
    }

    fn modern() -> ServerInfo {
        ServerInfo::from_version(Version::new(26, 9, 2), "26.9.2.1")
    }

    fn old() -> ServerInfo {
        ServerInfo::from_version(Version::new(18, 16, 1), "18.16.1")
    }

    #[test]
    fn merge_tree_needs_a_window_large_enough() {
        let e = check_table(&table("MergeTree", Some(0), Some(1000)), &modern(), 4).unwrap_err();
        assert!(
            e.to_string()
                .contains("non_replicated_deduplication_window = 0"),
            "{e}"
        );
        assert!(
            e.to_string().contains(
                "ALTER TABLE db.t MODIFY SETTING non_replicated_deduplication_window = 1000"
            ),
            "{e}"
        );
        let e = check_table(&table("MergeTree", Some(10), None), &modern(), 4).unwrap_err();
        assert!(e.reason.contains("below the 64"), "{e}");
        let ok = check_table(&table("MergeTree", Some(1000), None), &modern(), 4).unwrap();
        assert_eq!(ok.window, 1000);
        let e = check_table(&table("MergeTree", Some(1000), None), &modern(), 200).unwrap_err();
        assert!(e.reason.contains("below the 1600"), "{e}");
    }

    #[test]
    fn other_engines_are_refused_with_the_fix_named() {
        for engine in ["Log", "Memory", "Null", "Buffer"] {
            let e = check_table(&table(engine, None, None), &modern(), 1).unwrap_err();
            assert!(e.reason.contains("does not deduplicate"), "{e}");
            assert!(e.to_string().contains("at-least-once"), "{e}");
        }
        let e = check_table(&table("Distributed", None, None), &modern(), 1).unwrap_err();
        assert!(e.fix.contains("local"), "{e}");
    }

    #[test]
    fn old_servers_need_replicated_tables() {
        let e = check_table(&table("MergeTree", None, None), &old(), 2).unwrap_err();
        assert!(e.fix.contains("ReplicatedMergeTree"), "{e}");
        let ok = check_table(&table("ReplicatedMergeTree", None, None), &old(), 2).unwrap();
        assert_eq!(ok.window, 100);
        assert!(ok.notes[0].contains("content hash"));
        let e =
            check_table(&table("ReplicatedMergeTree", None, Some(10)), &modern(), 2).unwrap_err();
        assert!(e.fix.contains("replicated_deduplication_window"), "{e}");
    }

    #[test]
    fn materialized_views_are_noted() {
        let mut t = table("MergeTree", Some(1000), None);
        t.materialized_views.push(QualifiedName {
            database: "db".into(),
            name: "mv".into(),
        });
        let ok = check_table(&t, &modern(), 1).unwrap();
        assert!(ok.notes.iter().any(|n| n.contains("db.mv")));
    }
}
