"""Helpers for benchmarks/core.py: the functions the pools run, statistics, /proc readings.

This module is imported by every pool's workers (loky's are fresh interpreters), so it imports
nothing heavy at module level.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time

# --- work the pools run (module level, so every library pickles them by reference) -------------


def tiny(x):
    return x


def tiny_range(start, end):
    return [tiny(i) for i in range(start, end)]


def nap(seconds):
    time.sleep(seconds)
    return os.getpid()


def echo(payload):
    return payload


def burn(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


# --- statistics --------------------------------------------------------------------------------


def median(values):
    return statistics.median(values)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def rotated(items, round_no):
    """The peers in a different order each round, so that no library always runs first."""
    k = round_no % len(items)
    return list(items[k:]) + list(items[:k])


# --- /proc readings ----------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name may contain spaces and parentheses: split after its closing one.
    return text[text.rindex(")") + 2 :].split()


def cpu_ticks(pid, children=False):
    """utime + stime of a process (all its threads), in clock ticks; with reaped children too."""
    fields = _stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks


def cpu_ns(pid):
    """CPU time of every thread of a process from schedstat, in ns (finer than ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def descendants(root):
    """Pids of every live process below ``root``."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                ppid = int(_stat_fields(name)[1])
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _machine_ticks():
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait + steal, steal


def _own_ticks():
    total = cpu_ticks(os.getpid(), children=True)
    for pid in descendants(os.getpid()):
        try:
            total += cpu_ticks(pid, children=True)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


class Noise:
    """CPU used by other processes (and hypervisor steal) while a section ran, in % of the machine.

    ``also`` returns more pids whose CPU is the benchmark's own though they are not its
    descendants (the database server's backends serving it), read once at the start: one that
    starts later counts as another process.
    """

    def __init__(self, also=None):
        self.also = also
        self.pids = []

    def _own(self):
        total = _own_ticks()
        for pid in self.pids:
            try:
                total += cpu_ticks(pid)
            except (FileNotFoundError, ProcessLookupError):
                pass
        return total

    def __enter__(self):
        self.pids = list(self.also()) if self.also else []
        self.machine = _machine_ticks()
        self.own = self._own()
        return self

    def __exit__(self, *exc):
        busy0, all0, steal0 = self.machine
        busy1, all1, steal1 = _machine_ticks()
        elapsed = max(1, all1 - all0)
        foreign = max(0, (busy1 - busy0) - (self._own() - self.own))
        self.foreign_pct = 100.0 * foreign / elapsed
        self.steal_pct = 100.0 * (steal1 - steal0) / elapsed


def wait_quiet(max_wait, threshold_pct=10.0, window=0.5, windows=2):
    """Waits (at most ``max_wait`` s) for ``windows`` consecutive ``window``s with the machine
    under ``threshold_pct`` busy. Returns the seconds waited."""
    start, quiet = time.monotonic(), 0
    while True:
        busy0, all0, _ = _machine_ticks()
        time.sleep(window)
        busy1, all1, _ = _machine_ticks()
        quiet = quiet + 1 if 100.0 * (busy1 - busy0) / max(1, all1 - all0) < threshold_pct else 0
        waited = time.monotonic() - start
        if quiet >= windows or waited >= max_wait:
            return waited


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def source_version():
    """The git commit of the checkout, marked when the engine or package differ from it."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", repo, "diff", "--quiet", "HEAD", "--", "rust", "django_multicore"],
            capture_output=True,
            timeout=10,
        ).returncode
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return f"commit {head or 'unknown'}{' + uncommitted changes' if dirty else ''}"


def machine_line():
    import loky

    import multicore

    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{model}, nproc {len(os.sched_getaffinity(0))}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, multicore {multicore.__version__} ({source_version()}), loky {loky.__version__}, "
        f"{now}, load average at start {loadavg()}"
    )


def progress(message):
    print(f"# {message}", file=sys.stderr, flush=True)
