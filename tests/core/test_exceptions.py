"""One hierarchy under MulticoreError, with the standard bases a caller might catch."""

import pickle

import pytest

from multicore import exceptions as e


@pytest.mark.parametrize(
    "cls, builtin",
    [
        (e.TaskCompleteError, None),
        (e.TimeoutExceededError, TimeoutError),
        (e.WorkerLostError, None),
        (e.SerializationError, TypeError),
        (e.SharedMemoryError, MemoryError),
        (e.RemoteError, None),
        (e.PoolUnavailableError, None),
        (e.ProtocolError, None),
        (e.ConfigurationError, ValueError),
        (e.MulticoreOSError, OSError),
        (e.MulticoreTypeError, TypeError),
        (e.NoAvailableInputBufferError, None),
        (e.InputBufferTooSmallError, None),
    ],
)
def test_every_error_is_a_multicore_error(cls, builtin):
    assert issubclass(cls, e.MulticoreError)
    if builtin is not None:
        assert issubclass(cls, builtin)


def test_worker_lost_keeps_its_facts_through_pickle():
    err = e.WorkerLostError("gone", pid=12, exitcode=None, signal=9)
    back = pickle.loads(pickle.dumps(err))
    assert (back.pid, back.exitcode, back.signal, str(back)) == (12, None, 9, "gone")
    assert e.WorkerLostError.describe(-9) == "SIGKILL (-9)"
    assert e.WorkerLostError.describe(3) == "exit code 3"


def test_all_names_are_exported():
    """``__all__`` is exactly the module's public classes, and every error among them is a MulticoreError."""
    public = {n for n, v in vars(e).items() if isinstance(v, type) and v.__module__ == e.__name__ and n[0] != "_"}
    assert set(e.__all__) == public
    for name in e.__all__:
        cls = getattr(e, name)
        if issubclass(cls, Exception) and not issubclass(cls, Warning) and cls is not e.RemoteTraceback:
            assert issubclass(cls, e.MulticoreError), name
