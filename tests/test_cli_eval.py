"""`metaanchor eval` end to end (in-process): arguments, dataset problems, bad images, metrics output."""

import json

import pytest
from conftest import tiny_detector

from metaanchor.cli import main


def _strict_json(text):
    def refuse(name):
        raise AssertionError(f"{name} in JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("score_thresh", [0.0, 0.999], ids=["detections", "no-detections"])
def test_undefined_metrics_are_null_in_json_and_na_in_printed_output(tmp_path, capsys, small_objects, score_thresh):
    ckpt = tmp_path / "m.pt"
    tiny_detector(class_names=["a", "b", "c"], score_thresh=score_thresh).save(ckpt)
    out = tmp_path / "m.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(small_objects), "--device", "cpu",
                 "--json-out", str(out)]) == 0
    m = _strict_json(out.read_text())
    assert m["APl"] is None and m["ARl"] is None
    for k in ("AP", "AP50", "APs", "AR100"):
        assert isinstance(m[k], float) and 0.0 <= m[k] <= 1.0
    printed = capsys.readouterr().out
    assert "-1.000" not in printed
    if score_thresh == 0.0:  # pycocotools' summary is printed
        assert [ln.split("=")[-1].strip() for ln in printed.splitlines() if "area= large" in ln] == ["n/a"] * 2
