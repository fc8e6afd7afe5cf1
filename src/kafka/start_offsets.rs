//! Where each newly assigned partition starts fetching, decided in the rebalance callback.
//!
//! Why: librdkafka, given a partition without an offset, looks the group's committed offset up
//! itself, and where there is none it resets to `auto.offset.reset`, but only after a 100 ms
//! back-off (librdkafka 2.12 calls `rd_kafka_offset_reset` with `_NO_OFFSET` as the error, and
//! an error delays the offset query). Every new group, and every partition never committed,
//! waited that out before its first fetch: a tenth of a 1M-message narrow backlog's run (a
//! new group's ListOffsets went out 94 ms after the OffsetFetch answer, under strace). Looking
//! the committed offsets up in the callback and assigning them, or the reset position itself
//! (a logical offset, which librdkafka resolves at once), starts those partitions right away.
//!
//! Guarantee: the start is the one librdkafka would have chosen: the committed offset where
//! there is one, `auto.offset.reset` where there is none. A partition whose lookup failed, or
//! whose committed offset is anything else, keeps no offset, so librdkafka looks it up as
//! before (and retries): a failure here costs only the back-off, never a different start.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

/// How long the callback waits for the group coordinator's answer before leaving the
/// partitions to librdkafka. The coordinator has just answered SyncGroup, so it is normally a
/// round trip; the poll thread is blocked meanwhile, so it is kept short.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The position `auto.offset.reset` names, for the values librdkafka accepts; `None` for
/// anything else (`error`), which stays librdkafka's to handle.
pub fn reset_position(auto_offset_reset: Option<&str>) -> Option<Offset> {
    match auto_offset_reset? {
        "earliest" | "smallest" | "beginning" => Some(Offset::Beginning),
        "latest" | "largest" | "end" => Some(Offset::End),
        _ => None,
    }
}

/// Gives the partitions of `assigned` that have no offset yet their start: the committed one
/// from `committed`, or `reset` where `committed` holds none. Returns how many got one.
pub fn resolve(
    assigned: &mut TopicPartitionList,
    committed: &TopicPartitionList,
    reset: Option<Offset>,
) -> usize {
    let mut set = 0;
    // An element writes through to the list it came from.
    for mut el in assigned.elements() {
        if el.offset() != Offset::Invalid {
            continue;
        }
        let Some(c) = committed.find_partition(el.topic(), el.partition()) else {
            continue;
        };
        if c.error().is_err() {
            continue;
        }
        let start = match c.offset() {
            Offset::Offset(n) if n >= 0 => Offset::Offset(n),
            Offset::Invalid => match reset {
                Some(r) => r,
                None => continue,
            },
            _ => continue,
        };
        if el.set_offset(start).is_ok() {
            set += 1;
        }
    }
    set
}

/// Looks up the committed offsets of `assigned` and [`resolve`]s them; on a failed lookup the
/// list is left as it was.
pub fn assign_starts<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    assigned: &mut TopicPartitionList,
    reset: Option<Offset>,
) {
    match consumer.committed_offsets(assigned.clone(), LOOKUP_TIMEOUT) {
        Ok(committed) => {
            let set = resolve(assigned, &committed, reset);
            tracing::debug!(
                partitions = assigned.count(),
                set,
                "start offsets assigned from the committed ones"
            );
        }
        Err(e) => tracing::debug!(error = %e,
            "committed offsets not read in the rebalance callback; librdkafka looks them up"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(parts: &[(i32, Offset)]) -> TopicPartitionList {
        let mut l = TopicPartitionList::new();
        for (p, o) in parts {
            l.add_partition_offset("t", *p, *o).unwrap();
        }
        l
    }

    fn offsets(l: &TopicPartitionList) -> Vec<(i32, Offset)> {
        l.elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect()
    }

    #[test]
    fn committed_offsets_win_and_uncommitted_partitions_start_at_the_reset_position() {
        let mut assigned = list(&[(0, Offset::Invalid), (1, Offset::Invalid)]);
        let committed = list(&[(0, Offset::Offset(42)), (1, Offset::Invalid)]);
        assert_eq!(resolve(&mut assigned, &committed, Some(Offset::End)), 2);
        assert_eq!(
            offsets(&assigned),
            vec![(0, Offset::Offset(42)), (1, Offset::End)]
        );
    }

    #[test]
    fn anything_unclear_is_left_to_librdkafka() {
        // No reset position known, a partition missing from the answer, a logical committed
        // offset, and a partition that already has a start: none is touched.
        let mut assigned = list(&[
            (0, Offset::Invalid),
            (1, Offset::Invalid),
            (2, Offset::Invalid),
            (3, Offset::Offset(7)),
        ]);
        let committed = list(&[
            (0, Offset::Invalid),
            (2, Offset::Stored),
            (3, Offset::Offset(9)),
        ]);
        assert_eq!(resolve(&mut assigned, &committed, None), 0);
        assert_eq!(
            offsets(&assigned),
            vec![
                (0, Offset::Invalid),
                (1, Offset::Invalid),
                (2, Offset::Invalid),
                (3, Offset::Offset(7)),
            ]
        );
    }

    #[test]
    fn reset_names_map_to_librdkafkas_positions() {
        assert_eq!(reset_position(Some("earliest")), Some(Offset::Beginning));
        assert_eq!(reset_position(Some("smallest")), Some(Offset::Beginning));
        assert_eq!(reset_position(Some("latest")), Some(Offset::End));
        assert_eq!(reset_position(Some("error")), None);
        assert_eq!(reset_position(None), None);
    }
}
