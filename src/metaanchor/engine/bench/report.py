"""The comparison's report as text (one block per backbone) and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

HEADLINE_KEYS = ("inference_speedup_b1", "inference_speedup_b8", "train_step_speedup", "postprocess_share",
                 "peak_mem_ratio", "train_peak_mem_ratio", "flop_efficiency")


def _spread(row: dict) -> str:
    return f"{row['speedup']:.2f} ({row['speedup_min']:.2f}..{row['speedup_max']:.2f})"


def format_table(report: dict) -> str:
    """Human-readable summary; speed-up = torchvision time / our time, median (min..max) over rounds."""
    m, cfg = report["machine"], report["config"]
    ours = "BN folded" + (" + channels_last" if m["device"] == "cpu" else "")
    lines = [f"machine: {m.get('gpu') or m['cpu']}, {m['threads']} threads, device {m['device']}, "
             f"load average {m['load_avg_1min']:.1f} at start, {m.get('load_avg_1min_end', float('nan')):.1f} at end",
             f"{cfg['size']} px, {cfg['num_classes']} classes, 9 anchors, {cfg['rounds']} interleaved rounds, "
             f"{_precision(cfg)}; speed-up = torchvision time / our time, "
             f"median (min..max) over rounds (ours: {ours}; 'unfused': the plain model)"]
    for backbone, r in report["backbones"].items():
        lines += _backbone_block(backbone, r)
    lines.append(f"\nheadline ({report['headline_backbone']}, many candidates): "
                 + ", ".join(f"{k}={report[k]:.3f}" for k in HEADLINE_KEYS if k in report))
    lines.append(f"wall time {report['wall_s']:.0f} s")
    return "\n".join(lines)


def _precision(cfg: dict) -> str:
    """How both models ran: '<dtype> autocast on both' or 'float32'."""
    return f"{cfg.get('amp_dtype') or 'float16'} autocast on both" if cfg["amp"] else "float32"


def _backbone_block(backbone: str, r: dict) -> list[str]:
    lines = [f"\n{backbone}-FPN, {r['gflops_per_image']:.1f} GFLOP/image, "
             f"matmul {r['matmul_gflops_per_s']:.0f} GFLOP/s",
             f"{'setting':<9}{'batch':>6}{'tv img/s':>10}{'ours img/s':>11}{'speedup (min..max)':>21}"
             f"{'unfused':>9}{'post%':>7}{'flop eff':>9}"]
    for setting, rows in r["inference"].items():
        for b, row in rows.items():
            unf = f"{row['speedup_unfused']:.2f}" if "speedup_unfused" in row else "-"
            lines.append(f"{setting:<9}{b[1:]:>6}{row['tv_images_per_s']:>10.3f}{row['ours_images_per_s']:>11.3f}"
                         f"{_spread(row):>21}{unf:>9}{100 * row['postprocess_share']:>7.1f}"
                         f"{row['flop_efficiency']:>9.2f}")
    for b, t in r["train"].items():
        lines.append(f"train step batch {b[1:]}: tv {t['tv_step_s']:.3f} s, ours {t['ours_step_s']:.3f} s, "
                     f"speedup {_spread(t)}; peak memory ratio {t['peak_mem_ratio']:.2f} "
                     f"(tv {t['peak_mem_bytes']['tv'] / 2**20:.0f} MiB)")
    mem, c = r["peak_mem_bytes"], r["metaanchor"]
    lines.append(f"inference peak memory (batch {mem['batch']}): ratio {r['peak_mem_ratio']:.2f} "
                 f"(unfused {r['peak_mem_ratio_unfused']:.2f}); tv {mem['tv'] / 2**20:.0f} MiB")
    lines.append(f"MetaAnchor: new anchor set weights {1e3 * c['generate_new_anchor_set_first_s']:.2f} ms, "
                 f"cached {1e3 * c['generate_cached_s']:.3f} ms; head time MetaAnchor / predefined "
                 f"{c['head_time_ratio_metaanchor_over_predefined']:.2f}")
    return lines


def write_json(path: str | Path, report: dict) -> Path:
    """Write ``report`` as indented JSON (atomically); returns the path."""
    from metaanchor.files import write_atomic

    return write_atomic(path, lambda f: f.write(json.dumps(report, indent=2).encode()))
