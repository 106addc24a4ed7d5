"""The machine a number was measured on, as one line."""

from __future__ import annotations

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
