"""data.loader: orientation-grouped, resumable batches; images read at the input size with their boxes scaled."""

import math

import pytest
import torch
from data_samples import _coco_folder, _gradient_image, _rotated_jpeg

from metaanchor.data.coco import CocoDataset
from metaanchor.data.loader import AugmentedDataset, ResumableBatches, orientation_groups
from metaanchor.modeling.transform import ImageBatcher


class _Images:
    """Stands in for a dataset: only ``images`` (width/height) and ``len``."""

    def __init__(self, sizes):
        self.images = [{"width": w, "height": h} for w, h in sizes]

    def __len__(self):
        return len(self.images)


def _mixed(n_portrait, n_landscape):
    return _Images([(30, 40)] * n_portrait + [(40, 30)] * n_landscape)


def test_orientation_groups_come_from_annotation_sizes():
    assert orientation_groups(_Images([(30, 40), (40, 30), (50, 50)])) == [0, 1, 0]  # square counts as h >= w


@pytest.mark.parametrize("world", [1, 2])
def test_grouped_batches_never_mix_orientations_and_cover_each_epoch(world):
    data = _mixed(13, 22)
    groups = orientation_groups(data)
    batch = 4 * world
    for epoch in range(3):
        seen = []
        for rank in range(world):
            sampler = ResumableBatches(data, batch, 0, 100, seed=5, rank=rank, world=world, groups=groups)
            batches = sampler.epoch_batches(epoch)
            assert len(batches) == sampler.per_epoch == math.ceil(35 / world) // 4  # same count as ungrouped
            for b in batches:
                assert len({groups[i] for i in b}) == 1
            flat = [i for b in batches for i in b]
            assert len(flat) == len(set(flat))  # no image twice in a rank's epoch
            left_out = [i for i in list(sampler.sampler) if i not in flat]
            # only the leftovers of each group (fewer than one batch per group) are left out
            for g in (0, 1):
                assert sum(groups[i] == g for i in left_out) < 4
            seen += flat
        assert len(set(seen)) >= 35 - 2 * 3 * world


def test_grouped_batches_leftover_rule():
    """3 portrait + 3 landscape, batch 4: one batch per epoch (6 // 4); no full buffer, so the largest
    leftover is the batch, and on a tie the lower group id (portrait) wins."""
    data = _mixed(3, 3)
    sampler = ResumableBatches(data, 4, 0, 10, seed=0, rank=0, world=1, groups=orientation_groups(data))
    for epoch in range(4):
        (b,) = sampler.epoch_batches(epoch)
        assert sorted(b) == [0, 1, 2]
    data = _mixed(5, 2)  # one full portrait batch; 7 // 4 = 1 batch: the leftovers are dropped
    sampler = ResumableBatches(data, 4, 0, 10, seed=0, rank=0, world=1, groups=orientation_groups(data))
    (b,) = sampler.epoch_batches(0)
    assert len(b) == 4 and max(b) < 5


def test_single_group_gives_the_ungrouped_order():
    data = _Images([(40, 30)] * 23)
    plain = ResumableBatches(data, 4, 0, 30, seed=3, rank=0, world=1)
    grouped = ResumableBatches(data, 4, 0, 30, seed=3, rank=0, world=1, groups=orientation_groups(data))
    assert list(plain) == list(grouped)


@pytest.mark.parametrize("start", [1, 5, 9, 14])
def test_grouped_batches_resume_exactly(start):
    data = _mixed(9, 14)
    groups = orientation_groups(data)
    full = list(ResumableBatches(data, 4, 0, 20, seed=1, rank=0, world=1, groups=groups))
    resumed = list(ResumableBatches(data, 4, start, 20, seed=1, rank=0, world=1, groups=groups))
    assert len(full) == 20 and resumed == full[start:]
    assert full[:5] != full[5:10]  # epochs are reshuffled


def test_loader_reads_images_at_the_input_size_and_scales_boxes(tmp_path):
    img = _gradient_image(200, 100)
    ds = CocoDataset(_coco_folder(tmp_path, {"a.jpg": (img, (200, 100))}, {"a.jpg": [[20, 10, 40, 30]]}))
    image, target = AugmentedDataset(ds, 0, 0.0, 0.0, size=(50, 80))[(0, 0)]
    assert image.shape == (3, 40, 80) and image.dtype == torch.float32  # long side capped at 80
    assert target["boxes"].tolist() == [[8.0, 4.0, 24.0, 16.0]]
    # the same pixels, within JPEG/resampling noise, as the model's own resize of the full image
    full, _ = ds[0]
    batcher = ImageBatcher(50, 80).eval()
    ref = torch.nn.functional.interpolate(full[None], size=(40, 80), mode="bilinear", antialias=True)[0]
    assert (image - ref).abs().mean() < 0.02
    assert batcher([full])[2] == [(40, 80)]


def test_exif_rotated_photo_matches_displayed_annotation_size(tmp_path):
    ds = CocoDataset(_coco_folder(tmp_path, {"r.jpg": (_rotated_jpeg(), (20, 40))}, {"r.jpg": [[2, 4, 10, 20]]}))
    image, target = AugmentedDataset(ds, 0, 0.0, 0.0, size=(10, 40))[(0, 0)]
    assert image.shape == (3, 20, 10) and target["boxes"].tolist() == [[1.0, 2.0, 6.0, 12.0]]
