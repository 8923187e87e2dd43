"""Screenshots of a run in a real TensorBoard and the size its image cards show a picture at.

Starts ``tensorboard --logdir RUN`` on a free port, opens each view (IMAGES, TIME SERIES, CUSTOM SCALARS) in headless
Chromium at 1280 x 900 CSS pixels (the DevTools protocol helper of ``tests/helpers/_browser.py``), waits for the
frontend to render, saves a PNG per view and prints, for every picture on the page, its natural and displayed width
(TensorBoard's image cards scale a picture down to the card unless "show actual image size" is ticked). The report,
when given, is shot the same way.

    python scripts/tensorboard_shots.py RUN_DIR --out /tmp/shots [--report RUN_DIR/report.html]

``lit_xai.visualization.verdict.CARD_WIDTH`` is the displayed width this prints for the verdict picture.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from _browser import _Pipe, find_chromium  # noqa: E402

#: every <img> of the page, shadow roots included (TensorBoard's Polymer dashboards hide theirs there)
IMAGES_JS = """
(() => {
  const found = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'IMG') {
        const r = el.getBoundingClientRect();
        found.push({natural: el.naturalWidth, naturalH: el.naturalHeight, shown: r.width, shownH: r.height,
                    x: r.left, y: r.top, alt: (el.alt || '').slice(0, 80)});
      }
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return {images: found, scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth};
})()
"""

VIEWS = {"images": "#images", "timeseries": "#timeseries", "custom_scalars": "#custom_scalars"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot(url: str, png: Path, wait: float, width: int = 1280, height: int = 900, script: str = "") -> dict:
    with tempfile.TemporaryDirectory() as profile:
        browser = _Pipe(find_chromium(), profile)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            browser.send("Page.enable", session=session)
            browser.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            browser.send("Page.navigate", {"url": url}, session=session)
            browser.wait_for("Page.loadEventFired")
            browser.drain(wait)
            if script:
                browser.send("Runtime.evaluate", {"expression": script, "awaitPromise": True}, session=session)
                browser.drain(wait / 2)
            facts = browser.send("Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True},
                                 session=session)["result"]["value"]
            shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False},
                                session=session)
            png.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.close()
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp/tb_shots"))
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--wait", type=float, default=12.0)
    parser.add_argument(
        "--view", action="append", default=[], metavar="NAME=FRAGMENT",
        help="shoot this view instead of the defaults (repeatable), e.g. lrp='#images&tagFilter=XAI%%2Flrp'",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    tb = subprocess.Popen(
        ["tensorboard", "--logdir", str(args.run), "--port", str(port), "--host", "127.0.0.1",
         "--samples_per_plugin", "images=1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    results = {}
    try:
        time.sleep(8)
        views = dict(v.split("=", 1) for v in args.view) if args.view else VIEWS
        for name, fragment in views.items():
            results[name] = shoot(f"http://127.0.0.1:{port}/{fragment}", args.out / f"tb_{name}.png", args.wait)
        if args.report is not None:
            url = args.report.resolve().as_uri()
            results["report"] = shoot(url, args.out / "report.png", 3.0, height=2400)
            # the shortcut alert timeline and the training metrics, scrolled to
            for name, heading in (("report_alerts", "Shortcut alert timeline"), ("report_metrics", "Training metrics")):
                scroll = (f"[...document.querySelectorAll('h2')].find(h => h.textContent.includes('{heading}'))"
                          "?.scrollIntoView()")
                results[name] = shoot(url, args.out / f"{name}.png", 3.0, height=1600, script=scroll)
    finally:
        tb.terminate()
        tb.wait(timeout=20)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
