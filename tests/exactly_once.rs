//! exactly-once is refused, with the reason and the fix, where the target table cannot
//! deduplicate a repeated insert; accepted where it can (with notes for materialized views).
//! Both `sluice check` and `sluice run` say so before anything is consumed.

mod common;

use std::process::Command;

use common::*;

fn check(config_text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("sluice.toml");
    std::fs::write(&p, config_text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .expect("run sluice check");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs the real pipeline on `config_text`; it must fail at start with a message containing
/// every `needles`.
async fn run_refuses(config_text: &str, needles: &[&str]) {
    let cfg = sluice::config::from_str(config_text, Vec::new()).expect("valid config");
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        sluice::pipeline::run(cfg, std::future::pending()),
    )
    .await
    .expect("refused promptly");
    let err = format!("{:#}", res.expect_err("exactly-once must be refused"));
    for n in needles {
        assert!(err.contains(n), "run error lacks {n:?}: {err}");
    }
}

async fn table(url: &str, ddl_tail: &str) -> (String, String) {
    let topic = unique("eos");
    create_topic(&topic, 4).await;
    ch_at(
        url,
        &format!("CREATE TABLE default.{topic} (id UInt64, v String) {ddl_tail}"),
    )
    .await;
    (topic.clone(), topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_where_deduplication_cannot_hold() {
    let eos = "delivery = \"exactly-once\"";
    let cases: [(&str, &[&str]); 4] = [
        (
            "ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 0",
            &[
                "non_replicated_deduplication_window = 0",
                "MODIFY SETTING non_replicated_deduplication_window = 1000",
                "at-least-once",
            ],
        ),
        (
            "ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 10",
            &["is below the 64 that 4 partition(s) need"],
        ),
        (
            "ENGINE = Memory",
            &[
                "engine Memory does not deduplicate inserts",
                "MergeTree-family",
            ],
        ),
        (
            "ENGINE = TinyLog",
            &["engine TinyLog does not deduplicate inserts"],
        ),
    ];
    for (ddl, needles) in cases {
        let (topic, t) = table(&ch_url(), ddl).await;
        let cfg = config(&unique("g"), &[(&topic, &t)], eos);
        let (ok, out) = check(&cfg);
        assert!(!ok, "check must fail for {ddl}:\n{out}");
        assert!(out.contains("exactly-once: FAILED"), "{out}");
        for n in needles {
            assert!(
                out.contains(n),
                "check output lacks {n:?} for {ddl}:\n{out}"
            );
        }
        run_refuses(&cfg, needles).await;
        // The same table is fine for at-least-once.
        let (ok, out) = check(&config(
            &unique("g"),
            &[(&topic, &t)],
            "delivery = \"at-least-once\"",
        ));
        assert!(ok, "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_server_needs_a_replicated_table() {
    let (topic, t) = table(&legacy_ch_url(), "ENGINE = MergeTree ORDER BY id").await;
    let cfg = config_at(
        &legacy_ch_url(),
        &unique("g"),
        &[(&topic, &t)],
        "delivery = \"exactly-once\"",
    );
    let (ok, out) = check(&cfg);
    assert!(!ok, "{out}");
    assert!(out.contains("use a ReplicatedMergeTree table"), "{out}");
    run_refuses(
        &cfg,
        &["cannot deduplicate inserts into a non-replicated MergeTree"],
    )
    .await;

    let (topic, t) = table(
        &legacy_ch_url(),
        &format!("ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{}', '{{replica}}') ORDER BY id", unique("rmt")),
    )
    .await;
    let (ok, out) = check(&config_at(
        &legacy_ch_url(),
        &unique("g"),
        &[(&topic, &t)],
        "delivery = \"exactly-once\"",
    ));
    assert!(ok, "{out}");
    assert!(out.contains("content hash"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialized_views_are_named_and_deduplicated_too() {
    let (topic, t) = table(
        &ch_url(),
        "ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
    let mv = format!("{t}_mv");
    ch(&format!(
        "CREATE MATERIALIZED VIEW default.{mv} ENGINE = MergeTree ORDER BY id AS SELECT id, length(v) AS n FROM default.{t}"
    ))
    .await;
    let (ok, out) = check(&config(
        &unique("g"),
        &[(&topic, &t)],
        "delivery = \"exactly-once\"",
    ));
    assert!(ok, "{out}");
    assert!(out.contains("exactly-once: ok"), "{out}");
    assert!(
        out.contains(&format!("default.{mv}"))
            && out.contains("deduplicate_blocks_in_dependent_materialized_views"),
        "{out}"
    );
}
