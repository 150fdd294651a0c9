"""Which device to compute on: CUDA if present, else Apple MPS, else the CPU.

torch is imported by the functions that need it: :func:`surely_cpu` answers without it,
for the app's quick start (``karyo_gui.inference.quick_start``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# device files of the GPU drivers torch runs on (NVIDIA, WSL's GPU bridge, AMD ROCm)
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


class DeviceError(Exception):
    pass


def surely_cpu(requested: str = "auto") -> bool:
    """Whether ``pick_device(requested)`` can only be the CPU, told without importing torch:
    the CPU asked for, or "auto" on a machine with no GPU driver in sight and no Apple
    GPU. False when in doubt (then torch is asked)."""
    requested = (requested or "auto").strip().lower()
    if requested == "cpu":
        return True
    if requested != "auto":
        return False
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return platform.system() != "Darwin"
    if platform.system() == "Darwin":
        return platform.machine() != "arm64"  # Apple silicon: MPS
    if platform.system() == "Windows":
        return shutil.which("nvidia-smi") is None
    return not any(Path(name).exists() for name in GPU_DEVICE_FILES)


def pick_device(requested: str = "auto") -> torch.device:
    import torch

    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise DeviceError(
            f"unknown device {requested!r} (use auto, cpu, cuda, cuda:N or mps)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda asked for, but no CUDA GPU is available here")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceError(f"no GPU {device.index}: {torch.cuda.device_count()} found")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps asked for, but Apple MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {requested!r}")
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision elsewhere (CPU bf16 is slower on most CPUs)."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
