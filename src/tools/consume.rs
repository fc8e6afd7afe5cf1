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
                if opts.count_only {
                    continue;
                }
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
    if opts.count_only {
        writeln!(out, "{n} messages")?;
    }
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
        let Some(topic) = md.topics().iter().find(|x| x.name() == t) else {
            continue;
        };
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
