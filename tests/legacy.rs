//! Smoke test against ClickHouse 18.16 (with ZooKeeper): version detection sends only the
//! settings it knows, RowBinary without server-side defaults (constant DEFAULTs evaluated by
//! sluice), ReplicatedMergeTree as the target.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legacy_clickhouse_18_16_receives_every_row() {
    init_logs();
    let url = legacy_ch_url();
    let topic = unique("legacy");
    create_topic(&topic, 2).await;
    let table = format!("default.{topic}");
    ch_at(
        &url,
        &format!(
            "CREATE TABLE {table} (id UInt64, s String, i Int32, f Float64, d Date, dt DateTime,
                arr Array(String), n Nullable(Int64), e Enum8('a' = 1, 'b' = 2), fs FixedString(3),
                with_default String DEFAULT 'dflt', plain_missing UInt32,
                _partition Int32, _offset UInt64)
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{topic}', '{{replica}}')
             ORDER BY id"
        ),
    )
    .await;
    let total = 5_000u64;
    let mut msgs: Vec<Msg> = (0..total)
        .map(|i| {
            let wd = if i % 2 == 0 { format!(",\"with_default\":\"v{i}\"") } else { String::new() };
            let n = if i % 3 == 0 { "null".to_string() } else { i.to_string() };
            Msg::json(
                (i % 2) as i32,
                format!(
                    "{{\"id\":{i},\"s\":\"s{i}\",\"i\":-{i},\"f\":{i}.5,\"d\":\"2024-01-{:02}\",\"dt\":{},\"arr\":[\"a\",\"b{i}\"],\"n\":{n},\"e\":\"{}\",\"fs\":\"f{:02}\"{wd}}}",
                    i % 28 + 1,
                    1_700_000_000 + i,
                    if i % 2 == 0 { "a" } else { "b" },
                    i % 100
                ),
            )
        })
        .collect();
    msgs.push(Msg::json(0, "{\"id\": \"not a number\"}"));
    produce(&topic, msgs);
    let group = unique("g");
    let run = start(&config_at(
        &url,
        &group,
        &[(&topic, &topic)],
        "delivery = \"exactly-once\"",
    ));
    let got = wait_for_count_at(&url, &table, total, Duration::from_secs(90)).await;
    let dlq = read_topic(&format!("{topic}.dlq"), Duration::from_secs(3));
    let summary = run.stop().await;
    assert_eq!(got, total);
    let ok: u64 = ch_at(
        &url,
        &format!(
            "SELECT countIf(s = concat('s', toString(id)) AND i = -toInt64(id) AND f = id + 0.5
                AND d = toDate(concat('2024-01-', if(id % 28 + 1 < 10, '0', ''), toString(id % 28 + 1)))
                AND dt = toDateTime(1700000000 + id) AND arr = ['a', concat('b', toString(id))]
                AND if(id % 3 = 0, isNull(n), n = id) AND toString(e) = if(id % 2 = 0, 'a', 'b')
                AND with_default = if(id % 2 = 0, concat('v', toString(id)), 'dflt')
                AND plain_missing = 0 AND _partition = id % 2)
             FROM {table}"
        ),
    )
    .await
    .trim()
    .parse()
    .unwrap_or(0);
    assert_eq!(ok, total, "contents differ on 18.16");
    assert_eq!(dlq.len(), 1, "the bad message is dead-lettered");
    assert_eq!(summary.dead_lettered, 1);
}
