//! Proves the JSON → RowBinary encoder against a real ClickHouse server.
//!
//! For tables covering every supported type, rows are encoded with `encode_json_row`, sent as
//! `INSERT ... FORMAT RowBinary` / `RowBinaryWithDefaults` over HTTP, read back with
//! `FORMAT JSONEachRow` and compared value by value, as exact JSON text, with what the server
//! prints. The column types are taken from `system.columns`, so the type parser and its
//! canonical `Display` are checked against the server's spelling too.
//!
//! Server: `SLUICE_TEST_CLICKHOUSE_URL` (default http://127.0.0.1:18123, the dev testbed's;
//! `./dev/testbed up`). The tests wait up to 120 s for it, then fail: a missing server is a
//! failure, not a skip, unless `SLUICE_SKIP_CLICKHOUSE_TESTS=1` is set.

use std::time::{Duration, Instant};

use sluice::chtype::ChType;
use sluice::decode::json::{
    encode_json_row, encode_json_value, ColumnPlan, ColumnSource, MessageMeta, MetaField,
    OnMissing, RowPlan, UnknownFields,
};
use sluice::schema::zero_value;

const DB: &str = "sluice_rowbinary_test";

struct Ch {
    url: String,
    http: reqwest::Client,
}

impl Ch {
    /// Connects (waiting for the server) or returns None when the tests are to be skipped.
    async fn connect() -> Option<Ch> {
        if std::env::var("SLUICE_SKIP_CLICKHOUSE_TESTS").is_ok_and(|v| v == "1") {
            eprintln!("SLUICE_SKIP_CLICKHOUSE_TESTS=1: skipping the ClickHouse round trip");
            return None;
        }
        let url = std::env::var("SLUICE_TEST_CLICKHOUSE_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:18123".into());
        let ch = Ch {
            url: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match ch.try_query("SELECT 1", &[]).await {
                Ok(body) if body.trim() == "1" => break,
                other if Instant::now() > deadline => {
                    panic!("ClickHouse at {} is not answering after 120 s ({other:?}); start it with ./dev/testbed up", ch.url)
                }
                _ => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        }
        ch.query(&format!("CREATE DATABASE IF NOT EXISTS {DB}"))
            .await;
        Some(ch)
    }

    async fn try_query(&self, sql: &str, settings: &[(&str, &str)]) -> Result<String, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}/", self.url), settings)
            .map_err(|e| e.to_string())?;
        let resp = self
            .http
            .post(url)
            .body(sql.to_owned())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("HTTP {status}: {text}"))
        }
    }

    async fn query(&self, sql: &str) -> String {
        self.try_query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("query failed: {sql}\n{e}"))
    }

    /// INSERT `body` (RowBinary rows) synchronously.
    async fn insert(&self, table: &str, cols: &[String], format: &str, body: Vec<u8>) {
        let q = format!(
            "INSERT INTO {DB}.{table} ({}) FORMAT {format}",
            cols.join(", ")
        );
        let url = reqwest::Url::parse_with_params(
            &format!("{}/", self.url),
            &[("query", q.as_str()), ("async_insert", "0")],
        )
        .expect("url");
        let resp = self
            .http
            .post(url)
            .body(body)
            .send()
            .await
            .expect("insert request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "INSERT {format} into {table} failed: HTTP {status}: {text}"
        );
    }

    /// Column names and types as `system.columns` prints them, in table order.
    async fn columns(&self, table: &str) -> Vec<(String, String)> {
        let out = self
            .query(&format!(
                "SELECT name, type FROM system.columns WHERE database = '{DB}' AND table = '{table}' ORDER BY position FORMAT JSONEachRow"
            ))
            .await;
        out.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("system.columns row");
                (
                    v["name"].as_str().unwrap_or_default().to_owned(),
                    v["type"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Rows as lists of (column, exact JSON text of the value), in `ORDER BY` order.
    async fn select(&self, table: &str, order_by: &str) -> Vec<Vec<(String, String)>> {
        let sql = format!("SELECT * FROM {DB}.{table} ORDER BY {order_by} FORMAT JSONEachRow");
        let settings = [
            ("output_format_json_quote_64bit_integers", "0"),
            ("output_format_json_quote_denormals", "1"),
            ("output_format_json_quote_decimals", "0"),
        ];
        let out = self
            .try_query(&sql, &settings)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.lines()
            .map(|line| {
                // sonic-rs's lazy iterator gives each value's raw text: exact, even for
                // 256-bit integers that serde_json would round through f64.
                sonic_rs::to_object_iter(line)
                    .map(|r| {
                        let (k, v) =
                            r.unwrap_or_else(|e| panic!("bad JSONEachRow line {line}: {e}"));
                        (k.to_string(), v.as_raw_str().to_owned())
                    })
                    .collect()
            })
            .collect()
    }
}

fn table_name(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

/// Builds a plan from what the server says the columns are, checking our canonical spelling.
fn plan_from_server(
    cols: &[(String, String)],
    with_defaults: bool,
    on_missing: impl Fn(&str) -> OnMissing,
) -> RowPlan {
    let plan_cols = cols
        .iter()
        .map(|(name, printed)| {
            let ty = ChType::parse(printed)
                .unwrap_or_else(|e| panic!("column {name}: cannot parse server type: {e}"));
            if !printed.starts_with("SimpleAggregateFunction") {
                assert_eq!(
                    &ty.to_string(),
                    printed,
                    "canonical spelling of column {name}"
                );
            }
            ColumnPlan {
                name: name.clone(),
                ty,
                source: ColumnSource::Field(name.clone()),
                on_missing: on_missing(name),
            }
        })
        .collect();
    RowPlan::new(plan_cols, UnknownFields::Error, with_defaults).expect("plan")
}

const META: MessageMeta<'static> = MessageMeta {
    topic: "t",
    partition: 0,
    offset: 0,
    timestamp_ms: None,
    key: None,
    headers: &[],
    value: None,
    op: None,
    source: sluice::decode::json::EventSource::NONE,
};

/// Compares rows, collecting every mismatch before failing.
fn compare(table: &str, got: &[Vec<(String, String)>], want: &[Vec<(&str, &str)>]) {
    let mut problems = Vec::new();
    if got.len() != want.len() {
        problems.push(format!("{} rows back, {} expected", got.len(), want.len()));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        for (col, expected) in w {
            match g.iter().find(|(k, _)| k == col) {
                None => problems.push(format!("row {i} column {col}: missing from output")),
                Some((_, actual)) if actual != expected => problems.push(format!(
                    "row {i} column {col}: got {actual}, expected {expected}"
                )),
                _ => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{table}: {} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// (column, type DDL, [(JSON input, JSON output as the server prints it)] per row)
type Case = (
    &'static str,
    &'static str,
    [(&'static str, &'static str); 2],
);

const CASES: &[Case] = &[
    ("k", "UInt8", [("0", "0"), ("1", "1")]),
    ("u8", "UInt8", [("200", "200"), ("0", "0")]),
    ("u16", "UInt16", [("\"65535\"", "65535"), ("0", "0")]),
    ("u32", "UInt32", [("4294967295", "4294967295"), ("0", "0")]),
    ("u64", "UInt64", [("18446744073709551615", "18446744073709551615"), ("0", "0")]),
    ("u128", "UInt128", [("\"340282366920938463463374607431768211455\"", "340282366920938463463374607431768211455"), ("\"0\"", "0")]),
    (
        "u256",
        "UInt256",
        [
            (
                "115792089237316195423570985008687907853269984665640564039457584007913129639935",
                "115792089237316195423570985008687907853269984665640564039457584007913129639935",
            ),
            ("1", "1"),
        ],
    ),
    ("i8", "Int8", [("-128", "-128"), ("127", "127")]),
    ("i16", "Int16", [("1e3", "1000"), ("-32768", "-32768")]),
    ("i32", "Int32", [("-2147483648", "-2147483648"), ("2147483647", "2147483647")]),
    ("i64", "Int64", [("-9223372036854775808", "-9223372036854775808"), ("9223372036854775807", "9223372036854775807")]),
    (
        "i128",
        "Int128",
        [
            ("-170141183460469231731687303715884105728", "-170141183460469231731687303715884105728"),
            ("170141183460469231731687303715884105727", "170141183460469231731687303715884105727"),
        ],
    ),
    (
        "i256",
        "Int256",
        [
            (
                "-57896044618658097711785492504343953926634992332820282019728792003956564819968",
                "-57896044618658097711785492504343953926634992332820282019728792003956564819968",
            ),
            (
                "\"57896044618658097711785492504343953926634992332820282019728792003956564819967\"",
                "57896044618658097711785492504343953926634992332820282019728792003956564819967",
            ),
        ],
    ),
    ("f32", "Float32", [("0.1", "0.1"), ("\"-inf\"", "\"-inf\"")]),
    ("f64", "Float64", [("-1.5e300", "-1.5e300"), ("\"nan\"", "\"nan\"")]),
    ("b", "Bool", [("true", "true"), ("0", "false")]),
    ("d9", "Decimal(9, 4)", [("12345.6789", "12345.6789"), ("-0.0001", "-0.0001")]),
    ("d18", "Decimal(18, 4)", [("\"-99999999999999.9999\"", "-99999999999999.9999"), ("0", "0")]),
    (
        "d38",
        "Decimal(38, 10)",
        [("1234567890123456789012345678.0123456789", "1234567890123456789012345678.0123456789"), ("\"1e-10\"", "0.0000000001")],
    ),
    (
        "d76",
        "Decimal(76, 20)",
        [
            (
                "\"-12345678901234567890123456789012345678901234567890123456.12345678901234567890\"",
                "-12345678901234567890123456789012345678901234567890123456.1234567890123456789",
            ),
            ("0", "0"),
        ],
    ),
    ("s", "String", [(r#""h\u00e9\n\"q\"""#, r#""hé\n\"q\"""#), ("12.50", "\"12.50\"")]),
    ("obj_s", "String", [(r#"{"nested": [1, 2]}"#, r#""{\"nested\": [1, 2]}""#), ("true", "\"true\"")]),
    ("fs", "FixedString(4)", [("\"ab\"", r#""ab\u0000\u0000""#), ("\"abcd\"", "\"abcd\"")]),
    (
        "uuid",
        "UUID",
        [
            ("\"61f0c404-5cb3-11e7-907b-a6006ad3dba0\"", "\"61f0c404-5cb3-11e7-907b-a6006ad3dba0\""),
            ("\"00000000-0000-0000-0000-000000000001\"", "\"00000000-0000-0000-0000-000000000001\""),
        ],
    ),
    ("ip4", "IPv4", [("\"1.2.3.4\"", "\"1.2.3.4\""), ("167772161", "\"10.0.0.1\"")]),
    ("ip6", "IPv6", [("\"2001:db8::1\"", "\"2001:db8::1\""), ("\"1.2.3.4\"", "\"::ffff:1.2.3.4\"")]),
    ("dt", "Date", [("\"2149-06-06\"", "\"2149-06-06\""), ("0", "\"1970-01-01\"")]),
    ("d32", "Date32", [("\"1900-01-01\"", "\"1900-01-01\""), ("\"2299-12-31\"", "\"2299-12-31\"")]),
    ("ts", "DateTime", [("\"2106-02-07 06:28:15\"", "\"2106-02-07 06:28:15\""), ("0", "\"1970-01-01 00:00:00\"")]),
    (
        "ts_tz",
        "DateTime('Europe/Berlin')",
        // Zone-less text is Berlin time; an explicit offset wins (02:30 on the fall-back
        // night exists twice: +01:00 picks the second one).
        [("\"2023-11-14 23:13:20\"", "\"2023-11-14 23:13:20\""), ("\"2024-10-27 02:30:00+01:00\"", "\"2024-10-27 02:30:00\"")],
    ),
    (
        "ts_utc",
        "DateTime('UTC')",
        [("\"2023-11-14T23:13:20+01:00\"", "\"2023-11-14 22:13:20\""), ("\"1700000000\"", "\"2023-11-14 22:13:20\"")],
    ),
    (
        "ts64",
        "DateTime64(3)",
        [("\"2023-11-14T22:13:20.123Z\"", "\"2023-11-14 22:13:20.123\""), ("\"1900-01-01 00:00:00\"", "\"1900-01-01 00:00:00.000\"")],
    ),
    // The plain UTC form the one-pass writer converts itself (e254e23).
    (
        "ts64_plain",
        "DateTime64(3)",
        [("\"2024-05-01 00:00:00.123\"", "\"2024-05-01 00:00:00.123\""), ("\"2024-02-29T23:59:59.9\"", "\"2024-02-29 23:59:59.900\"")],
    ),
    (
        "ts64_9",
        "DateTime64(9, 'Asia/Kolkata')",
        [
            ("1700000000.123456789", "\"2023-11-15 03:43:20.123456789\""),
            ("\"2262-04-11 23:47:16.854775807Z\"", "\"2262-04-12 05:17:16.854775807\""),
        ],
    ),
    ("e8", "Enum8('a' = 1, 'b\\'c' = -2)", [("\"b'c\"", "\"b'c\""), ("1", "\"a\"")]),
    ("e16", "Enum16('x' = -32768, 'y' = 32767)", [("-32768", "\"x\""), ("\"y\"", "\"y\"")]),
    ("n_i64", "Nullable(Int64)", [("null", "null"), ("-1", "-1")]),
    ("n_s", "Nullable(String)", [("\"x\"", "\"x\""), ("null", "null")]),
    ("lc", "LowCardinality(String)", [("\"eu\"", "\"eu\""), ("\"\"", "\"\"")]),
    ("lcn", "LowCardinality(Nullable(String))", [("null", "null"), ("\"z\"", "\"z\"")]),
    ("arr", "Array(Int8)", [("[1, -1, 127]", "[1,-1,127]"), ("[]", "[]")]),
    (
        "arr_n",
        // ClickHouse forbids Nullable(Map(...)); nest the Nullable inside instead.
        "Array(Map(String, Array(Nullable(Int8))))",
        [
            (r#"[{"k": [1, null, -128], "\u00e9": []}, {}]"#, r#"[{"k":[1,null,-128],"é":[]},{}]"#),
            ("[]", "[]"),
        ],
    ),
    (
        "m",
        "Map(String, UInt64)",
        [(r#"{"a": 1, "b": 18446744073709551615}"#, r#"{"a":1,"b":18446744073709551615}"#), ("{}", "{}")],
    ),
    ("m_int", "Map(UInt16, String)", [(r#"{"12": "x", "65535": "y"}"#, r#"{"12":"x","65535":"y"}"#), ("{}", "{}")]),
    ("t", "Tuple(a UInt8, b String)", [(r#"{"b": "s", "a": 7}"#, r#"{"a":7,"b":"s"}"#), (r#"[255, ""]"#, r#"{"a":255,"b":""}"#)]),
    ("t_un", "Tuple(Int32, Array(String))", [(r#"[-5, ["p", "q"]]"#, r#"[-5,["p","q"]]"#), ("[0, []]", "[0,[]]")]),
    ("sagg", "SimpleAggregateFunction(sum, UInt64)", [("5", "5"), ("0", "0")]),
    ("qb", "QBit(Float32, 4)", [("[1, 2, 3, 4]", "[1,2,3,4]"), ("[0.5, -1, 0, 1e3]", "[0.5,-1,0,1000]")]),
    ("qbb", "QBit(BFloat16, 3)", [("[1.1, 2, 3]", "[1.09375,2,3]"), ("[0, 0, 0]", "[0,0,0]")]),
    ("bf", "BFloat16", [("1.1", "1.09375"), ("65504.7", "65280")]),
    ("bfa", "Array(BFloat16)", [("[3.14159, -2, 0]", "[3.140625,-2,0]"), ("[]", "[]")]),
    ("tm", "Time", [("\"12:34:56\"", "\"12:34:56\""), ("-5", "\"-00:00:05\"")]),
    ("tm_max", "Time", [("\"-999:59:59\"", "\"-999:59:59\""), ("\"999:59:59\"", "\"999:59:59\"")]),
    ("tm3", "Time64(3)", [("\"-01:02:03.456\"", "\"-01:02:03.456\""), ("45296.5", "\"12:34:56.500\"")]),
    ("mpt", "MultiPoint", [("[[1, 2], [3, 4.5]]", "[[1,2],[3,4.5]]"), ("[]", "[]")]),
    ("pt", "Point", [("[1.5, -2]", "[1.5,-2]"), ("[0.25, 1e3]", "[0.25,1000]")]),
    ("ring", "Ring", [("[[0, 0], [1, 0], [1, 1]]", "[[0,0],[1,0],[1,1]]"), ("[]", "[]")]),
    ("line", "LineString", [("[[1, 2], [3, 4.5]]", "[[1,2],[3,4.5]]"), ("[]", "[]")]),
    ("mline", "MultiLineString", [("[[[1, 2]], [[3, 4], [5, 6]]]", "[[[1,2]],[[3,4],[5,6]]]"), ("[]", "[]")]),
    ("poly", "Polygon", [("[[[0, 0], [10, 0], [10, 10]], [[1, 1], [2, 1], [2, 2]]]", "[[[0,0],[10,0],[10,10]],[[1,1],[2,1],[2,2]]]"), ("[]", "[]")]),
    ("mpoly", "MultiPolygon", [("[[[[0, 0], [1, 0], [1, 1]]], []]", "[[[[0,0],[1,0],[1,1]]],[]]"), ("[]", "[]")]),
    (
        "big_arr",
        "Array(UInt8)",
        // 200 elements: the count needs a two-byte varint.
        [("[7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7]",
          "[7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7]"),
         ("[]", "[]")],
    ),
];

/// Creates a table with one column per entry of [`CASES`] (ordered by `k`); returns its name
/// and its columns as the server prints them.
async fn cases_table(ch: &Ch, prefix: &str) -> (String, Vec<(String, String)>) {
    let table = table_name(prefix);
    let ddl: Vec<String> = CASES.iter().map(|(n, t, _)| format!("`{n}` {t}")).collect();
    ch.query(&format!(
        "CREATE TABLE {DB}.{table} ({}) ENGINE = MergeTree ORDER BY k",
        ddl.join(", ")
    ))
    .await;
    let server_cols = ch.columns(&table).await;
    assert_eq!(server_cols.len(), CASES.len());
    (table, server_cols)
}

#[tokio::test]
async fn every_type_round_trips_through_rowbinary() {
    let Some(ch) = Ch::connect().await else {
        return;
    };
    let (table, server_cols) = cases_table(&ch, "rb_types").await;
    let plan = plan_from_server(&server_cols, false, |_| OnMissing::Error);

    let mut body = Vec::new();
    for row in 0..2 {
        let fields: Vec<String> = CASES
            .iter()
            .map(|(n, _, v)| format!("\"{n}\": {}", v[row].0))
            .collect();
        let payload = format!("{{{}}}", fields.join(", "));
        encode_json_row(&plan, payload.as_bytes(), &META, &mut body)
            .unwrap_or_else(|e| panic!("row {row}: {e}"));
    }
    let names: Vec<String> = server_cols.iter().map(|(n, _)| format!("`{n}`")).collect();
    ch.insert(&table, &names, "RowBinary", body).await;

    let got = ch.select(&table, "k").await;
    let want: Vec<Vec<(&str, &str)>> = (0..2)
        .map(|row| CASES.iter().map(|(n, _, v)| (*n, v[row].1)).collect())
        .collect();
    compare(&table, &got, &want);
    ch.query(&format!("DROP TABLE {DB}.{table}")).await;
}

/// Plain RowBinary (what sluice sends to tables without DEFAULT expressions) carries the type
/// defaults of missing fields as bytes sluice writes: for every type, they must store what the
/// server itself stores for a field omitted from JSONEachRow.
#[tokio::test]
async fn type_defaults_written_by_sluice_equal_the_servers() {
    let Some(ch) = Ch::connect().await else {
        return;
    };
    let (table, server_cols) = cases_table(&ch, "zero_types").await;
    let types: std::collections::HashMap<String, ChType> = server_cols
        .iter()
        .map(|(n, t)| (n.clone(), ChType::parse(t).expect("type")))
        .collect();
    let plan = plan_from_server(&server_cols, false, |name| match types.get(name) {
        Some(ty) if name != "k" => OnMissing::Bytes(zero_value(ty)),
        _ => OnMissing::Error,
    });
    let mut body = Vec::new();
    encode_json_row(&plan, br#"{"k": 0}"#, &META, &mut body).expect("row");
    let names: Vec<String> = server_cols.iter().map(|(n, _)| format!("`{n}`")).collect();
    ch.insert(&table, &names, "RowBinary", body).await;
    ch.insert(
        &table,
        &["k".to_string()],
        "JSONEachRow",
        br#"{"k": 1}"#.to_vec(),
    )
    .await;

    let rows = ch.select(&table, "k").await;
    assert_eq!(rows.len(), 2, "{table}");
    let ours: Vec<&(String, String)> = rows[0].iter().filter(|(c, _)| c != "k").collect();
    let servers: Vec<&(String, String)> = rows[1].iter().filter(|(c, _)| c != "k").collect();
    assert_eq!(ours.len(), CASES.len() - 1);
    assert_eq!(
        ours, servers,
        "type defaults: sluice's bytes vs the server's own"
    );
    ch.query(&format!("DROP TABLE {DB}.{table}")).await;
}

#[tokio::test]
async fn row_binary_with_defaults_uses_server_defaults() {
    let Some(ch) = Ch::connect().await else {
        return;
    };
    let table = table_name("rb_defaults");
    ch.query(&format!(
        "CREATE TABLE {DB}.{table} (
            id UInt32,
            s String DEFAULT 'dflt',
            n UInt32 DEFAULT id * 2,
            ts DateTime('UTC') DEFAULT toDateTime('2020-01-02 03:04:05', 'UTC'),
            arr Array(String) DEFAULT ['x', 'y'],
            nn Nullable(Int8),
            bb Int16
        ) ENGINE = MergeTree ORDER BY id"
    ))
    .await;
    let server_cols = ch.columns(&table).await;
    let mut minus_five = Vec::new();
    encode_json_value(&ChType::Int16, b"-5", &mut minus_five).expect("default bytes");
    let plan = plan_from_server(&server_cols, true, |name| match name {
        "id" => OnMissing::Error,
        "nn" => OnMissing::Null,
        "bb" => OnMissing::Bytes(minus_five.clone()),
        _ => OnMissing::ServerDefault,
    });
    let mut body = Vec::new();
    for payload in [
        r#"{"id": 1}"#,
        r#"{"id": 2, "s": "given", "n": 7, "ts": 1700000000, "arr": [], "nn": 3, "bb": 1}"#,
        r#"{"id": 3, "nn": null, "s": ""}"#,
    ] {
        encode_json_row(&plan, payload.as_bytes(), &META, &mut body)
            .unwrap_or_else(|e| panic!("{payload}: {e}"));
    }
    let names: Vec<String> = server_cols.iter().map(|(n, _)| n.clone()).collect();
    ch.insert(&table, &names, "RowBinaryWithDefaults", body)
        .await;
    let got = ch.select(&table, "id").await;
    let want: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("id", "1"),
            ("s", "\"dflt\""),
            ("n", "2"),
            ("ts", "\"2020-01-02 03:04:05\""),
            ("arr", r#"["x","y"]"#),
            ("nn", "null"),
            ("bb", "-5"),
        ],
        vec![
            ("id", "2"),
            ("s", "\"given\""),
            ("n", "7"),
            ("ts", "\"2023-11-14 22:13:20\""),
            ("arr", "[]"),
            ("nn", "3"),
            ("bb", "1"),
        ],
        vec![
            ("id", "3"),
            ("s", "\"\""),
            ("n", "6"),
            ("nn", "null"),
            ("bb", "-5"),
        ],
    ];
    compare(&table, &got, &want);
    ch.query(&format!("DROP TABLE {DB}.{table}")).await;
}

#[tokio::test]
async fn kafka_metadata_columns() {
    let Some(ch) = Ch::connect().await else {
        return;
    };
    let table = table_name("rb_meta");
    ch.query(&format!(
        "CREATE TABLE {DB}.{table} (
            id UInt8,
            topic LowCardinality(String),
            part Int32,
            off UInt64,
            ts DateTime64(3, 'UTC'),
            ts_s Nullable(DateTime('UTC')),
            key Nullable(String),
            key_s String,
            hm Map(String, String),
            ha Array(Tuple(String, Nullable(String))),
            hj String
        ) ENGINE = MergeTree ORDER BY id"
    ))
    .await;
    let ty = |s: &str| ChType::parse(s).expect("type");
    let plan = RowPlan::new(
        vec![
            ColumnPlan::field("id", ty("UInt8")),
            ColumnPlan::meta("topic", ty("LowCardinality(String)"), MetaField::Topic),
            ColumnPlan::meta("part", ty("Int32"), MetaField::Partition),
            ColumnPlan::meta("off", ty("UInt64"), MetaField::Offset),
            ColumnPlan::meta("ts", ty("DateTime64(3, 'UTC')"), MetaField::Timestamp)
                .on_missing(OnMissing::Bytes(0i64.to_le_bytes().to_vec())),
            ColumnPlan::meta(
                "ts_s",
                ty("Nullable(DateTime('UTC'))"),
                MetaField::Timestamp,
            )
            .on_missing(OnMissing::Null),
            ColumnPlan::meta("key", ty("Nullable(String)"), MetaField::Key),
            ColumnPlan::meta("key_s", ty("String"), MetaField::Key),
            ColumnPlan::meta("hm", ty("Map(String, String)"), MetaField::Headers),
            ColumnPlan::meta(
                "ha",
                ty("Array(Tuple(String, Nullable(String)))"),
                MetaField::Headers,
            ),
            ColumnPlan::meta("hj", ty("String"), MetaField::Headers),
        ],
        UnknownFields::Error,
        false,
    )
    .expect("plan");
    let headers: &[(&str, Option<&[u8]>)] = &[("trace", Some(b"abc")), ("empty", None)];
    let m1 = MessageMeta {
        topic: "orders",
        partition: 7,
        offset: 9_000_000_000,
        timestamp_ms: Some(1_700_000_000_123),
        key: Some(b"user-1"),
        headers,
        value: None,
        op: None,
        source: sluice::decode::json::EventSource::NONE,
    };
    let m2 = MessageMeta {
        topic: "orders",
        partition: 0,
        offset: 0,
        timestamp_ms: None,
        key: None,
        headers: &[],
        value: None,
        op: None,
        source: sluice::decode::json::EventSource::NONE,
    };
    let mut body = Vec::new();
    encode_json_row(&plan, br#"{"id": 1}"#, &m1, &mut body).expect("row 1");
    encode_json_row(&plan, br#"{"id": 2}"#, &m2, &mut body).expect("row 2");
    let names: Vec<String> = plan.columns.iter().map(|c| c.name.clone()).collect();
    ch.insert(&table, &names, "RowBinary", body).await;
    let got = ch.select(&table, "id").await;
    let want: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("topic", "\"orders\""),
            ("part", "7"),
            ("off", "9000000000"),
            ("ts", "\"2023-11-14 22:13:20.123\""),
            ("ts_s", "\"2023-11-14 22:13:20\""),
            ("key", "\"user-1\""),
            ("key_s", "\"user-1\""),
            ("hm", r#"{"trace":"abc","empty":""}"#),
            ("ha", r#"[["trace","abc"],["empty",null]]"#),
            ("hj", r#""{\"trace\":\"abc\",\"empty\":null}""#),
        ],
        vec![
            ("part", "0"),
            ("ts", "\"1970-01-01 00:00:00.000\""),
            ("ts_s", "null"),
            ("key", "null"),
            ("key_s", "\"\""),
            ("hm", "{}"),
            ("ha", "[]"),
            ("hj", "\"{}\""),
        ],
    ];
    compare(&table, &got, &want);
    ch.query(&format!("DROP TABLE {DB}.{table}")).await;
}

/// Our bytes for `json` as `ty` must equal what the server itself writes as RowBinary for
/// `CAST(expr AS ty)`: the layout checked at the source, type by type.
async fn compare_with_server_rowbinary(ch: &Ch, cases: &[(&str, &str, &str)]) {
    let mut problems = Vec::new();
    for (ty, expr, json) in cases {
        let t = ChType::parse(ty).expect("type");
        let mut ours = Vec::new();
        encode_json_value(&t, json.as_bytes(), &mut ours)
            .unwrap_or_else(|e| panic!("{ty} {json}: {e}"));
        let url = reqwest::Url::parse(&format!("{}/", ch.url)).expect("url");
        let resp = ch
            .http
            .post(url)
            .body(format!("SELECT CAST({expr} AS {ty}) FORMAT RowBinary"))
            .send()
            .await
            .expect("select");
        assert!(
            resp.status().is_success(),
            "{ty}: {}",
            resp.text().await.unwrap_or_default()
        );
        let theirs = resp.bytes().await.expect("body").to_vec();
        if ours != theirs {
            problems.push(format!(
                "{ty} {json}: ours {ours:02x?} server {theirs:02x?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "RowBinary layout mismatches at {}:\n{}",
        ch.url,
        problems.join("\n")
    );
}

#[tokio::test]
async fn server_rowbinary_output_matches_our_bytes() {
    let Some(ch) = Ch::connect().await else {
        return;
    };
    compare_with_server_rowbinary(
        &ch,
        &[
            (
                "UUID",
                "toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0')",
                "\"61f0c404-5cb3-11e7-907b-a6006ad3dba0\"",
            ),
            ("IPv4", "toIPv4('1.2.3.4')", "\"1.2.3.4\""),
            ("IPv6", "toIPv6('2001:db8::1')", "\"2001:db8::1\""),
            ("Int256", "toInt256('-2')", "-2"),
            (
                "UInt128",
                "toUInt128('340282366920938463463374607431768211455')",
                "340282366920938463463374607431768211455",
            ),
            ("Decimal(76, 2)", "toDecimal256('-1.5', 2)", "-1.5"),
            ("Decimal(9, 2)", "toDecimal32('-1.5', 2)", "-1.5"),
            (
                "DateTime64(3)",
                "toDateTime64('2023-11-14 22:13:20.123', 3, 'UTC')",
                "\"2023-11-14T22:13:20.123Z\"",
            ),
            ("Date32", "toDate32('1900-01-01')", "\"1900-01-01\""),
            (
                "Enum8('a' = 1, 'b' = -2)",
                "CAST('b' AS Enum8('a' = 1, 'b' = -2))",
                "\"b\"",
            ),
            (
                "Map(String, Array(Nullable(UInt8)))",
                "map('k', [1, NULL])",
                r#"{"k": [1, null]}"#,
            ),
            (
                "Tuple(a UInt8, b String)",
                "CAST((1, 'x') AS Tuple(a UInt8, b String))",
                r#"[1, "x"]"#,
            ),
            (
                "LowCardinality(Nullable(String))",
                "toLowCardinality(toNullable('q'))",
                "\"q\"",
            ),
            ("Bool", "true", "true"),
            ("Point", "(1.5, -2)::Point", "[1.5, -2]"),
            (
                "Polygon",
                "[[(0, 0), (10, 0), (10, 10)], [(1, 1), (2, 1), (2, 2)]]::Polygon",
                "[[[0, 0], [10, 0], [10, 10]], [[1, 1], [2, 1], [2, 2]]]",
            ),
            (
                "MultiPolygon",
                "[[[(0, 0), (1, 0), (1, 1)]], []]::MultiPolygon",
                "[[[[0, 0], [1, 0], [1, 1]]], []]",
            ),
            ("FixedString(3)", "toFixedString('ab', 3)", "\"ab\""),
        ],
    )
    .await;
}

/// The same layout facts hold on the legacy 18.16 server (only run when the testbed was
/// started `--with-legacy`, which exports SLUICE_TEST_LEGACY_CLICKHOUSE_URL).
#[tokio::test]
async fn legacy_server_rowbinary_output_matches_our_bytes() {
    let Ok(url) = std::env::var("SLUICE_TEST_LEGACY_CLICKHOUSE_URL") else {
        eprintln!("SLUICE_TEST_LEGACY_CLICKHOUSE_URL not set: skipping the 18.16 layout check");
        return;
    };
    if std::env::var("SLUICE_SKIP_CLICKHOUSE_TESTS").is_ok_and(|v| v == "1") {
        return;
    }
    let ch = Ch {
        url: url.trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
    };
    compare_with_server_rowbinary(
        &ch,
        &[
            (
                "UUID",
                "toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0')",
                "\"61f0c404-5cb3-11e7-907b-a6006ad3dba0\"",
            ),
            ("Decimal(18, 2)", "toDecimal64('-1.5', 2)", "-1.5"),
            ("Decimal(38, 2)", "toDecimal128('-1.5', 2)", "\"-1.5\""),
            (
                "Enum8('a' = 1, 'b' = -2)",
                "CAST('b' AS Enum8('a' = 1, 'b' = -2))",
                "\"b\"",
            ),
            (
                "Array(Nullable(UInt8))",
                "[toNullable(1), NULL]",
                "[1, null]",
            ),
            (
                "DateTime",
                "toDateTime('2023-11-14 22:13:20', 'UTC')",
                "\"2023-11-14T22:13:20Z\"",
            ),
            ("Date", "toDate('2024-02-29')", "\"2024-02-29\""),
            ("Int64", "toInt64(-2)", "-2"),
            ("Float64", "toFloat64(0.1)", "0.1"),
            ("FixedString(3)", "toFixedString('ab', 3)", "\"ab\""),
            ("Nullable(String)", "CAST(NULL AS Nullable(String))", "null"),
        ],
    )
    .await;
}

/// Variant columns: each value lands in the variant ClickHouse's own JSONEachRow puts it in.
/// Every document is inserted twice, by the server parsing it and by sluice's RowBinary, and
/// the two tables must agree on each row's variant and value; a document the server refuses
/// sluice must refuse too.
#[tokio::test]
async fn variant_values_land_where_the_servers_own_parser_puts_them() {
    let Some(ch) = Ch::connect().await else {
        return;
    };
    let columns = "k UInt32, \
        a Variant(String, UInt64, Array(UInt64)), \
        b Variant(Bool, String, Date, IPv4), \
        c Variant(Float64, Array(String), Map(String, String)), \
        d Variant(DateTime64(3, 'UTC'), UUID, String), \
        e Array(Variant(Int64, String)), \
        f Variant(Decimal(10, 2), String, Tuple(x UInt8, y String)), \
        g Geometry";
    let (server, ours) = (table_name("variant_server"), table_name("variant_sluice"));
    for t in [&server, &ours] {
        ch.query(&format!(
            "CREATE TABLE {DB}.{t} ({columns}) ENGINE = MergeTree ORDER BY k"
        ))
        .await;
    }
    let cols = ch.columns(&ours).await;
    // A column a document leaves out takes its type default, as in JSONEachRow.
    let zeros: std::collections::HashMap<String, Vec<u8>> = cols
        .iter()
        .map(|(n, t)| (n.clone(), zero_value(&ChType::parse(t).expect("type"))))
        .collect();
    let plan = plan_from_server(&cols, false, |name| {
        OnMissing::Bytes(zeros.get(name).cloned().unwrap_or_default())
    });
    let names: Vec<String> = cols.iter().map(|(n, _)| n.clone()).collect();
    let values = [
        "42",
        "\"42\"",
        "\"hello\"",
        "[1, 2]",
        "null",
        "true",
        "\"true\"",
        "\"2024-01-01\"",
        "\"10.0.0.1\"",
        "1.5",
        "-7",
        "\"61f0c404-5cb3-11e7-907b-a6006ad3dba0\"",
        "\"2024-05-17 12:34:56.789\"",
        "{\"x\": 1, \"y\": \"z\"}",
        "[\"a\", 3]",
        "12.345",
        "1e3",
        "[[1, 2], [3, 4]]",
        "[[[1, 2], [3, 4]]]",
        "[[[[1, 2]]]]",
        "[]",
    ];
    let mut docs = Vec::new();
    for col in ["a", "b", "c", "d", "f", "g"] {
        for v in values {
            docs.push(format!("{{\"k\":{},\"{col}\":{v}}}", docs.len() + 1));
        }
    }
    docs.push(format!(
        "{{\"k\":{},\"e\":[1, \"1\", \"x\", null, -3]}}",
        docs.len() + 1
    ));
    let mut refused_by_both = 0;
    let mut rounded = Vec::new();
    for doc in docs {
        match check_variant_doc(&ch, (&server, &ours), &plan, &names, &doc).await {
            Verdict::Stored => {}
            Verdict::RefusedByBoth => refused_by_both += 1,
            Verdict::Rounded => rounded.push(doc),
        }
    }
    let q = |t: &str| {
        format!(
            "SELECT k, variantType(a), a, variantType(b), b, variantType(c), c, variantType(d), d, \
             arrayMap(x -> variantType(x), e), e, variantType(f), f, variantType(g), g \
             FROM {DB}.{t} ORDER BY k FORMAT TSV"
        )
    };
    let (want, got) = (ch.query(&q(&server)).await, ch.query(&q(&ours)).await);
    // 12.345 into Variant(Decimal(10, 2), ...): the server stored 12.34, sluice refused it.
    assert_eq!(rounded.len(), 1, "{rounded:?}");
    let rounded_key = rounded[0]
        .split(['{', ',', ':'])
        .nth(2)
        .map(|k| format!("{k}\t"))
        .unwrap_or_default();
    let want: String = want
        .lines()
        .filter(|l| !l.starts_with(&rounded_key))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(got, want, "sluice's variants differ from the server's");
    let stored = want.lines().count();
    assert!(
        stored > 40 && refused_by_both >= 5,
        "{stored} stored, {refused_by_both} refused"
    );
}

/// What became of one document in [`check_variant_doc`].
enum Verdict {
    Stored,
    RefusedByBoth,
    /// The server rounded a number into a Decimal variant; sluice refused it.
    Rounded,
}

/// One document inserted twice: by the server's own JSONEachRow into `server`, and, when both
/// take it, as sluice's RowBinary into `ours`. What each said: the server's error text,
/// sluice's error.
async fn insert_twice(
    ch: &Ch,
    (server, ours): (&str, &str),
    plan: &RowPlan,
    names: &[String],
    doc: &str,
) -> (Result<(), String>, Result<(), String>) {
    let url = reqwest::Url::parse_with_params(
        &format!("{}/", ch.url),
        &[
            (
                "query",
                format!("INSERT INTO {DB}.{server} FORMAT JSONEachRow"),
            ),
            ("async_insert", "0".to_string()),
        ],
    )
    .expect("url");
    let resp = ch
        .http
        .post(url)
        .body(doc.to_string())
        .send()
        .await
        .expect("insert");
    let server_took = resp.status().is_success();
    let server_said = resp.text().await.unwrap_or_default();
    let mut body = Vec::new();
    let ours_took =
        encode_json_row(plan, doc.as_bytes(), &META, &mut body).map_err(|e| e.to_string());
    if server_took && ours_took.is_ok() {
        ch.insert(ours, names, "RowBinary", body).await;
    }
    (
        if server_took {
            Ok(())
        } else {
            Err(server_said)
        },
        ours_took,
    )
}

async fn check_variant_doc(
    ch: &Ch,
    tables: (&str, &str),
    plan: &RowPlan,
    names: &[String],
    doc: &str,
) -> Verdict {
    match insert_twice(ch, tables, plan, names, doc).await {
        (Ok(()), Ok(())) => Verdict::Stored,
        (Err(_), Err(_)) => Verdict::RefusedByBoth,
        // The one difference allowed: ClickHouse rounds a number into a Decimal variant;
        // sluice refuses it rather than round it (or store it as another variant).
        (Ok(()), Err(e)) if e.contains("fractional digits (no rounding)") => Verdict::Rounded,
        (Ok(()), Err(e)) => panic!("{doc}: the server takes it, sluice refuses: {e}"),
        (Err(said), Ok(())) => panic!("{doc}: sluice takes it, the server refuses: {said}"),
    }
}

/// Dynamic columns: each value is sent with the type ClickHouse's own JSONEachRow infers for
/// it. Every document is inserted twice, by the server parsing it and by sluice's RowBinary,
/// and the two tables must agree on each row's type and value. Sluice refuses only the shapes
/// whose inferred type it does not claim to know (arrays of differing arrays or objects,
/// nulls beside arrays, empty objects); everything else the server takes it takes alike.
#[tokio::test]
async fn dynamic_values_get_the_type_the_servers_own_inference_gives() {
    let Some(ch) = Ch::connect().await else {
        return;
    };
    let (server, ours) = (table_name("dynamic_server"), table_name("dynamic_sluice"));
    for t in [&server, &ours] {
        ch.query(&format!(
            "CREATE TABLE {DB}.{t} (k UInt32, d Dynamic) ENGINE = MergeTree ORDER BY k"
        ))
        .await;
    }
    let cols = ch.columns(&ours).await;
    let plan = plan_from_server(&cols, false, |_| OnMissing::Error);
    let names: Vec<String> = cols.iter().map(|(n, _)| n.clone()).collect();
    let values = [
        "42",
        "-7",
        "0",
        "9223372036854775807",
        "-9223372036854775809",
        "18446744073709551615",
        "123456789012345678901234567890",
        "1.5",
        "1e3",
        "-0.0",
        "\"hello\"",
        "\"42\"",
        "true",
        "\"true\"",
        "null",
        "\"2024-01-01\"",
        "\"1970-01-01\"",
        "\"2024-02-30\"",
        "\" 2024-01-01\"",
        "\"2024-05-17 12:34:56\"",
        "\"2024-05-17T12:34:56\"",
        "\"2024-05-17 12:34:56Z\"",
        "\"2024-05-17 12:34:56.789\"",
        "\"2024-05-17 12:34:56.123456789\"",
        "\"12:34:56\"",
        "\"10.0.0.1\"",
        "\"61f0c404-5cb3-11e7-907b-a6006ad3dba0\"",
        "[1, 2]",
        "[1, \"a\"]",
        "[1.5, 2]",
        "[1, 18446744073709551615]",
        "[true, 1]",
        "[]",
        "[null]",
        "[null, 1]",
        "[\"2024-01-01\", \"x\"]",
        "[\"2024-01-01\", \"2024-01-02\"]",
        "[[1], [2, 3]]",
        "[[1], [1.5]]",
        "[[1], [\"a\"]]",
        "[null, [1]]",
        "[{\"a\": 1}, {\"a\": 2}]",
        "{\"a\": 1}",
        "{\"a\": 1, \"b\": \"x\"}",
        "{\"a\": null}",
        "{\"a\": {\"b\": [1, 2]}}",
        "{}",
        "[1.5, 18446744073709551615]",
        "[true, 1.5]",
        "[true, \"x\"]",
        "[\"2024-05-17 12:34:56\", \"x\"]",
        "[\"2024-01-01\", \"2024-05-17 12:34:56\"]",
        "\"2024-05-17T12:34:56.5Z\"",
        "\"2024-05-17 12:34:56+02:00\"",
        "[1, [2]]",
        "{\"a\": [1, \"x\"], \"b\": true}",
    ];
    let mut refused_by_both = 0;
    let mut not_claimed = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let doc = format!("{{\"k\":{},\"d\":{v}}}", i + 1);
        match insert_twice(&ch, (&server, &ours), &plan, &names, &doc).await {
            (Ok(()), Ok(())) => {}
            (Err(_), Err(_)) => refused_by_both += 1,
            (Ok(()), Err(e)) if e.contains("not certain") || e.contains("an empty object") => {
                not_claimed.push(i + 1)
            }
            (Ok(()), Err(e)) => panic!("{doc}: the server takes it, sluice refuses: {e}"),
            (Err(said), Ok(())) => panic!("{doc}: sluice takes it, the server refuses: {said}"),
        }
    }
    let q = |t: &str| format!("SELECT k, dynamicType(d), d FROM {DB}.{t} ORDER BY k FORMAT TSV");
    let (want, got) = (ch.query(&q(&server)).await, ch.query(&q(&ours)).await);
    let want: String = want
        .lines()
        .filter(|l| {
            let k: usize = l
                .split('\t')
                .next()
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            !not_claimed.contains(&k)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(got, want, "sluice's Dynamic types differ from the server's");
    assert!(
        want.lines().count() >= 40 && not_claimed.len() <= 5,
        "{} stored alike, {refused_by_both} refused by both, not claimed: {not_claimed:?}",
        want.lines().count()
    );
}

/// A Nested column kept whole (`flatten_nested = 0`) is the array of tuples it stores: its
/// rows round-trip, and the server's spelling of the type is parsed and printed back.
#[tokio::test]
async fn nested_columns_kept_whole_round_trip() {
    let Some(ch) = Ch::connect().await else {
        return;
    };
    let table = table_name("nested");
    ch.try_query(
        &format!(
            "CREATE TABLE {DB}.{table} (k UInt32, n Nested(a UInt8, `b c` Array(String))) \
             ENGINE = MergeTree ORDER BY k"
        ),
        &[("flatten_nested", "0")],
    )
    .await
    .expect("create");
    let cols = ch.columns(&table).await;
    assert_eq!(cols[1].1, "Nested(a UInt8, `b c` Array(String))");
    let plan = plan_from_server(&cols, false, |_| OnMissing::Error);
    let mut body = Vec::new();
    for doc in [
        r#"{"k":1,"n":[{"a":1,"b c":["x","y"]},{"a":2,"b c":[]}]}"#,
        r#"{"k":2,"n":[[3,["z"]]]}"#,
        r#"{"k":3,"n":[]}"#,
    ] {
        encode_json_row(&plan, doc.as_bytes(), &META, &mut body).expect(doc);
    }
    let names: Vec<String> = cols.iter().map(|(n, _)| n.clone()).collect();
    ch.insert(&table, &names, "RowBinary", body).await;
    let got = ch
        .query(&format!(
            "SELECT k, n FROM {DB}.{table} ORDER BY k FORMAT TSV"
        ))
        .await;
    assert_eq!(got, "1\t[(1,['x','y']),(2,[])]\n2\t[(3,['z'])]\n3\t[]\n");
}
