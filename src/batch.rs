//! The per-partition batcher: encoded rows plus everything needed to commit them honestly.
//!
//! A batch covers one contiguous offset range of one partition. Every message in that range
//! ends up in exactly one of two places: a row of the batch body, or a dead letter. The batch
//! keeps the source chunks alive until it is committed, so a row that ClickHouse rejects can
//! still be dead-lettered with the original key, value and headers.
//!
//! Limits (rows, encoded bytes, age) are checked by the lane after each message; the body is
//! one growing buffer, so a batch costs one allocation regardless of its row count.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::checkpoint::OffsetRange;
use crate::config::BatchLimits;
use crate::kafka::records::{Record, RecordChunk};

/// Where a row or a dead letter came from: (chunk index in the batch, record index in chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub chunk: u32,
    pub record: u32,
}

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub source: Source,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Batch {
    body: Vec<u8>,
    row_ends: Vec<usize>,
    row_sources: Vec<Source>,
    chunks: Vec<Arc<RecordChunk>>,
    /// Sum of the attached chunks' footprints.
    chunk_bytes: usize,
    dead: Vec<DeadLetter>,
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

    /// Registers a chunk whose records will be added; returns its index for [`Source`].
    /// The chunk's memory counts in [`Batch::held_bytes`] unless `counted_before` (the rest
    /// of a chunk whose first records went into the previous batch, still held there).
    pub fn attach(&mut self, chunk: Arc<RecordChunk>, counted_before: bool) -> u32 {
        if let Some(last) = self.chunks.last() {
            if Arc::ptr_eq(last, &chunk) {
                return (self.chunks.len() - 1) as u32;
            }
        }
        if !counted_before {
            self.chunk_bytes += chunk.footprint();
        }
        self.chunks.push(chunk);
        (self.chunks.len() - 1) as u32
    }

    /// Memory the open batch holds: its source records and the rows encoded so far.
    pub fn held_bytes(&self) -> usize {
        self.chunk_bytes + self.body.len()
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
    pub fn row_done(&mut self, source: Source, offset: i64) {
        self.row_ends.push(self.body.len());
        self.row_sources.push(source);
        self.cover(offset);
    }

    /// The message at `offset` cannot become a row.
    pub fn dead_letter(&mut self, source: Source, offset: i64, reason: String) {
        self.dead.push(DeadLetter { source, reason });
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

    /// Gives a stored batch's body buffer back for the next batch: one buffer per lane in the
    /// steady state instead of a fresh multi-megabyte allocation (and its page faults) per
    /// batch.
    pub fn recycle(&mut self, sealed: SealedBatch) {
        if !self.body.is_empty() {
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
        self.chunk_bytes = 0;
        Some(SealedBatch {
            range,
            // The next batch starts small; `recycle` hands this buffer back once stored.
            body: Bytes::from(std::mem::take(&mut self.body)),
            row_ends: std::mem::take(&mut self.row_ends),
            row_sources: std::mem::take(&mut self.row_sources),
            chunks: std::mem::take(&mut self.chunks),
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
    row_sources: Vec<Source>,
    chunks: Vec<Arc<RecordChunk>>,
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

    pub fn row_source(&self, row: usize) -> Option<Source> {
        self.row_sources.get(row).copied()
    }

    pub fn record(&self, source: Source) -> Option<Record<'_>> {
        self.chunks
            .get(source.chunk as usize)?
            .get(source.record as usize)
    }

    /// The Kafka offset of row `row`.
    pub fn row_offset(&self, row: usize) -> Option<i64> {
        self.record(self.row_source(row)?).map(|r| r.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: i64) -> Arc<RecordChunk> {
        let mut c = RecordChunk::default();
        for o in 0..n {
            c.push(o, None, None, Some(b"{}"), &[]);
        }
        Arc::new(c)
    }

    #[test]
    fn rows_and_dead_letters_cover_the_range() {
        let mut b = Batch::default();
        let c = b.attach(chunk(3), false);
        b.body_mut().extend_from_slice(b"aa");
        b.row_done(
            Source {
                chunk: c,
                record: 0,
            },
            0,
        );
        b.dead_letter(
            Source {
                chunk: c,
                record: 1,
            },
            1,
            "bad".into(),
        );
        b.body_mut().extend_from_slice(b"bbb");
        b.row_done(
            Source {
                chunk: c,
                record: 2,
            },
            2,
        );
        let s = b.seal().unwrap();
        assert_eq!(s.range, OffsetRange { first: 0, last: 2 });
        assert_eq!(s.rows(), 2);
        assert_eq!(&s.rows_bytes(0, 1)[..], b"aa");
        assert_eq!(&s.rows_bytes(1, 2)[..], b"bbb");
        assert_eq!(&s.rows_bytes(0, 2)[..], b"aabbb");
        assert_eq!(s.row_offset(1), Some(2));
        assert_eq!(s.dead.len(), 1);
        assert!(b.is_empty());
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
        let c = b.attach(chunk(2), false);
        b.body_mut().extend_from_slice(b"a");
        b.row_done(
            Source {
                chunk: c,
                record: 0,
            },
            0,
        );
        assert!(!b.is_full(&limits));
        b.body_mut().extend_from_slice(b"aaaa");
        b.row_done(
            Source {
                chunk: c,
                record: 1,
            },
            1,
        );
        assert!(b.is_full(&limits));
    }
}
