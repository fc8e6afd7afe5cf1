//! Configuration: a TOML file, overridable by environment variables, validated before
//! anything connects.
//!
//! Overrides: `SLUICE__<SECTION>__<KEY>=value` replaces (or adds) a key of the file, e.g.
//! `SLUICE__CLICKHOUSE__PASSWORD=...` or `SLUICE__ROUTE__0__MAX_ROWS=5000` (an index selects a
//! `[[route]]`). Values are strings, which number and boolean fields parse (see
//! [`raw`]): a numeric password stays a password. This is how secrets reach sluice from the
//! environment without being written to the file.

pub mod patterns;
pub mod raw;
pub mod validate;

use std::path::Path;

pub use validate::{
    BadMessages, BatchLimits, ClickHouseConfig, Compression, Config, ConfigError, Delivery,
    Envelope, FetchPath, Format, KafkaConfig, Kerberos, MetadataColumns, OidcClient,
    RegistryBearer, Route, SaslConfig, SaslCredentials, SchemaRegistryConfig, SecurityProtocol,
    ServiceConfig, TlsFiles, UnknownFields,
};

/// Why the own fetch path does not fetch for `k`, or `None` when it does (or could).
pub fn own_fetch_refusal(k: &KafkaConfig) -> Option<String> {
    validate::own_fetch_refusal(&k.properties)
}

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "SLUICE__";

/// Reads, overrides from `env` and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        field: path.display().to_string(),
        message: format!("cannot read config file: {e}"),
    })?;
    from_str(&text, overrides(std::env::vars_os())?)
}

/// The `SLUICE__` variables of `vars`. Other variables are none of sluice's business, even
/// when they are not UTF-8 (`std::env::vars` would panic on those); one of sluice's that is
/// not is an error naming it, without its value.
fn overrides(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            if name.to_string_lossy().starts_with(ENV_PREFIX) {
                return Err(ConfigError {
                    field: name.to_string_lossy().into_owned(),
                    message: "the variable's name is not valid UTF-8".into(),
                });
            }
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError {
            field: name.to_string(),
            message: "the variable's value is not valid UTF-8".into(),
        })?;
        out.push((name.to_string(), value));
    }
    Ok(out)
}

/// "line L, column C" of byte `at` in `text`.
fn line_col(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

/// Parses `text`, applies overrides from `env` (pairs of name and value) and validates.
pub fn from_str(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut doc: toml::Value = toml::from_str(text).map_err(|e| ConfigError {
        field: match e.span() {
            Some(span) => format!("config ({})", line_col(text, span.start)),
            None => "config".into(),
        },
        message: format!("invalid TOML: {}", e.message().trim()),
    })?;
    for (name, value) in env {
        if let Some(path) = name.strip_prefix(ENV_PREFIX) {
            apply_override(&mut doc, &name, path, &value)?;
        }
    }
    // The path of what failed to read ("route[0].max_rows"), as validation names its fields.
    let raw: raw::RawConfig = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        ConfigError {
            field: if path == "." { "config".into() } else { path },
            message: e.into_inner().message().trim().to_string(),
        }
    })?;
    validate::validate(raw, &|p| std::fs::read_to_string(p))
}

fn apply_override(
    doc: &mut toml::Value,
    var: &str,
    path: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let bad = |m: &str| ConfigError {
        field: var.to_string(),
        message: m.to_string(),
    };
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(bad("empty key in environment override"));
    }
    let mut node = doc;
    for (i, key) in keys.iter().enumerate() {
        let last = i + 1 == keys.len();
        node = match node {
            toml::Value::Table(t) => {
                if last {
                    t.insert(key.clone(), toml::Value::String(value.to_string()));
                    return Ok(());
                }
                let next_is_index = keys[i + 1].parse::<usize>().is_ok();
                t.entry(key.clone()).or_insert_with(|| {
                    if next_is_index {
                        toml::Value::Array(Vec::new())
                    } else {
                        toml::Value::Table(Default::default())
                    }
                })
            }
            toml::Value::Array(a) => {
                let idx: usize = key
                    .parse()
                    .map_err(|_| bad("expected an index into a list here"))?;
                let item = a
                    .get_mut(idx)
                    .ok_or_else(|| bad("index is past the end of the list"))?;
                if last {
                    *item = toml::Value::String(value.to_string());
                    return Ok(());
                }
                item
            }
            _ => return Err(bad("overrides a value that is not a table")),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[kafka]
brokers = "127.0.0.1:19092"
group_id = "g"

[clickhouse]
url = "http://127.0.0.1:18123"

[[route]]
topic = "events"
table = "events"
format = "json"
"#;

    /// MINIMAL with `line` in its route instead of the format.
    fn route_with(line: &str) -> String {
        MINIMAL.replace("format = \"json\"", line)
    }

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = from_str(MINIMAL, no_env()).unwrap();
        assert_eq!(c.clickhouse.database, "default");
        let r = &c.routes[0];
        assert_eq!(r.delivery, Delivery::ExactlyOnce);
        assert_eq!(
            r.bad_messages,
            BadMessages::DeadLetter {
                topic: "events.dlq".into()
            }
        );
        assert_eq!(r.metadata.topic.as_deref(), Some("_topic"));
        assert_eq!(r.batch.max_rows, validate::DEFAULT_MAX_ROWS);
        assert_eq!(c.kafka.security_protocol, SecurityProtocol::Plaintext);
    }

    #[test]
    fn env_overrides_scalars_and_routes() {
        let env = vec![
            (
                "SLUICE__CLICKHOUSE__PASSWORD".to_string(),
                "s3cret".to_string(),
            ),
            ("SLUICE__ROUTE__0__MAX_ROWS".to_string(), "500".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let c = from_str(MINIMAL, env).unwrap();
        assert_eq!(c.clickhouse.password.unwrap().expose(), "s3cret");
        assert_eq!(c.routes[0].batch.max_rows, 500);
    }

    #[test]
    fn errors_name_the_field() {
        let text = route_with("max_age = \"soon\"");
        let e = from_str(&text, no_env()).unwrap_err();
        assert_eq!(e.field, "route[0].max_age");
        let e = from_str(&MINIMAL.replace("group_id", "group_idd"), no_env()).unwrap_err();
        assert!(e.message.contains("group_idd"), "{e}");
        let e = from_str(
            &format!("{MINIMAL}\n[[route]]\ntopic = \"events\"\ntable = \"t2\"\n"),
            no_env(),
        )
        .unwrap_err();
        assert_eq!(e.field, "route[1].topic");
    }

    #[test]
    fn env_values_are_strings_that_typed_fields_parse() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c = from_str(
            MINIMAL,
            env(&[
                ("SLUICE__CLICKHOUSE__PASSWORD", "31415926"),
                ("SLUICE__KAFKA__GROUP_ID", "42"),
                ("SLUICE__KAFKA__PROPERTIES__FETCH.WAIT.MAX.MS", "100"),
                ("SLUICE__CLICKHOUSE__STREAM_INSERTS", "false"),
                ("SLUICE__ROUTE__0__MAX_ROWS", " 5000 "),
            ]),
        )
        .unwrap();
        assert_eq!(c.clickhouse.password.unwrap().expose(), "31415926");
        assert_eq!(c.kafka.group_id, "42");
        assert_eq!(
            c.kafka
                .properties
                .get("fetch.wait.max.ms")
                .map(String::as_str),
            Some("100")
        );
        assert!(!c.clickhouse.stream_inserts);
        assert_eq!(c.routes[0].batch.max_rows, 5000);
        let e = from_str(MINIMAL, env(&[("SLUICE__ROUTE__0__MAX_ROWS", "many")])).unwrap_err();
        assert_eq!(e.field, "route[0].max_rows");
        assert!(e.message.contains("whole number"), "{e}");
    }

    #[test]
    fn type_errors_name_the_field_and_never_quote_a_secret() {
        let e = from_str(&route_with("max_rows = \"x5\""), no_env()).unwrap_err();
        assert_eq!(e.field, "route[0].max_rows");
        let e = from_str(&route_with("max_bytes = -5"), no_env()).unwrap_err();
        assert_eq!(e.field, "route[0].max_bytes");
        assert!(e.message.contains("negative"), "{e}");
        let with_pw = |pw: &str| {
            MINIMAL.replace(
                "url = \"http://127.0.0.1:18123\"",
                &format!("url = \"http://127.0.0.1:18123\"\npassword = {pw}"),
            )
        };
        let e = from_str(&with_pw("[\"hunter2\"]"), no_env()).unwrap_err();
        assert_eq!(e.field, "clickhouse.password");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // A password written as a number is a password, not a type error quoting it.
        let c = from_str(&with_pw("27182818"), no_env()).unwrap();
        assert_eq!(c.clickhouse.password.unwrap().expose(), "27182818");
        let c = from_str(&route_with("max_rows = \"7\""), no_env()).unwrap();
        assert_eq!(c.routes[0].batch.max_rows, 7);
        let e = from_str("[kafka]\nbrokers = \"a\n", no_env()).unwrap_err();
        assert!(e.field.contains("line 2"), "{e}");
    }

    #[test]
    fn only_sluices_variables_must_be_utf8_and_their_values_are_not_quoted() {
        use std::os::unix::ffi::OsStringExt;
        let os = |s: &[u8]| std::ffi::OsString::from_vec(s.to_vec());
        let vars = vec![
            (os(b"OTHER"), os(b"\xff\xfe")),
            (os(b"SLUICE__ROUTE__0__MAX_ROWS"), os(b"9")),
        ];
        let got = overrides(vars).unwrap();
        assert_eq!(got, vec![("SLUICE__ROUTE__0__MAX_ROWS".into(), "9".into())]);
        let bad = vec![(os(b"SLUICE__CLICKHOUSE__PASSWORD"), os(b"s3cr\xffet"))];
        let e = overrides(bad).unwrap_err();
        assert_eq!(e.field, "SLUICE__CLICKHOUSE__PASSWORD");
        assert!(!e.to_string().contains("s3cr"), "{e}");
    }

    #[test]
    fn durations_and_kafka_strings_are_bounded_before_anything_connects() {
        let e = from_str(&route_with("max_age = \"500000000000y\""), no_env()).unwrap_err();
        assert_eq!(e.field, "route[0].max_age");
        assert!(e.message.contains("7 days"), "{e}");
        assert!(from_str(&route_with("max_age = \"7days\""), no_env()).is_ok());
        let service = |line: &str| format!("{MINIMAL}\n[service]\n{line}\n");
        let e = from_str(&service("shutdown_timeout = \"300years\""), no_env()).unwrap_err();
        assert_eq!(e.field, "service.shutdown_timeout");
        let kafka =
            |line: &str| MINIMAL.replace("group_id = \"g\"", &format!("group_id = \"g\"\n{line}"));
        for t in ["0s", "2h"] {
            let e = from_str(&kafka(&format!("session_timeout = \"{t}\"")), no_env()).unwrap_err();
            assert_eq!(e.field, "kafka.session_timeout", "{t}");
        }
        let e = from_str(
            &MINIMAL.replace("group_id = \"g\"", "group_id = \"g\\u0000x\""),
            no_env(),
        )
        .unwrap_err();
        assert_eq!(e.field, "kafka.group_id");
        assert!(e.message.contains("NUL"), "{e}");
        let e = from_str(&kafka("sasl_password = \"pw\\u0000secret\""), no_env()).unwrap_err();
        assert_eq!(e.field, "kafka.sasl_password");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = from_str(
            &kafka("security_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"GSSAPI\"\nsasl_kerberos_service_name = \"kafka\\u0000x\""),
            no_env(),
        )
        .unwrap_err();
        assert_eq!(e.field, "kafka.sasl_kerberos_service_name");
        assert!(e.message.contains("NUL"), "{e}");
    }

    #[test]
    fn broker_addresses_are_checked() {
        let with = |b: &str| MINIMAL.replace("127.0.0.1:19092", b);
        for good in [
            "a:9092,b:9093",
            "broker",
            "SASL_SSL://k1.example:9094, k2.example:9094",
            "[::1]:9092",
            "[::1]",
        ] {
            assert!(from_str(&with(good), no_env()).is_ok(), "{good}");
        }
        for bad in ["127.0.0.1:99999", "a:0", "a:x", "a:9092,,b:9092", ":9092"] {
            let e = from_str(&with(bad), no_env()).unwrap_err();
            assert_eq!(e.field, "kafka.brokers", "{bad}: {e}");
        }
    }

    #[test]
    fn raw_routes_store_the_value_in_a_named_column() {
        let c = from_str(&route_with("format = \"raw\""), no_env()).unwrap();
        let r = &c.routes[0];
        assert_eq!(r.format, Format::Raw);
        assert_eq!(r.metadata.value.as_deref(), Some("_value"));
        // Metadata columns apply to JSON routes too: `_value` there is the message unparsed.
        let c = from_str(MINIMAL, no_env()).unwrap();
        assert_eq!(c.routes[0].format, Format::Json);
        assert_eq!(c.routes[0].metadata.value.as_deref(), Some("_value"));
        let named = route_with("format = \"raw\"\n[route.metadata]\nvalue = \"line\"");
        let c = from_str(&named, no_env()).unwrap();
        assert_eq!(c.routes[0].metadata.value.as_deref(), Some("line"));

        let off = route_with("format = \"raw\"\n[route.metadata]\nvalue = \"\"");
        let e = from_str(&off, no_env()).unwrap_err();
        assert_eq!(e.field, "route[0].metadata.value");
        let e = from_str(
            &route_with("format = \"raw\"\nunknown_fields = \"error\""),
            no_env(),
        )
        .unwrap_err();
        assert_eq!(e.field, "route[0].unknown_fields");
        let e = from_str(&route_with("format = \"xml\""), no_env()).unwrap_err();
        assert_eq!(e.field, "route[0].format");
        assert!(
            e.message
                .contains("unknown format \"xml\"; supported: json, json-schema, avro, protobuf, raw, csv, tsv"),
            "{e}"
        );
    }

    #[test]
    fn only_json_schema_routes_validate() {
        let registry = "\n[schema_registry]\nurl = \"http://127.0.0.1:18081\"\n";
        let c = from_str(&route_with("format = \"json-schema\""), no_env());
        assert!(c.is_err(), "needs the registry");
        for (lines, validate) in [
            ("format = \"json-schema\"", false),
            ("format = \"json-schema\"\nvalidate = false", false),
            ("format = \"json-schema\"\nvalidate = true", true),
        ] {
            let c = from_str(&(route_with(lines) + registry), no_env()).unwrap();
            assert_eq!(c.routes[0].validate, validate, "{lines}");
        }
        for f in ["json", "avro", "protobuf", "csv", "raw"] {
            let text = route_with(&format!("format = \"{f}\"\nvalidate = true")) + registry;
            let e = from_str(&text, no_env()).unwrap_err();
            assert_eq!(e.field, "route[0].validate", "{f}");
            assert!(
                e.message.contains("format = \"json-schema\" routes only"),
                "{e}"
            );
        }
        let e = from_str(
            &(route_with("format = \"json-schema\"\nvalidate = \"yes\"") + registry),
            no_env(),
        )
        .unwrap_err();
        assert_eq!(e.field, "route[0].validate");
    }

    #[test]
    fn avro_and_protobuf_routes_need_a_schema_registry() {
        for f in ["avro", "protobuf", "json-schema"] {
            let e = from_str(&route_with(&format!("format = \"{f}\"")), no_env()).unwrap_err();
            assert_eq!(e.field, "route[0].format");
            assert!(e.message.contains("add [schema_registry]"), "{e}");
        }
        let avro = route_with("format = \"avro\"");
        let with = format!(
            "{avro}\n[schema_registry]\nurl = \"http://127.0.0.1:18081/apis/ccompat/v7/\"\nusername = \"sr\"\n"
        );
        let c = from_str(
            &with,
            vec![(
                "SLUICE__SCHEMA_REGISTRY__PASSWORD".to_string(),
                "sr-secret".to_string(),
            )],
        )
        .unwrap();
        assert_eq!(c.routes[0].format, Format::Avro);
        let r = c.schema_registry.as_ref().unwrap();
        assert_eq!(r.url, "http://127.0.0.1:18081/apis/ccompat/v7");
        assert_eq!(r.username.as_deref(), Some("sr"));
        assert_eq!(r.password.as_ref().map(|p| p.expose()), Some("sr-secret"));
        assert!(!format!("{c:?}").contains("sr-secret"));
        // A password without a user, credentials in the URL, a CA over plain HTTP.
        for (text, field) in [
            (
                with.replace("username = \"sr\"", "password = \"p\""),
                "schema_registry.username",
            ),
            (
                with.replace("http://127.0.0.1:18081", "http://u:p@127.0.0.1:18081"),
                "schema_registry.url",
            ),
            (
                with.replace("username = \"sr\"", "ca_file = \"/ca.pem\""),
                "schema_registry.url",
            ),
            (
                with.replace("http://127.0.0.1:18081", "ftp://127.0.0.1:18081"),
                "schema_registry.url",
            ),
        ] {
            let e = from_str(&text, no_env()).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(!e.to_string().contains("u:p@"), "{e}");
        }
    }

    #[test]
    fn csv_and_tsv_routes_may_name_their_columns_in_order() {
        for (f, want) in [("csv", Format::Csv), ("tsv", Format::Tsv)] {
            let c = from_str(&route_with(&format!("format = \"{f}\"")), no_env()).unwrap();
            assert_eq!(c.routes[0].format, want);
            assert_eq!(c.routes[0].columns, None);
        }
        let named = route_with("format = \"csv\"\ncolumns = [\"b\", \"a\"]");
        let c = from_str(&named, no_env()).unwrap();
        assert_eq!(
            c.routes[0].columns,
            Some(vec!["b".to_string(), "a".to_string()])
        );
        for (lines, field, msg) in [
            (
                "format = \"json\"\ncolumns = [\"a\"]",
                "route[0].columns",
                "another format",
            ),
            (
                "format = \"csv\"\ncolumns = []",
                "route[0].columns",
                "is empty",
            ),
            (
                "format = \"tsv\"\ncolumns = [\"a\", \"a\"]",
                "route[0].columns",
                "named twice",
            ),
            (
                "format = \"tsv\"\ncolumns = [\"a\", \" \"]",
                "route[0].columns",
                "entry 1 is empty",
            ),
            (
                "format = \"csv\"\nunknown_fields = \"ignore\"",
                "route[0].unknown_fields",
                "one field per column",
            ),
        ] {
            let e = from_str(&route_with(lines), no_env()).unwrap_err();
            assert_eq!(e.field, field, "{lines}");
            assert!(e.message.contains(msg), "{lines}: {e}");
        }
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        let with_topic =
            |t: &str| MINIMAL.replace("topic = \"events\"", &format!("topic = \"{t}\""));
        let e = from_str(&with_topic("bad name"), no_env()).unwrap_err();
        assert_eq!(e.field, "route[0].topic");
        assert!(e.message.contains("' '"), "{e}");
        let e = from_str(&with_topic(&"x".repeat(600)), no_env()).unwrap_err();
        assert_eq!(e.field, "route[0].topic");
        // A legal 249-character topic whose default dead-letter name would be too long.
        let e = from_str(&with_topic(&"x".repeat(249)), no_env()).unwrap_err();
        assert_eq!(e.field, "route[0].dead_letter_topic");
        assert!(e.message.contains("set one"), "{e}");
        let named = with_topic(&"x".repeat(249)).replace(
            "format = \"json\"",
            "format = \"json\"\ndead_letter_topic = \"dlq\"",
        );
        assert!(from_str(&named, no_env()).is_ok());
        let bad_dlq = MINIMAL.replace(
            "format = \"json\"",
            "format = \"json\"\ndead_letter_topic = \"dead letters\"",
        );
        let e = from_str(&bad_dlq, no_env()).unwrap_err();
        assert_eq!(e.field, "route[0].dead_letter_topic");
    }

    #[test]
    fn a_pkcs12_keystore_replaces_the_pem_certificate_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p12 = dir.path().join("client.p12");
        std::fs::write(&p12, [0x30u8, 0x03, 0x02, 0x01, 0x03]).unwrap();
        let with = |lines: &str| {
            MINIMAL.replace(
                "group_id = \"g\"",
                &format!("group_id = \"g\"\nsecurity_protocol = \"SSL\"\n{lines}"),
            )
        };
        let c = from_str(
            &with(&format!(
                "ssl_keystore_location = \"{}\"\nssl_keystore_password = \"hush-7731\"",
                p12.display()
            )),
            no_env(),
        )
        .unwrap();
        assert_eq!(c.kafka.tls.keystore.as_deref(), Some(p12.as_path()));
        assert!(
            c.kafka.stores.identity.is_none(),
            "PKCS#12 is opened by librdkafka"
        );
        assert!(!format!("{:?}", c.kafka).contains("hush-7731"));
        for (lines, field) in [
            (
                "ssl_keystore_location = \"/k/c.p12\"\nssl_certificate_location = \"/k/c.pem\"\nssl_key_location = \"/k/c.key\"",
                "kafka.ssl_keystore_location",
            ),
            ("ssl_keystore_password = \"x\"", "kafka.ssl_keystore_password"),
        ] {
            let e = from_str(&with(lines), no_env()).unwrap_err();
            assert_eq!(e.field, field, "{lines}");
        }
        let plaintext = MINIMAL.replace(
            "group_id = \"g\"",
            "group_id = \"g\"\nssl_keystore_location = \"/k/c.p12\"",
        );
        let e = from_str(&plaintext, no_env()).unwrap_err();
        assert_eq!(e.field, "kafka.security_protocol");
        let e = from_str(
            &MINIMAL.replace(
                "group_id = \"g\"",
                "group_id = \"g\"\nproperties = { \"ssl.keystore.location\" = \"/k/c.p12\" }",
            ),
            no_env(),
        )
        .unwrap_err();
        assert!(e.message.contains("kafka.ssl_keystore_location"), "{e}");
    }

    #[test]
    fn java_keystores_and_truststores_are_opened_before_anything_connects() {
        use crate::kafka::java_stores::fixtures::{key_and_cert, write_jks};
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = key_and_cert("client");
        let (_, ca) = key_and_cert("ca");
        let keystore = dir.path().join("client.jks");
        std::fs::write(
            &keystore,
            write_jks(
                &[("c", Some((&key, "key-Pw-8")), vec![cert.clone()])],
                "store-Pw-8",
            ),
        )
        .unwrap();
        let truststore = dir.path().join("trust.jks");
        std::fs::write(
            &truststore,
            write_jks(&[("ca", None, vec![ca.clone()])], "trust-Pw-8"),
        )
        .unwrap();
        let p12 = dir.path().join("c.p12");
        std::fs::write(&p12, [0x30u8, 0x03, 0x02, 0x01, 0x03]).unwrap();
        let (keystore, truststore, p12) = (
            keystore.display().to_string(),
            truststore.display().to_string(),
            p12.display().to_string(),
        );
        let with = |lines: &str| {
            from_str(
                &MINIMAL.replace(
                    "group_id = \"g\"",
                    &format!("group_id = \"g\"\nsecurity_protocol = \"SSL\"\n{lines}"),
                ),
                no_env(),
            )
        };
        let good = format!("ssl_keystore_location = \"{keystore}\"\nssl_keystore_password = \"store-Pw-8\"\nssl_key_password = \"key-Pw-8\"\nssl_truststore_location = \"{truststore}\"\nssl_truststore_password = \"trust-Pw-8\"");
        let c = with(&good).unwrap();
        let id = c.kafka.stores.identity.as_ref().expect("the JKS key entry");
        assert_eq!(id.chain, vec![cert]);
        assert_eq!(
            c.kafka.stores.trusted.as_ref().map(|(_, t)| t.clone()),
            Some(vec![ca])
        );
        let shown = format!("{:?}", c.kafka);
        for secret in ["store-Pw-8", "key-Pw-8", "trust-Pw-8", "PRIVATE KEY"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // librdkafka gets PEM text for what it cannot read, and no key password for a key
        // that is no longer encrypted.
        let props = crate::kafka::client::base_config(&c.kafka);
        assert!(props
            .get("ssl.certificate.pem")
            .is_some_and(|p| p.starts_with("-----BEGIN CERTIFICATE")));
        assert!(props
            .get("ssl.key.pem")
            .is_some_and(|p| p.contains("BEGIN PRIVATE KEY")));
        assert!(props.get("ssl.ca.pem").is_some());
        for absent in [
            "ssl.keystore.location",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.ca.location",
        ] {
            assert_eq!(props.get(absent), None, "{absent}");
        }
        for (lines, field, says) in [
            (good.replace("store-Pw-8", "bad-Zq9"), "kafka.ssl_keystore_location", "integrity check fails"),
            (good.replace("ssl_key_password = \"key-Pw-8\"", "ssl_key_password = \"bad-Zq9\""), "kafka.ssl_keystore_location", "wrong key password"),
            (good.replace("trust-Pw-8", "bad-Zq9"), "kafka.ssl_truststore_location", "integrity check fails"),
            (format!("ssl_keystore_location = \"{keystore}\""), "kafka.ssl_keystore_password", "JKS"),
            (format!("ssl_keystore_location = \"{p12}\"\nssl_key_password = \"k\""), "kafka.ssl_key_password", "PKCS#12"),
            (format!("ssl_keystore_location = \"{truststore}\"\nssl_keystore_password = \"trust-Pw-8\""), "kafka.ssl_keystore_location", "no private key"),
            (format!("ssl_truststore_location = \"{truststore}\"\nssl_ca_location = \"{p12}\""), "kafka.ssl_truststore_location", "not both"),
            ("ssl_truststore_password = \"x\"".to_string(), "kafka.ssl_truststore_password", "no ssl_truststore_location"),
            ("ssl_truststore_location = \"/nonexistent/t.jks\"".to_string(), "kafka.ssl_truststore_location", "cannot read"),
        ] {
            let e = with(&lines).unwrap_err();
            assert_eq!(e.field, field, "{lines}: {e}");
            assert!(e.message.contains(says), "{lines}: {e}");
            assert!(!e.message.contains("Pw-8") && !e.message.contains("bad-Zq9"), "{e}");
        }
        let plaintext = MINIMAL.replace(
            "group_id = \"g\"",
            &format!("group_id = \"g\"\nssl_truststore_location = \"{truststore}\""),
        );
        assert_eq!(
            from_str(&plaintext, no_env()).unwrap_err().field,
            "kafka.security_protocol"
        );
    }

    #[test]
    fn https_clients_take_java_stores_in_place_of_pem_files() {
        use crate::kafka::java_stores::fixtures::{key_and_cert, write_jks};
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = key_and_cert("client");
        let (_, ca) = key_and_cert("ca");
        let (ks, ts) = (dir.path().join("k.jks"), dir.path().join("t.jks"));
        std::fs::write(
            &ks,
            write_jks(&[("c", Some((&key, "kp")), vec![cert])], "sp"),
        )
        .unwrap();
        std::fs::write(&ts, write_jks(&[("ca", None, vec![ca.clone()])], "tp")).unwrap();
        let (ks, ts) = (ks.display().to_string(), ts.display().to_string());
        let with = |clickhouse: &str, registry: &str| {
            let text = MINIMAL
                .replace(
                    "url = \"http://127.0.0.1:18123\"",
                    &format!("url = \"https://127.0.0.1:8443\"\n{clickhouse}"),
                )
                .replace(
                    "[[route]]",
                    &format!("[schema_registry]\nurl = \"https://r:8081\"\n{registry}\n[[route]]"),
                );
            from_str(&text, no_env())
        };
        let c = with(
            &format!("truststore_location = \"{ts}\"\ntruststore_password = \"tp\"\nkeystore_location = \"{ks}\"\nkeystore_password = \"sp\"\nkey_password = \"kp\""),
            &format!("truststore_location = \"{ts}\""),
        )
        .unwrap();
        assert_eq!(
            c.clickhouse.stores.trusted.clone().map(|(_, t)| t),
            Some(vec![ca.clone()])
        );
        assert!(c.clickhouse.stores.identity.is_some());
        let registry = c.schema_registry.expect("registry");
        assert_eq!(registry.trusted.map(|(_, t)| t), Some(vec![ca]));
        let props = crate::pipeline::clickhouse_settings(&c.clickhouse);
        assert!(!format!("{props:?}").contains("PRIVATE KEY"));
        for (clickhouse, registry, field) in [
            (format!("truststore_location = \"{ts}\"\nca_file = \"{ts}\""), String::new(), "clickhouse.truststore_location"),
            (format!("keystore_location = \"{ks}\"\nkeystore_password = \"sp\"\nkey_password = \"kp\"\nclient_cert = \"{ks}\"\nclient_key = \"{ks}\""), String::new(), "clickhouse.keystore_location"),
            (format!("keystore_location = \"{ks}\"\nkeystore_password = \"bad\""), String::new(), "clickhouse.keystore_location"),
            ("key_password = \"kp\"".to_string(), String::new(), "clickhouse.key_password"),
            ("truststore_password = \"x\"".to_string(), String::new(), "clickhouse.truststore_password"),
            (String::new(), format!("truststore_location = \"{ts}\"\ntruststore_password = \"bad\""), "schema_registry.truststore_location"),
        ] {
            let e = with(&clickhouse, &registry).unwrap_err();
            assert_eq!(e.field, field, "{clickhouse} {registry}: {e}");
        }
    }

    #[test]
    fn shards_list_every_shard_url_first() {
        let with = |shards: &str| {
            from_str(
                &MINIMAL.replace(
                    "url = \"http://127.0.0.1:18123\"\n",
                    &format!("url = \"http://127.0.0.1:18123\"\nshards = {shards}\n"),
                ),
                no_env(),
            )
        };
        let c = with(r#"["http://127.0.0.1:18123/", "http://127.0.0.2:8123"]"#).unwrap();
        assert_eq!(
            c.clickhouse.shards,
            ["http://127.0.0.1:18123", "http://127.0.0.2:8123"]
        );
        assert!(from_str(MINIMAL, no_env())
            .unwrap()
            .clickhouse
            .shards
            .is_empty());
        for (shards, says) in [
            (r#"["http://127.0.0.1:18123"]"#, "two at least"),
            (
                r#"["http://b:8123", "http://127.0.0.1:18123"]"#,
                "the first shard must be clickhouse.url",
            ),
            (
                r#"["http://127.0.0.1:18123", "http://127.0.0.1:18123/"]"#,
                "listed twice",
            ),
            (r#"["http://127.0.0.1:18123", "https://b:8443"]"#, "scheme"),
            (
                r#"["http://127.0.0.1:18123", "b:8123"]"#,
                "clickhouse.shards",
            ),
        ] {
            let e = with(shards).unwrap_err();
            assert_eq!(e.field, "clickhouse.shards", "{shards}");
            assert!(e.to_string().contains(says), "{shards}: {e}");
        }
    }

    #[test]
    fn a_debezium_envelope_names_its_op_and_deleted_columns_in_every_format_with_fields() {
        let with = |lines: &str| from_str(&MINIMAL.replace("format = \"json\"", lines), no_env());
        let c = with("format = \"json\"\nenvelope = \"debezium\"").unwrap();
        let r = &c.routes[0];
        assert_eq!(r.envelope, Envelope::Debezium);
        assert_eq!(r.metadata.op.as_deref(), Some("__op"));
        assert_eq!(r.metadata.deleted.as_deref(), Some("__deleted"));
        assert_eq!(
            [
                &r.metadata.ts_ms,
                &r.metadata.source_ts_ms,
                &r.metadata.db,
                &r.metadata.table
            ]
            .map(|c| c.as_deref()),
            [
                Some("__ts_ms"),
                Some("__source_ts_ms"),
                Some("__db"),
                Some("__table")
            ]
        );
        let c =
            with("envelope = \"debezium\"\n[route.metadata]\ndeleted = \"is_deleted\"\nop = \"\"")
                .unwrap();
        assert_eq!(c.routes[0].metadata.deleted.as_deref(), Some("is_deleted"));
        assert_eq!(c.routes[0].metadata.op, None);
        for format in ["avro", "protobuf", "json-schema"] {
            let text = MINIMAL.replace(
                "format = \"json\"",
                &format!("format = \"{format}\"\nenvelope = \"debezium\""),
            ) + "\n[schema_registry]\nurl = \"http://127.0.0.1:18081\"\n";
            let c = from_str(&text, no_env()).unwrap();
            assert_eq!(c.routes[0].envelope, Envelope::Debezium, "{format}");
        }
        for (name, envelope) in [("maxwell", Envelope::Maxwell), ("canal", Envelope::Canal)] {
            let c = with(&format!("format = \"json\"\nenvelope = \"{name}\"")).unwrap();
            let r = &c.routes[0];
            assert_eq!((r.envelope, r.envelope.name()), (envelope, name));
            assert_eq!(
                [&r.metadata.op, &r.metadata.deleted, &r.metadata.table].map(|c| c.as_deref()),
                [Some("__op"), Some("__deleted"), Some("__table")],
                "{name}"
            );
        }
        let plain = with("format = \"json\"").unwrap();
        assert_eq!(
            (
                plain.routes[0].metadata.op.clone(),
                plain.routes[0].envelope
            ),
            (None, Envelope::None)
        );
        for (lines, field) in [
            (
                "format = \"csv\"\nenvelope = \"debezium\"",
                "route[0].envelope",
            ),
            (
                "format = \"raw\"\nenvelope = \"debezium\"",
                "route[0].envelope",
            ),
            (
                "format = \"csv\"\nenvelope = \"maxwell\"",
                "route[0].envelope",
            ),
            ("envelope = \"Canal\"", "route[0].envelope"),
            ("[route.metadata]\ndeleted = \"d\"", "route[0].metadata"),
            ("[route.metadata]\ntable = \"t\"", "route[0].metadata"),
        ] {
            assert_eq!(with(lines).unwrap_err().field, field, "{lines}");
        }
    }

    #[test]
    fn insert_settings_are_taken_except_those_sluice_sets_itself() {
        let with = |line: &str| {
            from_str(
                &MINIMAL.replace("[clickhouse]", &format!("[clickhouse]\n{line}")),
                no_env(),
            )
        };
        let c = with("insert_settings = { insert_quorum = 2, insert_quorum_timeout = \"60000\" }")
            .unwrap();
        assert_eq!(
            c.clickhouse.insert_settings,
            [("insert_quorum", "2"), ("insert_quorum_timeout", "60000")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        for name in [
            "insert_deduplicate",
            "Async_Insert",
            "async_insert_busy_timeout_ms",
            "input_format_allow_errors_num",
            "materialized_views_ignore_errors",
            "max_insert_block_size",
            "format_csv_delimiter",
        ] {
            let e = with(&format!("insert_settings = {{ {name} = \"1\" }}")).unwrap_err();
            assert_eq!(e.field, format!("clickhouse.insert_settings.{name}"));
            assert!(e.message.contains("sluice sets this itself"), "{e}");
        }
        let e = with("insert_settings = { \"a b\" = \"1\" }").unwrap_err();
        assert!(e.message.contains("not a setting name"), "{e}");
    }

    #[test]
    fn table_refresh_defaults_to_ten_seconds_and_zero_switches_it_off() {
        let with = |line: &str| {
            MINIMAL.replace(
                "[clickhouse]",
                &format!("[service]\n{line}\n\n[clickhouse]"),
            )
        };
        let refresh = |line: &str| from_str(&with(line), no_env()).map(|c| c.service.table_refresh);
        assert_eq!(
            refresh("").unwrap(),
            Some(std::time::Duration::from_secs(10))
        );
        assert_eq!(
            refresh("table_refresh = \"2m\"").unwrap(),
            Some(std::time::Duration::from_secs(120))
        );
        assert_eq!(refresh("table_refresh = \"0s\"").unwrap(), None);
        let e = refresh("table_refresh = \"often\"").unwrap_err();
        assert_eq!(e.field, "service.table_refresh");
    }

    #[test]
    fn a_dead_letter_table_is_named_or_defaults_beside_the_routes_table() {
        let with = |lines: &str| {
            MINIMAL.replace("format = \"json\"", &format!("format = \"json\"\n{lines}"))
        };
        let bad = |lines: &str| {
            from_str(&with(lines), no_env()).map(|c| c.routes[0].bad_messages.clone())
        };
        let table = |database: &str, table: &str| BadMessages::DeadLetterTable {
            database: database.into(),
            table: table.into(),
        };
        let on = "on_bad_message = \"dead-letter-table\"";
        assert_eq!(bad(on).unwrap(), table("default", "events_dead_letters"));
        assert_eq!(
            bad(&format!("{on}\ndead_letter_table = \"dl\"")).unwrap(),
            table("default", "dl")
        );
        assert_eq!(
            bad(&format!("{on}\ndead_letter_table = \"ops.dl\"")).unwrap(),
            table("ops", "dl")
        );
        for (lines, field, says) in [
            (
                format!("{on}\ndead_letter_table = \"events\""),
                "dead_letter_table",
                "differ",
            ),
            (
                format!("{on}\ndead_letter_table = \"a.b.c\""),
                "dead_letter_table",
                "database.table",
            ),
            (
                format!("{on}\ndead_letter_table = \".x\""),
                "dead_letter_table",
                "database.table",
            ),
            (
                format!("{on}\ndead_letter_topic = \"t\""),
                "dead_letter_topic",
                "dead_letter_table",
            ),
            (
                "dead_letter_table = \"dl\"".to_string(),
                "dead_letter_table",
                "only",
            ),
            (
                "on_bad_message = \"table\"".to_string(),
                "on_bad_message",
                "dead-letter-table",
            ),
        ] {
            let e = bad(&lines).unwrap_err();
            assert_eq!(e.field, format!("route[0].{field}"), "{lines}");
            assert!(e.message.contains(says), "{lines}: {e}");
        }
    }

    #[test]
    fn the_own_fetch_path_is_the_default_where_it_connects_as_librdkafka_would() {
        let with = |lines: &str| {
            MINIMAL.replace("group_id = \"g\"", &format!("group_id = \"g\"\n{lines}"))
        };
        let fetch = |lines: &str| from_str(&with(lines), no_env()).map(|c| c.kafka.fetch);
        assert_eq!(fetch("").ok(), Some(FetchPath::Sluice));
        assert_eq!(
            fetch("fetch = \"librdkafka\"").ok(),
            Some(FetchPath::Librdkafka)
        );
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("f.pem");
        std::fs::write(&pem, "x").unwrap();
        let pem = pem.display();
        // What a PKCS#12 file starts with (a DER SEQUENCE), the format recognised at validation.
        let p12 = dir.path().join("c.p12");
        std::fs::write(&p12, [0x30u8, 0x03, 0x02, 0x01, 0x03]).unwrap();
        let p12 = p12.display();
        let sasl =
            "sasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"u\"\nsasl_password = \"p\"";
        // Spoken by the own path: TLS with PEM files or the system store, SASL of every
        // mechanism sluice takes, with or without TLS.
        for spoken in [
            "security_protocol = \"SSL\"".to_string(),
            format!("security_protocol = \"SSL\"\nssl_ca_location = \"{pem}\"\nssl_certificate_location = \"{pem}\"\nssl_key_location = \"{pem}\""),
            format!("security_protocol = \"SASL_SSL\"\n{sasl}"),
            format!("security_protocol = \"SASL_PLAINTEXT\"\n{sasl}"),
            format!("security_protocol = \"SSL\"\nssl_certificate_location = \"{pem}\"\nssl_key_location = \"{pem}\"\nssl_key_password = \"k\""),
            format!("security_protocol = \"SSL\"\nssl_ca_location = \"{}\"", dir.path().display()),
            // A PKCS#12 keystore: opened by OpenSSL, as librdkafka opens it.
            format!("security_protocol = \"SSL\"\nssl_keystore_location = \"{p12}\""),
        ] {
            assert_eq!(fetch(&spoken).ok(), Some(FetchPath::Sluice), "{spoken}");
            let explicit = format!("{spoken}\nfetch = \"sluice\"");
            assert_eq!(fetch(&explicit).ok(), Some(FetchPath::Sluice), "{spoken}");
        }
        // Not reproduced: librdkafka fetches under "auto", "sluice" is refused with the reason.
        for (unspoken, why) in [
            (
                "security_protocol = \"SSL\"\nproperties = { \"ssl.cipher.suites\" = \"x\" }"
                    .to_string(),
                "ssl.cipher.suites",
            ),
            (
                "properties = { \"enable.ssl.certificate.verification\" = \"false\" }".to_string(),
                "enable.ssl",
            ),
        ] {
            assert_eq!(
                fetch(&unspoken).ok(),
                Some(FetchPath::Librdkafka),
                "{unspoken}"
            );
            let e = fetch(&format!("{unspoken}\nfetch = \"sluice\"")).unwrap_err();
            assert_eq!(e.field, "kafka.fetch");
            assert!(e.message.contains(why), "{unspoken}: {e}");
        }
        let e = fetch("fetch = \"fast\"").unwrap_err();
        assert_eq!(e.field, "kafka.fetch");
    }

    #[test]
    fn protected_properties_are_refused() {
        let text = MINIMAL.replace(
            "group_id = \"g\"",
            "group_id = \"g\"\nproperties = { \"enable.auto.commit\" = \"true\" }",
        );
        let e = from_str(&text, no_env()).unwrap_err();
        assert!(e.field.contains("enable.auto.commit"), "{e}");
        assert!(e.message.contains("delivery guarantee"), "{e}");
    }

    #[test]
    fn passthrough_cannot_override_security_settings_or_carry_secrets() {
        let with = |props: &str| {
            MINIMAL.replace(
                "group_id = \"g\"",
                &format!("group_id = \"g\"\nproperties = {{ {props} }}"),
            )
        };
        for (key, dedicated) in [
            ("ssl.ca.location", "kafka.ssl_ca_location"),
            ("ssl.ca.pem", "kafka.ssl_ca_location"),
            ("ssl.certificate.location", "kafka.ssl_certificate_location"),
            ("ssl.key.location", "kafka.ssl_key_location"),
            ("ssl.key.pem", "kafka.ssl_key_location"),
            ("ssl.key.password", "kafka.ssl_key_password"),
            (
                "ssl.endpoint.identification.algorithm",
                "kafka.ssl_endpoint_identification",
            ),
            ("sasl.mechanisms", "kafka.sasl_mechanism"),
            ("sasl.username", "kafka.sasl_username"),
            ("sasl.password", "kafka.sasl_password"),
            ("security.protocol", "kafka.security_protocol"),
        ] {
            let e = from_str(&with(&format!("\"{key}\" = \"hush-7731\"")), no_env()).unwrap_err();
            assert_eq!(e.field, format!("kafka.properties.{key:?}"));
            assert!(
                e.message.contains(dedicated) && e.message.contains("silently override"),
                "{e}"
            );
            assert!(!e.to_string().contains("hush-7731"), "{e}");
        }
        for key in ["ssl.keystore.password", "sasl.oauthbearer.client.secret"] {
            let e = from_str(&with(&format!("\"{key}\" = \"hush-7731\"")), no_env()).unwrap_err();
            assert!(e.message.contains("secret is not accepted"), "{e}");
            assert!(!e.to_string().contains("hush-7731"), "{e}");
        }
        // Other TLS/SASL tuning passes through.
        let c = from_str(
            &with(
                "\"ssl.cipher.suites\" = \"ECDHE-RSA-AES128-GCM-SHA256\", \"debug\" = \"security\"",
            ),
            no_env(),
        )
        .unwrap();
        assert_eq!(c.kafka.properties.len(), 2);
    }

    #[test]
    fn secrets_from_env_and_files() {
        let text = MINIMAL.replace(
            "group_id = \"g\"",
            "group_id = \"g\"\nsecurity_protocol = \"SASL_SSL\"\nsasl_mechanism = \"SCRAM-SHA-256\"\nsasl_username = \"u\"\nsasl_password_file = \"/run/secrets/kafka\"",
        );
        let raw: raw::RawConfig = toml::from_str(&text).unwrap();
        let c = validate::validate(raw, &|p| {
            assert_eq!(p, "/run/secrets/kafka");
            Ok("from-file-pw\n".to_string())
        })
        .unwrap();
        let sasl = c.kafka.sasl.as_ref().unwrap();
        assert_eq!(sasl.secret().unwrap().expose(), "from-file-pw");
        assert_eq!(sasl.mechanism, "SCRAM-SHA-256");
        // The environment can supply the password instead of the file (not both).
        let env = vec![(
            "SLUICE__KAFKA__SASL_PASSWORD".to_string(),
            "from-env-pw".to_string(),
        )];
        let e = from_str(&text, env.clone()).unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
        let c = from_str(
            &text.replace("sasl_password_file = \"/run/secrets/kafka\"", ""),
            env,
        )
        .unwrap();
        assert_eq!(
            c.kafka.sasl.unwrap().secret().unwrap().expose(),
            "from-env-pw"
        );
        // A missing secret file names the field, not the contents.
        let raw: raw::RawConfig = toml::from_str(&text).unwrap();
        let e = validate::validate(raw, &|_| Err(std::io::Error::other("gone"))).unwrap_err();
        assert_eq!(e.field, "kafka.sasl_password_file");
        // ClickHouse: password_file and the environment, same rules.
        let ch = MINIMAL.replace(
            "url = \"http://127.0.0.1:18123\"",
            "url = \"https://127.0.0.1:18143\"\nuser = \"sluice\"\npassword_file = \"/run/secrets/ch\"\nca_file = \"/ca.pem\"",
        );
        let raw: raw::RawConfig = toml::from_str(&ch).unwrap();
        let c = validate::validate(raw, &|_| Ok("ch-pw".to_string())).unwrap();
        assert_eq!(c.clickhouse.password.as_ref().unwrap().expose(), "ch-pw");
        assert!(!format!("{c:?}").contains("ch-pw"));
    }

    #[test]
    fn sizes_and_durations() {
        use raw::RawSize;
        assert_eq!(
            validate::parse_size("f", &RawSize::Text("16MiB".into())).unwrap(),
            16 << 20
        );
        assert_eq!(validate::parse_size("f", &RawSize::Bytes(10)).unwrap(), 10);
        assert!(validate::parse_size("f", &RawSize::Text("3 parsecs".into())).is_err());
        assert_eq!(
            validate::parse_duration("f", "250ms").unwrap(),
            std::time::Duration::from_millis(250)
        );
    }

    #[test]
    fn sasl_requires_credentials_and_never_prints_them() {
        let text = MINIMAL.replace(
            "group_id = \"g\"",
            "group_id = \"g\"\nsecurity_protocol = \"SASL_SSL\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"u\"",
        );
        let e = from_str(&text, no_env()).unwrap_err();
        assert_eq!(e.field, "kafka.sasl_password");
        let text = text.replace(
            "sasl_username = \"u\"",
            "sasl_username = \"u\"\nsasl_password = \"topsecret\"",
        );
        let c = from_str(&text, no_env()).unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
    }

    #[test]
    fn oauthbearer_takes_an_oidc_client_and_never_prints_its_secret() {
        let oauth = |extra: &str| {
            MINIMAL.replace(
                "group_id = \"g\"",
                &format!(
                    "group_id = \"g\"\nsecurity_protocol = \"SASL_SSL\"\nsasl_mechanism = \"oauthbearer\"\n{extra}"
                ),
            )
        };
        let full = "sasl_oauthbearer_token_endpoint_url = \"https://idp.example/realms/k/protocol/openid-connect/token\"\nsasl_oauthbearer_client_id = \"sluice\"\nsasl_oauthbearer_client_secret = \"hush-5150\"\nsasl_oauthbearer_scope = \"kafka\"\nsasl_oauthbearer_extensions = \"logicalCluster=lkc-1,identityPoolId=pool-2\"";
        let c = from_str(&oauth(full), no_env()).unwrap();
        let sasl = c.kafka.sasl.as_ref().unwrap();
        assert_eq!(sasl.mechanism, "OAUTHBEARER");
        let SaslCredentials::Oidc(o) = &sasl.credentials else {
            panic!("{sasl:?}")
        };
        assert_eq!(o.client_id, "sluice");
        assert_eq!(o.scope.as_deref(), Some("kafka"));
        assert_eq!(sasl.secret().unwrap().expose(), "hush-5150");
        assert!(!format!("{c:?}").contains("hush-5150"));
        assert_eq!(sasl.principal(), "OIDC client \"sluice\"");
        // The own fetch path speaks OAUTHBEARER too (kafka/oidc.rs), unless librdkafka's
        // OIDC client is told to check the token endpoint otherwise.
        assert_eq!(c.kafka.fetch, FetchPath::Sluice);
        let https = "properties = { \"https.ca.location\" = \"/etc/idp-ca.pem\" }";
        let c2 = from_str(&oauth(&format!("{full}\n{https}")), no_env()).unwrap();
        assert_eq!(c2.kafka.fetch, FetchPath::Librdkafka);
        assert!(own_fetch_refusal(&c2.kafka)
            .unwrap()
            .contains("https.ca.location"));
        let props = crate::kafka::client::base_config(&c.kafka);
        assert_eq!(props.get("sasl.oauthbearer.method"), Some("oidc"));
        assert_eq!(props.get("sasl.oauthbearer.client.id"), Some("sluice"));
        assert_eq!(
            props.get("sasl.oauthbearer.client.secret"),
            Some("hush-5150")
        );
        assert_eq!(
            props.get("sasl.oauthbearer.extensions"),
            Some("logicalCluster=lkc-1,identityPoolId=pool-2")
        );
        assert_eq!(props.get("sasl.username"), None);

        // Each required setting is named when it is missing; the secret may come from the
        // environment or a file.
        for (drop, field) in [
            (
                "sasl_oauthbearer_token_endpoint_url",
                "kafka.sasl_oauthbearer_token_endpoint_url",
            ),
            (
                "sasl_oauthbearer_client_id",
                "kafka.sasl_oauthbearer_client_id",
            ),
            (
                "sasl_oauthbearer_client_secret",
                "kafka.sasl_oauthbearer_client_secret",
            ),
        ] {
            let text: Vec<&str> = full
                .lines()
                .filter(|l| !l.starts_with(&format!("{drop} ")))
                .collect();
            let e = from_str(&oauth(&text.join("\n")), no_env()).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        let without_secret: Vec<&str> = full
            .lines()
            .filter(|l| !l.starts_with("sasl_oauthbearer_client_secret"))
            .collect();
        let without_secret = oauth(&without_secret.join("\n"));
        let env = vec![(
            "SLUICE__KAFKA__SASL_OAUTHBEARER_CLIENT_SECRET".to_string(),
            "from-env-5150".to_string(),
        )];
        let c = from_str(&without_secret, env).unwrap();
        assert_eq!(
            c.kafka.sasl.unwrap().secret().unwrap().expose(),
            "from-env-5150"
        );
        let raw: raw::RawConfig = toml::from_str(&without_secret.replace(
            "sasl_oauthbearer_client_id",
            "sasl_oauthbearer_client_secret_file = \"/run/secrets/oidc\"\nsasl_oauthbearer_client_id",
        ))
        .unwrap();
        let c = validate::validate(raw, &|_| Ok("from-file-5150\n".to_string())).unwrap();
        assert_eq!(
            c.kafka.sasl.unwrap().secret().unwrap().expose(),
            "from-file-5150"
        );

        // A user and password do not go with OAUTHBEARER, nor OIDC settings with another
        // mechanism or without SASL; credentials in the URL and bad extensions are refused.
        let e = from_str(&oauth(&format!("{full}\nsasl_username = \"u\"")), no_env()).unwrap_err();
        assert_eq!(e.field, "kafka.sasl_username");
        let e = from_str(
            &oauth(full).replace("\"oauthbearer\"", "\"SCRAM-SHA-512\""),
            no_env(),
        )
        .unwrap_err();
        assert_eq!(e.field, "kafka.sasl_mechanism");
        let e = from_str(
            &oauth(full)
                .replace("\"SASL_SSL\"", "\"SSL\"")
                .replace("sasl_mechanism = \"oauthbearer\"\n", ""),
            no_env(),
        )
        .unwrap_err();
        assert_eq!(e.field, "kafka.security_protocol");
        let e = from_str(
            &oauth(&full.replace("https://idp", "https://u:p@idp")),
            no_env(),
        )
        .unwrap_err();
        assert_eq!(e.field, "kafka.sasl_oauthbearer_token_endpoint_url");
        for bad in ["auth=x", "a-b=c", "novalue", "k=caf\u{e9}"] {
            let e = from_str(
                &oauth(&full.replace("logicalCluster=lkc-1,identityPoolId=pool-2", bad)),
                no_env(),
            )
            .unwrap_err();
            assert_eq!(e.field, "kafka.sasl_oauthbearer_extensions", "{bad}: {e}");
            assert!(!e.to_string().contains("hush-5150"));
        }
        // librdkafka's own OIDC settings have these dedicated ones.
        let e = from_str(
            &oauth(&format!(
                "{full}\nproperties = {{ \"sasl.oauthbearer.client.id\" = \"x\" }}"
            )),
            no_env(),
        )
        .unwrap_err();
        assert!(
            e.message.contains("kafka.sasl_oauthbearer_client_id"),
            "{e}"
        );
    }

    /// The bundled librdkafka is built with its OIDC client (libcurl): without it, a client
    /// with `sasl.oauthbearer.method = oidc` is refused when it is created.
    /// librdkafka makes a consumer of MINIMAL with `kafka` settings added: a build without
    /// what they need refuses them when the client is made.
    fn librdkafka_takes(kafka: &str) {
        use rdkafka::consumer::BaseConsumer;
        let c = from_str(
            &MINIMAL.replace("group_id = \"g\"", &format!("group_id = \"g\"\n{kafka}")),
            no_env(),
        )
        .unwrap();
        let created: Result<BaseConsumer, _> =
            crate::kafka::client::consumer_config(&c.kafka).create();
        if let Err(e) = created {
            panic!("{e}");
        }
    }

    #[test]
    fn librdkafka_has_its_oidc_client() {
        librdkafka_takes("security_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"OAUTHBEARER\"\nsasl_oauthbearer_token_endpoint_url = \"http://127.0.0.1:9/token\"\nsasl_oauthbearer_client_id = \"c\"\nsasl_oauthbearer_client_secret = \"s3cret\"");
    }

    #[test]
    fn gssapi_takes_a_kerberos_principal_and_its_keytab() {
        let keytab = tempfile::NamedTempFile::new().unwrap();
        let keytab_path = keytab.path().to_string_lossy().to_string();
        let gssapi = |extra: &str| {
            MINIMAL.replace(
                "group_id = \"g\"",
                &format!(
                    "group_id = \"g\"\nsecurity_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"gssapi\"\n{extra}"
                ),
            )
        };
        let full = format!(
            "sasl_kerberos_principal = \"sluice/ingest.example.com@EXAMPLE.COM\"\nsasl_kerberos_keytab = \"{keytab_path}\""
        );
        let c = from_str(&gssapi(&full), no_env()).unwrap();
        let sasl = c.kafka.sasl.as_ref().unwrap();
        assert_eq!(sasl.mechanism, "GSSAPI");
        assert!(sasl.secret().is_none());
        assert_eq!(
            sasl.principal(),
            "Kerberos principal \"sluice/ingest.example.com@EXAMPLE.COM\""
        );
        // Both paths speak GSSAPI (the own one through librdkafka's Cyrus SASL).
        assert_eq!(c.kafka.fetch, FetchPath::Sluice);
        assert_eq!(own_fetch_refusal(&c.kafka), None);
        let props = crate::kafka::client::base_config(&c.kafka);
        assert_eq!(props.get("sasl.mechanism"), Some("GSSAPI"));
        assert_eq!(props.get("sasl.kerberos.service.name"), Some("kafka"));
        assert_eq!(
            props.get("sasl.kerberos.principal"),
            Some("sluice/ingest.example.com@EXAMPLE.COM")
        );
        assert_eq!(
            props.get("sasl.kerberos.keytab"),
            Some(keytab_path.as_str())
        );
        assert_eq!(props.get("sasl.kerberos.min.time.before.relogin"), None);

        // Without a keytab: the ticket cache as it is, no kinit.
        let c = from_str(
            &gssapi("sasl_kerberos_service_name = \"kafka-prod\""),
            no_env(),
        )
        .unwrap();
        let props = crate::kafka::client::base_config(&c.kafka);
        assert_eq!(props.get("sasl.kerberos.service.name"), Some("kafka-prod"));
        assert_eq!(
            props.get("sasl.kerberos.min.time.before.relogin"),
            Some("0")
        );
        assert_eq!(props.get("sasl.kerberos.keytab"), None);
        assert_eq!(
            c.kafka.sasl.unwrap().principal(),
            "the Kerberos ticket cache's principal"
        );

        // What is refused before anything connects, and where.
        let refused = |extra: &str| from_str(&gssapi(extra), no_env()).unwrap_err();
        let e = refused(&format!("sasl_kerberos_keytab = \"{keytab_path}\""));
        assert_eq!(e.field, "kafka.sasl_kerberos_principal");
        let e = refused(
            "sasl_kerberos_principal = \"s@R\"\nsasl_kerberos_keytab = \"/nonexistent/k.keytab\"",
        );
        assert_eq!(e.field, "kafka.sasl_kerberos_keytab");
        assert!(
            e.message.contains("cannot read /nonexistent/k.keytab"),
            "{e}"
        );
        let e =
            refused("sasl_kerberos_principal = \"s@R\"\nsasl_kerberos_keytab = \"/tmp/$(reboot)\"");
        assert_eq!(e.field, "kafka.sasl_kerberos_keytab");
        let e = refused("sasl_kerberos_principal = \"s; reboot@R\"");
        assert_eq!(e.field, "kafka.sasl_kerberos_principal");
        let e = refused("sasl_username = \"u\"\nsasl_password = \"p\"");
        assert_eq!(e.field, "kafka.sasl_username");
        let plain = MINIMAL.replace(
            "group_id = \"g\"",
            "group_id = \"g\"\nsecurity_protocol = \"SASL_PLAINTEXT\"\nsasl_username = \"u\"\nsasl_password = \"p\"\nsasl_kerberos_principal = \"s@R\"",
        );
        let e = from_str(&plain, no_env()).unwrap_err();
        assert_eq!(e.field, "kafka.sasl_mechanism");
        assert!(e.message.contains("not \"GSSAPI\""), "{e}");
        let props = "properties = { \"sasl.kerberos.keytab\" = \"/x\" }";
        let e = refused(&format!("{full}\n{props}"));
        assert!(e.message.contains("kafka.sasl_kerberos_keytab"), "{e}");
    }

    #[test]
    fn registry_bearer_auth_takes_an_oidc_client_instead_of_basic_credentials() {
        let with = |extra: &str| {
            format!(
                "{}\n[schema_registry]\nurl = \"https://sr.example.com\"\n{extra}",
                route_with("format = \"avro\"")
            )
        };
        let full = "bearer_auth_issuer_endpoint_url = \"https://idp.example.com/oauth2/token\"\nbearer_auth_client_id = \"sr-client\"\nbearer_auth_client_secret = \"sr-hush-77\"\nbearer_auth_scope = \"registry\"\nbearer_auth_logical_cluster = \"lsrc-123\"\nbearer_auth_identity_pool_id = \"pool-9\"";
        let c = from_str(&with(full), no_env()).unwrap();
        let r = c.schema_registry.as_ref().unwrap();
        let b = r.bearer.as_ref().unwrap();
        assert_eq!(
            b.oidc.token_endpoint_url,
            "https://idp.example.com/oauth2/token"
        );
        assert_eq!(b.oidc.client_id, "sr-client");
        assert_eq!(b.oidc.client_secret.expose(), "sr-hush-77");
        assert_eq!(b.oidc.scope.as_deref(), Some("registry"));
        assert_eq!(b.logical_cluster.as_deref(), Some("lsrc-123"));
        assert_eq!(b.identity_pool_id.as_deref(), Some("pool-9"));
        assert!(r.username.is_none() && r.password.is_none());
        assert!(!format!("{c:?}").contains("sr-hush-77"));
        // The secret from the environment.
        let c = from_str(
            &with("bearer_auth_issuer_endpoint_url = \"https://idp.example.com/t\"\nbearer_auth_client_id = \"c\""),
            vec![(
                "SLUICE__SCHEMA_REGISTRY__BEARER_AUTH_CLIENT_SECRET".to_string(),
                "from-env-77".to_string(),
            )],
        )
        .unwrap();
        let b = c.schema_registry.unwrap().bearer.unwrap();
        assert_eq!(b.oidc.client_secret.expose(), "from-env-77");
        // What is refused, and where.
        let refused = |extra: &str| from_str(&with(extra), no_env()).unwrap_err();
        let e = refused("bearer_auth_client_id = \"c\"\nbearer_auth_client_secret = \"s\"");
        assert_eq!(e.field, "schema_registry.bearer_auth_issuer_endpoint_url");
        let e = refused(
            "bearer_auth_issuer_endpoint_url = \"https://idp/t\"\nbearer_auth_client_id = \"c\"",
        );
        assert_eq!(e.field, "schema_registry.bearer_auth_client_secret");
        let e = refused("bearer_auth_issuer_endpoint_url = \"ftp://idp/t\"\nbearer_auth_client_id = \"c\"\nbearer_auth_client_secret = \"s\"");
        assert_eq!(e.field, "schema_registry.bearer_auth_issuer_endpoint_url");
        let e = refused(&format!("{full}\nusername = \"u\"\npassword = \"p\""));
        assert_eq!(e.field, "schema_registry.username");
        assert!(e.message.contains("exclude each other"), "{e}");
        let e = refused(&full.replace("lsrc-123", "lsrc\\n123"));
        assert_eq!(e.field, "schema_registry.bearer_auth_logical_cluster");
        assert!(!e.to_string().contains("sr-hush-77"));
    }

    #[test]
    fn librdkafka_has_gssapi() {
        // Cyrus SASL: without it librdkafka has no provider for the mechanism.
        librdkafka_takes("security_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"GSSAPI\"");
    }

    #[test]
    fn url_credentials_are_refused() {
        let text = MINIMAL.replace("http://127.0.0.1", "http://u:p@127.0.0.1");
        let e = from_str(&text, no_env()).unwrap_err();
        assert_eq!(e.field, "clickhouse.url");
        assert!(!e.to_string().contains("u:p"));
    }
}
