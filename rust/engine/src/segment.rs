//! Large payloads: memfd segments owned by the sending process, read by the peer via /proc.
//!
//! A payload that does not fit in its slot goes into a segment of the sender's. Segments are
//! recycled, so the 1 ms/MB first-touch cost of fresh shmem pages is paid once per size class, not
//! per call. Space is reserved with `fallocate`, which fails with an error where a lazily faulted
//! mapping would later die of SIGBUS (a small /dev/shm or memory cgroup).
//!
//! The receiver opens `/proc/<sender pid>/fd/<fd>`, which reaches the same memfd without any
//! descriptor passing; that needs the two processes to share a uid, which parent and workers do.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::sys;
use crate::{Error, Result};

/// Capacity granularity: payloads round up to this, plus 1/8 headroom, so sizes that wobble
/// between calls keep reusing one segment.
const GRANULE: u64 = 1 << 20;
/// Idle segments a process keeps for reuse; more are unmapped.
const MAX_KEPT: usize = 4;

#[derive(Debug)]
pub struct Segment {
    file: File,
    map: MmapMut,
    cap: u64,
    /// The (slot, ticket) whose descriptor points here, until the peer is done with it.
    pub busy: Option<(u32, u64)>,
}

impl Segment {
    pub fn create(len: u64) -> Result<Segment> {
        let cap = (len + len / 8).div_ceil(GRANULE).max(1) * GRANULE;
        let file = sys::memfd(c"multicore-payload")
            .map_err(|e| Error::SharedMemory { needed: len, detail: format!("memfd_create failed: {e}") })?;
        // Reserving every page now turns "no memory" into an error here instead of a SIGBUS on
        // first touch.
        sys::fallocate(&file, cap).map_err(|e| Error::SharedMemory {
            needed: len,
            detail: format!("reserving {cap} bytes of shared memory failed: {e}"),
        })?;
        // SAFETY: we own the memfd and never shrink it while mapped.
        let map = unsafe { MmapOptions::new().len(cap as usize).map_mut(&file) }
            .map_err(|source| Error::Os { what: "mapping a payload segment", source })?;
        Ok(Segment { file, map, cap, busy: None })
    }

    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map[..]
    }
}

/// A process's own outgoing segments.
#[derive(Debug, Default)]
pub struct Segments {
    list: Vec<Segment>,
}

impl Segments {
    /// Returns an idle segment of at least `len` bytes, creating one if needed. `in_use(slot,
    /// ticket)` tells whether the peer may still read a segment marked busy for that call.
    pub fn acquire(&mut self, len: u64, in_use: impl Fn(u32, u64) -> bool) -> Result<&mut Segment> {
        for seg in &mut self.list {
            if let Some((slot, ticket)) = seg.busy {
                if !in_use(slot, ticket) {
                    seg.busy = None;
                }
            }
        }
        let fitting = self.list.iter().position(|s| s.busy.is_none() && s.cap >= len);
        let index = match fitting {
            Some(i) => i,
            None => {
                // Replace the smallest idle segment if we keep too many; else add one.
                if self.list.len() >= MAX_KEPT {
                    if let Some(i) = self
                        .list
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.busy.is_none())
                        .min_by_key(|(_, s)| s.cap)
                        .map(|(i, _)| i)
                    {
                        self.list.swap_remove(i);
                    }
                }
                self.list.push(Segment::create(len)?);
                self.list.len() - 1
            }
        };
        Ok(&mut self.list[index])
    }

    /// Segments still referenced by a call, as (slot, ticket).
    pub fn busy(&self) -> Vec<(u32, u64)> {
        self.list.iter().filter_map(|s| s.busy).collect()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Maps `len` bytes of another process's segment read-only.
pub fn map_remote(pid: u32, fd: u32, len: u64) -> Result<Option<Mmap>> {
    if len == 0 {
        return Ok(None);
    }
    let path = format!("/proc/{pid}/fd/{fd}");
    // O_NONBLOCK: a corrupt descriptor naming a FIFO must not block us in open().
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(&path).map_err(
            |e| {
                Error::Protocol(format!(
                    "cannot open payload segment {path} of process {pid}: {e} (did it exit before its \
             payload was read?)"
                ))
            },
        )?;
    let meta = file.metadata().map_err(|source| Error::Os { what: "reading a payload segment's size", source })?;
    if !meta.is_file() {
        return Err(Error::Protocol(format!("{path} is not a shared-memory segment")));
    }
    let size = meta.len();
    if size < len {
        return Err(Error::Protocol(format!(
            "payload segment of process {pid} holds {size} bytes, descriptor claims {len}"
        )));
    }
    // SAFETY: read-only mapping of a memfd the writer never shrinks while it is referenced; its
    // size was checked above, so reading `len` bytes cannot fault past the end.
    let map = unsafe { MmapOptions::new().len(len as usize).map(&file) }
        .map_err(|source| Error::Os { what: "mapping a peer's payload segment", source })?;
    Ok(Some(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_reused_once_released() {
        let mut segs = Segments::default();
        let fd1 = {
            let s = segs.acquire(10, |_, _| false).unwrap();
            s.busy = Some((1, 1));
            s.fd()
        };
        // Still in use: a second acquire must create another segment.
        let fd2 = segs.acquire(10, |_, _| true).unwrap().fd();
        assert_ne!(fd1, fd2);
        // Released: the first is reused.
        let fd3 = segs.acquire(10, |_, _| false).unwrap().fd();
        assert!(fd3 == fd1 || fd3 == fd2);
        assert_eq!(segs.len(), 2);
    }

    #[test]
    fn a_peer_can_read_a_segment_through_proc() {
        let mut segs = Segments::default();
        let seg = segs.acquire(5, |_, _| false).unwrap();
        seg.bytes_mut()[..5].copy_from_slice(b"hello");
        let map = map_remote(std::process::id(), seg.fd() as u32, 5).unwrap().unwrap();
        assert_eq!(&map[..], b"hello");
    }

    #[test]
    fn a_descriptor_longer_than_the_segment_is_refused() {
        let seg = Segment::create(1).unwrap();
        let err = map_remote(std::process::id(), seg.fd() as u32, seg.cap() + 1).unwrap_err();
        assert!(err.to_string().contains("descriptor claims"), "{err}");
    }

    #[test]
    fn a_missing_segment_is_an_error_not_a_crash() {
        let err = map_remote(std::process::id(), 999_999, 10).unwrap_err();
        assert!(err.to_string().contains("cannot open payload segment"), "{err}");
    }
}
