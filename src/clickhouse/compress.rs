//! Request body compression for INSERTs.
//!
//! Guarantees: the caller's uncompressed `Bytes` are never modified, so a retry compresses the
//! very same input again and ClickHouse decompresses it to the very same block (block-hash
//! deduplication on old servers depends on that). `Content-Encoding: lz4` means an LZ4 *frame*
//! (what the `lz4` CLI writes and `lz4_flex::frame` produces); a raw LZ4 block is rejected by
//! ClickHouse with Code 618.

use std::io::Write;

use bytes::Bytes;

/// Body compression setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// None for a server on a loopback address; otherwise LZ4 when the server accepts it,
    /// else gzip. See the module docs of [`crate::clickhouse`] for the measurements behind
    /// this default.
    #[default]
    Auto,
    /// Send the body as is.
    None,
    /// LZ4 frame (`Content-Encoding: lz4`); fails at connect on servers that lack it (18.16).
    Lz4,
    /// gzip, fastest level (`Content-Encoding: gzip`); every server version accepts it.
    Gzip,
}

/// Whether lanes compress their open batches as rows arrive ([`crate::batch`]), sending
/// them as the LZ4 blocks they already are (ClickHouse's own format, `decompress=1`, which
/// every server version reads: [`super::native_lz4`]).
///
/// Why: a batch that is held compressed takes about a fifth of the memory (wide JSON rows as
/// RowBinary: 974 -> 200 bytes), so the same `batch_memory` holds batches five times larger,
/// and ClickHouse spends much less per row on fewer, larger inserts (1M wide rows on 26.9: 16
/// MiB inserts cost the server 12.5 CPU-s, 64 MiB inserts 8.4). Compressing costs sluice about
/// 1 CPU-s per GB of rows, so where the wire itself is uncompressed it is done only when it
/// buys a larger insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Never: the setting says `none` or `gzip`.
    Never,
    /// Every batch: the wire is compressed anyway (`auto` to a remote server), and LZ4 as the
    /// rows arrive costs the same CPU as LZ4 at send time (and far less than gzip, the wire
    /// encoding for servers before 22.x) while holding a fifth of the memory.
    Always,
    /// Only a batch that the memory budget would otherwise cut short, and that packing at
    /// least doubles (`auto` on a loopback server, where an uncompressed body is cheapest when
    /// it fits; see `Batch::packing_pays`).
    ToGrow,
}

impl Packing {
    /// The packing for the configured compression and the wire encoding it resolved to.
    pub fn resolve(wanted: Compression, encoding: Encoding) -> Packing {
        match (wanted, encoding) {
            (Compression::None | Compression::Gzip, _) => Packing::Never,
            (_, Encoding::Identity) => Packing::ToGrow,
            (_, Encoding::Lz4 | Encoding::Gzip) => Packing::Always,
        }
    }
}

/// The LZ4 frame layout of `Content-Encoding: lz4` bodies: independent 256 KiB blocks, the
/// block size of packed batches too ([`super::native_lz4::BLOCK_SIZE`]). Larger blocks than
/// the 64 KiB default compress RowBinary better (wide rows: 21 % instead of 24.5 % of the
/// input; 1 and 4 MiB blocks gain only 0.5 % more), and independent blocks keep the encoder's
/// buffers at one block and its compressed copy.
fn lz4_frame_info() -> lz4_flex::frame::FrameInfo {
    lz4_flex::frame::FrameInfo::new()
        .block_size(lz4_flex::frame::BlockSize::Max256KB)
        .block_mode(lz4_flex::frame::BlockMode::Independent)
}

/// What actually goes on the wire, once the server is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No `Content-Encoding`.
    Identity,
    /// `Content-Encoding: lz4` (LZ4 frame).
    Lz4,
    /// `Content-Encoding: gzip` (level 1).
    Gzip,
}

impl Encoding {
    /// The `Content-Encoding` header value, if any.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Lz4 => Some("lz4"),
            Encoding::Gzip => Some("gzip"),
        }
    }

    /// Resolves a configured [`Compression`] for a server; `Err` when LZ4 is demanded but the
    /// server cannot decode it (silently downgrading a demand would hide a config mistake).
    ///
    /// `Auto`: no compression when the server is on a loopback address (bandwidth is free
    /// there and compression only costs CPU: measured fastest, see [`crate::clickhouse`]), else
    /// LZ4 where accepted, else gzip.
    pub fn resolve(
        wanted: Compression,
        server_lz4: bool,
        loopback: bool,
    ) -> Result<Encoding, &'static str> {
        match (wanted, server_lz4) {
            (Compression::Auto, _) if loopback => Ok(Encoding::Identity),
            (Compression::Auto, true) | (Compression::Lz4, true) => Ok(Encoding::Lz4),
            (Compression::Auto, false) | (Compression::Gzip, _) => Ok(Encoding::Gzip),
            (Compression::None, _) => Ok(Encoding::Identity),
            (Compression::Lz4, false) => Err("the server does not accept Content-Encoding: lz4 \
                                             (ClickHouse before 22.x); use gzip or auto"),
        }
    }

    /// Compresses `body` for the wire. `Identity` returns the same `Bytes` (no copy).
    pub fn encode(self, body: &Bytes) -> std::io::Result<Bytes> {
        match self {
            Encoding::Identity => Ok(body.clone()),
            Encoding::Lz4 => {
                // Frame overhead is small; LZ4 output for RowBinary is typically 30-60% of input.
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(
                    lz4_frame_info(),
                    Vec::with_capacity(body.len() / 2 + 64),
                );
                enc.write_all(body)?;
                let out = enc.finish().map_err(std::io::Error::other)?;
                Ok(Bytes::from(out))
            }
            Encoding::Gzip => {
                // Level 1: gzip is the fallback for old servers, where CPU per byte matters more
                // than the last percent of ratio.
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 2 + 64),
                    flate2::Compression::fast(),
                );
                enc.write_all(body)?;
                Ok(Bytes::from(enc.finish()?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn resolve_rules() {
        use Compression as C;
        assert_eq!(Encoding::resolve(C::Auto, true, false), Ok(Encoding::Lz4));
        assert_eq!(Encoding::resolve(C::Auto, false, false), Ok(Encoding::Gzip));
        assert_eq!(
            Encoding::resolve(C::Auto, true, true),
            Ok(Encoding::Identity)
        );
        assert_eq!(
            Encoding::resolve(C::Auto, false, true),
            Ok(Encoding::Identity)
        );
        assert_eq!(
            Encoding::resolve(C::None, true, false),
            Ok(Encoding::Identity)
        );
        assert_eq!(Encoding::resolve(C::Gzip, true, true), Ok(Encoding::Gzip));
        assert_eq!(Encoding::resolve(C::Lz4, true, true), Ok(Encoding::Lz4));
        assert!(Encoding::resolve(C::Lz4, false, false).is_err());
    }

    #[test]
    fn batches_are_packed_unless_the_setting_says_none_or_gzip() {
        use Compression as C;
        use Encoding as E;
        assert_eq!(Packing::resolve(C::Auto, E::Lz4), Packing::Always);
        assert_eq!(Packing::resolve(C::Lz4, E::Lz4), Packing::Always);
        // auto to a remote server before 22.x: gzip on the wire, packed batches in LZ4 blocks
        assert_eq!(Packing::resolve(C::Auto, E::Gzip), Packing::Always);
        assert_eq!(Packing::resolve(C::Auto, E::Identity), Packing::ToGrow);
        assert_eq!(Packing::resolve(C::None, E::Identity), Packing::Never);
        assert_eq!(Packing::resolve(C::Gzip, E::Gzip), Packing::Never);
    }

    #[test]
    fn round_trips() {
        let body = Bytes::from(
            (0..100_000u32)
                .flat_map(|i| (i % 97).to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        let lz = Encoding::Lz4.encode(&body).expect("lz4");
        let mut back = Vec::new();
        lz4_flex::frame::FrameDecoder::new(&lz[..])
            .read_to_end(&mut back)
            .expect("lz4 decode");
        assert_eq!(back, body);
        // Deterministic: the same input gives the same output.
        assert_eq!(Encoding::Lz4.encode(&body).expect("lz4"), lz);

        let gz = Encoding::Gzip.encode(&body).expect("gzip");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .expect("gz decode");
        assert_eq!(back, body);

        let id = Encoding::Identity.encode(&body).expect("identity");
        assert_eq!(id.as_ptr(), body.as_ptr());
        assert_eq!(Encoding::Lz4.header(), Some("lz4"));
    }
}
