"""Checkpoints: what loading a bad or old checkpoint says, and what a saved one holds."""

import torch

from metaanchor.families.retinanet import RetinaNetDetector as Detector


def test_old_checkpoint_without_category_ids_falls_back_to_1_to_C(tmp_path, model_ckpt):
    payload = torch.load(model_ckpt, weights_only=False)
    payload["model_config"].pop("category_ids", None)
    torch.save(payload, tmp_path / "old.pt")
    assert Detector.from_checkpoint(tmp_path / "old.pt").category_ids == [1, 2, 3]
