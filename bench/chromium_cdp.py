"""Time a page in headless Chromium through the DevTools protocol, standard library only.

``page_timings(path)`` opens ``path`` in a fresh headless Chromium (Debian's ``chromium``)
with a probe script appended to the page, and returns what the probe measured from inside
the page (``performance.now()``, milliseconds since navigation began):

* ``first_rows_ms``: the page's own scripts have run, the table's first rows exist and the
  layout is done (the probe forces it);
* ``painted_ms``: the first frame after that was produced (``requestAnimationFrame``, then
  one task);
* ``sort_ms``: a click on the RAM peak column title until its frame was produced (sort,
  rebuild, layout, paint);
* ``rows``: table rows in the DOM after the sort (a paged table shows one page);
* ``timeline_ms`` and ``charts``: where a row's test name is a timeline link (the new
  page), a click on the first one until its frame, and the charts then in the page.

The probe is the same for any page that has ``#tests th[data-key="ram_peak"]``, so the old
page (every row in the served HTML) and the new one (rows built from the embedded data) are
measured alike. No virtual time: a virtual clock would not advance while the CPU is busy.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers.chromium import HEADLESS_FLAGS

__all__ = ["PROBE", "page_timings"]

PROBE = """<script>
(function(){
function frame(cb){requestAnimationFrame(function(){setTimeout(cb,0);});}
var out={};
void document.body.offsetHeight;
out.first_rows_ms=performance.now();
out.first_rows=document.querySelectorAll("#tests tbody tr").length;
frame(function(){
  out.painted_ms=performance.now();
  var th=document.querySelector('#tests th[data-key="ram_peak"]');
  var t0=performance.now();
  th.click();
  void document.body.offsetHeight;
  frame(function(){
    out.sort_ms=performance.now()-t0;
    out.rows=document.querySelectorAll("#tests tbody tr").length;
    function done(){out.errors=(window.__hmnErrors||[]).slice();window.__hmnBench=out;}
    var link=document.querySelector("#tests a.tl-link");
    if(!link){done();return;}
    var t1=performance.now();
    link.click();
    void document.body.offsetHeight;
    frame(function(){
      out.timeline_ms=performance.now()-t1;
      out.charts=document.querySelectorAll("svg.timeline-chart").length;
      done();
    });
  });
});
})();
</script>"""

_FLAGS = (*HEADLESS_FLAGS, "--disable-extensions", "--window-size=1280,900")


class _WebSocket:
    """The client side of RFC 6455, just enough for DevTools: masked text frames out,
    unmasked (possibly fragmented) frames in."""

    def __init__(self, url: str, timeout_s: float) -> None:
        assert url.startswith("ws://")
        host_port, _, path = url[5:].partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the websocket: {head[:200]!r}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def receive(self) -> str:
        parts: list[bytes] = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode in (0x9, 0xA):  # ping/pong: not sent by DevTools, ignored
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()


class _Session:
    def __init__(self, ws: _WebSocket) -> None:
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result


def _devtools_port(profile: Path, proc: subprocess.Popen[bytes], deadline: float) -> int:
    marker = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited {proc.returncode} before DevTools was up")
        if marker.is_file():
            lines = marker.read_text().split()
            if lines:
                return int(lines[0])
        time.sleep(0.05)
    raise TimeoutError("chromium's DevTools port did not appear")


def page_timings(path: Path, timeout_s: float = 180.0) -> dict[str, Any]:
    """Open ``path`` plus the probe in a fresh headless Chromium; the probe's figures, and
    ``wall_s`` (navigation sent until the probe's result was read, 50 ms polling)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("chromium not found (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="hmn-cdp-") as tmp:
        probed = Path(tmp) / path.name
        text = path.read_text(encoding="utf-8")
        cut = text.rindex("</body>")
        probed.write_text(text[:cut] + PROBE + text[cut:], encoding="utf-8")
        profile = Path(tmp) / "profile"
        proc = subprocess.Popen(
            [
                chromium,
                *_FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout_s
            port = _devtools_port(profile, proc, deadline)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            page = next(t for t in targets if t.get("type") == "page")
            session = _Session(_WebSocket(page["webSocketDebuggerUrl"], timeout_s))
            start = time.monotonic()
            session.call("Page.navigate", url=probed.as_uri())
            while time.monotonic() < deadline:
                answer = session.call(
                    "Runtime.evaluate",
                    expression="JSON.stringify(window.__hmnBench||null)",
                    returnByValue=True,
                )
                value = answer.get("result", {}).get("value")
                if value and value != "null":
                    result: dict[str, Any] = json.loads(value)
                    result["wall_s"] = time.monotonic() - start
                    return result
                time.sleep(0.05)
            raise TimeoutError(f"the page's probe did not finish within {timeout_s} s")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
