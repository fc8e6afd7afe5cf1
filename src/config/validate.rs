//! Raw config -> validated config. Pure: no sockets, no clocks; files are read only for
//! `*_file` secrets, through an injectable reader so tests stay pure.
//!
//! Every error names the field it is about (`route[1].max_age`), so a wrong config fails at
//! start-up with a message that says where to look, before anything connects.
//!
//! Here: [`validate`] (the whole file), the schema registry, the service section and the
//! helpers every section shares (sizes, durations, secrets). By section: `kafka`,
//! `clickhouse`, `route`; the validated types and the limits' defaults: `model`.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use super::patterns::TopicPattern;
use super::raw::{RawClickHouse, RawConfig, RawKafka, RawRoute, RawSchemaRegistry, RawSize};
use crate::decode::time_format::TimeFormat;
use crate::kafka::java_stores::{self, Identity, StoreFormat};
use crate::kafka::topic_name;
use crate::secret::Secret;

mod clickhouse;
mod kafka;
mod model;
mod route;

use clickhouse::*;
pub use kafka::*;
pub use model::*;
pub(super) use route::*;

#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Reads a `*_file` secret. Injected so validation stays testable without files.
pub type FileReader<'a> = &'a dyn Fn(&str) -> std::io::Result<String>;

pub fn validate(raw: RawConfig, read_file: FileReader<'_>) -> Result<Config, ConfigError> {
    let kafka = validate_kafka(&raw.kafka, read_file)?;
    let clickhouse = validate_clickhouse(&raw.clickhouse, read_file)?;
    if raw.routes.is_empty() {
        return Err(err(
            "route",
            "at least one [[route]] (topic -> table) is required",
        ));
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut patterns = Vec::new();
    let mut registry_users = Vec::new();
    let mut topics = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        if r.topic_pattern.is_some() {
            if r.topic.is_some() {
                return Err(err(
                    format!("route[{i}].topic_pattern"),
                    "set together with topic: a route reads one topic or the topics of a pattern, not both",
                ));
            }
            let pattern = TopicPattern::new(i, r, &clickhouse.database)?;
            if pattern.sample().format.uses_registry() {
                registry_users.push(i);
            }
            patterns.push(pattern);
            continue;
        }
        let route = validate_route(i, r, &clickhouse.database)?;
        if route.format.uses_registry() {
            registry_users.push(i);
        }
        if !topics.insert(route.topic.clone()) {
            // One consumer group reads a topic once; two tables from one topic would need two
            // independent offset positions, which a single group cannot hold.
            return Err(err(
                format!("route[{i}].topic"),
                format!(
                    "topic {:?} already has a route; run a second sluice with another group_id to fill a second table from it",
                    route.topic
                ),
            ));
        }
        routes.push(route);
    }
    let service = validate_service(&raw)?;
    let schema_registry = match &raw.schema_registry {
        Some(r) => Some(validate_schema_registry(r, read_file)?),
        None => None,
    };
    if schema_registry.is_none() {
        if let Some(i) = registry_users.first() {
            return Err(err(
                format!("route[{i}].format"),
                "an avro, protobuf or json-schema route reads its schemas from a registry: add [schema_registry] url = \"http://...\"",
            ));
        }
    }
    Ok(Config {
        kafka,
        clickhouse,
        routes,
        patterns,
        service,
        schema_registry,
    })
}

fn validate_schema_registry(
    r: &RawSchemaRegistry,
    read_file: FileReader<'_>,
) -> Result<SchemaRegistryConfig, ConfigError> {
    let url = http_url(
        "schema_registry.url",
        &r.url,
        "schema_registry.username and schema_registry.password",
    )?;
    let ca_file = path(&r.ca_file);
    if ca_file.is_some() && url.starts_with("http://") {
        return Err(err(
            "schema_registry.url",
            "a CA file is given but the URL is http://; use https://",
        ));
    }
    let trusted = https_truststore(
        "schema_registry",
        &url,
        ca_file.is_some(),
        &r.truststore_location,
        &r.truststore_password,
    )?;
    let password = secret(
        "schema_registry.password",
        &r.password,
        &r.password_file,
        read_file,
    )?;
    let username = r.username.as_ref().map(|u| u.trim().to_string());
    if password.is_some() && username.as_deref().is_none_or(str::is_empty) {
        return Err(err(
            "schema_registry.username",
            "required when schema_registry.password is set",
        ));
    }
    let bearer = registry_bearer(r, read_file)?;
    if bearer.is_some() && (username.is_some() || password.is_some()) {
        return Err(err(
            "schema_registry.username",
            "basic credentials (username, password) and bearer_auth_* settings exclude each other: the registry gets one Authorization header",
        ));
    }
    Ok(SchemaRegistryConfig {
        url: url.trim_end_matches('/').to_string(),
        username,
        password,
        bearer,
        ca_file,
        trusted,
        request_timeout: match &r.request_timeout {
            Some(s) => parse_duration("schema_registry.request_timeout", s)?,
            None => Duration::from_secs(10),
        },
    })
}

/// The registry's bearer authentication, if any `bearer_auth_*` setting is given: then the
/// token endpoint, the client id and its secret are required.
fn registry_bearer(
    r: &RawSchemaRegistry,
    read_file: FileReader<'_>,
) -> Result<Option<RegistryBearer>, ConfigError> {
    let secret = secret(
        "schema_registry.bearer_auth_client_secret",
        &r.bearer_auth_client_secret,
        &r.bearer_auth_client_secret_file,
        read_file,
    )?;
    let given = r.bearer_auth_issuer_endpoint_url.is_some()
        || r.bearer_auth_client_id.is_some()
        || secret.is_some()
        || r.bearer_auth_scope.is_some()
        || r.bearer_auth_logical_cluster.is_some()
        || r.bearer_auth_identity_pool_id.is_some();
    if !given {
        return Ok(None);
    }
    let oidc = client_credentials(
        OidcFields {
            prefix: "schema_registry.bearer_auth_",
            url_name: "issuer_endpoint_url",
            url: &r.bearer_auth_issuer_endpoint_url,
            client_id: &r.bearer_auth_client_id,
            scope: &r.bearer_auth_scope,
            required_with:
                "required with bearer authentication (any schema_registry.bearer_auth_* setting)",
        },
        secret,
    )?;
    // HTTP header values: a control character would make every request fail at run time.
    let optional = |field: &str, v: &Option<String>| -> Result<Option<String>, ConfigError> {
        let field = format!("schema_registry.{field}");
        let Some(v) = v.as_deref() else {
            return Ok(None);
        };
        let v = non_empty(&field, v)?;
        if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(err(field, "goes into an HTTP header: printable ASCII only"));
        }
        Ok(Some(v))
    };
    Ok(Some(RegistryBearer {
        oidc,
        logical_cluster: optional(
            "bearer_auth_logical_cluster",
            &r.bearer_auth_logical_cluster,
        )?,
        identity_pool_id: optional(
            "bearer_auth_identity_pool_id",
            &r.bearer_auth_identity_pool_id,
        )?,
    }))
}

fn topic_name(field: &str, v: &str) -> Result<String, ConfigError> {
    let t = non_empty(field, v)?;
    topic_name::check(&t).map_err(|e| err(field, e))?;
    Ok(t)
}

fn non_empty(field: &str, v: &str) -> Result<String, ConfigError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(err(field, "must not be empty"));
    }
    Ok(t.to_string())
}

/// The longest duration any setting takes. Deadlines are instants plus a duration (a batch's
/// age limit is up to 8 times `max_age`), and a duration of billions of years overflows
/// them; nothing sluice waits for is sensibly longer than a week.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

pub fn parse_duration(field: &str, v: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(v.trim()).map_err(|e| {
        err(
            field,
            format!("invalid duration {v:?} ({e}); write e.g. \"500ms\", \"1s\", \"2m\""),
        )
    })?;
    if d > MAX_DURATION {
        return Err(err(
            field,
            format!("{v:?} is longer than the 7 days any setting allows"),
        ));
    }
    Ok(d)
}

pub fn parse_size(field: &str, v: &RawSize) -> Result<usize, ConfigError> {
    let bytes = match v {
        RawSize::Bytes(b) => *b,
        RawSize::Text(t) => {
            let t = t.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: u64 = num.parse().map_err(|_| {
                err(
                    field,
                    format!("invalid size {t:?}; write e.g. 1048576, \"512KiB\", \"16MiB\""),
                )
            })?;
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "KB" => 1000,
                "KiB" => 1024,
                "MB" => 1000 * 1000,
                "MiB" => 1024 * 1024,
                "GB" => 1000 * 1000 * 1000,
                "GiB" => 1024 * 1024 * 1024,
                other => {
                    return Err(err(
                        field,
                        format!("unknown size unit {other:?}; use B, KB, KiB, MB, MiB, GB or GiB"),
                    ))
                }
            };
            n.checked_mul(mult)
                .ok_or_else(|| err(field, format!("size {t:?} is too large")))?
        }
    };
    usize::try_from(bytes).map_err(|_| err(field, "size is too large"))
}

fn secret(
    field: &str,
    inline: &Option<String>,
    file: &Option<String>,
    read_file: FileReader<'_>,
) -> Result<Option<Secret>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(err(
            field,
            format!("set either {field} or {field}_file, not both"),
        )),
        (Some(v), None) => Ok(Some(Secret::new(v.clone()))),
        (None, Some(path)) => {
            let text = read_file(path).map_err(|e| {
                err(
                    format!("{field}_file"),
                    format!("cannot read {path:?}: {e}"),
                )
            })?;
            // A trailing newline comes from `echo pw > file`; it is never part of a password.
            Ok(Some(Secret::new(text.trim_end_matches(['\n', '\r']))))
        }
        (None, None) => Ok(None),
    }
}

fn validate_service(raw: &RawConfig) -> Result<ServiceConfig, ConfigError> {
    let s = &raw.service;
    let metrics_listen = match &s.metrics_listen {
        Some(a) if !a.trim().is_empty() => Some(a.trim().parse().map_err(|e| {
            err(
                "service.metrics_listen",
                format!("{a:?} is not an address like 127.0.0.1:9464 ({e})"),
            )
        })?),
        _ => None,
    };
    let log_json = match s.log_format.as_deref().unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => {
            return Err(err(
                "service.log_format",
                format!("{other:?} is not one of \"text\", \"json\""),
            ))
        }
    };
    let batch_memory = match &s.batch_memory {
        Some(v) => parse_size("service.batch_memory", v)?,
        None => DEFAULT_BATCH_MEMORY,
    };
    if batch_memory < 1024 * 1024 {
        return Err(err("service.batch_memory", "must be at least 1MiB"));
    }
    Ok(ServiceConfig {
        shutdown_timeout: match &s.shutdown_timeout {
            Some(t) => parse_duration("service.shutdown_timeout", t)?,
            None => Duration::from_secs(30),
        },
        metrics_listen,
        log_json,
        batch_memory,
        table_refresh: match &s.table_refresh {
            Some(t) => Some(parse_duration("service.table_refresh", t)?).filter(|d| !d.is_zero()),
            None => Some(DEFAULT_TABLE_REFRESH),
        },
    })
}

/// Reading a table's columns is two small queries: every 10 s costs nothing measurable, and
/// a column added under a running sluice is filled within that.
pub const DEFAULT_TABLE_REFRESH: Duration = Duration::from_secs(10);
