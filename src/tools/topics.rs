//! `sluice topics`: create, list, describe, alter (partitions, configs) and delete topics:
//! the lecture's topics tool, through the same connection settings as the pipeline.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

const TIMEOUT: Duration = Duration::from_secs(30);

fn admin(config: &ClientConfig) -> Result<AdminClient<DefaultClientContext>> {
    config
        .create()
        .context("cannot create the Kafka admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(TIMEOUT))
}

/// Parses `key=value` pairs given with `--config`.
pub fn parse_pairs(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("{p:?} is not key=value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

pub async fn create(
    config: &ClientConfig,
    name: &str,
    partitions: i32,
    replication: i32,
    configs: &[(String, String)],
    if_not_exists: bool,
) -> Result<()> {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = admin(config)?
        .create_topics([&topic], &options())
        .await
        .context("create topics request failed")?;
    for r in results {
        match r {
            Ok(t) => {
                let (config, t2) = (config.clone(), t.clone());
                tokio::task::spawn_blocking(move || wait_until_visible(&config, &t2, partitions))
                    .await
                    .context("metadata wait failed")??;
                println!(
                    "created topic {t} ({partitions} partitions, replication factor {replication})"
                )
            }
            Err((t, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) if if_not_exists => {
                println!("topic {t} already exists")
            }
            Err((t, code)) => bail!("cannot create topic {t}: {code}"),
        }
    }
    Ok(())
}

/// Waits until the broker's metadata lists `name` with its `partitions`, each with a leader.
/// CreateTopics answers once the controller has the topic; a command right after (describe,
/// produce) could still be told UnknownTopicOrPartition by metadata that lags behind.
pub fn wait_until_visible(config: &ClientConfig, name: &str, partitions: i32) -> Result<()> {
    let consumer: BaseConsumer = config.create().context("cannot create a Kafka client")?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let ready = consumer
            .fetch_metadata(Some(name), Duration::from_secs(5))
            .ok()
            .is_some_and(|md| {
                md.topics().iter().any(|t| {
                    t.name() == name
                        && t.error().is_none()
                        && t.partitions().len() >= usize::try_from(partitions).unwrap_or(0)
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            });
        if ready {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            bail!("topic {name} was created, but the broker's metadata did not list it within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub async fn delete(config: &ClientConfig, names: &[String]) -> Result<()> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let results = admin(config)?
        .delete_topics(&refs, &options())
        .await
        .context("delete topics request failed")?;
    for r in results {
        match r {
            Ok(t) => println!("deleted topic {t}"),
            Err((t, code)) => bail!("cannot delete topic {t}: {code}"),
        }
    }
    Ok(())
}

pub async fn alter(
    config: &ClientConfig,
    name: &str,
    partitions: Option<usize>,
    configs: &[(String, String)],
) -> Result<()> {
    let admin = admin(config)?;
    if let Some(n) = partitions {
        let results = admin
            .create_partitions([&NewPartitions::new(name, n)], &options())
            .await
            .context("create partitions request failed")?;
        for r in results {
            match r {
                Ok(t) => println!("topic {t} now has {n} partitions"),
                Err((t, code)) => bail!("cannot change partitions of {t}: {code}"),
            }
        }
    }
    if !configs.is_empty() {
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (k, v) in configs {
            alter = alter.set(k, v);
        }
        let results = admin
            .alter_configs([&alter], &options())
            .await
            .context("alter configs request failed")?;
        for r in results {
            match r {
                Ok(_) => println!("topic {name}: configs updated"),
                Err((_, code)) => bail!("cannot alter configs of {name}: {code}"),
            }
        }
    }
    if partitions.is_none() && configs.is_empty() {
        bail!("nothing to alter: give --partitions and/or --config key=value");
    }
    Ok(())
}

/// Topic names, sorted, internal topics (leading `__`) left out.
pub fn list(config: &ClientConfig) -> Result<Vec<String>> {
    let consumer: BaseConsumer = config.create().context("cannot create a Kafka client")?;
    let md = consumer
        .fetch_metadata(None, TIMEOUT)
        .context("cannot fetch cluster metadata")?;
    let mut names: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| !n.starts_with("__"))
        .collect();
    names.sort();
    Ok(names)
}

pub struct PartitionInfo {
    pub id: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub low: i64,
    pub high: i64,
}

pub fn describe(config: &ClientConfig, name: &str) -> Result<Vec<PartitionInfo>> {
    let consumer: BaseConsumer = config.create().context("cannot create a Kafka client")?;
    let md = consumer
        .fetch_metadata(Some(name), TIMEOUT)
        .context("cannot fetch topic metadata")?;
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == name)
        .with_context(|| format!("topic {name} not found"))?;
    if let Some(err) = topic.error() {
        bail!(
            "topic {name}: {}",
            rdkafka::types::RDKafkaErrorCode::from(err)
        );
    }
    let mut out = Vec::new();
    for p in topic.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(name, p.id(), TIMEOUT)
            .with_context(|| format!("cannot read watermarks of {name}[{}]", p.id()))?;
        out.push(PartitionInfo {
            id: p.id(),
            leader: p.leader(),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
            low,
            high,
        });
    }
    out.sort_by_key(|p| p.id);
    Ok(out)
}

pub fn print_description(name: &str, parts: &[PartitionInfo]) {
    let total: i64 = parts.iter().map(|p| p.high - p.low).sum();
    println!("topic {name}: {} partitions, {total} messages", parts.len());
    println!(
        "{:>9} {:>6} {:>12} {:>12} {:>10} {:>10}",
        "partition", "leader", "replicas", "isr", "low", "high"
    );
    for p in parts {
        println!(
            "{:>9} {:>6} {:>12} {:>12} {:>10} {:>10}",
            p.id,
            p.leader,
            format!("{:?}", p.replicas),
            format!("{:?}", p.isr),
            p.low,
            p.high
        );
    }
}
