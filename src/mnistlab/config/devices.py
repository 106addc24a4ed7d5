"""The devices of this machine. One rule for every command's ``device=auto|cpu|cuda|mps`` (train,
evaluate, predict, demo, bench): which device that names here, and one line where it asks for hardware
PyTorch does not see. ``auto`` is Lightning's choice: a CUDA GPU, else an Apple GPU (MPS), else the CPU;
``gpu`` (Lightning's name for a CUDA GPU, ``trainer.accelerator=gpu``) is taken as ``cuda``.
``machine()`` says in one line what a number was measured on.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

from ..core.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
ALIASES = {"gpu": "cuda"}


def check_device(choice: str, setting: str = "device=", retry: str = "auto or cpu") -> str:
    """``choice`` as one of ``DEVICES``, refused in one line where it is unknown or absent here; ``setting``
    and ``retry`` say it in the words of the command (``--device ``, ``trainer.accelerator=``)."""
    import torch

    name = ALIASES.get(str(choice), str(choice))
    if name not in DEVICES:
        raise ConfigError(f"{setting}{choice}: choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting}{choice}: PyTorch sees no CUDA GPU here; use {retry}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{setting}{choice}: PyTorch sees no Apple GPU (MPS) here; use {retry}")
    return name


def resolve_device(choice: str = "auto", setting: str = "device=", retry: str = "auto or cpu"):
    """The ``torch.device`` that ``choice`` names here (checked as ``check_device`` does)."""
    import torch

    name = check_device(choice, setting, retry)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    return torch.device(name)


def cpu_capabilities() -> dict[str, bool]:
    """The CPU features torch's kernels can use here (``avx512_bf16``, ``amx_bf16``, ...); empty before torch 2.7."""
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", dict)()
    return {name: has for name, has in capabilities.items() if has is True}


def native_bf16(device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: a CUDA GPU with bf16 units, a CPU with AVX512-BF16 or
    AMX (x86) or the BF16 extension (Arm). Elsewhere bf16 autocast is emulated: slower than float32."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return any("bf16" in name for name in cpu_capabilities())
    return False


def precision_for(precision: str, bf16_where_native: bool, device) -> tuple[str, str]:
    """The Trainer's precision on ``device``: ``bf16-mixed`` where ``bf16_where_native`` and the device has
    bfloat16 in hardware, else ``precision``, with a line saying so when ``bf16_where_native`` falls back."""
    if not bf16_where_native:
        return precision, ""
    if native_bf16(device):
        return "bf16-mixed", ""
    import torch

    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"this CPU ({cpu_model()})" if device.type == "cpu" else device.type)
    return precision, f"bf16_where_native: {name} has no native bfloat16; training with trainer.precision={precision}"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what ``platform`` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    model = ""
    if cpuinfo.is_file():
        model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                      if ln.startswith("model name")), "")
    return model or platform.processor() or platform.machine()


NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def drop_failing_nvml_check() -> None:
    """Undo Lightning's ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` where NVML cannot load.

    That variable makes ``torch.cuda.is_available()`` count devices through NVML. Without an NVIDIA driver
    each call tries to load NVML, fails (~70 us) and falls back to the CUDA runtime's count, and Adam and
    AdamW ask in every ``step()``. Dropping the variable there gives the same answer without the failed load.
    """
    import torch

    if os.environ.get(NVML_CHECK) == "1" and torch.backends.cuda.is_built() and not nvml_loads():
        del os.environ[NVML_CHECK]


@functools.cache
def nvml_loads() -> bool:
    """Whether NVML (the NVIDIA driver's management library) loads here, probed as torch probes it."""
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def cpu_instruction_set() -> str:
    """The instruction set torch's CPU kernels run on here (``AVX512``, ``AVX2``, ...) and whether bfloat16 is
    native, and by AMX tiles: CPUs of one model name differ in these, and in speed (``handwriting`` fitted in
    198 s on one 2-core "AMD EPYC", in 270 s on another; bf16 sped ``cnn_best``'s step 1.67x with AVX512-BF16
    alone, 1.90x with AMX), so a measured number names them."""
    import torch

    amx = "amx_bf16" in cpu_capabilities()
    bf16 = ("native bf16, AMX" if amx else "native bf16") if native_bf16(torch.device("cpu")) else "no native bf16"
    return f"{torch.backends.cpu.get_cpu_capability()}, {bf16}"


def machine() -> str:
    """This machine, as a measured number's context: GPU or CPU model, cores, torch and Python versions."""
    import torch

    if torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    else:
        device = f"{cpu_model()} ({cpu_instruction_set()}), {os.cpu_count()} cores, no GPU"
    return f"{device}; torch {torch.__version__}; Python {platform.python_version()}"
