"""Training batches: seeded, resumable batch order and augmentation; unreadable images as ``BadItem``."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, DistributedSampler

from metaanchor.data.augment import Compose, PhotometricJitter, RandomHorizontalFlip
from metaanchor.data.coco import CocoDataset, collate
from metaanchor.errors import ConfigError, DataError


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
    """Wraps a dataset; items are fetched as (index, epoch) so augmentation is seeded and repeatable."""

    def __init__(self, dataset, seed: int, hflip: float, photometric: float):
        self.dataset, self.seed = dataset, seed
        self.hflip, self.photometric = hflip, photometric

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, epoch = key
        try:
            image, target = self.dataset[index]
        except DataError as e:
            return BadItem(str(e))
        g = torch.Generator().manual_seed(hash((self.seed, epoch, index)) & 0x7FFFFFFF)
        ops = [RandomHorizontalFlip(self.hflip, generator=g)] if self.hflip > 0 else []
        if self.photometric > 0:
            s = self.photometric
            ops.append(PhotometricJitter(s, s, s, generator=g))
        return Compose(ops)(image, target) if ops else (image, target)


class ResumableBatches:
    """Batch sampler over iterations ``start..max_iter``: each epoch is a
    ``DistributedSampler`` permutation (seeded by seed + epoch), cut into per-rank batches."""

    def __init__(self, dataset, batch_size: int, start: int, max_iter: int, seed: int, rank: int, world: int):
        self.sampler = DistributedSampler(range(len(dataset)), num_replicas=world, rank=rank, shuffle=True,
                                          seed=seed, drop_last=False)
        self.batch = batch_size // world
        self.per_epoch = max(1, len(self.sampler) // self.batch)
        self.start, self.max_iter = start, max_iter

    def __len__(self) -> int:
        return self.max_iter - self.start

    def __iter__(self):
        it = self.start
        while it < self.max_iter:
            epoch, pos = divmod(it, self.per_epoch)
            self.sampler.set_epoch(epoch)
            order = list(self.sampler)
            for p in range(pos, self.per_epoch):
                if it >= self.max_iter:
                    return
                yield [(i, epoch) for i in order[p * self.batch:(p + 1) * self.batch]]
                it += 1


def load_dataset(cfg: dict, split: str, skip_invalid: bool, fail_fast: bool = False) -> CocoDataset:
    """``data.<split>`` (a dataset folder, or a JSON file with ``data.<split>_images``)."""
    path = cfg["data"][split]
    if not path:
        raise ConfigError(f"config key data.{split} is not set: give a dataset folder (data.{split}=DIR)")
    return CocoDataset(path, cfg["data"][f"{split}_images"], skip_invalid=skip_invalid, fail_fast=fail_fast,
                       max_image_pixels=cfg["data"].get("max_image_pixels"))
