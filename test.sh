#!/usr/bin/env bash
# Install everything and run the whole test suite: lint, format, types, tests.
# Used by CI (.ci/run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
# The store tests run a throwaway PostgreSQL server (tests/pg_server.py) from Debian's
# postgresql package, and the web tests drive Debian's Chromium (/usr/bin/chromium)
# through Playwright (Playwright never downloads a browser here); CI fails them if
# either is missing.
packages=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql)
[[ -x /usr/bin/chromium ]] || packages+=(chromium)
# emoji in messages must render, not as boxes (tests/web checks the font): needed on its own,
# also where Chromium was installed without it
dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || packages+=(fonts-noto-color-emoji)
if [[ ${#packages[@]} -gt 0 ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "== installing Debian packages for the tests: ${packages[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}") \
      || echo "could not install ${packages[*]}: the tests that need them fail or skip" >&2
  else
    echo "Missing Debian packages: run 'sudo apt-get install ${packages[*]}' so that the" \
      "PostgreSQL store tests and the browser tests run (they are skipped, or fail under CI)" >&2
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
