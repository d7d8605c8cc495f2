"""reports/bccd/{runs.csv, val_curves.png} from the runs of benchmarks/bccd_gpu.sh.

    python benchmarks/bccd_report.py runs/bccd-gpu reports/bccd

A run counts as converged when its validation AP moves by at most 0.01 over the last 20 % of
iterations (the range of the evaluations there).
"""

import csv
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PLATEAU = 0.01


def main(runs_dir: Path, out: Path) -> None:
    runs = [f"{h}-s{s}" for h in ("metaanchor", "predefined") for s in (0, 1, 2)]
    rows = []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in runs:
        m = [x for x in csv.DictReader(open(runs_dir / r / "metrics.csv")) if x["AP"]]
        it, ap = [int(x["iter"]) for x in m], [float(x["AP"]) for x in m]
        meta = r.startswith("meta")
        ax.plot(it, ap, color="tab:blue" if meta else "tab:orange", alpha=0.8,
                label=("MetaAnchor" if meta else "predefined (baseline)") if r.endswith("s0") else None)
        last = [a for i, a in zip(it, ap) if i >= 0.8 * it[-1]]
        t = json.loads((runs_dir / r / "test.json").read_text())
        pc = {c["class"]: c for c in t["per_class_table"]}
        rows.append({"run": r, "head": r.split("-")[0], "seed": int(r[-1]), "val_AP_final": round(ap[-1], 4),
                     "val_AP_last20pct_range": round(max(last) - min(last), 4),
                     "converged": max(last) - min(last) <= PLATEAU,
                     **{f"test_{k}": round(t[k], 4) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")},
                     **{f"test_AP_{c}": round(pc[c]["AP"], 4) for c in pc},
                     **{f"test_AP50_{c}": round(pc[c]["AP50"], 4) for c in pc},
                     "train_s": float(m[-1]["seconds"])})
    ax.axvspan(0.8 * it[-1], it[-1], color="grey", alpha=0.12, label="last 20 %")
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation AP (BCCD val, 87 images)")
    ax.set_ylim(0, 0.6)
    ax.set_title("BCCD, tiny RetinaNet, configs/bccd.yaml: 3 seeds per head")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "val_curves.png", dpi=110)
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for h in ("metaanchor", "predefined"):
        sel = [r for r in rows if r["head"] == h]
        for k in [k for k in rows[0] if k.startswith("test_") or k == "val_AP_final"]:
            v = [r[k] for r in sel]
            print(f"{h:<11} {k:<22} {statistics.mean(v):.3f} +- {statistics.stdev(v):.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
