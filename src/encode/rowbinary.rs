//! RowBinary primitives: pure functions that append one value's wire bytes to a `Vec<u8>`.
//!
//! Guarantees:
//! - Every function only appends to `out`; none reads global state, allocates besides growing
//!   `out`, or panics.
//! - The layouts are the ones ClickHouse's RowBinary and RowBinaryWithDefaults formats read,
//!   and are proven against a real server by `tests/rowbinary_roundtrip.rs`:
//!   * integers and floats are little-endian; 128/256-bit integers are two's complement,
//!     little-endian, 16/32 bytes;
//!   * lengths and element counts are unsigned LEB128 varints;
//!   * `UUID` is the 128-bit number as two little-endian `u64`s, the *high* half first (so it is
//!     not the RFC byte order, and not a plain little-endian `u128` either);
//!   * `IPv4` is its `u32` value little-endian; `IPv6` is its 16 bytes in network order;
//!   * `Date` is `u16` days, `Date32` `i32` days, `DateTime` `u32` seconds, `DateTime64` `i64`
//!     ticks of 10^-P s, all since 1970-01-01 UTC;
//!   * `Decimal(P, S)` is the unscaled integer in 4/8/16/32 bytes for P <= 9/18/38/76;
//!   * `Nullable` is a one-byte prefix, 1 = NULL (nothing follows), 0 = value follows;
//!   * `LowCardinality(T)` is sent as `T`; `Enum8/16` as their `i8`/`i16` value;
//!   * `Array` and `Map` are a varint count then the elements (`Map`: key, value, key, ...);
//!     `Tuple` is its elements in order;
//!   * RowBinaryWithDefaults puts one byte before every column: 1 = use the column's DEFAULT
//!     (nothing follows), 0 = the value follows.
//!
//! Range checking is the caller's job: these functions encode what they are given, and the
//! typed signatures make an out-of-range value unrepresentable except for [`put_fixed_string`]
//! (checked) and [`put_signed`] (documented truncation to the requested width).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Nullable prefix: the value is NULL, nothing follows.
pub const NULL: u8 = 1;
/// Nullable prefix: a value follows.
pub const NOT_NULL: u8 = 0;
/// Variant discriminator of NULL (any other is the variant's number, then its value).
pub const VARIANT_NULL: u8 = 255;
/// A Dynamic value of type Nothing: NULL (any other starts with its type's binary encoding).
pub const DYNAMIC_NULL: u8 = 0;
/// RowBinaryWithDefaults column prefix: a value follows.
pub const VALUE_FOLLOWS: u8 = 0;
/// RowBinaryWithDefaults column prefix: use the column's DEFAULT expression.
pub const USE_DEFAULT: u8 = 1;

/// Errors of the few primitives that can refuse their input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{len} bytes do not fit FixedString({n})")]
    FixedStringTooLong { len: usize, n: usize },
}

/// Appends `v` as an unsigned LEB128 varint (7 bits a byte, low bits first).
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Number of bytes [`put_varint`] writes for `v`.
#[inline]
pub fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 significant bits, at least 1.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

macro_rules! put_le {
    ($($name:ident: $t:ty),* $(,)?) => {$(
        #[doc = concat!("Appends a `", stringify!($t), "` little-endian.")]
        #[inline]
        pub fn $name(out: &mut Vec<u8>, v: $t) {
            out.extend_from_slice(&v.to_le_bytes());
        }
    )*};
}

put_le!(
    put_u8: u8, put_u16: u16, put_u32: u32, put_u64: u64, put_u128: u128,
    put_i8: i8, put_i16: i16, put_i32: i32, put_i64: i64, put_i128: i128,
    put_f32: f32, put_f64: f64,
);

/// Appends a `Bool` (one byte, 0 or 1).
#[inline]
pub fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(v as u8);
}

/// A 256-bit unsigned number (also used as the two's complement bit pattern of `Int256`).
/// Only the arithmetic the decoders need: exact decimal accumulation and negation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct U256 {
    // Field order matters: the derived Ord compares `hi` first.
    pub hi: u128,
    pub lo: u128,
}

impl U256 {
    pub const ZERO: U256 = U256 { hi: 0, lo: 0 };
    pub const MAX: U256 = U256 {
        hi: u128::MAX,
        lo: u128::MAX,
    };
    /// 2^255: the magnitude of `Int256`'s minimum.
    pub const HALF: U256 = U256 {
        hi: 1 << 127,
        lo: 0,
    };

    #[inline]
    pub const fn from_u128(v: u128) -> U256 {
        U256 { hi: 0, lo: v }
    }

    /// `self * 10 + digit`, or None on overflow.
    #[inline]
    pub fn checked_mul10_add(self, digit: u8) -> Option<U256> {
        // 128x64 schoolbook on the two halves: lo*10 may carry into hi.
        let lo_lo = (self.lo as u64 as u128) * 10;
        let lo_hi = (self.lo >> 64) * 10 + (lo_lo >> 64);
        let new_lo = (lo_hi << 64) | (lo_lo as u64 as u128);
        let carry = lo_hi >> 64;
        let hi = self.hi.checked_mul(10)?.checked_add(carry)?;
        let (lo, c) = new_lo.overflowing_add(digit as u128);
        let hi = hi.checked_add(c as u128)?;
        Some(U256 { hi, lo })
    }

    /// Two's complement negation modulo 2^256.
    #[inline]
    pub fn wrapping_neg(self) -> U256 {
        let (lo, borrow) = 0u128.overflowing_sub(self.lo);
        let hi = 0u128.wrapping_sub(self.hi).wrapping_sub(borrow as u128);
        U256 { hi, lo }
    }

    #[inline]
    pub fn is_zero(self) -> bool {
        self.hi == 0 && self.lo == 0
    }

    /// The value if it fits a `u128`.
    #[inline]
    pub fn to_u128(self) -> Option<u128> {
        (self.hi == 0).then_some(self.lo)
    }

    /// Little-endian bytes.
    #[inline]
    pub fn to_le_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(&self.lo.to_le_bytes());
        b[16..].copy_from_slice(&self.hi.to_le_bytes());
        b
    }
}

impl std::fmt::Display for U256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.hi == 0 {
            return write!(f, "{}", self.lo);
        }
        // Repeated division by 10^19 on 64-bit limbs; only used in error messages.
        let mut limbs = [
            self.lo as u64,
            (self.lo >> 64) as u64,
            self.hi as u64,
            (self.hi >> 64) as u64,
        ];
        let mut parts = Vec::new();
        while limbs.iter().any(|&l| l != 0) {
            let mut rem: u128 = 0;
            for l in limbs.iter_mut().rev() {
                let cur = (rem << 64) | *l as u128;
                *l = (cur / 10_000_000_000_000_000_000) as u64;
                rem = cur % 10_000_000_000_000_000_000;
            }
            parts.push(rem as u64);
        }
        let mut it = parts.iter().rev();
        if let Some(first) = it.next() {
            write!(f, "{first}")?;
        }
        for p in it {
            write!(f, "{p:019}")?;
        }
        Ok(())
    }
}

/// Appends a 256-bit value (`UInt256`, or `Int256` as its two's complement bit pattern).
#[inline]
pub fn put_u256(out: &mut Vec<u8>, v: U256) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends the signed number `-mag` (if `neg`) or `mag` as a two's complement little-endian
/// integer of `width` bytes (4, 8, 16 or 32; any other width is clamped into 1..=32). The caller
/// has checked that the value fits `width`; higher bits are dropped.
#[inline]
pub fn put_signed(out: &mut Vec<u8>, neg: bool, mag: U256, width: usize) {
    let bits = if neg { mag.wrapping_neg() } else { mag };
    let bytes = bits.to_le_bytes();
    // Constant-length copies for the real widths: they compile to plain stores instead of
    // a memcpy call.
    match width {
        4 => out.extend_from_slice(&bytes[..4]),
        8 => out.extend_from_slice(&bytes[..8]),
        16 => out.extend_from_slice(&bytes[..16]),
        w => out.extend_from_slice(&bytes[..w.clamp(1, 32)]),
    }
}

/// Bytes of a `Decimal(P, _)` on the wire: 4, 8, 16 or 32 for P <= 9, 18, 38, 76.
#[inline]
pub fn decimal_width(precision: u8) -> usize {
    match precision {
        0..=9 => 4,
        10..=18 => 8,
        19..=38 => 16,
        _ => 32,
    }
}

/// Appends the unscaled value of a `Decimal(precision, _)` (`-mag` if `neg`). The caller has
/// checked that `mag < 10^precision`.
#[inline]
pub fn put_decimal(out: &mut Vec<u8>, precision: u8, neg: bool, mag: U256) {
    put_signed(out, neg, mag, decimal_width(precision));
}

/// Appends a `String`: varint length, then the bytes (any bytes; ClickHouse does not require
/// UTF-8).
#[inline]
pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Appends a `FixedString(n)`: the bytes, zero-padded to `n`. Longer input is refused rather
/// than truncated.
#[inline]
pub fn put_fixed_string(out: &mut Vec<u8>, s: &[u8], n: usize) -> Result<(), EncodeError> {
    if s.len() > n {
        return Err(EncodeError::FixedStringTooLong { len: s.len(), n });
    }
    out.extend_from_slice(s);
    out.resize(out.len() + (n - s.len()), 0);
    Ok(())
}

/// Appends a `UUID` given as its 128-bit number (`Uuid::as_u128`, i.e. the canonical text's
/// hex digits read as one big-endian number): high 64 bits as a little-endian `u64`, then the
/// low 64 bits as a little-endian `u64`.
#[inline]
pub fn put_uuid(out: &mut Vec<u8>, v: u128) {
    out.extend_from_slice(&((v >> 64) as u64).to_le_bytes());
    out.extend_from_slice(&(v as u64).to_le_bytes());
}

/// Appends an `IPv4`: its `u32` value (1.2.3.4 = 0x01020304) little-endian.
#[inline]
pub fn put_ipv4(out: &mut Vec<u8>, ip: Ipv4Addr) {
    put_u32(out, u32::from(ip));
}

/// Appends an `IPv6`: 16 bytes in network order.
#[inline]
pub fn put_ipv6(out: &mut Vec<u8>, ip: Ipv6Addr) {
    out.extend_from_slice(&ip.octets());
}

/// Appends a `Date`: days since 1970-01-01.
#[inline]
pub fn put_date(out: &mut Vec<u8>, days: u16) {
    put_u16(out, days);
}

/// Appends a `Date32`: signed days since 1970-01-01.
#[inline]
pub fn put_date32(out: &mut Vec<u8>, days: i32) {
    put_i32(out, days);
}

/// Appends a `DateTime`: seconds since the epoch (the column's zone only affects text).
#[inline]
pub fn put_datetime(out: &mut Vec<u8>, secs: u32) {
    put_u32(out, secs);
}

/// Appends a `DateTime64(P)`: ticks of 10^-P seconds since the epoch.
#[inline]
pub fn put_datetime64(out: &mut Vec<u8>, ticks: i64) {
    put_i64(out, ticks);
}

/// Appends the `Nullable` prefix.
#[inline]
pub fn put_null_flag(out: &mut Vec<u8>, is_null: bool) {
    out.push(if is_null { NULL } else { NOT_NULL });
}

/// Appends the RowBinaryWithDefaults column prefix.
#[inline]
pub fn put_default_flag(out: &mut Vec<u8>, use_default: bool) {
    out.push(if use_default {
        USE_DEFAULT
    } else {
        VALUE_FOLLOWS
    });
}

/// Appends an `Array`/`Map` element count.
#[inline]
pub fn put_count(out: &mut Vec<u8>, n: usize) {
    put_varint(out, n as u64);
}

/// Starts a count whose value is known only after the elements are written (streaming a JSON
/// array in one pass). Reserves one byte, the common case; returns the position for
/// [`patch_count`].
#[inline]
pub fn reserve_count(out: &mut Vec<u8>) -> usize {
    out.push(0);
    out.len() - 1
}

/// Fills in a count reserved by [`reserve_count`]. Counts of 128 and more need a longer
/// varint: the elements are then moved right, which is rare and still linear.
#[inline]
pub fn patch_count(out: &mut Vec<u8>, pos: usize, n: usize) {
    let n = n as u64;
    if n < 0x80 {
        if let Some(b) = out.get_mut(pos) {
            *b = n as u8;
        }
        return;
    }
    let mut buf = [0u8; 10];
    let mut len = 0;
    let mut v = n;
    while v >= 0x80 {
        buf[len] = (v as u8) | 0x80;
        v >>= 7;
        len += 1;
    }
    buf[len] = v as u8;
    len += 1;
    if pos < out.len() {
        out.splice(pos..pos + 1, buf[..len].iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut v);
        v
    }

    #[test]
    fn varints() {
        for (v, bytes) in [
            (0u64, vec![0u8]),
            (1, vec![1]),
            (127, vec![0x7f]),
            (128, vec![0x80, 1]),
            (300, vec![0xac, 0x02]),
            (16383, vec![0xff, 0x7f]),
            (16384, vec![0x80, 0x80, 1]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1],
            ),
        ] {
            assert_eq!(enc(|o| put_varint(o, v)), bytes, "{v}");
            assert_eq!(varint_len(v), bytes.len(), "{v}");
        }
    }

    #[test]
    fn fixed_width() {
        assert_eq!(enc(|o| put_u16(o, 0x0102)), [2, 1]);
        assert_eq!(enc(|o| put_i32(o, -2)), [0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(enc(|o| put_i128(o, -1)), [0xff; 16]);
        assert_eq!(enc(|o| put_f64(o, 1.5)), 1.5f64.to_le_bytes());
        assert_eq!(enc(|o| put_bool(o, true)), [1]);
        assert_eq!(enc(|o| put_date(o, 19000)), 19000u16.to_le_bytes());
        assert_eq!(enc(|o| put_date32(o, -1)), [0xff; 4]);
        assert_eq!(enc(|o| put_datetime(o, u32::MAX)), [0xff; 4]);
        assert_eq!(enc(|o| put_datetime64(o, 1)), [1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn u256_arithmetic() {
        let mut v = U256::ZERO;
        for d in b"115792089237316195423570985008687907853269984665640564039457584007913129639935" {
            v = v.checked_mul10_add(d - b'0').unwrap();
        }
        assert_eq!(v, U256::MAX);
        assert_eq!(v.checked_mul10_add(0), None);
        assert_eq!(U256::MAX.checked_mul10_add(0), None);
        assert_eq!(
            v.to_string(),
            "115792089237316195423570985008687907853269984665640564039457584007913129639935"
        );
        assert_eq!(U256::from_u128(1).wrapping_neg(), U256::MAX);
        assert_eq!(U256::HALF.wrapping_neg(), U256::HALF);
        assert_eq!(U256::ZERO.wrapping_neg(), U256::ZERO);
        // lo*10 carrying into hi
        let x = U256::from_u128(u128::MAX).checked_mul10_add(5).unwrap();
        assert_eq!(
            x,
            U256 {
                hi: 9,
                lo: u128::MAX - 4
            }
        );
        assert_eq!(x.to_string(), "3402823669209384634633746074317682114555");
        assert_eq!(U256::from_u128(12345).to_string(), "12345");
    }

    #[test]
    fn signed_and_decimal() {
        assert_eq!(
            enc(|o| put_signed(o, true, U256::from_u128(1), 4)),
            [0xff; 4]
        );
        assert_eq!(
            enc(|o| put_signed(o, false, U256::from_u128(258), 8)),
            [2, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(enc(|o| put_signed(o, true, U256::HALF, 32)), {
            let mut b = [0u8; 32];
            b[31] = 0x80;
            b
        });
        assert_eq!(decimal_width(9), 4);
        assert_eq!(decimal_width(10), 8);
        assert_eq!(decimal_width(18), 8);
        assert_eq!(decimal_width(38), 16);
        assert_eq!(decimal_width(39), 32);
        assert_eq!(decimal_width(76), 32);
        assert_eq!(
            enc(|o| put_decimal(o, 10, true, U256::from_u128(12345))),
            (-12345i64).to_le_bytes()
        );
    }

    #[test]
    fn strings() {
        assert_eq!(enc(|o| put_str(o, b"abc")), b"\x03abc");
        assert_eq!(enc(|o| put_str(o, b"")), b"\x00");
        let long = vec![b'x'; 200];
        let e = enc(|o| put_str(o, &long));
        assert_eq!(&e[..2], &[0xc8, 0x01]);
        assert_eq!(e.len(), 202);
        assert_eq!(enc(|o| put_fixed_string(o, b"ab", 4).unwrap()), b"ab\0\0");
        assert_eq!(enc(|o| put_fixed_string(o, b"abcd", 4).unwrap()), b"abcd");
        let mut o = Vec::new();
        assert_eq!(
            put_fixed_string(&mut o, b"abcde", 4),
            Err(EncodeError::FixedStringTooLong { len: 5, n: 4 })
        );
        assert!(o.is_empty());
    }

    #[test]
    fn uuid_and_ips() {
        let u = uuid::Uuid::parse_str("61f0c404-5cb3-11e7-907b-a6006ad3dba0").unwrap();
        assert_eq!(
            enc(|o| put_uuid(o, u.as_u128())),
            [
                0xe7, 0x11, 0xb3, 0x5c, 0x04, 0xc4, 0xf0, 0x61, 0xa0, 0xdb, 0xd3, 0x6a, 0x00, 0xa6,
                0x7b, 0x90
            ]
        );
        assert_eq!(
            enc(|o| put_ipv4(o, Ipv4Addr::new(1, 2, 3, 4))),
            [4, 3, 2, 1]
        );
        assert_eq!(enc(|o| put_ipv6(o, "::1".parse().unwrap())), {
            let mut b = [0u8; 16];
            b[15] = 1;
            b
        });
    }

    #[test]
    fn prefixes_and_counts() {
        assert_eq!(enc(|o| put_null_flag(o, true)), [NULL]);
        assert_eq!(enc(|o| put_null_flag(o, false)), [NOT_NULL]);
        assert_eq!(enc(|o| put_default_flag(o, true)), [USE_DEFAULT]);
        assert_eq!(enc(|o| put_default_flag(o, false)), [VALUE_FOLLOWS]);
        for n in [0usize, 1, 127, 128, 300, 20000] {
            let mut o = vec![9u8];
            let pos = reserve_count(&mut o);
            o.extend(std::iter::repeat_n(7u8, n));
            patch_count(&mut o, pos, n);
            let mut want = vec![9u8];
            put_count(&mut want, n);
            want.extend(std::iter::repeat_n(7u8, n));
            assert_eq!(o, want, "{n}");
        }
    }
}
