"""`kill -9` at any point loses at most the work since the last checkpoint, and `--resume` continues exactly.

A real `python -m metaanchor train` process is SIGKILLed several times (once standing still before its first
step, at seeded random iterations, once in the middle of a checkpoint write), resumed each time, and must end
with weights bit-identical to an uninterrupted run of the same length.

Nothing here races the clock: the reference run goes first, on its own; kills wait for progress written by the
process (a marker file, an iteration in metrics.csv), and the deadlines (DEADLINE s) only stop a hung test.
Where a kill lands after the awaited iteration does not matter: the assertions hold for any point.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from conftest import assert_same_final_weights

from metaanchor.data.synth import synth_config, write_synth_dataset

MAX_ITER = 30
TINY = ["model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8",
        "input.size=128", "solver.batch_size=4", "device=cpu", "checkpoint.period=2", "log.period=1",
        f"solver.max_iter={MAX_ITER}"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
DEADLINE = 600.0  # seconds; only against hangs, far above what a slow, loaded machine needs

PAUSED_BEFORE_FIRST_STEP = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from metaanchor.cli import main
    from metaanchor.engine import train

    def stand_still(self, it, images, targets):  # run folder prepared, no step and no checkpoint yet
        Path(sys.argv[1]).write_text("ready")
        while True:
            time.sleep(1)

    train.Trainer._step = stand_still
    sys.exit(main(sys.argv[2:]))
""")


def train_args(data, out, resume=True) -> list[str]:
    return ["train", "--no-progress", "--out", str(out), f"data.train={data}", *TINY] + (["--resume"] if resume else [])


def start_training(data, out, resume=True, prefix=("-m", "metaanchor")):
    """The training process; its output goes to files beside ``out`` (a full pipe would block it)."""
    n = len(list(out.parent.glob(f"{out.name}-*.out")))
    stdout, stderr = (open(out.parent / f"{out.name}-{n}.{k}", "w+") for k in ("out", "err"))
    p = subprocess.Popen([sys.executable, *prefix, *train_args(data, out, resume)], stdout=stdout, stderr=stderr,
                         text=True, env=ENV)
    p.logs = stdout, stderr
    return p


def output(proc) -> tuple[str, str]:
    """What a process from ``start_training`` wrote so far: (stdout, stderr)."""
    texts = []
    for f in proc.logs:
        f.seek(0)
        texts.append(f.read())
    return texts[0], texts[1]


def logged_iteration(out) -> int:
    """The last iteration written to metrics.csv (0 if none yet)."""
    try:
        lines = (out / "metrics.csv").read_text().splitlines()[1:]
    except FileNotFoundError:
        return 0
    its = [int(line.split(",")[0]) for line in lines if line.split(",")[0].isdigit()]
    return max(its, default=0)


def kill_when(proc, ready) -> bool:
    """SIGKILL ``proc`` once ``ready()`` holds; False if it finished first."""
    deadline = time.monotonic() + DEADLINE
    while not ready():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"training made no progress in {DEADLINE:.0f} s: {output(proc)}")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=DEADLINE)
    return True


def checkpoint_iteration(out) -> int:
    path = out / "last.pt"
    return torch.load(path, weights_only=False)["iteration"] if path.is_file() else 0


KILL_DURING_WRITE = textwrap.dedent("""
    import os, signal, sys
    import torch
    from metaanchor import checkpoint

    path = sys.argv[1]
    payload = torch.load(path, weights_only=False)
    real_save = torch.save

    def dying_save(obj, f):  # write half a checkpoint, then die as kill -9 would
        import io
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dying_save
    payload["iteration"] = -1
    checkpoint.save(payload, path)
""")


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_equals_uninterrupted_run(tmp_path):
    data = write_synth_dataset(tmp_path / "data", 16, synth_config("default", seed=0), progress=False)
    reference = start_training(data, tmp_path / "full", resume=False)  # first, alone: nothing runs beside it
    assert reference.wait(timeout=DEADLINE) == 0, output(reference)
    run, rng = tmp_path / "cut", random.Random(8)

    # 1. killed after start-up, before its first step and checkpoint: --resume must start from scratch, not fail
    ready = tmp_path / "ready"
    p = start_training(data, run, prefix=("-c", PAUSED_BEFORE_FIRST_STEP, str(ready)))
    assert kill_when(p, ready.is_file)
    assert (run / "config.yaml").is_file() and not (run / "last.pt").exists()

    # 2. killed at random iterations, wherever the process is when the poll sees the iteration logged
    for target in sorted(rng.sample(range(3, MAX_ITER - 2), 3)):
        before = checkpoint_iteration(run)
        p = start_training(data, run)
        killed = kill_when(p, lambda t=target: logged_iteration(run) >= t)
        assert killed or p.returncode == 0, output(p)
        assert checkpoint_iteration(run) >= before  # a kill never loses a checkpoint already written

    # 3. killed in the middle of a checkpoint write: last.pt stays intact, the temp file is cleaned later
    good = (run / "last.pt").read_bytes()
    p = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE, str(run / "last.pt")], env=ENV,
                       capture_output=True, text=True, timeout=DEADLINE)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert (run / "last.pt").read_bytes() == good
    assert list(run.glob(".last.pt.*.tmp"))

    p = start_training(data, run)
    assert p.wait(timeout=DEADLINE) == 0, output(p)
    out, _ = output(p)
    assert f"continuing from {run / 'last.pt'}" in out
    assert not list(run.glob(".last.pt.*.tmp"))
    rows = [int(r.split(",")[0]) for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert rows == list(range(1, MAX_ITER + 1))  # rows past a checkpoint were dropped, then written again

    assert_same_final_weights(tmp_path / "full" / "last.pt", run / "last.pt", MAX_ITER)
