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
//!
//! Packing: the lane can have the rows compressed as they arrive ([`Batch::pack`], see
//! [`Packing`] for when). The batch then holds ClickHouse's own LZ4 blocks (every server
//! version reads them, see [`crate::clickhouse::native_lz4`]), which are what is sent, plus
//! the rows encoded since the last full block; `max_bytes` still counts uncompressed rows
//! (the size of the insert), while the memory budget sees the compressed bytes. The rows are
//! the same either way: a packed batch decodes to exactly the bytes an unpacked one would
//! send, so its deduplication identity does not change.
//!
//! Streaming: instead of packing, the lane can send the rows out as they are encoded
//! ([`Batch::start_streaming`], [`crate::clickhouse::InsertStream`]). The batch then keeps
//! only the rows not sent yet and every row's offset; a streamed batch that has to be sent
//! again is read back from Kafka by the lane, since its rows are gone.

use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;

use crate::checkpoint::OffsetRange;
use crate::clickhouse::client::InsertBody;
use crate::clickhouse::compress::Packing;
use crate::clickhouse::native_lz4::{self, Method, BLOCK_SIZE};
use crate::config::BatchLimits;
use crate::kafka::records::OwnedRecord;

/// A batch streams once its partition holds more than this from the batch's first row on,
/// even where the lane's share of the memory budget would hold it whole: ClickHouse then
/// parses its rows while the lane is still encoding them, instead of all at the end, and the
/// lane holds 1-2 MiB instead of the whole batch. 1M narrow messages on 8 partitions into
/// 26.9 (14 MB a partition against a 16 MiB share, so none streamed before), builds
/// alternated: peak RSS 159-171 -> 80-87 MiB and sluice 0.62-0.66 -> 0.59-0.64 CPU-s per M
/// rows in both screens; rows/s 0.92-0.99 M -> 1.01-1.09 M in the first (exactly-once, 3
/// rounds, e2e-2026-11-25T172021Z, with 2 and 8 MiB no different from 4) and the same within
/// the noise in the second (both modes, 4 rounds each, T173038Z). A steady stream's batches,
/// whose partition holds no more than them, are held and sent whole as before.
pub const STREAM_ABOVE: usize = 4 << 20;

/// A batch this large is a healthy ClickHouse part: sent as soon as its partition has nothing
/// more to read, whatever `max_bytes` allows (see [`Batch::worth_sending_early`]).
const HEALTHY_INSERT_BYTES: usize = 4 * 1024 * 1024;

/// A message that cannot become a row, with its original bytes and why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub record: OwnedRecord,
    pub reason: String,
    /// False when the message's headers were never read (no column stores them): its dead
    /// letter reads the message back from Kafka for them.
    pub headers_read: bool,
}

/// glibc's mmap threshold, fixed by main.rs (see `tune_malloc` there): allocations above it
/// are mappings of their own.
pub const MMAP_THRESHOLD: usize = 8 << 20;

/// Capacity a packed batch's block buffer starts with: above [`MMAP_THRESHOLD`],
/// so the buffer is a mapping of its own. Only the pages written become resident, growing it
/// is a `mremap` without a copy, and freeing it gives every page back at once. Started at a
/// quarter of the rows packed so far, the buffer grew through 1-8 MiB in the malloc arenas,
/// where the freed sizes stayed resident: 1M wide messages peaked at 187-215 MiB RSS, 154-187
/// with this (exactly-once into 26.9, 4 alternated runs each, the same rows/s).
const PACKED_CAPACITY: usize = 16 << 20;
const _: () = assert!(PACKED_CAPACITY > MMAP_THRESHOLD);

/// Rows compressed so far: whole blocks and how many uncompressed bytes went into them.
#[derive(Debug)]
struct Packed {
    blocks: Vec<u8>,
    raw: usize,
    /// LZ4, or stored for a guarded stream on an uncompressed wire.
    method: Method,
}

impl Packed {
    fn new(capacity: usize, method: Method) -> Self {
        Packed {
            blocks: Vec::with_capacity(capacity),
            raw: 0,
            method,
        }
    }
}

impl Packed {
    /// Compresses `rows` as blocks of at most [`BLOCK_SIZE`].
    fn append(&mut self, rows: &[u8]) -> std::io::Result<()> {
        for block in rows.chunks(BLOCK_SIZE) {
            native_lz4::append_block_as(&mut self.blocks, block, self.method)?;
        }
        self.raw += rows.len();
        Ok(())
    }

    /// Compresses whole blocks of `rows` (the uncompressed rows from `self.raw` on) that each
    /// end strictly inside a row, never where one of `row_ends` (every row's end, from the
    /// batch's first row) says a row ends: a block that would is made a byte or more
    /// shorter (or, where every byte back to its start ends a row of one byte, longer, up to
    /// the first byte inside a longer row). Returns how many bytes of `rows` went into
    /// blocks; the rest (less than a block, or only one-byte rows) waits.
    fn append_inside_rows(&mut self, rows: &[u8], row_ends: &[usize]) -> std::io::Result<usize> {
        let base = self.raw;
        let ends_a_row = |at: usize| row_ends.binary_search(&(base + at)).is_ok();
        let mut start = 0;
        while rows.len() - start >= BLOCK_SIZE {
            let mut end = start + BLOCK_SIZE;
            while end > start && ends_a_row(end) {
                end -= 1;
            }
            if end == start {
                end = start + BLOCK_SIZE + 1;
                while end < rows.len() && ends_a_row(end) {
                    end += 1;
                }
                if end >= rows.len() {
                    break;
                }
            }
            native_lz4::append_block_as(&mut self.blocks, &rows[start..end], self.method)?;
            start = end;
        }
        self.raw += start;
        Ok(start)
    }
}

#[derive(Debug, Default)]
pub struct Batch {
    /// Rows not packed yet: all of them unless the batch is packed.
    body: Vec<u8>,
    packed: Option<Packed>,
    /// Streaming: uncompressed bytes of the rows already taken out for the stream.
    streamed: Option<usize>,
    /// Streaming guarded blocks (`clickhouse::Streaming::Guarded`) of this method: the rows
    /// leave as blocks that each end inside a row, the last one only at `seal`.
    guarded: Option<Method>,
    /// Where each row ends in the uncompressed rows.
    row_ends: Vec<usize>,
    row_offsets: Vec<i64>,
    dead: Vec<DeadLetter>,
    dead_bytes: usize,
    /// Messages skipped by the route's choice ([`Batch::skip`]).
    skipped: u64,
    /// Change events without a row ([`Batch::skip_event`]).
    events_skipped: u64,
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

    /// Memory the open batch holds: the rows encoded so far (compressed where packed), their
    /// bookkeeping and the dead letters' copies.
    pub fn held_bytes(&self) -> usize {
        let packed = self.packed.as_ref().map_or(0, |p| p.blocks.len());
        self.body.len()
            + packed
            + self.row_ends.len() * (std::mem::size_of::<usize>() + std::mem::size_of::<i64>())
            + self.dead_bytes
    }

    /// Uncompressed bytes of the rows so far: the size of the insert.
    fn raw_len(&self) -> usize {
        self.packed.as_ref().map_or(0, |p| p.raw) + self.streamed.unwrap_or(0) + self.body.len()
    }

    /// From now on the rows leave the batch through [`Batch::take_streamed`] instead of being
    /// held: as they are encoded, or, in a packed batch, as its LZ4 blocks. `guarded`: as
    /// blocks of that method whatever the packing, every block ending strictly inside a row
    /// (a server that stores what it parsed of a cut-off body, `clickhouse::stream`); the
    /// block that holds the end of the batch's last row is made only at [`Batch::seal`], so
    /// it can leave after the in-flight record. Only for a batch not packed yet
    /// ([`Batch::is_packed`]): blocks packed before do not know rows.
    pub fn start_streaming(&mut self, guarded: Option<Method>) {
        self.streamed.get_or_insert(0);
        self.guarded = guarded.filter(|_| self.packed.is_none());
    }

    /// Whether rows were compressed already ([`Batch::pack`]).
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// A streaming batch's rows since the last call, once there are `min` bytes of them (and
    /// at least one): the rows themselves, or in a packed batch the whole LZ4 blocks they
    /// compress to (the rows of a partial block wait). The next rows go to a fresh buffer of
    /// `next_capacity`. `Err` only if compressing failed (see [`Batch::pack`]).
    pub fn take_streamed(
        &mut self,
        min: usize,
        next_capacity: usize,
    ) -> std::io::Result<Option<Bytes>> {
        let Some(sent) = self.streamed.as_mut() else {
            return Ok(None);
        };
        if self.packed.is_none() && self.guarded.is_none() {
            if self.body.is_empty() || self.body.len() < min {
                return Ok(None);
            }
            *sent += self.body.len();
            let rows = std::mem::replace(&mut self.body, Vec::with_capacity(next_capacity));
            return Ok(Some(Bytes::from(rows)));
        }
        self.pack()?;
        let Some(packed) = self.packed.as_mut() else {
            return Ok(None);
        };
        // `min` counts rows; blocks hold them at about a quarter of their size or less.
        if packed.blocks.is_empty() || packed.blocks.len() < min / 4 {
            return Ok(None);
        }
        let blocks = std::mem::replace(&mut packed.blocks, Vec::with_capacity(next_capacity / 4));
        Ok(Some(Bytes::from(blocks)))
    }

    /// Whether the memory budget would cut this batch short: its rows (at least a block's
    /// worth) reached a quarter of the lane's share of the budget (`fair_share`) while its
    /// partition holds more than the share would take uncompressed: rows so far plus the
    /// records after them up to `log_end` (as last seen), at the batch's bytes per row. The
    /// lane then streams the batch, or packs it to let it grow to `max_bytes` where that pays
    /// ([`Batch::packing_pays`]); a partition about to run dry is worth neither.
    pub fn budget_would_cut(&self, fair_share: usize, log_end: Option<i64>) -> bool {
        let raw = self.raw_len();
        if raw < BLOCK_SIZE || raw.saturating_mul(4) < fair_share {
            return false;
        }
        self.after(log_end)
            .is_some_and(|(_, bytes)| raw.saturating_add(bytes) > fair_share)
    }

    /// Whether the lane should stream this batch (where the server and the mode allow): the
    /// budget would cut it short ([`Batch::budget_would_cut`]), or its partition holds more
    /// than [`STREAM_ABOVE`] from its first row on, whatever the share.
    pub fn worth_streaming(&self, fair_share: usize, log_end: Option<i64>) -> bool {
        self.budget_would_cut(fair_share.min(STREAM_ABOVE), log_end)
    }

    /// Whether packing would at least double this batch's insert: the budget would cut it
    /// ([`Batch::budget_would_cut`]) and its partition holds at least twice the lane's share
    /// (`fair_share`) from the batch's first row on, as last seen.
    ///
    /// Why twice: compressing costs sluice about 1 CPU-s per GB of rows, which a larger insert
    /// pays back in ClickHouse's per-insert and merge work only when it is much larger. A
    /// batch cut at its share with a little left over (1M narrow messages on 8 partitions into
    /// 18.16: 14-15 MiB a partition against a 12 MiB share) would be packed into one insert
    /// instead of two for 15 % of sluice's CPU; a backlog of many shares still is, and goes in
    /// inserts of up to `max_bytes`.
    pub fn packing_pays(&self, fair_share: usize, log_end: Option<i64>) -> bool {
        self.budget_would_cut(fair_share, log_end)
            && self.after(log_end).is_some_and(|(_, bytes)| {
                self.raw_len().saturating_add(bytes) >= fair_share.saturating_mul(2)
            })
    }

    /// Whether the lane should [`Batch::pack`] now, after adding a chunk: `Always` whenever
    /// a whole block is waiting, `ToGrow` once [`Batch::packing_pays`] (and from then on).
    pub fn should_pack(&self, packing: Packing, fair_share: usize, log_end: Option<i64>) -> bool {
        if self.body.len() < BLOCK_SIZE {
            // Not one whole block to compress yet (the rest goes at `seal`).
            return false;
        }
        match packing {
            Packing::Never => false,
            Packing::Always => true,
            Packing::ToGrow => self.packed.is_some() || self.packing_pays(fair_share, log_end),
        }
    }

    /// Compresses the rows encoded since the last call, in whole [`BLOCK_SIZE`] blocks; the
    /// rest waits in the row buffer for the next call or [`Batch::seal`]. The first call
    /// frees the row buffer down to a chunk's worth. An error (a block over 4 GiB, which
    /// cannot happen) leaves the batch unusable and the lane stops without committing it.
    pub fn pack(&mut self) -> std::io::Result<()> {
        if self.streamed.is_some() && self.packed.is_none() && self.guarded.is_none() {
            // Streaming uncompressed rows: nothing is held to compress.
            return Ok(());
        }
        let first = self.packed.is_none();
        let method = self.guarded.unwrap_or(Method::Lz4);
        let packed = self.packed.get_or_insert_with(|| {
            Packed::new(
                PACKED_CAPACITY.max(self.body.len() / 4 + BLOCK_SIZE),
                method,
            )
        });
        let whole = if self.guarded.is_some() {
            packed.append_inside_rows(&self.body, &self.row_ends)?
        } else {
            let whole = self.body.len() - self.body.len() % BLOCK_SIZE;
            packed.append(&self.body[..whole])?;
            whole
        };
        if first {
            // The next rows come a chunk (about 1 MiB of records) at a time.
            let mut rest = Vec::with_capacity(2 * 1024 * 1024);
            rest.extend_from_slice(&self.body[whole..]);
            self.body = rest;
        } else {
            self.body.drain(..whole);
        }
        Ok(())
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
        self.row_ends.push(self.raw_len());
        self.row_offsets.push(offset);
        self.cover(offset);
    }

    /// The message at `offset` became the rows just written to the body, which end at
    /// `ends` (body lengths, as the body grew row by row; a message of several rows, such as
    /// a Canal event's). A message's rows stay together: [`SealedBatch::split_between_messages`].
    pub fn rows_done(&mut self, offset: i64, ends: &[usize]) {
        let base = self.raw_len() - self.body.len();
        for &end in ends {
            self.row_ends.push(base + end);
            self.row_offsets.push(offset);
        }
        self.cover(offset);
    }

    /// The message at `offset` is a change event that carries no row (DDL, a marker):
    /// covered by the batch, so committed with it, and counted.
    pub fn skip_event(&mut self, offset: i64) {
        self.events_skipped += 1;
        self.cover(offset);
    }

    /// The message at `offset` is skipped by the route's choice (a tombstone under
    /// `tombstones = "skip"`): covered by the batch, so committed with it, and counted.
    pub fn skip(&mut self, offset: i64) {
        self.skipped += 1;
        self.cover(offset);
    }

    /// The message `record` cannot become a row; `headers_read`: see [`DeadLetter`].
    pub fn dead_letter(&mut self, record: OwnedRecord, reason: String, headers_read: bool) {
        let offset = record.offset;
        self.dead_bytes += record.byte_len() + reason.len();
        self.dead.push(DeadLetter {
            record,
            reason,
            headers_read,
        });
        self.cover(offset);
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_none()
    }

    pub fn rows(&self) -> usize {
        self.row_ends.len()
    }

    /// The offset of the batch's first message.
    pub fn first_offset(&self) -> Option<i64> {
        self.range.map(|r| r.first)
    }

    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at
    }

    pub fn is_full(&self, limits: &BatchLimits) -> bool {
        self.row_ends.len() >= limits.max_rows || self.raw_len() >= limits.max_bytes
    }

    /// Whether the batch is big enough to be sent before `max_age` once its partition has
    /// nothing more to read: a quarter of `max_rows` or of `max_bytes`, or 4 MiB of rows. At
    /// that size an insert is a healthy ClickHouse part, and waiting for the age would only
    /// add latency (the last batch of a backlog waited a whole `max_age`). Smaller batches
    /// still wait, so a slow stream keeps making one insert per partition per `max_age`, not
    /// one per message.
    pub fn worth_sending_early(&self, limits: &BatchLimits) -> bool {
        let raw = self.raw_len();
        self.row_ends.len().saturating_mul(4) >= limits.max_rows
            || raw.saturating_mul(4) >= limits.max_bytes
            || raw >= HEALTHY_INSERT_BYTES
    }

    /// Whether the partition's log, as last seen (`log_end`), holds a backlog after this batch:
    /// records that, at the batch's bytes per row so far, would take it to `max_rows` rows or
    /// `max_bytes` uncompressed bytes, or would make a healthy insert of their own (4 MiB), or
    /// any records at all once the batch is a healthy insert itself: the end of a backlog then
    /// joins the batch (which goes as soon as the lane has read it, see
    /// [`Batch::worth_sending_early`]) instead of being split off as a small insert of its own
    /// by the age limit. Measured: 1M wide messages on 8 partitions ended each partition with
    /// a 3,600-4,200-row insert (22-23 inserts instead of 16-17).
    pub fn backlog_after(&self, max_rows: usize, max_bytes: usize, log_end: Option<i64>) -> bool {
        self.after(log_end).is_some_and(|(records, bytes)| {
            self.row_ends.len().saturating_add(records) >= max_rows
                || self.raw_len().saturating_add(bytes) >= max_bytes
                || bytes >= HEALTHY_INSERT_BYTES
                || (records > 0 && self.raw_len() >= HEALTHY_INSERT_BYTES)
        })
    }

    /// The records the partition's log (as last seen) holds after this batch, and the bytes
    /// they would encode to at the batch's bytes per row so far. `None` without a log end or
    /// a row to go by.
    fn after(&self, log_end: Option<i64>) -> Option<(usize, usize)> {
        let (range, end) = (self.range?, log_end?);
        let rows = self.row_ends.len();
        if rows == 0 {
            return None;
        }
        let records =
            usize::try_from(end.saturating_sub(range.last.saturating_add(1))).unwrap_or(0);
        Some((records, records.saturating_mul(self.raw_len() / rows)))
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
    /// held 16 MiB each would keep 512 MiB). A packed batch's buffer is not kept either: the
    /// next batch's first rows would keep its written pages resident until that batch packs.
    pub fn recycle(&mut self, sealed: SealedBatch, keep_at_most: usize) {
        if !self.body.is_empty()
            || self.packed.is_some()
            || sealed.packed_raw.is_some()
            || sealed.streamed
            || sealed.body.len() > keep_at_most
        {
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

    /// Closes the batch; the batcher starts empty again. `Err` only if compressing the last
    /// rows of a packed batch failed (see [`Batch::pack`]).
    pub fn seal(&mut self) -> std::io::Result<Option<SealedBatch>> {
        let Some(range) = self.range.take() else {
            return Ok(None);
        };
        self.opened_at = None;
        self.dead_bytes = 0;
        let raw_len = self.raw_len();
        let streamed = self.streamed.take().is_some();
        let guarded = self.guarded.take();
        let packed = match (self.packed.take(), guarded) {
            (None, Some(method)) => Some(Packed::new(self.body.len() + 64, method)),
            (other, _) => other,
        };
        let (body, packed_raw) = match packed {
            // The next batch starts small; `recycle` hands this buffer back once stored.
            None => (Bytes::from(std::mem::take(&mut self.body)), None),
            Some(mut packed) if guarded.is_some() => {
                // Blocks inside rows while a whole one is left, then the rest as the last
                // block, the one that ends the last row.
                let done = packed.append_inside_rows(&self.body, &self.row_ends)?;
                if done < self.body.len() {
                    let method = packed.method;
                    native_lz4::append_block_as(&mut packed.blocks, &self.body[done..], method)?;
                }
                packed.raw = raw_len;
                self.body.clear();
                (Bytes::from(packed.blocks), Some(packed.raw))
            }
            Some(mut packed) => {
                packed.append(&self.body)?;
                self.body.clear();
                (Bytes::from(packed.blocks), Some(packed.raw))
            }
        };
        Ok(Some(SealedBatch {
            range,
            body,
            packed_raw,
            streamed,
            raw_len,
            unpacked: OnceLock::new(),
            row_ends: std::mem::take(&mut self.row_ends),
            row_offsets: std::mem::take(&mut self.row_offsets),
            dead: std::mem::take(&mut self.dead),
            skipped: std::mem::take(&mut self.skipped),
            events_skipped: std::mem::take(&mut self.events_skipped),
        }))
    }
}

/// An immutable batch: encoded once, its bytes (or row-aligned slices of them) are what every
/// retry sends.
#[derive(Debug)]
pub struct SealedBatch {
    pub range: OffsetRange,
    /// The rows, or their LZ4 blocks when `packed_raw` is set.
    body: Bytes,
    /// Uncompressed length of a packed body.
    packed_raw: Option<usize>,
    /// The rows were streamed: `body` holds only those not sent yet (as LZ4 blocks when
    /// `packed_raw` is set).
    streamed: bool,
    /// Uncompressed bytes of all the batch's rows, sent or not.
    raw_len: usize,
    /// A packed body decoded, once a part of it has to be sent on its own (ClickHouse
    /// rejected the whole; the lane splits it to find the bad rows).
    unpacked: OnceLock<Bytes>,
    row_ends: Vec<usize>,
    row_offsets: Vec<i64>,
    pub dead: Vec<DeadLetter>,
    /// Messages of the range skipped by the route's choice ([`Batch::skip`]).
    pub skipped: u64,
    /// Change events of the range without a row ([`Batch::skip_event`]).
    pub events_skipped: u64,
}

impl SealedBatch {
    pub fn rows(&self) -> usize {
        self.row_ends.len()
    }

    /// Bytes the sealed batch holds (compressed where packed).
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The encoded rows `from..to` as an insert body: the whole batch as it is held (packed or
    /// not, no copy), a part of it as a zero-copy slice of the uncompressed rows (a packed
    /// batch is decoded once for that). `Err` if a packed body does not decode, which would
    /// mean memory corruption: the lane stops without committing.
    pub fn rows_body(&self, from: usize, to: usize) -> std::io::Result<InsertBody> {
        if self.streamed {
            return Err(std::io::Error::other(
                "the rows of a streamed batch were sent, not kept",
            ));
        }
        if let Some(raw_len) = self.packed_raw {
            if from == 0 && to >= self.rows() {
                return Ok(InsertBody::Packed {
                    blocks: self.body.clone(),
                    raw_len,
                });
            }
        }
        let rows = self.unpacked_rows()?;
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
        Ok(InsertBody::Plain(rows.slice(
            start.min(rows.len())..end.max(start).min(rows.len()),
        )))
    }

    fn unpacked_rows(&self) -> std::io::Result<Bytes> {
        let Some(raw_len) = self.packed_raw else {
            return Ok(self.body.clone());
        };
        if let Some(rows) = self.unpacked.get() {
            return Ok(rows.clone());
        }
        let rows = native_lz4::decompress(&self.body, raw_len)?;
        if rows.len() != raw_len {
            return Err(std::io::Error::other(format!(
                "a packed batch decoded to {} bytes, not {raw_len}",
                rows.len()
            )));
        }
        Ok(self.unpacked.get_or_init(|| Bytes::from(rows)).clone())
    }

    /// Uncompressed bytes of the batch's rows: the size of its insert.
    pub fn raw_len(&self) -> usize {
        self.raw_len
    }

    /// A streamed batch's rows not sent yet; `None` if the batch was not streamed.
    pub fn stream_tail(&self) -> Option<Bytes> {
        self.streamed.then(|| self.body.clone())
    }

    /// The Kafka offset of row `row`.
    pub fn row_offset(&self, row: usize) -> Option<i64> {
        self.row_offsets.get(row).copied()
    }

    /// The messages of the range: those that gave rows, the bad ones and the skipped ones.
    pub fn messages(&self) -> usize {
        let with_rows = self
            .row_offsets
            .iter()
            .enumerate()
            .filter(|&(i, o)| i == 0 || self.row_offsets.get(i - 1) != Some(o))
            .count();
        with_rows + self.dead.len() + (self.skipped + self.events_skipped) as usize
    }

    /// Where to split rows `from..to` in two without parting a message's rows: the message
    /// boundary nearest the middle, `None` when they are one message's (a single row, or
    /// the rows of one Canal event). The halves have distinct offset ranges, so each keeps
    /// a deduplication token of its own.
    pub fn split_between_messages(&self, from: usize, to: usize) -> Option<usize> {
        let at = |i: usize| self.row_offsets.get(i);
        let boundary = |i: usize| at(i - 1) != at(i);
        let mid = from + (to - from) / 2;
        if mid <= from {
            return None;
        }
        // Nearest boundary below or at the middle, and above it.
        let down = (from + 1..=mid).rev().find(|&i| boundary(i));
        let up = (mid + 1..to).find(|&i| boundary(i));
        match (down, up) {
            (Some(d), Some(u)) => Some(if mid - d <= u - mid { d } else { u }),
            (d, u) => d.or(u),
        }
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

    /// Rows `from..to` of an unpacked batch.
    fn plain(s: &SealedBatch, from: usize, to: usize) -> Vec<u8> {
        match s.rows_body(from, to).unwrap() {
            InsertBody::Plain(b) => b.to_vec(),
            other => panic!("expected plain rows, got {other:?}"),
        }
    }

    /// A row of `n` bytes that compress well, like RowBinary of repetitive JSON.
    fn row(i: usize, n: usize) -> Vec<u8> {
        format!("{i:08}").bytes().cycle().take(n).collect()
    }

    /// Adds a 1 KB row for each offset.
    fn add_rows(b: &mut Batch, offsets: std::ops::Range<i64>) {
        for offset in offsets {
            b.body_mut()
                .extend_from_slice(&row(offset.unsigned_abs() as usize, 1000));
            b.row_done(offset);
        }
    }

    fn decode(blocks: &[u8]) -> Vec<u8> {
        native_lz4::decompress(blocks, 0).unwrap()
    }

    #[test]
    fn a_packed_batch_sends_compressed_blocks_of_the_very_rows_an_unpacked_one_sends() {
        let limits = BatchLimits {
            max_rows: 1_000_000,
            max_bytes: 600_000,
            max_age: std::time::Duration::from_secs(1),
        };
        let (mut packed, mut plain_batch) = (Batch::default(), Batch::default());
        for (i, offset) in (100..1100).enumerate() {
            for b in [&mut packed, &mut plain_batch] {
                b.body_mut().extend_from_slice(&row(i, 500));
                b.row_done(offset);
            }
            if i % 100 == 99 {
                packed.pack().unwrap();
            }
        }
        // Fullness and early sending count uncompressed rows; memory counts what is held.
        assert_eq!(packed.raw_len(), 500_000);
        assert!(!packed.is_full(&limits));
        assert!(packed.held_bytes() < plain_batch.held_bytes() / 4 + BLOCK_SIZE);
        packed.body_mut().extend_from_slice(&row(1000, 100_000));
        packed.row_done(1100);
        assert!(packed.is_full(&limits));
        plain_batch
            .body_mut()
            .extend_from_slice(&row(1000, 100_000));
        plain_batch.row_done(1100);

        let p = packed.seal().unwrap().unwrap();
        let u = plain_batch.seal().unwrap().unwrap();
        assert_eq!(p.range, u.range);
        assert_eq!(p.rows(), 1001);
        let all = plain(&u, 0, 1001);
        match p.rows_body(0, 1001).unwrap() {
            InsertBody::Packed { blocks, raw_len } => {
                assert_eq!(raw_len, all.len());
                assert!(blocks.len() < all.len() / 4);
                assert_eq!(decode(&blocks), all);
            }
            other => panic!("expected the blocks, got {other:?}"),
        }
        // A part (the lane splitting around a rejected row) is sent uncompressed, sliced at
        // the same row boundaries as an unpacked batch's.
        for (from, to) in [(0, 1), (1, 2), (250, 750), (999, 1001), (0, 1000)] {
            assert_eq!(
                plain(&p, from, to),
                plain(&u, from, to),
                "rows {from}..{to}"
            );
        }
        assert_eq!(p.row_offset(1000), Some(1100));
        // The batcher starts over unpacked.
        assert!(packed.is_empty() && packed.packed.is_none());
        assert_eq!(packed.held_bytes(), 0);
    }

    #[test]
    fn to_grow_packs_only_a_batch_packing_would_double() {
        let mut b = Batch::default();
        add_rows(&mut b, 0..300);
        // 300 KB of rows (one whole block) at 1 KB per row; offsets 0..=299.
        let share = 600_000;
        assert!(
            !b.should_pack(Packing::ToGrow, share * 5, Some(10_000)),
            "under a quarter of its share"
        );
        assert!(
            !b.should_pack(Packing::ToGrow, share, None),
            "log end not known"
        );
        assert!(
            !b.should_pack(Packing::ToGrow, share, Some(300)),
            "nothing after it"
        );
        assert!(
            !b.should_pack(Packing::ToGrow, share, Some(600)),
            "300 more rows fit the share"
        );
        assert!(
            b.budget_would_cut(share, Some(601))
                && !b.should_pack(Packing::ToGrow, share, Some(601)),
            "301 more rows do not, but packing would not double the insert"
        );
        assert!(
            !b.should_pack(Packing::ToGrow, share, Some(1199)),
            "1,199 rows from the batch's first: one short of twice the share"
        );
        assert!(
            b.should_pack(Packing::ToGrow, share, Some(1200)),
            "twice the share: packing doubles the insert"
        );
        assert!(!b.should_pack(Packing::Never, share, Some(10_000)));
        assert!(b.should_pack(Packing::Always, share * 100, None));
        b.pack().unwrap();
        assert_eq!(b.body.len(), 300_000 - BLOCK_SIZE, "the rest waits");
        assert_eq!(b.raw_len(), 300_000);
        assert!(
            !b.should_pack(Packing::Always, share, None),
            "not one whole block new to pack"
        );
        add_rows(&mut b, 300..530);
        assert!(
            b.should_pack(Packing::ToGrow, usize::MAX, None),
            "packed once: keep packing"
        );
    }

    #[test]
    fn a_partition_holding_more_than_stream_above_streams_whatever_the_share() {
        let mut b = Batch::default();
        // 1.1 MB of rows at 1 KB per row (over a quarter of STREAM_ABOVE); offsets 0..=1099.
        add_rows(&mut b, 0..1100);
        let big = 1 << 30;
        assert!(
            !b.budget_would_cut(big, Some(100_000)),
            "the share holds it"
        );
        assert!(
            !b.worth_streaming(big, Some(1100 + STREAM_ABOVE as i64 / 1000 / 2)),
            "a rest of half STREAM_ABOVE does not stream"
        );
        assert!(
            !b.worth_streaming(big, Some(STREAM_ABOVE as i64 / 1000)),
            "a partition just under STREAM_ABOVE does not"
        );
        assert!(
            b.worth_streaming(big, Some(STREAM_ABOVE as i64 / 1000 + 1)),
            "one row more does"
        );
        assert!(!b.worth_streaming(big, None), "log end not known");
        // A share below STREAM_ABOVE decides as before.
        assert!(b.worth_streaming(2_000_000, Some(2001)));
        assert!(!b.worth_streaming(2_000_000, Some(2000)));
        // Under a quarter of STREAM_ABOVE (a block at least) the batch does not stream yet.
        let mut small = Batch::default();
        add_rows(&mut small, 0..(STREAM_ABOVE as i64 / 1000 / 4 - 1));
        assert!(!small.worth_streaming(big, Some(1 << 40)));
    }

    #[test]
    fn a_streamed_batch_sends_every_row_once_and_keeps_only_offsets() {
        let mut b = Batch::default();
        add_rows(&mut b, 0..300);
        assert!(b.budget_would_cut(600_000, Some(601)));
        assert!(!b.budget_would_cut(600_000, Some(600)), "the rest fits");
        b.start_streaming(None);
        let mut sent = Vec::new();
        // Under `min`: nothing leaves yet.
        assert!(b.take_streamed(400_000, 1024).unwrap().is_none());
        sent.extend_from_slice(&b.take_streamed(1, 1024).unwrap().unwrap());
        assert_eq!(sent.len(), 300_000);
        assert_eq!(b.held_bytes(), 300 * 16, "only the rows' bookkeeping stays");
        add_rows(&mut b, 300..350);
        // The cut still counts every row, sent or not.
        assert_eq!(b.raw_len(), 350_000);
        let s = b.seal().unwrap().unwrap();
        sent.extend_from_slice(&s.stream_tail().unwrap());
        let mut plain = Batch::default();
        add_rows(&mut plain, 0..350);
        assert_eq!(sent, plain.body, "the stream carried exactly the rows");
        assert_eq!(
            (s.rows(), s.raw_len(), s.range.first, s.range.last),
            (350, 350_000, 0, 349)
        );
        assert!(
            s.rows_body(0, 1).is_err(),
            "a streamed batch's rows are gone"
        );
        assert!(
            b.is_empty() && b.streamed.is_none(),
            "the batcher starts over"
        );
    }

    #[test]
    fn a_packed_streamed_batch_sends_its_lz4_blocks() {
        let mut b = Batch::default();
        add_rows(&mut b, 0..600);
        b.pack().unwrap();
        b.start_streaming(None);
        let mut blocks = b.take_streamed(0, 1024).unwrap().unwrap().to_vec();
        add_rows(&mut b, 600..1000);
        blocks.extend_from_slice(&b.take_streamed(0, 1024).unwrap().unwrap());
        add_rows(&mut b, 1000..1010);
        let s = b.seal().unwrap().unwrap();
        blocks.extend_from_slice(&s.stream_tail().unwrap());
        let mut plain = Batch::default();
        add_rows(&mut plain, 0..1010);
        assert_eq!(decode(&blocks), plain.body);
        assert_eq!(s.raw_len(), 1_010_000);
    }

    /// Where each block of a body of ClickHouse LZ4 blocks ends in the uncompressed rows.
    fn block_ends(mut body: &[u8]) -> Vec<usize> {
        let field = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let mut ends = Vec::new();
        let mut raw = 0;
        while !body.is_empty() {
            let (size, len) = (field(body, 17) as usize, field(body, 21) as usize);
            raw += len;
            ends.push(raw);
            body = &body[16 + size..];
        }
        ends
    }

    fn add_sized(b: &mut Batch, offsets: std::ops::Range<i64>, len: usize) {
        for offset in offsets {
            let fill = (offset % 251) as u8;
            let end = b.body_mut().len() + len;
            b.body_mut().resize(end, fill);
            b.row_done(offset);
        }
    }

    #[test]
    fn a_guarded_stream_ends_no_block_but_the_last_where_a_row_ends() {
        // Rows of 1 KiB: every 256 KiB block would end exactly where a row ends.
        let mut b = Batch::default();
        add_sized(&mut b, 0..600, 1024);
        b.start_streaming(Some(Method::Lz4));
        let mut sent = b.take_streamed(0, 1024).unwrap().unwrap().to_vec();
        add_sized(&mut b, 600..1100, 1024);
        sent.extend_from_slice(&b.take_streamed(0, 1024).unwrap().unwrap());
        let before_seal = block_ends(&sent);
        add_sized(&mut b, 1100..1124, 1024);
        let s = b.seal().unwrap().unwrap();
        sent.extend_from_slice(&s.stream_tail().unwrap());
        let ends = block_ends(&sent);
        assert!(before_seal.len() >= 3, "{before_seal:?}");
        assert_eq!(ends[..before_seal.len()], before_seal[..]);
        assert_eq!(
            ends.last(),
            Some(&(1124 * 1024)),
            "the last block ends the last row"
        );
        for e in &ends[..ends.len() - 1] {
            assert_ne!(
                e % 1024,
                0,
                "a block before the last ends where a row ends: {ends:?}"
            );
        }
        let mut plain = Batch::default();
        add_sized(&mut plain, 0..1124, 1024);
        assert_eq!(
            decode(&sent),
            plain.body,
            "the stream carried exactly the rows"
        );
        assert_eq!((s.rows(), s.raw_len()), (1124, 1124 * 1024));
        assert!(
            b.guarded.is_none() && b.streamed.is_none(),
            "the batcher starts over"
        );
    }

    #[test]
    fn a_guarded_stream_of_one_byte_rows_holds_them_to_its_last_block() {
        // No byte of these rows lies inside a row: nothing can leave before the end. Stored
        // blocks (an uncompressed wire) are cut the same way.
        let mut b = Batch::default();
        add_sized(&mut b, 0..300_000, 1);
        b.start_streaming(Some(Method::Stored));
        assert!(b.take_streamed(0, 1024).unwrap().is_none());
        // Rows of two bytes after them: blocks can end inside those.
        add_sized(&mut b, 300_000..600_000, 2);
        let sent = b.take_streamed(0, 1024).unwrap().unwrap().to_vec();
        let s = b.seal().unwrap().unwrap();
        let mut all = sent.clone();
        all.extend_from_slice(&s.stream_tail().unwrap());
        let ends = block_ends(&all);
        assert!(block_ends(&sent).len() >= 2);
        assert!(*ends.first().unwrap() > 300_000, "{ends:?}");
        for e in &ends[..ends.len() - 1] {
            assert_eq!(
                (e - 300_000) % 2,
                1,
                "a block ends where a row ends: {ends:?}"
            );
        }
        assert_eq!(ends.last(), Some(&900_000));
        let mut plain = Batch::default();
        add_sized(&mut plain, 0..300_000, 1);
        add_sized(&mut plain, 300_000..600_000, 2);
        assert_eq!(decode(&all), plain.body);
    }

    #[test]
    fn big_batches_go_early_from_4_mib_whatever_max_bytes_allows() {
        let limits = BatchLimits {
            max_rows: 1_000_000,
            max_bytes: 64 * 1024 * 1024,
            max_age: std::time::Duration::from_secs(1),
        };
        let mut b = Batch::default();
        b.body_mut().resize(HEALTHY_INSERT_BYTES - 1, 1);
        b.row_done(0);
        assert!(!b.worth_sending_early(&limits));
        b.body_mut().push(1);
        b.row_done(1);
        assert!(b.worth_sending_early(&limits));
    }

    /// A Canal event's rows: one message, several rows that stay together when ClickHouse
    /// rejects a part of a batch; every split has offset ranges of its own.
    #[test]
    fn a_message_of_several_rows_is_kept_whole_by_every_split() {
        let mut b = Batch::default();
        b.body_mut().extend_from_slice(b"a");
        b.row_done(10);
        // Message 11: three rows "bb", "c", "ddd".
        let start = b.body_mut().len();
        b.body_mut().extend_from_slice(b"bbcddd");
        b.rows_done(11, &[start + 2, start + 3, start + 6]);
        b.skip_event(12);
        b.body_mut().extend_from_slice(b"e");
        b.row_done(13);
        let s = b.seal().unwrap().unwrap();
        assert_eq!((s.range.first, s.range.last), (10, 13));
        assert_eq!(s.rows(), 5);
        assert_eq!((s.messages(), s.events_skipped, s.skipped), (4, 1, 0));
        assert_eq!(
            (0..5).map(|r| s.row_offset(r).unwrap()).collect::<Vec<_>>(),
            [10, 11, 11, 11, 13]
        );
        assert_eq!(plain(&s, 1, 4), b"bbcddd");
        assert_eq!(plain(&s, 4, 5), b"e");
        // The middle (row 2) is inside message 11: the boundary nearest it is taken.
        assert_eq!(s.split_between_messages(0, 5), Some(1));
        assert_eq!(s.split_between_messages(1, 5), Some(4));
        assert_eq!(s.split_between_messages(0, 4), Some(1));
        assert_eq!(s.split_between_messages(1, 4), None);
        assert_eq!(s.split_between_messages(2, 3), None);
        assert_eq!(s.split_between_messages(4, 5), None);
        // Rows of one message each: the middle, as before.
        let mut b = Batch::default();
        for o in 0..8 {
            b.body_mut().push(b'x');
            b.row_done(o);
        }
        let s = b.seal().unwrap().unwrap();
        assert_eq!(s.split_between_messages(0, 8), Some(4));
        assert_eq!(s.split_between_messages(3, 6), Some(4));
        assert_eq!(s.split_between_messages(5, 6), None);
    }

    #[test]
    fn rows_and_dead_letters_cover_the_range() {
        let mut b = Batch::default();
        b.body_mut().extend_from_slice(b"aa");
        b.row_done(0);
        b.dead_letter(rec(1), "bad".into(), true);
        b.body_mut().extend_from_slice(b"bbb");
        b.row_done(2);
        assert!(b.held_bytes() >= 5 + 4 + 3);
        let s = b.seal().unwrap().unwrap();
        assert_eq!(s.range, OffsetRange { first: 0, last: 2 });
        assert_eq!(s.rows(), 2);
        assert_eq!(plain(&s, 0, 1), b"aa");
        assert_eq!(plain(&s, 1, 2), b"bbb");
        assert_eq!(plain(&s, 0, 2), b"aabbb");
        assert_eq!(s.row_offset(1), Some(2));
        assert_eq!(s.dead.len(), 1);
        assert_eq!(s.dead[0].record.offset, 1);
        assert!(b.is_empty());
        assert_eq!(b.held_bytes(), 0);
        assert!(b.seal().unwrap().is_none());
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
    fn a_backlog_follows_a_batch_that_its_rest_would_fill_or_that_is_healthy_already() {
        let (max_rows, max_bytes) = (1_000_000, 64 << 20);
        let mut small = Batch::default();
        add_rows(&mut small, 0..100);
        // 100 KB of rows, offsets 0..=99, 1 KB a row.
        assert!(
            !small.backlog_after(max_rows, max_bytes, None),
            "log end not known"
        );
        assert!(
            !small.backlog_after(max_rows, max_bytes, Some(100)),
            "nothing after it"
        );
        assert!(
            !small.backlog_after(max_rows, max_bytes, Some(1_000)),
            "900 KB after a small batch: its age cut stands"
        );
        assert!(
            small.backlog_after(max_rows, max_bytes, Some(5_000)),
            "4.9 MB after it: a healthy insert of their own"
        );
        assert!(
            small.backlog_after(max_rows, 200_000, Some(200)),
            "enough to fill the batch"
        );
        let mut healthy = Batch::default();
        add_rows(&mut healthy, 0..5_000);
        assert!(!healthy.backlog_after(max_rows, max_bytes, Some(5_000)));
        assert!(
            healthy.backlog_after(max_rows, max_bytes, Some(5_001)),
            "the end of a backlog joins a healthy batch"
        );
    }

    #[test]
    fn a_stored_batch_buffer_is_kept_only_within_the_lanes_share() {
        let sealed_with = |bytes: usize| {
            let mut b = Batch::with_capacity(bytes);
            b.body_mut().resize(bytes, 7);
            b.row_done(0);
            b.seal().expect("sealed").expect("a row")
        };
        let mut b = Batch::default();
        b.recycle(sealed_with(4096), 1024);
        assert_eq!(b.body.capacity(), 0, "over the share: freed");
        b.recycle(sealed_with(4096), 1 << 20);
        assert!(b.body.capacity() >= 4096, "within the share: kept");
        assert!(b.body.is_empty());

        let mut packed = Batch::default();
        add_rows(&mut packed, 0..600);
        packed.pack().unwrap();
        let sealed = packed.seal().unwrap().unwrap();
        assert!(sealed.packed_raw.is_some());
        assert!(sealed.body.len() < 1 << 20);
        let mut b = Batch::default();
        b.recycle(sealed, 1 << 30);
        assert_eq!(b.body.capacity(), 0, "a packed batch's buffer: freed");
    }

    #[test]
    fn a_packed_batch_starts_a_buffer_of_its_own_mapping() {
        let mut b = Batch::default();
        add_rows(&mut b, 0..300);
        b.pack().unwrap();
        let packed = b.packed.as_ref().unwrap();
        assert!(packed.blocks.capacity() >= PACKED_CAPACITY);
    }
}
