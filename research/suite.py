"""The experiment suite: which experiments exist, training their runs (in parallel), the reports' index.

    anchor-configs  baseline vs MetaAnchor, each trained and tested with one anchor set (robustness)
    schedule        is the scale's schedule long enough? (the 3x3 pair trained twice as long)
    cross-eval      MetaAnchor trained with set A, evaluated with set B; generalisation curve
    search          anchor search on the validation split, test AP of the found set (good and poor model)
    transfer        train on one box distribution, test on another, with the same or adapted anchors
    data-dependent  data-dependent vs data-independent generator
    generator       ablation: generator width, anchor sampling on/off
    yolo            YOLOv2 vs YOLOv2 + MetaAnchor (k-means anchors), MetaAnchor also with other sets

Runs are shared through the runner's cache: e.g. the MetaAnchor 3x3 run of ``anchor-configs`` is the one
``search``, ``cross-eval``, ``data-dependent`` and ``generator`` use. ``run_experiments`` first trains every
run the named experiments plan (``ctx.jobs`` at a time, one process each), then writes the reports.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from metaanchor.engine.signals import StopSignals
from research import (
    anchor_configs,
    cross_eval,
    data_dependent,
    generator,
    schedule,
    search,
    transfer,
    yolo,
)
from research.context import Context, EvaluatedOnly, Planned
from research.index import INDEX_HEAD, NOT_RUN, REAL_DATA, SYNTHETIC_REPRODUCE, write_index  # noqa: F401
from research.runner import LOCK, Runner, Scale, config_key

EXPERIMENTS = {"anchor-configs": anchor_configs, "schedule": schedule, "cross-eval": cross_eval, "search": search,
               "transfer": transfer, "data-dependent": data_dependent, "generator": generator, "yolo": yolo}


def planned_runs(names: list[str], ctx: Context) -> list[Planned]:
    """Every training run of the named experiments, each once, seed by seed (so an interrupted suite has
    whole seeds done), in the experiments' order within a seed."""
    seen, out = set(), []
    for name in names:
        for p in EXPERIMENTS[name].plan(ctx):
            key = config_key(p.cfg, ctx.runner.root)
            if key not in seen:
                seen.add(key)
                out.append(p)
    return sorted(out, key=lambda p: p.seed)


_STOP = None  # in a worker process: the suite's stop event (set when the suite fails or is interrupted)


def _init_worker(stop) -> None:
    global _STOP
    _STOP = stop


def _train_worker(root: str, scale: Scale, device: str, data: str | None, records: str | None, cfg: dict,
                  threads: int, latest_start: float = math.inf) -> str | None:
    """Train one run in a worker process (``threads`` torch threads); returns its key, or None when the suite
    is stopping (a run already handed to the worker must not start then: the pool cannot cancel it) or when
    it is later than ``latest_start`` (epoch seconds: the run would not finish within the time budget).

    A run that fails or is interrupted (Ctrl-C reaches the workers too) sets the stop event itself before its
    worker can take the next run, so no queued run starts whatever the parent is doing at that moment."""
    if (_STOP is not None and _STOP.is_set()) or time.time() > latest_start:
        return None
    import torch

    torch.set_num_threads(threads)
    runner = Runner(root, scale, device=device, data=data, log=lambda s: print(s, flush=True), records=records)
    try:
        return runner.train(cfg).key
    except BaseException:
        if _STOP is not None:
            _STOP.set()
        raise


def seconds_per_iteration(ctx: Context, planned: list[Planned]) -> float:
    """Median training seconds per iteration of the planned runs trained on this runner's kind of device
    (their summaries, records included; 0.0 when there are none)."""
    from metaanchor.engine.device import device_label, resolve_device

    r, here, speeds = ctx.runner, None, []
    for p in planned:
        if r.is_trained(p.cfg):
            here = here or device_label(resolve_device(r.device))
            s = r.train(p.cfg).summary  # cached: reads the summary
            if s.get("devices") == [here] and s.get("wall_time_s") and s.get("iterations"):
                speeds.append(s["wall_time_s"] / s["iterations"])
    return statistics.median(speeds) if speeds else 0.0


def train_planned(ctx: Context, planned: list[Planned], threads: int = 0, until: float | None = None) -> int:
    """Train the planned runs that are not cached: in this process when ``ctx.jobs`` is 1, else ``ctx.jobs``
    worker processes (spawned; ``threads`` torch threads each, default cores / jobs). Returns the number of
    runs trained. Two suites sharing a cache coordinate through the runs' lock files.

    ``until`` (epoch seconds): a run starts only if it is expected to end by then, at the median speed of the
    runs already trained on this kind of device (``seconds_per_iteration``; with none, any run starts before
    ``until``), so a sitting of known length ends with finished runs instead of unusable partial ones."""
    r = ctx.runner
    todo = [p for p in planned if not r.is_trained(p.cfg)]
    r.log(f"{len(planned)} training runs planned, {len(planned) - len(todo)} cached, {len(todo)} to train"
          + (f" ({ctx.jobs} at a time)" if ctx.jobs > 1 and todo else ""))
    rate = seconds_per_iteration(ctx, planned) if until is not None and todo else 0.0
    latest = [math.inf if until is None else
              until - rate * (p.cfg["solver"]["max_iter"] - _last_iteration(r.run_dir(p.cfg))) for p in todo]
    if until is not None and todo:
        r.log(f"time budget: runs start until {time.strftime('%H:%M', time.localtime(until))} minus their "
              f"expected time" + (f" ({rate:.3f} s/iteration, the median of the runs trained here)" if rate else
                                  " (no run trained on this device yet, so no estimate)"))
    if ctx.jobs <= 1 or len(todo) <= 1:
        trained = 0
        for p, start_by in zip(todo, latest):
            if time.time() <= start_by:
                r.train(p.cfg)
                trained += 1
        if trained < len(todo):
            r.log(f"{len(todo) - trained} runs not started: they would not end within the time budget")
        return trained
    threads = threads or max(1, (os.cpu_count() or 1) // ctx.jobs)
    t0, finished = time.time(), 0
    spawn = get_context("spawn")
    stop = spawn.Event()
    pool = ProcessPoolExecutor(ctx.jobs, mp_context=spawn, initializer=_init_worker, initargs=(stop,))
    # SIGINT / SIGTERM raise KeyboardInterrupt here even where the shell started us with SIGINT ignored
    # (a background job), so the parent stops waiting and sets the event below; an interrupted or failed
    # run's worker sets it too (_train_worker), before it can take a queued run
    signals = StopSignals(deferred=False)
    try:
        with signals:
            records = str(r.records) if r.records else None
            futures = [pool.submit(_train_worker, str(r.root), r.scale, r.device, r.data, records, p.cfg, threads,
                                   start_by) for p, start_by in zip(todo, latest)]
            for f in as_completed(futures):
                if f.result() is None:  # (a failed run stops the suite with its error)
                    continue  # not started: past its latest start
                finished += 1
                r.log(f"[{finished}/{len(todo)} runs trained, {(time.time() - t0) / 60:.1f} min]")
    except BaseException:  # Ctrl-C or an error: queued runs never start, even those the workers already hold
        stop.set()
        raise
    finally:  # running runs save their checkpoint on Ctrl-C (their own SIGINT handling) and are waited for
        pool.shutdown(wait=True, cancel_futures=True)
    if finished < len(todo):
        r.log(f"{len(todo) - finished} runs not started: they would not end within the time budget")
    r.trained += finished
    return finished


def _last_iteration(run_dir: Path) -> int:
    """The last iteration a run's metrics.csv logged (0: none)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return 0
    with path.open(newline="") as f:
        return max((int(row["iter"]) for row in csv.DictReader(f) if row.get("iter", "").isdigit()), default=0)


def progress(ctx: Context, planned: list[Planned]) -> str:
    """What is left of a suite filled over several sittings: one line per planned run (trained, with its last
    validation AP; running; stopped; not started) and a total with the time left at the median speed of the
    runs trained on this kind of device (``seconds_per_iteration``). "Running" means the run's lock file is there
    (a run killed with -9 leaves it too)."""
    r, lines, trained, left = ctx.runner, [], 0, 0
    for p in planned:
        d, total = r.run_dir(p.cfg), p.cfg["solver"]["max_iter"]
        if r.is_trained(p.cfg):
            run = r.train(p.cfg)  # cached: reads the summary
            trained += 1
            curve = run.curve  # reads metrics.csv (or the record)
            state = f"trained, validation AP {curve[-1][1]:.3f}" if curve else "trained"
            state += "" if run.weights_here else " (record)"
        else:
            done = _last_iteration(d)
            left += total - done
            if (d / LOCK).is_file():
                state = f"running, at iteration {done}"
            elif not done:
                state = "not started"
            elif (d / "last.pt").is_file():
                state = f"stopped at iteration {done}, resumes from its last checkpoint"
            else:
                state = f"stopped at iteration {done} before a checkpoint, starts again"
        lines.append(f"{d.name} {total:>6} it  {state:<40} seed {p.seed} "
                     + " ".join(f"{k}={v}" for k, v in p.info.items()))
    rate = seconds_per_iteration(ctx, planned) if left else 0.0
    eta = (f", about {left * rate / ctx.jobs / 3600:.1f} h with {ctx.jobs} at a time at the median "
           f"{rate:.2f} s/iteration of the runs trained on this device" if rate else "")
    return "\n".join(lines + [f"{trained} of {len(planned)} planned runs trained; {left} iterations left{eta}"])


def experiment_progress(names: list[str], ctx: Context) -> str:
    """One line per named experiment: its runs trained, per seed (a run shared by experiments counts in each),
    so a suite filled over sittings can finish one experiment's seeds first (``python -m research NAME --seeds 3``)."""
    r, lines = ctx.runner, []
    for name in names:
        plan = EXPERIMENTS[name].plan(ctx)
        per_seed = [[r.is_trained(p.cfg) for p in plan if p.seed == s] for s in ctx.seeds]
        done = sum(map(sum, per_seed))
        lines.append(f"{name:<16}{done:>3} of {len(plan)} runs trained (seeds "
                     + ", ".join(f"{s}: {sum(t)}/{len(t)}" for s, t in zip(ctx.seeds, per_seed)) + ")"
                     + ("; report ready to write" if done == len(plan) else ""))
    return "\n".join(lines)


def run_experiments(names: list[str], ctx: Context, threads: int = 0, until: float | None = None) -> dict[str, dict]:
    """Train every planned run of the named experiments (those expected to end by ``until``, see
    ``train_planned``), then run them in order, writing their reports; an experiment whose runs are not all
    trained then (or every one, with ``ctx.evaluate_only``) only evaluates its trained runs, the runner
    recording the results, and writes nothing. Returns the reported experiments' results and writes
    ``ctx.out/README.md`` when there are any."""
    if not ctx.evaluate_only:
        train_planned(ctx, planned_runs(names, ctx), threads, until)
    results, asked = {}, ctx.evaluate_only
    for name in names:
        t0, ctx.eval_mark = time.time(), ctx.runner.eval_seconds
        ctx.evaluate_only = asked or not all(ctx.runner.is_trained(p.cfg) for p in EXPERIMENTS[name].plan(ctx))
        ctx.runner.log(f"== experiment {name}" + (" (evaluating its trained runs)" if ctx.evaluate_only else ""))
        try:
            results[name] = EXPERIMENTS[name].run(ctx) | {"wall_s": time.time() - t0}
        except EvaluatedOnly as done:
            ctx.runner.log(f"{name}: {done.args[0]} trained runs evaluated in {time.time() - t0:.0f} s "
                           f"(results in their records; no report written)")
    ctx.evaluate_only = asked
    if results:
        write_index(ctx, results)
    return results
