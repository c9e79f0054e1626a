//! Path-key helpers for `listPath`.
//!
//! Responsibility: understand just enough of the protocol's path encoding (protocol/paths.ts) to
//! list the children of a parent prefix: segments escape 0x00 as 0x00 0xFF and are joined by the
//! separator pair 0x00 0x01, and a segment is a name only if it is UTF-8 once unescaped.
//! `encode_path` / `decode_segment` exist for tests and `is_name`.
//!
//! Invariants: inside an encoded segment every 0x00 is followed by 0xFF, so the first 0x00 0x01
//! after the parent prefix ends the child segment; `subtree_end(prefix ‖ child ‖ SEP)` is the
//! smallest key greater than every key in the child's subtree that is not itself in it.

pub const SEP: [u8; 2] = [0x00, 0x01];
const ESCAPE: u8 = 0xFF;

/// Given the bytes after the parent prefix, returns the child segment and whether more path
/// follows it (i.e. the key is a descendant deeper than the child itself).
pub fn child_segment(rest: &[u8]) -> (&[u8], bool) {
    let mut i = 0;
    while i + 1 < rest.len() {
        if rest[i] == 0x00 && rest[i + 1] == SEP[1] {
            return (&rest[..i], true);
        }
        i += if rest[i] == 0x00 { 2 } else { 1 };
    }
    (rest, false)
}

/// True if `child` (as child_segment returns it, still escaped) is a path name: not empty,
/// every 0x00 escaped as 0x00 0xFF, and UTF-8 once unescaped (protocol/paths.ts writes nothing
/// else). Keys share one key space with path keys, so a binary key's first bytes can look like
/// a child; listPath leaves such children out.
pub fn is_name(child: &[u8]) -> bool {
    if child.is_empty() {
        return false;
    }
    if !child.contains(&0x00) {
        return std::str::from_utf8(child).is_ok();
    }
    let mut i = 0;
    while i < child.len() {
        if child[i] == 0x00 && child.get(i + 1) != Some(&ESCAPE) {
            return false;
        }
        i += if child[i] == 0x00 { 2 } else { 1 };
    }
    std::str::from_utf8(&decode_segment(child)).is_ok()
}

/// Bytes `after_child` adds past a key (`parent` + `child`): the most a listPath's `next` reaches
/// past a key (protocol/limits.ts LIST_PATH_NEXT_BYTES_PAST_KEY).
pub const AFTER_CHILD_BYTES: usize = 2;

/// Seek key that skips every key starting with `parent ‖ child`, whether `child` is a leaf key
/// or continues with SEP: keys under the child are `parent‖child` or `parent‖child‖0x00 0x01…`,
/// and a sibling that extends `child` must continue with a byte other than 0x00 0x01 (a non-zero
/// byte or the escape 0x00 0xFF), both greater than `child ‖ 0x00 0x01 ‖ …`. So everything in
/// the subtree is < `parent ‖ child ‖ 0x00 0x02`, and every sibling is >= it.
pub fn after_child(parent: &[u8], child: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + child.len() + 2);
    out.extend_from_slice(parent);
    out.extend_from_slice(child);
    out.push(0x00);
    out.push(0x02);
    out
}

/// Encodes segments the way protocol/paths.ts does (for tests and tools).
pub fn encode_path(segments: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(&SEP);
        }
        for &b in seg.iter() {
            out.push(b);
            if b == 0x00 {
                out.push(ESCAPE);
            }
        }
    }
    out
}

/// Unescapes one encoded segment.
pub fn decode_segment(seg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(seg.len());
    let mut i = 0;
    while i < seg.len() {
        out.push(seg[i]);
        i += if seg[i] == 0x00 { 2 } else { 1 };
    }
    out
}

/// Prefix of the children of `segments` (the path, then SEP; empty for the root).
pub fn children_prefix(segments: &[&[u8]]) -> Vec<u8> {
    if segments.is_empty() {
        return Vec::new();
    }
    let mut out = encode_path(segments);
    out.extend_from_slice(&SEP);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_separator_not_escape() {
        let key = encode_path(&[b"a\x00b", b"c"]);
        assert_eq!(key, b"a\x00\xffb\x00\x01c");
        assert_eq!(child_segment(&key), (&b"a\x00\xffb"[..], true));
        assert_eq!(decode_segment(b"a\x00\xffb"), b"a\x00b");
        assert_eq!(child_segment(b"leaf"), (&b"leaf"[..], false));
        assert_eq!(child_segment(b"x\x00"), (&b"x\x00"[..], false));
    }

    #[test]
    fn names_are_escaped_utf8_segments() {
        for name in [&b"alice"[..], b"a\x00\xffb", "\u{e9}t\u{e9}".as_bytes(), b"\x00\xff"] {
            assert!(is_name(name), "{name:?}");
        }
        // empty; a bare 0x00; 0x00 before a byte other than the escape; not UTF-8 once
        // unescaped (a lone continuation byte, an encoded surrogate, an overlong 0x00)
        for other in [&b""[..], b"a\x00", b"a\x00\x05b", b"\xde\xad\xbe\xef", b"\xed\xa0\x80", b"\xc0\x80"] {
            assert!(!is_name(other), "{other:?}");
        }
    }

    #[test]
    fn after_child_bounds_the_subtree() {
        let parent = children_prefix(&[b"p"]);
        let skip = after_child(&parent, b"a");
        for inside in [encode_path(&[b"p", b"a"]), encode_path(&[b"p", b"a", b"\xff\xff"])] {
            assert!(inside < skip);
        }
        for sibling in [encode_path(&[b"p", b"a\x00"]), encode_path(&[b"p", b"a\x01"]), encode_path(&[b"p", b"b"])] {
            assert!(sibling > skip, "{sibling:?}");
        }
    }
}
