"""Reading a finished training run back: :func:`load_run` is the one way a trained model leaves its run folder
(notebooks 04-07, the video tool, the real-time runtime, a distilled student's teacher).

Example:
    >>> run = load_run("runs/quick/unet/seed42")  # doctest: +SKIP
    >>> run.arch, run.task, run.input_size  # doctest: +SKIP
    ('unet', 'seg', 64)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from endolib.models.factory import create_model, model_task
from endolib.models.weights import load_weights
from endolib.repro import load_json
from endolib.training.settings import RUN_FILES

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    """A trained model read from a run folder (``runs/<profile>/<model>/seed<s>/``, see docs/layout.md).

    Attributes:
        run_dir: the folder.
        arch: registry name (``resnet18``, ``unet``, ...).
        task: ``"cls"`` or ``"seg"``.
        input_size: the square side the model was trained at.
        model: the network in eval mode, on CPU.
        config: the run's ``config.json``.
    """

    run_dir: Path
    arch: str
    task: str
    input_size: int
    model: nn.Module
    config: dict = field(repr=False)

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / RUN_FILES["weights"]


def load_run(run_dir: str | Path | LoadedRun) -> LoadedRun:
    """The trained model (eval mode, on the CPU) and ``config.json`` of a finished run folder: one training seed's
    ``runs/<profile>/<model>/seed<s>/`` (``paths(p).run(model, s)``).

    Args:
        run_dir: the run folder (or a :class:`LoadedRun`, returned unchanged).

    Returns:
        A :class:`LoadedRun` with the model in eval mode.

    Raises:
        FileNotFoundError: the folder, its config.json or its checkpoint is missing (a model folder with one run per
            training seed is named as such, with the seeds it holds).
        ValueError: the config or the weights do not fit the architecture.

    Example:
        >>> run = load_run(paths("quick").run("unet", 42))  # doctest: +SKIP
        >>> run.config["input_size"]  # doctest: +SKIP
        64
    """
    if isinstance(run_dir, LoadedRun):
        return run_dir
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: run folder not found")
    cfg_path, weights = run_dir / RUN_FILES["config"], run_dir / RUN_FILES["weights"]
    seeds = sorted(d.name for d in run_dir.glob("seed*") if (d / RUN_FILES["config"]).is_file())
    if seeds and not cfg_path.exists():
        raise FileNotFoundError(f"{run_dir}: this is a model folder with one run per training seed "
                                f"({', '.join(seeds)}); load one of them, e.g. {run_dir / seeds[0]}")
    if not weights.is_file():
        interrupted = (run_dir / "resume.pt").is_file() or any(run_dir.glob("units/*/resume.pt"))
        state = "training was interrupted (resume.pt is there)" if interrupted else "the run has not been trained"
        raise FileNotFoundError(f"{run_dir}: no checkpoint ({weights.name}); {state}: train it with notebook "
                                f"02/03 (`python -m endolib run --only 02 03`)")
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path}: no finished training run here (weights without config.json); train "
                                f"it with notebook 02/03 (`python -m endolib run --only 02 03`)")
    cfg = load_json(cfg_path)
    missing = [k for k in ("arch", "input_size", "model_kwargs") if k not in cfg]
    if missing:
        raise ValueError(f"{cfg_path}: missing key(s) {missing}")
    arch = str(cfg["arch"])
    model = create_model(arch, **cfg["model_kwargs"])
    load_weights(model, weights, strict=True)
    return LoadedRun(run_dir, arch, model_task(arch), int(cfg["input_size"]), model.eval(), cfg)
