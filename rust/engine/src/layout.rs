//! The fixed, versioned layout of the shared control region and the named states in it.
//!
//! ```text
//! offset 0      Header      magic, layout version, geometry, pool state          (128 B)
//!        128    Doorbell    work_seq futex, queued, sleepers, spinner            (128 B)
//!        256    Counters    free_seq/lost_seq futexes, cursors, tickets, stats   (128 B)
//!        384    WorkerEntry × nworkers                                           (128 B each)
//!        ...    Slot × nslots: SlotMeta (128 B) + inline payload area            (slot_size each)
//! ```
//!
//! Every field another process writes concurrently is an atomic. Descriptors are plain data,
//! written before the release store of the slot state and read after its acquire load, and they
//! are validated on read (see [`crate::descriptor`]) because a dying writer can leave anything.

use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64};

pub const MAGIC: [u8; 8] = *b"MCOREPOL";
/// Bump whenever any struct below changes shape.
pub const LAYOUT_VERSION: u32 = 2;
pub const LINE: usize = 128;
pub const SLOT_META: usize = 128;

// The limits of a `Config`, checked by `validate()`. The binding exports them under the same
// names (`multicore._core.MAX_SLOTS`, ...), so Python derives its option checks from these and
// a value Python accepts is never refused here. The upper bounds also keep a corrupt header
// from making us index outside the mapping.
pub const MIN_WORKERS: u32 = 1;
pub const MAX_WORKERS: u32 = 1024;
/// One slot for a call in flight plus one to submit the next while its result is read.
pub const MIN_SLOTS: u32 = 2;
pub const MAX_SLOTS: u32 = 65536;
/// Room for a small pickle inline; below this nearly every call would need a segment.
pub const MIN_INLINE_SIZE: u32 = 64;
pub const MAX_INLINE_SIZE: u32 = 1 << 20;
/// The spin times are stored as u32 microseconds.
pub const MAX_SPIN_US: u32 = u32::MAX;
/// Default of [`Config::segment_keep_bytes`] in the engine's unit tests (Python's `Options`
/// holds the real default).
#[cfg(test)]
pub const TEST_SEGMENT_KEEP_BYTES: u64 = 8 << 20;

/// Pool geometry and behaviour, fixed when the pool is created. It has no defaults: those live
/// in one table on the Python side (the `Options` dataclass), which always passes every field.
#[derive(Clone, Debug)]
pub struct Config {
    pub workers: u32,
    pub slots: u32,
    /// Bytes a request or response may use inside its slot before it moves to a segment.
    pub inline_size: u32,
    /// How long an idle worker spins for new work before sleeping (0 = never spin).
    pub worker_spin_us: u32,
    /// How long the parent spins for a result before sleeping (0 = never spin).
    pub parent_spin_us: u32,
    /// Largest payload either way, in bytes (None = limited only by memory).
    pub max_payload: Option<u64>,
    /// Payload segments each process keeps for reuse, in bytes (smallest first); larger or
    /// further ones are given back after [`crate::segment::IDLE`] without use.
    pub segment_keep_bytes: u64,
}

/// A small valid pool for the engine's own unit tests (no caller outside tests may rely on
/// defaults here).
#[cfg(test)]
impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 2,
            slots: 256,
            inline_size: 4096 - SLOT_META as u32,
            worker_spin_us: 200,
            parent_spin_us: 50,
            max_payload: None,
            segment_keep_bytes: TEST_SEGMENT_KEEP_BYTES,
        }
    }
}

impl Config {
    pub fn validate(&self) -> crate::Result<()> {
        use crate::Error::Config as E;
        if !(MIN_WORKERS..=MAX_WORKERS).contains(&self.workers) {
            return Err(E(format!("workers must be {MIN_WORKERS}..={MAX_WORKERS}, got {}", self.workers)));
        }
        if !(MIN_SLOTS..=MAX_SLOTS).contains(&self.slots) {
            return Err(E(format!("slots must be {MIN_SLOTS}..={MAX_SLOTS}, got {}", self.slots)));
        }
        if !(MIN_INLINE_SIZE..=MAX_INLINE_SIZE).contains(&self.inline_size) {
            return Err(E(format!(
                "inline_size must be {MIN_INLINE_SIZE}..={MAX_INLINE_SIZE}, got {}",
                self.inline_size
            )));
        }
        if self.max_payload == Some(0) {
            return Err(E("max_payload must be at least 1 byte (None = no limit), got 0".into()));
        }
        Ok(())
    }

    pub fn slot_size(&self) -> usize {
        (SLOT_META + self.inline_size as usize).div_ceil(LINE) * LINE
    }

    pub fn workers_offset() -> usize {
        3 * LINE
    }

    pub fn slots_offset(&self) -> usize {
        Self::workers_offset() + self.workers as usize * LINE
    }

    pub fn region_size(&self) -> usize {
        self.slots_offset() + self.slots as usize * self.slot_size()
    }
}

/// Whole-pool state in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum PoolState {
    Running = 0,
    /// `shutdown()` began: workers finish their call and exit, no new calls are accepted.
    Stopping = 1,
    /// Workers kept dying during start-up; the supervisor stopped respawning them.
    Broken = 2,
}

impl PoolState {
    pub fn from_raw(raw: u32) -> PoolState {
        match raw {
            0 => PoolState::Running,
            1 => PoolState::Stopping,
            _ => PoolState::Broken,
        }
    }
}

/// Slot state machine. The low byte is the state; CLAIMED and ABANDONED carry the worker index in
/// the upper 24 bits so that the supervisor can find the calls of a worker that died.
///
/// ```text
/// FREE ─parent─▶ RESERVED ─parent─▶ QUEUED ─worker─▶ CLAIMED|w ─worker─▶ DONE ─parent─▶ FREE
///                                     │                 │   └─supervisor (w died)─▶ LOST ─parent─▶ FREE
///                                     └─parent cancel─▶ FREE
///                                                       └─parent gives up─▶ ABANDONED|w ─worker or supervisor─▶ FREE
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    Free,
    Reserved,
    Queued,
    Claimed(u32),
    Done,
    Lost,
    Abandoned(u32),
}

impl SlotState {
    pub fn to_raw(self) -> u32 {
        match self {
            SlotState::Free => 0,
            SlotState::Reserved => 1,
            SlotState::Queued => 2,
            SlotState::Claimed(w) => 3 | (w << 8),
            SlotState::Done => 4,
            SlotState::Lost => 5,
            SlotState::Abandoned(w) => 6 | (w << 8),
        }
    }

    /// Decodes a raw state word; `None` for a value no writer produces (corruption).
    pub fn from_raw(raw: u32) -> Option<SlotState> {
        let worker = raw >> 8;
        let plain = worker == 0;
        Some(match raw & 0xff {
            0 if plain => SlotState::Free,
            1 if plain => SlotState::Reserved,
            2 if plain => SlotState::Queued,
            3 => SlotState::Claimed(worker),
            4 if plain => SlotState::Done,
            5 if plain => SlotState::Lost,
            6 => SlotState::Abandoned(worker),
            _ => return None,
        })
    }
}

/// Per-worker lifecycle, as shown by `pool_info()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum WorkerState {
    Empty = 0,
    /// Forked, not yet waiting for work (imports, Django set-up, connection clean-up).
    Starting = 1,
    Idle = 2,
    Busy = 3,
    /// Exited or killed; the supervisor decides whether to respawn.
    Exited = 4,
}

impl WorkerState {
    pub fn from_raw(raw: u32) -> WorkerState {
        match raw {
            1 => WorkerState::Starting,
            2 => WorkerState::Idle,
            3 => WorkerState::Busy,
            4 => WorkerState::Exited,
            _ => WorkerState::Empty,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Empty => "empty",
            WorkerState::Starting => "starting",
            WorkerState::Idle => "idle",
            WorkerState::Busy => "busy",
            WorkerState::Exited => "exited",
        }
    }
}

/// How a process ended, packed into one i32: `>= 0` exit code, `< 0` minus the signal number.
///
/// Displayed as Python's `WorkerLostError.describe` spells it ("SIGKILL (-9)", "exit code 1"), so
/// a log line from the engine and an exception from Python read the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(sig) => match signal_name(sig) {
                Some(name) => write!(f, "{name} ({})", self.to_raw()),
                None => write!(f, "signal {sig} ({})", self.to_raw()),
            },
        }
    }
}

/// The name Python's `signal.Signals` gives a signal number on Linux.
fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        // glibc's real-time range, as Python reads it at run time.
        34 => "SIGRTMIN",
        64 => "SIGRTMAX",
        _ => return None,
    })
}

impl ExitStatus {
    pub fn from_wait_status(status: libc::c_int) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        }
    }

    pub fn to_raw(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => -s,
        }
    }

    pub fn from_raw(raw: i32) -> ExitStatus {
        if raw < 0 {
            ExitStatus::Signal(-raw)
        } else {
            ExitStatus::Code(raw)
        }
    }
}

#[repr(C, align(128))]
#[derive(Debug)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    pub workers: u32,
    pub slots: u32,
    pub slot_size: u32,
    pub inline_size: u32,
    pub parent_pid: u32,
    pub region_size: u64,
    pub max_payload: u64,
    pub worker_spin_us: u32,
    pub parent_spin_us: u32,
    pub pool_state: AtomicU32,
    pub supervisor_pid: AtomicU32,
    /// Exit status of the last start-up failure when the pool is Broken.
    pub broken_status: AtomicI32,
    pub segment_keep_bytes: u64,
}

/// The cache line idle workers spin on; written by the parent on every submit.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct Doorbell {
    /// Futex word for sleeping workers: bumped on every submit and on shutdown.
    pub work_seq: AtomicU32,
    /// Slots currently QUEUED (may be off by one transiently; only a hint for spinners).
    pub queued: AtomicU32,
    /// Workers asleep, or about to sleep, on `work_seq`.
    pub sleepers: AtomicU32,
    /// Index + 1 of the worker holding the spin token, 0 = none (at most one spins, so the
    /// parent keeps a CPU). The holder is named so the supervisor can take the token back from a
    /// worker killed while spinning: a token stuck "held" would stop the parent from ever waking
    /// a sleeping worker.
    pub spinner: AtomicU32,
    /// CPU the parent last submitted from; a worker on the same CPU must not spin.
    pub parent_cpu: AtomicU32,
    /// Workers woken by FUTEX_WAKE that have not run yet. A cross-CPU wake takes 50-80 us,
    /// during which a busy parent submits dozens of calls: those already covered by a worker on
    /// its way need no syscall of their own. Decremented (never below 0) by a worker returning
    /// from its sleep, and by the supervisor for a worker that died asleep: an undercount costs a
    /// spare wake-up, an overcount would leave calls waiting, so every doubt errs low.
    pub waking: AtomicU32,
}

#[repr(C, align(128))]
#[derive(Debug)]
pub struct Counters {
    /// Futex word bumped whenever a slot returns to FREE (for callers waiting for capacity).
    pub free_seq: AtomicU32,
    pub free_waiters: AtomicU32,
    /// Bumped when the supervisor marks slots LOST, so a waiter on another slot can look.
    pub lost_seq: AtomicU32,
    pub alloc_cursor: AtomicU32,
    pub claim_cursor: AtomicU32,
    pub next_ticket: AtomicU64,
    /// Results dropped because their call had been abandoned (timeout, interrupt).
    pub discarded: AtomicU64,
    pub completed: AtomicU64,
}

#[repr(C, align(128))]
#[derive(Debug)]
pub struct WorkerEntry {
    pub state: AtomicU32,
    pub pid: AtomicU32,
    pub generation: AtomicU32,
    pub cpu: AtomicU32,
    pub last_exit: AtomicI32,
    pub last_pid: AtomicU32,
    pub respawns: AtomicU32,
    pub recycles: AtomicU32,
    pub tasks_done: AtomicU64,
    pub tasks_total: AtomicU64,
    /// Set by a worker that is about to exit on purpose (recycling), so its exit is not a crash.
    pub retiring: AtomicU32,
    /// 1 while the worker counts itself in `Doorbell::sleepers`; taken back by whoever swaps it
    /// to 0 first (the worker on waking, or the supervisor after its death).
    pub asleep: AtomicU32,
}

/// Where a payload is. Plain data: see the module comment for why that is sound.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawDescriptor {
    /// Free for the layer above (serialization format, result kind).
    pub tag: u32,
    /// 1 = inline in the slot, 2 = in a segment of process `seg_pid` at fd `seg_fd`.
    pub place: u32,
    pub len: u64,
    pub seg_pid: u32,
    pub seg_fd: u32,
    pub seg_cap: u64,
}

#[repr(C, align(128))]
#[derive(Debug)]
pub struct SlotMeta {
    pub state: AtomicU32,
    /// 1 while the parent sleeps on `state`, so a worker issues FUTEX_WAKE only when needed.
    pub waiter: AtomicU32,
    /// 1 once the worker copied the request out (the parent may then reuse its segment).
    pub req_taken: AtomicU32,
    pub lost_status: AtomicI32,
    pub ticket: AtomicU64,
    pub lost_pid: AtomicU32,
    /// 1 while an event loop in the parent waits for this call through the pool's eventfd, so
    /// a worker publishing DONE writes the eventfd only when someone reads it.
    pub async_waiter: AtomicU32,
    pub request: RawDescriptor,
    pub response: RawDescriptor,
}

const _: () = assert!(size_of::<Header>() == LINE);
const _: () = assert!(size_of::<Doorbell>() == LINE);
const _: () = assert!(size_of::<Counters>() == LINE);
const _: () = assert!(size_of::<WorkerEntry>() == LINE);
const _: () = assert!(size_of::<SlotMeta>() == SLOT_META);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_states_round_trip() {
        for s in [
            SlotState::Free,
            SlotState::Reserved,
            SlotState::Queued,
            SlotState::Claimed(0),
            SlotState::Claimed(1023),
            SlotState::Done,
            SlotState::Lost,
            SlotState::Abandoned(7),
        ] {
            assert_eq!(SlotState::from_raw(s.to_raw()), Some(s));
        }
    }

    #[test]
    fn garbage_state_words_are_rejected() {
        assert_eq!(SlotState::from_raw(0x107), None);
        assert_eq!(SlotState::from_raw(0x100), None, "FREE never carries a worker");
        assert_eq!(SlotState::from_raw(9), None);
    }

    #[test]
    fn exit_status_packs_codes_and_signals() {
        assert_eq!(ExitStatus::from_raw(ExitStatus::Signal(9).to_raw()), ExitStatus::Signal(9));
        assert_eq!(ExitStatus::from_raw(ExitStatus::Code(3).to_raw()), ExitStatus::Code(3));
    }

    #[test]
    fn geometry_is_line_aligned() {
        let cfg = Config { workers: 3, slots: 10, inline_size: 100, ..Config::default() };
        assert_eq!(cfg.slot_size() % LINE, 0);
        assert_eq!(cfg.slots_offset() % LINE, 0);
        assert!(cfg.slot_size() >= SLOT_META + 100);
    }

    #[test]
    fn config_rejects_out_of_range_values() {
        assert!(Config { workers: 0, ..Config::default() }.validate().is_err());
        assert!(Config { slots: 1, ..Config::default() }.validate().is_err());
        assert!(Config { inline_size: 8, ..Config::default() }.validate().is_err());
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn the_exported_limits_are_exactly_what_validate_accepts() {
        let ok = |cfg: Config| cfg.validate().is_ok();
        let base = Config::default;
        assert!(ok(Config { workers: MIN_WORKERS, ..base() }) && !ok(Config { workers: MIN_WORKERS - 1, ..base() }));
        assert!(ok(Config { workers: MAX_WORKERS, ..base() }) && !ok(Config { workers: MAX_WORKERS + 1, ..base() }));
        assert!(ok(Config { slots: MIN_SLOTS, ..base() }) && !ok(Config { slots: MIN_SLOTS - 1, ..base() }));
        assert!(ok(Config { slots: MAX_SLOTS, ..base() }) && !ok(Config { slots: MAX_SLOTS + 1, ..base() }));
        assert!(ok(Config { inline_size: MIN_INLINE_SIZE, ..base() }));
        assert!(!ok(Config { inline_size: MIN_INLINE_SIZE - 1, ..base() }));
        assert!(ok(Config { inline_size: MAX_INLINE_SIZE, ..base() }));
        assert!(!ok(Config { inline_size: MAX_INLINE_SIZE + 1, ..base() }));
        assert!(ok(Config { worker_spin_us: MAX_SPIN_US, parent_spin_us: MAX_SPIN_US, ..base() }));
        let err = Config { inline_size: 32, ..base() }.validate().unwrap_err().to_string();
        assert_eq!(err, "invalid pool configuration: inline_size must be 64..=1048576, got 32");
    }

    #[test]
    fn exit_statuses_read_as_python_describes_them() {
        // The same strings as multicore.exceptions.WorkerLostError.describe(status).
        assert_eq!(ExitStatus::Signal(9).to_string(), "SIGKILL (-9)");
        assert_eq!(ExitStatus::Signal(11).to_string(), "SIGSEGV (-11)");
        assert_eq!(ExitStatus::Signal(15).to_string(), "SIGTERM (-15)");
        assert_eq!(ExitStatus::Signal(6).to_string(), "SIGABRT (-6)");
        assert_eq!(ExitStatus::Signal(64).to_string(), "SIGRTMAX (-64)");
        assert_eq!(ExitStatus::Signal(35).to_string(), "signal 35 (-35)");
        assert_eq!(ExitStatus::Code(1).to_string(), "exit code 1");
        assert_eq!(ExitStatus::Code(0).to_string(), "exit code 0");
        assert_eq!(ExitStatus::from_raw(-9).to_string(), "SIGKILL (-9)");
    }
}
