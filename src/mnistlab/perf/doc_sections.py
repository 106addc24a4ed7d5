"""Measured tables written into the marked sections of Markdown files (README, docs/performance.md)."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import ConfigError
from ..core.io import write_text


def update_section(path: Path, section: str, text: str) -> None:
    """Replace what stands between ``<!-- section:start -->`` and ``<!-- section:end -->`` in a Markdown file."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    content = path.read_text()
    if start not in content or end not in content:
        raise ConfigError(f"{path}: no {start} ... {end} section to replace")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    write_text(path, f"{head}{start}\n{text}{end}{tail}")
