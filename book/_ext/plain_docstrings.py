"""Sphinx extension for the API page: tkdlib's docstrings are plain text with math notation.

They write |w| for an absolute value, which reStructuredText would read as a substitution
reference (an error under ``-W``). This extension escapes every ``|`` outside inline literals
before autodoc parses a docstring, so a bar is always a bar.
"""

from __future__ import annotations

import re
from typing import Any

from sphinx.application import Sphinx

_INLINE_LITERAL = re.compile(r"(``.+?``)")


def escape_bars(line: str) -> str:
    """`line` with each ``|`` outside double-backquoted literals escaped for reStructuredText."""
    parts = _INLINE_LITERAL.split(line)
    return "".join(part if _INLINE_LITERAL.fullmatch(part) else part.replace("|", r"\|") for part in parts)


def _escape_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    lines[:] = [escape_bars(line) for line in lines]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", _escape_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
