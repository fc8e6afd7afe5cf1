//! Counters and gauges of the pipeline, per route and per partition, and their Prometheus text
//! rendering. Plain atomics: lanes update them without locks on the hot path.
//!
//! Nothing secret is ever a label: labels are topic, table and partition only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::checkpoint::PartitionId;

/// Picks one counter of a route: lets `render` list them as data.
type CounterOf = fn(&RouteMetrics) -> &AtomicU64;
/// Computes one gauge of a partition, likewise.
type GaugeOf = fn(&PartitionGauges) -> i64;

#[derive(Debug, Default)]
pub struct RouteMetrics {
    pub messages: AtomicU64,
    pub rows_inserted: AtomicU64,
    pub bytes_inserted: AtomicU64,
    pub inserts: AtomicU64,
    pub packed_inserts: AtomicU64,
    pub streamed_inserts: AtomicU64,
    pub stream_fallbacks: AtomicU64,
    pub insert_retries: AtomicU64,
    pub rows_rejected_by_clickhouse: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dropped: AtomicU64,
    /// Messages without a value skipped by `tombstones = "skip"` (in committed batches).
    pub tombstones_skipped: AtomicU64,
    /// Change events without a row (DDL, bootstrap and transaction markers) skipped (in
    /// committed batches).
    pub change_events_skipped: AtomicU64,
    pub commits: AtomicU64,
    /// Avro/Protobuf: schema ids a lane bound (or gave up on), and registry lookups that
    /// failed and were asked again (an outage, an id not known yet).
    pub schemas_loaded: AtomicU64,
    pub schema_lookup_retries: AtomicU64,
    /// Times the route's table was found changed under the run, planned again and the
    /// pipeline started over (`pipeline::run_with_metrics`).
    pub table_replans: AtomicU64,
    /// Columns `unknown_fields = "add"` added to the table (on any shard).
    pub columns_added: AtomicU64,
}

impl RouteMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct PartitionGauges {
    /// Next offset to read, as last committed by this instance.
    pub committed: AtomicI64,
    /// One past the newest message seen in the partition (log end offset as far as known).
    pub high_watermark: AtomicI64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String), Arc<RouteMetrics>>>,
    partitions: Mutex<BTreeMap<PartitionId, Arc<PartitionGauges>>>,
    budget: std::sync::OnceLock<Arc<crate::budget::MemoryBudget>>,
    /// What sluice's own fetch path did (`kafka/own_fetch.rs`).
    pub own_fetch: OwnFetchCounters,
    /// Errors librdkafka handed the consumer (it retries them by itself; the log says each
    /// kind once per 30 s, this counts every one).
    pub consumer_errors: AtomicU64,
    /// Configurations taken while running (`sluice run` on SIGHUP), and those refused.
    pub config_reloads: AtomicU64,
    pub config_reloads_refused: AtomicU64,
}

#[derive(Debug, Default)]
pub struct OwnFetchCounters {
    /// Records the own fetch path read and handed to lanes.
    pub records: AtomicU64,
    /// Partitions it handed back to librdkafka.
    pub handbacks: AtomicU64,
}

impl Metrics {
    pub fn route(&self, topic: &str, table: &str) -> Arc<RouteMetrics> {
        let mut m = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((topic.to_string(), table.to_string()))
            .or_default()
            .clone()
    }

    pub fn partition(&self, id: &PartitionId) -> Arc<PartitionGauges> {
        let mut m = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.clone()).or_default().clone()
    }

    /// The run's batch memory budget, rendered as gauges.
    pub fn watch_budget(&self, budget: Arc<crate::budget::MemoryBudget>) {
        let _ = self.budget.set(budget);
    }

    pub fn forget_partition(&self, id: &PartitionId) {
        let mut m = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(id);
    }

    /// Sum of a counter over all routes (for summaries and tests).
    pub fn total(&self, pick: impl Fn(&RouteMetrics) -> &AtomicU64) -> u64 {
        let m = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        m.values().map(|r| pick(r).load(Ordering::Relaxed)).sum()
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let counters: [(&str, &str, CounterOf); 18] = [
            ("sluice_messages_total", "Kafka messages read", |r| {
                &r.messages
            }),
            (
                "sluice_rows_inserted_total",
                "Rows ClickHouse acknowledged",
                |r| &r.rows_inserted,
            ),
            (
                "sluice_bytes_inserted_total",
                "Uncompressed RowBinary bytes ClickHouse acknowledged",
                |r| &r.bytes_inserted,
            ),
            (
                "sluice_inserts_total",
                "Acknowledged INSERT requests",
                |r| &r.inserts,
            ),
            (
                "sluice_packed_inserts_total",
                "Acknowledged INSERTs of batches compressed in memory (sent as their LZ4 blocks)",
                |r| &r.packed_inserts,
            ),
            (
                "sluice_streamed_inserts_total",
                "Acknowledged INSERTs whose body was sent while its rows were encoded",
                |r| &r.streamed_inserts,
            ),
            (
                "sluice_stream_fallbacks_total",
                "Streamed INSERTs that failed and were sent again as a batch read back from Kafka",
                |r| &r.stream_fallbacks,
            ),
            (
                "sluice_insert_retries_total",
                "INSERT attempts that failed and were retried",
                |r| &r.insert_retries,
            ),
            (
                "sluice_rows_rejected_total",
                "Rows ClickHouse rejected as bad data",
                |r| &r.rows_rejected_by_clickhouse,
            ),
            (
                "sluice_dead_letters_total",
                "Messages sent to the dead-letter topic",
                |r| &r.dead_lettered,
            ),
            (
                "sluice_dropped_total",
                "Bad messages dropped (on_bad_message = \"drop\")",
                |r| &r.dropped,
            ),
            (
                "sluice_tombstones_skipped_total",
                "Messages without a value skipped (tombstones = \"skip\"), in committed batches",
                |r| &r.tombstones_skipped,
            ),
            (
                "sluice_change_events_skipped_total",
                "Change events without a row (DDL, bootstrap and transaction markers) skipped, in committed batches",
                |r| &r.change_events_skipped,
            ),
            ("sluice_commits_total", "Offset commits", |r| &r.commits),
            (
                "sluice_schemas_loaded_total",
                "Schema ids a lane fetched from the schema registry and bound (or gave up on)",
                |r| &r.schemas_loaded,
            ),
            (
                "sluice_schema_lookup_retries_total",
                "Schema registry lookups that failed and were asked again",
                |r| &r.schema_lookup_retries,
            ),
            (
                "sluice_table_replans_total",
                "Times the table changed under the run (a column gone or of another type) and was planned again",
                |r| &r.table_replans,
            ),
            (
                "sluice_columns_added_total",
                "Columns added to the table for new JSON fields (unknown_fields = \"add\")",
                |r| &r.columns_added,
            ),
        ];
        for (name, help, pick) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((topic, table), r) in routes.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{topic=\"{}\",table=\"{}\"}} {}",
                    escape(topic),
                    escape(table),
                    pick(r).load(Ordering::Relaxed)
                );
            }
        }
        drop(routes);
        let parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let gauges: [(&str, &str, GaugeOf); 2] = [
            (
                "sluice_consumer_lag",
                "Messages between the committed offset and the log end",
                |g| {
                    let end = g.high_watermark.load(Ordering::Relaxed);
                    (end - g.committed.load(Ordering::Relaxed)).max(0)
                },
            ),
            (
                "sluice_committed_offset",
                "Next offset to read, as committed",
                |g| g.committed.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (id, g) in parts.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                    escape(&id.topic),
                    id.partition,
                    value(g)
                );
            }
        }
        drop(parts);
        let own: [(&str, &str, &AtomicU64); 5] = [
            (
                "sluice_own_fetch_records_total",
                "Records read by sluice's own fetch path (kafka.fetch)",
                &self.own_fetch.records,
            ),
            (
                "sluice_own_fetch_handbacks_total",
                "Partitions the own fetch path handed back to librdkafka (see the log for why)",
                &self.own_fetch.handbacks,
            ),
            (
                "sluice_consumer_errors_total",
                "Errors librdkafka reported to the consumer, each counted (a steady rise with a partition's lag growing: that partition is stuck, see the log)",
                &self.consumer_errors,
            ),
            (
                "sluice_config_reloads_total",
                "Configurations taken while running (SIGHUP): the lanes stored and committed what they held, then the new one started",
                &self.config_reloads,
            ),
            (
                "sluice_config_reloads_refused_total",
                "Configurations read on SIGHUP and refused (invalid; the running one was kept, see the log)",
                &self.config_reloads_refused,
            ),
        ];
        for (name, help, v) in own {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        if let Some(b) = self.budget.get() {
            let memory: [(&str, &str, usize); 3] = [
                (
                    "sluice_batch_memory_bytes",
                    "Bytes all lanes' open batches hold (records + encoded rows)",
                    b.held(),
                ),
                (
                    "sluice_batch_memory_peak_bytes",
                    "Most bytes the open batches held together since start",
                    b.peak(),
                ),
                (
                    "sluice_batch_memory_limit_bytes",
                    "[service] batch_memory",
                    b.limit(),
                ),
            ];
            for (name, help, v) in memory {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_lag() {
        let m = Metrics::default();
        let r = m.route("events", "t");
        RouteMetrics::add(&r.rows_inserted, 5);
        let g = m.partition(&PartitionId::new("events", 0));
        g.committed.store(10, Ordering::Relaxed);
        g.high_watermark.store(15, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("sluice_rows_inserted_total{topic=\"events\",table=\"t\"} 5"));
        assert!(text.contains("sluice_consumer_lag{topic=\"events\",partition=\"0\"} 5"));
        assert_eq!(m.total(|r| &r.rows_inserted), 5);
    }
}
