//! ClickHouse stopped for a while in the middle of the stream, then started again: sluice
//! retries with backoff, never commits past unstored rows, and loses nothing.
//!
//! This binary stops the shared test server, so it holds a single test: cargo runs test
//! binaries one after another, and no other test sees the outage.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clickhouse_down_mid_stream_loses_nothing() {
    init_logs();
    let (topic, table) = topic_with_table(
        "outage",
        4,
        "id UInt64, v String, _partition Int32, _offset Int64",
    )
    .await;
    let group = unique("g");
    let total = 40_000u64;
    produce(
        &topic,
        (0..total / 2).map(|i| Msg::json((i % 4) as i32, format!("{{\"id\":{i},\"v\":\"a{i}\"}}"))),
    );
    let run = start(&config(&group, &[(&topic, &topic)], "max_rows = 2000"));
    wait_for_count(&table, 2_000, Duration::from_secs(60)).await;

    testbed("stop-clickhouse");
    // Messages keep arriving while ClickHouse is away.
    let t2 = topic.clone();
    let producer = std::thread::spawn(move || {
        produce(
            &t2,
            (total / 2..total)
                .map(|i| Msg::json((i % 4) as i32, format!("{{\"id\":{i},\"v\":\"a{i}\"}}"))),
        );
    });
    tokio::time::sleep(Duration::from_secs(6)).await;
    let committed_while_down = committed_total(&group, &topic, 4);
    testbed("start-clickhouse");
    // Read at once: sluice's retry backoff has likely not inserted again yet, and whatever it
    // did insert since only makes this bound looser, never wrong.
    let stored_at_restart = ch_u64(&format!("SELECT count() FROM {table}")).await;
    producer.join().expect("producer");

    let got = wait_for_count(&table, total, Duration::from_secs(120)).await;
    let summary = run.stop().await;
    let distinct = ch_u64(&format!("SELECT uniqExact(id) FROM {table}")).await;
    assert_eq!(distinct, total, "missing rows: {}", total - distinct);
    assert!(got >= total);
    // Nothing was committed past what was stored: while ClickHouse was down nothing could be
    // stored, so the offsets committed then cover at most the rows stored before.
    assert!(
        committed_while_down as u64 <= stored_at_restart,
        "committed {committed_while_down} messages while only {stored_at_restart} rows were stored"
    );
    assert_eq!(committed_total(&group, &topic, 4), total as i64);
    eprintln!(
        "outage: produced={total} stored_distinct={distinct} duplicated={} rows_inserted={}",
        ch_u64(&format!("SELECT count() FROM {table}")).await - distinct,
        summary.rows_inserted
    );
}
