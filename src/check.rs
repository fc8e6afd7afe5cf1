//! `sluice check`: the config is valid, both sides answer, and every route's table can be
//! filled; prints each route's partitions and its field -> column plan. Nothing is consumed,
//! inserted or committed. Secrets never appear in the output (they print as `***`).

use std::io::Write;
use std::time::Duration;

use crate::config::{BadMessages, Config, FetchPath};
use crate::kafka::preflight;
use crate::kafka::secure::Security;
use crate::kafka::wire::Connection;
use crate::pipeline::{clickhouse_settings, plan_dead_letter_table, plan_route};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// Who will fetch the records, and for sluice's own path whether it connects (TLS and SASL
/// included) to the first bootstrap broker. Not a failure if it does not: the run then
/// leaves the fetching to librdkafka, slower but the same records.
async fn fetch_path(cfg: &Config) -> String {
    if cfg.kafka.fetch == FetchPath::Librdkafka {
        return match crate::config::own_fetch_refusal(&cfg.kafka) {
            Some(why) => format!("records fetched by librdkafka ({why})"),
            None => "records fetched by librdkafka (fetch = \"librdkafka\")".to_string(),
        };
    }
    let k = cfg.kafka.clone();
    let tried = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let security = Security::new(&k)?;
        let broker = k
            .brokers
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        Connection::connect(&broker, &k.client_id, KAFKA_TIMEOUT, &security)
            .map_err(|e| e.to_string())?;
        Ok(broker)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let how = match (
        cfg.kafka.security_protocol.uses_tls(),
        cfg.kafka.sasl.as_ref(),
    ) {
        (false, None) => String::new(),
        (true, None) => " over TLS".to_string(),
        (false, Some(s)) => format!(" with SASL {}", s.mechanism),
        (true, Some(s)) => format!(" over TLS with SASL {}", s.mechanism),
    };
    match tried {
        Ok(broker) => format!("records fetched by sluice's own path (connected to {broker}{how})"),
        Err(e) => format!(
            "WARNING: sluice's own fetch path cannot connect{how} ({}): librdkafka will fetch instead, more slowly",
            cfg.kafka.sasl.as_ref().map_or(e.clone(), |s| s.scrub(&e))
        ),
    }
}

/// Runs every check, printing as it goes; returns whether all passed.
pub async fn run(cfg: &Config, out: &mut dyn Write) -> bool {
    let mut ok = true;
    let _ = writeln!(
        out,
        "config: ok ({} route(s){})",
        cfg.routes.len() + cfg.patterns.len(),
        match cfg.patterns.len() {
            0 => String::new(),
            n => format!(", {n} by topic pattern"),
        }
    );

    // Kafka: every topic's metadata (the same client settings and the same readable causes
    // as `sluice run`'s preflight).
    let kcfg = cfg.kafka.clone();
    let kafka = tokio::task::spawn_blocking(move || {
        preflight::fetch_metadata(&kcfg, KAFKA_TIMEOUT).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    // The routes its patterns make, against the topics the cluster has.
    let written = cfg;
    let expanded = match &kafka {
        Ok(md) if !cfg.patterns.is_empty() => {
            match crate::config::patterns::expand(cfg, md.keys().map(String::as_str)) {
                Ok(e) => e,
                Err(e) => {
                    let _ = writeln!(out, "route patterns: FAILED: {e}");
                    ok = false;
                    cfg.clone()
                }
            }
        }
        _ => cfg.clone(),
    };
    let cfg = &expanded;
    // The routes' topics and their dead-letter topics.
    let kafka = kafka.map(|md| {
        let mut topics: Vec<String> = cfg.routes.iter().map(|r| r.topic.clone()).collect();
        for r in &cfg.routes {
            if let BadMessages::DeadLetter { topic } = &r.bad_messages {
                topics.push(topic.clone());
            }
        }
        topics
            .into_iter()
            .map(|t| {
                let n = md.get(&t).copied();
                (t, n)
            })
            .collect::<Vec<_>>()
    });
    let partitions = match kafka {
        Ok(p) => {
            let _ = writeln!(
                out,
                "kafka: {} reachable ({}), group {}",
                cfg.kafka.brokers,
                cfg.kafka.security_protocol.as_librdkafka().to_uppercase(),
                cfg.kafka.group_id
            );
            p
        }
        Err(e) => {
            let _ = writeln!(out, "kafka: FAILED: {}: {e}", cfg.kafka.brokers);
            ok = false;
            Vec::new()
        }
    };
    if ok {
        let _ = writeln!(out, "kafka: {}", fetch_path(cfg).await);
    }
    for p in &written.patterns {
        let taken = crate::config::patterns::taken_by(written, cfg, p);
        let _ = match (cfg.patterns.is_empty(), taken.is_empty()) {
            (false, _) => writeln!(out, "route[{}] topic_pattern \"{}\": topics not listed", p.index, p.source),
            (true, true) => writeln!(out, "route[{}] topic_pattern \"{}\": no topic matches yet (sluice run waits for one, looking every table_refresh)", p.index, p.source),
            (true, false) => writeln!(out, "route[{}] topic_pattern \"{}\": takes {}", p.index, p.source, taken.join(", ")),
        };
    }

    let client =
        match crate::clickhouse::Client::connect(clickhouse_settings(&cfg.clickhouse)).await {
            Ok(c) => {
                let s = c.server();
                let _ = writeln!(
                    out,
                    "clickhouse: {} version {}{}{}",
                    cfg.clickhouse.url,
                    s.version_string,
                    if s.supports_row_binary_with_defaults {
                        ", RowBinaryWithDefaults"
                    } else {
                        ", RowBinary (no server-side defaults)"
                    },
                    if s.supports_dedup_token {
                        ", insert_deduplication_token"
                    } else {
                        ""
                    },
                );
                let _ = writeln!(out, "  inserts: {}", insert_plan(&c));
                if !cfg.clickhouse.insert_settings.is_empty() {
                    let set: Vec<String> = cfg
                        .clickhouse
                        .insert_settings
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let _ = writeln!(
                        out,
                        "  insert settings (the server takes them): {}",
                        set.join(", ")
                    );
                }
                Some(c)
            }
            Err(e) => {
                let _ = writeln!(out, "clickhouse: FAILED: {e}");
                ok = false;
                None
            }
        };

    // Shard-aware writes: every other shard connected as the first was.
    let mut shards = Vec::new();
    for url in cfg.clickhouse.shards.iter().skip(1) {
        let mut settings = clickhouse_settings(&cfg.clickhouse);
        settings.url = url.clone();
        match crate::clickhouse::Client::connect(settings).await {
            Ok(c) => {
                let _ = writeln!(
                    out,
                    "clickhouse shard: {url} version {}",
                    c.server().version_string
                );
                shards.push(c);
            }
            Err(e) => {
                let _ = writeln!(out, "clickhouse shard: {url} FAILED: {e}");
                ok = false;
            }
        }
    }

    match crate::pipeline::schema_registry(cfg) {
        Ok(None) => {}
        Ok(Some(r)) => match r.check().await {
            Ok(n) => {
                let _ = writeln!(
                    out,
                    "schema registry: {} reachable ({n} subject(s))",
                    r.url()
                );
            }
            Err(e) => {
                let _ = writeln!(out, "schema registry: FAILED: {e}");
                ok = false;
            }
        },
        Err(e) => {
            let _ = writeln!(out, "schema registry: FAILED: {e}");
            ok = false;
        }
    }

    // Partitions per topic, for the exactly-once guards' lane counts.
    let counts: std::collections::HashMap<String, usize> = partitions
        .iter()
        .map(|(t, p)| (t.clone(), p.unwrap_or(0)))
        .collect();
    for r in &cfg.routes {
        let _ = writeln!(
            out,
            "\nroute {} -> {}.{} ({}, {}, max_rows={}, max_bytes={}, max_age={:?})",
            r.topic,
            r.database,
            r.table,
            if r.validate {
                "json-schema, validated"
            } else {
                r.format.as_str()
            },
            r.delivery.as_str(),
            r.batch.max_rows,
            r.batch.max_bytes,
            r.batch.max_age
        );
        match partitions.iter().find(|(t, _)| *t == r.topic) {
            Some((_, Some(n))) => {
                let _ = writeln!(out, "  topic {}: {n} partition(s)", r.topic);
            }
            Some((_, None)) => {
                let _ = writeln!(out, "  topic {}: FAILED: does not exist", r.topic);
                ok = false;
            }
            None => {}
        }
        let mut reading = Vec::new();
        match r.envelope {
            crate::config::Envelope::None => {}
            crate::config::Envelope::Debezium => {
                reading.push("Debezium change events (the row: `after`; a delete's: `before`)")
            }
            crate::config::Envelope::Maxwell => reading.push(
                "Maxwell change events (the row: `data`; DDL and bootstrap markers skipped and counted)",
            ),
            crate::config::Envelope::Canal => reading.push(
                "Canal flat messages (a row per element of `data`; DDL and markers skipped and counted)",
            ),
        }
        if r.skip_tombstones {
            reading.push("tombstones skipped and counted");
        }
        if r.unknown_fields == crate::config::UnknownFields::Add {
            reading.push("a field without a column gets one (unknown_fields = \"add\")");
        }
        if !reading.is_empty() {
            let _ = writeln!(out, "  messages: {}", reading.join("; "));
        }
        match &r.bad_messages {
            BadMessages::DeadLetter { topic } => {
                let exists = partitions.iter().any(|(t, p)| t == topic && p.is_some());
                let _ = writeln!(
                    out,
                    "  bad messages: dead-letter topic {topic} ({})",
                    if exists {
                        "exists"
                    } else {
                        "missing: created on first use if the broker auto-creates topics; otherwise create it"
                    }
                );
            }
            BadMessages::Drop => {
                let _ = writeln!(out, "  bad messages: dropped (counted and logged)");
            }
            BadMessages::DeadLetterTable { database, table } => {
                let _ = write!(out, "  bad messages: dead-letter table {database}.{table}");
                match &client {
                    None => {
                        let _ = writeln!(out);
                    }
                    Some(client) => match plan_dead_letter_table(client, r).await {
                        Ok(Some((plan, info))) => {
                            let _ = writeln!(out, " (ok: {})", plan.columns.join(", "));
                            if r.delivery == crate::config::Delivery::ExactlyOnce {
                                match crate::pipeline::dead_letter_guard(
                                    client, cfg, &info, &counts,
                                ) {
                                    Ok(a) => {
                                        let _ = writeln!(
                                            out,
                                            "    exactly-once: ok (deduplication window {} blocks)",
                                            a.window
                                        );
                                    }
                                    Err(e) => {
                                        let _ = writeln!(out, "    exactly-once: FAILED: {e:#}");
                                        ok = false;
                                    }
                                }
                            }
                        }
                        Ok(None) => {
                            let _ = writeln!(out);
                        }
                        Err(e) => {
                            let _ = writeln!(
                                out,
                                ": FAILED: {e:#}\n    for example: {}",
                                crate::dead_letter_table::suggested_ddl(database, table)
                            );
                            ok = false;
                        }
                    },
                }
            }
        }
        let Some(client) = &client else { continue };
        if !cfg.clickhouse.shards.is_empty() {
            let n = counts.get(&r.topic).copied().unwrap_or(0);
            for (i, url) in cfg.clickhouse.shards.iter().enumerate() {
                let taken: Vec<String> = (0..n as i32)
                    .filter(|p| {
                        crate::clickhouse::shards::shard_of(
                            &r.topic,
                            *p,
                            cfg.clickhouse.shards.len(),
                        ) == i
                    })
                    .map(|p| p.to_string())
                    .collect();
                let _ = write!(out, "  shard {url}: partitions [{}]", taken.join(", "));
                match i.checked_sub(1).and_then(|j| shards.get(j)) {
                    None if i == 0 => {
                        let _ = writeln!(out);
                    }
                    None => {
                        let _ = writeln!(out, " (not connected)");
                    }
                    Some(shard) => {
                        match crate::pipeline::check_route_on_shard(client, shard, cfg, r, &counts)
                            .await
                        {
                            Ok(()) => {
                                let _ = writeln!(out, " (the table agrees with the first shard's)");
                            }
                            Err(e) => {
                                let _ = writeln!(out, ": FAILED: {e:#}");
                                ok = false;
                            }
                        }
                    }
                }
            }
        }
        match plan_route(client, r).await {
            Ok((plan, info)) => {
                if r.delivery == crate::config::Delivery::ExactlyOnce {
                    match crate::pipeline::exactly_once_guard(client, cfg, r, &info, &counts) {
                        Ok(a) => {
                            let _ = writeln!(
                                out,
                                "  exactly-once: ok (deduplication window {} blocks)",
                                a.window
                            );
                            for n in &a.notes {
                                let _ = writeln!(out, "    note: {n}");
                            }
                        }
                        Err(e) => {
                            let _ = writeln!(out, "  exactly-once: FAILED: {e:#}");
                            ok = false;
                        }
                    }
                }
                let w = plan
                    .lines
                    .iter()
                    .map(|l| l.column.len())
                    .max()
                    .unwrap_or(6)
                    .max(6);
                let tw = plan
                    .lines
                    .iter()
                    .map(|l| l.ty.len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                let sw = plan
                    .lines
                    .iter()
                    .map(|l| l.source.len())
                    .max()
                    .unwrap_or(6)
                    .max(6);
                let _ = writeln!(
                    out,
                    "  {:<w$}  {:<tw$}  {:<sw$}  when missing",
                    "column", "type", "source"
                );
                for l in &plan.lines {
                    let _ = writeln!(
                        out,
                        "  {:<w$}  {:<tw$}  {:<sw$}  {}",
                        l.column, l.ty, l.source, l.when_missing
                    );
                }
                for c in &plan.computed {
                    let _ = writeln!(out, "  (computed by ClickHouse, not sent: {c})");
                }
                let _ = writeln!(out, "  insert format: {}", insert_format(plan.format));
            }
            Err(e) => {
                let _ = writeln!(out, "  FAILED: {e:#}");
                ok = false;
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        if ok { "check passed" } else { "check FAILED" }
    );
    ok
}

/// How inserts travel to the connected server, and what happens to a batch that outgrows its
/// share of `batch_memory`: streamed, held compressed, or cut at the share.
fn insert_plan(c: &crate::clickhouse::Client) -> String {
    use crate::clickhouse::compress::{Encoding, Packing};
    use crate::clickhouse::Streaming;
    let wire = match c.encoding() {
        Encoding::Identity => "uncompressed bodies",
        Encoding::Lz4 => "LZ4 bodies",
        Encoding::Gzip => "gzip bodies",
    };
    let large = if let Streaming::Guarded { .. } = c.streaming() {
        "streamed while they fill, in checksummed blocks that each end inside a row (this \
         server stores what it parsed of a body cut off at a row's end)"
    } else if c.streams_inserts() {
        "streamed while they fill"
    } else {
        match c.packing() {
            Packing::Never => "cut at the share",
            Packing::Always => "held compressed",
            // Packing costs CPU; on an uncompressed wire it is worth it only for a batch it
            // at least doubles (`Batch::packing_pays`).
            Packing::ToGrow => "held compressed where their partition holds twice the share",
        }
    };
    format!("{wire}; batches beyond their memory share {large}")
}

/// What `format` means for a column whose type changes while sluice runs.
fn insert_format(format: crate::clickhouse::InsertFormat) -> &'static str {
    use crate::clickhouse::InsertFormat;
    match format {
        InsertFormat::RowBinaryWithNamesAndTypes => {
            "RowBinaryWithNamesAndTypes (the server checks each column's type; a changed table is planned again)"
        }
        InsertFormat::RowBinaryWithDefaults => {
            "RowBinaryWithDefaults (the server fills DEFAULTs; types are not checked per insert: stop sluice before changing a column's type)"
        }
        InsertFormat::RowBinary => {
            "RowBinary (this server cannot check types per insert: stop sluice before changing a column's type)"
        }
    }
}
