//! ClickHouse's own compressed block format, the one an HTTP request body is read in when the
//! URL says `decompress=1`.
//!
//! Why this and not `Content-Encoding: lz4`: every server version sluice supports reads it
//! (18.16 included, which knows no LZ4 content encoding), and each block carries a checksum
//! the server verifies before it parses a row, so a body damaged in memory or on the way is
//! refused, never stored.
//!
//! A block is: CityHash128 (v1.0.2, the version ClickHouse links) of the rest of the block,
//! then method `0x82` (LZ4), the block's compressed size including this 9-byte header (u32
//! LE), the uncompressed size (u32 LE), and one LZ4 block. A body is any number of blocks
//! back to back; they decompress to the concatenation of their data.
//!
//! A *stored* block has the same checksum and header with method `0x02` (ClickHouse's `NONE`
//! codec) and the data as it is. sluice frames guarded streams that way on an uncompressed
//! wire (`clickhouse::stream`): the framing is what they need, not the compression, and the
//! checksum costs a fraction of compressing (18.16 and 26.9 read it, checked by real inserts).

use std::io;

/// Bytes of checksum before a block's header.
const CHECKSUM: usize = 16;
/// Method byte, compressed size, uncompressed size.
const HEADER: usize = 9;
const METHOD_LZ4: u8 = 0x82;
const METHOD_NONE: u8 = 0x02;

/// How a block holds its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// LZ4-compressed ([`append_block`]).
    Lz4,
    /// As it is ([`append_stored_block`]).
    Stored,
}

/// The method of the block that `blocks` starts with, if it starts with one.
pub fn first_method(blocks: &[u8]) -> Option<Method> {
    match blocks.get(CHECKSUM) {
        Some(&METHOD_LZ4) => Some(Method::Lz4),
        Some(&METHOD_NONE) => Some(Method::Stored),
        _ => None,
    }
}

/// Appends `data` to `out` as one block of `method`.
pub fn append_block_as(out: &mut Vec<u8>, data: &[u8], method: Method) -> io::Result<()> {
    match method {
        Method::Lz4 => append_block(out, data),
        Method::Stored => append_stored_block(out, data),
    }
}

/// Appends `data` to `out` as one stored block: checksum, header (method `0x02`), the data.
pub fn append_stored_block(out: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
    let too_big = || io::Error::other("a compressed block holds less than 4 GiB");
    let raw = u32::try_from(data.len()).map_err(|_| too_big())?;
    let size = u32::try_from(HEADER + data.len()).map_err(|_| too_big())?;
    let start = out.len();
    out.resize(start + CHECKSUM, 0);
    out.push(METHOD_NONE);
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&raw.to_le_bytes());
    out.extend_from_slice(data);
    let sum = checksum(&out[start + CHECKSUM..]);
    out[start..start + CHECKSUM].copy_from_slice(&sum);
    Ok(())
}

/// Uncompressed bytes per block: large enough for LZ4 to find RowBinary's repeats across rows
/// (wide rows compress to 21 % at 256 KiB, 24.5 % at 64 KiB), small enough that a batch's
/// unpacked tail stays small. The server reads blocks up to 1 GiB.
pub const BLOCK_SIZE: usize = 256 * 1024;

/// Appends `data` to `out` as one compressed block (any size below 4 GiB is valid; sluice
/// cuts its rows at [`BLOCK_SIZE`]).
pub fn append_block(out: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
    let raw = u32::try_from(data.len())
        .map_err(|_| io::Error::other("a compressed block holds less than 4 GiB"))?;
    let start = out.len();
    let bound = lz4_flex::block::get_maximum_output_size(data.len());
    out.resize(start + CHECKSUM + HEADER + bound, 0);
    let compressed = lz4_flex::block::compress_into(data, &mut out[start + CHECKSUM + HEADER..])
        .map_err(io::Error::other)?;
    out.truncate(start + CHECKSUM + HEADER + compressed);
    let size = u32::try_from(HEADER + compressed)
        .map_err(|_| io::Error::other("a compressed block holds less than 4 GiB"))?;
    let block = &mut out[start..];
    block[CHECKSUM] = METHOD_LZ4;
    block[CHECKSUM + 1..CHECKSUM + 5].copy_from_slice(&size.to_le_bytes());
    block[CHECKSUM + 5..CHECKSUM + 9].copy_from_slice(&raw.to_le_bytes());
    let sum = checksum(&block[CHECKSUM..]);
    block[..CHECKSUM].copy_from_slice(&sum);
    Ok(())
}

/// Decompresses a body of blocks, checking each block's checksum; `Err` names what is wrong
/// (a body sluice compressed itself only fails this if memory was corrupted).
pub fn decompress(mut body: &[u8], size_hint: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size_hint);
    while !body.is_empty() {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
        if body.len() < CHECKSUM + HEADER {
            return Err(bad("a compressed block is cut short in its header"));
        }
        let field = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&body[CHECKSUM + at..CHECKSUM + at + 4]);
            u32::from_le_bytes(b) as usize
        };
        let method = body[CHECKSUM];
        if method != METHOD_LZ4 && method != METHOD_NONE {
            return Err(bad("a compressed block is neither LZ4 nor stored"));
        }
        let size = field(1);
        let raw = field(5);
        if size < HEADER || body.len() < CHECKSUM + size {
            return Err(bad("a compressed block is cut short in its data"));
        }
        let block = &body[CHECKSUM..CHECKSUM + size];
        if checksum(block)[..] != body[..CHECKSUM] {
            return Err(bad("a compressed block does not match its checksum"));
        }
        let n = if method == METHOD_NONE {
            out.extend_from_slice(&block[HEADER..]);
            block.len() - HEADER
        } else {
            let start = out.len();
            out.resize(start + raw, 0);
            lz4_flex::block::decompress_into(&block[HEADER..], &mut out[start..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        };
        if n != raw {
            return Err(bad(
                "a compressed block decompressed to another size than it says",
            ));
        }
        body = &body[CHECKSUM + size..];
    }
    Ok(out)
}

/// The checksum as ClickHouse lays it out: the hash's high half first, each half little-endian.
fn checksum(block: &[u8]) -> [u8; CHECKSUM] {
    let h = cityhash_rs::cityhash_102_128(block);
    let mut out = [0u8; CHECKSUM];
    out[..8].copy_from_slice(&((h >> 64) as u64).to_le_bytes());
    out[8..].copy_from_slice(&(h as u64).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn checksums_match_clickhouses_cityhash() {
        // Reference values from clickhouse-cityhash (the CityHash that clickhouse-driver
        // uses), laid out as a server accepted them in a `decompress=1` insert (18.16, 26.9).
        assert_eq!(hex(&checksum(b"")), "2b9ac064fc9df03d291ee592c340b53c");
        assert_eq!(
            hex(&checksum(b"sluice")),
            "474cfa5e247c3686addb40c97a8df7e6"
        );
        let bytes: Vec<u8> = (0..3).flat_map(|_| 0..=255u8).collect();
        assert_eq!(hex(&checksum(&bytes)), "7159c62ab6f9e5df0fcc5ecc5cfde705");
    }

    #[test]
    fn blocks_round_trip_and_damage_is_refused() {
        let data: Vec<u8> = (0..700_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut body = Vec::new();
        for part in data.chunks(BLOCK_SIZE) {
            append_block(&mut body, part).unwrap();
        }
        append_block(&mut body, b"").unwrap();
        assert!(
            body.len() < data.len() / 2,
            "compressed: {} bytes",
            body.len()
        );
        assert_eq!(decompress(&body, data.len()).unwrap(), data);

        let mut flipped = body.clone();
        let at = CHECKSUM + HEADER + 100;
        flipped[at] ^= 1;
        let err = decompress(&flipped, 0).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        let err = decompress(&body[..body.len() - 1], 0).unwrap_err();
        assert!(err.to_string().contains("cut short"), "{err}");
    }

    #[test]
    fn stored_blocks_round_trip_between_lz4_ones() {
        let mut body = Vec::new();
        append_block_as(&mut body, b"abc", Method::Stored).unwrap();
        append_block_as(&mut body, b"defdefdefdef", Method::Lz4).unwrap();
        append_stored_block(&mut body, b"").unwrap();
        assert_eq!(body[CHECKSUM], METHOD_NONE);
        assert_eq!(&body[CHECKSUM + HEADER..CHECKSUM + HEADER + 3], b"abc");
        assert_eq!(decompress(&body, 0).unwrap(), b"abcdefdefdefdef");
        let mut flipped = body.clone();
        flipped[CHECKSUM + HEADER + 1] ^= 1;
        let err = decompress(&flipped, 0).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
