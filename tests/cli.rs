//! The command line against the real servers: `check` (success and each failure named),
//! `topics` create/describe/alter/list/delete, `produce` with keys and every acks level,
//! `consume`, `lag`.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

fn sluice(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_BROKERS", kafka())
        .env_remove("SLUICE_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // sluice may refuse its arguments and exit before reading stdin: a closed pipe then
        // is its answer, not a test failure (the exit status and output say what happened).
        if let Err(e) = pipe.write_all(text.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
        }
    }
    child.wait_with_output().expect("sluice output")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `consume --count-only` of all of `topic`, until it is idle for 2 s: what it printed.
fn count_all(topic: &str) -> String {
    let out = sluice(
        &[
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--idle-exit",
            "2s",
            "--count-only",
        ],
        None,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sluice run --config cfg` in the background, its stderr kept for the test to read.
fn spawn_run(cfg: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--config", cfg])
        .env_remove("SLUICE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice")
}

fn write_config(dir: &tempfile::TempDir, body: &str) -> String {
    let p = dir.path().join("sluice.toml");
    std::fs::write(&p, body).expect("write config");
    p.to_string_lossy().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_the_plan_and_names_each_failure() {
    let topic = unique("check");
    create_topic(&topic, 3).await;
    let table = format!("default.{topic}");
    ch(&format!(
        "CREATE TABLE {table} (id UInt64, name String DEFAULT 'anon', tags Array(String),
            doubled UInt64 MATERIALIZED id * 2, _offset Int64) ENGINE = MergeTree ORDER BY id"
    ))
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let good = config("g", &[(&topic, &topic)], "");
    let out = sluice(&["check", "--config", &write_config(&dir, &good)], None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("topic {topic}: 3 partition(s)")), "{t}");
    assert!(
        t.contains("json field \"name\"") && t.contains("DEFAULT 'anon'"),
        "{t}"
    );
    assert!(t.contains("kafka offset"), "{t}");
    assert!(t.contains("doubled (MATERIALIZED"), "{t}");
    assert!(t.contains("check passed"), "{t}");
    // 26.9 on loopback: raw bodies, and batches that outgrow the budget stream.
    assert!(
        t.contains("inserts: uncompressed bodies; batches beyond their memory share streamed"),
        "{t}"
    );

    // Unknown table.
    let missing = good.replace(
        &format!("table = \"{topic}\""),
        "table = \"no_such_table_x\"",
    );
    let out = sluice(&["check", "--config", &write_config(&dir, &missing)], None);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(
        t.contains("no_such_table_x") && t.contains("does not exist"),
        "{t}"
    );

    // Unreachable broker.
    let unreachable = good.replace(&kafka(), "127.0.0.1:1");
    let out = sluice(
        &["check", "--config", &write_config(&dir, &unreachable)],
        None,
    );
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("kafka: FAILED"), "{t}");

    // Unsupported column type.
    let odd = unique("odd");
    ch(&format!(
        "CREATE TABLE default.{odd} (id UInt64, agg AggregateFunction(sum, UInt64)) ENGINE = MergeTree ORDER BY id"
    ))
    .await;
    let unsupported = good.replace(
        &format!("table = \"{topic}\""),
        &format!("table = \"{odd}\""),
    );
    let out = sluice(
        &["check", "--config", &write_config(&dir, &unsupported)],
        None,
    );
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("agg") && t.contains("unsupported"), "{t}");

    // A raw route: the value column is named in the plan; without one, check fails naming it.
    let raw_table = unique("rawcheck");
    ch(&format!(
        "CREATE TABLE default.{raw_table} (line String, n UInt8, _offset Int64) ENGINE = MergeTree ORDER BY n"
    ))
    .await;
    let raw = config(
        "g",
        &[(&topic, &raw_table)],
        "format = \"raw\"\n[route.metadata]\nvalue = \"line\"",
    );
    let out = sluice(&["check", "--config", &write_config(&dir, &raw)], None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("kafka value") && t.contains("a raw message has no fields"),
        "{t}"
    );
    let no_value = raw.replace("value = \"line\"", "value = \"body\"");
    let out = sluice(&["check", "--config", &write_config(&dir, &no_value)], None);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("no column body for the message value"), "{t}");

    // Invalid config: the field is named, nothing connects.
    let bad = good.replace("max_age = \"200ms\"", "max_age = \"fast\"");
    let out = sluice(&["check", "--config", &write_config(&dir, &bad)], None);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("route[0].max_age"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_produce_consume_and_lag() {
    let topic = unique("cli");
    let out = sluice(&["topics", "create", &topic, "--partitions", "3"], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = sluice(&["topics", "describe", &topic], None);
    assert!(text(&out).contains("3 partitions"), "{}", text(&out));
    let out = sluice(&["topics", "list"], None);
    assert!(text(&out).lines().any(|l| l == topic), "{}", text(&out));

    let lines: String = (0..1000)
        .map(|i| format!("{{\"id\":\"k{i}\",\"v\":{i}}}\n"))
        .collect();
    // Every acks level, each with another codec (zstd needs librdkafka built with it, or
    // creating the producer fails); the consumer below reads all three back.
    for (acks, codec) in [("all", "zstd"), ("1", "gzip"), ("0", "none")] {
        let out = sluice(
            &[
                "produce",
                "--topic",
                &topic,
                "--acks",
                acks,
                "--compression",
                codec,
                "--key-field",
                "id",
            ],
            Some(&lines),
        );
        assert!(out.status.success(), "acks={acks} {codec}: {}", text(&out));
        assert!(
            text(&out).contains("produced 1000 messages"),
            "{}",
            text(&out)
        );
    }
    let out = sluice(&["topics", "describe", &topic], None);
    assert!(text(&out).contains("3000 messages"), "{}", text(&out));

    let out = sluice(
        &[
            "consume",
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "3000",
            "--print-key",
            "--idle-exit",
            "10s",
        ],
        None,
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(printed.lines().count(), 3000);
    // Keys come from the field; a key always lands in the same partition, with its message.
    assert!(printed.lines().all(|l| {
        let (k, v) = l.split_once('\t').unwrap_or(("", ""));
        v.contains(&format!("\"id\":\"{k}\""))
    }));

    let out = sluice(
        &[
            "consume",
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "3000",
            "--count-only",
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3000 messages\n");
    // Without a limit: every message, counted once, until the topic is idle.
    assert_eq!(count_all(&topic), "3000 messages\n");

    let out = sluice(&["topics", "alter", &topic, "--partitions", "5"], None);
    assert!(out.status.success(), "{}", text(&out));
    // New partitions reach the metadata a client sees after a short propagation delay.
    let mut described = String::new();
    for _ in 0..50 {
        described = text(&sluice(&["topics", "describe", &topic], None));
        if described.contains("5 partitions") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(described.contains("5 partitions"), "{described}");

    // lag: a group that committed nothing lags by everything.
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(&dir, &config(&unique("lag"), &[(&topic, "unused")], ""));
    let out = sluice(&["lag", "--config", &cfg], None);
    assert!(text(&out).contains("total lag: 3000"), "{}", text(&out));

    let out = sluice(&["topics", "delete", &topic], None);
    assert!(out.status.success(), "{}", text(&out));
}

/// An illegal topic name is refused with the rule it breaks before any client sees it. Until
/// then a name over 512 bytes panicked inside rust-rdkafka (`rd_kafka_topic_new` returns NULL
/// for it and the crate unwraps), and one with a space was looked up and reported missing.
/// `--brokers` with a port out of range is refused the same way.
#[test]
fn illegal_topic_names_are_refused_before_kafka_is_asked() {
    let long = "x".repeat(600);
    let cases: [(Vec<&str>, &str); 8] = [
        (
            vec!["consume", "--topic", &long, "--count-only"],
            "at most 249",
        ),
        (vec!["topics", "describe", &long], "at most 249"),
        (vec!["topics", "create", "bad name"], "contains ' '"),
        (vec!["topics", "delete", "fine", "a/b"], "contains '/'"),
        (
            vec!["topics", "alter", "..", "--partitions", "2"],
            "not a legal",
        ),
        (vec!["produce", "--topic", "tópico"], "contains 'ó'"),
        (
            vec!["produce", "--topic", "t", "--compression", "lzma"],
            "not one of none, gzip, snappy, lz4, zstd",
        ),
        (
            vec!["topics", "--brokers", "127.0.0.1:99999", "list"],
            "1 to 65535",
        ),
    ];
    for (args, why) in cases {
        let out = sluice(&args, Some("{\"id\": 1}\n"));
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(why), "{args:?}: {t}");
        assert!(!t.contains("panicked"), "{args:?}: {t}");
    }
    // The same rules for a config's routes, through `check`.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(&dir, &config("g", &[(&long, "t")], ""));
    let out = sluice(&["check", "--config", &cfg], None);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("route[0].topic") && t.contains("at most 249"),
        "{t}"
    );
}

/// A tool whose reader goes away (`sluice topics list | head -1`) ends quietly by SIGPIPE,
/// as Unix tools do, instead of panicking on the broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_a_tool_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let topic = unique("pipe");
    create_topic(&topic, 1).await;
    for args in [vec!["topics", "list"], vec!["topics", "describe", &topic]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(&args)
            .env("SLUICE_BROKERS", kafka())
            .env_remove("SLUICE_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sluice");
        // Closed before the tool has connected to Kafka, let alone printed.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("sluice output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            out.status.signal(),
            Some(13),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

/// `produce` stopped by a message Kafka refuses says which line, and that the lines before it
/// were delivered (a whitespace-only line is skipped, not sent); `lag` for a route whose topic
/// does not exist says so instead of printing an empty table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_lag_say_where_and_what_went_wrong() {
    let topic = unique("where");
    create_topic(&topic, 1).await;
    let big = format!("{{\"s\":\"{}\"}}", "x".repeat(1_100_000));
    let input = format!("{{\"id\":1}}\n \t \n{{\"id\":2}}\n{big}\n{{\"id\":3}}\n");
    let out = sluice(&["produce", "--topic", &topic], Some(&input));
    let t = text(&out);
    assert!(!out.status.success(), "{}", &t[..t.len().min(500)]);
    assert!(t.contains("line 4 of stdin"), "{}", &t[..t.len().min(500)]);
    assert!(
        t.contains("the 2 messages before it were sent and acknowledged"),
        "{}",
        &t[..t.len().min(500)]
    );
    assert_eq!(count_all(&topic), "2 messages\n");

    let dir = tempfile::tempdir().expect("tempdir");
    let missing = unique("missing");
    let cfg = write_config(&dir, &config(&unique("g"), &[(&missing, "t")], ""));
    let out = sluice(&["lag", "--config", &cfg], None);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!("topic {missing} does not exist")),
        "{t}"
    );
}

/// A session timeout the broker refuses (below its group.min.session.timeout.ms, 6 s by
/// default) stops `run` with the setting named, instead of a consumer that retries its join
/// forever without reading anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_timeout_the_broker_refuses_stops_the_run() {
    let (topic, _table) = topic_with_table("session", 1, "id UInt64").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(
        &dir,
        &config(&unique("g"), &[(&topic, &topic)], "")
            .replace("session_timeout = \"10s\"", "session_timeout = \"1s\""),
    );
    let mut child = spawn_run(&cfg);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("sluice run was still retrying its group join after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let out = child.wait_with_output().expect("sluice output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{err}");
    assert!(err.contains("kafka.session_timeout"), "{err}");
}

/// A plain view takes no inserts (every INSERT answers NOT_IMPLEMENTED): `check` refuses it by
/// name instead of passing it to a run that would retry forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_a_view_as_the_target() {
    let (topic, table) = topic_with_table("viewtarget", 1, "id UInt64").await;
    let view = format!("{topic}_v");
    ch(&format!(
        "CREATE VIEW default.{view} AS SELECT id FROM {table}"
    ))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(&dir, &config(&unique("g"), &[(&topic, &view)], ""));
    let out = sluice(&["check", "--config", &cfg], None);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("is a view (CREATE VIEW)"), "{t}");

    // An unsupported column type is named once (it was printed twice, as message and cause).
    let (topic, table) = topic_with_table(
        "aggtarget",
        1,
        "id UInt64, a AggregateFunction(uniq, UInt64)",
    )
    .await;
    let cfg = write_config(&dir, &config(&unique("g"), &[(&topic, &topic)], ""));
    let out = sluice(&["check", "--config", &cfg], None);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert_eq!(
        t.matches("unsupported ClickHouse type AggregateFunction(uniq, UInt64)")
            .count(),
        1,
        "{t} ({table})"
    );
}

/// `produce --value-schema` writes JSON lines as Avro, as Protobuf and as JSON Schema
/// messages of a schema it registers; the pipeline reads all three back into tables, value
/// for value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_writes_avro_protobuf_and_json_schema_that_the_pipeline_reads() {
    init_logs();
    let dir = tempfile::tempdir().expect("tmp");
    let avsc = dir.path().join("order.avsc");
    std::fs::write(
        &avsc,
        r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},
            {"name":"name","type":"string"},{"name":"note","type":["null","string"]},
            {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B"]}}]}"#,
    )
    .expect("write avsc");
    let proto = dir.path().join("order.proto");
    std::fs::write(
        &proto,
        "syntax = \"proto3\";\nmessage Envelope { string x = 1; }\n\
         message Order { int64 id = 1; string name = 2; optional string note = 3; Kind kind = 4;\n\
         enum Kind { A = 0; B = 1; } }\n",
    )
    .expect("write proto");
    let json_schema = dir.path().join("order.json");
    std::fs::write(
        &json_schema,
        r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
            "properties":{"id":{"type":"integer"},"name":{"type":"string"},
            "note":{"type":["string","null"]},"kind":{"enum":["A","B"]}}}"#,
    )
    .expect("write json schema");
    let avro_topic = unique("cli_avro");
    let proto_topic = unique("cli_proto");
    let json_topic = unique("cli_json_schema");
    for t in [&avro_topic, &proto_topic, &json_topic] {
        create_topic(t, 1).await;
        ch(&format!(
            "CREATE TABLE default.{t} (id Int64, name String, note Nullable(String), \
             kind Enum8('A' = 0, 'B' = 1)) ENGINE = MergeTree ORDER BY id"
        ))
        .await;
    }
    let n = 50;
    let lines: String = (0..n)
        .map(|i| {
            let note = if i % 2 == 0 {
                "null".to_string()
            } else {
                format!("\"n{i}\"")
            };
            format!(
                "{{\"id\": {i}, \"name\": \"o{i}\", \"note\": {note}, \"kind\": \"{}\"}}\n",
                ["A", "B"][i % 2]
            )
        })
        .collect();
    let registry = registry_url();
    let avsc_s = avsc.to_string_lossy().to_string();
    let proto_s = proto.to_string_lossy().to_string();
    let json_s = json_schema.to_string_lossy().to_string();
    for (topic, schema, extra, bad_line, why) in [
        (
            &avro_topic,
            &avsc_s,
            None,
            "{\"id\": \"seven\"}",
            "does not fit",
        ),
        (
            &proto_topic,
            &proto_s,
            Some("Order"),
            "{\"id\": \"seven\"}",
            "does not fit",
        ),
        // JSON Schema lines are not validated (as Confluent's serializer by default), but
        // each must be a JSON object.
        (&json_topic, &json_s, None, "[7]", "is not a JSON object"),
    ] {
        let mut args = vec![
            "produce",
            "--topic",
            topic,
            "--value-schema",
            schema,
            "--registry",
            &registry,
        ];
        if let Some(m) = extra {
            args.extend(["--message", m]);
        }
        let out = sluice(&args, Some(&lines));
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(
            t.contains(&format!("registered under {topic}-value as id")),
            "{t}"
        );
        assert!(t.contains(&format!("produced {n} messages")), "{t}");
        // A line that does not fit stops the tool and says which line and why.
        let bad = sluice(&args, Some(&format!("{bad_line}\n")));
        let t = text(&bad);
        assert!(!bad.status.success(), "{t}");
        assert!(t.contains(&format!("line 1 of stdin {why}")), "{t}");
    }
    let mut cfg = config(
        &unique("g"),
        &[(&avro_topic, &avro_topic)],
        "format = \"avro\"",
    );
    cfg.push_str(&format!(
        "\n[[route]]\ntopic = \"{proto_topic}\"\ntable = \"{proto_topic}\"\nmax_age = \"200ms\"\n\
         delivery = \"at-least-once\"\nformat = \"protobuf\"\n\n\
         [[route]]\ntopic = \"{json_topic}\"\ntable = \"{json_topic}\"\nmax_age = \"200ms\"\n\
         delivery = \"at-least-once\"\nformat = \"json-schema\"\nvalidate = true\n\n[schema_registry]\nurl = \"{registry}\"\n"
    ));
    let run = start(&cfg);
    for t in [&avro_topic, &proto_topic, &json_topic] {
        let got = wait_for_count(&format!("default.{t}"), n as u64, Duration::from_secs(60)).await;
        assert_eq!(got, n as u64, "{t}");
    }
    run.stop().await;
    for t in [&avro_topic, &proto_topic, &json_topic] {
        let ok = ch_u64(&format!(
            "SELECT countIf(name = concat('o', toString(id))
                AND if(id % 2 = 0, isNull(note), note = concat('n', toString(id)))
                AND kind = if(id % 2 = 0, 'A', 'B')) FROM default.{t}"
        ))
        .await;
        assert_eq!(ok, n as u64, "{t}: rows differ from the lines produced");
    }
}

/// SIGHUP makes `sluice run` read its config file again: a valid one is taken (a second
/// route starts filling its table, the first goes on from its committed offsets, exactly
/// once: no id twice), an invalid one is refused with the reason while the running
/// configuration goes on, and SIGTERM still stops the run cleanly. Without the reload the
/// second table stays empty and the test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_and_an_invalid_one_is_refused() {
    let a = exactly_once_topic("hupa", 2, "id UInt64, v String").await;
    let b = exactly_once_topic("hupb", 1, "id UInt64, v String").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let group = unique("g");
    let one = config(&group, &[(&a, &a)], "delivery = \"exactly-once\"\n");
    let cfg = write_config(&dir, &one);
    let child = spawn_run(&cfg);
    let pid = child.id() as libc::pid_t;
    let hup = || {
        // SAFETY: kill(2) on the child's pid, which is alive until it is waited for.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    };
    let (ta, tb) = (format!("default.{a}"), format!("default.{b}"));
    produce(&a, id_messages(0, 100, 2, "v", "a"));
    assert_eq!(wait_for_count(&ta, 100, Duration::from_secs(60)).await, 100);

    // A second route, and the first's batches shorter: taken on SIGHUP.
    let two = config(
        &group,
        &[(&a, &a), (&b, &b)],
        "delivery = \"exactly-once\"\nmax_rows = 10\n",
    );
    write_config(&dir, &two);
    hup();
    produce(&b, id_messages(0, 40, 1, "v", "b"));
    produce(&a, id_messages(100, 150, 2, "v", "a"));
    assert_eq!(wait_for_count(&tb, 40, Duration::from_secs(60)).await, 40);
    assert_eq!(wait_for_count(&ta, 150, Duration::from_secs(60)).await, 150);

    // An invalid file is refused; the run goes on with the second configuration.
    write_config(&dir, &two.replace("max_rows = 10", "max_rows = \"many\""));
    hup();
    tokio::time::sleep(Duration::from_secs(1)).await;
    produce(&b, id_messages(40, 60, 1, "v", "b"));
    assert_eq!(wait_for_count(&tb, 60, Duration::from_secs(60)).await, 60);

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().expect("sluice output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("configuration reloaded"), "{err}");
    assert!(
        err.contains("the configuration was not reloaded") && err.contains("max_rows"),
        "{err}"
    );
    for (t, n) in [(&ta, 150), (&tb, 60)] {
        assert_eq!(
            ch(&format!(
                "SELECT count(), uniqExact(id) FROM {t} FORMAT CSV"
            ))
            .await,
            format!("{n},{n}\n"),
            "{t}"
        );
    }
}
