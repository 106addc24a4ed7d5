"""User-facing errors: each is reported as one line on stderr with a non-zero exit."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import TypeVar

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


def record_in_run_log(line: str, level: int = logging.ERROR) -> None:
    """Write ``line`` to the run's log files (Hydra's ``train.log``) too, without printing it twice."""
    record = logging.LogRecord("mnistlab", level, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


# Lightning gives its loggers their own console handler and stops them propagating when it is imported
# before logging is configured (always, under Hydra), so none of its lines reached train.log.
_LIBRARY_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")


@contextlib.contextmanager
def library_logs_in_run_log():
    """Lightning's log lines also go to the run's log files while the block runs."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    loggers = [logging.getLogger(name) for name in _LIBRARY_LOGGERS]
    added = [(lg, h) for lg in loggers if not lg.propagate for h in files if h not in lg.handlers]
    for lg, h in added:
        lg.addHandler(h)
    try:
        yield
    finally:
        for lg, h in added:
            lg.removeHandler(h)


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


# Deprecation notices from libraries that users cannot act on (Lightning's graph tracing, pytree).
_LIBRARY_NOISE = (
    r"`torch\.jit\.trace(_method)?` is deprecated",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r".*does not have many workers.*",
)


class _Advert(logging.Filter):
    """Lightning's "try installing litlogger" line at every Trainer: an advert, not news about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def silence_library_noise() -> None:
    for pattern in _LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _Advert) for f in rank_zero.filters):
        rank_zero.addFilter(_Advert())
