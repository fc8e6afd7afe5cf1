//! `sluice produce`: JSON lines from stdin or files into a topic (the console producer), with
//! a chosen acknowledgement level, keys taken from a JSON field, a progress bar for bulk
//! loads, and optionally each line written as Avro or Protobuf of a registered schema
//! ([`super::registry_encode`]). Every message is acknowledged (or reported failed) before the command exits, so
//! the printed count is what the broker accepted at that acks level.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message};
use sonic_rs::JsonValueTrait;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    All,
}

/// The producer's batch compression (librdkafka's `compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The names are librdkafka's, written once in `as_librdkafka`.
        Codec::ALL
            .into_iter()
            .find(|c| c.as_librdkafka() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Codec::ALL.iter().map(|c| c.as_librdkafka()).collect();
                format!("{s:?} is not one of {}", names.join(", "))
            })
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(format!("{other:?} is not one of 0, 1, all")),
        }
    }
}

pub struct ProduceOptions {
    pub topic: String,
    /// Turn each JSON line into an Avro or Protobuf message of a registered schema.
    pub encoder: Option<super::registry_encode::ValueEncoder>,
    pub acks: Acks,
    pub compression: Codec,
    pub key_field: Option<String>,
    pub partition: Option<i32>,
    pub files: Vec<PathBuf>,
    pub progress: bool,
}

#[derive(Debug, Default)]
pub struct ProduceReport {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub skipped_blank: u64,
    pub elapsed: Duration,
}

struct Counting {
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

struct CountingContext(Arc<Counting>);

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, m)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.0.first_error.lock().unwrap_or_else(|p| p.into_inner());
                if first.is_none() {
                    *first = Some(format!("offset {:?}: {e}", m.offset()));
                }
            }
        }
    }
}

/// Extracts the key from a top-level string or number field of a JSON object.
fn key_of(line: &[u8], field: &str) -> Option<Vec<u8>> {
    let v: sonic_rs::LazyValue<'_> = sonic_rs::get(line, [field]).ok()?;
    if let Some(s) = v.as_str() {
        return Some(s.as_bytes().to_vec());
    }
    Some(v.as_raw_str().as_bytes().to_vec())
}

pub fn produce(base: &ClientConfig, opts: &ProduceOptions) -> Result<ProduceReport> {
    let mut cfg = base.clone();
    match opts.acks {
        Acks::None => {
            cfg.set("acks", "0");
            cfg.set("enable.idempotence", "false");
        }
        Acks::Leader => {
            cfg.set("acks", "1");
            cfg.set("enable.idempotence", "false");
        }
        Acks::All => {
            cfg.set("acks", "all");
            cfg.set("enable.idempotence", "true");
        }
    }
    cfg.set("linger.ms", "20");
    cfg.set("batch.size", "1000000");
    cfg.set("compression.type", opts.compression.as_librdkafka());
    let counting = Arc::new(Counting {
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
    });
    let producer: ThreadedProducer<CountingContext> = cfg
        .create_with_context(CountingContext(counting.clone()))
        .context("cannot create the Kafka producer")?;

    let total_bytes: u64 = opts
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = if opts.progress {
        let bar = if total_bytes > 0 {
            ProgressBar::new(total_bytes)
        } else {
            ProgressBar::new_spinner()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let start = Instant::now();
    let mut report = ProduceReport::default();
    let mut readers: Vec<Box<dyn BufRead>> = Vec::new();
    if opts.files.is_empty() {
        readers.push(Box::new(std::io::BufReader::new(std::io::stdin())));
    } else {
        for f in &opts.files {
            let file =
                std::fs::File::open(f).with_context(|| format!("cannot open {}", f.display()))?;
            readers.push(Box::new(std::io::BufReader::with_capacity(1 << 20, file)));
        }
    }
    let mut line = Vec::with_capacity(4096);
    let mut encoded = Vec::with_capacity(4096);
    let sources: Vec<String> = if opts.files.is_empty() {
        vec!["stdin".to_string()]
    } else {
        opts.files.iter().map(|f| f.display().to_string()).collect()
    };
    for (mut reader, source) in readers.into_iter().zip(sources) {
        let mut line_no = 0u64;
        loop {
            line_no += 1;
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .context("reading input failed")?;
            if n == 0 {
                break;
            }
            bar.inc(n as u64);
            let trimmed = trim(&line);
            if trimmed.iter().all(u8::is_ascii_whitespace) {
                report.skipped_blank += 1;
                continue;
            }
            let key = opts.key_field.as_deref().and_then(|f| key_of(trimmed, f));
            let payload = match &opts.encoder {
                None => trimmed,
                Some(enc) => {
                    if let Err(why) = enc.encode(trimmed, &mut encoded) {
                        // As for a send error: what came before this line is delivered first.
                        let flushed = producer.flush(Duration::from_secs(120)).is_ok();
                        bail!(
                            "line {line_no} of {source} {why}; the {} messages before it were {}",
                            report.sent,
                            if flushed {
                                "sent and acknowledged"
                            } else {
                                "sent, not all acknowledged within 120s"
                            }
                        )
                    }
                    encoded.as_slice()
                }
            };
            loop {
                let mut rec: BaseRecord<'_, [u8], [u8]> =
                    BaseRecord::to(&opts.topic).payload(payload);
                if let Some(k) = &key {
                    rec = rec.key(k.as_slice());
                }
                if let Some(p) = opts.partition {
                    rec = rec.partition(p);
                }
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // The local queue is full: wait for deliveries to drain it.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        // Say where to resume: what came before this line is delivered first.
                        let flushed = producer.flush(Duration::from_secs(120)).is_ok();
                        bail!(
                            "cannot produce line {line_no} of {source} to {}: {e}; the {} messages before it were {}",
                            opts.topic,
                            report.sent,
                            if flushed { "sent and acknowledged" } else { "sent, not all acknowledged within 120s" }
                        )
                    }
                }
            }
            report.sent += 1;
            if report.sent % 10_000 == 0 {
                bar.set_message(format!("{} messages", report.sent));
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .context("not every message was acknowledged within 120s")?;
    bar.finish_and_clear();
    report.acked = counting.acked.load(Ordering::Relaxed);
    report.failed = counting.failed.load(Ordering::Relaxed);
    report.elapsed = start.elapsed();
    if report.failed > 0 {
        let first = counting
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        bail!(
            "{} of {} messages failed (first error: {first})",
            report.failed,
            report.sent
        );
    }
    Ok(report)
}

fn trim(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_fields() {
        assert_eq!(key_of(br#"{"id":"a1","x":2}"#, "id"), Some(b"a1".to_vec()));
        assert_eq!(key_of(br#"{"id":42}"#, "id"), Some(b"42".to_vec()));
        assert_eq!(key_of(br#"{"x":1}"#, "id"), None);
        assert_eq!(key_of(b"not json", "id"), None);
    }

    #[test]
    fn acks_parse() {
        assert_eq!("all".parse::<Acks>(), Ok(Acks::All));
        assert_eq!("0".parse::<Acks>(), Ok(Acks::None));
        assert!("2".parse::<Acks>().is_err());
    }

    #[test]
    fn codecs_parse_by_their_librdkafka_names() {
        for c in Codec::ALL {
            assert_eq!(c.as_librdkafka().parse::<Codec>(), Ok(c));
        }
        assert_eq!(
            "lz5".parse::<Codec>(),
            Err("\"lz5\" is not one of none, gzip, snappy, lz4, zstd".to_string())
        );
    }
}
