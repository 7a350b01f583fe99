#!/bin/sh
# The multicore demo (see demo.py): fresh SQLite database, gunicorn on 127.0.0.1, patched vs
# unpatched DRF list timings, Task-based views, uvicorn with an async view, clean stops, a batch
# job. Needs: pip install -e '.[test]'
set -e
exec "${PYTHON:-python3}" "$(dirname "$0")/demo.py" "$@"
