//! Shared helpers of the integration tests: addresses of the real servers (from the env that
//! `./dev/testbed env` prints, localhost defaults otherwise), unique names, topic creation,
//! producing, ClickHouse queries, and running the real pipeline in-process.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub fn kafka() -> String {
    std::env::var("SLUICE_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

pub fn ch_url() -> String {
    std::env::var("SLUICE_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:18123".into())
}

/// The testbed's second ClickHouse 26.9 server: the second shard of the shard tests.
pub fn shard2_url() -> String {
    std::env::var("SLUICE_TEST_CLICKHOUSE_SHARD2_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:18124".into())
}

/// A deduplicating MergeTree table on both test shards (each shard's own, as a
/// Distributed table's local tables are).
pub async fn create_on_both(table: &str, columns: &str) {
    for url in [ch_url(), shard2_url()] {
        ch_at(
            &url,
            &format!(
                "CREATE TABLE default.{table} ({columns}) ENGINE = MergeTree ORDER BY id \
                 SETTINGS non_replicated_deduplication_window = 1000"
            ),
        )
        .await;
    }
}

/// [`config`] of one route from `topic` into the table of the same name, on both test
/// shards (`clickhouse.shards`).
pub fn sharded_config(group: &str, topic: &str, route: &str) -> String {
    config(group, &[(topic, topic)], route).replacen(
        "[clickhouse]\n",
        &format!(
            "[clickhouse]\nshards = [\"{}\", \"{}\"]\n",
            ch_url(),
            shard2_url()
        ),
        1,
    )
}

pub fn legacy_ch_url() -> String {
    std::env::var("SLUICE_TEST_LEGACY_CLICKHOUSE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:28123".into())
}

/// The testbed's Confluent-compatible schema registry API.
pub fn registry_url() -> String {
    std::env::var("SLUICE_TEST_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:18081/apis/ccompat/v7".into())
}

/// Registers `schema` (of `schema_type`, None = Avro) under `subject` in the testbed's
/// registry, as a producer's serializer does; returns its id.
pub async fn register_schema(subject: &str, schema_type: Option<&str>, schema: &str) -> u32 {
    register_schema_with(subject, schema_type, schema, &[]).await
}

/// [`register_schema`] with references: (name, subject, version) of each schema it uses.
pub async fn register_schema_with(
    subject: &str,
    schema_type: Option<&str>,
    schema: &str,
    references: &[(&str, &str, u32)],
) -> u32 {
    let mut body = serde_json::json!({ "schema": schema });
    if let Some(t) = schema_type {
        body["schemaType"] = t.into();
    }
    if !references.is_empty() {
        body["references"] = references
            .iter()
            .map(|(name, subject, version)| {
                serde_json::json!({ "name": name, "subject": subject, "version": version })
            })
            .collect();
    }
    let url = format!("{}/subjects/{subject}/versions", registry_url());
    let resp = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e} (is the testbed's registry up?)"));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "{url}: {status}: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id in {text}")) as u32
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{:x}_{}",
        std::process::id(),
        nanos & 0xffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a query on the ClickHouse at `url`; panics with the server's message on error.
pub async fn ch_at(url: &str, sql: &str) -> String {
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{url}/"))
        .body(sql.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("ClickHouse {url} unreachable: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "query failed ({status}): {sql}\n{text}"
    );
    text
}

pub async fn ch(sql: &str) -> String {
    ch_at(&ch_url(), sql).await
}

pub async fn ch_u64_at(url: &str, sql: &str) -> u64 {
    ch_at(url, sql)
        .await
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("not a number from {sql}: {e}"))
}

pub async fn ch_u64(sql: &str) -> u64 {
    ch_u64_at(&ch_url(), sql).await
}

/// Runs `./dev/testbed ACTION` (stop/start/kill a test server); panics when it fails.
pub fn testbed(action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/dev/testbed");
    let out = Command::new(script)
        .arg(action)
        .output()
        .expect("run dev/testbed");
    assert!(
        out.status.success(),
        "dev/testbed {action} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", kafka());
    c
}

pub fn admin() -> AdminClient<DefaultClientContext> {
    client_config().create().expect("admin client")
}

pub async fn create_topic(name: &str, partitions: i32) {
    let res = admin()
        .create_topics(
            [&NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topic request");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
    // CreateTopics answers once the controller has the topic; the broker's metadata can lag
    // behind it, and a test that asks right away is told the topic does not exist.
    let (config, name) = (client_config(), name.to_string());
    tokio::task::spawn_blocking(move || {
        sluice::tools::topics::wait_until_visible(&config, &name, partitions)
    })
    .await
    .expect("metadata wait task")
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// A fresh topic named from `prefix` with `partitions`, and a MergeTree table
/// `default.<topic>` with `columns`, ordered by `id`. Returns (topic, table).
pub async fn topic_with_table(prefix: &str, partitions: i32, columns: &str) -> (String, String) {
    let topic = unique(prefix);
    create_topic(&topic, partitions).await;
    let table = format!("default.{topic}");
    ch(&format!(
        "CREATE TABLE {table} ({columns}) ENGINE = MergeTree ORDER BY id"
    ))
    .await;
    (topic, table)
}

/// A fresh topic for an exactly-once route: `partitions`, its dead-letter topic, and a
/// MergeTree table `default.<topic>` with `columns`, ordered by `id`, that deduplicates
/// repeated inserts (`non_replicated_deduplication_window`). Returns the topic.
pub async fn exactly_once_topic(prefix: &str, partitions: i32, columns: &str) -> String {
    let topic = unique(prefix);
    create_topic(&topic, partitions).await;
    create_topic(&format!("{topic}.dlq"), 1).await;
    ch(&format!(
        "CREATE TABLE default.{topic} ({columns}) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000"
    ))
    .await;
    topic
}

pub fn producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// A transactional producer of the test broker, its transactions initialised.
pub fn transactional_producer() -> BaseProducer {
    let tx: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("transactional.id", unique("tx"))
        .set("linger.ms", "0")
        .create()
        .expect("transactional producer");
    tx.init_transactions(Duration::from_secs(30))
        .expect("init transactions");
    tx
}

/// One message to produce.
pub struct Msg {
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl Msg {
    pub fn json(partition: i32, payload: impl Into<String>) -> Self {
        Msg {
            partition: Some(partition),
            key: None,
            payload: Some(payload.into().into_bytes()),
            headers: Vec::new(),
        }
    }
}

/// Messages `{"id": i, "<field>": "<prefix>i"}` for `i` in `from..to`, spread over
/// `partitions` by id.
pub fn id_messages(from: u64, to: u64, partitions: i32, field: &str, prefix: &str) -> Vec<Msg> {
    (from..to)
        .map(|i| {
            Msg::json(
                (i % partitions as u64) as i32,
                format!(r#"{{"id":{i},"{field}":"{prefix}{i}"}}"#),
            )
        })
        .collect()
}

/// Produces every message (acks=all, idempotent) and waits until all are acknowledged.
pub fn produce(topic: &str, msgs: impl IntoIterator<Item = Msg>) {
    produce_with(&producer(), topic, msgs)
}

/// [`produce`] through an existing producer (cheaper for many small batches).
pub fn produce_with(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    msgs: impl IntoIterator<Item = Msg>,
) {
    for m in msgs {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &m.headers {
            headers = headers.insert(Header {
                key: k.as_str(),
                value: Some(v.as_bytes()),
            });
        }
        loop {
            let mut rec: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(topic).headers(headers.clone());
            if let Some(p) = m.partition {
                rec = rec.partition(p);
            }
            if let Some(k) = &m.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &m.payload {
                rec = rec.payload(v.as_slice());
            }
            match p.send(rec) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(
                        e.to_string().contains("Queue full"),
                        "produce to {topic} failed: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60))
        .expect("all messages acknowledged");
}

/// Reads a whole topic from the beginning (no group commits) until idle for `idle`. A topic
/// that does not exist yet (a dead-letter topic is created by its first message, which may
/// still be on its way: a bad message's original is read back from Kafka first) is waited
/// for up to `idle` too.
pub fn read_topic(topic: &str, idle: Duration) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("consumer");
    let appear = Instant::now();
    let mut tpl = TopicPartitionList::new();
    loop {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        for t in md.topics().iter().filter(|t| t.error().is_none()) {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .expect("tpl");
            }
        }
        if tpl.count() > 0 || appear.elapsed() >= idle {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < idle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(m.detach());
            last = Instant::now();
        }
    }
    out
}

/// Committed offsets of `group` for `topic`, summed over partitions.
pub fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    committed_offsets(group, topic, partitions).iter().sum()
}

/// The offset `group` committed on each of `topic`'s first `partitions` partitions (0 where
/// none).
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    c.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .collect()
}

/// Waits (up to 30 s) until `group` has committed offsets adding up to `at_least` on `topic`'s
/// first `partitions` partitions; returns the committed total.
pub async fn wait_for_commit(group: &str, topic: &str, partitions: i32, at_least: i64) -> i64 {
    let start = Instant::now();
    loop {
        let (g, t) = (group.to_string(), topic.to_string());
        let committed = tokio::task::spawn_blocking(move || committed_total(&g, &t, partitions))
            .await
            .unwrap_or(0);
        if committed >= at_least || start.elapsed() > Duration::from_secs(30) {
            return committed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `SELECT count()` until it reaches `expected` or `timeout` passes; returns the count.
pub async fn wait_for_count_at(url: &str, table: &str, expected: u64, timeout: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let n: u64 = ch_at(url, &format!("SELECT count() FROM {table}"))
            .await
            .trim()
            .parse()
            .unwrap_or(0);
        if n >= expected || start.elapsed() > timeout {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn wait_for_count(table: &str, expected: u64, timeout: Duration) -> u64 {
    wait_for_count_at(&ch_url(), table, expected, timeout).await
}

/// A config for one or more routes against the test servers.
pub fn config(group: &str, routes: &[(&str, &str)], extra_route: &str) -> String {
    config_at(&ch_url(), group, routes, extra_route)
}

pub fn config_at(url: &str, group: &str, routes: &[(&str, &str)], extra_route: &str) -> String {
    let mut s = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\nsession_timeout = \"10s\"\n\n[clickhouse]\nurl = \"{url}\"\n\n[service]\nshutdown_timeout = \"20s\"\n",
        kafka()
    );
    // Tests say which guarantee they exercise; plain MergeTree test tables cannot hold the
    // default (exactly-once), so at-least-once unless the route says otherwise.
    let delivery = if extra_route.contains("delivery") {
        ""
    } else {
        "delivery = \"at-least-once\"\n"
    };
    for (topic, table) in routes {
        s.push_str(&format!(
            "\n[[route]]\ntopic = \"{topic}\"\ntable = \"{table}\"\nmax_age = \"200ms\"\n{delivery}{extra_route}\n"
        ));
    }
    s
}

/// The real pipeline, in-process, stopped through its shutdown future.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<sluice::pipeline::RunSummary>>,
}

pub fn start(config_text: &str) -> Running {
    let cfg = sluice::config::from_str(config_text, Vec::new()).expect("valid config");
    start_with_metrics(cfg).0
}

/// The value of a route-labelled counter (its first series) in the metrics registry.
pub fn route_counter(metrics: &sluice::telemetry::Metrics, name: &str) -> u64 {
    let rendered = metrics.render();
    rendered
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{rendered}"))
}

/// The real pipeline from a parsed config, with its metrics registry to read while it runs.
pub fn start_with_metrics(
    cfg: sluice::config::Config,
) -> (Running, std::sync::Arc<sluice::telemetry::Metrics>) {
    let metrics = std::sync::Arc::new(sluice::telemetry::Metrics::default());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sluice::pipeline::run_with_metrics(
        cfg,
        async move {
            let _ = rx.await;
        },
        metrics.clone(),
    ));
    (
        Running {
            stop: Some(tx),
            task,
        },
        metrics,
    )
}

impl Running {
    /// Waits up to `within` for the run to end by itself, which it must do with an error.
    pub async fn failure(self, within: Duration) -> anyhow::Error {
        // Dropping the sender would be a shutdown request: keep it until the run has ended.
        let Running { stop: _keep, task } = self;
        match tokio::time::timeout(within, task)
            .await
            .expect("the run ends by itself")
            .expect("pipeline task")
        {
            Ok(summary) => panic!("the run ended without an error: {summary}"),
            Err(e) => e,
        }
    }

    pub async fn stop(mut self) -> sluice::pipeline::RunSummary {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("pipeline stops within 60s")
            .expect("pipeline task")
            .expect("pipeline ran without error")
    }
}

pub fn init_logs() {
    sluice::telemetry_init(false);
}

/// A sluice binary running as a child process (the real `sluice run`).
pub struct Sluice {
    child: Child,
    log: std::path::PathBuf,
    /// Where this process's lines start in the (shared, appended) log file.
    log_start: u64,
}

impl Sluice {
    pub fn spawn(config_path: &std::path::Path, log: &std::path::Path) -> Sluice {
        Sluice::spawn_env(config_path, log, &[])
    }

    /// With extra environment variables (e.g. `SLUICE_FAILPOINTS`).
    pub fn spawn_env(
        config_path: &std::path::Path,
        log: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Sluice {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let log_start = file.metadata().map(|m| m.len()).unwrap_or(0);
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(config_path)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start sluice");
        Sluice {
            child,
            log: log.to_path_buf(),
            log_start,
        }
    }

    /// Sends `sig` (as `kill` spells it). A graceful signal waits first for the process's
    /// "sluice starting" line: before it, the process may not have its handlers yet (it is
    /// still being exec'd), and the test would measure the kernel's default action instead
    /// of sluice's shutdown.
    pub fn signal(&mut self, sig: &str) {
        if sig != "-KILL" && sig != "-9" {
            self.wait_started(Duration::from_secs(30));
        }
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// This process's lines of the (shared, appended) log file.
    fn own_log(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(text.get(self.log_start as usize..).unwrap_or_default())
            .into_owned()
    }

    fn wait_started(&mut self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout && self.is_running() {
            if self.own_log().contains("sluice starting") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the exit; panics past `timeout`.
    pub fn wait(mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                // The process's own last lines say where it stopped.
                let own = self.own_log();
                let tail: Vec<&str> = own.lines().rev().take(60).collect();
                panic!(
                    "sluice did not exit within {timeout:?}; its log tail:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `sluice.error` header of every message in dead-letter topic `dlq`.
pub fn dead_letter_reasons(dlq: &str) -> Vec<String> {
    use rdkafka::message::{Headers, Message};
    read_topic(dlq, Duration::from_secs(3))
        .iter()
        .map(|m| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == "sluice.error"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// One request a [`registry_proxy`] received.
pub struct ProxyRequest {
    pub method: reqwest::Method,
    /// Path and query, as the client sent them.
    pub target: String,
    /// The `Authorization` header ("" without one).
    pub authorization: String,
    pub body: Vec<u8>,
}

impl ProxyRequest {
    /// Sends the request on to `upstream` (a base URL), credentials and body included: its
    /// status and body.
    pub async fn forward(&self, http: &reqwest::Client, upstream: &str) -> (u16, Vec<u8>) {
        let mut req = http
            .request(self.method.clone(), format!("{upstream}{}", self.target))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(self.body.clone());
        if !self.authorization.is_empty() {
            req = req.header("authorization", &self.authorization);
        }
        let r = req.send().await.expect("the upstream registry answers");
        let status = r.status().as_u16();
        (
            status,
            r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
        )
    }
}

/// An HTTP server on a free local port in front of a registry, for the failures a real one
/// cannot be asked to have: `answer` gives each request's status and JSON body (forwarding
/// it with [`ProxyRequest::forward`] or not). Returns its base URL.
pub async fn registry_proxy<F, Fut>(answer: F) -> String
where
    F: Fn(ProxyRequest) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = (u16, Vec<u8>)> + Send + 'static,
{
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("the proxy's address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let answer = answer.clone();
                        async move {
                            let authorization = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string();
                            let method = req.method().clone();
                            let target = req.uri().to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let (status, body) = answer(ProxyRequest {
                                method,
                                target,
                                authorization,
                                body,
                            })
                            .await;
                            hyper::Response::builder()
                                .status(status)
                                .header("Content-Type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}
