//! The dead-letter table: bad messages kept as rows of a ClickHouse table
//! (`on_bad_message = "dead-letter-table"`), beside or instead of a dead-letter topic.
//!
//! Guarantees, the same as the topic's:
//! - A partition's offset is committed past a bad message only once its row is acknowledged
//!   by ClickHouse; a failed insert is retried until it is (or the partition is revoked), and
//!   a dead letter the table refuses stops the run uncommitted rather than being dropped.
//! - One INSERT per batch holds all its dead letters, named by the batch's range: in
//!   exactly-once mode under a deduplication token of its own (`dedup::token` of this table
//!   and that range), so a batch read again after a crash stores its dead letters once where
//!   the table deduplicates (MergeTree with `non_replicated_deduplication_window`, or a
//!   Replicated one), exactly like its rows.
//!
//! The table is the user's, planned like a route's table: its columns are found by name and
//! each takes what its name says, converted to its type by the same rules as message fields
//! (so `topic LowCardinality(String)` or `timestamp DateTime64(3)` work as they would for a
//! route's `_topic` or `_timestamp`): `topic`, `partition`, `offset`, `timestamp`, `key`,
//! `value`, `headers` (the message's, `Map(String, String)` or
//! `Array(Tuple(String, String))`), and `error` (why, the one column it must have). Any other
//! column takes its DEFAULT, e.g. `dead_at DateTime64(3) DEFAULT now64(3)`.

use anyhow::Result;

use crate::checkpoint::PartitionId;
use crate::config::{BadMessages, Format, MetadataColumns, Route, UnknownFields};
use crate::decode::json::{encode_json_row, MessageMeta, RowError};
use crate::kafka::records::OwnedRecord;
use crate::schema::TablePlan;

/// The one column a dead-letter table must have.
pub const ERROR_COLUMN: &str = "error";

/// A table the checks of `sluice check` suggest when it is missing.
pub fn suggested_ddl(database: &str, table: &str) -> String {
    format!(
        "CREATE TABLE {database}.{table} (topic LowCardinality(String), partition Int32, offset Int64, \
         timestamp Nullable(DateTime64(3)), key Nullable(String), value Nullable(String), \
         headers Map(String, String), error String, dead_at DateTime64(3) DEFAULT now64(3)) \
         ENGINE = MergeTree ORDER BY (topic, partition, offset) \
         SETTINGS non_replicated_deduplication_window = 1000"
    )
}

/// The route's dead-letter table, if it has one: (database, table).
pub fn target(route: &Route) -> Option<(&str, &str)> {
    match &route.bad_messages {
        BadMessages::DeadLetterTable { database, table } => Some((database, table)),
        _ => None,
    }
}

/// The route as which the dead-letter table is planned: JSON documents `{"error": ...}`
/// whose Kafka metadata fill the columns named for it.
pub fn planning_route(route: &Route, database: &str, table: &str) -> Route {
    let name = |n: &str| Some(n.to_string());
    Route {
        database: database.to_string(),
        table: table.to_string(),
        format: Format::Json,
        unknown_fields: UnknownFields::Ignore,
        metadata: MetadataColumns {
            topic: name("topic"),
            partition: name("partition"),
            offset: name("offset"),
            timestamp: name("timestamp"),
            key: name("key"),
            headers: name("headers"),
            value: name("value"),
            ..MetadataColumns::default()
        },
        columns: None,
        // The route's own date-time formats and envelope are of its messages' fields, which
        // a dead-letter row does not parse.
        date_time_formats: Default::default(),
        envelope: crate::config::Envelope::None,
        ..route.clone()
    }
}

/// Checks a plan of the dead-letter table: it must have an `error` column that sluice fills.
pub fn check_plan(plan: &TablePlan, database: &str, table: &str) -> Result<()> {
    if plan.columns.iter().any(|c| c == ERROR_COLUMN) {
        return Ok(());
    }
    anyhow::bail!(
        "dead-letter table {database}.{table} has no insertable column {ERROR_COLUMN:?} for the reason; for example: {}",
        suggested_ddl(database, table)
    )
}

/// Appends the row of one dead letter: `record`, read from `source`, refused for `reason`.
pub fn encode_row(
    plan: &TablePlan,
    source: &PartitionId,
    record: &OwnedRecord,
    reason: &str,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    let doc = serde_json::json!({ ERROR_COLUMN: reason }).to_string();
    let headers: Vec<(&str, Option<&[u8]>)> = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    let meta = MessageMeta {
        topic: &source.topic,
        partition: source.partition,
        offset: record.offset,
        timestamp_ms: record.timestamp_ms,
        key: record.key.as_deref(),
        headers: &headers,
        value: record.payload.as_deref(),
        op: None,
        source: crate::decode::json::EventSource::NONE,
    };
    encode_json_row(&plan.plan, doc.as_bytes(), &meta, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dead-letter table is planned from its own columns only: the route's date-time
    /// formats and envelope name the route's fields, which a dead-letter row does not have
    /// (a format of a column the table lacks would refuse the plan).
    #[test]
    fn the_planning_route_leaves_the_routes_field_settings_behind() {
        let cfg = crate::config::from_str(
            "[kafka]\nbrokers = \"b:9092\"\ngroup_id = \"g\"\n[clickhouse]\nurl = \"http://c:8123\"\n[[route]]\ntopic = \"t\"\ntable = \"t\"\nenvelope = \"debezium\"\non_bad_message = \"dead-letter-table\"\n[route.date_time_formats]\nts = \"epoch_millis\"\n",
            Vec::new(),
        )
        .expect("config");
        let route = &cfg.routes[0];
        assert!(!route.date_time_formats.is_empty());
        let dl = planning_route(route, "default", "t_dead_letters");
        assert!(dl.date_time_formats.is_empty());
        assert_eq!(dl.envelope, crate::config::Envelope::None);
        assert_eq!((dl.metadata.op, dl.metadata.deleted), (None, None));
    }
}
