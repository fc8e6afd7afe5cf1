//! `[[route]]`: a topic (or pattern) to a table: format, delivery, batch limits, metadata
//! columns, envelopes, dead letters and the per-column date-time formats.

use super::*;

pub(super) fn metadata_name(v: &Option<String>, default: &str) -> Option<String> {
    match v {
        None => Some(default.to_string()),
        Some(s) if s.trim().is_empty() => None,
        Some(s) => Some(s.trim().to_string()),
    }
}

pub(in crate::config) fn validate_route(
    i: usize,
    r: &RawRoute,
    default_db: &str,
) -> Result<Route, ConfigError> {
    let f = |name: &str| format!("route[{i}].{name}");
    let Some(topic) = &r.topic else {
        return Err(err(f("topic"), "required (or topic_pattern)"));
    };
    let topic = topic_name(&f("topic"), topic)?;
    let table = non_empty(&f("table"), &r.table)?;
    let database = match &r.database {
        Some(d) => non_empty(&f("database"), d)?,
        None => default_db.to_string(),
    };
    const FORMATS: [Format; 7] = [
        Format::Json,
        Format::JsonSchema,
        Format::Avro,
        Format::Protobuf,
        Format::Raw,
        Format::Csv,
        Format::Tsv,
    ];
    let name = r.format.as_deref().unwrap_or("json");
    let Some(format) = FORMATS.into_iter().find(|k| k.as_str() == name) else {
        let names: Vec<&str> = FORMATS.iter().map(|k| k.as_str()).collect();
        return Err(err(
            f("format"),
            format!("unknown format {name:?}; supported: {}", names.join(", ")),
        ));
    };
    let delivery = match r.delivery.as_deref().unwrap_or("exactly-once") {
        "exactly-once" => Delivery::ExactlyOnce,
        "at-least-once" => Delivery::AtLeastOnce,
        "at-most-once" => Delivery::AtMostOnce,
        other => {
            return Err(err(
                f("delivery"),
                format!(
                    "{other:?} is not one of \"exactly-once\", \"at-least-once\", \"at-most-once\""
                ),
            ))
        }
    };
    let max_rows = match r.max_rows {
        Some(0) => return Err(err(f("max_rows"), "must be at least 1")),
        Some(n) => usize::try_from(n).map_err(|_| err(f("max_rows"), "too large"))?,
        None => DEFAULT_MAX_ROWS,
    };
    let max_bytes = match &r.max_bytes {
        Some(s) => parse_size(&f("max_bytes"), s)?,
        None => DEFAULT_MAX_BYTES,
    };
    if max_bytes < 1024 {
        return Err(err(f("max_bytes"), "must be at least 1KiB"));
    }
    let max_age = match &r.max_age {
        Some(s) => parse_duration(&f("max_age"), s)?,
        None => DEFAULT_MAX_AGE,
    };
    if max_age.is_zero() {
        return Err(err(f("max_age"), "must be greater than zero"));
    }
    let unknown_fields = match r.unknown_fields.as_deref().unwrap_or("ignore") {
        "ignore" => UnknownFields::Ignore,
        "error" => UnknownFields::Error,
        "add"
            if matches!(
                format,
                Format::Json | Format::JsonSchema | Format::Avro | Format::Protobuf
            ) =>
        {
            UnknownFields::Add
        }
        "add" => return Err(err(
            f("unknown_fields"),
            "\"add\" adds columns for the fields of json, json-schema, avro and protobuf routes",
        )),
        other => {
            return Err(err(
                f("unknown_fields"),
                format!("{other:?} is not one of \"ignore\", \"error\", \"add\""),
            ))
        }
    };
    let bad_messages = match r.on_bad_message.as_deref().unwrap_or("dead-letter") {
        "dead-letter" => BadMessages::DeadLetter {
            topic: match &r.dead_letter_topic {
                Some(t) => topic_name(&f("dead_letter_topic"), t)?,
                None => {
                    let dlq = format!("{topic}.dlq");
                    topic_name::check(&dlq).map_err(|e| {
                        err(
                            f("dead_letter_topic"),
                            format!("the default {dlq:?} is not a legal name ({e}); set one"),
                        )
                    })?;
                    dlq
                }
            },
        },
        "dead-letter-table" => {
            if r.dead_letter_topic.is_some() {
                return Err(err(
                    f("dead_letter_topic"),
                    "set, but on_bad_message = \"dead-letter-table\" writes to dead_letter_table",
                ));
            }
            let (dl_database, dl_table) = match r.dead_letter_table.as_deref() {
                None => (database.clone(), format!("{table}_dead_letters")),
                Some(name) => match name.split_once('.') {
                    Some((d, t)) if !d.is_empty() && !t.is_empty() && !t.contains('.') => {
                        (d.to_string(), t.to_string())
                    }
                    None if !name.is_empty() => (database.clone(), name.to_string()),
                    _ => {
                        return Err(err(
                            f("dead_letter_table"),
                            format!("{name:?} is not `table` or `database.table`"),
                        ))
                    }
                },
            };
            if dl_database == database && dl_table == table {
                return Err(err(
                    f("dead_letter_table"),
                    "must differ from the route's own table",
                ));
            }
            BadMessages::DeadLetterTable {
                database: dl_database,
                table: dl_table,
            }
        }
        "drop" => {
            if r.dead_letter_topic.is_some() {
                return Err(err(
                    f("dead_letter_topic"),
                    "set, but on_bad_message = \"drop\" sends nothing there",
                ));
            }
            BadMessages::Drop
        }
        other => {
            return Err(err(
                f("on_bad_message"),
                format!("{other:?} is not one of \"dead-letter\", \"dead-letter-table\", \"drop\""),
            ))
        }
    };
    if r.dead_letter_table.is_some() && !matches!(bad_messages, BadMessages::DeadLetterTable { .. })
    {
        return Err(err(
            f("dead_letter_table"),
            "set, but only on_bad_message = \"dead-letter-table\" writes there",
        ));
    }
    if let BadMessages::DeadLetter { topic: dlq } = &bad_messages {
        if *dlq == topic {
            return Err(err(
                f("dead_letter_topic"),
                "must differ from the route's own topic",
            ));
        }
    }
    let m = &r.metadata;
    let metadata = MetadataColumns {
        topic: metadata_name(&m.topic, "_topic"),
        partition: metadata_name(&m.partition, "_partition"),
        offset: metadata_name(&m.offset, "_offset"),
        timestamp: metadata_name(&m.timestamp, "_timestamp"),
        key: metadata_name(&m.key, "_key"),
        headers: metadata_name(&m.headers, "_headers"),
        value: metadata_name(&m.value, "_value"),
        op: None,
        deleted: None,
        ts_ms: None,
        source_ts_ms: None,
        db: None,
        table: None,
    };
    let envelope = match r.envelope.as_deref() {
        None | Some("none") => Envelope::None,
        Some("debezium")
            if matches!(
                format,
                Format::Json | Format::JsonSchema | Format::Avro | Format::Protobuf
            ) =>
        {
            Envelope::Debezium
        }
        Some("debezium") => {
            return Err(err(
                f("envelope"),
                "\"debezium\" reads change events in JSON, JSON Schema, Avro or Protobuf, \
                 not in this format",
            ))
        }
        Some(name @ ("maxwell" | "canal")) if format == Format::Json => {
            if name == "maxwell" {
                Envelope::Maxwell
            } else {
                Envelope::Canal
            }
        }
        Some(name @ ("maxwell" | "canal")) => {
            return Err(err(
                f("envelope"),
                format!("{name:?} reads JSON change events: it needs format = \"json\""),
            ))
        }
        Some(other) => {
            return Err(err(
                f("envelope"),
                format!("{other:?} is not one of \"none\", \"debezium\", \"maxwell\", \"canal\""),
            ))
        }
    };
    let metadata = match envelope {
        Envelope::Debezium | Envelope::Maxwell | Envelope::Canal => MetadataColumns {
            op: metadata_name(&m.op, "__op"),
            deleted: metadata_name(&m.deleted, "__deleted"),
            // The names Kafka Connect's ExtractNewRecordState gives them (`add.fields`).
            ts_ms: metadata_name(&m.ts_ms, "__ts_ms"),
            source_ts_ms: metadata_name(&m.source_ts_ms, "__source_ts_ms"),
            db: metadata_name(&m.db, "__db"),
            table: metadata_name(&m.table, "__table"),
            ..metadata
        },
        Envelope::None => {
            let event = [
                &m.op,
                &m.deleted,
                &m.ts_ms,
                &m.source_ts_ms,
                &m.db,
                &m.table,
            ];
            if event.iter().any(|v| v.is_some()) {
                return Err(err(
                    f("metadata"),
                    "op, deleted, ts_ms, source_ts_ms, db and table are a change event's: they need an envelope (\"debezium\", \"maxwell\" or \"canal\")",
                ));
            }
            metadata
        }
    };
    if format == Format::Raw && metadata.value.is_none() {
        return Err(err(
            f("metadata.value"),
            "a raw route stores each message value in this column; it cannot be switched off",
        ));
    }
    if !matches!(
        format,
        Format::Json | Format::JsonSchema | Format::Avro | Format::Protobuf
    ) && r.unknown_fields.is_some()
    {
        return Err(err(
            f("unknown_fields"),
            "applies to the fields of JSON, Avro and Protobuf messages by name; a raw route parses no fields, and a csv or tsv line must have exactly one field per column",
        ));
    }
    if format != Format::JsonSchema && r.validate.is_some() {
        return Err(err(
            f("validate"),
            "checks documents against their JSON Schema: it applies to format = \"json-schema\" routes only",
        ));
    }
    let columns = match &r.columns {
        None => None,
        Some(_) if !format.is_delimited() => return Err(err(
            f("columns"),
            "names the columns of csv and tsv fields, by position; this route reads another format",
        )),
        Some(list) => {
            if list.is_empty() {
                return Err(err(f("columns"), "is empty: name at least one column"));
            }
            for (k, c) in list.iter().enumerate() {
                if c.trim().is_empty() {
                    return Err(err(f("columns"), format!("entry {k} is empty")));
                }
                if list[..k].contains(c) {
                    return Err(err(f("columns"), format!("{c:?} is named twice")));
                }
            }
            Some(list.clone())
        }
    };
    let mut date_time_formats = BTreeMap::new();
    for (column, text) in &r.date_time_formats {
        let parsed = TimeFormat::parse(text)
            .map_err(|why| err(f(&format!("date_time_formats.{column}")), why))?;
        date_time_formats.insert(column.clone(), parsed);
    }
    let skip_tombstones = match r.tombstones.as_deref().unwrap_or("dead-letter") {
        "dead-letter" => false,
        "skip" => true,
        other => {
            return Err(err(
                f("tombstones"),
                format!("{other:?} is not one of \"dead-letter\", \"skip\""),
            ))
        }
    };
    if format == Format::Raw && !date_time_formats.is_empty() {
        return Err(err(
            f("date_time_formats"),
            "a raw route parses no fields, so no column reads a date-time from one",
        ));
    }
    Ok(Route {
        topic,
        database,
        table,
        format,
        delivery,
        batch: BatchLimits {
            max_rows,
            max_bytes,
            max_age,
        },
        unknown_fields,
        validate: r.validate.unwrap_or(false),
        bad_messages,
        max_insert_retries: r.max_insert_retries.filter(|n| *n > 0),
        metadata,
        columns,
        date_time_formats,
        skip_tombstones,
        envelope,
    })
}
