#!/usr/bin/env bash
# Install everything and run the whole test suite: lint, format, types, tests.
# Used by CI (.ci/run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
# The store tests run a throwaway PostgreSQL server (tests/store/pg_server.py) from
# Debian's postgresql package; CI fails them if it is missing.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "== installing PostgreSQL (Debian package postgresql) for the store tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
      || echo "could not install postgresql: the PostgreSQL store tests will fail or skip" >&2
  else
    echo "PostgreSQL is not installed: run 'sudo apt-get install postgresql' so that the" \
      "PostgreSQL store tests run (they are skipped, or fail under CI)" >&2
  fi
fi
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
