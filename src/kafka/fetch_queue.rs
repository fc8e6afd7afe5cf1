//! Fetched messages of every assigned partition on one application queue of their own,
//! taken from librdkafka in batches.
//!
//! Why: `BaseConsumer::poll` hands out one message per call, and each call costs two clock
//! reads, a queue lock, an event wrapper and an `Arc` (~27 % of sluice's CPU in the profile,
//! all on the single poll thread). `rd_kafka_consume_batch_queue` takes up to a few thousand
//! messages under one call. It must not run on the consumer queue itself: met there, a
//! rebalance event would be served by librdkafka's default handler (a forced unassign) instead
//! of sluice's, which drains and commits the lanes. So each partition's fetch queue is
//! forwarded to this queue *before* the partition is assigned (in the rebalance callback, ahead
//! of `assign`), and the consumer queue keeps only rebalances, commits, statistics and errors.
//!
//! What holds: one FIFO per partition stays a FIFO (forwarding appends in fetch order), so
//! per-partition order is kept. Pause/resume and revoke work as with `poll`: librdkafka bumps the
//! partition's version, and messages of an older version still waiting here are dropped by
//! the batch call, never returned. The application position (what a resume fetches from) is
//! advanced by the batch call for every message it returns.
//!
//! Lifetime: the queue and the partition queue handles must be destroyed before the client
//! (`rd_kafka_destroy` waits for them); [`FetchQueue::close`] does that and the poll loop calls
//! it before it drops the consumer, also when it unwinds.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::ptr;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::bindings as rd;

use super::records::RecordChunk;

/// The application queue plus the partitions forwarded into it.
pub struct FetchQueue {
    inner: Mutex<Inner>,
}

struct Inner {
    rk: *mut rd::rd_kafka_t,
    queue: *mut rd::rd_kafka_queue_t,
    forwarded: HashSet<(String, i32)>,
}

// SAFETY: librdkafka's queue and client handles are thread-safe (every librdkafka call on them
// locks internally); the raw pointers are only used behind the mutex and never after `close`.
unsafe impl Send for Inner {}

impl FetchQueue {
    /// A new, empty application queue on client `rk`.
    ///
    /// # Safety
    /// `rk` must be a live consumer handle, and [`FetchQueue::close`] must be called before it
    /// is destroyed.
    pub unsafe fn new(rk: *mut rd::rd_kafka_t) -> Option<FetchQueue> {
        let queue = unsafe { rd::rd_kafka_queue_new(rk) };
        if queue.is_null() {
            return None;
        }
        Some(FetchQueue {
            inner: Mutex::new(Inner {
                rk,
                queue,
                forwarded: HashSet::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forwards the partition's fetched messages to this queue. Called on every assignment of
    /// the partition, not once: librdkafka clears a fetch queue's forwarding when it stops
    /// fetching (revoke), and once an application has forwarded a queue it no longer forwards
    /// it to the consumer queue itself, so a re-assigned partition must be forwarded again.
    /// Returns false when librdkafka has no such partition handle (or after `close`): its
    /// messages then stay on the consumer queue, which the poll loop also serves.
    pub fn route(&self, topic: &str, partition: i32) -> bool {
        let mut inner = self.lock();
        if inner.queue.is_null() {
            return false;
        }
        let Ok(name) = CString::new(topic) else {
            return false;
        };
        // SAFETY: rk and queue are live until `close`, which takes the same lock.
        unsafe {
            let pq = rd::rd_kafka_queue_get_partition(inner.rk, name.as_ptr(), partition);
            if pq.is_null() {
                return false;
            }
            rd::rd_kafka_queue_forward(pq, inner.queue);
            // The handle is only a reference: the forwarding belongs to the partition's queue.
            rd::rd_kafka_queue_destroy(pq);
        }
        inner.forwarded.insert((topic.to_string(), partition));
        true
    }

    /// Takes up to `max` messages into `batch` (emptied first), waiting up to `wait` for the
    /// first one; returns how many arrived.
    pub fn consume(&self, batch: &mut MessageBatch, wait: Duration, max: usize) -> usize {
        batch.clear();
        let queue = self.lock().queue;
        if queue.is_null() || max == 0 {
            return 0;
        }
        // Grown once and kept: filling 8,192 null pointers on every call showed up as memset
        // in the profile.
        if batch.ptrs.len() < max {
            batch.ptrs.resize(max, ptr::null_mut());
        }
        let timeout = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // Block for the first message only: a blocking call for `max` would wait until that
        // many arrive. Then take whatever else is already there without waiting.
        let mut n = 0usize;
        // SAFETY: the queue lives until `close`, which is called on this same (poll) thread
        // after the last `consume`; `ptrs` has room for `max` pointers.
        unsafe {
            if timeout > 0 {
                let got =
                    rd::rd_kafka_consume_batch_queue(queue, timeout, batch.ptrs.as_mut_ptr(), 1);
                if got <= 0 {
                    return 0;
                }
                n = 1;
            }
            let got =
                rd::rd_kafka_consume_batch_queue(queue, 0, batch.ptrs.as_mut_ptr().add(n), max - n);
            n += usize::try_from(got).unwrap_or(0);
        }
        batch.len = n;
        n
    }

    /// The partition's log end as librdkafka last saw it in a fetch response (no request is
    /// made); `None` when it has none yet or after `close`.
    pub fn cached_log_end(&self, topic: &str, partition: i32) -> Option<i64> {
        let inner = self.lock();
        if inner.queue.is_null() {
            return None;
        }
        let name = CString::new(topic).ok()?;
        let (mut lo, mut hi) = (-1i64, -1i64);
        // SAFETY: rk is live until `close` (same lock); lo/hi are written by the call.
        let err = unsafe {
            rd::rd_kafka_get_watermark_offsets(inner.rk, name.as_ptr(), partition, &mut lo, &mut hi)
        };
        (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && hi >= 0).then_some(hi)
    }

    /// The partition's application position: the offset after the last record librdkafka
    /// handed out, and past the transaction markers (control records) it skips without handing
    /// them out. `None` when it has none or after `close`.
    pub fn cached_position(&self, topic: &str, partition: i32) -> Option<i64> {
        let inner = self.lock();
        if inner.queue.is_null() {
            return None;
        }
        let name = CString::new(topic).ok()?;
        // SAFETY: the list is created, read and destroyed here; rk is live until `close` (same
        // lock). `add` returns a pointer into the list, valid until the list is destroyed.
        unsafe {
            let list = rd::rd_kafka_topic_partition_list_new(1);
            if list.is_null() {
                return None;
            }
            rd::rd_kafka_topic_partition_list_add(list, name.as_ptr(), partition);
            let err = rd::rd_kafka_position(inner.rk, list);
            let first = (*list).elems;
            let pos = (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                && !first.is_null()
                && (*first).err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
                .then(|| (*first).offset)
                .filter(|&o| o >= 0);
            rd::rd_kafka_topic_partition_list_destroy(list);
            pos
        }
    }

    /// Unforwards every partition and destroys the queue (dropping what it still holds: those
    /// messages are not committed, so they are read again). Safe to call twice.
    pub fn close(&self) {
        let mut inner = self.lock();
        if inner.queue.is_null() {
            return;
        }
        let forwarded: Vec<(String, i32)> = inner.forwarded.drain().collect();
        // SAFETY: rk is still live (the caller closes before dropping the consumer).
        unsafe {
            for (topic, partition) in forwarded {
                let Ok(name) = CString::new(topic) else {
                    continue;
                };
                let pq = rd::rd_kafka_queue_get_partition(inner.rk, name.as_ptr(), partition);
                if !pq.is_null() {
                    rd::rd_kafka_queue_forward(pq, ptr::null_mut());
                    rd::rd_kafka_queue_destroy(pq);
                }
            }
            rd::rd_kafka_queue_destroy(inner.queue);
        }
        inner.queue = ptr::null_mut();
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // The poll loop closes explicitly before dropping the consumer; this only covers a
        // FetchQueue dropped on its own while the client is still alive.
        self.close();
    }
}

/// Messages of one `consume` call; destroyed (returned to librdkafka) on `clear` and drop.
#[derive(Default)]
pub struct MessageBatch {
    /// `ptrs[..len]` are the messages of the last `consume`; the rest is spare room.
    ptrs: Vec<*mut rd::rd_kafka_message_t>,
    len: usize,
}

impl MessageBatch {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> Option<RawMessage<'_>> {
        let p = *self.ptrs.get(..self.len)?.get(i)?;
        // SAFETY: non-null pointers from rd_kafka_consume_batch_queue, alive until `clear`,
        // which needs `&mut self` and so cannot run while a RawMessage borrows the batch.
        unsafe { p.as_ref() }.map(|m| RawMessage { m })
    }

    pub fn clear(&mut self) {
        let n = std::mem::take(&mut self.len);
        for p in self.ptrs.iter_mut().take(n) {
            let m = std::mem::replace(p, ptr::null_mut());
            if !m.is_null() {
                // SAFETY: each message is destroyed exactly once (its slot is nulled).
                unsafe { rd::rd_kafka_message_destroy(m) };
            }
        }
    }
}

impl Drop for MessageBatch {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One message (or a per-partition error) borrowed from its batch.
#[derive(Clone, Copy)]
pub struct RawMessage<'a> {
    m: &'a rd::rd_kafka_message_t,
}

impl<'a> RawMessage<'a> {
    /// The error librdkafka reports in place of a message (e.g. offset out of range), with
    /// its text; `None` for a message.
    pub fn error(&self) -> Option<String> {
        if self.m.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        // SAFETY: both return static or message-owned NUL-terminated strings (or null).
        let (name, detail) = unsafe {
            (
                cstr(rd::rd_kafka_err2str(self.m.err)),
                cstr(rd::rd_kafka_message_errstr(self.m)),
            )
        };
        Some(match (name, detail) {
            (Some(n), Some(d)) if n != d => format!("{n}: {d}"),
            (Some(n), _) => n,
            (None, Some(d)) => d,
            (None, None) => format!("{:?}", self.m.err),
        })
    }

    /// The topic handle, the same pointer for every message of a topic within a batch.
    pub fn topic_handle(&self) -> *const rd::rd_kafka_topic_t {
        self.m.rkt
    }

    pub fn topic(&self) -> Option<&'a str> {
        if self.m.rkt.is_null() {
            return None;
        }
        // SAFETY: the message holds a reference on its topic handle, whose name is a
        // NUL-terminated string that lives as long as the handle.
        unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.m.rkt)) }
            .to_str()
            .ok()
    }

    pub fn partition(&self) -> i32 {
        self.m.partition
    }

    pub fn offset(&self) -> i64 {
        self.m.offset
    }

    fn bytes(p: *const std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
        if p.is_null() {
            None
        } else {
            // SAFETY: librdkafka's payload/key pointer with its length, owned by the message.
            Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
        }
    }

    pub fn payload(&self) -> Option<&'a [u8]> {
        Self::bytes(self.m.payload, self.m.len)
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        Self::bytes(self.m.key, self.m.key_len)
    }

    pub fn timestamp_ms(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a live message; `kind` is written by the call.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.m, &mut kind) };
        (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0)
            .then_some(ts)
    }

    /// Appends the message to `chunk`.
    pub fn push_to(&self, chunk: &mut RecordChunk) {
        let mut hdrs: *mut rd::rd_kafka_headers_t = ptr::null_mut();
        // Not even asked for when the chunk skips them: librdkafka parses them into a list it
        // allocates (and the message frees) whenever the record has a header section, which
        // every v2 record has, empty or not (see `records`).
        // SAFETY: `rd_kafka_message_headers` takes a const message in C (bindgen says mut); it
        // parses the headers lazily and keeps them owned by the message.
        let has = chunk.reads_headers()
            && unsafe { rd::rd_kafka_message_headers(ptr::from_ref(self.m).cast_mut(), &mut hdrs) }
                == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            && !hdrs.is_null();
        let headers = HeaderIter {
            hdrs: if has { hdrs } else { ptr::null_mut() },
            idx: 0,
            _msg: std::marker::PhantomData,
        };
        chunk.push_parts(
            self.offset(),
            self.timestamp_ms(),
            self.key(),
            self.payload(),
            headers,
        );
    }
}

struct HeaderIter<'a> {
    hdrs: *mut rd::rd_kafka_headers_t,
    idx: usize,
    _msg: std::marker::PhantomData<&'a ()>,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.hdrs.is_null() {
            return None;
        }
        let mut name: *const std::ffi::c_char = ptr::null();
        let mut value: *const std::ffi::c_void = ptr::null();
        let mut size: usize = 0;
        // SAFETY: the header list belongs to the message, which outlives 'a.
        let err = unsafe {
            rd::rd_kafka_header_get_all(self.hdrs, self.idx, &mut name, &mut value, &mut size)
        };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            return None;
        }
        self.idx += 1;
        // SAFETY: NUL-terminated name and a value of `size` bytes, owned by the header list.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        Some((name, RawMessage::bytes(value, size)))
    }
}

/// # Safety
/// `p` is null or a NUL-terminated string.
unsafe fn cstr(p: *const std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}
