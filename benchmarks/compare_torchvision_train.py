"""Real-data training throughput: our full training loop vs torchvision's RetinaNet
(``python benchmarks/compare_torchvision.py --train-data DIR``).

Both read the same COCO-layout dataset folder (``DIR/annotations.json`` + ``DIR/images``) from disk
every step, at the same input size (short side ``size``, long side capped at ``size``), batch,
backbone (ResNet-FPN P3..P7, random weights, plain BatchNorm2d) and thread count:

- **ours**: ``metaanchor.engine.train.train`` as ``metaanchor train`` runs it (CocoDataset, AugmentedDataset,
  ResumableBatches, DataLoader, a MetaAnchor head with a sampled anchor set per step, SGD, NHWC), observed by
  a training callback; one measured step = next batch from its loader + the training step (the log and
  checkpoint periods are the run's length, so neither falls inside a measurement).
- **tv**: ``torchvision.models.detection.RetinaNet`` fed as torchvision's detection references do:
  ``datasets.CocoDetection`` wrapped by ``wrap_dataset_for_transforms_v2``, transforms v2
  (ToImage, RandomHorizontalFlip, ToDtype, SanitizeBoundingBoxes), a shuffled DataLoader with
  ``collate_fn=tuple(zip(*batch))``; one step = next batch + forward + loss + backward + SGD step.

Measurements alternate (ours, tv, ours, tv, ... and the order flips every round) after one warm-up
step each; each measurement is ``steps`` consecutive steps; images/s = steps x batch / seconds. The
callback runs torchvision's measurements between two of our steps, outside our timed windows.
Reported: median and min..max over rounds, and the median of per-round ratios (ours / tv images/s).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from compare_torchvision import machine_info, torchvision_retinanet


class Interleave:
    """A training callback that times our run in windows of ``steps`` steps and runs torchvision's
    measurements between them: after one warm-up step each, rounds of (ours, tv), the order flipping every
    round. Our window runs from the end of the previous measurement to the end of its last step, so it
    includes loading the batches."""

    def __init__(self, rounds: int, steps: int, batch: int, make_tv: Callable[[int], Callable[[], None]],
                 log=print):
        self.rounds, self.steps, self.batch, self.make_tv, self.log = rounds, steps, batch, make_tv, log
        self.times: dict[str, list[float]] = {"ours": [], "tv": []}
        self.tv: Callable[[], None] | None = None
        self.t0 = 0.0

    def after_step(self, trainer, it: int, losses) -> None:
        if it == 0:  # warm-up: first allocations, oneDNN kernel selection, file cache
            self.tv = self.make_tv(len(trainer.train_set.class_names))
            self.tv()
        elif it % self.steps == 0:  # the last step of round r's window
            r = it // self.steps - 1
            self.times["ours"].append(time.perf_counter() - self.t0)
            if r % 2 == 0:  # round r: ours then tv; round r + 1: tv first
                self._time_tv()
                self._log(r)
                if r + 1 < self.rounds:
                    self._time_tv()
            else:
                self._log(r)
        self.t0 = time.perf_counter()

    def _time_tv(self) -> None:
        t0 = time.perf_counter()
        for _ in range(self.steps):
            self.tv()
        self.times["tv"].append(time.perf_counter() - t0)

    def _log(self, r: int) -> None:
        self.log(f"round {r + 1}/{self.rounds}: " + ", ".join(f"{k} {self.steps * self.batch / v[r]:.2f} img/s"
                                                               for k, v in self.times.items()))


def _ours(data_dir: str, size: int, batch: int, backbone: str, workers: int, out: str, callback: Interleave):
    """Our training run on ``data_dir``, 1 warm-up step then ``rounds`` windows of ``steps`` steps, observed by
    ``callback``."""
    from metaanchor.config import load_config
    from metaanchor.engine.train import train

    iters = 1 + callback.rounds * callback.steps
    cfg = load_config(None, [f"data.train={data_dir}", f"model.backbone={backbone}", "model.fpn_channels=256",
                             "model.head_convs=4", f"input.size={size}", f"solver.batch_size={batch}",
                             f"solver.max_iter={iters}", f"log.period={iters}", f"checkpoint.period={iters}",
                             f"data.workers={workers}", "device=cpu"])
    train(cfg, out, progress=False, callbacks=[callback])


def _torchvision(data_dir: str, size: int, batch: int, backbone: str, workers: int, num_classes: int):
    """Step function: torchvision's RetinaNet fed by a references-style CocoDetection + transforms v2 loader."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2
    from torchvision.transforms import v2

    root = Path(data_dir)
    transforms = v2.Compose([v2.ToImage(), v2.RandomHorizontalFlip(0.5), v2.ToDtype(torch.float32, scale=True),
                             v2.SanitizeBoundingBoxes()])
    ds = wrap_dataset_for_transforms_v2(CocoDetection(str(root / "images"), str(root / "annotations.json"),
                                                      transforms=transforms), target_keys=("boxes", "labels"))
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        collate_fn=lambda b: tuple(zip(*b)), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = torchvision_retinanet(backbone, num_classes + 1, size).train()  # labels are category ids 1..C
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    batches = _forever(loader)

    def step():
        images, targets = next(batches)
        losses = model(list(images), [{k: t[k] for k in ("boxes", "labels")} for t in targets])
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()
    return step


def _forever(loader):
    while True:
        yield from loader


def bench_train_real(data_dir: str | Path, size: int = 512, batch: int = 2, backbone: str = "resnet18",
                     rounds: int = 3, steps: int = 2, workers: int = 0, log=print) -> dict:
    """Images/s of a training step with data loading, ours vs torchvision, interleaved; see the module docstring."""
    started = time.perf_counter()
    callback = Interleave(rounds, steps, batch,
                          lambda n: _torchvision(str(data_dir), size, batch, backbone, workers, n), log)
    with tempfile.TemporaryDirectory() as out:
        _ours(str(data_dir), size, batch, backbone, workers, out, callback)
    ips = {k: [steps * batch / t for t in v] for k, v in callback.times.items()}
    ratios = [o / t for o, t in zip(ips["ours"], ips["tv"])]
    return {"data": str(data_dir), "size": size, "batch": batch, "backbone": backbone, "rounds": rounds,
            "steps_per_round": steps, "workers": workers, "machine": machine_info(torch.device("cpu")),
            "load_avg_1min": os.getloadavg()[0],
            **{f"{k}_img_s": {"median": statistics.median(v), "min": min(v), "max": max(v), "all": v}
               for k, v in ips.items()},
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "wall_s": time.perf_counter() - started}


def format_report(r: dict) -> str:
    lines = [f"training throughput on {r['data']} ({r['backbone']}-FPN, {r['size']} px, batch {r['batch']}, "
             f"{r['rounds']} rounds x {r['steps_per_round']} steps, {r['machine']['threads']} threads, "
             f"workers {r['workers']}, load avg {r['load_avg_1min']:.1f})"]
    for k in ("ours", "tv"):
        s = r[f"{k}_img_s"]
        lines.append(f"  {k:<5} {s['median']:.2f} img/s median (min {s['min']:.2f}, max {s['max']:.2f})")
    lines.append(f"  ours / tv images/s: median {r['ratio_median']:.2f} (per-round min {r['ratio_min']:.2f}, "
                 f"max {r['ratio_max']:.2f}); wall {r['wall_s']:.0f} s")
    return "\n".join(lines)
