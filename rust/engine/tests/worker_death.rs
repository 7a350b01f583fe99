//! Worker deaths as the supervisor records them, with threads standing in for the processes.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use multicore_engine::supervisor::record_death;
use multicore_engine::{Config, Error, ExitStatus, Outcome, Pool, WorkerChannel};

/// Two workers and the spin times the Python side ships with; the engine itself has no defaults.
fn config(slots: u32, inline_size: u32) -> Config {
    Config {
        workers: 2,
        slots,
        inline_size,
        worker_spin_us: 200,
        parent_spin_us: 50,
        max_payload: None,
        segment_keep_bytes: 8 << 20,
    }
}

fn pool(cfg: Config) -> Pool {
    let p = Pool::create(&cfg).unwrap();
    p.supervisor_started(std::process::id()).unwrap();
    p
}

fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// A worker killed while it held the spin token (it spins after every call) must not leave the
/// token "held": the parent leaves new calls to a spinning worker and would never wake a sleeper.
#[test]
fn a_worker_killed_while_spinning_does_not_stall_the_pool() {
    let p = pool(config(4, 3968));
    // Worker 0 died holding the token (index + 1), as a SIGKILL during its spin leaves it.
    p.region().doorbell().spinner.store(1, SeqCst);
    let region = p.region().clone();
    let (tx, rx) = mpsc::channel();
    let sleeper = std::thread::spawn(move || {
        let mut w = WorkerChannel::new(region, 1);
        w.ready();
        let call = w.next_call(); // sleeps: the token is taken, so it does not spin
        tx.send(call.map(|c| c.slot)).unwrap();
    });
    // Let the worker fall asleep, then submit.
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.region().doorbell().sleepers.load(SeqCst) == 0 {
        assert!(Instant::now() < deadline, "worker never went to sleep");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (slot, _) = p.submit(0, &[b"work"]).unwrap().unwrap();
    // The supervisor reaps worker 0: the token comes back and a sleeper is woken.
    record_death(p.region(), 0, dead_pid(), ExitStatus::Signal(9));
    assert_eq!(p.region().doorbell().spinner.load(SeqCst), 0);
    let got = rx.recv_timeout(Duration::from_secs(5)).expect("the sleeping worker was never woken");
    assert_eq!(got, Some(slot));
    sleeper.join().unwrap();
}

/// A finished result that sits in the segment of a worker that died before the parent read it is
/// a lost call (pid and status), not a protocol error, and never a hang.
#[test]
fn a_result_in_a_dead_workers_segment_is_lost_not_corrupt() {
    let p = pool(config(4, 64));
    let mut w = WorkerChannel::new(p.region().clone(), 1);
    w.ready();
    let (slot, ticket) = p.submit(0, &[b"make a big result"]).unwrap().unwrap();
    let call = w.try_claim().unwrap();
    assert!(w.reply(call, 0, &[&vec![9u8; 10_000]]).unwrap());
    // Pretend the segment belonged to a process that is gone now, and that the supervisor has not
    // reaped it yet: the entry still shows its pid.
    let dead = dead_pid();
    let mut d = p.region().read_descriptor(slot, true);
    d.seg_pid = dead;
    p.region().write_descriptor(slot, true, d);
    p.region().worker(1).pid.store(dead, SeqCst);
    assert!(matches!(p.take(slot, ticket, |_, b| b.len()), Ok(Outcome::Pending)), "not yet recorded");
    record_death(p.region(), 1, dead, ExitStatus::Signal(9));
    match p.take(slot, ticket, |_, b| b.len()) {
        Ok(Outcome::Lost { pid, status }) => {
            assert_eq!(pid, dead);
            assert_eq!(status, ExitStatus::Signal(9));
        }
        other => panic!("expected Lost, got {:?}", other.map(|o| matches!(o, Outcome::Done(_)))),
    }
    assert_eq!(p.info().slots_in_use, 0);
}

/// A segment naming a dead process that no worker entry knows is corruption: an error at once.
#[test]
fn a_result_naming_a_stranger_is_an_error_not_pending() {
    let p = pool(config(4, 64));
    let mut w = WorkerChannel::new(p.region().clone(), 0);
    w.ready();
    let (slot, ticket) = p.submit(0, &[b"x"]).unwrap().unwrap();
    let call = w.try_claim().unwrap();
    assert!(w.reply(call, 0, &[&vec![1u8; 10_000]]).unwrap());
    let mut d = p.region().read_descriptor(slot, true);
    d.seg_pid = dead_pid();
    p.region().write_descriptor(slot, true, d);
    assert!(matches!(p.take(slot, ticket, |_, b| b.len()), Err(Error::Protocol(_))));
}

/// Many parent threads wait while workers keep dying: every waiter wakes up promptly, and each
/// call ends exactly once, as its own result or as lost.
#[test]
fn waiters_wake_promptly_when_their_worker_dies() {
    let p = std::sync::Arc::new(pool(config(64, 3968)));
    for round in 0..20u64 {
        let mut w = WorkerChannel::new(p.region().clone(), (round % 2) as u32);
        w.ready();
        let handles: Vec<_> = (0..8u64).map(|i| p.submit(0, &[&i.to_le_bytes()]).unwrap().unwrap()).collect();
        // The worker finishes half the calls and dies holding the next one.
        let mut claimed = Vec::new();
        for _ in 0..5 {
            claimed.push(w.try_claim().unwrap());
        }
        for call in &claimed[..4] {
            let req = w.read_request(*call, |_, b| b.to_vec()).unwrap();
            assert!(w.reply(*call, 0, &[&req]).unwrap());
        }
        let waiters: Vec<_> = handles
            .iter()
            .map(|&(slot, ticket)| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    loop {
                        let seen = p.lost_seq();
                        match p.take(slot, ticket, |_, b| b.to_vec()).unwrap() {
                            Outcome::Pending => {}
                            other => return (other, started.elapsed()),
                        }
                        assert!(started.elapsed() < Duration::from_secs(5), "waiter stuck");
                        p.wait(slot, ticket, Instant::now() + Duration::from_secs(5), seen);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        record_death(p.region(), (round % 2) as u32, 4242, ExitStatus::Signal(9));
        // The three calls never claimed run on a replacement.
        let mut w = WorkerChannel::new(p.region().clone(), (round % 2) as u32);
        w.ready();
        while let Some(call) = w.try_claim() {
            let req = w.read_request(call, |_, b| b.to_vec()).unwrap();
            assert!(w.reply(call, 0, &[&req]).unwrap());
        }
        for (i, waiter) in waiters.into_iter().enumerate() {
            let (outcome, took) = waiter.join().unwrap();
            assert!(took < Duration::from_secs(2), "call {i} waited {took:?}");
            match outcome {
                Outcome::Done(bytes) => assert_eq!(bytes, (i as u64).to_le_bytes(), "call {i} got another's result"),
                Outcome::Lost { pid, status } => {
                    assert_eq!(i, 4, "only the call held at death is lost");
                    assert_eq!((pid, status), (4242, ExitStatus::Signal(9)));
                }
                Outcome::Pending => unreachable!(),
            }
        }
        assert_eq!(p.info().slots_in_use, 0, "round {round}");
    }
}
