//! The pieces of Kafka's wire protocol that sluice's own fetch path speaks: a Fetch request
//! (version 4, the oldest Kafka 4 still serves and the first with `isolation_level` and the
//! aborted-transaction lists) and its response, and on SASL listeners the authentication
//! before it (SaslHandshake v1, SaslAuthenticate v1), over TCP or TLS (`secure`).
//!
//! Nothing else is spoken here: metadata (which broker leads which partition), the group,
//! offsets and commits stay with librdkafka (`own_fetch`). A response is read whole into one
//! buffer and parsed in place: the partitions' record sets are slices of it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::secure::{Security, Stream};

/// Fetch's API key and the version spoken.
const FETCH: i16 = 1;
const FETCH_VERSION: i16 = 4;
/// SASL: the handshake names the mechanism, then its tokens go in authenticate requests
/// (v1: the answer carries the session's lifetime when the broker limits it).
const SASL_HANDSHAKE: i16 = 17;
const SASL_HANDSHAKE_VERSION: i16 = 1;
const SASL_AUTHENTICATE: i16 = 36;
const SASL_AUTHENTICATE_VERSION: i16 = 1;
/// A response larger than this is refused as garbage (the request asks for far less).
const MAX_RESPONSE: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection to broker {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("broker {addr} sent a malformed fetch response: {why}")]
    Malformed { addr: String, why: String },
    #[error("SASL authentication with broker {addr}: {why}")]
    Auth { addr: String, why: String },
}

/// One partition to fetch.
#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: i32,
}

/// Limits of a Fetch request.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub max_wait: Duration,
    pub min_bytes: i32,
    pub max_bytes: i32,
}

/// A connection to one broker.
pub struct Connection {
    addr: String,
    stream: Stream,
    client_id: String,
    correlation: i32,
    out: Vec<u8>,
    /// When the broker ends the SASL session (`connections.max.reauth.ms`): the connection
    /// is replaced before then rather than lost in the middle of a fetch.
    renew_at: Option<Instant>,
}

impl Connection {
    /// Connects to `addr` ("host:port"), with TLS and SASL as `security` says.
    pub fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        security: &Security,
    ) -> Result<Self, WireError> {
        let io = |source| WireError::Io {
            addr: addr.to_string(),
            source,
        };
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let mut last = None;
        let addrs = std::net::ToSocketAddrs::to_socket_addrs(addr).map_err(io)?;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(tcp) => {
                    tcp.set_nodelay(true).map_err(io)?;
                    let mut c = Connection {
                        addr: addr.to_string(),
                        stream: security.wrap(tcp, host, timeout).map_err(io)?,
                        client_id: client_id.to_string(),
                        correlation: 0,
                        out: Vec::with_capacity(4096),
                        renew_at: None,
                    };
                    if let Some(sasl) = security.sasl() {
                        c.authenticate(sasl, host, timeout)?;
                    }
                    return Ok(c);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(io(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
        })))
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the broker's SASL session ends soon: time to connect again.
    pub fn needs_renewal(&self) -> bool {
        self.renew_at.is_some_and(|at| Instant::now() >= at)
    }

    fn authenticate(
        &mut self,
        sasl: &super::secure::Sasl,
        host: &str,
        timeout: Duration,
    ) -> Result<(), WireError> {
        let addr = self.addr.clone();
        let auth = |why: String| WireError::Auth {
            addr: addr.clone(),
            why,
        };
        let mut body = Vec::new();
        put_str(&mut body, sasl.mechanism());
        let answer = self.request(SASL_HANDSHAKE, SASL_HANDSHAKE_VERSION, &body, timeout)?;
        let mut r = Reader { b: &answer, at: 4 };
        let code = r.i16().map_err(auth)?;
        if code != 0 {
            let mut offered = Vec::new();
            for _ in 0..r.count().map_err(auth)? {
                offered.push(r.str().map_err(auth)?.to_string());
            }
            return Err(auth(format!(
                "the broker does not take {} (error code {code}; it offers {})",
                sasl.mechanism(),
                offered.join(", ")
            )));
        }
        let mut lifetime_ms = 0i64;
        let mut failure: Option<WireError> = None;
        let result = sasl.authenticate(host, timeout, |token| {
            let mut body = Vec::with_capacity(token.len() + 4);
            body.extend_from_slice(&(token.len() as i32).to_be_bytes());
            body.extend_from_slice(token);
            let answer =
                match self.request(SASL_AUTHENTICATE, SASL_AUTHENTICATE_VERSION, &body, timeout) {
                    Ok(a) => a,
                    Err(e) => {
                        let why = e.to_string();
                        failure = Some(e);
                        return Err(why);
                    }
                };
            let mut r = Reader { b: &answer, at: 4 };
            let code = r.i16()?;
            let message = r.nullable_str()?;
            if code != 0 {
                return Err(format!(
                    "error code {code}: {}",
                    message.unwrap_or("no message")
                ));
            }
            let n = r.i32()?;
            let token = r.take(n.max(0) as usize)?.to_vec();
            lifetime_ms = r.i64()?;
            Ok(token)
        });
        if let Some(e) = failure {
            return Err(e);
        }
        result.map_err(auth)?;
        // Renewed at 80 % of the session, as librdkafka re-authenticates early too. The
        // lifetime is the broker's number: any value, however large, is taken without
        // overflow (a session too long to represent is never renewed).
        self.renew_at = renewal(Instant::now(), lifetime_ms);
        Ok(())
    }

    /// Sends one request (header v1) and returns its whole response, correlation id first.
    fn request(
        &mut self,
        api_key: i16,
        version: i16,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, WireError> {
        let correlation = self.start_request(api_key, version);
        self.out.extend_from_slice(body);
        self.send_request()?;
        let mut answer = Vec::new();
        self.read_response(correlation, &mut answer, timeout)?;
        Ok(answer)
    }

    /// Starts a request in `out`: room for its size, then the header (v1: API key, version,
    /// a new correlation id, the client id). Returns the correlation id.
    fn start_request(&mut self, api_key: i16, version: i16) -> i32 {
        self.correlation = self.correlation.wrapping_add(1);
        let b = &mut self.out;
        b.clear();
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&api_key.to_be_bytes());
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&self.correlation.to_be_bytes());
        put_str(b, &self.client_id);
        self.correlation
    }

    /// Writes the request in `out` (its size filled in) and flushes it.
    fn send_request(&mut self) -> Result<(), WireError> {
        let len = (self.out.len() - 4) as i32;
        self.out[..4].copy_from_slice(&len.to_be_bytes());
        let addr = &self.addr;
        self.stream
            .write_all(&self.out)
            .and_then(|()| self.stream.flush())
            .map_err(|source| WireError::Io {
                addr: addr.clone(),
                source,
            })
    }

    /// Sends a read_committed Fetch request for `parts`; returns its correlation id.
    pub fn send_fetch(
        &mut self,
        parts: &[FetchPartition],
        limits: FetchLimits,
    ) -> Result<i32, WireError> {
        let correlation = self.start_request(FETCH, FETCH_VERSION);
        let b = &mut self.out;
        b.extend_from_slice(&(-1i32).to_be_bytes()); // replica id: a consumer
        let wait = i32::try_from(limits.max_wait.as_millis()).unwrap_or(i32::MAX);
        b.extend_from_slice(&wait.to_be_bytes());
        b.extend_from_slice(&limits.min_bytes.to_be_bytes());
        b.extend_from_slice(&limits.max_bytes.to_be_bytes());
        b.push(1); // isolation level: read_committed
                   // Partitions grouped by topic, in the order given.
        let mut topics: Vec<(&str, Vec<&FetchPartition>)> = Vec::new();
        for p in parts {
            match topics.iter_mut().find(|(t, _)| *t == p.topic) {
                Some((_, v)) => v.push(p),
                None => topics.push((&p.topic, vec![p])),
            }
        }
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (topic, ps) in &topics {
            put_str(b, topic);
            b.extend_from_slice(&(ps.len() as i32).to_be_bytes());
            for p in ps {
                b.extend_from_slice(&p.partition.to_be_bytes());
                b.extend_from_slice(&p.offset.to_be_bytes());
                b.extend_from_slice(&p.max_bytes.to_be_bytes());
            }
        }
        self.send_request()?;
        Ok(correlation)
    }

    /// Reads the response to request `correlation` into `buf` (replacing its contents),
    /// waiting at most `timeout`.
    pub fn read_response(
        &mut self,
        correlation: i32,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<(), WireError> {
        let addr = self.addr.clone();
        let io = |source| WireError::Io {
            addr: addr.clone(),
            source,
        };
        self.stream
            .tcp()
            .set_read_timeout(Some(timeout))
            .map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(io)?;
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| (4..=MAX_RESPONSE).contains(&l))
            .ok_or_else(|| WireError::Malformed {
                addr: addr.clone(),
                why: format!("response size {len}"),
            })?;
        buf.clear();
        buf.resize(len, 0);
        self.stream.read_exact(buf).map_err(io)?;
        let got = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if got != correlation {
            return Err(WireError::Malformed {
                addr,
                why: format!("correlation id {got}, expected {correlation}"),
            });
        }
        Ok(())
    }
}

/// When to replace a connection whose SASL session lasts `lifetime_ms` from `now` (`None`:
/// the broker set no limit, or one past what an `Instant` holds).
fn renewal(now: Instant, lifetime_ms: i64) -> Option<Instant> {
    let ms = u64::try_from(lifetime_ms).ok().filter(|&ms| ms > 0)?;
    now.checked_add(Duration::from_millis(ms / 5 * 4 + ms % 5 * 4 / 5))
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&s.as_bytes()[..len as usize]);
}

/// An aborted transaction of a fetched partition: its producer's records from `first_offset`
/// on, up to the producer's abort marker, are not to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aborted {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// One partition of a fetch response, its record set borrowed from the response buffer.
#[derive(Debug)]
pub struct FetchedPartition<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    /// -1 when the broker does not know it.
    pub last_stable_offset: i64,
    pub aborted: Vec<Aborted>,
    pub records: &'a [u8],
}

/// Parses a Fetch v4 response (as read by [`Connection::read_response`], correlation id
/// first).
pub fn parse_fetch_response<'a>(buf: &'a [u8]) -> Result<Vec<FetchedPartition<'a>>, String> {
    let mut r = Reader { b: buf, at: 0 };
    r.i32()?; // correlation id
    r.i32()?; // throttle time
    let topics = r.count()?;
    let mut out = Vec::new();
    for _ in 0..topics {
        let topic = r.str()?;
        let parts = r.count()?;
        for _ in 0..parts {
            let partition = r.i32()?;
            let error_code = r.i16()?;
            let high_watermark = r.i64()?;
            let last_stable_offset = r.i64()?;
            let n = r.i32()?;
            let mut aborted = Vec::with_capacity(n.clamp(0, 1024) as usize);
            for _ in 0..n.max(0) {
                let producer_id = r.i64()?;
                let first_offset = r.i64()?;
                aborted.push(Aborted {
                    producer_id,
                    first_offset,
                });
            }
            let len = r.i32()?;
            let records = if len < 0 {
                &[][..]
            } else {
                r.take(len as usize)?
            };
            out.push(FetchedPartition {
                topic,
                partition,
                error_code,
                high_watermark,
                last_stable_offset,
                aborted,
                records,
            });
        }
    }
    Ok(out)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(format!(
                "{n} bytes wanted at byte {} of {}",
                self.at,
                self.b.len()
            ));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn count(&mut self) -> Result<usize, String> {
        let n = self.i32()?;
        Ok(n.max(0) as usize)
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.i16()?;
        let s = self.take(n.max(0) as usize)?;
        std::str::from_utf8(s).map_err(|_| "a string is not UTF-8".to_string())
    }

    fn nullable_str(&mut self) -> Result<Option<&'a str>, String> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let s = self.take(n as usize)?;
        Ok(Some(
            std::str::from_utf8(s).map_err(|_| "a string is not UTF-8".to_string())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sasl_session_is_renewed_at_four_fifths_of_its_lifetime_whatever_the_broker_says() {
        let now = Instant::now();
        assert_eq!(renewal(now, 0), None);
        assert_eq!(renewal(now, -5), None);
        assert_eq!(
            renewal(now, 10_000),
            Some(now + Duration::from_millis(8_000))
        );
        assert_eq!(renewal(now, 7), Some(now + Duration::from_millis(5)));
        // The largest lifetimes neither overflow nor panic.
        let _ = renewal(now, i64::MAX);
    }

    #[test]
    fn a_response_is_parsed_in_place_and_a_short_one_refused() {
        let mut b = Vec::new();
        b.extend_from_slice(&7i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        put_str(&mut b, "t");
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&3i32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&100i64.to_be_bytes());
        b.extend_from_slice(&90i64.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&5i64.to_be_bytes());
        b.extend_from_slice(&42i64.to_be_bytes());
        b.extend_from_slice(&3i32.to_be_bytes());
        b.extend_from_slice(b"abc");
        let parts = parse_fetch_response(&b).unwrap();
        assert_eq!(parts.len(), 1);
        let p = &parts[0];
        assert_eq!((p.topic, p.partition, p.error_code), ("t", 3, 0));
        assert_eq!((p.high_watermark, p.last_stable_offset), (100, 90));
        assert_eq!(
            p.aborted,
            vec![Aborted {
                producer_id: 5,
                first_offset: 42
            }]
        );
        assert_eq!(p.records, b"abc");
        assert!(parse_fetch_response(&b[..b.len() - 1]).is_err());
    }
}
