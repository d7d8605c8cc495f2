"""``metaanchor bench``: speed and memory of our detectors, measured in one process.

- ``config``: what the comparison with torchvision measures (``BenchConfig``: backbones, size, batches, rounds).
- ``models``: torchvision's RetinaNet built like ours (same backbone, anchors, classes, input size).
- ``timing``: interleaved rounds, per-round ratios (median, min..max), peak memory, FLOP counts, AMP.
- ``compare``: the comparison itself (inference, training step, post-processing share, memory).
- ``report``: its table and JSON.
- ``formats``: one checkpoint in each export format: images/s and, with data, AP (the formats themselves
  come from ``metaanchor.deploy``, which the command line hands in: engine and deploy are independent).
"""
