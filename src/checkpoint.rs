//! Partition identity and offset ranges. Pure data.
//!
//! Kafka speaks of the *next* offset to read (what a commit stores); a batch speaks of the
//! offsets it holds, inclusive. [`OffsetRange`] keeps both straight: `first..=last` are the
//! offsets of the messages in the batch and [`OffsetRange::next`] is what gets committed.

use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl PartitionId {
    pub fn new(topic: &str, partition: i32) -> Self {
        PartitionId {
            topic: Arc::from(topic),
            partition,
        }
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// The offsets of the messages one batch covers, both ends inclusive. Offsets inside may be
/// missing (compaction, transaction markers): the range still covers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    pub first: i64,
    pub last: i64,
}

impl OffsetRange {
    pub fn single(offset: i64) -> Self {
        OffsetRange {
            first: offset,
            last: offset,
        }
    }

    /// Extends the range by a later message.
    pub fn extend(&mut self, offset: i64) {
        debug_assert!(offset > self.last, "offsets of a partition only grow");
        self.last = offset;
    }

    /// The offset to commit once this range is stored: Kafka's committed offset is the next
    /// message to read, hence the +1 after the inclusive last offset.
    pub fn next(&self) -> i64 {
        self.last + 1
    }
}

impl fmt::Display for OffsetRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_one_past_the_last_offset() {
        let mut r = OffsetRange::single(10);
        r.extend(12);
        assert_eq!((r.first, r.last, r.next()), (10, 12, 13));
        assert_eq!(r.to_string(), "10..=12");
        assert_eq!(PartitionId::new("t", 3).to_string(), "t[3]");
    }
}
