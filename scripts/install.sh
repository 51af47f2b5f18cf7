#!/usr/bin/env bash
# Install X Chat into ./.venv: `scripts/install.sh` (runtime) or `scripts/install.sh dev`
# (runtime + test tools). Safe to run again: it reinstalls only when pyproject.toml
# changed. Needs Python 3.11+ with venv; everything else comes from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

extra="${1:-}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "X Chat needs Python 3.11 or newer as '$python' (set PYTHON=...)." >&2
  exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
spec="."
[[ "$extra" == "dev" ]] && spec=".[dev]"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extra:-run}"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e "$spec"
  touch "$stamp"
fi
