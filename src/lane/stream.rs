//! Streamed inserts: a batch whose INSERT opens as it fills and whose rows leave as they are
//! encoded, ended by the rows that complete the range only after the range is recorded
//! (exactly-once), and read back from Kafka as a held batch when the stream fails.

use super::*;

/// A streamed insert's rows go out in chunks of at least this much (about one chunk of
/// records' worth of rows, see `add_chunk`).
pub(super) const STREAM_CHUNK: usize = 1 << 20;

/// The longest a streamed batch stays open: ClickHouse drops an HTTP request whose body
/// sends nothing for `http_receive_timeout` (30 s by default), and a batch whose rows stop
/// coming (a large `max_age`, a stalled partition) must end its INSERT well before that.
pub(super) const STREAM_AGE_CAP: Duration = Duration::from_secs(20);

/// An insert being streamed while its batch fills ([`crate::clickhouse::InsertStream`]).
pub(super) struct OpenStream {
    insert: InsertStream,
    /// Part of its deduplication token ([`dedup::stream_token`]).
    nonce: u64,
    /// The request ended before its body did (ClickHouse answered with an error): the rest
    /// of the rows are dropped as they come and the batch is read back from Kafka at its end.
    failed: bool,
}

/// A streamed batch's age limit: `limit`, capped at [`STREAM_AGE_CAP`] and at half the
/// request timeout, so that the INSERT ends before either ClickHouse's receive timeout or
/// sluice's own request timeout can cut it off.
pub(super) fn stream_age_limit(limit: Duration, request_timeout: Duration) -> Duration {
    limit.min(STREAM_AGE_CAP).min(request_timeout / 2)
}

impl Lane {
    /// Streaming needs a server that allows it (see `Client::streaming`) and a mode that does
    /// not commit before inserting; a range being re-formed is held, up to and including the
    /// moment its last message arrives. A guarded stream also needs every batch of the route
    /// to fit one of the server's insert blocks, and a batch not packed yet.
    pub(super) fn can_stream(&self) -> bool {
        let server_allows = match self.client.streaming() {
            Streaming::Off => false,
            Streaming::Safe => true,
            Streaming::Guarded { max_rows, .. } => {
                self.rt.route.batch.max_rows as u64 <= max_rows && !self.batch.is_packed()
            }
        };
        server_allows && self.rt.route.delivery != Delivery::AtMostOnce && self.reforming.is_none()
    }

    pub(super) fn stream_token(&self, first: i64, nonce: u64) -> String {
        dedup::stream_token(
            &self.rt.route.database,
            &self.rt.route.table,
            &self.id,
            first,
            nonce,
        )
    }

    /// Starts the open batch's insert; its rows so far go with the next [`Lane::pump_stream`].
    pub(super) fn open_stream(&mut self) {
        let Some(first) = self.batch.first_offset() else {
            return;
        };
        // Unique per stream of this partition: a stream opens at most once per batch.
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let req = self.insert_request(
            bytes::Bytes::new().into(),
            Some(self.stream_token(first, nonce)),
        );
        // A packed batch (a compressed wire) streams its LZ4 blocks; a guarded stream its
        // blocks that end inside rows.
        let guard = match self.client.streaming() {
            Streaming::Guarded { blocks, .. } => Some(blocks),
            Streaming::Off | Streaming::Safe => None,
        };
        let packed = guard.is_some() || self.client.packing() == Packing::Always;
        self.batch.start_streaming(guard);
        self.stream = Some(OpenStream {
            insert: self.client.open_insert_stream(req, packed),
            nonce,
            failed: false,
        });
        tracing::debug!(partition = %self.id, first, "streaming the batch's insert");
    }

    /// Sends the rows encoded since the last call once there are `min` bytes of them.
    pub(super) async fn pump_stream(&mut self, min: usize) -> Result<(), LaneFailure> {
        let rows = self
            .batch
            .take_streamed(min, 2 * STREAM_CHUNK)
            .map_err(|e| self.unusable_batch(e))?;
        let (Some(open), Some(rows)) = (self.stream.as_mut(), rows) else {
            return Ok(());
        };
        if !open.failed && !open.insert.send(rows).await {
            open.failed = true;
            tracing::debug!(partition = %self.id, "streamed insert ended early; the batch will be read back from Kafka");
        }
        crate::failpoint::hit("stream_mid_body");
        Ok(())
    }

    /// Ends a streamed insert: the in-flight record (exactly-once), the last rows, then the
    /// body's last chunk. The last rows leave after the record because a guarded stream's
    /// body can be stored as soon as they arrive (`clickhouse::stream`). Should the insert
    /// fail, the range is read back from Kafka and stored as a held batch with the same token
    /// (ClickHouse drops it if the stream was stored after all), splitting around bad rows as
    /// usual.
    pub(super) async fn finish_stream(
        &mut self,
        open: OpenStream,
        sealed: &SealedBatch,
    ) -> Result<Stored, LaneFailure> {
        let OpenStream {
            mut insert,
            nonce,
            mut failed,
        } = open;
        let inflight = Inflight {
            range: sealed.range,
            stream_nonce: Some(nonce),
            shard: self.shard,
        };
        if self.rt.route.delivery == Delivery::ExactlyOnce {
            // Recorded before the body ends, while nothing of it can be stored yet.
            if let Stored::Fenced = self.record_inflight(inflight).await {
                return Ok(Stored::Fenced);
            }
        }
        crate::failpoint::hit("stream_before_end");
        if self.committer.fence().is_raised() {
            // Revoked meanwhile (at-least-once records nothing to be refused): the new owner
            // stores the range; dropping the stream cuts its body off unstored.
            return Ok(Stored::Fenced);
        }
        if let Some(tail) = sealed.stream_tail().filter(|t| !t.is_empty()) {
            failed = failed || !insert.send(tail).await;
        }
        let result = insert.finish().await;
        let err = match result {
            Ok(_) if !failed => {
                let m = &self.rt.metrics;
                RouteMetrics::add(&m.rows_inserted, sealed.rows() as u64);
                RouteMetrics::add(&m.bytes_inserted, sealed.raw_len() as u64);
                RouteMetrics::add(&m.inserts, 1);
                RouteMetrics::add(&m.streamed_inserts, 1);
                return self.deliver_dead(sealed, Vec::new()).await;
            }
            Ok(_) => "the body could not be sent in full".to_string(),
            // Reading the range back would meet the same refusal.
            Err(e @ InsertError::SchemaChanged { .. }) => return Err(self.table_changed(&e)),
            Err(e) => e.to_string(),
        };
        RouteMetrics::add(&self.rt.metrics.stream_fallbacks, 1);
        tracing::warn!(partition = %self.id, range = %sealed.range, error = %err,
            "streamed insert failed; reading the range back from Kafka to send it as a batch");
        let read = match self.reform(sealed.range).await? {
            Reformed::Batch(again) => again,
            Reformed::Empty => {
                tracing::error!(partition = %self.id, range = %sealed.range, messages = sealed.messages(),
                    "a failed streamed insert's messages are no longer in Kafka (retention removed them); they cannot be stored");
                return Ok(Stored::Yes);
            }
            Reformed::Fenced => return Ok(Stored::Fenced),
        };
        let (had, got) = (sealed.messages(), read.messages());
        if got < had {
            tracing::error!(partition = %self.id, range = %sealed.range, missing = had - got,
                "some of a failed streamed insert's messages are no longer in Kafka (retention or compaction removed them); storing the rest");
        }
        let token = self.stream_token(sealed.range.first, nonce);
        self.store(&read, Some(token)).await
    }
}
