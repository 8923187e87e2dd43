"""Open a page in headless Chromium and report what a reader would meet: the rendered DOM's facts, every request
the page made, console errors and uncaught exceptions.

Talks the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4, NUL-separated JSON), so it
needs no websocket client and no free port.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: what the page is asked after it loaded and its pictures decoded
FACTS_JS = """
(async () => {
  const images = [...document.images];
  await Promise.all(images.map(i => i.decode().catch(() => null)));
  const root = document.documentElement;
  return {
    title: document.title,
    verdict: (document.getElementById('verdict-text') || {}).textContent || null,
    images: images.map(i => ({complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
                               shown: i.getBoundingClientRect().width, scheme: i.src.split(':')[0]})),
    scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, bodyScrollWidth: document.body.scrollWidth,
    innerWidth: window.innerWidth, sections: [...document.querySelectorAll('section h2')].map(h => h.textContent),
    scripts: document.scripts.length, svgs: document.querySelectorAll('svg').length,
  };
})()
"""


def find_chromium() -> Optional[str]:
    """The first Chromium-like browser on PATH, or None."""
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class _Pipe:
    def __init__(self, binary: str, profile: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def plumb() -> None:  # in the child: the protocol's fds 3 (read) and 4 (write), inheritable
            high = [os.dup(to_chrome_r), os.dup(from_chrome_w)]  # above 4, so neither is overwritten by the other
            for fd, target in zip(high, (3, 4)):
                os.dup2(fd, target, inheritable=True)

        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--metrics-recording-only", "--mute-audio",
            f"--user-data-dir={profile}", "about:blank",
        ]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=plumb, close_fds=False,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.events: list[dict[str, Any]] = []
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                message, buffer = buffer.split(b"\0", 1)
                self._messages.put(json.loads(message))

    def send(self, method: str, params: Optional[dict] = None, session: Optional[str] = None,
             timeout: float = 60.0) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._messages.get(timeout=max(0.01, deadline - time.monotonic()))
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._messages.get(timeout=max(0.01, deadline - time.monotonic()))
            self.events.append(event)
            if event.get("method") == method:
                return event

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.events.append(self._messages.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                return

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # already gone
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def inspect_page(path: Path, width: int = 1280, height: int = 900, binary: Optional[str] = None) -> dict[str, Any]:
    """Load ``path`` at ``width`` x ``height`` CSS pixels and return the page's facts (:data:`FACTS_JS`) plus
    ``requests`` (every URL the page asked for), ``console_errors`` and ``exceptions``."""
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH")
    with tempfile.TemporaryDirectory() as profile:
        browser = _Pipe(binary, profile)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                browser.send(f"{domain}.enable", session=session)
            browser.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            browser.events.clear()
            browser.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
            browser.wait_for("Page.loadEventFired")
            facts = browser.send(
                "Runtime.evaluate",
                {"expression": FACTS_JS, "returnByValue": True, "awaitPromise": True},
                session=session,
            )
            browser.drain(0.5)  # late console messages
        finally:
            browser.close()
    if "exceptionDetails" in facts:
        raise RuntimeError(f"the facts script failed: {facts['exceptionDetails']}")
    result = dict(facts["result"]["value"])
    events = browser.events
    result["requests"] = [
        e["params"]["request"]["url"][:120] for e in events if e.get("method") == "Network.requestWillBeSent"
    ]
    result["console_errors"] = [
        " ".join(str(a.get("value", a.get("description", ""))) for a in e["params"].get("args", []))
        for e in events
        if e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "assert")
    ] + [
        e["params"]["entry"].get("text", "")
        for e in events
        if e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error"
    ]
    result["exceptions"] = [
        e["params"]["exceptionDetails"].get("text", "") for e in events if e.get("method") == "Runtime.exceptionThrown"
    ]
    return result
