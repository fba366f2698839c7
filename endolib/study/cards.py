"""The model card, generated from the committed result tables so that it cannot drift from them.

``python -m endolib.study.cards`` rewrites ``docs/model_card.md`` from ``results/quick/`` (Tables 3, 4 and 5, the
profile in ``endolib/config.py`` and the paper's numbers in ``endolib/paper.py``); ``make paper`` does it after a
quick run, and ``tests/test_cards.py`` fails when the committed card differs from what the tables give.

Example:
    >>> fmt_ci(0.8126, 0.777, 0.8456)
    '0.813 (0.777-0.846)'
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from endolib.config import CLASSIFIERS, SEGMENTERS, get_profile, paths, repo_root
from endolib.paper import DISPLAY_NAMES, TABLE5
from endolib.paper import table as paper_table

__all__ = ["model_card", "write_model_card", "data_card_table", "with_table1", "write_cards", "fmt_ci", "CARD_PATH",
           "DATA_CARD_PATH"]


CARD_PATH = "docs/model_card.md"
DATA_CARD_PATH = "docs/data_card.md"
_T1_START, _T1_END = "<!-- table1:start -->", "<!-- table1:end -->"
#: Metrics the card reports, in this order (those present in the table).
CLS_METRICS = ("auroc", "accuracy", "sensitivity", "specificity", "precision", "f1")
SEG_METRICS = ("dsc", "iou", "auprc", "precision", "sensitivity")
_LABEL = {"auroc": "AUROC", "accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity",
          "precision": "precision", "f1": "F1", "dsc": "DSC", "iou": "IoU", "auprc": "AUPRC"}


def fmt_ci(value, lo, hi) -> str:
    """``value (lo-hi)`` with three decimals; ``-`` for a missing value."""
    if pd.isna(value):
        return "-"
    if pd.isna(lo) or pd.isna(hi):
        return f"{value:.3f}"
    return f"{value:.3f} ({lo:.3f}-{hi:.3f})"


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; make it with `make paper` (profile quick)")
    df = pd.read_csv(path)
    if "model" not in df.columns:
        raise ValueError(f"{path}: no 'model' column")
    return df.set_index("model")


def _metric_rows(ours: pd.DataFrame, paper: pd.DataFrame, model: str, metrics) -> list[str]:
    rows = []
    for m in metrics:
        if m not in ours.columns:
            continue
        r = ours.loc[model]
        theirs = paper.loc[model] if model in paper.index and m in paper.columns else None
        paper_text = fmt_ci(theirs[m], theirs[f"{m}_lo"], theirs[f"{m}_hi"]) if theirs is not None else "-"
        rows.append(f"| {_LABEL.get(m, m)} | {fmt_ci(r[m], r.get(f'{m}_lo'), r.get(f'{m}_hi'))} | {paper_text} |")
    return rows


def _width_exceptions(prof) -> str:
    """`` (MobileNetV3-L x 1)``: the models whose ``per_model`` settings give another channel width.

    Example:
        >>> _width_exceptions(get_profile("quick"))
        ' (MobileNetV3-L x 1)'
    """
    widths = {m: prof.for_model(m).width_mult for m in CLASSIFIERS + SEGMENTERS}
    other = [f"{DISPLAY_NAMES.get(m, m)} x {w:g}" for m, w in widths.items() if w != prof.width_mult]
    return f" ({', '.join(other)})" if other else ""


def _jitter_text(prof) -> str:
    """Every model's colour jitter: the most common value, then the models with another one.

    Example:
        >>> _jitter_text(get_profile("quick"))
        'colour jitter +-0.15 (ResNet-18, ResNet-34, MobileNetV3-L +-0.3)'
        >>> _jitter_text(get_profile("paper"))
        'no colour jitter'
    """
    by_value: dict[float, list[str]] = {}
    for m in CLASSIFIERS + SEGMENTERS:
        by_value.setdefault(prof.for_model(m).colour_jitter, []).append(DISPLAY_NAMES.get(m, m))
    common = max(by_value, key=lambda v: len(by_value[v]))
    other = "; ".join(f"{', '.join(names)} +-{v:g}" for v, names in by_value.items() if v != common)
    text = f"colour jitter +-{common:g}" if common else "no colour jitter"
    return text + (f" ({other})" if other else "")


def model_card(profile: str = "quick", root: str | Path | None = None, dataset: str | None = None) -> str:
    """The model card (Markdown) for every model, from ``results/<profile>/`` tables.

    Args:
        profile: whose tables (the committed ones are ``quick``).
        root: repository root (default :func:`endolib.config.repo_root`).
        dataset: another prepared dataset's study (its ``results/<profile>/<dataset>/``); None: the phantom study.
    """
    p = paths(profile, root, dataset=dataset)
    prof = get_profile(profile)
    t3 = _read(p.results / "table3_classifiers.csv")
    t4 = _read(p.results / "table4_segmenters.csv")
    t5 = _read(p.results / "table5_compute.csv") if (p.results / "table5_compute.csv").exists() else None
    p3, p4 = paper_table("table3").set_index("model"), paper_table("table4").set_index("model")
    t1 = pd.read_csv(p.results / "table1.csv").set_index("characteristic") if (p.results / "table1.csv").exists() \
        else None

    def cohort(row: str) -> str:
        if t1 is None or row not in t1.index:
            return "?"
        return f"{t1.loc[row, 'train']} train / {t1.loc[row, 'test']} test"

    resampling = t3["resampling"].iloc[0] if "resampling" in t3.columns else "frames"
    n_boot = int(t3["n_boot"].iloc[0]) if "n_boot" in t3.columns else prof.n_boot
    lines = [
        "# Model card: the eleven networks of endolib",
        "",
        f"Generated by `python -m endolib.study.cards` from `results/{profile}/` (Tables 3, 4, 5) — do not edit by hand;"
        " `tests/test_cards.py` fails when this file and the tables disagree. Data: [data card](data_card.md).",
        "",
        "## Intended use",
        "",
        "- **Research only. Not a medical device.** Not validated for, and must not be used in, clinical decisions,"
        " surgery or any patient care.",
        "- Purpose: reproduce and study the two-stage pipeline of Rhee et al. (a classifier gate says whether neural"
        " tissue is in an endoscopy frame, a segmenter outlines it) and compare architectures, speed and"
        " statistics on an open, synthetic dataset; a starting point for training on one's own annotated data.",
        "- Out of scope: real patients' video without retraining and independent clinical validation; other"
        " anatomy, other endoscopes or other procedures.",
        "",
        "## Training data",
        "",
        f"The synthetic BESS phantom (`endolib.data.phantom`, see the [data card](data_card.md)), profile `{profile}`:"
        f" {prof.frames_per_operation} frames per training operation and"
        f" {prof.test_frames_per_operation or prof.frames_per_operation} per test operation; patients {cohort('patients')}, operations"
        f" {cohort('operations')}, images {cohort('images')} (Table 1), split at the patient level as in the paper."
        " **No real patient data**: the clinical data of the"
        " paper is private. Every number below is a phantom number, not a reproduction of the paper's clinical"
        " results; the paper's values are shown beside ours for the shape of the results only.",
        "",
        f"Training (profile `{profile}`, `endolib/config.py`): classifiers at {prof.cls_size} px, U-Nets at"
        f" {prof.seg_size} px, SegFormers at {prof.segformer_size} px (paper: 224 / 256 / 512), channel width x"
        f" {prof.width_mult:g}{_width_exceptions(prof)}, {_jitter_text(prof)} (paper: none),"
        f" {prof.cls_epochs} / {prof.seg_epochs} epochs (paper: 50),"
        " the profile's training"
        f" seeds {', '.join(str(s) for s in prof.training_seeds)} (the checkpoints used:"
        f" `results/{profile}/provenance.json`). Metrics: test set, 95% bootstrap CIs ({n_boot} resamples of"
        f" {resampling}), threshold {prof.threshold}.",
        "",
    ]
    for group, names, ours, theirs, metrics in (("Classifiers (stage 1, Table 3)", CLASSIFIERS, t3, p3, CLS_METRICS),
                                                ("Segmenters (stage 2, Table 4)", SEGMENTERS, t4, p4, SEG_METRICS)):
        lines += [f"## {group}", ""]
        for model in names:
            if model not in ours.index:
                lines += [f"### {DISPLAY_NAMES[model]} (`{model}`)", "", "Not in the table.", ""]
                continue
            lines += [f"### {DISPLAY_NAMES[model]} (`{model}`)", ""]
            if t5 is not None and model in t5.index:
                r = t5.loc[model]
                paper_p, paper_g = TABLE5[model]["params_m"], TABLE5[model]["gflops"]
                lines += [f"At the paper's width and input size: {r['params_m']:.2f} M parameters, {r['gflops']:.2f}"
                          f" GFLOPs (paper: {paper_p} M, {paper_g} GFLOPs; Table 5). Build:"
                          f" `endolib.models.factory.create_model(\"{model}\")`; trained weights:"
                          f" `runs/{profile}/{model}/seed<s>/model.safetensors` after `make paper`.", ""]
            lines += ["| metric (test set) | ours, phantom (95% CI) | paper, clinical (95% CI) |", "|---|---|---|"]
            lines += _metric_rows(ours, theirs, model, metrics)
            lines.append("")
    lines += [
        "## Known limitations",
        "",
        "- Trained and tested on a synthetic phantom only: colours, textures, instruments, bleeding and motion are"
        " imitations (see the data card); performance on real endoscopy video is unknown.",
        f"- Small inputs and narrow networks in profile `{profile}` (CPU budget); the `paper` profile restores the"
        " paper's sizes but has not been run here.",
        "- Small test set (6 phantom patients): wide confidence intervals; frames of one operation are correlated"
        " (a patient-level cluster bootstrap is available in notebook 04).",
        "- Training on CPU is not bit-reproducible across CPU types (results differ in the 2nd-3rd decimal).",
        "- Speeds (Table 5) were measured on a 2-core CPU and are not the paper's GPU speeds.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(profile: str = "quick", path: str | Path | None = None, dataset: str | None = None) -> Path:
    """Write :func:`model_card` to ``docs/model_card.md`` (or ``path``; a dataset's study:
    ``results/<profile>/<dataset>/model_card.md``); returns the path."""
    if path is None:
        path = repo_root() / CARD_PATH if dataset is None else paths(profile, dataset=dataset).results / "model_card.md"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_card(profile, dataset=dataset))
    return path


def data_card_table(profile: str = "quick", root: str | Path | None = None, dataset: str | None = None) -> str:
    """``results/<profile>/table1.csv`` (a dataset's study: ``results/<profile>/<dataset>/table1.csv``) as a
    Markdown table (the data card's Table 1 block)."""
    path = paths(profile, root, dataset=dataset).results / "table1.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; make it with `python -m endolib run --profile {profile} --only 01`")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    head = "| " + " | ".join(df.columns) + " |"
    rows = ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, "|" + "---|" * len(df.columns), *rows])


def with_table1(card_text: str, table: str) -> str:
    """The data card with its Table 1 block replaced by ``table``."""
    start, end = card_text.find(_T1_START), card_text.find(_T1_END)
    if start < 0 or end < start:
        raise ValueError(f"{DATA_CARD_PATH}: the markers {_T1_START} ... {_T1_END} are missing")
    return card_text[:start + len(_T1_START)] + "\n" + table + "\n" + card_text[end:]


def write_cards(profile: str = "quick", dataset: str | None = None) -> list[Path]:
    """Rewrite the model card and the data card's Table 1 block from ``results/<profile>/``. For another
    dataset's study the cards go to its own ``results/<profile>/<dataset>/`` (``model_card.md``, ``table1.md``):
    ``docs/`` describes the phantom study only."""
    if dataset is not None:
        table1 = paths(profile, dataset=dataset).results / "table1.md"
        table1.write_text(data_card_table(profile, dataset=dataset) + "\n")
        return [write_model_card(profile, dataset=dataset), table1]
    data_card = repo_root() / DATA_CARD_PATH
    data_card.write_text(with_table1(data_card.read_text(), data_card_table(profile)))
    return [write_model_card(profile), data_card]


def cards_main(argv: list[str]) -> int:
    """``python -m endolib cards [PROFILE]``: rewrite the model card, the data card and the rendered blocks of the
    README and docs pages (:mod:`endolib.study.pages`) from ``results/PROFILE/``."""
    ap = argparse.ArgumentParser(prog="python -m endolib cards", description=cards_main.__doc__)
    ap.add_argument("profile", nargs="?", default="quick", help="whose results (default quick)")
    ap.add_argument("--dataset", help="another prepared dataset's study: its cards go to results/PROFILE/DATASET/ "
                                      "(docs/ and the README are left as they are)")
    args = ap.parse_args(argv)
    from endolib.study.pages import write_pages

    if args.dataset is not None:
        for written in write_cards(args.profile, args.dataset):
            print(f"wrote {written}")
        return 0
    for written in write_cards(args.profile) + write_pages(args.profile):
        print(f"wrote {written}")
    return 0
