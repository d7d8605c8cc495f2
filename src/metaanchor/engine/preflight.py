"""What training says before its first step: the start banner's facts and the settings that defeat themselves."""

from __future__ import annotations

import torch

from metaanchor.engine.device import device_label
from metaanchor.engine.schedule import lr_factor


def run_facts(trainer) -> dict[str, str]:
    """What the start banner says about this run."""
    cfg, s = trainer.cfg, trainer.cfg["solver"]
    m = cfg["model"]
    params = sum(p.numel() for p in trainer.model.parameters())
    a = cfg["anchors"]
    sampled = f", sampled (jitter scale {a['scale_jitter']:g}, ratio {a['ratio_jitter']:g})" if (
        a["sample"] and trainer.model.takes_any_anchors) else ""
    amp = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(trainer.amp_dtype, "off")
    epochs = trainer.epochs or -(-s["max_iter"] // trainer.per_epoch)
    processes = f" x {trainer.world} processes" if trainer.distributed else ""
    facts = {"device": f"{device_label(trainer.device)}{processes}",
             "AMP": amp,
             "model": f"{m['arch']}, backbone {m.get('backbone', '?')}, head {m.get('head', '?')}, "
                      f"{params:,} parameters",
             "anchors": f"{trainer.base_anchors.spec}{sampled}"
                        + (f"; also evaluated: {', '.join(a['eval'])}" if a["eval"] else ""),
             "train data": split_facts(trainer.train_set)}
    facts["val data"] = split_facts(trainer.val_set) if trainer.val_set else "none (no validation)"
    facts["schedule"] = (f"{s['max_iter']} iterations ({epochs} epochs x {trainer.per_epoch}), batch "
                         f"{s['batch_size']}, lr {s['lr']:g}, warm-up {s['warmup_iters']}, {s['schedule']}")
    if trainer.state.iteration:
        facts["schedule"] += f"; resuming at iteration {trainer.state.iteration}"
    facts["output"] = str(trainer.out)
    return facts


def self_defeating_settings(cfg: dict, train_images: int) -> list[str]:
    """One message per setting that defeats itself: warm-up that outlasts training, a validation period
    longer than training, a batch larger than the training set."""
    s, out = cfg["solver"], []
    if s["warmup_iters"] >= s["max_iter"]:
        n = s["max_iter"]
        peak = s["lr"] * max(lr_factor(i, s) for i in [*range(0, n, max(1, n // 1000)), n - 1])
        out.append(f"solver.warmup_iters={s['warmup_iters']} >= solver.max_iter={n}: training ends during "
                   f"warm-up; lr peaks at {peak:.3g}, not solver.lr={s['lr']:g}")
    if cfg["data"]["val"] and cfg["eval"]["period"] > s["max_iter"]:
        out.append(f"eval.period={cfg['eval']['period']} > solver.max_iter={s['max_iter']}: "
                   "no validation before the final one")
    if s["batch_size"] > train_images:
        out.append(f"solver.batch_size={s['batch_size']} is larger than the training set ({train_images} images): "
                   f"every batch holds at most {train_images} images")
    return out


def split_facts(dataset) -> str:
    return f"{len(dataset)} images, {len(dataset.class_names)} classes"
