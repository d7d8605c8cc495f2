"""data.io: reading images of any mode, EXIF orientation, reading at a reduced size, errors naming the file."""

import pytest
import torch
from data_samples import _odd_images

from metaanchor.data.io import load_image, read_image
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
