//! The group consumer: one OS thread polls librdkafka, serves rebalances and hands records to
//! one lane per assigned partition. It knows nothing of ClickHouse.
//!
//! Why a dedicated thread and not split partition queues: the rebalance callback runs inside
//! `poll`, and on revoke it must wait (bounded) for the lanes of the revoked partitions to
//! flush and commit. Blocking a thread of our own is harmless; blocking a tokio worker would
//! stall the very lanes it waits for. One queue also keeps per-partition order trivially
//! (split queues can deliver a partition's first messages on the main queue, out of order).
//!
//! Backpressure: each lane has a bounded channel of chunks. When it is full the partition is
//! paused in librdkafka and its chunk kept aside; it resumes when the lane caught up. The poll
//! loop itself never blocks on a lane, so the group heartbeat and `max.poll.interval.ms`
//! are served even while ClickHouse is down and every lane is retrying.
//!
//! Rebalance: on revoke (or shutdown, which unsubscribes and so revokes everything) the
//! revoked lanes' channels are closed; each lane inserts and commits what it holds and ends.
//! A lane still running at the drain deadline is fenced: it can no longer commit, so the new
//! owner starts from what was committed, never from what this instance merely sent.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc::error::TrySendError;

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
}

struct LaneState {
    handle: LaneHandle,
    stash: VecDeque<RecordChunk>,
    paused: bool,
}

#[derive(Default)]
struct Registry {
    lanes: HashMap<String, HashMap<i32, LaneState>>,
}

impl Registry {
    fn count(&self) -> usize {
        self.lanes.values().map(|m| m.len()).sum()
    }
}

pub struct SluiceContext {
    registry: Mutex<Registry>,
    factory: Arc<dyn LaneFactory>,
    consumer: OnceLock<Weak<BaseConsumer<SluiceContext>>>,
    limits: ConsumerLimits,
    group_id: String,
    metrics: Arc<Metrics>,
    /// Set when the poll loop unsubscribes at shutdown.
    leaving: AtomicBool,
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
        self.lock()
            .lanes
            .get(topic)
            .is_some_and(|p| p.contains_key(&partition))
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
        registry.lanes.entry(topic.to_string()).or_default().insert(
            partition,
            LaneState {
                handle,
                stash: VecDeque::new(),
                paused: false,
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

impl ConsumerContext for SluiceContext {
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
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut reg = self.lock();
            for el in tpl.elements() {
                let exists = reg
                    .lanes
                    .get(el.topic())
                    .is_some_and(|p| p.contains_key(&el.partition()));
                if !exists {
                    self.start_lane(&mut reg, el.topic(), el.partition());
                }
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
    ) -> Result<ConsumerThread, KafkaError> {
        let group_id = config.get("group.id").unwrap_or_default().to_string();
        let context = SluiceContext {
            registry: Mutex::new(Registry::default()),
            factory,
            consumer: OnceLock::new(),
            limits,
            group_id,
            metrics,
            leaving: AtomicBool::new(false),
        };
        let consumer: Arc<GroupConsumer> = Arc::new(config.create_with_context(context)?);
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
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

fn poll_loop(consumer: Arc<GroupConsumer>, stop: Arc<AtomicBool>, limits: ConsumerLimits) {
    let ctx = consumer.context();
    // The chunk being filled for each partition seen, and how big its last one was: a new
    // chunk starts at that size instead of growing from small by doubling (each growth a
    // realloc, a copy and fresh pages; ~3% of CPU in the profile).
    let mut open: Vec<OpenChunk> = Vec::new();
    let mut unsubscribed = false;
    let mut stop_deadline: Option<Instant> = None;
    let mut last_error: Option<(String, Instant)> = None;
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
        let any_paused = resume_caught_up(&consumer);
        let timeout = if any_paused || unsubscribed {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(100)
        };
        // Gather a run of messages, then hand them over chunk by chunk.
        let mut polled = 0usize;
        let mut wait = timeout;
        while polled < limits.chunk_records * 4 {
            match consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    // librdkafka reconnects by itself; while a broker is away it reports the
                    // same error on every poll. Say it once, then every 30 s while it lasts.
                    let text = e.to_string();
                    let repeat = last_error
                        .as_ref()
                        .is_some_and(|(t, at): &(String, Instant)| {
                            *t == text && at.elapsed() < Duration::from_secs(30)
                        });
                    if !repeat {
                        tracing::warn!(error = %text, "consumer error (librdkafka retries by itself)");
                        last_error = Some((text, Instant::now()));
                    }
                    break;
                }
                Some(Ok(m)) => {
                    polled += 1;
                    let topic = m.topic();
                    let partition = m.partition();
                    let idx = match open
                        .iter()
                        .position(|o| o.partition == partition && o.topic == topic)
                    {
                        Some(i) => i,
                        None => {
                            open.push(OpenChunk {
                                topic: topic.to_string(),
                                partition,
                                chunk: RecordChunk::default(),
                                hint: 64 * 1024,
                            });
                            open.len() - 1
                        }
                    };
                    let size = m.payload_len() + m.key().map_or(0, <[u8]>::len);
                    if let Some(o) = open.get_mut(idx) {
                        let over = !o.chunk.is_empty()
                            && o.chunk.byte_len().saturating_add(size) > limits.chunk_bytes;
                        if over
                            || !o.chunk.has_room_for(size)
                            || o.chunk.len() >= limits.chunk_records
                        {
                            let full = o.take();
                            dispatch(&consumer, topic, partition, full);
                        }
                        o.chunk_for_next(limits.chunk_records).push_message(&m);
                    }
                    wait = Duration::ZERO;
                }
            }
        }
        for o in open.iter_mut() {
            if !o.chunk.is_empty() {
                let chunk = o.take();
                dispatch(&consumer, &o.topic, o.partition, chunk);
            }
        }
        // Partitions no longer assigned keep no entry.
        open.retain(|o| ctx.has_lane(&o.topic, o.partition));
    }
    tracing::info!("consumer left the group");
    // Dropping the last reference closes the consumer (rdkafka polls until closed); lanes
    // hold only weak references, so this thread's Arc is the one that ends it.
    drop(consumer);
}

struct OpenChunk {
    topic: String,
    partition: i32,
    chunk: RecordChunk,
    /// Bytes to allocate for the next chunk: the last one's size plus an eighth.
    hint: usize,
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
        }
        &mut self.chunk
    }
}

/// Hands a chunk to its lane, or stashes it and pauses the partition when the lane is behind.
fn dispatch(consumer: &GroupConsumer, topic: &str, partition: i32, chunk: RecordChunk) {
    let ctx = consumer.context();
    let mut reg = ctx.lock();
    let exists = reg
        .lanes
        .get(topic)
        .is_some_and(|p| p.contains_key(&partition));
    if !exists {
        // Messages arrive only for assigned partitions, and lanes are started on assignment;
        // a message before its lane would be a librdkafka ordering surprise: start the lane.
        tracing::warn!(
            topic,
            partition,
            "message for a partition without a lane; starting one"
        );
        ctx.start_lane(&mut reg, topic, partition);
    }
    let Some(lane) = reg.lanes.get_mut(topic).and_then(|p| p.get_mut(&partition)) else {
        return;
    };
    if lane.paused || !lane.stash.is_empty() {
        lane.stash.push_back(chunk);
        return;
    }
    match lane.handle.records.try_send(chunk) {
        Ok(()) => {}
        Err(TrySendError::Full(chunk)) => {
            lane.stash.push_back(chunk);
            lane.paused = true;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition);
            if let Err(e) = consumer.pause(&tpl) {
                tracing::warn!(topic, partition, error = %e, "pause failed");
            }
        }
        Err(TrySendError::Closed(_)) => {
            // The lane ended (fatal error reported by the pipeline); its records are not
            // committed, so they are read again by whoever owns the partition next.
        }
    }
}

/// Moves stashed chunks into lanes that have room again and resumes their partitions.
/// Returns whether any partition is still paused.
fn resume_caught_up(consumer: &GroupConsumer) -> bool {
    let ctx = consumer.context();
    let mut reg = ctx.lock();
    let mut still_paused = false;
    let mut resume = TopicPartitionList::new();
    for (topic, parts) in reg.lanes.iter_mut() {
        for (partition, lane) in parts.iter_mut() {
            while let Some(chunk) = lane.stash.pop_front() {
                match lane.handle.records.try_send(chunk) {
                    Ok(()) => {}
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
            if lane.paused {
                if lane.stash.is_empty() {
                    lane.paused = false;
                    resume.add_partition(topic, *partition);
                } else {
                    still_paused = true;
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
    still_paused
}
