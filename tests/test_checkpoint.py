"""Checkpoints: what loading a bad or old checkpoint says, and what a saved one holds."""


import pytest
import torch
from conftest import assert_user_error, eval_args, tiny_detector

from metaanchor.errors import CheckpointError
from metaanchor.families.retinanet import RetinaNetDetector as Detector


def test_old_checkpoint_without_category_ids_falls_back_to_1_to_C(tmp_path, model_ckpt):
    payload = torch.load(model_ckpt, weights_only=False)
    payload["model_config"].pop("category_ids", None)
    torch.save(payload, tmp_path / "old.pt")
    assert Detector.from_checkpoint(tmp_path / "old.pt").category_ids == [1, 2, 3]


def _payload(model_ckpt):
    return torch.load(model_ckpt, weights_only=False)


@pytest.mark.parametrize("case", ["truncated", "empty", "text", "torchvision_state_dict",
                                  "torchvision_reference_ckpt", "weights_do_not_fit", "future_version",
                                  "unknown_config_key", "bad_config_value"])
def test_bad_checkpoint_is_one_line_naming_the_file(capsys, tmp_path, dataset, model_ckpt, case):
    bad = tmp_path / f"{case}.pt"
    payload = _payload(model_ckpt)
    fragment = {
        "truncated": "unreadable (truncated or not a checkpoint)", "empty": "unreadable",
        "text": "unreadable", "torchvision_state_dict": "bare state dict",
        "torchvision_reference_ckpt": "not a metaanchor checkpoint (a dict with keys 'model', 'optimizer'",
        "weights_do_not_fit": "weights do not fit the model: mismatched shapes backbone.body.fpn",
        "future_version": "written by metaanchor 7.0.0",
        "unknown_config_key": "model_config: unknown keys zoom (model.arch=retinanet takes",
        "bad_config_value": "config key model_config.head: 'yolo' is not one of metaanchor,"}[case]
    if case == "truncated":
        bad.write_bytes(model_ckpt.read_bytes()[:5000])
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "text":
        bad.write_text("not a checkpoint\n")
    elif case == "torchvision_state_dict":
        import torchvision

        torch.save(torchvision.ops.FeaturePyramidNetwork([8, 16], 8).state_dict(), bad)
    elif case == "torchvision_reference_ckpt":  # what torchvision's references/detection/train.py writes
        torch.save({"model": payload["model"], "optimizer": {}, "lr_scheduler": {}, "epoch": 3, "args": None}, bad)
    else:
        if case == "weights_do_not_fit":
            payload["model_config"]["fpn_channels"] = 32
        elif case == "future_version":
            payload["version"] = "7.0.0"
        elif case == "unknown_config_key":
            payload["model_config"]["zoom"] = 2
        else:
            payload["model_config"]["head"] = "yolo"
        torch.save(payload, bad)
    assert_user_error(capsys, eval_args(bad, dataset), f"checkpoint {bad}", fragment)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    det = tiny_detector()
    good = tmp_path / "good.pt"
    det.save(good)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="trunc.pt: unreadable"):
        type(det).from_checkpoint(truncated)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="other.pt: not a metaanchor checkpoint"):
        type(det).from_checkpoint(other)
    payload = torch.load(good, weights_only=False)
    payload["version"] = "7.0.0"
    future = tmp_path / "future.pt"
    torch.save(payload, future)
    with pytest.raises(CheckpointError, match="written by metaanchor 7.0.0"):
        type(det).from_checkpoint(future)
    with pytest.raises(CheckpointError, match="missing.pt: file not found"):
        type(det).from_checkpoint(tmp_path / "missing.pt")
