//! The supervisor ("zygote"): a single-threaded process forked once from the parent, which forks
//! every worker, notices each death through a pidfd, fails the calls the dead worker held and
//! forks a replacement.
//!
//! Forking workers from here rather than from the parent means threads in the parent (gthread,
//! Sentry, a user's executor) can never hold a lock that a new worker inherits. The supervisor
//! itself never runs user calls.
//!
//! It watches, with `poll`, only a death pipe whose write end the parent alone holds (EOF means
//! the parent shut the pool down or died, even by SIGKILL, from any thread) and one pidfd per
//! worker. None of this is on the call path.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

use crate::descriptor::PLACE_SEGMENT;
use crate::layout::{ExitStatus, PoolState, SlotState, WorkerState};
use crate::notify::{decrement, notify_free, wake_all_waiters};
use crate::region::Region;
use crate::sys;
use crate::worker::WorkerChannel;
use crate::Result;

/// The Python logger these records arrive under (pyo3-log maps a target to a logger name).
const LOG: &str = "multicore.engine.supervisor";

/// Start-up failures within this window that make the pool Broken instead of respawning forever.
const CRASH_LOOP_LIMIT: usize = 5;
const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(10);
/// How long running calls may go on after the parent died: nobody will read their results, and
/// the pool must be gone soon after its parent (gunicorn timeouts, the OOM killer).
const PARENT_DEATH_GRACE: Duration = Duration::from_millis(250);

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Fork a worker for each index (the caller forks, so the child runs Python code).
    Spawn(Vec<u32>),
    /// The parent closed the pool or died: stop the workers and exit.
    Exit,
}

/// How a worker's death is classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Death {
    /// Exited on purpose after `retire()` (task or memory limit).
    Retired,
    /// Died before it finished starting.
    StartupFailure,
    /// Died while idle or running a call.
    Crash,
}

#[derive(Debug)]
struct Child {
    pid: u32,
    pidfd: OwnedFd,
}

#[derive(Debug)]
pub struct Supervisor {
    region: Region,
    death_read: Option<OwnedFd>,
    children: Vec<Option<Child>>,
    to_spawn: Vec<u32>,
    startup_failures: Vec<Instant>,
}

impl Supervisor {
    pub(crate) fn new(region: Region, death_read: OwnedFd) -> Supervisor {
        let n = region.workers();
        Supervisor {
            region,
            death_read: Some(death_read),
            children: (0..n).map(|_| None).collect(),
            to_spawn: (0..n).collect(),
            startup_failures: Vec::new(),
        }
    }

    fn state(&self) -> PoolState {
        PoolState::from_raw(self.region.header().pool_state.load(Acquire))
    }

    /// Blocks until there is something to do.
    pub fn next_action(&mut self) -> Result<Action> {
        loop {
            if self.state() == PoolState::Running && !self.to_spawn.is_empty() {
                return Ok(Action::Spawn(std::mem::take(&mut self.to_spawn)));
            }
            let Some(death) = &self.death_read else {
                return Ok(Action::Exit);
            };
            let mut fds = vec![libc::pollfd { fd: death.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            let mut owners = Vec::new();
            for (i, c) in self.children.iter().enumerate() {
                if let Some(c) = c {
                    fds.push(libc::pollfd { fd: c.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 });
                    owners.push(i as u32);
                }
            }
            if !sys::poll_forever(&mut fds, "poll in the supervisor")? {
                continue; // a signal
            }
            if fds[0].revents != 0 {
                return Ok(Action::Exit);
            }
            for (pfd, index) in fds[1..].iter().zip(owners) {
                if pfd.revents != 0 {
                    self.reap(index);
                }
            }
        }
    }

    /// Records a worker the caller just forked for `index`.
    pub fn spawned(&mut self, index: u32, pid: u32) -> Result<()> {
        let entry = self.region.worker(index);
        entry.generation.fetch_add(1, Relaxed);
        entry.pid.store(pid, Release);
        self.children[index as usize] = Some(Child { pid, pidfd: sys::pidfd_open(pid)? });
        Ok(())
    }

    /// Reaps the worker at `index` (waiting for it to exit) and records its death.
    fn reap_quietly(&mut self, index: u32) -> Option<(u32, ExitStatus, Death)> {
        let child = self.children[index as usize].take()?;
        let status = ExitStatus::from_wait_status(sys::waitpid(child.pid));
        Some((child.pid, status, record_death(&self.region, index, child.pid, status)))
    }

    /// Reaps a worker the pidfd reported as exited, then decides: replace it, or, after a crash
    /// loop, mark the pool broken.
    fn reap(&mut self, index: u32) {
        let Some((pid, status, death)) = self.reap_quietly(index) else {
            return;
        };
        if self.state() != PoolState::Running {
            return; // leaving during shutdown (or a broken pool) is expected, and not replaced
        }
        match death {
            Death::StartupFailure => {
                let now = Instant::now();
                self.startup_failures.retain(|t| now.duration_since(*t) < CRASH_LOOP_WINDOW);
                self.startup_failures.push(now);
                if self.startup_failures.len() >= CRASH_LOOP_LIMIT {
                    log::error!(
                        target: LOG,
                        "{} workers died during start-up within {:?} (last: {status}); not respawning",
                        self.startup_failures.len(),
                        CRASH_LOOP_WINDOW
                    );
                    mark_broken(&self.region, status);
                    return;
                }
                log::warn!(target: LOG, "worker pid {pid} died during start-up ({status})");
            }
            Death::Crash => log::warn!(target: LOG, "worker pid {pid} died ({status}); replacing it"),
            Death::Retired => log::info!(target: LOG, "worker pid {pid} retired; replacing it"),
        }
        self.to_spawn.push(index);
    }

    /// In a freshly forked worker: drop the supervisor's descriptors and die with it.
    pub fn become_worker(&mut self, index: u32) -> Result<WorkerChannel> {
        self.death_read = None;
        for c in &mut self.children {
            *c = None;
        }
        // The supervisor is single-threaded, so the parent-death signal's "parent thread" is the
        // supervisor process itself.
        sys::die_with_parent(self.region.supervisor_pid());
        Ok(WorkerChannel::new(self.region.clone(), index))
    }

    /// Stops every worker: they finish their current call and exit; after `grace`, SIGKILL.
    pub fn stop_workers(&mut self, grace: Duration) {
        let header = self.region.header();
        let was = header
            .pool_state
            .compare_exchange(PoolState::Running as u32, PoolState::Stopping as u32, SeqCst, Relaxed)
            .unwrap_or_else(|v| v);
        // shutdown() sets Stopping before it closes the death pipe; anything else means the parent
        // died (or left by os._exit) and the grace it configured no longer serves anyone.
        let grace = if was == PoolState::Stopping as u32 { grace } else { grace.min(PARENT_DEATH_GRACE) };
        sys::futex_wake_all(&self.region.doorbell().work_seq);
        let deadline = Instant::now() + grace;
        for index in 0..self.children.len() {
            let Some(child) = &self.children[index] else {
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if !sys::pidfd_exited(&child.pidfd, left) {
                // Our unreaped child, so the pid cannot have been reused.
                sys::kill(child.pid);
            }
            self.reap_quietly(index as u32);
        }
    }
}

/// Updates the worker's entry and fails the calls it held. Public so it can be tested without
/// forking.
pub fn record_death(region: &Region, index: u32, pid: u32, status: ExitStatus) -> Death {
    // First, while the entry still shows the pid (Pool::take checks the two in the other order).
    mark_unreadable_results(region, pid, status);
    let entry = region.worker(index);
    let was = WorkerState::from_raw(entry.state.swap(WorkerState::Exited as u32, AcqRel));
    let retiring = entry.retiring.load(Acquire) == 1 && status == ExitStatus::Code(0);
    entry.last_exit.store(status.to_raw(), Relaxed);
    entry.last_pid.store(pid, Relaxed);
    entry.pid.store(0, Release);
    if retiring {
        entry.recycles.fetch_add(1, Relaxed);
    } else {
        entry.respawns.fetch_add(1, Relaxed);
    }
    let claimed = SlotState::Claimed(index).to_raw();
    let abandoned = SlotState::Abandoned(index).to_raw();
    for i in 0..region.slots() {
        let meta = region.slot(i);
        let raw = meta.state.load(Acquire);
        if raw == claimed {
            meta.lost_pid.store(pid, Relaxed);
            meta.lost_status.store(status.to_raw(), Relaxed);
            // ORDERING: Release publishes lost_pid/lost_status to the parent's Acquire load.
            let _ = meta.state.compare_exchange(claimed, SlotState::Lost.to_raw(), Release, Relaxed);
        } else if raw == abandoned
            && meta.state.compare_exchange(abandoned, SlotState::Free.to_raw(), Release, Relaxed).is_ok()
        {
            region.counters().discarded.fetch_add(1, Relaxed);
            notify_free(region);
        }
    }
    let bell = region.doorbell();
    // A worker killed in its futex sleep still counts in `sleepers`; take it back.
    if entry.asleep.swap(0, SeqCst) == 1 {
        bell.sleepers.fetch_sub(1, SeqCst);
        // It may have died woken but before it ran; a wake-up counted in flight for good would
        // make later submits leave a call to nobody. Erring low costs a spare wake-up.
        decrement(&bell.waking);
    }
    // A worker killed while holding the spin token would keep it forever, and the parent, which
    // leaves new calls to a spinning worker, would never wake a sleeping one again.
    // ORDERING: SeqCst like the parent's `spinner` load in submit(); the work_seq bump then wake
    // lets a worker asleep since then re-check for calls queued while the token was stuck.
    if bell.spinner.compare_exchange(index + 1, 0, SeqCst, Relaxed).is_ok() {
        bell.work_seq.fetch_add(1, SeqCst);
        sys::futex_wake(&bell.work_seq, 1);
    }
    wake_all_waiters(region);
    // Event loops waiting on a call this worker held find it LOST when they look. Deaths are
    // rare, so the doorbell rings whether or not an async waiter is flagged.
    region.ring_async_bell();
    match (retiring, was) {
        (true, _) => Death::Retired,
        (false, WorkerState::Starting) => Death::StartupFailure,
        _ => Death::Crash,
    }
}

/// Finished results of a dead worker that still sit in its payload segments died with it: leave
/// its pid and status in those slots, where `Pool::take`, failing to open the segment, looks.
fn mark_unreadable_results(region: &Region, pid: u32, status: ExitStatus) {
    let done = SlotState::Done.to_raw();
    for i in 0..region.slots() {
        let meta = region.slot(i);
        // ORDERING: Acquire pairs with the worker's CAS to DONE, so its descriptor is visible.
        if meta.state.load(Acquire) != done {
            continue;
        }
        let d = region.read_descriptor(i, true);
        if d.place == PLACE_SEGMENT && d.seg_pid == pid {
            meta.lost_status.store(status.to_raw(), Relaxed);
            // ORDERING: Release publishes lost_status to Pool::take's Acquire load of lost_pid.
            meta.lost_pid.store(pid, Release);
        }
    }
}

/// Stops accepting calls after a crash loop and fails every queued call, so nobody waits forever.
fn mark_broken(region: &Region, status: ExitStatus) {
    let header = region.header();
    header.broken_status.store(status.to_raw(), Relaxed);
    header.pool_state.store(PoolState::Broken as u32, SeqCst);
    let queued = SlotState::Queued.to_raw();
    for i in 0..region.slots() {
        let meta = region.slot(i);
        if meta.state.load(Acquire) != queued {
            continue;
        }
        meta.lost_pid.store(0, Relaxed);
        meta.lost_status.store(status.to_raw(), Relaxed);
        if meta.state.compare_exchange(queued, SlotState::Lost.to_raw(), Release, Relaxed).is_ok() {
            region.doorbell().queued.fetch_sub(1, SeqCst);
        }
    }
    wake_all_waiters(region);
    region.ring_async_bell();
}
