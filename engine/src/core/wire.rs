//! The one piece of the client wire format the engine writes itself: the entries of a scan
//! batch, as the MessagePack elements of the reply's `entries` array (protocol/PROTOCOL.md).
//!
//! Responsibility: encode each `[key, value]` pair straight from storage into one buffer, so a
//! batch of a thousand entries crosses napi and the daemon as one block of bytes that the daemon
//! splices into its reply, instead of two thousand buffers the daemon would read and re-encode.
//!
//! Invariants: each pair is a fixarray of 2 followed by two `bin`s, each in the smallest form
//! (bin8 / bin16 / bin32), which is what msgpackr writes for a Buffer, so the daemon's reply is
//! byte for byte what MessageCodec would write (test/protocol/simple-frames.test.ts checks the
//! JS side against the codec, and `tests` below pin the forms). The array header is not
//! included: its size depends on the count, which the caller only knows at the end.

const FIXARRAY_2: u8 = 0x92;
const BIN8: u8 = 0xc4;
const BIN16: u8 = 0xc5;
const BIN32: u8 = 0xc6;

/// Encoded `[key, value]` pairs and how many there are.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PackedEntries {
    pub count: u32,
    pub bytes: Vec<u8>,
}

impl PackedEntries {
    pub fn with_capacity(bytes: usize) -> PackedEntries {
        PackedEntries { count: 0, bytes: Vec::with_capacity(bytes) }
    }

    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.reserve(1 + bin_bytes(key.len()) + bin_bytes(value.len()));
        self.bytes.push(FIXARRAY_2);
        put_bin(&mut self.bytes, key);
        put_bin(&mut self.bytes, value);
        self.count += 1;
    }

    /// The pairs back as owned (key, value) vectors: for tests and diagnostics, not the hot path.
    pub fn decode(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let buf = self.bytes.as_slice();
        let mut at = 0usize;
        let mut out = Vec::with_capacity(self.count as usize);
        for _ in 0..self.count {
            assert_eq!(buf[at], FIXARRAY_2, "invariant: packed entry is not a pair");
            at += 1;
            let key = read_bin(buf, &mut at);
            let value = read_bin(buf, &mut at);
            out.push((key, value));
        }
        assert_eq!(at, buf.len(), "invariant: packed entries have trailing bytes");
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
        let mut packed = PackedEntries::default();
        packed.push(b"k", b"");
        packed.push(&[1u8; 255], &[2u8; 256]);
        packed.push(b"big", &vec![3u8; 0x1_0000]);
        assert_eq!(packed.count, 3);
        assert_eq!(&packed.bytes[..6], &[0x92, 0xc4, 1, b'k', 0xc4, 0]);
        assert_eq!(&packed.bytes[6..9], &[0x92, 0xc4, 255]);
        assert_eq!(&packed.bytes[9 + 255..9 + 258], &[0xc5, 0x01, 0x00]);
        let third = 9 + 255 + 3 + 256;
        assert_eq!(&packed.bytes[third..third + 5], &[0x92, 0xc4, 3, b'b', b'i']);
        assert_eq!(&packed.bytes[third + 6..third + 11], &[0xc6, 0, 1, 0, 0]);
        let decoded = packed.decode();
        assert_eq!(decoded[0], (b"k".to_vec(), Vec::new()));
        assert_eq!(decoded[1], (vec![1u8; 255], vec![2u8; 256]));
        assert_eq!(decoded[2], (b"big".to_vec(), vec![3u8; 0x1_0000]));
    }
}
