//! The `sluice` command line: run, check, topics, produce, consume, lag. No pipeline logic.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use sluice::config::{self, Config, KafkaConfig};
use sluice::kafka::{client, topic_name};
use sluice::tools::{consume, produce, topics};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Kafka topics into ClickHouse tables, on every core"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the Kafka tools connect: a config file's [kafka] section, or plain brokers.
#[derive(clap::Args, Clone)]
struct KafkaTarget {
    /// sluice config file whose [kafka] section (security included) is used.
    #[arg(long, short = 'c', env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Bootstrap brokers (PLAINTEXT), when no config file is given.
    #[arg(
        long,
        short = 'b',
        env = "SLUICE_BROKERS",
        default_value = "127.0.0.1:19092",
        value_parser = brokers_arg
    )]
    brokers: String,
}

/// `--brokers` checked as `[kafka] brokers` is.
fn brokers_arg(s: &str) -> std::result::Result<String, String> {
    sluice::config::validate::check_brokers(s)
        .map(|()| s.to_string())
        .map_err(|e| e.message)
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline: consume the routes' topics and insert into ClickHouse until SIGINT/SIGTERM
    /// (SIGHUP: read the config file again and go on with it).
    Run {
        #[arg(long, short = 'c', env = "SLUICE_CONFIG")]
        config: PathBuf,
    },
    /// Validate the config, connect to Kafka and ClickHouse, print each route's plan.
    Check {
        #[arg(long, short = 'c', env = "SLUICE_CONFIG")]
        config: PathBuf,
    },
    /// Create, list, describe, alter or delete topics.
    Topics {
        #[command(flatten)]
        target: KafkaTarget,
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Produce JSON lines (one message per line) from stdin or files.
    Produce {
        #[command(flatten)]
        target: KafkaTarget,
        #[arg(long, short = 't', value_parser = topic_name::parse)]
        topic: String,
        /// Acknowledgements: 0 (fire and forget), 1 (leader), all (leader and in-sync replicas).
        #[arg(long, default_value = "all")]
        acks: produce::Acks,
        /// Batch compression: none, gzip, snappy, lz4, zstd.
        #[arg(long, default_value = "lz4")]
        compression: produce::Codec,
        /// Use this top-level JSON field as the message key.
        #[arg(long)]
        key_field: Option<String>,
        /// Send every message to this partition.
        #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
        partition: Option<i32>,
        /// Show a progress bar (on by default when reading files on a terminal).
        #[arg(long)]
        progress: bool,
        /// Write each JSON line as Avro (.avsc), Protobuf (.proto) or JSON Schema (a .json
        /// file that describes an object; a .json Avro schema is Avro) of this schema,
        /// registered under <topic>-value, in the schema registry's wire format.
        #[arg(long)]
        value_schema: Option<PathBuf>,
        /// Protobuf: the message type of each line (default: the file's first message).
        #[arg(long, requires = "value_schema")]
        message: Option<String>,
        /// The schema registry for --value-schema (default: the config's [schema_registry]).
        #[arg(long, env = "SLUICE_REGISTRY", requires = "value_schema")]
        registry: Option<String>,
        /// Input files; stdin when none.
        files: Vec<PathBuf>,
    },
    /// Print a topic's messages (no group, nothing committed).
    Consume {
        #[command(flatten)]
        target: KafkaTarget,
        #[arg(long, short = 't', value_parser = topic_name::parse)]
        topic: String,
        #[arg(long)]
        from_beginning: bool,
        #[arg(long)]
        max_messages: Option<u64>,
        /// Exit after this long without a message (e.g. "5s"); follow forever when absent.
        #[arg(long)]
        idle_exit: Option<String>,
        #[arg(long)]
        print_key: bool,
        #[arg(long)]
        print_headers: bool,
        #[arg(long)]
        print_offset: bool,
        /// Print only the number of messages read, at the end (measures the raw consume rate).
        #[arg(long)]
        count_only: bool,
    },
    /// Consumer lag of the pipeline's group (from the config) per partition.
    Lag {
        #[arg(long, short = 'c', env = "SLUICE_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TopicsAction {
    Create {
        #[arg(value_parser = topic_name::parse)]
        name: String,
        #[arg(long, short = 'p', default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
        #[arg(long, short = 'r', default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
        replication_factor: i32,
        /// Topic config, key=value (repeatable).
        #[arg(long = "config-entry", short = 'e')]
        entries: Vec<String>,
        #[arg(long)]
        if_not_exists: bool,
    },
    List,
    Describe {
        #[arg(value_parser = topic_name::parse)]
        name: String,
    },
    Alter {
        #[arg(value_parser = topic_name::parse)]
        name: String,
        /// New (larger) partition count.
        #[arg(long, short = 'p')]
        partitions: Option<usize>,
        #[arg(long = "config-entry", short = 'e')]
        entries: Vec<String>,
    },
    Delete {
        #[arg(required = true, value_parser = topic_name::parse)]
        names: Vec<String>,
    },
}

fn load(path: &Path) -> Result<Config> {
    config::load(path).map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))
}

async fn kafka_config(target: &KafkaTarget) -> Result<rdkafka::ClientConfig> {
    let k: KafkaConfig = match &target.config {
        Some(p) => load(p)?.kafka,
        None => KafkaConfig::plaintext(&target.brokers),
    };
    sluice::pipeline::kafka_preflight(&k).await?;
    Ok(client::base_config(&k))
}

/// Three glibc malloc settings: two keep RSS near what the batch memory budget accounts for,
/// the third keeps freed memory for reuse.
///
/// Arenas: glibc gives each thread that allocates its own malloc arena (up to 8 per core), and
/// a batch buffer freed on another worker thread than the one that grew it stays in that
/// arena: with packed batches (their raw buffer freed once compressed) 1M wide messages peaked
/// at 320-332 MiB RSS, 264-283 MiB with one or two arenas, at the same speed. Two arenas: the
/// tokio workers and librdkafka's threads still do not serialise on one lock.
///
/// mmap threshold: by default glibc raises it to the size of each mmapped block freed, up to
/// 32 MiB, so after the first batch buffer is stored every later one (4-32 MiB) is carved from
/// the arenas, whose free holes are never given back. A fixed threshold switches that off:
/// buffers above it are mapped and unmapped on their own. 8 MiB keeps librdkafka's fetch
/// responses (at most `queued.max.messages.kbytes`, 4 MiB, see pipeline.rs) and the record
/// chunks on the heap, where they are reused without page faults. 1M wide messages,
/// exactly-once, peak RSS: into ClickHouse 18.16 (no packing, bench/compare) 289-344 ->
/// 189-211 MiB; into 26.9 (bench/e2e) 230-286 -> 199-216 MiB on 8 partitions, 211-249 ->
/// 209-260 MiB on 32. Rows/s the same within the noise, sluice CPU +0.1-0.2 CPU-s per million
/// rows. A 4 MiB threshold mapped every fetch response: +0.3-0.5 CPU-s, 15 % fewer rows/s on
/// 32 partitions.
///
/// Trim threshold: fixing the mmap threshold also fixes the trim threshold at its 128 KiB
/// default, so every free that leaves more than that at the top of an arena gives the pages
/// back, and the next chunk of records or streamed rows (1-2 MiB each, churned all the time)
/// faults them in again. 64 MiB keeps them: 1M wide messages, exactly-once, 3 alternated
/// rounds each (bench/results/e2e-2026-11-25T120805Z, T120933Z): sluice 2.41-2.59 ->
/// 2.25-2.32 CPU-s per million rows (medians), rows/s +2-10 %, peak RSS +15-25 MiB (93-105 ->
/// 112-123); on 32 partitions (T121021Z) 2.50 -> 2.25 CPU-s, RSS 127 -> 131 MiB; narrow
/// (T120818Z) 0.60 -> 0.58, RSS 157 -> 164. 32 MiB bought less (2.43 CPU-s).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 64 << 20;

fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(
            libc::M_MMAP_THRESHOLD,
            sluice::batch::MMAP_THRESHOLD as libc::c_int,
        );
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. } | Command::Produce { .. }) {
        restore_sigpipe();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-worker")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The tools that print to stdout end quietly when its reader goes away (`sluice topics
/// list | head -1`), as Unix tools do: Rust ignores SIGPIPE, so without this `println!`
/// panics on the broken pipe. `run` and `produce` keep ignoring it: a closed output must
/// not kill them between an insert and its commit, or before every message is acknowledged.
fn restore_sigpipe() {
    // SAFETY: called at start-up, before any other thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// `produce --value-schema`: registers the schema under `<topic>-value` in the registry
/// (`--registry`, or the config's `[schema_registry]` with its credentials and CA) and
/// returns the encoder of its messages.
async fn value_encoder(
    target: &KafkaTarget,
    topic: &str,
    path: &std::path::Path,
    message: Option<&str>,
    registry: Option<String>,
) -> Result<sluice::tools::registry_encode::ValueEncoder> {
    use sluice::tools::registry_encode::{SchemaKind, ValueEncoder};
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let kind = SchemaKind::of(path, &text)?;
    let settings = match (registry, &target.config) {
        (Some(url), _) => sluice::config::SchemaRegistryConfig {
            url: url.trim_end_matches('/').to_string(),
            username: None,
            password: None,
            bearer: None,
            ca_file: None,
            trusted: None,
            request_timeout: Duration::from_secs(10),
        },
        (None, Some(config)) => load(config)?
            .schema_registry
            .context("--value-schema needs a registry: --registry URL, or [schema_registry] in the config")?,
        (None, None) => anyhow::bail!(
            "--value-schema needs a registry: --registry URL (or SLUICE_REGISTRY), or a config with [schema_registry]"
        ),
    };
    let registry = sluice::registry::Registry::new(&settings).map_err(|e| anyhow::anyhow!(e))?;
    // Checked before registering: a schema that does not compile is refused here, not by
    // the registry in its own words.
    ValueEncoder::new(kind, &text, 0, message)?;
    let subject = format!("{topic}-value");
    let id = registry
        .register(&subject, kind.registry_type(), &text)
        .await
        .map_err(|e| anyhow::anyhow!("cannot register {} under {subject}: {e}", path.display()))?;
    eprintln!(
        "schema {} registered under {subject} as id {id}",
        path.display()
    );
    ValueEncoder::new(kind, &text, id, message)
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run { config } => {
            let shutdown = sluice::shutdown::install();
            // Also before anything else: SIGHUP's default action would end the process.
            let metrics = std::sync::Arc::new(sluice::telemetry::Metrics::default());
            let path = config.clone();
            let reloads = sluice::reload::install(move || load(&path), metrics.clone());
            let cfg = load(&config)?;
            sluice::telemetry_init(cfg.service.log_json);
            // The first line of every run: SIGTERM/SIGINT/SIGHUP already handled here.
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                pid = std::process::id(),
                "sluice starting"
            );
            let summary = sluice::pipeline::run_reloading(cfg, shutdown, reloads, metrics).await?;
            tracing::info!(%summary, "sluice stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let cfg = load(&config)?;
            sluice::telemetry_init(false);
            let ok = sluice::check::run(&cfg, &mut std::io::stdout()).await;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Topics { target, action } => {
            let cfg = kafka_config(&target).await?;
            match action {
                TopicsAction::Create {
                    name,
                    partitions,
                    replication_factor,
                    entries,
                    if_not_exists,
                } => {
                    let pairs = topics::parse_pairs(&entries)?;
                    topics::create(
                        &cfg,
                        &name,
                        partitions,
                        replication_factor,
                        &pairs,
                        if_not_exists,
                    )
                    .await?
                }
                TopicsAction::List => {
                    let names = tokio::task::spawn_blocking(move || topics::list(&cfg)).await??;
                    for n in names {
                        println!("{n}");
                    }
                }
                TopicsAction::Describe { name } => {
                    let n2 = name.clone();
                    let parts =
                        tokio::task::spawn_blocking(move || topics::describe(&cfg, &n2)).await??;
                    topics::print_description(&name, &parts);
                }
                TopicsAction::Alter {
                    name,
                    partitions,
                    entries,
                } => {
                    topics::alter(&cfg, &name, partitions, &topics::parse_pairs(&entries)?).await?
                }
                TopicsAction::Delete { names } => topics::delete(&cfg, &names).await?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Produce {
            target,
            topic,
            acks,
            compression,
            key_field,
            partition,
            progress,
            value_schema,
            message,
            registry,
            files,
        } => {
            let cfg = kafka_config(&target).await?;
            let use_bar = progress
                || (!files.is_empty() && std::io::IsTerminal::is_terminal(&std::io::stderr()));
            let encoder = match &value_schema {
                Some(path) => {
                    Some(value_encoder(&target, &topic, path, message.as_deref(), registry).await?)
                }
                None => None,
            };
            let opts = produce::ProduceOptions {
                encoder,
                topic,
                acks,
                compression,
                key_field,
                partition,
                files,
                progress: use_bar,
            };
            let report =
                tokio::task::spawn_blocking(move || produce::produce(&cfg, &opts)).await??;
            let rate = report.sent as f64 / report.elapsed.as_secs_f64().max(1e-9);
            eprintln!(
                "produced {} messages ({} acknowledged, {} blank lines skipped) in {:.2}s ({:.0} msg/s)",
                report.sent, report.acked, report.skipped_blank, report.elapsed.as_secs_f64(), rate
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Consume {
            target,
            topic,
            from_beginning,
            max_messages,
            idle_exit,
            print_key,
            print_headers,
            print_offset,
            count_only,
        } => {
            let cfg = kafka_config(&target).await?;
            let idle_exit: Option<Duration> = match idle_exit {
                Some(s) => Some(
                    humantime::parse_duration(&s).with_context(|| format!("--idle-exit {s:?}"))?,
                ),
                None => None,
            };
            let opts = consume::ConsumeOptions {
                topic,
                from_beginning,
                max_messages,
                idle_exit,
                print_key,
                print_headers,
                print_offset,
                count_only,
            };
            tokio::task::spawn_blocking(move || {
                consume::consume(&cfg, &opts, &mut std::io::stdout().lock())
            })
            .await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lag { config } => {
            let cfg = load(&config)?;
            let partitions = sluice::pipeline::kafka_preflight(&cfg.kafka).await?;
            // The topics the route patterns take now, as `run` would read them.
            let cfg = sluice::pipeline::expand(&cfg, &partitions)?;
            let base = client::base_config(&cfg.kafka);
            let group = cfg.kafka.group_id.clone();
            let topics: Vec<String> = cfg.routes.iter().map(|r| r.topic.clone()).collect();
            let rows =
                tokio::task::spawn_blocking(move || consume::lag(&base, &group, &topics)).await??;
            println!(
                "{:<30} {:>9} {:>12} {:>12} {:>10}",
                "topic", "partition", "committed", "log end", "lag"
            );
            let mut total = 0;
            for r in rows {
                total += r.lag;
                println!(
                    "{:<30} {:>9} {:>12} {:>12} {:>10}",
                    r.topic,
                    r.partition,
                    r.committed
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                    r.high,
                    r.lag
                );
            }
            println!("total lag: {total}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
