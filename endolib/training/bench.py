"""``python -m endolib bench epoch``: seconds per training epoch of each model at a profile's size (the paper's
training-set size for ``paper``) and the study's compute estimate (units x epochs x seconds).
"""
from __future__ import annotations

import math
import time

import pandas as pd
import torch

from endolib.config import MODELS, Profile, get_profile
from endolib.models.factory import create_model
from endolib.training.losses import _batch_loss, _forward
from endolib.training.settings import training_settings

__all__ = ["study_units", "bench_epoch", "bench_train"]


# ------------------------------------------------------------------------------------------------ benchmark
#: The paper's training-validation set (Table 1): frames and frames with neural tissue. ``bench epoch`` sizes an
#: epoch with these numbers, so the estimate is for the paper's data, not the phantom.
PAPER_TRAIN_FRAMES, PAPER_TRAIN_POSITIVE = 4661, 2307


def study_units(profile: Profile) -> dict:
    """Units per model and training seed, and for the whole study, of a profile: ``max(1, search_trials)`` x
    ``folds`` search units, plus one final retraining when ``folds > 1``.

    Example:
        >>> study_units(get_profile("paper"))
        {'per_seed': 31, 'per_model': 93, 'study': 1023}
    """
    per_seed = max(1, profile.search_trials) * profile.folds + (1 if profile.folds > 1 else 0)
    return {"per_seed": per_seed, "per_model": per_seed * profile.seeds, "study": per_seed * profile.seeds * len(MODELS)}


def _train_step(model, opt, x, y, task: str, dice_eps: float, dev, amp=None, scaler=None) -> None:
    """One timed training step (forward, loss, backward, optimizer), as the benchmarks run it."""
    from endolib.device import autocast

    with autocast(dev, amp):
        logits = _forward(model, x, task)
    loss = _batch_loss(logits.float(), y, task, dice_eps)
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()


def bench_epoch(arch: str, profile: str | Profile = "paper", batches: int = 3, warmup: int = 1,
                device: str | None = None, num_threads: int | None = None) -> dict:
    """Seconds per training epoch of ``arch`` at ``profile`` size on this machine, and the study's cost.

    Times ``batches`` training steps (forward, Dice/BCE loss, backward, Adam) on random frames at the profile's
    input size and batch size after ``warmup`` steps; an epoch has as many batches as the paper's training data
    give one search unit (a ``(folds - 1) / folds`` share of the training frames, the frames with tissue x
    ``expand`` for segmenters). Validation passes are not timed (a forward pass over a third as many frames).

    Returns:
        dict with ``s_per_batch``, ``batches_per_epoch``, ``s_per_epoch``, ``units`` (per model, all seeds),
        ``max_epochs`` and ``hours_per_model`` = units x max_epochs x s_per_epoch / 3600 (an upper bound:
        early stopping ends many units sooner).
    """
    from endolib.device import (
        autocast_dtype,
        grad_scaler,
        memory_format,
        resolve_device,
        set_threads,
    )

    s = training_settings(arch, profile, device=device, num_threads=num_threads)
    p = s.profile
    threads = set_threads(p.num_threads)
    dev = resolve_device(p.device)
    amp = autocast_dtype(p.amp, dev)
    torch.manual_seed(0)
    fmt = memory_format(p.channels_last)
    model = create_model(arch, **s.model_kwargs).to(dev, memory_format=fmt).train()
    opt = torch.optim.Adam(model.parameters(), lr=p.lr)
    scaler = grad_scaler(dev, amp)
    x = torch.randn(p.batch_size, 3, s.size, s.size, device=dev).contiguous(memory_format=fmt)
    y = (torch.rand(p.batch_size, 1, s.size, s.size, device=dev) > 0.5).float() if s.task == "seg" else \
        torch.randint(0, 2, (p.batch_size,), device=dev).float()

    def step():
        _train_step(model, opt, x, y, s.task, p.dice_eps, dev, amp, scaler)

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    per_batch = (time.perf_counter() - t0) / batches
    share = (p.folds - 1) / p.folds if p.folds > 1 else 1 - p.holdout_fraction
    frames = PAPER_TRAIN_FRAMES if s.task == "cls" else PAPER_TRAIN_POSITIVE * p.expand
    n_batches = math.ceil(frames * share / p.batch_size)
    units = study_units(p)["per_model"]
    return {"model": arch, "profile": p.name, "input_size": s.size, "batch_size": p.batch_size,
            "device": str(dev), "amp": str(amp).replace("torch.", "") if amp else "off", "threads": threads,
            "s_per_batch": per_batch, "batches_per_epoch": n_batches, "s_per_epoch": per_batch * n_batches,
            "units": units, "max_epochs": s.epochs,
            "hours_per_model": units * s.epochs * per_batch * n_batches / 3600}


def bench_epoch_main(argv: list[str] | None = None) -> int:
    """``python -m endolib bench epoch --model unet resnet18 --profile paper``: seconds per training epoch and
    the study's compute estimate (units x epochs x seconds per epoch) on this machine."""
    import argparse

    from endolib.config import PROFILES
    from endolib.repro import cpu_name

    ap = argparse.ArgumentParser(prog="python -m endolib bench epoch", description=bench_epoch_main.__doc__)
    ap.add_argument("--model", nargs="+", default=["resnet18", "unet"], choices=list(MODELS))
    ap.add_argument("--profile", default="paper", choices=list(PROFILES))
    ap.add_argument("--batches", type=int, default=3, help="timed training steps per model")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default=None, help="auto, cpu, cuda (default: the profile's)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the profile's or all cores)")
    args = ap.parse_args(argv)
    if args.batches < 1:
        raise ValueError("--batches must be >= 1")
    from tqdm.auto import tqdm

    rows = [bench_epoch(m, args.profile, args.batches, args.warmup, args.device, args.threads)
            for m in tqdm(args.model, desc="bench epoch", leave=False)]
    df = pd.DataFrame(rows)
    u = study_units(get_profile(args.profile))
    print(f"training cost at profile {args.profile} on {cpu_name()} ({rows[0]['device']}, {rows[0]['threads']} "
          f"thread(s)); epochs sized for the paper's {PAPER_TRAIN_FRAMES} training frames "
          f"({PAPER_TRAIN_POSITIVE} with tissue)")
    print(df.round({"s_per_batch": 3, "s_per_epoch": 1, "hours_per_model": 1}).to_string(index=False))
    print(f"units: {u['per_seed']} per model and seed, {u['per_model']} per model, {u['study']} for the study; "
          f"hours_per_model = units x max_epochs x s_per_epoch / 3600 (upper bound: early stopping and the "
          f"shorter final retraining end many units sooner; validation passes not included)")
    return 0


# ------------------------------------------------------------------------------------------ loop throughput
def bench_train(arch: str, profile: str | Profile = "quick", data_dir=None, epochs: int = 1,
                num_threads: int | None = None, progress: bool = False) -> dict:
    """Training throughput of ``arch`` on the prepared dataset at the profile's size: the unit's own loop
    (augmentation, collation, forward, loss, backward, Adam) against the bare step on the same batches.

    Times ``epochs`` epochs of :meth:`endolib.training.unit._UnitTrainer._train_epoch` over the profile's
    training frames of the first hold-out fold (the frames a unit trains on) and one validation pass, then the same
    number of steps on batches collated beforehand (forward + loss + backward + Adam only). ``loop_share`` is the
    share of the loop's time that is not the bare step: what augmentation and collation cost.

    Args:
        arch: registry name.
        profile: the profile (its data must be prepared: notebook 01).
        data_dir: the prepared dataset (default: the profile's phantom).
        epochs: timed epochs (after one warm-up batch).
        num_threads: torch threads (default: the profile's, else all cores).
        progress: tqdm bars.

    Returns:
        dict with ``amp`` (the mixed precision it trained with), ``images``, ``batches``, ``loop_img_s``,
        ``step_img_s``, ``loop_share``, ``val_s`` and ``epoch_s`` (loop + validation).

    Example:
        >>> r = bench_train("unet", "smoke")                # doctest: +SKIP
        >>> sorted(r)[:3]                                   # doctest: +SKIP
        ['arch', 'batch_size', 'batches']
    """
    from endolib.device import autocast_dtype, resolve_device, set_threads
    from endolib.training.augment import FrameDataset
    from endolib.training.frames import prepare_data
    from endolib.training.unit import _batches, _evaluate, _UnitTrainer, _weight_average

    s = training_settings(arch, profile, data_dir=data_dir, num_threads=num_threads)
    p = s.profile
    threads = set_threads(p.num_threads)
    dev = resolve_device(p.device)
    data = prepare_data(s, progress=progress)
    tr, va = data.splits[0]
    train, val = data.part(tr), data.part(va)
    hp = data.trials[0]
    amp = autocast_dtype(p.amp, dev)  # the profile's mixed precision, as a unit trains
    trainer = _UnitTrainer(s, 0, 0, hp, dev, amp, progress, None)
    torch.manual_seed(trainer.seed)
    model = create_model(arch, **s.model_kwargs).to(dev, memory_format=trainer.fmt)
    trainer.teacher = None
    trainer.average = _weight_average(model, p.weight_average)  # the loop's own cost includes its update
    opt = torch.optim.Adam(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    ds = FrameDataset(train, s.task, augment=True, expand=p.expand if s.task == "seg" else 1,
                      rotation_deg=p.rotation_deg, zoom=p.zoom if s.task == "cls" else 0.0,
                      colour_jitter=p.colour_jitter, seed=trainer.seed)
    batches = _batches(len(ds), hp["batch_size"], torch.Generator().manual_seed(0))
    collated = []  # the epoch's batches, stacked once, images in the run's layout
    for b in batches:
        x, y = (torch.stack(t) for t in zip(*(ds[i] for i in b)))
        collated.append((x.contiguous(memory_format=trainer.fmt), y))

    def step(x, y):
        _train_step(model, opt, x, y, s.task, p.dice_eps, dev, amp)

    model.train()
    step(*collated[0])  # warm-up
    t0 = time.perf_counter()
    for e in range(epochs):
        trainer._train_epoch(model, opt, None, ds, e + 1, [])
    loop_s = (time.perf_counter() - t0) / epochs
    t0 = time.perf_counter()
    _evaluate(model, val, s.task, p, dev)
    val_s = time.perf_counter() - t0
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, y in collated:
            step(x, y)
    step_s = (time.perf_counter() - t0) / epochs
    n = len(ds)
    return {"arch": arch, "profile": p.name, "input_size": s.size, "batch_size": hp["batch_size"], "threads": threads,
            "amp": str(amp).replace("torch.", "") if amp else "off", "images": n, "batches": len(batches),
            "loop_img_s": n / loop_s, "step_img_s": n / step_s,
            "loop_share": max(0.0, 1.0 - step_s / loop_s), "val_frames": len(val), "val_s": val_s,
            "epoch_s": loop_s + val_s}


def bench_train_main(argv: list[str] | None = None) -> int:
    """``python -m endolib bench train --profile quick --model unet resnet18``: images per second of the training
    loop against the bare forward+backward step of the same model and batches, and seconds per epoch."""
    import argparse

    from endolib.config import PROFILES
    from endolib.repro import cpu_name

    ap = argparse.ArgumentParser(prog="python -m endolib bench train", description=bench_train_main.__doc__)
    ap.add_argument("--model", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--profile", default="quick", choices=list(PROFILES))
    ap.add_argument("--data-dir", default=None, help="prepared dataset (default: the profile's phantom)")
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs per model")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the profile's or all cores)")
    ap.add_argument("--save", action="store_true",
                    help="write results/PROFILE/train_throughput.csv (+ _environment.json: the machine); with "
                         "--data-dir another dataset's, results/PROFILE/DATASET/")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        raise ValueError("--epochs must be >= 1")
    from tqdm.auto import tqdm

    rows = [bench_train(m, args.profile, args.data_dir, args.epochs, args.threads)
            for m in tqdm(args.model, desc="bench train", leave=False)]
    df = pd.DataFrame(rows)
    if args.save:
        from endolib.config import study_paths
        from endolib.repro import environment, save_json, write_table

        res = study_paths(args.profile, args.data_dir).results  # results/PROFILE[/DATASET]
        write_table(df, res / "train_throughput.csv")
        save_json({"environment": environment(), "epochs": args.epochs}, res / "train_throughput_environment.json")
    print(f"training throughput at profile {args.profile} on {cpu_name()} ({rows[0]['threads']} thread(s)): "
          f"loop = the unit's training loop (augmentation, collation, step), step = forward + loss + backward + "
          f"Adam on batches collated beforehand; loop_share = the loop's own share of its time")
    print(df.drop(columns=["profile"]).round({"loop_img_s": 1, "step_img_s": 1, "loop_share": 2, "val_s": 2,
                                                "epoch_s": 2}).to_string(index=False))
    return 0
