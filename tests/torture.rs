//! The torture harness: sluice broken on purpose, under continuous production, and every
//! produced message checked per (partition, offset).
//!
//! Scenarios (each prints one summary line: iterations, produced, stored, missing, duplicated):
//! - `kill9`: the real binary killed with SIGKILL at random moments and restarted,
//!   `SLUICE_TORTURE_KILLS` times (default 30; `bench/torture` runs 500+);
//! - `crash_points`: crashes injected at each failpoint (after the in-flight record before
//!   the insert, after the insert before the commit, in the middle of the HTTP body, during
//!   a revoke);
//! - `stream_crash_points`: the same for streamed inserts, each instance starting on a
//!   backlog (in the middle of a streamed body, after the in-flight record before the body's
//!   end, after the insert before the commit, while re-forming a streamed range);
//! - `stream_kill9`, `stream_at_least_once`: kill -9 at random moments while batches stream
//!   (each instance starting on a backlog), exactly-once and at-least-once;
//! - `transactions`: kill -9 at random moments while every message comes in a Kafka
//!   transaction, some aborted and some held open: committed messages stored exactly once,
//!   aborted ones never (their offsets, and the markers', hold no row);
//! - `clickhouse_kill`: the ClickHouse server killed (SIGKILL) and restarted mid-stream;
//! - `stream_clickhouse_kill`: the ClickHouse server killed while batches stream, and a
//!   backlog produced while it is down;
//! - `kafka_restart`: the Kafka broker restarted mid-stream;
//! - `rebalance_storm`: three instances in one group on a 6-partition topic, stopped
//!   (gracefully or with SIGKILL) and started every few seconds during load;
//! - `stream_rebalance_storm`: the same with a backlog produced before every change, so that
//!   lanes are revoked while their batches stream;
//! - the three delivery modes: exactly-once must show missing = 0 and duplicated = 0,
//!   at-least-once missing = 0, at-most-once duplicated = 0;
//! - `legacy`: kill -9 and crash points against ClickHouse 18.16 with ReplicatedMergeTree
//!   (content-hash dedup), held and streamed batches (the streams guarded: 18.16 stores what
//!   it parsed of a body cut off where a row ends).
//!
//! Everything runs in one test function, in order: some scenarios stop the shared servers,
//! and cargo runs this binary alone (test binaries run one after another).

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::{BaseRecord, Producer as _};

/// A tiny deterministic PRNG (xorshift) so a failing run can be repeated from its seed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("SLUICE_TORTURE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        eprintln!("torture seed: {seed} (SLUICE_TORTURE_SEED to repeat)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Produces continuously (in small acknowledged batches) until stopped; counts what it sent.
struct Producer {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    /// Messages to add to the next step at once (a backlog), see [`Producer::burst`].
    extra: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Producer {
    fn start(topic: &str, partitions: u64, per_second: u64) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let extra = Arc::new(AtomicU64::new(0));
        let (s2, n2, e2, topic) = (stop.clone(), sent.clone(), extra.clone(), topic.to_string());
        let thread = std::thread::spawn(move || {
            let p = producer();
            while !s2.load(Ordering::SeqCst) {
                let step = (per_second / 10).max(1) + e2.swap(0, Ordering::SeqCst);
                let from = n2.load(Ordering::SeqCst);
                produce_with(
                    &p,
                    &topic,
                    (from..from + step).map(|i| {
                        Msg::json(
                            (i % partitions) as i32,
                            format!("{{\"id\":{i},\"payload\":\"{}\"}}", "p".repeat(120)),
                        )
                    }),
                );
                n2.store(from + step, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Producer {
            stop,
            sent,
            extra,
            thread: Some(thread),
        }
    }

    /// Produces `n` more messages at once, on top of the steady rate, and returns once they
    /// are acknowledged: a backlog for the next instance to start on.
    fn burst(&self, n: u64) {
        let target = self.sent.load(Ordering::SeqCst) + n;
        self.extra.fetch_add(n, Ordering::SeqCst);
        let start = Instant::now();
        while self.sent.load(Ordering::SeqCst) < target && start.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops and returns how many messages were produced (all acknowledged).
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("producer thread");
        }
        self.sent.load(Ordering::SeqCst)
    }
}

/// Produces continuously in transactions until stopped: one transaction per step, of which
/// every fifth is aborted and every seventh held open for 400 ms before it ends, so that the
/// log end runs ahead of what a read-committed consumer may read. Ids run on across
/// transactions, aborted ones included.
struct TxnProducer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<TxnLog>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a [`TxnProducer`] has produced: ids `0..next`, of which the half-open ranges in
/// `aborted` were aborted and the rest (`committed` of them) committed.
#[derive(Debug, Clone, Default)]
struct TxnLog {
    next: u64,
    committed: u64,
    aborted: Vec<(u64, u64)>,
}

impl TxnProducer {
    fn start(topic: &str, partitions: u64, per_second: u64) -> TxnProducer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(TxnLog::default()));
        let (stop2, log2, topic) = (stop.clone(), log.clone(), topic.to_string());
        let thread = std::thread::spawn(move || {
            let tx = transactional_producer();
            let step = (per_second / 10).max(1);
            let mut n = 0u64;
            while !stop2.load(Ordering::SeqCst) {
                let from = log2.lock().expect("log").next;
                tx.begin_transaction().expect("begin transaction");
                for i in from..from + step {
                    let payload = format!("{{\"id\":{i},\"payload\":\"{}\"}}", "t".repeat(120));
                    tx.send(
                        BaseRecord::<(), _>::to(&topic)
                            .partition((i % partitions) as i32)
                            .payload(&payload),
                    )
                    .map_err(|(e, _)| e)
                    .expect("send");
                }
                if n % 7 == 3 {
                    std::thread::sleep(Duration::from_millis(400));
                }
                let abort = n % 5 == 2;
                if abort {
                    // Written to the log first, so that the aborted records are there to skip
                    // (an abort of unsent messages would only purge them).
                    tx.flush(Duration::from_secs(30)).expect("flush");
                    tx.abort_transaction(Duration::from_secs(30))
                        .expect("abort transaction");
                } else {
                    tx.commit_transaction(Duration::from_secs(30))
                        .expect("commit transaction");
                }
                let mut log = log2.lock().expect("log");
                if abort {
                    log.aborted.push((from, from + step));
                } else {
                    log.committed += step;
                }
                log.next = from + step;
                drop(log);
                n += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        TxnProducer {
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// Stops and returns what was produced (every transaction ended).
    fn finish(mut self) -> TxnLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("transactional producer thread");
        }
        let log = self.log.lock().expect("log").clone();
        log
    }
}

struct Target {
    url: String,
    topic: String,
    table: String,
    partitions: u64,
    dir: tempfile::TempDir,
    group: String,
}

impl Target {
    async fn new(name: &str, url: &str, partitions: u64, engine: &str) -> Target {
        let topic = unique(name);
        create_topic(&topic, partitions as i32).await;
        let table = format!("default.{topic}");
        let engine = engine.replace("{topic}", &topic);
        ch_at(
            url,
            &format!(
                "CREATE TABLE {table} (id UInt64, payload String, _partition Int32, _offset Int64) ENGINE = {engine}"
            ),
        )
        .await;
        Target {
            url: url.to_string(),
            topic,
            table,
            partitions,
            dir: tempfile::tempdir().expect("temp dir"),
            group: unique("torture"),
        }
    }

    /// Writes a config for `delivery`; `instance` sets a static group member id.
    fn config(&self, name: &str, delivery: &str, instance: Option<&str>) -> PathBuf {
        let mut text = config_at(
            &self.url,
            &self.group,
            &[(&self.topic, &self.topic)],
            &format!("delivery = \"{delivery}\"\nmax_rows = 700"),
        );
        if let Some(id) = instance {
            text = text.replace("[kafka]\n", &format!("[kafka]\ninstance_id = \"{id}\"\n"));
        }
        text = text.replace("session_timeout = \"10s\"", "session_timeout = \"6s\"");
        let p = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).expect("write config");
        p
    }

    /// A config whose batches stream: default batch limits and a small memory budget, so
    /// that a backlog's batches are ones the budget would cut short (`lane.rs`).
    fn streaming_config(&self, name: &str, delivery: &str, instance: Option<&str>) -> PathBuf {
        self.streaming_config_with(name, delivery, instance, "4MiB")
    }

    /// [`Target::streaming_config`] with another `batch_memory`.
    fn streaming_config_with(
        &self,
        name: &str,
        delivery: &str,
        instance: Option<&str>,
        batch_memory: &str,
    ) -> PathBuf {
        let p = self.config(name, delivery, instance);
        let text = std::fs::read_to_string(&p)
            .expect("read config")
            .replace("max_rows = 700", "")
            .replace(
                "[service]\n",
                &format!("[service]\nbatch_memory = \"{batch_memory}\"\n"),
            );
        std::fs::write(&p, text).expect("write config");
        p
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("sluice.log")
    }

    /// Runs one clean instance until the group has committed every produced message (or
    /// 180 s), then stops it gracefully.
    async fn drain(&self, config: &std::path::Path, produced: u64) {
        self.drain_until(config, Drained::Committed(produced)).await
    }

    /// Runs one clean instance until `until` holds (or 180 s), then stops it gracefully.
    async fn drain_until(&self, config: &std::path::Path, until: Drained) {
        let mut s = Sluice::spawn(config, &self.log());
        let start = Instant::now();
        loop {
            let done = match until {
                Drained::Committed(produced) => {
                    let (group, topic, parts) =
                        (self.group.clone(), self.topic.clone(), self.partitions);
                    let committed = tokio::task::spawn_blocking(move || {
                        committed_total(&group, &topic, parts as i32)
                    })
                    .await
                    .unwrap_or(0);
                    committed as u64 >= produced
                }
                Drained::Ids(ids) => {
                    let sql = format!("SELECT uniqExact(id) FROM {}", self.table);
                    ch_u64_at(&self.url, &sql).await >= ids
                }
            };
            if done || start.elapsed() > Duration::from_secs(180) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        s.signal("-TERM");
        let status = s.wait(Duration::from_secs(40));
        if !status.success() {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "final sluice exit: {status:?}; log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }

    /// (stored, missing, duplicated) per (partition, offset): the produced messages of
    /// partition p are exactly its offsets 0..n_p.
    async fn verify(&self, produced: u64) -> (u64, u64, u64) {
        let sql = format!(
            "SELECT count(), uniqExact(_partition, _offset), countIf(id >= {produced}) FROM {}",
            self.table
        );
        let [stored, distinct, invented] = self.numbers(&sql).await;
        assert_eq!(invented, 0, "rows that were never produced");
        // Offsets must match ids: message i went to partition i % P at offset i / P.
        let misplaced = ch_u64_at(
            &self.url,
            &format!(
                "SELECT count() FROM {} WHERE _partition != id % {p} OR _offset != intDiv(id, {p})",
                self.table,
                p = self.partitions
            ),
        )
        .await;
        assert_eq!(
            misplaced, 0,
            "rows whose content does not match their offset"
        );
        (stored, produced - distinct.min(produced), stored - distinct)
    }
}

impl Target {
    /// The one row of numbers `sql` answers with (its columns in order).
    async fn numbers<const N: usize>(&self, sql: &str) -> [u64; N] {
        let out = ch_at(&self.url, &format!("{sql} FORMAT TSV")).await;
        let v: Vec<u64> = out
            .trim()
            .split('\t')
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        v.try_into()
            .unwrap_or_else(|v| panic!("expected {N} numbers from {sql}, got {v:?}"))
    }

    /// (stored, missing, duplicated) for a [`TxnProducer`]'s messages, which take offsets
    /// together with their transactions' markers: every committed id stored once, at one
    /// offset of its partition, and no aborted one.
    async fn verify_transactions(&self, log: &TxnLog) -> (u64, u64, u64) {
        let aborted = if log.aborted.is_empty() {
            "0".to_string()
        } else {
            log.aborted
                .iter()
                .map(|(a, b)| format!("(id >= {a} AND id < {b})"))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let sql = format!(
            "SELECT count(), uniqExact(_partition, _offset), uniqExact(id), \
             uniqExact(id, _partition, _offset), countIf(id >= {next}), \
             countIf(_partition != id % {p}), countIf({aborted}) FROM {t}",
            next = log.next,
            p = self.partitions,
            t = self.table,
        );
        let [stored, offsets, ids, pairs, invented, misplaced, aborted_stored] =
            self.numbers(&sql).await;
        assert_eq!(invented, 0, "rows that were never produced");
        assert_eq!(misplaced, 0, "rows in a partition their id was not sent to");
        assert_eq!(aborted_stored, 0, "rows of aborted transactions stored");
        assert_eq!(
            (ids, offsets),
            (pairs, pairs),
            "an id stored at two offsets, or two ids at one offset"
        );
        (
            stored,
            log.committed - ids.min(log.committed),
            stored - offsets,
        )
    }
}

/// When [`Target::drain_until`] stops the instance.
#[derive(Clone, Copy)]
enum Drained {
    /// The group's committed offsets add up to this many (one offset per message).
    Committed(u64),
    /// This many distinct ids are stored.
    Ids(u64),
}

/// One summary line per scenario. `re-formed` counts the interrupted batches that a
/// restarted (or new) owner re-formed from the in-flight record: the exactly-once recovery
/// path was exercised that often.
fn report(t: &Target, name: &str, iterations: u64, produced: u64, r: (u64, u64, u64)) {
    let log = std::fs::read_to_string(t.log()).unwrap_or_default();
    let reformed = log.matches("re-forming exactly that batch").count();
    println!(
        "torture {name}: iterations={iterations} produced={produced} stored={} missing={} duplicated={} re-formed={reformed}",
        r.0, r.1, r.2
    );
}

fn assert_guarantee(name: &str, delivery: &str, r: (u64, u64, u64)) {
    let (_, missing, dups) = r;
    match delivery {
        "exactly-once" => assert_eq!((missing, dups), (0, 0), "{name}: missing, duplicated"),
        "at-least-once" => assert_eq!(missing, 0, "{name}: missing"),
        "at-most-once" => assert_eq!(dups, 0, "{name}: duplicated"),
        _ => unreachable!(),
    }
}

const MT_WINDOW: &str =
    "MergeTree ORDER BY (_partition, _offset) SETTINGS non_replicated_deduplication_window = 1000";

/// ReplicatedMergeTree on ClickHouse 18.16: no tokens, deduplication by block content.
const LEGACY_RMT: &str = "ReplicatedMergeTree('/clickhouse/tables/{shard}/{topic}', '{replica}') ORDER BY (_partition, _offset)";

/// kill -9 at random moments, `kills` times, under continuous production.
async fn kill9(name: &str, url: &str, engine: &str, delivery: &str, kills: u64, rng: &mut Rng) {
    let t = Target::new(name, url, 4, engine).await;
    let cfg = t.config("k", delivery, Some("torture-1"));
    kill9_with(&t, &cfg, name, delivery, kills, 0, rng).await;
}

/// kill -9 at random moments while batches stream: each instance starts on a backlog of
/// 40,000 messages against a 4 MiB budget (see [`stream_crash_points`]).
async fn stream_kill9(
    name: &str,
    url: &str,
    engine: &str,
    delivery: &str,
    kills: u64,
    rng: &mut Rng,
) {
    let t = Target::new(name, url, 4, engine).await;
    let cfg = t.streaming_config("sk", delivery, Some("torture-sk"));
    kill9_with(&t, &cfg, name, delivery, kills, 40_000, rng).await;
    let streams = streams_opened(&t);
    println!("torture {name}: {streams} streams opened");
    assert!(streams >= 4, "batches did not stream: {streams} streams");
}

async fn kill9_with(
    t: &Target,
    cfg: &std::path::Path,
    name: &str,
    delivery: &str,
    kills: u64,
    burst: u64,
    rng: &mut Rng,
) {
    let producer = Producer::start(&t.topic, t.partitions, 3_000);
    for _ in 0..kills {
        if burst > 0 {
            producer.burst(burst);
        }
        // The lanes' debug lines say when a batch started streaming.
        let mut s = Sluice::spawn_env(cfg, &t.log(), &[("RUST_LOG", "info,sluice::lane=debug")]);
        // A backlog is drained in about a second: kill within it.
        let (lo, hi) = if burst > 0 { (100, 900) } else { (300, 1_600) };
        tokio::time::sleep(Duration::from_millis(rng.range(lo, hi))).await;
        s.signal("-KILL");
        let _ = s.wait(Duration::from_secs(10));
    }
    let produced = producer.finish();
    t.drain(cfg, produced).await;
    let r = t.verify(produced).await;
    report(t, name, kills, produced, r);
    assert_guarantee(name, delivery, r);
}

/// kill -9 at random moments while every message comes in a transaction (one in five
/// aborted, one in seven held open for a while): committed messages stored exactly once,
/// aborted ones never. Each transaction ends in a marker, an offset of its own that holds
/// no row, so batches and commits meet offsets that no row has.
async fn transactions(name: &str, kills: u64, rng: &mut Rng) {
    let t = Target::new(name, &ch_url(), 4, MT_WINDOW).await;
    let cfg = t.config("tx", "exactly-once", Some("torture-tx"));
    let producer = TxnProducer::start(&t.topic, t.partitions, 6_000);
    for _ in 0..kills {
        let mut s = Sluice::spawn(&cfg, &t.log());
        tokio::time::sleep(Duration::from_millis(rng.range(300, 1_600))).await;
        s.signal("-KILL");
        let _ = s.wait(Duration::from_secs(10));
    }
    let log = producer.finish();
    t.drain_until(&cfg, Drained::Ids(log.committed)).await;
    let r = t.verify_transactions(&log).await;
    report(&t, name, kills, log.committed, r);
    println!(
        "torture {name}: {} aborted transactions, {} ids produced",
        log.aborted.len(),
        log.next
    );
    assert!(!log.aborted.is_empty(), "no transaction was aborted");
    assert_guarantee(name, "exactly-once", r);
}

async fn crash_points(name: &str, url: &str, engine: &str, rng: &mut Rng) {
    let t = Target::new(name, url, 4, engine).await;
    let cfg = t.config("c", "exactly-once", Some("torture-cp"));
    let points = [
        "after_record_before_insert",
        "after_insert_before_commit",
        "insert_mid_body",
        "during_revoke",
    ];
    crash_at_points(name, &t, &cfg, &points, 0, rng).await;
}

/// Crash points of streamed inserts: each instance starts on a backlog of 80,000 messages
/// (20,000 per partition, ~2.8 MB of rows) against a 1 MiB budget, so its batches stream
/// whatever the lanes' timing, and each stream sends its rows in several pieces (a stream
/// opens once a chunk or two are in, then sends every 1 MiB), which `stream_mid_body@2`
/// needs. With 40,000 against 4 MiB, a lane whose data came while one other held some had a
/// 2 MiB share: it opened at 512 KiB and had less than 1 MiB left, so the second piece never
/// came and neither did the crash (CI, 2026-12-04, `stream_mid_body@2`). Crashes in
/// the middle of a streamed body, after the in-flight record before the body's end, after
/// the insert before the commit, and while re-forming a streamed range (its record kept).
async fn stream_crash_points(name: &str, url: &str, engine: &str, rng: &mut Rng) {
    let t = Target::new(name, url, 4, engine).await;
    let cfg = t.streaming_config_with("s", "exactly-once", Some("torture-scp"), "1MiB");
    let points = [
        "stream_mid_body",
        "stream_before_end",
        "after_insert_before_commit",
        "after_record_before_insert",
    ];
    crash_at_points(name, &t, &cfg, &points, 80_000, rng).await;
    let log = strip_ansi(&std::fs::read_to_string(t.log()).unwrap_or_default());
    assert!(
        log.lines()
            .any(|l| l.contains("re-forming exactly that batch") && l.contains("streamed=true")),
        "no streamed range was ever re-formed"
    );
}

/// `text` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts an instance per point (twice over), each crashing at the point's n-th hit, under
/// continuous production plus a `burst` before each start; then drains and verifies
/// exactly-once.
async fn crash_at_points(
    name: &str,
    t: &Target,
    cfg: &std::path::Path,
    points: &[&str],
    burst: u64,
    rng: &mut Rng,
) {
    let producer = Producer::start(&t.topic, t.partitions, 3_000);
    let mut iterations = 0;
    for round in 0..2 {
        for &p in points {
            if burst > 0 {
                producer.burst(burst);
            }
            // A revoke happens once per process (at its shutdown): crash at the first one.
            // A backlog's four streams come in the first seconds: crash at one of the first.
            let at = if p == "during_revoke" {
                1
            } else if burst > 0 {
                rng.range(1, 3)
            } else {
                rng.range(1, 6)
            }
            .to_string();
            let spec = format!("{p}@{at}");
            // The lanes' debug lines (streams opened, batches committed) say, should an
            // instance outlive its failpoint, whether it was stuck or never met the point.
            let mut s = Sluice::spawn_env(
                cfg,
                &t.log(),
                &[
                    ("SLUICE_FAILPOINTS", &spec),
                    ("RUST_LOG", "info,sluice::lane=debug"),
                ],
            );
            if p == "during_revoke" {
                // A revoke happens when the instance leaves the group: ask it to.
                tokio::time::sleep(Duration::from_millis(rng.range(800, 2_000))).await;
                s.signal("-TERM");
            }
            let start = Instant::now();
            while s.is_running() && start.elapsed() < Duration::from_secs(20) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if s.is_running() {
                // `wait` below panics with the instance's log tail; name the point first.
                println!("{spec} (round {round}): the instance still runs 20 s after its start");
            }
            let status = s.wait(Duration::from_secs(10));
            assert!(
                !status.success(),
                "{spec} (round {round}): the failpoint should have crashed sluice (status {status:?})"
            );
            iterations += 1;
        }
    }
    let produced = producer.finish();
    t.drain(cfg, produced).await;
    let r = t.verify(produced).await;
    report(t, name, iterations, produced, r);
    assert_guarantee(name, "exactly-once", r);
    let log = std::fs::read_to_string(t.log()).unwrap_or_default();
    for p in points {
        assert!(
            log.contains(&format!("failpoint {p}: crashing")),
            "failpoint {p} never fired"
        );
    }
}

/// A server killed or restarted while sluice runs and messages keep arriving.
async fn server_outage(name: &str, action: &[&str], rounds: u64) {
    let t = Target::new(name, &ch_url(), 4, MT_WINDOW).await;
    let cfg = t.config("o", "exactly-once", Some("torture-out"));
    let producer = Producer::start(&t.topic, t.partitions, 3_000);
    let s = Sluice::spawn(&cfg, &t.log());
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_secs(3)).await;
        for a in action {
            testbed(a);
        }
    }
    stop_drain_verify(&t, &cfg, name, rounds, producer, s).await;
    if action.contains(&"restart-kafka") {
        // The own fetch path (the default on PLAINTEXT) loses its connection with the broker
        // and hands its partitions back to librdkafka, which reads on from where it stopped:
        // the check above covered that hand-back under a real restart, if it happened.
        let handbacks = strip_ansi(&std::fs::read_to_string(t.log()).unwrap_or_default())
            .matches("own fetch path hands the partition back")
            .count();
        println!("torture {name}: {handbacks} partitions handed back by the own fetch path");
        assert!(
            handbacks >= 1,
            "{name}: the own fetch path never lost its connection, so the hand-back went untested"
        );
    }
}

/// After an outage scenario: lets the one instance `s` catch up, stops producing and `s`
/// (gracefully: it must exit cleanly), drains the rest and checks exactly-once.
async fn stop_drain_verify(
    t: &Target,
    cfg: &std::path::Path,
    name: &str,
    iterations: u64,
    producer: Producer,
    mut s: Sluice,
) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let produced = producer.finish();
    s.signal("-TERM");
    let status = s.wait(Duration::from_secs(60));
    assert!(status.success(), "{name}: sluice exit {status:?}");
    t.drain(cfg, produced).await;
    let r = t.verify(produced).await;
    report(t, name, iterations, produced, r);
    assert_guarantee(name, "exactly-once", r);
}

/// How many batches started streaming, by the lanes' debug lines in `t`'s log.
fn streams_opened(t: &Target) -> usize {
    strip_ansi(&std::fs::read_to_string(t.log()).unwrap_or_default())
        .matches("streaming the batch's insert")
        .count()
}

/// ClickHouse killed while batches stream: each round kills the server, produces a backlog
/// of 80,000 messages, and starts the server again a second later. The lanes' streams fail
/// (the server is gone mid-body, or refuses the connection), each range is read back from
/// Kafka and stored once the server is back.
async fn stream_clickhouse_kill(name: &str, rounds: u64) {
    let t = Target::new(name, &ch_url(), 4, MT_WINDOW).await;
    let cfg = t.streaming_config("sc", "exactly-once", Some("torture-sc"));
    let producer = Producer::start(&t.topic, t.partitions, 3_000);
    let s = Sluice::spawn(&cfg, &t.log());
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_secs(2)).await;
        producer.burst(40_000);
        tokio::time::sleep(Duration::from_millis(200)).await;
        testbed("kill-clickhouse");
        producer.burst(40_000);
        tokio::time::sleep(Duration::from_secs(1)).await;
        testbed("start-clickhouse");
    }
    stop_drain_verify(&t, &cfg, name, rounds, producer, s).await;
    // Reported, not asserted: whether a stream is open at the moment of the kill depends on
    // timing (a_failed_stream_is_read_back_from_kafka_and_stored_once in tests/pipeline.rs
    // checks that path on demand).
    let log = strip_ansi(&std::fs::read_to_string(t.log()).unwrap_or_default());
    let fallbacks = log.matches("streamed insert failed").count();
    println!("torture {name}: {fallbacks} streamed inserts read back from Kafka");
}

/// `burst`: messages produced at once before every change, so that the lanes stream their
/// batches through the rebalances (with the streaming config), or 0.
async fn rebalance_storm(name: &str, rng: &mut Rng, seconds: u64, burst: u64) {
    let t = Target::new(name, &ch_url(), 6, MT_WINDOW).await;
    // Dynamic membership: every start and stop is a real rebalance.
    let cfg = if burst > 0 {
        // 1 MiB: a lane's share is then at most 512 KiB (an instance holds at least 2 of the 6
        // partitions), below the ~700 KB a burst puts in each partition, so batches stream
        // whatever the instances' timing; with the 4 MiB of the other streaming scenarios a
        // run could keep up with every burst and open no stream at all (seen once in CI).
        t.streaming_config_with("s", "exactly-once", None, "1MiB")
    } else {
        t.config("s", "exactly-once", None)
    };
    let producer = Producer::start(&t.topic, t.partitions, 3_000);
    let mut instances: Vec<Option<Sluice>> = vec![None, None, None];
    let start = Instant::now();
    let mut changes = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        if burst > 0 {
            producer.burst(burst);
        }
        let i = rng.range(0, 3) as usize;
        match instances[i].take() {
            Some(mut s) => {
                s.signal(if rng.range(0, 2) == 0 {
                    "-TERM"
                } else {
                    "-KILL"
                });
                let _ = s.wait(Duration::from_secs(40));
            }
            None => {
                let env: &[(&str, &str)] = if burst > 0 {
                    &[("RUST_LOG", "info,sluice::lane=debug")]
                } else {
                    &[]
                };
                instances[i] = Some(Sluice::spawn_env(&cfg, &t.log(), env));
            }
        }
        changes += 1;
        tokio::time::sleep(Duration::from_millis(rng.range(1_000, 3_000))).await;
    }
    for mut s in instances.into_iter().flatten() {
        s.signal("-TERM");
        let _ = s.wait(Duration::from_secs(40));
    }
    let produced = producer.finish();
    t.drain(&cfg, produced).await;
    let r = t.verify(produced).await;
    report(&t, name, changes, produced, r);
    assert_guarantee(name, "exactly-once", r);
    if burst > 0 {
        let streams = streams_opened(&t);
        println!("torture {name}: {streams} streams opened");
        assert!(streams >= 1, "batches did not stream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn torture() {
    let kills: u64 = std::env::var("SLUICE_TORTURE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let only = std::env::var("SLUICE_TORTURE_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    // The sluice binary under test is built with this test's profile; in a release build
    // every failpoint is an empty function, and crash_points would wait 30 s per iteration for
    // a crash that cannot come. Say so before a minute of kill9.
    assert!(
        cfg!(debug_assertions) || !(run("crash_points") || run("stream_crash_points")),
        "crash points are compiled out of release builds (src/failpoint.rs): run the torture \
         test with `cargo test`, or leave crash_points out (SLUICE_TORTURE_ONLY)"
    );
    let mut rng = Rng::new();
    if run("kill9") {
        kill9(
            "kill9",
            &ch_url(),
            MT_WINDOW,
            "exactly-once",
            kills,
            &mut rng,
        )
        .await;
    }
    if run("transactions") {
        transactions("transactions", (kills / 2).max(10), &mut rng).await;
    }
    if run("crash_points") {
        crash_points("crash_points", &ch_url(), MT_WINDOW, &mut rng).await;
    }
    if run("stream_crash_points") {
        stream_crash_points("stream_crash_points", &ch_url(), MT_WINDOW, &mut rng).await;
    }
    if run("stream_kill9") {
        stream_kill9(
            "stream_kill9",
            &ch_url(),
            MT_WINDOW,
            "exactly-once",
            10,
            &mut rng,
        )
        .await;
    }
    if run("stream_at_least_once") {
        stream_kill9(
            "stream_at_least_once",
            &ch_url(),
            MT_WINDOW,
            "at-least-once",
            5,
            &mut rng,
        )
        .await;
    }
    if run("clickhouse_kill") {
        server_outage(
            "clickhouse_kill",
            &["kill-clickhouse", "start-clickhouse"],
            2,
        )
        .await;
    }
    if run("stream_clickhouse_kill") {
        stream_clickhouse_kill("stream_clickhouse_kill", 2).await;
    }
    if run("kafka_restart") {
        server_outage("kafka_restart", &["restart-kafka"], 1).await;
    }
    if run("rebalance_storm") {
        rebalance_storm("rebalance_storm", &mut rng, 24, 0).await;
    }
    if run("stream_rebalance_storm") {
        rebalance_storm("stream_rebalance_storm", &mut rng, 16, 30_000).await;
    }
    if run("at_least_once") {
        kill9(
            "at_least_once",
            &ch_url(),
            MT_WINDOW,
            "at-least-once",
            5,
            &mut rng,
        )
        .await;
    }
    if run("at_most_once") {
        kill9(
            "at_most_once",
            &ch_url(),
            MT_WINDOW,
            "at-most-once",
            5,
            &mut rng,
        )
        .await;
    }
    if run("legacy") {
        kill9(
            "legacy",
            &legacy_ch_url(),
            LEGACY_RMT,
            "exactly-once",
            (kills / 3).max(5),
            &mut rng,
        )
        .await;
        crash_points(
            "legacy_crash_points",
            &legacy_ch_url(),
            LEGACY_RMT,
            &mut rng,
        )
        .await;
        // 18.16 stores what it parsed of a cut-off body: these streams are guarded.
        stream_crash_points(
            "legacy_stream_crash_points",
            &legacy_ch_url(),
            LEGACY_RMT,
            &mut rng,
        )
        .await;
        stream_kill9(
            "legacy_stream_kill9",
            &legacy_ch_url(),
            LEGACY_RMT,
            "exactly-once",
            (kills / 3).max(5),
            &mut rng,
        )
        .await;
    }
}
