use super::*;

pub(crate) const META: MessageMeta<'static> = MessageMeta {
    topic: "events",
    partition: 3,
    offset: 42,
    timestamp_ms: Some(1_700_000_000_123),
    key: Some(b"k1"),
    headers: &[],
    value: None,
    op: None,
    source: EventSource::NONE,
};

pub(crate) fn ty(s: &str) -> ChType {
    ChType::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

/// A plan of a change event's row id (an `id_ty` column) and of its `ts_ms`,
/// `source.db` and `source.table` (NULL when the event has none): the Avro and Protobuf
/// envelopes' tests read their events with it.
pub(crate) fn event_source_plan(id_ty: &str) -> RowPlan {
    RowPlan::new(
        vec![
            ColumnPlan::field("id", ty(id_ty)),
            ColumnPlan::meta("ts", ty("Int64"), MetaField::EventTime),
            ColumnPlan::meta("db", ty("String"), MetaField::SourceDb),
            ColumnPlan::meta("tbl", ty("Nullable(String)"), MetaField::SourceTable)
                .on_missing(OnMissing::Bytes(vec![1])),
        ],
        UnknownFields::Ignore,
        false,
    )
    .unwrap()
}

/// What [`event_source_plan`] makes of row id 1 of an event with `ts_ms` 1 from the
/// database "shop", its source naming no table.
pub(crate) fn event_source_row() -> Vec<u8> {
    let mut row = 1u64.to_le_bytes().to_vec();
    row.extend(1i64.to_le_bytes());
    row.push(4);
    row.extend(b"shop");
    row.push(1);
    row
}

/// A plan of field columns, each `(name, type)`.
pub(crate) fn named_plan(cols: &[(&str, &str)], unknown: UnknownFields) -> RowPlan {
    let columns = cols
        .iter()
        .map(|(n, t)| ColumnPlan::field(*n, ty(t)))
        .collect();
    RowPlan::new(columns, unknown, false).unwrap()
}

/// Encodes `{"c": <json>}` into one column `c` of type `t`.
fn one(t: &str, json: &str) -> Result<Vec<u8>, RowError> {
    let plan = RowPlan::new(
        vec![ColumnPlan::field("c", ty(t))],
        UnknownFields::Error,
        false,
    )
    .unwrap();
    let mut out = Vec::new();
    let payload = format!("{{\"c\": {json}}}");
    encode_json_row(&plan, payload.as_bytes(), &META, &mut out).map(|_| out)
}

/// `unknown_fields = "add"`: the first field without a column names the column to add,
/// typed by its value; fields that tell no type, and names of columns that read no
/// field, are ignored; a message with no new field encodes as with "ignore".
#[test]
fn a_new_field_names_the_column_to_add_and_its_type() {
    let mut plan = named_plan(&[("id", "UInt64")], UnknownFields::Add);
    plan.set_other_columns(&["computed".to_string()]);
    let new = |json: &str| {
        let mut out = vec![7];
        let r = encode_json_row(&plan, json.as_bytes(), &META, &mut out);
        // A message stopped at a new field leaves nothing behind.
        assert!(r.is_ok() || out == [7], "{json}");
        match r {
            Ok(()) => None,
            Err(RowError::NewFields { fields }) => Some(
                fields
                    .into_iter()
                    .map(|c| (c.name, c.column_type))
                    .collect::<Vec<_>>(),
            ),
            Err(e) => panic!("{json}: {e}"),
        }
    };
    let some = |f: &str, t: &str| Some(vec![(f.to_string(), t.to_string())]);
    for (json, added) in [
        (r#"{"id":1,"n":5}"#, some("n", "Nullable(Int64)")),
        (r#"{"n":-5e3,"id":1}"#, some("n", "Nullable(Float64)")),
        (r#"{"id":1,"s":"x"}"#, some("s", "Nullable(String)")),
        (
            r#"{"id":1,"s\"q\u00e9":"x"}"#,
            some("s\"qé", "Nullable(String)"),
        ),
        (r#"{"id":1,"b":false}"#, some("b", "Nullable(Bool)")),
        (r#"{"id":1,"o":{"a":[1]}}"#, some("o", "Nullable(String)")),
        (
            r#"{"id":1,"a":[null,1,2]}"#,
            some("a", "Array(Nullable(Int64))"),
        ),
        (
            r#"{"id":1,"a":[1,2.5]}"#,
            some("a", "Array(Nullable(Float64))"),
        ),
        (r#"{"id":1,"a":[true]}"#, some("a", "Array(Nullable(Bool))")),
        (
            r#"{"id":1,"a":[1,"x"]}"#,
            some("a", "Array(Nullable(String))"),
        ),
        (
            r#"{"id":1,"a":[[1],{"b":2}]}"#,
            some("a", "Array(Nullable(String))"),
        ),
        (
            r#"{"id":1,"z":null,"a":[],"e":[null],"n":1}"#,
            some("n", "Nullable(Int64)"),
        ),
        (
            r#"{"n":1,"id":1,"s":"x","n":2}"#,
            Some(vec![
                ("n".to_string(), "Nullable(Int64)".to_string()),
                ("s".to_string(), "Nullable(String)".to_string()),
            ]),
        ),
        (r#"{"id":1,"z":null,"a":[],"computed":5}"#, None),
        (r#"{"id":1}"#, None),
    ] {
        assert_eq!(new(json), added, "{json}");
    }
    let mut out = Vec::new();
    let e = encode_json_row(&plan, br#"{"id":1,"":2}"#, &META, &mut out).unwrap_err();
    assert!(matches!(e, RowError::UnknownField { .. }), "{e}");
    // The row without new fields is the row "ignore" writes.
    let lax = named_plan(&[("id", "UInt64")], UnknownFields::Ignore);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let row = br#"{"id":3,"z":null,"computed":1}"#;
    encode_json_row(&plan, row, &META, &mut a).unwrap();
    encode_json_row(&lax, row, &META, &mut b).unwrap();
    assert_eq!((a.clone(), a), (b, 3u64.to_le_bytes().to_vec()));
}

#[track_caller]
fn ok(t: &str, json: &str) -> Vec<u8> {
    one(t, json).unwrap_or_else(|e| panic!("{t} <- {json}: {e}"))
}

#[track_caller]
fn err(t: &str, json: &str) -> String {
    match one(t, json) {
        Ok(b) => panic!("{t} <- {json}: expected an error, got {b:?}"),
        Err(e) => e.to_string(),
    }
}

fn le<const N: usize>(b: [u8; N]) -> Vec<u8> {
    b.to_vec()
}

/// A change event's `ts_ms`, `source.ts_ms`, `source.db` and `source.table` fill their
/// metadata columns (milliseconds as a Kafka timestamp is, strings unescaped); an event
/// that does not say leaves the column to its missing value.
#[test]
fn debezium_events_carry_their_source_and_times() {
    let plan = RowPlan::new(
        vec![
            ColumnPlan::field("id", ty("UInt64")),
            ColumnPlan::meta("ts", ty("DateTime64(3, 'UTC')"), MetaField::EventTime)
                .on_missing(OnMissing::Bytes(0i64.to_le_bytes().to_vec())),
            ColumnPlan::meta("src_ts", ty("Int64"), MetaField::SourceTime)
                .on_missing(OnMissing::Bytes(0i64.to_le_bytes().to_vec())),
            ColumnPlan::meta("db", ty("String"), MetaField::SourceDb)
                .on_missing(OnMissing::Bytes(vec![0])),
            ColumnPlan::meta("tbl", ty("Nullable(String)"), MetaField::SourceTable)
                .on_missing(OnMissing::Bytes(vec![1])),
        ],
        UnknownFields::Error,
        false,
    )
    .unwrap();
    let row = |payload: &str| {
        let (op, r, source) = debezium_row(payload.as_bytes()).unwrap();
        let mut out = Vec::new();
        let meta = MessageMeta {
            op: Some(op),
            source,
            ..META
        };
        encode_json_row(&plan, r, &meta, &mut out).map(|()| out)
    };
    let mut want = 7u64.to_le_bytes().to_vec();
    want.extend(1_700_000_000_123i64.to_le_bytes());
    want.extend(1_700_000_000_100i64.to_le_bytes());
    want.extend([4]);
    want.extend(b"shop");
    want.extend([0, 7]);
    want.extend(b"or\"ders");
    assert_eq!(
        row(
            r#"{"op":"c","after":{"id":7},"ts_ms":1700000000123,"source":{"db":"shop","table":"or\"ders","ts_ms":1700000000100,"lsn":5}}"#
        ),
        Ok(want)
    );
    // Wrapped in the JSON converter's envelope: the same.
    let wrapped = row(
        r#"{"schema":{},"payload":{"op":"c","after":{"id":7},"ts_ms":1700000000123,"source":{"db":"shop","table":"or\"ders","ts_ms":1700000000100}}}"#,
    );
    assert_eq!(wrapped.map(|r| r.len()), Ok(8 + 8 + 8 + 5 + 9));
    // Without source and time: the columns' missing values (type defaults, NULL).
    let mut want = 7u64.to_le_bytes().to_vec();
    want.extend(0i64.to_le_bytes());
    want.extend(0i64.to_le_bytes());
    want.extend([0, 1]);
    assert_eq!(
        row(r#"{"op":"r","after":{"id":7},"source":null}"#),
        Ok(want)
    );
    // A column that must have one says which the event lacks.
    let strict = RowPlan::new(
        vec![
            ColumnPlan::field("id", ty("UInt64")),
            ColumnPlan::meta("src_ts", ty("Int64"), MetaField::SourceTime),
        ],
        UnknownFields::Error,
        false,
    )
    .unwrap();
    let (op, r, source) = debezium_row(br#"{"op":"c","after":{"id":1}}"#).unwrap();
    let meta = MessageMeta {
        op: Some(op),
        source,
        ..META
    };
    let e = encode_json_row(&strict, r, &meta, &mut Vec::new()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("missing change event source.ts_ms for column src_ts Int64"),
        "{e}"
    );
}

/// Debezium change events: the row is `after` (c, r, u) or `before` (d), bare or inside
/// the JSON converter's schema wrapper, and its op and delete flag fill their columns;
/// events without a row are errors naming what is missing.
#[test]
fn debezium_events_give_their_row_and_operation() {
    let row = |p: &str| {
        debezium_row(p.as_bytes())
            .map(|(op, r, _)| (op as char, String::from_utf8_lossy(r).into_owned()))
    };
    assert_eq!(
        row(r#"{"before":null,"after":{"id":1},"op":"c","ts_ms":1}"#),
        Ok(('c', r#"{"id":1}"#.into()))
    );
    assert_eq!(
        row(r#" {"op":"u","before":{"id":1,"v":"a"},"after":{"id":1,"v":"b"}} "#),
        Ok(('u', r#"{"id":1,"v":"b"}"#.into()))
    );
    assert_eq!(
        row(r#"{"op":"d","before":{"id":2},"after":null}"#),
        Ok(('d', r#"{"id":2}"#.into()))
    );
    assert_eq!(
        row(r#"{"schema":{"type":"struct"},"payload":{"op":"r","after":{"id":3},"before":null}}"#),
        Ok(('r', r#"{"id":3}"#.into()))
    );
    for (p, says) in [
        (r#"{"op":"t","before":null,"after":null}"#, "truncate"),
        (r#"{"op":"m"}"#, "message"),
        (r#"{"op":"x","after":{}}"#, "is not c, r, u or d"),
        (
            r#"{"op":"d","before":null}"#,
            "without its \"before\" object",
        ),
        (r#"{"op":"c","after":[1]}"#, "without its \"after\" object"),
        (r#"{"id":1}"#, "no \"op\" field"),
        (
            r#"{"schema":{},"payload":7}"#,
            "\"payload\" is not an object",
        ),
        (r#"{"op":"c","after":{}} x"#, "trailing"),
        (r#"{"op":"c","after":{"#, "malformed"),
    ] {
        let e = row(p).unwrap_err().to_string();
        assert!(e.contains(says), "{p}: {e}");
    }
    assert!(matches!(
        debezium_row(b"[1]"),
        Err(RowError::NotAnObject { .. })
    ));

    let plan = RowPlan::new(
        vec![
            ColumnPlan::field("id", ty("UInt64")),
            ColumnPlan::meta("op", ty("LowCardinality(String)"), MetaField::Op),
            ColumnPlan::meta("del", ty("UInt8"), MetaField::Deleted),
            ColumnPlan::meta("del_b", ty("Bool"), MetaField::Deleted),
            ColumnPlan::meta("del_s", ty("String"), MetaField::Deleted),
        ],
        UnknownFields::Error,
        false,
    )
    .unwrap();
    let encode = |payload: &str| {
        let (op, r, source) = debezium_row(payload.as_bytes()).unwrap();
        let mut out = Vec::new();
        encode_json_row(
            &plan,
            r,
            &MessageMeta {
                op: Some(op),
                source,
                ..META
            },
            &mut out,
        )
        .unwrap();
        out
    };
    let mut want = 2u64.to_le_bytes().to_vec();
    want.extend([1, b'd', 1, 1, 4]);
    want.extend(b"true");
    assert_eq!(encode(r#"{"op":"d","before":{"id":2},"after":null}"#), want);
    let mut want = 2u64.to_le_bytes().to_vec();
    want.extend([1, b'u', 0, 0, 5]);
    want.extend(b"false");
    assert_eq!(encode(r#"{"op":"u","before":null,"after":{"id":2}}"#), want);
    assert!(!meta_type_ok(MetaField::Deleted, &ty("Date")));
    assert!(!meta_type_ok(MetaField::Op, &ty("UInt8")));
}

/// `date_time_formats`: each column's values are what the default text gives for the
/// same instant, through the one-pass JSON writer, the typed fields of Avro and Protobuf
/// and CSV's text alike; errors name the value and the format; a format on a column that
/// is no date-time, or no column, refuses the plan.
#[test]
fn date_time_formats_read_epoch_units_and_patterns() {
    let cols = [
        ("ms", "DateTime64(3)"),
        ("us", "Nullable(DateTime64(6, 'UTC'))"),
        ("s", "DateTime"),
        ("p", "DateTime64(3, 'Europe/Berlin')"),
        ("d", "Date32"),
        ("n", "UInt64"),
    ];
    let formats: std::collections::BTreeMap<String, TimeFormat> = [
        ("ms", "epoch_millis"),
        ("us", "epoch_micros"),
        ("s", "epoch_millis"),
        ("p", "%d/%m/%Y %H:%M:%S%.f"),
        ("d", "%d.%m.%Y"),
    ]
    .into_iter()
    .map(|(c, f)| (c.to_string(), TimeFormat::parse(f).unwrap()))
    .collect();
    let mut plan = named_plan(&cols, UnknownFields::Error);
    plan.set_time_formats(&formats).unwrap();
    let plain = named_plan(&cols, UnknownFields::Error);
    let row = |plan: &RowPlan, json: &str| {
        let mut out = Vec::new();
        encode_json_row(plan, json.as_bytes(), &META, &mut out).map(|_| out)
    };
    let want = row(
            &plain,
            r#"{"ms":"2023-11-14 22:13:20.123","us":"2023-11-14 22:13:20.123456","s":"2023-11-14 22:13:20","p":"2026-12-05 10:15:30.25","d":"2026-12-05","n":7}"#,
        )
        .unwrap();
    for got in [
        r#"{"ms":1700000000123,"us":1700000000123456,"s":1700000000000,"p":"05/12/2026 10:15:30.25","d":"05.12.2026","n":7}"#,
        r#"{"ms":"1700000000123","us":"1700000000123456","s":"1700000000000","p":"05/12/2026 10:15:30.250","d":"05.12.2026","n":7}"#,
        // Out of column order: the two-pass path.
        r#"{"n":7,"d":"05.12.2026","p":"05/12/2026 10:15:30.25","s":1700000000000,"us":1700000000123456,"ms":1700000000123}"#,
    ] {
        assert_eq!(row(&plan, got).unwrap(), want, "{got}");
    }
    // Date-time text still reads as text under an epoch format; NULL stays NULL.
    let text = row(&plan, r#"{"ms":"2023-11-14 22:13:20.123","us":null,"s":0,"p":"01/01/2000 00:00:00","d":"01.01.2000","n":1}"#).unwrap();
    assert_eq!(&text[..8], &want[..8]);
    assert_eq!(text[8], rb::NULL);
    // Typed fields (Avro, Protobuf): a long counts the unit, as a JSON integer does.
    let fields = [
        Some(FieldValue {
            start: 0,
            end: 0,
            kind: FieldKind::Integer(1_700_000_000_123),
        }),
        Some(FieldValue {
            start: 0,
            end: 0,
            kind: FieldKind::Integer(1_700_000_000_123_456),
        }),
        Some(FieldValue {
            start: 0,
            end: 0,
            kind: FieldKind::Integer(1_700_000_000_000),
        }),
    ];
    let mut out = Vec::new();
    let mut tmp = Vec::new();
    let mut typed = Vec::new();
    let _ = write_fields_row(&plan, b"", &fields, &META, &mut tmp, &mut typed, &mut out);
    assert_eq!(&out[..8 + 9 + 4], &want[..8 + 9 + 4]);

    let e = row(
        &plan,
        r#"{"ms":1,"us":1,"s":1700000000123,"p":"x","d":"05.12.2026","n":7}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("column s DateTime") && e.contains("fractional"),
        "{e}"
    );
    let e = row(
        &plan,
        r#"{"ms":1,"us":1,"s":0,"p":"2026-12-05","d":"05.12.2026","n":7}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("does not match the date-time format \"%d/%m/%Y %H:%M:%S%.f\""),
        "{e}"
    );
    let e = row(&plan, r#"{"ms":1.7e12,"us":1,"s":0,"p":"x","d":"x","n":7}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exponent"), "{e}");

    for (column, why) in [("n", "not a Date"), ("none", "does not have")] {
        let mut p = named_plan(&cols, UnknownFields::Error);
        let one: std::collections::BTreeMap<String, TimeFormat> = [(
            column.to_string(),
            TimeFormat::parse("epoch_millis").unwrap(),
        )]
        .into();
        let e = p.set_time_formats(&one).unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
}

/// A typed value (a double, a timestamp's ticks) handed over by Avro or Protobuf gives
/// the same bytes, or the same error, as the text it stands for, in every column type
/// (those it is written into directly, and those that read its text), with and without
/// the DEFAULT marker.
#[test]
fn typed_values_convert_exactly_as_their_text_does() {
    let columns = [
        "Float64",
        "Nullable(Float64)",
        "LowCardinality(Nullable(Float64))",
        "Float32",
        "Decimal(18, 4)",
        "Int64",
        "UInt8",
        "Bool",
        "String",
        "DateTime64(3)",
        "DateTime64(9, 'UTC')",
        "DateTime64(0, 'Asia/Tokyo')",
        "Nullable(DateTime64(6))",
        "DateTime",
        "Date32",
        "Int8",
        "UInt16",
        "Nullable(Int32)",
        "UInt32",
        "UInt64",
        "Int128",
        "UInt256",
        "Date",
        "Enum8('a' = 1, 'b' = -128)",
        "Decimal(18, 4)",
        "Decimal(9, 2)",
        "Decimal(4, 4)",
        "Nullable(Decimal(18, 0))",
        "Decimal(38, 10)",
    ];
    let integers = [
        0i64,
        1,
        -1,
        127,
        128,
        -128,
        -129,
        255,
        65_535,
        65_536,
        i64::from(i32::MAX),
        i64::from(i32::MIN),
        i64::from(u32::MAX),
        1_700_000_000_123,
        i64::MAX,
        i64::MIN,
    ];
    let doubles = [
        0.0,
        -0.0,
        1.5,
        0.1,
        f64::from(0.1f32),
        123_456_789.0,
        1e300,
        -2.5e-300,
        5e-324,
        f64::MAX,
        1_700_000_000.123,
        f64::NAN,
        // A NaN with a payload: its text is "nan", which reads as the plain NaN.
        f64::from_bits(0x7ff8_0000_0000_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let scaled: [(i64, u8); 24] = [
        // Decimals: scales below, at and above the columns', trailing zeros, at the
        // precision's edge, scales past what an i64 or i128 power holds.
        (15_000, 4),
        (-12_345_678, 4),
        (99_999_999_999_999_999, 4),
        (999_999_999, 2),
        (1_000_000_000, 2),
        (9_999, 4),
        (12, 0),
        (5, 20),
        (0, 40),
        (1_000_000_000_000_000_000, 30),
        (0, 3),
        (1_700_000_000_123, 3),
        (-1, 3),
        (1_700_000_000_123_456, 6),
        (1_700_000_000_123_456_789, 9),
        (1_700_000_000_000_000_000, 9),
        (i64::MAX, 9),
        (i64::MIN, 3),
        (-2_208_988_800_000, 3),
        (-2_208_988_800_001, 3),
        (10_413_792_000_000, 3),
        (10_413_791_999_999, 3),
        (1_700_000_000, 0),
        (7, 6),
    ];
    let mut typed: Vec<FieldKind> = doubles
        .iter()
        .map(|d| FieldKind::Double(d.to_bits()))
        .collect();
    typed.extend(integers.iter().map(|&x| FieldKind::Integer(x)));
    typed.extend(
        scaled
            .iter()
            .map(|&(value, scale)| FieldKind::Scaled { value, scale }),
    );
    let mut direct = 0;
    for t in columns {
        for with_defaults in [false, true] {
            let plan = RowPlan::new(
                vec![ColumnPlan::field("c", ty(t))],
                UnknownFields::Ignore,
                with_defaults,
            )
            .unwrap();
            for &kind in &typed {
                let mut text = Vec::new();
                let text_kind = match kind {
                    FieldKind::Integer(x) => {
                        text.extend_from_slice(x.to_string().as_bytes());
                        FieldKind::Int
                    }
                    FieldKind::Double(bits) => {
                        super::super::jsontext::write_float(f64::from_bits(bits), &mut text)
                    }
                    FieldKind::Scaled { value, scale } => super::super::jsontext::write_scaled(
                        i128::from(value),
                        u32::from(scale),
                        &mut text,
                    ),
                    _ => unreachable!(),
                };
                let run = |buf: &[u8], v: FieldValue| {
                    let mut out = vec![0xaa];
                    encode_fields_row(&plan, buf, &[Some(v)], &META, &mut out)
                        .map(|()| out)
                        .map_err(|e| e.to_string())
                };
                let from_text = run(
                    &text,
                    FieldValue {
                        start: 0,
                        end: text.len(),
                        kind: text_kind,
                    },
                );
                let from_typed = run(
                    b"",
                    FieldValue {
                        start: 0,
                        end: 0,
                        kind,
                    },
                );
                assert_eq!(
                    from_typed,
                    from_text,
                    "{t} <- {kind:?} ({})",
                    String::from_utf8_lossy(&text)
                );
                let mut probe = Vec::new();
                if write_typed(&ty(t), kind, &mut probe) {
                    direct += 1;
                }
            }
        }
    }
    // Both ways were exercised: written directly, and read from the text.
    assert!(direct > 100, "{direct} written directly");
}

#[test]
fn integers_edges() {
    assert_eq!(ok("UInt8", "0"), [0]);
    assert_eq!(ok("UInt8", "255"), [255]);
    assert_eq!(
        err("UInt8", "256"),
        "field \"c\" -> column c UInt8: 256 out of range 0..=255"
    );
    assert_eq!(
        err("UInt8", "-1"),
        "field \"c\" -> column c UInt8: -1 out of range 0..=255"
    );
    assert_eq!(ok("Int8", "-128"), [0x80]);
    assert_eq!(ok("Int8", "127"), [127]);
    assert_eq!(
        err("Int8", "300"),
        "field \"c\" -> column c Int8: 300 out of range -128..=127"
    );
    assert!(err("Int8", "-129").contains("out of range -128..=127"));
    assert_eq!(ok("UInt16", "65535"), le(65535u16.to_le_bytes()));
    assert!(err("UInt16", "65536").contains("out of range"));
    assert_eq!(ok("Int16", "-32768"), le((-32768i16).to_le_bytes()));
    assert!(err("Int16", "32768").contains("out of range"));
    assert_eq!(ok("UInt32", "4294967295"), le(u32::MAX.to_le_bytes()));
    assert!(err("UInt32", "4294967296").contains("out of range"));
    assert_eq!(ok("Int32", "-2147483648"), le(i32::MIN.to_le_bytes()));
    assert!(err("Int32", "2147483648").contains("out of range"));
    assert_eq!(
        ok("UInt64", "18446744073709551615"),
        le(u64::MAX.to_le_bytes())
    );
    assert!(err("UInt64", "18446744073709551616").contains("out of range 0..=18446744073709551615"));
    assert_eq!(
        ok("Int64", "-9223372036854775808"),
        le(i64::MIN.to_le_bytes())
    );
    assert_eq!(
        ok("Int64", "9223372036854775807"),
        le(i64::MAX.to_le_bytes())
    );
    assert!(err("Int64", "9223372036854775808").contains("out of range"));
    assert!(err("Int64", "-9223372036854775809").contains("out of range"));
    assert_eq!(
        ok("UInt128", "340282366920938463463374607431768211455"),
        le(u128::MAX.to_le_bytes())
    );
    assert!(err("UInt128", "340282366920938463463374607431768211456").contains("out of range"));
    assert_eq!(
        ok("Int128", "-170141183460469231731687303715884105728"),
        le(i128::MIN.to_le_bytes())
    );
    assert_eq!(
        ok("Int128", "170141183460469231731687303715884105727"),
        le(i128::MAX.to_le_bytes())
    );
    assert!(err("Int128", "170141183460469231731687303715884105728").contains("out of range"));
    assert!(err("Int128", "-170141183460469231731687303715884105729").contains("out of range"));
    let umax = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
    assert_eq!(ok("UInt256", umax), vec![0xff; 32]);
    assert!(err(
        "UInt256",
        "115792089237316195423570985008687907853269984665640564039457584007913129639936"
    )
    .contains("out of range"));
    assert!(err("UInt256", "-1").contains("out of range"));
    let imax = "57896044618658097711785492504343953926634992332820282019728792003956564819967";
    let imin = "-57896044618658097711785492504343953926634992332820282019728792003956564819968";
    let mut want = vec![0xff; 32];
    want[31] = 0x7f;
    assert_eq!(ok("Int256", imax), want);
    let mut want = vec![0; 32];
    want[31] = 0x80;
    assert_eq!(ok("Int256", imin), want);
    assert_eq!(ok("Int256", "-1"), vec![0xff; 32]);
    assert!(err(
        "Int256",
        "57896044618658097711785492504343953926634992332820282019728792003956564819968"
    )
    .contains("out of range"));
    assert!(err(
        "Int256",
        "-57896044618658097711785492504343953926634992332820282019728792003956564819969"
    )
    .contains("out of range"));
}

#[test]
fn integers_exact_forms() {
    assert_eq!(ok("Int32", "\"123\""), le(123i32.to_le_bytes()));
    assert_eq!(ok("Int32", "\"-123\""), le((-123i32).to_le_bytes()));
    assert_eq!(ok("Int32", "1e3"), le(1000i32.to_le_bytes()));
    assert_eq!(ok("Int32", "5.0"), le(5i32.to_le_bytes()));
    assert_eq!(ok("Int32", "-0"), le(0i32.to_le_bytes()));
    assert_eq!(ok("UInt8", "-0.0"), [0]);
    assert_eq!(ok("Int32", "1.5e1"), le(15i32.to_le_bytes()));
    assert_eq!(ok("UInt64", "0e999999999999999"), le(0u64.to_le_bytes()));
    assert_eq!(
        err("Int32", "5.5"),
        "field \"c\" -> column c Int32: 5.5 is not an integer (it has a fractional part)"
    );
    assert!(err("Int32", "1e-400").contains("fractional part"));
    assert!(err("Int32", "1e400").contains("out of range"));
    assert!(err("Int32", "1e99999999999999999999").contains("out of range"));
    assert!(err("Int32", "\"abc\"").contains("\"abc\" is not an integer"));
    assert!(err("Int32", "\"\"").contains("is not an integer"));
    assert!(err("Int32", "\"1 \"").contains("is not an integer"));
    assert!(err("Int32", "true").contains("expected an integer, found a boolean true"));
    assert!(err("UInt16", "false").contains("expected an integer, found a boolean false"));
    assert_eq!(ok("UInt8", "true"), vec![1]);
    assert_eq!(ok("UInt8", "false"), vec![0]);
    assert_eq!(ok("Nullable(UInt8)", "true"), vec![0, 1]);
    assert!(err("Int32", "[1]").contains("expected an integer, found an array"));
    assert_eq!(
        err("Int32", "null"),
        "field \"c\" -> column c Int32: null for non-Nullable column"
    );
    // Beyond 64 bits through the slow path, still exact.
    assert_eq!(
        ok("UInt64", "18446744073709551615.000"),
        le(u64::MAX.to_le_bytes())
    );
    assert_eq!(ok("Int128", "1e38"), le(10i128.pow(38).to_le_bytes()));
}

#[test]
fn booleans() {
    assert_eq!(ok("Bool", "true"), [1]);
    assert_eq!(ok("Bool", "false"), [0]);
    assert_eq!(ok("Bool", "1"), [1]);
    assert_eq!(ok("Bool", "0"), [0]);
    assert_eq!(ok("Bool", "\"true\""), [1]);
    assert!(err("Bool", "2").contains("only 0 and 1"));
    assert!(err("Bool", "\"yes\"").contains("not a boolean"));
}

#[test]
fn floats() {
    assert_eq!(ok("Float64", "1.5"), le(1.5f64.to_le_bytes()));
    assert_eq!(ok("Float64", "-0.0"), le((-0.0f64).to_le_bytes()));
    assert_eq!(ok("Float64", "1e308"), le(1e308f64.to_le_bytes()));
    assert_eq!(ok("Float64", "0.1"), le(0.1f64.to_le_bytes()));
    assert_eq!(ok("Float64", "\"2.5\""), le(2.5f64.to_le_bytes()));
    assert_eq!(
        ok("Float64", "12345678901234567890"),
        le(12345678901234567890f64.to_le_bytes())
    );
    assert!(err("Float64", "1e309").contains("1e309 is out of Float64 range"));
    assert_eq!(ok("Float64", "\"inf\""), le(f64::INFINITY.to_le_bytes()));
    assert_eq!(
        ok("Float64", "\"-Infinity\""),
        le(f64::NEG_INFINITY.to_le_bytes())
    );
    assert!(f64::from_le_bytes(ok("Float64", "\"nan\"").try_into().unwrap()).is_nan());
    assert_eq!(ok("Float32", "0.1"), le(0.1f32.to_le_bytes()));
    assert_eq!(ok("Float32", "3.4e38"), le(3.4e38f32.to_le_bytes()));
    assert!(err("Float32", "1e39").contains("out of Float32 range"));
    assert!(err("Float32", "\"x1\"").contains("is not a number"));
    assert!(err("Float32", "{}").contains("expected a number"));
}

#[test]
fn decimals() {
    let d = |t: &str, j: &str| ok(t, j);
    assert_eq!(d("Decimal(10, 2)", "12.34"), le(1234i64.to_le_bytes()));
    assert_eq!(d("Decimal(10, 2)", "\"12.34\""), le(1234i64.to_le_bytes()));
    assert_eq!(d("Decimal(10, 2)", "12.340"), le(1234i64.to_le_bytes()));
    assert_eq!(d("Decimal(10, 2)", "-0.01"), le((-1i64).to_le_bytes()));
    assert_eq!(d("Decimal(10, 2)", "1e2"), le(10000i64.to_le_bytes()));
    assert_eq!(d("Decimal(10, 2)", "1.5e-1"), le(15i64.to_le_bytes()));
    assert_eq!(
        d("Decimal(10, 2)", "99999999.99"),
        le(9999999999i64.to_le_bytes())
    );
    assert_eq!(d("Decimal(10, 2)", "12"), le(1200i64.to_le_bytes()));
    assert_eq!(
            err("Decimal(10, 2)", "12.345"),
            "field \"c\" -> column c Decimal(10, 2): 12.345 has more than 2 fractional digits (no rounding)"
        );
    assert_eq!(
            err("Decimal(10, 2)", "999999999.99"),
            "field \"c\" -> column c Decimal(10, 2): 999999999.99 out of range: more than 8 digits before the decimal point"
        );
    assert_eq!(d("Decimal(9, 0)", "-5"), le((-5i32).to_le_bytes()));
    assert_eq!(
        d("Decimal(9, 9)", "0.999999999"),
        le(999999999i32.to_le_bytes())
    );
    assert!(err("Decimal(9, 9)", "1").contains("out of range"));
    assert_eq!(
        d("Decimal(38, 10)", "1234567890123456789012345678.0123456789"),
        le(12345678901234567890123456780123456789i128.to_le_bytes())
    );
    let n76 = "9".repeat(76);
    let mut want = U256::ZERO;
    for _ in 0..76 {
        want = want.checked_mul10_add(9).unwrap();
    }
    assert_eq!(d("Decimal(76, 0)", &n76), want.to_le_bytes().to_vec());
    assert_eq!(
        d("Decimal(76, 0)", &format!("-{n76}")),
        want.wrapping_neg().to_le_bytes().to_vec()
    );
    assert!(err("Decimal(76, 0)", &format!("{n76}9")).contains("out of range"));
    // 0.1 at scale 76 is 10^75.
    let mut p75 = U256::from_u128(1);
    for _ in 0..75 {
        p75 = p75.checked_mul10_add(0).unwrap();
    }
    assert_eq!(d("Decimal(76, 76)", "0.1"), p75.to_le_bytes().to_vec());
    assert!(err("Decimal(10, 2)", "\"1,5\"").contains("is not a decimal number"));
    assert!(err("Decimal(10, 2)", "true").contains("expected a decimal"));
}

#[test]
fn strings() {
    assert_eq!(ok("String", "\"abc\""), b"\x03abc");
    assert_eq!(ok("String", r#""a\u00e9\n""#), b"\x04a\xc3\xa9\n");
    assert_eq!(ok("String", r#""\ud83d\ude00""#), "\x04😀".as_bytes());
    assert_eq!(
        ok("String", r#""\"\\\/\b\f\r\t""#),
        b"\x07\"\\/\x08\x0c\r\t"
    );
    assert_eq!(ok("String", "\"é\""), "\x02é".as_bytes());
    assert!(err("String", r#""\ud83d""#).contains("unpaired surrogate"));
    assert!(err("String", r#""\udc00x""#).contains("unpaired surrogate"));
    // Non-strings keep their JSON text as written.
    assert_eq!(ok("String", "12.50"), b"\x0512.50");
    assert_eq!(ok("String", "true"), b"\x04true");
    assert_eq!(ok("String", r#"{"a": [1, 2]}"#), b"\x0d{\"a\": [1, 2]}");
    assert_eq!(ok("String", "[]"), b"\x02[]");
    let long = "x".repeat(300);
    let b = ok("String", &format!("\"{long}\""));
    assert_eq!(&b[..2], &[0xac, 0x02]);
    assert_eq!(b.len(), 302);
    assert_eq!(ok("FixedString(3)", "\"ab\""), b"ab\0");
    assert_eq!(ok("FixedString(3)", "\"abc\""), b"abc");
    assert_eq!(ok("FixedString(2)", "\"é\""), "é".as_bytes());
    assert_eq!(
        err("FixedString(3)", "\"abcd\""),
        "field \"c\" -> column c FixedString(3): \"abcd\": 4 bytes do not fit FixedString(3)"
    );
    assert_eq!(ok("FixedString(4)", "12"), b"12\0\0");
    assert_eq!(ok("LowCardinality(String)", "\"x\""), b"\x01x");
    // Long offending values are shortened.
    let e = err("Int8", &format!("\"{}\"", "9".repeat(200)));
    assert!(e.contains('…') && e.len() < 200, "{e}");
}

#[test]
fn uuid_and_ips() {
    assert_eq!(
        ok("UUID", "\"61f0c404-5cb3-11e7-907b-a6006ad3dba0\""),
        [
            0xe7, 0x11, 0xb3, 0x5c, 0x04, 0xc4, 0xf0, 0x61, 0xa0, 0xdb, 0xd3, 0x6a, 0x00, 0xa6,
            0x7b, 0x90
        ]
    );
    assert!(err("UUID", "\"61f0c404-5cb3-11e7-907b\"").contains("is not a UUID"));
    assert!(err("UUID", "1").contains("expected a UUID string"));
    assert_eq!(ok("IPv4", "\"1.2.3.4\""), [4, 3, 2, 1]);
    assert_eq!(ok("IPv4", "16909060"), [4, 3, 2, 1]);
    assert!(err("IPv4", "\"1.2.3.256\"").contains("not an IPv4 address"));
    assert!(err("IPv4", "4294967296").contains("out of IPv4 range"));
    assert!(err("IPv4", "-1").contains("out of IPv4 range"));
    let mut v6 = [0u8; 16];
    v6[15] = 1;
    assert_eq!(ok("IPv6", "\"::1\""), v6);
    assert_eq!(
        ok("IPv6", "\"1.2.3.4\""),
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]
    );
    assert!(err("IPv6", "\"::g\"").contains("not an IP address"));
}

#[test]
fn dates() {
    assert_eq!(ok("Date", "\"1970-01-01\""), [0, 0]);
    assert_eq!(ok("Date", "\"2024-02-29\""), le(19782u16.to_le_bytes()));
    assert_eq!(ok("Date", "\"2149-06-06\""), le(65535u16.to_le_bytes()));
    assert_eq!(ok("Date", "65535"), le(65535u16.to_le_bytes()));
    assert!(err("Date", "65536").contains("out of Date range"));
    assert!(err("Date", "\"2149-06-07\"").contains("out of Date range"));
    assert!(err("Date", "\"1969-12-31\"").contains("out of Date range"));
    assert!(err("Date", "\"2023-02-29\"").contains("is not a date"));
    assert!(err("Date", "\"2023-13-01\"").contains("is not a date"));
    assert!(err("Date", "\"2023-01-01 00:00:00\"").contains("is not a date"));
    assert_eq!(ok("Date32", "\"1969-12-31\""), le((-1i32).to_le_bytes()));
    assert_eq!(
        ok("Date32", "\"1900-01-01\""),
        le((-25567i32).to_le_bytes())
    );
    assert_eq!(ok("Date32", "\"2299-12-31\""), le(120529i32.to_le_bytes()));
    assert!(err("Date32", "\"2300-01-01\"").contains("out of Date32 range"));
    assert!(err("Date32", "\"1899-12-31\"").contains("out of Date32 range"));
    assert_eq!(ok("Date32", "-25567"), le((-25567i32).to_le_bytes()));
}

#[test]
fn datetimes() {
    let secs = |v: Vec<u8>| u32::from_le_bytes(v.try_into().unwrap());
    assert_eq!(
        secs(ok("DateTime", "\"2023-11-14 22:13:20\"")),
        1_700_000_000
    );
    assert_eq!(
        secs(ok("DateTime", "\"2023-11-14T22:13:20Z\"")),
        1_700_000_000
    );
    assert_eq!(
        secs(ok("DateTime", "\"2023-11-14T23:13:20+01:00\"")),
        1_700_000_000
    );
    assert_eq!(
        secs(ok("DateTime", "\"2023-11-14T23:13:20+0100\"")),
        1_700_000_000
    );
    assert_eq!(
        secs(ok("DateTime", "\"2023-11-14T17:13:20-05\"")),
        1_700_000_000
    );
    assert_eq!(
        secs(ok("DateTime", "\"2023-11-14 22:13:20.000\"")),
        1_700_000_000
    );
    assert_eq!(secs(ok("DateTime", "\"2023-11-14 22:13\"")), 1_699_999_980);
    assert_eq!(secs(ok("DateTime", "\"2023-11-14\"")), 1_699_920_000);
    assert_eq!(secs(ok("DateTime", "1700000000")), 1_700_000_000);
    assert_eq!(secs(ok("DateTime", "\"1700000000\"")), 1_700_000_000);
    assert_eq!(secs(ok("DateTime", "4294967295")), u32::MAX);
    assert_eq!(secs(ok("DateTime", "\"2106-02-07 06:28:15\"")), u32::MAX);
    assert!(err("DateTime", "4294967296").contains("out of DateTime range"));
    assert!(err("DateTime", "-1").contains("out of DateTime range"));
    assert!(err("DateTime", "\"1969-12-31 23:59:59\"").contains("out of DateTime range"));
    assert!(err("DateTime", "\"2023-11-14 22:13:20.5\"").contains("more fractional digits"));
    assert!(err("DateTime", "1700000000.5").contains("more fractional digits"));
    assert!(err("DateTime", "\"2023-11-14 24:00:00\"").contains("invalid time of day"));
    assert!(err("DateTime", "\"2023-11-14 22:13:20 UTC\"").contains("is not a date-time"));
    assert!(err("DateTime", "\"2023-11-14X22:13:20\"").contains("is not a date-time"));
    assert!(err("DateTime", "\"yesterday\"").contains("is not a date-time or epoch seconds"));
    // Zone-less strings are local time in the column's zone.
    assert_eq!(
        secs(ok("DateTime('Europe/Berlin')", "\"2023-11-14 23:13:20\"")),
        1_700_000_000
    );
    assert_eq!(
        secs(ok("DateTime('Asia/Kolkata')", "\"2023-11-15 03:43:20\"")),
        1_700_000_000
    );
    // ...but an explicit offset wins.
    assert_eq!(
        secs(ok("DateTime('Europe/Berlin')", "\"2023-11-14 22:13:20Z\"")),
        1_700_000_000
    );
    assert_eq!(
        secs(ok("DateTime('UTC')", "\"2023-11-14 22:13:20\"")),
        1_700_000_000
    );
    assert!(err("DateTime('Europe/Berlin')", "\"2024-03-31 02:30:00\"").contains("DST gap"));
    assert!(err("DateTime('Europe/Berlin')", "\"2024-10-27 02:30:00\"").contains("ambiguous"));
    assert_eq!(
        secs(ok(
            "DateTime('Europe/Berlin')",
            "\"2024-10-27 02:30:00+01:00\""
        )),
        1_729_992_600
    );

    let ticks = |v: Vec<u8>| i64::from_le_bytes(v.try_into().unwrap());
    assert_eq!(
        ticks(ok("DateTime64(3)", "\"2023-11-14 22:13:20.123\"")),
        1_700_000_000_123
    );
    assert_eq!(
        ticks(ok("DateTime64(3)", "\"2023-11-14T22:13:20.1Z\"")),
        1_700_000_000_100
    );
    assert_eq!(
        ticks(ok("DateTime64(3)", "\"2023-11-14 22:13:20.1230\"")),
        1_700_000_000_123
    );
    assert_eq!(
        ticks(ok("DateTime64(3)", "1700000000.123")),
        1_700_000_000_123
    );
    assert_eq!(
        ticks(ok("DateTime64(3)", "\"1700000000.5\"")),
        1_700_000_000_500
    );
    assert_eq!(ticks(ok("DateTime64(3)", "1700000000")), 1_700_000_000_000);
    assert_eq!(
        ticks(ok(
            "DateTime64(6, 'Europe/Berlin')",
            "\"2023-11-14 23:13:20.000001\""
        )),
        1_700_000_000_000_001
    );
    assert_eq!(
        ticks(ok("DateTime64(9)", "\"2023-11-14 22:13:20.123456789\"")),
        1_700_000_000_123_456_789
    );
    assert_eq!(
        ticks(ok("DateTime64(0)", "\"2023-11-14 22:13:20\"")),
        1_700_000_000
    );
    assert!(err("DateTime64(3)", "\"2023-11-14 22:13:20.1234\"").contains("more fractional digits"));
    assert!(err("DateTime64(3)", "1700000000.1234").contains("more fractional digits"));
    assert!(err("DateTime64(0)", "\"2023-11-14 22:13:20.5\"").contains("more fractional digits"));
    assert_eq!(
        ticks(ok("DateTime64(3)", "\"1900-01-01 00:00:00\"")),
        -2_208_988_800_000
    );
    assert_eq!(
        ticks(ok("DateTime64(3)", "-2208988800")),
        -2_208_988_800_000
    );
    assert_eq!(
        ticks(ok("DateTime64(3)", "\"2299-12-31 23:59:59.999\"")),
        10_413_791_999_999
    );
    assert!(err("DateTime64(3)", "\"1899-12-31 23:59:59\"").contains("out of DateTime64(3) range"));
    assert!(err("DateTime64(3)", "\"2300-01-01 00:00:00\"")
        .contains("out of DateTime64(3) range 1900-01-01..2300-01-01 UTC"));
    assert!(err("DateTime64(9)", "\"2262-04-12 00:00:00\"")
        .contains("out of DateTime64(9) range 1900-01-01..=2262-04-11 23:47:16.854775807 UTC"));
    // Precision 9 is limited by i64 ticks (2262-04-11).
    assert!(err("DateTime64(9)", "\"2262-04-12 00:00:00\"").contains("out of DateTime64(9) range"));
    assert_eq!(
        ticks(ok("DateTime64(9)", "\"2262-04-11 00:00:00\"")),
        9_223_286_400_000_000_000
    );
    // A millisecond epoch number is not silently read as seconds in the year 55000.
    assert!(err("DateTime64(3)", "1700000000123").contains("out of DateTime64(3) range"));
}

#[test]
fn enums() {
    let e8 = "Enum8('a' = 1, 'b' = -2)";
    assert_eq!(ok(e8, "\"a\""), [1]);
    assert_eq!(ok(e8, "\"b\""), [0xfe]);
    assert_eq!(ok(e8, "-2"), [0xfe]);
    assert_eq!(ok(e8, "\"1\""), [1]);
    assert_eq!(err(e8, "\"c\""), "field \"c\" -> column c Enum8('a' = 1, 'b' = -2): \"c\" is not a value of Enum8('a' = 1, 'b' = -2)");
    assert!(err(e8, "3").contains("is not a value of"));
    assert!(err(e8, "true").contains("expected an enum name or value"));
    let e16 = "Enum16('x' = -32768, 'y\\'z' = 32767)";
    assert_eq!(ok(e16, "\"y'z\""), le(32767i16.to_le_bytes()));
    assert_eq!(ok(e16, "-32768"), le((-32768i16).to_le_bytes()));
}

#[test]
fn nullable_and_low_cardinality() {
    assert_eq!(ok("Nullable(Int8)", "null"), [1]);
    assert_eq!(ok("Nullable(Int8)", "5"), [0, 5]);
    assert_eq!(ok("LowCardinality(Nullable(String))", "null"), [1]);
    assert_eq!(
        ok("LowCardinality(Nullable(String))", "\"a\""),
        [0, 1, b'a']
    );
    assert_eq!(
        err("String", "null"),
        "field \"c\" -> column c String: null for non-Nullable column"
    );
    assert!(err("Nullable(Int8)", "300").contains("out of range"));
}

#[test]
fn arrays_maps_tuples() {
    assert_eq!(ok("Array(Int8)", "[1, 2, -1]"), [3, 1, 2, 0xff]);
    assert_eq!(ok("Array(Int8)", "[]"), [0]);
    assert_eq!(
        ok("Array(Array(String))", r#"[["a"], [], ["b", "c"]]"#),
        b"\x03\x01\x01a\x00\x02\x01b\x01c"
    );
    let big: Vec<String> = (0..200).map(|i| (i % 100).to_string()).collect();
    let b = ok("Array(UInt8)", &format!("[{}]", big.join(",")));
    assert_eq!(&b[..2], &[0xc8, 0x01]);
    assert_eq!(b.len(), 202);
    assert_eq!(b[2 + 150], 50);
    assert_eq!(
        err("Array(Int8)", "[1, 300]"),
        "field \"c\" -> column c Array(Int8): [1]: 300 out of range -128..=127"
    );
    assert!(err("Array(Int8)", "{}").contains("expected an array, found an object"));

    let t = "Array(Nullable(Map(String, Array(Int8))))";
    let b = ok(t, r#"[null, {"a": [1, -1], "b\u00e9": []}, {}]"#);
    assert_eq!(
        b,
        b"\x03\x01\x00\x02\x01a\x02\x01\xff\x03b\xc3\xa9\x00\x00\x00"
    );
    assert_eq!(
        err(t, r#"[null, {"k": [1, 2, 128]}]"#),
        format!("field \"c\" -> column c {t}: [1][\"k\"][2]: 128 out of range -128..=127")
    );

    assert_eq!(
        ok("Map(String, UInt64)", r#"{"a": 1, "b": 2}"#),
        b"\x02\x01a\x01\0\0\0\0\0\0\0\x01b\x02\0\0\0\0\0\0\0"
    );
    assert_eq!(
        ok("Map(UInt16, String)", r#"{"12": "x"}"#),
        b"\x01\x0c\x00\x01x"
    );
    assert_eq!(
        ok("Map(String, String)", r#"{"a": "1", "a": "2"}"#),
        b"\x02\x01a\x011\x01a\x012"
    );
    assert!(err("Map(UInt16, String)", r#"{"x": "y"}"#)
        .contains("[\"x\"]: key: \"x\" is not an integer"));
    assert!(err("Map(String, String)", "[]").contains("expected an object"));

    let tup = "Tuple(a UInt8, b String)";
    assert_eq!(ok(tup, r#"[1, "x"]"#), b"\x01\x01x");
    assert_eq!(ok(tup, r#"{"b": "x", "a": 1}"#), b"\x01\x01x");
    assert!(err(tup, "[1]").contains("expected 2 tuple elements, found 1"));
    assert!(err(tup, r#"[1, "x", 3]"#).contains("found more"));
    assert!(err(tup, r#"{"a": 1}"#).contains("missing tuple element \"b\""));
    assert!(err(tup, r#"{"a": 1, "b": "x", "z": 0}"#).contains("unknown tuple element \"z\""));
    assert!(err(tup, r#"{"a": 1, "a": 2, "b": "x"}"#).contains("duplicate tuple element"));
    assert_eq!(ok(tup, r#"{"a": 1, "b": 2}"#), b"\x01\x012");
    assert!(err("Tuple(UInt8, String)", r#"{"a": 1}"#).contains("expected a tuple as an array"));
    assert!(err(tup, r#"[300, "x"]"#).contains("[0]: 300 out of range"));
}

fn plan(cols: Vec<ColumnPlan>, unknown: UnknownFields, with_defaults: bool) -> RowPlan {
    RowPlan::new(cols, unknown, with_defaults).unwrap()
}

#[test]
fn rows_in_plan_order_with_any_field_order() {
    let p = plan(
        vec![
            ColumnPlan::field("id", ty("UInt64")),
            ColumnPlan::field("name", ty("String")),
            ColumnPlan::meta("off", ty("Int64"), MetaField::Offset),
            ColumnPlan::field("age", ty("Int8")),
        ],
        UnknownFields::Ignore,
        false,
    );
    let mut want = Vec::new();
    rb::put_u64(&mut want, 7);
    rb::put_str(&mut want, b"bo");
    rb::put_i64(&mut want, 42);
    rb::put_i8(&mut want, 30);
    for payload in [
        r#"{"id": 7, "name": "bo", "age": 30}"#,
        r#"{"age":30,"name":"bo","id":7}"#,
        r#" { "x": {"deep": [1, {"y": null}]}, "name" : "bo" , "id":7,"age":30, "z": "\u1234" } "#,
        "{\"\\u0069d\": 7, \"name\": \"bo\", \"age\": 30}",
    ] {
        let mut out = Vec::new();
        encode_json_row(&p, payload.as_bytes(), &META, &mut out)
            .unwrap_or_else(|e| panic!("{payload}: {e}"));
        assert_eq!(out, want, "{payload}");
    }
}

#[test]
fn expected_field_names_are_taken_by_their_bytes_only_when_that_is_exact() {
    let p = plan(
        vec![
            ColumnPlan::field("id", ty("UInt8")),
            ColumnPlan::field("idx", ty("UInt8")),
            ColumnPlan::field("a\"b", ty("UInt8")),
            ColumnPlan::field("c\\d", ty("UInt8")),
        ],
        UnknownFields::Error,
        false,
    );
    let row = |payload: &str| {
        let mut out = Vec::new();
        encode_json_row(&p, payload.as_bytes(), &META, &mut out).map(|_| out)
    };
    // In order, out of order, a name that extends the expected one, escaped names.
    for payload in [
        r#"{"id":1,"idx":2,"a\"b":3,"c\\d":4}"#,
        r#"{"idx":2,"id":1,"c\\d":4,"a\"b":3}"#,
        r#"{"\u0069d":1,"id\u0078":2,"a\u0022b":3,"c\u005cd":4}"#,
    ] {
        assert_eq!(row(payload).ok(), Some(vec![1, 2, 3, 4]), "{payload}");
    }
    // The expected name's bytes followed by more of a string are another name.
    let e = row(r#"{"idy":1}"#).unwrap_err().to_string();
    assert!(e.contains("idy"), "{e}");
    // A name given twice is caught whichever way each was matched.
    for payload in [
        r#"{"id":1,"id":1,"idx":2,"a\"b":3,"c\\d":4}"#,
        r#"{"id":1,"\u0069d":1,"idx":2,"a\"b":3,"c\\d":4}"#,
        r#"{"idx":2,"id":1,"idx":2,"a\"b":3,"c\\d":4}"#,
    ] {
        let e = row(payload).unwrap_err();
        assert!(
            matches!(e, RowError::DuplicateField { .. }),
            "{payload}: {e}"
        );
    }

    // A name ending in a backslash: its bytes and a quote are an escaped quote in JSON.
    let p = plan(
        vec![ColumnPlan::field("x\\", ty("UInt8"))],
        UnknownFields::Error,
        false,
    );
    let mut out = Vec::new();
    encode_json_row(&p, br#"{"x\\":1}"#, &META, &mut out).unwrap();
    assert_eq!(out, [1]);
    let e = encode_json_row(&p, br#"{"x\"":1}"#, &META, &mut out).unwrap_err();
    assert!(matches!(e, RowError::UnknownField { .. }), "{e}");
}

fn row_err(p: &RowPlan, payload: &str) -> String {
    let mut out = vec![9, 9];
    let e = encode_json_row(p, payload.as_bytes(), &META, &mut out).unwrap_err();
    assert_eq!(out, [9, 9], "output not rolled back for {payload}");
    e.to_string()
}

#[test]
fn dynamic_values_carry_the_type_clickhouse_infers() {
    let p = named_plan(&[("d", "Dynamic")], UnknownFields::Error);
    let row = |v: &str| {
        let mut out = Vec::new();
        encode_json_row(&p, format!(r#"{{"d":{v}}}"#).as_bytes(), &META, &mut out)
            .map(|()| out.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .map_err(|e| e.to_string())
    };
    // ClickHouse 26.9's own RowBinary output for the same values (dynamicType in the note).
    for (v, hex) in [
        ("42", "0a2a00000000000000"),                                   // Int64
        ("18446744073709551615", "04ffffffffffffffff"),                 // UInt64
        ("1.5", "0e000000000000f83f"),                                  // Float64
        (r#""hello""#, "150568656c6c6f"),                               // String
        ("true", "2d01"),                                               // Bool
        ("null", "00"),                                                 // Nothing: NULL
        (r#""2024-01-01""#, "0f0b4d"),                                  // Date
        (r#""2024-05-17 12:34:56""#, "11f04e4766"),                     // DateTime (UTC server)
        (r#""2024-05-17 12:34:56.789""#, "1309408fb03fcb46d017"),       // DateTime64(9)
        ("[1,2]", "1e0a0201000000000000000200000000000000"),            // Array(Int64)
        (r#"[1,"a"]"#, "1e2b20020a0100000000000000150161"),             // Array(Dynamic)
        ("[]", "1e1500"),                                               // Array(String)
        ("[null,1]", "1e230a0201000100000000000000"),                   // Array(Nullable(Int64))
        (r#"{"a":1,"b":"x"}"#, "200201610a01621501000000000000000178"), // Tuple(a Int64, b String)
    ] {
        assert_eq!(row(v).unwrap(), hex, "{v}");
    }
    // Date-times without a zone are read in the server's time zone, as ClickHouse does.
    let berlin = RowPlan::new(
        vec![ColumnPlan::field(
            "d",
            ty("Dynamic(max_types=8)").with_server_time_zone(Some(chrono_tz::Europe::Berlin)),
        )],
        UnknownFields::Error,
        false,
    )
    .unwrap();
    let mut out = Vec::new();
    encode_json_row(&berlin, br#"{"d":"2024-05-17 12:34:56"}"#, &META, &mut out).unwrap();
    let mut want = vec![0x11];
    want.extend_from_slice(&(1_715_949_296u32 - 2 * 3600).to_le_bytes());
    assert_eq!(out, want);
    for (v, why) in [
        ("{}", "an empty object"),
        (r#""2024-02-30""#, "not certain"),
        (r#"" 2024-01-01""#, "not certain"),
        ("[null,[1]]", "not certain"),
        (r#"[{"a":1},{"b":2}]"#, ""),
        (r#"{"a":1,"a":2}"#, "key \"a\" twice"),
    ] {
        match row(v) {
            Err(e) => assert!(e.contains(why), "{v}: {e}"),
            // Arrays of differing objects are Dynamic elements: each its own tuple.
            Ok(hex) => assert!(hex.starts_with("1e2b20"), "{v}: {hex}"),
        }
    }
}

#[test]
fn times_and_bfloat16_read_exactly_or_fail() {
    let p = named_plan(
        &[("t", "Time"), ("t3", "Time64(3)"), ("b", "BFloat16")],
        UnknownFields::Error,
    );
    let row = |t: &str, t3: &str, b: &str| {
        let mut out = Vec::new();
        encode_json_row(
            &p,
            format!(r#"{{"t":{t},"t3":{t3},"b":{b}}}"#).as_bytes(),
            &META,
            &mut out,
        )
        .map(|()| out)
        .map_err(|e| e.to_string())
    };
    let mut want = (-(3600 + 2 * 60 + 3i32)).to_le_bytes().to_vec();
    want.extend_from_slice(&(45_296_100i64).to_le_bytes());
    want.extend_from_slice(&0xBF80u16.to_le_bytes()); // -1.0
    assert_eq!(row(r#""-1:02:03""#, r#""12:34:56.1""#, "-1").unwrap(), want);
    let mut want = 3_599_999i32.to_le_bytes().to_vec();
    want.extend_from_slice(&(-1500i64).to_le_bytes());
    want.extend_from_slice(&0x3F8Cu16.to_le_bytes()); // 1.1, cut to 1.09375
    assert_eq!(row(r#""999:59:59""#, "-1.5", r#""1.1""#).unwrap(), want);
    for (t, t3, why) in [
        (r#""1000:00:00""#, "0", "hours are 1 to 3 digits"),
        ("3600000", "0", "out of range -999:59:59..=999:59:59"),
        (
            "-170141183460469231731687303715884105728",
            "0",
            "out of range",
        ),
        (r#""12:60:00""#, "0", "minutes and seconds are 00 to 59"),
        (r#""1:2:3""#, "0", "expected hh:mm:ss"),
        (
            r#""12:00:00.5""#,
            "0",
            "more fractional digits than the column's precision",
        ),
        (
            "0",
            r#""00:00:00.0001""#,
            "more fractional digits than the column's precision",
        ),
        (
            "0",
            "0.0001",
            "more fractional digits than the column's precision",
        ),
        ("true", "0", "expected a time, found a boolean"),
        (r#""noon""#, "0", "is not a time (hh:mm:ss) or seconds"),
    ] {
        let e = row(t, t3, "0").unwrap_err();
        assert!(e.contains(why), "{t} {t3}: {e}");
    }
    assert!(row("0", "0", r#""x""#)
        .unwrap_err()
        .contains("column b BFloat16"));
    // A QBit is a vector of exactly its dimension.
    let p = named_plan(&[("q", "QBit(Float32, 3)")], UnknownFields::Error);
    let mut out = Vec::new();
    encode_json_row(&p, br#"{"q":[1,2,3]}"#, &META, &mut out).unwrap();
    let mut want = vec![3];
    for f in [1f32, 2.0, 3.0] {
        want.extend_from_slice(&f.to_le_bytes());
    }
    assert_eq!(out, want);
    let e = encode_json_row(&p, br#"{"q":[1,2]}"#, &META, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("column q QBit(Float32, 3): expected a vector of 3 values, found 2"),
        "{e}"
    );
}

#[test]
fn json_columns_take_objects_as_their_text() {
    let p = named_plan(
        &[
            ("j", "JSON"),
            ("s", "JSON(a UInt32, SKIP b)"),
            ("arr", "Array(JSON)"),
            ("m", "Map(String, JSON)"),
        ],
        UnknownFields::Error,
    );
    let mut out = Vec::new();
    encode_json_row(
            &p,
            br#"{"j":{ "a": 1, "b": [1, {"c": "\u00e9"}] },"s":"{\"a\": 5}","arr":[{"x":1},{}],"m":{"k":{"z":null}}}"#,
            &META,
            &mut out,
        )
        .unwrap();
    let mut want = Vec::new();
    // Objects as written, whitespace and escapes kept; a string's object unescaped.
    rb::put_str(&mut want, br#"{ "a": 1, "b": [1, {"c": "\u00e9"}] }"#);
    rb::put_str(&mut want, br#"{"a": 5}"#);
    want.push(2);
    rb::put_str(&mut want, br#"{"x":1}"#);
    rb::put_str(&mut want, b"{}");
    want.push(1);
    rb::put_str(&mut want, b"k");
    rb::put_str(&mut want, br#"{"z":null}"#);
    assert_eq!(out, want);

    let p = named_plan(&[("j", "JSON")], UnknownFields::Error);
    for (doc, why) in [
        (r#"{"j":5}"#, "expected a JSON object, found a number 5"),
        (
            r#"{"j":[{"a":1}]}"#,
            "expected a JSON object, found an array",
        ),
        (r#"{"j":null}"#, "null for non-Nullable column"),
        (
            r#"{"j":"[1]"}"#,
            "is not a JSON object: it does not start with {",
        ),
        (r#"{"j":"{\"a\":"}"#, "is not a JSON object: "),
        (
            r#"{"j":"{} {}"}"#,
            "is not a JSON object: text after the object at byte 3",
        ),
    ] {
        let e = row_err(&p, doc);
        assert!(e.contains("column j JSON") && e.contains(why), "{doc}: {e}");
    }

    // The message itself into a JSON column: only when it is one object.
    let p = RowPlan::new(
        vec![ColumnPlan::meta("v", ty("JSON"), MetaField::Value)],
        UnknownFields::Ignore,
        false,
    )
    .unwrap();
    let mut out = Vec::new();
    let meta = MessageMeta {
        value: Some(br#" {"a":1} "#),
        ..META
    };
    encode_meta_row(&p, &meta, &mut out).unwrap();
    let mut want = Vec::new();
    rb::put_str(&mut want, br#" {"a":1} "#);
    assert_eq!(out, want);
    let meta = MessageMeta {
        value: Some(b"{\"a\":1"),
        ..META
    };
    let e = encode_meta_row(&p, &meta, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a JSON object"), "{e}");
    assert!(matches!(
        RowPlan::new(
            vec![ColumnPlan::meta("t", ty("JSON"), MetaField::Topic)],
            UnknownFields::Ignore,
            false,
        ),
        Err(PlanError::MetaType { .. })
    ));
}

#[test]
fn row_errors_and_rollback() {
    let p = plan(
        vec![
            ColumnPlan::field("id", ty("UInt64")),
            ColumnPlan::field("age", ty("Int8")),
        ],
        UnknownFields::Error,
        false,
    );
    assert_eq!(
        row_err(&p, r#"{"id": 1, "age": 300}"#),
        "field \"age\" -> column age Int8: 300 out of range -128..=127"
    );
    assert_eq!(
        row_err(&p, r#"{"age": 3}"#),
        "missing field \"id\" for column id UInt64 (no default sluice can apply here)"
    );
    assert_eq!(
        row_err(&p, r#"{"id": 1, "age": 3, "foo": 1}"#),
        "unknown field \"foo\""
    );
    assert_eq!(
        row_err(&p, r#"{"id": 1, "id": 2, "age": 3}"#),
        "duplicate field \"id\""
    );
    assert_eq!(
        row_err(&p, r#"[1, 2]"#),
        "payload is not a JSON object: [1, 2]"
    );
    assert_eq!(
        row_err(&p, "  "),
        "payload is not a JSON object: empty payload"
    );
    assert_eq!(row_err(&p, "42"), "payload is not a JSON object: 42");
    assert_eq!(
        row_err(&p, r#"{"id": 1, "age": 3,}"#),
        "invalid JSON at byte 19: expected a field name"
    );
    assert_eq!(
        row_err(&p, r#"{"id": 1, "age": 3} x"#),
        "invalid JSON at byte 20: trailing characters after the JSON object"
    );
    assert_eq!(
        row_err(&p, r#"{"id": 01}"#),
        "invalid JSON at byte 8: expected ',' or '}'"
    );
    assert_eq!(
        row_err(&p, r#"{"id": 1"#),
        "invalid JSON at byte 8: unexpected end of input"
    );
    assert_eq!(
        row_err(&p, r#"{"id": tru}"#),
        "invalid JSON at byte 7: invalid literal"
    );
    assert_eq!(
        row_err(&p, r#"{"id" 1}"#),
        "invalid JSON at byte 6: expected ':'"
    );
    assert_eq!(
        row_err(&p, "{\"id\": \"a\tb\"}"),
        "invalid JSON at byte 9: control character in string"
    );
    assert_eq!(
        row_err(&p, r#"{"id": "\x"}"#),
        "invalid JSON at byte 8: invalid escape in string"
    );
    assert_eq!(
        row_err(&p, r#"{"id": "\u12"}"#),
        "invalid JSON at byte 8: invalid \\u escape"
    );
    assert_eq!(
        row_err(&p, r#"{"id": "abc"#),
        "invalid JSON at byte 7: unterminated string"
    );
    assert_eq!(
        row_err(&p, r#"{"id": 1.}"#),
        "invalid JSON at byte 9: expected digits after the decimal point"
    );
    assert_eq!(
        row_err(&p, r#"{"id": -}"#),
        "invalid JSON at byte 7: invalid number"
    );
    assert_eq!(
        row_err(&p, r#"{"id": [1,]}"#),
        "invalid JSON at byte 10: expected a JSON value"
    );
    assert_eq!(
        row_err(&p, r#"{"id": {"a" 1}}"#),
        "invalid JSON at byte 12: expected ':'"
    );
    assert_eq!(
        row_err(&p, r#"{"id": [1}"#),
        "invalid JSON at byte 9: expected ',' or ']'"
    );
    // Invalid UTF-8 inside a string value and as a bare byte.
    let mut out = Vec::new();
    let e = encode_json_row(&p, b"{\"id\": \"\xff\xfe\"}", &META, &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid JSON at byte 7: string is not valid UTF-8"
    );
    let e = encode_json_row(&p, b"{\"id\": 1, \"age\": \xff}", &META, &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid JSON at byte 17: expected a JSON value"
    );
    // Invalid JSON is reported even inside ignored fields, and a late error rolls back.
    let p2 = plan(
        vec![ColumnPlan::field("id", ty("UInt64"))],
        UnknownFields::Ignore,
        false,
    );
    assert_eq!(
        row_err(&p2, r#"{"id": 1, "x": [1 2]}"#),
        "invalid JSON at byte 18: expected ',' or ']'"
    );
}

#[test]
fn deep_nesting_is_refused_without_crashing() {
    let p = plan(
        vec![ColumnPlan::field("id", ty("UInt64"))],
        UnknownFields::Ignore,
        false,
    );
    for n in [MAX_JSON_DEPTH + 1, 1_000_000] {
        let payload = format!("{{\"x\": {}{}, \"id\": 1}}", "[".repeat(n), "]".repeat(n));
        let e = row_err(&p, &payload);
        assert!(e.contains("nested too deeply"), "{e}");
    }
    let ok_depth = MAX_JSON_DEPTH - 1;
    let payload = format!(
        "{{\"x\": {}1{}, \"id\": 1}}",
        "[{\"a\":".repeat(ok_depth / 2),
        "}]".repeat(ok_depth / 2)
    );
    let mut out = Vec::new();
    encode_json_row(&p, payload.as_bytes(), &META, &mut out).unwrap();
    assert_eq!(out, 1u64.to_le_bytes());
}

#[test]
fn missing_values_and_defaults() {
    let mut default_bytes = Vec::new();
    encode_json_value(&ty("Int32"), b"-7", &mut default_bytes).unwrap();
    assert_eq!(default_bytes, (-7i32).to_le_bytes());
    let cols = vec![
        ColumnPlan::field("a", ty("UInt8")),
        ColumnPlan::field("b", ty("Int32")).on_missing(OnMissing::Bytes(default_bytes.clone())),
        ColumnPlan::field("c", ty("Nullable(String)")).on_missing(OnMissing::Null),
        ColumnPlan::field("d", ty("String")).on_missing(OnMissing::ServerDefault),
    ];
    let p = plan(cols.clone(), UnknownFields::Ignore, true);
    let mut out = Vec::new();
    encode_json_row(&p, br#"{"a": 1}"#, &META, &mut out).unwrap();
    assert_eq!(out, [0, 1, 0, 0xf9, 0xff, 0xff, 0xff, 0, 1, 1]);
    out.clear();
    encode_json_row(
        &p,
        br#"{"a": 1, "b": 2, "c": null, "d": "x"}"#,
        &META,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 1, b'x']);

    // Without RowBinaryWithDefaults a server default is not possible.
    assert_eq!(
        RowPlan::new(cols.clone(), UnknownFields::Ignore, false).unwrap_err(),
        PlanError::ServerDefaultNeedsWithDefaults { column: "d".into() }
    );
    let p = plan(cols[..3].to_vec(), UnknownFields::Ignore, false);
    out.clear();
    encode_json_row(&p, br#"{"a": 1}"#, &META, &mut out).unwrap();
    assert_eq!(out, [1, 0xf9, 0xff, 0xff, 0xff, 1]);
    assert_eq!(
        RowPlan::new(
            vec![ColumnPlan::field("a", ty("UInt8")).on_missing(OnMissing::Null)],
            UnknownFields::Ignore,
            false
        )
        .unwrap_err()
        .to_string(),
        "column a UInt8: NULL as the missing value needs a Nullable column"
    );
    assert_eq!(
        RowPlan::new(
            vec![
                ColumnPlan::field("a", ty("UInt8")),
                ColumnPlan::field("a", ty("UInt8"))
            ],
            UnknownFields::Ignore,
            false
        )
        .unwrap_err(),
        PlanError::DuplicateColumn { column: "a".into() }
    );
    assert!(encode_json_value(&ty("Int8"), b"1000", &mut out)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    assert!(encode_json_value(&ty("Int8"), b"1 2", &mut out).is_err());
}

#[test]
fn two_columns_from_one_field() {
    let p = plan(
        vec![
            ColumnPlan {
                name: "raw".into(),
                ty: ty("String"),
                source: ColumnSource::Field("n".into()),
                on_missing: OnMissing::Error,
            },
            ColumnPlan::field("n", ty("UInt16")),
        ],
        UnknownFields::Error,
        false,
    );
    let mut out = Vec::new();
    encode_json_row(&p, br#"{"n": 513}"#, &META, &mut out).unwrap();
    assert_eq!(out, b"\x03513\x01\x02");
}

#[test]
fn meta_columns() {
    let headers: &[(&str, Option<&[u8]>)] =
        &[("h1", Some(b"v1")), ("h2", None), ("q\"", Some(b"\xff"))];
    let meta = MessageMeta { headers, ..META };
    let cols = vec![
        ColumnPlan::meta("topic", ty("LowCardinality(String)"), MetaField::Topic),
        ColumnPlan::meta("topic_fs", ty("FixedString(8)"), MetaField::Topic),
        ColumnPlan::meta("part", ty("UInt8"), MetaField::Partition),
        ColumnPlan::meta("off", ty("UInt64"), MetaField::Offset),
        ColumnPlan::meta("ts", ty("DateTime"), MetaField::Timestamp),
        ColumnPlan::meta("ts3", ty("DateTime64(3)"), MetaField::Timestamp),
        ColumnPlan::meta("ts6", ty("DateTime64(6, 'UTC')"), MetaField::Timestamp),
        ColumnPlan::meta("ts1", ty("DateTime64(1)"), MetaField::Timestamp),
        ColumnPlan::meta("tsms", ty("Int64"), MetaField::Timestamp),
        ColumnPlan::meta("key", ty("Nullable(String)"), MetaField::Key),
        ColumnPlan::meta("hm", ty("Map(String, String)"), MetaField::Headers),
        ColumnPlan::meta(
            "ha",
            ty("Array(Tuple(String, Nullable(String)))"),
            MetaField::Headers,
        ),
        ColumnPlan::meta("hj", ty("String"), MetaField::Headers),
    ];
    let p = plan(cols, UnknownFields::Ignore, false);
    assert!(p.stores_headers());
    let without = plan(
        vec![ColumnPlan::meta(
            "key",
            ty("Nullable(String)"),
            MetaField::Key,
        )],
        UnknownFields::Ignore,
        false,
    );
    assert!(
        !without.stores_headers(),
        "headers are read only when stored"
    );
    let mut out = Vec::new();
    encode_json_row(&p, b"{}", &meta, &mut out).unwrap();
    let mut w = Vec::new();
    rb::put_str(&mut w, b"events");
    w.extend_from_slice(b"events\0\0");
    w.push(3);
    rb::put_u64(&mut w, 42);
    rb::put_u32(&mut w, 1_700_000_000);
    rb::put_i64(&mut w, 1_700_000_000_123);
    rb::put_i64(&mut w, 1_700_000_000_123_000);
    rb::put_i64(&mut w, 17_000_000_001);
    rb::put_i64(&mut w, 1_700_000_000_123);
    w.extend_from_slice(b"\x00\x02k1");
    w.extend_from_slice(b"\x03\x02h1\x02v1\x02h2\x00\x02q\"\x01\xff");
    w.extend_from_slice(b"\x03\x02h1\x00\x02v1\x02h2\x01\x02q\"\x00\x01\xff");
    rb::put_str(
        &mut w,
        "{\"h1\":\"v1\",\"h2\":null,\"q\\\"\":\"\u{fffd}\"}".as_bytes(),
    );
    assert_eq!(out, w);

    // No key: NULL in a Nullable column, empty string otherwise.
    let p = plan(
        vec![
            ColumnPlan::meta("k1", ty("Nullable(String)"), MetaField::Key),
            ColumnPlan::meta("k2", ty("String"), MetaField::Key),
            ColumnPlan::meta("ts", ty("Nullable(DateTime)"), MetaField::Timestamp)
                .on_missing(OnMissing::Null),
        ],
        UnknownFields::Ignore,
        false,
    );
    out.clear();
    encode_json_row(
        &p,
        b"{}",
        &MessageMeta {
            key: None,
            timestamp_ms: None,
            ..META
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [1, 0, 1]);

    // Range checks and plan-time type checks.
    let p = plan(
        vec![ColumnPlan::meta("part", ty("Int8"), MetaField::Partition)],
        UnknownFields::Ignore,
        false,
    );
    let e = encode_json_row(
        &p,
        b"{}",
        &MessageMeta {
            partition: 300,
            ..META
        },
        &mut out,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Kafka partition -> column part Int8: 300 out of range -128..=127"
    );
    let p = plan(
        vec![ColumnPlan::meta("ts", ty("DateTime"), MetaField::Timestamp)],
        UnknownFields::Ignore,
        false,
    );
    let e = encode_json_row(
        &p,
        b"{}",
        &MessageMeta {
            timestamp_ms: None,
            ..META
        },
        &mut out,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "missing Kafka timestamp for column ts DateTime (no default sluice can apply here)"
    );
    for (t, m) in [
        ("Int32", MetaField::Topic),
        ("String", MetaField::Offset),
        ("Float64", MetaField::Timestamp),
        ("Map(String, UInt8)", MetaField::Headers),
        ("Array(Tuple(String))", MetaField::Headers),
    ] {
        let r = RowPlan::new(
            vec![ColumnPlan::meta("m", ty(t), m)],
            UnknownFields::Ignore,
            false,
        );
        assert!(matches!(r, Err(PlanError::MetaType { .. })), "{t} {m:?}");
    }
}

#[test]
fn parse_scaled_cases() {
    let v =
        |t: &str, s: u32| parse_scaled(t.as_bytes(), s).map(|n| (n.neg, n.mag.to_u128(), n.digits));
    assert!(matches!(v("0", 0), Ok((false, Some(0), 0))));
    assert!(matches!(v("-0.000", 2), Ok((false, Some(0), 0))));
    assert!(matches!(v("007", 0), Ok((false, Some(7), 1))));
    assert!(matches!(v("+1.5", 1), Ok((false, Some(15), 2))));
    assert!(matches!(v(".5", 1), Ok((false, Some(5), 1))));
    assert!(matches!(v("5.", 1), Ok((false, Some(50), 2))));
    assert!(matches!(v("12e-1", 1), Ok((false, Some(12), 2))));
    assert!(matches!(v("1.20e1", 0), Ok((false, Some(12), 2))));
    assert!(matches!(v("-1e2", 0), Ok((true, Some(100), 3))));
    assert!(matches!(v("1e-1", 0), Err(NumErr::Inexact)));
    assert!(matches!(v("1e81", 0), Err(NumErr::Overflow)));
    assert!(matches!(v("", 0), Err(NumErr::Syntax)));
    assert!(matches!(v(".", 0), Err(NumErr::Syntax)));
    assert!(matches!(v("1e", 0), Err(NumErr::Syntax)));
    assert!(matches!(v("1x", 0), Err(NumErr::Syntax)));
    assert!(matches!(v("--1", 0), Err(NumErr::Syntax)));
    assert!(matches!(
        v("1e-99999999999999999999999", 0),
        Err(NumErr::Inexact)
    ));
    assert!(matches!(
        v("0e-99999999999999999999999", 0),
        Ok((false, Some(0), 0))
    ));
}

/// The Decimal fast path agrees with the general parser wherever it answers.
#[test]
fn decimal_fast_path_agrees() {
    let mut seed: u64 = 77;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let alphabet = b"0123456789.-e+";
    let mut answered = 0;
    for _ in 0..200_000 {
        let len = 1 + next() % 22;
        let text: Vec<u8> = (0..len)
            .map(|_| {
                if next() % 6 == 0 {
                    alphabet[10 + next() % 4]
                } else {
                    alphabet[next() % 10]
                }
            })
            .collect();
        let precision = 1 + (next() % 18) as u32;
        let scale = (next() % (precision as usize + 1)) as u32;
        if let Some(fast) = decimal_i64(&text, scale, precision) {
            answered += 1;
            let slow = match parse_scaled(&text, scale) {
                Ok(n) if n.digits <= precision => n.to_i128(),
                _ => None,
            };
            assert_eq!(
                Some(fast as i128),
                slow,
                "{} scale {scale} precision {precision}",
                show(&text)
            );
        }
    }
    assert!(answered > 10_000, "{answered}");
}

#[test]
fn field_index_many_names() {
    let names: Vec<Box<[u8]>> = (0..300)
        .map(|i| format!("field_{i:03}").into_bytes().into())
        .collect();
    let idx = FieldIndex::build(names.clone());
    let mut guess = 0;
    for (i, n) in names.iter().enumerate().rev() {
        assert_eq!(idx.find(n, &mut guess), Some(i));
    }
    assert_eq!(idx.find(b"field_300", &mut guess), None);
    assert_eq!(idx.find(b"", &mut guess), None);
    let empty = FieldIndex::build(Vec::new());
    assert_eq!(empty.find(b"x", &mut 0), None);
}

/// Strings of every length and escape position agree with serde_json (SWAR boundaries).
#[test]
fn strings_agree_with_serde_json() {
    let pieces = [
        "a",
        "é",
        "\\n",
        "\\u00e9",
        "\\\"",
        "\\\\",
        "😀",
        "\\ud83d\\ude00",
        "/",
        " ",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let len = (next() % 30) as usize;
        let body: String = (0..len)
            .map(|_| pieces[(next() % pieces.len() as u64) as usize])
            .collect();
        let json = format!("\"{body}\"");
        let want: String = serde_json::from_str(&json).unwrap();
        let mut w = Vec::new();
        rb::put_str(&mut w, want.as_bytes());
        assert_eq!(ok("String", &json), w, "{json}");
    }
}

/// Mutated payloads never panic, and failures always roll back.
#[test]
fn mutations_never_panic() {
    let p = plan(
        vec![
            ColumnPlan::field("id", ty("UInt64")),
            ColumnPlan::field("s", ty("String")),
            ColumnPlan::field("a", ty("Array(Nullable(Map(String, Array(Int8))))")),
            ColumnPlan::field("t", ty("Tuple(x Decimal(10, 2), y DateTime64(3))")),
            ColumnPlan::field("f", ty("Float32")).on_missing(OnMissing::Bytes(vec![0; 4])),
        ],
        UnknownFields::Ignore,
        false,
    );
    let base = br#"{"id": 12, "s": "h\u00e9\"y", "a": [null, {"k": [1, -2]}], "t": {"x": "1.25", "y": "2023-11-14 22:13:20.5"}, "z": [true, false, null, 1e5]}"#;
    let mut out = Vec::new();
    encode_json_row(&p, base, &META, &mut out).unwrap();
    let mut seed: u64 = 12345;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let alphabet = b"{}[]\",:\\ u0123456789eE.-+tfnalsr\xff\xc3\xa9\x00\x1f";
    for _ in 0..20_000 {
        let mut m = base.to_vec();
        for _ in 0..(1 + next() % 3) {
            let i = next() % m.len();
            match next() % 3 {
                0 => m[i] = alphabet[next() % alphabet.len()],
                1 => {
                    m.remove(i);
                }
                _ => m.insert(i, alphabet[next() % alphabet.len()]),
            }
        }
        let mut out = vec![7u8];
        if encode_json_row(&p, &m, &META, &mut out).is_err() {
            assert_eq!(out, [7u8]);
        }
    }
}

#[test]
fn the_float64_fast_path_agrees_with_the_full_parser_or_declines() {
    let mut cases: Vec<String> = [
        "0",
        "-0",
        "0.0",
        "-0.0",
        "1",
        "0.1",
        "0.3",
        "2.0000",
        "14285.7143",
        "-5.5",
        "9007199254740992",
        "9007199254740993",
        "900719925474099.3",
        "1234567890123456789",
        "12345678901234567890",
        "0.0000000000000000000001",
        "0.00000000000000000000001",
        "1.7976931348623157",
        "123.4567890123456789",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let digits = (x % 21 + 1) as usize;
        let mut d = (x >> 8).to_string();
        d.truncate(digits);
        let digits = d.len();
        let point = (x >> 40) as usize % (digits + 1);
        let mut s = String::new();
        if x & 1 == 1 {
            s.push('-');
        }
        if point == 0 || point == digits {
            s.push_str(&d);
        } else {
            s.push_str(&d[..point]);
            s.push('.');
            s.push_str(&d[point..]);
        }
        cases.push(s);
    }
    let mut taken = 0;
    for s in &cases {
        let mut scan = Scan::new(s.as_bytes());
        if scan.number().is_err() || scan.pos != s.len() {
            continue; // not JSON (a leading zero): never reaches the Float64 writer
        }
        if let Some(f) = fast_f64(s.as_bytes()) {
            taken += 1;
            let full: f64 = s.parse().unwrap();
            assert_eq!(f.to_bits(), full.to_bits(), "{s}");
        }
    }
    assert!(taken > 100_000, "the fast path took {taken} cases");
    assert_eq!(fast_f64(b"9007199254740993"), None, "beyond 2^53");
    assert_eq!(fast_f64(b"1e5"), None, "exponent: full parser");
    assert_eq!(
        fast_f64(b"1.0000000000000000000000"),
        None,
        "23 fraction digits"
    );
}

/// The string scan's 16- and 8-byte steps find a quote, backslash, control character or
/// bad UTF-8 byte at every position, and keep scanning over valid non-ASCII anywhere.
#[test]
fn string_scan_sees_specials_at_every_position() {
    for len in 0..48 {
        for at in 0..len {
            let mut body = vec![b'x'; len];
            // A string of `at` plain bytes, then the closing quote: ends right there.
            body[at] = b'"';
            let mut json = vec![b'"'];
            json.extend_from_slice(&body);
            let mut scan = Scan::new(&json);
            assert_eq!(scan.string().ok(), Some(false), "quote at {at} of {len}");
            assert_eq!(scan.pos, at + 2, "quote at {at} of {len}");

            for (bad, why) in [(0x01u8, "control"), (0x1f, "control"), (0xff, "UTF-8")] {
                let mut raw = vec![b'x'; len + 2];
                raw[0] = b'"';
                raw[at + 1] = bad;
                raw[len + 1] = b'"';
                let r = Scan::new(&raw).string();
                assert!(
                    r.is_err(),
                    "{why} byte {bad:#x} at {at} of {len} was accepted"
                );
            }

            let mut body = "x".repeat(len);
            body.replace_range(at..at + 1, "\\n");
            body.push('\u{e9}');
            let json = format!("\"{body}\"");
            let mut scan = Scan::new(json.as_bytes());
            assert_eq!(scan.string().ok(), Some(true), "escape at {at} of {len}");
            assert_eq!(scan.pos, json.len(), "escape at {at} of {len}");
        }
    }
}

/// The 8-digit word parse agrees with the digit loop, and any non-digit byte (just below
/// '0', just above '9', high-bit bytes) in any position sends it back to the caller.
#[test]
fn eight_digits_parse_and_reject() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..20_000u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = if i < 100 { i } else { seed % 100_000_000 };
        let text = format!("{n:08}");
        let word = u64::from_le_bytes(text.as_bytes().try_into().unwrap());
        assert_eq!(eight_digits(word), Some(n as u32), "{text}");
        for (at, bad) in [b'/', b':', b' ', b'.', 0x80, 0xff, 0xb0, 0x00]
            .iter()
            .enumerate()
        {
            let mut b: [u8; 8] = text.as_bytes().try_into().unwrap();
            b[(at + i as usize) % 8] = *bad;
            assert_eq!(eight_digits(u64::from_le_bytes(b)), None, "{b:?}");
        }
    }
    assert_eq!(parse_i64(b"-4999999993"), Some(-4_999_999_993));
    assert_eq!(
        parse_i64(b"123456789012345678"),
        Some(123_456_789_012_345_678)
    );
    assert_eq!(parse_i64(b"1234567x9"), None);
    assert_eq!(parse_i64(b"12345678"), Some(12_345_678));
    assert_eq!(
        parse_i64(b"1234567890123456789"),
        None,
        "19 digits: the wide path"
    );
}
