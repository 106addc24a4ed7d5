"""The machine: what a number was measured on, and how it answers "is there a CUDA GPU?"."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from pathlib import Path


def machine() -> str:
    import torch  # here: the results and speedrun tools read this string without training anything

    if torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    else:
        model = ""
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.is_file():
            model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                          if ln.startswith("model name")), "")
        device = f"{model or platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU"
    return f"{device}; torch {torch.__version__}; Python {platform.python_version()}"


NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


@functools.cache
def nvml_loads() -> bool:
    """Whether NVML (the NVIDIA driver's management library) loads here, probed as torch probes it."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def drop_failing_nvml_check() -> None:
    """Undo Lightning's ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` where NVML cannot load.

    That variable makes ``torch.cuda.is_available()`` count devices through NVML. Without an NVIDIA driver
    each call tries to load NVML, fails (~70 us) and falls back to the CUDA runtime's count, and Adam and
    AdamW ask in every ``step()``. Dropping the variable there gives the same answer without the failed load.
    """
    import torch

    if os.environ.get(NVML_CHECK) == "1" and torch.backends.cuda.is_built() and not nvml_loads():
        del os.environ[NVML_CHECK]
