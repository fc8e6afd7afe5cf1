//! Shard-aware writes (`clickhouse.shards`) against the testbed's two real ClickHouse 26.9
//! servers: each partition's rows land on its shard's table, exactly once, through a crash
//! between an insert and its commit; a shard whose table differs stops the start.

mod common;

use std::time::Duration;

use common::*;

/// `sluice check` of `text`: whether it passed, and what it printed.
async fn check(text: &str) -> (bool, String) {
    let cfg = sluice::config::from_str(text, Vec::new()).expect("config");
    let mut out = Vec::new();
    let ok = sluice::check::run(&cfg, &mut out).await;
    (ok, String::from_utf8_lossy(&out).into_owned())
}

/// Rows per partition on the shard at `url`.
async fn partitions_on(url: &str, table: &str) -> Vec<(i32, u64)> {
    ch_at(
        url,
        &format!("SELECT _partition, count() FROM default.{table} GROUP BY _partition ORDER BY _partition FORMAT TSV"),
    )
    .await
    .lines()
    .filter_map(|l| {
        let (p, n) = l.split_once('\t')?;
        Some((p.parse().ok()?, n.parse().ok()?))
    })
    .collect()
}

/// The route of the crash tests: exactly-once, batches of 250 rows.
const CRASH_ROUTE: &str = "delivery = \"exactly-once\"\nmax_rows = 250\n";

/// A topic of 4 partitions holding ids 0..N (id % 4 the partition), its table on both
/// shards, a consumer group, and a config file of the two shards with [`CRASH_ROUTE`].
struct Sharded {
    topic: String,
    group: String,
    path: std::path::PathBuf,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Ids in each crash test's topic.
const N: u64 = 4_000;

async fn sharded_topic(prefix: &str) -> Sharded {
    let topic = unique(prefix);
    create_topic(&topic, 4).await;
    create_on_both(&topic, "id UInt64, _partition Int32").await;
    produce(
        &topic,
        (0..N).map(|i| Msg::json((i % 4) as i32, format!("{{\"id\":{i}}}"))),
    );
    let group = unique("g");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, sharded_config(&group, &topic, CRASH_ROUTE)).expect("config");
    Sharded {
        log: dir.path().join("sluice.log"),
        topic,
        group,
        path,
        _dir: dir,
    }
}

impl Sharded {
    /// Runs sluice until it dies (as by kill -9) after its third insert and before that
    /// insert's commit.
    fn crash_after_third_insert(&self) {
        let crashed = Sluice::spawn_env(
            &self.path,
            &self.log,
            &[("SLUICE_FAILPOINTS", "after_insert_before_commit@3")],
        )
        .wait(Duration::from_secs(60));
        assert!(!crashed.success(), "the failpoint aborts the run");
    }

    /// Runs sluice (with the config file as it is now) until every offset is committed,
    /// then stops it gracefully.
    async fn resume_to_the_end(&self) {
        let mut resumed = Sluice::spawn(&self.path, &self.log);
        wait_for_commit(&self.group, &self.topic, 4, N as i64).await;
        resumed.signal("-TERM");
        assert!(resumed.wait(Duration::from_secs(60)).success());
    }

    /// Rows and distinct ids across both shards.
    async fn stored(&self) -> (u64, u64) {
        let (mut total, mut distinct) = (0, 0);
        for url in [ch_url(), shard2_url()] {
            let table = format!("default.{}", self.topic);
            total += ch_u64_at(&url, &format!("SELECT count() FROM {table}")).await;
            distinct += ch_u64_at(&url, &format!("SELECT uniqExact(id) FROM {table}")).await;
        }
        (total, distinct)
    }
}

/// 4 partitions over 2 shards, exactly-once; the first run dies (as by kill -9) after its
/// third insert and before that insert's commit, the second resumes. Every partition's rows
/// are on the one shard `shard_of` names, none on the other, and across both shards every
/// id is stored once: the range in flight at the crash was sent again to the shard that had
/// stored it, whose deduplication dropped it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_partition_lands_on_its_shard_exactly_once_through_a_crash() {
    init_logs();
    let sharded = sharded_topic("sharded").await;
    let (topic, path) = (&sharded.topic, &sharded.path);
    // `check` lists each shard's partitions and checks its table.
    let text = std::fs::read_to_string(path).expect("config");
    let (ok, out) = check(&text).await;
    assert!(ok, "{out}");
    let taken = |shard: usize| -> String {
        (0..4)
            .filter(|p| sluice::clickhouse::shards::shard_of(topic, *p, 2) == shard)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert!(
        out.contains(&format!(
            "  shard {}: partitions [{}]\n",
            ch_url(),
            taken(0)
        )) && out.contains(&format!(
            "  shard {}: partitions [{}] (the table agrees with the first shard's)\n",
            shard2_url(),
            taken(1)
        )),
        "{out}"
    );

    sharded.crash_after_third_insert();
    let stored_before = sharded.stored().await.0;
    assert!(stored_before > 0, "the first run stored something");
    sharded.resume_to_the_end().await;

    let (first, second) = (
        partitions_on(&ch_url(), topic).await,
        partitions_on(&shard2_url(), topic).await,
    );
    let mut want: [Vec<(i32, u64)>; 2] = [Vec::new(), Vec::new()];
    for p in 0..4 {
        want[sluice::clickhouse::shards::shard_of(topic, p, 2)].push((p, N / 4));
    }
    assert_eq!(
        [first.clone(), second.clone()],
        want,
        "rows per partition on each shard"
    );
    assert!(
        !first.is_empty() && !second.is_empty(),
        "both shards take partitions: {first:?} {second:?}"
    );
    assert_eq!(
        sharded.stored().await,
        (N, N),
        "every id stored, none on both shards"
    );
}

/// The shard list reversed between a crash and the restart (every partition moves to the
/// other server): the range in flight at the crash names its shard in its record and is sent
/// again there, where it is recognised, before its partition moves; every id is stored once
/// across both servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_range_in_flight_goes_back_to_its_shard_when_the_list_changes() {
    init_logs();
    let sharded = sharded_topic("reshard").await;
    let topic = &sharded.topic;
    sharded.crash_after_third_insert();

    // The same servers, the other way round: url is now the second one.
    let reversed = config(&sharded.group, &[(topic, topic)], CRASH_ROUTE).replacen(
        &format!("url = \"{}\"", ch_url()),
        &format!(
            "url = \"{}\"\nshards = [\"{}\", \"{}\"]",
            shard2_url(),
            shard2_url(),
            ch_url()
        ),
        1,
    );
    assert!(reversed.contains("shards = ["), "{reversed}");
    std::fs::write(&sharded.path, reversed).expect("config");
    sharded.resume_to_the_end().await;
    assert_eq!(
        sharded.stored().await,
        (N, N),
        "every id once across both servers"
    );
    let text = std::fs::read_to_string(&sharded.log).unwrap_or_default();
    assert!(
        text.contains("went to another shard than the partition's now; re-forming it there"),
        "the recorded range was not sent back to its shard"
    );
}

/// A shard whose table lacks a column the first shard's has is refused before anything is
/// consumed, naming the shard and the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_whose_table_differs_stops_the_start() {
    init_logs();
    let topic = unique("sharddiff");
    create_topic(&topic, 2).await;
    ch(&format!(
        "CREATE TABLE default.{topic} (id UInt64, name String) ENGINE = MergeTree ORDER BY id"
    ))
    .await;
    ch_at(
        &shard2_url(),
        &format!("CREATE TABLE default.{topic} (id UInt64) ENGINE = MergeTree ORDER BY id"),
    )
    .await;
    produce(&topic, [Msg::json(0, r#"{"id":1,"name":"a"}"#.to_string())]);
    let text = sharded_config(&unique("g"), &topic, "");
    let (ok, out) = check(&text).await;
    assert!(!ok, "{out}");
    let second: Vec<String> = (0..2)
        .filter(|p| sluice::clickhouse::shards::shard_of(&topic, *p, 2) == 1)
        .map(|p| p.to_string())
        .collect();
    let said = format!(
        "  shard {}: partitions [{}]: FAILED: default.{topic} is not the first shard's table",
        shard2_url(),
        second.join(", ")
    );
    assert!(out.contains(&said), "{out}");
    let cfg = sluice::config::from_str(&text, Vec::new()).expect("config");
    let err = sluice::pipeline::run(cfg, std::future::pending())
        .await
        .expect_err("the start is refused");
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("ClickHouse shard {}", shard2_url()))
            && text.contains(&format!("default.{topic} is not the first shard's table")),
        "{text}"
    );
    assert_eq!(
        ch_u64(&format!("SELECT count() FROM default.{topic}")).await,
        0,
        "nothing stored"
    );
}
