//! `sluice consume` (the console consumer: print a topic's messages) and `sluice lag` (a
//! group's committed offsets against the log end, per partition).
//!
//! `consume` reads without joining a group and commits nothing, so tailing a topic never
//! moves anyone's offsets, the pipeline's included.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::kafka::fetch_queue::{FetchQueue, MessageBatch};

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct ConsumeOptions {
    pub topic: String,
    pub from_beginning: bool,
    pub max_messages: Option<u64>,
    /// Stop after this long without a message; None: follow forever.
    pub idle_exit: Option<Duration>,
    pub print_key: bool,
    pub print_headers: bool,
    pub print_offset: bool,
    /// Print nothing per message, only the count at the end: librdkafka's raw consume rate
    /// (bench/compare's consume ceiling).
    pub count_only: bool,
}

pub fn consume(base: &ClientConfig, opts: &ConsumeOptions, out: &mut dyn Write) -> Result<u64> {
    let mut cfg = base.clone();
    // librdkafka requires a group.id even for assign(); nothing is ever committed with it.
    cfg.set("group.id", "sluice-console-consumer");
    cfg.set("enable.auto.commit", "false");
    cfg.set("enable.auto.offset.store", "false");
    if opts.count_only {
        crate::kafka::client::fetch_defaults(&mut cfg);
    }
    let consumer: BaseConsumer = cfg.create().context("cannot create the Kafka consumer")?;
    let md = consumer
        .fetch_metadata(Some(&opts.topic), TIMEOUT)
        .context("cannot fetch topic metadata")?;
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == opts.topic)
        .with_context(|| format!("topic {} not found", opts.topic))?;
    if topic.error().is_some() || topic.partitions().is_empty() {
        anyhow::bail!("topic {} does not exist", opts.topic);
    }
    let mut tpl = TopicPartitionList::new();
    let start = if opts.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    for p in topic.partitions() {
        tpl.add_partition_offset(&opts.topic, p.id(), start)
            .context("cannot build the assignment")?;
    }
    if opts.count_only {
        return count_messages(consumer, &tpl, opts, out);
    }
    consumer.assign(&tpl).context("assign failed")?;
    let mut n = 0u64;
    let mut last = Instant::now();
    loop {
        if opts.max_messages.is_some_and(|m| n >= m) {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if opts.idle_exit.is_some_and(|d| last.elapsed() >= d) {
                    break;
                }
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            Some(Ok(m)) => {
                last = Instant::now();
                n += 1;
                if opts.print_offset {
                    write!(out, "{}[{}]@{}\t", m.topic(), m.partition(), m.offset())?;
                }
                if opts.print_key {
                    let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                    write!(out, "{key}\t")?;
                }
                if opts.print_headers {
                    if let Some(hs) = m.headers() {
                        let parts: Vec<String> = hs
                            .iter()
                            .map(|h| {
                                format!(
                                    "{}={}",
                                    h.key,
                                    h.value.map(String::from_utf8_lossy).unwrap_or_default()
                                )
                            })
                            .collect();
                        write!(out, "{}\t", parts.join(","))?;
                    } else {
                        write!(out, "\t")?;
                    }
                }
                out.write_all(m.payload().unwrap_or_default())?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(n)
}

/// `--count-only`: librdkafka's raw consume rate (bench/compare's consume ceiling), read the
/// way the pipeline reads: every partition forwarded to one application queue taken in
/// batches of up to 8,192 messages (`kafka::fetch_queue`), headers never parsed, and the
/// pipeline's fetch settings where the command line sets none (`fetch.queue.backoff.ms` 10,
/// `fetch.wait.max.ms` 100). With one `poll` per message and librdkafka's own defaults it
/// cost more CPU than a whole sluice run of the same topic (0.98 CPU-s per million narrow
/// messages against 0.72), so it was no ceiling.
fn count_messages(
    consumer: BaseConsumer,
    tpl: &TopicPartitionList,
    opts: &ConsumeOptions,
    out: &mut dyn Write,
) -> Result<u64> {
    // SAFETY: the consumer outlives the queue: `fq` is closed below before `consumer` drops,
    // and on every early return `fq`, declared after it, is dropped (and closed) first.
    let fq = unsafe { FetchQueue::new(consumer.client().native_ptr()) }
        .context("cannot create the fetch queue")?;
    for el in tpl.elements() {
        if !fq.route(el.topic(), el.partition()) {
            anyhow::bail!(
                "cannot route {}[{}] to the fetch queue",
                el.topic(),
                el.partition()
            );
        }
    }
    consumer.assign(tpl).context("assign failed")?;
    let mut batch = MessageBatch::default();
    let mut n = 0u64;
    let mut last = Instant::now();
    loop {
        if opts.max_messages.is_some_and(|m| n >= m) {
            break;
        }
        // The consumer queue still carries errors and statistics: serve it without waiting.
        if let Some(Err(e)) = consumer.poll(Duration::ZERO) {
            eprintln!("consumer error: {e}");
        }
        if fq.consume(&mut batch, Duration::from_millis(200), 8192) == 0 {
            if opts.idle_exit.is_some_and(|d| last.elapsed() >= d) {
                break;
            }
            continue;
        }
        last = Instant::now();
        for i in 0..batch.len() {
            match batch.get(i).map(|m| m.error()) {
                Some(None) => n += 1,
                Some(Some(e)) => eprintln!("consumer error: {e}"),
                None => {}
            }
        }
    }
    batch.clear();
    fq.close();
    if let Some(m) = opts.max_messages {
        // A batch may reach past the limit; the limit is what was asked for.
        n = n.min(m);
    }
    writeln!(out, "{n} messages")?;
    out.flush()?;
    Ok(n)
}

pub struct LagRow {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub high: i64,
    pub lag: i64,
}

/// Committed offsets of `group` for `topics` against each partition's high watermark.
pub fn lag(base: &ClientConfig, group: &str, topics: &[String]) -> Result<Vec<LagRow>> {
    let mut cfg = base.clone();
    cfg.set("group.id", group);
    cfg.set("enable.auto.commit", "false");
    let consumer: BaseConsumer = cfg.create().context("cannot create the Kafka consumer")?;
    let mut rows = Vec::new();
    for t in topics {
        let md = consumer
            .fetch_metadata(Some(t), TIMEOUT)
            .context("cannot fetch topic metadata")?;
        // A route's topic that is missing is an answer worth giving, not an empty table.
        let topic = md
            .topics()
            .iter()
            .find(|x| x.name() == t)
            .filter(|x| x.error().is_none() && !x.partitions().is_empty())
            .with_context(|| format!("topic {t} does not exist"))?;
        let mut tpl = TopicPartitionList::new();
        for p in topic.partitions() {
            tpl.add_partition(t, p.id());
        }
        let committed = consumer
            .committed_offsets(tpl, TIMEOUT)
            .context("cannot read committed offsets")?;
        for el in committed.elements() {
            let (low, high) = consumer
                .fetch_watermarks(t, el.partition(), TIMEOUT)
                .context("cannot read watermarks")?;
            let c = match el.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            rows.push(LagRow {
                topic: t.clone(),
                partition: el.partition(),
                committed: c,
                high,
                lag: high - c.unwrap_or(low),
            });
        }
    }
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(rows)
}
