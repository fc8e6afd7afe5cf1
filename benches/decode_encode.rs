//! Throughput of message → RowBinary row conversion: JSON (`decode::json::encode_json_row`),
//! CSV/TSV (`encode_text_row`), and Avro and Protobuf in the registry's wire format
//! (`decode::avro::encode_avro_row`, `decode::protobuf::encode_protobuf_row`).
//!
//! The narrow message is a typical 12-column event of about 200 bytes: UInt64 id,
//! DateTime64(3) timestamp string, three Strings, Int32, Float64, Bool,
//! LowCardinality(String), Nullable(Int64), a small Array(String) and a Decimal(18, 4). The
//! wide one is bench/compare's 60-column message of about 1.5 KB, built as
//! `bench/compare.d/gen_wide.py` builds it. Throughput is reported in rows (criterion
//! "elements"). One iteration encodes a batch of distinct messages into one reused buffer, as
//! the pipeline does.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sluice::chtype::ChType;
use sluice::config::Format;
use sluice::decode::avro::{encode_avro_row, AvroScratch, Bound, Compiled};
use sluice::decode::json::{
    encode_json_row, encode_text_row, ColumnPlan, MessageMeta, RowPlan, UnknownFields,
};
use sluice::decode::protobuf::{self, encode_protobuf_row, ProtobufScratch};
use sluice::decode::registered;
use sluice::decode::text::{Delimited, Line};
use sluice::registry::RawSchema;

const BATCH: usize = 1024;

/// The narrow message's columns: name and type.
const NARROW: [(&str, &str); 12] = [
    ("id", "UInt64"),
    ("ts", "DateTime64(3)"),
    ("user", "String"),
    ("url", "String"),
    ("agent", "String"),
    ("status", "Int32"),
    ("latency", "Float64"),
    ("ok", "Bool"),
    ("region", "LowCardinality(String)"),
    ("parent", "Nullable(Int64)"),
    ("tags", "Array(String)"),
    ("amount", "Decimal(18, 4)"),
];

/// The 12 fields as a producer's JSON Schema would describe them.
const NARROW_JSON_SCHEMA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "properties": {
    "id": {"type": "integer", "minimum": 0},
    "ts": {"type": "string"},
    "user": {"type": "string", "maxLength": 64},
    "url": {"type": "string"},
    "agent": {"type": "string"},
    "status": {"type": "integer", "minimum": 100, "maximum": 599},
    "latency": {"type": "number"},
    "ok": {"type": "boolean"},
    "region": {"type": "string"},
    "parent": {"type": ["integer", "null"]},
    "tags": {"type": "array", "items": {"type": "string"}},
    "amount": {"type": "string"}
  },
  "required": ["id", "ts", "user", "status"]
}"#;

fn columns(cols: &[(&str, &str)]) -> Vec<ColumnPlan> {
    cols.iter()
        .map(|(n, t)| ColumnPlan::field(*n, ChType::parse(t).expect("bench type")))
        .collect()
}

fn plan() -> RowPlan {
    RowPlan::new(columns(&NARROW), UnknownFields::Ignore, false).expect("bench plan")
}

fn messages() -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let parent = if i % 3 == 0 { "null".to_string() } else { (i * 7).to_string() };
            format!(
                r#"{{"id":{id},"ts":"2024-05-17 12:34:{s:02}.{ms:03}","user":"user_{u}","url":"/api/v1/items/{id}","agent":"Mozilla/5.0","status":{st},"latency":{lat},"ok":{ok},"region":"eu-west-1","parent":{parent},"tags":["a","bb"],"amount":"{amt}.{frac:04}"}}"#,
                id = 1_000_000 + i,
                s = i % 60,
                ms = i % 1000,
                u = i % 977,
                st = [200, 201, 404, 500][i % 4],
                lat = 0.25 + i as f64 / 8.0,
                ok = i % 5 != 0,
                amt = i * 13,
                frac = i % 10_000,
            )
            .into_bytes()
        })
        .collect()
}

/// `gen_wide.py`'s columns: id, ts, then c01..c58 cycling through six types.
const WIDE_CYCLE: [&str; 6] = [
    "String",
    "Int64",
    "Float64",
    "String",
    "UInt32",
    "Array(String)",
];
const WORDS: [&str; 16] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa",
];

fn wide_plan() -> RowPlan {
    let mut cols = vec![
        ColumnPlan::field("id", ChType::parse("UInt64").expect("bench type")),
        ColumnPlan::field("ts", ChType::parse("DateTime64(3)").expect("bench type")),
    ];
    for c in 0..58 {
        let ty = ChType::parse(WIDE_CYCLE[c % 6]).expect("bench type");
        cols.push(ColumnPlan::field(format!("c{:02}", c + 1), ty));
    }
    RowPlan::new(cols, UnknownFields::Ignore, false).expect("bench plan")
}

/// The same bytes `gen_wide.py` writes for message `i` (without the newline).
fn wide_message(i: usize) -> Vec<u8> {
    let w = |k: usize| WORDS[k % 16];
    let long = |h: usize| {
        [h, h * 3, h * 5, h * 7, h * 11, h * 13, h + 9, h * 15]
            .map(w)
            .join("-")
    };
    let mut s = format!(
        r#"{{"id":{},"ts":"2024-05-{:02} {:02}:{:02}:{:02}.{:03}""#,
        1_000_000 + i,
        1 + i % 28,
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60,
        i % 1000
    );
    for c in 0..58usize {
        let h = (i * 31 + c * 17) & 63;
        let v = match c % 6 {
            0 => format!(r#""{} {i}""#, long(h)),
            1 => {
                ((i as i64 * 2_654_435_761 + c as i64) % 10_000_000_000 - 5_000_000_000).to_string()
            }
            2 => format!("{:.4}", (i % 100_000) as f64 / 7.0 + c as f64),
            3 => format!(r#""{}_{h}""#, w(h)),
            4 => ((i * 7 + c) % 4_000_000_000).to_string(),
            _ => format!(r#"["{}","{}"]"#, w(h), w(h + 5)),
        };
        s.push_str(&format!(r#","c{:02}":{v}"#, c + 1));
    }
    s.push('}');
    s.into_bytes()
}

/// The narrow message's columns, filled by position from CSV/TSV lines.
fn text_plan() -> RowPlan {
    let names: Vec<String> = NARROW.iter().map(|(n, _)| n.to_string()).collect();
    let mut plan =
        RowPlan::new(columns(&NARROW), UnknownFields::Ignore, false).expect("bench plan");
    plan.set_positions(&names).expect("bench positions");
    plan
}

/// The narrow message's values as a CSV or TSV line (its array in ClickHouse's text form,
/// quoted in CSV for its comma).
fn text_messages(sep: char) -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let parent = if i % 3 == 0 {
                "\\N".to_string()
            } else {
                (i * 7).to_string()
            };
            [
                (1_000_000 + i).to_string(),
                format!("2024-05-17 12:34:{:02}.{:03}", i % 60, i % 1000),
                format!("user_{}", i % 977),
                format!("/api/v1/items/{}", 1_000_000 + i),
                "Mozilla/5.0".to_string(),
                [200, 201, 404, 500][i % 4].to_string(),
                (0.25 + i as f64 / 8.0).to_string(),
                (i % 5 != 0).to_string(),
                "eu-west-1".to_string(),
                parent,
                if sep == ',' {
                    "\"['a','bb']\""
                } else {
                    "['a','bb']"
                }
                .to_string(),
                format!("{}.{:04}", i * 13, i % 10_000),
            ]
            .join(&sep.to_string())
            .into_bytes()
        })
        .collect()
}

/// The narrow message's Avro schema: the same 12 fields, typed as a producer would type them.
const NARROW_AVRO: &str = r#"{"type":"record","name":"Event","fields":[
    {"name":"id","type":"long"},
    {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"user","type":"string"},{"name":"url","type":"string"},{"name":"agent","type":"string"},
    {"name":"status","type":"int"},{"name":"latency","type":"double"},{"name":"ok","type":"boolean"},
    {"name":"region","type":"string"},{"name":"parent","type":["null","long"]},
    {"name":"tags","type":{"type":"array","items":"string"}},
    {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":4}}]}"#;

/// The narrow message's values as Avro in the registry's wire format (schema id 1).
fn avro_messages() -> Vec<Vec<u8>> {
    use apache_avro::types::Value as V;
    let schema = apache_avro::Schema::parse_str(NARROW_AVRO).expect("bench schema");
    (0..BATCH)
        .map(|i| {
            let s = |t: String| V::String(t);
            let parent = if i % 3 == 0 {
                V::Union(0, Box::new(V::Null))
            } else {
                V::Union(1, Box::new(V::Long(i as i64 * 7)))
            };
            let unscaled = (i as i64 * 13) * 10_000 + (i % 10_000) as i64;
            let v = V::Record(vec![
                ("id".into(), V::Long(1_000_000 + i as i64)),
                (
                    "ts".into(),
                    V::TimestampMillis(1_715_949_240_000 + (i % 60 * 1000 + i % 1000) as i64),
                ),
                ("user".into(), s(format!("user_{}", i % 977))),
                ("url".into(), s(format!("/api/v1/items/{}", 1_000_000 + i))),
                ("agent".into(), s("Mozilla/5.0".into())),
                ("status".into(), V::Int([200, 201, 404, 500][i % 4])),
                ("latency".into(), V::Double(0.25 + i as f64 / 8.0)),
                ("ok".into(), V::Boolean(i % 5 != 0)),
                ("region".into(), s("eu-west-1".into())),
                ("parent".into(), parent),
                ("tags".into(), V::Array(vec![s("a".into()), s("bb".into())])),
                (
                    "amount".into(),
                    V::Decimal(apache_avro::Decimal::from(unscaled.to_be_bytes().to_vec())),
                ),
            ]);
            let mut m = vec![0, 0, 0, 0, 1];
            m.extend(apache_avro::to_avro_datum(&schema, v).expect("bench datum"));
            m
        })
        .collect()
}

/// The narrow message's Protobuf schema: the same 12 fields, `ts` a Timestamp (a nested
/// message: decoded into a DynamicMessage) or, in the flat variant, a string as in the JSON
/// (every field a scalar: read straight from the wire).
const NARROW_PROTO: &str = r#"syntax = "proto3";
import "google/protobuf/timestamp.proto";
message Event {
  uint64 id = 1; google.protobuf.Timestamp ts = 2; string user = 3; string url = 4;
  string agent = 5; int32 status = 6; double latency = 7; bool ok = 8; string region = 9;
  optional int64 parent = 10; repeated string tags = 11; string amount = 12;
}"#;

fn narrow_proto(flat: bool) -> String {
    if flat {
        NARROW_PROTO.replace("google.protobuf.Timestamp ts", "string ts")
    } else {
        NARROW_PROTO.to_string()
    }
}

/// The narrow message's values as Protobuf in the registry's wire format (schema id 1,
/// message index 0), encoded by prost-reflect as a producer's serializer would.
fn protobuf_messages(flat: bool) -> Vec<Vec<u8>> {
    use prost_reflect::{DynamicMessage, Kind, Value as P};
    use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
    use protox::prost::Message as _;
    struct Mem(String);
    impl FileResolver for Mem {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            match name {
                "event.proto" => File::from_source(name, &self.0),
                _ => Err(protox::Error::file_not_found(name)),
            }
        }
    }
    let mut chain = ChainFileResolver::new();
    chain.add(Mem(narrow_proto(flat)));
    chain.add(GoogleFileResolver::new());
    let mut c = protox::Compiler::with_file_resolver(chain);
    c.open_file("event.proto").expect("bench proto");
    let desc = c
        .descriptor_pool()
        .get_message_by_name("Event")
        .expect("bench message");
    let ts = match desc.get_field_by_name("ts").map(|f| f.kind()) {
        Some(Kind::Message(ts)) => Some(ts),
        _ => None,
    };
    (0..BATCH)
        .map(|i| {
            let mut m = DynamicMessage::new(desc.clone());
            let mut set = |n: &str, v: P| m.set_field_by_name(n, v);
            set("id", P::U64(1_000_000 + i as u64));
            match &ts {
                Some(ts) => {
                    let mut t = DynamicMessage::new(ts.clone());
                    t.set_field_by_name("seconds", P::I64(1_715_949_240 + (i % 60) as i64));
                    t.set_field_by_name("nanos", P::I32((i % 1000) as i32 * 1_000_000));
                    set("ts", P::Message(t));
                }
                None => set(
                    "ts",
                    P::String(format!("2024-05-17 12:34:{:02}.{:03}", i % 60, i % 1000)),
                ),
            }
            set("user", P::String(format!("user_{}", i % 977)));
            set("url", P::String(format!("/api/v1/items/{}", 1_000_000 + i)));
            set("agent", P::String("Mozilla/5.0".into()));
            set("status", P::I32([200, 201, 404, 500][i % 4]));
            set("latency", P::F64(0.25 + i as f64 / 8.0));
            set("ok", P::Bool(i % 5 != 0));
            set("region", P::String("eu-west-1".into()));
            if i % 3 != 0 {
                set("parent", P::I64(i as i64 * 7));
            }
            set(
                "tags",
                P::List(vec![P::String("a".into()), P::String("bb".into())]),
            );
            set("amount", P::String(format!("{}.{:04}", i * 13, i % 10_000)));
            let mut out = vec![0, 0, 0, 0, 1, 0];
            out.extend(m.encode_to_vec());
            out
        })
        .collect()
}

/// One iteration: every message of the batch into the reused buffer.
/// Semi-structured messages: an object, a value of changing kind and one of any type, as a
/// JSON column, a Variant and a Dynamic take them (and as Strings, to compare).
const SEMI: [(&str, &str); 5] = [
    ("id", "UInt64"),
    ("payload", "JSON"),
    ("kind", "Variant(String, UInt64, Array(UInt64))"),
    ("extra", "Dynamic"),
    ("tags", "Array(String)"),
];
const SEMI_AS_STRINGS: [(&str, &str); 5] = [
    ("id", "UInt64"),
    ("payload", "String"),
    ("kind", "String"),
    ("extra", "String"),
    ("tags", "Array(String)"),
];

fn semi_messages() -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let kind = match i % 3 {
                0 => format!("\"k{i}\""),
                1 => i.to_string(),
                _ => format!("[{i},{}]", i + 1),
            };
            let extra = match i % 4 {
                0 => (i * 31).to_string(),
                1 => format!("\"note {i}\""),
                2 => "\"2024-05-17 12:34:56\"".to_string(),
                _ => format!(r#"{{"a":{i},"b":"x"}}"#),
            };
            format!(
                r#"{{"id":{i},"payload":{{"user":{{"id":{u},"name":"user_{u}"}},"event":"click","props":{{"x":{i},"y":0.5}}}},"kind":{kind},"extra":{extra},"tags":["a","bb"]}}"#,
                u = i % 977,
            )
            .into_bytes()
        })
        .collect()
}

/// One batch: every message encoded by `row` into `out`, emptied first; the bytes written.
fn each_message(
    msgs: &[Vec<u8>],
    out: &mut Vec<u8>,
    mut row: impl FnMut(&[u8], &mut Vec<u8>),
) -> usize {
    out.clear();
    for m in msgs {
        row(black_box(m), out);
    }
    out.len()
}

fn encode_all(
    plan: &RowPlan,
    msgs: &[Vec<u8>],
    meta: &MessageMeta<'_>,
    out: &mut Vec<u8>,
) -> usize {
    each_message(msgs, out, |m, out| {
        encode_json_row(plan, m, meta, out).expect("bench row")
    })
}

fn bench(c: &mut Criterion) {
    let plan = plan();
    let msgs = messages();
    let avg = msgs.iter().map(Vec::len).sum::<usize>() / msgs.len();
    let meta = MessageMeta {
        topic: "events",
        partition: 0,
        offset: 0,
        timestamp_ms: None,
        key: None,
        headers: &[],
        value: None,
        op: None,
        source: sluice::decode::json::EventSource::NONE,
    };
    let mut out = Vec::with_capacity(BATCH * 256);
    let mut g = c.benchmark_group("decode_encode");
    g.throughput(Throughput::Elements(BATCH as u64));
    let wide = wide_plan();
    let wide_msgs: Vec<Vec<u8>> = (0..BATCH).map(wide_message).collect();
    let wide_avg = wide_msgs.iter().map(Vec::len).sum::<usize>() / wide_msgs.len();
    for (name, plan, msgs) in [
        (format!("json_to_rowbinary_12col_{avg}B"), &plan, &msgs),
        (
            format!("json_to_rowbinary_60col_{wide_avg}B"),
            &wide,
            &wide_msgs,
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(encode_all(plan, msgs, &meta, &mut out)))
        });
    }
    let semi = semi_messages();
    let semi_avg = semi.iter().map(Vec::len).sum::<usize>() / semi.len();
    for (name, cols) in [
        (
            format!("json_to_rowbinary_json_variant_dynamic_{semi_avg}B"),
            &SEMI,
        ),
        (
            format!("json_to_rowbinary_same_as_strings_{semi_avg}B"),
            &SEMI_AS_STRINGS,
        ),
    ] {
        let p = RowPlan::new(columns(cols), UnknownFields::Ignore, false).expect("bench plan");
        g.bench_function(name, |b| {
            b.iter(|| black_box(encode_all(&p, &semi, &meta, &mut out)))
        });
    }
    let text = text_plan();
    for (name, format, sep) in [
        ("csv_to_rowbinary_12col", Delimited::Csv, ','),
        ("tsv_to_rowbinary_12col", Delimited::Tsv, '\t'),
    ] {
        let lines = text_messages(sep);
        let mut line = Line::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(each_message(&lines, &mut out, |m, out| {
                    line.split(format, m).expect("bench line");
                    encode_text_row(&text, &line, &meta, out).expect("bench row");
                }))
            })
        });
    }
    let avro = avro_messages();
    let avro_avg = avro.iter().map(Vec::len).sum::<usize>() / avro.len();
    let compiled = std::sync::Arc::new(Compiled::new(NARROW_AVRO, &[]).expect("bench schema"));
    let bound = Bound::new(&compiled, &plan);
    let mut scratch = AvroScratch::default();
    g.bench_function(format!("avro_to_rowbinary_12col_{avro_avg}B"), |b| {
        b.iter(|| {
            black_box(each_message(&avro, &mut out, |m, out| {
                encode_avro_row(&plan, &bound, m, &meta, &mut scratch, out).expect("bench row")
            }))
        })
    });
    // An unset `optional` field is missing (JSON writes `null`): its Nullable column takes
    // NULL, as the pipeline's plan says for a Nullable column without a DEFAULT.
    let proto_plan = RowPlan::new(
        columns(&NARROW)
            .into_iter()
            .map(|c| {
                if c.name == "parent" {
                    c.on_missing(sluice::decode::json::OnMissing::Null)
                } else {
                    c
                }
            })
            .collect(),
        UnknownFields::Ignore,
        false,
    )
    .expect("bench plan");
    for (variant, flat) in [("protobuf", false), ("protobuf_flat", true)] {
        let proto = protobuf_messages(flat);
        let proto_avg = proto.iter().map(Vec::len).sum::<usize>() / proto.len();
        let compiled = protobuf::Compiled::new(&narrow_proto(flat), &[]).expect("bench schema");
        let bound = protobuf::Bound::new(&compiled, &proto_plan, false);
        let mut scratch = ProtobufScratch::default();
        g.bench_function(format!("{variant}_to_rowbinary_12col_{proto_avg}B"), |b| {
            b.iter(|| {
                black_box(each_message(&proto, &mut out, |m, out| {
                    encode_protobuf_row(&proto_plan, &bound, m, &meta, &mut scratch, out)
                        .expect("bench row")
                }))
            })
        });
    }
    // JSON Schema messages checked against a schema of the 12 fields (`validate = true`): the
    // same rows as json_to_rowbinary, after a parse and a check of each document.
    let schema = RawSchema {
        schema_type: "JSON".into(),
        text: NARROW_JSON_SCHEMA.into(),
        references: Vec::new(),
    };
    let framed: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| [&[0u8, 0, 0, 0, 1][..], m].concat())
        .collect();
    for (name, validate) in [
        (format!("json_schema_to_rowbinary_12col_{avg}B"), false),
        (
            format!("json_schema_validated_to_rowbinary_12col_{avg}B"),
            true,
        ),
    ] {
        let bound = registered::bind(
            Format::JsonSchema,
            &schema,
            &plan,
            validate,
            sluice::config::Envelope::None,
        )
        .expect("bench schema");
        let mut scratch = registered::Scratch::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(each_message(&framed, &mut out, |m, out| {
                    registered::encode_registered_row(&plan, &bound, m, &meta, &mut scratch, out)
                        .expect("bench row")
                }))
            })
        });
    }
    g.finish();

    // Criterion measures wall time, which other processes on a shared machine inflate. Also
    // report rows per second of this thread's on-CPU time (Linux schedstat), which they don't.
    let on_cpu_ns = || -> Option<u64> {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let rounds = 1000u64;
    let (Some(t0), w0) = (on_cpu_ns(), std::time::Instant::now()) else {
        return;
    };
    for _ in 0..rounds {
        black_box(encode_all(&plan, &msgs, &meta, &mut out));
    }
    if let Some(t1) = on_cpu_ns() {
        let rows = (rounds * BATCH as u64) as f64;
        let cpu = (t1 - t0) as f64 / 1e9;
        let wall = w0.elapsed().as_secs_f64();
        println!(
            "decode_encode on-CPU: {:.3} M rows/s ({rows} rows, {cpu:.3} s on CPU, {wall:.3} s wall, avg {avg} B/row)",
            rows / cpu / 1e6
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
