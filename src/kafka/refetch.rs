//! Reads given messages of a partition back from Kafka, for the dead-letter topic.
//!
//! Lanes drop the Kafka records of a batch once they are encoded (see batch.rs): a batch
//! holds only rows, and the records of a route that stores no headers never had theirs read
//! (see records.rs). When ClickHouse rejects a row, or a message of such a route cannot be
//! decoded, its original message is read back here by offset, with a short-lived consumer
//! that assigns the partition at explicit offsets (it never joins the group or commits), so
//! the dead letter carries the original key, value and headers byte for byte. This path runs
//! only for bad messages, rare by nature.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::records::{OwnedRecord, RecordChunk};
use crate::checkpoint::{OffsetRange, PartitionId};

/// How long one read-back may take before it counts as failed (and is retried).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Refetcher {
    config: ClientConfig,
}

/// What a read-back found.
#[derive(Debug, Default)]
pub struct Refetched {
    pub found: Vec<OwnedRecord>,
    /// Offsets no longer in the log (deleted by retention or compaction since they were read).
    pub gone: Vec<i64>,
}

impl Refetcher {
    /// `config`: the pipeline's consumer settings (brokers, security). It keeps the group id
    /// (librdkafka's assign needs one, and the same id needs no other ACL) but never
    /// subscribes, joins or commits: it only assigns explicit offsets.
    pub fn new(mut config: ClientConfig) -> Self {
        for k in [
            "group.instance.id",
            "partition.assignment.strategy",
            "statistics.interval.ms",
        ] {
            config.remove(k);
        }
        config.set("enable.auto.commit", "false");
        Refetcher { config }
    }

    /// Reads the messages at `offsets` of `partition`. Blocking: call it from a blocking
    /// thread.
    pub fn fetch(&self, partition: &PartitionId, offsets: &[i64]) -> Result<Refetched, KafkaError> {
        let wanted: BTreeSet<i64> = offsets.iter().copied().collect();
        let (Some(&first), Some(&last)) = (wanted.first(), wanted.last()) else {
            return Ok(Refetched::default());
        };
        let consumer: BaseConsumer = self.config.create()?;
        // Only the log's current range is read: offsets before its start (retention) or past
        // its end are not in the log, and seeking there would trigger auto.offset.reset.
        let (low, high) =
            consumer.fetch_watermarks(&partition.topic, partition.partition, FETCH_TIMEOUT)?;
        let first = first.max(low);
        let stop = last.min(high - 1);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&partition.topic, partition.partition, Offset::Offset(first))?;
        consumer.assign(&tpl)?;
        let mut out = Refetched::default();
        if first > stop {
            out.gone = wanted.into_iter().collect();
            return Ok(out);
        }
        let deadline = Instant::now() + FETCH_TIMEOUT;
        let mut next = first;
        while next <= stop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                ));
            }
            match consumer.poll(left.min(Duration::from_millis(500))) {
                None => {}
                Some(Ok(m)) => {
                    use rdkafka::message::Message;
                    next = m.offset() + 1;
                    if wanted.contains(&m.offset()) {
                        out.found.push(OwnedRecord::from_message(&m));
                    }
                }
                Some(Err(e)) => return Err(e),
            }
        }
        let found: BTreeSet<i64> = out.found.iter().map(|r| r.offset).collect();
        out.gone = wanted.difference(&found).copied().collect();
        Ok(out)
    }

    /// Reads the messages of `range` in offset order and hands them to `out` in chunks of
    /// about `chunk_bytes`, headers included: the batch of a streamed insert that failed is
    /// formed again from them (its rows were sent, not kept). Stops after `range.last`, or
    /// at the log end if the range's tail is gone; messages retention or compaction removed
    /// are simply not there, as they would not be for any reader. Blocking: run it on a
    /// blocking thread. `Ok(false)` when `out` was closed (the caller stopped listening).
    pub fn read_range(
        &self,
        partition: &PartitionId,
        range: OffsetRange,
        chunk_bytes: usize,
        out: &tokio::sync::mpsc::Sender<RecordChunk>,
    ) -> Result<bool, KafkaError> {
        let consumer: BaseConsumer = self.config.create()?;
        let (low, high) =
            consumer.fetch_watermarks(&partition.topic, partition.partition, FETCH_TIMEOUT)?;
        let first = range.first.max(low);
        let stop = range.last.min(high - 1);
        if first > stop {
            return Ok(true);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&partition.topic, partition.partition, Offset::Offset(first))?;
        consumer.assign(&tpl)?;
        let mut chunk = RecordChunk::with_capacity(chunk_bytes, 0);
        // No deadline for the whole range (it can be a large batch): only for progress.
        let mut last_progress = Instant::now();
        let mut next = first;
        while next <= stop {
            if last_progress.elapsed() >= FETCH_TIMEOUT {
                return Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                ));
            }
            match consumer.poll(Duration::from_millis(500)) {
                None => {}
                Some(Ok(m)) => {
                    use rdkafka::message::Message;
                    last_progress = Instant::now();
                    next = m.offset() + 1;
                    if m.offset() > stop {
                        break;
                    }
                    chunk.push_message(&m);
                    if chunk.byte_len() >= chunk_bytes {
                        let full = std::mem::replace(
                            &mut chunk,
                            RecordChunk::with_capacity(chunk_bytes, 0),
                        );
                        if out.blocking_send(full).is_err() {
                            return Ok(false);
                        }
                    }
                }
                Some(Err(e)) => return Err(e),
            }
        }
        if !chunk.is_empty() && out.blocking_send(chunk).is_err() {
            return Ok(false);
        }
        Ok(true)
    }
}
