//! Kafka record batches (message format v2) read straight out of a fetch response: each
//! record handed to a callback as slices, nothing allocated per record.
//!
//! What it guarantees, as a read_committed consumer must: records of aborted transactions
//! and transaction markers (control batches) are never handed out, and the position returned
//! is past every whole batch read, skipped ones included, so the next fetch neither repeats
//! nor misses a record. Records before the fetch offset (a compressed batch is served whole)
//! are skipped. A trailing partial batch (the broker cuts the response at its size limit) is
//! left for the next fetch.
//!
//! Codecs read: every one Kafka has (none, gzip, snappy, LZ4, zstd). A compressed batch
//! inflates into a buffer kept between batches; zstd, gzip and snappy are bounded
//! ([`MAX_INFLATED`]), so a batch that would inflate beyond any batch a broker takes is not
//! read but handed back (see below). Snappy comes in two framings: librdkafka writes one raw
//! snappy block, Java clients write snappy-java's stream (a header, then length-prefixed raw
//! blocks); both are read, told apart by that header as librdkafka and the Java client do.
//!
//! What it does not read is said, never guessed: a batch in an older format, inflating beyond
//! [`MAX_INFLATED`], or malformed ends the read with the reason, at that batch's offset, and
//! the caller hands the partition back to librdkafka from there (`own_fetch`).

use std::collections::HashSet;

use super::wire::Aborted;

/// Offset of the batch header fields (from the batch start).
const HEADER_LEN: usize = 61;
const ATTR_COMPRESSION: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
const GZIP: i16 = 1;
const SNAPPY: i16 = 2;
const LZ4: i16 = 3;
const ZSTD: i16 = 4;
/// The most one zstd, gzip or snappy batch may inflate to (the broker's `message.max.bytes` is 1 MiB
/// compressed by default; records of JSON compress about 4-10 times).
pub const MAX_INFLATED: usize = 256 << 20;

/// One record, borrowed from the response (or the decompression buffer).
#[derive(Debug, Clone, Copy)]
pub struct Rec<'a> {
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: usize,
}

impl<'a> Rec<'a> {
    /// The record's headers, name and value.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            b: self.headers,
            at: 0,
            left: self.header_count,
        }
    }
}

pub struct HeaderIter<'a> {
    b: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Checked when the record was read (`skip_headers`), so this cannot fail.
        let name = bytes(self.b, &mut self.at).ok()??;
        let value = bytes(self.b, &mut self.at).ok()?;
        Some((name, value))
    }
}

/// Why a read stopped before the end of the record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// The offset to go on from (the batch that could not be read).
    pub at: i64,
    pub why: String,
}

/// Reads record sets; keeps its decompression buffer between calls.
#[derive(Default)]
pub struct BatchReader {
    buf: Vec<u8>,
    /// zstd and gzip batches inflate here (`buf` is LZ4's and snappy's, kept at its size
    /// unzeroed: their blocks say how long they inflate).
    inflated: Vec<u8>,
}

impl BatchReader {
    /// Hands every record of `records` at or after `from` to `each`, in offset order.
    /// Returns the position after the last whole batch read (`from` if none), or where and
    /// why it stopped.
    pub fn read(
        &mut self,
        records: &[u8],
        from: i64,
        aborted: &[Aborted],
        mut each: impl FnMut(Rec<'_>),
    ) -> Result<i64, Stop> {
        let mut pending: Vec<Aborted> = aborted.to_vec();
        pending.sort_by_key(|a| a.first_offset);
        let mut pending = pending.into_iter().peekable();
        let mut aborting: HashSet<i64> = HashSet::new();
        let mut position = from;
        let mut at = 0usize;
        while records.len() - at >= HEADER_LEN {
            let b = &records[at..];
            let base = be_i64(b, 0);
            let len = be_i32(b, 8);
            let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(12)) else {
                return Err(Stop {
                    at: position,
                    why: format!("batch at offset {base} has length {len}"),
                });
            };
            if end > b.len() {
                break; // a partial batch: the next fetch starts with it
            }
            let magic = b[16];
            if magic != 2 {
                return Err(Stop {
                    at: position,
                    why: format!("batch at offset {base} is in message format v{magic}"),
                });
            }
            let batch = &b[..end];
            at += end;
            let attrs = be_i16(batch, 21);
            let last_delta = be_i32(batch, 23);
            let last = base + i64::from(last_delta);
            if last < position {
                continue;
            }
            let base_ts = be_i64(batch, 27);
            let max_ts = be_i64(batch, 35);
            let producer = be_i64(batch, 43);
            let count = be_i32(batch, 57).max(0) as usize;
            let body = &batch[HEADER_LEN..];
            if attrs & ATTR_TRANSACTIONAL != 0 {
                while let Some(a) = pending.next_if(|a| a.first_offset <= last) {
                    aborting.insert(a.producer_id);
                }
            }
            if attrs & ATTR_CONTROL != 0 {
                // A transaction marker: its one record's key says commit (1) or abort (0).
                // After an abort the producer's later batches are read again.
                if is_abort_marker(body) {
                    aborting.remove(&producer);
                }
                position = last + 1;
                continue;
            }
            if attrs & ATTR_TRANSACTIONAL != 0 && aborting.contains(&producer) {
                position = last + 1;
                continue;
            }
            let stop = |why: String| Stop {
                at: position,
                why: format!("batch at offset {base}: {why}"),
            };
            let recs: &[u8] = match attrs & ATTR_COMPRESSION {
                0 => body,
                LZ4 => {
                    let n = lz4_frame(body, &mut self.buf).map_err(stop)?;
                    &self.buf[..n]
                }
                SNAPPY => {
                    let n = snappy(body, &mut self.buf).map_err(stop)?;
                    &self.buf[..n]
                }
                ZSTD => {
                    let d = zstd::stream::read::Decoder::with_buffer(body)
                        .map_err(|e| stop(format!("zstd: {e}")))?;
                    inflate(d, &mut self.inflated).map_err(|e| stop(format!("zstd: {e}")))?
                }
                GZIP => inflate(flate2::read::GzDecoder::new(body), &mut self.inflated)
                    .map_err(|e| stop(format!("gzip: {e}")))?,
                other => return Err(stop(format!("compression codec {other} is not read"))),
            };
            let log_append = attrs & ATTR_LOG_APPEND_TIME != 0;
            let mut i = 0usize;
            for _ in 0..count {
                let rec = match record(recs, &mut i, base, base_ts, log_append.then_some(max_ts)) {
                    Ok(r) => r,
                    // Records of the batch already handed out are not to be read again.
                    Err(e) => {
                        return Err(Stop {
                            at: position,
                            why: format!("batch at offset {base}: record: {e}"),
                        })
                    }
                };
                if rec.offset >= position {
                    position = rec.offset + 1;
                    each(rec);
                }
            }
            position = last + 1;
        }
        Ok(position)
    }
}

fn is_abort_marker(body: &[u8]) -> bool {
    let mut i = 0;
    let key = (|| -> Result<Option<&[u8]>, String> {
        varint(body, &mut i)?; // length
        i += 1; // attributes
        varint(body, &mut i)?; // timestamp delta
        varint(body, &mut i)?; // offset delta
        bytes(body, &mut i)
    })();
    // Key: version (int16), type (int16; 0 abort, 1 commit).
    matches!(key, Ok(Some(k)) if k.len() >= 4 && k[2] == 0 && k[3] == 0)
}

fn record<'a>(
    b: &'a [u8],
    i: &mut usize,
    base: i64,
    base_ts: i64,
    log_append_ts: Option<i64>,
) -> Result<Rec<'a>, String> {
    let len = varint(b, i)?;
    let start = *i;
    *i += 1; // attributes
    let ts_delta = varint(b, i)?;
    let off_delta = varint(b, i)?;
    let key = bytes(b, i)?;
    let value = bytes(b, i)?;
    let header_count = varint(b, i)?;
    let header_count = usize::try_from(header_count).map_err(|_| "header count".to_string())?;
    let hstart = *i;
    for _ in 0..header_count {
        bytes(b, i)?.ok_or("header without a name")?;
        bytes(b, i)?;
    }
    if usize::try_from(len).ok() != Some(*i - start) {
        return Err(format!("length {len} but {} bytes read", *i - start));
    }
    let ts = log_append_ts.unwrap_or(base_ts.wrapping_add(ts_delta));
    Ok(Rec {
        offset: base + off_delta,
        timestamp_ms: (ts >= 0).then_some(ts),
        key,
        value,
        headers: &b[hstart..*i],
        header_count,
    })
}

/// A length-prefixed (zigzag varint) byte string; length -1 is null.
fn bytes<'a>(b: &'a [u8], i: &mut usize) -> Result<Option<&'a [u8]>, String> {
    let n = varint(b, i)?;
    if n < 0 {
        return Ok(None);
    }
    let end = i
        .checked_add(n as usize)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| format!("{n} bytes wanted, {} left", b.len().saturating_sub(*i)))?;
    let s = &b[*i..end];
    *i = end;
    Ok(Some(s))
}

fn varint(b: &[u8], i: &mut usize) -> Result<i64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let c = *b.get(*i).ok_or("record ends inside a varint")?;
        *i += 1;
        v |= u64::from(c & 0x7f) << shift;
        if c < 0x80 {
            return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Inflates a zstd or gzip batch body into `out` (its capacity reused), at most
/// [`MAX_INFLATED`] bytes.
fn inflate(r: impl std::io::Read, out: &mut Vec<u8>) -> Result<&[u8], String> {
    use std::io::Read;
    out.clear();
    r.take(MAX_INFLATED as u64 + 1)
        .read_to_end(out)
        .map_err(|e| e.to_string())?;
    if out.len() > MAX_INFLATED {
        return Err(format!("inflates to more than {MAX_INFLATED} bytes"));
    }
    Ok(out)
}

/// Decompresses an LZ4 frame into `out` (kept at its size between calls, so nothing is
/// zeroed per block); returns the decompressed length. Independent blocks (what Kafka's
/// clients write) go block by block straight into `out`; linked blocks through lz4_flex's
/// frame decoder (half the speed, measured: 0.135 against 0.071 CPU-s per million narrow
/// records).
fn lz4_frame(frame: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
    if frame.len() < 7 || frame[..4] != [0x04, 0x22, 0x4d, 0x18] {
        return Err("not an LZ4 frame".into());
    }
    let flg = frame[4];
    let bd = frame[5];
    if flg & 0x20 == 0 {
        use std::io::Read;
        let mut d = lz4_flex::frame::FrameDecoder::new(frame);
        let mut v = Vec::new();
        d.read_to_end(&mut v).map_err(|e| format!("LZ4: {e}"))?;
        let n = v.len();
        if out.len() < n {
            out.resize(n, 0);
        }
        out[..n].copy_from_slice(&v);
        return Ok(n);
    }
    let block_max = match (bd >> 4) & 0x07 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        other => return Err(format!("LZ4 block size code {other}")),
    };
    let block_sum = flg & 0x10 != 0;
    let mut j =
        4 + 2 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 } + 1;
    let mut at = 0usize;
    loop {
        let Some(sz) = frame.get(j..j + 4) else {
            return Err("LZ4 frame ends without its end mark".into());
        };
        let sz = u32::from_le_bytes([sz[0], sz[1], sz[2], sz[3]]);
        j += 4;
        if sz == 0 {
            return Ok(at);
        }
        let len = (sz & 0x7fff_ffff) as usize;
        if len > block_max {
            return Err(format!(
                "LZ4 block of {len} bytes, more than its frame's {block_max}"
            ));
        }
        let Some(block) = frame.get(j..j + len) else {
            return Err("LZ4 block runs past the frame".into());
        };
        if out.len() < at + block_max {
            out.resize(at + block_max, 0);
        }
        if sz & 0x8000_0000 != 0 {
            out[at..at + len].copy_from_slice(block);
            at += len;
        } else {
            at += lz4_flex::block::decompress_into(block, &mut out[at..at + block_max])
                .map_err(|e| format!("LZ4 block: {e}"))?;
        }
        j += len + if block_sum { 4 } else { 0 };
    }
}

/// snappy-java's stream header: its magic, then its version and oldest compatible version
/// (4 bytes each, which readers do not check: librdkafka does not either).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses a snappy batch body into `out` (kept at its size between calls, as for LZ4);
/// returns the decompressed length. A body that starts with snappy-java's header (Java
/// clients) is a sequence of 4-byte big-endian lengths and raw blocks; any other body is one
/// raw block (librdkafka). A raw block states its length first, so the bound is checked
/// before anything is written.
fn snappy(body: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
    let mut decoder = snap::raw::Decoder::new();
    let mut at = 0usize;
    let mut block = |block: &[u8], at: &mut usize| -> Result<(), String> {
        let n = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
        let end = at
            .checked_add(n)
            .filter(|&end| end <= MAX_INFLATED)
            .ok_or_else(|| format!("inflates to more than {MAX_INFLATED} bytes"))?;
        if out.len() < end {
            out.resize(end, 0);
        }
        *at += decoder
            .decompress(block, &mut out[*at..end])
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    if body.len() < XERIAL_HEADER_LEN || body[..8] != XERIAL_MAGIC {
        block(body, &mut at)?;
        return Ok(at);
    }
    let mut j = XERIAL_HEADER_LEN;
    while j < body.len() {
        let Some(len) = body.get(j..j + 4) else {
            return Err("snappy-java block length cut off".into());
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        j += 4;
        let Some(b) = body.get(j..).and_then(|rest| rest.get(..len)) else {
            return Err(format!(
                "snappy-java block of {len} bytes runs past the batch"
            ));
        };
        block(b, &mut at)?;
        j += len;
    }
    Ok(at)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn put_varint(b: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                b.push(z as u8);
                return;
            }
            b.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    fn put_bytes(b: &mut Vec<u8>, v: Option<&[u8]>) {
        match v {
            None => put_varint(b, -1),
            Some(v) => {
                put_varint(b, v.len() as i64);
                b.extend_from_slice(v);
            }
        }
    }

    /// A record: offset delta, key, value, headers.
    type TestRecord<'a> = (
        i64,
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        Vec<(&'a str, &'a [u8])>,
    );

    /// A v2 batch as a producer writes it.
    pub(crate) fn batch(base: i64, attrs: i16, producer: i64, recs: &[TestRecord<'_>]) -> Vec<u8> {
        let mut body = Vec::new();
        for (delta, key, value, headers) in recs {
            let mut r = vec![0u8];
            put_varint(&mut r, *delta * 10); // timestamp delta
            put_varint(&mut r, *delta);
            put_bytes(&mut r, *key);
            put_bytes(&mut r, *value);
            put_varint(&mut r, headers.len() as i64);
            for (n, v) in headers {
                put_bytes(&mut r, Some(n.as_bytes()));
                put_bytes(&mut r, Some(v));
            }
            put_varint(&mut body, r.len() as i64);
            body.extend_from_slice(&r);
        }
        body = compress(attrs & ATTR_COMPRESSION, &body);
        let last = recs.last().map_or(0, |r| r.0) as i32;
        let mut b = Vec::new();
        b.extend_from_slice(&base.to_be_bytes());
        b.extend_from_slice(&((HEADER_LEN - 12 + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes()); // crc (not checked)
        b.extend_from_slice(&attrs.to_be_bytes());
        b.extend_from_slice(&last.to_be_bytes());
        b.extend_from_slice(&1000i64.to_be_bytes());
        b.extend_from_slice(&2000i64.to_be_bytes());
        b.extend_from_slice(&producer.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&(recs.len() as i32).to_be_bytes());
        b.extend_from_slice(&body);
        b
    }

    /// A batch body compressed as a producer does it.
    fn compress(codec: i16, body: &[u8]) -> Vec<u8> {
        use std::io::Write;
        match codec {
            LZ4 => {
                let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
                enc.write_all(body).unwrap();
                enc.finish().unwrap()
            }
            ZSTD => zstd::stream::encode_all(body, 1).unwrap(),
            SNAPPY => snap::raw::Encoder::new().compress_vec(body).unwrap(),
            GZIP => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(body).unwrap();
                enc.finish().unwrap()
            }
            _ => body.to_vec(),
        }
    }

    fn marker(base: i64, producer: i64, commit: bool) -> Vec<u8> {
        let key = [0u8, 0, 0, u8::from(commit)];
        batch(
            base,
            ATTR_TRANSACTIONAL | ATTR_CONTROL,
            producer,
            &[(0, Some(&key), Some(&[0, 0, 0, 0, 0, 0]), vec![])],
        )
    }

    /// A record read: offset and value.
    type Read = (i64, Vec<u8>);

    fn read_all(set: &[u8], from: i64, aborted: &[Aborted]) -> (Result<i64, Stop>, Vec<Read>) {
        let mut got = Vec::new();
        let r = BatchReader::default().read(set, from, aborted, |r| {
            got.push((r.offset, r.value.unwrap_or_default().to_vec()))
        });
        (r, got)
    }

    #[test]
    fn plain_and_lz4_batches_read_whole_with_keys_headers_and_timestamps() {
        let mut set = batch(
            10,
            0,
            -1,
            &[
                (0, Some(b"k"), Some(b"a"), vec![("h", b"v")]),
                (1, None, None, vec![]),
            ],
        );
        set.extend(batch(
            12,
            LZ4,
            -1,
            &[(0, None, Some(b"c"), vec![]), (1, None, Some(b"d"), vec![])],
        ));
        let mut seen = Vec::new();
        let end = BatchReader::default()
            .read(&set, 10, &[], |r| {
                let h: Vec<(Vec<u8>, Option<Vec<u8>>)> = r
                    .headers()
                    .map(|(n, v)| (n.to_vec(), v.map(<[u8]>::to_vec)))
                    .collect();
                seen.push((
                    r.offset,
                    r.timestamp_ms,
                    r.key.map(<[u8]>::to_vec),
                    r.value.map(<[u8]>::to_vec),
                    h,
                ));
            })
            .unwrap();
        assert_eq!(end, 14);
        assert_eq!(seen.len(), 4);
        assert_eq!(
            seen[0],
            (
                10,
                Some(1000),
                Some(b"k".to_vec()),
                Some(b"a".to_vec()),
                vec![(b"h".to_vec(), Some(b"v".to_vec()))]
            )
        );
        assert_eq!(seen[1], (11, Some(1010), None, None, vec![]));
        assert_eq!((seen[2].0, seen[2].3.clone()), (12, Some(b"c".to_vec())));
        assert_eq!((seen[3].0, seen[3].3.clone()), (13, Some(b"d".to_vec())));
        // From the middle of a batch: the records before the fetch offset are skipped.
        let (end, got) = read_all(&set, 13, &[]);
        assert_eq!((end, got), (Ok(14), vec![(13, b"d".to_vec())]));
        // A partial batch at the end is left for the next fetch.
        let (end, got) = read_all(&set[..set.len() - 3], 10, &[]);
        assert_eq!((end, got.len()), (Ok(12), 2));
    }

    #[test]
    fn zstd_and_gzip_batches_are_read_between_others_and_from_their_middle() {
        let recs = |n: i64| -> Vec<TestRecord<'static>> {
            (0..n)
                .map(|d| (d, None, Some(&b"{\"id\":1}"[..]), vec![]))
                .collect()
        };
        let mut set = batch(0, ZSTD, -1, &recs(3));
        set.extend(batch(3, GZIP, -1, &recs(2)));
        set.extend(batch(5, LZ4, -1, &recs(2)));
        set.extend(batch(7, ZSTD, -1, &recs(4)));
        let mut reader = BatchReader::default();
        let mut offsets = Vec::new();
        let end = reader.read(&set, 0, &[], |r| offsets.push(r.offset));
        assert_eq!(end.map_err(|s| s.why), Ok(11));
        assert_eq!(offsets, (0..11).collect::<Vec<_>>());
        // From inside the second zstd batch, with the same reader (buffers reused).
        offsets.clear();
        let end = reader.read(&set, 9, &[], |r| offsets.push(r.offset));
        assert_eq!((end.map_err(|s| s.why), offsets), (Ok(11), vec![9, 10]));
        // A damaged zstd body stops at its batch, after the batches before it.
        let mut bad = batch(0, GZIP, -1, &recs(2));
        let mut z = batch(2, ZSTD, -1, &recs(2));
        z[HEADER_LEN] ^= 0xff; // the zstd frame's magic number
        bad.extend(z);
        let (end, got) = read_all(&bad, 0, &[]);
        assert_eq!(got.len(), 2);
        let stop = end.unwrap_err();
        assert_eq!(stop.at, 2);
        assert!(stop.why.contains("zstd"), "{}", stop.why);
    }

    #[test]
    fn a_batch_inflating_beyond_the_bound_is_handed_back_not_read() {
        // One record whose value is MAX_INFLATED zero bytes: a few KiB compressed.
        let value = vec![0u8; MAX_INFLATED];
        let set = batch(4, ZSTD, -1, &[(0, None, Some(&value[..]), vec![])]);
        assert!(set.len() < MAX_INFLATED / 1000);
        let (end, got) = read_all(&set, 4, &[]);
        assert!(got.is_empty());
        let stop = end.unwrap_err();
        assert_eq!(stop.at, 4);
        assert!(stop.why.contains("inflates to more than"), "{}", stop.why);
    }

    #[test]
    fn aborted_transactions_and_markers_are_skipped_but_read_past() {
        let t = ATTR_TRANSACTIONAL;
        let mut set = batch(0, t, 7, &[(0, None, Some(b"aborted"), vec![])]);
        set.extend(batch(1, t, 8, &[(0, None, Some(b"committed"), vec![])]));
        set.extend(marker(2, 7, false));
        set.extend(marker(3, 8, true));
        set.extend(batch(4, t, 7, &[(0, None, Some(b"later"), vec![])]));
        set.extend(marker(5, 7, true));
        let aborted = [Aborted {
            producer_id: 7,
            first_offset: 0,
        }];
        let (end, got) = read_all(&set, 0, &aborted);
        assert_eq!(end, Ok(6));
        assert_eq!(
            got,
            vec![(1, b"committed".to_vec()), (4, b"later".to_vec())]
        );
        // Without the abort list every data record is read: the list is what filters.
        let (_, got) = read_all(&set, 0, &[]);
        assert_eq!(got.len(), 3);
    }

    /// A snappy batch body as snappy-java's stream writes it (Java clients): the header,
    /// then each piece of `chunk` bytes as a length-prefixed raw block.
    fn xerial(body: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = XERIAL_MAGIC.to_vec();
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        for piece in body.chunks(chunk) {
            let block = snap::raw::Encoder::new().compress_vec(piece).unwrap();
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            out.extend_from_slice(&block);
        }
        out
    }

    /// `batch` with its body replaced by `body` (already compressed), the length fixed.
    fn with_body(mut b: Vec<u8>, body: &[u8]) -> Vec<u8> {
        b.truncate(HEADER_LEN);
        b[8..12].copy_from_slice(&((HEADER_LEN - 12 + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    /// The records of `recs` (offset deltas from 0) uncompressed, as `batch` lays them out.
    fn plain_body(recs: &[TestRecord<'_>]) -> Vec<u8> {
        batch(0, 0, -1, recs)[HEADER_LEN..].to_vec()
    }

    #[test]
    fn snappy_batches_are_read_in_both_framings() {
        let values: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("{{\"id\":{i},\"s\":\"row {i}\"}}").into_bytes())
            .collect();
        let recs: Vec<TestRecord<'_>> = values
            .iter()
            .enumerate()
            .map(|(d, v)| (d as i64, None, Some(&v[..]), vec![]))
            .collect();
        let plain = plain_body(&recs);
        // Raw (librdkafka), then snappy-java's stream in blocks that end inside records,
        // then one block, then LZ4 between: one reader, buffers reused.
        let mut set = batch(0, SNAPPY, -1, &recs);
        set.extend(with_body(
            batch(50, SNAPPY, -1, &recs),
            &xerial(&plain, 100),
        ));
        set.extend(with_body(
            batch(100, SNAPPY, -1, &recs),
            &xerial(&plain, plain.len()),
        ));
        set.extend(batch(150, LZ4, -1, &recs));
        let mut reader = BatchReader::default();
        let mut got = Vec::new();
        let end = reader.read(&set, 0, &[], |r| {
            got.push((r.offset, r.value.unwrap_or_default().to_vec()))
        });
        assert_eq!(end.map_err(|s| s.why), Ok(200));
        let want: Vec<Read> = (0..200)
            .map(|o| (o, values[(o % 50) as usize].clone()))
            .collect();
        assert_eq!(got, want);
        // From the middle of the xerial batch.
        let (end, got) = read_all(&set, 75, &[]);
        assert_eq!((end, got.len(), got[0].0), (Ok(200), 125, 75));
        // An empty stream (header only) holds no records: its batch says it holds 50.
        let (end, _) = read_all(
            &with_body(batch(0, SNAPPY, -1, &recs), &xerial(&[], 1)),
            0,
            &[],
        );
        assert!(end.unwrap_err().why.contains("record"));
    }

    #[test]
    fn damaged_snappy_batches_stop_at_their_batch() {
        let recs: Vec<TestRecord<'_>> = vec![(0, None, Some(&b"{\"id\":1}"[..]), vec![])];
        let plain = plain_body(&recs);
        let good = batch(0, 0, -1, &recs);
        let stream = xerial(&plain, 4);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // A raw block whose stated length is more than its bytes hold.
            (
                snap::raw::Encoder::new().compress_vec(&plain).unwrap()[..3].to_vec(),
                "snappy:",
            ),
            // A stream cut inside a block's length, and inside a block.
            (
                stream[..XERIAL_HEADER_LEN + 2].to_vec(),
                "block length cut off",
            ),
            (stream[..stream.len() - 1].to_vec(), "runs past the batch"),
        ];
        for (body, why) in cases {
            let mut set = good.clone();
            set.extend(with_body(batch(1, SNAPPY, -1, &recs), &body));
            let (end, got) = read_all(&set, 0, &[]);
            assert_eq!(got.len(), 1, "{why}: the batch before is read");
            let stop = end.unwrap_err();
            assert_eq!(stop.at, 1, "{why}");
            assert!(stop.why.contains(why), "{why}: {}", stop.why);
        }
        // A block stating more than the bound is refused before anything is written.
        let mut huge = Vec::new();
        let mut n = MAX_INFLATED as u64 + 1;
        while n >= 0x80 {
            huge.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        huge.push(n as u8);
        let (end, _) = read_all(&with_body(batch(0, SNAPPY, -1, &recs), &huge), 0, &[]);
        let stop = end.unwrap_err();
        assert!(stop.why.contains("inflates to more than"), "{}", stop.why);
        let mut buf = Vec::new();
        assert!(snappy(&huge, &mut buf).is_err());
        assert!(buf.is_empty(), "nothing allocated for a refused block");
    }

    #[test]
    fn what_is_not_read_stops_at_its_batch_with_the_reason() {
        let mut set = batch(0, 0, -1, &[(0, None, Some(b"a"), vec![])]);
        // Message format v1 (Kafka 4 no longer writes it; older logs may hold it).
        let mut old = batch(1, 0, -1, &[(0, None, Some(b"v1"), vec![])]);
        old[16] = 1;
        set.extend(old);
        let (end, got) = read_all(&set, 0, &[]);
        assert_eq!(got.len(), 1);
        let stop = end.unwrap_err();
        assert_eq!(stop.at, 1);
        assert!(stop.why.contains("message format v1"), "{}", stop.why);
        // A record cut short inside its batch.
        let mut bad = batch(5, 0, -1, &[(0, None, Some(b"abcdef"), vec![])]);
        let n = bad.len();
        bad[n - 1] = 0x7f; // the header count now reads -64
        let (end, _) = read_all(&bad, 5, &[]);
        assert_eq!(end.unwrap_err().at, 5);
    }

    #[test]
    fn varints_of_every_length_and_their_errors() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            227,
            8191,
            -8192,
            1 << 20,
            i64::from(i32::MAX),
            i64::MAX,
            i64::MIN,
        ] {
            let mut b = vec![0xaa]; // a byte before, so the position is checked too
            put_varint(&mut b, v);
            let n = b.len();
            b.push(0x55);
            let mut i = 1;
            assert_eq!(varint(&b, &mut i), Ok(v), "{v}");
            assert_eq!(i, n, "{v}: read up to its last byte");
        }
        let cut = "record ends inside a varint";
        let cases: [(&[u8], &str); 4] = [
            (&[0x80], cut),
            (&[0x80, 0x80], cut),
            (&[], cut),
            (&[0xff; 11], "varint longer than 10 bytes"),
        ];
        for (bytes, why) in cases {
            let mut i = 0;
            assert_eq!(varint(bytes, &mut i), Err(why.to_string()), "{bytes:?}");
        }
    }
}
