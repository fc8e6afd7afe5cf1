//! `[kafka]`: brokers, security (TLS files, Java stores, SASL mechanisms, OAUTHBEARER's
//! client), the passthrough properties sluice guards, and whether its own fetch path can serve.

use super::*;

/// librdkafka properties sluice sets itself and that the passthrough may not change: the
/// delivery guarantee depends on them (manual commits only after ClickHouse acknowledged).
pub const PROTECTED_KAFKA_PROPERTIES: &[&str] = &[
    "group.id",
    "group.instance.id",
    "bootstrap.servers",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "isolation.level",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.credentials.client.id",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.extensions",
    "sasl.kerberos.principal",
    "sasl.kerberos.keytab",
    "sasl.kerberos.service.name",
    "ssl.key.password",
    // The TLS files and checks have dedicated settings; a passthrough copy would silently win.
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.certificate.location",
    "ssl.certificate.pem",
    "ssl.key.location",
    "ssl.key.pem",
    "ssl.keystore.location",
    "ssl.endpoint.identification.algorithm",
];

/// Reads the Java stores the config names, so that a wrong password or an unreadable file
/// stops the start before anything connects: a JKS keystore is opened here (a PKCS#12 one
/// only recognised: librdkafka and OpenSSL open it, and report its errors), and a truststore
/// of either format is read for its certificates. `ssl_key_password` is a JKS key's own
/// password (as Java's `ssl.key.password`); with a PKCS#12 keystore it has no use.
pub(super) fn open_java_stores(
    k: &RawKafka,
    tls: &TlsFiles,
    truststore: Option<PathBuf>,
) -> Result<JavaStores, ConfigError> {
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| err(field, format!("cannot read {}: {e}", path.display())))
    };
    let mut stores = JavaStores::default();
    if let Some(path) = &tls.keystore {
        let field = "kafka.ssl_keystore_location";
        let at = |e: String| err(field, format!("{}: {e}", path.display()));
        let bytes = read(field, path)?;
        match java_stores::format_of(&bytes).map_err(at)? {
            StoreFormat::Pkcs12 if k.ssl_key_password.is_some() => {
                return Err(err(
                    "kafka.ssl_key_password",
                    "a PKCS#12 keystore's key is opened with ssl_keystore_password; ssl_key_password is for a PEM key or a JKS keystore's key",
                ))
            }
            StoreFormat::Pkcs12 => {}
            StoreFormat::Jks => {
                let Some(password) = k.ssl_keystore_password.clone().map(Secret::new) else {
                    return Err(err(
                        "kafka.ssl_keystore_password",
                        "a JKS keystore is opened with its password: set it",
                    ));
                };
                let key_password = k.ssl_key_password.clone().map(Secret::new);
                stores.identity = Some(
                    java_stores::jks_identity(&bytes, &password, key_password.as_ref())
                        .map_err(at)?,
                );
            }
        }
    }
    if let Some(path) = truststore {
        let password = k.ssl_truststore_password.clone().map(Secret::new);
        let certs = java_stores::read_truststore(&path, password.as_ref()).map_err(|e| {
            err(
                "kafka.ssl_truststore_location",
                format!("{}: {e}", path.display()),
            )
        })?;
        stores.trusted = Some((path, certs));
    }
    Ok(stores)
}

/// Why the own fetch path (`kafka/own_fetch.rs`, secured by `kafka/secure.rs`) cannot connect
/// exactly as librdkafka would with these settings, or `None` when it can: on PLAINTEXT,
/// SASL_PLAINTEXT, SSL and SASL_SSL with PEM files or a PKCS#12 keystore (a CA file or
/// directory, or the system's CA store) and every SASL mechanism sluice takes. What it does
/// not reproduce (passthrough properties that only librdkafka applies) stays with librdkafka.
pub(in crate::config) fn own_fetch_refusal(
    properties: &BTreeMap<String, String>,
) -> Option<String> {
    properties
        .keys()
        .find(|key| {
            // `https.*`: how librdkafka's OIDC client checks the token endpoint.
            key.starts_with("ssl.")
                || key.starts_with("sasl.")
                || key.starts_with("https.")
                || key.starts_with("enable.ssl.")
                || key.as_str() == "ssl_engine_location"
        })
        .map(|key| format!("kafka.properties sets {key:?}, which only librdkafka applies"))
}

/// Why a protected property is refused: the dedicated setting it would silently override, or
/// the guarantee that depends on it.
pub(super) fn protected_property_reason(key: &str) -> String {
    let dedicated = match key {
        "group.id" => "kafka.group_id",
        "group.instance.id" => "kafka.instance_id",
        "bootstrap.servers" => "kafka.brokers",
        "security.protocol" => "kafka.security_protocol",
        "sasl.mechanism" | "sasl.mechanisms" => "kafka.sasl_mechanism",
        "sasl.username" => "kafka.sasl_username",
        "sasl.password" => "kafka.sasl_password (or sasl_password_file, or the environment variable SLUICE__KAFKA__SASL_PASSWORD)",
        "sasl.oauthbearer.method" => "kafka.sasl_mechanism = \"OAUTHBEARER\" (with kafka.sasl_oauthbearer_token_endpoint_url: the OIDC method)",
        "sasl.oauthbearer.client.id" | "sasl.oauthbearer.client.credentials.client.id" => "kafka.sasl_oauthbearer_client_id",
        "sasl.oauthbearer.token.endpoint.url" => "kafka.sasl_oauthbearer_token_endpoint_url",
        "sasl.oauthbearer.scope" => "kafka.sasl_oauthbearer_scope",
        "sasl.oauthbearer.extensions" => "kafka.sasl_oauthbearer_extensions",
        "sasl.kerberos.principal" => "kafka.sasl_kerberos_principal",
        "sasl.kerberos.keytab" => "kafka.sasl_kerberos_keytab",
        "sasl.kerberos.service.name" => "kafka.sasl_kerberos_service_name",
        "ssl.key.password" => "kafka.ssl_key_password (or SLUICE__KAFKA__SSL_KEY_PASSWORD)",
        "ssl.ca.location" | "ssl.ca.pem" => "kafka.ssl_ca_location",
        "ssl.certificate.location" | "ssl.certificate.pem" => "kafka.ssl_certificate_location",
        "ssl.key.location" | "ssl.key.pem" => "kafka.ssl_key_location",
        "ssl.keystore.location" => "kafka.ssl_keystore_location",
        "ssl.endpoint.identification.algorithm" => "kafka.ssl_endpoint_identification",
        _ => {
            return "sluice sets this property itself: its delivery guarantee depends on it (offsets are committed manually, only for rows ClickHouse acknowledged)".to_string()
        }
    };
    format!("sluice sets this property from {dedicated}; here it would silently override that setting: use {dedicated} instead")
}

/// librdkafka's range for `session.timeout.ms`; the broker narrows it further
/// (`group.min.session.timeout.ms`, 6 s, and `group.max.session.timeout.ms`, 30 min, by default).
pub(super) const SESSION_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(3600);

/// `host[:port]` entries, comma-separated, each optionally `PROTOCOL://`-prefixed, as
/// librdkafka reads `bootstrap.servers`; a port must be 1-65535 (librdkafka would wrap
/// 99999 into another port and report that one).
pub fn check_brokers(brokers: &str) -> Result<(), ConfigError> {
    for entry in brokers.split(',').map(str::trim) {
        let addr = entry.split_once("://").map_or(entry, |(_, a)| a);
        let port = match addr.rsplit_once(':') {
            // An IPv6 literal without a port: "[::1]".
            Some((host, _)) if addr.ends_with(']') && host.starts_with('[') => None,
            Some((host, port)) if !host.is_empty() => Some(port),
            Some(_) => return Err(err("kafka.brokers", format!("{entry:?} has no host"))),
            None => None,
        };
        if addr.is_empty() {
            return Err(err("kafka.brokers", "an entry of the list is empty"));
        }
        if let Some(p) = port {
            if !p.parse::<u16>().is_ok_and(|p| p > 0) {
                return Err(err(
                    "kafka.brokers",
                    format!("{entry:?}: the port must be a number from 1 to 65535"),
                ));
            }
        }
    }
    Ok(())
}

/// librdkafka takes its settings as C strings: a NUL byte would end one early (rust-rdkafka
/// refuses it with "FFI nul error", naming no setting). Secrets are not quoted.
pub(super) fn no_nul(field: &str, v: &str) -> Result<(), ConfigError> {
    if v.contains('\0') {
        return Err(err(field, "contains a NUL byte"));
    }
    Ok(())
}

pub(super) fn kafka_strings_have_no_nul(k: &RawKafka) -> Result<(), ConfigError> {
    let fields = [
        ("kafka.brokers", Some(&k.brokers)),
        ("kafka.group_id", k.group_id.as_ref()),
        ("kafka.client_id", k.client_id.as_ref()),
        ("kafka.instance_id", k.instance_id.as_ref()),
        ("kafka.sasl_username", k.sasl_username.as_ref()),
        ("kafka.sasl_password", k.sasl_password.as_ref()),
        ("kafka.ssl_key_password", k.ssl_key_password.as_ref()),
        ("kafka.ssl_ca_location", k.ssl_ca_location.as_ref()),
        (
            "kafka.ssl_certificate_location",
            k.ssl_certificate_location.as_ref(),
        ),
        ("kafka.ssl_key_location", k.ssl_key_location.as_ref()),
        (
            "kafka.ssl_keystore_location",
            k.ssl_keystore_location.as_ref(),
        ),
        (
            "kafka.ssl_keystore_password",
            k.ssl_keystore_password.as_ref(),
        ),
        (
            "kafka.ssl_truststore_location",
            k.ssl_truststore_location.as_ref(),
        ),
        (
            "kafka.ssl_truststore_password",
            k.ssl_truststore_password.as_ref(),
        ),
        ("kafka.sasl_password_file", k.sasl_password_file.as_ref()),
        (
            "kafka.sasl_oauthbearer_token_endpoint_url",
            k.sasl_oauthbearer_token_endpoint_url.as_ref(),
        ),
        (
            "kafka.sasl_oauthbearer_client_id",
            k.sasl_oauthbearer_client_id.as_ref(),
        ),
        (
            "kafka.sasl_oauthbearer_client_secret",
            k.sasl_oauthbearer_client_secret.as_ref(),
        ),
        (
            "kafka.sasl_oauthbearer_client_secret_file",
            k.sasl_oauthbearer_client_secret_file.as_ref(),
        ),
        (
            "kafka.sasl_oauthbearer_scope",
            k.sasl_oauthbearer_scope.as_ref(),
        ),
        (
            "kafka.sasl_oauthbearer_extensions",
            k.sasl_oauthbearer_extensions.as_ref(),
        ),
        (
            "kafka.sasl_kerberos_principal",
            k.sasl_kerberos_principal.as_ref(),
        ),
        (
            "kafka.sasl_kerberos_keytab",
            k.sasl_kerberos_keytab.as_ref(),
        ),
        (
            "kafka.sasl_kerberos_service_name",
            k.sasl_kerberos_service_name.as_ref(),
        ),
    ];
    for (field, v) in fields {
        if let Some(v) = v {
            no_nul(field, v)?;
        }
    }
    for (key, value) in &k.properties {
        no_nul(&format!("kafka.properties.{}", key.escape_debug()), key)?;
        no_nul(&format!("kafka.properties.{}", key.escape_debug()), value)?;
    }
    Ok(())
}

/// PLAIN and SCRAM: a user name and a password, both required.
pub(super) fn password_sasl(
    k: &RawKafka,
    mechanism: String,
    password: Option<Secret>,
) -> Result<SaslConfig, ConfigError> {
    let username = k.sasl_username.as_deref().ok_or_else(|| {
        err(
            "kafka.sasl_username",
            "required when security_protocol uses SASL",
        )
    })?;
    let password = password.ok_or_else(|| {
        err(
            "kafka.sasl_password",
            "required when security_protocol uses SASL (or sasl_password_file)",
        )
    })?;
    Ok(SaslConfig {
        mechanism,
        credentials: SaslCredentials::Password {
            username: non_empty("kafka.sasl_username", username)?,
            password,
        },
    })
}

/// GSSAPI: a keytab must be a readable file and comes with its principal; without one the
/// ticket cache is used, its principal by default. Checked here, not when librdkafka's
/// `kinit` first fails after sluice has started.
pub(super) fn kerberos(k: &RawKafka) -> Result<Kerberos, ConfigError> {
    let principal = match &k.sasl_kerberos_principal {
        Some(p) => {
            let p = non_empty("kafka.sasl_kerberos_principal", p)?;
            // librdkafka pastes it into a shell command line (its kinit command).
            if !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "@/._-".contains(c))
            {
                return Err(err(
                    "kafka.sasl_kerberos_principal",
                    format!("{p:?}: a principal is name[/instance]@REALM, of letters, digits and . _ - only"),
                ));
            }
            Some(p)
        }
        None => None,
    };
    let keytab = match &k.sasl_kerberos_keytab {
        Some(path) => {
            let path = non_empty("kafka.sasl_kerberos_keytab", path)?;
            // librdkafka pastes it into its kinit command line, in double quotes.
            if path.contains(['"', '$', '`', '\\']) {
                return Err(err(
                    "kafka.sasl_kerberos_keytab",
                    format!("{path:?}: a keytab path must not contain \" $ ` or \\ (it goes into librdkafka's kinit command line)"),
                ));
            }
            if let Err(e) = std::fs::File::open(&path) {
                return Err(err(
                    "kafka.sasl_kerberos_keytab",
                    format!("cannot read {path}: {e}"),
                ));
            }
            if principal.is_none() {
                return Err(err(
                    "kafka.sasl_kerberos_principal",
                    "required with kafka.sasl_kerberos_keytab: the principal whose keys the keytab holds",
                ));
            }
            Some(std::path::PathBuf::from(path))
        }
        None => None,
    };
    let service_name = match &k.sasl_kerberos_service_name {
        Some(s) => non_empty("kafka.sasl_kerberos_service_name", s)?,
        None => "kafka".to_string(),
    };
    Ok(Kerberos {
        principal,
        keytab,
        service_name,
    })
}

/// OAUTHBEARER: the issuer's token endpoint, the client id and its secret are required; the
/// extensions are checked as librdkafka reads them (it would refuse them only when it first
/// asks for a token, after sluice had started).
pub(super) fn oidc_client(
    k: &RawKafka,
    client_secret: Option<Secret>,
) -> Result<OidcClient, ConfigError> {
    let extensions = match &k.sasl_oauthbearer_extensions {
        Some(e) => Some(sasl_extensions(e)?),
        None => None,
    };
    Ok(OidcClient {
        extensions,
        ..client_credentials(
            OidcFields {
                prefix: "kafka.sasl_oauthbearer_",
                url_name: "token_endpoint_url",
                url: &k.sasl_oauthbearer_token_endpoint_url,
                client_id: &k.sasl_oauthbearer_client_id,
                scope: &k.sasl_oauthbearer_scope,
                required_with: "required with sasl_mechanism = \"OAUTHBEARER\"",
            },
            client_secret,
        )?
    })
}

/// Where an OIDC client's settings stand: `<prefix><url_name>`, `<prefix>client_id`,
/// `<prefix>client_secret`, `<prefix>scope`.
pub(super) struct OidcFields<'a> {
    pub(super) prefix: &'a str,
    pub(super) url_name: &'a str,
    pub(super) url: &'a Option<String>,
    pub(super) client_id: &'a Option<String>,
    pub(super) scope: &'a Option<String>,
    /// Why a missing one is required.
    pub(super) required_with: &'a str,
}

/// An OIDC client for the client-credentials grant, its token endpoint, id and secret
/// required (no extensions), wherever its settings stand.
pub(super) fn client_credentials(
    f: OidcFields<'_>,
    client_secret: Option<Secret>,
) -> Result<OidcClient, ConfigError> {
    let field = |name: &str| format!("{}{name}", f.prefix);
    let required = |name: &str, v: &Option<String>| -> Result<String, ConfigError> {
        let v = v
            .as_deref()
            .ok_or_else(|| err(field(name), f.required_with))?;
        non_empty(&field(name), v)
    };
    let url = required(f.url_name, f.url)?;
    let token_endpoint_url = http_url(
        &field(f.url_name),
        &url,
        &format!("{} and {}", field("client_id"), field("client_secret")),
    )?;
    let client_id = required("client_id", f.client_id)?;
    let (section, setting) = field("client_secret")
        .split_once('.')
        .map(|(s, n)| (s.to_ascii_uppercase(), n.to_string()))
        .unwrap_or_default();
    let client_secret = client_secret.filter(|s| !s.is_empty()).ok_or_else(|| {
        err(
            field("client_secret"),
            format!(
                "{} (or {setting}_file, or the environment variable SLUICE__{section}__{})",
                f.required_with,
                setting.to_ascii_uppercase()
            ),
        )
    })?;
    let scope = match f.scope {
        Some(s) => Some(non_empty(&field("scope"), s)?),
        None => None,
    };
    Ok(OidcClient {
        token_endpoint_url,
        client_id,
        client_secret,
        scope,
        extensions: None,
    })
}

/// "key=value,key=value", as RFC 7628 3.1 allows them: keys of letters only, not "auth"
/// (the token's own key), values of printable ASCII without the separator.
pub(super) fn sasl_extensions(text: &str) -> Result<String, ConfigError> {
    const FIELD: &str = "kafka.sasl_oauthbearer_extensions";
    let text = non_empty(FIELD, text)?;
    for pair in text.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| err(FIELD, format!("{pair:?} is not key=value")))?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(err(
                FIELD,
                format!("key {key:?}: an extension key is letters only"),
            ));
        }
        if key == "auth" {
            return Err(err(
                FIELD,
                "\"auth\" is the token's own key, not an extension",
            ));
        }
        if !value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) || b == b' ')
        {
            return Err(err(
                FIELD,
                format!("the value of {key:?} has a character outside printable ASCII"),
            ));
        }
    }
    Ok(text)
}

pub(super) fn path(v: &Option<String>) -> Option<PathBuf> {
    v.as_ref()
        .filter(|s| !s.trim().is_empty())
        .map(PathBuf::from)
}

pub(super) fn validate_kafka(
    k: &RawKafka,
    read_file: FileReader<'_>,
) -> Result<KafkaConfig, ConfigError> {
    kafka_strings_have_no_nul(k)?;
    let brokers = non_empty("kafka.brokers", &k.brokers)?;
    check_brokers(&brokers)?;
    let group_id = match &k.group_id {
        Some(g) => non_empty("kafka.group_id", g)?,
        None => "sluice".to_string(),
    };
    let auto_offset_reset = match k.auto_offset_reset.as_deref().unwrap_or("earliest") {
        v @ ("earliest" | "latest") => v.to_string(),
        other => {
            return Err(err(
                "kafka.auto_offset_reset",
                format!("{other:?} is not one of \"earliest\", \"latest\""),
            ))
        }
    };
    let session_timeout = match &k.session_timeout {
        Some(s) => parse_duration("kafka.session_timeout", s)?,
        None => Duration::from_secs(45),
    };
    if !SESSION_TIMEOUT_RANGE.contains(&session_timeout) {
        return Err(err(
            "kafka.session_timeout",
            "must be between 1ms and 1h (librdkafka's range; brokers allow 6s-30m by default)",
        ));
    }
    let security_protocol = match k
        .security_protocol
        .as_deref()
        .unwrap_or("PLAINTEXT")
        .to_ascii_uppercase()
        .as_str()
    {
        "PLAINTEXT" => SecurityProtocol::Plaintext,
        "SSL" => SecurityProtocol::Ssl,
        "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
        "SASL_SSL" => SecurityProtocol::SaslSsl,
        other => {
            return Err(err(
                "kafka.security_protocol",
                format!("{other:?} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
            ))
        }
    };
    let sasl_password = secret(
        "kafka.sasl_password",
        &k.sasl_password,
        &k.sasl_password_file,
        read_file,
    )?;
    let client_secret = secret(
        "kafka.sasl_oauthbearer_client_secret",
        &k.sasl_oauthbearer_client_secret,
        &k.sasl_oauthbearer_client_secret_file,
        read_file,
    )?;
    let oauth_given = k.sasl_oauthbearer_token_endpoint_url.is_some()
        || k.sasl_oauthbearer_client_id.is_some()
        || client_secret.is_some()
        || k.sasl_oauthbearer_scope.is_some()
        || k.sasl_oauthbearer_extensions.is_some();
    let kerberos_given = k.sasl_kerberos_principal.is_some()
        || k.sasl_kerberos_keytab.is_some()
        || k.sasl_kerberos_service_name.is_some();
    let sasl = if security_protocol.uses_sasl() {
        let mechanism = k
            .sasl_mechanism
            .as_deref()
            .unwrap_or("PLAIN")
            .to_ascii_uppercase();
        if !matches!(
            mechanism.as_str(),
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" | "OAUTHBEARER" | "GSSAPI"
        ) {
            return Err(err(
                "kafka.sasl_mechanism",
                format!(
                    "{mechanism:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, GSSAPI"
                ),
            ));
        }
        if kerberos_given && mechanism != "GSSAPI" {
            return Err(err(
                "kafka.sasl_mechanism",
                format!("sasl_kerberos_* settings are given, but sasl_mechanism is {mechanism:?}, not \"GSSAPI\""),
            ));
        }
        if mechanism == "GSSAPI" {
            if k.sasl_username.is_some() || sasl_password.is_some() || oauth_given {
                return Err(err(
                    "kafka.sasl_username",
                    "GSSAPI authenticates as a Kerberos principal (kafka.sasl_kerberos_principal and kafka.sasl_kerberos_keytab), not with a user name and password or an OIDC client",
                ));
            }
            Some(SaslConfig {
                mechanism,
                credentials: SaslCredentials::Kerberos(kerberos(k)?),
            })
        } else if mechanism == "OAUTHBEARER" {
            if k.sasl_username.is_some() || sasl_password.is_some() {
                return Err(err(
                    "kafka.sasl_username",
                    "OAUTHBEARER authenticates with a token from the OIDC issuer (kafka.sasl_oauthbearer_client_id and its secret), not with a user name and password",
                ));
            }
            Some(SaslConfig {
                mechanism,
                credentials: SaslCredentials::Oidc(oidc_client(k, client_secret)?),
            })
        } else {
            if oauth_given {
                return Err(err(
                    "kafka.sasl_mechanism",
                    format!("sasl_oauthbearer_* settings are given, but sasl_mechanism is {mechanism:?}, not \"OAUTHBEARER\""),
                ));
            }
            Some(password_sasl(k, mechanism, sasl_password)?)
        }
    } else {
        if k.sasl_mechanism.is_some()
            || k.sasl_username.is_some()
            || sasl_password.is_some()
            || oauth_given
            || kerberos_given
        {
            return Err(err(
                "kafka.security_protocol",
                "SASL settings are given but security_protocol is not SASL_PLAINTEXT or SASL_SSL",
            ));
        }
        None
    };
    let tls = TlsFiles {
        ca: path(&k.ssl_ca_location),
        cert: path(&k.ssl_certificate_location),
        key: path(&k.ssl_key_location),
        keystore: path(&k.ssl_keystore_location),
    };
    let truststore = path(&k.ssl_truststore_location);
    if (tls.ca.is_some() || tls.cert.is_some() || tls.keystore.is_some() || truststore.is_some())
        && !security_protocol.uses_tls()
    {
        return Err(err(
            "kafka.security_protocol",
            "TLS files are given but security_protocol is not SSL or SASL_SSL",
        ));
    }
    let fetch_setting = k.fetch.as_deref().unwrap_or("auto");
    if !matches!(fetch_setting, "auto" | "sluice" | "librdkafka") {
        return Err(err(
            "kafka.fetch",
            format!("{fetch_setting:?} is not one of \"auto\", \"sluice\", \"librdkafka\""),
        ));
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(err(
            "kafka.ssl_key_location",
            "a client certificate needs its key, and a key its certificate",
        ));
    }
    if tls.keystore.is_some() && tls.cert.is_some() {
        return Err(err(
            "kafka.ssl_keystore_location",
            "a keystore holds the client certificate and key: give it, or ssl_certificate_location and ssl_key_location, not both",
        ));
    }
    if k.ssl_keystore_password.is_some() && tls.keystore.is_none() {
        return Err(err(
            "kafka.ssl_keystore_password",
            "set, but there is no ssl_keystore_location for it to open",
        ));
    }
    if truststore.is_some() && tls.ca.is_some() {
        return Err(err(
            "kafka.ssl_truststore_location",
            "a truststore holds the CA certificates: give it, or ssl_ca_location, not both",
        ));
    }
    if k.ssl_truststore_password.is_some() && truststore.is_none() {
        return Err(err(
            "kafka.ssl_truststore_password",
            "set, but there is no ssl_truststore_location for it to open",
        ));
    }
    for key in k.properties.keys() {
        if PROTECTED_KAFKA_PROPERTIES.contains(&key.as_str()) {
            return Err(err(
                format!("kafka.properties.{key:?}"),
                protected_property_reason(key),
            ));
        }
        if key.contains("password") || key.contains("secret") {
            // The passthrough is plain text (printed in debug output); secrets are not taken.
            return Err(err(
                format!("kafka.properties.{key:?}"),
                "a secret is not accepted in the passthrough (it is not redacted); for TLS client authentication use a PEM certificate and key (kafka.ssl_certificate_location, kafka.ssl_key_location, kafka.ssl_key_password) or a PKCS#12 keystore (kafka.ssl_keystore_location, kafka.ssl_keystore_password)",
            ));
        }
    }
    let fetch = match (
        fetch_setting,
        own_fetch_refusal(&k.properties),
    ) {
        ("auto" | "sluice", None) => FetchPath::Sluice,
        ("sluice", Some(why)) => {
            return Err(err(
                "kafka.fetch",
                format!("\"sluice\" cannot fetch over this connection: {why} (with \"auto\", librdkafka fetches)"),
            ))
        }
        _ => FetchPath::Librdkafka,
    };
    let stores = open_java_stores(k, &tls, truststore)?;
    Ok(KafkaConfig {
        brokers,
        group_id,
        client_id: k.client_id.clone().unwrap_or_else(|| "sluice".to_string()),
        instance_id: match &k.instance_id {
            Some(i) => Some(non_empty("kafka.instance_id", i)?),
            None => None,
        },
        auto_offset_reset,
        session_timeout,
        security_protocol,
        sasl,
        tls,
        ssl_key_password: k.ssl_key_password.clone().map(Secret::new),
        ssl_keystore_password: k.ssl_keystore_password.clone().map(Secret::new),
        stores,
        ssl_endpoint_identification: k.ssl_endpoint_identification.unwrap_or(true),
        properties: k.properties.clone(),
        fetch,
    })
}
