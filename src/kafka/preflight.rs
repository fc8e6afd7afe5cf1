//! Start-up preflight: one bounded metadata request with the very client settings the pipeline
//! uses, so a wrong password, an untrusted certificate or a protocol mismatch stops `sluice run`
//! and `sluice check` at once with one readable cause, instead of librdkafka retrying in the
//! background while the run waits.
//!
//! librdkafka reports why a connection failed through error events and log lines, not through
//! the failed request (that only says "transport failure" or "timed out"). [`ErrorRecorder`] is
//! a client context that keeps those reports; [`fetch_metadata`] polls them between short
//! metadata attempts and fails early when one is decisive (authentication, certificate).
//!
//! Secrets: messages are scrubbed of the SASL password and the key password before they are
//! kept or logged (librdkafka does not echo them, this is a second line of defence).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

use super::client::base_config;
use crate::config::{KafkaConfig, SaslCredentials};
use crate::secret::Secret;

/// What went wrong, coarsely: decides the headline of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// Nothing specific was reported (broker down, wrong address, timeout).
    Unreachable,
    /// The broker closed the connection at the first request or answered garbage: the client
    /// and the listener disagree on TLS or SASL.
    ProtocolMismatch,
    /// TLS failed: untrusted certificate, host name mismatch, client certificate refused.
    Tls,
    /// SASL authentication failed: wrong user, password or mechanism.
    Authentication,
}

/// A failed preflight: one readable line naming the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PreflightError {
    pub failure: Failure,
    pub message: String,
}

/// Client context that keeps librdkafka's error-level reports, scrubbed of secrets, so that a
/// failure can name its cause; it logs them at debug level only (the preflight error says it).
#[derive(Clone)]
pub struct ErrorRecorder {
    reports: Arc<Mutex<Vec<String>>>,
    secrets: Arc<Vec<Secret>>,
}

/// Reports kept at most (the first ones are the informative ones; later ones repeat).
const MAX_REPORTS: usize = 32;

impl ErrorRecorder {
    pub fn new(k: &KafkaConfig) -> Self {
        let mut secrets = Vec::new();
        if let Some(s) = k.sasl.as_ref().and_then(|s| s.secret()) {
            secrets.push(s.clone());
        }
        if let Some(p) = &k.ssl_key_password {
            secrets.push(p.clone());
        }
        if let Some(p) = &k.ssl_keystore_password {
            secrets.push(p.clone());
        }
        ErrorRecorder {
            reports: Arc::new(Mutex::new(Vec::new())),
            secrets: Arc::new(secrets),
        }
    }

    fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_string(), |t, s| s.scrub(&t))
    }

    fn record(&self, text: String) {
        let mut r = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() < MAX_REPORTS && !r.contains(&text) {
            r.push(text);
        }
    }

    /// Everything recorded so far.
    pub fn reports(&self) -> Vec<String> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for ErrorRecorder {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // Some lines start with the thread name ("[thrd:...]: "): noise in an error message.
        let text = match log_message.strip_prefix("[thrd:") {
            Some(rest) => rest.split_once("]: ").map_or(log_message, |(_, m)| m),
            None => log_message,
        };
        let msg = self.scrub(text);
        match level {
            // Failures end up in the one readable preflight error: log them at debug only,
            // rather than a screenful of retries and "1/1 brokers are down".
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::debug!(target: "librdkafka", "librdkafka: {fac} {msg}");
                self.record(msg);
            }
            RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::debug!(target: "librdkafka", "librdkafka: {fac} {msg}");
                // A protocol mismatch shows only as a disconnect logged at info level
                // ("Disconnected: connection closed by peer ... in state APIVERSION_QUERY").
                if classify(&msg) > Failure::Unreachable {
                    self.record(msg);
                }
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", "librdkafka: {fac} {msg}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let msg = self.scrub(reason);
        tracing::debug!(target: "librdkafka", "librdkafka: {error}: {msg}");
        self.record(msg);
    }
}

impl ConsumerContext for ErrorRecorder {}

/// Sorts a librdkafka report into a [`Failure`] by its text (librdkafka's error codes are too
/// coarse: a refused SASL handshake and a dead broker are both "transport failures").
pub fn classify(report: &str) -> Failure {
    let r = report.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| r.contains(n));
    if has(&["request not valid in current sasl state"]) {
        // A SASL handshake sent to a listener without SASL.
        Failure::ProtocolMismatch
    } else if has(&[
        "sasl authentication",
        "authentication failed",
        "invalid credentials",
        "unsupported sasl mechanism",
        "mechanism handshake failed",
        "sasl scram",
        "oauthbearer token",
        "oidc",
        "gssapi",
        "kerberos",
        "kinit",
    ]) {
        Failure::Authentication
    } else if has(&[
        "plaintext broker listener",
        "incorrect security.protocol",
        "connecting to a ssl listener",
        "wrong version number",
        "packet length too long",
        "invalid response size",
    ]) {
        Failure::ProtocolMismatch
    } else if has(&[
        "certificate",
        "ssl handshake failed",
        "ssl alert",
        "ssl routines",
    ]) {
        Failure::Tls
    } else if r.contains("disconnected") && r.contains("in state apiversion_query") {
        // The first request of a plaintext client closed unanswered: a TLS listener.
        Failure::ProtocolMismatch
    } else {
        Failure::Unreachable
    }
}

/// The most telling report and its class.
fn best(reports: &[String]) -> Option<(Failure, &str)> {
    reports
        .iter()
        .map(|r| (classify(r), r.as_str()))
        .filter(|(f, _)| *f > Failure::Unreachable)
        .max_by_key(|(f, _)| *f)
        .or_else(|| reports.first().map(|r| (Failure::Unreachable, r.as_str())))
}

/// One readable line: what failed, what to check, and librdkafka's own words.
fn explain(k: &KafkaConfig, failure: Failure, report: Option<&str>, fallback: &str) -> String {
    let protocol = k.security_protocol.as_librdkafka().to_ascii_uppercase();
    let headline = match failure {
        Failure::Authentication => match k.sasl.as_ref().map(|s| (s, &s.credentials)) {
            Some((s, SaslCredentials::Password { username, .. })) => format!(
                "SASL authentication failed for user {username:?} with mechanism {}: check kafka.sasl_username, kafka.sasl_password and kafka.sasl_mechanism",
                s.mechanism
            ),
            Some((_, SaslCredentials::Oidc(o))) => format!(
                "SASL OAUTHBEARER authentication failed for OIDC client {:?} (token endpoint {}): check kafka.sasl_oauthbearer_client_id, kafka.sasl_oauthbearer_client_secret, kafka.sasl_oauthbearer_scope and that the broker accepts this issuer's tokens",
                o.client_id, o.token_endpoint_url
            ),
            Some((_, SaslCredentials::Kerberos(krb))) => format!(
                "SASL GSSAPI (Kerberos) authentication failed for {} with service name {:?}: check kafka.sasl_kerberos_principal and kafka.sasl_kerberos_keytab (or the ticket cache, KRB5CCNAME), the realm's KDC in krb5.conf (KRB5_CONFIG), and that the brokers' principals are {}/<broker host>@REALM",
                k.sasl.as_ref().map_or(String::new(), |s| s.principal()),
                krb.service_name,
                krb.service_name
            ),
            None => "SASL authentication failed".to_string(),
        },
        Failure::Tls => {
            let lower = report.unwrap_or("").to_ascii_lowercase();
            if lower.contains("certificate verify failed") || lower.contains("unable to get") {
                "TLS: certificate verify failed: the broker's certificate is not signed by a CA in kafka.ssl_ca_location (or its host name does not match the broker address; see kafka.ssl_endpoint_identification)".to_string()
            } else if lower.contains("certificate required")
                || lower.contains("bad certificate")
                || lower.contains("unknown ca")
            {
                "TLS: the broker refused the client certificate (mTLS): check kafka.ssl_certificate_location and kafka.ssl_key_location (a certificate signed by a CA the broker trusts)".to_string()
            } else {
                format!("TLS handshake with the broker failed (security_protocol {protocol})")
            }
        }
        Failure::ProtocolMismatch => {
            let lower = report.unwrap_or("").to_ascii_lowercase();
            if lower.contains("sasl state") {
                format!("the listener does not accept SASL, but security_protocol is {protocol}: check kafka.brokers and kafka.security_protocol")
            } else if k.security_protocol.uses_tls() {
                format!("the listener does not speak TLS (a PLAINTEXT listener?), but security_protocol is {protocol}: check kafka.brokers and kafka.security_protocol")
            } else {
                format!("the broker closed the connection at the first request: the listener expects TLS (security_protocol SSL or SASL_SSL?), but security_protocol is {protocol}: check kafka.brokers and kafka.security_protocol")
            }
        }
        Failure::Unreachable => format!("no answer from {} with security_protocol {protocol}", k.brokers),
    };
    match report {
        Some(r) => format!("{headline} (librdkafka: {r})"),
        None => format!("{headline} ({fallback})"),
    }
}

/// Topic name -> partition count, for every topic the broker knows (without error).
pub type TopicPartitions = HashMap<String, usize>;

/// Fetches the cluster metadata with the settings of `k` within `timeout`, failing early with a
/// readable cause when librdkafka reports an authentication or TLS failure. Blocking: call it
/// off the async threads.
pub fn fetch_metadata(
    k: &KafkaConfig,
    timeout: Duration,
) -> Result<TopicPartitions, PreflightError> {
    let recorder = ErrorRecorder::new(k);
    let mut config = base_config(k);
    if !k.properties.contains_key("debug") {
        // Some causes are only logged at info level (a disconnect in APIVERSION_QUERY).
        config.set_log_level(RDKafkaLogLevel::Info);
    }
    let consumer: BaseConsumer<ErrorRecorder> = config
        .create_with_context(recorder.clone())
        .map_err(|e| PreflightError {
            failure: Failure::Unreachable,
            message: format!(
                "cannot create a Kafka client: {}",
                recorder.scrub(&e.to_string())
            ),
        })?;
    let deadline = Instant::now() + timeout;
    let mut last_error;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = left
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(10));
        match consumer.fetch_metadata(None, attempt) {
            Ok(md) => {
                if k.properties.contains_key("debug") {
                    // Hand the queued log lines of librdkafka's debug to the log.
                    drain(&consumer, Duration::from_millis(20));
                }
                let found = md
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| (t.name().to_string(), t.partitions().len()))
                    .collect();
                drop(md);
                // Closing a librdkafka client waits for its threads (~50 ms); nothing waits on
                // this one, so start-up does not either.
                let _ = std::thread::Builder::new()
                    .name("preflight-close".into())
                    .spawn(move || drop(consumer));
                return Ok(found);
            }
            Err(e) => last_error = recorder.scrub(&e.to_string()),
        }
        // Serve the queued log lines and error events: the recorder sees them here.
        drain(&consumer, Duration::from_millis(50));
        let reports = recorder.reports();
        let found = best(&reports);
        let decisive = matches!(
            found,
            Some((
                Failure::Authentication | Failure::Tls | Failure::ProtocolMismatch,
                _
            ))
        );
        if decisive || Instant::now() >= deadline {
            let (failure, report) = match found {
                Some((f, r)) => (f, Some(r)),
                None => (Failure::Unreachable, None),
            };
            return Err(PreflightError {
                failure,
                message: explain(
                    k,
                    failure,
                    report,
                    &format!("{last_error} after {}s", timeout.as_secs()),
                ),
            });
        }
    }
}

/// Lists the cluster's topics again and again (the route patterns' refresh) through one
/// client, connected and authenticated once: a new client each time would open new
/// connections and, with OAUTHBEARER, ask the issuer for a token every `table_refresh`.
pub struct TopicLister {
    /// Always `Some` until dropped (see the `Drop` impl).
    consumer: Option<BaseConsumer<ErrorRecorder>>,
    recorder: ErrorRecorder,
}

impl Drop for TopicLister {
    fn drop(&mut self) {
        // Closing a librdkafka client waits for its threads (~50 ms); the pass that drops this
        // does not wait for it.
        if let Some(consumer) = self.consumer.take() {
            let _ = std::thread::Builder::new()
                .name("topic-lister-close".into())
                .spawn(move || drop(consumer));
        }
    }
}

impl TopicLister {
    pub fn new(k: &KafkaConfig) -> Result<TopicLister, String> {
        let recorder = ErrorRecorder::new(k);
        let consumer = base_config(k)
            .create_with_context(recorder.clone())
            .map_err(|e| {
                format!(
                    "cannot create a Kafka client: {}",
                    recorder.scrub(&e.to_string())
                )
            })?;
        Ok(TopicLister {
            consumer: Some(consumer),
            recorder,
        })
    }

    /// Every topic the broker knows (without error) and its partition count. Blocking: call
    /// it off the async threads.
    pub fn list(&self, timeout: Duration) -> Result<TopicPartitions, String> {
        let Some(consumer) = &self.consumer else {
            return Err("the topic lister is closed".into());
        };
        // Serves what librdkafka queued meanwhile (a token refresh among them).
        let _ = consumer.poll(Duration::ZERO);
        let md = consumer
            .fetch_metadata(None, timeout)
            .map_err(|e| self.recorder.scrub(&e.to_string()))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect())
    }
}

/// Serves the client's queued events (log lines, errors) for `time`. A poll that consumed an
/// event returns `None` like an empty one, so this polls for the whole time.
fn drain(consumer: &BaseConsumer<ErrorRecorder>, time: Duration) {
    let until = Instant::now() + time;
    while Instant::now() < until {
        let _ = consumer.poll(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_librdkafka_reports() {
        assert_eq!(
            classify("sasl_ssl://127.0.0.1:19094/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 5ms in state AUTH_REQ)"),
            Failure::Authentication
        );
        assert_eq!(
            classify("ssl://127.0.0.1:19095/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 3ms in state SSL_HANDSHAKE)"),
            Failure::Tls
        );
        assert_eq!(
            classify("127.0.0.1:19094/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?) or broker version is < 0.10 (see api.version.request) (after 2ms in state APIVERSION_QUERY)"),
            Failure::ProtocolMismatch
        );
        assert_eq!(classify("1/1 brokers are down"), Failure::Unreachable);
    }

    #[test]
    fn the_most_telling_report_wins() {
        let reports = vec![
            "1/1 brokers are down".to_string(),
            "SASL authentication error: Authentication failed".to_string(),
        ];
        assert_eq!(best(&reports).map(|b| b.0), Some(Failure::Authentication));
    }

    #[test]
    fn messages_never_carry_the_password() {
        let cfg = crate::config::from_str(
            "[kafka]\nbrokers=\"b:1\"\nsecurity_protocol=\"SASL_SSL\"\nsasl_mechanism=\"PLAIN\"\nsasl_username=\"u\"\nsasl_password=\"pw-visible-9\"\n[clickhouse]\nurl=\"http://c:1\"\n[[route]]\ntopic=\"t\"\ntable=\"t\"\n",
            Vec::new(),
        )
        .unwrap();
        let r = ErrorRecorder::new(&cfg.kafka);
        r.error(
            KafkaError::Global(rdkafka::types::RDKafkaErrorCode::Authentication),
            "echo pw-visible-9",
        );
        assert_eq!(r.reports(), vec!["echo ***".to_string()]);
        let m = explain(&cfg.kafka, Failure::Authentication, Some("x"), "");
        assert!(
            m.contains("SASL authentication failed for user \"u\""),
            "{m}"
        );
        assert!(!m.contains("pw-visible-9"));
    }
}
