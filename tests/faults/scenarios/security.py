"""Scenarios of tests/faults/test_security.py (run as ``python -m tests.faults.scenarios.security <scenario>``)."""

import os

import multicore
from multicore import Task
from tests.faults._util import shm_entries


def big(n):
    return b"s" * n


def fd_targets(pid):
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # the directory listing's own fd
            pass
    return out


def maps(pid):
    with open(f"/proc/{pid}/maps") as f:
        return [line.split(None, 5)[-1].strip() for line in f if len(line.split(None, 5)) == 6]


def shared_memory_is_anonymous_and_nothing_listens() -> None:
    shm_before = shm_entries()
    inherited = set(fd_targets("self").values())
    multicore.initialize(workers=2)
    t = Task()
    for _ in range(4):
        t.run(big, 1 << 20)  # forces payload segments both ways
    assert [len(r) for r in t.get(timeout=20)] == [1 << 20] * 4
    info = multicore.pool_info()
    pool_pids = [info["supervisor_pid"]] + [w["pid"] for w in info["workers"]]
    for pid in [os.getpid(), *pool_pids]:
        names = maps(pid)
        # Shared memory is memfd-backed (anonymous: no name anyone else can open)...
        assert any(n.startswith("/memfd:multicore-control") for n in names), (pid, names)
        # ...and never a file in /dev/shm or anywhere else on a filesystem.
        assert not [n for n in names if n.startswith("/dev/shm")], (pid, names)
    for pid in pool_pids:
        # No sockets at all in the supervisor and workers (the parent had none to pass on).
        targets = fd_targets(pid)
        assert not [t for t in targets.values() if t.startswith("socket:")], (pid, targets)
        # Everything multicore opened is close-on-exec: a subprocess started by a task gets none.
        for fd, target in targets.items():
            if target not in inherited:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    flags = int(next(line for line in f if line.startswith("flags:")).split()[1], 8)
                assert flags & 0o2000000, (pid, fd, target, oct(flags))  # O_CLOEXEC
    new_sockets = [t for t in fd_targets("self").values() if t.startswith("socket:") and t not in inherited]
    assert not new_sockets, new_sockets
    # The region and segments are mode 0600-equivalent memfds: only the same uid can open them via /proc.
    assert shm_entries() == shm_before, shm_entries() ^ shm_before
    multicore.shutdown()


if __name__ == "__main__":
    from tests.faults.scenarios import main

    main(globals())
