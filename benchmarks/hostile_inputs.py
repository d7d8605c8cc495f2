"""Hostile and clumsy inputs, one per kind of failure, each run as a user would: the exit code, the lines on
stderr, whether any file the command was given changed (SHA-256 of every input file before and after) and the
command's peak memory (the child's max RSS from ``os.wait4``).

    python benchmarks/hostile_inputs.py [--keep DIR]

Prints a Markdown table. Every row should read: exit 2, one line, inputs unchanged, well under 1.5 GB.
The cases are built by a child process (``--make DIR``), so this process stays small: a child's max RSS on
Linux includes the memory of the process it was forked from.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

TIMEOUT_S = 120


def digest(paths: list[Path]) -> dict[str, str]:
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def run(args: list[str], cwd: Path) -> tuple[int, list[str], float, float]:
    """(exit code, stderr lines, peak RSS in MB, seconds) of ``metaanchor ARGS`` (exit -9: killed at the timeout)."""
    t0 = time.time()
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "metaanchor", *map(str, args)], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    deadline = t0 + TIMEOUT_S
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.time() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    err.seek(0)
    lines = [ln for ln in err.read().decode(errors="replace").splitlines() if ln.strip()]
    code = os.waitstatus_to_exitcode(status)
    return code, lines, usage.ru_maxrss / 1024, time.time() - t0


def zip_bomb(path: Path) -> None:
    """A checkpoint-shaped zip under 2 MB whose one record inflates to 1 GiB of zeros."""
    import torch

    from metaanchor.families import build_detector

    model = build_detector("retinanet", num_classes=3, fpn_channels=16, head_convs=1, hidden_dim=8,
                           min_size=64, max_size=64)
    buf = io.BytesIO()
    torch.save(model.checkpoint_payload() | {"bomb": torch.zeros(2**28)}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))


def cases(root: Path) -> list[tuple[str, list, list[Path]]]:
    """(the failure, the command's arguments, its input files and folders)."""
    import torch

    from metaanchor.data.synth import synth_config, write_synth_dataset
    from metaanchor.families import build_detector

    data = write_synth_dataset(root / "data", 4, synth_config("default", seed=0), progress=False)
    ckpt = root / "model.pt"
    model = build_detector("retinanet", num_classes=3, fpn_channels=16, head_convs=1, hidden_dim=8,
                           min_size=64, max_size=64)
    model.save(ckpt)
    fifo = root / "fifo"
    os.mkfifo(fifo)
    other = root / "elsewhere"
    other.mkdir()
    (other / "keep.txt").write_text("not the dataset's")
    dst = root / "converted"
    dst.mkdir()
    (dst / "images").symlink_to(other, target_is_directory=True)
    payload = torch.load(ckpt, weights_only=True)
    payload["model_config"] |= {"backbone_weights": "imagenet", "num_classes": 10**9}
    hostile_ckpt = root / "handed_over.pt"
    torch.save(payload, hostile_ckpt)
    bomb = root / "bomb.pt"
    zip_bomb(bomb)
    laughs = root / "laughs.yaml"
    laughs.write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")))
    deep = root / "deep"
    (deep / "images").mkdir(parents=True)
    (deep / "annotations.json").write_text("[" * 100_000 + "]" * 100_000)
    run_dir = root / "run"
    run_dir.mkdir()
    resume = torch.load(ckpt, weights_only=True) | {"iteration": float("inf"), "optimizer": {}, "scaler": {}}
    torch.save(resume, run_dir / "last.pt")
    tiny = ["model.fpn_channels=16", "model.head_convs=1", "model.hidden_dim=8", "input.size=64", "device=cpu"]
    return [
        ("1 output overwrites an input", ["eval", "--checkpoint", ckpt, "--data", data, "--json-out",
                                           data / "annotations.json"], [data, ckpt]),
        ("2 output is a special file", ["eval", "--checkpoint", ckpt, "--data", data, "--json-out", fifo],
         [data, ckpt]),
        ("3 convert through a symlinked folder", ["data", "convert", "--src", data, "--src-format", "coco",
                                                  "--dst", dst, "--dst-format", "coco"], [data, other]),
        ("4 checkpoint config trusted", ["predict", "--checkpoint", hostile_ckpt, "--out", root / "pred",
                                         data / "images"], [data, hostile_ckpt]),
        ("5 decompression bomb", ["predict", "--checkpoint", bomb, "--out", root / "pred2", data / "images"],
         [data, bomb]),
        ("5 YAML alias bomb", ["train", "--config", laughs, "--out", root / "r1"], [laughs]),
        ("6 FIFO as a source", ["data", "convert", "--src", fifo, "--src-format", "coco", "--dst", root / "c2",
                                "--dst-format", "yolo"], []),
        ("7 JSON nested 100000 deep", ["eval", "--checkpoint", ckpt, "--data", deep], [deep, ckpt]),
        ("7 resume from iteration inf", ["train", "--resume", "--out", run_dir, f"data.train={data}", *tiny],
         [data, run_dir / "last.pt"]),
        ("8 anchors.train=0x3", ["train", "--out", root / "r2", f"data.train={data}", "anchors.train=0x3", *tiny],
         [data]),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="build the cases in this folder and keep them (default: a temp folder)")
    parser.add_argument("--make", help=argparse.SUPPRESS)  # the child that builds the cases into this folder
    args = parser.parse_args()
    if args.make:
        made = [(name, [str(a) for a in argv], [str(p) for p in inputs])
                for name, argv, inputs in cases(Path(args.make))]
        (Path(args.make) / "cases.json").write_text(json.dumps(made))
        return 0
    root = Path(args.keep or tempfile.mkdtemp(prefix="hostile-"))
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, __file__, "--make", str(root)], check=True)
    rows = ["| failure | exit | stderr lines | inputs unchanged | peak RSS (MB) | s | message |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, argv, inputs in json.loads((root / "cases.json").read_text()):
        inputs = [Path(p) for p in inputs]
        before = digest(inputs)
        code, lines, rss, seconds = run(argv, root)
        same = digest(inputs) == before
        msg = (lines[-1] if lines else "").replace(str(root), "T").replace("|", "/")[:110]
        rows.append(f"| {name} | {code} | {len(lines)} | {'yes' if same else 'NO'} | {rss:.0f} | {seconds:.1f} | "
                    f"{msg} |")
    print("\n".join(rows))
    print(f"python {sys.version.split()[0]}; each command's peak RSS includes importing torch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
