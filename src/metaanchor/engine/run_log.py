"""What a training run writes beside its checkpoints: the logs, the resolved config, the summary, the curves.

    log = RunLog(out)                  # the run folder
    log.open(config_text, start_iter)  # clean what a killed run left, write config.yaml, open TensorBoard
    log.log(it, lr, skipped, seconds, {"loss": 0.9, ...}, metrics)  # a metrics.csv row + TensorBoard scalars
    log.write_summary(summary); log.draw_curves(metrics); log.close()

What the terminal (or the file stdout is redirected to) shows is plain text, one line per event:
:func:`progress_line` every ``log.period`` iterations, :func:`banner` once at the start.

Every file is written through :mod:`metaanchor.files` (a full disk or a read-only folder is a one-line
``WriteError`` naming the file).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from metaanchor import checkpoint as ckpt
from metaanchor.engine.evaluate import METRIC_KEYS
from metaanchor.files import write_text, writing

# columns only ever appended, so older readers keep their positions; obj: YOLOv2's objectness loss
CSV_FIELDS = ["iter", "lr", "loss", "cls", "box", "skipped", "seconds"] + list(METRIC_KEYS) + ["obj"]
CHECKPOINT_NAMES = ("last.pt", "best.pt")


class RunLog:
    """The run folder ``out``'s metrics.csv, TensorBoard events, config.yaml, summary.json and curves."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.writer = None

    def open(self, config_text: str, start_iter: int) -> None:
        """Remove what a killed run left (temp files; log rows and TensorBoard events after ``start_iter``,
        the iteration training resumes from), write config.yaml and open the TensorBoard writer."""
        with writing(self.out):
            self.out.mkdir(parents=True, exist_ok=True)
            for name in CHECKPOINT_NAMES:
                ckpt.remove_stale_temp_files(self.out, name)
            for name in (".metrics.csv.tmp", ".config.yaml.tmp"):
                (self.out / name).unlink(missing_ok=True)
        self.trim(start_iter)
        write_text(self.out / "config.yaml", config_text)
        from torch.utils.tensorboard import SummaryWriter

        with writing(self.out):  # purge_step drops the events a killed run wrote after its last checkpoint
            self.writer = SummaryWriter(str(self.out), purge_step=start_iter or None)

    def trim(self, upto: int) -> None:
        """Keep metrics.csv rows up to iteration ``upto`` (all of them when it is 0 and the file is new)."""
        path = self.out / "metrics.csv"
        if not path.is_file():
            return
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("iter", "").isdigit() and None not in r.values()]
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(r for r in rows if int(r["iter"]) <= upto)
        write_text(path, text.getvalue())

    def log(self, it: int, lr: float, skipped: int, seconds: float, stats: dict,
            metrics: dict | None = None) -> None:
        """One metrics.csv row and the TensorBoard scalars: training losses ``stats`` and, after an evaluation,
        the validation ``metrics`` (a None metric is undefined, e.g. APl without large objects)."""
        with writing(self.out):  # TensorBoard event file
            for k, v in stats.items():
                self.writer.add_scalar(f"train/{k}", v, it)
            self.writer.add_scalar("train/lr", lr, it)
            for k in METRIC_KEYS if metrics else ():
                if metrics[k] is not None:
                    self.writer.add_scalar(f"val/{k}", metrics[k], it)
        row = {"iter": it, "lr": f"{lr:.6g}", "skipped": skipped, "seconds": f"{seconds:.1f}",
               **{k: f"{v:.5f}" for k, v in stats.items()}}
        if metrics:
            row.update({k: "" if metrics[k] is None else f"{metrics[k]:.5f}" for k in METRIC_KEYS})
        path = self.out / "metrics.csv"
        new = not path.exists()
        with writing(path), path.open("a", newline="") as f:
            w = csv.DictWriter(f, CSV_FIELDS)
            if new:
                w.writeheader()
            w.writerow(row)

    def write_summary(self, summary: dict) -> None:
        """summary.json: the final metrics per anchor set (no curves, no text)."""
        drop = ("summary", "pr50")
        out = {k: v for k, v in summary.items() if k != "metrics"}
        out["metrics"] = {spec: {k: v for k, v in m.items() if k not in drop} for spec, m in summary["metrics"].items()}
        write_text(self.out / "summary.json", json.dumps(out, indent=2))

    def draw_curves(self, metrics: dict | None) -> None:
        """pr_curve.png (precision-recall at IoU 0.5, per class and all; with final ``metrics``),
        val_curve.png (AP, AP50 vs iteration) and results.png (losses and AP vs iteration) from metrics.csv;
        a picture with nothing to show is not written."""
        from metaanchor.visualize import plot_pr_curves, plot_results, plot_val_curve

        if metrics and metrics.get("pr50"):
            plot_pr_curves(metrics["pr50"], self.out / "pr_curve.png")
        if (self.out / "metrics.csv").is_file():
            plot_val_curve(self.out / "metrics.csv", self.out / "val_curve.png")
            plot_results(self.out / "metrics.csv", self.out / "results.png")

    def close(self) -> None:
        if self.writer is not None:
            with writing(self.out):
                self.writer.close()
            self.writer = None


def format_duration(seconds: float) -> str:
    """A duration as ``45s``, ``21m05s`` or ``3h07m`` (seconds rounded; never negative)."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(it: int, max_iter: int, per_epoch: int, stats: dict, lr: float, images_per_s: float,
                  eta_s: float, skipped: int = 0) -> str:
    """One log line after iteration ``it`` (1-based count of iterations done), e.g.
    ``iter 40/1100 (epoch 2/43)  loss 0.912  cls 0.611  box 0.301  lr 0.01  12.3 img/s  ETA 21m05s``.

    ``per_epoch``: iterations in one pass over the training set; ``stats``: the losses of the last step."""
    epochs = -(-max_iter // per_epoch)
    parts = [f"iter {it}/{max_iter} (epoch {(it - 1) // per_epoch + 1}/{epochs})"]
    parts += [f"{k} {v:.3f}" for k, v in stats.items()]
    parts += [f"lr {lr:.4g}", f"{images_per_s:.1f} img/s", f"ETA {format_duration(eta_s)}"]
    if skipped:
        parts.append(f"skipped {skipped}")
    return "  ".join(parts)


def banner(facts: dict[str, str]) -> str:
    """The start-of-training summary: one ``name: value`` line per fact, names aligned."""
    width = max(len(k) for k in facts) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in facts.items())
