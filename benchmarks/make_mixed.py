"""A mixed-orientation copy of a COCO folder: every image plus its 90-degree rotation (portrait copies).

    python benchmarks/make_mixed.py data/bccd/train data/bccd_mixed
"""

import json
import shutil
import sys
from pathlib import Path

from PIL import Image

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
(dst / "images").mkdir(parents=True, exist_ok=True)
d = json.loads((src / "annotations.json").read_text())
images, anns = list(d["images"]), list(d["annotations"])
next_image, next_ann = max(i["id"] for i in images) + 1, max(a["id"] for a in anns) + 1
by_image: dict[int, list] = {}
for a in d["annotations"]:
    by_image.setdefault(a["image_id"], []).append(a)
for img in d["images"]:
    shutil.copy(src / "images" / img["file_name"], dst / "images" / img["file_name"])
    name = "rot_" + img["file_name"]
    Image.open(src / "images" / img["file_name"]).transpose(Image.Transpose.ROTATE_90).save(
        dst / "images" / name, quality=95)
    W, H = img["width"], img["height"]
    images.append({"id": next_image, "file_name": name, "width": H, "height": W})
    for a in by_image.get(img["id"], []):
        x, y, w, h = a["bbox"]  # ROTATE_90 is counter-clockwise: (x, y) -> (y, W - x)
        anns.append({**a, "id": next_ann, "image_id": next_image, "bbox": [y, W - x - w, h, w]})
        next_ann += 1
    next_image += 1
(dst / "annotations.json").write_text(json.dumps({**d, "images": images, "annotations": anns}))
print(f"{len(images)} images, {len(anns)} boxes -> {dst}")
