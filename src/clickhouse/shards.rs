//! Shard-aware writes: which shard of a cluster a partition's rows go to.
//!
//! With `clickhouse.shards`, each Kafka partition's rows go to one shard's table (the
//! route's table is the shard-local one, as a Distributed table's `local` tables are), all
//! of them, always: a partition's batch is the unit sluice inserts and commits exactly once,
//! and the shard that stored a range is the one whose deduplication recognises that range
//! when it is sent again after a crash. The choice is a pure function of the topic, the
//! partition and the number of shards ([`shard_of`]), the same in every process and every
//! version, so whichever instance resumes a partition sends its in-flight range to the shard
//! that may hold it. The partitions of each topic are dealt round-robin over the shards,
//! starting at a shard the topic's name picks, so that several topics of few partitions
//! do not all start at the first shard.
//!
//! Changing the list (adding, removing or reordering shards) moves partitions to other
//! shards. A range in flight at a crash names its shard in its record ([`fingerprint`]), so
//! it is sent again to that shard wherever the list now puts the partition, and only then
//! does the partition move; a shard removed from the list while it may hold such a range
//! stops the partition's lane (nothing committed) until it is listed again.

/// What an in-flight record names a shard by: FNV-1a (32 bits) of its URL as the client
/// shows it ([`super::Client::url`]), short enough for Kafka's commit metadata and the same
/// in every process.
pub fn fingerprint(url: &str) -> u32 {
    url.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The shard (index into `clickhouse.shards`) of `partition` of `topic`, among `shards`.
pub fn shard_of(topic: &str, partition: i32, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let n = shards as u64;
    // FNV-1a: fixed and documented, unlike the standard library's seeded hashers.
    let start = topic.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    }) % n;
    ((start + u64::from(partition.unsigned_abs())) % n) as usize
}

#[cfg(test)]
mod tests {
    use super::shard_of;

    /// The mapping is fixed (a change would send in-flight ranges elsewhere after an
    /// upgrade), spreads a topic's partitions evenly, and starts topics at different shards.
    #[test]
    fn partitions_are_dealt_round_robin_from_a_start_the_topic_picks() {
        let of = |topic: &str, shards: usize| -> Vec<usize> {
            (0..8).map(|p| shard_of(topic, p, shards)).collect()
        };
        // Pinned: these values are what every sluice version computes.
        assert_eq!(of("events", 2), [0, 1, 0, 1, 0, 1, 0, 1]);
        assert_eq!(of("orders", 3), [1, 2, 0, 1, 2, 0, 1, 2]);
        assert_eq!(shard_of("events", 5, 1), 0);
        for shards in 2..6 {
            let mut counts = vec![0; shards];
            for p in 0..(shards as i32 * 10) {
                counts[shard_of("t", p, shards)] += 1;
            }
            assert!(counts.iter().all(|c| *c == 10), "{shards}: {counts:?}");
        }
        let starts: std::collections::HashSet<usize> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|t| shard_of(t, 0, 3))
            .collect();
        assert!(starts.len() > 1, "every topic starting at one shard");
    }
}
