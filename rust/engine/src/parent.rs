//! The parent's side: submit calls, wait for and take results, cancel, shut down.
//!
//! Many parent threads may use one `Pool` at once; every shared step is a CAS on a slot state, and
//! the one process-local lock guards the parent's outgoing segments.

use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicI32, AtomicU32};
use std::time::{Duration, Instant};

use crate::descriptor;
use crate::layout::{Config, ExitStatus, PoolState, SlotState, WorkerState};
use crate::notify::{self, decrement, notify_free, wake_all_waiters};
use crate::region::Region;
use crate::segment::SharedSegments;
use crate::supervisor::Supervisor;
use crate::sys;
use crate::{Error, Result};

/// What `take` found in a slot.
#[derive(Debug)]
pub enum Outcome<R> {
    Done(R),
    /// The worker running the call died; `pid` and how it ended.
    Lost {
        pid: u32,
        status: ExitStatus,
    },
    Pending,
}

/// What `cancel` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// The call never ran, or its result was dropped; the slot is free again.
    Freed,
    /// A worker was running it; the result will be discarded and the worker was sent SIGKILL
    /// when asked.
    Abandoned { pid: u32 },
    /// The handle no longer names a call.
    Gone,
}

#[derive(Debug)]
pub struct WorkerInfo {
    pub index: u32,
    pub pid: u32,
    pub state: WorkerState,
    pub generation: u32,
    pub tasks_done: u64,
    pub tasks_total: u64,
    pub respawns: u32,
    pub recycles: u32,
    pub last_exit: Option<(u32, ExitStatus)>,
}

#[derive(Debug)]
pub struct PoolInfo {
    pub state: PoolState,
    pub supervisor_pid: u32,
    pub workers: Vec<WorkerInfo>,
    pub slots: u32,
    pub slots_in_use: u32,
    pub queued: u32,
    pub completed: u64,
    pub discarded: u64,
}

#[derive(Debug)]
pub struct Pool {
    region: Region,
    segments: SharedSegments,
    /// Write end held only by the parent: its closing (shutdown or death) stops the supervisor.
    /// Raw fds in atomics rather than a Mutex<Option<OwnedFd>>: a child forked while another
    /// thread held such a lock could never drop its copies.
    death_write: FdCell,
    /// Read end, handed to the supervisor when it is forked.
    death_read: FdCell,
    supervisor_pidfd: FdCell,
    supervisor_pid: AtomicU32,
    owner_pid: u32,
}

/// An owned fd that any thread may take exactly once (-1 = empty).
#[derive(Debug)]
struct FdCell(AtomicI32);

impl FdCell {
    fn new(fd: OwnedFd) -> FdCell {
        FdCell(AtomicI32::new(fd.into_raw_fd()))
    }

    fn empty() -> FdCell {
        FdCell(AtomicI32::new(-1))
    }

    fn take(&self) -> Option<OwnedFd> {
        let fd = self.0.swap(-1, AcqRel);
        // SAFETY: the cell owned this fd and the swap gave it to us alone.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn put(&self, fd: OwnedFd) {
        drop(self.take());
        self.0.store(fd.into_raw_fd(), Release);
    }

    fn raw(&self) -> i32 {
        self.0.load(Acquire)
    }
}

impl Drop for FdCell {
    fn drop(&mut self) {
        drop(self.take());
    }
}

impl Pool {
    pub fn create(cfg: &Config) -> Result<Pool> {
        let region = Region::create(cfg)?;
        let (death_read, death_write) = sys::pipe("pipe2 for the supervisor's death pipe")?;
        Ok(Pool {
            segments: SharedSegments::new(region.clone(), cfg.segment_keep_bytes, request_in_use),
            region,
            death_write: FdCell::new(death_write),
            death_read: FdCell::new(death_read),
            supervisor_pidfd: FdCell::empty(),
            supervisor_pid: AtomicU32::new(0),
            owner_pid: std::process::id(),
        })
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    pub fn owner_pid(&self) -> u32 {
        self.owner_pid
    }

    /// In the freshly forked supervisor process: keep only what the supervisor needs.
    pub fn become_supervisor(&self) -> Result<Supervisor> {
        // The write end must not stay open here, or the pipe would never report the parent's death.
        drop(self.death_write.take());
        drop(self.supervisor_pidfd.take());
        let death_read = self
            .death_read
            .take()
            .ok_or_else(|| Error::Unavailable("this pool already handed off its supervisor".into()))?;
        self.region.header().supervisor_pid.store(std::process::id(), Release);
        Ok(Supervisor::new(self.region.clone(), death_read))
    }

    /// In the parent, after forking the supervisor.
    pub fn supervisor_started(&self, pid: u32) -> Result<()> {
        drop(self.death_read.take());
        self.supervisor_pid.store(pid, Release);
        self.supervisor_pidfd.put(sys::pidfd_open(pid)?);
        Ok(())
    }

    /// In a child the user forked from the owner: drop our copies of the owner's descriptors
    /// without touching shared state, so the owner's pool is unaffected and still dies with it.
    pub fn forget_in_child(&self) {
        self.region.close_async_bell();
        drop(self.death_write.take());
        drop(self.death_read.take());
        drop(self.supervisor_pidfd.take());
    }

    pub fn state(&self) -> PoolState {
        PoolState::from_raw(self.region.header().pool_state.load(Acquire))
    }

    pub fn supervisor_alive(&self) -> bool {
        let fd = self.supervisor_pidfd.raw();
        // SAFETY: the cell keeps the fd open while it is non-negative; a concurrent shutdown
        // closing it makes poll report POLLNVAL, which reads as "exited" — the truth by then.
        fd >= 0 && !sys::pidfd_exited(&unsafe { BorrowedFd::borrow_raw(fd) }, Duration::ZERO)
    }

    fn check_running(&self) -> Result<()> {
        match self.state() {
            PoolState::Running if self.supervisor_pidfd.raw() >= 0 => Ok(()),
            PoolState::Running => Err(Error::Unavailable("the pool has no supervisor process".into())),
            PoolState::Stopping => Err(Error::Unavailable("the pool is shutting down".into())),
            PoolState::Broken => {
                let status = ExitStatus::from_raw(self.region.header().broken_status.load(Acquire));
                Err(Error::Unavailable(format!(
                    "workers kept dying during start-up (last: {status}); the pool stopped \
                     respawning them. Check worker start-up (imports, Django set-up) and call \
                     shutdown() then initialize() again"
                )))
            }
        }
    }

    /// Reserves a slot and publishes a call; `None` when every slot is taken (apply backpressure:
    /// take finished results, or `wait_for_free_slot`).
    pub fn submit(&self, tag: u32, parts: &[&[u8]]) -> Result<Option<(u32, u64)>> {
        self.check_running()?;
        let Some(slot) = self.reserve() else { return Ok(None) };
        let ticket = self.write_and_publish(slot, tag, parts)?;
        self.ring_doorbell();
        Ok(Some((slot, ticket)))
    }

    /// Step 1 of a submit: takes a FREE slot (FREE -> RESERVED), scanning from a shared cursor so
    /// concurrent submitters spread over the slots.
    fn reserve(&self) -> Option<u32> {
        let n = self.region.slots();
        let start = self.region.counters().alloc_cursor.fetch_add(1, Relaxed) % n;
        (0..n).map(|i| (start + i) % n).find(|&i| {
            let state = &self.region.slot(i).state;
            // A plain load first: a failed CAS on a line another CPU owns costs ~100x more.
            // ORDERING: Acquire pairs with the Release store of FREE, so the previous owner's
            // last reads of this slot happen before we overwrite it.
            state.load(Relaxed) == 0
                && state.compare_exchange(0, SlotState::Reserved.to_raw(), Acquire, Relaxed).is_ok()
        })
    }

    /// Step 2: stamps a fresh ticket on the reserved slot, writes the request (inline or into a
    /// segment) and publishes QUEUED. On an error the slot is freed and nothing was published.
    fn write_and_publish(&self, slot: u32, tag: u32, parts: &[&[u8]]) -> Result<u64> {
        let meta = self.region.slot(slot);
        let ticket = self.region.counters().next_ticket.fetch_add(1, Relaxed) + 1;
        meta.ticket.store(ticket, Relaxed);
        meta.req_taken.store(0, Relaxed);
        meta.waiter.store(0, Relaxed);
        meta.async_waiter.store(0, Relaxed);
        let written = {
            let region = &self.region;
            let to = descriptor::Destination { slot, ticket, response: false };
            self.segments.with(|segs, in_use| descriptor::write(region, to, tag, parts, segs, in_use))
        };
        if let Err(e) = written {
            self.free(slot);
            return Err(e);
        }
        // ORDERING: Release publishes the descriptor and payload written above to the claimer.
        meta.state.store(SlotState::Queued.to_raw(), Release);
        Ok(ticket)
    }

    /// Step 3: counts the new call and wakes a sleeping worker, unless the spinning worker and
    /// the workers already woken cover the queue, or every sleeper is already on its way.
    fn ring_doorbell(&self) {
        let bell = self.region.doorbell();
        bell.queued.fetch_add(1, SeqCst);
        bell.parent_cpu.store(sys::current_cpu(), Relaxed);
        // ORDERING: SeqCst bump then SeqCst load of `sleepers` pairs with the worker's SeqCst
        // `sleepers` increment then `work_seq` futex compare (a Dekker pair): either the worker
        // sees the new work or we see it asleep and wake it. The `spinner` load is only a hint
        // (see WorkerChannel::next_call for why trusting it cannot strand a call).
        bell.work_seq.fetch_add(1, SeqCst);
        let spinning = i32::from(bell.spinner.load(SeqCst) != 0);
        let waking = bell.waking.load(SeqCst) as i32;
        if bell.sleepers.load(SeqCst) as i32 > waking && bell.queued.load(SeqCst) as i32 > spinning + waking {
            bell.waking.fetch_add(1, SeqCst);
            if sys::futex_wake(&bell.work_seq, 1) == 0 {
                // Nobody was in the futex (a sleeper about to re-check sees this call anyway).
                decrement(&bell.waking);
            }
        }
    }

    fn free(&self, slot: u32) {
        // ORDERING: Release orders our reads of the response before the next owner's writes.
        self.region.slot(slot).state.store(SlotState::Free.to_raw(), Release);
        notify_free(&self.region);
    }

    /// Takes the result of a call if it is finished; frees the slot when it does.
    pub fn take<R>(&self, slot: u32, ticket: u64, f: impl FnOnce(u32, &[u8]) -> R) -> Result<Outcome<R>> {
        let meta = self.region.slot(slot);
        if meta.ticket.load(Acquire) != ticket {
            return Err(Error::StaleHandle { slot, ticket });
        }
        // ORDERING: Acquire pairs with the worker's Release CAS to DONE (response visible) and the
        // supervisor's to LOST (lost_pid/lost_status visible).
        let raw = meta.state.load(Acquire);
        match SlotState::from_raw(raw) {
            Some(SlotState::Done) => match descriptor::read(&self.region, slot, true, f) {
                Ok(out) => {
                    self.free(slot);
                    Ok(Outcome::Done(out))
                }
                // The result was in the segment of a worker that died before we read it.
                Err(err) => match self.dead_writer(slot) {
                    Writer::Recorded { pid, status } => {
                        self.free(slot);
                        Ok(Outcome::Lost { pid, status })
                    }
                    Writer::Dying => Ok(Outcome::Pending),
                    Writer::Alive => {
                        self.free(slot);
                        Err(err)
                    }
                },
            },
            Some(SlotState::Lost) => {
                let pid = meta.lost_pid.load(Relaxed);
                let status = ExitStatus::from_raw(meta.lost_status.load(Relaxed));
                self.free(slot);
                Ok(Outcome::Lost { pid, status })
            }
            Some(SlotState::Free) | Some(SlotState::Abandoned(_)) => Err(Error::StaleHandle { slot, ticket }),
            Some(_) => Ok(Outcome::Pending),
            None => {
                self.free(slot);
                Err(Error::Protocol(format!("slot {slot} holds state word {raw:#x}")))
            }
        }
    }

    /// After a response segment could not be read: did the worker that wrote it die since?
    fn dead_writer(&self, slot: u32) -> Writer {
        let d = self.region.read_descriptor(slot, true);
        if d.place != descriptor::PLACE_SEGMENT {
            return Writer::Alive;
        }
        let pid = d.seg_pid;
        // ORDERING: Acquire pairs with record_death's Release stores; it marks results before it
        // clears the entry's pid, so reading in the other order cannot miss both.
        let unrecorded = (0..self.region.workers()).any(|w| self.region.worker(w).pid.load(Acquire) == pid);
        let meta = self.region.slot(slot);
        if meta.lost_pid.load(Acquire) == pid {
            return Writer::Recorded { pid, status: ExitStatus::from_raw(meta.lost_status.load(Relaxed)) };
        }
        // Dead but not yet reaped: the supervisor records it within moments and wakes us.
        if unrecorded && sys::process_gone(pid) {
            Writer::Dying
        } else {
            Writer::Alive
        }
    }

    /// Counter that changes whenever the supervisor marks calls LOST.
    pub fn lost_seq(&self) -> u32 {
        self.region.counters().lost_seq.load(Acquire)
    }

    /// Blocks (no GIL should be held) until the call may be finished, `until` passes, or
    /// `lost_seq` moves past `lost_seen`. Spins only while the worker runs on another CPU.
    pub fn wait(&self, slot: u32, ticket: u64, until: Instant, lost_seen: u32) {
        let meta = self.region.slot(slot);
        let ready = |raw: u32| matches!(SlotState::from_raw(raw), Some(SlotState::Done | SlotState::Lost) | None);
        let stop = |raw: u32| ready(raw) || meta.ticket.load(Relaxed) != ticket || self.lost_seq() != lost_seen;
        let spin = Duration::from_micros(u64::from(self.region.header().parent_spin_us));
        if !spin.is_zero() {
            let spin_until = Instant::now() + spin;
            let my_cpu = sys::current_cpu();
            loop {
                let raw = meta.state.load(Acquire);
                if stop(raw) {
                    return;
                }
                let worker_cpu = match SlotState::from_raw(raw) {
                    Some(SlotState::Claimed(w)) if w < self.region.workers() => self.region.worker(w).cpu.load(Relaxed),
                    _ => my_cpu,
                };
                // Spinning on the worker's own CPU would only delay it.
                if worker_cpu == my_cpu || Instant::now() >= spin_until {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        loop {
            let now = Instant::now();
            if now >= until {
                return;
            }
            meta.waiter.store(1, SeqCst);
            let raw = meta.state.load(SeqCst);
            if stop(raw) {
                meta.waiter.store(0, Relaxed);
                return;
            }
            // ORDERING: waiter=1 (SeqCst) before re-reading the state, against the worker's
            // state CAS (SeqCst) before reading `waiter`: one of us sees the other.
            sys::futex_wait(&meta.state, raw, Some(until - now));
            meta.waiter.store(0, Relaxed);
            if stop(meta.state.load(Acquire)) {
                return;
            }
        }
    }

    /// Flags the call as awaited by an event loop: from now on the worker that finishes it (or the
    /// supervisor, if that worker dies) rings the async doorbell (`Region::async_bell`). Returns
    /// true when the call already finished (or the handle is stale), so the caller must look now
    /// instead of waiting for a ring that may never come.
    pub fn arm_async(&self, slot: u32, ticket: u64) -> bool {
        let meta = self.region.slot(slot);
        meta.async_waiter.store(1, SeqCst);
        // ORDERING: the SeqCst flag store precedes this SeqCst state load; the worker's SeqCst
        // CAS to DONE precedes its SeqCst `async_waiter` load (WorkerChannel::reply). Either we
        // see DONE here, or the worker sees the flag and rings. LOST needs no pairing: the
        // supervisor rings after every death, unconditionally, after marking the slots.
        let raw = meta.state.load(SeqCst);
        meta.ticket.load(Acquire) != ticket
            || !matches!(
                SlotState::from_raw(raw),
                Some(SlotState::Reserved | SlotState::Queued | SlotState::Claimed(_))
            )
    }

    /// The async doorbell's descriptor, for an event loop to watch (readable after a ring).
    pub fn async_bell(&self) -> i32 {
        self.region.async_bell()
    }

    /// Resets the async doorbell; returns how many rings it counted since the last drain.
    pub fn drain_async_bell(&self) -> u64 {
        self.region.drain_async_bell()
    }

    /// The supervisor's pidfd (-1 when there is none): readable once the supervisor exited.
    pub fn supervisor_pidfd(&self) -> i32 {
        self.supervisor_pidfd.raw()
    }

    /// Withdraws a call that no worker has claimed yet (QUEUED -> FREE); false when it is no
    /// longer queued. Cancelling a batch withdraws every queued call first, so killing a
    /// running call's worker cannot let its replacement pick up a later call of the same batch.
    pub fn withdraw(&self, slot: u32, ticket: u64) -> bool {
        let meta = self.region.slot(slot);
        let queued = SlotState::Queued.to_raw();
        // ORDERING: only a call's owner frees its slot (or lets a worker free it, by abandoning
        // it), so between this ticket check and the CAS the slot cannot come to hold another
        // call; AcqRel as in `cancel`, whose QUEUED arm this is.
        if meta.ticket.load(Acquire) != ticket {
            return false;
        }
        if meta.state.compare_exchange(queued, SlotState::Free.to_raw(), AcqRel, Relaxed).is_err() {
            return false;
        }
        self.region.doorbell().queued.fetch_sub(1, SeqCst);
        notify_free(&self.region);
        true
    }

    /// Blocks until some slot may have been freed or `until` passes.
    pub fn wait_for_free_slot(&self, until: Instant) {
        // ORDERING: the scan runs after notify::wait_for_free registered us as a waiter (SeqCst),
        // and a slot freed after that wakes us through notify_free; see notify.rs.
        notify::wait_for_free(&self.region, || {
            let any_free = (0..self.region.slots()).any(|i| self.region.slot(i).state.load(Relaxed) == 0);
            let now = Instant::now();
            (!any_free && now < until && self.state() == PoolState::Running).then(|| until - now)
        });
    }

    /// Gives up on a call. A queued call is withdrawn; a running one is abandoned (its result will
    /// be discarded) and, with `kill`, its worker is sent SIGKILL and replaced by the supervisor.
    pub fn cancel(&self, slot: u32, ticket: u64, kill: bool) -> Cancelled {
        let meta = self.region.slot(slot);
        loop {
            if meta.ticket.load(Acquire) != ticket {
                return Cancelled::Gone;
            }
            let raw = meta.state.load(Acquire);
            match SlotState::from_raw(raw) {
                Some(SlotState::Queued) => {
                    if meta.state.compare_exchange(raw, SlotState::Free.to_raw(), AcqRel, Relaxed).is_ok() {
                        self.region.doorbell().queued.fetch_sub(1, SeqCst);
                        notify_free(&self.region);
                        return Cancelled::Freed;
                    }
                }
                Some(SlotState::Claimed(w)) if w < self.region.workers() => {
                    // Read the pid before the CAS: if the CAS wins, the supervisor has not yet
                    // processed this worker's death, so the pid is the incarnation that claimed.
                    let pid = self.region.worker(w).pid.load(Acquire);
                    let abandoned = SlotState::Abandoned(w).to_raw();
                    if meta.state.compare_exchange(raw, abandoned, AcqRel, Relaxed).is_ok() {
                        if kill && pid != 0 {
                            sys::kill(pid);
                        }
                        return Cancelled::Abandoned { pid };
                    }
                }
                Some(SlotState::Done) => {
                    self.region.counters().discarded.fetch_add(1, Relaxed);
                    self.free(slot);
                    return Cancelled::Freed;
                }
                Some(SlotState::Lost) => {
                    self.free(slot);
                    return Cancelled::Freed;
                }
                _ => return Cancelled::Gone,
            }
        }
    }

    /// Stops the pool: workers finish their current call and exit, the supervisor reaps them and
    /// exits; after `grace` stragglers are killed. Waiters in other threads are woken.
    pub fn shutdown(&self, grace: Duration) {
        let header = self.region.header();
        if header.pool_state.load(Acquire) == PoolState::Running as u32 {
            header.pool_state.store(PoolState::Stopping as u32, SeqCst);
        }
        sys::futex_wake_all(&self.region.doorbell().work_seq);
        wake_all_waiters(&self.region);
        drop(self.death_write.take());
        self.region.close_async_bell();
        if let Some(fd) = self.supervisor_pidfd.take() {
            let pid = self.supervisor_pid.load(Acquire);
            // The supervisor gives workers `grace` then kills them; allow it a little longer.
            if !sys::pidfd_exited(&fd, grace + Duration::from_secs(1)) {
                // The supervisor is our child and not yet reaped, so the pid is still ours.
                sys::kill(pid);
            }
            sys::waitpid(pid);
        }
    }

    pub fn info(&self) -> PoolInfo {
        let r = &self.region;
        let workers = (0..r.workers())
            .map(|i| {
                let w = r.worker(i);
                let last_pid = w.last_pid.load(Relaxed);
                WorkerInfo {
                    index: i,
                    pid: w.pid.load(Relaxed),
                    state: WorkerState::from_raw(w.state.load(Relaxed)),
                    generation: w.generation.load(Relaxed),
                    tasks_done: w.tasks_done.load(Relaxed),
                    tasks_total: w.tasks_total.load(Relaxed),
                    respawns: w.respawns.load(Relaxed),
                    recycles: w.recycles.load(Relaxed),
                    last_exit: (last_pid != 0).then(|| (last_pid, ExitStatus::from_raw(w.last_exit.load(Relaxed)))),
                }
            })
            .collect();
        let slots_in_use = (0..r.slots()).filter(|&i| r.slot(i).state.load(Relaxed) != 0).count() as u32;
        PoolInfo {
            state: self.state(),
            supervisor_pid: r.supervisor_pid(),
            workers,
            slots: r.slots(),
            slots_in_use,
            queued: (r.doorbell().queued.load(Relaxed) as i32).max(0) as u32,
            completed: r.counters().completed.load(Relaxed),
            discarded: r.counters().discarded.load(Relaxed),
        }
    }
}

enum Writer {
    Recorded { pid: u32, status: ExitStatus },
    Dying,
    Alive,
}

/// The parent's request segment for (slot, ticket) is still needed until the worker copied it.
fn request_in_use(region: &Region, slot: u32, ticket: u64) -> bool {
    let meta = region.slot(slot);
    if meta.ticket.load(Acquire) != ticket || meta.req_taken.load(Acquire) == 1 {
        return false;
    }
    matches!(
        SlotState::from_raw(meta.state.load(Acquire)),
        Some(SlotState::Reserved | SlotState::Queued | SlotState::Claimed(_) | SlotState::Abandoned(_))
    )
}
