"""Figure helpers: one ``save_figure`` for every figure, and the project's colour-blind-safe palette."""
from __future__ import annotations

import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "nbagg", "ipympl")) else None
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["save_figure", "PALETTE", "FAMILY_MARKERS", "model_colour", "model_marker", "paper_style"]

#: Okabe-Ito colour-blind-safe palette (plus grey)
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999"]


def model_colour(name: str) -> str:
    """A stable colour per registry name, so a model has the same colour in every figure."""
    from .config import MODELS

    i = MODELS.index(name) if name in MODELS else zlib.crc32(name.encode())  # stable across processes
    return PALETTE[i % len(PALETTE)]


#: Marker per model family, so models that share a colour (eleven models, eight colours) stay apart.
FAMILY_MARKERS = {"cls": "o", "unet": "s", "segformer": "^"}


def model_marker(name: str) -> str:
    """``o`` for the classifiers, ``s`` for the U-Nets, ``^`` for the SegFormers."""
    from .config import CLASSIFIERS

    if name in CLASSIFIERS:
        return FAMILY_MARKERS["cls"]
    return FAMILY_MARKERS["segformer"] if name.startswith("segformer") else FAMILY_MARKERS["unet"]


def paper_style() -> None:
    """Fonts and sizes readable at paper size."""
    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "figure.dpi": 100, "savefig.dpi": 200, "savefig.bbox": "tight",
                         "svg.hashsalt": "endolib", "pdf.fonttype": 42})


def save_figure(fig, name: str, figures_dir: str | Path | None = None, pdf: bool = True) -> Path:
    """Save ``fig`` as ``figures/<name>.png`` (and ``.pdf``) with a stable name; returns the PNG path.

    Args:
        fig: a matplotlib Figure.
        name: stable file stem, e.g. ``"fig5_roc"``; no extension, no timestamp.
        figures_dir: target folder (default: ``figures/`` of the repository).
        pdf: also write a PDF for print.

    Example:
        >>> import matplotlib.pyplot as plt, tempfile
        >>> fig, ax = plt.subplots(); _ = ax.plot([0, 1])
        >>> save_figure(fig, "demo", tempfile.mkdtemp()).name
        'demo.png'
    """
    from .config import repo_root

    if not name or "/" in name or Path(name).suffix:
        raise ValueError(f"figure name must be a plain stem like 'fig5_roc', got {name!r}")
    out = Path(figures_dir) if figures_dir is not None else repo_root() / "figures"
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{name}.png"
    fig.savefig(png, dpi=200, bbox_inches="tight", metadata={"Software": None})
    if pdf:
        fig.savefig(out / f"{name}.pdf", bbox_inches="tight", metadata={"Creator": None, "Producer": None,
                                                                       "CreationDate": None})
    return png
