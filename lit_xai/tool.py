"""``lit-xai``: the command-line tool's entry point. It answers ``--help`` (and an unknown command) without
importing torch or Lightning, and imports a command's code only when that command runs (:func:`lit_xai.cli.tool_main`).
"""

from __future__ import annotations

import sys
from typing import Optional

from lit_xai.commands import COMMANDS, usage

__all__ = ["main"]


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``lit-xai <command> ...``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"lit-xai: unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from lit_xai.cli import tool_main

    return tool_main(argv, command_line=True)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
