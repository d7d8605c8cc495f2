"""Timing in one process: interleaved rounds, per-round ratios, peak memory, FLOPs, autocast."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def sync(device) -> None:
    """Wait for the device's queued work (CUDA), so that a clock reading includes it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def amp_dtype(device) -> torch.dtype:
    """The autocast dtype of ``device``: float16 on CUDA, bfloat16 on the CPU."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def autocast(device, enabled: bool):
    """Autocast (``amp_dtype``) on ``device`` when ``enabled`` (the same for every model timed), else nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=amp_dtype(device))


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, device, warmup: int = 1) -> dict[str, list]:
    """Seconds per call of each fn, ``rounds`` values each.

    Each fn runs ``warmup`` times first; then rounds alternate the order (A B C, C B A, A B C, ...) so
    that neither the machine's load drift nor going first favours one of them."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            sync(device)
    times: dict[str, list] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def ratio_stats(times: dict[str, list], ours: str = "ours", ref: str = "tv") -> dict[str, float]:
    """Per-round speed-up ``ref time / our time`` (above 1: ours faster) -> {"median", "min", "max"}.
    Same round, same machine load: the ratio is steadier than either time."""
    ratios = [r / o for r, o in zip(times[ref], times[ours])]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def matmul_flops(n: int, device, dtype=torch.float32, repeats: int = 3) -> float:
    """Dense [n, n] x [n, n] matmul FLOP/s of this process in ``dtype`` (best of ``repeats``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def model_flops(model: nn.Module, images: list) -> float:
    """2 x multiply-accumulates of the convs and linears of one forward on ``images`` (``FlopCounterMode``)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(images)
    return float(counter.get_total_flops())


def peak_memory(fn: Callable[[], object], device) -> float:
    """Peak bytes allocated by tensors during ``fn()`` above what was live before.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the allocation and free events of
    ``torch.profiler(profile_memory=True)`` replayed in time order (oneDNN's scratch buffers are not
    tensors and are not seen)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return float(peak)
