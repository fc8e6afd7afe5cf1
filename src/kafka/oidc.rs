//! OIDC tokens for the own fetch path's SASL/OAUTHBEARER (`kafka/secure.rs`) and for the schema
//! registry's bearer authentication (`registry.rs`), fetched as librdkafka's OIDC client
//! fetches them for the consumer: the client-credentials grant
//! (RFC 6749 4.4) at the issuer's token endpoint, the client id and secret in HTTP Basic
//! authentication, the `scope` if one is configured; the token's lifetime from its `exp`
//! claim (from `expires_in` when it is not a JWT).
//!
//! Guarantees: a token is reused until 80 % of its lifetime has passed (librdkafka renews at
//! the same point), so every connection the fetch thread opens carries a token with at least a
//! fifth of its life left, and the broker's session (at most the token's remaining life, KIP-368)
//! is renewed by a new connection before it ends (`wire.rs`). Neither the client secret nor a
//! token ever appears in an error: they are [`Secret`]s, and the issuer's answer is quoted only
//! when it is an error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;

use crate::config::OidcClient;
use crate::secret::Secret;

/// The issuer's answer is small; a larger one is refused before it is read whole.
const MAX_ANSWER: usize = 1 << 20;

/// Tokens of one OIDC client, fetched on demand and reused while they are fresh.
#[derive(Clone)]
pub struct Tokens {
    client: OidcClient,
    http: reqwest::Client,
    /// Where [`Tokens::current`] fetches from a thread that is not async (the fetch thread).
    runtime: Option<tokio::runtime::Handle>,
    cached: Arc<Mutex<Option<Token>>>,
}

#[derive(Clone)]
struct Token {
    value: Secret,
    renew_at: Instant,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("client_id", &self.client.client_id)
            .field("token_endpoint_url", &self.client.token_endpoint_url)
            .finish()
    }
}

impl Tokens {
    /// `tls` verifies the token endpoint (the system's CA store, as librdkafka's libcurl
    /// reads it). The tokens are fetched on `runtime` from the calling (non-async) thread.
    pub fn new(
        client: &OidcClient,
        tls: rustls::ClientConfig,
        runtime: tokio::runtime::Handle,
    ) -> Result<Tokens, String> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .map_err(|e| format!("the OIDC client: {e}"))?;
        Ok(Tokens {
            client: client.clone(),
            http,
            runtime: Some(runtime),
            cached: Arc::new(Mutex::new(None)),
        })
    }

    /// Tokens fetched through `http` (its TLS roots check the token endpoint), from async
    /// code only ([`Tokens::token`]).
    pub fn over(client: &OidcClient, http: reqwest::Client) -> Tokens {
        Tokens {
            client: client.clone(),
            http,
            runtime: None,
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// A token for a new connection: the cached one until 80 % of its lifetime has passed,
    /// else a new one from the issuer (blocking, at most `timeout`). Called from the fetch
    /// thread (or a blocking task), never from an async task.
    pub fn current(&self, timeout: Duration) -> Result<Secret, String> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or("OIDC tokens fetched from a blocking thread need a Tokio runtime")?;
        runtime.block_on(self.token(timeout))
    }

    /// [`Tokens::current`] for async callers. Two callers that find no fresh token at once
    /// may both ask the issuer; the later answer is kept.
    pub async fn token(&self, timeout: Duration) -> Result<Secret, String> {
        let fresh = self
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.value.clone());
        if let Some(value) = fresh {
            return Ok(value);
        }
        let fetched = tokio::time::timeout(timeout, self.fetch())
            .await
            .map_err(|_| {
                format!(
                    "no answer from the OIDC token endpoint {} within {timeout:?}",
                    self.client.token_endpoint_url
                )
            })??;
        let value = fetched.value.clone();
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(fetched);
        Ok(value)
    }

    /// Drops the cached token: the next caller fetches a new one (the one cached was refused
    /// before its time).
    pub fn forget(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Tokens that hand out `token` for an hour, fetching nothing (unit tests).
    #[cfg(test)]
    pub(crate) fn fixed(token: &str, runtime: tokio::runtime::Handle) -> Tokens {
        Tokens {
            client: OidcClient {
                token_endpoint_url: "http://127.0.0.1:9/token".into(),
                client_id: "c".into(),
                client_secret: Secret::new("s"),
                scope: None,
                extensions: None,
            },
            http: reqwest::Client::new(),
            runtime: Some(runtime),
            cached: Arc::new(Mutex::new(Some(Token {
                value: Secret::new(token),
                renew_at: Instant::now() + Duration::from_secs(3600),
            }))),
        }
    }

    async fn fetch(&self) -> Result<Token, String> {
        let c = &self.client;
        let at = |e: &dyn std::fmt::Display| {
            c.client_secret.scrub(&format!(
                "OIDC token endpoint {}: {e}",
                c.token_endpoint_url
            ))
        };
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &c.scope {
            form.push(("scope", scope.as_str()));
        }
        let asked = Instant::now();
        let mut answer = self
            .http
            .post(&c.token_endpoint_url)
            .basic_auth(&c.client_id, Some(c.client_secret.expose()))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| at(&e))?;
        let status = answer.status();
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(|e| at(&e))? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(at(&format!("an answer of more than {MAX_ANSWER} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(at(&format!("{status}: {}", text.trim())));
        }
        let (value, lifetime) = read_answer(&body, SystemTime::now()).map_err(|e| at(&e))?;
        Ok(Token {
            value,
            // At 80 % of its life, as librdkafka renews (saturating: a lifetime of centuries
            // is simply never renewed).
            renew_at: asked
                .checked_add(lifetime.mul_f64(0.8))
                .unwrap_or_else(|| asked + Duration::from_secs(365 * 24 * 3600)),
        })
    }
}

/// The access token and its remaining lifetime (at `now`) from the issuer's JSON answer. The
/// lifetime is the JWT's `exp` (what librdkafka and the broker go by), else `expires_in`; a
/// token with neither, or already expired, is refused. The error never holds the token.
fn read_answer(body: &[u8], now: SystemTime) -> Result<(Secret, Duration), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON token answer ({e})"))?;
    let token = v
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or("the answer has no access_token")?;
    let now_s = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970")?
        .as_secs_f64();
    let lifetime = match jwt_exp(token) {
        Some(exp) => exp - now_s,
        None => v
            .get("expires_in")
            .and_then(|e| e.as_f64())
            .ok_or("the token is not a JWT with an exp claim and the answer has no expires_in")?,
    };
    if !lifetime.is_finite() || lifetime <= 0.0 {
        return Err("the issuer answered with a token that has already expired".into());
    }
    Ok((
        Secret::new(token),
        Duration::try_from_secs_f64(lifetime).unwrap_or(Duration::MAX),
    ))
}

/// The `exp` claim (seconds since 1970) of a JWT's payload, if `token` is one.
fn jwt_exp(token: &str) -> Option<f64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_f64()
}

/// The SASL/OAUTHBEARER client's initial response (RFC 7628 3.1, as Kafka reads it): the GS2
/// header, the bearer token, then the extensions, each `key=value`, separated by 0x01.
pub fn initial_response(token: &Secret, extensions: Option<&str>) -> Vec<u8> {
    let mut m = Vec::with_capacity(token.expose().len() + 32);
    m.extend_from_slice(b"n,,\x01auth=Bearer ");
    m.extend_from_slice(token.expose().as_bytes());
    m.push(1);
    for pair in extensions.into_iter().flat_map(|e| e.split(',')) {
        m.extend_from_slice(pair.as_bytes());
        m.push(1);
    }
    m.push(1);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b(r#"{"alg":"RS256"}"#), b(claims))
    }

    #[test]
    fn the_lifetime_comes_from_exp_else_expires_in() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t = jwt(r#"{"sub":"x","exp":1000020}"#);
        let body = format!(r#"{{"access_token":"{t}","expires_in":300}}"#);
        let (token, life) = read_answer(body.as_bytes(), now).unwrap();
        assert_eq!(token.expose(), t);
        assert_eq!(life, Duration::from_secs(20), "exp wins over expires_in");
        let (_, life) = read_answer(br#"{"access_token":"opaque","expires_in":60}"#, now).unwrap();
        assert_eq!(life, Duration::from_secs(60));
        for (body, why) in [
            (r#"{"access_token":"opaque"}"#.to_string(), "no expires_in"),
            (r#"{"expires_in":60}"#.to_string(), "no access_token"),
            ("<html>".to_string(), "not a JSON"),
            (
                format!(r#"{{"access_token":"{}"}}"#, jwt(r#"{"exp":999990}"#)),
                "already expired",
            ),
        ] {
            let e = read_answer(body.as_bytes(), now).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
            assert!(!e.contains("999990") || why == "already expired");
        }
    }

    #[test]
    fn the_initial_response_is_what_kafka_reads() {
        let m = initial_response(&Secret::new("tok"), Some("logicalCluster=lkc-1,pool=p"));
        assert_eq!(
            m,
            b"n,,\x01auth=Bearer tok\x01logicalCluster=lkc-1\x01pool=p\x01\x01".to_vec()
        );
        assert_eq!(
            initial_response(&Secret::new("tok"), None),
            b"n,,\x01auth=Bearer tok\x01\x01".to_vec()
        );
    }
}
