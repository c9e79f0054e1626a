//! The pieces of the client wire format the engine writes itself: the elements of the arrays
//! that carry many values in a reply, a scan batch's `entries` (`[key, value]` pairs) and a
//! getBatch's values (`bin` or nil) (protocol/PROTOCOL.md).
//!
//! Responsibility: encode each element straight from storage into one buffer, so a batch crosses
//! napi and the daemon as one block of bytes that the daemon splices into its reply, instead of
//! one buffer per key and value that the daemon would read and re-encode.
//!
//! Invariants: a value is a `bin` in the smallest form (bin8 / bin16 / bin32), which is what
//! msgpackr writes for a Buffer; a missing value is nil; a pair is a fixarray of 2 followed by
//! two such `bin`s. So the daemon's reply is byte for byte what MessageCodec would write
//! (test/protocol/simple-frames.test.ts checks the JS side against the codec, and `tests` below
//! pin the forms). The array header is not included: its size depends on the count, which the
//! caller only knows at the end.

const FIXARRAY_2: u8 = 0x92;
const FIXARRAY_3: u8 = 0x93;
const NIL: u8 = 0xc0;
const FLOAT64: u8 = 0xcb;
const BIN8: u8 = 0xc4;
const BIN16: u8 = 0xc5;
const BIN32: u8 = 0xc6;

/// Encoded array elements and how many there are.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PackedArray {
    pub count: u32,
    pub bytes: Vec<u8>,
}

impl PackedArray {
    /// Room for `bytes` up front, in a spare buffer when one is kept (spare.rs): a packed array
    /// is copied into the call's results and then given back.
    pub fn with_capacity(bytes: usize) -> PackedArray {
        PackedArray { count: 0, bytes: super::spare::take(bytes) }
    }

    /// A `[key, value]` pair (scan entries).
    pub fn push_pair(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.reserve(1 + bin_bytes(key.len()) + bin_bytes(value.len()));
        self.bytes.push(FIXARRAY_2);
        put_bin(&mut self.bytes, key);
        put_bin(&mut self.bytes, value);
        self.count += 1;
    }

    /// A `[key, value, expiry]` triple (scan entries with expiry): the expiry in ms since the
    /// Unix epoch as a `float 64` (how the protocol writes integers above 32 bits that are not
    /// ids), or nil for a value that does not expire.
    pub fn push_entry_with_expiry(&mut self, key: &[u8], value: &[u8], expiry_ms: Option<u64>) {
        self.bytes.reserve(1 + bin_bytes(key.len()) + bin_bytes(value.len()) + 9);
        self.bytes.push(FIXARRAY_3);
        put_bin(&mut self.bytes, key);
        put_bin(&mut self.bytes, value);
        match expiry_ms {
            Some(at) => {
                self.bytes.push(FLOAT64);
                self.bytes.extend_from_slice(&(at as f64).to_be_bytes());
            }
            None => self.bytes.push(NIL),
        }
        self.count += 1;
    }

    /// A value, or nil for a missing one (getBatch values).
    pub fn push_value(&mut self, value: Option<&[u8]>) {
        match value {
            Some(value) => {
                self.bytes.reserve(bin_bytes(value.len()));
                put_bin(&mut self.bytes, value);
            }
            None => self.bytes.push(NIL),
        }
        self.count += 1;
    }

    /// The pairs back as owned (key, value) vectors: for tests and diagnostics, not the hot path.
    pub fn decode_pairs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let buf = self.bytes.as_slice();
        let mut at = 0usize;
        let mut out = Vec::with_capacity(self.count as usize);
        for _ in 0..self.count {
            let triple = buf[at] == FIXARRAY_3;
            assert!(triple || buf[at] == FIXARRAY_2, "invariant: packed entry is not a pair or a triple");
            at += 1;
            let key = read_bin(buf, &mut at);
            let value = read_bin(buf, &mut at);
            if triple {
                at += if buf[at] == NIL { 1 } else { 9 };
            }
            out.push((key, value));
        }
        assert_eq!(at, buf.len(), "invariant: packed entries have trailing bytes");
        out
    }

    /// The values back (None for nil): for tests and diagnostics, not the hot path.
    pub fn decode_values(&self) -> Vec<Option<Vec<u8>>> {
        let buf = self.bytes.as_slice();
        let mut at = 0usize;
        let mut out = Vec::with_capacity(self.count as usize);
        for _ in 0..self.count {
            if buf[at] == NIL {
                at += 1;
                out.push(None);
            } else {
                out.push(Some(read_bin(buf, &mut at)));
            }
        }
        assert_eq!(at, buf.len(), "invariant: packed values have trailing bytes");
        out
    }
}

fn read_bin(buf: &[u8], at: &mut usize) -> Vec<u8> {
    let p = *at;
    let (len, head) = match buf[p] {
        BIN8 => (buf[p + 1] as usize, 2),
        BIN16 => (u16::from_be_bytes([buf[p + 1], buf[p + 2]]) as usize, 3),
        BIN32 => (u32::from_be_bytes([buf[p + 1], buf[p + 2], buf[p + 3], buf[p + 4]]) as usize, 5),
        other => panic!("invariant: packed entry has tag {other:#x} where a bin belongs"),
    };
    *at = p + head + len;
    buf[p + head..*at].to_vec()
}

fn bin_bytes(len: usize) -> usize {
    len + if len < 0x100 { 2 } else if len < 0x1_0000 { 3 } else { 5 }
}

fn put_bin(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    if len < 0x100 {
        out.extend_from_slice(&[BIN8, len as u8]);
    } else if len < 0x1_0000 {
        out.push(BIN16);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(BIN32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_use_the_smallest_bin_form_and_decode_back() {
        let mut packed = PackedArray::default();
        packed.push_pair(b"k", b"");
        packed.push_pair(&[1u8; 255], &[2u8; 256]);
        packed.push_pair(b"big", &vec![3u8; 0x1_0000]);
        assert_eq!(packed.count, 3);
        assert_eq!(&packed.bytes[..6], &[0x92, 0xc4, 1, b'k', 0xc4, 0]);
        assert_eq!(&packed.bytes[6..9], &[0x92, 0xc4, 255]);
        assert_eq!(&packed.bytes[9 + 255..9 + 258], &[0xc5, 0x01, 0x00]);
        let third = 9 + 255 + 3 + 256;
        assert_eq!(&packed.bytes[third..third + 5], &[0x92, 0xc4, 3, b'b', b'i']);
        assert_eq!(&packed.bytes[third + 6..third + 11], &[0xc6, 0, 1, 0, 0]);
        let decoded = packed.decode_pairs();
        assert_eq!(decoded[0], (b"k".to_vec(), Vec::new()));
        assert_eq!(decoded[1], (vec![1u8; 255], vec![2u8; 256]));
        assert_eq!(decoded[2], (b"big".to_vec(), vec![3u8; 0x1_0000]));
    }

    #[test]
    fn triples_end_with_a_float64_expiry_or_nil() {
        let mut packed = PackedArray::default();
        packed.push_entry_with_expiry(b"k", b"v", Some(1_764_000_000_000));
        packed.push_entry_with_expiry(b"p", b"", None);
        assert_eq!(packed.count, 2);
        let mut first = vec![0x93, 0xc4, 1, b'k', 0xc4, 1, b'v', 0xcb];
        first.extend_from_slice(&1_764_000_000_000f64.to_be_bytes());
        assert_eq!(&packed.bytes[..first.len()], &first[..]);
        assert_eq!(&packed.bytes[first.len()..], &[0x93, 0xc4, 1, b'p', 0xc4, 0, 0xc0]);
        assert_eq!(packed.decode_pairs(), vec![(b"k".to_vec(), b"v".to_vec()), (b"p".to_vec(), Vec::new())]);
    }

    #[test]
    fn values_are_bins_or_nil() {
        let mut packed = PackedArray::default();
        packed.push_value(Some(b"v"));
        packed.push_value(None);
        packed.push_value(Some(&[9u8; 300]));
        assert_eq!(packed.count, 3);
        assert_eq!(&packed.bytes[..4], &[0xc4, 1, b'v', 0xc0]);
        assert_eq!(&packed.bytes[4..7], &[0xc5, 0x01, 0x2c]);
        assert_eq!(packed.decode_values(), vec![Some(b"v".to_vec()), None, Some(vec![9u8; 300])]);
    }
}
