//! A worker's side: claim calls, read requests, publish responses, retire.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

use crate::descriptor;
use crate::layout::{PoolState, SlotState, WorkerState};
use crate::notify::{self, decrement, notify_free};
use crate::region::Region;
use crate::segment::Segments;
use crate::sys;
use crate::Result;

/// A claimed call: the slot it lives in and the ticket that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub slot: u32,
    pub ticket: u64,
}

#[derive(Debug)]
pub struct WorkerChannel {
    region: Region,
    index: u32,
    segments: Segments,
    spin: Duration,
}

impl WorkerChannel {
    /// Binds this process to worker entry `index`. The entry stays STARTING until `ready()`.
    pub fn new(region: Region, index: u32) -> WorkerChannel {
        let entry = region.worker(index);
        // The worker writes its own pid before it can claim anything, so a parent that sees
        // CLAIMED|index reads this incarnation's pid (see Pool::cancel).
        entry.pid.store(std::process::id(), Release);
        entry.tasks_done.store(0, Relaxed);
        entry.retiring.store(0, Relaxed);
        entry.state.store(WorkerState::Starting as u32, Release);
        let spin = Duration::from_micros(u64::from(region.header().worker_spin_us));
        let segments = Segments::new(region.header().segment_keep_bytes);
        WorkerChannel { region, index, segments, spin }
    }

    pub fn tasks_done(&self) -> u64 {
        self.region.worker(self.index).tasks_done.load(Relaxed)
    }

    /// Start-up finished: from now on a death is a crash, not a start-up failure.
    pub fn ready(&self) {
        self.region.worker(self.index).state.store(WorkerState::Idle as u32, Release);
    }

    fn running(&self) -> bool {
        self.region.header().pool_state.load(Acquire) == PoolState::Running as u32
    }

    fn queued(&self) -> bool {
        self.region.doorbell().queued.load(SeqCst) as i32 > 0
    }

    /// Whether a call really waits: the counter is the cheap hint, a scan confirms it. A worker
    /// killed between its claim and the decrement leaves the counter one too high for good, and
    /// trusting it alone would then keep every idle worker spinning at 100% CPU.
    fn work_waiting(&self) -> bool {
        let queued = SlotState::Queued.to_raw();
        // ORDERING: the SeqCst counter load in queued() acquires the parent's increment, which
        // follows its Release store of QUEUED, so a call counted there is seen by the scan.
        self.queued() && (0..self.region.slots()).any(|i| self.region.slot(i).state.load(Acquire) == queued)
    }

    /// Tries to claim one QUEUED slot, scanning from the shared cursor so calls run roughly in
    /// submission order.
    pub fn try_claim(&self) -> Option<Call> {
        if !self.queued() {
            return None;
        }
        let n = self.region.slots();
        let counters = self.region.counters();
        let start = counters.claim_cursor.load(Relaxed);
        let queued = SlotState::Queued.to_raw();
        let claimed = SlotState::Claimed(self.index).to_raw();
        for i in 0..n {
            let slot = (start + i) % n;
            let meta = self.region.slot(slot);
            if meta.state.load(Relaxed) != queued {
                continue;
            }
            // ORDERING: Acquire pairs with the parent's Release store of QUEUED, making the
            // request visible; SeqCst also orders it before our later read of `waiter`.
            if meta.state.compare_exchange(queued, claimed, SeqCst, Relaxed).is_ok() {
                self.region.doorbell().queued.fetch_sub(1, SeqCst);
                counters.claim_cursor.store((slot + 1) % n, Relaxed);
                let entry = self.region.worker(self.index);
                entry.cpu.store(sys::current_cpu(), Relaxed);
                entry.state.store(WorkerState::Busy as u32, Relaxed);
                return Some(Call { slot, ticket: meta.ticket.load(Acquire) });
            }
        }
        None
    }

    /// Blocks until a call is claimed, or returns `None` when the pool is stopping.
    ///
    /// Idle strategy: a wake across CPUs costs 50-80 µs, a spin on the other CPU under 1 µs
    /// (measured on the project's two-CPU test machine; see docs/benchmarks.md). So one worker at a time spins for `spin` after going idle,
    /// and only when the parent last ran on a different CPU; everyone else sleeps on the futex.
    pub fn next_call(&mut self) -> Option<Call> {
        let bell = self.region.doorbell();
        loop {
            if let Some(call) = self.try_claim() {
                return Some(call);
            }
            if !self.running() {
                return None;
            }
            // ORDERING: the spin token is a hint, not a handshake. The parent skips a wake-up
            // while it sees the token held, so a call can be left to a spinner that is already
            // giving the token up: our Release store of 0 and the SeqCst re-check below may pass
            // the parent's SeqCst `queued` bump and `spinner` load, and both of us may miss the
            // other. The call is not stranded: we then take the sleep path, whose `sleepers`
            // increment and re-check form a real Dekker pair with submit's `work_seq` bump, so
            // we see the call or the futex compare fails. Nothing is published through the token
            // itself, hence AcqRel/Release and not SeqCst.
            if !self.spin.is_zero() && bell.spinner.compare_exchange(0, self.index + 1, AcqRel, Relaxed).is_ok() {
                // Spin only off the parent's CPU. On it, move off first: otherwise parent and
                // worker, once the scheduler put them together (its wake-ups are affine), stay
                // together, each call then costs two same-CPU handoffs (about 6 µs more) while
                // the other CPU idles, and nothing would ever pull them apart.
                let parent = bell.parent_cpu.load(Relaxed);
                if parent != sys::current_cpu() || sys::leave_cpu(parent) {
                    let until = Instant::now() + self.spin;
                    while !self.queued() && self.running() && Instant::now() < until {
                        std::hint::spin_loop();
                    }
                }
                bell.spinner.store(0, Release);
                if self.work_waiting() {
                    continue;
                }
            }
            // A large result segment is given back after a second of rest: sleep no longer than
            // that while one is mapped (no timeout otherwise, so an idle worker never wakes).
            let region = &self.region;
            let trim_at = self.segments.trim(Instant::now(), |s, t| result_unread(region, s, t));
            let timeout = trim_at.map(|at| at.saturating_duration_since(Instant::now()));
            let seq = bell.work_seq.load(SeqCst);
            let entry = self.region.worker(self.index);
            bell.sleepers.fetch_add(1, SeqCst);
            // `asleep` lets the supervisor undo our `sleepers` increment if we are killed while
            // asleep. Set after the increment and cleared before the decrement, so a kill between
            // can only leave the count too high (a spare wake-up), never too low (a missed one).
            entry.asleep.store(1, SeqCst);
            // ORDERING: the SeqCst increment above precedes this re-check; the parent's SeqCst
            // work_seq bump precedes its `sleepers` load. Either we see the work here, or the
            // futex compare sees a new work_seq, or the parent sees us and wakes us.
            if !self.work_waiting() && self.running() {
                sys::futex_wait(&bell.work_seq, seq, timeout);
                // We run: count one wake-up in flight fewer (if ours was spurious, the count errs
                // low, which only costs a spare wake-up later).
                decrement(&bell.waking);
            }
            if entry.asleep.swap(0, SeqCst) == 1 {
                bell.sleepers.fetch_sub(1, SeqCst);
            }
        }
    }

    /// Hands the request bytes of `call` to `f`, then tells the parent its segment is free.
    pub fn read_request<R>(&self, call: Call, f: impl FnOnce(u32, &[u8]) -> R) -> Result<R> {
        let out = descriptor::read(&self.region, call.slot, false, f);
        self.region.slot(call.slot).req_taken.store(1, Release);
        out
    }

    /// Publishes the response. Returns false when the parent had abandoned the call (the result
    /// is dropped and the slot freed). On an error nothing was published; reply again with a
    /// smaller payload (an error report).
    pub fn reply(&mut self, call: Call, tag: u32, parts: &[&[u8]]) -> Result<bool> {
        let region = &self.region;
        let to = descriptor::Destination { slot: call.slot, ticket: call.ticket, response: true };
        descriptor::write(region, to, tag, parts, &mut self.segments, |s, t| result_unread(region, s, t))?;
        let meta = region.slot(call.slot);
        let claimed = SlotState::Claimed(self.index).to_raw();
        let entry = region.worker(self.index);
        entry.tasks_done.fetch_add(1, Relaxed);
        entry.tasks_total.fetch_add(1, Relaxed);
        entry.state.store(WorkerState::Idle as u32, Relaxed);
        // ORDERING: Release publishes the response; SeqCst orders it before the `waiter` and
        // `async_waiter` loads, pairing with the parent's SeqCst flag store then state load
        // (Pool::wait, Pool::arm_async): either the parent sees DONE, or we see its flag and
        // wake it (futex) or ring the event loops' doorbell (eventfd).
        if meta.state.compare_exchange(claimed, SlotState::Done.to_raw(), SeqCst, Relaxed).is_ok() {
            region.counters().completed.fetch_add(1, Relaxed);
            if meta.waiter.load(SeqCst) != 0 {
                sys::futex_wake_all(&meta.state);
            }
            if meta.async_waiter.load(SeqCst) != 0 {
                region.ring_async_bell();
            }
            return Ok(true);
        }
        // The parent gave up on this call: free the slot ourselves, unless the supervisor did.
        let abandoned = SlotState::Abandoned(self.index).to_raw();
        if meta.state.compare_exchange(abandoned, SlotState::Free.to_raw(), Release, Relaxed).is_ok() {
            region.counters().discarded.fetch_add(1, Relaxed);
            notify_free(region);
        }
        Ok(false)
    }

    /// Before a deliberate exit (recycling): mark the exit as planned and wait, at most `max_wait`,
    /// until the parent has read every result still held in our segments.
    pub fn retire(&mut self, max_wait: Duration) {
        let entry = self.region.worker(self.index);
        entry.retiring.store(1, SeqCst);
        let until = Instant::now() + max_wait;
        let mut waiting = true;
        while waiting {
            // The parent frees each slot after reading its result, which wakes us; the 50 ms
            // cap only bounds how stale our view of `running()` can get.
            notify::wait_for_free(&self.region, || {
                let pending =
                    self.segments.busy().into_iter().any(|(slot, ticket)| result_unread(&self.region, slot, ticket));
                let now = Instant::now();
                waiting = pending && now < until && self.running();
                waiting.then(|| (until - now).min(Duration::from_millis(50)))
            });
        }
    }
}

/// Whether the response this worker wrote for (slot, ticket) still waits for the parent to read
/// it: until then its segment must be neither reused nor unmapped.
fn result_unread(region: &Region, slot: u32, ticket: u64) -> bool {
    let m = region.slot(slot);
    m.ticket.load(Acquire) == ticket && m.state.load(Acquire) == SlotState::Done.to_raw()
}
