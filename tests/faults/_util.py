"""Process, fd and /dev/shm inspection for the fault tests (Linux /proc only, no Django).

Importable from child interpreters started by ``run_python`` (cwd and PYTHONPATH are the repo
root), so scenarios that kill processes can check the aftermath from inside the child too.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

#: Environment variable whose value tags every process of one scenario (forks inherit it).
MARK = "MULTICORE_FAULT_MARK"


def new_mark() -> str:
    return uuid.uuid4().hex


def shm_entries() -> set[str]:
    """Names in /dev/shm, minus PostgreSQL's own dynamic shared memory (another service)."""
    return {n for n in os.listdir("/dev/shm") if not n.startswith("PostgreSQL.")}


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, ppid) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1])


def ppid_of(pid: int) -> int | None:
    st = _stat(pid)
    return None if st is None else st[1]


def state_of(pid: int) -> str | None:
    st = _stat(pid)
    return None if st is None else st[0]


def marked_pids(mark: str, include_zombies: bool = False) -> list[int]:
    """Pids of live processes whose environment carries ``MARK=mark``."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env:
            state = state_of(pid)
            if state is not None and (include_zombies or state != "Z"):
                found.append(pid)
    return found


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (zombies included)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[1] == pid:
                out.append(int(entry))
    return out


def kill_marked(mark: str) -> None:
    """Clean-up after a failed scenario, so one failure does not leak processes into the next."""
    for pid in marked_pids(mark, include_zombies=True):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_for(predicate, timeout: float, interval: float = 0.005) -> float | None:
    """Seconds until ``predicate()`` held, or None if it never did within ``timeout``."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(interval)
