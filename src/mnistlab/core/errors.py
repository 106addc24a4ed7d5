"""User-facing errors: each is reported as one line on stderr with a non-zero exit."""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from .logs import record_in_run_log

T = TypeVar("T")


class MnistlabError(Exception):
    """A problem the user can fix (bad input, missing data, impossible config)."""


class DataError(MnistlabError):
    """Dataset files are missing, unreadable or inconsistent."""


class ConfigError(MnistlabError):
    """A configuration value is impossible."""


class CheckpointError(MnistlabError):
    """A checkpoint cannot be used (unsafe, corrupt, or for another model)."""


class DiskFullError(MnistlabError):
    """A file could not be written for lack of space; what was there before is intact."""


class FileSystemError(MnistlabError):
    """A place cannot be written or made: read-only, not permitted, a name too long, a file where a folder
    is wanted; what was there before is intact."""


# What the file system said, in the user's words: every tool's one line for these, whoever met them
_FILE_SYSTEM = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "file name too long (at most 255 bytes a name)",
    errno.ENOTDIR: "a file stands where a folder is wanted",
    errno.EEXIST: "a file stands where a folder is wanted",
    errno.EISDIR: "is a folder, not a file",
}


def debug_enabled() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("MNISTLAB_DEBUG") == "1"


def user_error(err: BaseException | None) -> MnistlabError | None:
    """The MnistlabError behind ``err``: itself, or what a wrapper re-raised it from.

    Hydra's ``instantiate`` wraps whatever a constructor raises in an ``InstantiationException``, so a
    network's own check (``model.net.kernel_size must be odd``) arrives as that exception's cause. A full
    disk met by a library's own writer (TensorBoard's event file, a log) is one too.
    """
    while err is not None:
        if isinstance(err, MnistlabError):
            return err
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            where = err.filename or "a file"
            return DiskFullError(f"{where}: disk full (no space left on device); files written before are intact")
        if isinstance(err, OSError) and err.errno in _FILE_SYSTEM:
            return FileSystemError(f"{err.filename or 'a file'}: cannot write there: {_FILE_SYSTEM[err.errno]}; "
                                   "files written before are intact")
        err = err.__cause__
    return None


def report_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn MnistlabError into `error: ...` on stderr and exit code 2 (traceback only in debug mode)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            cause = user_error(err)
            if cause is None or debug_enabled():
                raise
            print(f"error: {cause}", file=sys.stderr)
            record_in_run_log(f"error: {cause}")
            raise SystemExit(2) from None

    return wrapper
