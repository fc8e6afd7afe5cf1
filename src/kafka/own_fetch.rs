//! sluice's own fetch path (`kafka.fetch = "sluice"`): one thread sends Kafka Fetch requests
//! to the partitions' leaders itself and reads the record batches straight into the lanes'
//! chunks, without librdkafka's per-message op, queue hop and copy.
//!
//! Why: on 200-byte messages, taking messages out of librdkafka cost about 0.4 of sluice's
//! ~1 CPU-s per million rows (`bench/results/profile-2026-12-03.txt`); reading the same
//! batches here costs about 0.1.
//!
//! What stays with librdkafka: the group (membership, assignment, heartbeats), the start
//! position of each partition, commits, metadata, and every case this path does not handle.
//! A partition is handed over where its start is known (its committed offset, or the log
//! start), before librdkafka fetches anything, or else once librdkafka has delivered its first
//! messages, at librdkafka's read position; the poll thread pauses it in librdkafka first.
//! Anything this path does not read (a broker error, a lost connection, a TLS or SASL
//! handshake that fails, an old message format, a batch inflating beyond its bound) hands the
//! partition back: the poll thread seeks librdkafka to the exact offset this path stopped at
//! and resumes it there for the rest of the assignment. So the offsets the lanes see are
//! contiguous across both paths, and nothing is read twice or skipped. TLS and SASL are
//! spoken with the settings librdkafka gets (`secure`).
//!
//! Every partition given here carries a generation; chunks and hand-backs carry it too, and
//! the poll thread drops those of an older generation (a partition revoked and assigned
//! again must not receive the old assignment's records).
//!
//! Order: every request lists the partitions in the same order, and a broker fills its
//! response in that order up to the size limit, so a backlog drains a few partitions at a
//! time, as it does with librdkafka here. Rotating the order (the served partitions to the
//! back, as the Java client does) was measured and not kept: every lane then holds a batch at
//! once, and the memory budget cuts them smaller (README, "Who fetches the records").
//!
//! Backpressure: chunks go to the poll thread over a bounded channel; when the poll thread
//! holds (the lanes are behind), this thread blocks on it and sends no fetch. A stalled lane's
//! partition is paused here (left out of the requests) while the others flow.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use super::batches::BatchReader;
use super::records::RecordChunk;
use super::wire::{parse_fetch_response, Connection, FetchLimits, FetchPartition};

/// Leaders of a topic's partitions: partition -> "host:port".
pub type Leaders = HashMap<i32, String>;

/// Looks up the leaders of a topic (librdkafka's metadata, `consumer.rs`).
pub type LeaderLookup = Box<dyn FnMut(&str) -> Result<Leaders, String> + Send>;

/// How this path fetches.
#[derive(Debug, Clone)]
pub struct Settings {
    pub client_id: String,
    /// How long the broker may hold a fetch while no partition has anything new.
    pub max_wait: Duration,
    /// Bytes per response, and per partition in it.
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// Chunk limits (`ConsumerLimits`).
    pub chunk_records: usize,
    pub chunk_bytes: usize,
    /// Chunks in flight to the poll thread.
    pub queue_chunks: usize,
    /// TLS and SASL, as the config gives them to librdkafka.
    pub security: super::secure::Security,
}

/// What the fetch thread reports to the poll thread.
pub enum Event {
    /// Records of a partition, in offset order, contiguous with its previous chunk.
    Chunk {
        topic: String,
        partition: i32,
        generation: u64,
        chunk: RecordChunk,
    },
    /// This path stops reading the partition; librdkafka is to read it from `at` on.
    GiveBack {
        topic: String,
        partition: i32,
        generation: u64,
        at: i64,
        why: String,
    },
}

enum Command {
    Add(Part),
    Remove {
        topic: String,
        partition: i32,
    },
    Pause {
        topic: String,
        partition: i32,
        paused: bool,
    },
}

/// The fetch thread. [`OwnFetch::shutdown`] (or dropping it) stops the thread and waits for
/// it: a round ends within the broker's `max_wait` plus reading its answer.
pub struct OwnFetch {
    // Behind locks so that the handle can live in the (shared) consumer context and be shut
    // down from there; the poll thread is the one user of each.
    commands: Mutex<Option<Sender<Command>>>,
    events: Mutex<Option<Receiver<Event>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl OwnFetch {
    pub fn start(settings: Settings, leaders: LeaderLookup) -> std::io::Result<OwnFetch> {
        let (commands, command_rx) = std::sync::mpsc::channel();
        let (event_tx, events) = std::sync::mpsc::sync_channel(settings.queue_chunks.max(1));
        let thread = std::thread::Builder::new()
            .name("sluice-fetch".into())
            .spawn(move || {
                Fetcher {
                    settings,
                    leaders,
                    parts: Vec::new(),
                    conns: HashMap::new(),
                    events: event_tx,
                    reader: BatchReader::default(),
                    buf: Vec::new(),
                }
                .run(command_rx)
            })?;
        Ok(OwnFetch {
            commands: Mutex::new(Some(commands)),
            events: Mutex::new(Some(events)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, c: Command) {
        if let Some(tx) = locked(&self.commands).as_ref() {
            let _ = tx.send(c);
        }
    }

    /// Reads `topic`/`partition` from `position` on, under `generation`.
    pub fn add(
        &self,
        topic: &str,
        partition: i32,
        generation: u64,
        position: i64,
        headers: bool,
        paused: bool,
    ) {
        self.send(Command::Add(Part {
            topic: topic.to_string(),
            partition,
            generation,
            position,
            headers,
            paused,
            leader: None,
            hint: 64 << 10,
        }));
    }

    /// Stops reading the partition (revoked); chunks already sent stay in the channel and are
    /// dropped by their generation.
    pub fn remove(&self, topic: &str, partition: i32) {
        self.send(Command::Remove {
            topic: topic.to_string(),
            partition,
        });
    }

    pub fn set_paused(&self, topic: &str, partition: i32, paused: bool) {
        self.send(Command::Pause {
            topic: topic.to_string(),
            partition,
            paused,
        });
    }

    /// The next event, waiting up to `wait`.
    pub fn next(&self, wait: Duration) -> Option<Event> {
        let events = locked(&self.events);
        let events = events.as_ref()?;
        if wait.is_zero() {
            return events.try_recv().ok();
        }
        events.recv_timeout(wait).ok()
    }

    /// Stops the thread and waits for it. Both channels are closed first: the thread ends at
    /// its next command check, or at once if it is blocked sending an event.
    pub fn shutdown(&self) {
        drop(locked(&self.commands).take());
        drop(locked(&self.events).take());
        let thread = locked(&self.thread).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for OwnFetch {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Part {
    topic: String,
    partition: i32,
    generation: u64,
    position: i64,
    headers: bool,
    paused: bool,
    leader: Option<String>,
    /// Size of the last chunk, so the next one starts at about that size.
    hint: usize,
}

struct Fetcher {
    settings: Settings,
    leaders: LeaderLookup,
    parts: Vec<Part>,
    conns: HashMap<String, Connection>,
    events: SyncSender<Event>,
    reader: BatchReader,
    buf: Vec<u8>,
}

/// A fetch gets this much longer than the broker may hold it before it counts as lost.
const RESPONSE_GRACE: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_WAIT: Duration = Duration::from_millis(100);

impl Fetcher {
    fn run(mut self, commands: Receiver<Command>) {
        loop {
            let wait = if self.parts.iter().any(|p| !p.paused) {
                Duration::ZERO
            } else {
                IDLE_WAIT
            };
            let first = if wait.is_zero() {
                match commands.try_recv() {
                    Ok(c) => Some(c),
                    Err(std::sync::mpsc::TryRecvError::Empty) => None,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                }
            } else {
                match commands.recv_timeout(wait) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            };
            let mut next = first;
            while let Some(c) = next {
                self.apply(c);
                next = commands.try_recv().ok();
            }
            if !self.round() {
                return;
            }
        }
    }

    fn apply(&mut self, c: Command) {
        match c {
            Command::Add(part) => {
                self.parts
                    .retain(|p| !(p.partition == part.partition && p.topic == part.topic));
                self.parts.push(part);
            }
            Command::Remove { topic, partition } => self
                .parts
                .retain(|p| !(p.partition == partition && p.topic == topic)),
            Command::Pause {
                topic,
                partition,
                paused,
            } => {
                if let Some(p) = self
                    .parts
                    .iter_mut()
                    .find(|p| p.partition == partition && p.topic == topic)
                {
                    p.paused = paused;
                }
            }
        }
    }

    /// Hands partition `i` back to librdkafka. Returns false when the poll thread is gone.
    fn give_back(&mut self, i: usize, why: String) -> bool {
        let p = self.parts.swap_remove(i);
        tracing::warn!(topic = %p.topic, partition = p.partition, offset = p.position, reason = %why,
            "own fetch path hands the partition back to librdkafka");
        self.events
            .send(Event::GiveBack {
                topic: p.topic,
                partition: p.partition,
                generation: p.generation,
                at: p.position,
                why,
            })
            .is_ok()
    }

    /// Gives back every partition matching `pred`.
    fn give_back_where(&mut self, why: &str, pred: impl Fn(&Part) -> bool) -> bool {
        while let Some(i) = self.parts.iter().position(&pred) {
            if !self.give_back(i, why.to_string()) {
                return false;
            }
        }
        true
    }

    /// One fetch per leader of the unpaused partitions. Returns false when the poll thread is
    /// gone.
    fn round(&mut self) -> bool {
        // Leaders, looked up per topic for the partitions that have none yet.
        let mut topics: Vec<String> = self
            .parts
            .iter()
            .filter(|p| p.leader.is_none())
            .map(|p| p.topic.clone())
            .collect();
        topics.dedup();
        for topic in topics {
            match (self.leaders)(&topic) {
                Ok(leaders) => {
                    for p in self.parts.iter_mut().filter(|p| p.topic == topic) {
                        p.leader = leaders.get(&p.partition).cloned();
                    }
                }
                Err(e) => {
                    let why = format!("no leader known: {e}");
                    if !self.give_back_where(&why, |p| p.topic == topic && p.leader.is_none()) {
                        return false;
                    }
                }
            }
        }
        if !self.give_back_where("no leader known", |p| p.leader.is_none()) {
            return false;
        }
        let mut by_leader: Vec<(String, Vec<FetchPartition>)> = Vec::new();
        for p in self.parts.iter().filter(|p| !p.paused) {
            let Some(leader) = &p.leader else { continue };
            let fp = FetchPartition {
                topic: p.topic.clone(),
                partition: p.partition,
                offset: p.position,
                max_bytes: self.settings.partition_max_bytes,
            };
            match by_leader.iter_mut().find(|(l, _)| l == leader) {
                Some((_, v)) => v.push(fp),
                None => by_leader.push((leader.clone(), vec![fp])),
            }
        }
        if by_leader.is_empty() {
            return true;
        }
        let limits = FetchLimits {
            max_wait: self.settings.max_wait,
            min_bytes: 1,
            max_bytes: self.settings.max_bytes,
        };
        // Send to every leader first, then read the answers: the brokers work in parallel.
        let mut sent: Vec<(String, i32)> = Vec::new();
        for (leader, parts) in &by_leader {
            let result = self.conn(leader).and_then(|c| c.send_fetch(parts, limits));
            match result {
                Ok(corr) => sent.push((leader.clone(), corr)),
                Err(e) => {
                    self.conns.remove(leader);
                    if !self.give_back_where(&e.to_string(), |p| p.leader.as_ref() == Some(leader))
                    {
                        return false;
                    }
                }
            }
        }
        for (leader, corr) in sent {
            let timeout = self.settings.max_wait + RESPONSE_GRACE;
            let mut buf = std::mem::take(&mut self.buf);
            let read = match self.conns.get_mut(&leader) {
                Some(c) => c.read_response(corr, &mut buf, timeout),
                None => continue,
            };
            let ok = match read {
                Ok(()) => self.take_response(&leader, &buf),
                Err(e) => {
                    self.conns.remove(&leader);
                    self.give_back_where(&e.to_string(), |p| p.leader.as_ref() == Some(&leader))
                }
            };
            self.buf = buf;
            if !ok {
                return false;
            }
        }
        true
    }

    fn conn(&mut self, leader: &str) -> Result<&mut Connection, super::wire::WireError> {
        if self
            .conns
            .get(leader)
            .is_some_and(Connection::needs_renewal)
        {
            // Its SASL session ends soon: a new connection authenticates again.
            self.conns.remove(leader);
        }
        if !self.conns.contains_key(leader) {
            let c = Connection::connect(
                leader,
                &self.settings.client_id,
                CONNECT_TIMEOUT,
                &self.settings.security,
            )?;
            self.conns.insert(leader.to_string(), c);
        }
        self.conns
            .get_mut(leader)
            .ok_or_else(|| super::wire::WireError::Malformed {
                addr: leader.to_string(),
                why: "connection vanished".into(),
            })
    }

    /// Reads one leader's response into chunks. Returns false when the poll thread is gone.
    fn take_response(&mut self, leader: &str, buf: &[u8]) -> bool {
        let parsed = match parse_fetch_response(buf) {
            Ok(p) => p,
            Err(why) => {
                self.conns.remove(leader);
                let why = format!("broker {leader} sent a malformed fetch response: {why}");
                return self.give_back_where(&why, |p| p.leader.as_deref() == Some(leader));
            }
        };
        for fp in parsed {
            let Some(i) = self
                .parts
                .iter()
                .position(|p| p.partition == fp.partition && p.topic == fp.topic)
            else {
                continue;
            };
            if fp.error_code != 0 {
                let why = format!(
                    "the broker answered the fetch with error code {} ({})",
                    fp.error_code,
                    error_name(fp.error_code)
                );
                if !self.give_back(i, why) {
                    return false;
                }
                continue;
            }
            let log_end = if fp.last_stable_offset >= 0 {
                fp.last_stable_offset
            } else {
                fp.high_watermark
            };
            if !self.read_partition(i, fp.records, &fp.aborted, log_end) {
                return false;
            }
        }
        true
    }

    /// Reads a partition's record set into chunks and sends them. Returns false when the poll
    /// thread is gone.
    fn read_partition(
        &mut self,
        i: usize,
        records: &[u8],
        aborted: &[super::wire::Aborted],
        log_end: i64,
    ) -> bool {
        let Some(p) = self.parts.get(i) else {
            return true;
        };
        let (chunk_records, chunk_bytes) = (self.settings.chunk_records, self.settings.chunk_bytes);
        let (topic, partition, generation, headers) =
            (p.topic.clone(), p.partition, p.generation, p.headers);
        let mut hint = p.hint;
        let new_chunk = |hint: usize| {
            let mut c = RecordChunk::with_capacity(hint, chunk_records);
            if !headers {
                c.skip_headers();
            }
            c
        };
        let mut full: Vec<RecordChunk> = Vec::new();
        let mut chunk = new_chunk(hint);
        let result = self.reader.read(records, p.position, aborted, |r| {
            let size = r.value.map_or(0, <[u8]>::len) + r.key.map_or(0, <[u8]>::len);
            let over = !chunk.is_empty() && chunk.byte_len() + size > chunk_bytes;
            if over || !chunk.has_room_for(size) || chunk.len() >= chunk_records {
                let n = chunk.byte_len();
                hint = n.saturating_add(n / 8).clamp(4096, 64 << 20);
                full.push(std::mem::replace(&mut chunk, new_chunk(hint)));
            }
            chunk.push_parts(r.offset, r.timestamp_ms, r.key, r.value, r.headers());
        });
        if !chunk.is_empty() {
            full.push(chunk);
        }
        let (position, stop) = match result {
            Ok(pos) => (pos, None),
            Err(stop) => (stop.at, Some(stop.why)),
        };
        let count = full.len();
        for (n, mut c) in full.into_iter().enumerate() {
            c.set_log_end(log_end);
            if n + 1 == count {
                c.set_read_to(position);
            }
            let event = Event::Chunk {
                topic: topic.clone(),
                partition,
                generation,
                chunk: c,
            };
            // Blocks while the poll thread holds (the lanes are behind): backpressure.
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    if self.events.send(event).is_err() {
                        return false;
                    }
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        if let Some(p) = self.parts.get_mut(i) {
            p.position = position;
            p.hint = hint;
        }
        match stop {
            Some(why) => self.give_back(i, why),
            None => true,
        }
    }
}

/// Names of the fetch errors a consumer meets, for the log.
fn error_name(code: i16) -> &'static str {
    match code {
        1 => "OFFSET_OUT_OF_RANGE",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        9 => "REPLICA_NOT_AVAILABLE",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        35 => "UNSUPPORTED_VERSION",
        56 => "KAFKA_STORAGE_ERROR",
        74 => "FENCED_LEADER_EPOCH",
        75 => "UNKNOWN_LEADER_EPOCH",
        _ => "see Kafka's protocol error codes",
    }
}
