//! Wiring: routes' table plans, the ClickHouse client, the dead-letter producer, the group
//! consumer and its lanes, and the shutdown sequence.
//!
//! Start-up order: validate (done by the caller) -> connect ClickHouse and plan every route's
//! table (an unknown table or an unsupported column type stops here, before any message is
//! read) -> create the dead-letter producer -> join the consumer group.
//!
//! Shutdown: the consumer leaves the group, which revokes every partition; each lane inserts
//! and commits what it holds, within `service.shutdown_timeout`. A lane that fails for good
//! (bounded retries exhausted) stops the whole run with an error, and nothing past its data is
//! committed.
//!
//! A table changed under the run (`InsertError::SchemaChanged`: the server refused an insert
//! before storing a row of it, for a column gone or of another type) ends the pass the same
//! way, uncommitted, and a new pass starts: every table planned again, the group joined
//! again, each partition read from its committed offset. So a changed table costs a rejoin
//! and a re-read of what was not committed, never a row stored as the old plan's bytes
//! where the inserts carry their types. Every `service.table_refresh` the tables are also
//! planned again in the background; a plan that differs (a column added, a type changed
//! where inserts carry no types) ends the pass like a shutdown (the lanes store and commit
//! what they hold) and the next pass starts with it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use crate::checkpoint::PartitionId;
use crate::clickhouse::{self, ClickHouseSettings, Client, TableInfo};
use crate::commit::Committer;
use crate::config::{
    patterns, BadMessages, ClickHouseConfig, Config, Delivery, FetchPath, KafkaConfig, Route,
};
use crate::dead_letter_table;
use crate::dlq::DeadLetterProducer;
use crate::exactly_once;
use crate::kafka::client::{consumer_config, fetch_defaults, reliable_producer_config};
use crate::kafka::consumer::{ConsumerLimits, ConsumerThread, LaneFactory, LaneHandle};
use crate::kafka::own_fetch;
use crate::kafka::preflight::{TopicLister, TopicPartitions};
use crate::kafka::records::RecordChunk;
use crate::lane::{Lane, LaneFailure, RouteRuntime};
use crate::registry::Registry;
use crate::schema::{self, TablePlan};
use crate::telemetry::{Metrics, RouteMetrics};

/// Records per chunk handed from the poll thread to a lane.
const CHUNK_RECORDS: usize = 2048;
/// Payload bytes per chunk: wide messages (1.5 KB) make chunks of ~1.3 MB instead of 3 MB.
const CHUNK_BYTES: usize = 1 << 20;
/// The own fetch path's response size, and the chunks it may have in flight to the poll
/// thread: with its response buffer and decompression buffer, what it holds at most.
const OWN_FETCH_MAX_BYTES: i32 = 8 << 20;
const OWN_FETCH_QUEUE_CHUNKS: usize = 8;
/// Chunks a lane may have queued; further chunks for it are kept aside (stashed).
const LANE_QUEUE_CHUNKS: usize = 2;
/// Chunks kept aside for all lanes together whose queues are full, before the poll thread
/// stops taking messages (see `ConsumerLimits::stash_bytes`).
const STASH_BYTES: usize = 8 << 20;
/// Lanes that get the full chunk size; more lanes share what this many queue
/// (`ConsumerLimits::for_lanes`): 8 x 2 x 1 MiB queued + 8 MiB of stashes (at most as much
/// again kept by stalled, paused lanes) = 24-32 MiB of waiting input, sized with the batch
/// budget for the 300 MB target.
const FULL_SIZE_LANES: usize = 8;

pub fn clickhouse_settings(c: &ClickHouseConfig) -> ClickHouseSettings {
    ClickHouseSettings {
        url: c.url.clone(),
        database: c.database.clone(),
        user: c.user.clone(),
        password: c.password.clone(),
        ca_file: c.tls.ca.clone(),
        client_cert: c.tls.cert.clone(),
        client_key: c.tls.key.clone(),
        trusted: c
            .stores
            .trusted
            .as_ref()
            .map(|(_, certs)| certs.clone())
            .unwrap_or_default(),
        identity_pem: c.stores.identity.as_ref().map(|id| {
            crate::secret::Secret::new(format!("{}{}", id.chain_pem(), id.key_pem.expose()))
        }),
        compression: match c.compression {
            crate::config::Compression::Auto => clickhouse::Compression::Auto,
            crate::config::Compression::None => clickhouse::Compression::None,
            crate::config::Compression::Lz4 => clickhouse::Compression::Lz4,
            crate::config::Compression::Gzip => clickhouse::Compression::Gzip,
        },
        stream_inserts: c.stream_inserts,
        connect_timeout: c.connect_timeout,
        request_timeout: c.request_timeout,
        insert_settings: c.insert_settings.clone(),
    }
}

pub struct PreparedRoute {
    pub route: Route,
    pub table: TablePlan,
    /// What the plan was made from; the exactly-once guard reads it too.
    pub info: TableInfo,
    /// The plan of the route's dead-letter table, if it has one.
    pub dead_letters: Option<TablePlan>,
    /// What that plan was made from, for the exactly-once guard.
    pub dead_letters_info: Option<TableInfo>,
}

/// The start-up checks of `sluice run`: the Kafka preflight ([`kafka_preflight`]) and
/// connecting to ClickHouse and planning every route's table run side by side (each is a few
/// round trips; together they were a tenth of a 1M-message run's wall time), then the
/// exactly-once guard, which needs both. A Kafka failure is reported first, as before.
/// Returns the client, the routes and the topics' partition counts (for the shards' checks).
pub async fn start_up(cfg: &Config) -> Result<(Client, Vec<PreparedRoute>, TopicPartitions)> {
    let (partitions, planned, registry) = tokio::join!(
        kafka_preflight(&cfg.kafka),
        plan_routes(cfg),
        registry_preflight(cfg)
    );
    let partitions = partitions?;
    let (client, routes) = planned?;
    registry?;
    let routes = guard_routes(&client, cfg, routes, &partitions)?;
    Ok((client, routes, partitions))
}

/// [`start_up`] for a config with topic patterns: the topics are listed first, the patterns
/// expanded against them, and the routes that makes planned. Returns the expanded config,
/// whose routes are those prepared.
///
/// A topic a pattern takes whose table cannot take its rows (not created yet, say: topics
/// and their tables are often made one after the other) is left out of this pass with a
/// warning, its messages left in Kafka uncommitted; `topics_changed` looks at it again
/// every `table_refresh`. A route that names its topic is planned as [`start_up`] plans it:
/// its table must be there.
pub async fn start_up_expanding(
    written: &Config,
    left_out: &mut LeftOut,
) -> Result<(Config, Client, Vec<PreparedRoute>, TopicPartitions)> {
    if written.patterns.is_empty() {
        let (client, routes, partitions) = start_up(written).await?;
        return Ok((written.clone(), client, routes, partitions));
    }
    let partitions = kafka_preflight(&written.kafka).await?;
    let mut cfg = expand(written, &partitions)?;
    let client = Client::connect(clickhouse_settings(&cfg.clickhouse))
        .await
        .context("ClickHouse")?;
    let prepared = futures::future::join_all(
        cfg.routes
            .iter()
            .map(|r| prepare_route(&client, &cfg, r, &partitions)),
    )
    .await;
    let mut routes = Vec::with_capacity(prepared.len());
    let mut out = HashSet::new();
    for (i, (route, p)) in cfg.routes.iter().zip(prepared).enumerate() {
        match p {
            Ok(p) => {
                left_out.taken(&route.topic);
                routes.push(p);
            }
            Err(e) if i >= written.routes.len() => {
                left_out.note(&route.topic, format!("{e:#}"));
                out.insert(route.topic.clone());
            }
            Err(e) => return Err(e),
        }
    }
    cfg.routes.retain(|r| !out.contains(&r.topic));
    registry_preflight(&cfg).await?;
    Ok((cfg, client, routes, partitions))
}

/// The topics a route pattern takes that are left out because their table cannot take
/// their rows yet, with why. Each is warned about once (again only when the reason changes)
/// and noted at debug level at every later `table_refresh`, so that a topic waiting for its
/// table does not fill the log; the run keeps this across its passes.
#[derive(Debug, Default)]
pub struct LeftOut(HashMap<String, String>);

impl LeftOut {
    /// `topic` is left out because of `why`; returns whether that was news (warned).
    fn note(&mut self, topic: &str, why: String) -> bool {
        if self.0.get(topic) == Some(&why) {
            tracing::debug!(topic, error = %why, "a topic a route pattern takes is still left out");
            return false;
        }
        tracing::warn!(topic, error = %why,
            "a topic a route pattern takes is left out until its table can take its rows (looked at again every table_refresh; said again only if the reason changes)");
        self.0.insert(topic.to_string(), why);
        true
    }

    /// `topic` is taken (or gone): a later reason to leave it out is news again.
    fn taken(&mut self, topic: &str) {
        self.0.remove(topic);
    }
}

/// One route planned and checked as [`start_up`] does it: its table and dead-letter table
/// planned, and for exactly-once both able to deduplicate for the lanes of `cfg` writing
/// into them.
async fn prepare_route(
    client: &Client,
    cfg: &Config,
    route: &Route,
    partitions: &TopicPartitions,
) -> Result<PreparedRoute> {
    let (table, dead_letters) = tokio::join!(
        plan_route(client, route),
        plan_dead_letter_table(client, route)
    );
    let ((table, info), dead_letters) = (table?, dead_letters?);
    let (dead_letters, dead_letters_info) = dead_letters.unzip();
    let prepared = PreparedRoute {
        route: route.clone(),
        table,
        info,
        dead_letters,
        dead_letters_info,
    };
    guard_routes(client, cfg, vec![prepared], partitions)?
        .pop()
        .context("a prepared route")
}

/// `cfg` with its topic patterns expanded against the topics of `partitions`, each pattern's
/// topics logged.
pub fn expand(cfg: &Config, partitions: &TopicPartitions) -> Result<Config> {
    let expanded = patterns::expand(cfg, partitions.keys().map(String::as_str))?;
    for p in &cfg.patterns {
        let taken = patterns::taken_by(cfg, &expanded, p);
        tracing::info!(pattern = %p.source, topics = ?taken, "route[{}]: the topics its pattern takes", p.index);
    }
    Ok(expanded)
}

/// The exactly-once guards of [`start_up`]: each exactly-once route's table, and its
/// dead-letter table, must deduplicate for the lanes writing into them.
fn guard_routes(
    client: &Client,
    cfg: &Config,
    routes: Vec<PreparedRoute>,
    partitions: &TopicPartitions,
) -> Result<Vec<PreparedRoute>> {
    for p in &routes {
        let route = &p.route;
        if route.delivery == Delivery::ExactlyOnce {
            let accepted = exactly_once_guard(client, cfg, route, &p.info, partitions)?;
            tracing::info!(route = %route.topic, table = %format!("{}.{}", route.database, route.table),
                window = accepted.window, notes = ?accepted.notes, "exactly-once: the table deduplicates repeated inserts");
            if let Some(info) = &p.dead_letters_info {
                let accepted = dead_letter_guard(client, cfg, info, partitions)
                    .with_context(|| route.label())?;
                tracing::info!(route = %route.topic, table = %format!("{}.{}", info.database, info.name),
                    window = accepted.window, "exactly-once: the dead-letter table deduplicates repeated inserts");
            }
        }
    }
    Ok(routes)
}

/// The schema registry of the Avro, Protobuf and JSON Schema routes, if any: built from the config.
pub fn schema_registry(cfg: &Config) -> Result<Option<Arc<Registry>>> {
    let used = cfg.routes.iter().any(|r| r.format.uses_registry());
    match &cfg.schema_registry {
        Some(c) if used => Ok(Some(Arc::new(
            Registry::new(c).map_err(|e| anyhow::anyhow!(e))?,
        ))),
        _ => Ok(None),
    }
}

/// Asks the schema registry once (when a route uses it): an unreachable registry or
/// refused credentials end the start-up here, not in every lane later.
async fn registry_preflight(cfg: &Config) -> Result<()> {
    if let Some(r) = schema_registry(cfg)? {
        let n = r
            .check()
            .await
            .map_err(|e| anyhow::anyhow!("schema registry: {e}"))?;
        tracing::info!(registry = %r.url(), subjects = n, "schema registry reachable");
    }
    Ok(())
}

/// Connects to ClickHouse and plans every route's table.
async fn plan_routes(cfg: &Config) -> Result<(Client, Vec<PreparedRoute>)> {
    let client = Client::connect(clickhouse_settings(&cfg.clickhouse))
        .await
        .context("ClickHouse")?;
    // Side by side: each plan is a few round trips.
    let planned = futures::future::try_join_all(cfg.routes.iter().map(|r| async {
        let (table, dead_letters) =
            tokio::join!(plan_route(&client, r), plan_dead_letter_table(&client, r));
        Ok::<_, anyhow::Error>((table?, dead_letters?))
    }))
    .await?;
    let routes = cfg
        .routes
        .iter()
        .zip(planned)
        .map(|(route, ((table, info), dead_letters))| {
            let (dead_letters, dead_letters_info) = dead_letters.unzip();
            PreparedRoute {
                route: route.clone(),
                table,
                info,
                dead_letters,
                dead_letters_info,
            }
        })
        .collect();
    Ok((client, routes))
}

/// The lanes (one per partition, at least one per route) of the routes that `write` into a
/// table: how many batches may be in flight into it at once.
fn lanes_writing(
    cfg: &Config,
    partitions: &TopicPartitions,
    write: impl Fn(&Route) -> bool,
) -> usize {
    cfg.routes
        .iter()
        .filter(|r| write(r))
        .map(|r| partitions.get(&r.topic).copied().unwrap_or(0).max(1))
        .sum()
}

/// Refuses exactly-once (with the fix named) where the table (`info`, from [`plan_route`])
/// cannot deduplicate repeats. The lanes counted are those of every route writing into the
/// same table.
pub fn exactly_once_guard(
    client: &Client,
    cfg: &Config,
    route: &Route,
    info: &TableInfo,
    partitions: &TopicPartitions,
) -> Result<exactly_once::Accepted> {
    let lanes = lanes_writing(cfg, partitions, |r| {
        r.database == route.database && r.table == route.table
    });
    exactly_once::check_table(info, client.server(), lanes).map_err(Into::into)
}

/// The route's table plan, and the table's engine information it was checked against. The
/// table's engine and its columns are asked for side by side.
pub async fn plan_route(client: &Client, route: &Route) -> Result<(TablePlan, TableInfo)> {
    plan_route_noting(client, route, true).await
}

/// [`plan_route`]; `note`: log the DEFAULTs this server cannot apply (once per start, not
/// at every refresh of a running pipeline).
async fn plan_route_noting(
    client: &Client,
    route: &Route,
    note: bool,
) -> Result<(TablePlan, TableInfo)> {
    let (info, columns) = tokio::join!(
        client.table_info(&route.database, &route.table),
        client.table_columns(&route.database, &route.table)
    );
    // A plain view answers every INSERT with NOT_IMPLEMENTED (48), which retries would meet
    // forever: refuse it before anything runs.
    let info = info.with_context(|| route.label())?;
    if info.engine == "View" {
        anyhow::bail!(
            "{}: {}.{} is a view (CREATE VIEW), which takes no inserts; write into a table (a materialized view's source, or its TO table)",
            route.label(),
            route.database,
            route.table
        );
    }
    let columns = columns.with_context(|| route.label())?;
    let server = client.server();
    let mut literal_defaults = HashMap::new();
    if !server.supports_row_binary_with_defaults {
        for d in client.select_default_values(&columns).await {
            match d.value {
                Ok(bytes) if !d.volatile => {
                    literal_defaults.insert(d.column, bytes.to_vec());
                }
                Ok(_) if !note => {}
                Ok(_) => tracing::warn!(column = %d.column, expression = %d.expression,
                    "the column DEFAULT changes per row and this server cannot apply it; messages without this field will be dead-lettered"),
                Err(_) if !note => {}
                Err(e) => tracing::warn!(column = %d.column, error = %e,
                    "cannot evaluate the column DEFAULT; messages without this field will be dead-lettered"),
            }
        }
    }
    let plan = schema::plan_table(route, &columns, server, &literal_defaults)?;
    Ok((plan, info))
}

/// The plan of `route`'s dead-letter table (`on_bad_message = "dead-letter-table"`), if it
/// has one: planned like a route's table ([`crate::dead_letter_table`]).
pub async fn plan_dead_letter_table(
    client: &Client,
    route: &Route,
) -> Result<Option<(TablePlan, TableInfo)>> {
    plan_dead_letter_table_noting(client, route, true).await
}

async fn plan_dead_letter_table_noting(
    client: &Client,
    route: &Route,
    note: bool,
) -> Result<Option<(TablePlan, TableInfo)>> {
    let Some((database, table)) = dead_letter_table::target(route) else {
        return Ok(None);
    };
    let as_route = dead_letter_table::planning_route(route, database, table);
    let (plan, info) = plan_route_noting(client, &as_route, note)
        .await
        .with_context(|| format!("dead-letter table {database}.{table}"))?;
    dead_letter_table::check_plan(&plan, database, table)?;
    Ok(Some((plan, info)))
}

/// Refuses an exactly-once route whose dead-letter table (`info`) cannot deduplicate a batch's
/// dead letters sent again, as [`exactly_once_guard`] does for its table; the lanes counted
/// are those of every route writing dead letters into the same table.
pub fn dead_letter_guard(
    client: &Client,
    cfg: &Config,
    info: &TableInfo,
    partitions: &TopicPartitions,
) -> Result<exactly_once::Accepted> {
    let lanes = lanes_writing(cfg, partitions, |r| {
        dead_letter_table::target(r) == Some((info.database.as_str(), info.name.as_str()))
    });
    exactly_once::check_table(info, client.server(), lanes.max(1))
        .with_context(|| format!("dead-letter table {}.{}", info.database, info.name))
}

/// What a run did, for the final log line.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunSummary {
    pub messages: u64,
    pub rows_inserted: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "messages={} rows_inserted={} dead_lettered={} dropped={}",
            self.messages, self.rows_inserted, self.dead_lettered, self.dropped
        )
    }
}

struct Lanes {
    routes: HashMap<String, Arc<RouteRuntime>>,
    runtime: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    failures: mpsc::UnboundedSender<LaneFailure>,
}

impl LaneFactory for Lanes {
    fn start(&self, partition: PartitionId, committer: Committer) -> LaneHandle {
        let (tx, rx) = mpsc::channel::<RecordChunk>(LANE_QUEUE_CHUNKS);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let fence = committer.fence().clone();
        match self.routes.get(&*partition.topic) {
            Some(rt) => {
                let lane = Lane::new(
                    rt.clone(),
                    partition.clone(),
                    committer,
                    self.metrics.partition(&partition),
                );
                let failures = self.failures.clone();
                let metrics = self.metrics.clone();
                let id = partition.clone();
                self.runtime.spawn(async move {
                    if let Err(f) = crate::lane::run_guarded(lane.run(rx), id).await {
                        let _ = failures.send(f);
                    }
                    metrics.forget_partition(&partition);
                    drop(done_tx);
                });
            }
            None => {
                tracing::error!(%partition, "assigned a partition of a topic without a route");
                drop(done_tx);
            }
        }
        LaneHandle {
            records: tx,
            finished: done_rx,
            fence,
        }
    }

    fn reads_headers(&self, topic: &str) -> bool {
        self.routes
            .get(topic)
            .is_none_or(|rt| rt.plan.stores_headers())
    }

    fn consumer_failed(&self, why: String) {
        let _ = self.failures.send(LaneFailure {
            partition: PartitionId::new("-", -1),
            table_changed: false,
            message: why,
        });
    }
}

/// How long the start-up preflight waits for the brokers' metadata.
const KAFKA_PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(15);

/// One bounded metadata request with the consumer's own client settings before anything
/// starts: a wrong password, an untrusted certificate or a TLS/plaintext mismatch ends the run
/// (or the CLI tool) here with librdkafka's cause ("SASL authentication failed ..."), instead
/// of a client that retries in the background forever. Returns the topics' partition counts.
pub async fn kafka_preflight(k: &KafkaConfig) -> Result<TopicPartitions> {
    let kafka = k.clone();
    let partitions = tokio::task::spawn_blocking(move || {
        crate::kafka::preflight::fetch_metadata(&kafka, KAFKA_PREFLIGHT_TIMEOUT)
    })
    .await
    .context("Kafka preflight task")?
    .with_context(|| format!("Kafka {}", k.brokers))?;
    tracing::info!(brokers = %k.brokers,
        security_protocol = k.security_protocol.as_librdkafka(), "Kafka reachable");
    Ok(partitions)
}

/// Runs the pipeline until `shutdown` resolves or a lane fails for good; a table that changed
/// under it is planned again and the pipeline goes on (see the module docs).
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<RunSummary> {
    run_with_metrics(cfg, shutdown, Arc::new(Metrics::default())).await
}

pub async fn run_with_metrics(
    cfg: Config,
    shutdown: impl Future<Output = ()>,
    metrics: Arc<Metrics>,
) -> Result<RunSummary> {
    run_reloading(cfg, shutdown, None, metrics).await
}

/// A configuration to run instead of the current one, or `None`: the sender is gone.
pub type Reloads = mpsc::UnboundedReceiver<Config>;

/// [`run_with_metrics`], taking each configuration `reloads` delivers while running: the
/// pass in progress ends as a shutdown does (the lanes store and commit what they hold,
/// the consumer leaves the group), and the next starts with the new configuration from the
/// committed offsets. Exactly-once and at-least-once hold across it as across a restart.
/// Not taken by a reload: `service.metrics_listen` (the server keeps its address) and
/// `log_json` (logging is set up once); a new value is warned about.
pub async fn run_reloading(
    cfg: Config,
    shutdown: impl Future<Output = ()>,
    reloads: Option<Reloads>,
    metrics: Arc<Metrics>,
) -> Result<RunSummary> {
    let mut cfg = cfg;
    tokio::pin!(shutdown);
    let mut across = Across {
        health: crate::serve::Health::default(),
        server: None,
        left_out: LeftOut::default(),
        reloads,
    };
    // A run that stopped because a table changed under it starts over with the table planned
    // again; `changed` keeps why, and what the tables were planned as then.
    let mut changed: Option<(LaneFailure, Vec<PlanKey>)> = None;
    let outcome = loop {
        let pass = run_pass(
            &cfg,
            shutdown.as_mut(),
            &metrics,
            changed.as_ref(),
            &mut across,
        )
        .await;
        match pass {
            Ok((Pass::Stopped, _)) => break Ok(None),
            Ok((Pass::Refreshed, _)) => changed = None,
            Ok((Pass::Reloaded(new), _)) => {
                if new.service.metrics_listen != cfg.service.metrics_listen
                    || new.service.log_json != cfg.service.log_json
                {
                    tracing::warn!(
                        "service.metrics_listen and service.log_json keep their values until sluice is started again"
                    );
                }
                metrics
                    .config_reloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    routes = new.routes.len() + new.patterns.len(),
                    "configuration reloaded: starting over with it from the committed offsets"
                );
                cfg = *new;
                changed = None;
                across.left_out = LeftOut::default();
            }
            Ok((Pass::Failed(f), keys)) if f.table_changed => {
                tracing::warn!(error = %f,
                    "a table changed while running; reading its columns again and starting over from the committed offsets");
                for k in keys.iter().filter(|k| *k.topic == *f.partition.topic) {
                    RouteMetrics::add(&metrics.route(&k.topic, &k.table).table_replans, 1);
                }
                changed = Some((f, keys));
            }
            Ok((Pass::Failed(f), _)) => break Ok(Some(f)),
            Err(e) => break Err(e),
        }
    };
    across.health.set_serving(false);
    if let Some(server) = across.server {
        server.abort();
    }
    let summary = RunSummary {
        messages: metrics.total(|r| &r.messages),
        rows_inserted: metrics.total(|r| &r.rows_inserted),
        dead_lettered: metrics.total(|r| &r.dead_lettered),
        dropped: metrics.total(|r| &r.dropped),
    };
    match outcome? {
        Some(f) => Err(anyhow::Error::new(f).context(format!("sluice stopped ({summary})"))),
        None => Ok(summary),
    }
}

/// What a route's tables were planned as: the columns sent and their types, the format,
/// and the same of its dead-letter table. Two plans that agree on these send the same
/// inserts.
#[derive(Debug, PartialEq, Eq)]
struct PlanKey {
    route: String,
    topic: String,
    table: String,
    columns: Vec<(String, String)>,
    format: clickhouse::InsertFormat,
    dead_letters: Option<Vec<(String, String)>>,
}

impl PlanKey {
    fn of(route: &Route, table: &TablePlan, dead_letters: Option<&TablePlan>) -> Self {
        let columns = |p: &TablePlan| {
            p.lines
                .iter()
                .map(|l| (l.column.clone(), l.ty.clone()))
                .collect()
        };
        PlanKey {
            route: route.label(),
            topic: route.topic.clone(),
            table: route.table.clone(),
            columns: columns(table),
            format: table.format,
            dead_letters: dead_letters.map(columns),
        }
    }
}

/// Shard-aware writes (`clickhouse.shards`): connects to every shard after the first and
/// plans and checks each route there as on the first, which must give the same plan (the
/// same columns and types, insert format and dead-letter table: `keys`) and, for
/// exactly-once, tables that deduplicate. Returns every shard's client, `first` first (only
/// it without shards). Nothing is consumed until every shard has passed.
async fn connect_shards(
    cfg: &Config,
    first: &Client,
    keys: &[PlanKey],
    prepared: &[PreparedRoute],
    partitions: &TopicPartitions,
) -> Result<Arc<[Client]>> {
    let mut clients = vec![first.clone()];
    let Some(others) = cfg.clickhouse.shards.get(1..) else {
        return Ok(clients.into());
    };
    for url in others {
        let shard = || format!("ClickHouse shard {url}");
        let mut settings = clickhouse_settings(&cfg.clickhouse);
        settings.url = url.clone();
        let client = Client::connect(settings).await.with_context(shard)?;
        for (p, key) in prepared.iter().zip(keys) {
            plans_as_on_first(&client, cfg, &p.route, key, partitions)
                .await
                .with_context(shard)?;
        }
        tracing::info!(shard = %url, version = %client.server().version_string, "ClickHouse shard connected; tables planned");
        clients.push(client);
    }
    Ok(clients.into())
}

/// `route` planned and checked on `shard` as [`start_up`] does it, and its plan the first
/// shard's (`first`): the same columns and types, insert format and dead-letter table.
async fn plans_as_on_first(
    shard: &Client,
    cfg: &Config,
    route: &Route,
    first: &PlanKey,
    partitions: &TopicPartitions,
) -> Result<()> {
    let here = prepare_route(shard, cfg, route, partitions).await?;
    let planned = PlanKey::of(&here.route, &here.table, here.dead_letters.as_ref());
    if planned != *first {
        anyhow::bail!(
            "{}.{} is not the first shard's table: every shard's table (and dead-letter table) needs the same columns and types, and every shard the same insert format ({:?} here, {:?} on {})",
            route.database,
            route.table,
            planned.format,
            first.format,
            cfg.clickhouse.url
        );
    }
    Ok(())
}

/// `check`'s view of shard-aware writes: `route` on `shard` is planned and checked as on
/// `first` and gives the same plan (as `plans_as_on_first` checks it).
pub async fn check_route_on_shard(
    first: &Client,
    shard: &Client,
    cfg: &Config,
    route: &Route,
    partitions: &TopicPartitions,
) -> Result<()> {
    let p = prepare_route(first, cfg, route, partitions).await?;
    let key = PlanKey::of(&p.route, &p.table, p.dead_letters.as_ref());
    plans_as_on_first(shard, cfg, route, &key, partitions).await
}

/// The routes' tables as they are now, planned again, in the order of `cfg.routes`.
async fn plan_keys_now(client: &Client, cfg: &Config) -> Result<Vec<PlanKey>> {
    let mut keys = Vec::with_capacity(cfg.routes.len());
    for r in &cfg.routes {
        let ((table, _), dead_letters) = tokio::try_join!(
            plan_route_noting(client, r, false),
            plan_dead_letter_table_noting(client, r, false)
        )?;
        keys.push(PlanKey::of(
            r,
            &table,
            dead_letters.as_ref().map(|(p, _)| p),
        ));
    }
    Ok(keys)
}

/// How long a refresh of the tables' columns may take before it is left for the next one.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);

/// What a run keeps from one pass to the next.
struct Across {
    health: crate::serve::Health,
    /// The metrics server, started by the first pass that has an address for it.
    server: Option<tokio::task::JoinHandle<()>>,
    left_out: LeftOut,
    reloads: Option<Reloads>,
}

/// How one pass of the pipeline ended.
enum Pass {
    /// `shutdown` resolved.
    Stopped,
    /// A lane or the consumer failed; nothing past its data was committed.
    Failed(LaneFailure),
    /// A refresh found a table's columns changed: the lanes stored and committed what they
    /// held, as at a shutdown, and the next pass plans again.
    Refreshed,
    /// A new configuration arrived: the lanes stored and committed what they held, as at a
    /// shutdown, and the next pass runs it.
    Reloaded(Box<Config>),
}

/// The next configuration `reloads` delivers; never resolves without one (no channel, or
/// its sender gone: nothing more can come).
async fn next_reload(reloads: &mut Option<Reloads>) -> Config {
    match reloads.as_mut() {
        Some(r) => match r.recv().await {
            Some(cfg) => cfg,
            None => {
                *reloads = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// One pass: start up (plan every table), consume until `shutdown` or a failure, and stop
/// the consumer. `changed`: the table change that ended the previous pass, if one did; a
/// pass that plans the tables exactly as before stops with it instead of meeting it again.
async fn run_pass(
    cfg: &Config,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    metrics: &Arc<Metrics>,
    changed: Option<&(LaneFailure, Vec<PlanKey>)>,
    across: &mut Across,
) -> Result<(Pass, Vec<PlanKey>)> {
    let Across {
        health,
        server,
        left_out,
        reloads,
    } = across;
    // A stop requested while starting ends the run cleanly: nothing was consumed yet.
    let written = cfg;
    let started = start_up_expanding(written, left_out);
    let (expanded, client, prepared, partitions) = tokio::select! {
        p = started => p?,
        _ = &mut shutdown => {
            tracing::info!("stopped before the pipeline started");
            return Ok((Pass::Stopped, Vec::new()));
        }
    };
    // From here on the routes are those of the topics the patterns took this pass.
    let cfg = &expanded;
    if cfg.routes.is_empty() {
        return wait_for_topics(written, cfg, &client, shutdown, left_out, reloads).await;
    }
    let keys: Vec<PlanKey> = prepared
        .iter()
        .map(|p| PlanKey::of(&p.route, &p.table, p.dead_letters.as_ref()))
        .collect();
    if let Some((failure, before)) = changed {
        if *before == keys {
            anyhow::bail!(
                "{failure}; read again, the tables' columns and types are what they were, so the insert would be refused again: stopping without committing"
            );
        }
    }
    let shards = tokio::select! {
        s = connect_shards(cfg, &client, &keys, &prepared, &partitions) => s?,
        _ = &mut shutdown => {
            tracing::info!("stopped before the pipeline started");
            return Ok((Pass::Stopped, Vec::new()));
        }
    };
    tracing::info!(
        clickhouse = %cfg.clickhouse.url,
        version = %client.server().version_string,
        routes = prepared.len(),
        shards = shards.len(),
        "ClickHouse connected; tables planned"
    );
    let needs_dlq = prepared
        .iter()
        .any(|p| matches!(p.route.bad_messages, BadMessages::DeadLetter { .. }));
    let dlq = if needs_dlq {
        Some(
            DeadLetterProducer::new(&reliable_producer_config(&cfg.kafka))
                .context("cannot create the dead-letter producer")?,
        )
    } else {
        None
    };
    let mut routes = HashMap::new();
    let budget = crate::budget::MemoryBudget::new(cfg.service.batch_memory);
    let refetch = crate::kafka::refetch::Refetcher::new(consumer_config(&cfg.kafka));
    metrics.watch_budget(budget.clone());
    let registry = schema_registry(cfg)?;
    for p in prepared {
        let rt = RouteRuntime {
            metrics: metrics.route(&p.route.topic, &p.route.table),
            plan: p.table.plan,
            columns: p.table.columns,
            format: p.table.format,
            header: p.table.header,
            dead_letters: p.dead_letters,
            client: client.clone(),
            shards: shards.clone(),
            dlq: dlq.clone(),
            budget: budget.clone(),
            refetch: refetch.clone(),
            registry: p
                .route
                .format
                .uses_registry()
                .then(|| registry.clone())
                .flatten(),
            route: p.route,
        };
        routes.insert(rt.route.topic.clone(), Arc::new(rt));
    }
    let topics: Vec<String> = cfg.routes.iter().map(|r| r.topic.clone()).collect();
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel();
    let factory = Arc::new(Lanes {
        routes,
        runtime: tokio::runtime::Handle::current(),
        metrics: metrics.clone(),
        failures: fail_tx,
    });
    let limits = ConsumerLimits {
        chunk_records: CHUNK_RECORDS,
        chunk_bytes: CHUNK_BYTES,
        drain_timeout: cfg.service.shutdown_timeout,
        stash_bytes: STASH_BYTES,
        full_size_lanes: FULL_SIZE_LANES,
    };
    let mut kcfg = consumer_config(&cfg.kafka);
    // Bounds memory: what librdkafka prefetches for all partitions together. It counts message
    // bytes, but a queued message keeps its whole decompressed fetch buffer alive, so the
    // resident cost is a few times this. Now that a backlog holds the queue full rather than
    // pausing partitions (which emptied it), 16 MiB cost 1M wide messages 80 MiB more peak
    // RSS than 4 MiB, at the same speed (into a Null table: 4.0-4.1 s vs 4.2-4.6 s).
    // librdkafka also caps `fetch.max.bytes` (one fetch response) at this unless it is set.
    if !cfg
        .kafka
        .properties
        .contains_key("queued.max.messages.kbytes")
    {
        kcfg.set("queued.max.messages.kbytes", "4096");
    }
    fetch_defaults(&mut kcfg);
    if let (None, Some(addr)) = (&server, cfg.service.metrics_listen) {
        *server = Some(
            crate::serve::bind(addr, metrics.clone(), health.clone())
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?,
        );
    }
    if !cfg.kafka.properties.contains_key("statistics.interval.ms") {
        // Feeds the consumer lag gauge (per partition log end offsets).
        kcfg.set("statistics.interval.ms", "5000");
    }
    let own_fetch = if cfg.kafka.fetch == FetchPath::Sluice {
        own_fetch_settings(&kcfg, &cfg.kafka)
    } else {
        None
    };
    let consumer =
        ConsumerThread::start(kcfg, &topics, factory, limits, metrics.clone(), own_fetch)
            .context("cannot start the Kafka consumer")?;
    tracing::info!(brokers = %cfg.kafka.brokers, group = %cfg.kafka.group_id, topics = ?topics, "consuming");

    health.set_serving(true);
    let mut failure: Option<LaneFailure> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut refresh = cfg.service.table_refresh.map(|every| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let mut refreshed = false;
    let mut reloaded = None;
    // Lists the topics for the route patterns, made at the first refresh that needs it.
    let mut lister = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            new = next_reload(reloads) => {
                reloaded = Some(Box::new(new));
                break;
            }
            _ = async {
                match refresh.as_mut() {
                    Some(r) => {
                        r.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            } => {
                if topics_changed(written, cfg, &client, &mut lister, left_out).await {
                    refreshed = true;
                    break;
                }
                // Bounded, so that a slow server delays the loop's other duties only briefly.
                match tokio::time::timeout(REFRESH_TIMEOUT, plan_keys_now(&client, cfg)).await {
                    Ok(Ok(now)) if now != keys => {
                        let routes: Vec<&str> = keys
                            .iter()
                            .zip(&now)
                            .filter(|(a, b)| a != b)
                            .map(|(a, _)| a.route.as_str())
                            .collect();
                        tracing::warn!(routes = ?routes,
                            "a table's columns changed while running (read every table_refresh); planning again");
                        for (r, _) in cfg.routes.iter().zip(&keys).filter(|(_, k)| !now.contains(k)) {
                            RouteMetrics::add(&metrics.route(&r.topic, &r.table).table_replans, 1);
                        }
                        refreshed = true;
                        break;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"),
                        "cannot read the tables' columns again; keeping the plan"),
                    Err(_) => tracing::warn!(timeout = ?REFRESH_TIMEOUT,
                        "reading the tables' columns again timed out; keeping the plan"),
                }
            }
            f = fail_rx.recv() => {
                if let Some(f) = f {
                    tracing::error!(error = %f, "lane failed; stopping");
                    failure = Some(f);
                }
                break;
            }
            _ = tick.tick() => {
                if consumer.is_finished() {
                    failure = Some(LaneFailure {
                        partition: PartitionId::new("-", -1),
                        table_changed: false,
                        message: "the consumer thread ended unexpectedly".into(),
                    });
                    break;
                }
            }
        }
    }
    health.set_serving(false);
    consumer.stop().await;
    if failure.is_none() {
        if let Ok(f) = fail_rx.try_recv() {
            failure = Some(f);
        }
    }
    let pass = match (failure, reloaded) {
        (Some(f), _) => Pass::Failed(f),
        (None, Some(new)) => Pass::Reloaded(new),
        (None, None) if refreshed => Pass::Refreshed,
        (None, None) => Pass::Stopped,
    };
    Ok((pass, keys))
}

/// Whether the topics `written`'s patterns take differ from those of `current` (the pass's
/// expansion of it): a topic deleted since, or one created since (or left out before) whose
/// table can now take its rows. Asked every `table_refresh`; a failure to list the topics
/// keeps the current ones (logged), and a matching topic whose table cannot take its rows
/// yet stays out (warned about once: [`LeftOut`]).
async fn topics_changed(
    written: &Config,
    current: &Config,
    client: &Client,
    lister: &mut Option<Arc<TopicLister>>,
    left_out: &mut LeftOut,
) -> bool {
    if written.patterns.is_empty() {
        return false;
    }
    let lister = match lister {
        Some(l) => l.clone(),
        None => match TopicLister::new(&written.kafka) {
            Ok(l) => lister.insert(Arc::new(l)).clone(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the topics for the route patterns; keeping the current ones");
                return false;
            }
        },
    };
    let listed = tokio::task::spawn_blocking(move || lister.list(REFRESH_TIMEOUT)).await;
    let partitions = match listed {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot list the topics for the route patterns; keeping the current ones");
            return false;
        }
        Err(e) => {
            tracing::warn!(error = %e, "listing the topics for the route patterns failed; keeping the current ones");
            return false;
        }
    };
    let now = match patterns::expand(written, partitions.keys().map(String::as_str)) {
        Ok(now) => now,
        Err(e) => {
            tracing::warn!(error = %e, "a topic a route pattern takes cannot be routed; keeping the current topics");
            return false;
        }
    };
    let (before, after) = (patterns::topics(current), patterns::topics(&now));
    let gone: Vec<&str> = before
        .iter()
        .filter(|t| !after.contains(t))
        .copied()
        .collect();
    left_out
        .0
        .retain(|t, _| now.routes.iter().any(|r| r.topic == *t));
    let mut added = Vec::new();
    for route in now
        .routes
        .iter()
        .filter(|r| !before.contains(&r.topic.as_str()))
    {
        match prepare_route(client, &now, route, &partitions).await {
            Ok(_) => {
                left_out.taken(&route.topic);
                added.push(route.topic.as_str());
            }
            Err(e) => {
                left_out.note(&route.topic, format!("{e:#}"));
            }
        }
    }
    if added.is_empty() && gone.is_empty() {
        return false;
    }
    tracing::info!(added = ?added, gone = ?gone,
        "the topics the route patterns take changed; storing what the lanes hold and planning again");
    true
}

/// A pass whose patterns took no topic (and which has no other route): waits, listing the
/// topics every `table_refresh`, until one appears (a new pass) or `shutdown`.
async fn wait_for_topics(
    written: &Config,
    current: &Config,
    client: &Client,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    left_out: &mut LeftOut,
    reloads: &mut Option<Reloads>,
) -> Result<(Pass, Vec<PlanKey>)> {
    let mut lister = None;
    let Some(every) = written.service.table_refresh else {
        anyhow::bail!(
            "no topic the routes' topic_pattern take can be read (none matches, or their tables are missing), and with table_refresh = \"0s\" sluice would never look again: create a topic first, or set table_refresh"
        );
    };
    let sources: Vec<&str> = written.patterns.iter().map(|p| p.source.as_str()).collect();
    tracing::warn!(patterns = ?sources, every = ?every, "no topic the route patterns take can be read yet (none matches, or their tables are missing); waiting for one");
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok((Pass::Stopped, Vec::new())),
            new = next_reload(reloads) => return Ok((Pass::Reloaded(Box::new(new)), Vec::new())),
            _ = tokio::time::sleep(every) => {
                if topics_changed(written, current, client, &mut lister, left_out).await {
                    return Ok((Pass::Refreshed, Vec::new()));
                }
            }
        }
    }
}

/// The own fetch path's limits, from the same librdkafka settings the pipeline fetches with
/// (`fetch_defaults`, or the user's `properties`), and its TLS and SASL. `None` when the TLS
/// files cannot be read as the own path needs them: librdkafka then fetches (said in the log),
/// which costs speed, not data.
fn own_fetch_settings(
    kcfg: &rdkafka::ClientConfig,
    k: &KafkaConfig,
) -> Option<own_fetch::Settings> {
    let security = match crate::kafka::secure::Security::new(k) {
        Ok(s) => s,
        Err(why) => {
            tracing::warn!(reason = %why, "librdkafka fetches the records: the own fetch path cannot use the TLS settings");
            return None;
        }
    };
    let num = |key: &str, default: i32| {
        kcfg.get(key)
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|v| *v > 0)
            .unwrap_or(default)
    };
    Some(own_fetch::Settings {
        client_id: kcfg.get("client.id").unwrap_or("sluice").to_string(),
        max_wait: Duration::from_millis(num("fetch.wait.max.ms", 100) as u64),
        partition_max_bytes: num("max.partition.fetch.bytes", 4 << 20),
        // Twice librdkafka's response cap here (its 4 MiB prefetch): the response is read
        // into one buffer and copied into chunks, held once, not per message.
        max_bytes: OWN_FETCH_MAX_BYTES,
        chunk_records: CHUNK_RECORDS,
        chunk_bytes: CHUNK_BYTES,
        queue_chunks: OWN_FETCH_QUEUE_CHUNKS,
        security,
    })
}

#[cfg(test)]
mod tests {
    use super::LeftOut;

    /// A topic left out for want of a table is warned about once, again only when the
    /// reason changes or after it was taken (or gone) in between.
    #[test]
    fn a_left_out_topic_is_warned_about_once_per_reason() {
        let mut left_out = LeftOut::default();
        let missing = || "table default.t does not exist".to_string();
        assert!(left_out.note("t", missing()));
        assert!(!left_out.note("t", missing()));
        assert!(!left_out.note("t", missing()));
        assert!(left_out.note("u", missing()), "each topic on its own");
        assert!(left_out.note("t", "exactly-once needs a deduplication window".into()));
        left_out.taken("t");
        assert!(
            left_out.note("t", missing()),
            "left out again after it was taken"
        );
    }
}
