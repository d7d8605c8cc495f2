"""What the comparison with torchvision measures (``metaanchor bench``)."""

from __future__ import annotations

from dataclasses import dataclass

SETTINGS = {"default": 0.05, "many": 0.0}  # score_thresh of both models; "many": every candidate goes to NMS
HEADLINE_SETTING = "many"
DEFAULT_ROUNDS = 5
QUICK_ROUNDS = 2


@dataclass
class BenchConfig:
    """The models and measurements of one comparison.

    Both models: ``backbone``-FPN (P3..P7), ``fpn_channels`` channels, 4-conv heads, 9 anchors,
    ``num_classes`` classes, square ``size`` px input, random weights. ``infer_batches``: inference
    batch sizes; ``train_batches``: training-step batch sizes; ``rounds``: interleaved timed rounds of
    each measurement (ratios are the median over rounds, with min..max); ``plain_batches``: batch sizes
    where our un-optimised model is timed too; ``mem_batch``: inference batch of the peak-memory
    measurement. ``amp``: autocast on both sides, float16 on CUDA and bfloat16 on a CPU (None: on CUDA only).
    """

    backbones: tuple[str, ...] = ("resnet50", "resnet18")
    size: int = 512
    num_classes: int = 80
    fpn_channels: int = 256
    infer_batches: tuple[int, ...] = (1, 8)
    train_batches: tuple[int, ...] = (4,)
    rounds: int = DEFAULT_ROUNDS
    plain_batches: tuple[int, ...] = (1, 8)
    mem_batch: int = 1
    matmul_size: int = 2048
    device: str = "cpu"
    amp: bool | None = None

    @classmethod
    def quick(cls, device: str = "cpu") -> BenchConfig:
        """``--quick``: ResNet-18 only, fewer rounds, training at batch 2 (minutes on 2 CPU cores)."""
        return cls(backbones=("resnet18",), rounds=QUICK_ROUNDS, plain_batches=(1,), train_batches=(2,),
                   device=device)

    @classmethod
    def tiny(cls, device: str = "cpu") -> BenchConfig:
        """Seconds on a CPU: the tiny backbone at 96 px, 3 classes (tests, dry runs)."""
        return cls(backbones=("tiny",), size=96, num_classes=3, fpn_channels=32, infer_batches=(1, 2),
                   train_batches=(2,), rounds=1, plain_batches=(1,), matmul_size=256, device=device)

    @property
    def use_amp(self) -> bool:
        """Whether both models run under autocast: ``amp``, or on CUDA when it is None."""
        return self.amp if self.amp is not None else self.device.startswith("cuda")

    def check(self) -> None:
        """A ValueError naming the first setting out of range."""
        for name in ("size", "num_classes", "fpn_channels", "rounds", "mem_batch", "matmul_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be at least 1")
        for name in ("backbones", "infer_batches", "train_batches"):
            if not getattr(self, name):
                raise ValueError(f"{name}: give at least one")
        for name in ("infer_batches", "train_batches", "plain_batches"):
            bad = [b for b in getattr(self, name) if b < 1]
            if bad:
                raise ValueError(f"{name}={list(getattr(self, name))}: batch sizes must be at least 1")
