"""Choosing the device: ``auto`` is this rank's GPU when CUDA is available, else the CPU."""

from __future__ import annotations

import os

import torch

from metaanchor.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda (this rank's GPU under torchrun) if available, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name}: CUDA is not available on this machine; use device=cpu or auto")
        if name == "cuda" and "LOCAL_RANK" in os.environ:
            name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    elif name != "cpu":
        raise ConfigError(f"device={name!r}: expected auto, cpu, cuda or cuda:N")
    return torch.device(name)


def trains_channels_last(device: torch.device, setting: bool | None = None) -> bool:
    """Whether training runs NHWC: ``solver.channels_last`` when set, else on CUDA only (on CPUs the sign of
    its effect depends on the machine; BENCHMARKS.md)."""
    return torch.device(device).type == "cuda" if setting is None else setting


def device_label(device: torch.device) -> str:
    """``cpu``, or ``cuda`` with the GPU's name (``cuda (NVIDIA H100 80GB HBM3)``): what a run's summary records."""
    if device.type != "cuda":
        return device.type
    return f"cuda ({torch.cuda.get_device_name(device)})"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX512-BF16 or AMX, as oneDNN reports it).
    Elsewhere oneDNN emulates them, two orders of magnitude slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
