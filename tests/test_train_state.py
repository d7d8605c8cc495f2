"""The counters a run carries across --resume: written to the checkpoint and checked when read back."""

import math

import pytest

from metaanchor.engine.train_state import TrainState
from metaanchor.errors import CheckpointError


def test_state_survives_the_checkpoint_round_trip():
    state = TrainState(iteration=40, best_ap=0.31, best_iter=30, evals_since_best=1, skipped=2,
                       bad_images={"b.png", "a.png"}, devices=["cpu"])
    payload = state.payload(seconds=12.5)
    assert payload["bad_images"] == ["a.png", "b.png"] and payload["train_seconds"] == 12.5
    back = TrainState.from_payload(payload, "last.pt", max_iter=100)
    assert back == TrainState(iteration=40, best_ap=0.31, best_iter=30, evals_since_best=1, skipped=2,
                              bad_images={"a.png", "b.png"}, seconds=12.5, devices=["cpu"])


@pytest.mark.parametrize("key, value, message", [
    ("iteration", math.inf, "training state iteration=inf is not an integer >= 0"),
    ("iteration", -3, "training state iteration=-3 is not an integer >= 0"),
    ("iteration", "40", "training state iteration='40' is not an integer >= 0"),
    ("iteration", True, "training state iteration=True is not an integer >= 0"),
    ("iteration", 2.5, "training state iteration=2.5 is not an integer >= 0"),
    ("best_ap", math.nan, "training state best_ap=nan is not a number in -1.0..1.0"),
    ("skipped", 41, "training state skipped=41 is not an integer in 0..40"),
    ("best_iter", None, "training state best_iter=None is not an integer in 0..40"),
    ("train_seconds", -1.0, "training state train_seconds=-1.0 is not a number >= 0.0"),
    ("bad_images", "a.png", "training state bad_images is not a list of file names"),
    ("devices", [0], "training state devices is not a list of device names"),
])
def test_a_hostile_training_state_is_a_one_line_error_naming_the_entry(key, value, message):
    payload = TrainState(iteration=40, best_ap=0.3).payload(seconds=1.0) | {key: value}
    with pytest.raises(CheckpointError) as e:
        TrainState.from_payload(payload, "run/last.pt", max_iter=100)
    assert str(e.value) == f"checkpoint run/last.pt: {message}"


def test_a_run_past_max_iter_names_the_setting_to_raise():
    payload = TrainState(iteration=10**12).payload(seconds=1.0)
    with pytest.raises(CheckpointError) as e:
        TrainState.from_payload(payload, "run/last.pt", max_iter=100)
    assert str(e.value) == ("checkpoint run/last.pt: the run is at iteration 1000000000000, past "
                            "solver.max_iter=100; resume with solver.max_iter=1000000000000 or more")
