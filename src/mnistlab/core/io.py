"""Files mnistlab writes: whole or not at all (a temp file beside the target, flushed, synced, renamed),
strict JSON, and a full disk reported as one line."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import DiskFullError

HOST_NAME = socket.gethostname()
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", HOST_NAME)[:32] or "host"
# .<target name>.<host>.<pid>.<random>.tmp: unique per writer; host and pid say whose it is
_TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


NAME_MAX = 255  # bytes in one file name, on every common Linux and macOS file system


def _temp_name(path: Path) -> Path:
    """``.<target>.<host>.<pid>.<random>.tmp``, the target's part shortened so that the name stays within
    ``NAME_MAX`` (a valid 250-byte target would otherwise get an invalid temp name)."""
    suffix = f".{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    room = NAME_MAX - 1 - len(suffix.encode())
    target = path.name.encode()[:room].decode(errors="ignore")
    return path.with_name(f".{target}{suffix}")


def _sync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut after it keeps the new name)."""
    with contextlib.suppress(OSError):  # some file systems cannot open or sync a folder; the data is synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without an error.

    The temp file lives in the target's own folder, so the rename never turns into a copy across file
    systems (a kill during such a copy truncates the target); its name is unique, so two writers never
    share one. On any error or interrupt the temp file is removed and ``path`` is untouched; a full disk
    raises ``DiskFullError``.
    """
    path = Path(path)
    tmp = _temp_name(path)
    try:
        # O_EXCL: never another writer's file; mode 0o666 under the umask, as a plain open() would make it
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_disk_full(err):
            raise DiskFullError(f"{path.parent}: disk full: {path.name} was not written "
                                f"({'it is unchanged' if path.exists() else 'no earlier copy'})") from None
        raise
    _sync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write atomically: a reader or a kill sees the old file or the new one, never half of one."""
    with atomic_file(path) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def strict(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None: JSON has no NaN (``json.dumps`` would
    write the invalid token ``NaN`` that strict parsers refuse)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def json_line(data: Any, **kwargs) -> str:
    """Strict JSON text (non-finite numbers as null)."""
    return json.dumps(strict(data), allow_nan=False, **kwargs)


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    write_text(path, json_line(data, indent=2, sort_keys=True) + "\n")


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete temp files that writers on this host left when they were killed (their process is gone)."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMP.match(entry.name)
        if match is None or match["host"] != _HOST or process_alive(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed.append(entry)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process of this host with that pid runs (a writer, a sweep worker)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
