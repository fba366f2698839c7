"""The study's notebook plan: the numbered notebooks (:data:`NOTEBOOKS`), which run once per architecture
(:data:`PER_ARCH`), and :func:`plan`, the jobs (notebook + papermill parameters) a ``run`` executes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from endolib.config import CLASSIFIERS, PROFILES, SEGMENTERS

__all__ = ["NOTEBOOKS", "PER_ARCH", "Job", "plan"]


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
        archs: restrict the per-architecture notebooks to these registry names.
        extra: more papermill parameters passed to every notebook (e.g. ``{"data_dir": "..."}``).
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
            jobs.append(Job(nb, dict(base)))
    return jobs
