//! Secure connections against the real servers of `./dev/testbed up --secure`: the Apache
//! Kafka broker's SASL_SSL (PLAIN, SCRAM-SHA-256/512), SSL with client certificates (mTLS) and
//! SASL_PLAINTEXT listeners, ClickHouse 26.9 over HTTPS with a password user (TLS terminated in
//! front of chdb, which cannot listen HTTPS), ClickHouse 18.16 serving HTTPS itself, and the
//! schema registry over HTTPS.
//!
//! - Ingest: the real pipeline (consumer, dead-letter producer) over SCRAM-SHA-512, PLAIN and
//!   mTLS; row counts and contents checked; the CLI tools over the same config.
//! - Failures: a wrong SASL password, an unknown CA, a plaintext client against a TLS listener,
//!   a client without certificate against the mTLS listener, a wrong ClickHouse password: each
//!   one readable line from `sluice check` (non-zero exit) and from `sluice run`, which exits
//!   non-zero at once instead of retrying in a loop.
//! - OAuth: SASL/OAUTHBEARER with tokens from a real OIDC issuer (Keycloak), renewed while the
//!   pipeline runs, and a refused client secret.
//! - Kerberos: SASL/GSSAPI against a real KDC (MIT Kerberos), with a keytab and with a ticket
//!   cache, and a principal the keytab does not hold.
//! - Secrets: a real run and `check` at debug level (librdkafka's debug contexts included) and
//!   a failing run with a wrong password: no log line and no output carries a secret; neither do
//!   the metrics.
//!
//! The settings come from `./dev/testbed env` (SLUICE_TEST_KAFKA_SASL_SSL, ...). Without them
//! the tests print why and pass, unless SLUICE_TEST_REQUIRE_SECURE=1 (set by ./dev/test), which
//! makes a missing secure testbed a failure.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::message::{Headers, Message};

/// The secure testbed's addresses, users and files.
struct Sec {
    sasl_ssl: String,
    ssl: String,
    sasl_plaintext: String,
    plain_user: String,
    plain_password: String,
    scram_user: String,
    scram_password: String,
    ca: String,
    other_ca: String,
    client_cert: String,
    client_key: String,
    client_key_encrypted: String,
    client_key_password: String,
    ch_https: String,
    ch_user: String,
    ch_password: String,
    legacy_ch_https: Option<String>,
    registry_https: String,
}

fn sec() -> Option<Sec> {
    let v = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    let Some(sasl_ssl) = v("SLUICE_TEST_KAFKA_SASL_SSL") else {
        assert!(
            v("SLUICE_TEST_REQUIRE_SECURE").as_deref() != Some("1"),
            "SLUICE_TEST_REQUIRE_SECURE=1 but SLUICE_TEST_KAFKA_SASL_SSL is not set: start the secure testbed (./dev/testbed up --secure; eval \"$(./dev/testbed env)\")"
        );
        eprintln!(
            "skipped: no secure testbed (./dev/testbed up --secure; eval \"$(./dev/testbed env)\")"
        );
        return None;
    };
    let need = |k: &str| v(k).unwrap_or_else(|| panic!("{k} is not set (./dev/testbed env)"));
    Some(Sec {
        sasl_ssl,
        ssl: need("SLUICE_TEST_KAFKA_SSL"),
        sasl_plaintext: need("SLUICE_TEST_KAFKA_SASL_PLAINTEXT"),
        plain_user: need("SLUICE_TEST_KAFKA_PLAIN_USER"),
        plain_password: need("SLUICE_TEST_KAFKA_PLAIN_PASSWORD"),
        scram_user: need("SLUICE_TEST_KAFKA_SCRAM_USER"),
        scram_password: need("SLUICE_TEST_KAFKA_SCRAM_PASSWORD"),
        ca: need("SLUICE_TEST_TLS_CA"),
        other_ca: need("SLUICE_TEST_TLS_OTHER_CA"),
        client_cert: need("SLUICE_TEST_TLS_CLIENT_CERT"),
        client_key: need("SLUICE_TEST_TLS_CLIENT_KEY"),
        client_key_encrypted: need("SLUICE_TEST_TLS_CLIENT_KEY_ENCRYPTED"),
        client_key_password: need("SLUICE_TEST_TLS_CLIENT_KEY_PASSWORD"),
        ch_https: need("SLUICE_TEST_CLICKHOUSE_HTTPS_URL"),
        ch_user: need("SLUICE_TEST_CLICKHOUSE_SECURE_USER"),
        ch_password: need("SLUICE_TEST_CLICKHOUSE_SECURE_PASSWORD"),
        legacy_ch_https: v("SLUICE_TEST_LEGACY_CLICKHOUSE_HTTPS_URL"),
        registry_https: need("SLUICE_TEST_REGISTRY_HTTPS_URL"),
    })
}

impl Sec {
    /// `[kafka]` over SASL_SSL with `mechanism` and the matching testbed user.
    fn sasl_ssl(&self, group: &str, mechanism: &str) -> String {
        let (user, password) = self.user_for(mechanism);
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\nsession_timeout = \"10s\"\nsecurity_protocol = \"SASL_SSL\"\nsasl_mechanism = \"{mechanism}\"\nsasl_username = \"{user}\"\nsasl_password = \"{password}\"\nssl_ca_location = \"{}\"\n",
            self.sasl_ssl, self.ca
        )
    }

    fn user_for(&self, mechanism: &str) -> (&str, &str) {
        if mechanism == "PLAIN" {
            (&self.plain_user, &self.plain_password)
        } else {
            (&self.scram_user, &self.scram_password)
        }
    }

    /// `[kafka]` over SSL with a client certificate (mTLS).
    fn mtls(&self, group: &str, encrypted_key: bool) -> String {
        let key = if encrypted_key {
            format!(
                "ssl_key_location = \"{}\"\nssl_key_password = \"{}\"\n",
                self.client_key_encrypted, self.client_key_password
            )
        } else {
            format!("ssl_key_location = \"{}\"\n", self.client_key)
        };
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\nsession_timeout = \"10s\"\nsecurity_protocol = \"SSL\"\nssl_ca_location = \"{}\"\nssl_certificate_location = \"{}\"\n{key}",
            self.ssl, self.ca, self.client_cert
        )
    }

    /// The testbed's client certificate and key as a PKCS#12 keystore at `path` (made by
    /// `openssl pkcs12 -export`), with the CA's certificate in its chain if `with_ca`.
    fn client_pkcs12(&self, path: &Path, password: &str, with_ca: bool) {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "pkcs12",
            "-export",
            "-in",
            &self.client_cert,
            "-inkey",
            &self.client_key,
        ]);
        if with_ca {
            cmd.args(["-certfile", &self.ca]);
        }
        let made = cmd
            .args([
                "-name",
                "sluice-client",
                "-passout",
                &format!("pass:{password}"),
                "-out",
            ])
            .arg(path)
            .output()
            .expect("openssl runs");
        assert!(made.status.success(), "{}", text(&made));
    }

    /// `[clickhouse]` over HTTPS with the password user (and a client certificate if asked).
    fn clickhouse_https(&self, url: &str, client_cert: bool) -> String {
        let mut s = format!(
            "\n[clickhouse]\nurl = \"{url}\"\nuser = \"{}\"\npassword = \"{}\"\nca_file = \"{}\"\n",
            self.ch_user, self.ch_password, self.ca
        );
        if client_cert {
            s.push_str(&format!(
                "client_cert = \"{}\"\nclient_key = \"{}\"\n",
                self.client_cert, self.client_key
            ));
        }
        s
    }
}

fn route(topic: &str, table: &str, extra: &str) -> String {
    format!(
        "\n[service]\nshutdown_timeout = \"20s\"\n\n[[route]]\ntopic = \"{topic}\"\ntable = \"{table}\"\nmax_age = \"200ms\"\n{extra}\n"
    )
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write file");
    p
}

fn sluice(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run sluice")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `sluice run` that must fail: returns (output, how long it took). Killed (and the test
/// failed) if it is still running after `bound`.
fn run_expecting_failure(
    config: &Path,
    env: &[(&str, &str)],
    bound: Duration,
) -> (String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--config"])
        .arg(config)
        .env_remove("SLUICE_CONFIG")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice run");
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "sluice run still running after {bound:?} (retrying instead of failing):\n{}",
                text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().expect("output");
    assert!(
        !out.status.success(),
        "sluice run succeeded:\n{}",
        text(&out)
    );
    (text(&out), took)
}

/// `sluice check` of `config` (written into `dir`): whether it passed, and its output.
fn check(dir: &Path, config: &str) -> (bool, String) {
    let cfg = write(dir, "check.toml", config);
    let out = sluice(&["check", "--config", &cfg.to_string_lossy()], &[]);
    (out.status.success(), text(&out))
}

/// The failure must be named by `check` (non-zero exit, `expect` in its output) and end
/// `sluice run` quickly with the same cause, in a handful of log lines (no retry loop).
fn assert_fails_clearly(config_text: &str, expect: &[&str], tag: &str) {
    assert_fails_clearly_env(config_text, &[], expect, tag)
}

/// [`assert_fails_clearly`] with extra environment variables for `check` and `run`.
fn assert_fails_clearly_env(config_text: &str, env: &[(&str, &str)], expect: &[&str], tag: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write(dir.path(), "sluice.toml", config_text);
    let cfg_s = cfg.to_string_lossy().to_string();

    let out = sluice(&["check", "--config", &cfg_s], env);
    let t = text(&out);
    assert!(!out.status.success(), "[{tag}] check passed:\n{t}");
    assert!(t.contains("check FAILED"), "[{tag}] {t}");
    for e in expect {
        assert!(t.contains(e), "[{tag}] check output lacks {e:?}:\n{t}");
    }

    let (t, took) = run_expecting_failure(&cfg, env, Duration::from_secs(30));
    for e in expect {
        assert!(t.contains(e), "[{tag}] run output lacks {e:?}:\n{t}");
    }
    let error_lines: Vec<&str> = t.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        error_lines.len(),
        1,
        "[{tag}] one error line expected:\n{t}"
    );
    assert!(
        t.lines().count() < 40,
        "[{tag}] {} log lines: a retry loop?\n{t}",
        t.lines().count()
    );
    eprintln!(
        "[{tag}] check and run failed in {took:?}: {}",
        error_lines[0]
    );
}

/// A table for the test rows (exactly-once needs the deduplication window).
async fn create_table(table: &str) {
    ch(&format!(
        "CREATE TABLE {table} (id UInt64, name String, _partition Int32, _offset Int64)
         ENGINE = MergeTree ORDER BY (_partition, _offset)
         SETTINGS non_replicated_deduplication_window = 1000"
    ))
    .await;
}

fn messages(from: u64, to: u64, partitions: i32) -> Vec<Msg> {
    id_messages(from, to, partitions, "name", "n")
}

/// Count, sum of ids and a name check of `table`.
async fn assert_rows(table: &str, n: u64) {
    let got = wait_for_count(table, n, Duration::from_secs(60)).await;
    assert_eq!(got, n, "{table}: rows");
    // Once more after a pause: nothing arrives twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ch_u64(&format!("SELECT count() FROM {table}")).await, n);
    assert_eq!(
        ch_u64(&format!("SELECT sum(id) FROM {table}")).await,
        n * (n - 1) / 2,
        "{table}: ids"
    );
    assert_eq!(
        ch_u64(&format!(
            "SELECT count() FROM {table} WHERE name != concat('n', toString(id))"
        ))
        .await,
        0,
        "{table}: names"
    );
    assert_eq!(
        ch_u64(&format!("SELECT uniqExact(id) FROM {table}")).await,
        n,
        "{table}: duplicates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sasl_ssl_scram_sha512_into_https_clickhouse_with_password() {
    let Some(s) = sec() else { return };
    let topic = unique("sec_scram");
    create_topic(&topic, 3).await;
    let table = format!("default.{topic}");
    create_table(&table).await;
    let config = format!(
        "{}{}{}",
        s.sasl_ssl(&unique("g"), "SCRAM-SHA-512"),
        s.clickhouse_https(&s.ch_https, false),
        route(&topic, &topic, "")
    );
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write(dir.path(), "sluice.toml", &config);
    let cfg_s = cfg.to_string_lossy().to_string();

    // The CLI tools over the same SASL_SSL config: describe, then produce half the messages.
    let out = sluice(&["topics", "--config", &cfg_s, "describe", &topic], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&topic), "{}", text(&out));
    let lines: String = (0..300u64)
        .map(|i| format!("{{\"id\":{i},\"name\":\"n{i}\"}}\n"))
        .collect();
    let data = write(dir.path(), "data.jsonl", &lines);
    let out = sluice(
        &[
            "produce",
            "--config",
            &cfg_s,
            "--topic",
            &topic,
            &data.to_string_lossy(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("produced 300 messages (300 acknowledged"),
        "{}",
        text(&out)
    );
    produce(&topic, messages(300, 600, 3));
    // One bad message: dead-lettered by the secure dead-letter producer.
    produce(&topic, [Msg::json(0, "not json")]);

    let out = sluice(&["check", "--config", &cfg_s], &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("(SASL_SSL)") && t.contains("3 partition(s)"),
        "{t}"
    );
    assert!(
        t.contains(&format!("clickhouse: {} version 26.", s.ch_https)),
        "{t}"
    );

    let running = start(&config);
    assert_rows(&table, 600).await;
    let dlq = read_topic(&format!("{topic}.dlq"), Duration::from_secs(3));
    assert_eq!(dlq.len(), 1, "one dead letter");
    assert_eq!(dlq[0].payload(), Some(&b"not json"[..]));
    let reason = dlq[0]
        .headers()
        .and_then(|h| {
            h.iter()
                .find(|h| h.key == "sluice.error")
                .and_then(|h| h.value)
        })
        .map(|v| String::from_utf8_lossy(v).to_string())
        .unwrap_or_default();
    assert!(!reason.is_empty(), "sluice.error header");
    let summary = running.stop().await;
    assert_eq!(summary.rows_inserted, 600);
    assert_eq!(summary.dead_lettered, 1);

    // Offsets were committed over SASL_SSL too: `lag` (through the same config) shows 0.
    let out = sluice(&["lag", "--config", &cfg_s], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("total lag: 0"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sasl_ssl_plain_with_password_files() {
    let Some(s) = sec() else { return };
    let topic = unique("sec_plain");
    create_topic(&topic, 2).await;
    let table = format!("default.{topic}");
    create_table(&table).await;
    // Both passwords from files (what a secrets mount gives), ClickHouse over plain HTTP with
    // the password user.
    let dir = tempfile::tempdir().expect("tmp");
    let kpw = write(dir.path(), "kafka.pw", &format!("{}\n", s.plain_password));
    let chpw = write(dir.path(), "ch.pw", &s.ch_password);
    let kafka = s.sasl_ssl(&unique("g"), "PLAIN").replace(
        &format!("sasl_password = \"{}\"", s.plain_password),
        &format!("sasl_password_file = \"{}\"", kpw.display()),
    );
    assert!(kafka.contains("sasl_password_file"));
    let config = format!(
        "{kafka}\n[clickhouse]\nurl = \"{}\"\nuser = \"{}\"\npassword_file = \"{}\"\n{}",
        ch_url(),
        s.ch_user,
        chpw.display(),
        route(&topic, &topic, "")
    );
    produce(&topic, messages(0, 400, 2));
    let running = start(&config);
    assert_rows(&table, 400).await;
    let summary = running.stop().await;
    assert_eq!(summary.rows_inserted, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mtls_with_encrypted_key_into_https_clickhouse_with_client_certificate() {
    let Some(s) = sec() else { return };
    let topic = unique("sec_mtls");
    create_topic(&topic, 2).await;
    let table = format!("default.{topic}");
    create_table(&table).await;
    let config = format!(
        "{}{}{}",
        s.mtls(&unique("g"), true),
        s.clickhouse_https(&s.ch_https, true),
        route(&topic, &topic, "")
    );
    produce(&topic, messages(0, 500, 2));
    produce(&topic, [Msg::json(1, "[1,2]")]);
    let cfg = sluice::config::from_str(&config, Vec::new()).expect("valid config");
    // The own fetch path decrypts the key as librdkafka does; a wrong password is refused
    // with the reason, and never shown.
    assert!(sluice::kafka::secure::Security::new(&cfg.kafka).is_ok());
    let mut wrong = cfg.kafka.clone();
    wrong.ssl_key_password = Some(sluice::secret::Secret::new("wrong-Key-Pw-4d2c"));
    let e = sluice::kafka::secure::Security::new(&wrong).unwrap_err();
    assert!(
        e.contains("cannot decrypt it with kafka.ssl_key_password"),
        "{e}"
    );
    assert!(
        !e.contains("wrong-Key-Pw-4d2c") && !e.contains(&s.client_key_password),
        "{e}"
    );
    let (running, metrics) = start_with_metrics(cfg);
    assert_rows(&table, 500).await;
    assert_eq!(
        read_topic(&format!("{topic}.dlq"), Duration::from_secs(3)).len(),
        1
    );
    let summary = running.stop().await;
    assert_eq!(summary.rows_inserted, 500);
    assert_eq!(
        (
            metrics
                .own_fetch
                .records
                .load(std::sync::atomic::Ordering::Relaxed),
            metrics
                .own_fetch
                .handbacks
                .load(std::sync::atomic::Ordering::Relaxed)
        ),
        (501, 0),
        "every record read by the own path over mTLS with the decrypted key"
    );

    // The same with the unencrypted key, through `check` and `consume`.
    let dir = tempfile::tempdir().expect("tmp");
    let plain_key = format!(
        "{}{}{}",
        s.mtls(&unique("g"), false),
        s.clickhouse_https(&s.ch_https, false),
        route(&topic, &topic, "")
    );
    let cfg = write(dir.path(), "sluice.toml", &plain_key);
    let cfg_s = cfg.to_string_lossy().to_string();
    let out = sluice(&["check", "--config", &cfg_s], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("(SSL)"), "{}", text(&out));
    let out = sluice(
        &[
            "consume",
            "--config",
            &cfg_s,
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "3",
            "--idle-exit",
            "10s",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        3,
        "{}",
        text(&out)
    );
}

/// mTLS with the client certificate and key in a PKCS#12 keystore (what Java clients are
/// given), made from the testbed's PEM files by `openssl pkcs12 -export`: rows land, every
/// record read by the own fetch path (which opens the keystore with OpenSSL, as librdkafka
/// does). A wrong keystore password stops `check` and `run` with the cause, and never shows
/// the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_a_pkcs12_keystore() {
    let Some(s) = sec() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let keystore = dir.path().join("client.p12");
    let password = "p12-Pw-5e7a91c3";
    s.client_pkcs12(&keystore, password, false);
    let kafka = |password: &str| {
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\nsession_timeout = \"10s\"\nsecurity_protocol = \"SSL\"\nssl_ca_location = \"{}\"\nssl_keystore_location = \"{}\"\nssl_keystore_password = \"{password}\"\n",
            s.ssl,
            unique("g"),
            s.ca,
            keystore.display()
        )
    };
    let topic = unique("sec_p12");
    create_topic(&topic, 2).await;
    let table = format!("default.{topic}");
    create_table(&table).await;
    produce(&topic, messages(0, 300, 2));
    let good = format!(
        "{}{}{}",
        kafka(password),
        s.clickhouse_https(&s.ch_https, false),
        route(&topic, &topic, "")
    );
    let cfg = write(dir.path(), "good.toml", &good);
    let out = sluice(&["check", "--config", &cfg.to_string_lossy()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "kafka: records fetched by sluice's own path (connected to {} over TLS)",
            s.ssl
        )),
        "{}",
        text(&out)
    );
    let (running, metrics) =
        start_with_metrics(sluice::config::from_str(&good, Vec::new()).expect("config"));
    assert_rows(&table, 300).await;
    assert_eq!(running.stop().await.rows_inserted, 300);
    assert_eq!(
        own_path_reads(&metrics),
        (300, 0),
        "records read by the own path, handed back"
    );

    let wrong = "wrong-P12-0c4d";
    let config = format!(
        "{}{}{}",
        kafka(wrong),
        ok_clickhouse(&s),
        route(&topic, &topic, "")
    );
    let (passed, t) = check(dir.path(), &config);
    assert!(!passed, "check passed with a wrong keystore password:\n{t}");
    let cfg = write(dir.path(), "wrong.toml", &config);
    assert!(t.contains("ssl.keystore"), "{t}");
    assert!(
        !t.contains(wrong),
        "the keystore password reached the output:\n{t}"
    );
    let (t, _) = run_expecting_failure(&cfg, &[], Duration::from_secs(30));
    assert!(t.contains("ssl.keystore"), "{t}");
    assert!(
        !t.contains(wrong),
        "the keystore password reached the log:\n{t}"
    );
}

/// Runs keytool (the JDK's) with `args`; its output on failure.
fn keytool(args: &[&str]) {
    let out = Command::new("keytool")
        .args(args)
        .output()
        .expect("keytool runs");
    assert!(out.status.success(), "keytool {args:?}: {}", text(&out));
}

/// A Kafka Connect / Java client's TLS files as keytool makes them: a JKS keystore whose key
/// has a password of its own, a JKS truststore and a PKCS#12 truststore (Java's, with its
/// trusted-certificate attributes). Over mTLS rows land with the JKS keystore read by the own
/// fetch path (rustls) and by librdkafka (`ssl.certificate.pem`/`ssl.key.pem`), each with one
/// of the truststores, which also replaces `ca_file` for ClickHouse's HTTPS (the testbed's
/// private CA: without the truststore no connection is made). Wrong store and key passwords stop `check` at validation, naming the
/// setting and never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_java_keystores_and_truststores() {
    let Some(s) = sec() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let at = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (p12, jks, trust_jks, trust_p12) = (
        at("client.p12"),
        at("client.jks"),
        at("trust.jks"),
        at("trust.p12"),
    );
    let (p12_pw, store_pw, key_pw, trust_pw) = (
        "p12-Pw-7a1c",
        "jks-Store-Pw-39d2",
        "jks-Key-Pw-b84e",
        "trust-Pw-51f0",
    );
    s.client_pkcs12(Path::new(&p12), p12_pw, true);
    keytool(&[
        "-importkeystore",
        "-noprompt",
        "-srckeystore",
        &p12,
        "-srcstoretype",
        "PKCS12",
        "-srcstorepass",
        p12_pw,
        "-destkeystore",
        &jks,
        "-deststoretype",
        "JKS",
        "-deststorepass",
        store_pw,
        "-destkeypass",
        key_pw,
    ]);
    for (store, kind) in [(&trust_jks, "JKS"), (&trust_p12, "PKCS12")] {
        keytool(&[
            "-importcert",
            "-noprompt",
            "-alias",
            "testbed-ca",
            "-file",
            &s.ca,
            "-keystore",
            store,
            "-storetype",
            kind,
            "-storepass",
            trust_pw,
        ]);
    }
    let kafka = |store_pw: &str, key_pw: &str, truststore: &str| {
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\nsession_timeout = \"10s\"\nsecurity_protocol = \"SSL\"\nssl_keystore_location = \"{jks}\"\nssl_keystore_password = \"{store_pw}\"\nssl_key_password = \"{key_pw}\"\nssl_truststore_location = \"{truststore}\"\nssl_truststore_password = \"{trust_pw}\"\n",
            s.ssl,
            unique("g"),
        )
    };
    for (case, truststore, extra, fetched_by) in [
        (
            "own",
            &trust_jks,
            "",
            format!(
                "records fetched by sluice's own path (connected to {} over TLS)",
                s.ssl
            ),
        ),
        (
            "librdkafka",
            &trust_p12,
            "fetch = \"librdkafka\"\n",
            "records fetched by librdkafka (fetch = \"librdkafka\")".to_string(),
        ),
    ] {
        let topic = unique(&format!("sec_jks_{case}"));
        create_topic(&topic, 2).await;
        let table = format!("default.{topic}");
        create_table(&table).await;
        produce(&topic, messages(0, 300, 2));
        // ClickHouse over HTTPS with the same stores in place of ca_file (and, with the JKS
        // truststore, the JKS keystore in place of client_cert and client_key).
        let keystore = if case == "own" {
            format!("keystore_location = \"{jks}\"\nkeystore_password = \"{store_pw}\"\nkey_password = \"{key_pw}\"\n")
        } else {
            String::new()
        };
        let clickhouse = format!(
            "\n[clickhouse]\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\ntruststore_location = \"{truststore}\"\ntruststore_password = \"{trust_pw}\"\n{keystore}",
            s.ch_https, s.ch_user, s.ch_password
        );
        let config = format!(
            "{}{extra}{clickhouse}{}",
            kafka(store_pw, key_pw, truststore),
            route(&topic, &topic, "")
        );
        let cfg = write(dir.path(), &format!("{case}.toml"), &config);
        let out = sluice(&["check", "--config", &cfg.to_string_lossy()], &[]);
        let t = text(&out);
        assert!(out.status.success(), "[{case}] {t}");
        assert!(t.contains(&fetched_by), "[{case}] {t}");
        let (running, metrics) =
            start_with_metrics(sluice::config::from_str(&config, Vec::new()).expect("config"));
        assert_rows(&table, 300).await;
        assert_eq!(running.stop().await.rows_inserted, 300, "[{case}]");
        let expected = if case == "own" { (300, 0) } else { (0, 0) };
        assert_eq!(
            own_path_reads(&metrics),
            expected,
            "[{case}] own path reads, handbacks"
        );
    }

    let topic = unique("sec_jks_wrong");
    for (store, key, field, says) in [
        (
            "wrong-Store-Pw-1",
            key_pw,
            "kafka.ssl_keystore_location",
            "integrity check fails",
        ),
        (
            store_pw,
            "wrong-Key-Pw-2",
            "kafka.ssl_keystore_location",
            "wrong key password",
        ),
    ] {
        let config = format!(
            "{}{}{}",
            kafka(store, key, &trust_jks),
            ok_clickhouse(&s),
            route(&topic, &topic, "")
        );
        let (passed, t) = check(dir.path(), &config);
        assert!(!passed, "check passed with {store}/{key}:\n{t}");
        assert!(t.contains(field) && t.contains(says), "{t}");
        for pw in [store, key, trust_pw] {
            assert!(!t.contains(pw), "a password reached the output:\n{t}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_and_mechanism_connects() {
    let Some(s) = sec() else { return };
    let topic = unique("sec_any");
    create_topic(&topic, 1).await;
    let table = format!("default.{topic}");
    create_table(&table).await;
    let dir = tempfile::tempdir().expect("tmp");
    let ch = s.clickhouse_https(&s.ch_https, false);
    let sasl_plaintext = |mechanism: &str| {
        let (user, password) = s.user_for(mechanism);
        format!(
            "[kafka]\nbrokers = \"{}\"\nsecurity_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"{mechanism}\"\nsasl_username = \"{user}\"\nsasl_password = \"{password}\"\n",
            s.sasl_plaintext
        )
    };
    let cases = [
        ("PLAINTEXT", format!("[kafka]\nbrokers = \"{}\"\n", kafka())),
        ("SSL", s.mtls("g", false)),
        ("SASL_SSL", s.sasl_ssl("g", "PLAIN")),
        ("SASL_SSL", s.sasl_ssl("g", "SCRAM-SHA-256")),
        ("SASL_SSL", s.sasl_ssl("g", "SCRAM-SHA-512")),
        ("SASL_PLAINTEXT", sasl_plaintext("PLAIN")),
        ("SASL_PLAINTEXT", sasl_plaintext("SCRAM-SHA-256")),
        ("SASL_PLAINTEXT", sasl_plaintext("SCRAM-SHA-512")),
    ];
    for (i, (protocol, kafka)) in cases.iter().enumerate() {
        let cfg = write(
            dir.path(),
            &format!("c{i}.toml"),
            &format!("{kafka}{ch}{}", route(&topic, &topic, "")),
        );
        let out = sluice(&["check", "--config", &cfg.to_string_lossy()], &[]);
        let t = text(&out);
        assert!(out.status.success(), "case {i}: {t}");
        assert!(
            t.contains(&format!("reachable ({protocol})")),
            "case {i}: {t}"
        );
        // The own fetch path connected and authenticated the same way.
        assert!(
            t.contains("kafka: records fetched by sluice's own path (connected to"),
            "case {i}: {t}"
        );
    }
    // An encrypted client key (PKCS#8) is decrypted for the own path too; `fetch =
    // "librdkafka"` is said as such.
    for (name, kafka, says) in [
        (
            "encrypted.toml",
            s.mtls("g", true),
            "kafka: records fetched by sluice's own path (connected to",
        ),
        (
            "librdkafka.toml",
            format!("{}fetch = \"librdkafka\"\n", s.mtls("g", false)),
            "kafka: records fetched by librdkafka (fetch = \"librdkafka\")",
        ),
    ] {
        let cfg = write(
            dir.path(),
            name,
            &format!("{kafka}{ch}{}", route(&topic, &topic, "")),
        );
        let out = sluice(&["check", "--config", &cfg.to_string_lossy()], &[]);
        let t = text(&out);
        assert!(out.status.success(), "{name}: {t}");
        assert!(t.contains(says), "{name}: {t}");
    }
}

/// sluice's own fetch path (`kafka.fetch = "auto"`) over every secured listener: TLS with a
/// client certificate, with and without host name checking, and SASL PLAIN, SCRAM-SHA-256
/// and SCRAM-SHA-512 over TLS and over plain TCP. Each run reads every record itself (none
/// through librdkafka, none handed back) and stores every row once. Where the own path does
/// not reproduce librdkafka's settings (a key in OpenSSL's legacy encrypted PEM, GSSAPI),
/// librdkafka fetches; a PKCS#12 keystore is read by the own path
/// (`mtls_with_a_pkcs12_keystore`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_own_fetch_path_reads_over_every_secure_protocol() {
    let Some(s) = sec() else { return };
    let sasl_plaintext = |mechanism: &str| {
        let (user, password) = s.user_for(mechanism);
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\nsession_timeout = \"10s\"\nsecurity_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"{mechanism}\"\nsasl_username = \"{user}\"\nsasl_password = \"{password}\"\n",
            s.sasl_plaintext,
            unique("g")
        )
    };
    // The CA as a directory in OpenSSL's layout (`<subject hash>.0`), beside another CA's
    // certificate under a name OpenSSL never reads: what librdkafka trusts, and no more.
    let ca_dir = tempfile::tempdir().expect("tmp");
    let hash = Command::new("openssl")
        .args(["x509", "-hash", "-noout", "-in", &s.ca])
        .output()
        .expect("openssl runs");
    assert!(hash.status.success(), "{}", text(&hash));
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
    std::fs::copy(&s.ca, ca_dir.path().join(format!("{hash}.0"))).expect("copy the CA");
    std::fs::copy(&s.other_ca, ca_dir.path().join("other.pem")).expect("copy the other CA");
    let with_ca_dir = s
        .sasl_ssl(&unique("g"), "SCRAM-SHA-256")
        .replace(&s.ca, &ca_dir.path().to_string_lossy());
    assert!(with_ca_dir.contains(&*ca_dir.path().to_string_lossy()));
    let cases = [
        ("SSL", s.mtls(&unique("g"), false)),
        ("SASL_SSL SCRAM-SHA-256 with a CA directory", with_ca_dir),
        (
            "SSL without host name check",
            format!(
                "{}ssl_endpoint_identification = false\n",
                s.mtls(&unique("g"), false)
            ),
        ),
        ("SASL_SSL PLAIN", s.sasl_ssl(&unique("g"), "PLAIN")),
        (
            "SASL_SSL SCRAM-SHA-256",
            s.sasl_ssl(&unique("g"), "SCRAM-SHA-256"),
        ),
        (
            "SASL_SSL SCRAM-SHA-512",
            s.sasl_ssl(&unique("g"), "SCRAM-SHA-512"),
        ),
        ("SASL_PLAINTEXT PLAIN", sasl_plaintext("PLAIN")),
        (
            "SASL_PLAINTEXT SCRAM-SHA-256",
            sasl_plaintext("SCRAM-SHA-256"),
        ),
        (
            "SASL_PLAINTEXT SCRAM-SHA-512",
            sasl_plaintext("SCRAM-SHA-512"),
        ),
    ];
    for (case, kafka) in cases {
        let topic = unique("sec_own");
        create_topic(&topic, 2).await;
        let table = format!("default.{topic}");
        create_table(&table).await;
        produce(&topic, messages(0, 300, 2));
        let cfg = sluice::config::from_str(
            &format!("{kafka}{}{}", ok_clickhouse(&s), route(&topic, &topic, "")),
            Vec::new(),
        )
        .expect("valid config");
        assert_eq!(
            cfg.kafka.fetch,
            sluice::config::FetchPath::Sluice,
            "{case}: the own path is chosen"
        );
        let (running, metrics) = start_with_metrics(cfg);
        assert_rows(&table, 300).await;
        // Records that arrive while the run goes on come through the same connections.
        produce(&topic, messages(300, 400, 2));
        assert_rows(&table, 400).await;
        assert_eq!(running.stop().await.rows_inserted, 400, "{case}");
        assert_eq!(
            own_path_reads(&metrics),
            (400, 0),
            "{case}: every record read by the own path, none handed back to librdkafka"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_clickhouse_serves_https_itself() {
    let Some(s) = sec() else { return };
    let Some(url) = s.legacy_ch_https.clone() else {
        eprintln!("skipped: no legacy ClickHouse (./dev/testbed up --with-legacy --secure)");
        return;
    };
    let topic = unique("sec_legacy");
    create_topic(&topic, 2).await;
    let legacy = legacy_ch_url();
    ch_at(
        &legacy,
        &format!(
            "CREATE TABLE default.{topic} (id UInt64, name String) ENGINE = MergeTree ORDER BY id"
        ),
    )
    .await;
    let config = format!(
        "{}{}{}",
        s.sasl_ssl(&unique("g"), "SCRAM-SHA-256"),
        s.clickhouse_https(&url, true),
        route(&topic, &topic, "delivery = \"at-least-once\"")
    );
    produce(&topic, messages(0, 300, 2));
    let running = start(&config);
    let got = wait_for_count_at(
        &legacy,
        &format!("default.{topic}"),
        300,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(got, 300);
    assert_eq!(
        ch_at(&legacy, &format!("SELECT sum(id) FROM default.{topic}"))
            .await
            .trim(),
        (300u64 * 299 / 2).to_string()
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn avro_over_sasl_ssl_with_the_schema_registry_over_https() {
    use apache_avro::types::Value as V;
    let Some(s) = sec() else { return };
    let topic = unique("sec_avro");
    create_topic(&topic, 2).await;
    create_table(&topic).await;
    let schema = r#"{"type":"record","name":"R","fields":[
        {"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;
    let id = register_schema(&format!("{topic}-value"), None, schema).await;
    let parsed = apache_avro::Schema::parse_str(schema).unwrap();
    let msgs = (0..300i64).map(|i| {
        let mut m = vec![0];
        m.extend(id.to_be_bytes());
        let v = V::Record(vec![
            ("id".into(), V::Long(i)),
            ("name".into(), V::String(format!("n{i}"))),
        ]);
        m.extend(apache_avro::to_avro_datum(&parsed, v).unwrap());
        Msg {
            partition: Some((i % 2) as i32),
            key: None,
            payload: Some(m),
            headers: Vec::new(),
        }
    });
    produce(&topic, msgs);
    let registry = |ca: &str| {
        format!(
            "\n[schema_registry]\nurl = \"{}\"\nca_file = \"{ca}\"\n",
            s.registry_https
        )
    };
    let config = format!(
        "{}{}{}{}",
        s.sasl_ssl(&unique("g"), "SCRAM-SHA-512"),
        ok_clickhouse(&s),
        route(
            &topic,
            &topic,
            "delivery = \"at-least-once\"\nformat = \"avro\""
        ),
        registry(&s.ca)
    );
    let running = start(&config);
    let got = wait_for_count(&format!("default.{topic}"), 300, Duration::from_secs(60)).await;
    running.stop().await;
    assert_eq!(got, 300);
    // A Java truststore (PKCS#12, as keytool makes it) in place of ca_file: `check` reaches
    // the registry over HTTPS with it, and not without a CA.
    let dir = tempfile::tempdir().expect("tmp");
    let trust = dir
        .path()
        .join("registry-trust.p12")
        .to_string_lossy()
        .into_owned();
    keytool(&[
        "-importcert",
        "-noprompt",
        "-alias",
        "ca",
        "-file",
        &s.ca,
        "-keystore",
        &trust,
        "-storetype",
        "PKCS12",
        "-storepass",
        "reg-Trust-Pw",
    ]);
    for (case, tls, reachable) in [
        (
            "truststore",
            format!("truststore_location = \"{trust}\"\ntruststore_password = \"reg-Trust-Pw\"\n"),
            true,
        ),
        ("no CA", String::new(), false),
    ] {
        let with = config.replace(&format!("ca_file = \"{}\"\n", s.ca), &tls);
        assert_ne!(with, config);
        let cfg = write(dir.path(), "registry.toml", &with);
        let out = sluice(&["check", "--config", &cfg.to_string_lossy()], &[]);
        let t = text(&out);
        assert_eq!(
            t.contains(&format!("schema registry: {} reachable", s.registry_https)),
            reachable,
            "[{case}] {t}"
        );
    }
    assert_eq!(
        ch_u64(&format!(
            "SELECT countIf(name = concat('n', toString(id))) FROM default.{topic}"
        ))
        .await,
        300
    );
    // A registry certificate from another CA: check and run name the registry and stop.
    let untrusted = config.replace(&registry(&s.ca), &registry(&s.other_ca));
    assert_fails_clearly(
        &untrusted,
        &["schema registry", "certificate"],
        "registry_unknown_ca",
    );
}

// ---------------------------------------------------------------------------------------------
// failures: one readable cause from `check` and from `run`

/// The OIDC issuer (Keycloak) and the broker's OAUTHBEARER listener of the secure testbed.
struct OAuth {
    broker: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    token_seconds: u64,
}

/// A variable of the testbed's environment, if set and not empty.
fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|s| !s.is_empty())
}

/// [`env_var`] that the running testbed must have exported.
fn need(k: &str) -> String {
    env_var(k).unwrap_or_else(|| panic!("{k} is not set (./dev/testbed env)"))
}

/// The broker address of an optional part of the secure testbed (its `var`), or `None` and
/// why the test skips: the part needs software this machine lacks (`unavailable` says which),
/// or no secure testbed runs, which fails under SLUICE_TEST_REQUIRE_SECURE=1.
fn secure_part(var: &str, unavailable: &str, part: &str) -> Option<String> {
    if let Some(broker) = env_var(var) {
        return Some(broker);
    }
    if let Some(why) = env_var(unavailable) {
        eprintln!("skipped: the secure testbed has no {part}: {why}");
        return None;
    }
    assert!(
        env_var("SLUICE_TEST_REQUIRE_SECURE").as_deref() != Some("1"),
        "SLUICE_TEST_REQUIRE_SECURE=1 but {var} is not set: start the secure testbed (./dev/testbed up --secure; eval \"$(./dev/testbed env)\")"
    );
    eprintln!("skipped: no {part} testbed (./dev/testbed up --secure)");
    None
}

fn oauth() -> Option<OAuth> {
    let broker = secure_part(
        "SLUICE_TEST_KAFKA_OAUTH",
        "SLUICE_TEST_OAUTH_UNAVAILABLE",
        "OAuth issuer",
    )?;
    Some(OAuth {
        broker,
        token_url: need("SLUICE_TEST_OAUTH_TOKEN_URL"),
        client_id: need("SLUICE_TEST_OAUTH_CLIENT_ID"),
        client_secret: need("SLUICE_TEST_OAUTH_CLIENT_SECRET"),
        token_seconds: need("SLUICE_TEST_OAUTH_TOKEN_SECONDS")
            .parse()
            .expect("SLUICE_TEST_OAUTH_TOKEN_SECONDS"),
    })
}

impl OAuth {
    /// `[kafka]` on the OAUTHBEARER listener, tokens from the issuer by client credentials.
    fn kafka(&self, group: &str, secret: &str) -> String {
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\nsession_timeout = \"10s\"\nsecurity_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"OAUTHBEARER\"\nsasl_oauthbearer_token_endpoint_url = \"{}\"\nsasl_oauthbearer_client_id = \"{}\"\nsasl_oauthbearer_client_secret = \"{secret}\"\n",
            self.broker, self.token_url, self.client_id
        )
    }
}

/// Creates `topic` (2 partitions) and produces `n` JSON messages `{"id":i,"name":"ni"}` with
/// the CLI tools through the config at `cfg` (as Avro of `value_schema` if given).
fn create_and_produce_with(
    cfg: &str,
    dir: &Path,
    topic: &str,
    n: u64,
    value_schema: Option<&Path>,
    env: &[(&str, &str)],
) {
    let out = sluice(
        &[
            "topics",
            "--config",
            cfg,
            "create",
            topic,
            "--partitions",
            "2",
        ],
        env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let lines: String = (0..n)
        .map(|i| format!("{{\"id\":{i},\"name\":\"n{i}\"}}\n"))
        .collect();
    let data = write(dir, &format!("{topic}.jsonl"), &lines);
    let schema = value_schema.map(|p| p.to_string_lossy().to_string());
    let mut args = vec!["produce", "--config", cfg, "--topic", topic];
    if let Some(schema) = &schema {
        args.extend(["--value-schema", schema.as_str()]);
    }
    let data = data.to_string_lossy().to_string();
    args.push(&data);
    let out = sluice(&args, env);
    assert!(
        text(&out).contains(&format!("produced {n} messages ({n} acknowledged")),
        "{}",
        text(&out)
    );
}

/// SASL/OAUTHBEARER against a real OIDC issuer (Keycloak) and a broker that checks the tokens'
/// signature, issuer, audience and expiry, and ends a session after 10 s unless the client
/// authenticates again. The tokens live 20 s, the runs longer than two of them: rows produced
/// after the first token expired land only if the tokens were renewed and the connections
/// authenticated again. Two pipelines side by side: one whose records sluice's own fetch path
/// reads (its own token fetches, `kafka/oidc.rs`; a new connection before each session ends),
/// one with `fetch = "librdkafka"` (librdkafka's OIDC client and KIP-368 re-authentication).
/// The CLI tools (topics, produce, lag) and `check` use the same settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oauthbearer_with_tokens_from_an_oidc_issuer_renewed_while_running() {
    let Some(o) = oauth() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let mut runs = Vec::new();
    for (case, extra) in [("own", ""), ("librdkafka", "fetch = \"librdkafka\"\n")] {
        let topic = unique(&format!("sec_oauth_{case}"));
        let table = format!("default.{topic}");
        create_table(&table).await;
        let config = format!(
            "{}{extra}\n[clickhouse]\nurl = \"{}\"\n{}",
            o.kafka(&unique("g"), &o.client_secret),
            ch_url(),
            route(&topic, &topic, "")
        );
        let cfg = write(dir.path(), &format!("{case}.toml"), &config);
        let cfg_s = cfg.to_string_lossy().to_string();

        // The topic is created and half the messages produced through the OAuth listener.
        create_and_produce_with(&cfg_s, dir.path(), &topic, 300, None, &[]);

        let out = sluice(&["check", "--config", &cfg_s], &[]);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(
            t.contains("(SASL_PLAINTEXT)") && t.contains("2 partition(s)"),
            "[{case}] {t}"
        );
        let fetcher = if case == "own" {
            format!(
                "records fetched by sluice's own path (connected to {} with SASL OAUTHBEARER)",
                o.broker
            )
        } else {
            "records fetched by librdkafka (fetch = \"librdkafka\")".to_string()
        };
        assert!(t.contains(&fetcher), "[{case}] {t}");
        assert!(!t.contains(&o.client_secret), "{t}");
        let cfg = sluice::config::from_str(&config, Vec::new()).expect("valid config");
        runs.push((case, topic, table, cfg_s, start_with_metrics(cfg)));
    }

    let started = Instant::now();
    for (_, _, table, _, _) in &runs {
        assert_eq!(
            wait_for_count(table, 300, Duration::from_secs(60)).await,
            300
        );
    }
    // Past two token lifetimes and several sessions' ends, then more rows.
    let outlive = Duration::from_secs(o.token_seconds * 2 + 5);
    tokio::time::sleep(outlive.saturating_sub(started.elapsed())).await;
    for (_, topic, _, _, _) in &runs {
        produce(topic, messages(300, 600, 2));
    }
    for (case, _, table, cfg_s, (running, metrics)) in runs {
        assert_rows(&table, 600).await;
        assert_eq!(running.stop().await.rows_inserted, 600, "{case}");
        let read = own_path_reads(&metrics);
        let expected = if case == "own" { (600, 0) } else { (0, 0) };
        assert_eq!(
            read, expected,
            "[{case}] records read by the own path, handed back"
        );
        let out = sluice(&["lag", "--config", &cfg_s], &[]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("total lag: 0"), "{}", text(&out));
    }
    assert!(started.elapsed() > outlive);
}

/// A schema registry that demands credentials (Apicurio with OIDC authentication, HTTP basic
/// taken as an OIDC client's id and secret and exchanged for a token at the testbed issuer),
/// beside Kafka over OAUTHBEARER with the same client: `produce --value-schema` registers the
/// schema and writes Avro through it, `check` and an Avro route read the schema with the
/// credentials; a wrong password stops `check` and `run` with the registry's refusal, and no
/// output shows either secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn avro_through_a_schema_registry_that_demands_credentials() {
    let Some(o) = oauth() else { return };
    let url = std::env::var("SLUICE_TEST_REGISTRY_AUTH_URL")
        .expect("SLUICE_TEST_REGISTRY_AUTH_URL is not set (./dev/testbed env)");
    // HTTP basic (the registry exchanges the client's id and secret for a token itself), and
    // bearer (sluice fetches the token from the issuer and sends it).
    let basic = |secret: &str| {
        format!(
            "\n[schema_registry]\nurl = \"{url}\"\nusername = \"{}\"\npassword = \"{secret}\"\n",
            o.client_id
        )
    };
    let bearer = |secret: &str| {
        format!(
            "\n[schema_registry]\nurl = \"{url}\"\nbearer_auth_issuer_endpoint_url = \"{}\"\nbearer_auth_client_id = \"{}\"\nbearer_auth_client_secret = \"{secret}\"\n",
            o.token_url, o.client_id
        )
    };
    type Registry<'a> = &'a dyn Fn(&str) -> String;
    let cases: [(&str, Registry, &[&str]); 2] = [
        (
            "basic",
            &basic,
            &["schema registry", "refused the credentials"],
        ),
        (
            "bearer",
            &bearer,
            &["schema registry", &o.token_url, "Invalid client"],
        ),
    ];
    for (case, registry, refusal) in cases {
        let topic = unique(&format!("sec_reg_{case}"));
        let table = format!("default.{topic}");
        create_table(&table).await;
        let config = format!(
            "{}\n[clickhouse]\nurl = \"{}\"\n{}{}",
            o.kafka(&unique("g"), &o.client_secret),
            ch_url(),
            route(&topic, &topic, "format = \"avro\""),
            registry(&o.client_secret)
        );
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = write(dir.path(), "sluice.toml", &config);
        let cfg_s = cfg.to_string_lossy().to_string();
        let schema = write(
            dir.path(),
            "r.avsc",
            r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"}]}"#,
        );
        create_and_produce_with(&cfg_s, dir.path(), &topic, 200, Some(&schema), &[]);

        let out = sluice(&["check", "--config", &cfg_s], &[]);
        assert!(out.status.success(), "[{case}] {}", text(&out));
        let running = start(&config);
        assert_rows(&table, 200).await;
        assert_eq!(running.stop().await.rows_inserted, 200, "{case}");

        let wrong = config.replace(
            &registry(&o.client_secret),
            &registry("wrong-Secret-4d5e6f70"),
        );
        assert_ne!(wrong, config);
        assert_fails_clearly(
            &wrong,
            refusal,
            &format!("registry credentials refused ({case})"),
        );
        let bad = write(dir.path(), "bad.toml", &wrong);
        let env = [("RUST_LOG", "debug")];
        let mut all = text(&sluice(
            &["check", "--config", &bad.to_string_lossy()],
            &env,
        ));
        all.push_str(&run_expecting_failure(&bad, &env, Duration::from_secs(30)).0);
        assert_no_secret(
            &format!("failing registry check/run (debug, {case})"),
            &all,
            &["wrong-Secret-4d5e6f70".to_string(), o.client_secret.clone()],
        );
    }
    // Without credentials the registry refuses: the two cases above are not passing by default.
    let topic = failure_topic().await;
    let open = format!(
        "{}\n[clickhouse]\nurl = \"{}\"\n{}\n[schema_registry]\nurl = \"{url}\"\n",
        o.kafka("g", &o.client_secret),
        ch_url(),
        route(&topic, &topic, "format = \"avro\""),
    );
    assert_fails_clearly(
        &open,
        &["schema registry", "401"],
        "no registry credentials",
    );
}

/// A bearer token the registry refuses before its time (revoked, or the registry's keys
/// rotated): here a proxy in front of the testbed's registry refuses the first token it is
/// shown, for good. sluice drops it and sends the same request again with a new token from
/// the issuer, so the run starts and stores every row; it would fail at its start if it
/// offered the refused token again until 80 % of its lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_token_refused_before_its_time_is_replaced() {
    use std::sync::{Arc, Mutex};

    let Some(o) = oauth() else { return };
    let url = std::env::var("SLUICE_TEST_REGISTRY_AUTH_URL")
        .expect("SLUICE_TEST_REGISTRY_AUTH_URL is not set (./dev/testbed env)");
    let at = url.find("/apis/").expect("the registry's ccompat path");
    let (upstream, api) = (url[..at].to_string(), url[at..].to_string());
    // Every request the proxy saw: its token and the status it answered.
    let seen: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
    let log = seen.clone();
    let http = reqwest::Client::new();
    let proxy = registry_proxy(move |req: ProxyRequest| {
        let (log, upstream, http) = (log.clone(), upstream.clone(), http.clone());
        async move {
            let token = req
                .authorization
                .strip_prefix("Bearer ")
                .unwrap_or_default()
                .to_string();
            let revoked = log
                .lock()
                .unwrap()
                .first()
                .is_none_or(|(first, _)| *first == token);
            let (status, body) = if revoked {
                (
                    401,
                    br#"{"error_code":40101,"message":"token revoked"}"#.to_vec(),
                )
            } else {
                req.forward(&http, &upstream).await
            };
            log.lock().unwrap().push((token, status));
            (status, body)
        }
    })
    .await;

    let topic = unique("sec_reg_revoked");
    let table = format!("default.{topic}");
    create_table(&table).await;
    let registry = |url: &str| {
        format!(
            "\n[schema_registry]\nurl = \"{url}\"\nbearer_auth_issuer_endpoint_url = \"{}\"\nbearer_auth_client_id = \"{}\"\nbearer_auth_client_secret = \"{}\"\n",
            o.token_url, o.client_id, o.client_secret
        )
    };
    let base = format!(
        "{}\n[clickhouse]\nurl = \"{}\"\n{}",
        o.kafka(&unique("g"), &o.client_secret),
        ch_url(),
        route(&topic, &topic, "format = \"avro\""),
    );
    // Produced straight to the registry; run through the proxy.
    let dir = tempfile::tempdir().expect("tmp");
    let direct = write(dir.path(), "direct.toml", &(base.clone() + &registry(&url)));
    let schema = write(
        dir.path(),
        "r.avsc",
        r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"}]}"#,
    );
    create_and_produce_with(
        &direct.to_string_lossy(),
        dir.path(),
        &topic,
        200,
        Some(&schema),
        &[],
    );

    let running = start(&(base + &registry(&format!("{proxy}{api}"))));
    assert_rows(&table, 200).await;
    assert_eq!(running.stop().await.rows_inserted, 200);
    let seen = seen.lock().unwrap().clone();
    let (first, status) = seen.first().cloned().expect("the run asked the registry");
    assert_eq!(status, 401);
    assert!(!first.is_empty(), "a bearer token was sent");
    assert_eq!(
        seen.iter().filter(|(t, _)| *t == first).count(),
        1,
        "the refused token was offered again: {:?}",
        seen.iter().map(|(_, s)| s).collect::<Vec<_>>()
    );
    assert_eq!(
        seen[1].1, 200,
        "the next request, with a new token, is answered"
    );
}

/// A client secret the issuer refuses: `check` and `run` name the OIDC client, the token
/// endpoint and the issuer's answer, and neither echoes the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_oidc_client_secret_fails_check_and_run() {
    let Some(o) = oauth() else { return };
    let topic = failure_topic().await;
    let kafka = o.kafka("g", "wrong-Secret-9c8d7e6f");
    let config = format!(
        "{kafka}\n[clickhouse]\nurl = \"{}\"\n{}",
        ch_url(),
        route(&topic, &topic, "")
    );
    assert_fails_clearly(
        &config,
        &[
            "SASL OAUTHBEARER authentication failed for OIDC client",
            &o.token_url,
            "Invalid client",
        ],
        "wrong OIDC client secret",
    );
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write(dir.path(), "bad.toml", &config);
    let env = [("RUST_LOG", "debug")];
    let mut all = text(&sluice(
        &["check", "--config", &cfg.to_string_lossy()],
        &env,
    ));
    all.push_str(&run_expecting_failure(&cfg, &env, Duration::from_secs(30)).0);
    assert_no_secret(
        "failing OAuth check/run (debug)",
        &all,
        &["wrong-Secret-9c8d7e6f".to_string(), o.client_secret.clone()],
    );
}

/// The Kerberos realm (an MIT KDC) and the broker's GSSAPI listener of the secure testbed.
struct Krb {
    broker: String,
    krb5_config: String,
    principal: String,
    keytab: String,
    other_principal: String,
}

fn kerberos() -> Option<Krb> {
    let broker = secure_part(
        "SLUICE_TEST_KAFKA_GSSAPI",
        "SLUICE_TEST_KERBEROS_UNAVAILABLE",
        "Kerberos realm",
    )?;
    Some(Krb {
        broker,
        krb5_config: need("SLUICE_TEST_KRB5_CONFIG"),
        principal: need("SLUICE_TEST_KERBEROS_PRINCIPAL"),
        keytab: need("SLUICE_TEST_KERBEROS_KEYTAB"),
        other_principal: need("SLUICE_TEST_KERBEROS_OTHER_PRINCIPAL"),
    })
}

impl Krb {
    /// `[kafka]` on the GSSAPI listener: as `principal` from the client keytab, or (`None`)
    /// from whatever ticket cache the process has.
    fn kafka(&self, group: &str, principal: Option<&str>) -> String {
        let login = match principal {
            Some(p) => format!(
                "sasl_kerberos_principal = \"{p}\"\nsasl_kerberos_keytab = \"{}\"\n",
                self.keytab
            ),
            None => String::new(),
        };
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\nsession_timeout = \"10s\"\nsecurity_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"GSSAPI\"\n{login}",
            self.broker
        )
    }

    /// A process's Kerberos environment: the realm's krb5.conf, and a ticket cache of its own
    /// (librdkafka's kinit writes the default cache, which tests must not share).
    fn env<'a>(&'a self, ccache: &'a str) -> [(&'a str, &'a str); 2] {
        [("KRB5_CONFIG", &self.krb5_config), ("KRB5CCNAME", ccache)]
    }
}

/// SASL/GSSAPI against a real KDC (MIT Kerberos) and a broker that takes only Kerberos on
/// that listener: with a keytab (librdkafka's kinit logs in) the CLI tools create the topic and
/// produce, `check` names the path, and a `sluice run` process stores every row once; without
/// a keytab, a ticket cache made by `kinit` beforehand is used as it is, and with an empty one
/// `check` fails with the Kerberos headline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gssapi_with_a_keytab_and_with_a_ticket_cache() {
    let Some(k) = kerberos() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let ccache = format!("FILE:{}", dir.path().join("keytab.cc").display());
    let env = k.env(&ccache);
    let topic = unique("sec_gssapi");
    let table = format!("default.{topic}");
    create_table(&table).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let config = format!(
        "{}\n[clickhouse]\nurl = \"{}\"\n{}",
        k.kafka(&unique("g"), Some(&k.principal)),
        ch_url(),
        route(&topic, &topic, "").replace(
            "[service]\n",
            &format!("[service]\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
        )
    );
    let cfg = write(dir.path(), "keytab.toml", &config);
    let cfg_s = cfg.to_string_lossy().to_string();
    create_and_produce_with(&cfg_s, dir.path(), &topic, 300, None, &env);

    let out = sluice(&["check", "--config", &cfg_s], &env);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("(SASL_PLAINTEXT)") && t.contains("2 partition(s)"),
        "{t}"
    );
    // The own fetch path logs in with the ticket librdkafka's kinit put in the cache.
    assert!(
        t.contains(&format!(
            "records fetched by sluice's own path (connected to {} with SASL GSSAPI)",
            k.broker
        )),
        "{t}"
    );

    let log = dir.path().join("run.log");
    let mut run = Sluice::spawn_env(&cfg, &log, &env);
    assert_eq!(
        wait_for_count(&table, 300, Duration::from_secs(60)).await,
        300
    );
    produce(&topic, messages(300, 600, 2));
    assert_eq!(
        wait_for_count(&table, 600, Duration::from_secs(60)).await,
        600
    );
    assert!(run.is_running());
    // Every record came through the own path's GSSAPI connections, none handed back.
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics endpoint")
        .text()
        .await
        .unwrap_or_default();
    let counter = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    assert_eq!(
        counter("sluice_own_fetch_records_total"),
        Some(600),
        "{metrics}"
    );
    assert_eq!(
        counter("sluice_own_fetch_handbacks_total"),
        Some(0),
        "{metrics}"
    );
    run.signal("-TERM");
    assert!(run.wait(Duration::from_secs(30)).success());
    assert_rows(&table, 600).await;
    let out = sluice(&["lag", "--config", &cfg_s], &env);
    assert!(text(&out).contains("total lag: 0"), "{}", text(&out));

    // No keytab: the process's ticket cache. Empty, nothing authenticates...
    let cached = format!("FILE:{}", dir.path().join("user.cc").display());
    let env = k.env(&cached);
    let no_keytab = format!(
        "{}\n[clickhouse]\nurl = \"{}\"\n{}",
        k.kafka(&unique("g"), None),
        ch_url(),
        route(&topic, &topic, "")
    );
    let cfg = write(dir.path(), "cache.toml", &no_keytab);
    let cfg_s = cfg.to_string_lossy().to_string();
    let out = sluice(&["check", "--config", &cfg_s], &env);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("SASL GSSAPI (Kerberos) authentication failed for the Kerberos ticket cache's principal with service name \"kafka\""),
        "{t}"
    );
    // ... and after a kinit of its own, the same config reads the topic.
    let kinit = Command::new("kinit")
        .args(["-k", "-t", &k.keytab, &k.principal])
        .envs(env.iter().copied())
        .output()
        .expect("run kinit");
    assert!(kinit.status.success(), "{}", text(&kinit));
    let out = sluice(&["topics", "--config", &cfg_s, "list"], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&topic), "{}", text(&out));
    // The own fetch path logs in with that cache's ticket too.
    let out = sluice(&["check", "--config", &cfg_s], &env);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "records fetched by sluice's own path (connected to {} with SASL GSSAPI)",
            k.broker
        )),
        "{t}"
    );
}

/// A principal whose keys the keytab does not hold: librdkafka's kinit fails, and `check` and
/// `run` say so in one line each, naming the principal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssapi_with_a_principal_the_keytab_does_not_hold_fails_check_and_run() {
    let Some(k) = kerberos() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let ccache = format!("FILE:{}", dir.path().join("other.cc").display());
    let topic = failure_topic().await;
    let config = format!(
        "{}\n[clickhouse]\nurl = \"{}\"\n{}",
        k.kafka("g", Some(&k.other_principal)),
        ch_url(),
        route(&topic, &topic, "")
    );
    assert_fails_clearly_env(
        &config,
        &k.env(&ccache),
        &[&format!(
            "SASL GSSAPI (Kerberos) authentication failed for Kerberos principal {:?}",
            k.other_principal
        )],
        "principal not in the keytab",
    );
}

/// The records the own fetch path read, and the partitions it handed back to librdkafka.
fn own_path_reads(metrics: &sluice::telemetry::Metrics) -> (u64, u64) {
    let own = &metrics.own_fetch;
    (
        own.records.load(std::sync::atomic::Ordering::Relaxed),
        own.handbacks.load(std::sync::atomic::Ordering::Relaxed),
    )
}

fn ok_clickhouse(s: &Sec) -> String {
    s.clickhouse_https(&s.ch_https, false)
}

async fn failure_topic() -> String {
    let topic = unique("sec_fail");
    create_topic(&topic, 1).await;
    create_table(&format!("default.{topic}")).await;
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sasl_password_fails_check_and_run() {
    let Some(s) = sec() else { return };
    let topic = failure_topic().await;
    for mechanism in ["SCRAM-SHA-512", "PLAIN"] {
        let (_, right) = s.user_for(mechanism);
        let kafka = s
            .sasl_ssl("g", mechanism)
            .replace(right, "wrong-Pw-0a1b2c3d");
        assert_fails_clearly(
            &format!("{kafka}{}{}", ok_clickhouse(&s), route(&topic, &topic, "")),
            &[
                "SASL authentication failed for user",
                &format!("with mechanism {mechanism}"),
                "check kafka.sasl_username, kafka.sasl_password",
            ],
            &format!("wrong SASL password, {mechanism}"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ca_fails_check_and_run() {
    let Some(s) = sec() else { return };
    let topic = failure_topic().await;
    // Kafka trusts another CA than the one that signed the broker's certificate.
    let kafka = s.sasl_ssl("g", "SCRAM-SHA-512").replace(&s.ca, &s.other_ca);
    assert_fails_clearly(
        &format!("{kafka}{}{}", ok_clickhouse(&s), route(&topic, &topic, "")),
        &["TLS: certificate verify failed", "kafka.ssl_ca_location"],
        "Kafka unknown CA",
    );
    // ClickHouse likewise.
    let ch = ok_clickhouse(&s).replace(&s.ca, &s.other_ca);
    assert_fails_clearly(
        &format!(
            "{}{ch}{}",
            s.sasl_ssl("g", "SCRAM-SHA-512"),
            route(&topic, &topic, "")
        ),
        &["TLS handshake failed: unknown CA", &s.ch_https],
        "ClickHouse unknown CA",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_client_against_tls_listener_fails_check_and_run() {
    let Some(s) = sec() else { return };
    let topic = failure_topic().await;
    for listener in [&s.ssl, &s.sasl_ssl] {
        let kafka = format!("[kafka]\nbrokers = \"{listener}\"\n");
        assert_fails_clearly(
            &format!("{kafka}{}{}", ok_clickhouse(&s), route(&topic, &topic, "")),
            &[
                "the listener expects TLS",
                "but security_protocol is PLAINTEXT",
            ],
            &format!("PLAINTEXT client, TLS listener {listener}"),
        );
    }
    // And the other way round: a TLS client against the plaintext listener.
    let kafka = s.sasl_ssl("g", "PLAIN").replace(&s.sasl_ssl, &kafka());
    assert_fails_clearly(
        &format!("{kafka}{}{}", ok_clickhouse(&s), route(&topic, &topic, "")),
        &[
            "the listener does not speak TLS",
            "security_protocol is SASL_SSL",
        ],
        "SASL_SSL client, PLAINTEXT listener",
    );
    // A plain HTTP client against ClickHouse's HTTPS port.
    let ch = format!(
        "\n[clickhouse]\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n",
        s.ch_https.replace("https://", "http://"),
        s.ch_user,
        s.ch_password
    );
    assert_fails_clearly(
        &format!(
            "{}{ch}{}",
            s.sasl_ssl("g", "PLAIN"),
            route(&topic, &topic, "")
        ),
        &["if this port serves HTTPS, use an https:// URL"],
        "HTTP client, ClickHouse HTTPS port",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_client_certificate_fails_check_and_run() {
    let Some(s) = sec() else { return };
    let topic = failure_topic().await;
    let kafka = format!(
        "[kafka]\nbrokers = \"{}\"\nsecurity_protocol = \"SSL\"\nssl_ca_location = \"{}\"\n",
        s.ssl, s.ca
    );
    assert_fails_clearly(
        &format!("{kafka}{}{}", ok_clickhouse(&s), route(&topic, &topic, "")),
        &["TLS: the broker refused the client certificate (mTLS)"],
        "mTLS listener, no client certificate",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_clickhouse_password_fails_check_and_run() {
    let Some(s) = sec() else { return };
    let topic = failure_topic().await;
    let ch = ok_clickhouse(&s).replace(&s.ch_password, "wrong-ch-Pw-9z8y7x");
    assert_fails_clearly(
        &format!(
            "{}{ch}{}",
            s.sasl_ssl("g", "SCRAM-SHA-256"),
            route(&topic, &topic, "")
        ),
        &[&format!(
            "authentication failed for user '{}' (Code 516)",
            s.ch_user
        )],
        "wrong ClickHouse password",
    );
}

// ---------------------------------------------------------------------------------------------
// secrets never printed

/// Every secret the test bed knows, plus the wrong passwords the failure runs use.
fn secrets(s: &Sec) -> Vec<String> {
    vec![
        s.plain_password.clone(),
        s.scram_password.clone(),
        s.ch_password.clone(),
        s.client_key_password.clone(),
        "wrong-Pw-5e6f7a8b".to_string(),
    ]
}

fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
            panic!("{what} shows a secret: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_never_reach_logs_check_output_errors_or_metrics() {
    let Some(s) = sec() else { return };
    let secrets = secrets(&s);
    let topic = unique("sec_secret");
    create_topic(&topic, 2).await;
    let table = format!("default.{topic}");
    create_table(&table).await;
    let dir = tempfile::tempdir().expect("tmp");
    // SASL PLAIN (the password itself crosses the wire, inside TLS) with the password from the
    // environment; ClickHouse password in the file; librdkafka's debug contexts on, including
    // its configuration dump.
    let kafka = s
        .sasl_ssl(&unique("g"), "PLAIN")
        .replace(&format!("sasl_password = \"{}\"\n", s.plain_password), "")
        .replace(
            "[kafka]\n",
            "[kafka]\nproperties = { debug = \"generic,broker,security,protocol,conf,consumer,cgrp\" }\n",
        );
    let config = format!(
        "{kafka}{}{}",
        s.clickhouse_https(&s.ch_https, false),
        route(&topic, &topic, "")
    );
    assert!(!config.contains(&s.plain_password));
    let cfg = write(dir.path(), "sluice.toml", &config);
    let cfg_s = cfg.to_string_lossy().to_string();
    let env = [
        ("SLUICE__KAFKA__SASL_PASSWORD", s.plain_password.as_str()),
        ("RUST_LOG", "debug"),
    ];
    produce(&topic, messages(0, 200, 2));
    produce(&topic, [Msg::json(0, "{broken")]);

    // `check` at debug level.
    let out = sluice(&["check", "--config", &cfg_s], &env);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("librdkafka"),
        "librdkafka debug lines expected:\n{t}"
    );
    assert_no_secret("check (debug)", &t, &secrets);

    // A real run at debug level, as a process: every log line, until SIGTERM.
    let log = dir.path().join("run.log");
    let mut run = Sluice::spawn_env(&cfg, &log, &env);
    let got = wait_for_count(&table, 200, Duration::from_secs(60)).await;
    assert_eq!(got, 200);
    assert!(run.is_running());
    run.signal("-TERM");
    assert!(run.wait(Duration::from_secs(30)).success());
    let logs = std::fs::read_to_string(&log).expect("run log");
    assert!(
        logs.lines().filter(|l| l.contains("librdkafka")).count() > 20,
        "librdkafka debug lines expected"
    );
    assert!(
        logs.contains("sasl.username"),
        "librdkafka's configuration dump expected"
    );
    assert_no_secret("sluice run (debug)", &logs, &secrets);

    // Failing runs and checks: the wrong password is not echoed either.
    for bad in [
        config.replace(
            "[kafka]\n",
            "[kafka]\nsasl_password = \"wrong-Pw-5e6f7a8b\"\n",
        ),
        config.replace(&s.ch_password, "wrong-Pw-5e6f7a8b").replace(
            "[kafka]\n",
            &format!("[kafka]\nsasl_password = \"{}\"\n", s.plain_password),
        ),
    ] {
        let bad_cfg = write(dir.path(), "bad.toml", &bad);
        let bad_env = [("RUST_LOG", "debug")];
        let out = sluice(&["check", "--config", &bad_cfg.to_string_lossy()], &bad_env);
        assert!(!out.status.success());
        let mut all = text(&out);
        let (t, _) = run_expecting_failure(&bad_cfg, &bad_env, Duration::from_secs(30));
        all.push_str(&t);
        // The secrets of this config are the right ones minus the one replaced.
        assert_no_secret("failing check/run (debug)", &all, &secrets);
    }

    // In-process: error values and the metrics text.
    let cfg = sluice::config::from_str(
        &config,
        vec![(
            "SLUICE__KAFKA__SASL_PASSWORD".to_string(),
            s.plain_password.clone(),
        )],
    )
    .expect("config");
    assert_no_secret("config Debug", &format!("{cfg:?}"), &secrets);
    let (run, metrics) = start_with_metrics(cfg);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_no_secret("metrics", &metrics.render(), &secrets);
    let summary = run.stop().await;
    assert_no_secret("summary", &summary.to_string(), &secrets);
    let mut names = BTreeSet::new();
    for l in metrics.render().lines() {
        if let Some(n) = l.split(['{', ' ']).next() {
            names.insert(n.to_string());
        }
    }
    assert!(!names.is_empty());
    let _ = std::io::stderr().flush();
}

/// Shard-aware writes over HTTPS: both shards' URLs `https` (the testbed CA, the password
/// user), exactly-once from SASL_SSL. Each partition's rows land on its shard only, as
/// `shards::shard_of` deals them, and every id once across both; a shard reached without
/// TLS or with another CA would hold no rows and fail the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sharded_writes_reach_both_shards_over_https() {
    let Some(s) = sec() else { return };
    let shard2 = need("SLUICE_TEST_CLICKHOUSE_SHARD2_HTTPS_URL");
    let topic = unique("sec_shards");
    create_topic(&topic, 4).await;
    create_topic(&format!("{topic}.dlq"), 1).await;
    create_on_both(&topic, "id UInt64, name String, _partition Int32").await;
    let config = format!(
        "{}{}{}",
        s.sasl_ssl(&unique("g"), "SCRAM-SHA-512"),
        s.clickhouse_https(&s.ch_https, false).replacen(
            "[clickhouse]\n",
            &format!(
                "[clickhouse]\nshards = [\"{}\", \"{shard2}\"]\n",
                s.ch_https
            ),
            1
        ),
        route(&topic, &topic, "delivery = \"exactly-once\"")
    );
    produce(&topic, messages(0, 400, 4));
    let running = start(&config);
    let t = format!("default.{topic}");
    let started = Instant::now();
    let on = |url: String, sql: String| async move { ch_at(&url, &sql).await.trim().to_string() };
    let count = |url: String| on(url, format!("SELECT count() FROM {t}"));
    while count(ch_url()).await.parse::<u64>().unwrap_or(0)
        + count(shard2_url()).await.parse::<u64>().unwrap_or(0)
        < 400
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.stop().await;
    for (shard, url) in [(0, ch_url()), (1, shard2_url())] {
        let expected: Vec<String> = (0..4)
            .filter(|p| sluice::clickhouse::shards::shard_of(&topic, *p, 2) == shard)
            .map(|p| p.to_string())
            .collect();
        let rows = 100 * expected.len();
        assert_eq!(
            on(
                url.clone(),
                format!(
                    "SELECT count(), uniqExact(id), arrayStringConcat(arraySort(groupUniqArray(toString(_partition))), ',') FROM {t} FORMAT CSV"
                )
            )
            .await,
            format!("{rows},{rows},\"{}\"", expected.join(",")),
            "shard {shard}"
        );
    }
}
