//! One lane per assigned partition: decode -> batch -> insert -> dead-letter -> commit.
//!
//! Guarantee (at-least-once): the offset committed for a partition is always the `next` of a
//! range in which every message is either stored in ClickHouse (acknowledged INSERT) or
//! acknowledged by the dead-letter topic or table (or, when the route says so, counted as
//! dropped).
//! Nothing is committed past a message that is in neither place, whatever fails: retries are
//! unbounded unless `max_insert_retries` is set, in which case the lane fails the whole run
//! instead of skipping data.
//!
//! A bad row never takes good rows with it: when ClickHouse rejects an insert as bad data the
//! batch is split in halves and each half inserted on its own, down to the single rows that
//! are rejected, which go to the dead-letter path. Each split sends row-aligned slices of the
//! bytes encoded once; nothing is re-encoded.
//!
//! A batch the memory budget would cut short is streamed where the server allows it: its
//! INSERT opens then and its rows leave as they are encoded (`clickhouse::stream`). ClickHouse
//! stores such an insert only once its body ends (on 18.16 by the guarded framing there),
//! and the rows that end it go only after the range is recorded (exactly-once); any failure of the stream is answered by reading the range back
//! from Kafka and storing it as a held batch with the stream's token, so the guarantee above
//! is the same for both.
//!
//! In at-most-once mode the range is committed before it is inserted: a crash in between
//! loses it, by definition of that mode.
//!
//! Here: the lane's loop, its batches, inserts, splits and commits; streamed inserts in
//! `stream`, the dead-letter path in `dead_letters`.

use rustc_hash::FxHashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::batch::{Batch, SealedBatch};
use crate::budget::{MemoryBudget, Share};
use crate::checkpoint::{Inflight, OffsetRange, PartitionId};
use crate::clickhouse::add_column::{add_column, Added};
use crate::clickhouse::client::InsertBody;
use crate::clickhouse::compress::Packing;
use crate::clickhouse::retry::Backoff;
use crate::clickhouse::{
    Client, InsertError, InsertFormat, InsertRequest, InsertStream, Streaming,
};
use crate::commit::{CommitError, Committer};
use crate::config::{BadMessages, Delivery, Envelope, Format, Route, UnknownFields};
use crate::dead_letter_table;
use crate::decode::json::{
    canal_rows, debezium_row, encode_json_row, encode_meta_row, encode_text_row, maxwell_row,
    Change, EventSource, MessageMeta, NewColumn, RowError, RowPlan,
};
use crate::decode::registered::{self, encode_registered_row, schema_id, Bound};
use crate::decode::text::{Delimited, Line};
use crate::dedup;
use crate::dlq::DeadLetterProducer;
use crate::kafka::records::{OwnedRecord, Record, RecordChunk};
use crate::kafka::refetch::Refetcher;
use crate::registry::{FetchError, Registry, NOT_FOUND_RETRIES};
use crate::telemetry::{PartitionGauges, RouteMetrics};

mod dead_letters;
mod stream;

use stream::*;

/// Everything the lanes of one route share.
pub struct RouteRuntime {
    pub route: Route,
    pub plan: RowPlan,
    pub columns: Vec<String>,
    pub format: InsertFormat,
    /// Sent before each insert's rows ([`crate::schema::TablePlan::header`]).
    pub header: bytes::Bytes,
    /// The plan of the dead-letter table (`on_bad_message = "dead-letter-table"`).
    pub dead_letters: Option<crate::schema::TablePlan>,
    /// The first (or only) ClickHouse server: planning and the table refresh.
    pub client: Client,
    /// Every shard's client, `client`'s first (only it without `clickhouse.shards`); each
    /// lane inserts into its partition's ([`crate::clickhouse::shards::shard_of`]).
    pub shards: Arc<[Client]>,
    pub dlq: Option<DeadLetterProducer>,
    pub metrics: Arc<RouteMetrics>,
    /// Shared by every lane of every route.
    pub budget: Arc<MemoryBudget>,
    /// Reads rejected rows' messages back from Kafka for the dead-letter path.
    pub refetch: Refetcher,
    /// Avro and Protobuf routes: where the writer schemas come from.
    pub registry: Option<Arc<Registry>>,
}

/// See [`Lane::age_limit`].
const BACKLOG_AGE_STRETCH: u32 = 8;

/// `unknown_fields = "add"` stops adding columns to a table once it has this many: a message
/// whose field would take it further is dead-lettered. Keeps a stream of generated keys (ids
/// as field names) from growing a table without end, as clickhouse_sinker's `maxDims` does.
pub const MAX_COLUMNS_ADDED_TO: usize = 1000;

/// The fields without a column (`unknown_fields = "add"`) of the message at `offset`.
struct NewFields {
    fields: Vec<NewColumn>,
    offset: i64,
}

/// A batch formed again from Kafka for a streamed insert that failed.
enum Reformed {
    Batch(Box<SealedBatch>),
    /// Not one of its messages is in the log any more (retention).
    Empty,
    Fenced,
}

/// Why a lane gave up; the pipeline stops the whole run on it (nothing is committed past it).
/// The consumer reports its own failures the same way, with the partition `-[-1]`.
#[derive(Debug)]
pub struct LaneFailure {
    pub partition: PartitionId,
    /// The route's table is no longer what it was planned against
    /// ([`InsertError::SchemaChanged`]): the pipeline plans it again and starts over.
    pub table_changed: bool,
    pub message: String,
}

impl std::fmt::Display for LaneFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.partition.partition < 0 {
            write!(f, "Kafka consumer: {}", self.message)
        } else {
            write!(f, "lane {}: {}", self.partition, self.message)
        }
    }
}

impl std::error::Error for LaneFailure {}

/// Runs a lane's future, turning a panic in it into a [`LaneFailure`]: a lane is a spawned
/// task whose panic nobody would otherwise see, and its partition would stall without a word
/// while the others went on. A panic is a bug; the run stops as for any lane failure, without
/// committing past the panicked lane's stored batches.
pub async fn run_guarded(
    lane: impl std::future::Future<Output = Result<(), LaneFailure>>,
    partition: PartitionId,
) -> Result<(), LaneFailure> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(lane).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            Err(LaneFailure {
                partition,
                table_changed: false,
                message: format!("the lane stopped on a bug (panic: {what})"),
            })
        }
    }
}

enum Stored {
    Yes,
    /// The partition was revoked while retrying: stop without committing.
    Fenced,
}

pub struct Lane {
    rt: Arc<RouteRuntime>,
    id: PartitionId,
    /// The ClickHouse server this partition's rows (and dead-letter rows) go to: the
    /// partition's shard, always the same one (see `clickhouse::shards`); while a range
    /// recorded for another shard is re-formed, that shard.
    client: Client,
    /// With `clickhouse.shards`: `client`'s fingerprint, written into each in-flight record.
    shard: Option<u32>,
    /// The partition's own shard (and fingerprint) while a re-formed range goes to the
    /// shard its record names.
    home: Option<(Client, Option<u32>)>,
    committer: Committer,
    gauges: Arc<PartitionGauges>,
    batch: Batch,
    /// This lane's part of the process-wide batch memory.
    share: Share,
    /// exactly-once: the range an interrupted insert held, to be re-formed exactly before
    /// anything else is batched.
    recovery: Option<OffsetRange>,
    /// exactly-once: the record of the range being re-formed, from the checkpoint until its
    /// batch is stored: that batch is recorded as it was, carries a streamed range's token,
    /// and is never streamed itself (a new stream would carry a new token).
    reforming: Option<Inflight>,
    /// The insert of the open batch, when it is being streamed.
    stream: Option<OpenStream>,
    /// The last batch was cut by size or memory, or by age with more already in the log: the
    /// lane is working through a backlog, and when the partition runs dry its remainder goes at
    /// once, whatever its size.
    backlog: bool,
    /// The partition's log end as of the last chunk received.
    log_end: Option<i64>,
    /// How far the consumer had read the partition, past skipped transaction markers, as of
    /// the last chunk that said ([`RecordChunk::caught_up`]).
    read_to: Option<i64>,
    /// No chunk has arrived yet: the first one tells whether the lane started on a backlog
    /// ([`starts_on_backlog`]).
    fresh: bool,
    /// CSV/TSV: the fields of the message being encoded (its buffers reused).
    line: Line,
    /// Maxwell/Canal: where each row of the message being encoded ends in the body.
    row_ends: Vec<usize>,
    /// `unknown_fields = "add"`: the fields without a column the last message had.
    new_fields: Option<NewFields>,
    /// Avro/Protobuf/JSON Schema: each schema id seen, bound to the route's plan, or why its
    /// messages cannot be read; and the buffers of the message being encoded.
    schemas: FxHashMap<u32, Result<Bound, String>>,
    registered: registered::Scratch,
}

impl Lane {
    pub fn new(
        rt: Arc<RouteRuntime>,
        id: PartitionId,
        committer: Committer,
        gauges: Arc<PartitionGauges>,
    ) -> Self {
        let cap = rt.route.batch.max_bytes.min(8 << 20);
        let share = rt.budget.share();
        let shard = crate::clickhouse::shards::shard_of(&id.topic, id.partition, rt.shards.len());
        let client = match rt.shards.get(shard) {
            Some(c) => c.clone(),
            None => rt.client.clone(),
        };
        let sharded = rt.shards.len() > 1;
        if sharded {
            tracing::info!(partition = %id, shard = %client.url(), "the partition's rows go to its shard");
        }
        let shard_fp = sharded.then(|| crate::clickhouse::shards::fingerprint(client.url()));
        Lane {
            share,
            rt,
            id,
            client,
            shard: shard_fp,
            home: None,
            committer,
            gauges,
            batch: Batch::with_capacity(cap),
            recovery: None,
            reforming: None,
            stream: None,
            backlog: false,
            log_end: None,
            read_to: None,
            fresh: true,
            line: Line::new(),
            row_ends: Vec::new(),
            new_fields: None,
            schemas: FxHashMap::default(),
            registered: registered::Scratch::default(),
        }
    }

    /// exactly-once: reads the partition's checkpoint; an in-flight range found there is
    /// re-formed as the first batch. Retries until it succeeds or the partition is revoked,
    /// because batching without knowing it could cut a different range.
    async fn load_checkpoint(&mut self) -> Result<Option<Stored>, LaneFailure> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            match self.committer.checkpoint().await {
                Ok(cp) => {
                    if let Some(next) = cp.committed {
                        self.gauges.committed.store(next, Ordering::Relaxed);
                    }
                    if let Some(r) = cp.inflight {
                        tracing::info!(partition = %self.id, range = %r.range, streamed = r.stream_nonce.is_some(),
                            "an insert was interrupted; re-forming exactly that batch (ClickHouse drops it if it was stored)");
                        self.go_to_recorded_shard(r.shard)?;
                        self.recovery = Some(r.range);
                        self.reforming = Some(r);
                    }
                    return Ok(None);
                }
                Err(CommitError::Fenced(_)) => return Ok(Some(Stored::Fenced)),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(partition = %self.id, error = %e, retry_in = ?delay, "cannot read the committed checkpoint; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// A recorded range goes again to the server its record names (`shard`; `None`: the one
    /// server, `clickhouse.url`, which is also the first shard), even where the shard list
    /// now puts the partition elsewhere: only that server can recognise it as stored. A
    /// server no longer listed stops the lane without committing.
    fn go_to_recorded_shard(&mut self, shard: Option<u32>) -> Result<(), LaneFailure> {
        use crate::clickhouse::shards::fingerprint;
        let recorded = shard.unwrap_or_else(|| fingerprint(self.rt.client.url()));
        let current = self.shard.unwrap_or_else(|| fingerprint(self.client.url()));
        if recorded == current {
            return Ok(());
        }
        let Some(target) = self
            .rt
            .shards
            .iter()
            .find(|c| fingerprint(c.url()) == recorded)
            .cloned()
        else {
            return Err(LaneFailure {
                partition: self.id.clone(),
                table_changed: false,
                message: format!(
                    "the interrupted insert went to a ClickHouse server that clickhouse.shards (or url) no longer lists (fingerprint {recorded:08x}); only it can tell whether the range was stored: list it again until this partition has committed past the range; stopping without committing"
                ),
            });
        };
        tracing::info!(partition = %self.id, shard = %target.url(),
            "the interrupted insert went to another shard than the partition's now; re-forming it there");
        let home = std::mem::replace(&mut self.client, target);
        self.home = Some((home, self.shard));
        self.shard = Some(recorded);
        Ok(())
    }

    /// Back to the partition's own shard once the re-formed range is stored or abandoned.
    fn go_home(&mut self) {
        if let Some((client, shard)) = self.home.take() {
            self.client = client;
            self.shard = shard;
        }
    }

    /// Runs until the record channel closes (revoke or shutdown), then flushes and returns.
    pub async fn run(
        mut self,
        mut records: mpsc::Receiver<RecordChunk>,
    ) -> Result<(), LaneFailure> {
        let max_age = self.rt.route.batch.max_age;
        if self.rt.route.delivery == Delivery::ExactlyOnce {
            if let Some(Stored::Fenced) = self.load_checkpoint().await? {
                return Ok(());
            }
        }
        loop {
            // A batch being re-formed closes at its recorded end, never by age.
            let age_limit = self.age_limit(max_age);
            let deadline = self
                .batch
                .opened_at()
                .filter(|_| self.recovery.is_none())
                .map(|t| tokio::time::Instant::from_std(t + age_limit));
            tokio::select! {
                biased;
                chunk = records.recv() => match chunk {
                    Some(chunk) => {
                        let caught_up = chunk.caught_up();
                        if std::mem::take(&mut self.fresh) {
                            self.backlog |= starts_on_backlog(&chunk, max_age, SystemTime::now());
                        }
                        self.log_end = self.log_end.max(chunk.log_end());
                        self.read_to = self.read_to.max(chunk.read_to());
                        if matches!(self.add_chunk(chunk).await?, Some(Stored::Fenced)) {
                            return Ok(());
                        }
                        // Under a steady stream the channel is always ready and the timer
                        // branch never runs: honour max_age here too.
                        let age_limit = self.age_limit(max_age);
                        let expired = self.recovery.is_none()
                            && self.batch.opened_at().is_some_and(|t| t.elapsed() >= age_limit);
                        // Nothing more to read: a batch of a good size, or the rest of a
                        // backlog, goes now instead of at its age.
                        let drained = caught_up
                            && records.is_empty()
                            && self.recovery.is_none()
                            && (self.backlog
                                || self.batch.worth_sending_early(&self.rt.route.batch));
                        if expired || drained {
                            // An age cut can happen while working down a backlog too (big
                            // batches, a busy machine): its remainder then goes when the
                            // partition runs dry, not a `max_age` later.
                            self.backlog = !drained && self.cut_leaves_backlog();
                            if matches!(self.flush().await?, Some(Stored::Fenced)) {
                                return Ok(());
                            }
                        }
                    }
                    None => {
                        if let Some(r) = self.recovery {
                            // Revoked before the interrupted range was complete: a partial
                            // re-form would carry another token. Leave it to the next owner.
                            tracing::info!(partition = %self.id, range = %r, "revoked while re-forming; the next owner re-forms it");
                            return Ok(());
                        }
                        self.flush().await?;
                        return Ok(());
                    }
                },
                _ = sleep_until_opt(deadline) => {
                    // The channel can be empty for a moment while a backlog is read (the
                    // poll thread shares the cores): judge by the log end last seen.
                    self.backlog = self.cut_leaves_backlog();
                    if matches!(self.flush().await?, Some(Stored::Fenced)) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Whether cutting the open batch by age leaves records of the partition's log after it
    /// ([`Batch::age_cut_leaves_backlog`]). Not when the consumer had read up to the log end:
    /// the records received are all in the batch, and what lies between its last record and
    /// the log end is a transaction's marker, which would otherwise turn every age cut of a
    /// transactional stream into a backlog and its next chunk into an insert of its own.
    fn cut_leaves_backlog(&self) -> bool {
        let all_read = matches!((self.read_to, self.log_end), (Some(r), Some(e)) if r >= e);
        !all_read && self.batch.age_cut_leaves_backlog(self.log_end)
    }

    /// How old the open batch may get: `max_age`, or [`BACKLOG_AGE_STRETCH`] times that while
    /// the partition's log (as last seen) holds a backlog after the batch.
    /// A streamed batch is also cut at [`STREAM_AGE_CAP`] or half the request timeout,
    /// whichever is shorter, so that its INSERT ends before either side times it out.
    fn age_limit(&self, max_age: Duration) -> Duration {
        let limits = &self.rt.route.batch;
        let max_bytes = match self.client.packing() {
            Packing::Never if self.stream.is_none() => {
                limits.max_bytes.min(self.share.fair_share())
            }
            Packing::Never | Packing::Always | Packing::ToGrow => limits.max_bytes,
        };
        let limit = if self
            .batch
            .backlog_after(limits.max_rows, max_bytes, self.log_end)
        {
            max_age.saturating_mul(BACKLOG_AGE_STRETCH)
        } else {
            max_age
        };
        if self.stream.is_some() {
            stream_age_limit(limit, self.client.request_timeout())
        } else {
            limit
        }
    }

    /// Avro/Protobuf/JSON Schema: makes sure the schema id of `payload` is known before the
    /// message is encoded (the chunk is read once: a pass of its own over every payload
    /// cost 0.07 CPU-s per million narrow messages). A registry that cannot answer is waited
    /// for (with backoff), because a message must not be dead-lettered for the registry's
    /// outage; an id it does not know is asked about a few more times (a replica may lag
    /// behind a registration) before its messages are dead-lettered. Nothing from this
    /// message on is batched meanwhile, and the lane stores nothing while it waits. (A
    /// revocation or shutdown during that wait is seen once it ends;
    /// `service.shutdown_timeout` bounds a shutdown's wait.)
    async fn ensure_schema(&mut self, payload: Option<&[u8]>, offset: i64) {
        let Some(Ok(id)) = payload.map(schema_id) else {
            return;
        };
        if self.schemas.contains_key(&id) {
            return;
        }
        let Some(registry) = self.rt.registry.clone() else {
            return;
        };
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut not_found = 0;
        let got = loop {
            let retry = match registry.schema(id).await {
                Ok(raw) => {
                    break registered::bind(
                        self.rt.route.format,
                        &raw,
                        &self.rt.plan,
                        self.rt.route.validate,
                        self.rt.route.envelope,
                    )
                }
                Err(FetchError::Unusable(why)) => break Err(why),
                Err(FetchError::NotFound(why)) => {
                    not_found += 1;
                    if not_found > NOT_FOUND_RETRIES {
                        break Err(why);
                    }
                    why
                }
                Err(e @ FetchError::Unavailable(_)) => e.to_string(),
            };
            let delay = backoff.next_delay();
            RouteMetrics::add(&self.rt.metrics.schema_lookup_retries, 1);
            tracing::warn!(partition = %self.id, schema_id = id, error = %retry, retry_in = ?delay,
                "cannot get the message's schema; waiting for the registry");
            tokio::time::sleep(delay).await;
        };
        let mut got = got;
        if let (Ok(bound), UnknownFields::Add) = (&got, self.rt.route.unknown_fields) {
            let (fields, none) = bound.new_columns(&self.rt.plan);
            if !none.is_empty() {
                tracing::warn!(partition = %self.id, schema_id = id, fields = ?none,
                    "fields of a type no one column holds get no column (unknown_fields = \"add\"); ignored");
            }
            if self.rt.plan.columns.len() + fields.len() > MAX_COLUMNS_ADDED_TO {
                // Its messages are dead-lettered with the reason, as a JSON message's are.
                got = Err(format!(
                    "{} fields without a column, and unknown_fields = \"add\" grows no table past {MAX_COLUMNS_ADDED_TO} columns",
                    fields.len()
                ));
            } else if !fields.is_empty() {
                // Not bound: the lane stops before this message and adds the columns.
                self.new_fields = Some(NewFields { fields, offset });
                return;
            }
        }
        match &got {
            Ok(_) => tracing::info!(partition = %self.id, schema_id = id, "schema loaded"),
            Err(why) => tracing::warn!(partition = %self.id, schema_id = id, reason = %why,
                "messages with this schema id cannot be read; they are dead-lettered"),
        }
        RouteMetrics::add(&self.rt.metrics.schemas_loaded, 1);
        self.schemas.insert(id, got);
    }

    async fn add_chunk(&mut self, chunk: RecordChunk) -> Result<Option<Stored>, LaneFailure> {
        let n = chunk.len();
        let registered = self.rt.route.format.uses_registry();
        RouteMetrics::add(&self.rt.metrics.messages, n as u64);
        if let Some(last) = chunk.last_offset() {
            // Seen offsets are a lower bound of the log end; good enough for a lag gauge
            // between the broker's own watermark refreshes.
            self.gauges
                .high_watermark
                .fetch_max(last + 1, Ordering::Relaxed);
        }
        // The batch memory budget cuts at chunk boundaries: the open batch is stored before a
        // chunk that would take this lane over its share is added (see budget.rs). The
        // chunk's JSON is an upper bound of the rows it encodes to.
        if self.recovery.is_none()
            && !self.batch.is_empty()
            && self.share.should_cut_before(chunk.byte_len())
        {
            self.backlog = true;
            if let Some(Stored::Fenced) = self.flush().await? {
                return Ok(Some(Stored::Fenced));
            }
        }
        let mut i = 0;
        while i < n {
            let mut cut = false;
            while i < n {
                let Some(rec) = chunk.get(i) else { break };
                if let Some(r) = self.recovery {
                    if rec.offset > r.last {
                        // The recorded range ended at a message no longer in the log
                        // (compaction): close it before this later message.
                        self.recovery = None;
                        cut = !self.batch.is_empty();
                        if cut {
                            break;
                        }
                        // Nothing of the recorded range is left to re-form.
                        self.reforming = None;
                        self.go_home();
                    }
                }
                if registered {
                    self.ensure_schema(rec.payload, rec.offset).await;
                    if let Some(new) = self.new_fields.take() {
                        return Err(self.add_columns(new).await);
                    }
                }
                self.encode(rec);
                if let Some(new) = self.new_fields.take() {
                    return Err(self.add_columns(new).await);
                }
                i += 1;
                match self.recovery {
                    Some(r) if rec.offset == r.last => {
                        self.recovery = None;
                        cut = true;
                        break;
                    }
                    // Re-forming: the batch holds exactly the recorded range, whatever the limits.
                    Some(_) => {}
                    None if self.batch.is_full(&self.rt.route.batch) => {
                        self.backlog = true;
                        cut = true;
                        break;
                    }
                    None => {}
                }
            }
            if self.stream.is_some() {
                self.pump_stream(STREAM_CHUNK).await?;
            } else if self.can_stream()
                && self
                    .batch
                    .worth_streaming(self.share.fair_share(), self.log_end)
            {
                // The memory budget would cut this batch short, or it will be large: send it
                // while it grows.
                self.open_stream();
                self.pump_stream(0).await?;
            } else if self.batch.should_pack(
                self.client.packing(),
                self.share.fair_share(),
                self.log_end,
            ) {
                self.batch.pack().map_err(|e| self.unusable_batch(e))?;
            }
            self.share.set(self.batch.held_bytes());
            if cut {
                if let Some(Stored::Fenced) = self.flush().await? {
                    return Ok(Some(Stored::Fenced));
                }
            }
        }
        Ok(None)
    }

    fn encode(&mut self, rec: Record<'_>) {
        let Some(payload) = rec.payload else {
            if self.rt.route.skip_tombstones {
                self.batch.skip(rec.offset);
                return;
            }
            self.batch.dead_letter(
                rec.into(),
                "message has no value (null payload / tombstone)".to_string(),
                rec.headers_read(),
            );
            return;
        };
        let headers: Vec<(&str, Option<&[u8]>)> = if rec.has_headers() {
            rec.headers().collect()
        } else {
            Vec::new()
        };
        let meta = MessageMeta {
            topic: &self.id.topic,
            partition: self.id.partition,
            offset: rec.offset,
            timestamp_ms: rec.timestamp_ms,
            key: rec.key,
            headers: &headers,
            value: Some(payload),
            op: None,
            source: EventSource::NONE,
        };
        let out = self.batch.body_mut();
        let row = match self.rt.route.format {
            Format::Json if self.rt.route.envelope == Envelope::Debezium => {
                match debezium_row(payload) {
                    Ok((op, row, source)) => encode_json_row(
                        &self.rt.plan,
                        row,
                        &MessageMeta {
                            op: Some(op),
                            source,
                            ..meta
                        },
                        out,
                    ),
                    Err(e) => Err(e),
                }
            }
            Format::Json
                if matches!(self.rt.route.envelope, Envelope::Maxwell | Envelope::Canal) =>
            {
                let change = if self.rt.route.envelope == Envelope::Maxwell {
                    maxwell_row(payload)
                } else {
                    canal_rows(payload)
                };
                match change {
                    Ok(Change::NoRow) => {
                        self.batch.skip_event(rec.offset);
                        return;
                    }
                    Ok(Change::Rows { op, rows, source }) => {
                        let meta = MessageMeta {
                            op: Some(op),
                            source,
                            ..meta
                        };
                        match rows.encode(&self.rt.plan, &meta, out, &mut self.row_ends) {
                            Ok(()) => {
                                self.batch.rows_done(rec.offset, &self.row_ends);
                                return;
                            }
                            // None of a bad event's rows is stored: its message is the dead letter.
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Format::Json => encode_json_row(&self.rt.plan, payload, &meta, out),
            Format::Raw => encode_meta_row(&self.rt.plan, &meta, out),
            Format::Avro | Format::Protobuf | Format::JsonSchema => match schema_id(payload) {
                Err(e) => Err(e),
                Ok(id) => match self.schemas.get(&id) {
                    Some(Ok(bound)) => encode_registered_row(
                        &self.rt.plan,
                        bound,
                        payload,
                        &meta,
                        &mut self.registered,
                        out,
                    ),
                    Some(Err(why)) => Err(RowError::Schema {
                        id,
                        reason: why.clone(),
                    }),
                    // ensure_schema ran for this message; only reachable if it was skipped.
                    None => Err(RowError::Schema {
                        id,
                        reason: "schema not loaded".into(),
                    }),
                },
            },
            Format::Csv | Format::Tsv => {
                let delimited = if self.rt.route.format == Format::Csv {
                    Delimited::Csv
                } else {
                    Delimited::Tsv
                };
                match self.line.split(delimited, payload) {
                    Ok(()) => encode_text_row(&self.rt.plan, &self.line, &meta, out),
                    Err(e) => Err(RowError::InvalidLine {
                        offset: e.offset,
                        reason: e.reason,
                    }),
                }
            }
        };
        match row {
            Ok(()) => self.batch.row_done(rec.offset),
            Err(RowError::NewFields { fields })
                if self.rt.plan.columns.len() + fields.len() <= MAX_COLUMNS_ADDED_TO =>
            {
                // Not a bad message: the lane stops before it (see `add_columns`).
                self.new_fields = Some(NewFields {
                    fields,
                    offset: rec.offset,
                });
            }
            Err(e @ RowError::NewFields { .. }) => self.batch.dead_letter(
                rec.into(),
                format!(
                    "{e}, and unknown_fields = \"add\" grows no table past {MAX_COLUMNS_ADDED_TO} columns"
                ),
                rec.headers_read(),
            ),
            Err(e) => self
                .batch
                .dead_letter(rec.into(), e.to_string(), rec.headers_read()),
        }
    }

    /// `unknown_fields = "add"`: adds the columns of the fields `encode` met, on every shard,
    /// then ends the pass as a changed table does: nothing of the open batch is stored or
    /// committed, and the next pass plans the table with the column and reads this
    /// partition from its committed offset. A server that cannot be reached is asked again;
    /// a refusal (a user without ALTER rights, a table that cannot take the column) stops
    /// the run with the reason.
    async fn add_columns(&self, new: NewFields) -> LaneFailure {
        let route = &self.rt.route;
        let pairs: Vec<(&Client, &NewColumn)> = self
            .rt
            .shards
            .iter()
            .flat_map(|c| new.fields.iter().map(move |f| (c, f)))
            .collect();
        for (client, column) in pairs {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
            loop {
                match add_column(
                    client,
                    &route.database,
                    &route.table,
                    &column.name,
                    &column.column_type,
                )
                .await
                {
                    Ok(added) => {
                        if added == Added::New {
                            RouteMetrics::add(&self.rt.metrics.columns_added, 1);
                        }
                        tracing::info!(partition = %self.id, offset = new.offset, field = %column.name,
                            column_type = %column.column_type, clickhouse = %client.url(),
                            existed = added == Added::Existing, "column added for a new field");
                        break;
                    }
                    Err(e) if e.is_transient() && !self.committer.fence().is_raised() => {
                        let delay = backoff.next_delay();
                        tracing::warn!(partition = %self.id, field = %column.name, error = %e, retry_in = ?delay,
                            "cannot add the column of a new field yet; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    Err(e) => {
                        return LaneFailure {
                            partition: self.id.clone(),
                            table_changed: false,
                            message: format!(
                                "cannot add a {} column for field {:?} (message at offset {}, unknown_fields = \"add\"): {e}",
                                column.column_type, column.name, new.offset
                            ),
                        }
                    }
                }
            }
        }
        LaneFailure {
            partition: self.id.clone(),
            table_changed: true,
            message: format!(
                "the message at offset {} had fields without a column: added {}",
                new.offset,
                new.fields
                    .iter()
                    .map(|c| format!("{:?} {}", c.name, c.column_type))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Seals the open batch and makes it durable: insert, dead letters, commit.
    async fn flush(&mut self) -> Result<Option<Stored>, LaneFailure> {
        // Dropped unfinished on any early return: its body is cut off, nothing is stored.
        let stream = self.stream.take();
        let Some(sealed) = self.batch.seal().map_err(|e| self.unusable_batch(e))? else {
            return Ok(None);
        };
        let next = sealed.range.next();
        let stored = match stream {
            Some(open) => self.finish_stream(open, &sealed).await?,
            None => self.store_held(&sealed).await?,
        };
        if let Stored::Fenced = stored {
            return Ok(Some(Stored::Fenced));
        }
        crate::failpoint::hit("after_insert_before_commit");
        if self.rt.route.delivery != Delivery::AtMostOnce {
            if let Stored::Fenced = self.commit(next).await {
                return Ok(Some(Stored::Fenced));
            }
        }
        RouteMetrics::add(&self.rt.metrics.tombstones_skipped, sealed.skipped);
        RouteMetrics::add(
            &self.rt.metrics.change_events_skipped,
            sealed.events_skipped,
        );
        tracing::debug!(partition = %self.id, range = %sealed.range, rows = sealed.rows(), skipped = sealed.skipped + sealed.events_skipped, "batch committed");
        self.batch.recycle(sealed, self.share.keep_at_most());
        self.share.set(self.batch.held_bytes());
        Ok(Some(Stored::Yes))
    }

    /// A held batch: record it (exactly-once) or commit it first (at-most-once), then store
    /// it. A re-formed range keeps its record, and a streamed one its token.
    async fn store_held(&mut self, sealed: &SealedBatch) -> Result<Stored, LaneFailure> {
        let reform = self.reforming.take();
        if self.rt.route.delivery == Delivery::ExactlyOnce {
            // The in-flight record: from here on, whoever resumes this partition re-forms
            // exactly this range (see exactly_once.rs).
            let inflight = reform.unwrap_or(Inflight {
                range: sealed.range,
                stream_nonce: None,
                shard: self.shard,
            });
            if let Stored::Fenced = self.record_inflight(inflight).await {
                return Ok(Stored::Fenced);
            }
        }
        crate::failpoint::hit("after_record_before_insert");
        if self.rt.route.delivery == Delivery::AtMostOnce {
            // at-most-once: the offset moves first; whatever happens next cannot cause a
            // second delivery, and a crash before the insert loses this range.
            if let Stored::Fenced = self.commit(sealed.range.next()).await {
                return Ok(Stored::Fenced);
            }
        }
        let whole_token = reform.and_then(|r| {
            r.stream_nonce
                .map(|nonce| self.stream_token(r.range.first, nonce))
        });
        let stored = self.store(sealed, whole_token).await;
        if reform.is_some() && matches!(stored, Ok(Stored::Yes)) {
            self.go_home();
        }
        stored
    }

    /// Forms the batch of `range` again from the messages in Kafka, held (compressed), as
    /// the lane formed it the first time: same rows, same bad messages.
    async fn reform(&mut self, range: OffsetRange) -> Result<Reformed, LaneFailure> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            if self.committer.fence().is_raised() {
                return Ok(Reformed::Fenced);
            }
            let (tx, mut rx) = mpsc::channel::<RecordChunk>(2);
            let refetch = self.rt.refetch.clone();
            let id = self.id.clone();
            let task = tokio::task::spawn_blocking(move || {
                refetch.read_range(&id, range, STREAM_CHUNK, &tx)
            });
            while let Some(chunk) = rx.recv().await {
                for rec in chunk.iter() {
                    self.encode(rec);
                    if let Some(new) = self.new_fields.take() {
                        return Err(self.add_columns(new).await);
                    }
                }
                if self.batch.should_pack(Packing::Always, 0, None) {
                    self.batch.pack().map_err(|e| self.unusable_batch(e))?;
                }
            }
            let error = match task.await {
                Ok(Ok(_)) => {
                    return Ok(
                        match self.batch.seal().map_err(|e| self.unusable_batch(e))? {
                            Some(again) => Reformed::Batch(Box::new(again)),
                            None => Reformed::Empty,
                        },
                    )
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            // Start over: what was read may have stopped anywhere.
            let _ = self.batch.seal();
            let delay = backoff.next_delay();
            tracing::warn!(partition = %self.id, range = %range, error = %error, retry_in = ?delay,
                "cannot read a failed streamed insert's range back from Kafka; retrying (offsets not committed)");
            tokio::time::sleep(delay).await;
        }
    }

    /// Retries until recorded or fenced: inserting without the record could let a restart cut
    /// a different range and store some rows twice.
    async fn record_inflight(&self, inflight: Inflight) -> Stored {
        let range = inflight.range;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            match self.committer.record_inflight(inflight).await {
                Ok(()) => return Stored::Yes,
                Err(CommitError::Fenced(_)) => return Stored::Fenced,
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(partition = %self.id, range = %range, error = %e, retry_in = ?delay, "cannot record the in-flight range; retrying before inserting");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn commit(&self, next: i64) -> Stored {
        match self.committer.commit_with_retry(next).await {
            Ok(()) => {
                RouteMetrics::add(&self.rt.metrics.commits, 1);
                self.gauges.committed.store(next, Ordering::Relaxed);
                Stored::Yes
            }
            Err(CommitError::Fenced(_)) => Stored::Fenced,
            Err(e) => {
                // The data is stored; a lost commit only means the next owner of this
                // partition inserts the range again (at-least-once).
                tracing::warn!(partition = %self.id, offset = next, error = %e, "commit failed; range may be delivered again after a restart");
                Stored::Yes
            }
        }
    }

    /// Inserts every row of `sealed`, splitting around rows ClickHouse rejects, then sends
    /// the dead letters. Returns only when all of it is durable (or the lane was fenced).
    /// `whole_token`: the token of the whole batch when it is not the one its rows give
    /// (a streamed range sent again).
    async fn store(
        &self,
        sealed: &SealedBatch,
        whole_token: Option<String>,
    ) -> Result<Stored, LaneFailure> {
        // (offset, reason) of the rows ClickHouse rejected, in offset order.
        let mut rejected: Vec<(i64, String)> = Vec::new();
        // Depth-first over row ranges, left to right, so rows land in offset order.
        let mut pending = vec![(0usize, sealed.rows())];
        while let Some((from, to)) = pending.pop() {
            if from >= to {
                continue;
            }
            let token = whole_token
                .clone()
                .filter(|_| from == 0 && to == sealed.rows());
            match self.insert_rows(sealed, from, to, token).await? {
                InsertOutcome::Stored => {}
                InsertOutcome::Fenced => return Ok(Stored::Fenced),
                InsertOutcome::BadData(reason) => {
                    // Halves of whole messages: a message's rows are stored or rejected
                    // together, and every insert's rows have an offset range of their own.
                    if let Some(mid) = sealed.split_between_messages(from, to) {
                        pending.push((mid, to));
                        pending.push((from, mid));
                        continue;
                    }
                    let rows = to - from;
                    RouteMetrics::add(&self.rt.metrics.rows_rejected_by_clickhouse, rows as u64);
                    let offset = sealed
                        .row_offset(from)
                        .ok_or_else(|| self.lost_row(sealed))?;
                    rejected.push((
                        offset,
                        if rows == 1 {
                            format!("ClickHouse rejected the row: {reason}")
                        } else {
                            format!("ClickHouse rejected a row of this message's {rows}: {reason}")
                        },
                    ));
                }
            }
        }
        self.deliver_dead(sealed, rejected).await
    }

    async fn insert_rows(
        &self,
        sealed: &SealedBatch,
        from: usize,
        to: usize,
        whole_token: Option<String>,
    ) -> Result<InsertOutcome, LaneFailure> {
        let body = sealed
            .rows_body(from, to)
            .map_err(|e| self.unusable_batch(e))?;
        let bytes = body.raw_len() as u64;
        let packed = matches!(body, InsertBody::Packed { .. });
        let dedup_token = match (sealed.row_offset(from), sealed.row_offset(to - 1)) {
            _ if whole_token.is_some() => whole_token,
            (Some(first), Some(last)) => Some(dedup::token(
                &self.rt.route.database,
                &self.rt.route.table,
                &self.id,
                OffsetRange { first, last },
            )),
            _ => None,
        };
        let req = self.insert_request(body, dedup_token);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let mut attempts: u32 = 0;
        loop {
            if self.committer.fence().is_raised() {
                return Ok(InsertOutcome::Fenced);
            }
            attempts += 1;
            let err = match self.client.insert(&req).await {
                Ok(_) => {
                    let m = &self.rt.metrics;
                    RouteMetrics::add(&m.rows_inserted, (to - from) as u64);
                    RouteMetrics::add(&m.bytes_inserted, bytes);
                    RouteMetrics::add(&m.inserts, 1);
                    RouteMetrics::add(&m.packed_inserts, u64::from(packed));
                    return Ok(InsertOutcome::Stored);
                }
                Err(InsertError::BadData { code, message }) => {
                    tracing::debug!(partition = %self.id, rows = to - from, code, "insert rejected as bad data; splitting");
                    return Ok(InsertOutcome::BadData(format!("Code {code}: {message}")));
                }
                // The table stored the rows before its view refused them. Exactly-once: the
                // same token makes every retry a duplicate the table drops, while the view gets
                // the rows again, so retrying until the view is fixed stores them once in
                // both. Otherwise every retry would store them again: stop, uncommitted.
                Err(e @ InsertError::ViewFailed { .. })
                    if self.rt.route.delivery != Delivery::ExactlyOnce =>
                {
                    return Err(LaneFailure {
                        partition: self.id.clone(),
                        table_changed: false,
                        message: format!(
                            "{e}; {}.{} itself stored the rows, and retrying would store them again (not exactly-once: the table need not deduplicate): stopping without committing, fix the view and restart",
                            self.rt.route.database,
                            self.rt.route.table,
                        ),
                    });
                }
                // Nothing of it was stored, and no retry of these bytes can be: stop the run
                // uncommitted, so that it plans the table again (pipeline.rs).
                Err(e @ InsertError::SchemaChanged { .. }) => return Err(self.table_changed(&e)),
                Err(e) => e,
            };
            RouteMetrics::add(&self.rt.metrics.insert_retries, 1);
            if let Some(max) = self.rt.route.max_insert_retries {
                if attempts > max {
                    return Err(LaneFailure {
                        partition: self.id.clone(),
                        table_changed: false,
                        message: format!(
                            "insert into {}.{} failed {attempts} times, giving up without committing: {err}",
                            self.rt.route.database, self.rt.route.table
                        ),
                    });
                }
            }
            let delay = backoff.next_delay();
            let fatal = matches!(
                err,
                InsertError::Fatal { .. } | InsertError::ViewFailed { .. }
            );
            if fatal || attempts == 1 || attempts % 10 == 0 {
                tracing::warn!(partition = %self.id, attempt = attempts, retry_in = ?delay, error = %err, "insert failed; will retry");
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// The table changed under the run ([`InsertError::SchemaChanged`]): nothing of the
    /// insert was stored and no retry of its bytes can be. The run stops uncommitted, plans
    /// the table again and starts over from the committed offsets (`pipeline::run`).
    /// An INSERT of `body` into the route's table, as the lane's plan writes it.
    fn insert_request(&self, body: InsertBody, dedup_token: Option<String>) -> InsertRequest {
        InsertRequest {
            database: self.rt.route.database.clone(),
            table: self.rt.route.table.clone(),
            columns: self.rt.columns.clone(),
            format: self.rt.format,
            header: self.rt.header.clone(),
            body,
            dedup_token,
        }
    }

    fn table_changed(&self, e: &InsertError) -> LaneFailure {
        LaneFailure {
            partition: self.id.clone(),
            table_changed: true,
            message: e.to_string(),
        }
    }

    /// Compressing or decompressing a batch in memory failed: impossible in practice (an
    /// in-memory writer), and the rows cannot be sent as they were encoded. Stop the run
    /// without committing; the next run reads the range again.
    fn unusable_batch(&self, e: std::io::Error) -> LaneFailure {
        LaneFailure {
            partition: self.id.clone(),
            table_changed: false,
            message: format!(
                "cannot pack or unpack a batch in memory ({e}); stopping without committing"
            ),
        }
    }

    /// A row without an offset: impossible by construction (rows and offsets are pushed
    /// together), and if it ever happened the message would vanish. Stop the run instead of
    /// committing past it.
    fn lost_row(&self, sealed: &SealedBatch) -> LaneFailure {
        LaneFailure {
            partition: self.id.clone(),
            table_changed: false,
            message: format!(
                "batch {} has a row without its offset; stopping without committing",
                sealed.range
            ),
        }
    }
}

enum InsertOutcome {
    Stored,
    Fenced,
    BadData(String),
}

/// Whether a lane's first chunk shows that it started on a backlog, whose end then goes as
/// soon as the partition has nothing more to read, like the end of a backlog cut by size,
/// instead of waiting `max_age` however small it is: the partition holds more than the chunk,
/// or the chunk's first record was written to Kafka `max_age` or more before now, so it has
/// waited its age already. Without this, a backlog of less than a healthy insert (4 MiB) at
/// start-up or after a rebalance waited a whole `max_age` (200,000 narrow messages on 8
/// partitions: 1.27 s to land, most of it that wait). Judged on the first chunk only: a
/// slow stream whose records carry old timestamps (event times set by the producer) must
/// not turn into one insert per poll.
fn starts_on_backlog(first: &RecordChunk, max_age: Duration, now: SystemTime) -> bool {
    if first.is_empty() {
        return false;
    }
    // A known log end the chunk stops short of (without one, `caught_up` says no too).
    if first.log_end().is_some() && !first.caught_up() {
        return true;
    }
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    first
        .get(0)
        .and_then(|r| r.timestamp_ms)
        .is_some_and(|ts| ts >= 0 && now_ms.saturating_sub(ts) >= age_ms)
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_lane_is_a_failure_of_its_partition() {
        let id = PartitionId::new("events", 3);
        let failure = run_guarded(async { panic!("a bug in the lane") }, id.clone())
            .await
            .unwrap_err();
        assert_eq!(failure.partition, id);
        assert!(
            failure.message.contains("a bug in the lane"),
            "{}",
            failure.message
        );
        let owned = run_guarded(async { panic!("{} rows", 7) }, id.clone()).await;
        assert!(owned.unwrap_err().message.contains("7 rows"));
        assert!(run_guarded(async { Ok(()) }, id.clone()).await.is_ok());
        let failed = run_guarded(
            async {
                Err(LaneFailure {
                    partition: PartitionId::new("events", 3),
                    table_changed: false,
                    message: "insert refused".into(),
                })
            },
            id,
        )
        .await;
        assert_eq!(failed.unwrap_err().message, "insert refused");
    }

    #[test]
    fn a_streamed_batch_ends_well_inside_both_receive_timeouts() {
        let s = Duration::from_secs;
        // ClickHouse's http_receive_timeout (30 s by default) bounds a quiet body whatever
        // sluice's own timeout: a long max_age or backlog stretch is cut at 20 s.
        assert_eq!(stream_age_limit(s(80), s(300)), s(20));
        assert_eq!(stream_age_limit(s(20), s(120)), s(20));
        // A short request timeout cuts sooner, at half of it.
        assert_eq!(stream_age_limit(s(80), s(4)), s(2));
        assert_eq!(stream_age_limit(s(80), s(30)), s(15));
        // Below both caps, the batch's own limit stands.
        assert_eq!(
            stream_age_limit(Duration::from_millis(250), s(30)),
            Duration::from_millis(250)
        );
        assert!(STREAM_AGE_CAP < Duration::from_secs(30));
    }

    fn chunk(
        offsets: std::ops::Range<i64>,
        timestamp_ms: Option<i64>,
        log_end: i64,
    ) -> RecordChunk {
        let mut c = RecordChunk::default();
        for o in offsets {
            c.push(o, timestamp_ms, None, Some(b"{}"), &[]);
        }
        c.set_log_end(log_end);
        c
    }

    #[test]
    fn a_first_chunk_short_of_the_log_end_or_of_old_records_starts_a_backlog() {
        let age = Duration::from_secs(1);
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let now_ms = 1_000_000_000;
        // More in the log than the chunk: a backlog, whatever the timestamps.
        assert!(starts_on_backlog(&chunk(0..10, Some(now_ms), 11), age, now));
        // Caught up: only records max_age old or older make it one.
        assert!(!starts_on_backlog(
            &chunk(0..10, Some(now_ms - 999), 10),
            age,
            now
        ));
        assert!(starts_on_backlog(
            &chunk(0..10, Some(now_ms - 1000), 10),
            age,
            now
        ));
        // No timestamp, a negative one (none in Kafka) or one from the future: not a backlog.
        assert!(!starts_on_backlog(&chunk(0..10, None, 10), age, now));
        assert!(!starts_on_backlog(&chunk(0..10, Some(-1), 10), age, now));
        assert!(!starts_on_backlog(
            &chunk(0..10, Some(now_ms + 5000), 10),
            age,
            now
        ));
        // A log end older than the chunk (librdkafka's cached view) counts as caught up.
        assert!(!starts_on_backlog(&chunk(5..10, Some(now_ms), 8), age, now));
        assert!(!starts_on_backlog(&RecordChunk::default(), age, now));
    }
}
