"""The core is Django-free: plain Python imports multicore, runs a round trip, and Django is
never imported (`make test-core` also runs this whole directory without Django loaded)."""

from __future__ import annotations

from tests.support import run_python


def test_a_round_trip_never_imports_django():
    proc = run_python(
        """
        import sys
        import multicore
        from multicore import exceptions, hooks, options, utils

        task = multicore.Task()
        task.run(divmod, 7, 2)
        task.run(sorted, [3, 1, 2])
        assert task.get(timeout=30) == [(3, 1), [1, 2, 3]]
        assert list(utils.ranges(range(10), number_of_workers=2)) == [(0, 5), (5, 10)]
        assert options.current().slots == 256 and multicore.NUMBER_OF_WORKERS >= 1
        multicore.shutdown()
        print(sorted(name for name in sys.modules if name == "django" or name.startswith("django.")))
        """,
        env={"DJANGO_SETTINGS_MODULE": ""},
    )
    assert proc.stdout.split() == ["[]"]
