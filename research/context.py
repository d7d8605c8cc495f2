"""What every experiment shares: the context (runner, seeds, report folder), the anchor sets, run rows
with the plateau rule's columns, and the report sections common to all experiments.

An experiment module has ``plan(ctx) -> list[Planned]`` (every training run it needs, so the suite can
train them in parallel first) and ``run(ctx) -> dict`` (trains what is missing, evaluates, writes
``reports/<name>/``) returning ``{"verdicts": [(claim, Verdict)], "rows": [...]}``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from research import report
from research.runner import PLATEAU, PLATEAU_TAIL, Run, Runner, tail_of
from research.verdicts import MIN_SEEDS, TIE, Verdict

# Anchor sets (SPEC strings, level-relative). On the 12000-iteration scale's 'elongated' boxes (h/w 1/4..4) the
# two poor sets are plausible choices that cover the boxes badly (their best-possible recall is in the reports).
SQUARE = "scales=1,1.26,1.59;ratios=1"  # 3 scales, ratio 1 only: a set for roundish objects
LARGE = "scales=2;ratios=0.5,1,2"  # one scale twice the standard box: a set for larger objects
POOR = (SQUARE, LARGE)
PRESETS = ("1x1", "1x3", "3x3", "5x5")  # the sets every data trains with, beside its poor sets
ANCHOR_SETS = (*PRESETS, *POOR)
# BCCD's blood cells are round (h/w 0.5..2), so square-only suits them; its poor sets are a set for tall/wide
# objects and the too-large one (their fit: reports/bccd/anchor_sets_train.txt)
ELONGATED = "scales=1,1.26,1.59;ratios=0.33,3"  # 3 scales, ratios 1/3 and 3: a set for pedestrians or text lines
POOR_BY_SCALE = {"bccd": (ELONGATED, LARGE)}  # Scale.name -> its poor sets (others: POOR)
# anchor-configs' second extra run trains both heads with LARGE9, too large with 3x3's nine shapes, to tell
# "too large" from "few anchors" (MetaAnchor's gain on BCCD grows with the anchors per location).
LARGE9 = "scales=2,2.52,3.17;ratios=0.5,1,2"  # 3x3 with every scale doubled
COUNT_TWIN_BY_SCALE = {"bccd": (LARGE, LARGE9)}  # Scale.name -> (poor set, its 9-anchor twin)
LABELS = {SQUARE: "square only (3x1)", LARGE: "too large (scale 2, 1x3)", ELONGATED: "elongated only (3x2)",
          LARGE9: "too large, 9 anchors (3x3 doubled)"}
MODEL_NAMES = {"predefined": "baseline", "metaanchor": "MetaAnchor", "metaanchor-dd": "MetaAnchor-DD"}


def label(spec: str) -> str:
    return LABELS.get(spec, spec)


class EvaluatedOnly(Exception):
    """An experiment stopped after evaluating its trained runs (``Context.evaluate_only``); args[0]: how many."""


@dataclass
class Planned:
    """One training run an experiment needs: its config and what identifies it in the report."""

    cfg: dict
    seed: int
    info: dict = field(default_factory=dict)


@dataclass
class Context:
    """What every experiment needs: the runner, the seeds, the report folder, the search budget."""

    runner: Runner
    seeds: list[int]
    out: Path
    search_budget: int = 12
    jobs: int = 1  # training runs in parallel (suite.train_planned)
    evaluate_only: bool = False  # evaluate the trained runs (recording the results), train and write nothing
    started: float = field(default_factory=time.time)
    eval_mark: float = 0.0  # runner.eval_seconds when the current experiment started

    def train(self, planned: list[Planned]) -> list[tuple[Planned, Run]]:
        """The planned runs, trained (or taken from the cache or the records); with ``evaluate_only``, only the
        runs already trained."""
        r = self.runner
        return [(p, r.train(p.cfg)) for p in planned if not self.evaluate_only or r.is_trained(p.cfg)]

    def evaluated(self, done: list) -> None:
        """Called by an experiment once it has evaluated its runs, before it writes anything: with
        ``evaluate_only`` it stops there (``EvaluatedOnly``), the evaluations being recorded by the runner."""
        if self.evaluate_only:
            raise EvaluatedOnly(len(done))

    @property
    def poor(self) -> tuple[str, ...]:
        """The plausible-but-poor anchor sets for the data the runs train on (``POOR_BY_SCALE``, else ``POOR``)."""
        return POOR_BY_SCALE.get(self.runner.scale.name, POOR)

    @property
    def count_twin(self) -> tuple[str, str] | None:
        """(poor set, the same kind of set with nine anchors) for anchor-configs' anchor-count extra run, for
        the data that has one (``COUNT_TWIN_BY_SCALE``); None: no such run."""
        return COUNT_TWIN_BY_SCALE.get(self.runner.scale.name)

    @property
    def anchor_sets(self) -> tuple[str, ...]:
        """The sets anchor-configs and cross-eval train with: ``ANCHOR_SETS`` with this data's poor sets."""
        return (*PRESETS, *self.poor)

    def dir(self, name: str) -> Path:
        """The experiment's report folder; with ``evaluate_only``, a folder in the cache instead, so the files an
        experiment writes before its evaluations (k-means anchor files) leave the committed report alone."""
        d = (self.runner.root / "unreported" if self.evaluate_only else self.out) / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def test(self, distribution: str | None = None) -> Path:
        return self.runner.dataset(distribution or self.runner.main, "test")

    def val(self, distribution: str | None = None) -> Path:
        return self.runner.dataset(distribution or self.runner.main, "val")


def metrics(m: dict) -> dict:
    return {k: m[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


def row(run: Run, seed: int, **fields) -> dict:
    """A runs.csv row: seed, the caller's fields, the plateau rule's columns, training time, run key."""
    return {"seed": seed, **fields, **run.convergence, "train_s": run.summary.get("wall_time_s", 0.0),
            "device": trained_on(run), "run": run.key}


def trained_on(run: Run) -> str:
    """The devices a run was trained on, in order (``cuda (NVIDIA H100 80GB HBM3), then cpu`` for a run resumed
    on another machine); ``not recorded`` for runs from before summaries recorded it."""
    return ", then ".join(run.summary.get("devices", [])) or "not recorded"


def device_name(ctx: Context) -> str:
    from metaanchor.engine.device import resolve_device

    return str(resolve_device(ctx.runner.device))


def split_images(ctx: Context, split: str = "test") -> int:
    """Images in a split the reports use (``test`` or ``val``): the scale's synthetic count, or that split of
    ``--data``."""
    if not ctx.runner.data:
        return getattr(ctx.runner.scale, f"{split}_images")
    return len(json.loads((getattr(ctx, split)() / "annotations.json").read_text())["images"])


def scale_section(ctx: Context, runs: list[Run], wall: float, extra: str = "", scale=None) -> str:
    """The report's Scale section; ``scale`` replaces the runner's when an experiment trains differently."""
    unique = list({r.key: r for r in runs}.values())
    train_s = sum(r.summary.get("wall_time_s", 0.0) for r in unique)
    devices = Counter(trained_on(r) for r in unique)
    amp = (" (iterations on a GPU ran in mixed precision, solver.amp; on the CPU in float32)"
           if any("cuda" in d for d in devices) else "")
    eval_s = ctx.runner.eval_seconds - ctx.eval_mark
    what = (scale or ctx.runner.scale).describe(ctx.runner.data)
    few = (f"; fewer than {MIN_SEEDS}, so the verdicts below are preliminary" if len(ctx.seeds) < MIN_SEEDS
           else "")
    return (f"## Scale\n\n- {what}.\n- Seeds: {', '.join(map(str, ctx.seeds))} "
            f"(tables: mean ± {report.SPREAD_DEF}{few}).\n- Device: {device_name(ctx)} (evaluation). Training "
            f"runs used: {len(unique)}, trained on {'; '.join(f'{d}: {n}' for d, n in sorted(devices.items()))}{amp}; "
            f"compute: {train_s / 60:.1f} min of training + {eval_s / 60:.1f} min of evaluation "
            f"(cached runs and evaluations included, measured when they ran, often beside other runs on the same "
            f"machine, so they are not speeds); wall time of this report's last invocation: {wall / 60:.1f} min."
            f"\n- Metrics: COCO AP (IoU .50:.95) and AP50 from pycocotools on the test split "
            f"({split_images(ctx)} images), never the training data.{extra}")


def report_link(d: Path, name: str) -> str | None:
    """A link from the report in folder ``d`` to its sibling report ``name``, or None when that report does not
    exist (the reports link only to reports that do)."""
    return f"[{name}](../{name}/README.md)" if (Path(d).parent / name / "README.md").is_file() else None


def curves_section(d: Path, groups: dict[str, list[Run]], title: str) -> str:
    """``val_curves.png`` (validation AP of every run, coloured by group) and the plateau rule's count; the
    sibling ``schedule`` report is linked when it exists."""
    schedule = report_link(d, "schedule")
    longer = (f"{schedule} trains the same models for longer." if schedule else
              "no longer schedule was trained on this data, so nothing here shows how far from convergence "
              "these runs are.")
    unique = {r.key: (g, r) for g, rs in groups.items() for r in rs}
    report.curves_plot({g: [r.curve for gg, r in unique.values() if gg == g] for g in groups},
                       d / "val_curves.png", title, tail=PLATEAU_TAIL)
    conv = {key: r.convergence for key, (_, r) in unique.items()}  # each reads the run's metrics.csv
    ok = sum(c["converged"] for c in conv.values())
    ranges = [c["val_AP_last20_range"] for c in conv.values() if c["val_AP_last20_range"] == c["val_AP_last20_range"]]
    worst = f"; largest range {max(ranges):.3f}" if ranges else ""
    others = [_not_converged(g, r) for key, (g, r) in unique.items() if not conv[key]["converged"]]
    listed = f" Failed the rule: {'; '.join(others)}." if others else ""
    return (f"## Convergence\n\n{ok} of {len(conv)} runs passed the plateau rule (validation AP within "
            f"{PLATEAU} over the last {PLATEAU_TAIL:.0%} of the iterations; `converged` and "
            f"`val_AP_last20_range` in runs.csv){worst}.{listed} A cosine schedule flattens every run at its end, "
            f"so the rule alone is weak evidence: {longer}"
            f"\n\n![validation curves](val_curves.png)")


def _not_converged(group: str, run: Run) -> str:
    """Which way a run the plateau rule rejects was moving over the tail: up (still learning: its numbers
    understate the model) or down (past its best, e.g. overfitting: not still learning)."""
    last = tail_of(run.curve)
    where = f"`{run.key[:8]}` ({group}, seed {run.cfg.get('seed', '?')})"
    if len(last) < 2:
        return f"{where}, too few evaluations in the tail"
    if last[-1] > last[0]:
        return f"{where}, rising over the tail ({last[0]:.3f} to {last[-1]:.3f}): still learning"
    return (f"{where}, falling from its tail's best ({max(last):.3f} to {last[-1]:.3f}): past its best, not still "
            f"learning")


def verdict_section(verdicts: list[tuple[str, Verdict]], paper: str, would_change: str) -> str:
    """'Did the claim hold here?': one line per claim with margin and noise, what the paper says, and what
    would change the verdict."""
    lines = [f"- **{claim}**: {'held' if v.held else 'did not hold' if v.tested else 'untested'}. {v.text}."
             for claim, v in verdicts]
    paired = (f" Where both sides are the same models evaluated two ways (the paired noise), the models' own "
              f"seed-to-seed variation cancels, so the noise is the spread ({report.SPREAD}) of the per-seed "
              f"differences, at least {TIE} AP." if any(v.paired for _, v in verdicts) else "")
    unpaired = (" Two different models of the same seed share their data order, augmentation and sampled anchors, "
                "yet their comparison stays unpaired (one rule for every report); 'per seed Δ' lists their "
                "differences seed by seed." if any(v.per_seed for _, v in verdicts) else "")
    return ("## Did the claim hold here?\n\n" + "\n".join(lines) + f"\n\n{paper} Noise is the sum of the two "
            f"seed spreads ({report.SPREAD_DEF}), at least {TIE} AP.{unpaired}{paired} {would_change}")
