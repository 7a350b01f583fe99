//! multicore-engine: the shared-memory process pool behind `multicore`, with no Python in it.
//!
//! # Processes
//!
//! ```text
//!   parent (Django/gunicorn worker, many threads)          supervisor ("zygote")          workers
//!   ───────────────────────────────────────────────        ─────────────────────          ───────
//!   Pool::create  ── memfd control region + death pipe ──▶ forked once by the parent ──▶ forked by the
//!                                                         at initialize(); single-      supervisor, also
//!                                                         threaded; reaps and respawns  to respawn
//! ```
//!
//! The control region is one anonymous `memfd` mapping created before any fork, so every process
//! sees it at the same offsets and nothing is left in `/dev/shm`: the kernel frees it when the last
//! process holding it exits, however it exits.
//!
//! # Data flow of one call
//!
//! 1. The parent reserves a FREE slot (CAS FREE→RESERVED), writes the request into the slot's inline
//!    area or into one of its own large-payload [`segment`]s, stamps a fresh ticket and publishes
//!    QUEUED (release). It bumps `work_seq` and wakes a sleeping worker only when no worker is
//!    already spinning for work.
//! 2. A worker claims it (CAS QUEUED→CLAIMED|worker), copies the request out, runs it, writes the
//!    response into the same slot (the request is consumed by then) and publishes DONE with a CAS
//!    from CLAIMED|worker, so a call the parent gave up on (ABANDONED) can never be completed.
//! 3. The parent, waiting on the slot's state word (spin while the worker runs on the other CPU,
//!    futex otherwise), copies the response out and frees the slot. Tickets make a stale handle an
//!    error instead of someone else's result.
//! 4. When a worker dies, the supervisor learns it from the worker's pidfd, marks every slot that
//!    worker held LOST (with pid and exit status) and wakes the waiters, then forks a replacement.
//!
//! The only blocking primitive is the futex on words inside the shared region; there are no pipes
//! and no sleeps on the hot path. The death pipe and pidfds are watched by the supervisor only.
//!
//! # Modules
//!
//! Imports go one way, from the roles down to the shared layers; no role imports a role below it
//! for a helper, only for the type it hands over (`Pool` -> `Supervisor` -> `WorkerChannel`).
//!
//! ```text
//!   roles       parent (Pool) ──▶ supervisor (Supervisor) ──▶ worker (WorkerChannel)
//!                   │                  │                          │
//!   protocol    notify: the counted wake-ups all roles share (free slots, lost calls)
//!               descriptor ─▶ segment: where a payload is (inline, or a sender's segment)
//!               frame: how a multi-part payload is laid out (used by the binding)
//!   memory      region: the mapping and its bounds checks; layout: the #[repr(C)] structs,
//!               states, limits
//!   system      sys: every raw system call (futex, pidfd, pipe, memfd, kill, waitpid)
//!               host: usable CPUs, load average, resident memory
//! ```
//!
//! # Fork safety
//!
//! The engine starts no thread and takes no lock that lives in shared memory; the only
//! process-local lock guards the parent's list of outgoing segments and is never touched by a
//! forked child, which builds its own pool.

pub mod descriptor;
pub mod error;
pub mod frame;
pub mod host;
pub mod layout;
mod notify;
pub mod parent;
#[cfg(test)]
mod protocol_tests;
pub mod region;
pub mod segment;
pub mod supervisor;
mod sys;
pub mod worker;

pub use error::{Error, Result};
pub use layout::{Config, ExitStatus, PoolState, SlotState, WorkerState};
pub use parent::{Cancelled, Outcome, Pool};
pub use region::Region;
pub use supervisor::{Action, Supervisor};
pub use worker::{Call, WorkerChannel};
