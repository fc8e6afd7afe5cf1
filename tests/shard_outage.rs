//! One shard of two stopped in the middle of the stream, then started again: the other
//! shard's partitions go on being stored and committed meanwhile, the stopped shard's
//! partitions commit nothing past what it stored, and nothing is lost or stored twice.
//!
//! This binary stops the testbed's second ClickHouse server, so it holds a single test:
//! cargo runs test binaries one after another, and no other test sees the outage.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_down_mid_stream_holds_back_only_its_partitions() {
    init_logs();
    let topic = unique("shardout");
    create_topic(&topic, 4).await;
    create_on_both(&topic, "id UInt64, _partition Int32").await;
    let on_second: Vec<i32> = (0..4)
        .filter(|p| sluice::clickhouse::shards::shard_of(&topic, *p, 2) == 1)
        .collect();
    assert!(!on_second.is_empty() && on_second.len() < 4);
    let total = 8_000u64;
    let msgs = |from: u64, to: u64| {
        (from..to).map(|i| Msg::json((i % 4) as i32, format!("{{\"id\":{i}}}")))
    };
    produce(&topic, msgs(0, total / 2));
    let group = unique("g");
    let text = sharded_config(
        &group,
        &topic,
        "delivery = \"exactly-once\"\nmax_rows = 500\n",
    );
    let run = start(&text);
    let table = format!("default.{topic}");
    wait_for_count_at(&shard2_url(), &table, 500, Duration::from_secs(60)).await;

    testbed("stop-clickhouse-shard2");
    produce(&topic, msgs(total / 2, total));
    // Every partition of the first shard is stored and committed to its end meanwhile.
    let first_share = total / 4 * (4 - on_second.len() as u64);
    let got = wait_for_count(&table, first_share, Duration::from_secs(60)).await;
    assert_eq!(
        got, first_share,
        "the first shard's partitions while the second is down"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let offsets = committed_offsets(&group, &topic, 4);
    testbed("start-clickhouse-shard2");
    let stored_on_second: Vec<u64> = {
        let mut v = Vec::new();
        for p in &on_second {
            v.push(
                ch_u64_at(
                    &shard2_url(),
                    &format!("SELECT count() FROM {table} WHERE _partition = {p}"),
                )
                .await,
            );
        }
        v
    };
    for (p, committed) in offsets.iter().enumerate() {
        if let Some(i) = on_second.iter().position(|q| *q == p as i32) {
            // Nothing past what the stopped shard had stored (read after it came back,
            // before sluice's backoff could store more; more would only loosen this).
            assert!(
                *committed as u64 <= stored_on_second[i],
                "partition {p}: committed {committed}, stored {}",
                stored_on_second[i]
            );
        } else {
            assert_eq!(
                *committed as u64,
                total / 4,
                "partition {p} of the running shard"
            );
        }
    }

    wait_for_commit(&group, &topic, 4, total as i64).await;
    let summary = run.stop().await;
    assert_eq!(summary.rows_inserted, total);
    let (mut count, mut distinct) = (0, 0);
    for url in [ch_url(), shard2_url()] {
        count += ch_u64_at(&url, &format!("SELECT count() FROM {table}")).await;
        distinct += ch_u64_at(&url, &format!("SELECT uniqExact(id) FROM {table}")).await;
    }
    assert_eq!((count, distinct), (total, total), "every id once");
}
