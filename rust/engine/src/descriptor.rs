//! Writing payloads into a slot and reading them back, with every descriptor validated first.
//!
//! Descriptors come from another process that may have died half-way or been corrupted, so the
//! decoder treats them as untrusted input: it is fuzzed (see `tests/` and the proptest below) and
//! must return an error, never panic, read out of bounds or block.

use crate::layout::RawDescriptor;
use crate::region::Region;
use crate::segment::{map_remote, Segments};
use crate::{Error, Result};

pub const PLACE_INLINE: u32 = 1;
pub const PLACE_SEGMENT: u32 = 2;

/// Largest segment a descriptor may claim (1 TiB); anything above is corruption.
const MAX_SEGMENT: u64 = 1 << 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Inline { len: usize },
    Segment { pid: u32, fd: u32, len: u64 },
}

/// Validates a raw descriptor against the slot geometry.
pub fn decode(d: &RawDescriptor, inline_size: usize) -> Result<Location> {
    match d.place {
        PLACE_INLINE => {
            if d.len > inline_size as u64 {
                return Err(Error::Protocol(format!(
                    "inline payload of {} bytes exceeds the slot's {inline_size}",
                    d.len
                )));
            }
            Ok(Location::Inline { len: d.len as usize })
        }
        PLACE_SEGMENT => {
            if d.seg_pid == 0 || d.seg_pid > i32::MAX as u32 || d.seg_fd > i32::MAX as u32 {
                return Err(Error::Protocol(format!("segment descriptor names pid {} fd {}", d.seg_pid, d.seg_fd)));
            }
            if d.seg_cap > MAX_SEGMENT || d.len > d.seg_cap {
                return Err(Error::Protocol(format!(
                    "segment payload of {} bytes in a segment of {}",
                    d.len, d.seg_cap
                )));
            }
            Ok(Location::Segment { pid: d.seg_pid, fd: d.seg_fd, len: d.len })
        }
        other => Err(Error::Protocol(format!("unknown payload place {other}"))),
    }
}

/// Reads the payload of slot `index` and hands it to `f` without an intermediate copy.
pub fn read<R>(region: &Region, index: u32, response: bool, f: impl FnOnce(u32, &[u8]) -> R) -> Result<R> {
    let d = region.read_descriptor(index, response);
    match decode(&d, region.inline_size())? {
        Location::Inline { len } => {
            // SAFETY: len <= inline_size (decode), and the slot's state gives us exclusive
            // ownership of its inline area until we change that state.
            let bytes = unsafe { std::slice::from_raw_parts(region.inline_ptr(index), len) };
            Ok(f(d.tag, bytes))
        }
        Location::Segment { pid, fd, len } => {
            let map = map_remote(pid, fd, len)?;
            Ok(f(d.tag, map.as_deref().unwrap_or(&[])))
        }
    }
}

/// Which payload of which call a write fills.
#[derive(Clone, Copy, Debug)]
pub struct Destination {
    pub slot: u32,
    pub ticket: u64,
    pub response: bool,
}

/// Writes `parts` (concatenated) as the request or response of `to`, inline when they fit, else
/// into one of `segments`, which stays marked busy for (slot, ticket) until `in_use` says the peer
/// is done with it.
pub fn write(
    region: &Region,
    to: Destination,
    tag: u32,
    parts: &[&[u8]],
    segments: &mut Segments,
    in_use: impl Fn(u32, u64) -> bool,
) -> Result<()> {
    let index = to.slot;
    let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let max = region.header().max_payload;
    if len > max {
        return Err(Error::SharedMemory { needed: len, detail: format!("the pool's max payload is {max} bytes") });
    }
    let d = if len <= region.inline_size() as u64 {
        let mut at = region.inline_ptr(index);
        for part in parts {
            // SAFETY: total length checked against the inline area; we own the slot.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
        }
        RawDescriptor { tag, place: PLACE_INLINE, len, ..RawDescriptor::default() }
    } else {
        let seg = segments.acquire(len, in_use)?;
        let out = seg.bytes_mut();
        let mut at = 0usize;
        for part in parts {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        seg.busy = Some((to.slot, to.ticket));
        RawDescriptor {
            tag,
            place: PLACE_SEGMENT,
            len,
            seg_pid: std::process::id(),
            seg_fd: seg.fd() as u32,
            seg_cap: seg.cap(),
        }
    };
    region.write_descriptor(index, to.response, d);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Config;
    use proptest::prelude::*;

    fn to(slot: u32, ticket: u64, response: bool) -> Destination {
        Destination { slot, ticket, response }
    }

    #[test]
    fn inline_and_segment_payloads_round_trip() {
        let region = Region::create(&Config { slots: 2, inline_size: 64, ..Config::default() }).unwrap();
        let mut segs = Segments::default();
        write(&region, to(0, 1, false), 7, &[b"ab", b"cd"], &mut segs, |_, _| false).unwrap();
        let got = read(&region, 0, false, |tag, b| (tag, b.to_vec())).unwrap();
        assert_eq!(got, (7, b"abcd".to_vec()));

        let big = vec![42u8; 10_000];
        write(&region, to(1, 2, true), 9, &[&big], &mut segs, |_, _| false).unwrap();
        let got = read(&region, 1, true, |tag, b| (tag, b.to_vec())).unwrap();
        assert_eq!(got.0, 9);
        assert_eq!(got.1, big);
        assert_eq!(segs.busy(), vec![(1, 2)]);
    }

    #[test]
    fn payload_over_the_limit_is_a_clear_error() {
        let cfg = Config { slots: 2, inline_size: 64, max_payload: Some(100), ..Config::default() };
        let region = Region::create(&cfg).unwrap();
        let err =
            write(&region, to(0, 1, false), 0, &[&[0u8; 101]], &mut Segments::default(), |_, _| false).unwrap_err();
        assert!(err.to_string().contains("max payload is 100"), "{err}");
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_bounds_inline(tag: u32, place: u32, len: u64, pid: u32, fd: u32, cap: u64) {
            let d = RawDescriptor { tag, place, len, seg_pid: pid, seg_fd: fd, seg_cap: cap };
            match decode(&d, 4096) {
                Ok(Location::Inline { len }) => prop_assert!(len <= 4096),
                Ok(Location::Segment { len, .. }) => prop_assert!(len <= cap && cap <= MAX_SEGMENT),
                Err(_) => {}
            }
        }

        #[test]
        fn reading_a_corrupted_descriptor_errors_or_stays_in_bounds(place in 0u32..4, len: u64, fd in 0u32..2000, cap: u64) {
            let region = Region::create(&Config { slots: 2, inline_size: 64, ..Config::default() }).unwrap();
            let d = RawDescriptor { tag: 0, place, len, seg_pid: std::process::id(), seg_fd: fd, seg_cap: cap };
            region.write_descriptor(0, true, d);
            if let Ok(n) = read(&region, 0, true, |_, b| b.len()) {
                prop_assert!(n as u64 == len);
            }
        }
    }
}
