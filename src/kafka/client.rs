//! librdkafka client configuration: one place that turns [`KafkaConfig`] into the properties
//! of a consumer, a producer or an admin client, security included, so that the pipeline,
//! the dead-letter producer and every CLI tool connect the same way.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;

use crate::config::{KafkaConfig, SaslCredentials};
use crate::kafka::java_stores;

/// Properties shared by every client: brokers, identity, security, and the user's passthrough.
pub fn base_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    c.set("client.id", &k.client_id);
    c.set("security.protocol", k.security_protocol.as_librdkafka());
    if let Some(sasl) = &k.sasl {
        c.set("sasl.mechanism", &sasl.mechanism);
        match &sasl.credentials {
            SaslCredentials::Password { username, password } => {
                c.set("sasl.username", username);
                c.set("sasl.password", password.expose());
            }
            SaslCredentials::Oidc(o) => {
                // librdkafka's own OIDC client (built with libcurl, Cargo.toml) fetches the
                // token before the first connection and again at 80 % of its lifetime, on its
                // background thread, for every client alike; with each new token it
                // authenticates its open connections again (KIP-368).
                c.set("sasl.oauthbearer.method", "oidc");
                c.set("sasl.oauthbearer.token.endpoint.url", &o.token_endpoint_url);
                c.set("sasl.oauthbearer.client.id", &o.client_id);
                c.set("sasl.oauthbearer.client.secret", o.client_secret.expose());
                if let Some(scope) = &o.scope {
                    c.set("sasl.oauthbearer.scope", scope);
                }
                if let Some(ext) = &o.extensions {
                    c.set("sasl.oauthbearer.extensions", ext);
                }
            }
            SaslCredentials::Kerberos(krb) => {
                // Cyrus SASL's GSSAPI plugin (librdkafka built with the system's libsasl2,
                // Cargo.toml) asks the Kerberos library for a ticket to
                // `<service_name>/<broker host>`; with a keytab librdkafka's kinit command
                // logs in before the first connection and again every minute.
                c.set("sasl.kerberos.service.name", &krb.service_name);
                if let Some(p) = &krb.principal {
                    c.set("sasl.kerberos.principal", p);
                }
                match &krb.keytab {
                    Some(keytab) => {
                        c.set("sasl.kerberos.keytab", keytab.to_string_lossy());
                    }
                    // No keytab: the ticket cache is used as it is; librdkafka's kinit, which
                    // needs a keytab, is not run.
                    None => {
                        c.set("sasl.kerberos.min.time.before.relogin", "0");
                    }
                }
            }
        }
    }
    if k.security_protocol.uses_tls() {
        if let Some(ca) = &k.tls.ca {
            c.set("ssl.ca.location", ca.to_string_lossy());
        }
        if let Some(cert) = &k.tls.cert {
            c.set("ssl.certificate.location", cert.to_string_lossy());
        }
        if let Some(key) = &k.tls.key {
            c.set("ssl.key.location", key.to_string_lossy());
        }
        if let (Some(pw), Some(_)) = (&k.ssl_key_password, &k.tls.key) {
            c.set("ssl.key.password", pw.expose());
        }
        // librdkafka reads PEM and PKCS#12 but not JKS: a JKS keystore's certificate chain and
        // key, and a truststore's certificates, were read when the config was validated and go
        // in as PEM text (librdkafka wipes `ssl.key.pem` from its copy once loaded).
        match (&k.stores.identity, &k.tls.keystore) {
            (Some(id), _) => {
                c.set("ssl.certificate.pem", id.chain_pem());
                c.set("ssl.key.pem", id.key_pem.expose());
            }
            (None, Some(keystore)) => {
                c.set("ssl.keystore.location", keystore.to_string_lossy());
                if let Some(pw) = &k.ssl_keystore_password {
                    c.set("ssl.keystore.password", pw.expose());
                }
            }
            (None, None) => {}
        }
        if let Some((_, certs)) = &k.stores.trusted {
            c.set("ssl.ca.pem", java_stores::certificates_pem(certs));
        }
        c.set(
            "ssl.endpoint.identification.algorithm",
            if k.ssl_endpoint_identification {
                "https"
            } else {
                "none"
            },
        );
    }
    // librdkafka logs through the `log` crate facade at this level; connection failures are
    // reported to us as errors as well, so warnings are enough here. Who asks librdkafka for
    // its debug contexts (`properties = { debug = "security,broker" }`) gets them, at the
    // tracing level `debug` (RUST_LOG=librdkafka=debug). librdkafka redacts sasl.password and
    // ssl.key.password in its own configuration dumps.
    c.set_log_level(if k.properties.contains_key("debug") {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    });
    if !k.properties.contains_key("reconnect.backoff.ms")
        && !k.properties.contains_key("reconnect.backoff.max.ms")
    {
        // After the bootstrap connection, librdkafka waits half of this (at least 11 ms)
        // before it connects to a broker it learned of (`sparse.connections`), and a new
        // client's first metadata request and its group join each waited that out: with the
        // default 100 ms, start-up to assignment took ~125 ms, with 10 ms ~45 ms (a tenth of a
        // 1M-message narrow run). Reconnects after a failure still back off exponentially up
        // to `reconnect.backoff.max.ms` (10 s).
        c.set("reconnect.backoff.ms", "10");
    }
    for (key, value) in &k.properties {
        c.set(key, value);
    }
    c
}

/// How the pipeline fetches, where the user's `properties` (already in `c`) set nothing else;
/// `consume --count-only` fetches the same way.
pub fn fetch_defaults(c: &mut ClientConfig) {
    if c.get("fetch.queue.backoff.ms").is_none() {
        // With a bounded prefetch queue (full while the lanes are behind), librdkafka waits
        // this long before fetching again once it has room: the default 1 s starved the lanes
        // (bench/e2e, measured when partitions were still paused while their lane inserted:
        // 6.5 s -> 3.7 s per million rows with 10 ms, same CPU per row).
        c.set("fetch.queue.backoff.ms", "10");
    }
    if c.get("fetch.wait.max.ms").is_none() {
        // A partition resumed (its lane caught up) joins only the next fetch request, and
        // while the other partitions have nothing new the broker holds the outstanding one
        // for up to this long: with librdkafka's 500 ms a backlog's last rows trickled in.
        // Costs idle fetch requests (10 per second and broker instead of 2).
        c.set("fetch.wait.max.ms", "100");
    }
    if c.get("max.partition.fetch.bytes").is_none() {
        // One partition may fill a whole fetch response (in the pipeline librdkafka caps those
        // at its 4 MiB prefetch, pipeline.rs) instead of librdkafka's 1 MiB: a backlog then
        // drains a few partitions at a time rather than all at once, so fewer lanes hold
        // batches together and each one's share of `batch_memory` is larger. 1M wide messages
        // on 8 partitions into 18.16 (with the 128 MiB batch defaults): 8 inserts of a whole
        // partition instead of 13-16, 184-186k -> 220-227k rows/s, peak RSS 172-183 -> 144-148
        // MiB; into 26.9 and narrow rows the same speed (bench/e2e, 2026-11-25).
        c.set("max.partition.fetch.bytes", "4194304");
    }
}

/// The group consumer of the pipeline: manual commits only, after ClickHouse acknowledged.
pub fn consumer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = base_config(k);
    c.set("group.id", &k.group_id);
    if let Some(id) = &k.instance_id {
        c.set("group.instance.id", id);
    }
    // Offsets are committed by the lanes, explicitly, for ranges ClickHouse has stored.
    // Auto-commit would commit what was merely fetched: the loss the peers suffer from.
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("enable.partition.eof", "false");
    c.set("auto.offset.reset", &k.auto_offset_reset);
    c.set(
        "session.timeout.ms",
        k.session_timeout.as_millis().to_string(),
    );
    // Transactional producers' aborted records must never land in ClickHouse.
    c.set("isolation.level", "read_committed");
    if !k.properties.contains_key("partition.assignment.strategy") {
        // Incremental rebalancing: a member joining or leaving moves only the partitions that
        // change owner; the others keep their lanes and in-flight batches.
        c.set("partition.assignment.strategy", "cooperative-sticky");
    }
    c
}

/// A producer that does not lose what it acknowledged: acks=all, idempotent.
pub fn reliable_producer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = base_config(k);
    c.set("acks", "all");
    c.set("enable.idempotence", "true");
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn consumer_never_auto_commits() {
        let cfg = config::from_str(
            "[kafka]\nbrokers=\"b:1\"\n[clickhouse]\nurl=\"http://c:1\"\n[[route]]\ntopic=\"t\"\ntable=\"t\"\n",
            Vec::new(),
        )
        .unwrap();
        let c = consumer_config(&cfg.kafka);
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("reconnect.backoff.ms"), Some("10"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("group.id"), Some("sluice"));
    }

    #[test]
    fn fetch_defaults_give_way_to_the_users_properties() {
        let mut c = ClientConfig::new();
        fetch_defaults(&mut c);
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("4194304"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some("100"));
        let mut c = ClientConfig::new();
        c.set("max.partition.fetch.bytes", "1048576");
        fetch_defaults(&mut c);
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("1048576"));
    }
}
