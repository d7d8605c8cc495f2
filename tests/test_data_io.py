"""data.io: reading images of any mode, EXIF orientation, reading at a reduced size, errors naming the file."""

import tracemalloc

import numpy as np
import pytest
import torch
from data_samples import _gradient_image, _odd_images, _rotated_jpeg
from PIL import Image

from metaanchor.data.io import image_size, load_image, read_image, read_rgb_array
from metaanchor.errors import DataError


def test_non_rgb_images_are_converted_not_rejected(tmp_path):
    _odd_images(tmp_path)
    expect = {"gray.png": 90, "gray16.png": round(1000 * 255 / 65535), "la.png": 70, "bw.bmp": 255,
              "cmyk.jpg": 255, "float.tif": 255}
    for name, value in expect.items():
        t = load_image(tmp_path / name)
        assert t.shape == (3, 40, 48) and t.dtype == torch.float32, name
        assert torch.allclose(t * 255, torch.full_like(t, value), atol=1), name
    assert load_image(tmp_path / "rgba.png")[:, 0, 0].mul(255).round().tolist() == [9, 99, 199]  # alpha dropped
    assert load_image(tmp_path / "palette.gif")[:, 0, 0].mul(255).round().tolist() == [204, 0, 0]
    assert read_image(tmp_path / "gray16.png").mode == "RGB"


def test_image_reader_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}: is a folder, not an image file"):
        read_image(tmp_path)
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    with pytest.raises(DataError, match=r"x\.jpg: cannot read image"):
        load_image(tmp_path / "x.jpg")


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
