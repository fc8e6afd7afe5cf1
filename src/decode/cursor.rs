//! A bounds-checked reader of the binary encodings the typed formats share: base-128
//! varints (Avro's zigzag longs, Protobuf's tags, values and message indexes) and runs of
//! announced length. Every read checks what is left: a truncated or corrupt message is an
//! error saying so, never a panic or a read past its end.

pub(crate) struct Cursor<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Cursor<'a> {
        Cursor { b, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn left(&self) -> usize {
        self.b.len() - self.pos
    }

    /// An unsigned base-128 varint (at most 10 bytes).
    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&c) = self.b.get(self.pos) else {
                return Err("truncated: the message ends inside a number".into());
            };
            self.pos += 1;
            v |= u64::from(c & 0x7f) << (7 * i);
            if c & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a variable-length number longer than 10 bytes".into())
    }

    /// A zigzag-encoded signed varint.
    pub(crate) fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| format!("truncated: {n} bytes announced, {} left", self.left()))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_zigzags_and_runs_are_bounds_checked() {
        let mut c = Cursor::new(&[0x96, 0x01, 3, 1, 2]);
        assert_eq!(c.varint(), Ok(150));
        assert_eq!(c.zigzag(), Ok(-2));
        assert_eq!(c.left(), 2);
        assert_eq!(
            c.take(3),
            Err("truncated: 3 bytes announced, 2 left".into())
        );
        assert_eq!(c.take(2), Ok(&[1u8, 2][..]));
        assert_eq!(
            c.varint(),
            Err("truncated: the message ends inside a number".into())
        );
        let mut c = Cursor::new(&[0xff; 11]);
        assert_eq!(
            c.varint(),
            Err("a variable-length number longer than 10 bytes".into())
        );
        let mut c = Cursor::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(c.zigzag(), Ok(i64::MIN));
    }
}
