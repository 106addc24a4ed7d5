"""What reaches the run's log files and the console: a line written to the run's log too, Lightning's own
log lines in it, and libraries' notices that users cannot act on kept out of both."""

from __future__ import annotations

import contextlib
import logging
import warnings


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


# Deprecation notices from libraries that users cannot act on (Lightning's graph tracing, pytree), and the
# model summary's doubt about its size under bf16-mixed, whose weights stay float32 (the 32 bits it counts).
_LIBRARY_NOISE = (
    r"Precision bf16-mixed is not supported by the model summary",
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
