#!/usr/bin/env bash
# Install everything and run X Chat: your node starts and X Chat Web opens in your
# browser, where you create your identity on first run (or restore it from your
# recovery phrase) and unlock it after that. With no relay configured, the node starts
# a local relay on 127.0.0.1:7447. Ctrl-C stops it.
# Pass --home DIR to use another identity folder; other arguments go to `xchat up`
# (for example --relay wss://relay.example --no-browser, or --unlock to type the
# passphrase here instead of in the browser).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
home=()
if [[ "${1:-}" == "--home" ]]; then
  home=(--home "$2")
  shift 2
fi
if .venv/bin/xchat "${home[@]}" card >/dev/null 2>&1; then
  .venv/bin/xchat "${home[@]}" card
fi
exec .venv/bin/xchat "${home[@]}" up "$@"
