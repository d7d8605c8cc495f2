"""Cached training and evaluation runs for the experiment suite.

Every training run is described by a resolved config (``metaanchor.config``).
Its cache key is a hash of that config with the dataset paths written relative
to the cache root, so the same experiment on another checkout reuses the runs.
A finished run is ``ROOT/runs/<key>/`` with ``last.pt`` and ``summary.json``;
an interrupted one (``last.pt`` without ``summary.json``) is resumed. Each
evaluation of a run (dataset x anchor set) is cached in ``evals.json`` beside it.

With ``records`` (the suite uses ``reports/records/``, committed), every finished run also gets a small
``records/<key>.json``: its summary, validation curve and evaluations, but not its weights (10 MB). The
cache lives on one machine; the records travel with the repository, so a suite filled over several sittings
on fresh machines keeps what each sitting trained: a run with a record counts as trained, and its recorded
evaluations are reused. An evaluation that is neither recorded nor possible (no checkpoint on this machine)
is an error naming the record to delete to train the run again, and so is a record made with other data
than this machine's folder of the same name (each record notes its datasets' ``data_fingerprint``).

    runner = Runner("reports/.cache", QUICK, records="reports/records")
    run = runner.train(runner.config(head="metaanchor", anchors="3x3", seed=0))
    metrics = runner.evaluate(run, runner.dataset("default", "test"), "5x5")   # {AP, AP50, ...}
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metaanchor.config import flatten, load_config, set_key
from metaanchor.errors import UserError
from metaanchor.geometry.anchors import AnchorSet

KEPT_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}  # synthetic seed of each split, times 100
# the synthetic seed offset of each distribution (seed = 100 * split seed + offset): the committed records note the
# data's fingerprints, so a distribution keeps its offset and a new one takes an unused number
DATA_SEEDS = {"bccd-like": 0, "default": 1, "elongated": 2, "large": 3, "mixed": 4, "small": 5, "tall": 6, "wide": 7,
              "wide-or-tall": 8}
SYNTH_BASE_SIZE = 128  # the synthetic presets' object sizes are for 128 px images
LOCK = "training.lock"  # holds the pid of the process training a run (several runners may share a cache)
LOCK_POLL_S = 10.0
PLATEAU = 0.01  # a run has converged when its validation AP moves by at most this over the last PLATEAU_TAIL
PLATEAU_TAIL = 0.2  # fraction of the iterations


def plateau(curve: list[tuple[int, float]], tail: float = PLATEAU_TAIL, tol: float = PLATEAU) -> tuple[float, bool]:
    """(range of validation AP over the last ``tail`` of the iterations, converged = range <= tol).

    ``curve``: (iteration, AP) pairs in order. Fewer than two evaluations in the tail cannot show a
    plateau: (nan, False).
    """
    last = tail_of(curve, tail)
    if len(last) < 2:
        return float("nan"), False
    rng = max(last) - min(last)
    return rng, rng <= tol + 1e-12


def tail_of(curve: list[tuple[int, float]], tail: float = PLATEAU_TAIL) -> list[float]:
    """Validation APs of ``curve`` (iteration, AP) over its last ``tail`` of the iterations (the plateau rule's)."""
    return [ap for it, ap in curve if it >= (1 - tail) * curve[-1][0]] if curve else []


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Scale:
    """How big an experiment is: data, model and schedule (``QUICK`` for CPU, ``FULL`` for a GPU)."""

    name: str
    image_size: int
    train_images: int
    val_images: int
    test_images: int
    max_iter: int
    batch_size: int
    backbone: str
    fpn_channels: int
    head_convs: int
    hidden_dim: int
    lr: float
    warmup_iters: int
    eval_batch: int = 32
    extra: tuple = field(default_factory=tuple)  # further KEY=VALUE overrides
    input_size: int = 0  # network input short side (0: image_size)
    eval_period: int = 0  # validation AP every N iterations (the curve the plateau rule reads; 0: none)
    distribution: str = "default"  # the synthetic box distribution the experiments train on (DISTRIBUTIONS)

    @classmethod
    def from_config(cls, name: str, config: str, extra: tuple[str, ...]) -> Scale:
        """The scale of a shipped config (``metaanchor.config.load_config(config)``): model, input and schedule
        from its keys, and its values of the keys named in ``extra`` as further overrides (real data: no
        synthetic images)."""
        flat = flatten(load_config(config))

        def text(v) -> str:  # as written in the YAML file: 200, not 200.0
            return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        return cls(name, image_size=flat["input.size"], train_images=0, val_images=0, test_images=0,
                   max_iter=flat["solver.max_iter"], batch_size=flat["solver.batch_size"],
                   backbone=flat["model.backbone"], fpn_channels=flat["model.fpn_channels"],
                   head_convs=flat["model.head_convs"], hidden_dim=flat["model.hidden_dim"], lr=flat["solver.lr"],
                   warmup_iters=flat["solver.warmup_iters"], eval_batch=flat["eval.batch_size"],
                   eval_period=flat["eval.period"], extra=tuple(f"{k}={text(flat[k])}" for k in extra))

    def describe(self, data: str | None = None) -> str:
        """One sentence: data, model, schedule (``data``: the user's dataset folder replacing the synthetic one)."""
        images = (f"dataset {data} (its train/val/test splits), network input {self.input_size or self.image_size} px"
                  if data else f"{self.train_images} train / {self.val_images} val / {self.test_images} test synthetic "
                  f"'{self.distribution}' images of {self.image_size} px"
                  + (f" (network input {self.input_size} px)" if self.input_size not in (0, self.image_size) else ""))
        return (images + f"; backbone {self.backbone} (FPN {self.fpn_channels} ch, {self.head_convs} "
                f"head convs, generator width {self.hidden_dim}); {self.max_iter} iterations of batch "
                f"{self.batch_size}, SGD lr {self.lr}, cosine schedule"
                + (f"; validation AP every {self.eval_period} iterations" if self.eval_period else "")
                + (f"; also {' '.join(self.extra)}" if self.extra else ""))


QUICK = Scale("quick", image_size=128, train_images=600, val_images=150, test_images=150, max_iter=400,
              batch_size=16, backbone="tiny", fpn_channels=64, head_convs=2, hidden_dim=16, lr=0.02,
              warmup_iters=50, eval_period=100)
# The committed reports' scale: the demo's model on 128 px 'elongated' shapes (h/w 1/4..4, where the anchor ratios
# matter), batch 8 with an EMA of the weights, 12000 iterations: a fixed budget, alike for both heads, at which both
# heads' validation curves are flat by the plateau rule. How it was chosen (pilots, the `schedule` experiment):
# reports/schedule.
CONVERGED = Scale("converged", image_size=128, train_images=800, val_images=150, test_images=150, max_iter=12000,
                  batch_size=8, backbone="tiny", fpn_channels=64, head_convs=2, hidden_dim=16, lr=0.02,
                  warmup_iters=50, eval_period=200, distribution="elongated",
                  extra=("solver.ema=0.999", "solver.ema_tau=200"))
# the shipped bccd config as a scale, for `--data data/bccd --scale bccd` (real photos);
# its log and checkpoint periods are left to the runner (they change no result)
BCCD = Scale.from_config("bccd", "bccd", extra=("input.max_size", "input.augment", "solver.ema", "solver.ema_tau",
                                                "data.workers"))
FULL = Scale("full", image_size=512, train_images=8000, val_images=1000, test_images=1000, max_iter=15000,
             batch_size=16, backbone="resnet50", fpn_channels=256, head_convs=4, hidden_dim=32, lr=0.01,
             warmup_iters=500, eval_batch=16, eval_period=1000, extra=("model.head_norm=gn",))
SCALES = {s.name: s for s in (QUICK, CONVERGED, FULL, BCCD)}


def config_key(cfg: dict, root: Path) -> str:
    """Hash of a resolved config (16 hex digits).

    Only the keys whose value differs from the default config of the run's family
    (``metaanchor.config.load_config(None, ["model.arch=..."])``) count, so a new config key added with a default
    keeps old runs valid; dataset paths are made relative to ``root`` and the device is left out (the same run
    on another device). A changed *default* is not seen: clear the cache after changing one.
    """
    defaults = flatten(load_config(None, [f"model.arch={cfg['model']['arch']}"]))
    defaults["model.arch"] = load_config()["model"]["arch"]  # a family other than the default one is a difference
    flat = {k: v for k, v in flatten(copy.deepcopy(cfg)).items() if k not in defaults or defaults[k] != v}
    for k in ("data.train", "data.val", "anchors.train"):  # an anchor file's path too (SPEC strings stay)
        if isinstance(flat.get(k), str) and flat[k]:
            p = Path(flat[k])
            flat[k] = os.path.relpath(p, root) if p.is_absolute() else str(p) if k != "anchors.train" else flat[k]
    flat.pop("device", None)
    return hashlib.sha1(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_fingerprint(folder: str | Path) -> str:
    """SHA-1 (12 hex digits) of a dataset folder's ``annotations.json`` ("" without one): records note the data
    their run was trained and evaluated on, so results made with other data are never mixed in."""
    f = Path(folder) / "annotations.json"
    return hashlib.sha1(f.read_bytes()).hexdigest()[:12] if f.is_file() else ""


def anchor_key(spec: str | AnchorSet) -> str:
    """Identity of an anchor set by its shapes (two spellings of one set share a key)."""
    return hashlib.sha1(repr(AnchorSet.parse(spec).key()).encode()).hexdigest()[:12]


@dataclass
class Run:
    """A finished training run: its folder, config and summary."""

    key: str
    dir: Path
    cfg: dict
    summary: dict
    recorded_curve: list | None = None  # the curve of a run known from its record only (no folder here)

    @property
    def checkpoint(self) -> Path:
        return self.dir / "last.pt"

    @property
    def weights_here(self) -> bool:
        """The run's final weights are on this machine: it finished here. A run known from its record may have
        a folder here all the same, left by an unfinished try (trained to the end elsewhere): its last.pt and
        metrics.csv belong to that try, not to the run."""
        return self.recorded_curve is None and self.checkpoint.is_file()

    @property
    def curve(self) -> list[tuple[int, float]]:
        """Validation AP per evaluation, (iteration, AP), from the run's record or (finished here) its
        metrics.csv."""
        import csv

        path = self.dir / "metrics.csv"
        if self.recorded_curve is not None or not path.is_file():
            return [(int(it), float(ap)) for it, ap in self.recorded_curve or []]
        with path.open(newline="") as f:
            return [(int(r["iter"]), float(r["AP"])) for r in csv.DictReader(f) if r.get("AP")]

    @property
    def convergence(self) -> dict:
        """``val_AP_last20_range`` and ``converged`` (the plateau rule) for runs.csv."""
        rng, ok = plateau(self.curve)
        return {"converged": ok, "val_AP_last20_range": rng}


class Runner:
    """Synthetic datasets, cached training runs and cached evaluations under ``root``.

    Args:
        root: cache folder (``reports/.cache``).
        records: folder of the finished runs' records (``reports/records``; None: no records).
        scale: ``QUICK`` or ``FULL`` (or a custom ``Scale``).
        device: ``auto``, ``cpu``, ``cuda``.
        data: optional dataset folder (COCO layout with train/ val/ test/ sub-folders, or
            one folder used for all splits) replacing the synthetic ``default`` distribution.
        train_fn: the training function (``metaanchor.engine.train.train``); tests stub it.
        log: where progress lines go (print by default).
    """

    def __init__(self, root: str | Path, scale: Scale = QUICK, device: str = "auto", data: str | None = None,
                 train_fn: Callable | None = None, log: Callable[[str], None] = print,
                 records: str | Path | None = None):
        self.root = Path(root).resolve()
        self.records = Path(records).resolve() if records else None
        self.scale, self.device, self.data = scale, device, data
        self._train_fn = train_fn
        self.log = log
        self._model_cache: tuple[str, object] | None = None
        self._datasets: dict[str, object] = {}
        self.trained = 0  # runs trained (not loaded from the cache) by this runner
        self.eval_seconds = 0.0  # evaluation time of the evaluations asked for (cached ones included)

    # ------------------------------------------------------------------ data
    def dataset(self, distribution: str, split: str) -> Path:
        """Folder of a synthetic dataset split (written once), or the user's ``--data`` split."""
        if self.data and distribution == "default":
            d = Path(self.data)
            return d / split if (d / split / "annotations.json").is_file() else d
        from metaanchor.data.synth import DISTRIBUTIONS, synth_config, write_synth_dataset

        n = {"train": self.scale.train_images, "val": self.scale.val_images, "test": self.scale.test_images}[split]
        out = self.root / "data" / f"{distribution}-{split}-{n}-{self.scale.image_size}px"
        if not (out / "annotations.json").is_file():
            k = self.scale.image_size / SYNTH_BASE_SIZE
            sizes = {f: DISTRIBUTIONS[distribution].get(f, d) * k
                     for f, d in (("min_size", 16.0), ("max_size", 64.0))}
            cfg = synth_config(distribution, image_size=self.scale.image_size,
                               seed=100 * SPLIT_SEEDS[split] + DATA_SEEDS[distribution], **sizes)
            self.log(f"writing {n} synthetic '{distribution}' images ({split}) to {out}")
            write_synth_dataset(out, n, cfg, progress=False)
        return out

    # --------------------------------------------------------------- configs
    @property
    def main(self) -> str:
        """The distribution the experiments train on: the scale's (``default`` is the user's ``--data``)."""
        return "default" if self.data else self.scale.distribution

    def config(self, head: str = "metaanchor", anchors: str = "3x3", seed: int = 0, sample: bool = True,
               distribution: str | None = None, extra: tuple | list = ()) -> dict:
        """The resolved training config of one run at this runner's scale (on ``self.main`` by default)."""
        s, distribution = self.scale, distribution or self.main
        arch = next((o.split("=", 1)[1] for o in extra if o.startswith("model.arch=")), "retinanet")
        known = flatten(load_config(None, [f"model.arch={arch}"]))
        # a scale's option of one family (FULL's GroupNorm towers: RetinaNet) is left out for the others
        scale_extra = [o for o in s.extra if o.split("=", 1)[0] in known]
        cfg = load_config(None, [f"model.{k}={v}" for k, v in (
            ("backbone", s.backbone), ("head", head), ("fpn_channels", s.fpn_channels),
            ("head_convs", s.head_convs), ("hidden_dim", s.hidden_dim))] + [
            f"input.size={s.image_size}", f"solver.max_iter={s.max_iter}", f"solver.batch_size={s.batch_size}",
            f"solver.lr={s.lr}", f"solver.warmup_iters={s.warmup_iters}", f"eval.batch_size={s.eval_batch}",
            f"seed={seed}", f"anchors.sample={str(sample).lower()}", f"checkpoint.period={s.max_iter}",
            f"eval.period={s.eval_period}", *scale_extra, *extra])
        set_key(cfg, "anchors.train", anchors)  # set directly: SPEC strings contain '=' and ';'
        set_key(cfg, "device", self.device)
        set_key(cfg, "data.train", str(self.dataset(distribution, "train")))
        if s.eval_period:  # the validation curve of the plateau rule
            set_key(cfg, "data.val", str(self.dataset(distribution, "val")))
        return cfg

    # -------------------------------------------------------------- training
    def run_dir(self, cfg: dict) -> Path:
        """The cache folder of ``cfg``'s run (``summary.json`` in it once the run has finished)."""
        return self.root / "runs" / config_key(cfg, self.root)

    def is_trained(self, cfg: dict) -> bool:
        """Finished here (its cache folder has ``summary.json``) or on another machine (it has a record)."""
        run_dir = self.run_dir(cfg)
        return (run_dir / "summary.json").is_file() or self._record(run_dir.name) is not None

    # --------------------------------------------------------------- records
    def _record_file(self, key: str) -> Path | None:
        return self.records / f"{key}.json" if self.records else None

    def _record(self, key: str) -> dict | None:
        f = self._record_file(key)
        return json.loads(f.read_text()) if f is not None and f.is_file() else None

    def _run_data(self, cfg: dict) -> list[Path]:
        """The dataset folders a run trained on (training and validation splits)."""
        return [Path(cfg["data"][k]) for k in ("train", "val") if cfg["data"].get(k)]

    def _check_data(self, key: str, rec: dict, folders: list[Path]) -> None:
        """Stop when a record was made with data other than this machine's folders of the same name."""
        for folder in folders:
            want, have = rec.get("data", {}).get(folder.name), data_fingerprint(folder)
            if want and have and want != have:
                raise UserError(f"record {self._record_file(key)}: made with data {folder.name} whose "
                                f"annotations.json has SHA-1 {want}..., but {folder} here has {have}...; the data "
                                f"differ, so the run's results do not apply here. Delete the record to train the "
                                f"run again on this data")

    def _write_record(self, run: Run, evals: dict, evaluated_on: Path | None = None) -> None:
        """``records/<key>.json``: the run's summary (without its precision-recall points), validation curve,
        evaluations and the fingerprints of its datasets (``data_fingerprint``), written atomically. The
        evaluations and fingerprints already in the file are kept (read just before writing), so two suites that
        evaluate one shared run on different data do not drop each other's results."""
        if self.records is None:
            return
        self.records.mkdir(parents=True, exist_ok=True)
        f = self._record_file(run.key)
        summary = dict(run.summary, metrics={spec: {k: v for k, v in m.items() if k not in ("pr50", "summary")}
                                             for spec, m in run.summary.get("metrics", {}).items()})
        folders = self._run_data(run.cfg) + ([Path(evaluated_on)] if evaluated_on else [])
        prev = self._record(run.key) or {}
        data = prev.get("data", {}) | {d.name: data_fingerprint(d) for d in folders}
        rec = {"key": run.key, "summary": summary, "curve": [list(c) for c in run.curve],
               "evals": prev.get("evals", {}) | evals, "data": data}
        tmp = f.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(rec, indent=1, sort_keys=True, default=str) + "\n")
        os.replace(tmp, f)

    def _evals(self, run: Run) -> dict:
        """The run's evaluations: its record's and those cached beside its checkpoint."""
        cache_file = run.dir / "evals.json"
        cached = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
        return ((self._record(run.key) or {}).get("evals", {})) | cached

    # -------------------------------------------------------------- training
    def train(self, cfg: dict) -> Run:
        """Train ``cfg`` unless its run is cached or recorded; returns the finished run."""
        run_dir = self.run_dir(cfg)
        key = run_dir.name
        summary_file = run_dir / "summary.json"
        if summary_file.is_file():
            run = Run(key, run_dir, cfg, json.loads(summary_file.read_text()))
            if self.records and self._record(key) is None:  # finished before records existed
                self._write_record(run, self._evals(run))
            return run
        rec = self._record(key)
        if rec is not None:
            self._check_data(key, rec, self._run_data(cfg))
            return Run(key, run_dir, cfg, rec["summary"], rec["curve"])
        train_fn = self._train_fn
        if train_fn is None:
            from metaanchor.engine.train import train as train_fn
        if not self._lock(run_dir, key):  # another process trained it meanwhile
            return Run(key, run_dir, cfg, json.loads(summary_file.read_text()))
        try:
            resume = (run_dir / "last.pt").is_file()
            if not resume:  # leftovers of a run killed before its first checkpoint
                for f in [run_dir / "metrics.csv", *run_dir.glob("events.out.tfevents.*")]:
                    f.unlink(missing_ok=True)
            self.log(f"training {key}: head={cfg['model']['head']} anchors={cfg['anchors']['train']} "
                     f"sample={cfg['anchors']['sample']} seed={cfg['seed']} data={Path(cfg['data']['train']).name}"
                     + (" (resuming)" if resume else ""))
            t0 = time.time()
            summary = train_fn(cfg, run_dir, resume=resume, progress=False)
            summary = dict(summary, key=key, wall_time_s=summary.get("wall_time_s", time.time() - t0))
            summary_file.write_text(json.dumps(summary, indent=1, default=str))
        finally:
            (run_dir / LOCK).unlink(missing_ok=True)
        self.trained += 1
        self.log(f"  done in {summary['wall_time_s']:.0f} s")
        run = Run(key, run_dir, cfg, summary)
        self._write_record(run, {})
        return run

    def _lock(self, run_dir: Path, key: str) -> bool:
        """Take the run's lock (False: another process finished the run while we waited)."""
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = run_dir / LOCK
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(lock.read_text() or 0)
                except (OSError, ValueError):
                    pid = 0
                if not _alive(pid):
                    lock.unlink(missing_ok=True)
                    continue
                self.log(f"waiting for run {key} (being trained by process {pid})")
                time.sleep(LOCK_POLL_S)
                if (run_dir / "summary.json").is_file():
                    return False
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return True

    # ------------------------------------------------------------ evaluation
    def _model(self, run: Run):
        if self._model_cache is None or self._model_cache[0] != run.key:
            from metaanchor.engine.device import resolve_device
            from metaanchor.families import load_detector

            dev = resolve_device(self.device)
            self._model_cache = (run.key, load_detector(run.checkpoint, map_location=dev).to(dev))
        return self._model_cache[1]

    def _data(self, path: Path):
        if str(path) not in self._datasets:
            from metaanchor.data.coco import CocoDataset

            self._datasets[str(path)] = CocoDataset(path)
        return self._datasets[str(path)]

    def evaluate(self, run: Run, data_dir: Path, anchors: str | None = None, size: int | None = None) -> dict:
        """COCO metrics (``KEPT_METRICS``) of ``run`` on ``data_dir`` with ``anchors`` (default: training set);
        ``size``: input size (short side and long-side cap, px) instead of the model's own."""
        return self.evaluate_sets(run, data_dir, [anchors or run.cfg["anchors"]["train"]], size)[0]

    def evaluate_sets(self, run: Run, data_dir: Path, specs: list[str], size: int | None = None) -> list[dict]:
        """``evaluate`` for several anchor sets: the ones not cached yet come from one pass over the data
        (``evaluate_many``: backbone and towers once per batch); ``eval_s`` is that pass's share per set."""
        rec = self._record(run.key)
        if rec is not None:
            self._check_data(run.key, rec, [Path(data_dir)])
        cache = self._evals(run)
        if self.records and Path(data_dir).name not in (rec or {}).get("data", {}):  # note the data evaluated on
            self._write_record(run, cache, Path(data_dir))
        at = f"@{size}px" if size else ""
        keys = [f"{Path(data_dir).name}{at}|{anchor_key(spec)}" for spec in specs]
        missing = list({k: s for k, s in zip(keys, specs) if k not in cache}.items())
        if missing and not run.weights_here:
            where = ("only an unfinished try's checkpoint is on this machine" if run.checkpoint.is_file() else
                     "the run's checkpoint is not on this machine")
            raise UserError(f"run {run.key}: evaluation {missing[0][0]} (anchors {missing[0][1]}) is not in its "
                            f"record {self._record_file(run.key)} and {where}; delete the record to train the "
                            f"run again")
        if missing:
            import warnings

            from metaanchor.engine.evaluate import evaluate_many
            from metaanchor.families.base import AnchorRangeWarning

            t0 = time.time()
            model = self._model(run)
            own = model.batcher.min_size, model.batcher.max_size
            model.batcher.min_size, model.batcher.max_size = (size, size) if size else own
            try:
                with warnings.catch_warnings():  # experiments leave the trained code range on purpose (reports say so)
                    warnings.simplefilter("ignore", AnchorRangeWarning)
                    metrics = evaluate_many(model, self._data(Path(data_dir)), [s for _, s in missing],
                                            self.scale.eval_batch, progress=False)
            finally:
                model.batcher.min_size, model.batcher.max_size = own
            share = (time.time() - t0) / len(missing)
            for (key, spec), m in zip(missing, metrics):
                cache[key] = {k: m[k] for k in KEPT_METRICS} | {"anchors": str(spec), "eval_s": share}
            cache_file = run.dir / "evals.json"  # merged with what another suite may have cached meanwhile
            cache = (json.loads(cache_file.read_text()) if cache_file.is_file() else {}) | cache
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=1))
            os.replace(tmp, cache_file)
            self._write_record(run, cache, Path(data_dir))
        self.eval_seconds += sum(cache[k].get("eval_s", 0.0) for k in keys)
        return [cache[k] for k in keys]

    def describe(self) -> dict:
        return asdict(self.scale) | {"device": self.device, "data": self.data}
