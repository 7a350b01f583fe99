//! The slot protocol end to end inside one process: threads stand in for the parent and workers
//! (the protocol only sees atomics in a shared mapping, so the threads exercise the same code
//! paths as processes would). Death is simulated by calling `record_death` as the supervisor does.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::layout::{Config, ExitStatus, SlotState};
use crate::parent::{Cancelled, Outcome, Pool};
use crate::supervisor::{record_death, Death};
use crate::worker::WorkerChannel;
use crate::Error;

fn pool(cfg: Config) -> Pool {
    let pool = Pool::create(&cfg).unwrap();
    // Our own pid stands in for the supervisor, so the pool counts as running.
    pool.supervisor_started(std::process::id()).unwrap();
    pool
}

fn small() -> Config {
    Config { workers: 2, slots: 4, inline_size: 64, ..Config::default() }
}

fn worker(pool: &Pool, index: u32) -> WorkerChannel {
    let w = WorkerChannel::new(pool.region().clone(), index);
    w.ready();
    w
}

fn take_bytes(pool: &Pool, slot: u32, ticket: u64) -> Outcome<(u32, Vec<u8>)> {
    pool.take(slot, ticket, |tag, b| (tag, b.to_vec())).unwrap()
}

#[test]
fn a_call_round_trips_and_frees_its_slot() {
    let p = pool(small());
    let mut w = worker(&p, 0);
    let (slot, ticket) = p.submit(5, &[b"request"]).unwrap().unwrap();
    assert!(matches!(take_bytes(&p, slot, ticket), Outcome::Pending));
    let call = w.try_claim().expect("queued call");
    assert_eq!((call.slot, call.ticket), (slot, ticket));
    let req = w.read_request(call, |tag, b| (tag, b.to_vec())).unwrap();
    assert_eq!(req, (5, b"request".to_vec()));
    assert!(w.reply(call, 9, &[b"resp", b"onse"]).unwrap());
    match take_bytes(&p, slot, ticket) {
        Outcome::Done((tag, bytes)) => assert_eq!((tag, bytes), (9, b"response".to_vec())),
        other => panic!("expected done, got {other:?}"),
    }
    assert_eq!(p.info().slots_in_use, 0);
    assert!(matches!(p.take(slot, ticket, |_, _| ()), Err(Error::StaleHandle { .. })));
}

#[test]
fn large_payloads_go_through_segments_both_ways() {
    let p = pool(small());
    let mut w = worker(&p, 0);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (slot, ticket) = p.submit(0, &[&big]).unwrap().unwrap();
    let call = w.try_claim().unwrap();
    let echoed = w.read_request(call, |_, b| b.to_vec()).unwrap();
    assert!(w.reply(call, 0, &[&echoed]).unwrap());
    match take_bytes(&p, slot, ticket) {
        Outcome::Done((_, bytes)) => assert_eq!(bytes, big),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_full_pool_refuses_until_a_slot_is_freed() {
    let p = pool(small());
    let handles: Vec<_> = (0..4).map(|_| p.submit(0, &[b"x"]).unwrap().unwrap()).collect();
    assert!(p.submit(0, &[b"x"]).unwrap().is_none(), "4 slots, 4 calls");
    assert_eq!(p.cancel(handles[0].0, handles[0].1, false), Cancelled::Freed);
    assert!(p.submit(0, &[b"x"]).unwrap().is_some());
}

#[test]
fn a_cancelled_queued_call_is_never_claimed() {
    let p = pool(small());
    let w = worker(&p, 0);
    let (slot, ticket) = p.submit(0, &[b"x"]).unwrap().unwrap();
    assert_eq!(p.cancel(slot, ticket, false), Cancelled::Freed);
    assert!(w.try_claim().is_none());
    assert_eq!(p.cancel(slot, ticket, false), Cancelled::Gone, "cancel is idempotent");
}

#[test]
fn an_abandoned_call_cannot_be_completed_and_its_result_is_dropped() {
    let p = pool(small());
    let mut w = worker(&p, 1);
    let (slot, ticket) = p.submit(0, &[b"x"]).unwrap().unwrap();
    let call = w.try_claim().unwrap();
    assert!(matches!(p.cancel(slot, ticket, false), Cancelled::Abandoned { .. }));
    assert!(!w.reply(call, 0, &[b"late"]).unwrap(), "the worker learns the call was abandoned");
    assert_eq!(p.info().slots_in_use, 0, "the worker freed the slot");
    assert_eq!(p.info().discarded, 1);
    // The next call in that slot gets its own result, never the late one.
    let (slot2, ticket2) = p.submit(0, &[b"y"]).unwrap().unwrap();
    let call2 = w.try_claim().unwrap();
    assert!(w.reply(call2, 0, &[b"mine"]).unwrap());
    match take_bytes(&p, slot2, ticket2) {
        Outcome::Done((_, b)) => assert_eq!(b, b"mine"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_dead_workers_calls_are_lost_with_pid_and_status() {
    let p = pool(small());
    let w = worker(&p, 1);
    let (slot, ticket) = p.submit(0, &[b"x"]).unwrap().unwrap();
    let (slot_b, ticket_b) = p.submit(0, &[b"y"]).unwrap().unwrap();
    w.try_claim().unwrap();
    w.try_claim().unwrap();
    assert!(matches!(p.cancel(slot_b, ticket_b, false), Cancelled::Abandoned { .. }));
    let seen = p.lost_seq();
    let death = record_death(p.region(), 1, 4242, ExitStatus::Signal(9));
    assert_eq!(death, Death::Crash);
    assert_ne!(p.lost_seq(), seen, "waiters on other slots are told to look");
    match take_bytes(&p, slot, ticket) {
        Outcome::Lost { pid, status } => assert_eq!((pid, status), (4242, ExitStatus::Signal(9))),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.info().slots_in_use, 0, "the abandoned slot was freed by the supervisor");
    let info = &p.info().workers[1];
    assert_eq!(info.last_exit, Some((4242, ExitStatus::Signal(9))));
    assert_eq!(info.respawns, 1);
}

#[test]
fn a_death_during_start_up_and_a_planned_exit_are_told_apart() {
    let p = pool(small());
    let starting = WorkerChannel::new(p.region().clone(), 0);
    drop(starting);
    assert_eq!(record_death(p.region(), 0, 1, ExitStatus::Code(1)), Death::StartupFailure);
    let mut retiring = worker(&p, 1);
    retiring.retire(Duration::ZERO);
    assert_eq!(record_death(p.region(), 1, 2, ExitStatus::Code(0)), Death::Retired);
    assert_eq!(p.info().workers[1].recycles, 1);
}

#[test]
fn a_sleeping_worker_is_woken_by_a_submit() {
    let cfg = Config { worker_spin_us: 0, parent_spin_us: 0, ..small() };
    let p = Arc::new(pool(cfg));
    let p2 = p.clone();
    let t = std::thread::spawn(move || {
        let mut w = worker(&p2, 0);
        let call = w.next_call().expect("a call");
        let n = w.read_request(call, |_, b| b.len()).unwrap();
        w.reply(call, 0, &[&n.to_le_bytes()]).unwrap();
    });
    // Let the worker reach its futex sleep before submitting.
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.region().doorbell().sleepers.load(Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (slot, ticket) = p.submit(0, &[b"abc"]).unwrap().unwrap();
    p.wait(slot, ticket, Instant::now() + Duration::from_secs(5), p.lost_seq());
    match take_bytes(&p, slot, ticket) {
        Outcome::Done((_, b)) => assert_eq!(b, 3usize.to_le_bytes()),
        other => panic!("not woken: {other:?}"),
    }
    t.join().unwrap();
}

#[test]
fn many_threads_and_workers_get_exactly_their_own_results() {
    let cfg =
        Config { workers: 2, slots: 8, inline_size: 64, worker_spin_us: 50, parent_spin_us: 20, ..Config::default() };
    let p = Arc::new(pool(cfg));
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut w = worker(&p, i);
                while let Some(call) = w.next_call() {
                    let req = w.read_request(call, |_, b| b.to_vec()).unwrap();
                    w.reply(call, 0, &[&req]).unwrap();
                }
            })
        })
        .collect();
    let parents: Vec<_> = (0..4u32)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                for i in 0..500u32 {
                    let msg = format!("{t}:{i}");
                    let (slot, ticket) = loop {
                        if let Some(h) = p.submit(0, &[msg.as_bytes()]).unwrap() {
                            break h;
                        }
                        p.wait_for_free_slot(Instant::now() + Duration::from_millis(10));
                    };
                    loop {
                        match p.take(slot, ticket, |_, b| b.to_vec()).unwrap() {
                            Outcome::Done(b) => {
                                assert_eq!(b, msg.as_bytes());
                                break;
                            }
                            Outcome::Pending => {
                                p.wait(slot, ticket, Instant::now() + Duration::from_millis(50), p.lost_seq())
                            }
                            Outcome::Lost { .. } => panic!("no worker died"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in parents {
        t.join().unwrap();
    }
    // Not p.shutdown(): our own pid stands in for the supervisor, and shutdown would kill it.
    p.region().header().pool_state.store(crate::layout::PoolState::Stopping as u32, SeqCst);
    crate::sys::futex_wake_all(&p.region().doorbell().work_seq);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(p.info().completed, 2000);
    assert_eq!(p.region().slot(0).state.load(Relaxed), SlotState::Free.to_raw());
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_stale_queue_count_does_not_keep_idle_workers_spinning() {
    // What a worker killed between its claim and the counter decrement leaves behind.
    let p = Arc::new(pool(small()));
    p.region().doorbell().queued.fetch_add(1, SeqCst);
    let p2 = p.clone();
    let t = std::thread::spawn(move || {
        let mut w = worker(&p2, 0);
        let call = w.next_call().expect("the real call");
        w.reply(call, 0, &[b"ok"]).unwrap();
    });
    wait_for("the worker to sleep despite the stale count", || p.region().worker(0).asleep.load(SeqCst) == 1);
    let (slot, ticket) = p.submit(0, &[b"x"]).unwrap().unwrap();
    p.wait(slot, ticket, Instant::now() + Duration::from_secs(5), p.lost_seq());
    assert!(matches!(take_bytes(&p, slot, ticket), Outcome::Done(_)));
    t.join().unwrap();
}

#[test]
fn the_sleeper_count_of_a_worker_killed_asleep_is_taken_back_once() {
    let cfg = Config { worker_spin_us: 0, ..small() };
    let p = Arc::new(pool(cfg));
    let p2 = p.clone();
    let t = std::thread::spawn(move || worker(&p2, 0).next_call());
    let bell = p.region().doorbell();
    wait_for("the worker to sleep", || bell.sleepers.load(SeqCst) == 1);
    // The supervisor records the death while the (simulated dead) worker is still in its sleep.
    record_death(p.region(), 0, 99, ExitStatus::Signal(9));
    assert_eq!(bell.sleepers.load(SeqCst), 0);
    // Waking the thread must not take the count back a second time (it would wrap below zero).
    p.region().header().pool_state.store(crate::layout::PoolState::Stopping as u32, SeqCst);
    crate::sys::futex_wake_all(&bell.work_seq);
    assert!(t.join().unwrap().is_none());
    assert_eq!(bell.sleepers.load(SeqCst), 0);
}

#[test]
fn a_wake_left_in_flight_by_a_dead_worker_does_not_silence_later_wakes() {
    let cfg = Config { worker_spin_us: 0, ..small() };
    let p = Arc::new(pool(cfg));
    let bell = p.region().doorbell();
    // Worker 0 "was woken" (waking = 1) and died before running: its entry still says asleep.
    p.region().worker(0).asleep.store(1, SeqCst);
    bell.sleepers.fetch_add(1, SeqCst);
    bell.waking.store(1, SeqCst);
    record_death(p.region(), 0, 7, ExitStatus::Signal(9));
    assert_eq!(bell.waking.load(SeqCst), 0);
    // A live worker asleep now must be woken by the next submit.
    let p2 = p.clone();
    let t = std::thread::spawn(move || {
        let mut w = worker(&p2, 1);
        let call = w.next_call().expect("woken for the call");
        w.reply(call, 0, &[b"ok"]).unwrap();
    });
    wait_for("worker 1 to sleep", || p.region().worker(1).asleep.load(SeqCst) == 1);
    let (slot, ticket) = p.submit(0, &[b"x"]).unwrap().unwrap();
    p.wait(slot, ticket, Instant::now() + Duration::from_secs(5), p.lost_seq());
    assert!(matches!(take_bytes(&p, slot, ticket), Outcome::Done(_)), "the sleeping worker was woken");
    t.join().unwrap();
    assert_eq!(bell.waking.load(SeqCst), 0, "the woken worker counted itself out");
}

#[test]
fn each_queued_call_gets_its_own_sleeping_worker_woken() {
    // Two calls submitted back to back must both be claimed while neither can finish: a wake-up
    // already on its way to one worker must not stand in for the second call.
    let cfg = Config { worker_spin_us: 0, parent_spin_us: 0, ..small() };
    let p = Arc::new(pool(cfg));
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let (p, release) = (p.clone(), release.clone());
            std::thread::spawn(move || {
                let mut w = worker(&p, i);
                let call = w.next_call().expect("a call");
                while !release.load(SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                w.reply(call, 0, &[b"done"]).unwrap();
            })
        })
        .collect();
    wait_for("both workers asleep", || p.region().doorbell().sleepers.load(SeqCst) == 2);
    let handles: Vec<_> = (0..2).map(|_| p.submit(0, &[b"x"]).unwrap().unwrap()).collect();
    let claimed = |&(slot, _): &(u32, u64)| {
        matches!(SlotState::from_raw(p.region().slot(slot).state.load(SeqCst)), Some(SlotState::Claimed(_)))
    };
    wait_for("both calls claimed at once", || handles.iter().all(claimed));
    release.store(true, SeqCst);
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_worker_rings_the_async_doorbell_only_for_a_call_an_event_loop_awaits() {
    let p = pool(small());
    let mut w = worker(&p, 0);
    assert_eq!(p.drain_async_bell(), 0);
    // Not awaited by a loop: a synchronous waiter's call never touches the eventfd.
    let (slot, ticket) = p.submit(0, &[b"sync"]).unwrap().unwrap();
    let call = w.try_claim().unwrap();
    assert!(w.reply(call, 0, &[b"r"]).unwrap());
    assert_eq!(p.drain_async_bell(), 0, "no async waiter, no write");
    assert!(matches!(take_bytes(&p, slot, ticket), Outcome::Done(_)));
    // Armed while running: the DONE publication rings exactly once.
    let (slot, ticket) = p.submit(0, &[b"async"]).unwrap().unwrap();
    let call = w.try_claim().unwrap();
    assert!(!p.arm_async(slot, ticket), "still running: wait for the ring");
    assert!(w.reply(call, 0, &[b"r"]).unwrap());
    assert_eq!(p.drain_async_bell(), 1);
    assert!(p.arm_async(slot, ticket), "finished: look now, no ring will come");
    assert!(matches!(take_bytes(&p, slot, ticket), Outcome::Done(_)));
    // The flag belongs to one call: the slot's next call starts unflagged.
    let (slot2, ticket2) = p.submit(0, &[b"next"]).unwrap().unwrap();
    let call = w.try_claim().unwrap();
    assert!(w.reply(call, 0, &[b"r"]).unwrap());
    assert_eq!(p.drain_async_bell(), 0);
    assert!(matches!(take_bytes(&p, slot2, ticket2), Outcome::Done(_)));
}

#[test]
fn a_ring_is_never_lost_between_arming_and_publishing() {
    // The Dekker pair: arm_async (flag, then state) against reply (state, then flag). Whatever
    // the interleaving, each awaited call is either seen finished by arm_async or rings.
    let p = Arc::new(pool(Config { workers: 1, slots: 8, inline_size: 64, ..Config::default() }));
    let rounds = 2000;
    let worker_pool = p.clone();
    let handle = std::thread::spawn(move || {
        let mut w = worker(&worker_pool, 0);
        let mut done = 0;
        while done < rounds {
            if let Some(call) = w.try_claim() {
                assert!(w.reply(call, 0, &[b"r"]).unwrap());
                done += 1;
            }
        }
    });
    let mut missed = 0;
    for _ in 0..rounds {
        let (slot, ticket) = p.submit(0, &[b"x"]).unwrap().unwrap();
        let finished = p.arm_async(slot, ticket);
        if !finished {
            let until = Instant::now() + Duration::from_secs(5);
            while p.drain_async_bell() == 0 {
                if Instant::now() > until {
                    missed += 1;
                    break;
                }
                std::hint::spin_loop();
            }
        }
        loop {
            match take_bytes(&p, slot, ticket) {
                Outcome::Done(_) => break,
                Outcome::Pending => std::hint::spin_loop(),
                other => panic!("{other:?}"),
            }
        }
        p.drain_async_bell(); // a ring from a call both saw finished and flagged
    }
    handle.join().unwrap();
    assert_eq!(missed, 0, "an armed call finished without a ring");
}

#[test]
fn a_worker_death_rings_the_async_doorbell() {
    let p = pool(small());
    let w = worker(&p, 1);
    let (slot, ticket) = p.submit(0, &[b"x"]).unwrap().unwrap();
    w.try_claim().unwrap();
    assert!(!p.arm_async(slot, ticket));
    assert_eq!(p.drain_async_bell(), 0);
    record_death(p.region(), 1, 4242, ExitStatus::Signal(9));
    assert!(p.drain_async_bell() >= 1, "the event loop is told to look");
    assert!(matches!(take_bytes(&p, slot, ticket), Outcome::Lost { pid: 4242, .. }));
}

#[test]
fn a_closed_async_doorbell_is_gone_and_rings_nowhere() {
    let p = pool(small());
    assert!(p.async_bell() >= 0);
    p.region().close_async_bell();
    assert_eq!(p.async_bell(), -1);
    p.region().ring_async_bell();
    assert_eq!(p.drain_async_bell(), 0);
    p.region().close_async_bell(); // closing twice is harmless
}

#[test]
fn withdraw_takes_back_only_a_call_no_worker_claimed() {
    let p = pool(small());
    let w = worker(&p, 0);
    let (running, running_ticket) = p.submit(0, &[b"a"]).unwrap().unwrap();
    let (queued, queued_ticket) = p.submit(0, &[b"b"]).unwrap().unwrap();
    let call = w.try_claim().unwrap();
    assert_eq!((call.slot, call.ticket), (running, running_ticket));
    assert!(!p.withdraw(running, running_ticket), "a claimed call is not withdrawn");
    assert!(!p.withdraw(queued, queued_ticket + 1), "a wrong ticket withdraws nothing");
    assert!(p.withdraw(queued, queued_ticket));
    assert!(!p.withdraw(queued, queued_ticket), "only once");
    assert!(w.try_claim().is_none(), "the withdrawn call is never claimed");
    assert_eq!(p.info().queued, 0);
    assert_eq!(p.info().slots_in_use, 1);
}
