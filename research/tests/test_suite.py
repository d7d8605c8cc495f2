"""The suite: planning shared runs once, progress, the reports' index, parallel training and stopping it."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from research import anchor_configs
from research.context import (
    Context,
    Planned,
)
from research.runner import Runner, config_key
from research.tests.helpers import MICRO, fake_ctx


def test_time_budget_starts_only_the_runs_that_would_end_in_it(tmp_path):
    import time

    from research.suite import seconds_per_iteration, train_planned

    calls = []

    def train(cfg, out_dir, resume=False, progress=True):  # 100 s per iteration on this machine's cpu
        calls.append((cfg["anchors"]["train"], resume))
        return {"iterations": cfg["solver"]["max_iter"], "metrics": {}, "wall_time_s": 400.0, "devices": ["cpu"]}

    runner = Runner(tmp_path, MICRO, device="cpu", train_fn=train, log=lambda s: None)
    ctx = Context(runner, [0], tmp_path)
    planned = [Planned(runner.config("metaanchor", spec, 0), 0) for spec in ("1x1", "2x3", "3x3")]
    assert seconds_per_iteration(ctx, planned) == 0.0
    assert train_planned(ctx, planned[:1], until=time.time() + 3600) == 1  # no estimate yet: it starts
    assert seconds_per_iteration(ctx, planned) == 100.0
    # 3x3 was stopped at iteration 3 of 4 (100 s left), 2x3 has not started (400 s)
    runner.run_dir(planned[2].cfg).mkdir(parents=True)
    (runner.run_dir(planned[2].cfg) / "metrics.csv").write_text("iter,loss\n3,0.5\n")
    (runner.run_dir(planned[2].cfg) / "last.pt").write_bytes(b"")
    assert train_planned(ctx, planned, until=time.time() + 300) == 1
    assert calls == [("1x1", False), ("3x3", True)]
    assert train_planned(ctx, planned, until=time.time() + 1000) == 1 and calls[-1] == ("2x3", False)


def test_suite_plans_each_shared_run_once(tmp_path, synth_dirs):
    from research.suite import EXPERIMENTS, planned_runs

    ctx = fake_ctx(tmp_path, synth_dirs, seeds=[0])
    ctx.runner.dataset = lambda dist, split: synth_dirs[0] if dist == "default" else tmp_path / f"{dist}-{split}"
    runs = planned_runs(list(EXPERIMENTS), ctx)
    # anchor-configs 13 (12 + the unsampled 1x3 run); cross-eval adds fixed and sampled ±1 on 3x3 (its matrix
    # and ±0.5 are anchor-configs' MetaAnchor runs); search 1 (the square-trained model with ratios sampled
    # 1/4..4); transfer 4 (its elongated pair is anchor-configs' 3x3 pair: MICRO's distribution is 'default', so
    # here the default -> tall pair is the shared one); data-dependent 3 (its generator, and both on
    # 'wide-or-tall'); generator 2 widths (its fixed run is cross-eval's); yolo 2; schedule 4 (the 3x3 pair with
    # half and twice the iterations)
    assert len(runs) == 13 + 2 + 1 + 4 + 3 + 2 + 2 + 4
    keys = {config_key(p.cfg, ctx.runner.root) for p in runs}
    assert len(keys) == len(runs)
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]  # planning (and so --status) writes no report file


def test_status_lists_each_planned_run_and_the_time_left(tmp_path):
    from research import schedule
    from research.runner import LOCK
    from research.suite import progress

    def fake_train(cfg, out_dir, resume=False, progress=True):  # 360 s per iteration, validation AP 0.25 at the end
        n = cfg["solver"]["max_iter"]
        (out_dir / "metrics.csv").write_text(f"iter,AP\n1,0.1\n{n},0.25\n")
        return {"iterations": n, "metrics": {}, "wall_time_s": 360.0 * n, "devices": ["cpu"]}

    runner = Runner(tmp_path, MICRO, device="cpu", train_fn=fake_train, log=lambda s: None)
    ctx = Context(runner, [0], tmp_path, jobs=2)
    planned = schedule.plan(ctx)  # baseline 2, 4, 8 iterations, then MetaAnchor 2, 4, 8
    assert [p.cfg["solver"]["max_iter"] for p in planned] == [2, 4, 8, 2, 4, 8]
    for p in planned[:2]:
        runner.train(p.cfg)
    stopped, running = runner.run_dir(planned[2].cfg), runner.run_dir(planned[3].cfg)
    stopped.mkdir(parents=True)
    (stopped / "metrics.csv").write_text("iter,loss\n2,0.9\n3,0.8\n")
    (stopped / "last.pt").write_bytes(b"checkpoint")
    running.mkdir(parents=True)
    (running / "metrics.csv").write_text("iter,loss\n1,0.9\n")
    (running / LOCK).write_text("12345")
    lines = progress(ctx, planned).splitlines()
    assert len(lines) == 7
    assert [line.split()[0] for line in lines[:6]] == [runner.run_dir(p.cfg).name for p in planned]
    assert "trained, validation AP 0.250" in lines[0] and "head=predefined factor=0.5" in lines[0]
    assert "stopped at iteration 3, resumes from its last checkpoint" in lines[2]
    assert "running, at iteration 1" in lines[3]
    assert "not started" in lines[4] and "not started" in lines[5]
    # left: 8 - 3, 2 - 1, 4, 8 = 18 iterations at 360 s each, two at a time: 0.9 h
    assert lines[6] == ("2 of 6 planned runs trained; 18 iterations left, about 0.9 h with 2 at a time at the "
                        "median 360.00 s/iteration of the runs trained on this device")


def test_status_counts_each_experiments_trained_runs_per_seed(tmp_path):
    from research import data_dependent
    from research.suite import experiment_progress

    def fake_train(cfg, out_dir, resume=False, progress=True):
        return {"iterations": cfg["solver"]["max_iter"], "metrics": {}}

    runner = Runner(tmp_path, MICRO, device="cpu", train_fn=fake_train, log=lambda s: None)
    ctx = Context(runner, [0, 1], tmp_path)
    for p in anchor_configs.plan(ctx):
        if p.seed == 0:
            runner.train(p.cfg)
    planned = data_dependent.plan(ctx)  # per seed on the main data (seed 0, then 1), then the extra runs
    runner.train(planned[3].cfg)  # seed 1, the data-dependent generator
    lines = experiment_progress(["anchor-configs", "data-dependent"], ctx).splitlines()
    # data-dependent shares its data-independent 3x3 run with anchor-configs (seed 0 trained above)
    assert lines == ["anchor-configs   13 of 26 runs trained (seeds 0: 13/13, 1: 0/13)",
                     "data-dependent    2 of 8 runs trained (seeds 0: 1/4, 1: 1/4)"]
    for p in planned[1:3] + planned[4:]:  # the rest
        runner.train(p.cfg)
    assert experiment_progress(["data-dependent"], ctx) == ("data-dependent    8 of 8 runs trained "
                                                          "(seeds 0: 4/4, 1: 4/4); report ready to write")


def test_all_experiments_write_reports_and_one_index_line_per_claim(tmp_path, synth_dirs):
    from research.suite import EXPERIMENTS, INDEX_HEAD, run_experiments

    ctx = fake_ctx(tmp_path, synth_dirs, seeds=[0, 1])
    results = run_experiments(list(EXPERIMENTS), ctx)
    index = (tmp_path / "README.md").read_text()
    assert INDEX_HEAD in index
    for name, res in results.items():
        text = (tmp_path / name / "README.md").read_text()
        assert "## Convergence" in text and "![validation curves](val_curves.png)" in text
        for claim, v in res["verdicts"]:
            noise = f"{v.noise:.3f}" + (" paired" if v.paired else "")
            assert (f"| {claim} | synthetic 'default', 4 it | {'held' if v.held else 'not held'} (preliminary: 2 "
                    f"seeds) | {v.margin:+.3f} | {noise} | 2 | [{name}]({name}/README.md) |") in index
        assert ("(tables: mean ± half the range over seeds, (max − min) / 2; fewer than 3, so the verdicts below are "
                "preliminary)") in text
        rows = list(csv.DictReader((tmp_path / name / "runs.csv").open()))
        assert rows and {"seed", "converged"} <= set(rows[0])
    # running one experiment again keeps the other experiments' lines
    before = [line for line in index.splitlines() if line.endswith("| [search](search/README.md) |")]
    run_experiments(["anchor-configs"], ctx)
    after = (tmp_path / "README.md").read_text()
    assert before and all(line in after for line in before)


def test_index_of_a_real_data_suite_names_its_data_and_command(tmp_path, synth_dirs, monkeypatch):
    from research.runner import BCCD
    from research.suite import NOT_RUN, REAL_DATA, SYNTHETIC_REPRODUCE, write_index

    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports" / "bccd-suite").mkdir(parents=True)  # the reports' folder, made by the experiments
    real = Context(Runner(tmp_path / "reports" / ".cache", BCCD, device="cpu", data="data/bccd", log=lambda s: None,
                          records=tmp_path / "reports" / "records"), [0, 1, 2], tmp_path / "reports" / "bccd-suite")
    text = write_index(real, {"anchor-configs": {"verdicts": []}, "search": {"verdicts": []}}).read_text()
    assert ("Data: `data/bccd` (its train/val/test splits) instead of the synthetic shapes. Reproduce: `python -m "
            "research anchor-configs,search --scale bccd --data data/bccd --seeds 3`; runs are cached in "
            "`reports/.cache` and recorded in `reports/records`, beside the synthetic suite's") in text
    assert SYNTHETIC_REPRODUCE not in text and REAL_DATA not in text  # no link to ../bccd from inside it
    assert NOT_RUN not in text  # no rows for the experiments it does not run
    synthetic = fake_ctx(tmp_path, synth_dirs)
    text = write_index(synthetic, {"search": {"verdicts": []}}).read_text()
    assert SYNTHETIC_REPRODUCE in text and REAL_DATA in text


def test_parallel_training_of_planned_runs(tmp_path):
    from research.context import Planned
    from research.suite import train_planned

    runner = Runner(tmp_path / "cache", MICRO, device="cpu", log=lambda s: None)
    cfgs = [runner.config("metaanchor", "1x1", seed=s) for s in (0, 1)]
    ctx = Context(runner, [0, 1], tmp_path, jobs=2)
    assert train_planned(ctx, [Planned(c, c["seed"]) for c in cfgs], threads=1) == 2
    for c in cfgs:
        summary = tmp_path / "cache" / "runs" / config_key(c, runner.root) / "summary.json"
        assert json.loads(summary.read_text())["iterations"] == MICRO.max_iter
    assert train_planned(ctx, [Planned(c, c["seed"]) for c in cfgs]) == 0  # cached


def test_a_failed_run_stops_the_parallel_suite_before_queued_runs_start(tmp_path):
    from metaanchor.errors import UserError
    from research.context import Planned
    from research.suite import train_planned

    runner = Runner(tmp_path / "cache", MICRO, device="cpu", log=lambda s: None)
    bad = runner.config("metaanchor", "1x1", seed=0)
    bad["data"]["train"] = str(tmp_path / "missing")
    good = [runner.config("metaanchor", "1x1", seed=s) for s in (1, 2, 3)]
    ctx = Context(runner, [0, 1, 2, 3], tmp_path, jobs=2)
    with pytest.raises(UserError, match="missing"):
        train_planned(ctx, [Planned(c, c["seed"]) for c in [bad, *good]], threads=1)
    # the failed run's worker set the stop event before taking another run; the last run could start only
    # if the other worker had trained two whole runs before the missing folder was noticed
    assert not runner.is_trained(good[2]) and not runner.run_dir(good[2]).exists()


def test_a_stopping_suite_hands_no_run_to_training(tmp_path):
    import time
    from multiprocessing import get_context

    from research import suite

    stop = get_context("spawn").Event()
    suite._init_worker(stop)
    try:
        stop.set()
        runner = Runner(tmp_path, MICRO, device="cpu", log=lambda s: None)
        cfg = runner.config("metaanchor", "1x1", seed=0)
        assert suite._train_worker(str(tmp_path), MICRO, "cpu", None, None, cfg, 1) is None
        assert not runner.run_dir(cfg).exists()
        stop.clear()  # not stopping, but past the run's latest start (the time budget)
        assert suite._train_worker(str(tmp_path), MICRO, "cpu", None, None, cfg, 1, time.time() - 1) is None
        assert not runner.run_dir(cfg).exists()
    finally:
        suite._init_worker(None)

NEVER = 1000000  # iterations: no run can end before it is interrupted
ROOT = Path(__file__).resolve().parents[2]
SUITE_ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                 PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
DEADLINE = 600.0  # seconds; only guards against a hang, never a condition of the test


def logged_iteration(out) -> int:
    try:
        lines = (out / "metrics.csv").read_text().splitlines()[1:]
    except FileNotFoundError:
        return 0
    return max((int(line.split(",")[0]) for line in lines if line.split(",")[0].isdigit()), default=0)


SUITE = """
import signal
import sys
from pathlib import Path

from research.context import Context, Planned
from research.runner import Runner, Scale
from research.suite import train_planned

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job; spawned workers inherit it
    scale = Scale("never", image_size=64, train_images=6, val_images=3, test_images=3, max_iter=NEVER, batch_size=2,
                  backbone="tiny", fpn_channels=8, head_convs=1, hidden_dim=4, lr=0.01, warmup_iters=1,
                  extra=("log.period=1", "checkpoint.period=NEVER"))
    runner = Runner(Path(sys.argv[1]), scale, device="cpu")
    ctx = Context(runner, [0, 1, 2, 3], Path(sys.argv[1]), jobs=2)
    train_planned(ctx, [Planned(runner.config("metaanchor", "1x1", seed=s), s) for s in range(4)], threads=1)
""".replace("NEVER", str(NEVER))


def test_ctrl_c_stops_a_parallel_suite_started_in_the_background(tmp_path):
    """Ctrl-C (SIGINT to the process group) while two runs train: both save last.pt, the two queued runs never
    start (the pool has already handed them to the workers), and the suite exits, even though it was started with
    SIGINT ignored."""
    script = tmp_path / "suite.py"
    script.write_text(SUITE)
    cache = tmp_path / "cache"
    with (tmp_path / "log.txt").open("w") as log:
        p = subprocess.Popen([sys.executable, str(script), str(cache)], stdout=log, stderr=subprocess.PIPE, text=True,
                             env=SUITE_ENV, start_new_session=True)
        try:
            deadline = time.monotonic() + DEADLINE
            while sum(logged_iteration(d) >= 2 for d in cache.glob("runs/*")) < 2:
                assert p.poll() is None, p.communicate()[1]
                assert time.monotonic() < deadline, "the suite's runs made no progress"
                time.sleep(0.05)
            os.killpg(p.pid, signal.SIGINT)
            _, err = p.communicate(timeout=DEADLINE)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert p.returncode != 0 and "KeyboardInterrupt" in err, err
    runs = sorted(cache.glob("runs/*"))
    assert len(runs) == 2  # the queued runs made no folder
    for run in runs:
        assert (run / "last.pt").is_file() and not (run / "summary.json").exists()
        assert 2 <= torch.load(run / "last.pt", weights_only=True)["iteration"] < NEVER
    log = (tmp_path / "log.txt").read_text()
    assert "seed=0" in log and "seed=1" in log and "seed=2" not in log and "seed=3" not in log, log
