"""The study's notebook plan: the numbered notebooks (:data:`NOTEBOOKS`), which run once per architecture
(:data:`PER_ARCH`), and :func:`plan`, the jobs (notebook + papermill parameters) a ``run`` executes.

With ``archs`` (``python -m endolib run --arch ...``) the notebooks after training evaluate, time and draw that
subset too: :func:`subset_parameters` gives each its parameters (04 ``classifiers``/``segmenters``, 05
``bench_models``, 06 ``models``, 07 ``classifier``/``segmenter``).

Example:
    >>> subset_parameters("04_evaluation", ["unet", "resnet18"])
    {'classifiers': ['resnet18'], 'segmenters': ['unet']}
"""
from __future__ import annotations

from dataclasses import dataclass, field

from endolib.config import CLASSIFIERS, PROFILES, SEGMENTERS

__all__ = ["NOTEBOOKS", "PER_ARCH", "SUBSET_NOTEBOOKS", "Job", "plan", "subset_parameters"]


#: The study, in execution order: 05 runs before 04 and 06 because the two-stage frame rates of 04 and the
#: pipeline figure of 06 use the latencies 05 measures (05 needs no trained model).
NOTEBOOKS = (
    "01_data_preparation",
    "02_classifier_training",
    "03_segmentation_training",
    "05_computational_load",
    "04_evaluation",
    "06_figures",
    "07_video_demo",
)
#: Notebooks run once per architecture, with ``arch`` as papermill parameter.
PER_ARCH = {"02_classifier_training": CLASSIFIERS, "03_segmentation_training": SEGMENTERS}


#: The notebooks after training that take the runner's model subset, and the kinds of model each needs at least one
#: of (04 evaluates both stages and the gate between them; 05 times any; 06 draws segmenters; 07 deploys a pair).
SUBSET_NOTEBOOKS = {"04_evaluation": ("cls", "seg"), "05_computational_load": (), "06_figures": ("seg",),
                    "07_video_demo": ("cls", "seg")}
#: The model 07 deploys when the subset has it (its default), else the subset's first of that kind.
_DEPLOYED = {"cls": "resnet18", "seg": "unet"}


def subset_parameters(notebook: str, archs) -> dict:
    """The papermill parameters that restrict ``notebook`` (04-07) to the models ``archs``; ``{}`` for the others
    (02 and 03 take ``arch``, 01 trains nothing) or without ``archs``.

    Args:
        notebook: a notebook stem of :data:`NOTEBOOKS`.
        archs: registry names (the runner's ``--arch``), in any order; None or empty: no restriction.

    Raises:
        ValueError: the subset has no model of a kind the notebook needs (e.g. 04 without a classifier).

    Example:
        >>> subset_parameters("07_video_demo", ["aunet", "unet", "resnet34"])
        {'classifier': 'resnet34', 'segmenter': 'unet'}
        >>> subset_parameters("05_computational_load", ["unet"])
        {'bench_models': ['unet']}
    """
    if not archs or notebook not in SUBSET_NOTEBOOKS:
        return {}
    chosen = {"cls": [a for a in CLASSIFIERS if a in archs], "seg": [a for a in SEGMENTERS if a in archs]}
    for kind in SUBSET_NOTEBOOKS[notebook]:
        if not chosen[kind]:
            other = CLASSIFIERS if kind == "cls" else SEGMENTERS
            raise ValueError(f"--arch {' '.join(archs)}: notebook {notebook} needs at least one "
                             f"{'classifier' if kind == 'cls' else 'segmenter'} ({', '.join(other)}); add one, or "
                             f"leave {notebook[:2]} out with --only")
    if notebook == "04_evaluation":
        return {"classifiers": chosen["cls"], "segmenters": chosen["seg"]}
    if notebook == "05_computational_load":
        return {"bench_models": chosen["cls"] + chosen["seg"]}
    if notebook == "06_figures":
        return {"models": chosen["seg"]}
    return {kind_param: (_DEPLOYED[kind] if _DEPLOYED[kind] in chosen[kind] else chosen[kind][0])
            for kind_param, kind in (("classifier", "cls"), ("segmenter", "seg"))}


@dataclass(frozen=True)
class Job:
    notebook: str  # stem, e.g. "03_segmentation_training"
    parameters: dict = field(default_factory=dict)

    @property
    def output_name(self) -> str:
        arch = self.parameters.get("arch")
        return f"{self.notebook}__{arch}.ipynb" if arch else f"{self.notebook}.ipynb"


def _resolve(only: list[str] | None) -> list[str]:
    if not only:
        return list(NOTEBOOKS)
    chosen = []
    for key in only:
        hits = [nb for nb in NOTEBOOKS if nb == key or nb.startswith(f"{key}_") or nb.split("_", 1)[0] == key]
        if not hits:
            raise ValueError(f"unknown notebook {key!r}; valid: {', '.join(NOTEBOOKS)} (or their numbers 01-07)")
        chosen += [h for h in hits if h not in chosen]
    return [nb for nb in NOTEBOOKS if nb in chosen]


def plan(profile: str, only: list[str] | None = None, archs: list[str] | None = None,
         extra: dict | None = None) -> list[Job]:
    """The jobs to run, in order.

    Args:
        profile: ``smoke``, ``quick`` or ``paper``.
        only: notebook numbers or names to run (default: all).
        archs: restrict the per-architecture notebooks to these registry names, and notebooks 04-07 to evaluate,
            time and draw them (:func:`subset_parameters`).
        extra: more papermill parameters passed to every notebook (e.g. ``{"data_dir": "...", "dataset": "mine"}``).

    Example:
        >>> [j.parameters.get("segmenters") for j in plan("smoke", only=["03", "04"], archs=["resnet18", "unet"])]
        [None, ['unet']]
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    notebooks = _resolve(only)
    if archs:
        known = set(CLASSIFIERS) | set(SEGMENTERS)
        bad = [a for a in archs if a not in known]
        if bad:
            raise ValueError(f"unknown architecture(s) {bad}; valid: {', '.join(CLASSIFIERS + SEGMENTERS)}")
    base = {"profile": profile, **(extra or {})}
    jobs = []
    for nb in notebooks:
        if nb in PER_ARCH:
            names = [a for a in PER_ARCH[nb] if not archs or a in archs]
            if archs and not names and only:
                raise ValueError(f"none of {archs} is trained by {nb}; it trains {', '.join(PER_ARCH[nb])}")
            jobs += [Job(nb, {**base, "arch": a}) for a in names]
        else:
            jobs.append(Job(nb, {**base, **subset_parameters(nb, archs)}))
    return jobs
