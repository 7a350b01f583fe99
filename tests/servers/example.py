"""The example project's gunicorn runner (example_project/runner.py), importable by the tests."""

from __future__ import annotations

import os
import sys

from tests.support import ROOT

sys.path.insert(0, os.path.join(ROOT, "example_project"))

import runner  # example_project/runner.py, on the path set up above

__all__ = ["runner"]
