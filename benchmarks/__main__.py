"""``python -m benchmarks <suite> [options]``: run one benchmark suite (``list``: the suites and what they measure)."""

from __future__ import annotations

import ast
import runpy
import sys

from benchmarks import SUITES, script


def _summary(suite: str) -> str:
    doc = ast.get_docstring(ast.parse(script(suite).read_text())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "list"):
        print("usage: python -m benchmarks <suite> [the suite's options; <suite> --help lists them]\n")
        for suite in SUITES:
            print(f"  {suite:18s} {_summary(suite)}")
        return 0
    path = script(argv[0])
    sys.argv = [str(path), *argv[1:]]
    runpy.run_path(str(path), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
