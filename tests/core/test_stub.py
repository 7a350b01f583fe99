"""The hand-written _core.pyi names exactly what the compiled module exports (a light stubtest)."""

import ast
import pathlib

import multicore
from multicore import _core

STUB = ast.parse((pathlib.Path(multicore.__file__).parent / "_core.pyi").read_text())
ALIASES = {"_Payload", "_Outgoing", "_Outcome"}


def _names(body):
    return {n.name for n in body if isinstance(n, (ast.ClassDef, ast.FunctionDef))} | {
        n.target.id for n in body if isinstance(n, ast.AnnAssign)
    }


def test_module_level_names_match():
    exported = {n for n in dir(_core) if not n.startswith("_")} | {"__version__"}
    assert _names(STUB.body) - ALIASES == exported


def test_class_members_match():
    for node in STUB.body:
        if isinstance(node, ast.ClassDef):
            stubbed = {f.name for f in node.body if isinstance(f, ast.FunctionDef)} - {"__new__"}
            real = {n for n in dir(getattr(_core, node.name)) if not n.startswith("_")}
            assert stubbed == real, node.name
