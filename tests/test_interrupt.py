"""Ctrl-C (SIGINT) or SIGTERM during `train` saves last.pt at the next iteration boundary and exits with 130;
`--resume` then continues exactly.

The run is given far more iterations than it could make before the signal (a constant learning rate, so
its trajectory does not depend on solver.max_iter) and checkpoint.period is larger still: only the
interrupt can have written last.pt. The signal is sent once metrics.csv shows progress, so nothing races the
clock; the deadlines only guard against hangs. Resumed to a few iterations past the interrupt, the weights
must equal those of an uninterrupted run of that length.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import assert_same_final_weights

from metaanchor.data.synth import synth_config, write_synth_dataset

TINY = ["model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8",
        "input.size=64", "solver.batch_size=4", "device=cpu", "log.period=1", "checkpoint.period=1000000",
        "solver.schedule=step", "solver.steps=[]", "solver.warmup_iters=3", "anchors.sample=true"]
NEVER = 1000000  # iterations: the run cannot end before it is interrupted
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
DEADLINE = 600.0  # seconds; only guards against a hang, never a condition of the test


def train_cmd(data, out, max_iter, *extra, resume=False):
    return [sys.executable, "-m", "metaanchor", "train", "--no-progress", *(["--resume"] if resume else []),
            "--out", str(out), f"data.train={data}", *TINY, f"solver.max_iter={max_iter}", *extra]


def logged_iteration(out) -> int:
    try:
        lines = (out / "metrics.csv").read_text().splitlines()[1:]
    except FileNotFoundError:
        return 0
    return max((int(line.split(",")[0]) for line in lines if line.split(",")[0].isdigit()), default=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synth_dataset(tmp_path_factory.mktemp("intdata") / "d", 12, synth_config("default", seed=0),
                               progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, 1), (signal.SIGTERM, 0)], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_saves_last_pt_and_resume_continues_exactly(sig, workers, data, tmp_path):
    run = tmp_path / "cut"
    extra = [f"data.workers={workers}"]
    # SIGINT goes to the whole process group, as Ctrl-C in a terminal does (DataLoader workers included)
    p = subprocess.Popen(train_cmd(data, run, NEVER, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=ENV, start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE
        while logged_iteration(run) < 2:
            assert p.poll() is None, p.communicate()[1]
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.05)
        assert not (run / "last.pt").exists()  # checkpoint.period is out of reach
        if sig == signal.SIGINT:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
        out, err = p.communicate(timeout=DEADLINE)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130, err
    assert "Traceback" not in err, err
    assert f"{sig.name} at iteration" in err and "interrupted" in err, err
    stopped = torch.load(run / "last.pt", weights_only=True)["iteration"]
    assert 2 <= stopped < NEVER and stopped == logged_iteration(run)  # nothing after the save was logged
    assert not list(run.glob(".*.tmp"))

    end = stopped + 3
    resumed = subprocess.Popen(train_cmd(data, run, end, *extra, resume=True), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=ENV)
    reference = subprocess.run(train_cmd(data, tmp_path / "full", end, *extra), capture_output=True, text=True,
                               env=ENV, timeout=DEADLINE)
    out, err = resumed.communicate(timeout=DEADLINE)
    assert resumed.returncode == 0, err
    assert reference.returncode == 0, reference.stderr
    assert f"continuing from {run / 'last.pt'} at iteration {stopped}" in out
    rows = [int(r.split(",")[0]) for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert rows == list(range(1, end + 1))

    assert_same_final_weights(tmp_path / "full" / "last.pt", run / "last.pt", end)


def test_signal_handlers_are_restored_and_only_installed_in_the_main_thread():
    import threading

    from metaanchor.engine.signals import StopSignals

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._handle
        signal.raise_signal(signal.SIGTERM)  # deferred: only remembered
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a second one stops at once
            signal.raise_signal(signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before

    seen = []

    def in_thread():
        with StopSignals() as s:
            seen.append(s._previous)
    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert seen == [{}]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
