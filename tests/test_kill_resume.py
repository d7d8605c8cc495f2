"""`kill -9` at any point loses at most the work since the last checkpoint, and `--resume` continues exactly.

A real `python -m metaanchor train` process is SIGKILLed several times at seeded random points (once
before its first checkpoint, once in the middle of a checkpoint write), resumed each time, and must end
with weights bit-identical to an uninterrupted run of the same length.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import torch

from metaanchor.data.synth import synth_config, write_synth_dataset

MAX_ITER = 30
TINY = ["model.backbone=tiny", "model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8",
        "input.size=128", "solver.batch_size=4", "device=cpu", "checkpoint.period=2", "log.period=1",
        f"solver.max_iter={MAX_ITER}"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def start_training(data, out, resume=True):
    cmd = [sys.executable, "-m", "metaanchor", "train", "--no-progress", "--out", str(out), f"data.train={data}",
           *TINY] + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def logged_iteration(out) -> int:
    """The last iteration written to metrics.csv (0 if none yet)."""
    try:
        lines = (out / "metrics.csv").read_text().splitlines()[1:]
    except FileNotFoundError:
        return 0
    its = [int(line.split(",")[0]) for line in lines if line.split(",")[0].isdigit()]
    return max(its, default=0)


def kill_when(proc, ready, timeout=120.0, extra_delay=0.0) -> bool:
    """SIGKILL ``proc`` once ``ready()`` holds (plus a delay); False if it finished first."""
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            return False
        assert time.time() < deadline, "training made no progress"
        time.sleep(0.01)
    time.sleep(extra_delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
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


def test_sigkill_at_random_points_then_resume_equals_uninterrupted_run(tmp_path):
    data = write_synth_dataset(tmp_path / "data", 16, synth_config("default", seed=0), progress=False)
    reference = start_training(data, tmp_path / "full", resume=False)  # runs alongside the killed ones
    run, rng = tmp_path / "cut", random.Random(8)

    # 1. killed during start-up, before any checkpoint: --resume must start from scratch, not fail
    p = start_training(data, run)
    assert kill_when(p, lambda: (run / "config.yaml").is_file(), extra_delay=rng.uniform(0, 0.05))
    assert not (run / "last.pt").exists()

    # 2. killed at random iterations, each time after a random fraction of an iteration
    for target in sorted(rng.sample(range(3, MAX_ITER - 2), 3)):
        before = checkpoint_iteration(run)
        p = start_training(data, run)
        killed = kill_when(p, lambda t=target: logged_iteration(run) >= t, extra_delay=rng.uniform(0, 0.08))
        assert killed or p.returncode == 0, p.stderr.read()
        assert checkpoint_iteration(run) >= before  # a kill never loses a checkpoint already written

    # 3. killed in the middle of a checkpoint write: last.pt stays intact, the temp file is cleaned later
    good = (run / "last.pt").read_bytes()
    p = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE, str(run / "last.pt")], env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert (run / "last.pt").read_bytes() == good
    assert list(run.glob(".last.pt.*.tmp"))

    p = start_training(data, run)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert f"continuing from {run / 'last.pt'}" in out
    assert not list(run.glob(".last.pt.*.tmp"))
    rows = [int(r.split(",")[0]) for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert rows == list(range(1, MAX_ITER + 1))  # rows past a checkpoint were dropped, then written again

    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    cut = torch.load(run / "last.pt", weights_only=False)
    assert cut["iteration"] == full["iteration"] == MAX_ITER
    assert full["model"].keys() == cut["model"].keys()
    for k in full["model"]:
        assert torch.equal(full["model"][k], cut["model"][k]), k
