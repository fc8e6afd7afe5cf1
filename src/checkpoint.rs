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

/// Prefix of the commit metadata that records a batch being inserted (exactly-once).
const INFLIGHT_PREFIX: &str = "sluice:v1:inflight:";
/// The same for a batch whose insert was streamed: its deduplication token could not name
/// the range's end ([`crate::dedup::stream_token`]), so the record carries the token's
/// nonce, and a re-formed copy carries that token, not a held batch's.
const STREAMED_PREFIX: &str = "sluice:v1:streamed:";

/// A range recorded as in flight, and the nonce of its streamed insert's token, if streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflight {
    pub range: OffsetRange,
    pub stream_nonce: Option<u64>,
    /// With `clickhouse.shards`: the shard the insert went to
    /// ([`crate::clickhouse::shards::fingerprint`] of its URL), so that the range is sent
    /// again to the shard that may hold it even if the list changed meanwhile. `None`: the
    /// one server (`clickhouse.url`).
    pub shard: Option<u32>,
}

/// The commit metadata that records `inflight` as in flight: committed together with the
/// offset `range.first` before the insert can be stored, so that whoever resumes the
/// partition knows exactly which messages the interrupted insert held.
pub fn inflight_metadata(inflight: Inflight) -> String {
    let OffsetRange { first, last } = inflight.range;
    let record = match inflight.stream_nonce {
        None => format!("{INFLIGHT_PREFIX}{first}-{last}"),
        Some(nonce) => format!("{STREAMED_PREFIX}{first}-{last}+{nonce}"),
    };
    match inflight.shard {
        None => record,
        Some(shard) => format!("{record}@{shard:08x}"),
    }
}

/// The in-flight range recorded in commit metadata, if the metadata is one of ours.
pub fn parse_inflight(metadata: &str) -> Option<Inflight> {
    let (metadata, shard) = match metadata.split_once('@') {
        None => (metadata, None),
        Some((record, shard)) if shard.len() == 8 => {
            (record, Some(u32::from_str_radix(shard, 16).ok()?))
        }
        Some(_) => return None,
    };
    let (rest, stream_nonce) = match metadata.strip_prefix(INFLIGHT_PREFIX) {
        Some(rest) => (rest, None),
        None => {
            let (rest, nonce) = metadata.strip_prefix(STREAMED_PREFIX)?.split_once('+')?;
            (rest, Some(nonce.parse().ok()?))
        }
    };
    let (first, last) = rest.split_once('-')?;
    let range = OffsetRange {
        first: first.parse().ok()?,
        last: last.parse().ok()?,
    };
    (range.first >= 0 && range.last >= range.first).then_some(Inflight {
        range,
        stream_nonce,
        shard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_metadata_round_trips_and_rejects_foreign_text() {
        let range = OffsetRange { first: 7, last: 42 };
        for stream_nonce in [None, Some(0), Some(u64::MAX)] {
            for shard in [None, Some(0), Some(0xdead_beef)] {
                let r = Inflight {
                    range,
                    stream_nonce,
                    shard,
                };
                assert_eq!(parse_inflight(&inflight_metadata(r)), Some(r));
            }
        }
        // Without shards the record is what it always was.
        assert_eq!(
            inflight_metadata(Inflight {
                range,
                stream_nonce: None,
                shard: None,
            }),
            "sluice:v1:inflight:7-42"
        );
        assert_eq!(
            inflight_metadata(Inflight {
                range,
                stream_nonce: Some(5),
                shard: Some(0x0a),
            }),
            "sluice:v1:streamed:7-42+5@0000000a"
        );
        assert_eq!(parse_inflight("sluice:v1:inflight:7-42@12"), None);
        assert_eq!(parse_inflight("sluice:v1:inflight:7-42@1234567x"), None);
        assert_eq!(parse_inflight(""), None);
        assert_eq!(parse_inflight("someone else's metadata"), None);
        assert_eq!(parse_inflight("sluice:v1:inflight:9-3"), None);
        assert_eq!(parse_inflight("sluice:v1:inflight:-1-3"), None);
        assert_eq!(parse_inflight("sluice:v1:streamed:9-3+1"), None);
        assert_eq!(parse_inflight("sluice:v1:streamed:3-9"), None);
        assert_eq!(parse_inflight("sluice:v1:streamed:3-9+x"), None);
        assert_eq!(parse_inflight("sluice:v1:streamed:"), None);
    }

    #[test]
    fn next_is_one_past_the_last_offset() {
        let mut r = OffsetRange::single(10);
        r.extend(12);
        assert_eq!((r.first, r.last, r.next()), (10, 12, 13));
        assert_eq!(r.to_string(), "10..=12");
        assert_eq!(PartitionId::new("t", 3).to_string(), "t[3]");
    }
}
