//! Fuzzing the shared-memory protocol from the outside (public API only).
//!
//! Slots and descriptors are written by other processes that may die half-way or be corrupted, so
//! whatever they hold, the parent's `take`/`wait`/`cancel` and a worker's `read_request` must
//! return (an error or an answer, quickly), never panic, read out of bounds or block.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use multicore_engine::layout::RawDescriptor;
use multicore_engine::{Config, Outcome, Pool, SlotState, WorkerChannel};
use proptest::prelude::*;

fn pool() -> Pool {
    let p = Pool::create(&Config {
        workers: 2,
        slots: 4,
        inline_size: 64,
        worker_spin_us: 200,
        parent_spin_us: 50,
        max_payload: None,
        segment_keep_bytes: 8 << 20,
    })
    .unwrap();
    // Our own pid stands in for the supervisor, so the pool counts as running.
    p.supervisor_started(std::process::id()).unwrap();
    p
}

/// A pid that names no process: a child we started and reaped (once; pids are reused slowly).
fn dead_pid() -> u32 {
    static DEAD: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *DEAD.get_or_init(|| {
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().unwrap();
        pid
    })
}

fn pick_pid(sel: u8, dead: u32) -> u32 {
    match sel {
        0 => std::process::id(),
        1 => 0,
        2 => dead,
        _ => u32::MAX,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any state word and any response descriptor in a slot the parent is waiting on.
    #[test]
    fn the_parent_survives_any_slot_contents(
        state: u32,
        place in 0u32..4,
        len in prop_oneof![0u64..200, any::<u64>()],
        pid_sel in 0u8..4,
        fd in 0u32..64,
        cap in prop_oneof![0u64..(1 << 22), any::<u64>()],
        lost_pid: u32,
        inline in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let p = pool();
        let dead = dead_pid();
        let (slot, ticket) = p.submit(0, &[b"request"]).unwrap().unwrap();
        let region = p.region();
        // What a dying or broken writer could leave behind.
        // SAFETY: at most 64 bytes into the slot's 64-byte inline area; no other thread runs.
        unsafe { std::ptr::copy_nonoverlapping(inline.as_ptr(), region.inline_ptr(slot), inline.len()) };
        let d = RawDescriptor { tag: 1, place, len, seg_pid: pick_pid(pid_sel, dead), seg_fd: fd, seg_cap: cap };
        region.write_descriptor(slot, true, d);
        region.slot(slot).lost_pid.store(lost_pid, SeqCst);
        region.slot(slot).state.store(state, SeqCst);

        let started = Instant::now();
        match p.take(slot, ticket, |_, bytes| bytes.len()) {
            Ok(Outcome::Done(n)) => prop_assert_eq!(n as u64, len, "a result must be exactly as long as declared"),
            Ok(Outcome::Lost { .. }) | Ok(Outcome::Pending) | Err(_) => {}
        }
        p.wait(slot, ticket, Instant::now() + Duration::from_millis(2), p.lost_seq());
        // kill=false: a corrupt Claimed word names no process of ours to signal.
        let _ = p.cancel(slot, ticket, false);
        let _ = p.take(slot, ticket, |_, bytes| bytes.len());
        let _ = p.info();
        prop_assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    /// A worker reading a corrupted or truncated request.
    #[test]
    fn a_worker_survives_any_request_descriptor(
        place in 0u32..4,
        len in prop_oneof![0u64..200, any::<u64>()],
        pid_sel in 0u8..4,
        fd in 0u32..64,
        cap: u64,
    ) {
        let p = pool();
        let dead = dead_pid();
        let big = vec![7u8; 5000]; // goes through a segment of ours, so fd may name a real one
        let (slot, _) = p.submit(0, &[&big]).unwrap().unwrap();
        let w = WorkerChannel::new(p.region().clone(), 0);
        w.ready();
        let call = w.try_claim().expect("the queued call");
        prop_assert_eq!(call.slot, slot);
        let d = RawDescriptor { tag: 0, place, len, seg_pid: pick_pid(pid_sel, dead), seg_fd: fd, seg_cap: cap };
        p.region().write_descriptor(slot, false, d);
        let started = Instant::now();
        if let Ok(n) = w.read_request(call, |_, bytes| bytes.len()) {
            prop_assert_eq!(n as u64, len);
        }
        prop_assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// Truncation: a descriptor longer than the segment behind it is refused, whatever the sizes.
    #[test]
    fn a_truncated_segment_is_an_error(extra in 1u64..(1 << 30)) {
        let p = pool();
        let (slot, ticket) = p.submit(0, &[b"x"]).unwrap().unwrap();
        let w = WorkerChannel::new(p.region().clone(), 0);
        w.ready();
        let mut w = w;
        let call = w.try_claim().unwrap();
        let payload = vec![1u8; 3000];
        prop_assert!(w.reply(call, 0, &[&payload]).unwrap());
        let mut d = p.region().read_descriptor(slot, true);
        prop_assert_eq!(d.place, 2, "3000 bytes do not fit a 64-byte slot");
        d.len = d.seg_cap + extra;
        d.seg_cap = d.len;
        p.region().write_descriptor(slot, true, d);
        let out = p.take(slot, ticket, |_, b| b.len());
        prop_assert!(out.is_err(), "{:?}", out.map(|o| matches!(o, Outcome::Done(_))));
    }
}

#[test]
fn every_state_word_decodes_or_is_refused() {
    // Exhaustive over the low byte and a spread of worker fields.
    for low in 0u32..=0xff {
        for worker in [0u32, 1, 2, 1023, 0xff_ffff] {
            let raw = low | (worker << 8);
            if let Some(state) = SlotState::from_raw(raw) {
                assert_eq!(state.to_raw(), raw, "{raw:#x} decodes to {state:?}");
            }
        }
    }
}
