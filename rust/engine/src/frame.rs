//! Multi-part payloads: `[count: u32][len: u64 × count][part 0][part 1]…`, little-endian.
//!
//! Large buffers (a 100 MB `bytes` argument, say) travel as parts of their own next to a small
//! pickle, so each is copied once into shared memory and once out of it, never through the
//! pickle stream. The receiver validates the table before slicing, because it was written by
//! another process.

use crate::{Error, Result};

/// More parts than this is corruption (a pickle with that many large buffers is not plausible).
pub const MAX_PARTS: usize = 1 << 16;

/// The frame header for parts of these lengths.
pub fn header(lens: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * lens.len());
    out.extend_from_slice(&(lens.len() as u32).to_le_bytes());
    for len in lens {
        out.extend_from_slice(&(*len as u64).to_le_bytes());
    }
    out
}

/// Splits a framed payload into its parts, or explains why it is not one.
pub fn split(payload: &[u8]) -> Result<Vec<&[u8]>> {
    let bad = |why: &str| Error::Protocol(format!("malformed multi-part payload: {why}"));
    let count_bytes = payload.get(..4).ok_or_else(|| bad("shorter than its part count"))?;
    let count = u32::from_le_bytes(count_bytes.try_into().expect("4 bytes")) as usize;
    if count == 0 || count > MAX_PARTS {
        return Err(bad(&format!("{count} parts")));
    }
    let table_end = 4 + 8 * count;
    let table = payload.get(4..table_end).ok_or_else(|| bad("truncated length table"))?;
    let mut parts = Vec::with_capacity(count);
    let mut at = table_end;
    for entry in table.chunks_exact(8) {
        let len = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
        let end = usize::try_from(len).ok().and_then(|len| at.checked_add(len));
        let part = end.and_then(|end| payload.get(at..end)).ok_or_else(|| bad("a part runs past the end"))?;
        parts.push(part);
        at += part.len();
    }
    if at != payload.len() {
        return Err(bad("trailing bytes after the last part"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = header(&parts.iter().map(|p| p.len()).collect::<Vec<_>>());
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    }

    #[test]
    fn parts_round_trip() {
        let framed = frame(&[b"head", b"", b"big part"]);
        assert_eq!(split(&framed).unwrap(), vec![&b"head"[..], b"", b"big part"]);
    }

    #[test]
    fn truncation_and_lies_are_refused() {
        let framed = frame(&[b"head", b"body"]);
        for cut in 0..framed.len() {
            assert!(split(&framed[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = framed.clone();
        longer.push(0);
        assert!(split(&longer).is_err());
        let mut huge = framed;
        huge[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(split(&huge).is_err());
    }

    proptest! {
        #[test]
        fn split_never_panics_and_parts_stay_inside(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(parts) = split(&bytes) {
                let total: usize = parts.iter().map(|p| p.len()).sum();
                prop_assert!(total <= bytes.len());
            }
        }

        #[test]
        fn any_framing_round_trips(parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
            let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            let framed = frame(&refs);
            prop_assert_eq!(split(&framed).unwrap(), refs);
        }
    }
}
