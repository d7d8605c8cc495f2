"""The real-photo input pipeline: orientation-grouped resumable batches, padding and anchor alignment,
images read at the network's input size in the loader, EXIF orientation and bad inputs."""

import json
import math
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from metaanchor.data.coco import CocoDataset
from metaanchor.data.io import image_size, read_rgb_array
from metaanchor.data.loader import AugmentedDataset, BadItem, ResumableBatches, orientation_groups
from metaanchor.errors import DataError
from metaanchor.geometry.resize import PAD_MULTIPLE, resized_size
from metaanchor.modeling.transform import ImageBatcher


class _Images:
    """Stands in for a dataset: only ``images`` (width/height) and ``len``."""

    def __init__(self, sizes):
        self.images = [{"width": w, "height": h} for w, h in sizes]

    def __len__(self):
        return len(self.images)


def _mixed(n_portrait, n_landscape):
    return _Images([(30, 40)] * n_portrait + [(40, 30)] * n_landscape)


# ------------------------------------------------------------------------------------------- grouped batches
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


# ------------------------------------------------------------------------------------------------- padding
def test_batch_padded_to_its_max_height_and_width_rounded_to_32():
    batcher = ImageBatcher(min_size=100, max_size=1000).eval()
    portrait, landscape = torch.rand(3, 150, 100), torch.rand(3, 100, 150)
    batch, scales, sizes = batcher([landscape, landscape])
    assert batch.shape == (2, 3, 128, 160) and sizes == [(100, 150)] * 2 and scales == [(1.0, 1.0)] * 2
    assert batcher([portrait, landscape])[0].shape == (2, 3, 160, 160)  # what grouping avoids
    assert (batch[0, :, 100:, :] == 0).all() and (batch[0, :, :, 150:] == 0).all()


def test_bccd_like_grouped_batch_has_fewer_pixels():
    """640x480 photos at 512 px (long side up to 1024): 683x512; a mixed batch pads to 704x704, a grouped
    one to 512x704 (the old 128 multiple gave 768x768)."""
    assert resized_size(480, 640, 512, 1024) == (512, 683)
    batcher = ImageBatcher(512, 1024).eval()
    land, port = torch.zeros(3, 480, 640), torch.zeros(3, 640, 480)
    assert batcher([land, land])[0].shape[-2:] == (512, 704)
    assert batcher([land, port])[0].shape[-2:] == (704, 704)


def test_training_batcher_leaves_loader_sized_images_alone():
    batcher = ImageBatcher(min_size=64, max_size=64).train()
    img = torch.rand(3, 50, 70)
    assert batcher([img])[2] == [(46, 64)]  # the default resizes in training too
    batcher.resize_in_training = False
    batch, scales, sizes = batcher([img])
    assert sizes == [(50, 70)] and scales == [(1.0, 1.0)] and batch.shape == (1, 3, 64, 96)
    assert batcher.eval()([img])[2] == [(46, 64)]  # eval/predict still accept any image


# --------------------------------------------------------------------------------- anchors vs feature cells
def _positive_weights(module):
    """All-positive conv weights, BN as identity: every path carries gradient, so the gradient support of a
    cell is its full receptive field."""
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.constant_(m.weight, 1.0 / m.weight[0].numel())
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    return module.eval()


def _check_cell_centres(levels, strides, hw):
    """For every level: ceil(H/s) x ceil(W/s) cells, and the cell (i, j) = (H // 2s, W // 2s + 1) (one index odd,
    one even) is centred (its receptive field's midpoint) on image pixel (s*i, s*j), where ``grid_anchors`` puts
    its anchors. One backward pass: each level's cell gets its own copy of the image in the batch."""
    h, w = hw
    cells = [(level, h // (2 * s), w // (2 * s) + 1) for level, s in enumerate(strides)]
    x = torch.ones(len(cells), 3, h, w, requires_grad=True)
    feats = levels(x)
    for f, s in zip(feats, strides):
        assert tuple(f.shape[-2:]) == (math.ceil(h / s), math.ceil(w / s))
    sum(feats[level][k, :, i, j].sum() for k, (level, i, j) in enumerate(cells)).backward()
    for k, (level, i, j) in enumerate(cells):
        ys, xs = x.grad[k].abs().sum(0).nonzero().unbind(1)
        assert ys.min() > 0 and xs.min() > 0 and ys.max() < h - 1 and xs.max() < w - 1  # not clipped
        s = strides[level]
        assert ((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2) == (s * i, s * j)


def test_retinanet_tiny_levels_centred_on_their_anchors_for_odd_sizes():
    from metaanchor.geometry.anchors import grid_anchors
    from metaanchor.modeling.backbones import build_backbone

    fpn = _positive_weights(build_backbone("tiny", 16).body)

    def levels(x):  # bottom-up C3-C5, then P5 (lateral 1x1 + 3x3) and LastLevelP6P7 on it
        c = list(fpn.body(x).values())
        p5 = fpn.fpn.layer_blocks[-1](fpn.fpn.inner_blocks[-1](c[-1]))
        p6 = fpn.fpn.extra_blocks.p6(p5)
        return c + [p6, fpn.fpn.extra_blocks.p7(torch.relu(p6))]

    _check_cell_centres(levels, [8, 16, 32, 64, 128], (601, 633))
    anchors = grid_anchors([torch.tensor([[8.0, 8.0]])], [(2, 3)], [64])
    assert anchors.view(2, 3, 4)[1, 2].tolist() == [124.0, 60.0, 132.0, 68.0]  # centre (x, y) = (2*64, 1*64)


def test_fpn_nearest_upsampling_maps_cells_to_their_parent_for_odd_sizes():
    for fine in range(2, 40):
        coarse = math.ceil(fine / 2)
        idx = torch.arange(coarse, dtype=torch.float32).view(1, 1, coarse, 1)
        up = torch.nn.functional.interpolate(idx, size=(fine, 1), mode="nearest").flatten()
        assert up.tolist() == [float(i // 2) for i in range(fine)]


def test_yolov2_tiny_grid_centred_on_its_anchors_for_odd_sizes():
    from metaanchor.families.yolov2.backbone import STRIDE, build_yolo_backbone

    backbone = _positive_weights(build_yolo_backbone("tiny", 16))
    _check_cell_centres(lambda x: [backbone.c5_conv(list(backbone.body(x).values())[-1])], [STRIDE], (289, 353))
    assert backbone(torch.zeros(1, 3, 224, 288))[0].shape[-2:] == (7, 9)
    with pytest.raises(RuntimeError, match="pixel_unshuffle"):  # the passthrough needs H, W multiples of 32
        backbone(torch.zeros(1, 3, 225, 289))


def test_resnet_levels_are_ceil_of_image_over_stride():
    from metaanchor.modeling.backbones import build_backbone

    net = build_backbone("resnet18").eval()
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, 97, 131))
    assert [tuple(f.shape[-2:]) for f in feats] == [(math.ceil(97 / s), math.ceil(131 / s))
                                                   for s in (8, 16, 32, 64, 128)]
    assert PAD_MULTIPLE == 32


# ------------------------------------------------------------------------------- reading at the input size
def _coco_folder(root, files, boxes=None, skip_sizes=None):
    """A one-category dataset folder; ``files`` maps file name -> (PIL image, (w, h) written to the record)."""
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for k, (name, (img, (w, h))) in enumerate(files.items(), 1):
        img.save(root / "images" / name, **({"exif": img.info["exif"]} if "exif" in img.info else {}))
        images.append({"id": k, "file_name": name, "width": w, "height": h})
        for n, b in enumerate((boxes or {}).get(name, [[1, 1, 4, 4]])):
            anns.append({"id": 100 * k + n, "image_id": k, "category_id": 1, "bbox": b})
    (root / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}))
    return root


def _gradient_image(w, h):
    x = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 1))
    y = np.linspace(0, 255, h)[:, None, None] * np.ones((1, w, 1))
    return Image.fromarray(np.concatenate([x, y, (x + y) / 2], 2).astype(np.uint8))


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


def test_large_jpeg_is_decoded_reduced_never_at_full_resolution(tmp_path):
    path = tmp_path / "big.jpg"
    _gradient_image(2400, 1600).save(path, quality=80)
    tracemalloc.start()
    arr = read_rgb_array(path, size=(300, 200))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert arr.shape == (200, 300, 3) and arr.dtype == np.uint8
    assert peak < 2400 * 1600 * 3 / 8  # far below even a full-resolution uint8 copy (11.5 MB)


def test_sixteen_bit_png_read_at_a_size(tmp_path):
    arr = np.full((40, 60), 65535, dtype=np.uint16)
    arr[:, 30:] = 32768
    Image.fromarray(arr).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I;16")
    small = read_rgb_array(tmp_path / "d.png", size=(30, 20))
    assert small.shape == (20, 30, 3)
    assert small[:, :10].min() == 255 and small[:, 20:].max() == 128 and small[:, 20:].min() == 128


# --------------------------------------------------------------------------------------------- EXIF orientation
def _rotated_jpeg(orientation=6):
    """A 40x20 JPEG stored landscape whose EXIF says 'rotate 90 degrees clockwise' (displayed 20x40)."""
    img = _gradient_image(40, 20)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    return img


def test_exif_orientation_applied_for_size_pixels_and_resize(tmp_path):
    from PIL import ImageOps

    _rotated_jpeg().save(tmp_path / "r.jpg", exif=_rotated_jpeg().info["exif"])
    assert image_size(tmp_path / "r.jpg") == (20, 40)
    with Image.open(tmp_path / "r.jpg") as im:
        displayed = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    arr = read_rgb_array(tmp_path / "r.jpg")
    assert arr.shape == (40, 20, 3) and np.array_equal(arr, displayed)
    small = read_rgb_array(tmp_path / "r.jpg", size=(10, 20))
    assert small.shape == (20, 10, 3)
    assert np.abs(small.astype(int) - displayed[::2, ::2].astype(int)).mean() < 12


def test_exif_rotated_photo_matches_displayed_annotation_size(tmp_path):
    ds = CocoDataset(_coco_folder(tmp_path, {"r.jpg": (_rotated_jpeg(), (20, 40))}, {"r.jpg": [[2, 4, 10, 20]]}))
    image, target = AugmentedDataset(ds, 0, 0.0, 0.0, size=(10, 40))[(0, 0)]
    assert image.shape == (3, 20, 10) and target["boxes"].tolist() == [[1.0, 2.0, 6.0, 12.0]]


def test_annotation_with_the_stored_size_of_a_rotated_photo_is_a_clear_error_or_skip(tmp_path):
    ds = CocoDataset(_coco_folder(tmp_path, {"r.jpg": (_rotated_jpeg(), (40, 20))}))
    message = (f"{tmp_path / 'images' / 'r.jpg'}: image is 20x40 (as displayed, after EXIF orientation) but "
               "annotations.json (image id 1) says 40x20")
    with pytest.raises(DataError) as e:
        ds[0]
    assert str(e.value) == message
    item = AugmentedDataset(ds, 0, 0.5, 0.0, size=(16, 32))[(0, 0)]  # training: the trainer skips or fails
    assert isinstance(item, BadItem) and item.message == message


def test_image_size_disagreeing_with_annotation_names_both_sizes(tmp_path):
    ds = CocoDataset(_coco_folder(tmp_path, {"a.png": (Image.new("RGB", (41, 30)), (40, 30))}))
    with pytest.raises(DataError, match=r"a\.png: image is 41x30 .* \(image id 1\) says 40x30$"):
        ds[0]


# ----------------------------------------------------------------------------------------------- bad boxes
def test_zero_by_zero_box_is_an_error_or_a_counted_skip(tmp_path):
    folder = _coco_folder(tmp_path, {"a.png": (Image.new("RGB", (40, 30)), (40, 30))},
                          {"a.png": [[5, 5, 0, 0], [1, 1, 10, 10]]})
    with pytest.raises(DataError, match=r"annotations\.json: annotation id 100 \(image 1\): box has non-positive "
                                        r"width 0\.0"):
        CocoDataset(folder)
    ds = CocoDataset(folder, skip_invalid=True)
    assert ds.skipped == {"non_positive_size": 1}
    _, target = AugmentedDataset(ds, 0, 0.0, 0.0, augment="none", size=(30, 40))[(0, 0)]
    assert target["boxes"].tolist() == [[1.0, 1.0, 11.0, 11.0]]


def test_bccd_style_point_box_becomes_one_pixel_and_is_dropped_below_one_pixel(tmp_path):
    """VOC xmin == xmax (BCCD has two) converts to a 1 x 1 px box; downscaled below 1 px, a preset drops it."""
    from metaanchor.data.voc import read_voc

    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>40</width><height>30</height></size>"
        "<object><name>RBC</name><bndbox><xmin>7</xmin><ymin>9</ymin><xmax>7</xmax><ymax>9</ymax></bndbox></object>"
        "<object><name>RBC</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox>"
        "</object></annotation>")
    data = read_voc(tmp_path / "Annotations")
    assert [a["bbox"] for a in data["annotations"]] == [[6, 8, 1, 1], [0, 0, 20, 20]]
    folder = _coco_folder(tmp_path / "ds", {"a.png": (Image.new("RGB", (40, 30)), (40, 30))},
                          {"a.png": [a["bbox"] for a in data["annotations"]]})
    _, target = AugmentedDataset(CocoDataset(folder), 0, 0.0, 0.0, augment="none", size=(15, 20))[(0, 0)]
    assert target["boxes"].tolist() == [[0.0, 0.0, 10.0, 10.0]] and target["labels"].tolist() == [0]
