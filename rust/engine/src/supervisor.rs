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
use crate::futex;
use crate::layout::{ExitStatus, PoolState, SlotState, WorkerState};
use crate::parent::{decrement, notify_free, pidfd_exited, pidfd_open, wake_all_waiters};
use crate::region::Region;
use crate::worker::WorkerChannel;
use crate::{Error, Result};

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

struct Child {
    pid: u32,
    pidfd: OwnedFd,
}

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
            // SAFETY: fds is a valid array of pollfd of the given length.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(Error::Os { what: "poll in the supervisor", source: err });
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
        self.children[index as usize] = Some(Child { pid, pidfd: pidfd_open(pid)? });
        Ok(())
    }

    fn reap(&mut self, index: u32) {
        let Some(child) = self.children[index as usize].take() else {
            return;
        };
        let mut status = 0;
        // SAFETY: reaping our own child, which the pidfd reported as exited.
        unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) };
        let status = ExitStatus::from_wait_status(status);
        let death = record_death(&self.region, index, child.pid, status);
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
                        "multicore: {} workers died during start-up within {:?} (last: {status:?}); \
                         not respawning",
                        self.startup_failures.len(),
                        CRASH_LOOP_WINDOW
                    );
                    mark_broken(&self.region, status);
                    return;
                }
                log::warn!("multicore: worker pid {} died during start-up ({status:?})", child.pid);
            }
            Death::Crash => log::warn!("multicore: worker pid {} died ({status:?}); replacing it", child.pid),
            Death::Retired => {
                log::info!("multicore: worker pid {} retired; replacing it", child.pid)
            }
        }
        self.to_spawn.push(index);
    }

    /// In a freshly forked worker: drop the supervisor's descriptors and die with it.
    pub fn become_worker(&mut self, index: u32) -> Result<WorkerChannel> {
        self.death_read = None;
        for c in &mut self.children {
            *c = None;
        }
        let supervisor = self.region.supervisor_pid();
        // SAFETY: plain prctl; the supervisor is single-threaded, so "parent thread" is the
        // supervisor process itself.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        // The supervisor may have died between fork and prctl; then nobody would signal us.
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } as u32 != supervisor {
            // SAFETY: leaving at once, running no destructors or atexit handlers (a fork child).
            unsafe { libc::_exit(1) };
        }
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
        futex::wake_all(&self.region.doorbell().work_seq);
        let deadline = Instant::now() + grace;
        for index in 0..self.children.len() {
            let Some(child) = &self.children[index] else {
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if !pidfd_exited(&child.pidfd, left) {
                // SAFETY: our unreaped child, so the pid cannot have been reused.
                unsafe { libc::kill(child.pid as libc::pid_t, libc::SIGKILL) };
            }
            self.reap_quietly(index as u32);
        }
    }

    fn reap_quietly(&mut self, index: u32) {
        let Some(child) = self.children[index as usize].take() else {
            return;
        };
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) };
        record_death(&self.region, index, child.pid, ExitStatus::from_wait_status(status));
    }

    pub fn live_workers(&self) -> usize {
        self.children.iter().flatten().count()
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
        futex::wake(&bell.work_seq, 1);
    }
    wake_all_waiters(region);
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
}
