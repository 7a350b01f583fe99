"""MulticoreMiddleware outside gunicorn: the pool starts before the first request, per process."""

from __future__ import annotations

import pytest

from multicore.wsgi import MulticoreMiddleware
from tests.support import run_python


def test_pool_starts_at_construction_and_per_forked_process():
    proc = run_python(
        """
        import os
        import multicore
        from multicore.wsgi import MulticoreMiddleware

        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"ok"]

        wrapped = MulticoreMiddleware(app)
        info = multicore.pool_info()
        assert info["running"] and all(w["pid"] and w["state"] == "idle" for w in info["workers"]), info
        parent_supervisor = info["supervisor_pid"]
        assert b"".join(wrapped({}, lambda *a: None)) == b"ok"
        assert multicore.pool_info()["supervisor_pid"] == parent_supervisor  # no restart per request

        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # like a server forking after loading the app, without hooks
            assert not multicore.pool_info()["running"]
            wrapped({}, lambda *a: None)
            child = multicore.pool_info()
            os.write(w, f"{child['running']} {child['pid'] == os.getpid()} {child['supervisor_pid']}".encode())
            multicore.shutdown()
            os._exit(0)
        os.waitpid(pid, 0)
        running, own, supervisor = os.read(r, 200).decode().split()
        print(running, own, int(supervisor) != parent_supervisor)
        """,
        timeout=60,
    )
    assert proc.stdout.split() == ["True", "True", "True"]


def test_warm_up_off_leaves_the_pool_to_the_first_task():
    proc = run_python(
        """
        import multicore
        from multicore.wsgi import MulticoreMiddleware
        wrapped = MulticoreMiddleware(lambda environ, start_response: [b""], warm_up=False)
        wrapped({}, None)
        print(multicore.pool_info()["running"])
        """,
        timeout=30,
    )
    assert proc.stdout.strip() == "False"


def test_wrapping_something_that_is_not_an_application():
    with pytest.raises(TypeError, match="pass get_wsgi_application"):
        MulticoreMiddleware("exampleproject.wsgi")
