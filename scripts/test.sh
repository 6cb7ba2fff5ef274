#!/usr/bin/env bash
# Set everything up, then run the whole test suite. Extra arguments go to pytest, e.g.
# -m "not slow" for the fast path (no real processes, no training; under a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
