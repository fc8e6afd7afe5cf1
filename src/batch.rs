//! The per-partition batcher: encoded rows plus everything needed to commit them honestly.
//!
//! A batch covers one contiguous offset range of one partition. Every message in that range
//! ends up in exactly one of two places: a row of the batch body, or a dead letter. A batch
//! keeps only the encoded rows and each row's offset, not the Kafka records they came from:
//! the records (JSON, about twice the size of the rows) are dropped as soon as they are
//! encoded, so the same memory holds two to three times more rows per batch. A message that
//! cannot be decoded is copied into its dead letter right away; a row that ClickHouse later
//! rejects is read back from Kafka by its offset for the dead-letter topic (the lane does
//! that, see `kafka::refetch`).
//!
//! Limits (rows, encoded bytes, age) are checked by the lane after each message; the body is
//! one growing buffer, so a batch costs one allocation regardless of its row count.

use std::time::Instant;

use bytes::Bytes;

use crate::checkpoint::OffsetRange;
use crate::config::BatchLimits;
use crate::kafka::records::OwnedRecord;

/// A message that cannot become a row, with its original bytes and why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub record: OwnedRecord,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Batch {
    body: Vec<u8>,
    row_ends: Vec<usize>,
    row_offsets: Vec<i64>,
    dead: Vec<DeadLetter>,
    dead_bytes: usize,
    range: Option<OffsetRange>,
    opened_at: Option<Instant>,
}

impl Batch {
    pub fn with_capacity(bytes: usize) -> Self {
        Batch {
            body: Vec::with_capacity(bytes),
            ..Default::default()
        }
    }

    /// Memory the open batch holds: the rows encoded so far, their bookkeeping and the dead
    /// letters' copies.
    pub fn held_bytes(&self) -> usize {
        self.body.len()
            + self.row_ends.len() * (std::mem::size_of::<usize>() + std::mem::size_of::<i64>())
            + self.dead_bytes
    }

    /// The buffer rows are encoded into; call [`Batch::row_done`] or [`Batch::dead_letter`]
    /// after writing (or failing to write) one message's row.
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    fn cover(&mut self, offset: i64) {
        match &mut self.range {
            Some(r) => r.extend(offset),
            None => {
                self.range = Some(OffsetRange::single(offset));
                self.opened_at = Some(Instant::now());
            }
        }
    }

    /// The message at `offset` became the row just written to the body.
    pub fn row_done(&mut self, offset: i64) {
        self.row_ends.push(self.body.len());
        self.row_offsets.push(offset);
        self.cover(offset);
    }

    /// The message `record` cannot become a row.
    pub fn dead_letter(&mut self, record: OwnedRecord, reason: String) {
        let offset = record.offset;
        self.dead_bytes += record.byte_len() + reason.len();
        self.dead.push(DeadLetter { record, reason });
        self.cover(offset);
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_none()
    }

    pub fn rows(&self) -> usize {
        self.row_ends.len()
    }

    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at
    }

    pub fn is_full(&self, limits: &BatchLimits) -> bool {
        self.row_ends.len() >= limits.max_rows || self.body.len() >= limits.max_bytes
    }

    /// Whether the batch is big enough to be sent before `max_age` once its partition has
    /// nothing more to read: a quarter of `max_rows` or of `max_bytes`. At that size an insert
    /// is a healthy ClickHouse part, and waiting for the age would only add latency (the last
    /// batch of a backlog waited a whole `max_age`). Smaller batches still wait, so a slow
    /// stream keeps making one insert per partition per `max_age`, not one per message.
    pub fn worth_sending_early(&self, limits: &BatchLimits) -> bool {
        self.row_ends.len().saturating_mul(4) >= limits.max_rows
            || self.body.len().saturating_mul(4) >= limits.max_bytes
    }

    /// This batch is being cut by age while the partition's log (as last seen) already holds
    /// records after it, waiting in the lane's queue or in Kafka: the lane is working down a
    /// backlog, and that remainder should go as soon as it is read rather than a `max_age`
    /// later. A steady stream at its log end has its records in the batch when the age comes
    /// (each fetch returns up to the log end it reports), so it keeps one insert per `max_age`.
    pub fn age_cut_leaves_backlog(&self, log_end: Option<i64>) -> bool {
        matches!((self.range, log_end), (Some(r), Some(end)) if end > r.last.saturating_add(1))
    }

    /// Gives a stored batch's body buffer back for the next batch: one buffer per lane in the
    /// steady state instead of a fresh multi-megabyte allocation (and its page faults) per
    /// batch. A buffer whose used (so resident) part exceeds `keep_at_most` is freed instead:
    /// an empty batch counts nothing against the batch memory budget, so a kept buffer is
    /// memory the budget does not see, and with many lanes those add up (32 lanes that once
    /// held 16 MiB each would keep 512 MiB).
    pub fn recycle(&mut self, sealed: SealedBatch, keep_at_most: usize) {
        if !self.body.is_empty() || sealed.body.len() > keep_at_most {
            return;
        }
        if let Ok(buf) = sealed.body.try_into_mut() {
            let mut buf: Vec<u8> = buf.into();
            if buf.capacity() > self.body.capacity() {
                buf.clear();
                self.body = buf;
            }
        }
    }

    /// Closes the batch; the batcher starts empty again.
    pub fn seal(&mut self) -> Option<SealedBatch> {
        let range = self.range.take()?;
        self.opened_at = None;
        self.dead_bytes = 0;
        Some(SealedBatch {
            range,
            // The next batch starts small; `recycle` hands this buffer back once stored.
            body: Bytes::from(std::mem::take(&mut self.body)),
            row_ends: std::mem::take(&mut self.row_ends),
            row_offsets: std::mem::take(&mut self.row_offsets),
            dead: std::mem::take(&mut self.dead),
        })
    }
}

/// An immutable batch: encoded once, its bytes (or row-aligned slices of them) are what every
/// retry sends.
#[derive(Debug)]
pub struct SealedBatch {
    pub range: OffsetRange,
    body: Bytes,
    row_ends: Vec<usize>,
    row_offsets: Vec<i64>,
    pub dead: Vec<DeadLetter>,
}

impl SealedBatch {
    pub fn rows(&self) -> usize {
        self.row_ends.len()
    }

    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The encoded rows `from..to` as one zero-copy slice of the body.
    pub fn rows_bytes(&self, from: usize, to: usize) -> Bytes {
        let start = if from == 0 {
            0
        } else {
            self.row_ends.get(from - 1).copied().unwrap_or(0)
        };
        let end = if to == 0 {
            0
        } else {
            self.row_ends.get(to - 1).copied().unwrap_or(start)
        };
        self.body.slice(start..end.max(start))
    }

    /// The Kafka offset of row `row`.
    pub fn row_offset(&self, row: usize) -> Option<i64> {
        self.row_offsets.get(row).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64) -> OwnedRecord {
        OwnedRecord {
            offset,
            timestamp_ms: None,
            key: None,
            payload: Some(b"{bad".to_vec()),
            headers: Vec::new(),
        }
    }

    #[test]
    fn rows_and_dead_letters_cover_the_range() {
        let mut b = Batch::default();
        b.body_mut().extend_from_slice(b"aa");
        b.row_done(0);
        b.dead_letter(rec(1), "bad".into());
        b.body_mut().extend_from_slice(b"bbb");
        b.row_done(2);
        assert!(b.held_bytes() >= 5 + 4 + 3);
        let s = b.seal().unwrap();
        assert_eq!(s.range, OffsetRange { first: 0, last: 2 });
        assert_eq!(s.rows(), 2);
        assert_eq!(&s.rows_bytes(0, 1)[..], b"aa");
        assert_eq!(&s.rows_bytes(1, 2)[..], b"bbb");
        assert_eq!(&s.rows_bytes(0, 2)[..], b"aabbb");
        assert_eq!(s.row_offset(1), Some(2));
        assert_eq!(s.dead.len(), 1);
        assert_eq!(s.dead[0].record.offset, 1);
        assert!(b.is_empty());
        assert_eq!(b.held_bytes(), 0);
        assert!(b.seal().is_none());
    }

    #[test]
    fn fullness_by_rows_and_bytes() {
        let limits = BatchLimits {
            max_rows: 2,
            max_bytes: 4,
            max_age: std::time::Duration::from_secs(1),
        };
        let mut b = Batch::default();
        b.body_mut().extend_from_slice(b"a");
        b.row_done(0);
        assert!(!b.is_full(&limits));
        b.body_mut().extend_from_slice(b"aaaa");
        b.row_done(1);
        assert!(b.is_full(&limits));
    }

    #[test]
    fn an_age_cut_leaves_a_backlog_when_the_log_holds_more_than_the_batch() {
        let mut b = Batch::default();
        assert!(!b.age_cut_leaves_backlog(Some(100)), "an empty batch");
        for offset in 10..90 {
            b.body_mut().push(1);
            b.row_done(offset);
        }
        // Not known, or nothing after the batch's last offset (89): no backlog.
        assert!(!b.age_cut_leaves_backlog(None));
        assert!(!b.age_cut_leaves_backlog(Some(90)));
        assert!(!b.age_cut_leaves_backlog(Some(50)));
        // Anything after it: the remainder goes once the partition runs dry.
        assert!(b.age_cut_leaves_backlog(Some(91)));
        assert!(b.age_cut_leaves_backlog(Some(i64::MAX)));
    }

    #[test]
    fn a_stored_batch_buffer_is_kept_only_within_the_lanes_share() {
        let sealed_with = |bytes: usize| {
            let mut b = Batch::with_capacity(bytes);
            b.body_mut().resize(bytes, 7);
            b.row_done(0);
            b.seal().expect("sealed")
        };
        let mut b = Batch::default();
        b.recycle(sealed_with(4096), 1024);
        assert_eq!(b.body.capacity(), 0, "over the share: freed");
        b.recycle(sealed_with(4096), 1 << 20);
        assert!(b.body.capacity() >= 4096, "within the share: kept");
        assert!(b.body.is_empty());
    }
}
