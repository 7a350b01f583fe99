"""Options: the one table of every multicore option, its default and its rule.

Each field of :class:`Options` is one option. Its metadata holds its :class:`Rule` (kind, bounds,
choices, whether None is allowed, a one-line doc). Everything else derives from this table:
``initialize()`` keywords (the field names), the ``MULTICORE`` setting's keys (the field names
hyphenated, see ``multicore.settings``), the system checks and the validation here. The bounds
of the pool's sizes are the engine's own (exported by ``multicore._core``), so a value accepted
here is accepted when the pool starts.

The Django app installs a provider that reads ``settings.MULTICORE``; without Django the defaults
apply. The built options are cached here, with the mapping they were built from.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from multicore import _core
from multicore.exceptions import ConfigurationError, MulticoreTypeError

__all__ = ["Options", "Rule", "Problem", "rules", "problem", "current", "validate", "set_provider", "parse_size"]

Kind = Literal["int", "number", "bytes", "bool", "choice", "address"]

# max_payload travels as a u64 (the binding refuses anything larger).
_U64_MAX = 2**64 - 1


@dataclasses.dataclass(frozen=True)
class Rule:
    """What values one option accepts."""

    kind: Kind
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    choices: tuple[str, ...] = ()
    #: True for an option of the pool (an ``initialize()`` keyword); False for the Django integration's.
    pool: bool = True

    def expected(self) -> str:
        """What a value must be, as a phrase: "an integer from 2 to 65536"."""
        if self.kind == "choice":
            text = "one of " + ", ".join(map(repr, self.choices))
        elif self.kind == "bool":
            text = "True or False"
        elif self.kind == "address":
            text = "a Dask scheduler address such as 'tcp://scheduler:8786'"
        else:
            noun = {"int": "an integer", "number": "a number", "bytes": "a number of bytes"}[self.kind]
            text = noun + _range(self.minimum, self.maximum)
        return text + (" or None" if self.nullable else "")


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return ""


def _option(default: Any, kind: Kind, *, doc: str, **rule: Any) -> Any:
    return dataclasses.field(default=default, metadata={"rule": Rule(kind, doc, **rule)})


def _spin_option(default: int, who: str) -> Any:
    return _option(
        default, "int", doc=f"How long {who} before sleeping, microseconds.", minimum=0, maximum=_core.MAX_SPIN_US
    )


@dataclasses.dataclass(frozen=True)
class Options:
    """Every option with its default. Field names are the ``initialize()`` keywords; the
    ``MULTICORE`` setting spells them hyphenated (``max_load_average`` -> ``"max-load-average"``)."""

    # A table, one option per entry, kept out of the formatter's hands.
    # fmt: off
    # The pool: read when a process starts its pool ("max_load_average" and "timeout" by every Task()).
    workers: int | None = _option(None, "int", minimum=_core.MIN_WORKERS, maximum=_core.MAX_WORKERS, nullable=True,
        doc="Worker processes; None = the CPUs this process may use (affinity and cgroup quota).")
    max_load_average: float | None = _option(None, "number", minimum=0, nullable=True,
        doc="Per-core 1-minute load average above which Task() returns None; None = never refuse.")
    timeout: float | None = _option(None, "number", minimum=0, nullable=True,
        doc="Default timeout of Task.get(), seconds; None = wait as long as it takes.")
    max_tasks_per_worker: int | None = _option(None, "int", minimum=1, nullable=True,
        doc="Replace a worker after it ran this many calls (between calls); None = never.")
    max_memory_per_worker: int | None = _option(None, "bytes", minimum=1, nullable=True,
        doc="Replace a worker whose resident memory exceeds this after a call; None = never.")
    slots: int = _option(256, "int", minimum=_core.MIN_SLOTS, maximum=_core.MAX_SLOTS,
        doc="Calls in flight at once (shared-memory slots); run() waits for capacity beyond this.")
    inline_size: int = _option(3968, "int", minimum=_core.MIN_INLINE_SIZE, maximum=_core.MAX_INLINE_SIZE,
        doc="Bytes of a request or result kept inside its slot; bigger ones use recycled segments.")
    worker_spin_us: int = _spin_option(200, "an idle worker spins for new work")
    parent_spin_us: int = _spin_option(50, "get() spins for a result")
    max_payload: int | None = _option(None, "bytes", minimum=1, maximum=_U64_MAX, nullable=True,
        doc="Largest payload either way, bytes; None = limited by memory only.")
    shutdown_grace: float = _option(2.0, "number", minimum=0,
        doc="Seconds shutdown() lets running calls finish before killing their workers.")
    segment_keep_bytes: int = _option(8 << 20, "bytes", minimum=0, maximum=_U64_MAX,
        doc="Bytes of payload segments each process keeps for reuse (smallest first); any other is given back after about a second unused.")
    # The Django integration: read through multicore.settings.get_config().
    drf_list_patch: bool = _option(False, "bool", pool=False,
        doc="Patch Django REST framework's list views to serialize large pages in parallel.")
    drf_min_items: int = _option(80, "int", minimum=0, pool=False,
        doc="With the DRF patch: lists shorter than this are serialized in-process.")
    drf_min_idle_cpus: int = _option(1, "int", minimum=0, pool=False,
        doc="With the DRF patch: parallelize only while at least this many CPUs are idle (0 = always).")
    in_atomic_block: str = _option("sequential", "choice", choices=("sequential", "raise"), pool=False,
        doc="What database-reading helpers do inside the caller's atomic() block.")
    worker_conn_max_age: float | None = _option(None, "number", minimum=0, nullable=True, pool=False,
        doc="Seconds a worker keeps its database connection across calls; None = the worker's life.")
    # Where Task() runs calls (docs/dask.md): read by every Task(); the address when a process connects.
    backend: str = _option("local", "choice", choices=("local", "dask"),
        doc='Where Task() runs calls: "local" (this machine\'s pool) or "dask" (a Dask cluster).')
    dask_address: str | None = _option(None, "address", nullable=True,
        doc='The Dask scheduler, "tcp://host:8786" or "tls://host:8786"; None = $DASK_SCHEDULER_ADDRESS.')
    # fmt: on


@functools.cache
def rules() -> Mapping[str, Rule]:
    """Field name -> its rule, in table order."""
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(Options)}


FIELDS = frozenset(rules())
POOL_FIELDS = frozenset(name for name, rule in rules().items() if rule.pool)
DEFAULTS: Mapping[str, Any] = {f.name: f.default for f in dataclasses.fields(Options)}


_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(value: str) -> int | None:
    """``"512MB"`` -> 536870912 (K, M, G, T are powers of 1024, with or without B/iB); None if unreadable."""
    match = _SIZE.match(value)
    if match is None:
        return None
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a value breaks its option's rule. ``code``: "type" (wrong type), "size" (an unreadable
    size string), "range" (outside the bounds) or "choice" (not one of the choices)."""

    field: str
    value: Any
    code: Literal["type", "size", "range", "choice", "address"]
    rule: Rule

    def message(self, name: str) -> str:
        """The problem, with the option spelled ``name`` (a keyword, or ``MULTICORE['key']``)."""
        if self.code == "size":
            return f"{name} is not a size: {self.value!r}"
        if self.code == "address":
            return f"{name} is not a Dask scheduler address: {self.value!r:.80}"
        if self.code == "type":
            return f"{name} must be {self.rule.expected()}, got {type(self.value).__name__}: {self.value!r:.80}"
        return f"{name} must be {self.rule.expected()}, got {self.value!r:.80}"

    def fix(self) -> str:
        """How to fix it, without naming the option."""
        default = DEFAULTS[self.field]
        if self.code == "size":
            return 'write a number of bytes (536870912) or a size such as "512MB", "1.5GB", "800KiB"' + (
                ", or None" if self.rule.nullable else ""
            )
        if self.code == "address":
            return 'write e.g. "tcp://scheduler:8786" or "tls://scheduler:8786", or None for $DASK_SCHEDULER_ADDRESS'
        if self.code == "choice":
            return f"use one of {', '.join(map(repr, self.rule.choices))}; the default is {default!r}"
        return f"use {self.rule.expected()}; the default is {default!r}"


def coerce(field: str, value: Any) -> tuple[Any, Problem | None]:
    """``value`` as the option ``field`` holds it (a size string in bytes), and its problem if it breaks the rule."""
    rule = rules()[field]
    if value is None:
        return None, (None if rule.nullable else Problem(field, value, "type", rule))
    if rule.kind == "choice":
        return value, (None if value in rule.choices else Problem(field, value, "choice", rule))
    if rule.kind == "address":
        if not isinstance(value, str):
            return value, Problem(field, value, "type", rule)
        return value, (None if valid_address(value) else Problem(field, value, "address", rule))
    if rule.kind == "bytes" and isinstance(value, str):
        parsed = parse_size(value)
        if parsed is None:
            return value, Problem(field, value, "size", rule)
        value = parsed
    if rule.kind == "bool":
        ok = isinstance(value, bool)
    elif rule.kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        return value, Problem(field, value, "type", rule)
    if (rule.minimum is not None and value < rule.minimum) or (rule.maximum is not None and value > rule.maximum):
        return value, Problem(field, value, "range", rule)
    return value, None


#: Schemes of a Dask scheduler address (distributed.comm); "host:port" alone means tcp.
ADDRESS_SCHEMES = ("tcp", "tls", "inproc", "ucx", "ws", "wss")


def valid_address(value: str) -> bool:
    """A Dask scheduler address: ``scheme://host:port`` with a known scheme, or ``host:port``."""
    if not value.strip() or value != value.strip():
        return False
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "tcp", value
    return scheme in ADDRESS_SCHEMES and bool(rest) and (scheme == "inproc" or ":" in rest)


def problem(field: str, value: Any) -> Problem | None:
    """The problem with ``value`` for the option ``field``, or None when it is fine."""
    return coerce(field, value)[1]


def validate(options: Options) -> Options:
    """``options`` with sizes in bytes; raises ConfigurationError naming the first bad option and the fix."""
    changes = {}
    for field in rules():
        value = getattr(options, field)
        coerced, found = coerce(field, value)
        if found is not None:
            raise ConfigurationError(f"multicore option {found.message(field)}; {found.fix()}")
        if coerced is not value:
            changes[field] = coerced
    return dataclasses.replace(options, **changes) if changes else options


# The provider returns a source (the user's MULTICORE value), and a converter turns a source into
# Options keywords. The options built from a source are cached on its identity: every Task() asks
# for them, and building and validating them costs more than a whole call's transport.
_Source = Callable[[], object]
_Convert = Callable[[object], Mapping[str, Any]]
_provider: tuple[_Source, _Convert] | None = None
_cache: tuple[object, Options] | None = None


def set_provider(source: _Source | None, convert: _Convert | None = None) -> None:
    """Installs where configured options come from (the Django app: ``settings.MULTICORE``).

    ``source()`` returns the configuration object, the same object until the configuration
    changes; ``convert(source())`` turns it into Options keywords (raising for bad values).
    ``set_provider(None)`` goes back to the defaults. Installing the same provider again changes nothing.
    """
    global _provider, _cache
    if source is not None and convert is None:
        raise MulticoreTypeError("set_provider(source, convert): convert is required with a source")
    provider = None if source is None or convert is None else (source, convert)
    if provider != _provider:
        _provider, _cache = provider, None


def current(**overrides: Any) -> Options:
    """The configured options, with ``overrides`` (initialize() keywords; None = not given) applied last."""
    global _cache
    if not overrides:  # every Task() comes here: the cached options, without building sets
        provider = _provider
        configured = provider[0]() if provider is not None else None
        cache = _cache
        if cache is not None and cache[0] is configured:
            return cache[1]
    unknown = set(overrides) - POOL_FIELDS
    if unknown:
        raise MulticoreTypeError(
            f"unknown multicore option(s) {', '.join(sorted(unknown))}; "
            f"valid options are {', '.join(sorted(POOL_FIELDS))}"
        )
    explicit = {k: v for k, v in overrides.items() if v is not None}
    provider = _provider
    configured = provider[0]() if provider is not None else None
    cache = _cache
    if not explicit and cache is not None and cache[0] is configured:
        return cache[1]
    values: dict[str, Any] = dict(provider[1](configured)) if provider is not None else {}
    values.update(explicit)
    options = validate(Options(**values))
    if not explicit:
        _cache = (configured, options)
    return options
