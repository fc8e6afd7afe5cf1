//! Kafka records copied out of librdkafka in chunks: one allocation per chunk, not per message.
//!
//! The poll thread appends each message of a partition to that partition's open chunk
//! (payload, key and headers into one byte arena) and hands whole chunks to the lane, which
//! encodes them and drops them. [`OwnedRecord`] is one message on its own, for the rare
//! message that becomes a dead letter.
//!
//! Headers are copied only into chunks of routes that store them in a column
//! ([`RecordChunk::skip_headers`]): asking librdkafka for a message's headers makes it parse
//! them into a list of its own, an allocation and a free per message even when there are
//! none (~10 % of sluice's CPU on 200-byte messages). A bad message of a chunk without
//! headers gets its original headers for its dead letter by being read back from Kafka
//! (`lane.rs`), like a row ClickHouse rejects.

use std::ops::Range;

use rdkafka::message::{BorrowedMessage, Headers, Message};

#[derive(Debug, Clone)]
struct RecordMeta {
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Range<u32>>,
    payload: Option<Range<u32>>,
    headers: Range<u32>,
}

#[derive(Debug, Clone)]
struct HeaderMeta {
    name: Range<u32>,
    value: Option<Range<u32>>,
}

/// Consecutive records of one partition.
#[derive(Debug, Default)]
pub struct RecordChunk {
    data: Vec<u8>,
    records: Vec<RecordMeta>,
    headers: Vec<HeaderMeta>,
    /// Set by the poll thread: the partition's log end as librdkafka last saw it (`None`: not
    /// known yet).
    log_end: Option<i64>,
    /// Set by the poll thread on the last chunk of a round: how far librdkafka has read the
    /// partition, past the transaction markers it skips (see [`RecordChunk::caught_up`]).
    read_to: Option<i64>,
    /// The messages' headers were not read (see the module docs).
    headers_skipped: bool,
}

/// One record, borrowed from its chunk.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    chunk: &'a RecordChunk,
    headers: &'a [HeaderMeta],
}

impl<'a> Record<'a> {
    /// Header names and values; a name that is not UTF-8 is shown lossily as it is only ever
    /// used as a label.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let chunk = self.chunk;
        self.headers.iter().map(move |h| {
            let name = std::str::from_utf8(chunk.slice(&h.name)).unwrap_or("<non-utf8>");
            (name, h.value.as_ref().map(|v| chunk.slice(v)))
        })
    }

    pub fn has_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    /// Whether [`Record::headers`] are the message's own: false when its chunk skipped them
    /// (the message may have had headers all the same).
    pub fn headers_read(&self) -> bool {
        !self.chunk.headers_skipped
    }
}

/// One message with its own bytes: a dead letter's original key, value and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl OwnedRecord {
    /// A dead letter for a message whose bytes sluice no longer has: its offset and headers.
    pub fn without_value(offset: i64, headers: Vec<(String, Option<Vec<u8>>)>) -> Self {
        OwnedRecord {
            offset,
            timestamp_ms: None,
            key: None,
            payload: None,
            headers,
        }
    }

    pub fn byte_len(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.payload.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    }

    pub fn from_message<M: Message>(m: &M) -> Self {
        OwnedRecord {
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl From<Record<'_>> for OwnedRecord {
    fn from(r: Record<'_>) -> Self {
        OwnedRecord {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.map(<[u8]>::to_vec),
            payload: r.payload.map(<[u8]>::to_vec),
            headers: r
                .headers()
                .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
                .collect(),
        }
    }
}

impl RecordChunk {
    pub fn with_capacity(bytes: usize, records: usize) -> Self {
        RecordChunk {
            data: Vec::with_capacity(bytes),
            records: Vec::with_capacity(records),
            headers: Vec::new(),
            log_end: None,
            read_to: None,
            headers_skipped: false,
        }
    }

    /// From now on the chunk keeps no headers: [`RecordChunk::push_message`] and
    /// `RawMessage::push_to` leave them unread, so librdkafka never parses them.
    pub fn skip_headers(&mut self) {
        self.headers_skipped = true;
    }

    pub fn reads_headers(&self) -> bool {
        !self.headers_skipped
    }

    /// The chunk ends at the partition's log end: nothing more to read right now (a log end
    /// older than the chunk, as librdkafka's cached view can be, counts as reached). A
    /// committed or aborted transaction ends in a marker, a record of its own offset that
    /// the consumer skips: after it the last record read is one short of the log end however
    /// long the lane waits, so the read position past the marker counts too.
    pub fn caught_up(&self) -> bool {
        let Some(last) = self.last_offset() else {
            return false;
        };
        let read = self.read_to.map_or(last + 1, |r| r.max(last + 1));
        self.log_end.is_some_and(|end| read >= end)
    }

    /// How far librdkafka has read the partition (its position), set only on a chunk that
    /// holds the last records a round took of it: an earlier chunk of the round would count
    /// the round's later records as read.
    pub fn set_read_to(&mut self, position: i64) {
        self.read_to = Some(position);
    }

    pub fn read_to(&self) -> Option<i64> {
        self.read_to
    }

    pub fn log_end(&self) -> Option<i64> {
        self.log_end
    }

    pub fn set_log_end(&mut self, end: i64) {
        self.log_end = Some(end);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes held by the arena (payloads, keys, headers).
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    fn slice(&self, r: &Range<u32>) -> &[u8] {
        // Ranges are created by `push_bytes` on this very arena, so they are in bounds.
        self.data
            .get(r.start as usize..r.end as usize)
            .unwrap_or(&[])
    }

    fn push_bytes(&mut self, b: &[u8]) -> Range<u32> {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(b);
        start..self.data.len() as u32
    }

    /// Bytes the arena can hold without growing.
    pub fn byte_capacity(&self) -> usize {
        self.data.capacity()
    }

    /// Whether one more message of `size` bytes still fits the u32 arena offsets.
    pub fn has_room_for(&self, size: usize) -> bool {
        self.data.len().saturating_add(size) < u32::MAX as usize / 2
    }

    pub fn push(
        &mut self,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let headers = headers.iter().map(|(n, v)| (n.as_bytes(), *v));
        self.push_parts(offset, timestamp_ms, key, payload, headers);
    }

    /// Appends one message from its parts; header names as raw bytes.
    pub fn push_parts<'h>(
        &mut self,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: impl Iterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    ) {
        let key = key.map(|k| self.push_bytes(k));
        let payload = payload.map(|p| self.push_bytes(p));
        let hstart = self.headers.len() as u32;
        let skipped = self.headers_skipped;
        for (name, value) in headers.filter(|_| !skipped) {
            let name = self.push_bytes(name);
            let value = value.map(|v| self.push_bytes(v));
            self.headers.push(HeaderMeta { name, value });
        }
        let hend = self.headers.len() as u32;
        self.records.push(RecordMeta {
            offset,
            timestamp_ms,
            key,
            payload,
            headers: hstart..hend,
        });
    }

    pub fn push_message(&mut self, m: &BorrowedMessage<'_>) {
        let headers = if self.reads_headers() {
            m.headers()
        } else {
            None
        };
        let headers = headers
            .iter()
            .flat_map(|hs| hs.iter())
            .map(|h| (h.key.as_bytes(), h.value));
        self.push_parts(
            m.offset(),
            m.timestamp().to_millis(),
            m.key(),
            m.payload(),
            headers,
        );
    }

    pub fn get(&self, i: usize) -> Option<Record<'_>> {
        let r = self.records.get(i)?;
        Some(Record {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_ref().map(|k| self.slice(k)),
            payload: r.payload.as_ref().map(|p| self.slice(p)),
            chunk: self,
            headers: self
                .headers
                .get(r.headers.start as usize..r.headers.end as usize)
                .unwrap_or(&[]),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> {
        (0..self.records.len()).filter_map(move |i| self.get(i))
    }

    pub fn first_offset(&self) -> Option<i64> {
        self.records.first().map(|r| r.offset)
    }

    pub fn last_offset(&self) -> Option<i64> {
        self.records.last().map(|r| r.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut c = RecordChunk::default();
        c.push(
            5,
            Some(1000),
            Some(b"k"),
            Some(b"{\"a\":1}"),
            &[("h", Some(b"v")), ("n", None)],
        );
        c.push(6, None, None, None, &[]);
        assert_eq!(c.len(), 2);
        let r = c.get(0).unwrap();
        assert_eq!(r.offset, 5);
        assert_eq!(r.key, Some(&b"k"[..]));
        assert_eq!(r.payload, Some(&b"{\"a\":1}"[..]));
        let hs: Vec<_> = r.headers().collect();
        assert_eq!(hs, vec![("h", Some(&b"v"[..])), ("n", None)]);
        let owned = OwnedRecord::from(r);
        assert_eq!(
            owned.headers,
            vec![
                ("h".to_string(), Some(b"v".to_vec())),
                ("n".to_string(), None)
            ]
        );
        assert_eq!(owned.byte_len(), 1 + 7 + 2 + 1);
        let r = c.get(1).unwrap();
        assert_eq!((r.key, r.payload, r.has_headers()), (None, None, false));
        assert_eq!((c.first_offset(), c.last_offset()), (Some(5), Some(6)));
    }

    #[test]
    fn a_chunk_that_skips_headers_keeps_none_and_says_so() {
        let mut c = RecordChunk::with_capacity(64, 2);
        c.push(1, None, None, Some(b"{}"), &[("h", Some(b"v"))]);
        assert!(c
            .get(0)
            .is_some_and(|r| r.headers_read() && r.has_headers()));
        let mut c = RecordChunk::with_capacity(64, 2);
        c.skip_headers();
        c.push(1, None, Some(b"k"), Some(b"{}"), &[("h", Some(b"v"))]);
        let r = c.get(0).unwrap();
        assert!(!r.headers_read() && !r.has_headers());
        assert_eq!((r.key, r.payload), (Some(&b"k"[..]), Some(&b"{}"[..])));
        assert_eq!(c.byte_len(), 3, "no header bytes copied");
    }

    #[test]
    fn a_chunk_is_caught_up_when_it_reaches_the_log_end() {
        let mut c = RecordChunk::default();
        c.set_log_end(10);
        assert!(!c.caught_up(), "an empty chunk ends nowhere");
        let mut c = RecordChunk::default();
        c.push(5, None, None, None, &[]);
        c.push(6, None, None, None, &[]);
        assert!(!c.caught_up(), "log end not known yet");
        c.set_log_end(10);
        assert!(!c.caught_up());
        c.set_log_end(7);
        assert!(c.caught_up());
        // A log end older than the chunk (librdkafka's cached view lags): reached.
        c.set_log_end(3);
        assert!(c.caught_up());
    }

    #[test]
    fn a_transaction_marker_after_the_chunk_does_not_keep_it_from_the_log_end() {
        // Records 5 and 6, then the commit marker at 7: the log ends at 8.
        let mut c = RecordChunk::default();
        c.push(5, None, None, None, &[]);
        c.push(6, None, None, None, &[]);
        c.set_log_end(8);
        assert!(
            !c.caught_up(),
            "without the read position the marker looks unread"
        );
        c.set_read_to(7);
        assert!(!c.caught_up(), "the marker not read yet");
        c.set_read_to(8);
        assert!(c.caught_up());
        let mut empty = RecordChunk::default();
        empty.set_log_end(8);
        empty.set_read_to(8);
        assert!(!empty.caught_up(), "an empty chunk ends nowhere");
    }
}
