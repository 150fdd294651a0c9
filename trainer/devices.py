"""Which device to compute on: CUDA if present, else Apple MPS, else the CPU."""

from __future__ import annotations

import contextlib

import torch


class DeviceError(Exception):
    pass


def pick_device(requested: str = "auto") -> torch.device:
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
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
