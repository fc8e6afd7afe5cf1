//! Smoke test against ClickHouse 18.16 (with ZooKeeper): version detection sends only the
//! settings it knows, RowBinary without server-side defaults (constant DEFAULTs evaluated by
//! sluice), ReplicatedMergeTree as the target.

mod common;

use std::time::Duration;

use common::*;

/// Creates `default.<topic>` on 18.16 as a ReplicatedMergeTree (what exactly-once needs
/// there) with `columns`, ordered by `id`; returns its qualified name.
async fn replicated_table(url: &str, topic: &str, columns: &str) -> String {
    let table = format!("default.{topic}");
    ch_at(
        url,
        &format!(
            "CREATE TABLE {table} ({columns})
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{topic}', '{{replica}}')
             ORDER BY id"
        ),
    )
    .await;
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legacy_clickhouse_18_16_receives_every_row() {
    init_logs();
    let url = legacy_ch_url();
    let topic = unique("legacy");
    create_topic(&topic, 2).await;
    let table = replicated_table(
        &url,
        &topic,
        "id UInt64, s String, i Int32, f Float64, d Date, dt DateTime,
         arr Array(String), n Nullable(Int64), e Enum8('a' = 1, 'b' = 2), fs FixedString(3),
         with_default String DEFAULT 'dflt', plain_missing UInt32,
         _partition Int32, _offset UInt64",
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

/// A raw route into 18.16, exactly-once into a ReplicatedMergeTree: each value as it came,
/// byte for byte, beside its offset; the other column takes its constant DEFAULT, which
/// sluice evaluates there (no RowBinaryWithDefaults on 18.16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_values_land_on_18_16() {
    init_logs();
    let url = legacy_ch_url();
    let topic = unique("legacyraw");
    create_topic(&topic, 2).await;
    let table = replicated_table(
        &url,
        &topic,
        "id UInt64 DEFAULT 7, _value String, _partition Int32, _offset UInt64",
    )
    .await;
    let value = |i: u64| -> Vec<u8> {
        let mut v = format!("line {i} \"quoted\"\t").into_bytes();
        v.extend_from_slice(&[0xff, 0x00, (i % 256) as u8]);
        v
    };
    let total = 1_000u64;
    produce(
        &topic,
        (0..total).map(|i| Msg {
            partition: Some((i % 2) as i32),
            key: None,
            payload: Some(value(i)),
            headers: Vec::new(),
        }),
    );
    let run = start(&config_at(
        &url,
        &unique("g"),
        &[(&topic, &topic)],
        "delivery = \"exactly-once\"\nformat = \"raw\"",
    ));
    let got = wait_for_count_at(&url, &table, total, Duration::from_secs(90)).await;
    run.stop().await;
    assert_eq!(got, total);
    let stored = ch_at(
        &url,
        &format!("SELECT id, _partition, _offset, hex(_value) FROM {table} ORDER BY _partition, _offset FORMAT TSV"),
    )
    .await;
    let mut want = String::new();
    for p in 0..2u64 {
        for (o, i) in (0..total).filter(|i| i % 2 == p).enumerate() {
            let hex: String = value(i).iter().map(|b| format!("{b:02X}")).collect();
            want.push_str(&format!("7\t{p}\t{o}\t{hex}\n"));
        }
    }
    assert!(
        stored == want,
        "stored rows differ from the produced values on 18.16"
    );
}

/// A column dropped under a running pipeline on 18.16 (exactly-once, ReplicatedMergeTree):
/// the server refuses the insert naming it (Code 16, 18.16's wording), and the run plans
/// the table again and goes on; every row lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_dropped_on_18_16_is_planned_again() {
    init_logs();
    let url = legacy_ch_url();
    let topic = unique("legacydrop");
    create_topic(&topic, 2).await;
    let table = replicated_table(
        &url,
        &topic,
        "id UInt64, note String, _partition Int32, _offset UInt64",
    )
    .await;
    let msgs = |ids: std::ops::Range<u64>| {
        ids.map(|i| Msg::json((i % 2) as i32, format!(r#"{{"id":{i},"note":"n{i}"}}"#)))
            .collect::<Vec<_>>()
    };
    produce(&topic, msgs(0..300));
    let group = unique("g");
    let text = config_at(
        &url,
        &group,
        &[(&topic, &topic)],
        "delivery = \"exactly-once\"",
    );
    let cfg = sluice::config::from_str(&text, Vec::new()).expect("valid config");
    let (run, metrics) = start_with_metrics(cfg);
    assert_eq!(
        wait_for_count_at(&url, &table, 300, Duration::from_secs(90)).await,
        300
    );
    wait_for_commit(&group, &topic, 2, 300).await;
    ch_at(&url, &format!("ALTER TABLE {table} DROP COLUMN note")).await;
    produce(&topic, msgs(300..600));
    let got = wait_for_count_at(&url, &table, 600, Duration::from_secs(90)).await;
    wait_for_commit(&group, &topic, 2, 600).await;
    let replans = route_counter(&metrics, "sluice_table_replans_total");
    let summary = run.stop().await;
    assert_eq!(got, 600);
    assert_eq!(summary.dead_lettered, 0);
    assert_eq!(
        ch_u64_at(&url, &format!("SELECT uniqExact(id) FROM {table}")).await,
        600
    );
    assert_eq!(
        ch_u64_at(&url, &format!("SELECT count() FROM {table}")).await,
        600
    );
    assert!(replans >= 1, "the dropped column was not noticed");
}

/// Avro from the schema registry into 18.16 (plain RowBinary, constant defaults evaluated
/// by sluice, ReplicatedMergeTree): two schema versions, exactly-once, every value compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_land_on_18_16() {
    use apache_avro::types::Value as V;
    init_logs();
    let url = legacy_ch_url();
    let topic = unique("legacyavro");
    create_topic(&topic, 2).await;
    let table = replicated_table(
        &url,
        &topic,
        "id UInt64, qty Int32 DEFAULT 7, name String, price Decimal(18, 2), day Date, \
         tags Array(String), note Nullable(String)",
    )
    .await;
    let v1 = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"},
        {"name":"name","type":"string"},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":2}},
        {"name":"day","type":{"type":"int","logicalType":"date"}},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"note","type":["null","string"]}]}"#;
    let v2 = v1.replace(
        r#"{"name":"id","type":"long"},"#,
        r#"{"name":"id","type":"long"},{"name":"qty","type":"int","default":0},"#,
    );
    let subject = format!("{topic}-value");
    let ids = [
        register_schema(&subject, None, v1).await,
        register_schema(&subject, None, &v2).await,
    ];
    let schemas = [
        apache_avro::Schema::parse_str(v1).unwrap(),
        apache_avro::Schema::parse_str(&v2).unwrap(),
    ];
    let total = 1_000i64;
    produce(
        &topic,
        (0..total).map(|i| {
            let which = (i % 2) as usize;
            let mut fields = vec![("id".to_string(), V::Long(i))];
            if which == 1 {
                fields.push(("qty".into(), V::Int(-(i as i32))));
            }
            fields.extend([
                ("name".into(), V::String(format!("n{i}"))),
                (
                    "price".into(),
                    V::Decimal(apache_avro::Decimal::from(
                        (i * 7 - 300).to_be_bytes().to_vec(),
                    )),
                ),
                ("day".into(), V::Date(19_000 + i as i32)),
                ("tags".into(), V::Array(vec![V::String(format!("t{i}"))])),
                (
                    "note".into(),
                    if i % 3 == 0 {
                        V::Union(0, Box::new(V::Null))
                    } else {
                        V::Union(1, Box::new(V::String(format!("x{i}"))))
                    },
                ),
            ]);
            let mut m = vec![0];
            m.extend(ids[which].to_be_bytes());
            m.extend(apache_avro::to_avro_datum(&schemas[which], V::Record(fields)).unwrap());
            Msg {
                partition: Some((i % 2) as i32),
                key: None,
                payload: Some(m),
                headers: Vec::new(),
            }
        }),
    );
    let mut text = config_at(
        &url,
        &unique("g"),
        &[(&topic, &topic)],
        "delivery = \"exactly-once\"\nformat = \"avro\"",
    );
    text.push_str(&format!(
        "\n[schema_registry]\nurl = \"{}\"\n",
        registry_url()
    ));
    let run = start(&text);
    let got = wait_for_count_at(&url, &table, total as u64, Duration::from_secs(90)).await;
    run.stop().await;
    assert_eq!(got, total as u64);
    let ok = ch_at(
        &url,
        &format!(
            "SELECT countIf(qty = if(id % 2 = 0, 7, -toInt32(id)) AND name = concat('n', toString(id))
                AND toInt64(price * 100) = toInt64(id) * 7 - 300
                AND day = toDate(19000 + id) AND tags = [concat('t', toString(id))]
                AND if(id % 3 = 0, isNull(note), note = concat('x', toString(id))))
                - count() + uniqExact(id) FROM {table}"
        ),
    )
    .await;
    assert_eq!(
        ok.trim(),
        total.to_string(),
        "rows differ or repeat on 18.16"
    );
}

/// 18.16 knows no `Content-Encoding: lz4`, but reads ClickHouse's own LZ4 blocks
/// (`decompress=1`): batches the memory budget would cut short are held and sent packed there
/// too, and land whole, once, with the messages' contents, in a ReplicatedMergeTree whose
/// block-hash deduplication exactly-once relies on.
/// With streamed inserts switched off, a batch that outgrows its share is held compressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_batches_land_on_18_16() {
    large_batches_land_on_18_16(false, "").await;
}

/// A route whose `max_rows` is above 18.16's `max_insert_block_size` (1,048,576) holds its
/// batches: the server could write such an insert in more than one piece, so a cut-off
/// stream could leave part of it stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_above_an_insert_block_are_held_on_18_16() {
    large_batches_land_on_18_16(false, "max_rows = 2000000").await;
}

/// By default such a batch streams, in blocks that each end inside a row (stored blocks on
/// this uncompressed wire, `clickhouse::stream`): one insert, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_batches_land_on_18_16() {
    large_batches_land_on_18_16(true, "").await;
}

/// `streams`: whether the batches should stream (else be held compressed: streamed inserts
/// switched off, or `route` says `max_rows` above the server's insert block).
async fn large_batches_land_on_18_16(streams: bool, route: &str) {
    init_logs();
    let url = legacy_ch_url();
    let topic = unique("legacy_large");
    create_topic(&topic, 1).await;
    let table = replicated_table(&url, &topic, "id UInt64, value Int64, s String").await;
    let pad = "abcdefgh".repeat(40);
    let total = 60_000u64;
    // 22 MB of rows against an 8 MiB budget: uncompressed, batches would be cut at 8 MiB.
    produce(
        &topic,
        (0..total).map(|i| {
            Msg::json(
                0,
                format!("{{\"id\":{i},\"value\":{i},\"s\":\"{pad}-{i}\"}}"),
            )
        }),
    );
    let group = unique("g");
    let text = config_at(
        &url,
        &group,
        &[(&topic, &topic)],
        &format!("delivery = \"exactly-once\"\n{route}"),
    )
    .replace("[service]\n", "[service]\nbatch_memory = \"8MiB\"\n")
    .replace(
        "[clickhouse]\n",
        &format!(
            "[clickhouse]\nstream_inserts = {}\n",
            streams || !route.is_empty()
        ),
    );
    let cfg = sluice::config::from_str(&text, Vec::new()).expect("valid config");
    let (run, metrics) = start_with_metrics(cfg);
    let got = wait_for_count_at(&url, &table, total, Duration::from_secs(90)).await;
    // Counters after the stop: a lane counts an insert once ClickHouse has answered it, a
    // moment after its rows became visible to the count above.
    let summary = run.stop().await;
    let packed = route_counter(&metrics, "sluice_packed_inserts_total");
    let streamed = route_counter(&metrics, "sluice_streamed_inserts_total");
    let fallbacks = route_counter(&metrics, "sluice_stream_fallbacks_total");
    let inserts = route_counter(&metrics, "sluice_inserts_total");
    assert_eq!(got, total);
    if streams {
        assert!(
            streamed >= 1 && packed == 0 && fallbacks == 0,
            "{streamed} streamed, {packed} packed, {fallbacks} read back; {inserts} inserts"
        );
    } else {
        assert!(
            packed >= 1 && streamed == 0,
            "{packed} packed, {streamed} streamed; {inserts} inserts"
        );
    }
    assert!(inserts <= 2, "{inserts} inserts");
    let check = ch_at(
        &url,
        &format!(
            "SELECT uniqExact(id), countIf(s != concat('{pad}-', toString(id)) OR value != id)
             FROM {table} FORMAT TSV"
        ),
    )
    .await;
    assert_eq!(
        check.trim(),
        format!("{total}\t0"),
        "distinct ids, rows that differ"
    );
    assert_eq!(summary.dead_lettered, 0);
}

/// `sluice check` says how inserts travel to 18.16 on this machine: uncompressed bodies (no
/// LZ4 content encoding there, loopback), and large batches streamed in blocks that end
/// inside rows (18.16 stores a body cut off where a row ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_on_18_16_says_large_batches_stream_guarded() {
    let url = legacy_ch_url();
    let topic = unique("legacy_check");
    create_topic(&topic, 1).await;
    replicated_table(&url, &topic, "id UInt64").await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("sluice.toml");
    let text = config_at(&url, &unique("g"), &[(&topic, &topic)], "");
    std::fs::write(&path, text).expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--config", &path.to_string_lossy()])
        .output()
        .expect("run sluice check");
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(
            "inserts: uncompressed bodies; batches beyond their memory share streamed while \
             they fill, in checksummed blocks that each end inside a row (this server stores \
             what it parsed of a body cut off at a row's end)"
        ),
        "{t}"
    );
}
