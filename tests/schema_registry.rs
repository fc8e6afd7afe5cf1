//! Avro, Protobuf and JSON Schema messages in the schema registry's wire format, against the real Kafka,
//! ClickHouse and schema registry (Apicurio's Confluent-compatible API) of the testbed.

mod common;

use std::time::Duration;

use apache_avro::types::Value as V;
use apache_avro::Schema;
use common::*;

const V1: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
    {"name":"id","type":"long"},
    {"name":"name","type":"string"},
    {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":2}},
    {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"tags","type":{"type":"array","items":"string"}},
    {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},
    {"name":"note","type":["null","string"],"default":null},
    {"name":"blob","type":"bytes"},
    {"name":"debug","type":{"type":"map","values":"string"}}
]}"#;

/// V1 plus a field with a default: what a producer registers after an evolution.
fn v2() -> String {
    V1.replace(
        r#"{"name":"id","type":"long"},"#,
        r#"{"name":"id","type":"long"},{"name":"qty","type":"int","default":0},"#,
    )
}

fn order(i: i64, with_qty: bool) -> V {
    let mut fields = vec![("id".to_string(), V::Long(i))];
    if with_qty {
        fields.push(("qty".into(), V::Int(i as i32 * 3)));
    }
    fields.extend([
        ("name".into(), V::String(format!("order \"{i}\"\n"))),
        (
            "price".into(),
            V::Decimal(apache_avro::Decimal::from(
                (i * 101 - 5000).to_be_bytes().to_vec(),
            )),
        ),
        ("at".into(), V::TimestampMillis(1_700_000_000_000 + i)),
        (
            "tags".into(),
            V::Array(vec![V::String(format!("t{i}")), V::String("x".into())]),
        ),
        (
            "kind".into(),
            V::Enum((i % 2) as u32, ["A", "B"][(i % 2) as usize].into()),
        ),
        (
            "note".into(),
            if i % 3 == 0 {
                V::Union(0, Box::new(V::Null))
            } else {
                V::Union(1, Box::new(V::String(format!("n{i}"))))
            },
        ),
        // Not UTF-8: bytes go into a String column as they are.
        ("blob".into(), V::Bytes(vec![0xff, 0x00, (i % 256) as u8])),
        ("debug".into(), V::Map(Default::default())),
    ]);
    V::Record(fields)
}

/// Runs an exactly-once route of `format` from `topic` (2 partitions, `n` messages) into the
/// table of the same name until `good` rows are stored and every offset is committed; no
/// `id` may be stored twice.
async fn run_until_stored(
    topic: &str,
    format: &str,
    registry: &str,
    good: u64,
    n: i64,
) -> (
    sluice::pipeline::RunSummary,
    std::sync::Arc<sluice::telemetry::Metrics>,
) {
    let route = format!("format = \"{format}\"");
    run_route_until_stored(topic, topic, &route, registry, good, n).await
}

/// [`run_until_stored`] into `table`, with the route's `lines` (its format among them).
async fn run_route_until_stored(
    topic: &str,
    table: &str,
    lines: &str,
    registry: &str,
    good: u64,
    n: i64,
) -> (
    sluice::pipeline::RunSummary,
    std::sync::Arc<sluice::telemetry::Metrics>,
) {
    let group = unique("g");
    let mut text = config(
        &group,
        &[(topic, table)],
        &format!("delivery = \"exactly-once\"\n{lines}"),
    );
    text.push_str(&format!("\n[schema_registry]\nurl = \"{registry}\"\n"));
    let (run, metrics) = start_with_metrics(sluice::config::from_str(&text, Vec::new()).unwrap());
    let got = wait_for_count(&format!("default.{table}"), good, Duration::from_secs(60)).await;
    wait_for_commit(&group, topic, 2, n).await;
    let summary = run.stop().await;
    assert_eq!(got, good);
    assert_eq!(
        ch_u64(&format!(
            "SELECT count() - uniqExact(id) FROM default.{table}"
        ))
        .await,
        0,
        "duplicates"
    );
    (summary, metrics)
}

/// Registers the referenced schema `(part, import, text)` under `<topic>-<part>`, then `value`
/// under `<topic>-value`, importing it by `import` (version 1); returns the value's id.
async fn register_with_reference(
    topic: &str,
    schema_type: &str,
    (part, import, referenced): (&str, &str, &str),
    value: &str,
) -> u32 {
    let subject = format!("{topic}-{part}");
    register_schema(&subject, Some(schema_type), referenced).await;
    register_schema_with(
        &format!("{topic}-value"),
        Some(schema_type),
        value,
        &[(import, &subject, 1)],
    )
    .await
}

fn framed(id: u32, datum: Vec<u8>) -> Vec<u8> {
    let mut m = vec![0];
    m.extend(id.to_be_bytes());
    m.extend(datum);
    m
}

fn msg(partition: i32, payload: Vec<u8>) -> Msg {
    Msg {
        partition: Some(partition),
        key: None,
        payload: Some(payload),
        headers: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn avro_records_land_exactly_once_across_schema_versions() {
    init_logs();
    let topic = unique("avro");
    create_topic(&topic, 2).await;
    create_topic(&format!("{topic}.dlq"), 1).await;
    ch(&format!(
        "CREATE TABLE default.{topic} (id Int64, qty Int32 DEFAULT -1, name String, \
         price Decimal(18, 2), at DateTime64(3, 'UTC'), tags Array(String), \
         kind Enum8('A' = 1, 'B' = 2), note Nullable(String), blob String, _offset UInt64) \
         ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000"
    ))
    .await;
    let subject = format!("{topic}-value");
    let id1 = register_schema(&subject, None, V1).await;
    let v2 = v2();
    let id2 = register_schema(&subject, None, &v2).await;
    assert_ne!(id1, id2);
    let proto = register_schema(
        &format!("{topic}-proto"),
        Some("PROTOBUF"),
        "syntax = \"proto3\"; message M { int64 a = 1; }",
    )
    .await;
    let (s1, s2) = (
        Schema::parse_str(V1).unwrap(),
        Schema::parse_str(&v2).unwrap(),
    );

    let n = 1_000i64;
    let bad = |i: i64| i % 97 == 5;
    let payload = |i: i64| -> Vec<u8> {
        if bad(i) {
            return match i % 4 {
                0 => format!("{{\"id\":{i}}}").into_bytes(),
                1 => framed(999_999, vec![2]),
                2 => {
                    let mut m = framed(
                        id1,
                        apache_avro::to_avro_datum(&s1, order(i, false)).unwrap(),
                    );
                    m.truncate(m.len() - 1);
                    m
                }
                _ => framed(proto, vec![2]),
            };
        }
        if i % 2 == 0 {
            framed(
                id1,
                apache_avro::to_avro_datum(&s1, order(i, false)).unwrap(),
            )
        } else {
            framed(
                id2,
                apache_avro::to_avro_datum(&s2, order(i, true)).unwrap(),
            )
        }
    };
    produce(&topic, (0..n).map(|i| msg((i % 2) as i32, payload(i))));

    let good = (0..n).filter(|&i| !bad(i)).count() as u64;
    let (summary, _) = run_until_stored(&topic, "avro", &registry_url(), good, n).await;

    let ok = ch_u64(&format!(
        "SELECT countIf(qty = if(id % 2 = 0, -1, toInt32(id * 3))
            AND name = concat('order \"', toString(id), '\"\\n')
            AND toInt64(price * 100) = id * 101 - 5000
            AND at = fromUnixTimestamp64Milli(1700000000000 + id, 'UTC')
            AND tags = [concat('t', toString(id)), 'x']
            AND kind = if(id % 2 = 0, 'A', 'B')
            AND if(id % 3 = 0, isNull(note), note = concat('n', toString(id)))
            AND hex(blob) = concat('FF00', hex(toUInt8(id % 256)))) FROM default.{topic}"
    ))
    .await;
    assert_eq!(ok, good, "rows differ from the records produced");

    let bad_ids: Vec<i64> = (0..n).filter(|&i| bad(i)).collect();
    let kind = |k: i64| bad_ids.iter().filter(|i| *i % 4 == k).count();
    let r = dead_letter_reasons(&format!("{topic}.dlq"));
    assert_eq!(r.len(), bad_ids.len(), "{r:?}");
    let count = |needle: &str| r.iter().filter(|x| x.contains(needle)).count();
    assert_eq!(
        count("first byte 0x7b, expected the magic byte 0x00"),
        kind(0),
        "{r:?}"
    );
    assert_eq!(
        count("schema id 999999: not found in the schema registry"),
        kind(1),
        "{r:?}"
    );
    assert_eq!(count("field \"debug\": truncated"), kind(2), "{r:?}");
    assert_eq!(
        count(&format!(
            "schema id {proto}: schema type PROTOBUF; the route reads AVRO"
        )),
        kind(3),
        "{r:?}"
    );
    assert_eq!(summary.dead_lettered, bad_ids.len() as u64);
}

/// A decimal's text as ClickHouse prints it: no trailing fractional zeros.
fn trimmed(t: &str) -> String {
    match t.split_once('.') {
        Some((int, frac)) if frac.trim_end_matches('0').is_empty() => int.to_string(),
        Some((int, frac)) => format!("{int}.{}", frac.trim_end_matches('0')),
        None => t.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn avro_decimals_wider_than_128_bits_and_big_decimals_keep_every_digit() {
    init_logs();
    let topic = exactly_once_topic(
        "avrodec",
        2,
        "id Int64, wide Decimal(60, 10), big Decimal(50, 8), big_text String",
    )
    .await;
    let schema = r#"{"type":"record","name":"Amounts","fields":[
        {"name":"id","type":"long"},
        {"name":"wide","type":{"type":"bytes","logicalType":"decimal","precision":60,"scale":10}},
        {"name":"big","type":{"type":"bytes","logicalType":"big-decimal"}},
        {"name":"big_text","type":{"type":"bytes","logicalType":"big-decimal"}}]}"#;
    let id = register_schema(&format!("{topic}-value"), None, schema).await;
    let s = Schema::parse_str(schema).unwrap();
    let big = |t: &str| t.parse::<apache_avro::BigDecimal>().unwrap();
    // 56 digits: wider than 128 bits (39 digits), negative.
    let wide = |i: i64| format!("-{}{i:06}.{:010}", "8".repeat(40), i * 37 + 1);
    // Each value with its own scale, some of them negative (an integer with zeros to come).
    let big_value = |i: i64| match i % 3 {
        0 => format!("{}E+20", i + 1),
        1 => format!("{i}{}.{i}5", "7".repeat(25)),
        _ => format!("-0.{i:03}{}", "1".repeat(5)),
    };
    // Past any Decimal's scale: a String column keeps every digit.
    let text_value = |i: i64| format!("-0.{i:03}{}3", "1".repeat(60));
    let bad = |i: i64| i % 50 == 7 || i % 50 == 21;
    let n = 300i64;
    produce(
        &topic,
        (0..n).map(|i| {
            let big_field = match i % 50 {
                7 => format!("1{}", "0".repeat(45)), // 46 integer digits: Decimal(50, 8) holds 42
                21 => "1E-5000".to_string(),         // a scale past what sluice reads
                _ => big_value(i),
            };
            let v = apache_avro::types::Value::Record(vec![
                ("id".into(), V::Long(i)),
                (
                    "wide".into(),
                    V::Decimal(apache_avro::Decimal::from(
                        big(&wide(i))
                            .as_bigint_and_exponent()
                            .0
                            .to_signed_bytes_be(),
                    )),
                ),
                ("big".into(), V::BigDecimal(big(&big_field))),
                ("big_text".into(), V::BigDecimal(big(&text_value(i)))),
            ]);
            msg(
                (i % 2) as i32,
                framed(id, apache_avro::to_avro_datum(&s, v).unwrap()),
            )
        }),
    );
    let good: Vec<i64> = (0..n).filter(|&i| !bad(i)).collect();
    let (summary, _) =
        run_until_stored(&topic, "avro", &registry_url(), good.len() as u64, n).await;

    let stored = ch(&format!(
        "SELECT id, toString(wide), toString(big), big_text FROM default.{topic} ORDER BY id FORMAT TSV"
    ))
    .await;
    let want: String = good
        .iter()
        .map(|&i| {
            let big = match i % 3 {
                0 => format!("{}{}", i + 1, "0".repeat(20)),
                _ => trimmed(&big_value(i)),
            };
            format!("{i}\t{}\t{big}\t{}\n", trimmed(&wide(i)), text_value(i))
        })
        .collect();
    assert_eq!(stored, want, "rows differ from the records produced");

    let r = dead_letter_reasons(&format!("{topic}.dlq"));
    assert_eq!(r.len(), (n as usize) - good.len(), "{r:?}");
    let count = |needle: &str| r.iter().filter(|x| x.contains(needle)).count();
    assert_eq!(count("column big Decimal(50, 8)"), 6, "{r:?}");
    assert_eq!(count("field \"big\""), 12, "{r:?}");
    assert_eq!(
        count("a big-decimal of scale 5000, beyond the +-1000"),
        6,
        "{r:?}"
    );
    assert_eq!(summary.dead_lettered, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_reports_the_registry_and_the_avro_plan() {
    let topic = unique("avro_check");
    create_topic(&topic, 1).await;
    ch(&format!(
        "CREATE TABLE default.{topic} (id Int64, name String) ENGINE = MergeTree ORDER BY id"
    ))
    .await;
    let cfg_text = |url: &str| {
        let mut t = config("g", &[(&topic, &topic)], "format = \"avro\"");
        t.push_str(&format!(
            "\n[schema_registry]\nurl = \"{url}\"\nusername = \"sr\"\npassword = \"sr-Pw-77c1\"\n"
        ));
        t
    };
    let run_check = |text: String| async move {
        let cfg = sluice::config::from_str(&text, Vec::new()).unwrap();
        let mut out = Vec::new();
        let ok = sluice::check::run(&cfg, &mut out).await;
        (ok, String::from_utf8(out).unwrap())
    };
    let (ok, out) = run_check(cfg_text(&registry_url())).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("schema registry: {} reachable", registry_url())),
        "{out}"
    );
    assert!(out.contains("avro field \"name\""), "{out}");
    // Nothing listens there: check fails and names the registry, never the password.
    let (ok, out) = run_check(cfg_text("http://127.0.0.1:9/apis/ccompat/v7")).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("schema registry: FAILED: unavailable: http://127.0.0.1:9/"),
        "{out}"
    );
    assert!(!out.contains("sr-Pw-77c1"), "{out}");
}

/// What [`flaky_registry`] does to schema lookups.
#[derive(Default)]
struct Faults {
    /// Answer 503 while set.
    down: std::sync::atomic::AtomicBool,
    /// Answer 404 to this many lookups (a replica that has not seen a new schema yet).
    not_found: std::sync::atomic::AtomicU32,
}

/// A registry in front of the real one that answers schema lookups with the failures
/// `faults` asks for (ones the real server cannot be asked to have); everything else, and
/// every lookup once no fault is left, is forwarded.
async fn flaky_registry(faults: std::sync::Arc<Faults>) -> String {
    use std::sync::atomic::Ordering;

    let upstream = registry_url();
    let http = reqwest::Client::new();
    registry_proxy(move |req: ProxyRequest| {
        let (faults, upstream, http) = (faults.clone(), upstream.clone(), http.clone());
        async move {
            let lookup = req.target.contains("/schemas/ids/");
            let down = lookup && faults.down.load(Ordering::SeqCst);
            let unknown = lookup
                && !down
                && faults
                    .not_found
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if down {
                (503, b"{\"error_code\":50301,\"message\":\"down\"}".to_vec())
            } else if unknown {
                (
                    404,
                    b"{\"error_code\":40403,\"message\":\"Schema not found\"}".to_vec(),
                )
            } else {
                req.forward(&http, &upstream).await
            }
        }
    })
    .await
}

/// A fresh topic and table with `n` Avro records of a registered schema; returns the topic.
async fn simple_avro_topic(prefix: &str, n: i64) -> String {
    let topic = unique(prefix);
    create_topic(&topic, 2).await;
    create_topic(&format!("{topic}.dlq"), 1).await;
    ch(&format!(
        "CREATE TABLE default.{topic} (id Int64, name String) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000"
    ))
    .await;
    let schema = r#"{"type":"record","name":"R","fields":[
        {"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;
    let id = register_schema(&format!("{topic}-value"), None, schema).await;
    let s = Schema::parse_str(schema).unwrap();
    produce(
        &topic,
        (0..n).map(|i| {
            let v = V::Record(vec![
                ("id".into(), V::Long(i)),
                ("name".into(), V::String(format!("r{i}"))),
            ]);
            msg(
                (i % 2) as i32,
                framed(id, apache_avro::to_avro_datum(&s, v).unwrap()),
            )
        }),
    );
    topic
}

/// Every one of `n` records of [`simple_avro_topic`] stored once, nothing dead-lettered.
async fn assert_all_stored(topic: &str, n: i64, summary: &sluice::pipeline::RunSummary) {
    assert_eq!(
        ch_u64(&format!(
            "SELECT countIf(name = concat('r', toString(id))) - count() + uniqExact(id) FROM default.{topic}"
        ))
        .await,
        n as u64
    );
    assert_eq!(summary.dead_lettered, 0);
    assert!(dead_letter_reasons(&format!("{topic}.dlq")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_outage_holds_the_messages_back_instead_of_dead_lettering_them() {
    use std::sync::atomic::Ordering;
    init_logs();
    let n = 400i64;
    let topic = simple_avro_topic("avro_outage", n).await;
    let faults = std::sync::Arc::new(Faults::default());
    faults.down.store(true, Ordering::SeqCst);
    let url = flaky_registry(faults.clone()).await;
    let group = unique("g");
    let mut text = config(
        &group,
        &[(&topic, &topic)],
        "delivery = \"exactly-once\"\nformat = \"avro\"",
    );
    text.push_str(&format!("\n[schema_registry]\nurl = \"{url}\"\n"));
    let run = start(&text);
    // Long enough for both lanes to have their messages and ask (and back off) a few times.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        ch_u64(&format!("SELECT count() FROM default.{topic}")).await,
        0
    );
    assert_eq!(committed_total(&group, &topic, 2), 0, "nothing committed");
    faults.down.store(false, Ordering::SeqCst);
    let got = wait_for_count(
        &format!("default.{topic}"),
        n as u64,
        Duration::from_secs(60),
    )
    .await;
    wait_for_commit(&group, &topic, 2, n).await;
    let summary = run.stop().await;
    assert_eq!(got, n as u64);
    assert_all_stored(&topic, n, &summary).await;
}

/// A registry replica that has not seen a schema yet answers 404 for a moment: the lanes
/// ask again rather than dead-letter the messages at the first 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_the_registry_does_not_know_yet_is_asked_for_again() {
    use std::sync::atomic::Ordering;
    init_logs();
    let n = 200i64;
    let topic = simple_avro_topic("avro_lag", n).await;
    let faults = std::sync::Arc::new(Faults::default());
    // At most 4 of the two lanes' lookups: neither lane can see more than its 5 retries.
    faults.not_found.store(4, Ordering::SeqCst);
    let url = flaky_registry(faults.clone()).await;
    let (summary, metrics) = run_until_stored(&topic, "avro", &url, n as u64, n).await;
    assert_eq!(
        faults.not_found.load(Ordering::SeqCst),
        0,
        "every 404 was answered"
    );
    // Each 404 was one retry; each of the two lanes bound the id once.
    assert_eq!(
        route_counter(&metrics, "sluice_schema_lookup_retries_total"),
        4
    );
    assert_eq!(route_counter(&metrics, "sluice_schemas_loaded_total"), 2);
    assert_all_stored(&topic, n, &summary).await;
}

const MONEY_PROTO: &str = r#"syntax = "proto3";
package common;
message Money { string currency = 1; int64 cents = 2; }
"#;

const ORDER_PROTO: &str = r#"syntax = "proto3";
package shop;
import "common/money.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/any.proto";
message Envelope { string unused = 1; }
message Order {
  int64 id = 1;
  string name = 2;
  optional string note = 3;
  common.Money price = 4;
  google.protobuf.Timestamp at = 5;
  repeated string tags = 6;
  map<string, int32> counts = 7;
  Kind kind = 8;
  bytes blob = 9;
  google.protobuf.Struct attrs = 10;
  google.protobuf.Any detail = 11;
  enum Kind { A = 0; B = 1; }
}
"#;

/// protox/prost-reflect build the test's messages the way a producer's serializer would.
fn order_descriptor() -> prost_reflect::MessageDescriptor {
    use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
    struct Mem;
    impl FileResolver for Mem {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            match name {
                "common/money.proto" => File::from_source(name, MONEY_PROTO),
                "order.proto" => File::from_source(name, ORDER_PROTO),
                _ => Err(protox::Error::file_not_found(name)),
            }
        }
    }
    let mut chain = ChainFileResolver::new();
    chain.add(Mem);
    chain.add(GoogleFileResolver::new());
    let mut c = protox::Compiler::with_file_resolver(chain);
    c.open_file("order.proto").unwrap();
    c.descriptor_pool()
        .get_message_by_name("shop.Order")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protobuf_messages_land_exactly_once_with_imported_types() {
    use prost_reflect::{DynamicMessage, MapKey, Value as P};
    use protox::prost::Message as _;
    init_logs();
    let topic = unique("proto");
    create_topic(&topic, 2).await;
    create_topic(&format!("{topic}.dlq"), 1).await;
    ch(&format!(
        "CREATE TABLE default.{topic} (id Int64, name String, note Nullable(String), \
         price Tuple(currency String, cents Int64), at DateTime64(9, 'UTC'), \
         tags Array(String), counts Map(String, Int32), kind Enum8('A' = 0, 'B' = 1), \
         blob String, attrs String, detail String, _partition Int32) \
         ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000"
    ))
    .await;
    let id = register_with_reference(
        &topic,
        "PROTOBUF",
        ("money", "common/money.proto", MONEY_PROTO),
        ORDER_PROTO,
    )
    .await;
    let avro_id = register_schema(&format!("{topic}-avro"), None, V1).await;

    let desc = order_descriptor();
    let field_desc = |name: &str| match desc.get_field_by_name(name).map(|f| f.kind()) {
        Some(prost_reflect::Kind::Message(m)) => m,
        _ => panic!("{name} is not a message field"),
    };
    let (money, ts, attrs) = (field_desc("price"), field_desc("at"), field_desc("attrs"));
    let any = field_desc("detail");
    let n = 600i64;
    let bad = |i: i64| i % 89 == 7;
    let payload = |i: i64| -> Vec<u8> {
        let mut m = DynamicMessage::new(desc.clone());
        m.set_field_by_name("id", P::I64(i));
        m.set_field_by_name("name", P::String(format!("order {i}")));
        if i % 3 != 0 {
            m.set_field_by_name("note", P::String(format!("n{i}")));
        }
        let mut p = DynamicMessage::new(money.clone());
        p.set_field_by_name("currency", P::String("EUR".into()));
        p.set_field_by_name("cents", P::I64(i * 100 + 5));
        m.set_field_by_name("price", P::Message(p));
        let mut t = DynamicMessage::new(ts.clone());
        t.set_field_by_name("seconds", P::I64(1_700_000_000 + i));
        t.set_field_by_name("nanos", P::I32(i as i32 * 1000 + 1));
        m.set_field_by_name("at", P::Message(t));
        m.set_field_by_name("tags", P::List(vec![P::String(format!("t{i}"))]));
        m.set_field_by_name(
            "counts",
            P::Map(
                [(MapKey::String("k".into()), P::I32(i as i32))]
                    .into_iter()
                    .collect(),
            ),
        );
        m.set_field_by_name("kind", P::EnumNumber((i % 2) as i32));
        m.set_field_by_name("blob", P::Bytes(vec![0xfe, (i % 256) as u8].into()));
        // A Struct, built through proto3's JSON mapping as a producer's would be.
        let a = DynamicMessage::deserialize(
            attrs.clone(),
            &mut serde_json::Deserializer::from_str(&format!(
                r#"{{"ok":{},"i":{i},"tags":["x",null]}}"#,
                i % 2 == 0
            )),
        )
        .expect("a Struct from JSON");
        m.set_field_by_name("attrs", P::Message(a));
        // An Any wrapping a type of the imported file.
        let mut inner = DynamicMessage::new(money.clone());
        inner.set_field_by_name("currency", P::String("USD".into()));
        inner.set_field_by_name("cents", P::I64(i));
        let mut d = DynamicMessage::new(any.clone());
        d.set_field_by_name(
            "type_url",
            P::String("type.googleapis.com/common.Money".into()),
        );
        d.set_field_by_name("value", P::Bytes(inner.encode_to_vec().into()));
        m.set_field_by_name("detail", P::Message(d));
        // Message indexes: Order is the file's second message, [1] (written: count 1, 1).
        let mut out = framed(id, vec![2, 2]);
        if bad(i) {
            return match i % 3 {
                0 => framed(avro_id, vec![2]),
                1 => {
                    out.extend(m.encode_to_vec());
                    out.truncate(out.len() - 3);
                    out
                }
                _ => framed(id, vec![2, 8]),
            };
        }
        out.extend(m.encode_to_vec());
        out
    };
    produce(&topic, (0..n).map(|i| msg((i % 2) as i32, payload(i))));

    let good = (0..n).filter(|&i| !bad(i)).count() as u64;
    let (summary, _) = run_until_stored(&topic, "protobuf", &registry_url(), good, n).await;
    let ok = ch_u64(&format!(
        "SELECT countIf(name = concat('order ', toString(id))
            AND if(id % 3 = 0, isNull(note), note = concat('n', toString(id)))
            AND price = tuple('EUR', id * 100 + 5)
            AND toUnixTimestamp64Nano(at) = (1700000000 + id) * 1000000000 + id * 1000 + 1
            AND tags = [concat('t', toString(id))] AND counts = map('k', toInt32(id))
            AND kind = if(id % 2 = 0, 'A', 'B')
            AND hex(blob) = concat('FE', hex(toUInt8(id % 256)))
            AND attrs = concat('{{\"i\":', toString(id), ',\"ok\":', if(id % 2 = 0, 'true', 'false'), ',\"tags\":[\"x\",null]}}')
            AND detail = concat('{{\"@type\":\"type.googleapis.com/common.Money\",\"currency\":\"USD\",\"cents\":', toString(id), '}}')
            AND _partition = id % 2) FROM default.{topic}"
    ))
    .await;
    assert_eq!(ok, good, "rows differ from the messages produced");
    let bad_ids: Vec<i64> = (0..n).filter(|&i| bad(i)).collect();
    let kind = |k: i64| bad_ids.iter().filter(|i| *i % 3 == k).count();
    let r = dead_letter_reasons(&format!("{topic}.dlq"));
    assert_eq!(r.len(), bad_ids.len(), "{r:?}");
    let count = |needle: &str| r.iter().filter(|x| x.contains(needle)).count();
    assert_eq!(
        count(&format!(
            "schema id {avro_id}: schema type AVRO; the route reads PROTOBUF"
        )),
        kind(0),
        "{r:?}"
    );
    assert_eq!(count("shop.Order does not decode"), kind(1), "{r:?}");
    assert_eq!(
        count("message index [4] names no message"),
        kind(2),
        "{r:?}"
    );
    assert_eq!(summary.dead_lettered, bad_ids.len() as u64);
}

/// A JSON Schema as Confluent's serializer registers one (draft 7, an object of typed
/// properties); sluice checks the id names a JSON Schema and reads the document by name.
const ORDER_JSON_SCHEMA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Order",
  "type": "object",
  "properties": {
    "id": {"type": "integer"},
    "name": {"type": "string"},
    "price": {"type": "number"},
    "at": {"type": "string", "format": "date-time"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "note": {"type": ["string", "null"]},
    "paid": {"type": "boolean"},
    "shipping": {"type": "object"}
  },
  "required": ["id", "name"]
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_schema_messages_land_exactly_once_and_bad_ones_are_dead_lettered() {
    init_logs();
    let topic = exactly_once_topic(
        "jsonschema",
        2,
        "id UInt64, name String, price Decimal(18, 2), at DateTime64(3, 'UTC'), \
         tags Array(String), note Nullable(String), paid Bool, shipping String, _offset UInt64",
    )
    .await;
    let id = register_schema(&format!("{topic}-value"), Some("JSON"), ORDER_JSON_SCHEMA).await;
    let avro_id = register_schema(&format!("{topic}-avro"), None, V1).await;

    let n = 600i64;
    let bad = |i: i64| i % 71 == 5;
    let doc = |i: i64| {
        let note = if i % 3 == 0 {
            "null".to_string()
        } else {
            format!("\"n{i}\"")
        };
        format!(
            r#"{{"id": {i}, "name": "order \"{i}\"\n", "price": {i}.25, "at": "2026-12-05T10:00:{:02}.{:03}Z", "tags": ["t{i}", "x"], "note": {note}, "paid": {}, "shipping": {{"city": "C{i}", "zip": {i}}}}}"#,
            i % 60,
            i % 1000,
            i % 2 == 0
        )
    };
    let payload = |i: i64| -> Vec<u8> {
        if bad(i) {
            return match (i / 71) % 4 {
                // The id of an Avro schema.
                0 => framed(avro_id, doc(i).into_bytes()),
                // Plain JSON, written without the registry's serializer.
                1 => doc(i).into_bytes(),
                // Cut off.
                2 => framed(id, doc(i).as_bytes()[..20].to_vec()),
                // A value the column cannot hold.
                _ => framed(
                    id,
                    doc(i).replace(&format!("{i}.25"), "\"cheap\"").into_bytes(),
                ),
            };
        }
        framed(id, doc(i).into_bytes())
    };
    produce(&topic, (0..n).map(|i| msg((i % 2) as i32, payload(i))));

    let good = (0..n).filter(|&i| !bad(i)).count() as u64;
    let (summary, _) = run_until_stored(&topic, "json-schema", &registry_url(), good, n).await;
    let ok = ch_u64(&format!(
        "SELECT countIf(name = concat('order \"', toString(id), '\"\\n')
            AND price = toDecimal64(id, 2) + toDecimal64(0.25, 2)
            AND toUnixTimestamp64Milli(at) = toUnixTimestamp64Milli(toDateTime64('2026-12-05 10:00:00', 3, 'UTC')) + (id % 60) * 1000 + id % 1000
            AND tags = [concat('t', toString(id)), 'x']
            AND if(id % 3 = 0, isNull(note), note = concat('n', toString(id)))
            AND paid = (id % 2 = 0)
            AND shipping = concat('{{\"city\": \"C', toString(id), '\", \"zip\": ', toString(id), '}}')
            AND _offset = intDiv(id, 2)) FROM default.{topic}"
    ))
    .await;
    assert_eq!(ok, good, "rows differ from the messages produced");

    let bad_ids: Vec<i64> = (0..n).filter(|&i| bad(i)).collect();
    let kind = |k: i64| bad_ids.iter().filter(|i| (*i / 71) % 4 == k).count();
    let r = dead_letter_reasons(&format!("{topic}.dlq"));
    assert_eq!(r.len(), bad_ids.len(), "{r:?}");
    let count = |needle: &str| r.iter().filter(|x| x.contains(needle)).count();
    assert_eq!(
        count(&format!(
            "schema id {avro_id}: schema type AVRO; the route reads JSON"
        )),
        kind(0),
        "{r:?}"
    );
    assert_eq!(
        count("not in the schema registry's wire format: first byte 0x7b"),
        kind(1),
        "{r:?}"
    );
    assert_eq!(count("invalid JSON at byte 25"), kind(2), "{r:?}");
    assert_eq!(
        count("field \"price\" -> column price Decimal(18, 2)"),
        kind(3),
        "{r:?}"
    );
    assert!(bad_ids.iter().all(|&i| (0..4).contains(&((i / 71) % 4))));
    assert!(
        (0..4).all(|k| kind(k) > 0),
        "every kind of bad message is produced"
    );
    assert_eq!(summary.dead_lettered, bad_ids.len() as u64);
}

/// The address a `$ref` of [`VALIDATED_ORDER`] names, registered as its own subject.
const ADDRESS_JSON_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
  "required": ["city", "zip"]
}"#;

/// Constraints every column below would take a value outside of.
const VALIDATED_ORDER: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "properties": {
    "id": {"type": "integer", "minimum": 0},
    "name": {"type": "string", "maxLength": 12},
    "at": {"type": "string", "format": "date-time"},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    "shipping": {"$ref": "address.json"}
  },
  "required": ["id", "name", "shipping"]
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_schema_validation_dead_letters_what_the_schema_refuses() {
    init_logs();
    let topic = unique("jsonvalid");
    create_topic(&topic, 2).await;
    create_topic(&format!("{topic}.dlq"), 1).await;
    let lax = format!("{topic}_lax");
    for table in [topic.as_str(), lax.as_str()] {
        ch(&format!(
            "CREATE TABLE default.{table} (id UInt64, name String, at DateTime64(3, 'UTC'), \
             tags Array(String), shipping String) \
             ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000"
        ))
        .await;
    }
    let id = register_with_reference(
        &topic,
        "JSON",
        ("address", "address.json", ADDRESS_JSON_SCHEMA),
        VALIDATED_ORDER,
    )
    .await;

    let n = 500i64;
    let bad = |i: i64| i % 37 == 3;
    let doc = |i: i64| {
        let (mut name, mut at, mut tags, mut zip) = (
            format!("order {i}"),
            format!("2026-12-05T10:00:{:02}Z", i % 60),
            r#"["a", "b"]"#.to_string(),
            format!("{:05}", i),
        );
        if bad(i) {
            // Each breaks one rule of the schema; every column would store it as it is.
            match (i / 37) % 4 {
                0 => name = format!("order number {i}"),
                1 => at = format!("2026-12-05 10:00:{:02}", i % 60),
                2 => tags = r#"["a", "b", "c", "d"]"#.to_string(),
                _ => zip = "ABCDE".to_string(),
            }
        }
        format!(
            r#"{{"id": {i}, "name": "{name}", "at": "{at}", "tags": {tags}, "shipping": {{"city": "C", "zip": "{zip}"}}}}"#
        )
    };
    produce(
        &topic,
        (0..n).map(|i| msg((i % 2) as i32, framed(id, doc(i).into_bytes()))),
    );

    let good = (0..n).filter(|&i| !bad(i)).count() as u64;
    let reg = registry_url();
    let validated = "format = \"json-schema\"\nvalidate = true";
    let (summary, _) = run_route_until_stored(&topic, &topic, validated, &reg, good, n).await;
    assert_eq!(
        ch_u64(&format!(
            "SELECT countIf(name = concat('order ', toString(id)) AND length(tags) = 2 \
             AND shipping = concat('{{\"city\": \"C\", \"zip\": \"', leftPad(toString(id), 5, '0'), '\"}}')) \
             FROM default.{topic}"
        ))
        .await,
        good,
        "rows differ from the messages produced"
    );

    let bad_ids: Vec<i64> = (0..n).filter(|&i| bad(i)).collect();
    let kind = |k: i64| bad_ids.iter().filter(|i| (*i / 37) % 4 == k).count();
    assert!((0..4).all(|k| kind(k) > 0), "every kind is produced");
    let r = dead_letter_reasons(&format!("{topic}.dlq"));
    assert_eq!(r.len(), bad_ids.len(), "{r:?}");
    let count = |needle: &str| r.iter().filter(|x| x.contains(needle)).count();
    for (k, needle) in [
        (0, "fails its JSON Schema at \"/name\": "),
        (1, "fails its JSON Schema at \"/at\": "),
        (2, "fails its JSON Schema at \"/tags\": "),
        (
            3,
            "fails its JSON Schema at \"/shipping/zip\": \"ABCDE\" does not match",
        ),
    ] {
        assert_eq!(count(needle), kind(k), "{needle}: {r:?}");
    }
    assert_eq!(summary.dead_lettered, bad_ids.len() as u64);

    // Without `validate` every message fits its columns and lands: the check is what
    // refused them above.
    let (summary, _) =
        run_route_until_stored(&topic, &lax, "format = \"json-schema\"", &reg, n as u64, n).await;
    assert_eq!(summary.dead_lettered, 0);
}

/// A Debezium change event's Avro schema as Debezium's Avro converter registers it: the
/// row's record in nullable `before` and `after`, then the source, the operation and more.
const CHANGE_EVENT_AVRO: &str = r#"{"type":"record","name":"Envelope","namespace":"shop.public.orders","fields":[
    {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
        {"name":"id","type":"long"},{"name":"name","type":"string"}]}],"default":null},
    {"name":"after","type":["null","Value"],"default":null},
    {"name":"source","type":{"type":"record","name":"Source","namespace":"io.debezium","fields":[
        {"name":"db","type":"string"},{"name":"lsn","type":["null","long"],"default":null}]}},
    {"name":"op","type":"string"},
    {"name":"ts_ms","type":["null","long"],"default":null}
]}"#;

/// The same event as Confluent's Protobuf converter registers it.
const CHANGE_EVENT_PROTO: &str = r#"syntax = "proto3";
package shop.public.orders;
message Envelope {
  Value before = 1;
  Value after = 2;
  Source source = 3;
  string op = 4;
  optional int64 ts_ms = 5;
  message Value { int64 id = 1; string name = 2; }
  message Source { string db = 1; }
}
"#;

/// One source table's change events (`(key, op, before, after)`, a row as `(id, name)`),
/// in the order Debezium would write them: creates, an update, a delete and its tombstone
/// (`op` empty), a snapshot read, a re-insert after a delete, and a truncate.
type Change = (
    u64,
    &'static str,
    Option<(u64, &'static str)>,
    Option<(u64, &'static str)>,
);
const CHANGES: [Change; 10] = [
    (1, "c", None, Some((1, "a"))),
    (2, "c", None, Some((2, "x"))),
    (1, "u", Some((1, "a")), Some((1, "b"))),
    (2, "d", Some((2, "x")), None),
    (2, "", None, None),
    (3, "r", None, Some((3, "s"))),
    (4, "c", None, Some((4, "p"))),
    (4, "d", Some((4, "p")), None),
    (4, "c", None, Some((4, "q"))),
    (0, "t", None, None),
];

/// When Debezium processed the change of a row (its `ts_ms`): a time per row id.
fn event_ms(before: Option<(u64, &str)>, after: Option<(u64, &str)>) -> i64 {
    1_700_000_000_000 + after.or(before).map_or(0, |(id, _)| id as i64)
}

/// `envelope = "debezium"` on Avro, Protobuf and JSON Schema routes: the same change events
/// in each format land as their rows with op and delete flag, `FINAL` shows the source
/// table's last state, the tombstone is skipped and the truncate, and (Avro) an event whose
/// schema is no change event's, are dead-lettered with the reason. Exactly-once, one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn debezium_change_events_in_avro_protobuf_and_json_schema_land_as_rows_and_deletes() {
    use prost_reflect::{DynamicMessage, Value as P};
    use protox::prost::Message as _;
    init_logs();
    let formats = ["avro", "protobuf", "json-schema"];
    let mut topics = Vec::new();
    for format in formats {
        let topic = unique(&format!("cdc_{}", format.replace('-', "_")));
        create_topic(&topic, 2).await;
        create_topic(&format!("{topic}.dlq"), 1).await;
        ch(&format!(
            "CREATE TABLE default.{topic} (id UInt64, name String, __op LowCardinality(String), \
             __deleted UInt8, _offset UInt64, __ts_ms DateTime64(3, 'UTC'), __db String) \
             ENGINE = ReplacingMergeTree(_offset, __deleted) \
             ORDER BY id SETTINGS non_replicated_deduplication_window = 1000"
        ))
        .await;
        // Every event's row kept as inserted, so that the table shows each one.
        ch(&format!("SYSTEM STOP MERGES default.{topic}")).await;
        topics.push(topic);
    }

    // Avro.
    let avro_id = register_schema(&format!("{}-value", topics[0]), None, CHANGE_EVENT_AVRO).await;
    let plain_id = register_schema(&format!("{}-plain", topics[0]), None, V1).await;
    let schema = Schema::parse_str(CHANGE_EVENT_AVRO).unwrap();
    let avro_event = |op: &str, before: Option<(u64, &str)>, after: Option<(u64, &str)>| {
        let image = |r: Option<(u64, &str)>| match r {
            None => V::Union(0, Box::new(V::Null)),
            Some((id, name)) => V::Union(
                1,
                Box::new(V::Record(vec![
                    ("id".into(), V::Long(id as i64)),
                    ("name".into(), V::String(name.into())),
                ])),
            ),
        };
        let event = V::Record(vec![
            ("before".into(), image(before)),
            ("after".into(), image(after)),
            (
                "source".into(),
                V::Record(vec![
                    ("db".into(), V::String("shop".into())),
                    ("lsn".into(), V::Union(1, Box::new(V::Long(7)))),
                ]),
            ),
            ("op".into(), V::String(op.into())),
            (
                "ts_ms".into(),
                V::Union(1, Box::new(V::Long(event_ms(before, after)))),
            ),
        ]);
        framed(avro_id, apache_avro::to_avro_datum(&schema, event).unwrap())
    };

    // Protobuf: Envelope is the file's first message (message indexes: a lone 0).
    let proto_id = register_schema(
        &format!("{}-value", topics[1]),
        Some("PROTOBUF"),
        CHANGE_EVENT_PROTO,
    )
    .await;
    let pool = {
        use protox::file::{File, FileResolver};
        struct Mem;
        impl FileResolver for Mem {
            fn open_file(&self, name: &str) -> Result<File, protox::Error> {
                File::from_source(name, CHANGE_EVENT_PROTO)
            }
        }
        let mut c = protox::Compiler::with_file_resolver(Mem);
        c.open_file("cdc.proto").unwrap();
        c.descriptor_pool()
    };
    let message = |name: &str| {
        pool.get_message_by_name(&format!("shop.public.orders.{name}"))
            .unwrap()
    };
    let proto_event = |op: &str, before: Option<(u64, &str)>, after: Option<(u64, &str)>| {
        let mut e = DynamicMessage::new(message("Envelope"));
        for (field, image) in [("before", before), ("after", after)] {
            if let Some((id, name)) = image {
                let mut v = DynamicMessage::new(message("Envelope.Value"));
                v.set_field_by_name("id", P::I64(id as i64));
                v.set_field_by_name("name", P::String(name.into()));
                e.set_field_by_name(field, P::Message(v));
            }
        }
        let mut src = DynamicMessage::new(message("Envelope.Source"));
        src.set_field_by_name("db", P::String("shop".into()));
        e.set_field_by_name("source", P::Message(src));
        e.set_field_by_name("op", P::String(op.into()));
        e.set_field_by_name("ts_ms", P::I64(event_ms(before, after)));
        framed(proto_id, [vec![0], e.encode_to_vec()].concat())
    };

    // JSON Schema: the event as the JSON Schema converter writes it.
    let json_id = register_schema(
        &format!("{}-value", topics[2]),
        Some("JSON"),
        r#"{"type":"object","title":"Envelope","properties":{"op":{"type":"string"},
            "before":{"oneOf":[{"type":"null"},{"type":"object"}]},
            "after":{"oneOf":[{"type":"null"},{"type":"object"}]}},"required":["op"]}"#,
    )
    .await;
    let json_event = |op: &str, before: Option<(u64, &str)>, after: Option<(u64, &str)>| {
        let image = |r: Option<(u64, &str)>| match r {
            None => "null".to_string(),
            Some((id, name)) => format!(r#"{{"id":{id},"name":"{name}"}}"#),
        };
        framed(
            json_id,
            format!(
                r#"{{"before":{},"after":{},"source":{{"db":"shop"}},"op":"{op}","ts_ms":{}}}"#,
                image(before),
                image(after),
                event_ms(before, after)
            )
            .into_bytes(),
        )
    };

    type Encode<'a> = &'a dyn Fn(&str, Option<(u64, &str)>, Option<(u64, &str)>) -> Vec<u8>;
    let encoders: [Encode; 3] = [&avro_event, &proto_event, &json_event];
    for (topic, encode) in topics.iter().zip(encoders) {
        produce(
            topic,
            CHANGES.iter().map(|&(key, op, before, after)| Msg {
                partition: Some((key % 2) as i32),
                key: Some(key.to_string().into_bytes()),
                payload: (!op.is_empty()).then(|| encode(op, before, after)),
                headers: Vec::new(),
            }),
        );
    }
    // An Avro message whose schema is a plain record, not a change event.
    produce(&topics[0], [msg(1, framed(plain_id, vec![0]))]);

    let group = unique("g");
    let mut text = format!(
        "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\nsession_timeout = \"10s\"\n\n\
         [clickhouse]\nurl = \"{}\"\ninsert_settings = {{ optimize_on_insert = \"0\" }}\n\n\
         [schema_registry]\nurl = \"{}\"\n",
        kafka(),
        ch_url(),
        registry_url()
    );
    for (topic, format) in topics.iter().zip(formats) {
        text.push_str(&format!(
            "\n[[route]]\ntopic = \"{topic}\"\ntable = \"{topic}\"\nformat = \"{format}\"\n\
             max_age = \"200ms\"\ndelivery = \"exactly-once\"\nenvelope = \"debezium\"\n\
             tombstones = \"skip\"\n"
        ));
    }
    // `check` says how each route reads its messages.
    let cfg = sluice::config::from_str(&text, Vec::new()).unwrap();
    let mut out = Vec::new();
    assert!(sluice::check::run(&cfg, &mut out).await);
    let out = String::from_utf8(out).unwrap();
    let said = "  messages: Debezium change events (the row: `after`; a delete's: `before`); \
                tombstones skipped and counted\n";
    assert_eq!(out.matches(said).count(), 3, "{out}");
    let (running, metrics) = start_with_metrics(cfg);
    for (i, topic) in topics.iter().enumerate() {
        let messages = CHANGES.len() as i64 + i64::from(i == 0);
        wait_for_commit(&group, topic, 2, messages).await;
    }
    let summary = running.stop().await;
    assert_eq!((summary.rows_inserted, summary.dead_lettered), (24, 4));
    assert_eq!(
        route_counter(&metrics, "sluice_tombstones_skipped_total"),
        1
    );
    for (topic, format) in topics.iter().zip(formats) {
        let t = format!("default.{topic}");
        assert_eq!(
            ch(&format!(
                "SELECT id, name, __deleted FROM {t} FINAL ORDER BY id FORMAT CSV"
            ))
            .await,
            "1,\"b\",0\n3,\"s\",0\n4,\"q\",0\n",
            "{format}"
        );
        assert_eq!(
            ch(&format!(
                "SELECT arrayStringConcat(groupArray(concat(toString(id), name, __op, \
                 toString(__deleted))), ' ') FROM (SELECT * FROM {t} ORDER BY id, _offset)"
            ))
            .await
            .trim(),
            "1ac0 1bu0 2xc0 2xd1 3sr0 4pc0 4pd1 4qc0",
            "{format}"
        );
        // Each event's ts_ms and its source's db.
        assert_eq!(
            ch_u64(&format!(
                "SELECT countIf(__db = 'shop' AND toUnixTimestamp64Milli(__ts_ms) = 1700000000000 + id) FROM {t}"
            ))
            .await,
            8,
            "{format}"
        );
        let dead = dead_letter_reasons(&format!("{topic}.dlq"));
        let truncate = dead
            .iter()
            .filter(|r| r.contains("Debezium change event: a truncate (op \"t\") has no row"))
            .count();
        assert_eq!(truncate, 1, "{format}: {dead:?}");
        if format == "avro" {
            assert_eq!(dead.len(), 2, "{dead:?}");
            assert!(
                dead.iter().any(|r| r.contains(&format!(
                    "schema id {plain_id}: not a Debezium change event's schema: it needs the \
                     fields \"before\", \"after\" and \"op\""
                ))),
                "{dead:?}"
            );
        } else {
            assert_eq!(dead.len(), 1, "{format}: {dead:?}");
        }
    }
}

/// Runs `format` from `topic` with `unknown_fields = "add"` until all `n` messages are
/// stored, none dead-lettered and `added` columns added; the table's columns then (`name
/// TAB type` lines, in position order).
async fn run_adding(topic: &str, format: &str, n: i64, added: u64) -> String {
    let (summary, metrics) = run_route_until_stored(
        topic,
        topic,
        &format!("format = \"{format}\"\nunknown_fields = \"add\""),
        &registry_url(),
        n as u64,
        n,
    )
    .await;
    assert_eq!(
        (summary.rows_inserted, summary.dead_lettered),
        (n as u64, 0)
    );
    assert_eq!(route_counter(&metrics, "sluice_columns_added_total"), added);
    ch(&format!(
        "SELECT name, type FROM system.columns WHERE database = 'default' AND table = '{topic}' \
         ORDER BY position FORMAT TSVRaw"
    ))
    .await
}

/// `unknown_fields = "add"` on an Avro route, exactly-once: a schema version with new
/// fields adds their columns (typed from the schema: decimal precision, timestamp unit,
/// date, UUID, arrays, maps, enums as String, unions with null Nullable, a record a named
/// Tuple) before its first message is read.
/// Rows of both versions land once with their values, the older ones with the new columns'
/// defaults. Without the ALTER the run stops at the new schema and the test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_avro_schema_version_adds_the_columns_of_its_new_fields() {
    let topic = exactly_once_topic("avroadd", 2, "id Int64, _offset UInt64").await;
    let v1 = r#"{"type":"record","name":"Grow","namespace":"shop","fields":[
        {"name":"id","type":"long"},{"name":"_offset","type":"long","default":0}]}"#;
    let v2 = r#"{"type":"record","name":"Grow","namespace":"shop","fields":[
        {"name":"id","type":"long"},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":2}},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"day","type":{"type":"int","logicalType":"date"}},
        {"name":"uid","type":{"type":"string","logicalType":"uuid"}},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"attrs","type":{"type":"map","values":"long"}},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"ok","type":"boolean"},
        {"name":"score","type":"float"},
        {"name":"inner","type":{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"}]}}
    ]}"#;
    let subject = format!("{topic}-value");
    let id1 = register_schema(&subject, None, v1).await;
    let id2 = register_schema(&subject, None, v2).await;
    let (s1, s2) = (
        Schema::parse_str(v1).unwrap(),
        Schema::parse_str(v2).unwrap(),
    );
    let old = |i: i64| {
        let r = V::Record(vec![
            ("id".into(), V::Long(i)),
            ("_offset".into(), V::Long(0)),
        ]);
        framed(id1, apache_avro::to_avro_datum(&s1, r).unwrap())
    };
    let new = |i: i64| {
        let r = V::Record(vec![
            ("id".into(), V::Long(i)),
            (
                "price".into(),
                V::Decimal(apache_avro::Decimal::from((i * 101).to_be_bytes().to_vec())),
            ),
            ("at".into(), V::TimestampMillis(1_700_000_000_000 + i)),
            ("day".into(), V::Date(19_000 + i as i32)),
            (
                "uid".into(),
                V::Uuid(uuid::Uuid::from_u128(
                    0x1234_5678_9abc_def0_1234_5678_9abc_0000 + i as u128,
                )),
            ),
            ("tags".into(), V::Array(vec![V::String(format!("t{i}"))])),
            (
                "attrs".into(),
                V::Map([("n".to_string(), V::Long(i))].into_iter().collect()),
            ),
            (
                "kind".into(),
                V::Enum((i % 2) as u32, ["A", "B"][(i % 2) as usize].into()),
            ),
            (
                "note".into(),
                if i % 2 == 0 {
                    V::Union(0, Box::new(V::Null))
                } else {
                    V::Union(1, Box::new(V::String(format!("n{i}"))))
                },
            ),
            ("ok".into(), V::Boolean(i % 3 == 0)),
            ("score".into(), V::Float(i as f32 / 4.0)),
            ("inner".into(), V::Record(vec![("x".into(), V::Int(1))])),
        ]);
        framed(id2, apache_avro::to_avro_datum(&s2, r).unwrap())
    };
    let n = 200i64;
    produce(
        &topic,
        (0..n).map(|i| msg((i % 2) as i32, if i < 100 { old(i) } else { new(i) })),
    );
    assert_eq!(
        run_adding(&topic, "avro", n, 11).await,
        "id\tInt64\n_offset\tUInt64\nprice\tDecimal(18, 2)\nat\tDateTime64(3, 'UTC')\n\
         day\tDate32\nuid\tUUID\ntags\tArray(String)\nattrs\tMap(String, Int64)\nkind\tString\n\
         note\tNullable(String)\nok\tBool\nscore\tFloat32\ninner\tTuple(x Int32)\n"
    );
    let ok = ch_u64(&format!(
        "SELECT countIf(if(id < 100,
            price = 0 AND at = toDateTime64(0, 3, 'UTC') AND tags = [] AND isNull(note) AND kind = '',
            toInt64(price * 100) = id * 101
            AND at = fromUnixTimestamp64Milli(1700000000000 + id, 'UTC')
            AND day = toDate32('1970-01-01') + 19000 + id
            AND uid = toUUID(concat('12345678-9abc-def0-1234-56789abc', leftPad(hex(id), 4, '0')))
            AND tags = [concat('t', toString(id))] AND attrs['n'] = id
            AND kind = if(id % 2 = 0, 'A', 'B')
            AND if(id % 2 = 0, isNull(note), note = concat('n', toString(id)))
            AND ok = (id % 3 = 0) AND score = id / 4 AND inner.x = 1)) FROM default.{topic}"
    ))
    .await;
    assert_eq!(ok, n as u64, "rows differ from the records produced");
}

/// A message type of `source` (a file `name`), compiled with Google's well-known types.
fn proto_descriptor(name: &str, source: &str, message: &str) -> prost_reflect::MessageDescriptor {
    use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
    struct Mem(String, String);
    impl FileResolver for Mem {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            match name == self.0 {
                true => File::from_source(name, &self.1),
                false => Err(protox::Error::file_not_found(name)),
            }
        }
    }
    let mut chain = ChainFileResolver::new();
    chain.add(Mem(name.into(), source.into()));
    chain.add(GoogleFileResolver::new());
    let mut c = protox::Compiler::with_file_resolver(chain);
    c.open_file(name).unwrap();
    c.descriptor_pool().get_message_by_name(message).unwrap()
}

/// `unknown_fields = "add"` on a Protobuf route, exactly-once: the first message of a
/// schema version with new fields adds their columns (scalars by width and sign, `optional`
/// and wrappers Nullable, a Timestamp, repeated, map, enum names, bytes, a nested message a
/// named Tuple); rows of both versions land once with their values. It fails without the
/// ALTER.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_protobuf_schema_version_adds_the_columns_of_its_new_fields() {
    use prost_reflect::{DynamicMessage, MapKey, Value as P};
    use protox::prost::Message as _;
    let topic = exactly_once_topic("protoadd", 2, "id Int64, _offset UInt64").await;
    let v1 = "syntax = \"proto3\";\npackage g;\nmessage Row { int64 id = 1; }\n";
    let v2 = r#"syntax = "proto3";
package g;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
message Row {
  int64 id = 1;
  optional string note = 2;
  repeated int32 xs = 3;
  google.protobuf.Timestamp at = 4;
  double d = 5;
  Kind k = 6;
  map<string, int64> m = 7;
  Inner inner = 8;
  google.protobuf.Int64Value w = 9;
  uint32 u = 10;
  bytes b = 11;
  enum Kind { A = 0; B = 1; }
  message Inner { int32 x = 1; }
}
"#;
    let subject = format!("{topic}-value");
    let id1 = register_schema(&subject, Some("PROTOBUF"), v1).await;
    let id2 = register_schema(&subject, Some("PROTOBUF"), v2).await;
    let (d1, d2) = (
        proto_descriptor("v1.proto", v1, "g.Row"),
        proto_descriptor("v2.proto", v2, "g.Row"),
    );
    let field = |name: &str| match d2.get_field_by_name(name).map(|f| f.kind()) {
        Some(prost_reflect::Kind::Message(m)) => m,
        _ => panic!("{name} is not a message field"),
    };
    let (ts, inner, wrap) = (field("at"), field("inner"), field("w"));
    let payload = |i: i64| -> Vec<u8> {
        if i < 100 {
            let mut m = DynamicMessage::new(d1.clone());
            m.set_field_by_name("id", P::I64(i));
            let mut out = framed(id1, vec![0]);
            out.extend(m.encode_to_vec());
            return out;
        }
        let mut m = DynamicMessage::new(d2.clone());
        m.set_field_by_name("id", P::I64(i));
        if i % 2 == 1 {
            m.set_field_by_name("note", P::String(format!("n{i}")));
        }
        m.set_field_by_name("xs", P::List(vec![P::I32(i as i32), P::I32(-1)]));
        let mut t = DynamicMessage::new(ts.clone());
        t.set_field_by_name("seconds", P::I64(1_700_000_000 + i));
        t.set_field_by_name("nanos", P::I32(5));
        m.set_field_by_name("at", P::Message(t));
        m.set_field_by_name("d", P::F64(i as f64 / 8.0));
        m.set_field_by_name("k", P::EnumNumber((i % 2) as i32));
        m.set_field_by_name(
            "m",
            P::Map(
                [(MapKey::String("n".into()), P::I64(i))]
                    .into_iter()
                    .collect(),
            ),
        );
        let mut x = DynamicMessage::new(inner.clone());
        x.set_field_by_name("x", P::I32(1));
        m.set_field_by_name("inner", P::Message(x));
        if i % 3 == 0 {
            let mut w = DynamicMessage::new(wrap.clone());
            w.set_field_by_name("value", P::I64(-i));
            m.set_field_by_name("w", P::Message(w));
        }
        m.set_field_by_name("u", P::U32(i as u32 * 7));
        m.set_field_by_name("b", P::Bytes(vec![0xfe, (i % 256) as u8].into()));
        let mut out = framed(id2, vec![0]);
        out.extend(m.encode_to_vec());
        out
    };
    let n = 200i64;
    produce(&topic, (0..n).map(|i| msg((i % 2) as i32, payload(i))));
    assert_eq!(
        run_adding(&topic, "protobuf", n, 10).await,
        "id\tInt64\n_offset\tUInt64\nnote\tNullable(String)\nxs\tArray(Int32)\n\
         at\tNullable(DateTime64(9, 'UTC'))\nd\tFloat64\nk\tString\nm\tMap(String, Int64)\n\
         inner\tTuple(x Int32)\nw\tNullable(Int64)\nu\tUInt32\nb\tString\n"
    );
    let ok = ch_u64(&format!(
        "SELECT countIf(if(id < 100,
            isNull(note) AND xs = [] AND isNull(at) AND d = 0 AND k = '' AND isNull(w) AND u = 0,
            if(id % 2 = 1, note = concat('n', toString(id)), isNull(note))
            AND xs = [toInt32(id), -1]
            AND at = toDateTime64(1700000000 + id, 9, 'UTC') + toIntervalNanosecond(5)
            AND d = id / 8 AND k = if(id % 2 = 0, 'A', 'B') AND m['n'] = id
            AND if(id % 3 = 0, w = -id, isNull(w)) AND u = id * 7 AND inner.x = 1
            AND hex(b) = concat('FE', hex(toUInt8(id % 256))))) FROM default.{topic}"
    ))
    .await;
    assert_eq!(ok, n as u64, "rows differ from the messages produced");
}

/// `unknown_fields = "error"` on Avro and Protobuf routes: a message whose schema has a
/// field no column reads is dead-lettered with its name, while messages of a schema without
/// one land (exactly-once). With the default ("ignore") the same messages would land and
/// the test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_fields_error_dead_letters_avro_and_protobuf_messages_with_a_field_too_many() {
    use prost_reflect::{DynamicMessage, Value as P};
    use protox::prost::Message as _;
    for format in ["avro", "protobuf"] {
        let topic = exactly_once_topic(&format!("strict{format}"), 2, "id Int64").await;
        let subject = format!("{topic}-value");
        let encode: Box<dyn Fn(i64) -> Vec<u8>> = if format == "avro" {
            let plain = r#"{"type":"record","name":"S","fields":[{"name":"id","type":"long"}]}"#;
            let extra = r#"{"type":"record","name":"S","fields":[{"name":"id","type":"long"},{"name":"extra","type":"string","default":""}]}"#;
            let (i1, i2) = (
                register_schema(&subject, None, plain).await,
                register_schema(&subject, None, extra).await,
            );
            let (s1, s2) = (
                Schema::parse_str(plain).unwrap(),
                Schema::parse_str(extra).unwrap(),
            );
            Box::new(move |i| {
                if i % 4 == 3 {
                    let r = V::Record(vec![
                        ("id".into(), V::Long(i)),
                        ("extra".into(), V::String("x".into())),
                    ]);
                    framed(i2, apache_avro::to_avro_datum(&s2, r).unwrap())
                } else {
                    framed(
                        i1,
                        apache_avro::to_avro_datum(&s1, V::Record(vec![("id".into(), V::Long(i))]))
                            .unwrap(),
                    )
                }
            })
        } else {
            let plain = "syntax = \"proto3\";\npackage s;\nmessage S { int64 id = 1; }\n";
            let extra =
                "syntax = \"proto3\";\npackage s;\nmessage S { int64 id = 1; string extra = 2; }\n";
            let (i1, i2) = (
                register_schema(&subject, Some("PROTOBUF"), plain).await,
                register_schema(&subject, Some("PROTOBUF"), extra).await,
            );
            let (d1, d2) = (
                proto_descriptor("p1.proto", plain, "s.S"),
                proto_descriptor("p2.proto", extra, "s.S"),
            );
            Box::new(move |i| {
                let (id, d) = if i % 4 == 3 { (i2, &d2) } else { (i1, &d1) };
                let mut m = DynamicMessage::new(d.clone());
                m.set_field_by_name("id", P::I64(i));
                if i % 4 == 3 {
                    m.set_field_by_name("extra", P::String("x".into()));
                }
                let mut out = framed(id, vec![0]);
                out.extend(m.encode_to_vec());
                out
            })
        };
        let n = 40i64;
        produce(&topic, (0..n).map(|i| msg((i % 2) as i32, encode(i))));
        let good = (0..n).filter(|i| i % 4 != 3).count() as u64;
        let (summary, _) = run_route_until_stored(
            &topic,
            &topic,
            &format!("format = \"{format}\"\nunknown_fields = \"error\""),
            &registry_url(),
            good,
            n,
        )
        .await;
        assert_eq!(
            (summary.rows_inserted, summary.dead_lettered),
            (good, n as u64 - good),
            "{format}"
        );
        let dead = dead_letter_reasons(&format!("{topic}.dlq"));
        assert_eq!(dead.len() as u64, n as u64 - good, "{format}");
        assert!(
            dead.iter().all(|d| d.contains("unknown field \"extra\"")),
            "{format}: {dead:?}"
        );
        assert_eq!(
            ch_u64(&format!("SELECT countIf(id % 4 = 3) FROM default.{topic}")).await,
            0,
            "{format}"
        );
    }
}

/// The 1000-column bound of `unknown_fields = "add"` on an Avro route: in a table of 999
/// columns, a schema with two new fields would pass it, so its messages are dead-lettered
/// with the reason and no column is added; messages of a schema without new fields land.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_avro_schema_that_would_grow_a_table_past_1000_columns_is_refused() {
    let columns: Vec<String> = (1..999).map(|i| format!("c{i} String")).collect();
    let topic =
        exactly_once_topic("avrowide", 2, &format!("id Int64, {}", columns.join(", "))).await;
    let plain = r#"{"type":"record","name":"W","fields":[{"name":"id","type":"long"}]}"#;
    let wide = r#"{"type":"record","name":"W","fields":[{"name":"id","type":"long"},{"name":"x","type":"long"},{"name":"y","type":"long"}]}"#;
    let subject = format!("{topic}-value");
    let (i1, i2) = (
        register_schema(&subject, None, plain).await,
        register_schema(&subject, None, wide).await,
    );
    let (s1, s2) = (
        Schema::parse_str(plain).unwrap(),
        Schema::parse_str(wide).unwrap(),
    );
    let n = 20i64;
    produce(
        &topic,
        (0..n).map(|i| {
            let m = if i % 2 == 0 {
                framed(
                    i1,
                    apache_avro::to_avro_datum(&s1, V::Record(vec![("id".into(), V::Long(i))]))
                        .unwrap(),
                )
            } else {
                let r = V::Record(vec![
                    ("id".into(), V::Long(i)),
                    ("x".into(), V::Long(1)),
                    ("y".into(), V::Long(2)),
                ]);
                framed(i2, apache_avro::to_avro_datum(&s2, r).unwrap())
            };
            msg((i % 2) as i32, m)
        }),
    );
    let (summary, metrics) = run_route_until_stored(
        &topic,
        &topic,
        "format = \"avro\"\nunknown_fields = \"add\"",
        &registry_url(),
        (n / 2) as u64,
        n,
    )
    .await;
    assert_eq!(
        (summary.rows_inserted, summary.dead_lettered),
        ((n / 2) as u64, (n / 2) as u64)
    );
    assert_eq!(route_counter(&metrics, "sluice_columns_added_total"), 0);
    let dead = dead_letter_reasons(&format!("{topic}.dlq"));
    assert_eq!(dead.len() as i64, n / 2, "{dead:?}");
    assert!(
        dead.iter()
            .all(|d| d.contains("grows no table past 1000 columns")),
        "{dead:?}"
    );
}
