"""``Results``: the detections of one image, with what is needed to name, draw, save and export them.

    r = metaanchor.load("runs/demo/last.pt")("street.jpg")[0]
    r.boxes, r.scores, r.labels            # [N, 4] x1y1x2y2 px of the original image, [N], [N] 0-based
    r.class_names                          # N names; r.names: all C class names
    r.plot()                               # PIL image with the boxes drawn
    r.save("street_det.png")               # atomic write; never over the input image
    r.to_coco(image_id=7)                  # COCO result records (the dataset's category ids)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from metaanchor.engine.evaluate import to_coco_results
from metaanchor.errors import UserError
from metaanchor.files import write_atomic
from metaanchor.visualize import draw_detections

REPR_DETECTIONS = 3  # detections listed by repr()


class Results:
    """Detections of one image.

    Attributes:
        boxes: [N, 4] float x1y1x2y2 pixels of the original image.
        scores: [N] float in [0, 1], highest first.
        labels: [N] int64 class indices 0..C-1 (``names[label]`` is the class).
        names: the C class names of the model.
        category_ids: the C dataset category ids the labels stand for (COCO ``category_id``).
        image_size: (h, w) of the original image in pixels.
        path: the image file, or None for an in-memory image.
        image: the original image, [3, H, W] uint8 RGB (for ``plot``), or None when not kept.
    """

    def __init__(self, boxes: Tensor, scores: Tensor, labels: Tensor, names: list[str], image_size: tuple[int, int],
                 path: str | Path | None = None, image: Tensor | None = None,
                 category_ids: list[int] | None = None):
        self.boxes, self.scores, self.labels = boxes, scores, labels
        self.names = list(names)
        self.category_ids = list(category_ids) if category_ids is not None else list(range(1, len(names) + 1))
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.path = Path(path) if path is not None else None
        self.image = image

    @classmethod
    def from_detections(cls, det: dict[str, Tensor], image: Tensor, names: list[str], path=None,
                        category_ids: list[int] | None = None, keep_image: bool = True) -> Results:
        """From a detector's per-image dict {"boxes", "scores", "labels"} and its image [3, H, W] in [0, 1]."""
        kept = (image.detach().clamp(0, 1) * 255).to(torch.uint8).cpu() if keep_image else None
        return cls(det["boxes"], det["scores"], det["labels"], names, tuple(image.shape[-2:]), path, kept,
                   category_ids)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index) -> Results:
        """The detections selected by ``index`` (an int, slice, index list or [N] bool mask) as new Results."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Results(self.boxes[index], self.scores[index], self.labels[index], self.names, self.image_size,
                       self.path, self.image, self.category_ids)

    @property
    def class_names(self) -> list[str]:
        """The class name of each detection (N names)."""
        return [self.names[int(k)] for k in self.labels.tolist()]

    def to_dict(self) -> dict[str, Tensor]:
        """{"boxes": [N, 4], "scores": [N], "labels": [N]}: what ``model.predict`` returns per image."""
        return {"boxes": self.boxes, "scores": self.scores, "labels": self.labels}

    def cpu(self) -> Results:
        """The same detections with CPU tensors."""
        return Results(self.boxes.cpu(), self.scores.cpu(), self.labels.cpu(), self.names, self.image_size,
                       self.path, self.image, self.category_ids)

    def numpy(self) -> dict:
        """{"boxes": [N, 4] float32, "scores": [N] float32, "labels": [N] int64} as numpy arrays."""
        return {k: v.detach().cpu().numpy() for k, v in self.to_dict().items()}

    def __repr__(self) -> str:
        h, w = self.image_size
        shown = ", ".join(f"{n} {s:.2f}" for n, s in zip(self.class_names[:REPR_DETECTIONS],
                                                          self.scores[:REPR_DETECTIONS].tolist()))
        more = ", ..." if len(self) > REPR_DETECTIONS else ""
        where = f"{self.path}, " if self.path is not None else ""
        return f"Results({where}{w}x{h}, {len(self)} detections{': ' + shown + more if len(self) else ''})"

    # ------------------------------------------------------------------ outputs
    def plot(self, min_score: float = 0.0) -> Image.Image:
        """The original image with the detections scoring at least ``min_score`` drawn (boxes, names, scores)."""
        if self.image is None:
            raise UserError("these Results were made without keeping the image (keep_image=False): nothing to plot")
        return draw_detections(self.image.float().div(255), self.cpu().to_dict(), self.names, min_score)

    def save(self, path: str | Path, min_score: float = 0.0) -> Path:
        """Write ``plot()`` to ``path`` atomically (format from the suffix: .png, .jpg, ...); returns the path.

        Refuses to write over the image these detections came from (compared after resolving links)."""
        path = Path(path)
        if self.path is not None and path.resolve() == self.path.resolve():
            raise UserError(f"{path}: is the input image of these detections; save the drawing elsewhere")
        fmt = Image.registered_extensions().get(path.suffix.lower())
        if fmt is None:
            raise UserError(f"{path}: unknown image suffix {path.suffix!r}; use .png or .jpg")
        drawn = self.plot(min_score)
        write_atomic(path, lambda fh: drawn.save(fh, format=fmt))
        return path

    def to_coco(self, image_id: int = 1, category_ids: list[int] | None = None) -> list[dict]:
        """COCO result records {"image_id", "category_id", "bbox": [x, y, w, h], "score"}, one per detection.

        ``category_ids``: the C ids labels 0..C-1 stand for (default: the model's, i.e. the training dataset's)."""
        return to_coco_results([self.cpu().to_dict()], [image_id], category_ids or self.category_ids)

    def to_json(self, indent: int | None = None) -> str:
        """{"path", "image_size": [h, w], "detections": [{"box": [x1, y1, x2, y2], "score", "label", "name"}]}."""
        dets = [{"box": [round(v, 2) for v in b], "score": round(s, 5), "label": k, "name": self.names[k]}
                for b, s, k in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist())]
        return json.dumps({"path": str(self.path) if self.path is not None else None,
                           "image_size": list(self.image_size), "detections": dets}, indent=indent)
