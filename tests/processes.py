"""Stopping a process the tests started (stdlib only: the faulty relay imports it too)."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_process(
    process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 20
) -> int:
    """Send ``sig`` (if it still runs), wait ``timeout``, then SIGKILL; its exit code.
    Its stdout pipe, if any, is closed."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout)
    finally:
        if process.stdout is not None:
            process.stdout.close()
