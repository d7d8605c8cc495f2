"""schedule: is the scale's schedule long enough? The 3x3 pair (baseline, MetaAnchor) trained with half, all
and twice the scale's iterations: under a cosine schedule every run looks flat at its end (the plateau rule),
so only schedules of different lengths show whether the models were still learning. The scale's schedule counts
as long enough when doubling it (all -> twice) gained at most ``GAIN`` test AP beyond the noise."""

from __future__ import annotations

import time

from research import report
from research.context import (
    MODEL_NAMES,
    Context,
    Planned,
    curves_section,
    metrics,
    row,
    scale_section,
    verdict_section,
)
from research.runner import plateau
from research.verdicts import Verdict, noise

HEADS = ("predefined", "metaanchor")
FACTORS = (0.5, 1.0, 2.0)  # of the scale's max_iter (1.0: the runs every other experiment uses)
GAIN = 0.01  # a schedule is long enough when its last doubling gained at most this much test AP (beyond the noise)


def iterations(ctx: Context, factor: float) -> int:
    return max(1, round(ctx.runner.scale.max_iter * factor))


def _cfg(ctx: Context, head: str, factor: float, seed: int) -> dict:
    n = iterations(ctx, factor)
    return ctx.runner.config(head, "3x3", seed, sample=head != "predefined",
                             extra=(f"solver.max_iter={n}", f"checkpoint.period={n}"))


def plan(ctx: Context) -> list[Planned]:
    return [Planned(_cfg(ctx, head, f, seed), seed, {"head": head, "factor": f})
            for seed in ctx.seeds for head in HEADS for f in FACTORS]


def long_enough(short: list[float], long: list[float], what: str) -> Verdict:
    """Claim: doubling the schedule (``short`` -> ``long``, AP over seeds in seed order) gained at most ``GAIN``
    AP. Like ``verdicts.at_least``, held unless the mean gain exceeds ``GAIN`` by more than the noise; the margin
    is ``GAIN`` minus the gain. The per-seed gains are listed, and the text says so when every seed gained more
    than ``GAIN`` (then the seeds' spread, not a plateau, is what the verdict rests on)."""
    (ms, _), (ml, _) = report.mean_spread(short), report.mean_spread(long)
    gain, n = ml - ms, noise(short, long)
    per_seed = tuple(y - x for x, y in zip(short, long)) if len(short) == len(long) > 1 else ()
    listed = "; per seed Δ " + ", ".join(f"{g:+.3f}" for g in per_seed) if per_seed else ""
    every = (f"; every seed gained more than {GAIN}, so the mean is within the noise, not flat"
             if per_seed and min(per_seed) > GAIN and gain <= GAIN + n else "")
    return Verdict(gain <= GAIN + n, GAIN - gain, n,
                   f"{what}: test AP {ms:.3f} -> {ml:.3f} with twice the iterations, gain {gain:+.3f} "
                   f"(allowed {GAIN} + noise {n:.3f}{listed}){every}", per_seed=per_seed)


def run(ctx: Context) -> dict:
    t0, r, rows = time.time(), ctx.runner, []
    done = ctx.train(plan(ctx))
    for p, run_ in done:
        m = r.evaluate(run_, ctx.test(), "3x3")
        rows.append(row(run_, p.seed, model=MODEL_NAMES[p.info["head"]],
                        iterations=iterations(ctx, p.info["factor"]), **metrics(m),
                        val_AP_last50_range=plateau(run_.curve, tail=0.5)[0]))
    ctx.evaluated(done)
    d = ctx.dir("schedule")
    report.write_csv(rows, d / "runs.csv")
    ap = report.group(rows, ("model", "iterations"))
    its = [iterations(ctx, f) for f in FACTORS]
    mean = {k: report.mean_spread(v)[0] for k, v in ap.items()}
    body = [[MODEL_NAMES[h]] + [report.fmt(ap[(MODEL_NAMES[h], n)]) for n in its]
            + [f"{mean[(MODEL_NAMES[h], its[-1])] - mean[(MODEL_NAMES[h], its[-2])]:+.3f}"] for h in HEADS]
    gap = {n: mean[("MetaAnchor", n)] - mean[("baseline", n)] for n in its}
    half = report.group(rows, ("model", "iterations"), "val_AP_last50_range")
    flat = "; ".join(f"{MODEL_NAMES[h]} " + ", ".join(f"{report.fmt(half[(MODEL_NAMES[h], n)])} ({n})" for n in its)
                     for h in HEADS)
    report.shift_plot({MODEL_NAMES[h]: [(n, ap[(MODEL_NAMES[h], n)]) for n in its] for h in HEADS},
                      d / "ap_vs_iterations.png", "test AP (3x3) against the schedule's length",
                      xlabel="iterations (cosine schedule)")
    scale_its = iterations(ctx, 1.0)
    verdicts = [(f"{scale_its} iterations are enough ({MODEL_NAMES[h]})",
                 long_enough(ap[(MODEL_NAMES[h], scale_its)], ap[(MODEL_NAMES[h], 2 * scale_its)], MODEL_NAMES[h]))
                for h in HEADS]
    runs = [x for _, x in done]
    report.write_readme(d, f"schedule: is the scale's {scale_its}-iteration schedule long enough?", [
        f"The 3x3 pair of `anchor-configs` (baseline: predefined anchors; MetaAnchor: sampled anchors) trained "
        f"with {', '.join(map(str, its))} iterations (the same cosine schedule, stretched; {scale_its} is the "
        "scale's, the runs every other report uses). The plateau rule looks at the end of one schedule, where "
        "a cosine learning rate is near zero and every run is flat; schedules of different lengths show whether "
        "the models were still learning.",
        scale_section(ctx, runs, time.time() - t0),
        "## Results (test AP, 3x3 anchors)\n\n" + report.markdown_table(
            ["model"] + [f"{n} iterations" for n in its] + ["last doubling"], body)
        + "\n\nMetaAnchor minus baseline: " + ", ".join(f"{gap[n]:+.3f} at {n} iterations" for n in its)
        + f".\n\nRange of validation AP over the last half of each run (iterations): {flat}. A cosine schedule "
          "is at half its peak learning rate where the last half starts, so a flat last half says more about the "
          "model than the last 20 % does.\n\n![AP vs iterations](ap_vs_iterations.png)",
        curves_section(d, {f"{MODEL_NAMES[h]}, {n} it": [x for p, x in done if p.info["head"] == h
                                                         and iterations(ctx, p.info["factor"]) == n]
                           for h in HEADS for n in its}, "schedule: validation AP for each schedule length"),
        verdict_section(verdicts, f"Not a claim of the paper: a check of the scale's {scale_its}-iteration schedule.",
                        f"Where a model gains more than {GAIN} AP from a doubled schedule, the other reports compare "
                        "models at a fixed training budget, not at convergence, and a head that learns more slowly "
                        "is at a disadvantage there."),
        "Files: `runs.csv`, `ap_vs_iterations.png`, `val_curves.png`."])
    return {"verdicts": verdicts, "rows": rows}
