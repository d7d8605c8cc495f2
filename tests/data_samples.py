"""Small datasets and comparisons shared by the dataset format tests (test_data_*.py)."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = {"a.png": (40, 30), "sub/b.png": (64, 48), "c.png": (20, 20)}


def coco_sample():
    """Three images (SIZES, one in a sub-folder, one without objects), four boxes, category ids 2, 0, 7."""
    images = [{"id": 10 + k, "file_name": n, "width": w, "height": h}
              for k, (n, (w, h)) in enumerate(SIZES.items())]
    boxes = [(10, 0, [1.25, 2.5, 10.333, 7.1]), (10, 7, [0, 0, 40, 30]),
             (11, 7, [12, 3.75, 20.5, 40]), (11, 2, [63, 47, 1, 1])]
    annotations = [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3],
                    "iscrowd": 0} for k, (i, c, b) in enumerate(boxes)]
    categories = [{"id": 2, "name": "bird"}, {"id": 0, "name": "cat"}, {"id": 7, "name": "dog"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_sample_images(folder: Path):
    """The images of coco_sample(), in one colour, under ``folder``."""
    for name, size in SIZES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (90, 20, 200)).save(folder / name)
    return folder


def objects(coco):
    """{file_name: sorted [(class name, x, y, w, h)]} for comparing datasets."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {img["id"]: img["file_name"] for img in coco["images"]}
    out = {f: [] for f in files.values()}
    for a in coco["annotations"]:
        out[files[a["image_id"]]].append((names[a["category_id"]], *a["bbox"]))
    return {f: sorted(v) for f, v in out.items()}


def assert_same_objects(a, b, atol):
    oa, ob = objects(a), objects(b)
    assert oa.keys() == ob.keys()
    for name in oa:
        assert [o[0] for o in oa[name]] == [o[0] for o in ob[name]], name
        np.testing.assert_allclose(np.array([o[1:] for o in oa[name]]).reshape(-1, 4),
                                   np.array([o[1:] for o in ob[name]]).reshape(-1, 4),
                                   atol=atol, rtol=0)


def dataset_sample():
    """Two 40x30 images (ids 3 and 8), two annotations on image 3, categories 9 (dog) and 5 (cat)."""
    return {
        "images": [
            {"id": 3, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 8, "file_name": "b.png", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 17, "image_id": 3, "category_id": 5, "bbox": [1.0, 2.0, 10.0, 8.0],
             "area": 80.0, "iscrowd": 0},
            {"id": 18, "image_id": 3, "category_id": 9, "bbox": [20, 5, 15, 20]},
        ],
        "categories": [{"id": 9, "name": "dog"}, {"id": 5, "name": "cat"}],
    }


def write_dataset(folder, data, images=True):
    """A COCO dataset folder: ``data`` as annotations.json, plus dataset_sample()'s two images."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    if images:
        for k, name in enumerate(("a.png", "b.png")):
            Image.new("RGB", (40, 30), (k * 100, 50, 200)).save(folder / "images" / name)
    (folder / "annotations.json").write_text(json.dumps(data))
    return folder


def _odd_images(folder: Path) -> dict[str, Image.Image]:
    gray16 = Image.fromarray(np.full((40, 48), 1000, dtype=np.uint16))
    imgs = {"gray.png": Image.new("L", (48, 40), 90), "rgba.png": Image.new("RGBA", (48, 40), (9, 99, 199, 0)),
            "gray16.png": gray16, "palette.gif": Image.new("RGB", (48, 40), (204, 0, 0)).convert("P"),
            "la.png": Image.new("LA", (48, 40), (70, 128)), "bw.bmp": Image.new("1", (48, 40), 1),
            "cmyk.jpg": Image.new("CMYK", (48, 40), (0, 0, 0, 0)), "float.tif": Image.new("F", (48, 40), 300.0)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, im in imgs.items():
        im.save(folder / name)
    return imgs


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


def _rotated_jpeg(orientation=6):
    """A 40x20 JPEG stored landscape whose EXIF says 'rotate 90 degrees clockwise' (displayed 20x40)."""
    img = _gradient_image(40, 20)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    return img
