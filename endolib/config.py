"""Every default of the study in one visible place: the three profiles and the on-disk layout.

A *profile* sets the size of everything: ``smoke`` (seconds per notebook, used by the tests),
``quick`` (the whole study on 2 CPU cores within 30 minutes) and ``paper`` (the paper's
protocol: full widths and resolutions, 3-fold CV, 10-trial random search, 50 epochs; for a GPU).

Notebooks take ``profile`` plus explicit overrides; :func:`get_profile` applies them::

    >>> p = get_profile("quick", seg_epochs=3)
    >>> p.seg_epochs, p.seg_size
    (3, 64)

Paths (all relative to the repository root, see :func:`paths`)::

    data/<profile>/phantom_raw/     generated phantom: LabelMe folder + manifest.csv + videos/
    data/<profile>/phantom/         the prepared (canonical) dataset every later notebook reads
    runs/<profile>/<model>/seed<s>/ one training run (training seed s): checkpoint, config.json, history.csv,
                                    predictions
    runs/<profile>/*.ipynb          executed notebooks written by ``python -m endolib run``
    results/<profile>/*.csv         the study's tables (committed for ``quick``)
    figures/                        every figure, stable names, PNG (+ PDF); smoke: runs/smoke/figures/

A study on another prepared dataset (one the user imported) is keyed by a *dataset name*
(:func:`dataset_name`: the name the user gives, else the prepared dataset's folder name) and keeps every
output apart from the phantom study's (:func:`paths` with ``dataset``, or :func:`study_paths`)::

    runs/<profile>/<dataset>/<model>/seed<s>/   its training runs; executed notebooks and incremental records
    results/<profile>/<dataset>/*.csv           its tables
    results/<profile>/<dataset>/figures/        its figures (never figures/ or docs/)
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Profile", "PROFILES", "get_profile", "paths", "study_paths", "dataset_name", "repo_root", "require", "CLASSIFIERS", "SEGMENTERS", "MODELS",
           "SEARCH_SPACE"]

#: Registry names, in the paper's order (Tables 3-5). The model zoo registers exactly these.
CLASSIFIERS = ("resnet18", "resnet34", "mobilenetv3_large")
SEGMENTERS = ("unet", "resunet", "r2unet", "aunet", "aresunet", "ar2unet", "segformer_b0", "segformer_b1")
MODELS = CLASSIFIERS + SEGMENTERS

#: Random-search space of the training notebooks (``search_trials`` draws): learning rate and weight decay
#: log-uniform in [low, high], batch size uniform over the choices.
SEARCH_SPACE = {"lr": (1e-4, 3e-3), "weight_decay": (1e-6, 1e-3), "batch_size": (8, 16, 32)}

#: The values of a profile's ``amp`` setting (mixed precision of training; ``endolib.device.autocast_dtype``).
AMP_SETTINGS = ("auto", "off", "bf16", "fp16", "bf16-amx")


@dataclass(frozen=True)
class Profile:
    """Sizes and protocol settings of one profile. Every field has the ``paper`` value in its comment."""

    name: str
    seed: int = 42  # the data seed: phantom, splits, test set and bootstrap (fixed across training seeds)
    seeds: int = 3  # training seeds per model: seed k of range(seeds) trains with seed + k (initialisation,
    #   batch order, augmentation); the data split and test set stay fixed (paper: one run per model; 3 here)
    # --- phantom cohort (data) ---
    phantom_size: int = 512  # frame side in pixels of generated frames (paper video: 1920x1080; 512)
    frames_per_operation: int = 220  # frames sampled per operation (paper: 6410 frames / 29 ops ~ 220)
    test_frames_per_operation: int | None = None  # frames per test operation (None: frames_per_operation; paper:
    #   1749 test frames / 7 test operations ~ 250, so the paper profile's 220 gives 1540)
    interval_s: float = 10.0  # sampling interval in seconds of video (paper: every 10 s)
    video_fps: float = 0.2  # frame rate of the generated phantom operation videos (phantom only; 2 per 10 s interval)
    # --- input sizes (the models see these; data loaders resize) ---
    cls_size: int = 224  # classifier input (paper: 224)
    seg_size: int = 256  # U-Net family input (paper: 256)
    segformer_size: int = 512  # SegFormer input (paper: 512)
    width_mult: float = 1.0  # channel-width multiplier of every model (paper: 1.0)
    # --- training ---
    cls_epochs: int = 50  # (paper: 50)
    seg_epochs: int = 50  # (paper: 50, with early stopping)
    patience: int = 10  # early-stopping patience on validation loss (epochs)
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    folds: int = 3  # patient-grouped CV folds inside the training split (paper: 3)
    search_trials: int = 10  # random-search trials (paper: 10); 0 = use lr/batch_size/weight_decay as given
    expand: int = 3  # segmentation training set expanded by augmentation (paper: three-fold)
    include_negatives: bool = False  # segmenters train on positive frames only (paper)
    max_train_frames: int | None = None  # cap on training frames (None = all)
    holdout_fraction: float = 0.2  # with folds=1: share of training patients held out for validation
    lr_schedule: str = "plateau"  # "plateau": learning rate x lr_factor after lr_patience + 1 epochs without a
    #   better validation loss (paper); "cosine": linear warm-up over warmup_epochs, then cosine decay to 0 at the
    #   last epoch, stepped per batch (a fixed length: it needs no validation signal to lower the rate)
    warmup_epochs: int = 0  # "cosine" only: epochs of linear warm-up from lr / 10 to lr
    lr_factor: float = 0.5  # reduce-LR-on-plateau factor on validation loss
    lr_patience: int = 3  # reduce-LR-on-plateau patience (epochs)
    rotation_deg: float = 20.0  # training augmentation: random rotation in [-rotation_deg, +rotation_deg]
    zoom: float = 0.1  # classifier augmentation: random zoom factor in [1 - zoom, 1 + zoom]
    colour_jitter: float = 0.0  # training augmentation: per-channel gain and brightness in [1 - j, 1 + j]
    #   (paper: 0, it lists rotation, zoom and flips; quick uses it against the phantom's per-patient white balance)
    weight_average: float = 0.0  # decay of an exponential moving average of the weights and BatchNorm statistics,
    #   updated after every optimizer step; validation sees it and it is the model kept (0: off, the raw weights;
    #   paper: off). A window of about 1 / (1 - decay) steps
    grad_clip_norm: float = 0.0  # largest global L2 norm of the gradient before each step (0: no clipping; paper: off)
    dice_eps: float = 1e-6  # epsilon of the Dice loss (paper Eq. 1)
    eval_batch_size: int = 64  # batch size for validation and test predictions
    # --- evaluation ---
    n_boot: int = 2000  # bootstrap resamples for CIs and tests
    threshold: float = 0.5  # probability threshold for binary decisions
    # --- computational load ---
    bench_warmup: int = 10
    bench_repeats: int = 50
    bench_models: tuple | None = None  # models notebook 05 times (None = all eleven; counts always cover all)
    bench_backends: tuple | None = None  # CPU paths notebook 05 compares (None = all of endolib.deploy.compute.BACKENDS)
    # --- deployment: distilled students (issue 15, endolib.deploy.realtime) ---
    student_widths: tuple = (0.5, 0.25, 0.125)  # U-Net students' widths relative to the teacher (the profile's U-Net)
    kd_alpha: float = 0.5  # student loss: kd_alpha * Dice(ground truth) + (1 - kd_alpha) * BCE(teacher probs)
    student_epochs: int = 50  # students' maximum epochs (early stopping as for the teacher); small students learn
    #   slower per epoch and cost little per epoch (quick: 40, measured: a 1/4-width student at 10 epochs lost 0.10 DSC)
    student_max_val_drop: float = 0.05  # a student is used only when teacher's minus its best validation DSC (same
    #   validation frames) is at most this; one that did not learn would decide the deployment claims (paper: 0.05)
    student_candidates: int = 3  # most candidates (student seeds) distilled per width and training seed until one
    #   meets student_max_val_drop; none met: that seed has no student at that width (paper: 3)
    # --- device and threads ---
    device: str = "auto"  # "auto" (CUDA when available, else CPU, saying so), "cpu", "cuda" or "cuda:N"
    amp: str = "auto"  # mixed precision of training: "auto" (bf16 on a GPU that supports it, else fp16 with a grad
    #   scaler; off on a CPU so CPU numbers match full precision), "bf16-amx" (bf16 where it is native: a CPU with AMX,
    #   a bf16 GPU; else off), "off", "bf16" or "fp16" (paper: auto, on a GPU). Validation and test predictions always
    #   run in full precision (endolib.device.autocast_dtype)
    channels_last: bool = False  # models and image batches in channels-last (NHWC) layout for training and prediction
    #   (paper: off; quick: on, measured 1.2-1.4x faster training steps on CPUs, see the quick profile)
    num_threads: int | None = None  # torch threads (None = the cores this process may use; set explicitly so an
    #   inherited OMP_NUM_THREADS never changes results)
    train_threads: int | None = None  # torch threads of a training unit and its run's test predictions (None:
    #   num_threads, on Dask the worker's threads). The count decides how a convolution's gradient is summed, so it
    #   changes the trained numbers and keys a unit; fixed, serial runs, notebooks, Dask workers of any size and the
    #   realtime bench's students train the same numbers (paper: None, its runs are on a GPU)
    # --- per task ---
    per_task: dict = field(default_factory=dict)  # settings that differ for classifier ("cls") or segmenter
    #   ("seg") training, e.g. {"cls": {"lr": 2e-3}}; applied before a notebook's overrides (paper: none,
    #   the random search picks lr/batch size/weight decay per model)
    per_model: dict = field(default_factory=dict)  # settings for one registry model, applied after its task's
    #   ``per_task`` settings, e.g. {"mobilenetv3_large": {"width_mult": 1.0}} (paper: none)
    extra: dict = field(default_factory=dict)  # free-form, saved with the run

    def __post_init__(self):
        if int(self.seeds) < 1:
            raise ValueError(f"profile {self.name!r}: seeds must be >= 1 (training seeds per model), got {self.seeds}")
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise ValueError(f"profile {self.name!r}: device must be 'auto', 'cpu', 'cuda' or 'cuda:N', "
                             f"got {self.device!r}")
        if not 0.0 <= float(self.kd_alpha) <= 1.0:
            raise ValueError(f"profile {self.name!r}: kd_alpha must be in [0, 1], got {self.kd_alpha}")
        if any(not 0.0 < float(w) <= 1.0 for w in self.student_widths):
            raise ValueError(f"profile {self.name!r}: student_widths must be in (0, 1], got {self.student_widths}")
        if self.lr_schedule not in ("plateau", "cosine"):
            raise ValueError(f"profile {self.name!r}: lr_schedule must be 'plateau' or 'cosine', got {self.lr_schedule!r}")
        if not -1.0 <= float(self.student_max_val_drop) <= 1.0:
            raise ValueError(f"profile {self.name!r}: student_max_val_drop must be in [-1, 1] (a DSC difference), "
                             f"got {self.student_max_val_drop}")
        if int(self.student_candidates) != self.student_candidates or self.student_candidates < 1:
            raise ValueError(f"profile {self.name!r}: student_candidates must be an integer >= 1, "
                             f"got {self.student_candidates}")
        if not 0.0 <= float(self.weight_average) < 1.0:
            raise ValueError(f"profile {self.name!r}: weight_average must be in [0, 1) (0: off), got {self.weight_average}")
        if float(self.grad_clip_norm) < 0.0:
            raise ValueError(f"profile {self.name!r}: grad_clip_norm must be >= 0 (0: off), got {self.grad_clip_norm}")
        for name in ("num_threads", "train_threads"):
            n = getattr(self, name)
            if n is not None and (int(n) != n or n < 1):
                raise ValueError(f"profile {self.name!r}: {name} must be an integer >= 1 or None, got {n}")
        if self.amp not in AMP_SETTINGS:
            raise ValueError(f"profile {self.name!r}: amp must be one of {', '.join(map(repr, AMP_SETTINGS))}, "
                             f"got {self.amp!r}")
        known = {f.name for f in dataclasses.fields(self)} - {"name", "per_task", "per_model"}
        for task, settings in self.per_task.items():
            if task not in ("cls", "seg"):
                raise ValueError(f"profile {self.name!r}: per_task keys must be 'cls' or 'seg', got {task!r}")
            unknown = sorted(set(settings) - known)
            if unknown:
                raise ValueError(f"profile {self.name!r}: unknown per_task[{task!r}] setting(s) {unknown}")
        for arch, settings in self.per_model.items():
            if arch not in MODELS:
                raise ValueError(f"profile {self.name!r}: per_model keys must be registry names "
                                 f"({', '.join(MODELS)}), got {arch!r}")
            unknown = sorted(set(settings) - known)
            if unknown:
                raise ValueError(f"profile {self.name!r}: unknown per_model[{arch!r}] setting(s) {unknown}")

    def replace(self, **overrides) -> "Profile":
        """A copy with ``overrides`` applied; ``None`` values are ignored (notebook parameters default to None)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown profile setting(s) {unknown}; valid: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def for_task(self, task: str) -> "Profile":
        """This profile with ``per_task[task]`` applied (``task`` is ``"cls"`` or ``"seg"``).

        Example:
            >>> get_profile("quick").for_task("cls").lr, get_profile("quick").for_task("seg").lr
            (0.002, 0.003)
        """
        if task not in ("cls", "seg"):
            raise ValueError(f"task must be 'cls' or 'seg', got {task!r}")
        return self.replace(**self.per_task.get(task, {}))

    def for_model(self, arch: str) -> "Profile":
        """This profile with the settings of ``arch``'s task (``per_task``), then its own (``per_model``), applied.

        Example:
            >>> q = get_profile("quick")
            >>> q.for_model("mobilenetv3_large").width_mult, q.for_model("resnet18").width_mult
            (1.0, 0.25)
        """
        if arch not in MODELS:
            raise ValueError(f"unknown architecture {arch!r}; valid names: {', '.join(MODELS)}")
        return self.for_task("cls" if arch in CLASSIFIERS else "seg").replace(**self.per_model.get(arch, {}))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def unit_threads(self) -> int | None:
        """The torch threads a training unit runs with: ``train_threads``, else ``num_threads`` (None: all cores).

        Example:
            >>> get_profile("quick").unit_threads, get_profile("paper", num_threads=2).unit_threads
            (1, 2)
        """
        return self.train_threads or self.num_threads

    @property
    def training_seeds(self) -> tuple[int, ...]:
        """The seeds every model is trained with: ``seed, seed + 1, ..., seed + seeds - 1``.

        Example:
            >>> get_profile("quick").training_seeds
            (42, 43, 44, 45, 46)
        """
        return tuple(self.seed + k for k in range(self.seeds))


PROFILES: dict[str, Profile] = {
    # every notebook in seconds; used by `make test` (nbval)
    "smoke": Profile(
        name="smoke", seeds=2, phantom_size=96, frames_per_operation=4, video_fps=0.2,
        cls_size=32, seg_size=32, segformer_size=32, width_mult=0.125,
        cls_epochs=1, seg_epochs=1, student_epochs=1, patience=1, batch_size=16, folds=1, search_trials=0, expand=1, colour_jitter=0.15,
        n_boot=200, bench_warmup=1, bench_repeats=3, bench_models=("resnet18", "unet"),
        num_threads=1,  # tiny tensors: one thread is as fast, and results do not depend on the core count
        amp="off",  # tests compare full-precision numbers, also on a GPU
        bench_backends=("eager", "onnxruntime"),
    ),
    # the whole study on 2 CPU cores within 30 minutes; `make paper`
    "quick": Profile(
        name="quick",
        seeds=5,  # five training seeds: the seed level of every CI is a t(4) interval (+-2.78 standard errors; 3 seeds
        #   give t(2), +-4.30), and a model's seed SD is estimated from 5 runs
        phantom_size=160, frames_per_operation=24, video_fps=0.2,
        test_frames_per_operation=250,  # the paper's test set: 7 operations x 250 = 1750 frames (paper 1749, 635 with
        #   tissue); evaluation is cheap, so the frame level of every CI is as narrow as the paper's. The training side
        #   stays at 22 x 24 = 528 frames: every training frame costs every epoch of 55 units
        cls_size=64,  # the classifiers at the U-Nets' size, as in the paper (224 vs 256 px); 96 px cost 2.2x per image
        seg_size=64, segformer_size=64, width_mult=0.25, colour_jitter=0.15,
        lr_schedule="cosine", warmup_epochs=1,  # a fixed-length schedule that ends at rate 0, so every run has
        #   flattened when it stops; plateau halving after one epoch (lr_patience 1) reacted to validation noise
        patience=50,  # no early stopping: the validation set (4-5 patients) is too noisy to stop on, and the cosine
        #   schedule needs its full length; the best validation epoch is still the model kept
        cls_epochs=30, seg_epochs=20,  # cosine-annealed epochs, measured to flatten (pilots, quick, one thread): a
        #   U-Net (seed 42) reached validation DSC 0.876 in 20 epochs with its last 3 within 0.0004 (test 0.81 vs ~0.70
        #   at 8), ResNet-18 validation AUROC 0.95 in 30 epochs, last 3 within 0.004 (test 0.83 vs 0.72 at 10). An epoch
        #   is 13 batches of 203 (seg) / 408 (cls) frames: python -m endolib bench train, Intel Xeon, one thread: the
        #   eight segmenters 20 s, the three classifiers 4 s per epoch; 1750 test predictions ~10-20 s per run
        student_epochs=30,  # students are 2-8x smaller and cheap per epoch; cosine-annealed like the teachers
        lr=1e-3, batch_size=16, folds=1, search_trials=0,
        expand=1,  # segmentation frames once per epoch (paper: 3-fold expansion): more epochs instead, same cost
        train_threads=1,  # one thread per training unit, as on the two one-thread Dask workers of `make paper`: a
        #   serial run, a notebook or the realtime bench's students train the same numbers (U-Net seed 42, 2 epochs:
        #   validation DSC 0.531 at one thread, 0.586 at two); Table 5 and the benchmarks keep num_threads (all cores)
        channels_last=True,  # NHWC convolutions: training steps 1.2-1.4x faster at quick size (one thread, AMD EPYC
        #   Zen 3, img/s NCHW -> NHWC: U-Net 58 -> 77, ResU-Net 56 -> 77, AU-Net 84 -> 112, R2U-Net 41 -> 48, ResNet-18
        #   248 -> 312, MobileNetV3-L 188 -> 245; SegFormers unchanged); `python -m endolib bench train` prints it
        amp="off",  # full precision. bf16 on AMX ("bf16-amx") measured on an Intel Xeon with AMX, two whole quick
        #   studies from fresh clones, everything else equal: `make paper` 32.7 min in bf16 (ResNets and U-Nets; their
        #   single training steps 1.4-1.8x faster) against 33.5 in fp32, and one verdict changed (ResNet-18 vs ResNet-34
        #   AUROC: reproduced in bf16, inconclusive in fp32); 49 s do not pay for a verdict that depends on precision
        per_model={"mobilenetv3_large": {"width_mult": 1.0},  # at a quarter width MobileNetV3-L never fits its
                   #   training frames (seed 42: training loss 0.69 -> 0.67, test AUROC 0.45; lr 1e-2: 0.69); at full
                   #   width test AUROC 0.71-0.85 over five seeds, best validation epochs 22-29 of 30, at twice the cost
                   },
        #   Segmenter colour jitter chosen on validation, from two whole quick studies (AMD EPYC Zen 3, five seeds
        #   each, everything else equal): mean best validation DSC at +-0.15 / +-0.3: U-Net 0.866 / 0.850, ResU-Net
        #   0.911 / 0.882, R2U-Net 0.902 / 0.861, AU-Net 0.853 / 0.840, AResU-Net 0.912 / 0.893, SegFormer-B0 0.730 /
        #   0.709, B1 0.742 / 0.709; AR2U-Net with separate recurrent weights (pilots, five seeds, same settings)
        #   0.878 / 0.854. So every segmenter trains at +-0.15. (With shared recurrent weights AR2U-Net had needed
        #   +-0.3: 0.720 / 0.786, collapsing in eval mode on 2 of 5 seeds at +-0.15; docs/training.md.)
        per_task={"cls": {"lr": 2e-3, "batch_size": 32, "colour_jitter": 0.3},
                  # segmenters: a higher peak rate reaches further (measured on U-Net seed 42, 8 cosine epochs:
                  # validation DSC 0.79 vs 0.72, test 0.70 vs 0.64 at 1e-3; AR2U-Net, shared recurrent weights, seed 45,
                  # 20 epochs: validation 0.72 at 3e-3 vs 0.56 at 1e-3)
                  "seg": {"lr": 3e-3}},
        n_boot=2000, bench_warmup=1, bench_repeats=5, bench_backends=("eager", "onnxruntime"),
    ),
    # the paper's protocol; meant for a GPU
    "paper": Profile(name="paper"),
}


def get_profile(name: str | Profile = "smoke", **overrides) -> Profile:
    """Return the named profile with ``overrides`` (None values ignored).

    Args:
        name: ``smoke``, ``quick`` or ``paper`` (or a Profile, returned with overrides applied).
        **overrides: any :class:`Profile` field.

    Example:
        >>> get_profile("smoke").seg_size
        32
    """
    if isinstance(name, Profile):
        return name.replace(**overrides)
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return PROFILES[name].replace(**overrides)


def repo_root() -> Path:
    """The repository root: ``$ENDOLIB_ROOT`` if set, else the folder holding ``endolib/``."""
    env = os.environ.get("ENDOLIB_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Paths:
    """The on-disk layout of one study: a profile, and a dataset name (None: the phantom study).

    Example:
        >>> paths("quick", root="/r", dataset="mine").results.as_posix()
        '/r/results/quick/mine'
    """

    root: Path
    profile: str
    dataset: str | None = None  # None: the phantom study (today's paths); else its own runs/results folders

    @property
    def data(self) -> Path:
        return self.root / "data" / self.profile

    @property
    def phantom_raw(self) -> Path:
        return self.data / "phantom_raw"

    @property
    def phantom(self) -> Path:
        """Default ``data_dir``: the prepared phantom dataset of this profile."""
        return self.data / "phantom"

    @property
    def runs(self) -> Path:
        """``runs/<profile>/`` (phantom) or ``runs/<profile>/<dataset>/``: run folders, executed notebooks,
        incremental records."""
        base = self.root / "runs" / self.profile
        return base if self.dataset is None else base / self.dataset

    def run(self, model: str, seed: int | None = None) -> Path:
        """Folder of one model's runs (``seed=None``) or of its run with one training seed.

        Example:
            >>> paths("quick", root="/r").run("unet", 42).as_posix()
            '/r/runs/quick/unet/seed42'
            >>> paths("quick", root="/r", dataset="mine").run("unet", 42).as_posix()
            '/r/runs/quick/mine/unet/seed42'
        """
        return self.runs / model if seed is None else self.runs / model / f"seed{int(seed)}"

    @property
    def results(self) -> Path:
        """``results/<profile>/`` (phantom) or ``results/<profile>/<dataset>/``."""
        base = self.root / "results" / self.profile
        return base if self.dataset is None else base / self.dataset

    @property
    def figures(self) -> Path:
        """``figures/`` for the phantom study of ``quick`` and ``paper``; the ``smoke`` profile (tests) writes under
        ``runs/smoke/figures`` so that running the tests never overwrites the committed figures; a study on another
        dataset writes under ``results/<profile>/<dataset>/figures``."""
        if self.dataset is not None:
            return self.results / "figures"
        return self.runs / "figures" if self.profile == "smoke" else self.root / "figures"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"


#: Names a dataset may not take: they are folders of the phantom study's ``runs/<profile>/`` (besides the models
#: and their students ``<model>_w<width>``).
RESERVED_DATASET_NAMES = ("figures", "video", "site", "site_src", "units", "phantom_raw")


def _check_dataset(name: str) -> str:
    """``name`` if it can key a study's folders, else a ValueError saying why."""
    name = str(name)
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"dataset name {name!r} must be one folder name (no '/', not hidden)")
    model_like = name in MODELS or any(name.startswith(f"{m}_w") for m in MODELS)
    if model_like or name in RESERVED_DATASET_NAMES:
        raise ValueError(f"dataset name {name!r} is taken by the phantom study's runs/<profile>/{name}/; "
                         f"give the study another name (dataset=...)")
    return name


def paths(profile: str | Profile = "smoke", root: str | Path | None = None, dataset: str | None = None) -> Paths:
    """The on-disk layout of a profile's study (see the module docstring).

    Args:
        profile: ``smoke``, ``quick``, ``paper`` or a Profile.
        root: the repository root (default :func:`repo_root`).
        dataset: the study's dataset name (:func:`dataset_name`); None is the phantom study.

    Example:
        >>> paths("quick", root="/r").results.as_posix(), paths("quick", root="/r", dataset="mine").figures.as_posix()
        ('/r/results/quick', '/r/results/quick/mine/figures')
    """
    name = profile.name if isinstance(profile, Profile) else str(profile)
    return Paths(Path(root).resolve() if root else repo_root(), name,
                 None if dataset is None else _check_dataset(dataset))


def dataset_name(data_dir: str | Path | None = None, profile: str | Profile = "smoke", name: str | None = None,
                 root: str | Path | None = None) -> str | None:
    """The name a study is keyed by: None for the phantom study (no ``data_dir``, or the profile's prepared
    phantom), else ``name`` if given, else the prepared dataset's folder name.

    Args:
        data_dir: the prepared dataset a notebook or the runner reads (None: the profile's phantom).
        profile: the profile (whose phantom ``data_dir`` is compared with).
        name: a name the user gives the study (wins over the folder name).
        root: the repository root (default :func:`repo_root`).

    Example:
        >>> dataset_name(None, "quick"), dataset_name("data/mine", "quick"), dataset_name("data/mine", "quick", "cohort2")
        (None, 'mine', 'cohort2')
        >>> dataset_name(paths("quick").phantom, "quick") is None
        True
    """
    if name is not None:
        return _check_dataset(name)
    if data_dir is None:
        return None
    data_dir = Path(data_dir).expanduser()
    if data_dir.resolve() == paths(profile, root).phantom.resolve():
        return None
    return _check_dataset(data_dir.resolve().name)


def study_paths(profile: str | Profile = "smoke", data_dir: str | Path | None = None, dataset: str | None = None,
                root: str | Path | None = None) -> Paths:
    """The layout of the study on ``data_dir``: :func:`paths` keyed by :func:`dataset_name`.

    Example:
        >>> study_paths("quick", "data/mine", root="/r").run("unet", 42).as_posix()
        '/r/runs/quick/mine/unet/seed42'
        >>> study_paths("quick", root="/r").results.as_posix()
        '/r/results/quick'
    """
    return paths(profile, root, dataset_name(data_dir, profile, dataset, root))


def require(path: str | Path, what: str, command: str) -> Path:
    """Fail early with one line naming what is missing and the command that makes it.

    Example:
        >>> require("/nonexistent", "the prepared dataset", "python -m endolib run --profile smoke --only 01")
        Traceback (most recent call last):
        FileNotFoundError: /nonexistent: the prepared dataset is missing; make it with `python -m endolib run --profile smoke --only 01`
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} is missing; make it with `{command}`")
    return path
