"""Defaults that several entry points share, kept free of torch so the command line's ``--help`` can show them.

``PREDICT_SCORE_THRESH`` is the minimum score a detection needs to be returned or drawn by prediction:
``metaanchor predict``, ``metaanchor.load(...)(images)`` / ``predict_images`` and ``Results.plot``.
It is a picture-and-use threshold (ultralytics' ``predict`` uses 0.25 too): at 0.05 a lightly trained
model returns dozens of low-score boxes per image that nobody wants drawn.

Evaluation is different: COCO AP integrates precision over all recall levels, so low-score detections
count and evaluation keeps its own, low threshold (the config key ``eval.score_thresh``, 0.05 as in
torchvision's RetinaNet), which is also the model's own ``score_thresh`` (what ``model(images)`` and
``model.predict`` use).
"""

PREDICT_SCORE_THRESH = 0.25
