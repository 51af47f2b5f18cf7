#!/usr/bin/env bash
# Install everything and run the whole test suite: lint, format, types, tests.
# Used by CI (.ci/run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh dev
echo "== ruff check"; .venv/bin/ruff check src tests bench
echo "== ruff format"; .venv/bin/ruff format --check src tests bench
echo "== mypy --strict"; .venv/bin/mypy src
echo "== pytest"
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [[ $status -eq 5 ]]; then
  echo "pytest collected no tests: that is a failure" >&2
fi
exit $status
