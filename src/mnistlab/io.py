"""Files mnistlab writes: whole or not at all (a temp file beside the target, flushed, synced, renamed)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from .errors import ConfigError


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write atomically: a reader or a kill sees the old file or the new one, never half of one.

    The temp file lives in the target's own folder, so the rename never turns into a copy across file
    systems; its name is unique, so two writers never share one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: never another writer's file; mode 0o666 under the umask, as a plain open() would make it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def update_section(path: Path, section: str, text: str) -> None:
    """Replace what stands between ``<!-- section:start -->`` and ``<!-- section:end -->`` in a Markdown file."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    content = path.read_text()
    if start not in content or end not in content:
        raise ConfigError(f"{path}: no {start} ... {end} section to replace")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    write_text(path, f"{head}{start}\n{text}{end}{tail}")
