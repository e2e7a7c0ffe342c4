#!/usr/bin/env bash
# The test suite: unit, integration and e2e tiers. Tests start their own broker and Redis on
# free ports (tests/conftest.py) and stop them. pytest's exit code 5 ("no tests collected",
# e.g. a selection that matches nothing) is reported, not treated as a failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "[test] pytest collected no tests (exit code 5)"
  exit 0
fi
exit "$rc"
