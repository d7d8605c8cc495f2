"""`python -m research`: arguments, scales, report folders and one-line errors; `metaanchor experiment` names it."""

import subprocess
import sys
from pathlib import Path

import pytest

from research.__main__ import NAMES, SCALE_NAMES, folders, main

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_experiment_is_a_user_error(capsys):
    assert main(["nope", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m research: error: unknown experiment 'nope'") and err.count("\n") == 1


def test_names_and_scales_are_the_suites():
    from research.runner import SCALES
    from research.suite import EXPERIMENTS

    assert tuple(EXPERIMENTS) == NAMES and set(SCALE_NAMES) == set(SCALES)


def test_real_data_reports_go_beside_the_synthetic_ones(tmp_path):
    assert folders(None, None) == (Path("reports"), Path("reports"))  # (reports, cache and records)
    assert folders(None, str(tmp_path / "bccd") + "/") == (Path("reports/bccd-suite"), Path("reports"))
    assert folders("elsewhere", "data/bccd") == (Path("elsewhere"), Path("elsewhere"))


def test_scales_and_their_errors(capsys):
    assert main(["search", "--scale", "bccd"]) == 2
    assert ("--scale bccd: needs --data (e.g. data/bccd with train/ val/ test/, see configs/bccd.yaml)"
            in capsys.readouterr().err)
    assert main(["search", "--quick", "--scale", "full"]) == 2
    assert "--quick and --scale full: choose one scale" in capsys.readouterr().err
    assert main(["search,nope", "--quick"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    assert main(["search", "--jobs", "0"]) == 2
    assert "--jobs 0: must be at least 1" in capsys.readouterr().err


def test_help_and_bad_options_from_the_command_line():
    run = subprocess.run([sys.executable, "-m", "research", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0 and "--evaluate-trained" in run.stdout
    run = subprocess.run([sys.executable, "-m", "research", "all", "--nope"], cwd=ROOT, capture_output=True,
                         text=True)
    assert run.returncode == 2 and run.stderr == "python -m research: error: unrecognized arguments: --nope\n"


@pytest.mark.parametrize("argv, command", [
    (["experiment", "anchor-configs", "--quick"], "python -m research anchor-configs --quick"),
    (["experiment", "all", "--seeds", "3", "--help"], "python -m research all --seeds 3 --help"),
    (["experiment"], "python -m research NAME|all"),
])
def test_metaanchor_experiment_names_the_new_command(argv, command, capsys):
    from metaanchor.cli import main as metaanchor

    assert metaanchor(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == ("metaanchor experiment: error: the experiment suite lives outside the installed "
                                 f"package: run '{command}' from a checkout\n")
