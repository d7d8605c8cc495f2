"""The reports' index: ``verdicts.json`` (every claim's verdict, written by the suite from its results) and the
``README.md`` rendered from it, so the index cannot drift from the verdicts the experiments computed.

``write_index`` merges a suite's new verdicts into ``OUT/verdicts.json`` (the verdicts of experiments not run this
time are kept) and renders ``OUT/README.md`` with ``render_index``; the synthetic suite's index also lists the
claims of every real-data suite beside it (``OUT/<name>-suite/verdicts.json``). The wording rules (``RULES``:
what "held" means, what noise is, the one spread) are written once, at the top of the index, and are the words
the reports use (``research.report.SPREAD_DEF``, ``research.verdicts``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from research.__main__ import NAMES
from research.report import SPREAD, SPREAD_DEF
from research.runner import PLATEAU, PLATEAU_TAIL
from research.verdicts import FLOOR, MIN_SEEDS, TIE, held_cell

VERDICTS = "verdicts.json"
INDEX_HEAD = "| claim | data | verdict | margin | noise | seeds | report |"
NOT_RUN = "(no verdict yet: this experiment has not been run at this scale)"

REPRODUCE = """\
Reproduce: `python -m research all --seeds 3 --jobs 2` (`--scale converged`, the default; `--quick` is the
smoke-test scale). Runs are cached in `.cache/` under this folder, keyed by a hash of their config, so a second
call reuses them and an interrupted `all` resumes from each run's last checkpoint; each finished run also writes
`records/<key>.json` (its summary, validation curve, evaluations and a fingerprint of each dataset it used, a few
kB, committed), so with every planned run recorded `python -m research all --seeds 3` trains nothing and rewrites
the reports from the records. `python -m research all --status` lists the planned runs and the time left;
`--hours H` starts only the runs expected to end within H hours. A run of this scale takes 26-38 min with two
runs sharing a 2-core machine; on a GPU machine use `--device cuda --jobs 4` (one H100: four runs at once at
15-19 iterations/s each, about 12 min per run; more runs at once add little, the tiny model's step being bound by
kernel launches). A run stopped with Ctrl-C resumes on another machine; `runs.csv` names the devices each run
was trained on."""
SYNTHETIC_REPRODUCE = REPRODUCE  # the name the tests and older callers use
REAL_DATA = """\
Real data (BCCD blood-cell photos): anchor-configs and search with 3 seeds each, the same claims as the synthetic
suite ([bccd-suite/](bccd-suite/README.md), its rows below). The first look, MetaAnchor vs predefined anchors
with 3x3 (3 seeds each) and anchor search for one model trained with a good and one with a poor set:
[bccd/](bccd/README.md)."""


def _near_convergence(rows: list[dict]) -> str:
    """How far the scale's schedule is from convergence, from the schedule experiment's per-seed gains ('' when
    it has not been run)."""
    gains = [g for r in rows if r["experiment"] == "schedule" for g in r.get("per_seed", [])]
    its = next((r["claim"].split()[0] for r in rows if r["experiment"] == "schedule"), None)
    if not gains or its is None or not its.isdigit():
        return ""
    return (f"near convergence, not converged: every seed still gained {min(gains):+.3f}..{max(gains):+.3f} test AP "
            f"from {its} to {2 * int(its)} iterations ([schedule](schedule/README.md))")


def rules(near: str = "") -> str:
    """The wording rules, written once at the top of the index."""
    plateau = (f"- **Plateau rule** (`converged` in each runs.csv): a run's validation AP moved by at most {PLATEAU}\n"
               f"  over the last {PLATEAU_TAIL:.0%} of its iterations. A cosine schedule flattens every run at its "
               "end, so passing\n  it does not mean the model has converged"
               + (f";\n  the synthetic scale is {near}." if near else "."))
    return f"""## How to read the table

- **Spread** (the {SPREAD}: every ± in every report, every error bar):
  {SPREAD_DEF}, computed by `research.report.seed_spread`.
- **Margin**: the difference the claim is about, positive in the claim's favour.
- **Noise**: the sum of the two sides' spreads, at least {TIE} AP; **paired** noise (both sides are the same
  models evaluated two ways, e.g. with the searched and with the training anchors): the spread of the per-seed
  differences, at least {TIE} AP. A difference is **within the noise** when its size is at most the noise, else
  **beyond** it.
- **held**: a claim that something is better held when its margin exceeds the noise; a claim that something is
  at least as good (a searched set, a schedule that is long enough) held unless its margin is below minus the
  noise. **not held**: otherwise. **untested**: both sides score below {FLOOR} AP, so the comparison says
  nothing. A verdict from fewer than {MIN_SEEDS} seeds is marked preliminary.
{plateau}

The exact rule of each claim is in its report and in `research/verdicts.py`."""


def claim_rows(ctx, results: dict[str, dict]) -> list[dict]:
    """One record per (experiment, claim) of ``results``: verdict, margin, noise, per-seed values, seeds, data."""
    r = ctx.runner
    s = r.scale
    data = (f"{Path(r.data).resolve().name} (real data), {s.max_iter} it" if r.data
            else f"synthetic '{s.distribution}', {s.max_iter} it")
    return [{"experiment": name, "claim": claim, "held": bool(v.held), "tested": bool(v.tested),
             "margin": round(float(v.margin), 6), "noise": round(float(v.noise), 6), "paired": bool(v.paired),
             "per_seed": [round(float(x), 6) for x in v.per_seed], "seeds": len(ctx.seeds), "data": data}
            for name, res in results.items() for claim, v in res["verdicts"]]


def _cells(row: dict, prefix: str, out: Path) -> str:
    folder = f"{prefix}{row['experiment']}"
    link = f"[{folder}]({folder}/README.md)" if (out / folder / "README.md").is_file() else folder
    if row["claim"] == NOT_RUN:
        return f"| {NOT_RUN} | {row['data']} | – | – | – | – | {link} |"
    noise = f"{row['noise']:.3f}" + (" paired" if row["paired"] else "")
    return (f"| {row['claim']} | {row['data']} | {held_cell(row['held'], row['seeds'], row['tested'])} | "
            f"{row['margin']:+.3f} | {noise} | {row['seeds']} | {link} |")


def render_index(out: Path) -> str:
    """``OUT/README.md`` from ``OUT/verdicts.json`` (and, for the synthetic suite, the real-data suites beside it)."""
    out = Path(out)
    state = json.loads((out / VERDICTS).read_text())
    rows = state["claims"]
    lines = [_cells(r, "", out) for r in rows]
    subs = ""
    if not state.get("data"):
        for sub in sorted(out.glob(f"*-suite/{VERDICTS}")):
            lines += [_cells(r, f"{sub.parent.name}/", out) for r in json.loads(sub.read_text())["claims"]]
        subs = f"\n\n{REAL_DATA}"
    near = _near_convergence(rows)
    scale = state["scale"] + (f" ({near})" if near and not state.get("data") else "")
    return f"""# Experiments: the paper's claims

MetaAnchor (Yang et al., NeurIPS 2018) claims that generating the anchor functions from the anchor boxes makes a
detector more robust to the anchor configuration and to the box distribution, that anchors can be searched on
validation data without retraining, that it transfers better, and that a data-dependent generator helps. Each row
below is one claim as tested here, with its verdict; the paper's AP numbers were not available to us, so
comparisons with the paper are in words only (in each report).

{rules(near)}

{INDEX_HEAD}
|---|---|---|---|---|---|---|
""" + "\n".join(lines) + f"""

Scale: {scale}. Reports written on {state['device']}.{subs}

{state['reproduce']}
"""


def write_index(ctx, results: dict[str, dict]) -> Path:
    """Merge ``results``' verdicts into ``ctx.out/verdicts.json`` (keeping those of experiments not run this
    time; the synthetic suite gets a 'no verdict yet' row for each experiment without any) and render
    ``ctx.out/README.md`` from it."""
    from research.context import device_name

    r, out = ctx.runner, Path(ctx.out)
    old = json.loads((out / VERDICTS).read_text())["claims"] if (out / VERDICTS).is_file() else []
    new = claim_rows(ctx, results)
    keep = [x for x in old if x["experiment"] not in results and x["claim"] != NOT_RUN]
    rows = [x for n in NAMES for x in keep + new if x["experiment"] == n]
    if not r.data:  # the synthetic suite is all of them; a real-data suite is the experiments run on its data
        data = new[0]["data"] if new else f"synthetic '{r.scale.distribution}', {r.scale.max_iter} it"
        missing = [n for n in NAMES if not any(x["experiment"] == n for x in rows)]
        rows += [{"experiment": n, "claim": NOT_RUN, "data": data} for n in missing]
        rows = [x for n in NAMES for x in rows if x["experiment"] == n]
    reproduce = REPRODUCE if not r.data else (
        f"Data: `{r.data}` (its train/val/test splits) instead of the synthetic shapes. Reproduce: `python -m research "
        f"{','.join(n for n in NAMES if n in results or any(x['experiment'] == n for x in rows))} --scale "
        f"{r.scale.name} --data "
        f"{r.data} --seeds {len(ctx.seeds)}`; runs are cached in `{os.path.relpath(r.root)}` and recorded in "
        f"`{os.path.relpath(r.records or r.root)}`, beside the synthetic suite's (run keys differ by dataset).")
    state = {"data": r.data, "device": device_name(ctx),
             "scale": f"`--scale {r.scale.name}`: {r.scale.describe(r.data)}", "reproduce": reproduce, "claims": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / VERDICTS).write_text(json.dumps(state, indent=1, ensure_ascii=False) + "\n")
    index = out / "README.md"
    index.write_text(render_index(out))
    if r.data and (out.parent / VERDICTS).is_file():  # the synthetic suite's index lists this suite's claims too
        (out.parent / "README.md").write_text(render_index(out.parent))
    return index
