"""Training batches: seeded, resumable, orientation-grouped batch order; images read at the network's
input size and augmented in the data-loader workers; unreadable images as ``BadItem``."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, DistributedSampler

from metaanchor.data.augment import Compose, PhotometricJitter, RandomHorizontalFlip, apply_seeded, build_preset
from metaanchor.data.coco import CocoDataset, collate
from metaanchor.data.sources import open_dataset
from metaanchor.errors import ConfigError, DataError
from metaanchor.geometry.resize import resized_size


class BadItem:
    """Stands in for a dataset item whose image could not be read (the loader never raises for one:
    a worker's exception would come back as a multi-line message); the training loop decides."""

    def __init__(self, message: str):
        self.message = message


def collate_train(batch: list) -> tuple[list, list, list[str]]:
    """Like ``collate``, plus the messages of the unreadable items it left out."""
    good = [b for b in batch if not isinstance(b, BadItem)]
    images, targets = collate(good)
    return images, targets, [b.message for b in batch if isinstance(b, BadItem)]


class AugmentedDataset(Dataset):
    """Wraps a ``CocoDataset``; items are fetched as (index, epoch) so augmentation is seeded and repeatable.

    With ``size = (min_size, max_size)`` each image is read straight at the network's input size
    (``modeling.transform.resized_size``; boxes scaled with it), in the worker, so the model only
    normalises and pads. ``augment`` names an ``input.augment`` preset (``data.augment.PRESETS``);
    None keeps the original ``hflip`` / ``photometric`` pair.
    """

    def __init__(self, dataset, seed: int, hflip: float, photometric: float, augment: str | None = None,
                 size: tuple[int, int] | None = None):
        self.dataset, self.seed = dataset, seed
        self.hflip, self.photometric = hflip, photometric
        self.size = size
        self.preset = build_preset(augment, *size) if augment is not None and size else None
        if augment is not None and not size:
            raise ConfigError("input.augment needs the network's input size")

    def __len__(self) -> int:
        return len(self.dataset)

    def _size_for(self, h: int, w: int) -> tuple[int, int]:
        return resized_size(h, w, *self.size)

    def __getitem__(self, key):
        index, epoch = key
        try:
            image, target = self.dataset.load(index, self._size_for if self.size else None)
        except DataError as e:
            return BadItem(str(e))
        item_seed = hash((self.seed, epoch, index)) & 0x7FFFFFFF
        if self.preset is not None:
            return apply_seeded(self.preset, item_seed, image, target)
        g = torch.Generator().manual_seed(item_seed)
        ops = [RandomHorizontalFlip(self.hflip, generator=g)] if self.hflip > 0 else []
        if self.photometric > 0:
            s = self.photometric
            ops.append(PhotometricJitter(s, s, s, generator=g))
        return Compose(ops)(image, target) if ops else (image, target)


def orientation_groups(dataset) -> list[int]:
    """Per image: 1 if landscape (height < width), else 0, from the annotation's width/height (no decoding)."""
    return [int(img["height"] < img["width"]) for img in dataset.images]


class ResumableBatches:
    """Batch sampler over iterations ``start..max_iter``: each epoch is a
    ``DistributedSampler`` permutation (seeded by seed + epoch), cut into per-rank batches.

    ``groups`` (one int per image, e.g. :func:`orientation_groups`) makes every batch come from one group,
    as torchvision's ``GroupedBatchSampler``: walking the rank's permutation, an image joins its group's
    buffer, and a full buffer is the next batch. An epoch has ``len(rank's images) // batch`` batches
    with or without groups (at least one); when the full buffers fall short of that, the largest leftover
    buffers (then the lower group id) are the last batches, shorter than the others. So no image appears
    twice in an epoch, and the images left out are the leftovers (fewer than one batch per group) of
    that epoch's permutation. With a single group it is exactly the ungrouped order.
    """

    def __init__(self, dataset, batch_size: int, start: int, max_iter: int, seed: int, rank: int, world: int,
                 groups: list[int] | None = None):
        self.sampler = DistributedSampler(range(len(dataset)), num_replicas=world, rank=rank, shuffle=True,
                                          seed=seed, drop_last=False)
        self.batch = batch_size // world
        self.per_epoch = max(1, len(self.sampler) // self.batch)
        self.start, self.max_iter = start, max_iter
        self.groups = groups

    def __len__(self) -> int:
        return self.max_iter - self.start

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's ``per_epoch`` batches (dataset indices) of ``epoch``."""
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        if self.groups is None:
            return [order[p * self.batch:(p + 1) * self.batch] for p in range(self.per_epoch)]
        batches, buffers = [], {}
        for i in order:
            buf = buffers.setdefault(self.groups[i], [])
            buf.append(i)
            if len(buf) == self.batch:
                batches.append(buf)
                buffers[self.groups[i]] = []
        leftovers = sorted(((-len(b), g, b) for g, b in buffers.items() if b), key=lambda x: x[:2])
        batches += [b for _, _, b in leftovers[:self.per_epoch - len(batches)]]
        return batches[:self.per_epoch]

    def __iter__(self):
        it = self.start
        while it < self.max_iter:
            epoch, pos = divmod(it, self.per_epoch)
            for batch in self.epoch_batches(epoch)[pos:]:
                if it >= self.max_iter:
                    return
                yield [(i, epoch) for i in batch]
                it += 1


def load_dataset(cfg: dict, split: str, skip_invalid: bool, fail_fast: bool = False) -> CocoDataset:
    """``data.<split>`` read in place (``data.sources``): a COCO folder or JSON (with ``data.<split>_images``),
    a VOC root or a data.yaml, whose split is ``data.<split>_split``."""
    d = cfg["data"]
    if not d[split]:
        raise ConfigError(f"config key data.{split} is not set: give a dataset folder (data.{split}=DIR)")
    chosen = d.get(f"{split}_split") or split
    return open_dataset(d[split], d[f"{split}_images"], None if chosen == split else chosen, default_split=split,
                        option=f"data.{split}", skip_invalid=skip_invalid, fail_fast=fail_fast,
                        max_image_pixels=d.get("max_image_pixels"))
