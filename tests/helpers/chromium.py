"""Headless Chromium (Debian's ``chromium``) as the HTML tests and ``bench/chromium_cdp.py``
start it: as root in a container, without a display, on a closed network (see .ci/run).

``HEADLESS_FLAGS`` are the flags both need; each adds its own (the test reads Chromium's
log, the bench drives DevTools in a fixed window).
"""

from __future__ import annotations

__all__ = ["HEADLESS_FLAGS"]

HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
