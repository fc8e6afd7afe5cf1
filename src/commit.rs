//! Offset commits for one partition, and the fence that stops them.
//!
//! Invariant: a lane calls [`Committer::commit`] only with the `next` offset of a range that
//! ClickHouse acknowledged (or, in at-most-once mode, before inserting it: that mode is lossy
//! by definition). This type never talks to ClickHouse; it only refuses to commit once the
//! partition has been taken away ([`Fence`]), so a lane that outlived its drain deadline can
//! never move the offset of a partition another consumer now owns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::checkpoint::{inflight_metadata, parse_inflight, Inflight, PartitionId};

/// Set when the partition is revoked or lost; never cleared for that lane.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<AtomicBool>);

impl Fence {
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("partition {0} was revoked (or the consumer closed); commit refused")]
    Fenced(PartitionId),
    #[error("committing offset {offset} of {partition} failed: {source}")]
    Kafka {
        partition: PartitionId,
        offset: i64,
        #[source]
        source: KafkaError,
    },
    #[error("commit task failed: {0}")]
    Join(String),
}

/// Commits and reads offsets of partitions through the group consumer.
pub trait OffsetSink: Send + Sync + 'static {
    fn commit_sync(&self, tpl: &TopicPartitionList) -> Result<(), KafkaError>;
    fn committed(&self, tpl: TopicPartitionList) -> Result<TopicPartitionList, KafkaError>;
}

impl<C> OffsetSink for rdkafka::consumer::BaseConsumer<C>
where
    C: rdkafka::consumer::ConsumerContext + 'static,
{
    fn commit_sync(&self, tpl: &TopicPartitionList) -> Result<(), KafkaError> {
        self.commit(tpl, CommitMode::Sync)
    }
    fn committed(&self, tpl: TopicPartitionList) -> Result<TopicPartitionList, KafkaError> {
        self.committed_offsets(tpl, Duration::from_secs(30))
    }
}

/// What the group has stored for a partition: the next offset to read and, when a batch was
/// being inserted (exactly-once), its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub committed: Option<i64>,
    pub inflight: Option<Inflight>,
}

#[derive(Clone)]
pub struct Committer {
    /// Weak: a lane that outlives the consumer (fenced straggler) must not keep it open.
    sink: Weak<dyn OffsetSink>,
    partition: PartitionId,
    fence: Fence,
}

impl Committer {
    pub fn new(sink: Weak<dyn OffsetSink>, partition: PartitionId, fence: Fence) -> Self {
        Committer {
            sink,
            partition,
            fence,
        }
    }

    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    pub fn partition(&self) -> &PartitionId {
        &self.partition
    }

    /// Commits `next_offset` (the next message to read) synchronously, off the async threads.
    /// The commit metadata is cleared: no batch is in flight.
    pub async fn commit(&self, next_offset: i64) -> Result<(), CommitError> {
        self.commit_with_metadata(next_offset, String::new()).await
    }

    /// Records `range` as being inserted: commits its first offset (nothing new is marked as
    /// read) with the range in the metadata. Exactly-once calls this before every insert.
    pub async fn record_inflight(&self, inflight: Inflight) -> Result<(), CommitError> {
        self.commit_with_metadata(inflight.range.first, inflight_metadata(inflight))
            .await
    }

    async fn commit_with_metadata(
        &self,
        next_offset: i64,
        metadata: String,
    ) -> Result<(), CommitError> {
        if self.fence.is_raised() {
            return Err(CommitError::Fenced(self.partition.clone()));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.partition.topic,
            self.partition.partition,
            Offset::Offset(next_offset),
        )
        .map_err(|source| CommitError::Kafka {
            partition: self.partition.clone(),
            offset: next_offset,
            source,
        })?;
        if let Some(mut e) = tpl.find_partition(&self.partition.topic, self.partition.partition) {
            e.set_metadata(metadata);
        }
        let sink = self.sink.clone();
        let fence = self.fence.clone();
        let partition = self.partition.clone();
        tokio::task::spawn_blocking(move || {
            // Checked again right before the call: the revoke may have happened while this
            // task waited for a blocking thread.
            let Some(sink) = sink.upgrade().filter(|_| !fence.is_raised()) else {
                return Err(CommitError::Fenced(partition));
            };
            sink.commit_sync(&tpl).map_err(|source| CommitError::Kafka {
                partition,
                offset: next_offset,
                source,
            })
        })
        .await
        .map_err(|e| CommitError::Join(e.to_string()))?
    }

    /// Reads the group's committed offset and in-flight record for this partition.
    pub async fn checkpoint(&self) -> Result<Checkpoint, CommitError> {
        let Some(sink) = self.sink.upgrade().filter(|_| !self.fence.is_raised()) else {
            return Err(CommitError::Fenced(self.partition.clone()));
        };
        let partition = self.partition.clone();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&partition.topic, partition.partition);
            let got = sink.committed(tpl).map_err(|source| CommitError::Kafka {
                partition: partition.clone(),
                offset: -1,
                source,
            })?;
            let Some(e) = got.find_partition(&partition.topic, partition.partition) else {
                return Ok(Checkpoint::default());
            };
            let committed = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            let inflight =
                parse_inflight(e.metadata()).filter(|r| committed == Some(r.range.first));
            Ok(Checkpoint {
                committed,
                inflight,
            })
        })
        .await
        .map_err(|e| CommitError::Join(e.to_string()))?
    }

    /// Commits with a few quick retries: a commit can fail transiently while the coordinator
    /// moves. A failed commit never loses data (the range is stored); it can only make the
    /// next owner insert the range again, which the delivery mode accounts for.
    pub async fn commit_with_retry(&self, next_offset: i64) -> Result<(), CommitError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            match self.commit(next_offset).await {
                Ok(()) => return Ok(()),
                Err(e @ CommitError::Fenced(_)) => return Err(e),
                Err(e) if attempt >= 4 => return Err(e),
                Err(e) => {
                    tracing::warn!(partition = %self.partition, offset = next_offset, error = %e, "commit failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }
}
