"""input.augment presets (torchvision transforms.v2, box-aware): boxes stay inside, empty ones dropped,
deterministic per (seed, epoch, index), and the original flip/photometric path unchanged."""

import pytest
import torch

from metaanchor.config import load_config
from metaanchor.data.augment import (
    PRESETS,
    Compose,
    PhotometricJitter,
    RandomHorizontalFlip,
    _short_sides,
    apply_seeded,
    build_preset,
)
from metaanchor.data.loader import AugmentedDataset
from metaanchor.errors import ConfigError


def _sample(seed: int, h: int = 60, w: int = 80):
    """A random image with boxes of every kind: normal, thin (< 1 px), sticking out, at the border."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(6, 2, generator=g) * torch.tensor([w, h])
    wh = torch.rand(6, 2, generator=g) * 30 + 0.2
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[0, 2] = boxes[0, 0] + 0.5  # under 1 px wide
    boxes[1] = torch.tensor([w - 5.0, h - 5.0, w + 10.0, h + 10.0])  # sticks out
    return torch.rand(3, h, w, generator=g), {"boxes": boxes, "labels": torch.arange(6), "image_id": 7}


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_keeps_boxes_inside_and_drops_empty_ones(name):
    preset = build_preset(name, 64, 96)
    for seed in range(40):
        image, target = _sample(seed)
        out, t = apply_seeded(preset, seed, image, target)
        h, w = out.shape[-2:]
        b = t["boxes"]
        assert out.dtype == torch.float32 and out.dim() == 3 and type(b) is torch.Tensor
        assert b.shape == (len(t["labels"]), 4) and t["image_id"] == 7
        assert (b[:, :2] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert ((b[:, 2:] - b[:, :2]) >= 1).all()  # boxes under 1 px (or empty after a crop) are gone
        if name == "none":
            assert 0 not in t["labels"].tolist() and 1 in t["labels"].tolist()  # 0.5 px box dropped with its label
        else:
            assert min(h, w) in _short_sides(64, 0.75, 1.25) or max(h, w) <= round(1.25 * 96)


def test_none_preset_only_clamps_and_sanitizes():
    image, target = _sample(3)
    out, t = apply_seeded(build_preset("none", 64, 96), 0, image, target)
    assert torch.equal(out, image)
    assert t["boxes"][0].tolist() == target["boxes"][1].clamp(max=torch.tensor([80.0, 60, 80, 60])).tolist()


@pytest.mark.parametrize("name", ["light", "standard"])
def test_preset_is_deterministic_per_key_and_leaves_the_global_rng_alone(name):
    data = _FakeData()
    aug = AugmentedDataset(data, seed=11, hflip=0.0, photometric=0.0, augment=name, size=(64, 96))
    state = torch.random.get_rng_state()
    a = aug[(2, 5)]
    assert torch.equal(torch.random.get_rng_state(), state)
    b = aug[(2, 5)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    others = [aug[(2, e)] for e in range(6)] + [aug[(i, 5)] for i in range(4)]
    assert any(o[0].shape != a[0].shape or not torch.equal(o[0], a[0]) for o in others)


class _FakeData:
    """A dataset stand-in: ``load(index, size_for)`` gives ``_sample(index)`` at the requested size."""

    def __len__(self):
        return 8

    def load(self, index, size_for=None):
        image, target = _sample(index)
        h, w = size_for(*image.shape[-2:]) if size_for else image.shape[-2:]
        scale = torch.tensor([w / image.shape[-1], h / image.shape[-2]] * 2)
        image = torch.nn.functional.interpolate(image[None], size=(h, w), mode="bilinear")[0]
        return image, {**target, "boxes": target["boxes"] * scale}


def test_unset_preset_keeps_the_original_flip_and_photometric_path():
    aug = AugmentedDataset(_FakeData(), seed=4, hflip=0.5, photometric=0.3, size=(60, 80))
    for index, epoch in [(0, 0), (1, 3), (5, 2)]:
        image, target = _FakeData().load(index, aug._size_for)
        g = torch.Generator().manual_seed(hash((4, epoch, index)) & 0x7FFFFFFF)
        ref = Compose([RandomHorizontalFlip(0.5, generator=g), PhotometricJitter(0.3, 0.3, 0.3, generator=g)])
        ref_image, ref_target = ref(image, target)
        got_image, got_target = aug[(index, epoch)]
        assert torch.equal(got_image, ref_image) and torch.equal(got_target["boxes"], ref_target["boxes"])


def test_presets_parse_from_config_and_bad_name_is_an_exact_error():
    assert load_config(None, [])["input"]["augment"] is None
    for name in PRESETS:
        assert load_config(None, [f"input.augment={name}"])["input"]["augment"] == name
    with pytest.raises(ConfigError) as e:
        load_config(None, ["input.augment=heavy"])
    assert str(e.value) == "config key input.augment: 'heavy' is not one of none, light, standard"
    with pytest.raises(ConfigError) as e:
        build_preset("Standard", 64, 64)
    assert str(e.value) == "config key input.augment: 'Standard' is not one of none, light, standard"


def test_multi_scale_short_sides():
    assert _short_sides(512, 0.8, 1.2) == [416, 448, 480, 512, 544, 576, 608]
    assert _short_sides(64, 0.75, 1.25) == [64]
    assert _short_sides(100, 0.75, 1.25) == [96, 100]
