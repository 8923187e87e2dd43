"""One self-contained HTML page telling a run's story: the verdict first, then the audit, the alert timeline, the
probes across epochs for each method, CRP concepts, drift and quality charts, the training metrics and whatever
else was logged.

Self-contained means: pictures embedded as ``data:`` URIs, CSS inline, no script, and a Content-Security-Policy
that forbids every request, so the page opens from disk with no network and no server, and prints.

Example:
    >>> from pathlib import Path
    >>> from lit_xai.report.run_data import RunData, TextEntry
    >>> run = RunData(Path("run"), "folder", texts={"XAI/notes": [TextEntry(1, "**ring**")]},
    ...               scalars={"XAI_drift/lrp/rank": [(1, 0.9), (2, 0.7)]})
    >>> page = render_report(run, title="demo")
    >>> page.startswith("<!doctype html>") and "<title>demo</title>" in page and "<strong>ring</strong>" in page
    True
"""

from __future__ import annotations

import base64
import bisect
import datetime
import functools
import io
import math
import re
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any, Optional

from .charts import line_chart
from .outcome import outcome_text
from .run_data import ImageEntry, RunData, TextEntry

__all__ = [
    "AXIS",
    "CSP",
    "clear_image_cache",
    "compact_image",
    "epochs_done",
    "markdown_html",
    "render_report",
    "section_of",
    "spread",
]

#: the page's Content-Security-Policy: embedded pictures and inline CSS only; no script, no request of any kind
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'"

#: sections in page order: (id, heading, one-line explanation)
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("verdict", "Verdict", ""),
    ("audit", "Dataset audit", "What the training data makes label-predictive, before any training."),
    (
        "alerts",
        "Shortcut alert timeline",
        "The causal tests per epoch: effect with its interval, the alert threshold "
        "(dashed) and the epoch an alert fired (red).",
    ),
    (
        "probes",
        "Probes across epochs",
        "Explanations of the same probe images at each explained epoch, per method; "
        "the newest large, a strip of earlier ones beside it.",
    ),
    ("crp", "CRP concepts", "Concept relevance: which learned concepts the model uses, and where."),
    ("drift", "Explanation drift", "How much the explanations change between explained epochs."),
    ("quality", "Explanation quality", "Faithfulness, randomisation and robustness checks of the explanations."),
    (
        "training",
        "Training metrics",
        "Loss and metrics as Lightning logged them, drawn over epochs done like every chart here (Lightning's batch "
        "steps converted with its logged epoch number).",
    ),
    ("other", "Everything else", "Logged items no section above claims."),
)

_METHODS = (("lrp", "LRP"), ("gradcam", "Grad-CAM"), ("grad_cam", "Grad-CAM"), ("grad-cam", "Grad-CAM"), ("crp", "CRP"))

_CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1b1b1b;
background:#fff}
main{max-width:1120px;margin:0 auto;padding:12px 20px 40px}
h1{font-size:1.6em;margin:.4em 0 .2em}h2{font-size:1.3em;margin:1.6em 0 .4em;padding-bottom:.2em;
border-bottom:2px solid #ddd}h3{font-size:1.05em;margin:1.1em 0 .3em}h1,h2,h3,h4,p,li,td,th,figcaption,summary{
overflow-wrap:anywhere}
.meta,.muted,figcaption,.note{color:#555;font-size:.88em}
nav{font-size:.9em;margin:.4em 0 1em}nav a{margin-right:.9em;color:#0a58ca;text-decoration:none}
img{max-width:100%;height:auto;display:block;image-rendering:auto}
figure{margin:.4em 0 1em}
.verdict{border-left:6px solid #b42318;background:#fef3f2;padding:10px 16px;margin:.6em 0}
.verdict.clear{border-color:#1a7f37;background:#f0faf2}.verdict.unknown{border-color:#888;background:#f6f6f6}
.verdict p{margin:.3em 0}.verdict .headline{font-size:1.15em;font-weight:600}
.strip{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(170px,100%),1fr));gap:10px;align-items:start}
.strip figure{margin:0}
.pics{display:flex;flex-wrap:wrap;gap:6px 22px;align-items:flex-start}.pics>figure{flex:0 1 auto;min-width:0}
.pics>figure figcaption{max-width:56ch}
.pics>details,.pics>.note{flex:1 1 min(320px,100%);min-width:0;margin-top:.4em}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(320px,100%),1fr));gap:14px 18px}
.charts figure{margin:0}.charts.wide{grid-template-columns:repeat(auto-fill,minmax(min(440px,100%),1fr))}
svg.chart{width:100%;height:auto;display:block;font-size:10px}
svg .grid{stroke:#e6e6e6}svg .axis{stroke:#888}svg .tick{fill:#555;font-size:10px}svg .muted{fill:#888}
.legend{font-size:.82em;color:#333}.legend span{margin-right:1em;white-space:nowrap}
.legend i{display:inline-block;width:14px;height:3px;margin-right:4px;vertical-align:middle}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.88em;display:block;max-width:100%;overflow-x:auto}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f4f4f4}
pre,code{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.92em}
details{margin:.2em 0 1.2em}summary{cursor:pointer;color:#0a58ca;font-size:.9em}
.text{border-left:3px solid #ddd;padding:0 12px;margin:.4em 0 1em}
@media print{
 body{font-size:11pt}main{max-width:none;padding:0}nav{display:none}
 h2{break-after:avoid}figure,svg,.verdict,tr{break-inside:avoid}
 a{color:inherit;text-decoration:none}
}
"""


def section_of(tag: str, kind: str) -> str:
    """The section a logged tag belongs to (see :data:`SECTIONS`), from the words in its name.

    Args:
        tag: the logged tag.
        kind: ``"image"``, ``"text"`` or ``"scalar"``.

    >>> section_of("XAI/0_verdict", "image"), section_of("XAI/shortcut/audit", "text"), section_of("val/acc", "scalar")
    ('verdict', 'audit', 'training')
    >>> section_of("XAI/lrp/true", "image"), section_of("XAI_drift/lrp/spearman", "scalar")
    ('probes', 'drift')
    """
    low = tag.lower()
    words = set(re.split(r"[/_\-. ]+", low))
    if "verdict" in low:
        return "verdict"
    if kind == "text" and "audit" in words:
        return "audit"
    if "shortcut" in low or "alert" in low or "alerts" in words:
        return "alerts"
    if "drift" in low:
        return "drift"
    if "crp" in words or "concept" in low:
        return "crp"
    if "quality" in low:
        return "quality"
    if kind == "image" and (low.startswith("xai") or any(m in low for m, _ in _METHODS)):
        return "probes"
    if kind == "scalar" and (not low.startswith("xai") or re.search(r"/\d_epoch/", low)):
        return "training"
    return "other"


def markdown_html(text: str) -> str:
    """Markdown (as the monitors log it: lists, tables, emphasis) to HTML; raw HTML in it is shown, not run.

    >>> markdown_html("| a |\\n|---|\\n| <b> |")
    '<table>...&lt;b&gt;...</table>'
    """
    import markdown

    lines, previous = [], ""
    for line in text.splitlines():
        # the monitors write a list right under its lead line; Markdown needs a blank line there
        if re.match(r"\s*[-*] ", line) and previous.strip() and not re.match(r"\s*[-*] ", previous):
            lines.append("")
        lines.append(line)
        previous = line
    source = escape("\n".join(lines), quote=False)
    return markdown.markdown(source, extensions=["tables", "sane_lists"], output_format="html")


#: JPEG quality of re-encoded pictures (4:4:4, so the text in the grids stays sharp)
JPEG_QUALITY = 85
#: a picture is embedded as JPEG only when that is at most this share of its logged PNG's size
JPEG_GAIN = 0.6
#: the widest an earlier step's picture is embedded (they are shown as a strip of small pictures)
STRIP_WIDTH = 260
#: at most this many earlier steps per tag, evenly spread from the first (the newest is always shown in full)
STRIP_STEPS = 5


def compact_image(entry: ImageEntry, max_width: Optional[int] = None, lossless: bool = False) -> tuple[str, bytes]:
    """The MIME type and bytes to embed: the logged PNG, or (smaller by far) a JPEG of it, optionally narrowed.

    Args:
        entry: the logged picture.
        max_width: narrow wider pictures to this width (aspect kept); None keeps the size.
        lossless: embed the logged bytes as they are.

    Returns:
        ``(mime, data)``.
    """
    if lossless:
        return entry.mime, entry.data
    return _compact(entry.mime, entry.data, max_width)


@functools.lru_cache(maxsize=64)
def _compact(mime: str, data: bytes, max_width: Optional[int]) -> tuple[str, bytes]:
    """:func:`compact_image` of the logged bytes, kept for the next report of the run: RunReport writes it at fit end
    and again after the test, and the pictures logged before fit end are re-encoded once (bounded: 64 pictures;
    :class:`~lit_xai.callbacks.RunReport` empties it after its last report)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            if max_width and img.width > max_width:
                img = img.resize((max_width, max(1, round(img.height * max_width / img.width))), Image.LANCZOS)
                narrowed = True
            else:
                narrowed = False
            buffer = io.BytesIO()
            img.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    except (OSError, ValueError):
        return mime, data  # not an image PIL reads: embed as logged
    jpeg = buffer.getvalue()
    if narrowed or len(jpeg) <= JPEG_GAIN * len(data):
        return "image/jpeg", jpeg
    return mime, data


def clear_image_cache() -> None:
    """Drop the pictures :func:`compact_image` keeps for a run's next report."""
    _compact.cache_clear()


def _data_uri(entry: ImageEntry, max_width: Optional[int], lossless: bool) -> str:
    mime, data = compact_image(entry, max_width, lossless)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figure(tag: str, entry: ImageEntry, label: str, lossless: bool, max_width: Optional[int] = None) -> str:
    caption = f"{escape(label)}" + (f" &middot; {escape(entry.caption)}" if entry.caption else "")
    return (
        f'<figure><img src="{_data_uri(entry, max_width, lossless)}" alt="{escape(tag)}, {escape(label)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def spread(items: Sequence[Any], count: int) -> list[Any]:
    """At most ``count`` items, evenly spread, first and last included.

    >>> spread(list(range(9)), 4)
    [0, 3, 5, 8]
    """
    if len(items) <= count:
        return list(items)
    if count <= 1:
        return list(items[:count])
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def _pictures(tag: str, entries: Sequence[ImageEntry], lossless: bool, all_steps: bool = True) -> str:
    """The newest picture of a tag full width; earlier ones (at most :data:`STRIP_STEPS`) as a strip below it. A
    timeline's newest picture already holds every epoch, so its earlier ones are left out."""
    newest, earlier = entries[-1], list(entries[:-1])
    parts = [f'<h3>{escape(tag)}</h3><div class="pics">']
    parts.append(_figure(tag, newest, f"step {newest.step} (newest)", lossless))
    if "timeline" in tag.lower() and earlier:
        parts.append(
            f'<p class="note">The newest timeline holds every epoch ({len(earlier)} earlier versions not shown).</p>'
        )
    elif earlier and all_steps:
        shown = spread(earlier, STRIP_STEPS)
        left = f" ({len(earlier) - len(shown)} more not shown)" if len(shown) < len(earlier) else ""
        strip = "".join(_figure(tag, e, f"step {e.step}", lossless, STRIP_WIDTH) for e in shown)
        parts.append(
            f"<details open><summary>earlier: step{'s' * (len(shown) > 1)} "
            f'{", ".join(str(e.step) for e in shown)}{left}</summary><div class="strip">{strip}</div></details>'
        )
    return "".join(parts) + "</div>"


def _texts(tag: str, entries: Sequence[TextEntry], newest_only: bool = False) -> str:
    shown = entries[-1:] if newest_only else entries
    parts = [f"<h3>{escape(tag)}</h3>"]
    for e in reversed(shown):
        parts.append(f'<div class="text"><p class="meta">step {e.step}</p>{markdown_html(e.text)}</div>')
    return "".join(parts)


def _method_key(tag: str) -> str:
    low = tag.lower()
    return next((name for token, name in _METHODS if token in low), "other methods")


def _chart_groups(tags: Iterable[str]) -> dict[str, dict[str, str]]:
    """Scalar tags that differ only by the method in their name share one chart: group -> {legend name: tag}."""
    groups: dict[str, dict[str, str]] = {}
    for tag in tags:
        parts = tag.split("/")
        idx = next((i for i, p in enumerate(parts) if any(p.lower() == m for m, _ in _METHODS)), None)
        if idx is None:
            groups.setdefault(tag, {})[tag.split("/")[-1]] = tag
        else:
            key = "/".join(parts[:idx] + ["*"] + parts[idx + 1 :])
            groups.setdefault(key, {})[dict(_METHODS)[parts[idx].lower()]] = tag
    return groups


def _threshold(tag: str, criteria: dict[str, Any]) -> Optional[float]:
    low = tag.lower()
    if low.endswith("_effect") and isinstance(criteria.get("min_effect"), (int, float)):
        return float(criteria["min_effect"])
    if low.endswith("outside_share") and isinstance(criteria.get("outside_roi_threshold"), (int, float)):
        return float(criteria["outside_roi_threshold"])
    return None


#: the x axis of every chart of the report: the step of the lit_xai monitors, the number of completed epochs
AXIS = "epochs done"


def epochs_done(
    epoch_points: Sequence[tuple[int, float]], trained_steps: Optional[Iterable[float]] = None
) -> Optional[Any]:
    """A map from Lightning's global (batch) step to epochs done, from the ``epoch`` scalar Lightning logs beside
    its metrics: the last step logged in epoch ``e`` is ``e + 1`` epochs done, steps between are interpolated
    linearly (step 0 = 0). None without epoch points.

    ``trained_steps`` (the steps of the ``train/`` metrics) tells trained epochs from the epoch number a test or
    predict run after ``fit`` logs (``current_epoch``, one past the last trained epoch, with no training in it): such
    an epoch adds no epoch done, so the test metrics sit at the epochs the model was trained for.

    >>> to_epochs = epochs_done([(9, 0.0), (19, 0.0), (29, 1.0), (39, 1.0)])
    >>> to_epochs(19), to_epochs(29), to_epochs(39)
    (1.0, 1.5, 2.0)
    >>> epochs_done([(9, 0.0), (19, 1.0), (20, 2.0)], trained_steps=[9, 19])(20)
    2.0
    """
    ends: dict[int, int] = {}
    for step, epoch in epoch_points:
        ends[int(epoch)] = max(ends.get(int(epoch), step), step)
    if not ends:
        return None
    trained = sorted(float(t) for t in trained_steps) if trained_steps is not None else None
    knots = [(0, 0.0)]
    previous, done = -math.inf, 0.0
    for step, epoch in sorted((step, epoch) for epoch, step in ends.items()):
        if not trained or bisect.bisect_right(trained, step) > bisect.bisect_right(trained, previous):
            done = epoch + 1.0
        knots.append((step, done))
        previous = step

    def convert(step: float) -> float:
        for (s0, e0), (s1, e1) in zip(knots, knots[1:]):
            if step <= s1:
                return e0 + (e1 - e0) * (step - s0) / (s1 - s0) if s1 > s0 else e1
        return knots[-1][1]

    return convert


def _on_epoch_axis(run: RunData, tag: str) -> tuple[list[tuple[float, float]], str]:
    """The points of ``tag`` over epochs done: the lit_xai tags are logged at that step already, Lightning's own are
    converted (:func:`epochs_done`); with no ``epoch`` scalar to convert by, the batch step, labelled so."""
    points = run.scalars[tag]
    if tag.lower().startswith(("xai", "quality")):
        return [(float(s), v) for s, v in points], AXIS
    trained = [step for tag, pts in run.scalars.items() if tag.lower().startswith("train/") for step, _ in pts]
    convert = epochs_done(run.scalars.get("epoch", []), trained_steps=trained or None)
    if convert is None:
        return [(float(s), v) for s, v in points], "step (batches)"
    return [(convert(s), v) for s, v in points], AXIS


#: scalars the shortcut charts draw already (interval bounds, the rule's threshold, the alert marker)
_DRAWN_ELSEWHERE = re.compile(r"(_lower|_upper|/alert|/threshold)$")


def _logged_evidence(
    run: RunData, members: dict[str, str]
) -> tuple[dict[str, list[tuple[float, float, float]]], list[float]]:
    """For logged effect scalars (``.../<test>_effect``): their interval from the ``_lower`` / ``_upper`` tags beside
    them (drawn as a band, as TensorBoard's Margin charts do) and the epochs the pair's ``alert`` marker fired."""
    intervals: dict[str, list[tuple[float, float, float]]] = {}
    marks: set[float] = set()
    for name, tag in members.items():
        if not tag.endswith("_effect"):
            continue
        low, high = dict(run.scalars.get(f"{tag}_lower", [])), dict(run.scalars.get(f"{tag}_upper", []))
        rows = [(float(step), float(low[step]), float(high[step])) for step in sorted(set(low) & set(high))]
        if rows:
            intervals[name] = rows
        alert = f"{tag.rsplit('/', 1)[0]}/alert"
        marks.update(float(step) for step, value in run.scalars.get(alert, []) if value > 0)
    return intervals, sorted(marks)


def _charts(run: RunData, tags: Sequence[str], criteria: dict[str, Any]) -> str:
    figures = []
    for key, members in _chart_groups(t for t in tags if not _DRAWN_ELSEWHERE.search(t)).items():
        axes = {name: _on_epoch_axis(run, tag) for name, tag in members.items()}
        series = {name: points for name, (points, _) in axes.items()}
        if not any(series.values()):
            continue
        labels = {label for _, label in axes.values()}
        x_label = labels.pop() if len(labels) == 1 else "step"
        intervals, marks = _logged_evidence(run, members)
        chart = line_chart(
            series, threshold=_threshold(key, criteria), title=key, x_label=x_label, intervals=intervals, marks=marks
        )
        figures.append(f"<figure>{chart}<figcaption>{escape(key)}</figcaption></figure>")
    return f'<div class="charts">{"".join(figures)}</div>' if figures else ""


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return escape(str(value))


def _verdict(run: RunData) -> tuple[str, str]:
    """The verdict sentence and its kind (``alert``, ``clear``, ``unknown``) from ``shortcut_report.json``."""
    report = run.shortcut
    if not report:
        return "No shortcut verdict: this run has no shortcut_report.json (add a ShortcutMonitor).", "unknown"
    given = report.get("verdict")
    if isinstance(given, dict):
        given = given.get("sentence") or given.get("text")
    alerts = report.get("alerts") or []
    if isinstance(given, str) and given.strip():
        return given.strip(), "alert" if alerts else "clear"
    if alerts:
        first = min(alerts, key=lambda a: a.get("epoch", 0))
        pairs = sorted({f"the {a.get('artifact')} for '{a.get('class')}'" for a in alerts})
        return (
            f"Shortcut found: the model relies on {', '.join(pairs)} (first alert at epoch {first.get('epoch')}).",
            "alert",
        )
    history = report.get("history") or []
    epochs = sorted({h.get("epoch") for h in history if isinstance(h.get("epoch"), int)})
    if not epochs:
        return "No shortcut verdict yet: the shortcut monitor measured no epoch.", "unknown"
    met = sorted({h["epoch"] for h in history if h.get("rule_met") and isinstance(h.get("epoch"), int)})
    if met:
        patience = (report.get("criteria") or {}).get("patience")
        needs = f" in {patience} measured epochs in a row" if isinstance(patience, int) else " more often"
        return (
            f"No shortcut alert yet, but watch it: the causal tests met the alert rule at epoch "
            f"{', '.join(map(str, met))}; an alert needs the rule met{needs}.",
            "unknown",
        )
    return (
        f"No shortcut alert: the causal tests of {len(epochs)} measured epoch{'s' * (len(epochs) > 1)} "
        f"({epochs[0]}–{epochs[-1]}) never met the alert rule.",
        "clear",
    )


def _verdict_section(run: RunData, claimed: dict[str, list[tuple[str, str]]], lossless: bool) -> str:
    sentence, kind = _verdict(run)
    parts = [f'<div class="verdict {kind}" id="verdict-box"><p class="headline" id="verdict-text">{escape(sentence)}']
    parts[0] += "</p>"
    for alert in sorted((run.shortcut or {}).get("alerts") or [], key=lambda a: a.get("epoch", 0)):
        message = markdown_html(alert.get("message", ""))
        parts.append(f"<p><strong>epoch {_fmt(alert.get('epoch'))}</strong></p>{message}")
    if run.correction:
        try:
            lines = outcome_text(run.correction).splitlines()
        except (KeyError, TypeError):  # a record of another version: name the method at least
            lines = [f"correction applied: {run.correction.get('method', '?')}"]
        items = "".join(f"<li>{escape(line.strip())}</li>" for line in lines[1:])
        parts.append(
            f'<p id="correction"><strong>Correction applied:</strong> {escape(str(run.correction.get("method")))}'
            f" &mdash; {escape(lines[0])}</p><ul>{items}</ul>"
        )
    parts.append("</div>")
    for kind_, tag in claimed.get("verdict", []):
        if kind_ == "image":
            parts.append(_pictures(tag, run.images[tag], lossless, all_steps=False))
        elif kind_ == "text":
            parts.append(_texts(tag, run.texts[tag], newest_only=True))
    scalar_tags = [tag for kind_, tag in claimed.get("verdict", []) if kind_ == "scalar"]
    parts.append(_charts(run, scalar_tags, (run.shortcut or {}).get("criteria") or {}))
    return "".join(parts)


def _audit_section(run: RunData, claimed: dict[str, list[tuple[str, str]]]) -> str:
    audit = (run.shortcut or {}).get("audit")
    parts = []
    if isinstance(audit, dict):
        verdicts = audit.get("verdicts") or []
        parts.append(
            f"<p>{_fmt(audit.get('n_images'))} training images audited"
            f"{' (from the cache)' if audit.get('from_cache') else ''}.</p>"
        )
        if verdicts and not any(kind == "text" for kind, _ in claimed.get("audit", [])):
            parts.append("<ul>" + "".join(f"<li>{escape(str(v))}</li>" for v in verdicts) + "</ul>")
        rows = []
        names = audit.get("class_names") or []
        artifacts = {k: a for k, a in (audit.get("artifacts") or {}).items() if isinstance(a, dict)}
        twin = audit.get("annotation_twin")  # decided by the audit (AuditReport.to_dict)
        for name, art in artifacts.items():
            if twin is not None and name == "annotated":
                continue  # one row, as in the audit text: the detector's row says it matches the annotations
            label = f"{name} (= the dataset's annotations)" if name == twin else name
            odds = art.get("odds_ratio") or []
            classes = art.get("predictive_classes") or []
            idx = [names.index(c) for c in classes if c in names]
            rows.append(
                f"<tr><td>{escape(label)}</td><td>{_fmt(art.get('n_with'))}</td><td>{_fmt(art.get('prevalence'))}</td>"
                f"<td>{escape(', '.join(classes)) or 'none'}</td>"
                f"<td>{', '.join(_fmt(odds[i], 1) for i in idx if i < len(odds)) or '–'}</td></tr>"
            )
        if rows:
            parts.append(
                "<table><tr><th>artifact</th><th>images with it</th><th>prevalence</th><th>label-predictive for</th>"
                f"<th>odds ratio</th></tr>{''.join(rows)}</table>"
            )
    for kind, tag in claimed.get("audit", []):
        if kind == "text":
            parts.append(_texts(tag, run.texts[tag], newest_only=True))
    return "".join(parts) or '<p class="muted">No audit in this run.</p>'


_TESTS = (("counterfactual", "insertion"), ("removal", "removal"))


def _done(epoch: Any) -> Any:
    """Epochs done after the history's epoch ``epoch`` (the charts' x), or ``epoch`` itself when not a number."""
    return epoch + 1 if isinstance(epoch, int) else epoch


def _alerts_section(run: RunData, claimed: dict[str, list[tuple[str, str]]], lossless: bool) -> str:
    report = run.shortcut or {}
    criteria = report.get("criteria") or {}
    history = [h for h in report.get("history") or [] if isinstance(h, dict) and h.get("artifact") != "roi"]
    alerts = report.get("alerts") or []
    parts = []
    pairs = dict.fromkeys((h.get("artifact"), h.get("class")) for h in history)
    figures = []
    for artifact, cls in pairs:
        rows = [h for h in history if (h.get("artifact"), h.get("class")) == (artifact, cls)]
        series, intervals = {}, {}
        for key, name in _TESTS:
            # epochs done, the step of every other chart: the history's epoch e is the model after e + 1 epochs
            tests = [(h["epoch"] + 1, h[key]) for h in rows if isinstance(h.get(key), dict) and "effect" in h[key]]
            if tests:
                series[f"{name} effect"] = [(e, float(t["effect"])) for e, t in tests]
                intervals[f"{name} effect"] = [(e, *map(float, t.get("interval", [math.nan] * 2))) for e, t in tests]
        marks = [a["epoch"] + 1 for a in alerts if (a.get("artifact"), a.get("class")) == (artifact, cls)]
        if series:
            chart = line_chart(
                series,
                threshold=criteria.get("min_effect"),
                marks=marks,
                intervals=intervals,
                x_label=AXIS,
                title=f"{artifact} -> {cls}",
            )
            figures.append(
                f"<figure>{chart}<figcaption>reliance effect of the {escape(str(artifact))} on P('{escape(str(cls))}')"
                f" per epoch, {round(100 * float(criteria.get('confidence', 0.95)))} % interval; x: epochs done (epoch "
                "e of the table = e + 1 done)</figcaption></figure>"
            )
        table = []
        for h in rows:
            cells = []
            for key, _ in _TESTS:
                t = h.get(key) if isinstance(h.get(key), dict) else {}
                lo, hi = (t.get("interval") or [math.nan, math.nan])[:2]
                cells.append(f"{_fmt(t.get('effect', math.nan))} [{_fmt(lo)}, {_fmt(hi)}]" if t else "–")
            alert = any(
                a.get("epoch") == h.get("epoch")
                for a in alerts
                if (a.get("artifact"), a.get("class")) == (artifact, cls)
            )
            table.append(
                f"<tr><td>{_fmt(h.get('epoch'))} ({_fmt(_done(h.get('epoch')))})</td>"
                f"<td>{cells[0]}</td><td>{cells[1]}</td>"
                f"<td>{_fmt(h.get('relevance_ratio', math.nan))}</td><td>{'yes' if h.get('rule_met') else 'no'}</td>"
                f"<td>{'<strong>ALERT</strong>' if alert else ''}</td></tr>"
            )
        parts.append(
            f"<h3>{escape(str(artifact))} &rarr; '{escape(str(cls))}'</h3><table><tr><th>epoch (epochs done)</th>"
            "<th>insertion effect [interval]</th><th>removal effect [interval]</th><th>relevance ratio</th>"
            f"<th>rule met</th><th></th></tr>{''.join(table)}</table>"
        )
    if figures:
        parts.insert(0, f'<div class="charts wide">{"".join(figures)}</div>')
    if report and not alerts:
        parts.insert(0, "<p>No alert fired.</p>")
    if report and run.correction:
        method = escape(str(run.correction.get("method", "?")))
        parts.insert(
            0,
            f'<p class="correction-note"><strong>Correction applied:</strong> {method}. These tests measure the '
            "corrected model.</p>",
        )
    texts = [tag for kind, tag in claimed.get("alerts", []) if kind == "text"]
    images = [tag for kind, tag in claimed.get("alerts", []) if kind == "image"]
    scalars = [tag for kind, tag in claimed.get("alerts", []) if kind == "scalar"]
    if scalars:
        parts.append("<h3>Logged shortcut scalars</h3>" + _charts(run, scalars, criteria))
    for tag in texts:
        parts.append(_texts(tag, run.texts[tag]))
    for tag in images:
        parts.append(_pictures(tag, run.images[tag], lossless))
    return "".join(parts) or '<p class="muted">No shortcut monitor in this run.</p>'


def _generic_section(
    run: RunData, items: Sequence[tuple[str, str]], criteria: dict[str, Any], by_method: bool, lossless: bool
) -> str:
    scalars = [tag for kind, tag in items if kind == "scalar"]
    images = [tag for kind, tag in items if kind == "image"]
    texts = [tag for kind, tag in items if kind == "text"]
    parts = [_charts(run, scalars, criteria)] if scalars else []
    if by_method:
        methods: dict[str, list[str]] = {name: [] for _, name in _METHODS}  # LRP, Grad-CAM, CRP, then the rest
        for tag in images:
            methods.setdefault(_method_key(tag), []).append(tag)
        methods = {name: tags for name, tags in methods.items() if tags}
        for method, tags in methods.items():
            parts.append(f"<h3>{escape(method)}</h3>" if len(methods) > 1 else "")
            parts += [_pictures(tag, run.images[tag], lossless) for tag in tags]
    else:
        parts += [_pictures(tag, run.images[tag], lossless) for tag in images]
    parts += [_texts(tag, run.texts[tag]) for tag in texts]
    return "".join(parts)


def render_report(run: RunData, title: Optional[str] = None, lossless: bool = False) -> str:
    """The report page of a run.

    Args:
        run: what the run logged (:func:`~lit_xai.report.run_data.read_run`).
        title: the page title; default ``"lit_xai report: <run folder>"``.
        lossless: embed the pictures as logged (PNG); default embeds a JPEG where that is much smaller (about a
            quarter of the size for explanation grids) and narrows the earlier steps' pictures.

    Returns:
        The HTML document.
    """
    title = title or f"lit_xai report: {run.path.parent.name + '/' if run.path.parent.name else ''}{run.path.name}"
    claimed: dict[str, list[tuple[str, str]]] = {}
    for kind, tags in (("image", run.images), ("text", run.texts), ("scalar", run.scalars)):
        for tag in sorted(tags):
            claimed.setdefault(section_of(tag, kind), []).append((kind, tag))
    criteria = (run.shortcut or {}).get("criteria") or {}
    bodies = {
        "verdict": _verdict_section(run, claimed, lossless),
        "audit": _audit_section(run, claimed),
        "alerts": _alerts_section(run, claimed, lossless),
    }
    for key in ("probes", "crp", "drift", "quality", "training", "other"):
        items = claimed.get(key, [])
        bodies[key] = _generic_section(run, items, criteria, by_method=key == "probes", lossless=lossless)
    shown = [(key, heading, note) for key, heading, note in SECTIONS if bodies.get(key)]
    nav = " ".join(f'<a href="#{key}">{escape(heading)}</a>' for key, heading, _ in shown)
    sections = "".join(
        f'<section id="{key}"><h2>{escape(heading)}</h2>'
        + (f'<p class="note">{escape(note)}</p>' if note else "")
        + bodies[key]
        + "</section>"
        for key, heading, note in shown
    )
    counts = (
        f"{sum(map(len, run.images.values()))} pictures, {sum(map(len, run.texts.values()))} texts, "
        f"{len(run.scalars)} scalar series"
    )
    source = "TensorBoard event files" if run.source == "tensorboard" else "the fallback folder (PNG, Markdown, CSV)"
    made = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>"
        f'<header><h1>{escape(title)}</h1><p class="meta">{escape(str(run.path))} &middot; read from {source} '
        f"&middot; {counts} &middot; made {escape(made)}. XAI steps count completed epochs (step 0 = the untrained "
        f"model).</p><nav>{nav}</nav></header>{sections}</main></body></html>\n"
    )
