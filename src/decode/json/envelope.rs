//! The change events of CDC tools, read as rows (`envelope` of a JSON route): Debezium's
//! (also the op code reader its Avro and Protobuf events share), Maxwell's and Canal's flat
//! messages.
//!
//! Every reader gives the event's operation as Debezium's code (`c` create, `r` snapshot
//! read, `u` update, `d` delete), so that `__op` and `__deleted` mean the same whatever
//! the tool, and its rows as slices of the message, read by the route's plan like any
//! message. An event that carries no row by design (DDL, a bootstrap or transaction
//! marker) is [`Change::NoRow`]: the lane skips and counts it. Anything else that is not
//! an event with its rows is the message's error, naming what is missing.

use super::{
    encode_json_row, show, ArrayIter, EventSource, Kind, MessageMeta, ObjectIter, RowError,
    RowPlan, Text, Val,
};

/// The row of a Debezium change event (`envelope = "debezium"`) and its operation: `after`
/// for a create (`c`), snapshot read (`r`) or update (`u`), `before` for a delete (`d`),
/// whether the event stands alone or inside the JSON converter's `{"schema", "payload"}`
/// wrapper. The row is a slice of `payload`, read by the route's plan like any message. A
/// truncate (`t`) or message (`m`) event, an operation without its image, or anything else
/// is an error naming what is missing. Also what the event says of its source and time
/// ([`EventSource`]; a value of another type than Debezium writes is left out).
pub fn debezium_row(payload: &[u8]) -> Result<(u8, &[u8], EventSource<'_>), RowError> {
    let bad = |reason: String| RowError::Envelope {
        envelope: "Debezium",
        reason,
    };
    let mut event = payload.trim_ascii();
    for wrapped in [false, true] {
        if event.first() != Some(&b'{') {
            return Err(if wrapped {
                bad("its \"payload\" is not an object".into())
            } else {
                RowError::NotAnObject { found: show(event) }
            });
        }
        let (mut op, mut before, mut after, mut schema, mut inner) =
            (None, None, None, false, None);
        let mut source = EventSource::NONE;
        let mut it = ObjectIter::new(event);
        while let Some((k, v)) = it.next_pair().map_err(|e| bad(e.reason))? {
            match k.raw {
                b"\"op\"" => op = Some(v),
                b"\"before\"" => before = Some(v),
                b"\"after\"" => after = Some(v),
                b"\"schema\"" => schema = true,
                b"\"payload\"" => inner = Some(v),
                b"\"ts_ms\"" => source.ts_ms = json_millis(v),
                b"\"source\"" if v.kind == Kind::Obj => {
                    let mut fields = ObjectIter::new(v.raw);
                    while let Some((k, v)) = fields.next_pair().map_err(|e| bad(e.reason))? {
                        let text = json_text(v);
                        match k.raw {
                            b"\"ts_ms\"" => source.source_ts_ms = json_millis(v),
                            b"\"db\"" => source.db = text,
                            b"\"table\"" => source.table = text,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if !ends_there(event, it.s.pos) {
            return Err(bad("trailing characters after the event".into()));
        }
        if let (None, true, Some(p), false) = (op, schema, inner, wrapped) {
            event = p.raw;
            continue;
        }
        // A string's text between its quotes; any other JSON value as it is, for the error.
        let op = op.map(|v| match v.kind {
            Kind::Str => v.raw.get(1..v.raw.len() - 1).unwrap_or_default(),
            _ => v.raw,
        });
        let (code, name) = debezium_operation(op)?;
        let image = if code == b'd' { before } else { after };
        return match image {
            Some(v) if v.kind == Kind::Obj => Ok((code, v.raw, source)),
            _ => Err(bad(format!(
                "op \"{}\" without its \"{name}\" object",
                code as char
            ))),
        };
    }
    Err(bad("nested \"payload\" wrappers".into()))
}

/// Whether nothing but whitespace follows the object that closes at `close` in `event`.
fn ends_there(event: &[u8], close: usize) -> bool {
    event
        .get(close + 1..)
        .unwrap_or_default()
        .iter()
        .all(u8::is_ascii_whitespace)
}

/// An integer JSON value (epoch milliseconds); `None` for anything else.
fn json_millis(v: Val<'_>) -> Option<i64> {
    match v.kind {
        Kind::Int => std::str::from_utf8(v.raw).ok()?.parse().ok(),
        _ => None,
    }
}

/// A Debezium change event's operation code and the image that holds its row: `after` for
/// a create (`c`), snapshot read (`r`) or update (`u`), `before` for a delete (`d`). A
/// truncate (`t`), a message (`m`), anything else or no operation at all is the event's
/// error. Every format's envelope reads its operation here, so all word it the same.
pub fn debezium_operation(op: Option<&[u8]>) -> Result<(u8, &'static str), RowError> {
    let bad = |reason: String| RowError::Envelope {
        envelope: "Debezium",
        reason,
    };
    match op {
        None => Err(bad("no \"op\" field (not a Debezium event?)".into())),
        Some(&[code @ (b'c' | b'r' | b'u')]) => Ok((code, "after")),
        Some(b"d") => Ok((b'd', "before")),
        Some(b"t") => Err(bad("a truncate (op \"t\") has no row".into())),
        Some(b"m") => Err(bad("a message (op \"m\") has no row".into())),
        Some(other) => Err(bad(format!("op {:?} is not c, r, u or d", show(other)))),
    }
}

/// What a Maxwell or Canal event gives.
#[derive(Debug)]
pub enum Change<'a> {
    /// Its rows, all with the same operation and source.
    Rows {
        op: u8,
        rows: ChangeRows<'a>,
        source: EventSource<'a>,
    },
    /// An event that carries no row by design: DDL, a bootstrap or transaction marker.
    NoRow,
}

/// The rows of a change event, in order: Maxwell's one `data` object, or each element of
/// Canal's `data` array (an element that is not an object is the message's error).
pub struct ChangeRows<'a> {
    one: Option<&'a [u8]>,
    many: Option<ArrayIter<'a>>,
}

impl std::fmt::Debug for ChangeRows<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.one.is_some() {
            "one row"
        } else {
            "rows of an array"
        })
    }
}

impl<'a> Iterator for ChangeRows<'a> {
    type Item = Result<&'a [u8], RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(row) = self.one.take() {
            return Some(Ok(row));
        }
        let bad = |reason: String| RowError::Envelope {
            envelope: "Canal",
            reason,
        };
        match self.many.as_mut()?.next_val() {
            Ok(None) => None,
            Ok(Some(v)) if v.kind == Kind::Obj => Some(Ok(v.raw)),
            Ok(Some(v)) => {
                self.many = None;
                Some(Err(bad(format!(
                    "an element of its \"data\" is {}, not a row object",
                    v.kind.describe()
                ))))
            }
            Err(e) => {
                self.many = None;
                Some(Err(bad(e.reason)))
            }
        }
    }
}

impl ChangeRows<'_> {
    /// Encodes every row with `plan` and `meta` (the event's op and source set) after `out`'s
    /// end, pushing where each ends onto `ends` (cleared first): the message's rows as one
    /// unit. On an error nothing of the message stays in `out`; a Canal row's error names
    /// the row, and fields to add first ([`RowError::NewFields`]) are passed on as they are.
    pub fn encode(
        self,
        plan: &RowPlan,
        meta: &MessageMeta<'_>,
        out: &mut Vec<u8>,
        ends: &mut Vec<usize>,
    ) -> Result<(), RowError> {
        let start = out.len();
        let many = self.many.is_some();
        ends.clear();
        for (i, row) in self.enumerate() {
            let done = row.and_then(|row| {
                encode_json_row(plan, row, meta, out).map_err(|e| match e {
                    RowError::NewFields { .. } => e,
                    e if many => RowError::Envelope {
                        envelope: "Canal",
                        reason: format!("row {} of its \"data\": {e}", i + 1),
                    },
                    e => e,
                })
            });
            if let Err(e) = done {
                out.truncate(start);
                return Err(e);
            }
            ends.push(out.len());
        }
        Ok(())
    }
}

/// A string value as a change event's text (quotes and escapes as written, unescaped when
/// written); `None` for another kind, which the metadata column then does without.
fn json_text(v: Val<'_>) -> Option<Text<'_>> {
    matches!(v.kind, Kind::Str | Kind::StrEsc).then_some(Text::Json(v.raw))
}

/// A string value's text between its quotes (escapes as written); `None` for another kind.
fn string_of(v: Val<'_>) -> Option<&[u8]> {
    matches!(v.kind, Kind::Str | Kind::StrEsc).then(|| v.inner())
}

/// The fields of a top-level event object, each passed to `field`; then checks that nothing
/// but whitespace follows the object.
fn each_field<'a>(
    envelope: &'static str,
    payload: &'a [u8],
    mut field: impl FnMut(&'a [u8], Val<'a>),
) -> Result<(), RowError> {
    let event = payload.trim_ascii();
    if event.first() != Some(&b'{') {
        return Err(RowError::NotAnObject { found: show(event) });
    }
    let bad = |reason: String| RowError::Envelope { envelope, reason };
    let mut it = ObjectIter::new(event);
    while let Some((k, v)) = it.next_pair().map_err(|e| bad(e.reason))? {
        field(k.raw, v);
    }
    if !ends_there(event, it.s.pos) {
        return Err(bad("trailing characters after the event".into()));
    }
    Ok(())
}

/// The text of an event's `type` field, which must be a string; `what`: what an event
/// without one is not, for the error.
fn event_type<'a>(
    envelope: &'static str,
    kind: Option<Val<'a>>,
    what: &str,
) -> Result<&'a [u8], RowError> {
    let bad = |reason: String| RowError::Envelope { envelope, reason };
    match kind {
        None => Err(bad(format!("no \"type\" field (not {what}?)"))),
        Some(v) => string_of(v).ok_or_else(|| {
            bad(format!(
                "its \"type\" is {}, not a string",
                v.kind.describe()
            ))
        }),
    }
}

/// Maxwell's event types that carry no row: DDL (with `output_ddl`) and the markers around
/// a bootstrap.
const MAXWELL_NO_ROW: [&[u8]; 8] = [
    b"bootstrap-start",
    b"bootstrap-complete",
    b"database-create",
    b"database-alter",
    b"database-drop",
    b"table-create",
    b"table-alter",
    b"table-drop",
];

/// The row of a Maxwell event (`envelope = "maxwell"`): its `data` object, for `insert`
/// (`c`), `bootstrap-insert` (`r`, as Debezium's snapshot read), `update` (`u`, the new
/// values) and `delete` (`d`, the deleted row). Its source: `database`, `table`, and `ts`
/// (seconds, when the change was committed) as `source_ts_ms`. DDL and bootstrap markers
/// are [`Change::NoRow`].
pub fn maxwell_row(payload: &[u8]) -> Result<Change<'_>, RowError> {
    let bad = |reason: String| RowError::Envelope {
        envelope: "Maxwell",
        reason,
    };
    let (mut kind, mut data) = (None, None);
    let mut source = EventSource::NONE;
    each_field("Maxwell", payload, |k, v| match k {
        b"\"type\"" => kind = Some(v),
        b"\"data\"" => data = Some(v),
        b"\"database\"" => source.db = json_text(v),
        b"\"table\"" => source.table = json_text(v),
        b"\"ts\"" => source.source_ts_ms = json_millis(v).and_then(|s| s.checked_mul(1000)),
        _ => {}
    })?;
    let kind = event_type("Maxwell", kind, "a Maxwell event")?;
    let op = match kind {
        b"insert" => b'c',
        b"bootstrap-insert" => b'r',
        b"update" => b'u',
        b"delete" => b'd',
        k if MAXWELL_NO_ROW.contains(&k) => return Ok(Change::NoRow),
        k => {
            return Err(bad(format!(
                "type {:?} is not insert, update, delete, bootstrap-insert, a bootstrap \
                 marker or DDL",
                show(k)
            )))
        }
    };
    match data {
        Some(v) if v.kind == Kind::Obj => Ok(Change::Rows {
            op,
            rows: ChangeRows {
                one: Some(v.raw),
                many: None,
            },
            source,
        }),
        _ => Err(bad(format!(
            "type {:?} without its \"data\" object",
            show(kind)
        ))),
    }
}

/// Canal's event types that carry no row: DDL (also flagged by `isDdl`), transaction and
/// GTID markers, heartbeats.
const CANAL_NO_ROW: [&[u8]; 12] = [
    b"CREATE",
    b"ALTER",
    b"ERASE",
    b"QUERY",
    b"TRUNCATE",
    b"RENAME",
    b"CINDEX",
    b"DINDEX",
    b"GTID",
    b"XACOMMIT",
    b"XAROLLBACK",
    b"MHEARTBEAT",
];

/// The rows of a Canal flat message (`envelope = "canal"`, `canal.mq.flatMessage = true`):
/// each object of its `data` array, for `INSERT` (`c`), `UPDATE` (`u`, the new values) and
/// `DELETE` (`d`, the deleted rows). Its source: `database`, `table`, `es` (when the change
/// was executed, epoch ms) as `source_ts_ms` and `ts` (when Canal sent it) as `ts_ms`.
/// Canal writes every value as a string: the columns read numbers and dates from strings as
/// they do on any JSON route. DDL (`isDdl: true`) and markers are [`Change::NoRow`].
pub fn canal_rows(payload: &[u8]) -> Result<Change<'_>, RowError> {
    let bad = |reason: String| RowError::Envelope {
        envelope: "Canal",
        reason,
    };
    let (mut kind, mut data, mut ddl) = (None, None, false);
    let mut source = EventSource::NONE;
    each_field("Canal", payload, |k, v| match k {
        b"\"type\"" => kind = Some(v),
        b"\"data\"" => data = Some(v),
        b"\"isDdl\"" => ddl = v.kind == Kind::True,
        b"\"database\"" => source.db = json_text(v),
        b"\"table\"" => source.table = json_text(v),
        b"\"es\"" => source.source_ts_ms = json_millis(v),
        b"\"ts\"" => source.ts_ms = json_millis(v),
        _ => {}
    })?;
    if ddl {
        return Ok(Change::NoRow);
    }
    let kind = event_type("Canal", kind, "a Canal flat message")?;
    let op = match kind {
        b"INSERT" => b'c',
        b"UPDATE" => b'u',
        b"DELETE" => b'd',
        k if CANAL_NO_ROW.contains(&k) => return Ok(Change::NoRow),
        k => {
            return Err(bad(format!(
                "type {:?} is not INSERT, UPDATE, DELETE, DDL or a marker",
                show(k)
            )))
        }
    };
    match data {
        // `[]`: a statement that changed no row carries none; an error, not a skip, since
        // Canal never sends one and a message that claims a change should hold it.
        Some(v)
            if v.kind == Kind::Arr
                && v.raw
                    .get(1..)
                    .unwrap_or_default()
                    .trim_ascii_start()
                    .first()
                    != Some(&b']') =>
        {
            Ok(Change::Rows {
                op,
                rows: ChangeRows {
                    one: None,
                    many: Some(ArrayIter::new(v.raw)),
                },
                source,
            })
        }
        _ => Err(bad(format!(
            "type {:?} without rows in its \"data\" array",
            show(kind)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of a change as text, with its op code and source.
    fn rows(change: Change<'_>) -> (char, Vec<String>, EventSource<'_>) {
        match change {
            Change::Rows { op, rows, source } => (
                op as char,
                rows.map(|r| String::from_utf8_lossy(r.unwrap()).into_owned())
                    .collect(),
                source,
            ),
            Change::NoRow => panic!("expected rows"),
        }
    }

    fn reason(e: RowError) -> String {
        e.to_string()
    }

    #[test]
    fn maxwell_events_give_their_data_with_op_and_source() {
        for (event, op) in [
            (
                r#"{"database":"shop","table":"orders","type":"insert","ts":1449786310,"xid":940752,"commit":true,"data":{"id":1,"name":"a"}}"#,
                'c',
            ),
            (
                r#"{"database":"shop","table":"orders","type":"update","ts":1449786310,"data":{"id":1,"name":"b"},"old":{"name":"a"}}"#,
                'u',
            ),
            (
                r#" {"database":"shop","table":"orders","type":"delete","ts":1449786310,"data":{"id":1,"name":"b"}} "#,
                'd',
            ),
            (
                r#"{"database":"shop","table":"orders","type":"bootstrap-insert","ts":1449786310,"data":{"id":1,"name":"b"}}"#,
                'r',
            ),
        ] {
            let (code, rows, source) = rows(maxwell_row(event.as_bytes()).unwrap());
            assert_eq!(code, op, "{event}");
            assert_eq!(rows.len(), 1);
            assert!(rows[0].starts_with(r#"{"id":1,"name":""#), "{rows:?}");
            assert_eq!(source.source_ts_ms, Some(1_449_786_310_000));
            assert_eq!(source.ts_ms, None);
            assert_eq!(source.db, Some(Text::Json(br#""shop""#)));
            assert_eq!(source.table, Some(Text::Json(br#""orders""#)));
        }
        for rowless in [
            r#"{"database":"shop","table":"orders","type":"bootstrap-start","ts":1,"data":{}}"#,
            r#"{"database":"shop","table":"orders","type":"bootstrap-complete","ts":1,"data":{}}"#,
            r#"{"type":"table-alter","database":"shop","table":"orders","old":{},"def":{},"sql":"ALTER TABLE orders ADD x INT"}"#,
            r#"{"type":"database-create","database":"shop","sql":"CREATE DATABASE shop"}"#,
        ] {
            assert!(
                matches!(maxwell_row(rowless.as_bytes()), Ok(Change::NoRow)),
                "{rowless}"
            );
        }
        for (event, says) in [
            (
                r#"{"database":"shop","data":{"id":1}}"#,
                r#"Maxwell change event: no "type" field"#,
            ),
            (
                r#"{"type":"insert","ts":1}"#,
                r#"Maxwell change event: type "insert" without its "data" object"#,
            ),
            (
                r#"{"type":"insert","data":[{"id":1}]}"#,
                r#"type "insert" without its "data" object"#,
            ),
            (
                r#"{"type":"upsert","data":{"id":1}}"#,
                r#"type "upsert" is not insert"#,
            ),
            (
                r#"{"type":1,"data":{"id":1}}"#,
                r#"its "type" is a number, not a string"#,
            ),
            (
                r#"{"type":"insert","data":{"id":1}} x"#,
                "trailing characters",
            ),
            (r#"{"type":"insert","data":{"id":1}"#, "malformed"),
            ("[1]", "not a JSON object"),
        ] {
            let e = reason(maxwell_row(event.as_bytes()).unwrap_err());
            assert!(e.contains(says), "{event}: {e}");
        }
        // A `ts` that is not an integer is left out, not an error.
        let (_, _, source) = rows(maxwell_row(br#"{"type":"insert","ts":"x","data":{}}"#).unwrap());
        assert_eq!(source.source_ts_ms, None);
    }

    #[test]
    fn canal_flat_messages_give_a_row_per_data_element() {
        let event = r#"{"data":[{"id":"1","name":"a"},{"id":"2","name":null}],"database":"shop","es":1589373560000,"id":9,"isDdl":false,"mysqlType":{"id":"int","name":"varchar(8)"},"old":null,"pkNames":["id"],"sql":"","sqlType":{"id":4,"name":12},"table":"orders","ts":1589373560798,"type":"INSERT"}"#;
        let (op, got, source) = rows(canal_rows(event.as_bytes()).unwrap());
        assert_eq!(op, 'c');
        assert_eq!(
            got,
            [r#"{"id":"1","name":"a"}"#, r#"{"id":"2","name":null}"#]
        );
        assert_eq!(source.source_ts_ms, Some(1_589_373_560_000));
        assert_eq!(source.ts_ms, Some(1_589_373_560_798));
        assert_eq!(source.db, Some(Text::Json(br#""shop""#)));
        assert_eq!(source.table, Some(Text::Json(br#""orders""#)));
        for (ty, code) in [("UPDATE", 'u'), ("DELETE", 'd')] {
            let e = format!(r#"{{"type":"{ty}","data":[ {{"id":"3"}} ],"old":[{{"id":"2"}}]}}"#);
            let (op, got, _) = rows(canal_rows(e.as_bytes()).unwrap());
            assert_eq!((op, got), (code, vec![r#"{"id":"3"}"#.to_string()]));
        }
        for rowless in [
            r#"{"data":null,"database":"shop","isDdl":true,"sql":"ALTER TABLE orders ADD x INT","table":"orders","type":"ALTER"}"#,
            r#"{"data":null,"database":"shop","isDdl":true,"sql":"TRUNCATE orders","type":"TRUNCATE"}"#,
            r#"{"data":null,"database":"shop","isDdl":false,"type":"QUERY"}"#,
        ] {
            assert!(
                matches!(canal_rows(rowless.as_bytes()), Ok(Change::NoRow)),
                "{rowless}"
            );
        }
        for (event, says) in [
            (
                r#"{"data":[{"id":"1"}]}"#,
                r#"Canal change event: no "type" field"#,
            ),
            (
                r#"{"type":"INSERT","data":[]}"#,
                r#"type "INSERT" without rows in its "data" array"#,
            ),
            (r#"{"type":"INSERT","data":[ ]}"#, "without rows"),
            (r#"{"type":"INSERT","data":{"id":"1"}}"#, "without rows"),
            (r#"{"type":"INSERT"}"#, "without rows"),
            (
                r#"{"type":"insert","data":[{"id":"1"}]}"#,
                r#"type "insert" is not INSERT"#,
            ),
            (
                r#"{"type":"INSERT","data":[{"id":"1"}]}]"#,
                "trailing characters",
            ),
            ("\"x\"", "not a JSON object"),
        ] {
            let e = reason(canal_rows(event.as_bytes()).unwrap_err());
            assert!(e.contains(says), "{event}: {e}");
        }
        // An element that is no object is an error in its turn, and ends the rows.
        let Ok(Change::Rows { rows, .. }) =
            canal_rows(br#"{"type":"INSERT","data":[{"id":"1"},2,{"id":"3"}]}"#)
        else {
            panic!("expected rows")
        };
        let got: Vec<_> = rows.map(|r| r.map_err(reason)).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], Ok(&br#"{"id":"1"}"#[..]));
        assert!(
            got[1]
                .as_ref()
                .unwrap_err()
                .contains(r#"an element of its "data" is a number, not a row object"#),
            "{got:?}"
        );
    }
}
