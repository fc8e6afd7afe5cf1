//! How the own fetch path secures its broker connections: TLS through rustls, and SASL
//! (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER) spoken here, GSSAPI through the Cyrus
//! SASL library librdkafka uses (`kafka/gssapi.rs`), from the same settings librdkafka is
//! given (`kafka/client.rs`), so that both paths reach the brokers the same way.
//!
//! What is checked is what librdkafka checks with those settings: the broker's certificate
//! chain against `ssl_ca_location` (a PEM file, or a directory of certificates named by
//! subject hash as OpenSSL reads it) or, without one, the system's CA store; its
//! host name or IP address unless `ssl_endpoint_identification = false`; a client
//! certificate presented when one is given (mTLS); and with SCRAM the server's signature, so
//! that a broker which does not know the password cannot pass itself off. An encrypted
//! client key (PKCS#8) is decrypted with `ssl_key_password`; a PKCS#12 keystore is opened
//! with `ssl_keystore_password` by OpenSSL, the library librdkafka opens it with; a JKS
//! keystore and a truststore were read at validation (`kafka/java_stores.rs`), and both
//! paths get the same certificates and key from them. Settings
//! this module does not reproduce exactly (`ssl.*` or `sasl.*` passthrough properties) keep
//! the fetching with librdkafka
//! (`config::validate::own_fetch_refusal`). A connection that fails here hands its partition
//! back to librdkafka like any lost connection: a difference between the two TLS stacks can
//! cost speed, never data.
//!
//! Secrets: the SASL password and the keys derived from it stay in memory; no error message
//! carries them (the broker's own error text is passed on, scrubbed of the password).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ring::pbkdf2;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct};

use crate::config::{KafkaConfig, SaslCredentials};
use crate::kafka::java_stores::{self, Identity};
use crate::kafka::oidc::{self, Tokens};
use crate::secret::Secret;

/// Kafka caps SCRAM iterations at this many (`ScramMechanism.maxIterations`); a broker asking
/// for more is refused rather than let it spend the fetch thread's time.
const MAX_SCRAM_ITERATIONS: u32 = 16_384;
const MIN_SCRAM_ITERATIONS: u32 = 4_096;

/// TLS and SASL for the own fetch path's connections (none of either on PLAINTEXT).
#[derive(Clone, Default)]
pub struct Security {
    tls: Option<Arc<ClientConfig>>,
    sasl: Option<Sasl>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|s| s.mechanism.name()))
            .finish()
    }
}

/// SASL credentials: what the config names, the password kept a [`Secret`].
#[derive(Clone)]
pub struct Sasl {
    mechanism: Mechanism,
    credentials: Credentials,
}

#[derive(Clone)]
enum Credentials {
    Password {
        username: String,
        password: Secret,
    },
    /// OAUTHBEARER: a token from the OIDC issuer for each new connection.
    Tokens {
        tokens: Tokens,
        extensions: Option<String>,
    },
    /// GSSAPI: the process's Kerberos ticket, for the brokers' `service_name`.
    Kerberos {
        service_name: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OAuthBearer,
    Gssapi,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::Gssapi => "GSSAPI",
        }
    }
}

impl Security {
    /// Reads the TLS files the config names. The caller has made sure the config is one this
    /// module speaks (`own_fetch_refusal`); the error says which file could not be used. With
    /// OAUTHBEARER the tokens are fetched on the current Tokio runtime, so this is called
    /// within one.
    pub fn new(k: &KafkaConfig) -> Result<Security, String> {
        let sasl = match k.sasl.as_ref().map(|s| (s, &s.credentials)) {
            None => None,
            Some((s, SaslCredentials::Password { username, password })) => Some(Sasl {
                mechanism: match s.mechanism.as_str() {
                    "PLAIN" => Mechanism::Plain,
                    "SCRAM-SHA-256" => Mechanism::ScramSha256,
                    "SCRAM-SHA-512" => Mechanism::ScramSha512,
                    other => return Err(format!("SASL mechanism {other} is not spoken")),
                },
                credentials: Credentials::Password {
                    username: username.clone(),
                    password: password.clone(),
                },
            }),
            Some((_, SaslCredentials::Oidc(o))) => {
                let runtime = tokio::runtime::Handle::try_current()
                    .map_err(|_| "OAUTHBEARER tokens need a Tokio runtime".to_string())?;
                let tls = ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(system_roots()?)
                .with_no_client_auth();
                Some(Sasl {
                    mechanism: Mechanism::OAuthBearer,
                    credentials: Credentials::Tokens {
                        tokens: Tokens::new(o, tls, runtime)?,
                        extensions: o.extensions.clone(),
                    },
                })
            }
            Some((_, SaslCredentials::Kerberos(k))) => Some(Sasl {
                mechanism: Mechanism::Gssapi,
                credentials: Credentials::Kerberos {
                    service_name: k.service_name.clone(),
                },
            }),
        };
        let tls = if k.security_protocol.uses_tls() {
            Some(Arc::new(tls_config(k)?))
        } else {
            None
        };
        Ok(Security { tls, sasl })
    }

    pub fn sasl(&self) -> Option<&Sasl> {
        self.sasl.as_ref()
    }

    /// `tcp` to `host` (the broker address's host part), with TLS when configured; the TLS
    /// handshake is completed here, within `timeout`.
    pub fn wrap(&self, tcp: TcpStream, host: &str, timeout: Duration) -> std::io::Result<Stream> {
        let Some(config) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| invalid(format!("broker host {host:?}: {e}")))?
            .to_owned();
        let mut conn = ClientConnection::new(config.clone(), name).map_err(invalid)?;
        let mut tcp = tcp;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
    }
}

fn invalid(e: impl ToString) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// The rustls configuration for `k`: roots, host name checking, client certificate.
fn tls_config(k: &KafkaConfig) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some((path, certs)) = &k.stores.trusted {
        // The truststore's certificates (read when the config was validated), as librdkafka
        // gets them in `ssl.ca.pem`: each is a root.
        for cert in certs {
            roots
                .add(CertificateDer::from(cert.clone()))
                .map_err(|e| format!("kafka.ssl_truststore_location {}: {e}", path.display()))?;
        }
    }
    match &k.tls.ca {
        _ if !roots.is_empty() => {}
        Some(path) if path.is_dir() => {
            // OpenSSL's CA directory (what librdkafka gets): it finds a certificate by its
            // subject hash, in files named `<8 hex digits>.<n>` (`openssl rehash`), and reads
            // no other file there; so those files, and only those, are the roots.
            let dir = std::fs::read_dir(path)
                .map_err(|e| format!("kafka.ssl_ca_location {}: {e}", path.display()))?;
            for entry in dir.flatten() {
                let name = entry.file_name();
                if !is_hash_name(&name.to_string_lossy()) {
                    continue;
                }
                // A file OpenSSL could not read either is skipped, as OpenSSL skips it.
                if let Ok(certs) = CertificateDer::pem_file_iter(entry.path()) {
                    for cert in certs.flatten() {
                        let _ = roots.add(cert);
                    }
                }
            }
            if roots.is_empty() {
                return Err(format!(
                    "kafka.ssl_ca_location {}: no certificate in files named by subject hash (openssl rehash)",
                    path.display()
                ));
            }
        }
        Some(path) => {
            let at = |e: &dyn std::fmt::Display| {
                format!("kafka.ssl_ca_location {}: {e}", path.display())
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| at(&e))? {
                roots.add(cert.map_err(|e| at(&e))?).map_err(|e| at(&e))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "kafka.ssl_ca_location {}: no certificate in it",
                    path.display()
                ));
            }
        }
        // librdkafka without ssl.ca.location reads OpenSSL's default store.
        None => roots = system_roots()?,
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if k.ssl_endpoint_identification {
        builder.with_root_certificates(roots)
    } else {
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
    };
    // A JKS keystore was read at validation; a PKCS#12 one is opened here, as librdkafka
    // opens it.
    let identity = match (&k.stores.identity, &k.tls.keystore) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(store)) => Some(keystore(store, k.ssl_keystore_password.as_ref())?),
        (None, None) => None,
    };
    if let Some(id) = identity {
        let chain = id.chain.into_iter().map(CertificateDer::from).collect();
        let key = PrivateKeyDer::from_pem_slice(id.key_pem.expose().as_bytes())
            .map_err(|e| format!("the key of the keystore: {e}"))?;
        return builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the client certificate and key of the keystore: {e}"));
    }
    match (&k.tls.cert, &k.tls.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect())
                .map_err(|e| format!("kafka.ssl_certificate_location {}: {e}", cert.display()))?;
            let key = match &k.ssl_key_password {
                Some(password) => decrypt_key(key, password)?,
                None => PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("kafka.ssl_key_location {}: {e}", key.display()))?,
            };
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the client certificate and key: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// OpenSSL's default CA store (SSL_CERT_FILE / SSL_CERT_DIR, else the system's): what
/// librdkafka reads without ssl.ca.location, and its libcurl for the OIDC token endpoint.
fn system_roots() -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // One unreadable system certificate does not make the others useless.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no CA certificate in the system store".into());
    }
    Ok(roots)
}

/// The client certificate (followed by the CA certificates the keystore carries, as librdkafka
/// sends them) and the private key of the PKCS#12 keystore at `path`, opened by OpenSSL with
/// `password` as librdkafka opens it. No error carries the password.
fn keystore(path: &std::path::Path, password: Option<&Secret>) -> Result<Identity, String> {
    java_stores::read_keystore(path, password, None).map_err(|e| {
        format!(
            "kafka.ssl_keystore_location {}: {}",
            path.display(),
            e.replace("its password", "kafka.ssl_keystore_password")
        )
    })
}

/// The client key at `path` with `ssl_key_password`: a PKCS#8 "ENCRYPTED PRIVATE KEY" (what
/// OpenSSL writes: PBES2) is decrypted; a key that is not encrypted is read as it is (as
/// librdkafka does, which then does not need the password). OpenSSL's legacy encrypted PEM
/// (`Proc-Type: 4,ENCRYPTED`) is not read here: the error says so, and librdkafka fetches.
/// No error carries the password.
fn decrypt_key(
    path: &std::path::Path,
    password: &Secret,
) -> Result<PrivateKeyDer<'static>, String> {
    let at = |e: String| format!("kafka.ssl_key_location {}: {e}", path.display());
    let pem = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
    if pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(at(
            "an encrypted key in OpenSSL's legacy PEM format is read by librdkafka only (`openssl pkcs8 -topk8` converts it to PKCS#8)".into(),
        ));
    }
    if !pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| at(e.to_string()));
    }
    let (_, doc) = pkcs8::SecretDocument::from_pem(&pem).map_err(|e| at(e.to_string()))?;
    let info =
        pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes()).map_err(|e| at(e.to_string()))?;
    let plain = info.decrypt(password.expose().as_bytes()).map_err(|e| {
        at(format!(
            "cannot decrypt it with kafka.ssl_key_password: {e}"
        ))
    })?;
    Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()))
}

/// A name OpenSSL looks certificates up by in a CA directory: 8 hex digits, a dot, a number.
fn is_hash_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((hash, n)) => {
            hash.len() == 8
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// `ssl_endpoint_identification = false`: the chain is verified as always, the name is not
/// (librdkafka's `ssl.endpoint.identification.algorithm=none`). WebPKI checks the chain
/// before the name, so a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A broker connection's byte stream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Sasl {
    pub fn mechanism(&self) -> &'static str {
        self.mechanism.name()
    }

    /// Authenticates to the broker at `host` over `round`, which sends one SaslAuthenticate
    /// token and returns the broker's answer (or its error); an OAUTHBEARER token is fetched
    /// within `timeout` if the cached one is due. The error never holds the password or a
    /// token.
    pub fn authenticate(
        &self,
        host: &str,
        timeout: Duration,
        mut round: impl FnMut(&[u8]) -> Result<Vec<u8>, String>,
    ) -> Result<(), String> {
        let (username, password) = match &self.credentials {
            Credentials::Kerberos { service_name } => {
                return super::gssapi::authenticate(service_name, host, round)
                    .map_err(|e| format!("GSSAPI as {service_name}@{host}: {e}"))
            }
            Credentials::Password { username, password } => (username, password),
            Credentials::Tokens { tokens, extensions } => {
                let token = tokens.current(timeout)?;
                let scrub = |e: String| token.scrub(&e);
                let answer =
                    round(&oidc::initial_response(&token, extensions.as_deref())).map_err(scrub)?;
                if answer.is_empty() {
                    return Ok(());
                }
                // The broker refused the token: its answer is the reason (RFC 7628 3.2.2),
                // and the exchange ends with the client's 0x01, which it answers with an error.
                // The next connection asks the issuer for a new token rather than offer this
                // one again (it may have been revoked before its time).
                tokens.forget();
                let reason = String::from_utf8_lossy(&answer).to_string();
                let last = round(b"\x01").map_err(scrub).err();
                return Err(scrub(format!(
                    "the broker refused the OIDC token: {reason}{}",
                    last.map(|e| format!(" ({e})")).unwrap_or_default()
                )));
            }
        };
        let scrub = |e: String| password.scrub(&e);
        match self.mechanism {
            Mechanism::OAuthBearer | Mechanism::Gssapi => {
                Err(format!("{} without its credentials", self.mechanism.name()))
            }
            Mechanism::Plain => {
                let mut token = Vec::with_capacity(2 + username.len() + 16);
                token.push(0);
                token.extend_from_slice(username.as_bytes());
                token.push(0);
                token.extend_from_slice(password.expose().as_bytes());
                round(&token).map_err(scrub)?;
                Ok(())
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let mut nonce = [0u8; 24];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
                    .map_err(|_| "no random bytes for the SCRAM nonce".to_string())?;
                let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
                let mut scram = Scram::new(self.mechanism, username, &nonce);
                let server_first = round(scram.client_first().as_bytes()).map_err(scrub)?;
                let client_final = scram
                    .client_final(password.expose(), &server_first)
                    .map_err(scrub)?;
                let server_final = round(client_final.as_bytes()).map_err(scrub)?;
                scram.check_server_final(&server_final).map_err(scrub)
            }
        }
    }
}

/// One SCRAM exchange (RFC 5802, as Kafka speaks it: no channel binding, no extensions).
struct Scram {
    mechanism: Mechanism,
    client_first_bare: String,
    nonce: String,
    /// The server signature the last message must carry, once the proof is sent.
    server_signature: Option<Vec<u8>>,
}

impl Scram {
    fn new(mechanism: Mechanism, username: &str, nonce: &str) -> Scram {
        // saslname: "=" and "," escaped.
        let name = username.replace('=', "=3D").replace(',', "=2C");
        Scram {
            mechanism,
            client_first_bare: format!("n={name},r={nonce}"),
            nonce: nonce.to_string(),
            server_signature: None,
        }
    }

    fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    fn algorithms(&self) -> (ring::hmac::Algorithm, ring::pbkdf2::Algorithm) {
        match self.mechanism {
            Mechanism::ScramSha512 => (ring::hmac::HMAC_SHA512, ring::pbkdf2::PBKDF2_HMAC_SHA512),
            _ => (ring::hmac::HMAC_SHA256, ring::pbkdf2::PBKDF2_HMAC_SHA256),
        }
    }

    /// The client's final message (with its proof) for the server's first message.
    fn client_final(&mut self, password: &str, server_first: &[u8]) -> Result<String, String> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| "the broker's SCRAM message is not UTF-8".to_string())?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(("m", _)) => {
                    return Err("the broker requires a SCRAM extension sluice does not know".into())
                }
                Some(("e", v)) => return Err(format!("the broker refused: {v}")),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err("the broker's SCRAM message lacks its nonce, salt or iterations".into());
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the broker's SCRAM nonce does not extend sluice's".into());
        }
        let salt = base64::engine::general_purpose::STANDARD
            .decode(salt)
            .map_err(|_| "the broker's SCRAM salt is not base64".to_string())?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|i| (MIN_SCRAM_ITERATIONS..=MAX_SCRAM_ITERATIONS).contains(i))
            .ok_or_else(|| {
                format!(
                    "the broker asks for {iterations} SCRAM iterations (Kafka allows {MIN_SCRAM_ITERATIONS}-{MAX_SCRAM_ITERATIONS})"
                )
            })?;
        let (hmac, pbkdf2) = self.algorithms();
        let len = hmac.digest_algorithm().output_len();
        let mut salted = vec![0u8; len];
        pbkdf2::derive(
            pbkdf2,
            std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let salted_key = ring::hmac::Key::new(hmac, &salted);
        let client_key = ring::hmac::sign(&salted_key, b"Client Key");
        let stored_key = ring::digest::digest(hmac.digest_algorithm(), client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = ring::hmac::sign(
            &ring::hmac::Key::new(hmac, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = ring::hmac::sign(&salted_key, b"Server Key");
        self.server_signature = Some(
            ring::hmac::sign(
                &ring::hmac::Key::new(hmac, server_key.as_ref()),
                auth_message.as_bytes(),
            )
            .as_ref()
            .to_vec(),
        );
        Ok(format!(
            "{without_proof},p={}",
            base64::engine::general_purpose::STANDARD.encode(proof)
        ))
    }

    /// The server's final message must carry the signature only a holder of the password's
    /// keys can make.
    fn check_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| "the broker's final SCRAM message is not UTF-8".to_string())?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("the broker refused: {e}"));
        }
        let Some(v) = text.split(',').find_map(|a| a.strip_prefix("v=")) else {
            return Err("the broker's final SCRAM message has no signature".into());
        };
        let got = base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|_| "the broker's SCRAM signature is not base64".to_string())?;
        match &self.server_signature {
            Some(want) if *want == got => Ok(()),
            _ => Err("the broker's SCRAM signature is wrong: it does not know the password".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keystore as `openssl pkcs12 -export` makes one (PBES2, AES-256, HMAC-SHA256): its
    /// certificate and key come out as rustls takes them; a wrong password is refused
    /// without being quoted.
    #[test]
    fn a_pkcs12_keystore_gives_its_certificate_and_key() {
        use openssl::{asn1::Asn1Time, ec, hash::MessageDigest, nid::Nid, pkey::PKey, x509};
        let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "sluice-client").unwrap();
        let name = name.build();
        let mut b = x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let der = openssl::pkcs12::Pkcs12::builder()
            .name("sluice-client")
            .pkey(&key)
            .cert(&cert)
            .build2("p12-Pw-31")
            .unwrap()
            .to_der()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.p12");
        std::fs::write(&path, der).unwrap();

        let id = keystore(&path, Some(&Secret::new("p12-Pw-31"))).unwrap();
        assert_eq!(id.chain, vec![cert.to_der().unwrap()]);
        let chain: Vec<CertificateDer<'static>> =
            id.chain.into_iter().map(CertificateDer::from).collect();
        let got = PrivateKeyDer::from_pem_slice(id.key_pem.expose().as_bytes()).unwrap();
        let PrivateKeyDer::Pkcs8(pkcs8) = &got else {
            panic!("not PKCS#8")
        };
        assert_eq!(
            pkcs8.secret_pkcs8_der(),
            key.private_key_to_pkcs8().unwrap().as_slice()
        );
        // rustls takes them as a client certificate.
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_client_auth_cert(chain, got);
        assert!(config.is_ok());

        let e = keystore(&path, Some(&Secret::new("wrong-Pw-77"))).unwrap_err();
        assert!(
            e.contains("cannot open it with kafka.ssl_keystore_password"),
            "{e}"
        );
        assert!(
            !e.contains("wrong-Pw-77") && !e.contains("p12-Pw-31"),
            "{e}"
        );
        let e = keystore(&dir.path().join("missing.p12"), None).unwrap_err();
        assert!(e.contains("kafka.ssl_keystore_location"), "{e}");
    }

    /// RFC 7677's SCRAM-SHA-256 example (user "user", password "pencil"), which fixes every
    /// derived value.
    #[test]
    fn scram_sha256_matches_the_rfc_example() {
        let mut s = Scram::new(Mechanism::ScramSha256, "user", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(s.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        // The RFC's example uses 4096 iterations, Kafka's minimum.
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = s.client_final("pencil", server_first).unwrap();
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            s.check_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Ok(())
        );
        let forged = s
            .check_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap_err();
        assert!(forged.contains("does not know the password"), "{forged}");
        assert!(s
            .check_server_final(b"e=invalid-proof")
            .unwrap_err()
            .contains("invalid-proof"));
    }

    #[test]
    fn a_scram_server_message_out_of_bounds_is_refused() {
        let mut s = Scram::new(Mechanism::ScramSha512, "a=b,c", "abc");
        assert_eq!(s.client_first(), "n,,n=a=3Db=2Cc,r=abc");
        for (msg, why) in [
            (&b"r=xyzdef,s=AAAA,i=4096"[..], "does not extend"),
            (b"r=abc,s=AAAA,i=4096", "does not extend"),
            (b"r=abcdef,s=AAAA,i=100", "iterations"),
            (b"r=abcdef,s=AAAA,i=99999999", "iterations"),
            (b"r=abcdef,s=!!,i=4096", "base64"),
            (b"r=abcdef,i=4096", "lacks"),
            (b"m=ext,r=abcdef,s=AAAA,i=4096", "extension"),
        ] {
            let e = s.client_final("pw-secret-123", msg).unwrap_err();
            assert!(e.contains(why), "{msg:?}: {e}");
            assert!(!e.contains("pw-secret-123"));
        }
    }

    #[test]
    fn a_legacy_encrypted_key_is_left_to_librdkafka_and_an_unencrypted_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("legacy.key");
        std::fs::write(
            &legacy,
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        let pw = Secret::new("key-Pw-77aa");
        let e = decrypt_key(&legacy, &pw).unwrap_err();
        assert!(
            e.contains("legacy PEM format") && e.contains("openssl pkcs8 -topk8"),
            "{e}"
        );
        // Not encrypted: read as it is, the password unused (as librdkafka does).
        let plain = dir.path().join("plain.key");
        std::fs::write(
            &plain,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGXhZ8fNt0Hq7l5RfLxZ0b3Qm3f0b8bXc5o9W8l0hL4q\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(matches!(
            decrypt_key(&plain, &pw),
            Ok(PrivateKeyDer::Pkcs8(_))
        ));
        // Damaged: the reason names the file, never the password.
        let bad = dir.path().join("bad.key");
        std::fs::write(
            &bad,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = decrypt_key(&bad, &pw).unwrap_err();
        assert!(e.contains("bad.key") && !e.contains("key-Pw-77aa"), "{e}");
    }

    #[test]
    fn ca_directories_hold_their_roots_in_files_named_by_subject_hash() {
        for name in ["9d66eef0.0", "5ad8a5d6.12", "ABCDEF01.1"] {
            assert!(is_hash_name(name), "{name}");
        }
        for name in [
            "ca.pem",
            "9d66eef0",
            "9d66eef0.",
            "9d66eef0.r0",
            "9d66eef.0",
            "9d66eeg0.0",
        ] {
            assert!(!is_hash_name(name), "{name}");
        }
    }

    #[test]
    fn oauthbearer_sends_the_token_and_reports_a_refusal_without_it() {
        // A worker thread drives the token fetch that `authenticate` blocks on.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sasl = Sasl {
            mechanism: Mechanism::OAuthBearer,
            credentials: Credentials::Tokens {
                tokens: Tokens::fixed("tok-secret-42", rt.handle().clone()),
                extensions: Some("a=b".into()),
            },
        };
        let mut sent = Vec::new();
        sasl.authenticate("127.0.0.1", Duration::from_secs(1), |t| {
            sent.push(t.to_vec());
            Ok(Vec::new())
        })
        .unwrap();
        assert_eq!(
            sent,
            vec![b"n,,\x01auth=Bearer tok-secret-42\x01a=b\x01\x01".to_vec()]
        );
        // Refused: the broker's reason, then the client's 0x01, answered with an error.
        let mut rounds = Vec::new();
        let e = sasl
            .authenticate("127.0.0.1", Duration::from_secs(1), |t| {
                rounds.push(t.to_vec());
                if rounds.len() == 1 {
                    Ok(br#"{"status":"invalid_token"}"#.to_vec())
                } else {
                    Err("error code 58: failed for tok-secret-42".into())
                }
            })
            .unwrap_err();
        assert_eq!(rounds.len(), 2);
        assert_eq!(rounds[1], b"\x01".to_vec());
        assert!(
            e.contains("invalid_token") && e.contains("error code 58"),
            "{e}"
        );
        assert!(!e.contains("tok-secret-42"), "{e}");
        // The refused token is not offered again: the next connection asks the issuer (here
        // an address where none listens) for a new one.
        let mut offered = 0;
        let e = sasl
            .authenticate("127.0.0.1", Duration::from_secs(1), |_| {
                offered += 1;
                Ok(Vec::new())
            })
            .unwrap_err();
        assert_eq!(offered, 0, "the refused token was sent again");
        assert!(e.contains("127.0.0.1:9/token"), "{e}");
    }

    #[test]
    fn plain_sends_one_token_and_scrubs_the_broker_error() {
        let sasl = Sasl {
            mechanism: Mechanism::Plain,
            credentials: Credentials::Password {
                username: "u".into(),
                password: Secret::new("pw-secret-123"),
            },
        };
        let mut sent = Vec::new();
        sasl.authenticate("127.0.0.1", Duration::from_secs(1), |t| {
            sent.push(t.to_vec());
            Ok(Vec::new())
        })
        .unwrap();
        assert_eq!(sent, vec![b"\0u\0pw-secret-123".to_vec()]);
        let e = sasl
            .authenticate("127.0.0.1", Duration::from_secs(1), |_| {
                Err("refused pw-secret-123".into())
            })
            .unwrap_err();
        assert_eq!(e, "refused ***");
    }
}
