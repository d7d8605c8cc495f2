"""modeling.transform: the ImageBatcher's resize and padding of a batch."""

import torch

from metaanchor.geometry.resize import resized_size
from metaanchor.modeling.transform import ImageBatcher


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
