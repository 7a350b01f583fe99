//! Every raw system call the engine makes, each behind a safe function, so the role modules
//! (parent, supervisor, worker) speak in terms of the protocol and hold no `unsafe` of their own
//! for the kernel.
//!
//! The futex words live in a MAP_SHARED mapping of one file, so the kernel keys them by
//! (inode, offset), and a wake in one process reaches a waiter in another (a shared, not
//! private, futex).

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::{Error, Result};

/// Sleeps while `*word == expected`, for at most `timeout`. Returns on a wake, a value mismatch,
/// a timeout or a signal; callers always re-check their condition, so the reason is not reported.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos()),
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; FUTEX_WAIT only reads it.
    // `ts_ptr` is null or points at `ts`, which outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes up to `count` waiters on `word`; returns how many were woken.
pub fn futex_wake(word: &AtomicU32, count: i32) -> u32 {
    // SAFETY: FUTEX_WAKE does not dereference the word's value; the address is valid.
    let woken = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    woken.clamp(0, i64::from(u32::MAX)) as u32
}

/// Wakes every waiter on `word`.
pub fn futex_wake_all(word: &AtomicU32) {
    futex_wake(word, i32::MAX);
}

/// The CPU this thread last ran on, or `u32::MAX` if unknown.
pub fn current_cpu() -> u32 {
    // SAFETY: sched_getcpu takes no arguments and only returns a value.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).unwrap_or(u32::MAX)
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-int array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::os(what));
    }
    // SAFETY: both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec, non-blocking eventfd with a zero counter: the doorbell event loops watch.
pub fn eventfd() -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(Error::os("eventfd for the async doorbell"));
    }
    // SAFETY: a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd's counter (readable from then on). A full counter (EAGAIN) is already
/// readable, so a failure loses nothing.
pub fn eventfd_ring(fd: &impl AsRawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to a descriptor the caller keeps open.
    unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), size_of::<u64>()) };
}

/// Reads and resets an eventfd's counter; 0 when it was zero (non-blocking) or on error.
pub fn eventfd_drain(fd: &impl AsRawFd) -> u64 {
    let mut count: u64 = 0;
    // SAFETY: reads at most 8 bytes into a valid u64 from a descriptor the caller keeps open.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut count).cast(), size_of::<u64>()) };
    if n == size_of::<u64>() as isize {
        count
    } else {
        0
    }
}

/// A pidfd for `pid`: readable once the process has exited.
pub fn pidfd_open(pid: u32) -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(Error::os("pidfd_open"));
    }
    // SAFETY: a fresh fd we own (fd numbers fit an i32).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits up to `timeout` for a pidfd to report its process's exit.
pub fn pidfd_exited(fd: &impl AsRawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, alive for the call.
    let rc = unsafe { libc::poll(&mut p, 1, ms) };
    rc > 0 && p.revents != 0
}

/// Polls `fds` until one is ready; `Ok(false)` when interrupted by a signal.
pub fn poll_forever(fds: &mut [libc::pollfd], what: &'static str) -> Result<bool> {
    // SAFETY: `fds` is a valid array of pollfd of the given length, alive for the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    if rc >= 0 {
        return Ok(true);
    }
    let source = io::Error::last_os_error();
    if source.raw_os_error() == Some(libc::EINTR) {
        return Ok(false);
    }
    Err(Error::Os { what, source })
}

/// Sends SIGKILL to `pid`. Callers make sure the pid still names their process (an unreaped
/// child, or a pid read under the slot protocol); at worst it already exited (ESRCH).
pub fn kill(pid: u32) {
    // SAFETY: plain syscall with integer arguments; failure (ESRCH) is harmless here.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Reaps our child `pid`, blocking until it exits; returns its raw wait status.
pub fn waitpid(pid: u32) -> libc::c_int {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; reaping only affects our own child.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    status
}

/// In a freshly forked child: arm SIGKILL on the death of the forking thread's process, and
/// leave at once when that process (`parent`) already died between fork and this call, since
/// then nobody would ever send the signal.
pub fn die_with_parent(parent: u32) {
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } as u32 != parent {
        // SAFETY: leaving at once, running no destructors or atexit handlers (a fork child).
        unsafe { libc::_exit(1) };
    }
}

/// A fresh anonymous, close-on-exec memory file (nothing appears in `/dev/shm`; the kernel frees
/// it with its last mapping or descriptor).
pub fn memfd(name: &CStr) -> io::Result<File> {
    // SAFETY: `name` is a valid C string; the result is checked before use.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by nobody else; File closes it on drop.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Reserves the first `len` bytes of `file` now, so that "no memory" is this error instead of a
/// SIGBUS on first touch of a mapping.
pub fn fallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain syscall on a descriptor `file` keeps open for the call.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// CPUs in this thread's affinity mask.
pub fn affinity_cpus() -> Option<u32> {
    // SAFETY: cpu_set_t is plain data, for which all-zero bytes are a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; the call fills it for this thread.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return None;
    }
    // SAFETY: `set` is an initialized cpu_set_t.
    u32::try_from(unsafe { libc::CPU_COUNT(&set) }).ok()
}

/// Moves this thread off `cpu` onto another CPU of its affinity mask, then restores the mask (the
/// scheduler leaves a running thread where it is). False when it cannot: `cpu` is not in the
/// mask, the mask has a single CPU, or the kernel refused.
pub fn leave_cpu(cpu: u32) -> bool {
    let cpu = cpu as usize;
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: cpu_set_t is plain data, for which all-zero bytes are a valid (empty) set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `mask` is a valid cpu_set_t of the size passed; the call fills it for this thread.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut mask) } != 0 {
        return false;
    }
    // SAFETY: `mask` is an initialized cpu_set_t and `cpu` is below CPU_SETSIZE.
    if !unsafe { libc::CPU_ISSET(cpu, &mask) } || unsafe { libc::CPU_COUNT(&mask) } < 2 {
        return false;
    }
    let mut others = mask;
    // SAFETY: as above.
    unsafe { libc::CPU_CLR(cpu, &mut others) };
    // SAFETY: a valid, non-empty cpu_set_t of the size passed; it only narrows our own mask.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &others) } != 0 {
        return false;
    }
    // SAFETY: as above; this restores the mask we read.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &mask) };
    true
}

/// The size of a memory page.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).unwrap_or(4096).max(4096)
}

/// True when `pid` no longer runs: gone, a zombie, or exiting (its files close before it turns
/// into a zombie, and that is when a reader notices).
pub fn process_gone(pid: u32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let mut fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace();
    let state = fields.next().unwrap_or("");
    let flags: u64 = fields.nth(5).and_then(|f| f.parse().ok()).unwrap_or(0);
    state == "Z" || state == "X" || flags & PF_EXITING != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_with_no_waiter_wakes_nobody_and_a_stale_wait_returns() {
        let word = AtomicU32::new(1);
        assert_eq!(futex_wake(&word, 1), 0);
        futex_wait(&word, 0, None); // value differs: returns at once
        futex_wait(&word, 1, Some(Duration::from_millis(1))); // times out
    }

    #[test]
    fn an_eventfd_counts_rings_until_drained() {
        let fd = eventfd().unwrap();
        assert_eq!(eventfd_drain(&fd), 0, "non-blocking: an empty counter reads as 0");
        eventfd_ring(&fd);
        eventfd_ring(&fd);
        assert_eq!(eventfd_drain(&fd), 2);
        assert_eq!(eventfd_drain(&fd), 0);
    }

    #[test]
    fn our_own_process_is_not_gone_and_a_reaped_one_is() {
        assert!(!process_gone(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(process_gone(pid));
    }
}
