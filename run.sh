#!/usr/bin/env bash
# Install everything and run X Chat: creates your identity on first run, shows your
# contact card, then runs your node and opens X Chat Web (Ctrl-C stops it). With no
# relay configured, the node starts a local relay on 127.0.0.1:7447.
# Pass --home DIR to use another identity folder; other arguments go to `xchat up`
# (for example --relay wss://relay.example --no-browser).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
home=()
if [[ "${1:-}" == "--home" ]]; then
  home=(--home "$2")
  shift 2
fi
if ! .venv/bin/xchat "${home[@]}" card >/dev/null 2>&1; then
  .venv/bin/xchat "${home[@]}" init
fi
.venv/bin/xchat "${home[@]}" card --qr
exec .venv/bin/xchat "${home[@]}" up "$@"
