"""One training unit (model x training seed x trial x fold, or the final retraining) as one plain function,
:func:`train_unit`: seeded from its identity only, checkpointed after every epoch (``resume.pt``), recorded
atomically (``unit.json``) so that a finished unit is never recomputed and an interrupted one resumes with the
same result. The serial loop, the notebooks and Dask all call it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from endolib.config import Profile
from endolib.device import memory_format
from endolib.models.factory import create_model
from endolib.training.augment import FrameDataset
from endolib.training.frames import (
    FrameSet,
    TrainingData,
    _to_tensor,
    normalise,
    prepare_data,
)
from endolib.training.load import load_run
from endolib.training.losses import _batch_loss, _forward, dice_loss
from endolib.training.settings import FINAL_FOLD, TrainSettings

__all__ = ["predict", "make_scheduler", "train_unit", "unit_dir", "unit_name", "search_units", "load_unit",
           "unit_fingerprint"]


# ------------------------------------------------------------------------------------------------ prediction
@torch.no_grad()
def predict(model: torch.nn.Module, frames: FrameSet, task: str, batch_size: int = 64,
            device: torch.device | str | None = None, channels_last: bool = False) -> np.ndarray:
    """Probabilities for every frame: float32 (N,) for classifiers, float32 (N, S, S) for segmenters, in full
    precision whatever the training's ``amp`` (bf16 or fp16 probabilities tie confident pixels in AUROC and AUPRC).

    Args:
        model: the model (moved to ``device``).
        frames: preloaded frames.
        task: ``"cls"`` or ``"seg"``.
        batch_size: frames per forward pass.
        device: where to run (default: where the model's parameters are).
        channels_last: run the model and batches in channels-last layout (the profile's ``channels_last``; the
            model is left in that layout).
    """
    from endolib.device import memory_format

    dev = torch.device(device) if device is not None else next(model.parameters()).device
    fmt = memory_format(channels_last)
    model.to(dev, memory_format=fmt).eval()
    out = []
    for start in range(0, len(frames), batch_size):
        x = normalise(_to_tensor(frames.images[start:start + batch_size])).to(dev, memory_format=fmt,
                                                                             non_blocking=True)
        logits = _forward(model, x, task)
        probs = torch.sigmoid((logits if task == "cls" else logits[:, 0]).float())
        out.append(probs.cpu().numpy().astype(np.float32))
    size = frames.images.shape[1]
    return np.concatenate(out) if out else np.zeros((0,) if task == "cls" else (0, size, size), np.float32)


def _seg_dsc(probs: np.ndarray, masks: np.ndarray, threshold: float) -> np.ndarray:
    """Per-frame DSC of thresholded probabilities (both empty = 1)."""
    from endolib.evaluation.metrics import dice, seg_counts

    c = seg_counts(probs >= threshold, masks.astype(bool))
    return dice(c.tp, c.fp, c.fn, empty=1.0)


@torch.no_grad()
def _evaluate(model, frames: FrameSet, task: str, p: Profile, device=None) -> tuple[float, float]:
    """Validation loss (BCE mean over frames, or Dice loss over all pixels of the set) and metric
    (AUROC, or mean per-frame DSC), in full precision whatever the training's ``amp``."""
    from endolib.evaluation.metrics import auroc

    probs = predict(model, frames, task, p.eval_batch_size, device, channels_last=p.channels_last)
    if task == "cls":
        y = torch.from_numpy(frames.labels.astype(np.float32))
        pr = torch.from_numpy(probs).double().clamp(1e-7, 1 - 1e-7)
        loss = float(F.binary_cross_entropy(pr, y.double()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metric = auroc(frames.labels, probs) if len(np.unique(frames.labels)) == 2 else float("nan")
        return loss, float(metric)
    pt, yt = torch.from_numpy(probs).double(), torch.from_numpy(frames.masks).double()
    loss = float(dice_loss(pt, yt, p.dice_eps))
    return loss, float(_seg_dsc(probs, frames.masks, p.threshold).mean())

def _weight_average(model: torch.nn.Module, decay: float):
    """An exponential moving average of ``model``'s weights and buffers (``torch.optim.swa_utils``), or None when
    ``decay`` is 0. Its first update copies the model; each later one moves it ``1 - decay`` of the way.

    Example:
        >>> m = torch.nn.Linear(2, 1); avg = _weight_average(m, 0.5); avg.update_parameters(m)
        >>> _ = torch.nn.init.zeros_(m.weight); avg.update_parameters(m)
        >>> bool(torch.all(avg.module.weight != 0)), _weight_average(m, 0.0) is None
        (True, True)
    """
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=True)


# ----------------------------------------------------------------------------------------------- checkpoints
def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` through ``write(tmp)`` then ``os.replace``: a half-written file never replaces a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def _save_checkpoint(state: dict, path: Path) -> None:
    _atomic(path, lambda tmp: torch.save(state, tmp))


def _write_json(obj, path: Path) -> Path:
    return _atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"))


def _cpu(sd: dict) -> dict:
    """A copy of a state dict on the CPU (checkpoints and weights never depend on the training device)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in sd.items()}


def _save_weights(sd: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    return _atomic(path, lambda tmp: save_file({k: v.contiguous() for k, v in _cpu(sd).items()}, str(tmp)))


# ----------------------------------------------------------------------------------------------- the units
def _name_key(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def _unit_seed(training_seed: int, arch: str, trial: int, fold: int, key: tuple = ()) -> int:
    """The torch seed of one unit: a function of (training seed, model, trial, fold) and the run's ``seed_key``
    (:attr:`TrainSettings.seed_key`, empty for every run but a distilled student's later candidates) only, never of
    the worker or the order in which units run."""
    entropy = [int(training_seed), _name_key(arch), trial, fold + 1, *(int(k) for k in key)]
    return int(np.random.default_rng(entropy).integers(2**31 - 1))


def unit_name(trial: int, fold: int) -> str:
    """``t<trial>_f<fold>``, or ``t<trial>_final`` for the final retraining."""
    return f"t{trial}_final" if fold == FINAL_FOLD else f"t{trial}_f{fold}"


def unit_dir(settings: TrainSettings, trial: int, fold: int) -> Path:
    """``<run_dir>/units/t<trial>_f<fold>/``: one unit's record, weights, epoch checkpoint and log."""
    return settings.run_dir / "units" / unit_name(trial, fold)


def search_units(settings: TrainSettings) -> list[tuple[int, int]]:
    """The (trial, fold) pairs of the search: ``max(1, search_trials)`` x ``folds``."""
    p = settings.profile
    return [(t, k) for t in range(max(1, p.search_trials)) for k in range(p.folds)]


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches; a trailing batch of one item joins the previous one (BatchNorm needs two)."""
    order = torch.randperm(n, generator=generator).tolist()
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] += batches.pop()
    return batches


def make_scheduler(opt: torch.optim.Optimizer, p: Profile, epochs: int, steps_per_epoch: int):
    """The learning-rate schedule of ``p.lr_schedule``.

    * ``"plateau"`` (the paper): ``ReduceLROnPlateau`` on the validation loss (training loss without validation),
      factor ``p.lr_factor``, patience ``p.lr_patience``; stepped once per epoch with the monitored loss.
    * ``"cosine"``: a ``LambdaLR`` stepped after every batch: linear warm-up from ``lr / 10`` to ``lr`` over
      ``p.warmup_epochs`` epochs, then a half cosine down to 0 at the end of epoch ``epochs``. Its length is fixed
      in advance, so the rate falls whether or not a small, noisy validation set improves.

    Args:
        opt: the optimizer (its rate is the peak rate).
        p: the profile.
        epochs: epochs of this unit.
        steps_per_epoch: batches per epoch.

    Example:
        >>> from endolib.config import get_profile
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = make_scheduler(opt, get_profile("smoke", lr_schedule="cosine", warmup_epochs=1), 3, 2)
        >>> rates = []
        >>> for _ in range(6):
        ...     rates.append(round(opt.param_groups[0]["lr"], 3)); opt.step(); sched.step()
        >>> rates
        [0.1, 0.55, 1.0, 0.854, 0.5, 0.146]
    """
    if p.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=p.lr_factor,
                                                          patience=p.lr_patience)
    warm = int(p.warmup_epochs) * int(steps_per_epoch)
    total = max(int(epochs) * int(steps_per_epoch), warm + 1)

    def factor(step: int) -> float:
        if step < warm:
            return 0.1 + 0.9 * step / warm
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / (total - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the last good checkpoint was kept."""


def load_unit(settings: TrainSettings, trial: int, fold: int, fingerprint: str | None = None) -> dict | None:
    """The record (``unit.json``) of a finished unit, or None when it is not done (or was made with other
    settings or data, when ``fingerprint`` is given)."""
    path = unit_dir(settings, trial, fold) / "unit.json"
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if fingerprint is not None and rec.get("fingerprint") != fingerprint:
        return None
    return rec


def unit_fingerprint(settings: TrainSettings, data: TrainingData, trial: int, fold: int,
                     epochs: int | None = None) -> str:
    """What a finished unit must match to be reused: the run's settings and data, the unit and its epochs."""
    from endolib.device import autocast_dtype, resolve_device

    epochs = settings.epochs if epochs is None else epochs
    p = settings.profile
    amp = autocast_dtype(p.amp, resolve_device(p.device, quiet=True))  # bf16-amx resolves per machine
    return hashlib.sha256(json.dumps([data.fingerprint(settings), trial, fold, int(epochs), data.trials[trial]]
                                     + ([str(amp)] if amp is not None else []),
                                     sort_keys=True, default=str).encode()).hexdigest()


def train_unit(settings: TrainSettings, trial: int, fold: int, epochs: int | None = None,
               data: TrainingData | None = None, progress: bool = True,
               on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train one unit (model x training seed x trial x fold, or the final retraining with ``fold=FINAL_FOLD``)
    and write it atomically into :func:`unit_dir`; a finished unit is loaded, never recomputed.

    The unit checkpoints ``resume.pt`` in its folder after every epoch and continues from it; its record
    ``unit.json`` (best epoch, validation loss/metric, the epoch history) is written last, so a unit is either
    done or not. Weights (``weights.safetensors``) are kept where a later step needs them: every hold-out unit
    (``folds == 1``; the chosen one becomes the model) and the final retraining.

    Args:
        settings: the run (model, training seed, profile, data).
        trial, fold: which unit; ``fold=FINAL_FOLD`` trains on all training frames without validation.
        epochs: epochs of the final retraining (search units use ``settings.epochs``).
        data: :func:`prepare_data` of these settings (made when None).
        progress: tqdm bars.
        on_epoch_end: called with the history row after every epoch, once the checkpoint is written.

    Returns:
        The unit record (dict).

    Example:
        >>> rec = train_unit(training_settings("unet", "smoke"), 0, 0)      # doctest: +SKIP
        >>> rec["best_epoch"], rec["done"]                                  # doctest: +SKIP
        (1, True)
    """
    from endolib.device import autocast_dtype, resolve_device, set_threads
    from endolib.repro import seed_everything

    s, p = settings, settings.profile
    data = data if data is not None else prepare_data(s, progress)
    hp = data.trials[trial]
    if fold == FINAL_FOLD:
        if epochs is None:
            raise ValueError("the final retraining needs its epoch count (the mean best epoch of the chosen trial)")
        train, val = data.frames, None
    else:
        if not 0 <= fold < len(data.splits):
            raise ValueError(f"fold {fold} does not exist: {s.arch} has {len(data.splits)} fold(s)")
        tr, va = data.splits[fold]
        train, val, epochs = data.part(tr), data.part(va), s.epochs
    fp = unit_fingerprint(s, data, trial, fold, epochs)
    done = load_unit(s, trial, fold, fp)
    if done is not None:
        return done
    set_threads(p.unit_threads)
    seed_everything(p.seed)  # deterministic algorithms; the unit's own seed follows
    device = resolve_device(p.device)
    trainer = _UnitTrainer(s, trial, fold, hp, device, autocast_dtype(p.amp, device), progress, on_epoch_end)
    record = trainer.fit(train, val, int(epochs), fp)
    return record


class _UnitTrainer:
    """One unit's training loop: early stopping on validation loss, an epoch checkpoint in the unit folder."""

    def __init__(self, settings: TrainSettings, trial: int, fold: int, hp: dict, device: torch.device,
                 amp_dtype, progress: bool, on_epoch_end: Callable | None):
        self.s, self.p, self.trial, self.fold, self.hp = settings, settings.profile, trial, fold, hp
        self.device, self.amp_dtype = device, amp_dtype
        self.progress, self.on_epoch_end = progress, on_epoch_end
        self.dir = unit_dir(settings, trial, fold)
        self.ckpt = self.dir / "resume.pt"
        self.seed = _unit_seed(settings.training_seed, settings.arch, trial, fold, settings.seed_key)
        self.fmt = memory_format(self.p.channels_last)  # models and image batches in this layout
        self.average = None  # the weight average (Profile.weight_average), made with the model in fit()

    def _load(self, fingerprint: str) -> dict | None:
        if not self.ckpt.exists():
            return None
        try:
            state = torch.load(self.ckpt, map_location="cpu", weights_only=True)
        except Exception as e:  # a corrupt checkpoint: say so and start again
            print(f"{self.ckpt}: cannot read the checkpoint ({type(e).__name__}: {e}); starting this unit afresh")
            return None
        if state.get("fingerprint") != fingerprint:
            print(f"{self.ckpt}: checkpoint was made with other settings or data; starting this unit afresh")
            return None
        return state

    def fit(self, train: FrameSet, val: FrameSet | None, epochs: int, fingerprint: str) -> dict:
        """Train; no validation (final retraining): all ``epochs``, last weights."""
        from tqdm.auto import tqdm

        from endolib.device import grad_scaler

        s, p, trial, fold = self.s, self.p, self.trial, self.fold
        torch.manual_seed(self.seed)
        model = create_model(s.arch, **s.model_kwargs).to(self.device, memory_format=self.fmt)
        self.average = avg = _weight_average(model, p.weight_average)  # what validation sees and what is kept
        kept = avg.module if avg is not None else model
        opt = torch.optim.Adam(model.parameters(), lr=self.hp["lr"], weight_decay=self.hp["weight_decay"])
        ds = FrameDataset(train, s.task, augment=True, expand=p.expand if s.task == "seg" else 1,
                          rotation_deg=p.rotation_deg, zoom=p.zoom if s.task == "cls" else 0.0,
                          colour_jitter=p.colour_jitter, seed=self.seed)
        steps_per_epoch = len(_batches(len(ds), self.hp["batch_size"], torch.Generator().manual_seed(0)))
        sched = make_scheduler(opt, p, epochs, steps_per_epoch)
        self.per_batch = isinstance(sched, torch.optim.lr_scheduler.LambdaLR)
        scaler = grad_scaler(self.device, self.amp_dtype)
        self.teacher = None
        if s.teacher is not None:
            self.teacher = load_run(s.teacher).model.to(self.device, memory_format=self.fmt)
        stop = {"best_loss": math.inf, "best_epoch": 0, "best_metric": math.nan, "bad": 0, "stopped": False}
        best, start, history = None, 1, []
        state = self._load(fingerprint)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if avg is not None:
                avg.load_state_dict(state["average"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            stop, best, start, history = dict(state["stop"]), state["best"], state["epoch"] + 1, state["history"]
            _set_rng_state(state["rng"])  # as it was at the end of that epoch (dropout, drop-path)
            print(f"resuming {s.model_dir.name} seed {s.training_seed} {unit_name(trial, fold)} from {self.ckpt} "
                  f"after epoch {state['epoch']}")
        # the run's folder name: a distilled student shows as unet_w0.25, not as its architecture
        label = f"{s.model_dir.name} seed {s.training_seed} trial {trial} " + (
            "final" if fold == FINAL_FOLD else f"fold {fold}")
        bar = tqdm(range(start, epochs + 1), desc=label, disable=not self.progress, leave=False,
                   initial=start - 1, total=epochs)
        for epoch in bar:
            if stop["stopped"]:
                break
            t0 = time.perf_counter()
            train_loss = self._train_epoch(model, opt, scaler, ds, epoch, history, sched if self.per_batch else None)
            val_loss, val_metric = ((math.nan, math.nan) if val is None else
                                    _evaluate(kept, val, s.task, p, self.device))
            if val is not None and not math.isfinite(val_loss):
                self._nan_error(epoch, "validation", history)
            monitor = val_loss if val is not None else train_loss
            lr_now = opt.param_groups[0]["lr"] if not self.per_batch else self._epoch_lr
            if not self.per_batch:
                sched.step(monitor)
            if val is None:
                best, stop["best_epoch"] = None, epoch
            elif monitor < stop["best_loss"]:
                stop.update(best_loss=monitor, best_epoch=epoch, best_metric=val_metric, bad=0)
                best = _cpu(kept.state_dict())
            else:
                stop["bad"] += 1
                stop["stopped"] = stop["bad"] >= p.patience
            row = {"trial": trial, "fold": fold, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                   "val_metric": val_metric, "lr": lr_now, "seconds": time.perf_counter() - t0}
            history.append(row)
            _save_checkpoint({"fingerprint": fingerprint, "epoch": epoch, "model": _cpu(model.state_dict()),
                              "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                              "scaler": scaler.state_dict() if scaler is not None else None,
                              "average": _cpu(avg.state_dict()) if avg is not None else None,
                              "stop": dict(stop), "best": best, "history": history, "rng": _rng_state()},
                             self.ckpt)
            bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}", metric=f"{val_metric:.3f}")
            if self.on_epoch_end is not None:
                self.on_epoch_end(dict(row))
        bar.close()
        keep = self.p.folds == 1 or fold == FINAL_FOLD
        if keep:
            _save_weights(best if val is not None else kept.state_dict(), self.dir / "weights.safetensors")
        record = {"arch": s.arch, "training_seed": s.training_seed, "trial": trial, "fold": fold,
                  "epochs": epochs, "hyperparameters": dict(self.hp), "unit_seed": self.seed,
                  "best_epoch": stop["best_epoch"],
                  "best_val_loss": stop["best_loss"] if val is not None else math.nan,
                  "best_val_metric": stop["best_metric"], "weights": "weights.safetensors" if keep else None,
                  "history": history, "fingerprint": fingerprint, "device": str(self.device),
                  "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off", "done": True}
        _write_json(record, self.dir / "unit.json")
        self.ckpt.unlink(missing_ok=True)
        return record

    def _train_epoch(self, model, opt, scaler, ds: FrameDataset, epoch: int, history: list,
                     sched=None) -> float:
        """One pass over ``ds``; ``sched`` (a per-batch schedule) steps after every batch."""
        from tqdm.auto import tqdm

        from endolib.device import autocast, loader_options

        ds.set_epoch(epoch)
        gen = torch.Generator().manual_seed(self.seed + epoch)
        loader = DataLoader(ds, batch_sampler=_batches(len(ds), self.hp["batch_size"], gen),
                            **loader_options(self.device))
        model.train()
        total, n = 0.0, 0
        self._epoch_lr = opt.param_groups[0]["lr"]  # the rate of the epoch's first batch (history.csv)
        for b, (x, y) in enumerate(tqdm(loader, desc=f"epoch {epoch}", disable=not self.progress, leave=False)):
            x = x.to(self.device, memory_format=self.fmt, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            teacher_probs = None
            if self.teacher is not None:  # the teacher sees the same augmented batch, in eval mode
                with torch.no_grad(), autocast(self.device, self.amp_dtype):
                    teacher_probs = torch.sigmoid(_forward(self.teacher, x, self.s.task).float())
            with autocast(self.device, self.amp_dtype):
                logits = _forward(model, x, self.s.task)
            loss = _batch_loss(logits.float(), y, self.s.task, self.p.dice_eps, teacher_probs, self.p.kd_alpha)
            if not torch.isfinite(loss):
                self._nan_error(epoch, f"training (batch {b})", history)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if self.p.grad_clip_norm:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), self.p.grad_clip_norm)
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                if self.p.grad_clip_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), self.p.grad_clip_norm)
                opt.step()
            if self.average is not None:
                self.average.update_parameters(model)
            if sched is not None:
                sched.step()
            total += float(loss.detach()) * len(x)
            n += len(x)
        return total / max(n, 1)

    def _nan_error(self, epoch, where, history) -> None:
        hp = self.hp
        if not self.ckpt.exists() or not history:
            kept = f"no epoch had finished, so there is no checkpoint in {self.ckpt}"
        else:
            kept = (f"the last good checkpoint (trial {self.trial}, fold {self.fold}, epoch {history[-1]['epoch']}) "
                    f"is kept in {self.ckpt}")
        raise NonFiniteLossError(
            f"{self.s.arch} (training seed {self.s.training_seed}): non-finite {where} loss at trial {self.trial}, "
            f"fold {self.fold}, epoch {epoch} (lr {hp['lr']:g}, batch size {hp['batch_size']}, weight decay "
            f"{hp['weight_decay']:g}); training stopped and {kept}. Lower the learning rate (parameter lr) and run "
            f"again with resume=False.")
