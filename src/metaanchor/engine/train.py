"""The training loop: data, optimiser, schedule, AMP, DDP, checkpoints, logs, evaluation.

Everything random is derived from ``seed`` and the iteration number (data order,
augmentation, sampled anchor sets), so ``--resume`` continues exactly: the same
schedule, optimiser state and data order as an uninterrupted run.

Multi-GPU / multi-node: launch with ``torchrun --nproc-per-node N -m metaanchor train ...``;
``solver.batch_size`` is the total batch, split over the processes.

Output is plain text that reads the same in a terminal and in a file: a banner at the start, one
line every ``log.period`` iterations (losses, lr, images/s, ETA), one ``TrainingWarning`` per setting that
defeats itself; the progress bar is drawn only when stderr is a terminal.

Ctrl-C (SIGINT) or SIGTERM during training finishes the current iteration, saves ``last.pt``
(rank 0; every process stops at the same iteration) and exits with code 130; a second signal stops at once.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from metaanchor import checkpoint as ckpt
from metaanchor.config import MAX_ITERS, dump, model_kwargs
from metaanchor.data.box_shapes import coco_input_shapes
from metaanchor.data.loader import (
    AugmentedDataset,
    ResumableBatches,
    collate_train,
    load_dataset,
    orientation_groups,
)
from metaanchor.engine.device import cpu_has_native_bf16, device_label, resolve_device, trains_channels_last
from metaanchor.engine.ema import ModelEMA
from metaanchor.engine.evaluate import evaluate, fmt_metric, format_per_class
from metaanchor.engine.preflight import run_facts, self_defeating_settings
from metaanchor.engine.run_log import RunLog, banner, progress_line
from metaanchor.engine.schedule import lr_factor
from metaanchor.engine.signals import StopSignals, ignore_stop_signals
from metaanchor.engine.train_state import TrainState, optimizer_state_problem
from metaanchor.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    OutOfMemory,
    UserError,
    first_line,
    out_of_memory_advice,
    out_of_memory_message,
)
from metaanchor.families import build_detector, detector_class
from metaanchor.files import writing
from metaanchor.geometry.anchor_fit import write_anchor_file
from metaanchor.geometry.anchors import code_range, kmeans_count, sample_anchor_set


class NonFiniteLoss(UserError):
    """Training produced a NaN/inf loss (stop mode)."""


class TrainingWarning(UserWarning):
    """A setting that defeats itself (warm-up longer than training, a batch larger than the data, ...)."""


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Trainer:
    """Runs one training job described by a config into ``out_dir``.

    ``callbacks``: objects that observe training without changing it, each with any of these methods (called on
    the process that logs, in list order): ``before_step(trainer, it)`` and ``after_step(trainer, it, losses)``
    around each step (``it``: the step's 0-based index; ``losses``: its logged losses {"loss", "cls", ...},
    None for a step skipped as non-finite), ``after_eval(trainer, it, metrics)`` after each validation
    (``it``: iterations done, as in metrics.csv; ``metrics``: the training anchor set's), and
    ``on_save(trainer, path)`` after a checkpoint is written.
    """

    def __init__(self, cfg: dict, out_dir: str | Path, resume: bool = False, progress: bool = True,
                 fail_fast: bool = False, callbacks: list | tuple = ()):
        self.cfg, self.out = cfg, Path(out_dir)
        self.callbacks = list(callbacks)
        self.fail_fast = fail_fast  # every skipped or repaired record is an error
        self.skip_invalid = cfg["data"]["skip_invalid"] and not fail_fast
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.device = resolve_device(cfg["device"])
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.main = self.rank == 0
        self.progress = progress and self.main and _is_terminal(sys.stderr)  # tqdm draws on stderr
        s = cfg["solver"]
        if s["batch_size"] % self.world:
            raise ConfigError(f"solver.batch_size={s['batch_size']} is not divisible by {self.world} processes")
        self.train_set = load_dataset(cfg, "train", self.skip_invalid, fail_fast)
        self.val_set = (load_dataset(cfg, "val", self.skip_invalid, fail_fast)
                        if cfg["data"]["val"] else None)
        self.epochs = self._resolve_epochs()
        torch.manual_seed(cfg["seed"])
        self._fit_kmeans_anchors()
        kwargs = model_kwargs(cfg, len(self.train_set.class_names), self.train_set.class_names,
                              getattr(self.train_set, "cat_ids", None))
        self.model = build_detector(cfg["model"]["arch"], **kwargs).to(self.device)
        if cfg["model"]["init_from"]:  # fine-tuning: start from a checkpoint's (or torchvision's COCO) weights
            source = cfg["model"]["init_from"]
            if source.startswith("torchvision:"):
                from metaanchor.families.retinanet.from_torchvision import init_from_torchvision

                fresh = init_from_torchvision(self.model, source)
            else:
                fresh = ckpt.init_weights(self.model, source)
            if fresh and self.main:
                tqdm.write(f"model.init_from: {len(fresh)} tensors that depend on the class count start fresh "
                           f"({', '.join(fresh[:3])}{', ...' if len(fresh) > 3 else ''})")
        self.model.set_channels_last(trains_channels_last(self.device, s["channels_last"]))
        self.model.batcher.resize_in_training = False  # the data loader reads images at the input size
        self.base_anchors = self.model.train_anchors
        a = cfg["anchors"]
        jitter = (a["scale_jitter"], a["ratio_jitter"]) if a["sample"] else (0.0, 0.0)
        self.model.set_code_range(*code_range(self.base_anchors, self.model.standard_sizes, *jitter))
        self.optimizer = self._build_optimizer()
        # solver.ema: an EMA copy of the weights is what is evaluated and saved as "model" (engine/ema.py)
        self.ema = ModelEMA(self.model, s["ema"], s["ema_tau"]) if s.get("ema") else None
        self.amp_dtype = None
        if self.device.type == "cuda" and s["amp"]:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif self.device.type == "cpu" and s["cpu_bf16"]:
            if cpu_has_native_bf16():
                self.amp_dtype = torch.bfloat16
            elif self.main:
                tqdm.write("solver.cpu_bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), where bf16 "
                           "convolutions run far slower than float32; training in float32")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.state = TrainState(devices=[device_label(self.device)])
        self.t0 = time.time()
        self.early_stopped = False
        self.log = RunLog(self.out) if self.main else None
        if resume:
            self._resume()
        self.ddp = (torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.distributed else self.model)

    def _resolve_epochs(self) -> int | None:
        """Iterations per pass over the training set (``per_epoch``, as the loader cuts epochs) and
        ``solver.epochs`` turned into ``solver.max_iter`` (config.yaml then records that max_iter);
        returns the epochs asked for, or None."""
        s = self.cfg["solver"]
        self.per_epoch = ResumableBatches(self.train_set, s["batch_size"], 0, 1, self.cfg["seed"], self.rank,
                                          self.world).per_epoch
        epochs = s["epochs"]
        if not epochs:
            return None
        if epochs * self.per_epoch > MAX_ITERS:
            raise ConfigError(f"config key solver.epochs={epochs}: {epochs} x {self.per_epoch} iterations per "
                              f"epoch is more than {MAX_ITERS}")
        s["max_iter"], s["epochs"] = epochs * self.per_epoch, 0
        return epochs

    def _fit_kmeans_anchors(self) -> None:
        """``anchors.train=kmeansK``: fit K anchors to the training boxes as the network sees them (k-means,
        1 - IoU, on the family's levels), write them to OUT/anchors_kmeans.yaml and train with that file."""
        k = kmeans_count(self.cfg["anchors"]["train"])
        if k is None:
            return
        data, m = self.cfg["data"], self.cfg["model"]
        inp = self.cfg["input"]
        shapes = coco_input_shapes(self.train_set.coco.dataset, inp["size"], inp["max_size"] or inp["size"],
                                   data["train"])
        fitted = detector_class(m["arch"]).fit_anchors(shapes, k, m["anchor_base"], self.cfg["seed"])
        path = self.out / "anchors_kmeans.yaml"
        if self.main:
            write_anchor_file(fitted, path, source=str(data["train"]), method=f"k-means (1 - IoU), k={k}")
        if self.distributed:
            dist.barrier()
        self.cfg["anchors"]["train"] = str(path)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        s = self.cfg["solver"]
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        return torch.optim.SGD([{"params": decay, "weight_decay": s["weight_decay"]},
                                {"params": no_decay, "weight_decay": 0.0}], lr=s["lr"], momentum=s["momentum"])

    # --------------------------------------------------------------- checkpoints
    def _save(self, name: str, iteration: int) -> None:
        if not self.main:
            return
        payload = self.model.checkpoint_payload()
        if self.ema:  # inference reads "model": the EMA weights; --resume reads "train_model" too
            payload.update(model=self.ema.state_dict(), train_model=payload["model"], ema_updates=self.ema.updates)
        payload.update(optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(),
                       train_config=self.cfg, weights="ema" if self.ema else "trained",
                       **self.state.payload(time.time() - self.t0) | {"iteration": iteration})
        ckpt.save(payload, self.out / name)
        self._callback("on_save", self.out / name)

    def _callback(self, event: str, *args) -> None:
        """Call ``event`` on every callback that has it (main process only: the others neither log nor save)."""
        if self.main:
            for cb in self.callbacks:
                fn = getattr(cb, event, None)
                if fn is not None:
                    fn(self, *args)

    def _resume(self) -> None:
        path = self.out / "last.pt"
        if not path.is_file():  # killed before the first checkpoint: nothing to lose, start over
            if self.main:
                tqdm.write(f"--resume: no checkpoint {path} yet; starting from iteration 0")
            return
        payload = ckpt.load(path, self.device)
        ckpt.load_state(self.model, payload.get("train_model", payload["model"]), path)
        if self.ema and "train_model" in payload:
            ckpt.load_state(self.ema.module, payload["model"], path)
            self.ema.updates = int(payload.get("ema_updates", 0))
        elif self.ema:  # the checkpoint had no EMA (solver.ema was 0): start averaging from its weights
            self.ema = ModelEMA(self.model, self.cfg["solver"]["ema"], self.cfg["solver"]["ema_tau"])
        if "optimizer" not in payload:
            raise UserError(f"--resume: checkpoint {path} has no training state (written by save, not train)")
        devices = self.state.devices
        self.state = TrainState.from_payload(payload, path, self.cfg["solver"]["max_iter"])
        self.state.devices = list(dict.fromkeys([*self.state.devices, *devices]))
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scaler.load_state_dict(payload["scaler"])
            problem = optimizer_state_problem(self.optimizer)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as e:
            problem = first_line(e)  # torch's load_state_dict trusts the dicts' layout
        if problem:
            raise CheckpointError(f"checkpoint {path}: training state does not fit this run ({problem})")
        if self.main:
            tqdm.write(f"--resume: continuing from {path} at iteration {self.state.iteration}")

    # ---------------------------------------------------------------------- loop
    def _loader(self) -> DataLoader:
        inp, s = self.cfg["input"], self.cfg["solver"]
        data = AugmentedDataset(self.train_set, self.cfg["seed"], inp["hflip"], inp["photometric"], inp["augment"],
                                (self.model.batcher.min_size, self.model.batcher.max_size))
        groups = orientation_groups(self.train_set) if self.cfg["data"]["group_aspect"] else None
        batches = ResumableBatches(self.train_set, s["batch_size"], self.state.iteration, s["max_iter"],
                                   self.cfg["seed"], self.rank, self.world, groups)
        workers = self.cfg["data"]["workers"]
        return DataLoader(data, batch_sampler=batches, num_workers=workers, collate_fn=collate_train,
                          persistent_workers=False, pin_memory=self.device.type == "cuda",
                          worker_init_fn=ignore_stop_signals if workers else None)

    def _step(self, it: int, images, targets) -> dict | None:
        a = self.cfg["anchors"]
        if a["sample"] and self.model.takes_any_anchors:
            self.model.set_anchors(sample_anchor_set(self.base_anchors, self.cfg["seed"], it,
                                                     a["scale_jitter"], a["ratio_jitter"]))
        for g in self.optimizer.param_groups:
            g["lr"] = self.cfg["solver"]["lr"] * lr_factor(it, self.cfg["solver"])
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [{k: v.to(self.device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            losses = self.ddp(images, targets)
        loss = sum(losses.values())
        finite = torch.isfinite(loss.detach()).float()
        if self.distributed:  # every process must agree to skip, or DDP would hang
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if not finite.item():
            return None
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg["solver"]["clip_grad"] > 0:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg["solver"]["clip_grad"])
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if not self.scaler.is_enabled() and not torch.isfinite(norm):
            # a finite loss with NaN/inf gradients would poison the weights (and the next checkpoint);
            # gradients are already all-reduced under DDP, so every process agrees
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema:
            self.ema.update(self.model)
        stats = torch.stack([loss.detach(), *[v.detach() for v in losses.values()]]).float()
        if self.distributed:  # log the mean over processes, not rank 0's share
            dist.all_reduce(stats)
            stats /= self.world
        return dict(zip(["loss", *losses], stats.tolist()))

    def _nonfinite(self, it: int) -> None:
        if self.cfg["solver"]["nonfinite"] == "skip":
            self.state.skipped += 1
            return
        last = self.out / "last.pt"
        kept = f"; last good checkpoint: {last}" if last.is_file() else ""
        raise NonFiniteLoss(f"non-finite loss or gradient at iteration {it}{kept} "
                            "(lower solver.lr, or set solver.nonfinite=skip)")

    def _bad_images(self, messages: list[str]) -> None:
        """Unreadable training images: an error naming the file, or (data.skip_invalid) a counted skip."""
        if not messages:
            return
        if not self.skip_invalid:
            raise DataError(f"{messages[0]} (set data.skip_invalid=true to skip unreadable images)")
        for m in messages:
            if m not in self.state.bad_images and self.main:
                tqdm.write(f"skipped training image: {m}", file=sys.stderr)
            self.state.bad_images.add(m)

    def _guarded_step(self, it: int, images, targets) -> dict | None:
        """``_step`` with CUDA out-of-memory turned into advice naming the batch size."""
        with out_of_memory_advice(f"at training iteration {it}", self.cfg["solver"]["batch_size"],
                                  "solver.batch_size=", then=f" (then --resume continues from {self.out / 'last.pt'})"):
            return self._step(it, images, targets)

    def train(self) -> dict:
        """Run to ``solver.max_iter``; returns the final summary (metrics per anchor set)."""
        s = self.cfg["solver"]
        with writing(self.out):
            self.out.mkdir(parents=True, exist_ok=True)
        if self.log:
            self.log.open(dump(self.cfg), self.state.iteration)
            _say(banner(run_facts(self)))
            for message in self_defeating_settings(self.cfg, len(self.train_set)):
                warnings.warn(TrainingWarning(message), stacklevel=2)
        t0 = self.t0 = time.time() - self.state.seconds  # metrics.csv and the summary count a resumed run's whole time
        self.model.train()
        bar = tqdm(total=s["max_iter"], initial=self.state.iteration, desc="train", disable=not self.progress,
                   dynamic_ncols=True)
        try:
            with StopSignals() as stop:
                it = self._loop(bar, stop, t0)
                stop.deferred = False  # last.pt is saved: from here on a signal interrupts at once
                if stop.signum is not None:
                    raise KeyboardInterrupt
                bar.close()
                self.model.set_anchors(self.base_anchors)
                summary = self._final_eval(it, time.time() - t0)
                if self.log:
                    self.log.draw_curves(summary["metrics"].get(self.base_anchors.spec))
        finally:
            if self.log:
                self.log.close()
        summary["wall_time_s"] = time.time() - t0
        summary["devices"] = self.state.devices
        summary["skipped_steps"] = self.state.skipped
        summary["skipped_images"] = len(self.state.bad_images)
        if self.log:
            self.log.write_summary(summary)
        return summary

    def _stop_requested(self, stop: StopSignals) -> bool:
        """Whether any process got a stop signal; under DDP all processes agree (one all-reduce)."""
        if not self.distributed:
            return stop.signum is not None
        flag = torch.tensor([float(stop.signum is not None)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _stop(self, stop: StopSignals, it: int, saved: bool) -> None:
        """Save ``last.pt`` at iteration ``it`` (rank 0; the others wait for it) and raise KeyboardInterrupt."""
        last = self.out / "last.pt"
        try:
            if not saved:
                self._save("last.pt", it)
        finally:
            if self.distributed:  # no process exits (and has its launcher kill rank 0) before the save
                dist.barrier()
        if self.main:
            tqdm.write(f"{stop.name} at iteration {it}: saved {last}; "
                       "--resume continues from there", file=sys.stderr)
        raise KeyboardInterrupt

    def _loop(self, bar, stop: StopSignals, t0: float) -> int:
        """Iterations ``start_iter..max_iter``; stops (saving) at the first boundary after a signal."""
        s = self.cfg["solver"]
        it = self.state.iteration
        self._period_start = (it, time.time())
        for images, targets, bad in self._loader():
            self._bad_images(bad)
            self._callback("before_step", it)
            stats = self._guarded_step(it, images, targets) if images else {}
            self._callback("after_step", it, stats)
            if stats is None:
                self._nonfinite(it)
            it += 1
            bar.update(1)
            if stats and self.main:
                bar.set_postfix(loss=f"{stats['loss']:.3f}")
                if it % self.cfg["log"]["period"] == 0 or it == s["max_iter"]:
                    self._log(it, stats, time.time() - t0)
                    self._print_progress(it, stats)
            early = False
            if self.cfg["eval"]["period"] and it % self.cfg["eval"]["period"] == 0 and it < s["max_iter"]:
                early = self._periodic_eval(it, time.time() - t0)
            saved = early or it % self.cfg["checkpoint"]["period"] == 0 or it == s["max_iter"]
            if saved:
                self._save("last.pt", it)
            if self._stop_requested(stop):
                self._stop(stop, it, saved)
            if early:
                self.early_stopped = True
                if self.main:
                    st = self.state
                    tqdm.write(f"early stop at iteration {it}: no better validation AP in {s['early_stop']} "
                               f"evaluations; best AP {st.best_ap:.4f} at iteration {st.best_iter} (best.pt)")
                break
        return it

    def _log(self, it: int, stats: dict, seconds: float, metrics: dict | None = None) -> None:
        self.log.log(it, self.optimizer.param_groups[0]["lr"], self.state.skipped, seconds, stats, metrics)

    def _print_progress(self, it: int, stats: dict) -> None:
        """The log line after iteration ``it``: speed and ETA from the iterations since the last line
        (evaluations in between count as training time, as they will again)."""
        start, then = self._period_start
        now = time.time()
        self._period_start = (it, now)
        per_iter = (now - then) / max(1, it - start)
        s = self.cfg["solver"]
        _say(progress_line(it, s["max_iter"], self.per_epoch, stats, self.optimizer.param_groups[0]["lr"],
                           s["batch_size"] / per_iter if per_iter > 0 else 0.0, per_iter * (s["max_iter"] - it),
                           self.state.skipped))

    def _evaluate(self, anchors=None) -> dict:
        """Validation metrics (of the EMA weights with solver.ema); unreadable validation images are reported
        and left out (errors with fail_fast)."""
        skipped = None if self.fail_fast else []
        batch = self.cfg["eval"]["batch_size"]
        try:
            m = evaluate(self.ema.module if self.ema else self.model, self.val_set, anchors, batch,
                         progress=self.progress, skipped=skipped)
        except OutOfMemory:
            raise OutOfMemory(out_of_memory_message("in validation", batch, "eval.batch_size=")) from None
        for msg in skipped or []:
            tqdm.write(f"skipped validation image: {msg}", file=sys.stderr)
        return m

    def _periodic_eval(self, it: int, seconds: float) -> bool:
        """Evaluate, keep best.pt; True when solver.early_stop evaluations in a row brought no better AP
        (under DDP every process gets rank 0's answer)."""
        stop = False
        if self.main and self.val_set:
            self.model.set_anchors(self.base_anchors)
            m = self._evaluate()
            self._log(it, {}, seconds, m)
            self._track_best(m, it)
            self._callback("after_eval", it, m)
            tqdm.write(f"iter {it}: AP {fmt_metric(m['AP'], '.4f')} AP50 {fmt_metric(m['AP50'], '.4f')}")
            patience = self.cfg["solver"].get("early_stop", 0)
            stop = bool(patience) and self.state.evals_since_best >= patience
        if self.distributed:
            flag = torch.tensor([float(stop)], device=self.device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        return stop

    def _track_best(self, m: dict, it: int) -> None:
        """Save best.pt when AP improves; count evaluations since the best one."""
        st = self.state
        if m["AP"] is not None and m["AP"] > st.best_ap:  # None: no ground truth at all
            st.best_ap, st.best_iter, st.evals_since_best = m["AP"], it, 0
            self._save("best.pt", it)
        else:
            st.evals_since_best += 1

    def _final_eval(self, it: int, seconds: float) -> dict:
        summary = {"iterations": it, "metrics": {}}
        if not (self.main and self.val_set):
            return summary
        sets = [self.base_anchors.spec] + [a for a in self.cfg["anchors"]["eval"] if a != self.base_anchors.spec]
        for spec in sets:
            if spec != self.base_anchors.spec and not self.model.takes_any_anchors:
                continue
            summary["metrics"][spec] = self._evaluate(spec)
        m = summary["metrics"][self.base_anchors.spec]
        self._log(it, {}, seconds, m)
        self._track_best(m, it)
        self._callback("after_eval", it, m)
        summary.update(best_ap=self.state.best_ap, best_iteration=self.state.best_iter,
                       early_stopped=self.early_stopped, weights="ema" if self.ema else "trained",
                       per_class=m["per_class_table"])
        tqdm.write(format_per_class(m))
        return summary


def train(cfg: dict, out_dir: str | Path, resume: bool = False, progress: bool = True,
          fail_fast: bool = False, callbacks: list | tuple = ()) -> dict:
    """Train a detector as ``cfg`` says; writes the run folder and returns the summary.

    ``resume`` continues from ``out_dir/last.pt`` (from scratch if there is none yet);
    ``fail_fast`` makes every record that would be skipped or repaired an error;
    ``callbacks`` observe the run (``Trainer``).
    """
    with StopSignals(deferred=False):  # SIGTERM, like Ctrl-C, ends in KeyboardInterrupt (CLI exit code 130)
        return Trainer(cfg, out_dir, resume, progress, fail_fast, callbacks).train()


def _say(text: str) -> None:
    """A line (or lines) on stdout, above a progress bar if one is drawn, flushed so a file shows it now."""
    tqdm.write(text)
    sys.stdout.flush()
