//! The dead-letter producer: bad messages, byte for byte, with the reason in headers.
//!
//! acks=all and idempotence: a dead letter is acknowledged by every in-sync replica before the
//! offset of its source message may be committed. Headers added to the original ones:
//! `sluice.error` (why), `sluice.source.topic`, `sluice.source.partition`,
//! `sluice.source.offset` and, when the message had one, `sluice.source.timestamp` (ms).

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::checkpoint::PartitionId;
use crate::kafka::records::OwnedRecord;

pub const HEADER_ERROR: &str = "sluice.error";
pub const HEADER_TOPIC: &str = "sluice.source.topic";
pub const HEADER_PARTITION: &str = "sluice.source.partition";
pub const HEADER_OFFSET: &str = "sluice.source.offset";
pub const HEADER_TIMESTAMP: &str = "sluice.source.timestamp";

#[derive(Clone)]
pub struct DeadLetterProducer {
    producer: FutureProducer,
}

impl DeadLetterProducer {
    pub fn new(config: &rdkafka::ClientConfig) -> Result<Self, KafkaError> {
        Ok(DeadLetterProducer {
            producer: config.create()?,
        })
    }

    /// Sends one dead letter and waits for its acknowledgement.
    pub async fn send(
        &self,
        dlq_topic: &str,
        source: &PartitionId,
        record: &OwnedRecord,
        reason: &str,
    ) -> Result<(), KafkaError> {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name.as_str(),
                value: value.as_deref(),
            });
        }
        let partition = source.partition.to_string();
        let offset = record.offset.to_string();
        let timestamp = record.timestamp_ms.map(|t| t.to_string());
        headers = headers
            .insert(Header {
                key: HEADER_ERROR,
                value: Some(reason.as_bytes()),
            })
            .insert(Header {
                key: HEADER_TOPIC,
                value: Some(source.topic.as_bytes()),
            })
            .insert(Header {
                key: HEADER_PARTITION,
                value: Some(partition.as_bytes()),
            })
            .insert(Header {
                key: HEADER_OFFSET,
                value: Some(offset.as_bytes()),
            });
        if let Some(ts) = &timestamp {
            headers = headers.insert(Header {
                key: HEADER_TIMESTAMP,
                value: Some(ts.as_bytes()),
            });
        }
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dlq_topic).headers(headers);
        if let Some(k) = &record.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(p) = &record.payload {
            rec = rec.payload(p.as_slice());
        }
        self.producer
            .send(rec, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}
