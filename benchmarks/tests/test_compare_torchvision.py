"""The benchmark scripts: the real-data comparison's interleaving and arguments, and
``compare_torchvision.py`` running ``metaanchor bench`` (tested in tests/test_bench.py). Nothing asserts on timing."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import compare_torchvision as bench
from compare_torchvision_train import Interleave

SCRIPT = Path(bench.__file__)


def test_real_data_comparison_alternates_and_flips_the_order_every_round():
    events = []

    def make_tv(num_classes):
        assert num_classes == 3

        def tv():
            events.append("tv")
        return tv

    rounds, steps = 4, 2
    cb = Interleave(rounds, steps, 2, make_tv, log=lambda s: None)
    trainer = SimpleNamespace(train_set=SimpleNamespace(class_names=["a", "b", "c"]))
    for it in range(1 + rounds * steps):
        events.append(f"ours {it}")
        cb.after_step(trainer, it, {"loss": 1.0})
    tv_steps = ["tv"] * steps
    assert events == ["ours 0", "tv",  # warm-up
                      "ours 1", "ours 2", *tv_steps,  # round 1: ours, tv
                      *tv_steps, "ours 3", "ours 4",  # round 2: tv, ours
                      "ours 5", "ours 6", *tv_steps,  # round 3: ours, tv
                      *tv_steps, "ours 7", "ours 8"]  # round 4: tv, ours
    assert len(cb.times["ours"]) == len(cb.times["tv"]) == rounds


def test_bad_arguments_are_one_line_errors(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--train-data", str(tmp_path)], capture_output=True,
                         text=True)
    assert run.returncode == 2
    assert run.stderr == (f"python benchmarks/compare_torchvision.py: error: --train-data {tmp_path}: not a dataset "
                          "folder (no annotations.json; convert one with metaanchor data convert)\n")
    assert bench.main(["--device", "tpu"]) == 2


def test_script_without_train_data_is_metaanchor_bench(capsys):
    assert bench.main(["--rounds", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "metaanchor bench: error: --rounds 0: must be at least 1\n"


def test_script_reexports_what_the_other_scripts_import():
    from metaanchor.engine.bench.models import torchvision_retinanet
    from metaanchor.engine.bench.timing import interleaved

    assert bench.torchvision_retinanet is torchvision_retinanet and bench.interleaved is interleaved
    assert callable(bench.machine_info)
