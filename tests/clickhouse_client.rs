//! `sluice::clickhouse` against real servers (see /work/shared/TESTBED.md and `dev/testbed`).
//!
//! - Modern: `SLUICE_TEST_CLICKHOUSE_URL` (default http://127.0.0.1:18123), ClickHouse 26.9.
//! - Legacy: `SLUICE_TEST_LEGACY_CLICKHOUSE_URL` (default http://127.0.0.1:28123), 18.16 with
//!   ZooKeeper. Legacy tests are skipped (with a printed note) only when that variable is unset
//!   AND nothing listens on the default port; CI sets it, so there they always run.
//! - Password user: `SLUICE_TEST_CLICKHOUSE_AUTH_USER` / `_PASSWORD` (default sluice/sluice_pw).
//!
//! Every test works in its own table with a random suffix and drops it at the end.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use sluice::clickhouse::client::InsertBody;
use sluice::clickhouse::compress::Encoding;
use sluice::clickhouse::native_lz4::Method;
use sluice::clickhouse::sql::{qualified, quote_ident};
use sluice::clickhouse::{
    ChError, ClickHouseSettings, Client, Compression, DefaultKind, InsertError, InsertFormat,
    InsertRequest, Secret, Streaming,
};

const DEFAULT_MODERN: &str = "http://127.0.0.1:18123";
const DEFAULT_LEGACY: &str = "http://127.0.0.1:28123";

fn modern_url() -> String {
    std::env::var("SLUICE_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| DEFAULT_MODERN.to_owned())
}

/// The legacy server URL, or `None` (with a note) when it is neither configured nor running.
fn legacy_url() -> Option<String> {
    if let Ok(url) = std::env::var("SLUICE_TEST_LEGACY_CLICKHOUSE_URL") {
        return Some(url);
    }
    let open = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], 28123)),
        Duration::from_millis(500),
    )
    .is_ok();
    if open {
        Some(DEFAULT_LEGACY.to_owned())
    } else {
        eprintln!(
            "NOTE: legacy ClickHouse test skipped: SLUICE_TEST_LEGACY_CLICKHOUSE_URL is unset and \
             nothing listens on 127.0.0.1:28123 (start it with ./dev/testbed up --with-legacy)"
        );
        None
    }
}

fn is_loopback_url(url: &str) -> bool {
    url.contains("://127.") || url.contains("://localhost") || url.contains("://[::1]")
}

fn auth() -> (String, String) {
    (
        std::env::var("SLUICE_TEST_CLICKHOUSE_AUTH_USER").unwrap_or_else(|_| "sluice".into()),
        std::env::var("SLUICE_TEST_CLICKHOUSE_AUTH_PASSWORD")
            .unwrap_or_else(|_| "sluice_pw".into()),
    )
}

fn settings(url: &str) -> ClickHouseSettings {
    let mut s = ClickHouseSettings::new(url);
    s.request_timeout = Duration::from_secs(30);
    s
}

async fn connect(url: &str) -> Client {
    match Client::connect(settings(url)).await {
        Ok(c) => c,
        Err(e) => panic!("cannot connect to {url}: {e}"),
    }
}

async fn connect_with(url: &str, compression: Compression) -> Client {
    let mut s = settings(url);
    s.compression = compression;
    match Client::connect(s).await {
        Ok(c) => c,
        Err(e) => panic!("cannot connect to {url}: {e}"),
    }
}

fn table_name(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::thread_rng().gen::<u64>())
}

async fn exec(client: &Client, sql: &str) {
    if let Err(e) = client.query(sql).await {
        panic!("{sql}: {e}");
    }
}

async fn drop_table(client: &Client, table: &str) {
    exec(
        client,
        &format!("DROP TABLE IF EXISTS {}", qualified("default", table)),
    )
    .await;
}

async fn count(client: &Client, table: &str) -> u64 {
    let text = client
        .query(&format!(
            "SELECT count() FROM {} FORMAT TSV",
            qualified("default", table)
        ))
        .await
        .unwrap_or_else(|e| panic!("count {table}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("count {table}: {text:?}: {e}"))
}

/// RowBinary for rows of (UInt32, String).
fn rows(data: &[(u32, &str)]) -> Bytes {
    let mut b = BytesMut::new();
    for (id, name) in data {
        b.put_u32_le(*id);
        put_string(&mut b, name);
    }
    b.freeze()
}

fn put_string(b: &mut BytesMut, s: &str) {
    let mut len = s.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            b.put_u8(byte);
            break;
        }
        b.put_u8(byte | 0x80);
    }
    b.put_slice(s.as_bytes());
}

fn insert_req(table: &str, cols: &[&str], body: Bytes, token: Option<&str>) -> InsertRequest {
    InsertRequest {
        database: "default".into(),
        table: table.into(),
        columns: cols.iter().map(|c| c.to_string()).collect(),
        format: InsertFormat::RowBinary,
        header: Bytes::new(),
        body: body.into(),
        dedup_token: token.map(str::to_owned),
    }
}

async fn create_simple(client: &Client, table: &str) {
    exec(
        client,
        &format!(
            "CREATE TABLE {} (id UInt32, name String) ENGINE = MergeTree ORDER BY id",
            qualified("default", table)
        ),
    )
    .await;
}

/// The simple table where a repeated insert is deduplicated: a ReplicatedMergeTree (by block
/// hash, or by token where the server has tokens), else a MergeTree with a deduplication window.
async fn create_deduplicating(client: &Client, table: &str, replicated: bool) {
    let engine = if replicated {
        format!("ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{table}', '{{replica}}') ORDER BY id")
    } else {
        "MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100".to_string()
    };
    exec(
        client,
        &format!(
            "CREATE TABLE {} (id UInt32, name String) ENGINE = {engine}",
            qualified("default", table)
        ),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// connect / version / auth

#[tokio::test]
async fn modern_connect_detects_26_9() {
    let c = connect(&modern_url()).await;
    let s = c.server();
    assert!(s.version.major >= 23, "{:?}", s.version);
    assert!(s.supports_dedup_token);
    assert!(s.supports_async_insert_setting);
    assert!(
        s.supports_row_binary_with_defaults,
        "RowBinaryWithDefaults on {}",
        s.version_string
    );
    assert!(s.supports_lz4_content_encoding);
    assert!(s.supports_query_params);
    assert!(s.keep_alive_timeout.is_some());
    // Auto sends a loopback server raw bytes (measured fastest there), LZ4 to remote ones.
    let expected = if is_loopback_url(&modern_url()) {
        Encoding::Identity
    } else {
        Encoding::Lz4
    };
    assert_eq!(c.encoding(), expected);
}

#[tokio::test]
async fn legacy_connect_detects_18_16() {
    let Some(url) = legacy_url() else { return };
    let c = connect(&url).await;
    let s = c.server();
    assert_eq!(
        (s.version.major, s.version.minor),
        (18, 16),
        "{}",
        s.version_string
    );
    assert!(!s.supports_dedup_token);
    assert!(!s.supports_async_insert_setting);
    assert!(!s.supports_row_binary_with_defaults);
    assert!(
        !s.supports_lz4_content_encoding,
        "18.16 answers Code 89 to Content-Encoding: lz4"
    );
    assert!(!s.supports_query_params);
    assert_eq!(s.keep_alive_timeout, Some(Duration::from_secs(3)));
    let expected = if is_loopback_url(&url) {
        Encoding::Identity
    } else {
        Encoding::Gzip
    };
    assert_eq!(
        c.encoding(),
        expected,
        "Auto falls back to gzip on remote 18.16"
    );
    let gz = connect_with(&url, Compression::Gzip).await;
    assert_eq!(gz.encoding(), Encoding::Gzip);

    // Demanding LZ4 from a server that cannot decode it is a settings error, not a downgrade.
    let mut st = settings(&url);
    st.compression = Compression::Lz4;
    match Client::connect(st).await {
        Err(ChError::InvalidSettings {
            field: "compression",
            ..
        }) => {}
        other => panic!("expected InvalidSettings(compression), got {other:?}"),
    }
}

async fn check_auth(url: &str) {
    let (user, password) = auth();
    // Right credentials, sent as X-ClickHouse-User / X-ClickHouse-Key.
    let mut s = settings(url);
    s.user = Some(user.clone());
    s.password = Some(Secret::new(password.clone()));
    let c = Client::connect(s.clone())
        .await
        .unwrap_or_else(|e| panic!("{url} as {user}: {e}"));
    assert_eq!(c.query("SELECT 1").await.ok().as_deref(), Some("1\n"));
    assert!(!format!("{c:?}").contains(&password));

    // Wrong password.
    s.password = Some(Secret::new("definitely-wrong-pw"));
    match Client::connect(s).await {
        Err(e @ ChError::Auth { .. }) => {
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("authentication failed for user '{user}' (Code ")),
                "{text}"
            );
            assert!(!format!("{e:?}").contains("definitely-wrong-pw"), "{e:?}");
        }
        other => panic!("{url}: expected Auth, got {other:?}"),
    }

    // Unknown user.
    let mut s = settings(url);
    s.user = Some("no_such_user_x".into());
    match Client::connect(s).await {
        Err(ChError::Auth { user, .. }) => assert_eq!(user, "no_such_user_x"),
        other => panic!("{url}: expected Auth, got {other:?}"),
    }
}

#[tokio::test]
async fn modern_auth_headers() {
    check_auth(&modern_url()).await;
}

#[tokio::test]
async fn legacy_auth_headers() {
    let Some(url) = legacy_url() else { return };
    check_auth(&url).await;
}

#[tokio::test]
async fn unknown_database_fails_connect() {
    let mut s = settings(&modern_url());
    s.database = "no_such_db_sluice".into();
    match Client::connect(s).await {
        Err(e @ ChError::UnknownDatabase { .. }) => {
            assert_eq!(e.to_string(), "database no_such_db_sluice does not exist")
        }
        other => panic!("expected UnknownDatabase, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_refused_is_unreachable() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    match Client::connect(settings(&url)).await {
        Err(e @ ChError::Unreachable { .. }) => {
            assert_eq!(
                e.to_string(),
                format!("ClickHouse at {url} is unreachable: connection refused")
            );
            assert!(e.is_transient());
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

fn closed_port() -> u16 {
    // Bind then drop: the port is free and nothing listens on it.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

// ---------------------------------------------------------------------------------------------
// queries

#[tokio::test]
async fn query_errors_are_parsed() {
    let c = connect(&modern_url()).await;
    match c.query("SELEC 1").await {
        Err(ChError::Server {
            code: Some(62),
            status: 400,
            ..
        }) => {}
        other => panic!("expected syntax error, got {other:?}"),
    }
    // The exception comes after the 200 status line and some rows.
    match c
        .query("SELECT throwIf(number = 3000) FROM numbers(100000) SETTINGS max_block_size = 10")
        .await
    {
        Err(ChError::Server {
            code: Some(395),
            status: 200,
            ..
        }) => {}
        other => panic!("expected mid-stream exception 395, got {other:?}"),
    }
}

#[tokio::test]
async fn legacy_query_errors_are_parsed() {
    let Some(url) = legacy_url() else { return };
    let c = connect(&url).await;
    match c.query("SELEC 1").await {
        Err(ChError::Server { code: Some(62), .. }) => {}
        other => panic!("expected syntax error, got {other:?}"),
    }
    match c.query("SELECT * FROM default.no_such_table_sluice").await {
        Err(e) => assert_eq!(e.code(), Some(60), "{e}"),
        Ok(t) => panic!("expected an error, got {t:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// table metadata

async fn check_table_columns(url: &str, ephemeral: bool) {
    let c = connect(url).await;
    let t = table_name("cols");
    let eph = if ephemeral {
        ", e UInt8 EPHEMERAL 0"
    } else {
        ""
    };
    exec(
        &c,
        &format!(
            "CREATE TABLE {} (a UInt32, m UInt32 MATERIALIZED a * 2, b String DEFAULT 'x', \
             al UInt32 ALIAS a + 1, c Nullable(String){eph}) ENGINE = MergeTree ORDER BY a",
            qualified("default", &t)
        ),
    )
    .await;
    let cols = c
        .table_columns("default", &t)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let by_name = |n: &str| {
        cols.iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("column {n} in {cols:?}"))
    };
    assert_eq!(by_name("a").default_kind, DefaultKind::None);
    assert_eq!(by_name("a").default_expression, None);
    assert_eq!(by_name("a").type_name, "UInt32");
    assert_eq!(by_name("m").default_kind, DefaultKind::Materialized);
    assert_eq!(by_name("b").default_kind, DefaultKind::Default);
    assert_eq!(by_name("b").default_expression.as_deref(), Some("'x'"));
    assert_eq!(by_name("al").default_kind, DefaultKind::Alias);
    assert_eq!(by_name("c").type_name, "Nullable(String)");
    if ephemeral {
        assert_eq!(by_name("e").default_kind, DefaultKind::Ephemeral);
        // 26.9 has system.columns.position: declaration order.
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "m", "b", "al", "c", "e"]);
    } else {
        assert_eq!(cols.len(), 5);
    }

    // Default values, for servers without RowBinaryWithDefaults.
    let defaults = c.select_default_values(&cols).await;
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    assert_eq!(defaults[0].column, "b");
    assert!(!defaults[0].volatile);
    match &defaults[0].value {
        Ok(bytes) => assert_eq!(&bytes[..], b"\x01x"),
        Err(e) => panic!("default of b: {e}"),
    }
    drop_table(&c, &t).await;

    match c.table_columns("default", &t).await {
        Err(e @ ChError::UnknownTable { .. }) => {
            assert_eq!(e.to_string(), format!("table default.{t} does not exist"))
        }
        other => panic!("expected UnknownTable, got {other:?}"),
    }
}

#[tokio::test]
async fn modern_table_columns() {
    check_table_columns(&modern_url(), true).await;
}

#[tokio::test]
async fn legacy_table_columns() {
    let Some(url) = legacy_url() else { return };
    check_table_columns(&url, false).await;
}

#[tokio::test]
async fn default_values_of_column_expressions_fail_per_column() {
    default_values_fail_per_column(&modern_url(), "LowCardinality(String)").await;
}

#[tokio::test]
async fn legacy_default_values_of_column_expressions_fail_per_column() {
    let Some(url) = legacy_url() else { return };
    default_values_fail_per_column(&url, "String").await;
}

/// `d` reads a column named `dummy`, which `system.one` (the FROM of a SELECT without one)
/// also has: it must fail like `b`, not pass for the constant 1.
async fn default_values_fail_per_column(url: &str, k_type: &str) {
    let c = connect(url).await;
    let t = table_name("defs");
    exec(
        &c,
        &format!(
            "CREATE TABLE {} (a UInt32, b UInt64 DEFAULT a + 1, ts DateTime DEFAULT now(), \
             k {k_type} DEFAULT 'k', dummy UInt8, d UInt16 DEFAULT dummy + 1) \
             ENGINE = MergeTree ORDER BY a",
            qualified("default", &t)
        ),
    )
    .await;
    let cols = c
        .table_columns("default", &t)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let defaults = c.select_default_values(&cols).await;
    let get = |n: &str| {
        defaults
            .iter()
            .find(|d| d.column == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    assert!(get("b").value.is_err(), "a + 1 reads another column");
    assert!(get("d").value.is_err(), "dummy + 1 reads another column");
    assert!(get("ts").volatile);
    assert_eq!(get("ts").value.as_ref().map(|b| b.len()).ok(), Some(4));
    assert_eq!(
        get("k").value.as_ref().map(|b| b.to_vec()).ok(),
        Some(b"\x01k".to_vec())
    );
    drop_table(&c, &t).await;
}

#[tokio::test]
async fn modern_table_info() {
    let c = connect(&modern_url()).await;
    let t = table_name("info");
    let mv = table_name("info_mv");
    let dst = table_name("info_dst");
    exec(
        &c,
        &format!(
            "CREATE TABLE {} (id UInt32) ENGINE = MergeTree ORDER BY id \
             SETTINGS non_replicated_deduplication_window = 100",
            qualified("default", &t)
        ),
    )
    .await;
    exec(
        &c,
        &format!(
            "CREATE TABLE {} (id UInt32) ENGINE = MergeTree ORDER BY id",
            qualified("default", &dst)
        ),
    )
    .await;
    exec(
        &c,
        &format!(
            "CREATE MATERIALIZED VIEW {} TO {} AS SELECT id FROM {}",
            qualified("default", &mv),
            qualified("default", &dst),
            qualified("default", &t)
        ),
    )
    .await;
    let info = c
        .table_info("default", &t)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.engine, "MergeTree");
    assert!(info
        .engine_full
        .contains("non_replicated_deduplication_window"));
    assert_eq!(info.non_replicated_deduplication_window, Some(100));
    assert!(info.replicated_deduplication_window.is_some());
    assert!(!info.is_replicated());
    assert_eq!(
        info.materialized_views.len(),
        1,
        "{:?}",
        info.materialized_views
    );
    assert_eq!(
        info.materialized_views[0].to_string(),
        format!("default.{mv}")
    );

    // Without the override: the server default (0 unless configured).
    let plain = c
        .table_info("default", &dst)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain.non_replicated_deduplication_window, Some(0));
    assert!(plain.materialized_views.is_empty());

    for name in [&mv, &t, &dst] {
        drop_table(&c, name).await;
    }
    match c.table_info("default", &t).await {
        Err(ChError::UnknownTable { .. }) => {}
        other => panic!("expected UnknownTable, got {other:?}"),
    }
}

#[tokio::test]
async fn legacy_table_info_replicated() {
    let Some(url) = legacy_url() else { return };
    let c = connect(&url).await;
    let t = table_name("rinfo");
    exec(
        &c,
        &format!(
            "CREATE TABLE {} (id UInt32, name String) ENGINE = \
             ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{t}', '{{replica}}') ORDER BY id",
            qualified("default", &t)
        ),
    )
    .await;
    let info = c
        .table_info("default", &t)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.engine, "ReplicatedMergeTree");
    assert!(info.is_replicated());
    assert_eq!(
        info.non_replicated_deduplication_window, None,
        "18.16 has no such setting"
    );
    assert_eq!(info.replicated_deduplication_window, Some(100));
    drop_table(&c, &t).await;
}

/// 18.16 fails a `system.tables` query with Code 60 when another table of the database is
/// dropped while it lists them; `table_info` asks again instead of failing start-up. Three
/// tasks create and drop tables meanwhile (1-5 % of queries fail so without the retry), named
/// with the steady table's name as their prefix, so an error about one of them names it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_table_info_survives_tables_dropped_meanwhile() {
    let Some(url) = legacy_url() else { return };
    let c = connect(&url).await;
    let t = table_name("steady");
    create_simple(&c, &t).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut churners = Vec::new();
    for k in 0..3 {
        let (url, stop, steady) = (url.clone(), stop.clone(), t.clone());
        churners.push(tokio::spawn(async move {
            let c = connect(&url).await;
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("{steady}_churn{k}_{i}");
                create_simple(&c, &name).await;
                drop_table(&c, &name).await;
                i += 1;
            }
            i
        }));
    }
    let mut infos = 0;
    for _ in 0..600 {
        let info = c
            .table_info("default", &t)
            .await
            .unwrap_or_else(|e| panic!("table_info while other tables come and go: {e}"));
        assert_eq!(info.engine, "MergeTree");
        infos += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut churned = 0;
    for h in churners {
        churned += h.await.expect("churner");
    }
    assert!(
        churned > 30,
        "only {churned} tables came and went meanwhile"
    );
    assert_eq!(infos, 600);
    drop_table(&c, &t).await;
}

// ---------------------------------------------------------------------------------------------
// inserts

async fn check_insert_roundtrip(client: &Client) {
    let t = table_name("ins");
    create_simple(client, &t).await;
    let data = [(1, "one"), (2, "zwei"), (3, "три"), (4, "")];
    let ack = client
        .insert(&insert_req(&t, &["id", "name"], rows(&data), None))
        .await
        .unwrap_or_else(|e| panic!("insert ({:?}): {e}", client.encoding()));
    if client.server().version.major >= 20 {
        assert_eq!(ack.written_rows, Some(4));
    }
    let text = client
        .query(&format!(
            "SELECT id, name FROM {} ORDER BY id FORMAT TSV",
            qualified("default", &t)
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text, "1\tone\n2\tzwei\n3\tтри\n4\t\n");
    drop_table(client, &t).await;
}

#[tokio::test]
async fn modern_insert_roundtrip_all_encodings() {
    for comp in [
        Compression::Auto,
        Compression::None,
        Compression::Gzip,
        Compression::Lz4,
    ] {
        let c = connect_with(&modern_url(), comp).await;
        check_insert_roundtrip(&c).await;
    }
}

#[tokio::test]
async fn legacy_insert_roundtrip_all_encodings() {
    let Some(url) = legacy_url() else { return };
    for comp in [Compression::Auto, Compression::None, Compression::Gzip] {
        let c = connect_with(&url, comp).await;
        check_insert_roundtrip(&c).await;
    }
}

#[tokio::test]
async fn large_insert_is_compressed_off_thread() {
    // Bigger than the blocking-compression threshold, on both encodings of the modern server.
    for comp in [Compression::Lz4, Compression::Gzip] {
        let c = connect_with(&modern_url(), comp).await;
        let t = table_name("big");
        create_simple(&c, &t).await;
        let data: Vec<(u32, String)> = (0..50_000).map(|i| (i, format!("name-{i}"))).collect();
        let refs: Vec<(u32, &str)> = data.iter().map(|(i, s)| (*i, s.as_str())).collect();
        c.insert(&insert_req(&t, &["id", "name"], rows(&refs), None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(count(&c, &t).await, 50_000);
        drop_table(&c, &t).await;
    }
}

#[tokio::test]
async fn modern_dedup_token_stores_once() {
    let c = connect(&modern_url()).await;
    let t = table_name("dedup");
    create_deduplicating(&c, &t, false).await;
    let req = insert_req(
        &t,
        &["id", "name"],
        rows(&[(1, "a"), (2, "b")]),
        Some("topic-0-100-101"),
    );
    let first = c.insert(&req).await.unwrap_or_else(|e| panic!("{e}"));
    let second = c.insert(&req).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.written_rows, Some(2));
    // 26.9 reports the rows of the deduplicated block as written all the same: the summary
    // cannot tell a deduplicated retry from a fresh insert; only the count can.
    assert!(second.written_rows.is_some());
    assert_eq!(count(&c, &t).await, 2);

    // The token, not the content, identifies the batch: other bytes, same token -> dropped.
    let other = insert_req(
        &t,
        &["id", "name"],
        rows(&[(9, "z")]),
        Some("topic-0-100-101"),
    );
    c.insert(&other).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&c, &t).await, 2);
    // Same bytes, another token -> stored.
    let next = insert_req(
        &t,
        &["id", "name"],
        rows(&[(1, "a"), (2, "b")]),
        Some("topic-0-102-103"),
    );
    c.insert(&next).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&c, &t).await, 4);
    drop_table(&c, &t).await;
}

/// The same rows as ClickHouse's own LZ4 blocks (`decompress=1`, how packed batches travel)
/// in several blocks, then uncompressed: both servers store them, and a ReplicatedMergeTree
/// (18.16: block-hash deduplication, no token) takes the plain resend as the same block, so a
/// packed batch retried in parts or re-formed unpacked after a crash is not stored twice.
async fn check_packed_same_block_as_plain(url: &str, replicated: bool) {
    let c = connect(url).await;
    let t = table_name("packed");
    create_deduplicating(&c, &t, replicated).await;
    let data: Vec<(u32, String)> = (0..40_000).map(|i| (i, format!("name-{i}"))).collect();
    let refs: Vec<(u32, &str)> = data.iter().map(|(i, s)| (*i, s.as_str())).collect();
    let plain = rows(&refs);
    let mut blocks = Vec::new();
    for part in plain.chunks(100_000) {
        sluice::clickhouse::native_lz4::append_block(&mut blocks, part).expect("compress");
    }
    assert!(blocks.len() < plain.len(), "compressed");
    let mut packed = insert_req(&t, &["id", "name"], plain.clone(), Some("tok-packed"));
    packed.body = InsertBody::Packed {
        blocks: Bytes::from(blocks),
        raw_len: plain.len(),
    };
    let ack = c.insert(&packed).await.unwrap_or_else(|e| panic!("{e}"));
    // 18.16 sends no X-ClickHouse-Summary: the count and contents below tell instead.
    assert!(
        ack.written_rows.is_none_or(|n| n == 40_000),
        "{:?}",
        ack.written_rows
    );
    let sum: u64 = c
        .query(&format!(
            "SELECT sum(id) + sum(length(name)) FROM {}",
            qualified("default", &t)
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .parse()
        .unwrap_or(0);
    let expected: u64 = data
        .iter()
        .map(|(i, s)| u64::from(*i) + s.len() as u64)
        .sum();
    assert_eq!(sum, expected, "the rows decoded from the blocks");
    // Resent uncompressed with the same token (26.9) or none (18.16): the same block.
    c.insert(&insert_req(&t, &["id", "name"], plain, Some("tok-packed")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&c, &t).await, 40_000);
    drop_table(&c, &t).await;
}

#[tokio::test]
async fn modern_packed_blocks_are_the_same_block_as_plain_rows() {
    check_packed_same_block_as_plain(&modern_url(), false).await;
}

#[tokio::test]
async fn legacy_packed_blocks_are_the_same_block_as_plain_rows() {
    let Some(url) = legacy_url() else { return };
    check_packed_same_block_as_plain(&url, true).await;
}

#[tokio::test]
async fn legacy_replicated_same_bytes_store_once() {
    let Some(url) = legacy_url() else { return };
    let c = connect(&url).await;
    let t = table_name("rdedup");
    create_deduplicating(&c, &t, true).await;
    // A token is not supported on 18.16: the client leaves it out (Code 115 otherwise) and the
    // identical bytes deduplicate by block hash.
    let req = insert_req(
        &t,
        &["id", "name"],
        rows(&[(1, "a"), (2, "b"), (3, "c")]),
        Some("tok"),
    );
    c.insert(&req).await.unwrap_or_else(|e| panic!("{e}"));
    c.insert(&req).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&c, &t).await, 3);
    drop_table(&c, &t).await;
}

async fn check_bad_data(client: &Client) {
    let t = table_name("bad");
    create_simple(client, &t).await;
    // A row cut short: 2 bytes of a UInt32.
    let req = insert_req(&t, &["id", "name"], Bytes::from_static(b"\x01\x00"), None);
    match client.insert(&req).await {
        Err(InsertError::BadData { code: 33, message }) => {
            assert!(message.contains(&t), "message names the table: {message}");
        }
        other => panic!("expected BadData(33), got {other:?}"),
    }
    assert_eq!(count(client, &t).await, 0);
    drop_table(client, &t).await;
}

#[tokio::test]
async fn modern_bad_data() {
    check_bad_data(&connect(&modern_url()).await).await;
}

#[tokio::test]
async fn legacy_bad_data() {
    let Some(url) = legacy_url() else { return };
    check_bad_data(&connect(&url).await).await;
}

async fn check_unknown_table_and_column(client: &Client) {
    let missing = table_name("missing");
    match client
        .insert(&insert_req(
            &missing,
            &["id", "name"],
            rows(&[(1, "a")]),
            None,
        ))
        .await
    {
        Err(InsertError::Fatal { code: Some(60), .. }) => {}
        other => panic!("expected Fatal(60), got {other:?}"),
    }
    let t = table_name("nocol");
    create_simple(client, &t).await;
    match client
        .insert(&insert_req(&t, &["id", "nope"], rows(&[(1, "a")]), None))
        .await
    {
        // The table is not what the insert was planned for: the pipeline plans it again.
        Err(InsertError::SchemaChanged { code: Some(16), .. }) => {}
        other => panic!("expected SchemaChanged(16), got {other:?}"),
    }
    drop_table(client, &t).await;
}

/// Every shape of body carries the `RowBinaryWithNamesAndTypes` header: uncompressed, each
/// wire compression, packed LZ4 blocks, and streams of rows or of blocks. With the table's
/// types the rows are stored; with a type the table no longer has (UInt64 for its UInt32
/// `id`), every one is refused before a row is stored, as a changed table.
#[tokio::test]
async fn typed_headers_go_with_every_body_and_a_changed_type_is_refused() {
    let columns = ["id".to_string(), "name".to_string()];
    let good = sluice::clickhouse::typed_header(&columns, &["UInt32".into(), "String".into()]);
    let stale = sluice::clickhouse::typed_header(&columns, &["UInt64".into(), "String".into()]);
    let typed = |table: &str, header: &Bytes, body: InsertBody| InsertRequest {
        format: InsertFormat::RowBinaryWithNamesAndTypes,
        header: header.clone(),
        body,
        ..insert_req(table, &["id", "name"], Bytes::new(), None)
    };
    let refused = |what: &str, got: Result<_, InsertError>| match got {
        Err(InsertError::SchemaChanged {
            code: Some(117), ..
        }) => {}
        other => panic!("{what}: expected a refused header, got {other:?}"),
    };
    let packed = |data: &Bytes| {
        let mut blocks = Vec::new();
        sluice::clickhouse::native_lz4::append_block(&mut blocks, data).expect("lz4");
        InsertBody::Packed {
            blocks: Bytes::from(blocks),
            raw_len: data.len(),
        }
    };
    for compression in [Compression::None, Compression::Lz4, Compression::Gzip] {
        let client = connect_with(&modern_url(), compression).await;
        assert!(client.server().supports_typed_header);
        let table = table_name("typed");
        create_simple(&client, &table).await;
        let data = rows(&[(1, "a"), (2, "b")]);
        client
            .insert(&typed(&table, &good, data.clone().into()))
            .await
            .unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        client
            .insert(&typed(&table, &good, packed(&rows(&[(3, "c")]))))
            .await
            .unwrap_or_else(|e| panic!("{compression:?} packed: {e}"));
        // Stored blocks (a guarded stream's, read back): the header's block is stored too.
        let part = rows(&[(6, "d")]);
        let mut stored = Vec::new();
        sluice::clickhouse::native_lz4::append_stored_block(&mut stored, &part).expect("stored");
        let body = InsertBody::Packed {
            blocks: Bytes::from(stored),
            raw_len: part.len(),
        };
        client
            .insert(&typed(&table, &good, body))
            .await
            .unwrap_or_else(|e| panic!("{compression:?} stored blocks: {e}"));
        for blocks in [false, true] {
            let mut s =
                client.open_insert_stream(typed(&table, &good, Bytes::new().into()), blocks);
            let part = rows(&[(if blocks { 5 } else { 4 }, "s")]);
            let chunk = match packed(&part) {
                InsertBody::Packed { blocks: b, .. } if blocks => b,
                _ => part,
            };
            assert!(s.send(chunk).await);
            s.finish()
                .await
                .unwrap_or_else(|e| panic!("{compression:?} stream (blocks {blocks}): {e}"));
        }
        assert_eq!(count(&client, &table).await, 6, "{compression:?}");

        refused(
            "plain",
            client
                .insert(&typed(&table, &stale, data.clone().into()))
                .await,
        );
        refused(
            "packed",
            client.insert(&typed(&table, &stale, packed(&data))).await,
        );
        let mut s = client.open_insert_stream(typed(&table, &stale, Bytes::new().into()), false);
        s.send(data.clone()).await;
        refused("stream", s.finish().await);
        assert_eq!(
            count(&client, &table).await,
            6,
            "{compression:?}: a refused body stored rows"
        );
        drop_table(&client, &table).await;
    }
}

#[tokio::test]
async fn modern_unknown_table_is_fatal() {
    check_unknown_table_and_column(&connect(&modern_url()).await).await;
}

#[tokio::test]
async fn legacy_unknown_table_is_fatal() {
    let Some(url) = legacy_url() else { return };
    check_unknown_table_and_column(&connect(&url).await).await;
}

#[tokio::test]
async fn row_binary_with_defaults() {
    let c = connect(&modern_url()).await;
    let t = table_name("rbwd");
    exec(
        &c,
        &format!(
            "CREATE TABLE {} (id UInt32, name String DEFAULT 'dflt') ENGINE = MergeTree ORDER BY id",
            qualified("default", &t)
        ),
    )
    .await;
    // Row 1: both values given (prefix 0); row 2: name uses the DEFAULT (prefix 1).
    let mut b = BytesMut::new();
    b.put_u8(0);
    b.put_u32_le(1);
    b.put_u8(0);
    put_string(&mut b, "given");
    b.put_u8(0);
    b.put_u32_le(2);
    b.put_u8(1);
    let mut req = insert_req(&t, &["id", "name"], b.freeze(), None);
    req.format = InsertFormat::RowBinaryWithDefaults;
    c.insert(&req).await.unwrap_or_else(|e| panic!("{e}"));
    let text = c
        .query(&format!(
            "SELECT id, name FROM {} ORDER BY id FORMAT TSV",
            qualified("default", &t)
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text, "1\tgiven\n2\tdflt\n");
    drop_table(&c, &t).await;

    // On 18.16 the client refuses before sending.
    if let Some(url) = legacy_url() {
        let old = connect(&url).await;
        match old.insert(&req).await {
            Err(InsertError::Fatal {
                code: None,
                message,
            }) => assert!(message.contains("RowBinaryWithDefaults")),
            other => panic!("expected Fatal, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn awkward_identifiers_are_quoted() {
    let mut urls = vec![modern_url()];
    urls.extend(legacy_url());
    for url in urls {
        let c = connect(&url).await;
        let t = format!("we`ird 'name\\{:08x}", rand::thread_rng().gen::<u32>());
        let col = "col`umn 'x'";
        exec(
            &c,
            &format!(
                "CREATE TABLE {} (id UInt32, {} String) ENGINE = MergeTree ORDER BY id",
                qualified("default", &t),
                quote_ident(col)
            ),
        )
        .await;
        let cols = c
            .table_columns("default", &t)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(cols[1].name, col);
        c.insert(&insert_req(&t, &["id", col], rows(&[(7, "seven")]), None))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(count(&c, &t).await, 1);
        let info = c
            .table_info("default", &t)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(info.name, t);
        drop_table(&c, &t).await;
    }
}

// ---------------------------------------------------------------------------------------------
// the server going away

/// A TCP proxy in front of ClickHouse that can be shut down, leaving its port closed.
struct Proxy {
    port: u16,
    accept: tokio::task::JoinHandle<()>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let conns2 = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                conns2.lock().expect("lock").push(task.abort_handle());
            }
        });
        Proxy {
            port,
            accept,
            conns,
        }
    }

    fn stop(&self) {
        self.accept.abort();
        for c in self.conns.lock().expect("lock").iter() {
            c.abort();
        }
    }
}

#[tokio::test]
async fn server_gone_is_retryable() {
    let url = modern_url();
    let parsed: Vec<&str> = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .split(':')
        .collect();
    let addr: std::net::SocketAddr =
        format!("{}:{}", parsed[0], parsed.get(1).copied().unwrap_or("8123"))
            .parse()
            .expect("modern URL is host:port with an IP");
    let direct = connect(&url).await;
    let t = table_name("gone");
    create_simple(&direct, &t).await;

    let proxy = Proxy::start(addr).await;
    let via = connect(&format!("http://127.0.0.1:{}", proxy.port)).await;
    let req = insert_req(&t, &["id", "name"], rows(&[(1, "a")]), None);
    via.insert(&req).await.unwrap_or_else(|e| panic!("{e}"));

    proxy.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    match via.insert(&req).await {
        Err(InsertError::Retryable {
            code: None,
            message,
        }) => {
            assert!(
                message.contains("unreachable") || message.contains("request to ClickHouse"),
                "{message}"
            );
        }
        other => panic!("expected Retryable, got {other:?}"),
    }
    assert_eq!(count(&direct, &t).await, 1);
    drop_table(&direct, &t).await;
}

#[tokio::test]
async fn request_timeout_is_retryable() {
    let mut s = settings(&modern_url());
    s.request_timeout = Duration::from_millis(300);
    let c = Client::connect(s).await.unwrap_or_else(|e| panic!("{e}"));
    match c.query("SELECT sleep(2)").await {
        Err(e @ ChError::Timeout { .. }) => {
            assert!(e.is_transient());
            assert!(e.to_string().contains("did not answer within 300ms"), "{e}");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// measurement (not a test): which Content-Encoding inserts fastest on loopback

#[tokio::test]
#[ignore = "measurement; run with --release -- --ignored --nocapture"]
async fn bench_encodings() {
    let n: u64 = 1_000_000;
    let rounds = 9;
    let mut b = BytesMut::new();
    for i in 0..n {
        b.put_u64_le(i);
        put_string(&mut b, &format!("user-{}-{}", i % 1000, i * 7919 % 100_003));
        b.put_f64_le(i as f64 * 0.25);
    }
    let body = b.freeze();
    println!(
        "body: {} rows, {:.1} MB, {rounds} rounds",
        n,
        body.len() as f64 / 1e6
    );
    let mut lanes = Vec::new();
    for comp in [Compression::None, Compression::Lz4, Compression::Gzip] {
        let c = connect_with(&modern_url(), comp).await;
        let t = table_name("bench");
        exec(
            &c,
            &format!(
                "CREATE TABLE {} (id UInt64, name String, v Float64) ENGINE = MergeTree ORDER BY id",
                qualified("default", &t)
            ),
        )
        .await;
        lanes.push((c, t, Vec::new()));
    }
    // Interleave the encodings so background load on the machine hits all of them alike.
    for _ in 0..rounds {
        for (c, t, times) in lanes.iter_mut() {
            let started = Instant::now();
            c.insert(&insert_req(t, &["id", "name", "v"], body.clone(), None))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            times.push(started.elapsed());
        }
    }
    for (c, t, mut times) in lanes {
        times.sort();
        let median = times[times.len() / 2];
        let enc_start = Instant::now();
        let wire = c.encoding().encode(&body).expect("encode").len();
        let enc = enc_start.elapsed();
        println!(
            "{:?}: wire {:.1} MB, insert median {:?} (min {:?}), of which client compression \
             {:?}; {:.0} MB/s of RowBinary",
            c.encoding(),
            wire as f64 / 1e6,
            median,
            times[0],
            enc,
            body.len() as f64 / 1e6 / median.as_secs_f64()
        );
        drop_table(&c, &t).await;
    }
}

// ---------------------------------------------------------------------------------------------
// TLS, against `openssl s_server` (a TLS endpoint, not ClickHouse: these tests check the
// handshake and the error texts; the HTTP exchange after a good handshake is expected to fail
// with a non-TLS error).

struct TlsFixture {
    dir: tempfile::TempDir,
    port: u16,
    server: std::process::Child,
}

impl Drop for TlsFixture {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and an
/// `openssl s_server` using them (requiring a client certificate when `mtls`). `None`, with a
/// note, when the openssl CLI is missing.
fn tls_fixture(mtls: bool) -> Option<TlsFixture> {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ok = openssl(
        d,
        &[
            &["req", "-x509"][..],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=sluice test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ][..],
        ]
        .concat(),
    );
    if !ok {
        eprintln!("NOTE: TLS test skipped: the openssl CLI is not available");
        return None;
    }
    for (name, ext) in [
        (
            "server",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(d.join(format!("{name}.ext")), ext).expect("write ext");
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let extf = format!("{name}.ext");
        let subj = format!("/CN={name}");
        assert!(openssl(
            d,
            &[
                &["req"][..],
                &ec[..],
                &["-keyout", &key, "-out", &csr, "-subj", &subj][..]
            ]
            .concat()
        ));
        assert!(openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extf
            ]
        ));
    }
    let port = closed_port();
    let port_s = port.to_string();
    let mut args = vec![
        "s_server",
        "-accept",
        &port_s,
        "-cert",
        "server.pem",
        "-key",
        "server.key",
        "-www",
        "-quiet",
    ];
    if mtls {
        args.extend(["-Verify", "1", "-CAfile", "ca.pem"]);
    }
    let server = std::process::Command::new("openssl")
        .args(&args)
        .current_dir(d)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn openssl s_server");
    let fixture = TlsFixture { dir, port, server };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(fixture)
}

impl TlsFixture {
    fn settings(&self, host: &str) -> ClickHouseSettings {
        let mut s = settings(&format!("https://{host}:{}", self.port));
        // s_server never answers a POST: a good handshake ends in this timeout.
        s.connect_timeout = Duration::from_secs(5);
        s.request_timeout = Duration::from_secs(1);
        s
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test]
async fn tls_unknown_ca_and_host_name() {
    let Some(fx) = tls_fixture(false) else { return };
    // No CA configured: the test CA is unknown.
    match Client::connect(fx.settings("127.0.0.1")).await {
        Err(e @ ChError::Tls { .. }) => {
            assert!(
                e.to_string()
                    .starts_with("TLS handshake failed: unknown CA"),
                "{e}"
            );
        }
        other => panic!("expected Tls(unknown CA), got {other:?}"),
    }
    // With the CA, the handshake succeeds: whatever fails next is not TLS.
    let mut s = fx.settings("127.0.0.1");
    s.ca_file = Some(fx.path("ca.pem"));
    match Client::connect(s.clone()).await {
        Err(ChError::Tls { reason, .. }) => panic!("handshake should pass with ca_file: {reason}"),
        Err(e) => eprintln!("after a good handshake: {e}"),
        Ok(_) => panic!("openssl s_server is not ClickHouse"),
    }
    // Host name verification stays on: "localhost" is in the certificate, "127.0.0.2" is not.
    let mut wrong = fx.settings("127.0.0.2");
    wrong.ca_file = Some(fx.path("ca.pem"));
    // s_server listens on 127.0.0.1 only on some systems; only check the outcome if it answered.
    match Client::connect(wrong).await {
        Err(ChError::Tls { reason, .. }) => assert!(reason.contains("host name"), "{reason}"),
        other => eprintln!("127.0.0.2 not checked: {other:?}"),
    }
    // Plain HTTP to the TLS port and TLS files with an http URL are settings mistakes.
    let mut http = settings(&format!("http://127.0.0.1:{}", fx.port));
    http.ca_file = Some(fx.path("ca.pem"));
    assert!(matches!(
        Client::connect(http).await,
        Err(ChError::InvalidSettings { field: "url", .. })
    ));
}

#[tokio::test]
async fn tls_client_certificate() {
    let Some(fx) = tls_fixture(true) else { return };
    let mut s = fx.settings("localhost");
    s.ca_file = Some(fx.path("ca.pem"));
    // Without a client certificate the server refuses (TLS 1.3 reports it at the first read).
    match Client::connect(s.clone()).await {
        Err(ChError::Tls { reason, .. }) => {
            assert!(reason.contains("client certificate"), "{reason}")
        }
        other => panic!("expected Tls(client certificate), got {other:?}"),
    }
    s.client_cert = Some(fx.path("client.pem"));
    s.client_key = Some(fx.path("client.key"));
    match Client::connect(s.clone()).await {
        Err(ChError::Tls { reason, .. }) => panic!("mTLS handshake should pass: {reason}"),
        other => eprintln!("after a good mTLS handshake: {other:?}"),
    }
    // Half an identity is a settings error.
    s.client_key = None;
    assert!(matches!(
        Client::connect(s).await,
        Err(ChError::InvalidSettings {
            field: "client_key",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// streamed inserts

/// `n` rows of (UInt32, String) from `start`, about 100 bytes each.
fn many_rows(start: u32, n: u32) -> Bytes {
    let pad = "x".repeat(90);
    let data: Vec<(u32, &str)> = (start..start + n).map(|i| (i, pad.as_str())).collect();
    rows(&data)
}

#[tokio::test]
async fn modern_streamed_insert_stores_at_its_end_and_nothing_when_abandoned() {
    let client = connect(&modern_url()).await;
    assert!(
        client.streams_inserts() == is_loopback_url(&modern_url()),
        "26.9 on loopback with auto compression streams inserts"
    );
    let table = table_name("stream");
    create_deduplicating(&client, &table, false).await;

    // Finished: stored once its body ends, not before.
    let mut s =
        client.open_insert_stream(insert_req(&table, &[], Bytes::new(), Some("s-1")), false);
    for part in 0..4 {
        assert!(
            s.send(many_rows(part * 10_000, 10_000)).await,
            "send {part}"
        );
        // The server has parsed what it got by now; nothing is stored mid-body.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            count(&client, &table).await,
            0,
            "stored before the body ended"
        );
    }
    assert_eq!(s.sent(), many_rows(0, 10_000).len() * 4);
    s.finish().await.expect("streamed insert");
    assert_eq!(count(&client, &table).await, 40_000);

    // Abandoned: the body is cut off, the server stores nothing of it.
    let mut s =
        client.open_insert_stream(insert_req(&table, &[], Bytes::new(), Some("s-2")), false);
    assert!(s.send(many_rows(100_000, 20_000)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        count(&client, &table).await,
        40_000,
        "an abandoned stream stored rows"
    );

    // The same token again (a range sent again as a held batch): dropped as a duplicate.
    let again = insert_req(&table, &[], many_rows(0, 40_000), Some("s-1"));
    client.insert(&again).await.expect("repeat");
    assert_eq!(
        count(&client, &table).await,
        40_000,
        "the repeat was stored"
    );

    // ClickHouse's own LZ4 blocks (`decompress=1`), as packed batches stream.
    let mut s = client.open_insert_stream(insert_req(&table, &[], Bytes::new(), Some("s-4")), true);
    for part in 0..2 {
        let mut blocks = Vec::new();
        let rows = many_rows(300_000 + part * 10_000, 10_000);
        for block in rows.chunks(256 * 1024) {
            sluice::clickhouse::native_lz4::append_block(&mut blocks, block).expect("lz4");
        }
        assert!(s.send(Bytes::from(blocks)).await);
    }
    s.finish().await.expect("streamed lz4 blocks");
    assert_eq!(count(&client, &table).await, 60_000);

    // A bad row mid-stream: the insert fails as bad data, nothing of it is stored.
    let mut s =
        client.open_insert_stream(insert_req(&table, &[], Bytes::new(), Some("s-3")), false);
    s.send(many_rows(200_000, 5_000)).await;
    // A string whose length prefix runs past the end of the body.
    s.send(Bytes::from_static(&[1, 0, 0, 0, 0xff, 0xff, 0x03, b'a']))
        .await;
    match s.finish().await {
        Err(InsertError::BadData { .. }) => {}
        other => panic!("expected bad data, got {other:?}"),
    }
    assert_eq!(count(&client, &table).await, 60_000);
    drop_table(&client, &table).await;
}

/// A batch of `n` rows of (UInt32, String) from `start`, streaming guarded blocks. Each row
/// is 1 KiB (4 + 2 + 1,018 bytes), so a 256 KiB block would end exactly where a row ends.
fn guarded_batch(start: u32, n: u32, blocks: Method) -> sluice::batch::Batch {
    let mut b = sluice::batch::Batch::default();
    let pad = "x".repeat(1018);
    for i in start..start + n {
        b.body_mut().extend_from_slice(&rows(&[(i, pad.as_str())]));
        b.row_done(i64::from(i));
    }
    b.start_streaming(Some(blocks));
    b
}

/// 18.16 stores what it parsed of a body cut off where a row ends (ClickHouse#9666, and no
/// tokens), so sluice streams to it guarded: ClickHouse's own blocks (stored on this
/// uncompressed wire, LZ4 on a compressed one) that each end inside a row, the block that
/// ends the last row only after the batch is sealed. Cut off after whole blocks or inside
/// one, such a body stores nothing; the same rows in blocks that end where rows end, cut
/// off the same way, are stored (what the guard is for).
#[tokio::test]
async fn legacy_server_streams_guarded_and_stores_nothing_of_a_cut_off_body() {
    let Some(url) = legacy_url() else { return };
    for method in [Method::Stored, Method::Lz4] {
        guarded_stream_on_18_16(&url, method).await;
    }
}

async fn guarded_stream_on_18_16(url: &str, method: Method) {
    let client = connect(url).await;
    assert_eq!(
        client.streaming(),
        Streaming::Guarded {
            max_rows: 1_048_576,
            blocks: Method::Stored,
        },
        "18.16's max_insert_block_size, an uncompressed wire to a loopback server"
    );
    assert!(client.streams_inserts());
    let table = table_name("gstream");
    create_deduplicating(&client, &table, true).await;
    let cut_off = |blocks: Bytes| {
        let client = client.clone();
        let table = table.clone();
        async move {
            let mut s =
                client.open_insert_stream(insert_req(&table, &[], Bytes::new(), None), true);
            assert!(s.send(blocks).await);
            // The server has parsed what it got by now.
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(s);
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    };

    // Cut off after whole blocks (2 MiB of rows in 256 KiB blocks).
    let mut b = guarded_batch(0, 2_048, method);
    let blocks = b.take_streamed(0, 1024).expect("pack").expect("blocks");
    assert!(blocks.len() > 1_000);
    cut_off(blocks.clone()).await;
    assert_eq!(
        count(&client, &table).await,
        0,
        "cut off after whole blocks"
    );
    // Cut off inside a block.
    cut_off(blocks.slice(..blocks.len() / 2 + 7)).await;
    assert_eq!(count(&client, &table).await, 0, "cut off inside a block");

    // Finished: the blocks, then the sealed batch's last block, then the body's end.
    let mut s = client.open_insert_stream(insert_req(&table, &[], Bytes::new(), None), true);
    assert!(s.send(blocks).await);
    let sealed = b.seal().expect("seal").expect("a batch");
    let tail = sealed.stream_tail().expect("streamed");
    assert!(
        !tail.is_empty(),
        "the end of the last row waits for the seal"
    );
    assert!(s.send(tail).await);
    s.finish().await.expect("guarded stream");
    assert_eq!(count(&client, &table).await, 2_048);

    // Unguarded: blocks of 100 whole rows each, cut off after the tenth, are stored.
    let mut blocks = Vec::new();
    for part in many_rows(100_000, 1_000).chunks(many_rows(0, 100).len()) {
        sluice::clickhouse::native_lz4::append_block_as(&mut blocks, part, method).expect("block");
    }
    cut_off(Bytes::from(blocks)).await;
    assert_eq!(
        count(&client, &table).await,
        3_048,
        "18.16 no longer stores a body cut off at a row's end: guarded streams may be unneeded"
    );
    drop_table(&client, &table).await;
}

/// `unknown_fields = "add"`'s ALTER: a column added once is there with the server's type
/// (`Bool` as `UInt8` on 18.16), asking again is success (`Existing`, Code 15 on 26.9, 44 on
/// 18.16), any name survives quoting, and a refusal is an error with the server's reason.
async fn check_add_column(url: &str, bool_type: &str) {
    use sluice::clickhouse::add_column::{add_column, Added};
    let client = connect(url).await;
    let table = table_name("add_column");
    exec(
        &client,
        &format!(
            "CREATE TABLE {} (id UInt64) ENGINE = MergeTree ORDER BY id",
            qualified("default", &table)
        ),
    )
    .await;
    for name in ["flag", "we`ird \"name\\"] {
        for expected in [Added::New, Added::Existing] {
            let got = add_column(&client, "default", &table, name, "Nullable(Bool)").await;
            assert_eq!(got.unwrap(), expected, "{url} {name}");
        }
    }
    let e = add_column(&client, "default", &table, "x", "NoSuchType")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("NoSuchType"), "{url}: {e}");
    let columns = client
        .query(&format!(
            "SELECT name, type FROM system.columns WHERE database = 'default' AND table = '{table}' \
             ORDER BY name FORMAT TSV"
        ))
        .await
        .unwrap();
    assert_eq!(
        columns,
        format!(
            "flag\tNullable({bool_type})\nid\tUInt64\nwe`ird \"name\\\\\tNullable({bool_type})\n"
        ),
        "{url}"
    );
    drop_table(&client, &table).await;
}

#[tokio::test]
async fn modern_add_column_is_idempotent() {
    check_add_column(&modern_url(), "Bool").await;
}

#[tokio::test]
async fn legacy_add_column_is_idempotent() {
    let Some(url) = legacy_url() else { return };
    check_add_column(&url, "UInt8").await;
}
