"""Memory at rest: after a large payload, the parent and the workers give the segments back.

Payload segments are reused while calls keep coming (a fresh one costs about 1 ms per MB in page
faults), but those beyond ``segment_keep_bytes`` are closed after about a second without use.
Each scenario runs in its own interpreter, so the parent's RSS is only the pool's.
"""

from tests.support import run_python

SCENARIO = r"""
import os, time
import multicore
from multicore import Task

def echo(x):
    return x

def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

multicore.initialize(workers=2, **OPTIONS)
assert multicore.warm_up(30)  # every worker has a pid before we read their memory
for i in range(50):
    t = Task(); t.run(echo, i); t.get()
pids = [os.getpid()] + [w["pid"] for w in multicore.pool_info()["workers"]]
warm = [rss_mb(p) for p in pids]
payload = os.urandom(1 << 20) * 100
for _ in range(2):
    t = Task(); t.run(echo, payload); t.run(echo, payload)
    assert t.get() == [payload, payload]
del payload, t
after = [rss_mb(p) for p in pids]
deadline = time.monotonic() + WAIT
while True:
    now = [rss_mb(p) for p in pids]
    if all(n <= w + 16 for n, w in zip(now, warm)) or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print("warm", warm, "after", after, "rest", now)
multicore.shutdown()
"""


def _rss(options: str, wait: float):
    out = run_python(SCENARIO.replace("**OPTIONS", options).replace("WAIT", str(wait))).stdout.split()
    values = [float(x.strip("[],")) for x in out if x.strip("[],").replace(".", "", 1).isdigit()]
    return values[0:3], values[3:6], values[6:9]


def test_parent_and_workers_return_near_their_warm_rss_after_100_mb_payloads():
    warm, after, rest = _rss("", wait=15)
    assert max(after) > min(warm) + 90, "the payloads should have been resident at some point"
    for w, r in zip(warm, rest, strict=False):
        assert r <= w + 16, f"RSS at rest {rest} MB, warm {warm} MB (right after the payloads: {after})"


def test_segment_keep_bytes_keeps_segments_for_reuse():
    warm, _, rest = _rss("segment_keep_bytes=1 << 30", wait=2.5)
    # Kept for good: the parent's request segments and the result segment of a worker stay.
    assert rest[0] > warm[0] + 90, (warm, rest)
    assert any(r > w + 90 for w, r in zip(warm[1:], rest[1:], strict=False)), (warm, rest)
