"""Synthetic shapes dataset: determinism, box distribution, config parsing, disk round trip."""

import json
import math

import numpy as np
import pytest
import torch

from metaanchor.data import (
    DISTRIBUTIONS,
    CocoDataset,
    SynthConfig,
    SynthDataset,
    collate,
    render_sample,
    synth_config,
    write_synth_dataset,
)
from metaanchor.errors import UserError


def test_same_seed_and_index_render_identical_pixels_and_boxes():
    cfg = SynthConfig(seed=7)
    for index in (0, 5, 123):
        img_a, boxes_a, labels_a = render_sample(cfg, index)
        img_b, boxes_b, labels_b = render_sample(SynthConfig(seed=7), index)
        assert np.array_equal(np.asarray(img_a), np.asarray(img_b))
        assert np.array_equal(boxes_a, boxes_b) and np.array_equal(labels_a, labels_b)


def test_sample_does_not_depend_on_other_indices_rendered_before():
    cfg = SynthConfig(seed=3)
    fresh = np.asarray(render_sample(cfg, 9)[0])
    for index in range(5):
        render_sample(cfg, index)
    assert np.array_equal(fresh, np.asarray(render_sample(cfg, 9)[0]))


def test_different_seed_or_index_gives_different_images():
    a = np.asarray(render_sample(SynthConfig(seed=0), 0)[0])
    assert not np.array_equal(a, np.asarray(render_sample(SynthConfig(seed=1), 0)[0]))
    assert not np.array_equal(a, np.asarray(render_sample(SynthConfig(seed=0), 1)[0]))


def test_image_mode_size_and_output_types():
    img, boxes, labels = render_sample(SynthConfig(image_size=96, num_classes=6), 0)
    assert img.mode == "RGB" and img.size == (96, 96)
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
    assert labels.dtype == np.int64


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_boxes_inside_image_and_sizes_ratios_in_configured_range(name):
    cfg = synth_config([name, "num_classes=6"])
    sizes, counts, labels_seen = [], [], set()
    for index in range(60):
        _, boxes, labels = render_sample(cfg, index)
        counts.append(len(boxes))
        labels_seen.update(labels.tolist())
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= cfg.image_size).all()
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        assert (w > 0).all() and (h > 0).all()
        # Rasterisation rounds each sampled side to whole pixels (at most 0.5 px each).
        assert (np.sqrt((w + 0.5) * (h + 0.5)) >= cfg.min_size).all()
        assert (np.sqrt((w - 0.5) * (h - 0.5)) <= cfg.max_size).all()
        assert ((h + 0.5) / (w - 0.5) >= cfg.min_ratio).all()
        assert ((h - 0.5) / (w + 0.5) <= cfg.max_ratio).all()
        sizes += np.sqrt(w * h).tolist()
    assert 1 <= min(counts) and max(counts) <= cfg.max_objects
    assert labels_seen == set(range(6))
    # The distribution spreads over the range rather than piling up at one end.
    lo, hi = math.log(cfg.min_size), math.log(cfg.max_feasible_size())
    assert np.log(np.array(sizes)).std() > 0.15 * (hi - lo)


def test_image_ratio_mode_gives_each_image_one_half_of_the_ratio_range():
    """'wide-or-tall': every image's boxes are all wide (h/w <= 1) or all tall (>= 1), both kinds of image
    occur, and the default mode mixes them within images ('elongated' has the same ratio range)."""
    def sides(cfg):
        out = []
        for index in range(80):
            _, b, _ = render_sample(cfg, index)
            r = (b[:, 3] - b[:, 1]) / (b[:, 2] - b[:, 0])
            # one pixel of rounding either way (see test_boxes_inside_image_and_sizes_ratios_in_configured_range)
            out.append("wide" if (r <= 1.1).all() else "tall" if (r >= 0.9).all() else "mixed")
        return out

    per_image = sides(synth_config("wide-or-tall"))
    assert "mixed" not in per_image and per_image.count("wide") >= 20 and per_image.count("tall") >= 20
    assert sides(synth_config("elongated")).count("mixed") >= 10


def test_drawn_pixels_fill_the_reported_box_tightly():
    cfg = SynthConfig(background="plain", max_objects=1, num_classes=8, seed=2)
    for index in range(40):
        img, boxes, _ = render_sample(cfg, index)
        arr = np.asarray(img).astype(int)
        changed = np.abs(arr - arr[0, 0]).sum(-1) > 0
        # One object on a plain background: it may touch the corner pixel, so use a far corner.
        if changed[0, 0]:
            changed = np.abs(arr - arr[-1, -1]).sum(-1) > 0
        ys, xs = np.nonzero(changed)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(boxes[0].astype(int))


def test_presets_parse_and_override():
    assert synth_config("small").max_size == 32
    assert synth_config("large").min_size == 40
    assert (synth_config("tall").min_ratio, synth_config("tall").max_ratio) == (1.5, 4.0)
    cfg = synth_config(["wide", "min_size=10", "max_objects=8", "seed=5"], num_classes=4)
    assert (cfg.min_ratio, cfg.min_size, cfg.max_objects, cfg.seed, cfg.num_classes) == (
        0.25, 10.0, 8, 5, 4)
    assert synth_config("max_ratio=3").max_ratio == 3.0


@pytest.mark.parametrize("items, named", [
    (["bogus_key=3"], "bogus_key"),
    (["min_size=abc"], "min_size"),
    (["max_objects=2.5"], "max_objects"),
    (["min_size=nan"], "min_size"),
    (["huge"], "huge"),
    (["min_size=50", "max_size=20"], "min_size"),
    (["num_classes=99"], "num_classes"),
    (["background=stripes"], "background"),
    (["ratio_mode=scene"], "ratio_mode must be one of object, image, got 'scene'"),
])
def test_bad_config_raises_user_error_naming_the_problem(items, named):
    with pytest.raises(UserError, match=named):
        synth_config(items)


def test_unknown_preset_lists_allowed_names():
    with pytest.raises(UserError, match="small.*large"):
        synth_config("huge")


def test_synth_dataset_item_contract():
    ds = SynthDataset(5, SynthConfig(num_classes=4))
    image, target = ds[2]
    assert len(ds) == 5 and ds.class_names == ["rectangle", "ellipse", "triangle", "cross"]
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    _, boxes, labels = render_sample(ds.cfg, 2)
    assert torch.equal(target["boxes"], torch.from_numpy(boxes))
    assert torch.equal(target["labels"], torch.from_numpy(labels))
    assert target["image_id"] == 3
    images, targets = collate([ds[0], ds[1]])
    assert len(images) == len(targets) == 2
    with pytest.raises(IndexError):
        ds[5]


def test_written_dataset_round_trips_through_coco_dataset(tmp_path):
    cfg = synth_config(["mixed", "num_classes=5", "seed=11"])
    out = write_synth_dataset(tmp_path / "ds", 6, cfg, progress=False)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{k:06d}.png" for k in range(6)]
    raw = json.loads((out / "annotations.json").read_text())
    assert raw["info"]["synth_config"] == cfg.to_dict()
    assert [c["id"] for c in raw["categories"]] == [1, 2, 3, 4, 5]
    assert all(a["iscrowd"] == 0 and a["area"] > 0 for a in raw["annotations"])
    ds = CocoDataset(out)
    assert ds.class_names == cfg.class_names and ds.cat_ids == [1, 2, 3, 4, 5]
    assert len(ds) == 6 and not ds.skipped
    live = SynthDataset(6, cfg)
    for index in range(6):
        image, target = ds[index]
        live_image, live_target = live[index]
        assert image.shape == (3, 128, 128) and image.dtype == torch.float32
        assert torch.equal(image, live_image)  # PNG is lossless
        assert torch.equal(target["boxes"], live_target["boxes"])
        assert torch.equal(target["labels"], live_target["labels"])
        assert target["image_id"] == live_target["image_id"] == index + 1
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_horizontal_flip_moves_boxes_with_the_pixels():
    from metaanchor.data import RandomHorizontalFlip

    ds = SynthDataset(3, SynthConfig(background="plain", max_objects=1, seed=4))
    image, target = ds[0]
    flipped, moved = RandomHorizontalFlip(p=1.0)(image, target)
    assert torch.equal(flipped, image.flip(-1))
    x1, y1, x2, y2 = target["boxes"][0].tolist()
    assert moved["boxes"][0].tolist() == [128 - x2, y1, 128 - x1, y2]
    assert torch.equal(moved["labels"], target["labels"])
    # The object's pixels are where the moved box says (left and right columns differ from bg).
    fx1, fx2 = int(128 - x2), int(128 - x1)
    assert torch.equal(flipped[:, int(y1):int(y2), fx1:fx2], image[:, int(y1):int(y2), int(x1):int(x2)].flip(-1))
    unchanged, same = RandomHorizontalFlip(p=0.0)(image, target)
    assert unchanged is image and same is target


def test_photometric_jitter_keeps_range_and_boxes_and_is_seeded():
    from metaanchor.data import Compose, PhotometricJitter, RandomHorizontalFlip

    image, target = SynthDataset(1)[0]
    jitter = PhotometricJitter(0.4, 0.4, 0.4, generator=torch.Generator().manual_seed(0))
    out, out_target = jitter(image, target)
    assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    assert not torch.equal(out, image) and out_target is target
    again, _ = PhotometricJitter(0.4, 0.4, 0.4, generator=torch.Generator().manual_seed(0))(image, target)
    assert torch.equal(out, again)
    both = Compose([RandomHorizontalFlip(1.0), PhotometricJitter(0, 0, 0)])
    composed, composed_target = both(image, target)
    assert torch.allclose(composed, image.flip(-1))
    assert not torch.equal(composed_target["boxes"], target["boxes"]) or len(target["boxes"]) == 0
    with pytest.raises(ValueError, match="brightness"):
        PhotometricJitter(brightness=1.5)


def test_synth_draws_no_progress_bar_into_a_log_file(capsys, tmp_path):
    from conftest import cli

    code, out, err = cli(capsys, "data", "synth", "--out", tmp_path / "s", "--images", 3)
    assert code == 0 and out.strip() == f"wrote 3 images to {tmp_path / 's'}"
    assert err == []  # stderr is not a terminal here: no bar, no \r redraws
