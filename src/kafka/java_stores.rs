//! Java key and trust stores, read as a Java Kafka client reads them, so that a Kafka Connect
//! or Java client configuration (`ssl.keystore.location`, `ssl.truststore.location`) works
//! with its files as they are.
//!
//! Two formats: PKCS#12 (keytool's default since Java 9; opened with OpenSSL) and the older
//! JKS (`0xFEEDFEED`; read here, since neither librdkafka nor OpenSSL reads it). JCEKS and
//! anything else are refused with the keytool command that converts them.
//!
//! What is guaranteed, as Java guarantees it:
//! - a JKS store opened with its password passes its integrity check (a keyed SHA-1 over
//!   the whole file), so a damaged file or a wrong password is an error, never a partial
//!   read; a truststore without a password is read unchecked, as Java reads it;
//! - a JKS private key is decrypted with the key password (the store password unless one is
//!   given) and checked against the digest stored with it;
//! - a truststore's trusted certificates are those Java's trust manager takes: every
//!   certificate entry, and the first certificate of every key entry.
//!
//! No error carries a password, and the private key is held as a [`Secret`] (its PEM text),
//! which never prints itself.

use openssl::sha::Sha1;

use crate::secret::Secret;

/// The formats a Java store comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFormat {
    Pkcs12,
    Jks,
}

const JKS_MAGIC: u32 = 0xFEED_FEED;
const JCEKS_MAGIC: u32 = 0xCECE_CECE;
const PRIVATE_KEY_ENTRY: u32 = 1;
const TRUSTED_CERT_ENTRY: u32 = 2;
/// What keytool's JKS provider calls its key protection (a SHA-1 keystream):
/// 1.3.6.1.4.1.42.2.17.1.1, DER-encoded.
const JKS_KEY_PROTECTOR_OID: &[u8] = &[0x2B, 0x06, 0x01, 0x04, 0x01, 0x2A, 0x02, 0x11, 0x01, 0x01];
/// The integrity check's fixed salt, as the JDK's `JavaKeyStore` writes it.
const INTEGRITY_SALT: &[u8] = b"Mighty Aphrodite";
const SHA1_LEN: usize = 20;

/// The format of the store `bytes`, or why it is none sluice reads.
pub fn format_of(bytes: &[u8]) -> Result<StoreFormat, String> {
    match bytes.get(..4).map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]])) {
        Some(JKS_MAGIC) => Ok(StoreFormat::Jks),
        Some(JCEKS_MAGIC) => Err(
            "a JCEKS store, which sluice does not read: convert it with `keytool -importkeystore -srckeystore <it> -srcstoretype JCEKS -destkeystore <new>.p12 -deststoretype PKCS12`".into(),
        ),
        _ if bytes.first() == Some(&0x30) => Ok(StoreFormat::Pkcs12),
        _ if bytes.starts_with(b"-----BEGIN") => Err(
            "a PEM file, not a keystore: give PEM files as ssl_ca_location, ssl_certificate_location and ssl_key_location".into(),
        ),
        _ => Err("neither a JKS nor a PKCS#12 store".into()),
    }
}

/// A client certificate chain (leaf first, DER) and its private key (PKCS#8, as PEM text).
#[derive(Clone)]
pub struct Identity {
    pub chain: Vec<Vec<u8>>,
    pub key_pem: Secret,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("certificates", &self.chain.len())
            .field("key", &self.key_pem)
            .finish()
    }
}

impl Identity {
    /// The chain as PEM text, leaf first (librdkafka's `ssl.certificate.pem`).
    pub fn chain_pem(&self) -> String {
        certificates_pem(&self.chain)
    }
}

/// DER certificates as one PEM text.
pub fn certificates_pem(certs: &[Vec<u8>]) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for der in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// The one private key entry of the JKS keystore `bytes`, opened with `store_password`
/// (checked against the store's integrity digest) and decrypted with `key_password`, or
/// with the store password when that is `None` (keytool's default: one password for both).
pub fn jks_identity(
    bytes: &[u8],
    store_password: &Secret,
    key_password: Option<&Secret>,
) -> Result<Identity, String> {
    let entries = read_jks(bytes, Some(store_password))?;
    let mut keys = entries.into_iter().filter_map(|e| match e {
        Entry::Key {
            alias,
            protected,
            chain,
        } => Some((alias, protected, chain)),
        Entry::Trusted { .. } => None,
    });
    let Some((alias, protected, chain)) = keys.next() else {
        return Err(
            "it holds no private key entry (a truststore? give it as ssl_truststore_location)"
                .into(),
        );
    };
    let others: Vec<String> = keys.map(|(a, _, _)| a).collect();
    if !others.is_empty() {
        return Err(format!(
            "it holds {} private keys (aliases {alias:?}, {}); sluice presents one: export that one with `keytool -importkeystore -srcalias <alias>`",
            others.len() + 1,
            others
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if chain.is_empty() {
        return Err(format!("its key entry {alias:?} has no certificate"));
    }
    let password = key_password.unwrap_or(store_password);
    let pkcs8 =
        unprotect_key(&protected, password).map_err(|e| format!("key entry {alias:?}: {e}"))?;
    let key = openssl::pkey::PKey::private_key_from_pkcs8(&pkcs8)
        .map_err(|e| format!("key entry {alias:?}: not a PKCS#8 private key ({e})"))?;
    identity(chain, &key).map_err(|e| format!("key entry {alias:?}: {e}"))
}

/// An [`Identity`] of `chain` (DER, leaf first) and `key`.
fn identity(
    chain: Vec<Vec<u8>>,
    key: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
) -> Result<Identity, String> {
    let pem = key.private_key_to_pem_pkcs8().map_err(|e| e.to_string())?;
    let pem = String::from_utf8(pem).map_err(|_| "its key's PEM is not text".to_string())?;
    Ok(Identity {
        chain,
        key_pem: Secret::new(pem),
    })
}

/// The client identity of the keystore at `path`, JKS or PKCS#12 (chain leaf first, key as
/// PKCS#8 PEM): for the HTTPS clients, which take PEM. A PKCS#12 store is opened with
/// `store_password` ("" without one), as OpenSSL opens it; its key has no password of its own.
pub fn read_keystore(
    path: &std::path::Path,
    store_password: Option<&Secret>,
    key_password: Option<&Secret>,
) -> Result<Identity, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    match format_of(&bytes)? {
        StoreFormat::Jks => {
            let Some(password) = store_password else {
                return Err("a JKS keystore is opened with its password: set it".into());
            };
            jks_identity(&bytes, password, key_password)
        }
        StoreFormat::Pkcs12 if key_password.is_some() => Err(
            "a PKCS#12 keystore's key is opened with the store password; a key password is for a JKS keystore's key".into(),
        ),
        StoreFormat::Pkcs12 => {
            let store = openssl::pkcs12::Pkcs12::from_der(&bytes).map_err(|e| e.to_string())?;
            let parsed = store
                .parse2(store_password.map_or("", |p| p.expose()))
                .map_err(|e| format!("cannot open it with its password ({e})"))?;
            let (Some(cert), Some(key)) = (parsed.cert, parsed.pkey) else {
                return Err("it holds no certificate with its private key".into());
            };
            let mut chain = vec![cert.to_der().map_err(|e| e.to_string())?];
            for ca in parsed.ca.iter().flatten() {
                chain.push(ca.to_der().map_err(|e| e.to_string())?);
            }
            identity(chain, &key)
        }
    }
}

/// [`trusted_certificates`] of the truststore at `path`.
pub fn read_truststore(
    path: &std::path::Path,
    password: Option<&Secret>,
) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    trusted_certificates(&bytes, password)
}

/// The certificates a Java trust manager would trust from the store `bytes` (JKS or
/// PKCS#12): every certificate entry, and the first certificate of every key entry. A JKS
/// store is checked against its integrity digest when a password is given; a PKCS#12 store is
/// opened with the password ("" without one), as OpenSSL opens it.
pub fn trusted_certificates(
    bytes: &[u8],
    password: Option<&Secret>,
) -> Result<Vec<Vec<u8>>, String> {
    let certs = match format_of(bytes)? {
        StoreFormat::Jks => read_jks(bytes, password)?
            .into_iter()
            .filter_map(|e| match e {
                Entry::Trusted { cert } => Some(cert),
                Entry::Key { chain, .. } => chain.into_iter().next(),
            })
            .collect(),
        StoreFormat::Pkcs12 => {
            let store = openssl::pkcs12::Pkcs12::from_der(bytes).map_err(|e| e.to_string())?;
            let parsed = store
                .parse2(password.map_or("", |p| p.expose()))
                .map_err(|e| format!("cannot open it with its password ({e})"))?;
            let mut certs = Vec::new();
            if let Some(cert) = &parsed.cert {
                certs.push(cert.to_der().map_err(|e| e.to_string())?);
            }
            for cert in parsed.ca.iter().flatten() {
                certs.push(cert.to_der().map_err(|e| e.to_string())?);
            }
            certs
        }
    };
    if certs.is_empty() {
        return Err("it holds no certificate".into());
    }
    Ok(certs)
}

/// One entry of a JKS store.
enum Entry {
    Key {
        alias: String,
        /// The key as the JDK's `KeyProtector` stored it (an `EncryptedPrivateKeyInfo`).
        protected: Vec<u8>,
        chain: Vec<Vec<u8>>,
    },
    Trusted {
        cert: Vec<u8>,
    },
}

/// The entries of the JKS store `bytes`, after its integrity check when `password` is given.
fn read_jks(bytes: &[u8], password: Option<&Secret>) -> Result<Vec<Entry>, String> {
    let Some(body_len) = bytes.len().checked_sub(SHA1_LEN) else {
        return Err("a JKS store cut short".into());
    };
    if let Some(password) = password {
        let mut h = Sha1::new();
        h.update(&java_password_bytes(password));
        h.update(INTEGRITY_SALT);
        h.update(&bytes[..body_len]);
        if h.finish()[..] != bytes[body_len..] {
            return Err("its integrity check fails: a wrong password, or a damaged file".into());
        }
    }
    let mut r = Reader {
        bytes: &bytes[..body_len],
        at: 0,
    };
    if r.u32()? != JKS_MAGIC {
        return Err("not a JKS store".into());
    }
    let version = r.u32()?;
    if !matches!(version, 1 | 2) {
        return Err(format!("JKS version {version}, which sluice does not read"));
    }
    let count = r.u32()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let tag = r.u32()?;
        let alias = r.utf()?;
        let _created_ms = r.u64()?;
        match tag {
            PRIVATE_KEY_ENTRY => {
                let protected = r.sized()?.to_vec();
                let n = r.u32()?;
                let mut chain = Vec::new();
                for _ in 0..n {
                    chain.push(r.certificate(version)?);
                }
                entries.push(Entry::Key {
                    alias,
                    protected,
                    chain,
                });
            }
            TRUSTED_CERT_ENTRY => {
                let cert = r.certificate(version)?;
                entries.push(Entry::Trusted { cert });
            }
            other => return Err(format!("entry {alias:?} of unknown kind {other}")),
        }
    }
    if r.at != r.bytes.len() {
        return Err("bytes after its last entry".into());
    }
    Ok(entries)
}

/// A Java password as the JKS format hashes it: its UTF-16 code units, big-endian.
fn java_password_bytes(password: &Secret) -> Vec<u8> {
    password
        .expose()
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect()
}

/// The PKCS#8 key inside a JKS key entry's `EncryptedPrivateKeyInfo`: the JDK's
/// `KeyProtector` XORs the key with a keystream of chained SHA-1 digests of the password and
/// a 20-byte salt, and stores SHA-1(password, key) after it to check the result.
fn unprotect_key(protected: &[u8], password: &Secret) -> Result<Vec<u8>, String> {
    let (algorithm, data) = encrypted_private_key_info(protected)?;
    if algorithm != JKS_KEY_PROTECTOR_OID {
        return Err("its key is protected by an algorithm other than JKS's own (a JCEKS key?): convert the store to PKCS#12 with keytool -importkeystore".into());
    }
    if data.len() < 2 * SHA1_LEN {
        return Err("its protected key is cut short".into());
    }
    let password = java_password_bytes(password);
    let (salt, rest) = data.split_at(SHA1_LEN);
    let (encrypted, check) = rest.split_at(rest.len() - SHA1_LEN);
    let salt: [u8; SHA1_LEN] = salt.try_into().map_err(|_| "salt")?;
    let key = keystream_xor(&password, salt, encrypted);
    let mut h = Sha1::new();
    h.update(&password);
    h.update(&key);
    if h.finish()[..] != *check {
        return Err("cannot decrypt its key: a wrong key password (kafka.ssl_key_password, or the store password when none is given)".into());
    }
    Ok(key)
}

/// `data` XORed with the JDK `KeyProtector`'s keystream: SHA-1 digests chained from `salt`,
/// each of the password and the one before (so the same call encrypts and decrypts).
fn keystream_xor(password: &[u8], salt: [u8; SHA1_LEN], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut digest = salt;
    for block in data.chunks(SHA1_LEN) {
        let mut h = Sha1::new();
        h.update(password);
        h.update(&digest);
        digest = h.finish();
        out.extend(block.iter().zip(digest).map(|(b, d)| b ^ d));
    }
    out
}

/// The algorithm OID and the encrypted bytes of a DER `EncryptedPrivateKeyInfo`:
/// SEQUENCE { SEQUENCE { OID, parameters }, OCTET STRING }.
fn encrypted_private_key_info(der: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let bad = || "its key entry is not an EncryptedPrivateKeyInfo".to_string();
    let (outer, _) = der_take(der, 0x30).ok_or_else(bad)?;
    let (algorithm, rest) = der_take(outer, 0x30).ok_or_else(bad)?;
    let (oid, _) = der_take(algorithm, 0x06).ok_or_else(bad)?;
    let (data, _) = der_take(rest, 0x04).ok_or_else(bad)?;
    Ok((oid, data))
}

/// The contents of the DER element with `tag` at the start of `der`, and what follows it.
fn der_take(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = der.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A big-endian reader over a JKS store, every read bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err("a JKS store cut short".into());
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    /// Java's `writeUTF`: a u16 length, then modified UTF-8 (read lossily: it only names).
    fn utf(&mut self) -> Result<String, String> {
        let b = self.take(2)?;
        let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    fn sized(&mut self) -> Result<&'a [u8], String> {
        let n = usize::try_from(self.u32()?).map_err(|_| "a JKS length out of range")?;
        self.take(n)
    }

    /// A certificate: in version 2 its type ("X.509", the only one sluice takes) first.
    fn certificate(&mut self, version: u32) -> Result<Vec<u8>, String> {
        if version == 2 {
            let kind = self.utf()?;
            if kind != "X.509" {
                return Err(format!("a certificate of type {kind:?}, not X.509"));
            }
        }
        Ok(self.sized()?.to_vec())
    }
}

/// JKS stores written as the JDK writes them, for the reader to be checked against the
/// format independently of keytool (tests/security.rs uses keytool's own files).
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// One entry to write: its alias, the key and its password for a key entry, and its
    /// certificates.
    pub(crate) type Written<'a> = (&'a str, Option<(&'a [u8], &'a str)>, Vec<Vec<u8>>);

    /// A store of `entries`, sealed with `store_pw`.
    pub(crate) fn write_jks(entries: &[Written<'_>], store_pw: &str) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(JKS_MAGIC.to_be_bytes());
        out.extend(2u32.to_be_bytes());
        out.extend((entries.len() as u32).to_be_bytes());
        let utf = |out: &mut Vec<u8>, s: &str| {
            out.extend((s.len() as u16).to_be_bytes());
            out.extend(s.as_bytes());
        };
        for (alias, key, certs) in entries {
            match key {
                Some((pkcs8, key_pw)) => {
                    out.extend(PRIVATE_KEY_ENTRY.to_be_bytes());
                    utf(&mut out, alias);
                    out.extend(0u64.to_be_bytes());
                    let protected = protect_key(pkcs8, &Secret::new(*key_pw));
                    out.extend((protected.len() as u32).to_be_bytes());
                    out.extend(&protected);
                    out.extend((certs.len() as u32).to_be_bytes());
                    for c in certs {
                        utf(&mut out, "X.509");
                        out.extend((c.len() as u32).to_be_bytes());
                        out.extend(c);
                    }
                }
                None => {
                    out.extend(TRUSTED_CERT_ENTRY.to_be_bytes());
                    utf(&mut out, alias);
                    out.extend(0u64.to_be_bytes());
                    utf(&mut out, "X.509");
                    out.extend((certs[0].len() as u32).to_be_bytes());
                    out.extend(&certs[0]);
                }
            }
        }
        let mut h = Sha1::new();
        h.update(&java_password_bytes(&Secret::new(store_pw)));
        h.update(INTEGRITY_SALT);
        h.update(&out);
        out.extend(h.finish());
        out
    }

    fn protect_key(pkcs8: &[u8], password: &Secret) -> Vec<u8> {
        let pw = java_password_bytes(password);
        let salt = [7u8; SHA1_LEN];
        let mut data = salt.to_vec();
        data.extend(keystream_xor(&pw, salt, pkcs8));
        let mut h = Sha1::new();
        h.update(&pw);
        h.update(pkcs8);
        data.extend(h.finish());
        let mut alg = vec![0x06, JKS_KEY_PROTECTOR_OID.len() as u8];
        alg.extend(JKS_KEY_PROTECTOR_OID);
        alg.extend([0x05, 0x00]);
        let mut info = der(0x30, &alg);
        info.extend(der(0x04, &data));
        der(0x30, &info)
    }

    fn der(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if body.len() < 0x80 {
            out.push(body.len() as u8);
        } else {
            out.push(0x82);
            out.extend((body.len() as u16).to_be_bytes());
        }
        out.extend(body);
        out
    }

    /// A fresh P-256 key (PKCS#8) and its self-signed certificate (DER) named `cn`.
    pub(crate) fn key_and_cert(cn: &str) -> (Vec<u8>, Vec<u8>) {
        use openssl::{ec, nid::Nid, pkey::PKey, x509};
        let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = x509::X509Builder::new().unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        (
            key.private_key_to_pkcs8().unwrap(),
            b.build().to_der().unwrap(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn a_jks_keystore_gives_its_chain_and_the_key_its_password_decrypts() {
        let (key, cert) = key_and_cert("client");
        let (_, ca) = key_and_cert("ca");
        let store = write_jks(
            &[(
                "client",
                Some((&key, "key-Pw-22")),
                vec![cert.clone(), ca.clone()],
            )],
            "store-Pw-11",
        );
        assert_eq!(format_of(&store), Ok(StoreFormat::Jks));
        let id = jks_identity(
            &store,
            &Secret::new("store-Pw-11"),
            Some(&Secret::new("key-Pw-22")),
        )
        .unwrap();
        assert_eq!(id.chain, vec![cert.clone(), ca]);
        let pem =
            openssl::pkey::PKey::private_key_from_pem(id.key_pem.expose().as_bytes()).unwrap();
        assert_eq!(pem.private_key_to_pkcs8().unwrap(), key);
        assert!(id.chain_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(!format!("{id:?}").contains("PRIVATE"), "{id:?}");

        // keytool's default: the store password protects the key too.
        let same = write_jks(
            &[("client", Some((&key, "one-Pw")), vec![cert.clone()])],
            "one-Pw",
        );
        assert!(jks_identity(&same, &Secret::new("one-Pw"), None).is_ok());

        let wrong_store = jks_identity(&store, &Secret::new("nope-Pw-1"), None).unwrap_err();
        assert!(
            wrong_store.contains("integrity check fails"),
            "{wrong_store}"
        );
        let wrong_key = jks_identity(
            &store,
            &Secret::new("store-Pw-11"),
            Some(&Secret::new("nope-Pw-2")),
        )
        .unwrap_err();
        assert!(wrong_key.contains("wrong key password"), "{wrong_key}");
        for e in [&wrong_store, &wrong_key] {
            assert!(!e.contains("Pw-"), "a password in {e}");
        }
        let mut damaged = store.clone();
        damaged[40] ^= 1;
        assert!(jks_identity(&damaged, &Secret::new("store-Pw-11"), None).is_err());
    }

    #[test]
    fn a_jks_truststore_trusts_its_certificates_and_the_first_of_each_key_entry() {
        let (key, leaf) = key_and_cert("leaf");
        let (_, ca1) = key_and_cert("ca1");
        let (_, ca2) = key_and_cert("ca2");
        let store = write_jks(
            &[
                ("ca1", None, vec![ca1.clone()]),
                ("k", Some((&key, "pw-k")), vec![leaf.clone(), ca2.clone()]),
                ("ca2", None, vec![ca2.clone()]),
            ],
            "trust-Pw",
        );
        let want = vec![ca1, leaf, ca2];
        assert_eq!(
            trusted_certificates(&store, Some(&Secret::new("trust-Pw"))).unwrap(),
            want
        );
        // Without a password Java reads the certificates unchecked.
        assert_eq!(trusted_certificates(&store, None).unwrap(), want);
        assert!(trusted_certificates(&store, Some(&Secret::new("other"))).is_err());
        let keyless = jks_identity(
            &write_jks(&[("ca", None, vec![want[0].clone()])], "p"),
            &Secret::new("p"),
            None,
        )
        .unwrap_err();
        assert!(keyless.contains("no private key"), "{keyless}");
    }

    #[test]
    fn keystores_of_both_formats_give_an_identity_the_https_clients_take() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = key_and_cert("client");
        let pkey = openssl::pkey::PKey::private_key_from_pkcs8(&key).unwrap();
        let x509 = openssl::x509::X509::from_der(&cert).unwrap();
        let p12 = openssl::pkcs12::Pkcs12::builder()
            .name("client")
            .pkey(&pkey)
            .cert(&x509)
            .build2("p12-Pw")
            .unwrap()
            .to_der()
            .unwrap();
        let jks = write_jks(
            &[("client", Some((&key, "k-Pw")), vec![cert.clone()])],
            "s-Pw",
        );
        let (p12_path, jks_path) = (dir.path().join("c.p12"), dir.path().join("c.jks"));
        std::fs::write(&p12_path, p12).unwrap();
        std::fs::write(&jks_path, jks).unwrap();
        for id in [
            read_keystore(&p12_path, Some(&Secret::new("p12-Pw")), None).unwrap(),
            read_keystore(
                &jks_path,
                Some(&Secret::new("s-Pw")),
                Some(&Secret::new("k-Pw")),
            )
            .unwrap(),
        ] {
            assert_eq!(id.chain, vec![cert.clone()]);
            let pem = format!("{}{}", id.chain_pem(), id.key_pem.expose());
            assert!(reqwest::Identity::from_pem(pem.as_bytes()).is_ok());
        }
        let e = read_keystore(&p12_path, Some(&Secret::new("bad-Q7")), None).unwrap_err();
        assert!(e.contains("cannot open it") && !e.contains("Q7"), "{e}");
        let e = read_keystore(&jks_path, None, None).unwrap_err();
        assert!(e.contains("password"), "{e}");
        let e = read_keystore(
            &p12_path,
            Some(&Secret::new("p12-Pw")),
            Some(&Secret::new("k")),
        )
        .unwrap_err();
        assert!(e.contains("JKS"), "{e}");
        assert!(read_keystore(&dir.path().join("none"), None, None)
            .unwrap_err()
            .contains("cannot read"));
    }

    #[test]
    fn other_stores_are_named_and_a_cut_store_is_an_error_not_a_panic() {
        assert!(format_of(&[0xCE, 0xCE, 0xCE, 0xCE, 0])
            .unwrap_err()
            .contains("JCEKS"));
        assert!(format_of(b"-----BEGIN CERTIFICATE-----")
            .unwrap_err()
            .contains("PEM"));
        assert!(format_of(b"").is_err());
        assert_eq!(format_of(&[0x30, 0x82]), Ok(StoreFormat::Pkcs12));
        let (key, cert) = key_and_cert("c");
        let store = write_jks(&[("c", Some((&key, "p")), vec![cert])], "p");
        for cut in 0..store.len() {
            let short = &store[..cut];
            // Unchecked (no password), so every prefix reaches the parser itself.
            let _ = trusted_certificates(short, None);
            let _ = jks_identity(short, &Secret::new("p"), None);
        }
        let two = {
            let (k2, c2) = key_and_cert("d");
            let (key, cert) = key_and_cert("c");
            write_jks(
                &[
                    ("c", Some((&key, "p")), vec![cert]),
                    ("d", Some((&k2, "p")), vec![c2]),
                ],
                "p",
            )
        };
        let e = jks_identity(&two, &Secret::new("p"), None).unwrap_err();
        assert!(e.contains("2 private keys") && e.contains("\"d\""), "{e}");
    }
}
