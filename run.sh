#!/usr/bin/env bash
# Install everything and run X Chat: creates your identity on first run, then shows
# your contact card. Pass --home DIR to use another identity folder.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
if [[ "${1:-}" == "--home" ]]; then
  home=(--home "$2")
else
  home=()
fi
if ! .venv/bin/xchat "${home[@]}" card >/dev/null 2>&1; then
  .venv/bin/xchat "${home[@]}" init
fi
.venv/bin/xchat "${home[@]}" card --qr
