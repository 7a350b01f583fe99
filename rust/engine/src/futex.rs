//! Shared (non-private) futex wait and wake on words that live in the memfd region.
//!
//! The words are in a MAP_SHARED mapping of one file, so the kernel keys them by (inode, offset)
//! and a wake in one process reaches a waiter in another.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, for at most `timeout`. Returns on a wake, a value mismatch,
/// a timeout or a signal; callers always re-check their condition, so the reason is not reported.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; FUTEX_WAIT only reads it.
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
pub fn wake(word: &AtomicU32, count: i32) -> u32 {
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
    woken.max(0) as u32
}

/// Wakes every waiter on `word`.
pub fn wake_all(word: &AtomicU32) {
    wake(word, i32::MAX);
}

/// The CPU this thread last ran on, or `u32::MAX` if unknown.
pub fn current_cpu() -> u32 {
    // SAFETY: sched_getcpu takes no arguments and only returns a value.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        u32::MAX
    } else {
        cpu as u32
    }
}
