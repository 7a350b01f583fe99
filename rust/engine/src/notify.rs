//! The wake-up protocol every role shares: counted futex words in the control region that tell
//! sleepers a slot came free or the pool changed under them.
//!
//! Each wait here is one side of a Dekker pair: the sleeper registers (SeqCst) before it
//! re-checks, the waker changes the word (SeqCst) before it looks for sleepers, so a wake-up is
//! never lost, and the waker skips the syscall when nobody sleeps.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use crate::region::Region;
use crate::sys;

/// Decrements a counter that must never wrap below zero.
pub(crate) fn decrement(counter: &AtomicU32) {
    let _ = counter.fetch_update(SeqCst, SeqCst, |v| v.checked_sub(1));
}

/// Tells threads in `wait_for_free` that a slot went back to FREE; the caller has already
/// stored FREE.
pub(crate) fn notify_free(region: &Region) {
    let c = region.counters();
    // ORDERING: the SeqCst bump of `free_seq` precedes the SeqCst load of `free_waiters`; it pairs
    // with wait_for_free's SeqCst increment of `free_waiters` before its re-check and futex
    // compare. Either the waiter sees the FREE slot or the new `free_seq` (and does not sleep),
    // or we see it registered and wake it.
    c.free_seq.fetch_add(1, SeqCst);
    if c.free_waiters.load(SeqCst) > 0 {
        sys::futex_wake_all(&c.free_seq);
    }
}

/// Sleeps until a slot goes back to FREE (or the pool changes state). `sleep_for`, asked once
/// this thread counts as a waiter, checks the caller's condition and says how long to sleep at
/// most, or `None` not to sleep. Callers re-check afterwards: a return says only that something
/// may have changed.
pub(crate) fn wait_for_free(region: &Region, sleep_for: impl FnOnce() -> Option<Duration>) {
    let c = region.counters();
    let seq = c.free_seq.load(SeqCst);
    c.free_waiters.fetch_add(1, SeqCst);
    // ORDERING: the SeqCst `free_seq` load and `free_waiters` increment precede the check in
    // `sleep_for` and the futex compare; notify_free stores FREE, then bumps `free_seq`, then
    // loads `free_waiters` (SeqCst). A slot freed before our load is seen by the check; one freed
    // after it changes `free_seq`, so FUTEX_WAIT returns at once, or notify_free sees us counted
    // and wakes us.
    if let Some(timeout) = sleep_for() {
        sys::futex_wait(&c.free_seq, seq, Some(timeout));
    }
    c.free_waiters.fetch_sub(1, SeqCst);
}

/// Wakes every parent thread sleeping on a slot or on free capacity, so it re-checks the pool.
pub(crate) fn wake_all_waiters(region: &Region) {
    region.counters().lost_seq.fetch_add(1, SeqCst);
    for i in 0..region.slots() {
        let meta = region.slot(i);
        if meta.waiter.load(SeqCst) != 0 {
            sys::futex_wake_all(&meta.state);
        }
    }
    region.counters().free_seq.fetch_add(1, SeqCst);
    sys::futex_wake_all(&region.counters().free_seq);
}
