"""The Python entry points: load a checkpoint and predict to ``Results``, train from a config.

    import metaanchor
    det = metaanchor.load("runs/demo/last.pt")              # a Predictor (any family)
    results = det("street.jpg")                             # or det.predict(...): list[Results]
    results = det(["a.jpg", "imgs/*.png", pil, frame], bgr=True, anchors="5x5")
    metaanchor.train("demo", out="runs/x", overrides={"solver.max_iter": 100})

Why a wrapper and not ``model(...)``: a detector is an ``nn.Module`` whose ``__call__`` is ``forward``
(training losses, or eval-mode per-image dicts, as torchvision's detectors); the training loop, DDP,
the evaluator and the exporters call it with lists of tensors. ``Predictor`` is the user-facing object
(paths, PIL, numpy, tensors in; ``Results`` out) around that model, which stays ``predictor.model``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from metaanchor.defaults import PREDICT_SCORE_THRESH
from metaanchor.engine.device import resolve_device
from metaanchor.engine.predict import predict_images
from metaanchor.engine.results import Results
from metaanchor.errors import ConfigError
from metaanchor.families import load_detector
from metaanchor.geometry.anchors import AnchorSet


class Predictor:
    """A detector for use from Python: ``predictor(source)`` -> one ``Results`` per image.

    ``source``: a path, folder or glob pattern, a PIL image, a numpy array ([H, W, 3] uint8 RGB, or BGR
    with ``bgr=True``; [H, W] grayscale; [B, H, W, 3] a batch), a tensor ([3, H, W] or [B, 3, H, W] float
    in [0, 1]) or a list of any of these. ``model``: any ``BaseDetector`` (RetinaNet, YOLOv2)."""

    def __init__(self, model, device: str | torch.device | None = None):
        self.model = model.eval()
        if device is not None:
            self.to(device)

    @property
    def names(self) -> list[str]:
        """The C class names; ``Results.labels`` index them."""
        return list(self.model.class_names)

    @property
    def anchors(self) -> AnchorSet:
        """The anchor set used when ``predict`` is given none."""
        return self.model.anchors

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Predictor:
        """Move the model to ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``); returns self."""
        self.model.to(resolve_device(device) if isinstance(device, str) else device)
        return self

    def set_anchors(self, anchors: str | AnchorSet) -> AnchorSet:
        """Use another anchor set from now on (any set for MetaAnchor heads); returns it."""
        return self.model.set_anchors(anchors)

    def predict(self, source, anchors: str | AnchorSet | None = None, score_thresh: float = PREDICT_SCORE_THRESH,
                batch_size: int = 8, bgr: bool = False, stream: bool = False,
                keep_images: bool = True) -> list[Results] | Iterator[Results]:
        """Detections of every image in ``source``, in order: a list of ``Results`` (an iterator with
        ``stream=True``, so a large folder is not held in memory at once).

        ``anchors`` overrides the anchor set for this call; ``score_thresh``: minimum score kept
        (``metaanchor.defaults.PREDICT_SCORE_THRESH``); ``bgr``: numpy arrays are OpenCV BGR frames."""
        results = predict_images(self.model, source, anchors, score_thresh, batch_size, bgr, keep_images)
        return results if stream else list(results)

    __call__ = predict

    def __repr__(self) -> str:
        m = self.model
        return (f"Predictor({m.arch}, head={m.head_type}, {m.num_classes} classes, anchors={m.anchors.spec}, "
                f"device={self.device})")


def load(checkpoint: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """A ``Predictor`` for a checkpoint of any family (``metaanchor.families.load_detector``) on ``device``
    (``auto``: the GPU when there is one). Errors name the file (``CheckpointError``)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    return Predictor(load_detector(checkpoint, map_location=dev), dev)


def predict(checkpoint: str | Path, source, device: str | torch.device = "cpu", **kwargs) -> list[Results]:
    """``load(checkpoint, device).predict(source, **kwargs)``: one call for a one-off prediction."""
    return load(checkpoint, device).predict(source, **kwargs)


def override_texts(overrides: Mapping | list | tuple | None, keywords: Mapping) -> list[str]:
    """Overrides as the command line's ``KEY=VALUE`` texts: a ``{"solver.max_iter": 100}`` dict, a list of
    ``"KEY=VALUE"`` strings, and keywords with ``__`` for the dot (``solver__max_iter=100``), in that order.
    Values are written as JSON, which the config reads back as the same value (YAML is a superset)."""
    if overrides is None:
        pairs = []
    elif isinstance(overrides, Mapping):
        pairs = list(overrides.items())
    elif isinstance(overrides, (list, tuple)) and all(isinstance(t, str) for t in overrides):
        return list(overrides) + override_texts(None, keywords)
    else:
        raise ConfigError(f"overrides: expected a dict {{'KEY': value}} or a list of 'KEY=VALUE' strings, "
                          f"got {overrides!r:.100}")
    pairs += [(k.replace("__", "."), v) for k, v in keywords.items()]
    return [f"{k}={json.dumps(v)}" for k, v in pairs]


def train(config: str | Path | dict | None = None, out: str | Path = "runs/train",
          overrides: Mapping | list | tuple | None = None, resume: bool = False, progress: bool = True,
          fail_fast: bool = False, callbacks: list | tuple = (), **keywords) -> dict:
    """Train a detector as ``metaanchor train`` does; writes the run folder ``out`` and returns the summary
    (``iterations``, ``wall_time_s``, ``metrics`` per anchor set, ...). The model is ``out/last.pt``.

    ``config``: a YAML file, a shipped config's name (``demo``, ``bccd``, ...), a config dict already made by
    ``metaanchor.load_config`` (then no overrides), or None for the defaults. ``overrides``: config keys as
    ``{"solver.max_iter": 100}`` or ``["solver.max_iter=100"]``; keywords with ``__`` for the dot add more
    (``solver__max_iter=100``). ``resume``, ``fail_fast``, ``callbacks``: as ``engine.train.Trainer``."""
    from metaanchor.config import load_config, validate
    from metaanchor.engine.train import train as run

    texts = override_texts(overrides, keywords)
    if isinstance(config, dict):
        if texts:
            raise ConfigError("train: a config dict takes no overrides; set them with "
                              "metaanchor.load_config(path, ['KEY=VALUE', ...]) instead")
        cfg = validate(config)
    else:
        cfg = load_config(config, texts)
    return run(cfg, out, resume=resume, progress=progress, fail_fast=fail_fast, callbacks=callbacks)
