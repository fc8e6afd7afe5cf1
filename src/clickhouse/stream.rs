//! An INSERT whose body is sent while its rows are still being encoded.
//!
//! # What is stored when
//! The body goes out as HTTP/1.1 chunks. ClickHouse (>= 20.x, ClickHouse#9666) parses them as
//! they come but stores nothing until the body's last chunk has arrived: an INSERT of fewer
//! rows and bytes than one insert block (`min_insert_block_size_rows` / `_bytes`, 1,048,449
//! rows and 256 MiB by default, above sluice's batch limits) becomes one part at its end.
//! So:
//! - [`InsertStream::finish`] sends the last chunk and waits for the answer: from then on the
//!   rows may be stored, exactly like a held batch once its POST is on the wire;
//! - a stream dropped without `finish` (the lane failed, was fenced, or the process died)
//!   ends its body with an error instead of the last chunk: the connection is closed
//!   mid-body and the server stores nothing of it. `tests/clickhouse_client.rs` checks both
//!   against the real server.
//!
//! ClickHouse 18.16 (and any server before ClickHouse#9666) stores what it parsed of a body
//! cut off at a row boundary, and an insert cut off inside a row not at all (checked against
//! the real 18.16: a cut after two whole rows stored two, a cut five bytes into the third row
//! stored nothing). There a stream is [`Streaming::Guarded`]: its body is ClickHouse's own
//! block format (`decompress=1`: checksum, sizes, data; LZ4 on a compressed wire, stored as
//! it is on an uncompressed one, `native_lz4`), and every block but the last ends strictly
//! inside a row (`Batch::start_streaming`). A body cut off inside a block fails its checksum or its size; a
//! body cut off after a whole block ends inside a row and fails as a row cut short; the rows
//! of an insert below `max_insert_block_size` form one block the server writes only at the
//! body's end. So only the whole body can be stored, and its last block (the end of its last
//! row) leaves after the in-flight record: the same promise as above, kept by the framing.
//!
//! The lane decides what to do when a stream fails (`lane.rs`: the range is read back from
//! Kafka and sent as a held batch); nothing here retries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::client::InsertAck;
use super::compress::{Encoding, Packing};
use super::native_lz4::Method;
use super::version::ServerInfo;
use super::InsertError;

/// How the connected server takes streamed inserts (`Client::streaming`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streaming {
    /// Not at all: switched off, or a wire that cannot go out in pieces (gzip, or no
    /// compressed blocks for a server that needs them).
    Off,
    /// The server stores nothing of a body cut off before its last chunk (>= 22.2, which also
    /// has the token a streamed range is named by): rows or LZ4 blocks, cut anywhere.
    Safe,
    /// The server stores what it parsed of a cut-off body (see the module docs): blocks
    /// (`blocks`: LZ4 on a compressed wire, stored on an uncompressed one) that end inside
    /// rows, for batches of at most `max_rows` rows (the server's `max_insert_block_size`,
    /// so that its rows are one block, written at the body's end).
    Guarded { max_rows: u64, blocks: Method },
}

impl Streaming {
    /// How to stream to `server`, reached over `encoding` with `packing`; `block_rows`: its
    /// `max_insert_block_size` (`None` if it could not be read).
    ///
    /// A body has to go out in pieces: uncompressed rows, or ClickHouse's own blocks (not
    /// gzip, whose stream is one piece). A server with the deduplication token (>= 22.2, how
    /// a streamed range is named) stores nothing of a body cut off before its end; an older
    /// one (ClickHouse#9666: 18.16 stores the rows it had received) takes guarded streams
    /// (see the module docs): LZ4 blocks where the wire is compressed, stored blocks (framing
    /// without compression, read since 18.16) where it is not, and its block size known.
    pub fn resolve(
        wanted: bool,
        server: &ServerInfo,
        encoding: Encoding,
        packing: Packing,
        block_rows: Option<u64>,
    ) -> Streaming {
        if !wanted {
            return Streaming::Off;
        }
        if server.supports_dedup_token {
            return if packing != Packing::Never || encoding == Encoding::Identity {
                Streaming::Safe
            } else {
                Streaming::Off
            };
        }
        let blocks = match (encoding, packing) {
            (Encoding::Identity, _) if server.version.at_least(18, 16) => Some(Method::Stored),
            (Encoding::Identity, _) | (_, Packing::Never) => None,
            (_, Packing::Always | Packing::ToGrow) => Some(Method::Lz4),
        };
        match (blocks, block_rows) {
            (Some(blocks), Some(max_rows)) => Streaming::Guarded { max_rows, blocks },
            _ => Streaming::Off,
        }
    }
}

/// Chunks waiting to be sent, per stream: two of about a megabyte each bound what a stream
/// holds while the server is slower than the lane.
const QUEUED_CHUNKS: usize = 2;

/// The sending half of a streamed body.
pub struct BodySender {
    tx: mpsc::Sender<Bytes>,
    /// Set by [`InsertStream::finish`]: the body may end normally.
    complete: Arc<AtomicBool>,
}

/// A channel whose receiving half is a request body: `first` (the format's header, may be
/// empty), then what is sent; it ends with the last chunk only once the sender marked it
/// complete, and with an error (so the server sees a cut-off body) when the sender is
/// dropped before that.
pub(super) fn body_channel(first: Bytes) -> (BodySender, reqwest::Body) {
    use futures::StreamExt;
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
    let complete = Arc::new(AtomicBool::new(false));
    let done = complete.clone();
    // An empty chunk is left out: nothing to send, and no chunk of length 0 on the wire.
    let head = futures::stream::iter((!first.is_empty()).then_some(Ok(first)));
    let chunks = head.chain(futures::stream::unfold(
        (rx, done),
        |(mut rx, done)| async move {
            match rx.recv().await {
                Some(chunk) => Some((Ok(chunk), (rx, done))),
                None if done.load(Ordering::Acquire) => None,
                None => Some((
                    Err(std::io::Error::other(
                        "insert stream abandoned before its end",
                    )),
                    (rx, done),
                )),
            }
        },
    ));
    (
        BodySender { tx, complete },
        reqwest::Body::wrap_stream(chunks),
    )
}

/// An INSERT in progress (see the module docs).
pub struct InsertStream {
    body: Option<BodySender>,
    task: JoinHandle<Result<InsertAck, InsertError>>,
    /// Bytes handed to the body so far.
    sent: usize,
}

impl InsertStream {
    pub(super) fn new(body: BodySender, task: JoinHandle<Result<InsertAck, InsertError>>) -> Self {
        InsertStream {
            body: Some(body),
            task,
            sent: 0,
        }
    }

    /// Queues `chunk` for the body, waiting while `QUEUED_CHUNKS` are queued. False when
    /// the request has already ended (the server answered early, which for an unfinished
    /// body means an error; [`InsertStream::finish`] returns it).
    pub async fn send(&mut self, chunk: Bytes) -> bool {
        let Some(body) = &self.body else {
            return false;
        };
        let len = chunk.len();
        if body.tx.send(chunk).await.is_err() {
            return false;
        }
        self.sent += len;
        true
    }

    /// Bytes handed to the body so far.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Ends the body with its last chunk and waits for ClickHouse's answer.
    pub async fn finish(mut self) -> Result<InsertAck, InsertError> {
        if let Some(body) = self.body.take() {
            body.complete.store(true, Ordering::Release);
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(InsertError::Retryable {
                code: None,
                message: format!("insert stream task failed: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clickhouse::version::Version;

    fn server(major: u32, minor: u32) -> ServerInfo {
        ServerInfo::from_version(Version::new(major, minor, 1), "")
    }

    #[test]
    fn servers_with_tokens_stream_plainly_where_the_body_goes_in_pieces() {
        let modern = server(26, 9);
        let resolve = |e, p| Streaming::resolve(true, &modern, e, p, Some(1_048_449));
        assert_eq!(
            resolve(Encoding::Identity, Packing::ToGrow),
            Streaming::Safe
        );
        assert_eq!(resolve(Encoding::Identity, Packing::Never), Streaming::Safe);
        assert_eq!(resolve(Encoding::Lz4, Packing::Always), Streaming::Safe);
        // compression = "gzip": one gzip stream per body.
        assert_eq!(resolve(Encoding::Gzip, Packing::Never), Streaming::Off);
        let off = Streaming::resolve(false, &modern, Encoding::Identity, Packing::ToGrow, None);
        assert_eq!(off, Streaming::Off);
    }

    #[test]
    fn old_servers_stream_guarded_in_blocks_that_fit_the_wire() {
        let old = server(18, 16);
        let resolve = |e, p, rows| Streaming::resolve(true, &old, e, p, rows);
        let guarded = |blocks| Streaming::Guarded {
            max_rows: 1_048_576,
            blocks,
        };
        // `auto` to a loopback server, or "none": stored blocks.
        let rows = Some(1_048_576);
        assert_eq!(
            resolve(Encoding::Identity, Packing::ToGrow, rows),
            guarded(Method::Stored)
        );
        assert_eq!(
            resolve(Encoding::Identity, Packing::Never, rows),
            guarded(Method::Stored)
        );
        // `auto` to a remote one: gzip on the wire, batches packed in LZ4 blocks.
        assert_eq!(
            resolve(Encoding::Gzip, Packing::Always, rows),
            guarded(Method::Lz4)
        );
        assert_eq!(
            resolve(Encoding::Gzip, Packing::Never, rows),
            Streaming::Off
        );
        // Its block size unknown: an insert might be written in pieces.
        assert_eq!(
            resolve(Encoding::Identity, Packing::ToGrow, None),
            Streaming::Off
        );
        // Before 18.16 stored blocks were not checked: LZ4 only.
        let older = server(18, 14);
        let r = |e, p| Streaming::resolve(true, &older, e, p, rows);
        assert_eq!(r(Encoding::Identity, Packing::ToGrow), Streaming::Off);
        assert_eq!(r(Encoding::Gzip, Packing::Always), guarded(Method::Lz4));
    }
}
