"""modeling.postprocess: decoding, per-image clipping, score threshold and (grouped) NMS of a batch."""

import torch

from metaanchor.geometry.box_coder import BoxCoder
from metaanchor.modeling.postprocess import postprocess


def test_postprocess_clips_each_image_before_nms_and_ignores_its_padding():
    """Image 0 is 100 px wide, image 1 fills the 256 px canvas. Two boxes of image 0 overlap (IoU 0.68) only
    because they run past its right edge: clipped to the image (IoU 0.25) both must survive. An anchor centred
    at x=160 lies in image 0's padding: its (best) score must not give image 0 a detection."""
    coder = BoxCoder()
    anchors = torch.tensor([[40.0, 0, 80, 40], [40, 0, 80, 40], [140, 0, 180, 40]])
    boxes = torch.tensor([[60.0, 0, 220, 40], [90, 0, 250, 40], [140, 0, 180, 40]])
    deltas = coder.encode(boxes, anchors)[None].repeat(2, 1, 1)
    logits = torch.tensor([[2.0], [1.0], [3.0]])[None].repeat(2, 1, 1)
    sizes = torch.tensor([[40, 100], [40, 256]])
    out = postprocess(logits, deltas, anchors, [3], sizes, coder, 0.05, 0.5, 1000, 100)
    torch.testing.assert_close(out[0]["boxes"], torch.tensor([[60.0, 0, 100, 40], [90, 0, 100, 40]]))
    torch.testing.assert_close(out[1]["boxes"], boxes[[2, 0]])
    # one (H, W) for the whole batch still works (every image fills the canvas)
    whole = postprocess(logits, deltas, anchors, [3], (40, 256), coder, 0.05, 0.5, 1000, 100)
    torch.testing.assert_close(whole[0]["boxes"], out[1]["boxes"])
