"""The index page of a fallback folder (``xai_images/``): every picture, caption and Markdown text linked by tag
and step, and the scalars CSV. Plain relative links: the page works from disk beside the files it lists.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "XAI" / "lrp").mkdir(parents=True)
    >>> _ = (folder / "XAI" / "lrp" / "step_000002.png").write_bytes(b"")
    >>> page = write_index(folder).read_text()
    >>> 'href="XAI/lrp/step_000002.png"' in page
    True
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Union
from urllib.parse import quote

__all__ = ["INDEX_NAME", "write_index"]

#: the index file's name inside the fallback folder
INDEX_NAME = "index.html"

_STEP_FILE = re.compile(r"^step_(-?\d+)\.(png|md|txt)$")
_KINDS = {"png": "picture", "md": "text", "txt": "caption"}


def write_index(folder: Union[str, Path]) -> Path:
    """(Re)write ``<folder>/index.html`` listing the ``step_*.png|md|txt`` files below it, by tag and step.

    Args:
        folder: the fallback folder.

    Returns:
        The index file's path.
    """
    folder = Path(folder)
    found: dict[str, dict[int, dict[str, str]]] = {}
    for file in sorted(folder.rglob("step_*")):
        match = _STEP_FILE.match(file.name)
        if match is None or not file.is_file():
            continue
        tag = file.parent.relative_to(folder).as_posix()
        found.setdefault(tag, {}).setdefault(int(match.group(1)), {})[match.group(2)] = file.relative_to(
            folder
        ).as_posix()
    tags = sorted(found, key=lambda t: ("verdict" not in t.lower(), t))
    parts = []
    for tag in tags:
        rows = []
        for step, files in sorted(found[tag].items()):
            links = " ".join(
                f'<a href="{quote(files[kind])}">{_KINDS[kind]}</a>' for kind in ("png", "md", "txt") if kind in files
            )
            caption = ""
            if "txt" in files:
                caption = escape((folder / files["txt"]).read_text(encoding="utf-8", errors="replace").strip())
            rows.append(f"<tr><td>{step}</td><td>{links}</td><td>{caption}</td></tr>")
        parts.append(
            f'<h2 id="{escape(tag)}">{escape(tag)}</h2><table><tr><th>step</th><th>files</th><th>caption</th></tr>'
            f"{''.join(rows)}</table>"
        )
    csv_link = (
        '<p>Scalars (drift, shortcut, quality): <a href="scalars.csv">scalars.csv</a> (step, tag, value).</p>'
        if (folder / "scalars.csv").is_file()
        else ""
    )
    toc = " &middot; ".join(f'<a href="#{escape(t)}">{escape(t)}</a>' for t in tags)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>XAI pictures and texts</title>'
        "<style>body{font:15px/1.4 system-ui,sans-serif;max-width:1000px;margin:0 auto;padding:12px 20px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}"
        "h2{font-size:1.1em;margin-top:1.4em;overflow-wrap:anywhere}</style></head><body>"
        "<h1>XAI pictures and texts</h1><p>What the explanation callbacks logged in this run, by tag and step (XAI "
        "steps count completed epochs). For one self-contained page with the verdict, charts and all pictures: "
        f"<code>lit-xai report {escape(str(folder.parent))}</code>.</p>{csv_link}<p>{toc}</p>{''.join(parts)}"
        "</body></html>\n"
    )
    path = folder / INDEX_NAME
    tmp = path.with_name(INDEX_NAME + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
