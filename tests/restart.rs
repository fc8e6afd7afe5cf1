//! sluice stopped mid-stream, gracefully and with kill -9, then started again, while
//! messages keep arriving: nothing is lost. A graceful stop (SIGTERM) flushes and commits,
//! so a graceful restart also duplicates nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;

const TABLE_DDL: &str = "(id UInt64, payload String, _partition Int32, _offset Int64) ENGINE = MergeTree ORDER BY (_partition, _offset)";

fn msg(i: u64) -> Msg {
    Msg::json(
        (i % 4) as i32,
        format!("{{\"id\":{i},\"payload\":\"{}\"}}", "x".repeat(150)),
    )
}

/// Produces ids `from..to` in steps, pausing between them, on a thread of its own.
fn produce_slowly(topic: String, from: u64, to: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let step = 2_000;
        let mut i = from;
        while i < to {
            let end = (i + step).min(to);
            produce(&topic, (i..end).map(msg));
            i = end;
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

async fn setup(partitions: i32) -> (String, String) {
    let topic = unique("restart");
    create_topic(&topic, partitions).await;
    let table = format!("default.{topic}");
    ch(&format!("CREATE TABLE {table} {TABLE_DDL}")).await;
    (topic, table)
}

async fn missing_and_duplicates(table: &str, expected: u64) -> (u64, u64) {
    let distinct = ch_u64(&format!(
        "SELECT uniqExact(id) FROM {table} WHERE id < {expected}"
    ))
    .await;
    let total = ch_u64(&format!("SELECT count() FROM {table}")).await;
    (expected - distinct, total - distinct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_restart_mid_stream_loses_and_duplicates_nothing() {
    init_logs();
    let (topic, table) = setup(4).await;
    let group = unique("g");
    let cfg = config(&group, &[(&topic, &topic)], "max_rows = 1000");
    let total = 40_000;
    let producer = produce_slowly(topic.clone(), 0, total);
    for round in 0..3 {
        let run = start(&cfg);
        // Let it ingest for a while, then stop it in the middle of the stream.
        let target = (round + 1) * 8_000;
        wait_for_count(&table, target, Duration::from_secs(60)).await;
        run.stop().await;
    }
    producer.join().expect("producer thread");
    let run = start(&cfg);
    let got = wait_for_count(&table, total, Duration::from_secs(90)).await;
    run.stop().await;
    assert_eq!(got, total);
    let (missing, dups) = missing_and_duplicates(&table, total).await;
    assert_eq!((missing, dups), (0, 0), "missing, duplicated");
    assert_eq!(committed_total(&group, &topic, 4), total as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_stream_loses_nothing_and_sigterm_exits_cleanly() {
    init_logs();
    let (topic, table) = setup(4).await;
    let group = unique("g");
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg_path = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg_path,
        config(&group, &[(&topic, &topic)], "max_rows = 500"),
    )
    .expect("write config");
    let log = dir.path().join("sluice.log");
    let total = 30_000;
    let producer = produce_slowly(topic.clone(), 0, total);
    let mut kills = 0;
    for round in 1..=4u64 {
        let mut s = Sluice::spawn(&cfg_path, &log);
        wait_for_count(&table, round * 5_000, Duration::from_secs(60)).await;
        // Random-ish moment: somewhere inside the next batch.
        tokio::time::sleep(Duration::from_millis(37 * round)).await;
        s.signal("-KILL");
        let _ = s.wait(Duration::from_secs(10));
        kills += 1;
    }
    producer.join().expect("producer thread");
    let mut s = Sluice::spawn(&cfg_path, &log);
    // Every id stored at least once: the row count alone can reach `total` through the
    // at-least-once duplicates of the killed rounds while ids are still missing.
    let waited = Instant::now();
    let mut missing = u64::MAX;
    while waited.elapsed() < Duration::from_secs(90) {
        missing = missing_and_duplicates(&table, total).await.0;
        if missing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(missing, 0, "ids missing after {kills} kills");
    // The ids can all be there through the killed rounds' uncommitted inserts while this
    // process has not read its way to the end yet: wait until it has committed everything.
    let (g, t) = (group.clone(), topic.clone());
    let waited = Instant::now();
    while committed_total(&g, &t, 4) < total as i64 && waited.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Graceful stop: exit 0, within the shutdown timeout, everything committed.
    let t = Instant::now();
    s.signal("-TERM");
    let status = s.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit status {status:?}; log in {}",
        log.display()
    );
    assert!(t.elapsed() < Duration::from_secs(25));
    let (missing, dups) = missing_and_duplicates(&table, total).await;
    assert_eq!(missing, 0, "rows lost after kill -9 (duplicates: {dups})");
    eprintln!(
        "kill -9 x{kills}: produced={total} missing={missing} duplicated={dups} (at-least-once)"
    );
    assert_eq!(committed_total(&group, &topic, 4), total as i64);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("sluice stopped"),
        "final log line missing:\n{text}"
    );
}
