//! From a target table's columns (as ClickHouse reports them) to the plan that turns each
//! message into one row: which column comes from which JSON field or Kafka metadata, and what
//! a missing field becomes.
//!
//! Rules, in order, for each insertable column (MATERIALIZED and ALIAS columns are computed by
//! ClickHouse and never sent):
//! - its name is a configured metadata column (`_topic`, `_offset`, ..., `_value`: the
//!   message value unparsed): Kafka metadata;
//! - otherwise the JSON field of the same name; a raw route (`format = "raw"`) parses no
//!   fields, so there every other column is missing, and its table must have the value column;
//!   a CSV or TSV route fills them by position, in the table's order or the route's `columns`.
//!
//! A missing field takes the column's DEFAULT. On servers with `RowBinaryWithDefaults` the
//! server evaluates it (so `now()` or expressions over other columns work). On older servers
//! sluice evaluates constant defaults once at start-up; a missing field whose column has a
//! volatile default (`now()`) or one that reads other columns is an error for that message (dead-lettered with the reason), since
//! inventing a value would be worse. Columns without a DEFAULT take NULL when Nullable and
//! the type's default value otherwise (0, "", [], ...), which is what ClickHouse itself does
//! for fields omitted from JSONEachRow.

use std::collections::HashMap;

use bytes::Bytes;

use crate::chtype::{ChType, TypeError};
use crate::clickhouse::client::DefaultKind;
use crate::clickhouse::{typed_header, ColumnInfo, InsertFormat, ServerInfo};
use crate::config::{Format, MetadataColumns, Route, UnknownFields};
use crate::decode::json::UnknownFields as JsonUnknownFields;
use crate::decode::json::{ColumnPlan, ColumnSource, MetaField, OnMissing, RowPlan};

#[derive(Debug, thiserror::Error)]
/// The cause is part of each message and not also a `source`: anyhow's `{:#}` would print it
/// twice (`column j: unsupported ClickHouse type JSON ...: unsupported ClickHouse type JSON ...`).
pub enum SchemaError {
    #[error("table {table}: column {column}: {cause}")]
    Type {
        table: String,
        column: String,
        cause: TypeError,
    },
    #[error("table {table}: {cause}")]
    Plan {
        table: String,
        cause: crate::decode::json::PlanError,
    },
    #[error("table {table}: column {column} {ty}: this ClickHouse ({version}) cannot read JSON values as text in RowBinary (input_format_binary_read_json_as_string, ClickHouse 24.10 and later)")]
    JsonAsText {
        table: String,
        column: String,
        ty: String,
        version: String,
    },
    #[error("table {table}: column {column} {ty}: a csv or tsv field has no type to infer for a Dynamic column (ClickHouse infers numbers from unquoted text, sluice does not guess); use a concrete type or a Variant")]
    DynamicFromText {
        table: String,
        column: String,
        ty: String,
    },
    #[error("table {table} has no column sluice can insert into")]
    NoColumns { table: String },
    #[error("table {table} has no column that a csv or tsv field could fill (only metadata and computed columns)")]
    NoTextColumns { table: String },
    #[error("table {table} has no column {column} for the message value of a raw route; add it, or name another column with [route.metadata] value = \"...\"")]
    NoValueColumn { table: String, column: String },
}

/// How one column is filled, for `sluice check` to print.
#[derive(Debug, Clone)]
pub struct ColumnLine {
    pub column: String,
    pub ty: String,
    pub source: String,
    pub when_missing: String,
}

pub struct TablePlan {
    pub plan: RowPlan,
    pub columns: Vec<String>,
    pub format: InsertFormat,
    /// What each insert sends before its rows: the names and the table's types of `columns`
    /// for [`InsertFormat::RowBinaryWithNamesAndTypes`], else empty.
    pub header: Bytes,
    pub lines: Vec<ColumnLine>,
    /// Columns ClickHouse computes itself (MATERIALIZED, ALIAS): not sent.
    pub computed: Vec<String>,
}

fn meta_for(name: &str, m: &MetadataColumns) -> Option<MetaField> {
    let is = |v: &Option<String>| v.as_deref() == Some(name);
    if is(&m.topic) {
        Some(MetaField::Topic)
    } else if is(&m.partition) {
        Some(MetaField::Partition)
    } else if is(&m.offset) {
        Some(MetaField::Offset)
    } else if is(&m.timestamp) {
        Some(MetaField::Timestamp)
    } else if is(&m.key) {
        Some(MetaField::Key)
    } else if is(&m.headers) {
        Some(MetaField::Headers)
    } else if is(&m.value) {
        Some(MetaField::Value)
    } else if is(&m.op) {
        Some(MetaField::Op)
    } else if is(&m.deleted) {
        Some(MetaField::Deleted)
    } else if is(&m.ts_ms) {
        Some(MetaField::EventTime)
    } else if is(&m.source_ts_ms) {
        Some(MetaField::SourceTime)
    } else if is(&m.db) {
        Some(MetaField::SourceDb)
    } else if is(&m.table) {
        Some(MetaField::SourceTable)
    } else {
        None
    }
}

/// Builds the row plan of `route` for a table with `columns` on `server`.
/// `literal_defaults` holds the RowBinary value of DEFAULTs evaluated once (old servers only).
pub fn plan_table(
    route: &Route,
    columns: &[ColumnInfo],
    server: &ServerInfo,
    literal_defaults: &HashMap<String, Vec<u8>>,
) -> Result<TablePlan, SchemaError> {
    let table = format!("{}.{}", route.database, route.table);
    let with_defaults = server.supports_row_binary_with_defaults
        && columns
            .iter()
            .any(|c| c.default_kind.insertable() && c.default_kind != DefaultKind::None);
    // CSV/TSV: the columns a line's fields fill, in order.
    let positions: Vec<String> = match &route.columns {
        Some(list) => list.clone(),
        None => columns
            .iter()
            .filter(|c| c.default_kind.insertable() && meta_for(&c.name, &route.metadata).is_none())
            .map(|c| c.name.clone())
            .collect(),
    };
    let mut plans = Vec::new();
    let mut names = Vec::new();
    let mut types = Vec::new();
    let mut lines = Vec::new();
    let mut computed = Vec::new();
    for c in columns {
        let expr = c.default_expression.as_deref().unwrap_or("");
        if !c.default_kind.insertable() {
            let kind = match &c.default_kind {
                DefaultKind::Materialized => "MATERIALIZED",
                DefaultKind::Alias => "ALIAS",
                DefaultKind::Other(k) => k.as_str(),
                _ => "",
            };
            computed.push(format!("{} ({kind} {expr})", c.name));
            continue;
        }
        let ty = ChType::parse(&c.type_name)
            .map_err(|cause| SchemaError::Type {
                table: table.clone(),
                column: c.name.clone(),
                cause,
            })?
            .with_server_time_zone(server.time_zone);
        if route.format.is_delimited() && ty.contains_dynamic() {
            return Err(SchemaError::DynamicFromText {
                table,
                column: c.name.clone(),
                ty: c.type_name.clone(),
            });
        }
        if ty.contains_json() && !server.knows_setting(crate::clickhouse::JSON_AS_TEXT) {
            return Err(SchemaError::JsonAsText {
                table,
                column: c.name.clone(),
                ty: c.type_name.clone(),
                version: server.version_string.clone(),
            });
        }
        let (source, source_text) = match meta_for(&c.name, &route.metadata) {
            Some(m @ (MetaField::Op | MetaField::Deleted)) => (
                ColumnSource::Meta(m),
                format!("change event {m:?}").to_lowercase(),
            ),
            Some(
                m @ (MetaField::EventTime
                | MetaField::SourceTime
                | MetaField::SourceDb
                | MetaField::SourceTable),
            ) => (ColumnSource::Meta(m), m.name().to_string()),
            Some(m) => (ColumnSource::Meta(m), format!("kafka {m:?}").to_lowercase()),
            None => (
                ColumnSource::Field(c.name.clone()),
                match route.format {
                    Format::Json | Format::JsonSchema => format!("json field {:?}", c.name),
                    Format::Avro => format!("avro field {:?}", c.name),
                    Format::Protobuf => format!("protobuf field {:?}", c.name),
                    Format::Raw => "none (a raw message has no fields)".to_string(),
                    Format::Csv | Format::Tsv => {
                        let kind = if route.format == Format::Csv {
                            "csv"
                        } else {
                            "tsv"
                        };
                        match positions.iter().position(|p| *p == c.name) {
                            Some(p) => format!("{kind} field {}", p + 1),
                            None => "none (not in the route's columns)".to_string(),
                        }
                    }
                },
            ),
        };
        let (on_missing, missing_text) = if c.default_kind == DefaultKind::Default {
            if with_defaults {
                (OnMissing::ServerDefault, format!("DEFAULT {expr}"))
            } else if let Some(bytes) = literal_defaults.get(&c.name) {
                (
                    OnMissing::Bytes(bytes.clone()),
                    format!("DEFAULT {expr} (evaluated once at start)"),
                )
            } else {
                (
                    OnMissing::Error,
                    format!(
                        "error: DEFAULT {expr} cannot be applied by this server version (no RowBinaryWithDefaults)"
                    ),
                )
            }
        } else if ty.is_nullable() {
            (OnMissing::Null, "NULL".to_string())
        } else {
            // sluice's own bytes even where the server would fill the column: asked for the
            // "default" of a column without a DEFAULT, RowBinaryWithDefaults stores raw zeros,
            // which for an Enum without a 0 is no value of it, and every later SELECT of the
            // table fails on it (UNKNOWN_ELEMENT_OF_ENUM; seen on 26.9).
            (
                OnMissing::Bytes(zero_value(&ty)),
                "type default".to_string(),
            )
        };
        let source_text = match route.date_time_formats.get(&c.name) {
            Some(f) => format!("{source_text}, written as {f}"),
            None => source_text,
        };
        lines.push(ColumnLine {
            column: c.name.clone(),
            ty: c.type_name.clone(),
            source: source_text,
            when_missing: missing_text,
        });
        names.push(c.name.clone());
        types.push(c.type_name.clone());
        plans.push(ColumnPlan {
            name: c.name.clone(),
            ty,
            source,
            on_missing,
        });
    }
    if plans.is_empty() {
        return Err(SchemaError::NoColumns { table });
    }
    if route.format == Format::Raw
        && !plans
            .iter()
            .any(|p| p.source == ColumnSource::Meta(MetaField::Value))
    {
        return Err(SchemaError::NoValueColumn {
            table,
            column: route.metadata.value.clone().unwrap_or_default(),
        });
    }
    let unknown = match route.unknown_fields {
        UnknownFields::Ignore => JsonUnknownFields::Ignore,
        UnknownFields::Error => JsonUnknownFields::Error,
        UnknownFields::Add => JsonUnknownFields::Add,
    };
    let mut plan =
        RowPlan::new(plans, unknown, with_defaults).map_err(|cause| SchemaError::Plan {
            table: table.clone(),
            cause,
        })?;
    let not_sent: Vec<String> = columns
        .iter()
        .filter(|c| !c.default_kind.insertable())
        .map(|c| c.name.clone())
        .collect();
    plan.set_other_columns(&not_sent);
    plan.set_time_formats(&route.date_time_formats)
        .map_err(|cause| SchemaError::Plan {
            table: table.clone(),
            cause,
        })?;
    if route.format.is_delimited() {
        if positions.is_empty() {
            return Err(SchemaError::NoTextColumns { table });
        }
        plan.set_positions(&positions)
            .map_err(|cause| SchemaError::Plan { table, cause })?;
    }
    // The type check comes with the header format only; a table that needs the server's
    // DEFAULTs for missing fields is inserted without it (there is no format with both).
    let (format, header) = if with_defaults {
        (InsertFormat::RowBinaryWithDefaults, Bytes::new())
    } else if server.supports_typed_header {
        let header = typed_header(&names, &types);
        (InsertFormat::RowBinaryWithNamesAndTypes, header)
    } else {
        (InsertFormat::RowBinary, Bytes::new())
    };
    Ok(TablePlan {
        plan,
        columns: names,
        format,
        header,
        lines,
        computed,
    })
}

/// The RowBinary encoding of a type's default value (what ClickHouse stores for an omitted
/// field of a column without DEFAULT expression).
pub fn zero_value(ty: &ChType) -> Vec<u8> {
    let mut out = Vec::new();
    write_zero(ty, &mut out);
    out
}

/// 1900-01-01 in days since 1970-01-01: 70 years, 17 of them leap years.
const DATE32_DEFAULT_DAYS: i32 = -(70 * 365 + 17);

fn write_zero(ty: &ChType, out: &mut Vec<u8>) {
    let zeros = |out: &mut Vec<u8>, n: usize| out.extend(std::iter::repeat_n(0u8, n));
    match ty {
        ChType::UInt8 | ChType::Int8 | ChType::Bool => zeros(out, 1),
        ChType::UInt16 | ChType::Int16 | ChType::Date | ChType::BFloat16 => zeros(out, 2),
        ChType::UInt32 | ChType::Int32 | ChType::Float32 | ChType::IPv4 | ChType::Time => {
            zeros(out, 4)
        }
        // ClickHouse's default Date32 is its first day, 1900-01-01, not 1970-01-01.
        ChType::Date32 => out.extend_from_slice(&DATE32_DEFAULT_DAYS.to_le_bytes()),
        ChType::DateTime { .. } => zeros(out, 4),
        ChType::UInt64
        | ChType::Int64
        | ChType::Float64
        | ChType::DateTime64 { .. }
        | ChType::Time64 { .. } => zeros(out, 8),
        ChType::UInt128 | ChType::Int128 | ChType::Uuid | ChType::IPv6 => zeros(out, 16),
        ChType::UInt256 | ChType::Int256 => zeros(out, 32),
        ChType::Decimal { precision, .. } => zeros(
            out,
            match precision {
                0..=9 => 4,
                10..=18 => 8,
                19..=38 => 16,
                _ => 32,
            },
        ),
        ChType::String | ChType::Array(_) | ChType::Map(_, _) => out.push(0),
        // Sent as text (see `ChType::Json`): the empty object, what ClickHouse stores.
        ChType::Json(_) => out.extend_from_slice(b"\x02{}"),
        ChType::Geo(_, storage) | ChType::Nested(storage) => write_zero(storage, out),
        // NULL, the Variant's default.
        ChType::Variant { .. } => out.push(crate::encode::rowbinary::VARIANT_NULL),
        // NULL, the Dynamic's default: the type Nothing and no value.
        ChType::Dynamic { .. } => out.push(crate::encode::rowbinary::DYNAMIC_NULL),
        // N zeros, ClickHouse's default vector.
        ChType::QBit { array, n } => {
            crate::encode::rowbinary::put_count(out, *n as usize);
            if let ChType::Array(t) = &**array {
                for _ in 0..*n {
                    write_zero(t, out);
                }
            }
        }
        ChType::FixedString(n) => zeros(out, *n),
        // An Enum's default is its smallest value, as ClickHouse's (`defaultValueOfTypeName`
        // of Enum8('x' = 5, 'y' = -3) is 'y').
        ChType::Enum8(values) => out.push(values.iter().map(|(_, v)| *v).min().unwrap_or(0) as u8),
        ChType::Enum16(values) => out.extend_from_slice(
            &values
                .iter()
                .map(|(_, v)| *v)
                .min()
                .unwrap_or(0)
                .to_le_bytes(),
        ),
        ChType::Nullable(_) => out.push(1),
        ChType::LowCardinality(inner) => write_zero(inner, out),
        ChType::Tuple(items) => {
            for (_, t) in items {
                write_zero(t, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clickhouse::Version;

    fn column(name: &str, ty: &str, kind: DefaultKind, expr: Option<&str>) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            type_name: ty.into(),
            default_kind: kind,
            default_expression: expr.map(Into::into),
        }
    }

    fn route() -> Route {
        let cfg = crate::config::from_str(
            "[kafka]\nbrokers = \"k:9092\"\ngroup_id = \"g\"\n\
             [clickhouse]\nurl = \"http://c:8123\"\n\
             [[route]]\ntopic = \"t\"\ntable = \"x\"\n",
            Vec::new(),
        )
        .expect("config");
        cfg.routes[0].clone()
    }

    #[test]
    fn server_defaults_are_asked_for_only_when_a_column_has_an_expression() {
        let modern = ServerInfo::from_version(Version::new(26, 9, 2), "26.9.2.1");
        let plain = [
            column("id", "UInt64", DefaultKind::None, None),
            column("s", "String", DefaultKind::None, None),
            column("m", "UInt32", DefaultKind::Materialized, Some("1")),
        ];
        let p = plan_table(&route(), &plain, &modern, &HashMap::new()).expect("plan");
        assert_eq!(p.format, InsertFormat::RowBinaryWithNamesAndTypes);
        assert_eq!(p.columns, ["id", "s"]);
        // 2 columns; "id", "s"; "UInt64", "String" (the MATERIALIZED one is not sent).
        assert_eq!(&p.header[..], b"\x02\x02id\x01s\x06UInt64\x06String");
        // A missing field is written by sluice as the type default: {} -> 0, "".
        let mut row = Vec::new();
        crate::decode::json::encode_json_row(&p.plan, b"{}", &META, &mut row).expect("row");
        assert_eq!(row, [0, 0, 0, 0, 0, 0, 0, 0, 0]);

        let mut with_default = plain.to_vec();
        with_default.push(column("d", "DateTime", DefaultKind::Default, Some("now()")));
        let p = plan_table(&route(), &with_default, &modern, &HashMap::new()).expect("plan");
        assert_eq!(p.format, InsertFormat::RowBinaryWithDefaults);
        assert!(p.header.is_empty());

        let old = ServerInfo::from_version(Version::new(18, 16, 1), "18.16.1");
        let p = plan_table(&route(), &plain, &old, &HashMap::new()).expect("plan");
        assert_eq!(p.format, InsertFormat::RowBinary);
        assert!(p.header.is_empty());
    }

    #[test]
    fn raw_routes_write_the_value_unparsed_and_defaults_elsewhere() {
        let modern = ServerInfo::from_version(Version::new(26, 9, 2), "26.9.2.1");
        let mut raw = route();
        raw.format = Format::Raw;
        let cols = [
            column("_value", "String", DefaultKind::None, None),
            column("_offset", "UInt64", DefaultKind::None, None),
            column("n", "UInt16", DefaultKind::None, None),
            column("note", "Nullable(String)", DefaultKind::None, None),
        ];
        let p = plan_table(&raw, &cols, &modern, &HashMap::new()).expect("plan");
        assert_eq!(p.lines[0].source, "kafka value");
        assert_eq!(p.lines[2].source, "none (a raw message has no fields)");
        // Any bytes, JSON or not, valid UTF-8 or not, go in as they are.
        let payload: &[u8] = b"{\"n\":7} \xff\x00 not parsed";
        let meta = crate::decode::json::MessageMeta {
            offset: 9,
            value: Some(payload),
            ..META
        };
        let mut row = Vec::new();
        crate::decode::json::encode_meta_row(&p.plan, &meta, &mut row).expect("row");
        let mut want = vec![payload.len() as u8];
        want.extend_from_slice(payload);
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(&[0, 0, 1]); // n: the type default; note: NULL
        assert_eq!(row, want);

        // A value too long for its FixedString column is an error for that message, naming
        // the column, and leaves nothing of the row behind.
        let fixed = [column("_value", "FixedString(4)", DefaultKind::None, None)];
        let p = plan_table(&raw, &fixed, &modern, &HashMap::new()).expect("plan");
        let mut row = vec![0xaa];
        let e = crate::decode::json::encode_meta_row(&p.plan, &meta, &mut row).unwrap_err();
        assert!(
            e.to_string()
                .contains("Kafka value -> column _value FixedString(4)"),
            "{e}"
        );
        assert_eq!(row, [0xaa]);

        // Without the value column the route cannot start, and says which column it wants.
        let e = plan_table(&raw, &cols[1..], &modern, &HashMap::new())
            .err()
            .expect("no value column");
        assert!(e.to_string().contains("no column _value"), "{e}");
        // A value column of a type that cannot hold bytes is refused too.
        let e = plan_table(
            &raw,
            &[column("_value", "UInt64", DefaultKind::None, None)],
            &modern,
            &HashMap::new(),
        )
        .err()
        .expect("UInt64 value column");
        assert!(e.to_string().contains("_value"), "{e}");
    }

    #[test]
    fn csv_and_tsv_fields_fill_columns_by_position() {
        use crate::decode::json::encode_text_row;
        use crate::decode::text::{Delimited, Line};
        let modern = ServerInfo::from_version(Version::new(26, 9, 2), "26.9.2.1");
        let mut csv = route();
        csv.format = Format::Csv;
        let cols = [
            column("id", "UInt32", DefaultKind::None, None),
            column("_offset", "UInt64", DefaultKind::None, None),
            column("name", "String", DefaultKind::None, None),
            column("score", "Nullable(Int16)", DefaultKind::None, None),
            column("ok", "Bool", DefaultKind::None, None),
        ];
        let p = plan_table(&csv, &cols, &modern, &HashMap::new()).expect("plan");
        assert_eq!(p.lines[0].source, "csv field 1");
        assert_eq!(p.lines[1].source, "kafka offset");
        assert_eq!(p.lines[3].source, "csv field 3");
        let meta = crate::decode::json::MessageMeta { offset: 5, ..META };
        let row = |p: &TablePlan, d: Delimited, msg: &str| {
            let mut line = Line::new();
            line.split(d, msg.as_bytes())
                .map_err(|e| e.reason.to_string())?;
            let mut out = vec![0xaa];
            encode_text_row(&p.plan, &line, &meta, &mut out).map_err(|e| e.to_string())?;
            Ok::<_, String>(out[1..].to_vec())
        };
        let mut want = 7u32.to_le_bytes().to_vec();
        want.extend_from_slice(&5u64.to_le_bytes());
        want.extend_from_slice(b"\x04a,\"b");
        want.extend_from_slice(&[1, 1]); // score NULL, ok true
        assert_eq!(
            row(&p, Delimited::Csv, "7,\"a,\"\"b\",\\N,true\n"),
            Ok(want.clone())
        );
        // Empty fields: the missing value (type default here), but '' into a String.
        let mut empty = 0u32.to_le_bytes().to_vec();
        empty.extend_from_slice(&5u64.to_le_bytes());
        empty.extend_from_slice(&[0, 1, 0]);
        assert_eq!(row(&p, Delimited::Csv, ",,,"), Ok(empty));
        let e = row(&p, Delimited::Csv, "7,a,1").unwrap_err();
        assert_eq!(e, "3 fields, the route reads 4 (one a column, in order)");
        let e = row(&p, Delimited::Csv, "7,a,99999,true").unwrap_err();
        assert!(
            e.contains("field 3 (score) -> column score Nullable(Int16)"),
            "{e}"
        );
        let e = row(&p, Delimited::Csv, "x7,a,1,true").unwrap_err();
        assert!(
            e.contains("field 1 (id)") && e.contains("not an integer"),
            "{e}"
        );

        // TSV with the route's own order and a column left out (its default).
        let mut tsv = route();
        tsv.format = Format::Tsv;
        tsv.columns = Some(vec!["ok".into(), "id".into()]);
        let p = plan_table(&tsv, &cols, &modern, &HashMap::new()).expect("plan");
        assert_eq!(p.lines[2].source, "none (not in the route's columns)");
        let mut want = 9u32.to_le_bytes().to_vec();
        want.extend_from_slice(&5u64.to_le_bytes());
        want.extend_from_slice(&[0, 1, 0]); // name '', score NULL, ok false
        assert_eq!(row(&p, Delimited::Tsv, "false\t9"), Ok(want));

        // Columns a line cannot fill are refused before anything runs.
        tsv.columns = Some(vec!["ok".into(), "_offset".into()]);
        let e = plan_table(&tsv, &cols, &modern, &HashMap::new())
            .err()
            .expect("meta");
        assert!(
            e.to_string().contains("column _offset is not a column"),
            "{e}"
        );
        let e = plan_table(&csv, &cols[1..2], &modern, &HashMap::new())
            .err()
            .expect("meta only");
        assert!(
            e.to_string()
                .contains("no column that a csv or tsv field could fill"),
            "{e}"
        );

        // Arrays, maps and tuples in ClickHouse's text form.
        let composite = [
            column("tags", "Array(Nullable(String))", DefaultKind::None, None),
            column("m", "Map(String, UInt8)", DefaultKind::None, None),
            column("t", "Tuple(UInt8, String)", DefaultKind::None, None),
        ];
        let p = plan_table(&csv, &composite, &modern, &HashMap::new()).expect("plan");
        let got = row(&p, Delimited::Csv, "\"['a,b',NULL]\",{'k':7},\"(1, 'x')\"").unwrap();
        let want: &[u8] = b"\x02\x00\x03a,b\x01\x01\x01k\x07\x01\x01x";
        assert_eq!(got, want);
        let e = row(&p, Delimited::Csv, "['a'],{'k':300},\"(1,'x')\"").unwrap_err();
        assert!(
            e.contains("field 2 (m) -> column m Map(String, UInt8)"),
            "{e}"
        );
        let e = row(&p, Delimited::Csv, "[a],{},\"(1,'x')\"").unwrap_err();
        assert!(
            e.contains("not a number (quote strings") && e.contains("at byte 1"),
            "{e}"
        );
    }

    #[test]
    fn json_columns_need_a_server_that_reads_them_as_text() {
        let cols = [
            column("id", "UInt64", DefaultKind::None, None),
            column("j", "JSON(a UInt32)", DefaultKind::None, None),
        ];
        let modern = ServerInfo::from_version(Version::new(26, 9, 2), "26.9.2.1");
        let p = plan_table(&route(), &cols, &modern, &HashMap::new()).expect("plan");
        // The header names the type as the server prints it.
        assert_eq!(
            &p.header[..],
            b"\x02\x02id\x01j\x06UInt64\x0eJSON(a UInt32)"
        );
        // A missing field: the empty object.
        let mut row = Vec::new();
        crate::decode::json::encode_json_row(&p.plan, b"{}", &META, &mut row).expect("row");
        assert_eq!(row, b"\0\0\0\0\0\0\0\0\x02{}");
        // A CSV field holding an object (CSV-quoted) is its text.
        let mut csv = route();
        csv.format = Format::Csv;
        let p = plan_table(&csv, &cols, &modern, &HashMap::new()).expect("plan");
        use crate::decode::text::{Delimited, Line};
        let row_of = |p: &TablePlan, d: Delimited, msg: &str| {
            let mut line = Line::new();
            line.split(d, msg.as_bytes())
                .map_err(|e| e.reason.to_string())?;
            let mut out = Vec::new();
            crate::decode::json::encode_text_row(&p.plan, &line, &META, &mut out)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(out)
        };
        let got = row_of(&p, Delimited::Csv, "7,\"{\"\"a\"\": 1}\"").unwrap();
        assert_eq!(got, b"\x07\0\0\0\0\0\0\0\x08{\"a\": 1}");
        let e = row_of(&p, Delimited::Csv, "7,[1]").unwrap_err();
        assert!(
            e.contains("column j JSON(a UInt32)") && e.contains("is not a JSON object"),
            "{e}"
        );
        // A Dynamic column takes no CSV field: its type would be a guess.
        let dynamic = [
            column("id", "UInt64", DefaultKind::None, None),
            column("d", "Array(Dynamic)", DefaultKind::None, None),
        ];
        let e = plan_table(&csv, &dynamic, &modern, &HashMap::new())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("column d Array(Dynamic): a csv or tsv field has no type to infer"),
            "{e}"
        );
        assert!(plan_table(&route(), &dynamic, &modern, &HashMap::new()).is_ok());
        // 24.8 and 24.9 have the type, not the setting.
        let known = crate::clickhouse::version::SETTINGS_WE_SEND
            .iter()
            .filter(|s| **s != crate::clickhouse::JSON_AS_TEXT)
            .map(|s| s.to_string())
            .collect();
        let old = ServerInfo::from_version(Version::new(24, 9, 1), "24.9.1.1").refine(
            Some(known),
            None,
            None,
        );
        let e = plan_table(&route(), &cols, &old, &HashMap::new())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("column j JSON(a UInt32): this ClickHouse (24.9.1.1) cannot read JSON values as text"),
            "{e}"
        );
    }

    const META: crate::decode::json::MessageMeta<'static> = crate::decode::json::MessageMeta {
        topic: "t",
        partition: 0,
        offset: 0,
        timestamp_ms: None,
        key: None,
        headers: &[],
        value: None,
        op: None,
        source: crate::decode::json::EventSource::NONE,
    };

    #[test]
    fn zero_values() {
        assert_eq!(zero_value(&ChType::parse("UInt32").unwrap()), vec![0; 4]);
        assert_eq!(zero_value(&ChType::parse("String").unwrap()), vec![0]);
        assert_eq!(
            zero_value(&ChType::parse("Tuple(UInt8, Array(String))").unwrap()),
            vec![0, 0]
        );
        assert_eq!(
            zero_value(&ChType::parse("Enum8('a' = 3, 'b' = 1)").unwrap()),
            vec![1]
        );
        assert_eq!(
            zero_value(&ChType::parse("Decimal(20, 2)").unwrap()).len(),
            16
        );
        assert_eq!(
            zero_value(&ChType::parse("Date32").unwrap()),
            (-25_567i32).to_le_bytes()
        );
    }
}
