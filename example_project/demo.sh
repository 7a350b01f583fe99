#!/bin/sh
# The multicore demo (see demo.py): fresh SQLite database, gunicorn on 127.0.0.1, patched vs
# unpatched DRF list timings, Task-based views, clean stop. Needs: pip install -e '.[test]'
set -e
exec "${PYTHON:-python3}" "$(dirname "$0")/demo.py" "$@"
