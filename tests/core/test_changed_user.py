"""A process that changed its user is not "dumpable" (the kernel then lets no other process open
its /proc/<pid>/fd): Apache's mod_wsgi daemon processes, servers started as root with --user.
Its pool's processes must still read each other's large payloads, both ways."""

from tests.support import run_python


def test_large_payloads_flow_in_a_process_that_changed_its_user():
    proc = run_python(
        """
        import ctypes, os
        import multicore

        os.setgid(65534)
        os.setuid(65534)  # like Apache's daemon processes: the kernel clears "dumpable"
        libc = ctypes.CDLL(None)
        assert libc.prctl(3, 0, 0, 0, 0) != 1

        def echo_reversed(data):
            return data[::-1]

        big = bytes(range(256)) * 8192  # 2 MiB: a shared-memory segment each way
        task = multicore.Task()
        task.run(echo_reversed, big)
        print(task.get() == [big[::-1]], libc.prctl(3, 0, 0, 0, 0))
        multicore.shutdown()
        """,
        timeout=60,
    )
    assert proc.stdout.split() == ["True", "1"]
