//! The group consumer: one OS thread polls librdkafka, serves rebalances and hands records to
//! one lane per assigned partition. It knows nothing of ClickHouse.
//!
//! Why a dedicated thread and not split partition queues: the rebalance callback runs inside
//! `poll`, and on revoke it must wait (bounded) for the lanes of the revoked partitions to
//! flush and commit. Blocking a thread of our own is harmless; blocking a tokio worker would
//! stall the very lanes it waits for. One queue also keeps per-partition order trivially
//! (split queues can deliver a partition's first messages on the main queue, out of order).
//!
//! Messages themselves are taken in batches from an application queue that every assigned
//! partition is forwarded to (`fetch_queue`); the consumer queue polled here keeps the
//! rebalance, commit, statistics and error events, so rebalances still run in this thread.
//!
//! Backpressure: each lane has a bounded channel of chunks. When it is full, chunks are kept
//! aside (stashed) for it. Once the stashes together reach `stash_bytes`, the poll thread
//! stops taking messages from the batch queue until the lanes have taken enough of them:
//! librdkafka then stops fetching when its own bounded queue is full
//! (`queued.max.messages.kbytes`) and resumes where it was, losing nothing it prefetched. Only
//! a lane that stalls (takes no chunk for `STALL` while chunks wait for it: its ClickHouse
//! slow or down) has its partition paused instead, so it cannot hold up the others (see
//! `relieve`); it resumes when it has taken all its stashed chunks. Pausing is kept for
//! that case only because it is costly: librdkafka drops what it prefetched for the
//! partition and fetches it again after the resume, and while a backlog is worked down every
//! lane is behind all the time (pausing each lane at 2 MiB of stash, 1M wide messages into a
//! Null table took 6.8-7.4 s at 0.6 cores; holding the queue instead, 4.0-4.4 s). The poll loop itself never blocks on a lane, so the group
//! heartbeat and `max.poll.interval.ms` are served even while ClickHouse is down and every
//! lane is retrying.
//!
//! Rebalance: on revoke (or shutdown, which unsubscribes and so revokes everything) the
//! revoked lanes' channels are closed; each lane inserts and commits what it holds and ends.
//! A lane still running at the drain deadline is fenced: it can no longer commit, so the new
//! owner starts from what was committed, never from what this instance merely sent.
//!
//! Closing the consumer after the lanes are done is bounded by [`CLOSE_TIMEOUT`]: librdkafka's
//! close polls until the group coordinator answers, which with the broker gone can outlast any
//! shutdown budget, and by then every lane has committed or been fenced.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc::error::TrySendError;

use super::fetch_queue::{FetchQueue, MessageBatch, RawMessage};
use super::own_fetch::{self, OwnFetch};
use super::records::RecordChunk;
use crate::checkpoint::PartitionId;
use crate::commit::{Committer, Fence, OffsetSink};
use crate::telemetry::Metrics;

/// What a started lane gives back to the consumer.
pub struct LaneHandle {
    /// Chunks of records, in offset order. Dropping the sender tells the lane to drain.
    pub records: tokio::sync::mpsc::Sender<RecordChunk>,
    /// Disconnected (sender dropped) when the lane task has ended.
    pub finished: std::sync::mpsc::Receiver<()>,
    pub fence: Fence,
}

/// Starts lanes. Called on the poll thread, so it must not block.
pub trait LaneFactory: Send + Sync + 'static {
    fn start(&self, partition: PartitionId, committer: Committer) -> LaneHandle;

    /// Whether the lanes of `topic` use the messages' headers; when not, the poll thread
    /// leaves them unread (see `records`).
    fn reads_headers(&self, _topic: &str) -> bool {
        true
    }

    /// The consumer met an error that only a change of configuration can end
    /// ([`fatal_consumer_error`]): the run should stop, saying `why`.
    fn consumer_failed(&self, why: String);
}

/// Limits of the consumer loop.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerLimits {
    /// Records per chunk handed to a lane at most.
    pub chunk_records: usize,
    /// Payload bytes per chunk at most (a chunk with one message may exceed it): with the
    /// lane queue's chunk count, bounds what waits between the poll thread and a lane.
    pub chunk_bytes: usize,
    /// How long a revoke waits for lanes to flush and commit before fencing them.
    pub drain_timeout: Duration,
    /// Bytes of chunks kept aside for all lanes together whose queues are full, before the
    /// poll thread stops taking messages (see the module docs). Paused (stalled) lanes'
    /// stashes are not counted: each is paused once it holds its share of this, or once the
    /// stashes together reach it.
    pub stash_bytes: usize,
    /// Up to this many lanes, chunks have the size above; with more, they shrink in
    /// proportion (see [`ConsumerLimits::for_lanes`]).
    pub full_size_lanes: usize,
}

/// Smallest chunk size, however many lanes: below it, per-chunk overhead would dominate.
const MIN_CHUNK_BYTES: usize = 64 << 10;

impl ConsumerLimits {
    /// The limits with `lanes` lanes assigned. Each lane's queue holds a few chunks, so
    /// without this what waits in the queues grows with the partitions assigned: 32 lanes at
    /// full size hold 4x what 8 do. Beyond `full_size_lanes` the chunk size shrinks in
    /// proportion, so the queues together hold about what `full_size_lanes` lanes hold at
    /// full size (floor: `MIN_CHUNK_BYTES`). The stash limit is for all lanes together
    /// already.
    pub fn for_lanes(&self, lanes: usize) -> ConsumerLimits {
        if lanes <= self.full_size_lanes {
            return *self;
        }
        ConsumerLimits {
            chunk_bytes: (self.chunk_bytes.saturating_mul(self.full_size_lanes) / lanes)
                .clamp(MIN_CHUNK_BYTES.min(self.chunk_bytes), self.chunk_bytes),
            ..*self
        }
    }
}

/// How long a lane may take no chunk while chunks wait for it before it counts as stalled
/// (its ClickHouse slow or down) rather than merely behind: longer than a big insert.
const STALL: Duration = Duration::from_millis(500);

/// An unpaused lane as `relieve` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiting {
    /// Bytes of chunks stashed for it.
    stashed: usize,
    /// Chunks have waited for it and it has taken none for `STALL`.
    stalled: bool,
}

/// What the poll thread does about lanes whose queues are full. Of the unpaused lanes
/// (`lanes` are assigned in all), it pauses a stalled lane if other lanes could flow, once
/// the stashes together reach `limit` (it would otherwise hold up all of them) or its own
/// stash reaches its share of `limit` (`limit / lanes`: what it keeps while paused stays
/// small); and it holds the batch queue while the remaining stashes still reach `limit`. A
/// lane that keeps taking chunks is never paused, however far behind: a backlog that every
/// lane works down at its own pace is held, not paused (pausing at a fixed stash per lane
/// paused lanes 126 times in 1M wide messages, fetched messages come in bursts of one
/// partition). Returns the indexes (into `unpaused`) of the lanes to pause and whether to
/// hold.
fn relieve(unpaused: &[Waiting], lanes: usize, limit: usize) -> (Vec<usize>, bool) {
    let total: usize = unpaused.iter().map(|w| w.stashed).sum();
    let share = limit / lanes.max(1);
    let pressed = total >= limit;
    let pause: Vec<usize> = (0..unpaused.len())
        .filter(|&i| {
            let w = unpaused[i];
            lanes > 1 && w.stalled && w.stashed > 0 && (pressed || w.stashed >= share)
        })
        .collect();
    let left = total - pause.iter().map(|&i| unpaused[i].stashed).sum::<usize>();
    (pause, left >= limit)
}

struct LaneState {
    handle: LaneHandle,
    stash: VecDeque<RecordChunk>,
    paused: bool,
    /// Who fetches the partition's records.
    fetch: FetchedBy,
    /// When the lane last took a chunk into its queue (or started).
    last_take: Instant,
}

/// Who fetches a lane's partition (see `own_fetch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchedBy {
    /// librdkafka, and the partition may move to sluice's own fetch path.
    Librdkafka,
    /// sluice's own fetch path, under this generation.
    Own(u64),
    /// librdkafka, for good: the own path handed it back (or never takes it).
    LibrdkafkaOnly,
}

#[derive(Default)]
struct Registry {
    lanes: HashMap<String, HashMap<i32, LaneState>>,
}

impl Registry {
    fn count(&self) -> usize {
        self.lanes.values().map(|m| m.len()).sum()
    }

    fn has(&self, topic: &str, partition: i32) -> bool {
        self.lanes
            .get(topic)
            .is_some_and(|p| p.contains_key(&partition))
    }

    fn lane_mut(&mut self, topic: &str, partition: i32) -> Option<&mut LaneState> {
        self.lanes
            .get_mut(topic)
            .and_then(|p| p.get_mut(&partition))
    }

    /// Lanes read by the own fetch path.
    fn own_count(&self) -> usize {
        self.lanes
            .values()
            .flat_map(|m| m.values())
            .filter(|l| matches!(l.fetch, FetchedBy::Own(_)))
            .count()
    }
}

pub struct SluiceContext {
    registry: Mutex<Registry>,
    factory: Arc<dyn LaneFactory>,
    consumer: OnceLock<Weak<BaseConsumer<SluiceContext>>>,
    /// Where assigned partitions' messages go (see `fetch_queue`); unset only if librdkafka
    /// could not create the queue, and then messages stay on the consumer queue.
    fetch: OnceLock<Arc<FetchQueue>>,
    limits: ConsumerLimits,
    group_id: String,
    metrics: Arc<Metrics>,
    /// Set when the poll loop unsubscribes at shutdown.
    leaving: AtomicBool,
    /// Where a partition without a committed offset starts (`auto.offset.reset`), given to
    /// librdkafka at assignment ([`super::start_offsets`]).
    reset: Option<Offset>,
    /// sluice's own fetch path, when configured (`own_fetch`).
    own: OnceLock<OwnFetch>,
    /// The last generation given to the own fetch path.
    generation: std::sync::atomic::AtomicU64,
}

impl ClientContext for SluiceContext {
    /// librdkafka's periodic statistics carry each partition's last stable offset (the log
    /// end a read_committed consumer can reach): the consumer lag gauge is measured from it.
    fn stats(&self, stats: rdkafka::Statistics) {
        let reg = self.lock();
        for (topic, t) in &stats.topics {
            let Some(ours) = reg.lanes.get(topic) else {
                continue;
            };
            for (p, part) in &t.partitions {
                if *p < 0 || !ours.contains_key(p) {
                    continue;
                }
                let end = if part.ls_offset >= 0 {
                    part.ls_offset
                } else {
                    part.hi_offset
                };
                if end >= 0 {
                    self.metrics
                        .partition(&PartitionId::new(topic, *p))
                        .high_watermark
                        .fetch_max(end, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }
}

impl SluiceContext {
    fn has_lane(&self, topic: &str, partition: i32) -> bool {
        self.lock().has(topic, partition)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A poisoned lock means a panic on this same thread, which already ends the consumer;
        // the data inside stays consistent (every mutation is a single insert/remove).
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_lane(&self, registry: &mut Registry, topic: &str, partition: i32) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let id = PartitionId::new(topic, partition);
        let fence = Fence::default();
        let sink: Arc<dyn OffsetSink> = consumer;
        let committer = Committer::new(Arc::downgrade(&sink), id.clone(), fence.clone());
        drop(sink);
        let handle = self.factory.start(id.clone(), committer);
        tracing::info!(partition = %id, "lane started");
        let fetch = if self.own.get().is_some() {
            FetchedBy::Librdkafka
        } else {
            FetchedBy::LibrdkafkaOnly
        };
        registry.lanes.entry(topic.to_string()).or_default().insert(
            partition,
            LaneState {
                handle,
                stash: VecDeque::new(),
                paused: false,
                fetch,
                last_take: Instant::now(),
            },
        );
    }

    /// Closes the lanes of `tpl`, waits for them to drain (bounded), fences the stragglers.
    fn stop_lanes(&self, tpl: &TopicPartitionList, lost: bool) {
        let mut stopped = Vec::new();
        {
            let mut reg = self.lock();
            for el in tpl.elements() {
                if let Some(parts) = reg.lanes.get_mut(el.topic()) {
                    if let Some(lane) = parts.remove(&el.partition()) {
                        if let (FetchedBy::Own(_), Some(own)) = (lane.fetch, self.own.get()) {
                            own.remove(el.topic(), el.partition());
                        }
                        stopped.push((PartitionId::new(el.topic(), el.partition()), lane));
                    }
                }
            }
            reg.lanes.retain(|_, p| !p.is_empty());
        }
        let deadline = Instant::now() + self.limits.drain_timeout;
        let mut waiting = Vec::new();
        let draining = !stopped.is_empty();
        for (id, lane) in stopped {
            if lost {
                // Lost (not revoked) partitions may already belong to someone else: nothing of
                // ours may be committed for them any more.
                lane.handle.fence.raise();
            }
            let LaneHandle {
                records,
                finished,
                fence,
            } = lane.handle;
            drop(records);
            if lane.stash.iter().map(RecordChunk::len).sum::<usize>() > 0 {
                tracing::debug!(partition = %id, "dropping paused records of a revoked partition; the next owner reads them again");
            }
            waiting.push((id, finished, fence));
        }
        if draining {
            crate::failpoint::hit("during_revoke");
        }
        for (id, finished, fence) in waiting {
            let left = deadline.saturating_duration_since(Instant::now());
            match finished.recv_timeout(left) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    tracing::info!(partition = %id, "lane drained and stopped");
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    fence.raise();
                    tracing::warn!(partition = %id, timeout = ?self.limits.drain_timeout,
                        "lane did not drain in time; fenced: it will not commit, the next owner re-reads its records");
                }
            }
        }
    }
}

impl SluiceContext {
    /// The partitions whose start offset is known at assignment (committed, or the log start
    /// for `auto_offset_reset = "earliest"`) go to the own fetch path at once, paused in
    /// librdkafka before it fetches them: handed over only after librdkafka's first fetch,
    /// that first response (up to 4 MiB of compressed batches a partition) would be read by
    /// both. The others (a reset to the log end) are handed over after their first records
    /// ([`hand_over`]). Every partition started here is resumed in librdkafka first: one the
    /// own path read in an earlier assignment was left paused there.
    fn hand_over_at_start(
        &self,
        consumer: &BaseConsumer<Self>,
        assigned: &TopicPartitionList,
        started: &TopicPartitionList,
    ) {
        let Some(own) = self.own.get() else { return };
        if let Err(e) = consumer.resume(started) {
            tracing::warn!(error = %e, "resume of newly assigned partitions failed");
        }
        let mut starts: Vec<(String, i32, i64)> = Vec::new();
        let mut from_beginning = TopicPartitionList::new();
        for el in started.elements() {
            let (topic, partition) = (el.topic(), el.partition());
            match assigned
                .find_partition(topic, partition)
                .map(|a| a.offset())
            {
                Some(Offset::Offset(n)) if n >= 0 => starts.push((topic.to_string(), partition, n)),
                Some(Offset::Beginning) => {
                    // -2 as the timestamp of a ListOffsets request asks for the log start.
                    // Beginning always converts; were it refused, the partition would be
                    // handed over after its first records, like a failed lookup.
                    let _ =
                        from_beginning.add_partition_offset(topic, partition, Offset::Beginning);
                }
                _ => {}
            }
        }
        starts.extend(log_starts(consumer, from_beginning));
        if starts.is_empty() {
            return;
        }
        let tpl = partition_list(starts.iter().map(|(t, p, _)| (t.as_str(), *p)));
        if let Err(e) = consumer.pause(&tpl) {
            tracing::warn!(error = %e, "pause failed; librdkafka goes on reading the partitions");
            return;
        }
        let mut reg = self.lock();
        for (topic, partition, position) in starts {
            if let Some(lane) = reg.lane_mut(&topic, partition) {
                self.give_to_own(own, lane, &topic, partition, position);
            }
        }
    }

    /// The own fetch path reads the lane's partition from `position` on, under a new
    /// generation (librdkafka has it paused).
    fn give_to_own(
        &self,
        own: &OwnFetch,
        lane: &mut LaneState,
        topic: &str,
        partition: i32,
        position: i64,
    ) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        lane.fetch = FetchedBy::Own(generation);
        let headers = self.factory.reads_headers(topic);
        own.add(topic, partition, generation, position, headers, lane.paused);
        tracing::debug!(
            topic,
            partition,
            position,
            "partition read by the own fetch path"
        );
    }
}

/// A list of the given partitions, offsets unset.
fn partition_list<'a>(parts: impl IntoIterator<Item = (&'a str, i32)>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in parts {
        tpl.add_partition(topic, partition);
    }
    tpl
}

/// The log-start offsets of `partitions`, in one ListOffsets request per leader (one lookup
/// per partition took about 4 ms each, 34 of a narrow run's first 100 ms on 8 partitions). It
/// runs in the rebalance callback, so it is bounded (2 s); a partition whose lookup failed is
/// left out, and is handed over after its first records instead.
fn log_starts<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: TopicPartitionList,
) -> Vec<(String, i32, i64)> {
    if partitions.count() == 0 {
        return Vec::new();
    }
    match consumer.offsets_for_times(partitions, Duration::from_secs(2)) {
        Ok(found) => found
            .elements()
            .iter()
            .filter_map(|el| match (el.error(), el.offset()) {
                (Ok(()), Offset::Offset(n)) if n >= 0 => {
                    Some((el.topic().to_string(), el.partition(), n))
                }
                _ => None,
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "log-start lookup failed; handing over after the first records");
            Vec::new()
        }
    }
}

/// Resumes one partition in librdkafka.
fn resume_one(consumer: &GroupConsumer, topic: &str, partition: i32) {
    if let Err(e) = consumer.resume(&partition_list([(topic, partition)])) {
        tracing::warn!(error = %e, "resume failed");
    }
}

impl ConsumerContext for SluiceContext {
    /// rdkafka's default rebalance handling, with one step before an assignment: the new
    /// partitions get their start offsets ([`super::start_offsets`]).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let assigning = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if assigning {
            super::start_offsets::assign_starts(consumer, tpl, self.reset);
        }
        let tpl = &*tpl;
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            other => Rebalance::Error(KafkaError::Rebalance(RDKafkaErrorCode::from(other))),
        };
        self.pre_rebalance(consumer, &rebalance);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let done = match (assigning, cooperative) {
            (true, true) => consumer.incremental_assign(tpl),
            (true, false) => consumer.assign(tpl),
            (false, true) => consumer.incremental_unassign(tpl),
            (false, false) => consumer.unassign(),
        };
        if let Err(e) = done {
            tracing::error!(error = %e, "librdkafka refused the rebalance's (un)assignment");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                tracing::info!(
                    partitions = tpl.count(),
                    lost,
                    "partitions revoked; draining their lanes"
                );
                self.stop_lanes(tpl, lost);
            }
            Rebalance::Assign(tpl) => {
                // Before librdkafka assigns (and so starts fetching): every message of the
                // partition then arrives on the batch queue, none ahead of it on this one.
                if let Some(fq) = self.fetch.get() {
                    for el in tpl.elements() {
                        if !fq.route(el.topic(), el.partition()) {
                            tracing::debug!(topic = el.topic(), partition = el.partition(),
                                "partition not routed to the batch queue; its messages come one by one");
                        }
                    }
                }
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut reg = self.lock();
            let mut started = TopicPartitionList::new();
            for el in tpl.elements() {
                if !reg.has(el.topic(), el.partition()) {
                    self.start_lane(&mut reg, el.topic(), el.partition());
                    started.add_partition(el.topic(), el.partition());
                }
            }
            drop(reg);
            if self.own.get().is_some() && started.count() > 0 {
                self.hand_over_at_start(consumer, tpl, &started);
            }
        }
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if self.leaving.load(Ordering::SeqCst) {
            // Leaving the group (shutdown): an empty assignment is the point, not a warning.
            tracing::debug!(assigned, "assignment changed while leaving the group");
        } else if assigned == 0 {
            tracing::warn!(group = %self.group_id,
                "this instance has no partitions assigned: the group has more consumers than the topics have partitions; it stays idle as a standby");
        } else {
            tracing::info!(assigned, "assignment changed");
        }
    }
}

pub type GroupConsumer = BaseConsumer<SluiceContext>;

/// The running consumer thread.
pub struct ConsumerThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ConsumerThread {
    /// Creates the consumer, subscribes to `topics` and starts polling on a new thread.
    pub fn start(
        config: rdkafka::ClientConfig,
        topics: &[String],
        factory: Arc<dyn LaneFactory>,
        limits: ConsumerLimits,
        metrics: Arc<Metrics>,
        own_fetch: Option<own_fetch::Settings>,
    ) -> Result<ConsumerThread, KafkaError> {
        let group_id = config.get("group.id").unwrap_or_default().to_string();
        let context = SluiceContext {
            registry: Mutex::new(Registry::default()),
            factory,
            consumer: OnceLock::new(),
            fetch: OnceLock::new(),
            limits,
            group_id,
            metrics,
            leaving: AtomicBool::new(false),
            reset: super::start_offsets::reset_position(config.get("auto.offset.reset")),
            own: OnceLock::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
        };
        let consumer: Arc<GroupConsumer> = Arc::new(config.create_with_context(context)?);
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        // SAFETY: `Owned` closes the queue before it lets go of the consumer, on every path
        // (an error below, the end of the poll thread, a panic), and lanes hold only weak
        // references: the client is never destroyed before the queue.
        let fetch = unsafe { FetchQueue::new(consumer.client().native_ptr()) }.map(Arc::new);
        match &fetch {
            Some(fq) => {
                let _ = consumer.context().fetch.set(fq.clone());
            }
            None => {
                tracing::warn!("librdkafka gave no application queue; polling messages one by one")
            }
        }
        if let Some(settings) = own_fetch {
            let own = OwnFetch::start(settings, leader_lookup(Arc::downgrade(&consumer))).map_err(
                |e| KafkaError::ClientCreation(format!("cannot start the fetch thread: {e}")),
            )?;
            let _ = consumer.context().own.set(own);
        }
        let consumer = Owned { consumer, fetch };
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.consumer.subscribe(&names)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-consumer".into())
            .spawn(move || poll_loop(consumer, stop2, limits))
            .map_err(|e| {
                KafkaError::ClientCreation(format!("cannot start the consumer thread: {e}"))
            })?;
        Ok(ConsumerThread {
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the thread to leave the group (which drains and commits every lane) and waits
    /// for it on a blocking thread.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

/// The consumer with its batch queue: dropping it closes the queue first, then lets go of the
/// consumer (librdkafka's destroy must not run while an application queue is open).
struct Owned {
    consumer: Arc<GroupConsumer>,
    fetch: Option<Arc<FetchQueue>>,
}

impl Drop for Owned {
    fn drop(&mut self) {
        // The fetch thread holds only a weak reference, but stopping it first keeps it from
        // holding a strong one (a metadata lookup) while the consumer closes.
        if let Some(own) = self.consumer.context().own.get() {
            own.shutdown();
        }
        if let Some(fq) = &self.fetch {
            fq.close();
        }
        // `consumer` is dropped after this body: dropping the last reference closes the
        // consumer (rdkafka polls until closed); lanes hold only weak references, so the poll
        // thread's is the one that ends it.
    }
}

fn poll_loop(owned: Owned, stop: Arc<AtomicBool>, limits: ConsumerLimits) {
    let consumer = &owned.consumer;
    let ctx = consumer.context();
    let fetch = &owned.fetch;
    let mut batch = MessageBatch::default();
    // The chunk being filled for each partition seen, and how big its last one was: a new
    // chunk starts at that size instead of growing from small by doubling (each growth a
    // realloc, a copy and fresh pages; ~3% of CPU in the profile).
    let mut open: Vec<OpenChunk> = Vec::new();
    let mut unsubscribed = false;
    let mut stop_deadline: Option<Instant> = None;
    let mut errors = ErrorReport::default();
    let mut busy = false;
    let max_batch = limits.chunk_records.saturating_mul(4).max(1);
    loop {
        if stop.load(Ordering::SeqCst) && !unsubscribed {
            tracing::info!("leaving the consumer group: draining all lanes");
            // Unsubscribing revokes every partition through the rebalance callback, which
            // drains and commits the lanes: shutdown and rebalance share one path.
            ctx.leaving.store(true, Ordering::SeqCst);
            consumer.unsubscribe();
            unsubscribed = true;
            stop_deadline = Some(Instant::now() + limits.drain_timeout + Duration::from_secs(5));
        }
        if unsubscribed {
            let remaining = ctx.lock().count();
            let timed_out = stop_deadline.is_some_and(|d| Instant::now() > d);
            if remaining == 0 || timed_out {
                if timed_out && remaining > 0 {
                    tracing::warn!(remaining, "lanes still open at the shutdown deadline");
                    let reg = ctx.lock();
                    for parts in reg.lanes.values() {
                        for lane in parts.values() {
                            lane.handle.fence.raise();
                        }
                    }
                }
                break;
            }
        }
        let pressure = balance(consumer, limits.stash_bytes, fetch.is_some());
        let (lanes, own_lanes) = {
            let reg = ctx.lock();
            (reg.count(), reg.own_count())
        };
        let sized = limits.for_lanes(lanes);
        // Waiting on the batch queue delays rebalance events on the consumer queue by up to
        // this much: short while joining (no lanes yet), leaving, or holding paused partitions.
        let idle = if pressure.any_stashed || unsubscribed || lanes == 0 {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(100)
        };
        // The consumer queue: rebalances (served inside `poll`), commits, statistics and
        // errors; with the batch queue, messages only of partitions it could not route.
        let mut wait = match fetch {
            // Nothing else to do until a lane takes a chunk (lanes do not signal it).
            Some(_) if pressure.hold => HOLD_WAIT,
            Some(_) => Duration::ZERO,
            None if busy => Duration::ZERO,
            None => idle,
        };
        let mut polled = 0usize;
        // With every lane read by the own fetch path, the round waits on its chunks instead
        // of on librdkafka's queues (which then only carry events).
        let own_waits = own_lanes > 0 && own_lanes == lanes;
        if let Some(own) = ctx.own.get().filter(|_| !pressure.hold) {
            let mut wait = if own_waits && !busy && !unsubscribed {
                idle
            } else {
                Duration::ZERO
            };
            // A bounded round: chunks taken here may all go to the stashes.
            let most = if pressure.any_stashed {
                2
            } else {
                OWN_EVENTS_PER_ROUND
            };
            let mut taken = 0;
            while taken < most {
                let Some(event) = own.next(wait) else { break };
                wait = Duration::ZERO;
                taken += 1;
                own_event(consumer, event);
            }
            if taken == OWN_EVENTS_PER_ROUND {
                polled = max_batch;
            }
        }
        if own_lanes > 0 && !pressure.hold {
            wait = Duration::ZERO;
        }
        while polled < max_batch {
            match consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    ctx.metrics.consumer_errors.fetch_add(1, Ordering::Relaxed);
                    match fatal_consumer_error(&e) {
                        Some(why) => ctx.factory.consumer_failed(why),
                        None => errors.report(e.to_string()),
                    }
                    break;
                }
                Some(Ok(m)) => {
                    polled += 1;
                    let topic = m.topic();
                    let idx = open_index(&mut open, &*ctx.factory, topic, m.partition());
                    let size = m.payload_len() + m.key().map_or(0, <[u8]>::len);
                    append(consumer, &mut open, idx, size, &sized, |c| {
                        c.push_message(&m)
                    });
                    wait = Duration::ZERO;
                }
            }
        }
        // The batch queue: every routed partition's messages, many per call; untouched while
        // the lanes are behind (it fills, and librdkafka stops fetching until it has room).
        if let Some(fq) = fetch.as_ref().filter(|_| !pressure.hold) {
            let wait = if busy || polled > 0 || own_waits {
                Duration::ZERO
            } else if own_lanes > 0 {
                idle.min(Duration::from_millis(10))
            } else {
                idle
            };
            // With lanes behind, a smaller round: what it takes may all go to the stashes.
            let take = if pressure.any_stashed {
                limits.chunk_records.max(1)
            } else {
                max_batch
            };
            fq.consume(&mut batch, wait, take);
            polled += batch.len();
            let mut last: Option<(*const rdkafka::bindings::rd_kafka_topic_t, i32, usize)> = None;
            for i in 0..batch.len() {
                let Some(m) = batch.get(i) else { continue };
                if let Some(text) = m.error() {
                    ctx.metrics.consumer_errors.fetch_add(1, Ordering::Relaxed);
                    errors.report(text);
                    continue;
                }
                let idx = match last {
                    Some((t, p, idx)) if t == m.topic_handle() && p == m.partition() => idx,
                    _ => {
                        let Some(topic) = m.topic() else {
                            // Cannot happen (a fetched message always has its topic); it is
                            // not committed either way, so the partition's owner reads it.
                            tracing::warn!(
                                partition = m.partition(),
                                offset = m.offset(),
                                "message without a readable topic name skipped"
                            );
                            continue;
                        };
                        let idx = open_index(&mut open, &*ctx.factory, topic, m.partition());
                        last = Some((m.topic_handle(), m.partition(), idx));
                        idx
                    }
                };
                append_raw(consumer, &mut open, idx, m, &sized);
            }
            batch.clear();
        }
        busy = polled >= max_batch;
        for o in open.iter_mut() {
            if !o.chunk.is_empty() {
                let chunk = o.take();
                dispatch(consumer, &o.topic, o.partition, chunk, true);
            }
        }
        // Partitions no longer assigned keep no entry.
        open.retain(|o| ctx.has_lane(&o.topic, o.partition));
        if !unsubscribed {
            if let Some(fq) = fetch {
                hand_over(consumer, fq);
            }
        }
    }
    tracing::info!("consumer left the group");
    drop(batch);
    if !drop_within(owned, CLOSE_TIMEOUT) {
        tracing::warn!(timeout = ?CLOSE_TIMEOUT,
            "the Kafka consumer did not finish closing (broker unreachable?); not waiting for it: the lanes had committed or been fenced before");
    }
}

/// Chunks a round takes from the own fetch path at most (up to 1 MiB each) before it serves
/// librdkafka's queues again.
const OWN_EVENTS_PER_ROUND: usize = 16;

/// Moves the partitions that librdkafka has started reading to the own fetch path: each is
/// paused in librdkafka (a version barrier: what librdkafka still holds of it is never
/// handed out) and given to the own path at librdkafka's read position, the offset after the
/// last record the poll thread took (past any transaction marker), so the lane's records
/// stay contiguous. A partition whose position librdkafka cannot tell stays with it.
fn hand_over(consumer: &GroupConsumer, fq: &FetchQueue) {
    let ctx = consumer.context();
    let Some(own) = ctx.own.get() else { return };
    let mut ready: Vec<(String, i32, i64)> = Vec::new();
    {
        let reg = ctx.lock();
        for (topic, parts) in &reg.lanes {
            for (partition, lane) in parts {
                if lane.fetch != FetchedBy::Librdkafka {
                    continue;
                }
                if let Some(pos) = fq.cached_position(topic, *partition) {
                    ready.push((topic.clone(), *partition, pos));
                }
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    let tpl = partition_list(ready.iter().map(|(t, p, _)| (t.as_str(), *p)));
    let paused = consumer.pause(&tpl);
    let mut reg = ctx.lock();
    for (topic, partition, before) in ready {
        let Some(lane) = reg.lane_mut(&topic, partition) else {
            continue;
        };
        // The position again, now that nothing more of the partition can be handed out.
        let position = fq.cached_position(&topic, partition);
        match (&paused, position) {
            (Ok(()), Some(position)) => {
                tracing::debug!(
                    topic,
                    partition,
                    before,
                    "handing over after the first records"
                );
                ctx.give_to_own(own, lane, &topic, partition, position);
            }
            (result, _) => {
                lane.fetch = FetchedBy::LibrdkafkaOnly;
                tracing::warn!(topic, partition, error = ?result.as_ref().err(),
                    "partition stays with librdkafka: its read position could not be taken over");
                if result.is_ok() && !lane.paused {
                    resume_one(consumer, &topic, partition);
                }
            }
        }
    }
}

/// Serves one event of the own fetch path: a chunk goes to its lane; a partition handed back
/// is sought to where the own path stopped and resumed in librdkafka.
fn own_event(consumer: &GroupConsumer, event: own_fetch::Event) {
    let ctx = consumer.context();
    match event {
        own_fetch::Event::Chunk {
            topic,
            partition,
            generation,
            chunk,
        } => deliver(ctx, &topic, partition, chunk, Some(generation)),
        own_fetch::Event::GiveBack {
            topic,
            partition,
            generation,
            at,
            why,
        } => {
            let paused = {
                let mut reg = ctx.lock();
                let Some(lane) = reg.lane_mut(&topic, partition) else {
                    return;
                };
                if lane.fetch != FetchedBy::Own(generation) {
                    return;
                }
                lane.fetch = FetchedBy::LibrdkafkaOnly;
                lane.paused
            };
            ctx.metrics
                .own_fetch
                .handbacks
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(topic, partition, offset = at, reason = %why,
                "librdkafka reads the partition again from where the own fetch path stopped");
            if let Err(e) = consumer.seek(&topic, partition, Offset::Offset(at), SEEK_TIMEOUT) {
                // librdkafka would resume from where the own path took the partition over and
                // read records the lane has had again: stop rather than duplicate or skip.
                ctx.factory.consumer_failed(format!(
                    "cannot move the read position of {topic}/{partition} to offset {at} ({e}) after the own fetch path stopped: {why}"
                ));
                return;
            }
            if !paused {
                resume_one(consumer, &topic, partition);
            }
        }
    }
}

const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Partition leaders from librdkafka's metadata, for the own fetch path.
fn leader_lookup(consumer: Weak<GroupConsumer>) -> own_fetch::LeaderLookup {
    Box::new(move |topic: &str| {
        let c = consumer.upgrade().ok_or("the consumer is closing")?;
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let brokers: HashMap<i32, String> = md
            .brokers()
            .iter()
            .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
            .collect();
        let mut leaders = own_fetch::Leaders::new();
        for t in md.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                if p.error().is_none() {
                    if let Some(addr) = brokers.get(&p.leader()) {
                        leaders.insert(p.id(), addr.clone());
                    }
                }
            }
        }
        Ok(leaders)
    })
}

/// How long a round waits on the consumer's events while the batch queue is held: a lane
/// takes a queued chunk (up to 1 MiB of records) in a few milliseconds.
const HOLD_WAIT: Duration = Duration::from_millis(2);

/// How long shutdown waits for librdkafka to close the consumer once the lanes are done.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Drops `value` on a thread of its own and waits up to `limit` for that to finish. Returns
/// whether it did; if not, the thread is left to finish (or to end with the process).
fn drop_within<T: Send + 'static>(value: T, limit: Duration) -> bool {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("consumer-close".into())
        .spawn(move || {
            drop(value);
            let _ = done_tx.send(());
        });
    match spawned {
        Ok(_) => done_rx.recv_timeout(limit).is_ok(),
        // The closure, and the value with it, was dropped here when the spawn failed.
        Err(_) => true,
    }
}

/// Group errors librdkafka retries forever although only a change of configuration (or of
/// the broker's ACLs) can end them: a session timeout outside the broker's bounds, and a user
/// the group's ACLs refuse. The run stops on them, naming the setting, instead of retrying
/// without consuming anything. Returns what to say.
pub fn fatal_consumer_error(e: &KafkaError) -> Option<String> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match e.rdkafka_error_code()? {
        Code::InvalidSessionTimeout => Some(format!(
            "{e}: kafka.session_timeout is outside the broker's group.min.session.timeout.ms and group.max.session.timeout.ms (6s and 30m by default)"
        )),
        Code::GroupAuthorizationFailed => Some(format!(
            "{e}: the user may not use kafka.group_id (the broker's ACLs need READ on that group)"
        )),
        _ => None,
    }
}

/// Consumer errors, said once and then every 30 s while the same one lasts: librdkafka
/// reconnects by itself, and while a broker is away it reports the same error again and again.
#[derive(Default)]
struct ErrorReport {
    last: Option<(String, Instant)>,
}

impl ErrorReport {
    fn report(&mut self, text: String) {
        let repeat = self
            .last
            .as_ref()
            .is_some_and(|(t, at)| *t == text && at.elapsed() < Duration::from_secs(30));
        if !repeat {
            tracing::warn!(error = %text, "consumer error (librdkafka retries by itself)");
            self.last = Some((text, Instant::now()));
        }
    }
}

/// The open chunk of `topic`/`partition`, created when the partition is first seen.
fn open_index(
    open: &mut Vec<OpenChunk>,
    factory: &dyn LaneFactory,
    topic: &str,
    partition: i32,
) -> usize {
    if let Some(i) = open
        .iter()
        .position(|o| o.partition == partition && o.topic == topic)
    {
        return i;
    }
    open.push(OpenChunk {
        topic: topic.to_string(),
        partition,
        chunk: RecordChunk::default(),
        hint: 64 * 1024,
        headers: factory.reads_headers(topic),
    });
    open.len() - 1
}

/// Appends one message of `size` bytes to open chunk `idx`, handing the chunk to its lane
/// first when the message would take it past a limit.
fn append(
    consumer: &GroupConsumer,
    open: &mut [OpenChunk],
    idx: usize,
    size: usize,
    limits: &ConsumerLimits,
    push: impl FnOnce(&mut RecordChunk),
) {
    let Some(o) = open.get_mut(idx) else {
        return;
    };
    let over = !o.chunk.is_empty() && o.chunk.byte_len().saturating_add(size) > limits.chunk_bytes;
    if over || !o.chunk.has_room_for(size) || o.chunk.len() >= limits.chunk_records {
        let full = o.take();
        dispatch(consumer, &o.topic, o.partition, full, false);
    }
    push(o.chunk_for_next(limits.chunk_records));
}

fn append_raw(
    consumer: &GroupConsumer,
    open: &mut [OpenChunk],
    idx: usize,
    m: RawMessage<'_>,
    limits: &ConsumerLimits,
) {
    let size = m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
    append(consumer, open, idx, size, limits, |c| m.push_to(c));
}

struct OpenChunk {
    topic: String,
    partition: i32,
    chunk: RecordChunk,
    /// Bytes to allocate for the next chunk: the last one's size plus an eighth.
    hint: usize,
    /// Whether the partition's lane uses headers ([`LaneFactory::reads_headers`]).
    headers: bool,
}

impl OpenChunk {
    fn take(&mut self) -> RecordChunk {
        let n = self.chunk.byte_len();
        self.hint = n.saturating_add(n / 8).clamp(4096, 64 << 20);
        std::mem::take(&mut self.chunk)
    }

    /// The chunk to append to, allocated at the hinted size when it starts.
    fn chunk_for_next(&mut self, records: usize) -> &mut RecordChunk {
        if self.chunk.is_empty() && self.chunk.byte_capacity() == 0 {
            self.chunk = RecordChunk::with_capacity(self.hint, records);
            if !self.headers {
                self.chunk.skip_headers();
            }
        }
        &mut self.chunk
    }
}

/// Hands a chunk to its lane, or stashes it when the lane is behind (see [`balance`]).
/// `round_end`: the chunk holds the last records this round took of its partition, so the
/// partition's read position (past any transaction marker the round skipped) is its own.
fn dispatch(
    consumer: &GroupConsumer,
    topic: &str,
    partition: i32,
    mut chunk: RecordChunk,
    round_end: bool,
) {
    let ctx = consumer.context();
    if let Some(fq) = ctx.fetch.get() {
        if let Some(end) = fq.cached_log_end(topic, partition) {
            chunk.set_log_end(end);
            // Only needed when the chunk stops short of that end: one more lock then.
            if round_end && !chunk.caught_up() {
                if let Some(pos) = fq.cached_position(topic, partition) {
                    chunk.set_read_to(pos);
                }
            }
        }
    }
    deliver(ctx, topic, partition, chunk, None);
}

/// Hands a chunk to its lane, or stashes it. `own`: the chunk comes from sluice's own fetch
/// path under this generation, and is dropped unless the lane is still read that way under
/// it; chunks from librdkafka are for lanes librdkafka reads.
fn deliver(ctx: &SluiceContext, topic: &str, partition: i32, chunk: RecordChunk, own: Option<u64>) {
    let mut reg = ctx.lock();
    let Some(lane) = reg.lane_mut(topic, partition) else {
        // Lanes start in the assign callback, before librdkafka fetches anything for them;
        // a partition without one was revoked a moment ago and its fetched messages were still
        // in flight. They are not ours to store: nothing of them is committed, so the
        // partition's next owner reads them.
        tracing::debug!(
            topic,
            partition,
            records = chunk.len(),
            "records of a revoked partition dropped; its next owner reads them"
        );
        return;
    };
    let current = match (own, lane.fetch) {
        (Some(g), FetchedBy::Own(now)) => g == now,
        (Some(_), _) => false,
        (None, FetchedBy::Own(_)) => false,
        (None, _) => true,
    };
    if !current {
        // A chunk of an earlier reading of the partition (revoked and assigned again, or
        // handed between the paths): the lane reads on from a position after it or before
        // it, so it is not the lane's. Nothing of it is committed.
        tracing::debug!(
            topic,
            partition,
            records = chunk.len(),
            "records of an earlier reading of the partition dropped"
        );
        return;
    }
    if own.is_some() {
        ctx.metrics
            .own_fetch
            .records
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if let Some(end) = chunk.log_end() {
            ctx.metrics
                .partition(&PartitionId::new(topic, partition))
                .high_watermark
                .fetch_max(end, Ordering::Relaxed);
        }
    }
    if lane.paused || !lane.stash.is_empty() {
        lane.stash.push_back(chunk);
        return;
    }
    match lane.handle.records.try_send(chunk) {
        Ok(()) => lane.last_take = Instant::now(),
        Err(TrySendError::Full(chunk)) => lane.stash.push_back(chunk),
        Err(TrySendError::Closed(_)) => {
            // The lane ended (fatal error reported by the pipeline); its records are not
            // committed, so they are read again by whoever owns the partition next.
        }
    }
}

/// The poll thread's backpressure step: moves stashed chunks into lanes that have room again,
/// resumes partitions whose lanes took all of theirs, and applies `relieve`: pauses the
/// partitions of stalled lanes and says whether to hold the batch queue. With
/// no batch queue (messages come with the consumer's events) holding is impossible, so every
/// lane with a stash is paused instead.
fn balance(consumer: &GroupConsumer, limit: usize, can_hold: bool) -> Pressure {
    let ctx = consumer.context();
    let mut reg = ctx.lock();
    let mut any_stashed = false;
    let mut resume = TopicPartitionList::new();
    let now = Instant::now();
    let mut lanes = 0usize;
    // (topic, partition) and what waits for each unpaused lane.
    let mut unpaused: Vec<(&str, i32, Waiting)> = Vec::new();
    for (topic, parts) in reg.lanes.iter_mut() {
        for (partition, lane) in parts.iter_mut() {
            lanes += 1;
            while let Some(chunk) = lane.stash.pop_front() {
                match lane.handle.records.try_send(chunk) {
                    Ok(()) => lane.last_take = now,
                    Err(TrySendError::Full(chunk)) => {
                        lane.stash.push_front(chunk);
                        break;
                    }
                    Err(TrySendError::Closed(_)) => {
                        lane.stash.clear();
                        break;
                    }
                }
            }
            if !lane.stash.is_empty() {
                any_stashed = true;
            } else if lane.paused {
                lane.paused = false;
                match (lane.fetch, ctx.own.get()) {
                    (FetchedBy::Own(_), Some(own)) => own.set_paused(topic, *partition, false),
                    _ => {
                        resume.add_partition(topic, *partition);
                    }
                }
            }
            if !lane.paused {
                let stashed = lane.stash.iter().map(RecordChunk::byte_len).sum();
                let stalled = stashed > 0 && now.duration_since(lane.last_take) >= STALL;
                unpaused.push((topic.as_str(), *partition, Waiting { stashed, stalled }));
            }
        }
    }
    let waiting: Vec<Waiting> = unpaused.iter().map(|u| u.2).collect();
    let (chosen, hold) = relieve(&waiting, lanes, limit);
    let mut pause = TopicPartitionList::new();
    let to_pause: Vec<(String, i32)> = if hold && !can_hold {
        unpaused
            .iter()
            .filter(|u| u.2.stashed > 0)
            .map(|u| (u.0.to_string(), u.1))
            .collect()
    } else {
        chosen
            .iter()
            .filter_map(|&i| unpaused.get(i))
            .map(|u| (u.0.to_string(), u.1))
            .collect()
    };
    for (topic, partition) in &to_pause {
        if let Some(lane) = reg.lanes.get_mut(topic).and_then(|p| p.get_mut(partition)) {
            lane.paused = true;
            match (lane.fetch, ctx.own.get()) {
                (FetchedBy::Own(_), Some(own)) => own.set_paused(topic, *partition, true),
                _ => {
                    pause.add_partition(topic, *partition);
                }
            }
        }
    }
    drop(reg);
    if resume.count() > 0 {
        if let Err(e) = consumer.resume(&resume) {
            tracing::warn!(error = %e, "resume failed");
        }
    }
    if pause.count() > 0 {
        tracing::debug!(
            partitions = pause.count(),
            "stalled lanes: pausing their partitions"
        );
        if let Err(e) = consumer.pause(&pause) {
            tracing::warn!(error = %e, "pause failed");
        }
    }
    Pressure {
        any_stashed,
        hold: hold && can_hold,
    }
}

/// See [`balance`].
struct Pressure {
    /// Some lane has chunks waiting for room in its queue.
    any_stashed: bool,
    /// Take no messages from the batch queue this round.
    hold: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct SlowDrop(Duration, Arc<AtomicBool>);

    impl Drop for SlowDrop {
        fn drop(&mut self) {
            std::thread::sleep(self.0);
            self.1.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn closing_is_waited_for_but_only_up_to_the_limit() {
        let dropped = Arc::new(AtomicBool::new(false));
        assert!(drop_within(
            SlowDrop(Duration::from_millis(10), dropped.clone()),
            Duration::from_secs(10)
        ));
        assert!(dropped.load(Ordering::SeqCst), "waited for a quick close");

        let dropped = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        assert!(!drop_within(
            SlowDrop(Duration::from_secs(3), dropped.clone()),
            Duration::from_millis(100)
        ));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "did not wait for a hung close"
        );
        assert!(!dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn chunks_shrink_beyond_the_full_size_lane_count() {
        let full = ConsumerLimits {
            chunk_records: 2048,
            chunk_bytes: 1 << 20,
            drain_timeout: Duration::from_secs(30),
            stash_bytes: 8 << 20,
            full_size_lanes: 8,
        };
        for lanes in [0, 1, 8] {
            let l = full.for_lanes(lanes);
            assert_eq!(
                (l.chunk_bytes, l.stash_bytes),
                (1 << 20, 8 << 20),
                "{lanes} lanes"
            );
        }
        // 32 lanes queue together what 8 queue at full size; the stash limit is shared.
        let l = full.for_lanes(32);
        assert_eq!((l.chunk_bytes, l.stash_bytes), (256 << 10, 8 << 20));
        assert_eq!(l.chunk_records, 2048);
        // Never below the floor.
        let l = full.for_lanes(10_000);
        assert_eq!(l.chunk_bytes, MIN_CHUNK_BYTES);
    }

    #[test]
    fn lanes_behind_together_hold_the_queue_and_only_stalled_lanes_are_paused() {
        const MIB: usize = 1 << 20;
        let limit = 8 * MIB;
        let behind = |stashed: usize| Waiting {
            stashed,
            stalled: false,
        };
        let stalled = |stashed: usize| Waiting {
            stashed,
            stalled: true,
        };
        // Under the limit: take messages, pause nobody.
        assert_eq!(relieve(&[behind(MIB); 7], 8, limit), (vec![], false));
        assert_eq!(relieve(&[], 0, limit), (vec![], false));
        // A backlog: every lane behind, by the same or not, none stalled. Hold, pause nobody
        // (a pause would throw away what librdkafka prefetched).
        assert_eq!(relieve(&[behind(MIB); 8], 8, limit), (vec![], true));
        assert_eq!(
            relieve(&[behind(6 * MIB), behind(2 * MIB), behind(0)], 3, limit),
            (vec![], true)
        );
        // A single lane: held, even stalled (no other lane to hold up).
        assert_eq!(relieve(&[stalled(limit)], 1, limit), (vec![], true));
        // One lane stalled while the others are held for it: paused, the others flow.
        assert_eq!(
            relieve(&[behind(0), stalled(limit), behind(0)], 3, limit),
            (vec![1], false)
        );
        // Stalled without pressure: paused once it holds its share (1 MiB of 8 across 8
        // lanes), so what paused lanes keep stays small.
        assert_eq!(
            relieve(&[stalled(MIB - 1), behind(0)], 8, limit),
            (vec![], false)
        );
        assert_eq!(
            relieve(&[stalled(MIB), behind(0)], 8, limit),
            (vec![0], false)
        );
        // Pausing some may still leave enough to hold.
        let mut lanes = vec![behind(MIB); 8];
        lanes.push(stalled(MIB / 2));
        assert_eq!(relieve(&lanes, 9, limit), (vec![8], true));
    }
}
