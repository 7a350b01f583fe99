//! Large payloads: memfd segments owned by the sending process, read by the peer via /proc.
//!
//! A payload that does not fit in its slot goes into a segment of the sender's. Segments are
//! recycled, so the 1 ms/MB first-touch cost of fresh shmem pages is paid once per size class, not
//! per call. Space is reserved with `fallocate`, which fails with an error where a lazily faulted
//! mapping would later die of SIGBUS (a small /dev/shm or memory cgroup).
//!
//! The receiver opens `/proc/<sender pid>/fd/<fd>`, which reaches the same memfd without any
//! descriptor passing; that needs the two processes to share a uid, which parent and workers do.
//!
//! Reuse pays on a hot path, but a process must not hold a 100 MB segment for the rest of its
//! life after one large payload. So only the smallest segments, up to `keep_bytes` in all, are
//! kept for good; every other one is closed (its pages go back to the kernel) once it has been
//! idle for [`IDLE`]. [`Segments::trim`] does that and says when to call it again; the parent
//! calls it from a short-lived thread ([`SharedSegments`]), a worker from its futex wait.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::region::Region;
use crate::sys;
use crate::{Error, Result};

/// Capacity granularity: payloads round up to this, plus 1/8 headroom, so sizes that wobble
/// between calls keep reusing one segment.
const GRANULE: u64 = 1 << 20;
/// Idle segments a process keeps for reuse; more are unmapped.
const MAX_KEPT: usize = 4;
/// How long a segment beyond the kept budget stays mapped after its last use: long enough for
/// back-to-back large payloads to reuse it (a fresh one costs ~1 ms per MB in page faults),
/// short enough that a process at rest gives the memory back within about a second.
pub const IDLE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Segment {
    file: File,
    map: MmapMut,
    cap: u64,
    /// The (slot, ticket) whose descriptor points here, until the peer is done with it.
    pub busy: Option<(u32, u64)>,
    last_used: Instant,
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
        Ok(Segment { file, map, cap, busy: None, last_used: Instant::now() })
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
#[derive(Debug)]
pub struct Segments {
    list: Vec<Segment>,
    /// Idle segments up to this many bytes in all (smallest first) are kept for good.
    keep_bytes: u64,
}

impl Default for Segments {
    fn default() -> Self {
        Segments::new(u64::MAX)
    }
}

impl Segments {
    pub fn new(keep_bytes: u64) -> Segments {
        Segments { list: Vec::new(), keep_bytes }
    }

    fn refresh(&mut self, in_use: impl Fn(u32, u64) -> bool) {
        for seg in &mut self.list {
            if let Some((slot, ticket)) = seg.busy {
                if !in_use(slot, ticket) {
                    seg.busy = None;
                }
            }
        }
    }

    /// Returns an idle segment of at least `len` bytes, creating one if needed. `in_use(slot,
    /// ticket)` tells whether the peer may still read a segment marked busy for that call.
    pub fn acquire(&mut self, len: u64, in_use: impl Fn(u32, u64) -> bool) -> Result<&mut Segment> {
        self.refresh(&in_use);
        let now = Instant::now();
        self.trim(now, &in_use);
        // The smallest that fits: a stream of medium payloads must not keep a huge segment alive.
        let fitting = self
            .list
            .iter()
            .enumerate()
            .filter(|(_, s)| s.busy.is_none() && s.cap >= len)
            .min_by_key(|(_, s)| s.cap)
            .map(|(i, _)| i);
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
        let seg = &mut self.list[index];
        seg.last_used = now;
        Ok(seg)
    }

    /// Closes every idle segment beyond the kept budget that has not been used for [`IDLE`].
    /// Returns when to call again (a surplus segment is still mapped), or None.
    pub fn trim(&mut self, now: Instant, in_use: impl Fn(u32, u64) -> bool) -> Option<Instant> {
        self.refresh(in_use);
        // Kept for good: the smallest segments while they fit the budget together.
        self.list.sort_by_key(|s| s.cap);
        let mut budget = self.keep_bytes;
        let mut next: Option<Instant> = None;
        let mut index = 0;
        self.list.retain(|s| {
            index += 1;
            if index <= MAX_KEPT && s.cap <= budget {
                budget -= s.cap;
                return true;
            }
            let due = s.last_used + IDLE;
            if s.busy.is_none() && now >= due {
                return false; // unmapped and closed on drop: the kernel frees its pages
            }
            // Busy (the peer has not read it yet) or recently used: look again later.
            let at = if now >= due { now + IDLE } else { due };
            next = Some(next.map_or(at, |n| n.min(at)));
            true
        });
        next
    }

    /// Whether `trim` may have anything to do (cheap: checked after every write).
    pub fn has_surplus(&self) -> bool {
        self.list.len() > MAX_KEPT || self.mapped_bytes() > self.keep_bytes
    }

    /// Bytes of the segments currently mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.list.iter().map(|s| s.cap).sum()
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

/// The parent's outgoing segments, shared by its threads.
///
/// The parent has no loop of its own to give memory back from while it is at rest, so while a
/// segment beyond the kept budget is mapped, a thread sleeps until it is due and trims. The
/// thread exits as soon as nothing is left to trim (it does not exist in a pool that only ever
/// moved small payloads), and holds only a weak reference, so a dropped pool ends it.
#[derive(Debug)]
pub struct SharedSegments {
    inner: Arc<SharedInner>,
}

#[derive(Debug)]
struct SharedInner {
    region: Region,
    in_use: fn(&Region, u32, u64) -> bool,
    /// The segments, and whether a trimming thread is running (changed only under this lock).
    state: Mutex<(Segments, bool)>,
}

impl SharedSegments {
    pub fn new(region: Region, keep_bytes: u64, in_use: fn(&Region, u32, u64) -> bool) -> SharedSegments {
        let state = Mutex::new((Segments::new(keep_bytes), false));
        SharedSegments { inner: Arc::new(SharedInner { region, in_use, state }) }
    }

    /// Runs `f` on the segments (`in_use` bound to the region), then makes sure a trimming thread
    /// runs while anything is left to trim.
    pub fn with<R>(&self, f: impl FnOnce(&mut Segments, &dyn Fn(u32, u64) -> bool) -> R) -> R {
        let inner = &*self.inner;
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let in_use = |slot, ticket| (inner.in_use)(&inner.region, slot, ticket);
        let out = f(&mut state.0, &in_use);
        if !state.1 && state.0.has_surplus() {
            if let Some(at) = state.0.trim(Instant::now(), in_use) {
                state.1 = spawn_trimmer(Arc::downgrade(&self.inner), at);
            }
        }
        out
    }
}

fn spawn_trimmer(weak: Weak<SharedInner>, first: Instant) -> bool {
    let run = move || {
        let mut at = first;
        loop {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            let Some(inner) = weak.upgrade() else { return };
            let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            let in_use = |slot, ticket| (inner.in_use)(&inner.region, slot, ticket);
            match state.0.trim(Instant::now(), in_use) {
                Some(next) => at = next,
                None => {
                    state.1 = false;
                    return;
                }
            }
        }
    };
    // If no thread can be started, the next call that writes a segment trims instead.
    std::thread::Builder::new().name("multicore-trim".into()).spawn(run).is_ok()
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
    fn segments_beyond_the_kept_budget_are_closed_after_idle() {
        let mut segs = Segments::new(2 << 20);
        let small = segs.acquire(10, |_, _| false).unwrap().fd();
        let big = {
            let s = segs.acquire(5 << 20, |_, _| false).unwrap();
            s.busy = Some((3, 7));
            s.fd()
        };
        assert_eq!(segs.len(), 2);
        let now = Instant::now();
        // Freshly used: kept, and trim says when to look again.
        let due = segs.trim(now, |s, t| (s, t) == (3, 7)).expect("a surplus segment is due later");
        assert!(due > now && due <= now + IDLE);
        assert_eq!(segs.len(), 2);
        // Due, but the peer has not read it: kept.
        assert!(segs.trim(now + IDLE, |s, t| (s, t) == (3, 7)).is_some());
        assert_eq!(segs.len(), 2);
        // Due and read: closed. The small one stays for good (nothing more to trim).
        assert_eq!(segs.trim(now + IDLE, |_, _| false), None);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs.mapped_bytes(), GRANULE);
        assert!(std::fs::metadata(format!("/proc/self/fd/{small}")).is_ok(), "the kept segment stays open");
        assert!(std::fs::metadata(format!("/proc/self/fd/{big}")).map_or(true, |m| m.len() != 6 << 20));
    }

    #[test]
    fn the_smallest_fitting_segment_is_reused() {
        let mut segs = Segments::default();
        let big = segs.acquire(10 << 20, |_, _| false).unwrap().fd();
        let small = segs.acquire(20 << 20, |_, _| false).unwrap().fd();
        assert_ne!(big, small);
        assert_eq!(segs.acquire(1, |_, _| false).unwrap().fd(), big, "10 MB fits 1 byte, 20 MB is larger");
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
