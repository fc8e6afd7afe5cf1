//! The schema registry client: writer schemas (Avro, Protobuf, JSON Schema) by id, from any
//! Confluent-compatible registry (Confluent, Karapace, Redpanda, Apicurio's `ccompat` API).
//!
//! A schema id names one schema forever, so each id is fetched once per process and kept,
//! with the schemas it references; each route compiles it for its format
//! ([`crate::decode::registered`]). What the registry says about an id for good (not
//! found) is kept too: every message written with that id is dead-lettered with that
//! reason, without asking again. A registry that cannot
//! be reached, or answers 5xx, is not the message's fault: the lane waits and asks again
//! (see `Lane::ensure_schema`), and nothing after that message is stored or committed
//! meanwhile.
//!
//! Credentials go in a Basic `Authorization` header, or a Bearer one with a token from an OIDC
//! issuer (client credentials, `kafka/oidc.rs`: fetched before the first request, reused until
//! 80 % of its lifetime, the token endpoint checked with the registry's own TLS roots);
//! reqwest marks either header sensitive, and neither credentials nor a token reach a log
//! line or an error message. A token the registry refuses (401) before its time is up
//! (revoked, or the registry's keys rotated) is dropped and the request sent once more with
//! a new one, so a refusal outlives one request only if the issuer's new token is refused too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use serde::Deserialize;

use crate::config::SchemaRegistryConfig;
use crate::kafka::oidc::Tokens;
use crate::secret::Secret;

/// References nest at most this deep (a registry answering in a loop cannot hold us).
const MAX_REFERENCE_DEPTH: usize = 16;

/// What asking for a schema gave, when it gave no schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// For good: messages with this id cannot be read (dead-lettered with this reason).
    #[error("{0}")]
    Unusable(String),
    /// For now: the registry could not answer; ask again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The registry does not know the id. Usually for good (a wrong registry, a corrupt
    /// message), but a registry replica may not have a schema registered a moment ago yet:
    /// worth a few more questions before the message is given up ([`NOT_FOUND_RETRIES`]).
    #[error("{0}")]
    NotFound(String),
}

/// How often a lane asks again about an id the registry did not know (about 6 s in all).
pub const NOT_FOUND_RETRIES: u32 = 5;

pub struct Registry {
    http: reqwest::Client,
    url: String,
    auth: Auth,
    /// How long a token may take to come (the registry's request timeout).
    timeout: std::time::Duration,
    cache: Mutex<HashMap<u32, Result<Arc<RawSchema>, String>>>,
}

/// How each request authenticates (reqwest marks both headers sensitive).
enum Auth {
    None,
    Basic(String, Secret),
    /// A token from the OIDC issuer; Confluent Cloud's routing headers beside it.
    Bearer {
        tokens: Tokens,
        headers: Vec<(&'static str, String)>,
    },
}

/// A schema as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSchema {
    /// `AVRO` (what the registry means when it says nothing), `PROTOBUF` or `JSON`.
    pub schema_type: String,
    pub text: String,
    /// The schemas it references, each with the name it refers to it by (an Avro type's
    /// full name, a Protobuf import path), those they reference before them.
    pub references: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

#[derive(Deserialize, Clone)]
struct Reference {
    #[serde(default)]
    name: String,
    subject: String,
    version: i64,
}

impl Registry {
    pub fn new(c: &SchemaRegistryConfig) -> Result<Registry, String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.schemaregistry.v1+json, application/json"),
        );
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .default_headers(headers)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(c.request_timeout)
            .timeout(c.request_timeout);
        if let Some(ca) = &c.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("schema_registry.ca_file {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("schema_registry.ca_file {}: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        if let Some((path, certs)) = &c.trusted {
            for der in certs {
                let cert = reqwest::Certificate::from_der(der).map_err(|e| {
                    format!(
                        "schema_registry.truststore_location {}: {e}",
                        path.display()
                    )
                })?;
                b = b.add_root_certificate(cert);
            }
        }
        let http = b
            .build()
            .map_err(|e| format!("cannot build the schema registry client: {e}"))?;
        let auth = match (&c.bearer, &c.username) {
            (Some(bearer), _) => {
                let mut headers = Vec::new();
                if let Some(v) = &bearer.logical_cluster {
                    headers.push(("target-sr-cluster", v.clone()));
                }
                if let Some(v) = &bearer.identity_pool_id {
                    headers.push(("Confluent-Identity-Pool-Id", v.clone()));
                }
                Auth::Bearer {
                    // The same client: the token endpoint is trusted as the registry is.
                    tokens: Tokens::over(&bearer.oidc, http.clone()),
                    headers,
                }
            }
            (None, Some(user)) => Auth::Basic(user.clone(), c.password.clone().unwrap_or_default()),
            (None, None) => Auth::None,
        };
        Ok(Registry {
            http,
            url: c.url.clone(),
            auth,
            timeout: c.request_timeout,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// `req` with this registry's credentials. A token the issuer does not give is the
    /// registry's unavailability, not the message's fault (the lane waits and asks again).
    async fn authorized(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        Ok(match &self.auth {
            Auth::None => req,
            Auth::Basic(user, pw) => req.basic_auth(user, Some(pw.expose())),
            Auth::Bearer { tokens, headers } => {
                let token = tokens.token(self.timeout).await?;
                let mut req = req.bearer_auth(token.expose());
                for (name, value) in headers {
                    req = req.header(*name, value);
                }
                req
            }
        })
    }

    /// The registry's URL (no credentials: validation refuses them in it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks the registry for its subjects: proves it answers and accepts the credentials.
    /// Returns how many subjects it has.
    pub async fn check(&self) -> Result<usize, String> {
        let url = format!("{}/subjects", self.url);
        let body = self.get(&url).await.map_err(|e| e.to_string())?;
        let subjects: Vec<String> = serde_json::from_slice(&body)
            .map_err(|e| format!("{url}: the answer is not a list of subjects: {e}"))?;
        Ok(subjects.len())
    }

    /// Registers `schema` (of `schema_type`: AVRO, PROTOBUF) under `subject`, as a
    /// producer's serializer does, and returns its id (the same id for the same schema).
    pub async fn register(
        &self,
        subject: &str,
        schema_type: &str,
        schema: &str,
    ) -> Result<u32, String> {
        let url = format!("{}/subjects/{}/versions", self.url, encode_path(subject));
        let body = serde_json::json!({ "schemaType": schema_type, "schema": schema });
        let (status, text) = self
            .send(&url, || {
                self.http
                    .post(&url)
                    .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                    .body(body.to_string())
            })
            .await?;
        if !status.is_success() {
            return Err(format!("{url}: HTTP {status}: {}", registry_message(&text)));
        }
        #[derive(Deserialize)]
        struct Registered {
            id: u32,
        }
        serde_json::from_slice::<Registered>(&text)
            .map(|r| r.id)
            .map_err(|e| format!("{url}: the answer has no schema id: {e}"))
    }

    /// The schema of `id`, from the cache or the registry.
    pub async fn schema(&self, id: u32) -> Result<Arc<RawSchema>, FetchError> {
        if let Some(known) = self.cached(id) {
            return known.map_err(FetchError::Unusable);
        }
        let got = self.fetch(id).await;
        let kept = match got {
            Ok(c) => Ok(Arc::new(c)),
            Err(FetchError::Unusable(why)) => Err(why),
            // Not kept: the next question may find it (see `FetchError::NotFound`).
            Err(e @ (FetchError::Unavailable(_) | FetchError::NotFound(_))) => return Err(e),
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(id, kept.clone());
        }
        kept.map_err(FetchError::Unusable)
    }

    fn cached(&self, id: u32) -> Option<Result<Arc<RawSchema>, String>> {
        self.cache.lock().ok()?.get(&id).cloned()
    }

    async fn fetch(&self, id: u32) -> Result<RawSchema, FetchError> {
        let url = format!("{}/schemas/ids/{id}", self.url);
        let body = self.get(&url).await?;
        let resp: SchemaResponse = serde_json::from_slice(&body).map_err(|e| {
            FetchError::Unusable(format!("the registry's answer is not a schema: {e}"))
        })?;
        let mut references = Vec::new();
        let mut seen = Vec::new();
        self.references(&resp.references, &mut references, &mut seen, 0)
            .await?;
        Ok(RawSchema {
            schema_type: resp.schema_type.unwrap_or_else(|| "AVRO".into()),
            text: resp.schema,
            references,
        })
    }

    /// The texts of the schemas `refs` name, their own references first.
    async fn references(
        &self,
        refs: &[Reference],
        texts: &mut Vec<(String, String)>,
        seen: &mut Vec<(String, i64)>,
        depth: usize,
    ) -> Result<(), FetchError> {
        if refs.is_empty() {
            return Ok(());
        }
        if depth >= MAX_REFERENCE_DEPTH {
            return Err(FetchError::Unusable(format!(
                "schema references nest deeper than {MAX_REFERENCE_DEPTH} levels"
            )));
        }
        for r in refs {
            let key = (r.subject.clone(), r.version);
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let url = format!(
                "{}/subjects/{}/versions/{}",
                self.url,
                encode_path(&r.subject),
                r.version
            );
            let body = self.get(&url).await?;
            let resp: SchemaResponse = serde_json::from_slice(&body).map_err(|e| {
                FetchError::Unusable(format!(
                    "referenced subject {:?} version {}: not a schema: {e}",
                    r.subject, r.version
                ))
            })?;
            Box::pin(self.references(&resp.references, texts, seen, depth + 1)).await?;
            texts.push((r.name.clone(), resp.schema));
        }
        Ok(())
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let (status, body) = self
            .send(url, || self.http.get(url))
            .await
            .map_err(FetchError::Unavailable)?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let detail = registry_message(&body);
        match status.as_u16() {
            404 => Err(FetchError::NotFound(format!(
                "not found in the schema registry ({detail})"
            ))),
            401 | 403 => Err(FetchError::Unavailable(format!(
                "{url}: HTTP {status}: the registry refused the credentials ({detail})"
            ))),
            s if (400..500).contains(&s) && s != 408 && s != 429 => Err(FetchError::Unusable(
                format!("{url}: HTTP {status} ({detail})"),
            )),
            _ => Err(FetchError::Unavailable(format!(
                "{url}: HTTP {status} ({detail})"
            ))),
        }
    }
}

impl Registry {
    /// The request `build` makes (to `url`), with the credentials: the status and the body.
    /// A bearer token refused with 401 is dropped and the request sent once more with a new
    /// one; the error is why no answer came.
    async fn send(
        &self,
        url: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), String> {
        let once = || async {
            let resp = self
                .authorized(build())
                .await?
                .send()
                .await
                .map_err(|e| format!("{url}: {}", without_url(&e)))?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .map_err(|e| format!("{url}: {}", without_url(&e)))?;
            Ok::<_, String>((status, body))
        };
        let answer = once().await?;
        match &self.auth {
            Auth::Bearer { tokens, .. } if answer.0 == reqwest::StatusCode::UNAUTHORIZED => {
                tracing::warn!(registry = %self.url, "the registry refused the bearer token before its time; asking the issuer for a new one");
                tokens.forget();
                once().await
            }
            _ => Ok(answer),
        }
    }
}

/// reqwest's error text without the URL it repeats (we print the URL ourselves).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" ({u})"), "");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The registry's `{"error_code":40403,"message":"Schema 7 not found"}`, or the body's
/// first characters.
fn registry_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        error_code: Option<i64>,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error_code,
            message: Some(m),
        }) => match error_code {
            Some(c) => format!("{c}: {m}"),
            None => m,
        },
        _ => String::from_utf8_lossy(body.get(..200).unwrap_or(body)).into_owned(),
    }
}

/// A subject in a URL path: everything but unreserved characters percent-encoded.
fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
