//! The shared control region: one anonymous memfd mapping, created by the parent before it forks.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use memmap2::{MmapMut, MmapOptions};

use crate::layout::{
    Config, Counters, Doorbell, Header, RawDescriptor, SlotMeta, WorkerEntry, LAYOUT_VERSION, MAGIC, MAX_INLINE_SIZE,
    MAX_SLOTS, MAX_WORKERS, SLOT_META,
};
use crate::sys;
use crate::{Error, Result};

/// The async doorbell's descriptor, shared by every clone of a region in one process and closable
/// once (-1 = closed).
#[derive(Debug)]
struct Bell(AtomicI32);

impl Bell {
    fn close(&self) {
        let fd = self.0.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: the cell owned this fd and the swap gave it to us alone.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

impl Drop for Bell {
    fn drop(&mut self) {
        self.close();
    }
}

/// A view of the control region. Cloning is cheap and clones share one mapping.
///
/// The mapping is MAP_SHARED, so a forked child's copy of this value points at the same pages.
#[derive(Clone, Debug)]
pub struct Region {
    /// Owns the mapping that `base` points into; never read, only kept alive with the view.
    _map: Arc<MmapMut>,
    /// The async doorbell: an eventfd created with the region, so the supervisor and every
    /// worker inherit it through fork. Written only for calls an event loop waits on
    /// (`SlotMeta::async_waiter`) and after a death; see `Pool::arm_async`.
    bell: Arc<Bell>,
    base: *mut u8,
    workers: u32,
    slots: u32,
    slot_size: usize,
    inline_size: usize,
    slots_offset: usize,
}

// SAFETY: all cross-thread access to the mapping goes through atomics, or through plain descriptor
// and payload bytes whose publication is ordered by a release/acquire pair on the slot state.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` hands out only shared references to atomics and raw pointers.
unsafe impl Sync for Region {}

impl Region {
    /// Creates and initializes a fresh region for `cfg`, pre-faulted so no call pays for pages.
    pub fn create(cfg: &Config) -> Result<Region> {
        cfg.validate()?;
        let size = cfg.region_size();
        let file = sys::memfd(c"multicore-control")
            .map_err(|source| Error::Os { what: "memfd_create for the control region", source })?;
        file.set_len(size as u64).map_err(|source| Error::Os { what: "sizing the control region", source })?;
        // SAFETY: the file is a memfd only we hold; nobody truncates it while it is mapped.
        let mut map = unsafe { MmapOptions::new().len(size).populate().map_mut(&file) }
            .map_err(|source| Error::Os { what: "mapping the control region", source })?;
        // The mapping keeps the memory alive; the fd is not needed (and not inherited) after this.
        drop(file);
        map.fill(0);
        let base = map.as_mut_ptr();
        // SAFETY: the region starts with a Header-sized, line-aligned area (page-aligned mapping).
        let header = unsafe { &mut *(base as *mut Header) };
        header.magic = MAGIC;
        header.version = LAYOUT_VERSION;
        header.workers = cfg.workers;
        header.slots = cfg.slots;
        header.slot_size = cfg.slot_size() as u32;
        header.inline_size = cfg.inline_size;
        header.parent_pid = std::process::id();
        header.region_size = size as u64;
        header.max_payload = cfg.max_payload.unwrap_or(u64::MAX);
        header.worker_spin_us = cfg.worker_spin_us;
        header.parent_spin_us = cfg.parent_spin_us;
        header.segment_keep_bytes = cfg.segment_keep_bytes;
        Region::from_map(Arc::new(map), Arc::new(Bell(AtomicI32::new(sys::eventfd()?.into_raw_fd()))))
    }

    /// Checks the header before trusting any offset derived from it.
    fn from_map(map: Arc<MmapMut>, bell: Arc<Bell>) -> Result<Region> {
        let base = map.as_ptr() as *mut u8;
        if map.len() < size_of::<Header>() {
            return Err(Error::Protocol("control region smaller than its header".into()));
        }
        // SAFETY: length checked above; the mapping is page-aligned.
        let header = unsafe { &*(base as *const Header) };
        if header.magic != MAGIC || header.version != LAYOUT_VERSION {
            return Err(Error::Protocol(format!(
                "control region has layout version {} (this build speaks {LAYOUT_VERSION})",
                header.version
            )));
        }
        let cfg = Config {
            workers: header.workers,
            slots: header.slots,
            inline_size: header.inline_size,
            worker_spin_us: header.worker_spin_us,
            parent_spin_us: header.parent_spin_us,
            max_payload: None, // geometry only: nothing below reads it
            segment_keep_bytes: header.segment_keep_bytes,
        };
        if cfg.workers == 0
            || cfg.workers > MAX_WORKERS
            || cfg.slots > MAX_SLOTS
            || cfg.inline_size > MAX_INLINE_SIZE
            || cfg.region_size() > map.len()
            || header.slot_size as usize != cfg.slot_size()
        {
            return Err(Error::Protocol("control region header geometry is inconsistent".into()));
        }
        Ok(Region {
            base,
            workers: cfg.workers,
            slots: cfg.slots,
            slot_size: cfg.slot_size(),
            inline_size: cfg.inline_size as usize,
            slots_offset: cfg.slots_offset(),
            _map: map,
            bell,
        })
    }

    /// The async doorbell's descriptor (see the `bell` field); -1 once closed.
    pub fn async_bell(&self) -> i32 {
        self.bell.0.load(Ordering::Acquire)
    }

    /// Tells event loops in the parent that a call they wait on may have finished. Workers and
    /// the supervisor ring; they never close the bell, so the descriptor cannot change under them.
    pub fn ring_async_bell(&self) {
        let fd = self.async_bell();
        if fd >= 0 {
            sys::eventfd_ring(&fd);
        }
    }

    /// Reads and resets the async doorbell's counter (0 when nothing rang since the last drain).
    /// Not while another thread may close the bell: event loops read a duplicate of their own.
    pub fn drain_async_bell(&self) -> u64 {
        let fd = self.async_bell();
        if fd >= 0 {
            sys::eventfd_drain(&fd)
        } else {
            0
        }
    }

    /// Closes this process's async doorbell (the parent, when its pool stops), so a Task that
    /// outlives its pool holds no descriptor. Other processes keep their copies.
    pub fn close_async_bell(&self) {
        self.bell.close();
    }

    pub fn workers(&self) -> u32 {
        self.workers
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    pub fn inline_size(&self) -> usize {
        self.inline_size
    }

    pub fn header(&self) -> &Header {
        // SAFETY: validated in from_map; Header's mutable fields are atomics.
        unsafe { &*(self.base as *const Header) }
    }

    pub fn doorbell(&self) -> &Doorbell {
        // SAFETY: fixed offset inside the validated region; all fields atomic.
        unsafe { &*(self.base.add(crate::layout::LINE) as *const Doorbell) }
    }

    pub fn counters(&self) -> &Counters {
        // SAFETY: fixed offset inside the validated region; all fields atomic.
        unsafe { &*(self.base.add(2 * crate::layout::LINE) as *const Counters) }
    }

    pub fn worker(&self, index: u32) -> &WorkerEntry {
        assert!(index < self.workers, "worker index {index} out of range");
        let offset = Config::workers_offset() + index as usize * crate::layout::LINE;
        // SAFETY: index bounds-checked; entries are line-aligned inside the region.
        unsafe { &*(self.base.add(offset) as *const WorkerEntry) }
    }

    fn slot_ptr(&self, index: u32) -> *mut u8 {
        assert!(index < self.slots, "slot index {index} out of range");
        // SAFETY: index bounds-checked; slot_size * slots fits in the region (from_map).
        unsafe { self.base.add(self.slots_offset + index as usize * self.slot_size) }
    }

    pub fn slot(&self, index: u32) -> &SlotMeta {
        // SAFETY: SlotMeta sits at the start of each line-aligned slot; the fields other
        // processes write concurrently are atomics, descriptors are accessed via the raw helpers.
        unsafe { &*(self.slot_ptr(index) as *const SlotMeta) }
    }

    pub fn read_descriptor(&self, index: u32, response: bool) -> RawDescriptor {
        let meta = self.slot_ptr(index) as *mut SlotMeta;
        // SAFETY: in-bounds; volatile because another process may have written it, and the value
        // is validated by the caller before use.
        unsafe {
            if response {
                std::ptr::read_volatile(std::ptr::addr_of!((*meta).response))
            } else {
                std::ptr::read_volatile(std::ptr::addr_of!((*meta).request))
            }
        }
    }

    pub fn write_descriptor(&self, index: u32, response: bool, d: RawDescriptor) {
        let meta = self.slot_ptr(index) as *mut SlotMeta;
        // SAFETY: in-bounds; only the slot's current owner (per its state) writes a descriptor.
        unsafe {
            if response {
                std::ptr::write_volatile(std::ptr::addr_of_mut!((*meta).response), d)
            } else {
                std::ptr::write_volatile(std::ptr::addr_of_mut!((*meta).request), d)
            }
        }
    }

    /// The inline payload area of a slot. Only the slot's current owner may touch it.
    pub fn inline_ptr(&self, index: u32) -> *mut u8 {
        // SAFETY: the inline area follows the 128-byte meta inside the slot.
        unsafe { self.slot_ptr(index).add(SLOT_META) }
    }

    pub fn supervisor_pid(&self) -> u32 {
        self.header().supervisor_pid.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_region_has_valid_header_and_free_slots() {
        let cfg = Config { workers: 2, slots: 8, ..Config::default() };
        let r = Region::create(&cfg).unwrap();
        assert_eq!(r.workers(), 2);
        assert_eq!(r.slots(), 8);
        for i in 0..8 {
            assert_eq!(r.slot(i).state.load(Ordering::Relaxed), 0);
        }
        assert_eq!(r.header().parent_pid, std::process::id());
    }

    #[test]
    fn corrupt_magic_is_refused() {
        let cfg = Config::default();
        let r = Region::create(&cfg).unwrap();
        // SAFETY: test-only corruption of our own fresh mapping.
        unsafe { (*(r.base as *mut Header)).version = 99 };
        let err = Region::from_map(r._map.clone(), r.bell.clone()).expect_err("must refuse");
        assert!(err.to_string().contains("layout version 99"), "{err}");
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn slot_index_is_bounds_checked() {
        let r = Region::create(&Config { slots: 4, ..Config::default() }).unwrap();
        r.slot(4);
    }
}
