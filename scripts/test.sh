#!/usr/bin/env bash
# The test command of the README and of CI: set up .venv, then run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/data/phantoms -k phantom`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONDONTWRITEBYTECODE=1
export PATH="$PWD/.venv/bin:$PATH"  # as if activated: monailabel start_server calls `python`
exec .venv/bin/python -m pytest "${@:-tests}"
