"""The family registry: a new family is its own module, one registry line and a config file."""

from dataclasses import dataclass

import pytest
import torch
from conftest import TINY

from metaanchor.config import load_config, model_kwargs
from metaanchor.engine.train import Trainer
from metaanchor.errors import ConfigError
from metaanchor.families import ARCHS, build_detector, load_detector
from metaanchor.families.retinanet import RetinaNetConfig, RetinaNetDetector
from metaanchor.schema import option


# --- what the toy family's own module would hold ---------------------------------------------------------------
@dataclass
class ToyConfig(RetinaNetConfig):
    """RetinaNet plus dropout on the pyramid features."""

    dropout: float = option(0.0, low=0, high=1, high_open=True)


class ToyDetector(RetinaNetDetector):
    arch = "toy"
    Config = ToyConfig

    def __init__(self, *args, dropout: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.config["dropout"] = dropout
        self.drop = torch.nn.Dropout2d(dropout)

    def losses(self, batch, targets):
        features = [self.drop(f) for f in self.backbone(batch)]
        cls_logits, box_deltas = self.head(features)
        anchors = self.grid([tuple(f.shape[-2:]) for f in features], batch.device)
        from metaanchor.families.retinanet.loss import detection_loss

        return detection_loss(cls_logits, box_deltas, anchors, targets, self.matcher, self.box_coder, self.reg_loss)


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(ARCHS, "toy", ToyDetector)  # the one registry line


def test_a_third_family_trains_saves_and_loads_from_its_own_config(toy_registered, synth_dirs, tmp_path):
    train, val = synth_dirs
    config = tmp_path / "toy.yaml"
    config.write_text(f"model:\n  arch: toy\n  dropout: 0.2\ndata:\n  train: {train}\n  val: {val}\n"
                      "solver:\n  max_iter: 2\n")
    cfg = load_config(config, TINY)
    assert cfg["model"]["dropout"] == 0.2 and cfg["model"]["arch"] == "toy"
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert isinstance(trainer.model, ToyDetector) and trainer.model.drop.p == 0.2
    trainer.train()
    loaded = load_detector(tmp_path / "run" / "last.pt")
    assert type(loaded) is ToyDetector and loaded.config["dropout"] == 0.2 and loaded.drop.p == 0.2


def test_a_family_option_is_checked_by_its_declaration(toy_registered):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["model.arch=toy", "model.dropout=1"])
    assert str(e.value) == "config key model.dropout: 1.0 is out of range; allowed: >= 0 and < 1"
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["model.dropout=0.5"])
    assert str(e.value) == "config key model.dropout: not an option of model.arch=retinanet (it is one of toy's)"


def test_every_retinanet_constructor_knob_is_a_config_key():
    cfg = load_config(overrides=["model.nms_thresh=0.3", "model.topk_candidates=20", "model.detections_per_img=5",
                                 "model.anchor_base=8", "model.fpn_channels=16", "model.head_convs=1"])
    det = build_detector("retinanet", **model_kwargs(cfg, 2, ["a", "b"]))
    assert (det.nms_thresh, det.topk_candidates, det.detections_per_img) == (0.3, 20, 5)
    assert det.standard_sizes[0] == 8 * 8  # anchor_base x the stride of P3


def test_switching_family_keeps_shared_keys_and_drops_the_others():
    from metaanchor.config import set_key

    cfg = load_config(overrides=["model.hidden_dim=12", "model.head_norm=gn"])
    set_key(cfg, "model.arch", "yolov2")
    assert cfg["model"]["hidden_dim"] == 12 and "head_norm" not in cfg["model"] and cfg["model"]["ignore_iou"] == 0.6
