//! `[clickhouse]`: the URL, shards, credentials, TLS and the insert settings a user may add.

use super::*;

/// An http:// or https:// URL without credentials in it (they would end up in logs;
/// `use_instead` names the keys that take them).
pub(super) fn http_url(field: &str, url: &str, use_instead: &str) -> Result<String, ConfigError> {
    let url = non_empty(field, url)?;
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            err(
                field,
                format!("{url:?} must start with http:// or https://"),
            )
        })?;
    if rest.contains('@') {
        return Err(err(
            field,
            format!("credentials in the URL are not allowed (they would end up in logs); use {use_instead}"),
        ));
    }
    Ok(url)
}

pub(super) fn validate_clickhouse(
    c: &RawClickHouse,
    read_file: FileReader<'_>,
) -> Result<ClickHouseConfig, ConfigError> {
    let url = http_url(
        "clickhouse.url",
        &c.url,
        "clickhouse.user and clickhouse.password",
    )?;
    let url = url.trim_end_matches('/').to_string();
    let compression = match c.compression.as_deref().unwrap_or("auto") {
        "auto" => Compression::Auto,
        "none" => Compression::None,
        "lz4" => Compression::Lz4,
        "gzip" => Compression::Gzip,
        other => {
            return Err(err(
                "clickhouse.compression",
                format!("{other:?} is not one of auto, none, lz4, gzip"),
            ))
        }
    };
    let tls = TlsFiles {
        ca: path(&c.ca_file),
        cert: path(&c.client_cert),
        key: path(&c.client_key),
        // PKCS#12 is for Kafka (librdkafka reads it); the HTTPS client takes PEM files.
        keystore: None,
    };
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(err(
            "clickhouse.client_key",
            "a client certificate needs its key, and a key its certificate",
        ));
    }
    if (tls.ca.is_some() || tls.cert.is_some()) && url.starts_with("http://") {
        return Err(err(
            "clickhouse.url",
            "TLS files are given but the URL is http://; use https://",
        ));
    }
    let trusted = https_truststore(
        "clickhouse",
        &url,
        tls.ca.is_some(),
        &c.truststore_location,
        &c.truststore_password,
    )?;
    let identity = match path(&c.keystore_location) {
        None => {
            for (name, v) in [("keystore_password", &c.keystore_password), ("key_password", &c.key_password)] {
                if v.is_some() {
                    return Err(err(format!("clickhouse.{name}"), "set, but there is no keystore_location for it to open"));
                }
            }
            None
        }
        Some(_) if tls.cert.is_some() => {
            return Err(err(
                "clickhouse.keystore_location",
                "a keystore holds the client certificate and key: give it, or client_cert and client_key, not both",
            ))
        }
        Some(_) if url.starts_with("http://") => {
            return Err(err("clickhouse.url", "a keystore is given but the URL is http://; use https://"))
        }
        Some(p) => Some(
            java_stores::read_keystore(
                &p,
                c.keystore_password.clone().map(Secret::new).as_ref(),
                c.key_password.clone().map(Secret::new).as_ref(),
            )
            .map_err(|e| err("clickhouse.keystore_location", format!("{}: {e}", p.display())))?,
        ),
    };
    let shards = shard_urls(c.shards.as_deref(), &url)?;
    Ok(ClickHouseConfig {
        url,
        database: non_empty(
            "clickhouse.database",
            c.database.as_deref().unwrap_or("default"),
        )?,
        user: c.user.clone(),
        password: secret(
            "clickhouse.password",
            &c.password,
            &c.password_file,
            read_file,
        )?,
        tls,
        compression,
        stream_inserts: c.stream_inserts.unwrap_or(true),
        connect_timeout: match &c.connect_timeout {
            Some(s) => parse_duration("clickhouse.connect_timeout", s)?,
            None => Duration::from_secs(5),
        },
        request_timeout: match &c.request_timeout {
            Some(s) => parse_duration("clickhouse.request_timeout", s)?,
            None => Duration::from_secs(120),
        },
        stores: JavaStores { identity, trusted },
        insert_settings: insert_settings(&c.insert_settings)?,
        shards,
    })
}

/// `clickhouse.shards`, checked: at least two distinct URLs, `url` the first (the server
/// `check`, the tools and the table refresh talk to), every one of `url`'s scheme (the TLS
/// settings are for all of them). None given: one server, no list.
pub(super) fn shard_urls(given: Option<&[String]>, url: &str) -> Result<Vec<String>, ConfigError> {
    const FIELD: &str = "clickhouse.shards";
    let Some(given) = given else {
        return Ok(Vec::new());
    };
    let mut shards = Vec::with_capacity(given.len());
    for u in given {
        let u = http_url(FIELD, u, "clickhouse.user and clickhouse.password")?;
        let u = u.trim_end_matches('/').to_string();
        if shards.contains(&u) {
            return Err(err(FIELD, format!("{u} is listed twice")));
        }
        if u.split_once("://").map(|(s, _)| s) != url.split_once("://").map(|(s, _)| s) {
            return Err(err(
                FIELD,
                format!(
                    "{u}: every shard takes clickhouse.url's scheme (its TLS settings are theirs)"
                ),
            ));
        }
        shards.push(u);
    }
    if shards.len() < 2 {
        return Err(err(
            FIELD,
            "list every shard, two at least (one server needs only url)",
        ));
    }
    if shards[0] != url {
        return Err(err(
            FIELD,
            format!("the first shard must be clickhouse.url ({url}): the order decides where each partition goes"),
        ));
    }
    Ok(shards)
}

/// The truststore of an HTTPS client (`section.truststore_location`, JKS or PKCS#12) and
/// the certificates it trusts, read now; refused beside a CA file or on an http:// URL.
pub(super) fn https_truststore(
    section: &str,
    url: &str,
    has_ca_file: bool,
    location: &Option<String>,
    password: &Option<String>,
) -> Result<Option<Trusted>, ConfigError> {
    let field = format!("{section}.truststore_location");
    let Some(p) = path(location) else {
        if password.is_some() {
            return Err(err(
                format!("{section}.truststore_password"),
                "set, but there is no truststore_location for it to open",
            ));
        }
        return Ok(None);
    };
    if has_ca_file {
        return Err(err(
            field,
            "a truststore holds the CA certificates: give it, or ca_file, not both",
        ));
    }
    if url.starts_with("http://") {
        return Err(err(
            field,
            "a truststore is given but the URL is http://; use https://",
        ));
    }
    let certs = java_stores::read_truststore(&p, password.clone().map(Secret::new).as_ref())
        .map_err(|e| err(&field, format!("{}: {e}", p.display())))?;
    Ok(Some((p, certs)))
}

/// `clickhouse.insert_settings`, checked: names as ClickHouse spells settings, none that
/// sluice sets itself, values without NUL. Whether the server knows each one (and takes its
/// value) is asked when sluice connects.
pub(super) fn insert_settings(
    given: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::with_capacity(given.len());
    for (name, value) in given {
        let field = format!("clickhouse.insert_settings.{name}");
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(err(field, "not a setting name (letters, digits and _)"));
        }
        let lower = name.to_ascii_lowercase();
        if PROTECTED_INSERT_SETTINGS.contains(&lower.as_str())
            || PROTECTED_INSERT_PREFIXES
                .iter()
                .any(|p| lower.starts_with(p))
        {
            return Err(err(
                field,
                "sluice sets this itself, or depends on its default: acknowledged inserts stored, deduplicated and read exactly as sent (see README \"Insert settings\")",
            ));
        }
        if value.contains('\0') {
            return Err(err(field, "contains a NUL byte"));
        }
        out.push((name.clone(), value.clone()));
    }
    Ok(out)
}
