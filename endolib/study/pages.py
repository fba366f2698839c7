"""The numbers of the README and the docs pages that move with every run (verdicts, FPS, times), rendered from
``results/<profile>/`` into marked blocks, so that a page cannot disagree with the committed results.

A block is the text between ``<!-- results:NAME:start -->`` and ``<!-- results:NAME:end -->`` in one of
:data:`PAGES`; :func:`render_block` builds it from the results, :func:`write_pages` rewrites every block
(``python -m endolib cards``, which ``make paper`` runs), and ``tests/test_pages.py`` fails when a committed page
differs from what its results render.

Example:
    >>> replace_block("a\\n<!-- results:x:start -->\\nold\\n<!-- results:x:end -->\\nb", "x", "new")
    'a\\n<!-- results:x:start -->\\nnew\\n<!-- results:x:end -->\\nb'
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from endolib.config import paths, repo_root
from endolib.evaluation.claims import deployable_accuracy, summarise_claims
from endolib.study.compare import stale_claims

__all__ = ["PAGES", "BLOCKS", "render_block", "replace_block", "page_blocks", "write_pages", "stale_pages"]

#: Pages with rendered blocks (repository paths).
PAGES = ("README.md", "docs/realtime.md", "docs/paper_protocol.md", "docs/training.md")
#: Widths below 1 are distilled students; their label in the tables.
_WIDTH_LABEL = {1.0: "1 (paper)", 0.5: "1/2", 0.25: "1/4", 0.125: "1/8"}
_PATH_LABEL = {("fp32", "torch"): "fp32 eager", ("fp32", "onnxruntime"): "fp32 ONNX Runtime",
               ("bf16", "torch"): "bf16 autocast", ("int8", "onnxruntime"): "int8 ONNX Runtime"}


def _marker(name: str, end: bool = False) -> str:
    return f"<!-- results:{name}:{'end' if end else 'start'} -->"


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` holding ``body``.

    Raises:
        ValueError: the page has no such block (or its end marker is missing).
    """
    start, end = _marker(name), _marker(name, end=True)
    if start not in text or end not in text:
        raise ValueError(f"no block {name!r} ({start} ... {end}) on this page")
    head, rest = text.split(start, 1)
    return head + start + "\n" + body.strip("\n") + "\n" + end + rest.split(end, 1)[1]


def page_blocks(text: str) -> list[str]:
    """The names of the blocks on a page, in order."""
    return re.findall(r"<!-- results:([\w-]+):start -->", text)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _cpu(res: Path) -> str:
    env = _read_json(res / "table5_compute_environment.json").get("environment", {})
    cpu, caps = env.get("cpu", "an unrecorded CPU"), env.get("cpu_capability")
    cores = f", {env['cpu_count']} cores" if env.get("cpu_count") else ""
    return f"{cpu} ({caps} kernels{cores})" if caps else f"{cpu}{cores}"


def claims_block(res: Path, profile: str) -> str:
    """README: the paper-claims verdicts, one line each (:func:`endolib.evaluation.claims.summarise_claims`)."""
    path = res / "paper_claims.csv"
    if not path.is_file():
        return f"No `{path.name}` yet: run `make paper`."
    return summarise_claims(path, profile) + f"\n\nMeasured on {_cpu(res)}; speed claims are about this CPU."


def _fastest(table: pd.DataFrame, keep: pd.Series) -> pd.Series | None:
    rows = table[keep]
    return rows.loc[rows["fps"].idxmax()] if len(rows) else None


def realtime_line(res: Path, profile: str) -> str:
    """README: one line of real time (``realtime.csv``): the fp32 paper pipeline and the fastest variants."""
    path = res / "realtime.csv"
    if not path.is_file():
        return f"No `{path.name}` yet: `python -m endolib bench realtime --profile {profile}`."
    t = pd.read_csv(path)
    keep, lose = deployable_accuracy(t)
    ref = t[(t.width == 1.0) & (t.precision == "fp32") & (t.backend == "torch")]
    fastest, shown = _fastest(t, ~lose), _fastest(t, keep)
    parts = [f"fp32 paper pipeline {ref.fps.iloc[0]:.1f} FPS" if len(ref) else ""]
    if shown is not None:
        parts.append(f"fastest variant shown to keep its accuracy: {_variant(shown)}, {shown.fps:.1f} FPS")
    if fastest is not None:
        parts.append(f"fastest variant not shown to lose it: {_variant(fastest)}, {fastest.fps:.1f} FPS "
                     f"(DSC drop {_drop(fastest)})")
    machine = t["machine"].iloc[0] if "machine" in t and len(t) else "this CPU"
    return (f"Real time on {machine}, 2 cores, paced 30 FPS source: " + "; ".join(p for p in parts if p) +
            " ([details](docs/realtime.md)).")


def _variant(r) -> str:
    return f"width {_WIDTH_LABEL.get(float(r.width), f'{r.width:g}')} {_PATH_LABEL.get((r.precision, r.backend), r.precision)}"


def _no_accuracy(r) -> str:
    """Why a variant has no accuracy: the training seeds whose students were never checked, from
    ``student_candidates`` (``0``).

    Example:
        >>> _no_accuracy(pd.Series({"student_candidates": "0/1/3x"}))
        'not measured: no student checked on 1 of 3 seeds (candidates 0/1/3x)'
        >>> _no_accuracy(pd.Series({"student_candidates": float("nan")}))
        'not measured'
    """
    candidates = getattr(r, "student_candidates", None)  # a table row (itertuples) or a Series
    per_seed = candidates.split("/") if isinstance(candidates, str) else []
    if "0" not in per_seed:
        return "not measured"
    return (f"not measured: no student checked on {per_seed.count('0')} of {len(per_seed)} seeds "
            f"(candidates {candidates})")


def _acceptance(r) -> str:
    """How many seeds' students passed the validation check, where not all did (a variant that cannot keep the
    accuracy, only lose it: :func:`endolib.evaluation.claims.deployable_accuracy`).

    Example:
        >>> _acceptance(pd.Series({"n_seeds": 5, "n_accepted": 1, "student_candidates": "3x/3x/3x/3x/1"}))[:62]
        '; students accepted on 1 of 5 seeds (candidates 3x/3x/3x/3x/1)'
        >>> _acceptance(pd.Series({"n_seeds": 5, "n_accepted": 5}))
        ''
    """
    n, ok = getattr(r, "n_seeds", None), getattr(r, "n_accepted", None)
    if pd.isna(n) or pd.isna(ok) or ok >= n or n == 0:
        return ""
    candidates = getattr(r, "student_candidates", None)
    return (f"; students accepted on {int(ok)} of {int(n)} seeds"
            + (f" (candidates {candidates})" if isinstance(candidates, str) and candidates else "")
            + "; a seed without one is measured with its candidate best on validation")


def _drop(r) -> str:
    if pd.isna(r.dsc_drop):
        return _no_accuracy(r)
    return (f"{r.dsc_drop:.3f} [{r.dsc_drop_lo:.3f}, {r.dsc_drop_hi:.3f}]" if pd.notna(r.dsc_drop_lo) else
            f"{r.dsc_drop:.3f}") + _acceptance(r)


def realtime_table(res: Path, profile: str) -> str:
    """docs/realtime.md: every deployable variant of ``realtime.csv`` with its speed and accuracy."""
    path = res / "realtime.csv"
    if not path.is_file():
        return f"No `{path.name}` yet: `python -m endolib bench realtime --profile {profile}`."
    t = pd.read_csv(path)
    env = _read_json(res / "realtime_environment.json")
    flags = ", ".join(env.get("features", {}).get("flags", [])) or "unknown"
    lines = [f"Measured on {t['machine'].iloc[0]} (CPU flags: {flags}); {env.get('n_frames', '?')} frames per variant "
             f"and pass; DSC drop = fp32 paper-width DSC minus the variant's, mean over "
             f"{int(t['n_seeds'].max())} training seeds [95% CI], and its SD over seeds.", "",
             "| U-Net width | path | sustained FPS (range of the passes) | latency p50 / p95 ms | two-stage DSC | "
             "DSC drop [95% CI] | seed SD |", "|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        sd = "" if pd.isna(r.dsc_drop_seed_sd) else f"{r.dsc_drop_seed_sd:.3f}"
        dsc = "not measured" if pd.isna(r.dsc) else f"{r.dsc:.3f}"  # _drop says why
        lines.append(f"| {_WIDTH_LABEL.get(float(r.width), f'{r.width:g}')} | "
                     f"{_PATH_LABEL.get((r.precision, r.backend), r.precision + ' ' + r.backend)} | "
                     f"{r.fps:.1f} ({r.fps_min:.1f}-{r.fps_max:.1f}) | {r.latency_p50_ms:.0f} / "
                     f"{r.latency_p95_ms:.0f} | {dsc} | {_drop(r)} | {sd} |")
    return "\n".join(lines)


def realtime_seeds(res: Path, profile: str) -> str:
    """docs/realtime.md: the DSC drop of every variant for every training seed (``realtime_by_seed.csv``)."""
    path = res / "realtime_by_seed.csv"
    if not path.is_file():
        return f"No `{path.name}` yet: `python -m endolib bench realtime --profile {profile}`."
    t = pd.read_csv(path)
    seeds = sorted(t["seed"].unique())
    lines = ["| U-Net width | path | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    for (w, q, b), g in t.groupby(["width", "precision", "backend"], sort=False):
        g = g.set_index("seed")
        lines.append(f"| {_WIDTH_LABEL.get(float(w), f'{w:g}')} | {_PATH_LABEL.get((q, b), q)} | " +
                     " | ".join(_seed_drop(g.loc[s]) if s in g.index else "" for s in seeds) + " |")
    if any("(not accepted)" in line for line in lines):
        lines += ["", "(not accepted): none of that seed's candidates passed the validation check; the drop is that "
                      "of its candidate best on validation."]
    return "\n".join(lines)


def _seed_drop(r) -> str:
    """One cell of :func:`realtime_seeds`: the seed's DSC drop, marked when its student was not accepted.

    Example:
        >>> _seed_drop(pd.Series({"dsc_drop": 0.2, "student_used": 2, "student_accepted": float("nan")}))
        '0.200 (not accepted)'
    """
    if pd.isna(r["dsc_drop"]):
        return "no student"
    rejected = pd.notna(r.get("student_used", np.nan)) and pd.isna(r.get("student_accepted", np.nan))
    return f"{r['dsc_drop']:.3f}" + (" (not accepted)" if rejected else "")


def study_times(res: Path, profile: str) -> str:
    """docs/paper_protocol.md: wall time of every notebook of the last study run (``provenance.json``)."""
    jobs = _read_json(res / "provenance.json").get("jobs", {})
    if not jobs:
        return f"No `provenance.json` yet: run `python -m endolib run --profile {profile}`."
    rows = sorted(jobs.values(), key=lambda j: j["job"])
    first = rows[0]
    commit = (first.get("git_commit") or "unknown")[:10]
    lines = [f"Last recorded run of the `{profile}` study: commit {commit}, {first.get('cpu', '?')} with "
             f"{first.get('cpu_count', '?')} cores, {first.get('torch_threads', '?')} torch threads per notebook "
             f"(training on Dask is not part of these times).", "", "| notebook | wall s |", "|---|---|"]
    lines += [f"| `{j['job']}` | {float(j.get('wall_time_s', np.nan)):.1f} |" for j in rows]
    lines.append(f"| all notebooks | {sum(float(j.get('wall_time_s', 0)) for j in rows):.1f} |")
    return "\n".join(lines)


def training_line(res: Path, profile: str) -> str:
    """README: how many runs had flattened when training stopped (``convergence.csv``, the rule of
    :func:`endolib.training.curves.convergence`) and the largest across-seed SD of the headline test metrics
    (``table3_classifiers.csv`` AUROC, ``table4_segmenters.csv`` DSC)."""
    conv = res / "convergence.csv"
    if not conv.is_file():
        return f"No `{conv.name}` yet: run `make paper`."
    c = pd.read_csv(conv)
    flat = c["flattened"].astype(str).str.lower().eq("true")
    parts = [f"Training: {int(flat.sum())} of {len(c)} runs ({c['model'].nunique()} models x "
             f"{c['seed'].nunique()} training seeds) had flattened when they stopped (validation metric within "
             f"0.01 over the last 3 epochs, or best epoch 3 or more before the last)"]
    for name, metric in (("table3_classifiers.csv", "auroc"), ("table4_segmenters.csv", "dsc")):
        if (res / name).is_file():
            t = pd.read_csv(res / name).set_index("model")[f"{metric}_seed_sd"].astype(float)
            parts.append(f"largest across-seed SD of test {metric.upper()} {t.max():.3f} ({t.idxmax()}), "
                         f"{int((t <= 0.02).sum())} of {len(t)} models at most 0.02")
    if not flat.all():
        parts.append("still moving: " + ", ".join(f"{m} seed {s}" for m, s in c.loc[~flat, ["model", "seed"]]
                                                  .itertuples(index=False)))
    return "; ".join(parts) + "."


def numerics_line(res: Path, profile: str) -> str:
    """README: whether the study under other floating-point numerics reached the same verdicts
    (``other_numerics.json`` of ``python -m endolib compare``) and how far its estimates moved."""
    s = _read_json(res / "other_numerics.json")
    if not s:
        return (f"No `other_numerics.json` yet: rerun the study under other numerics and compare it "
                f"(`python -m endolib compare OTHER/results/{profile} --label ...`, docs/reproducibility.md).")
    stale = stale_claims(res)
    if stale:
        return (f"Other numerics: the last comparison ({s['other']}) was made against an earlier run of this study "
                f"({len(stale)} of {s['claims']} claims have another estimate or verdict now), so it says nothing "
                f"about these results: rerun the study under other numerics and compare it "
                f"(`python -m endolib compare OTHER/results/{profile} --label ...`, docs/reproducibility.md).")
    env = s.get("other_environment", {})
    where = f" on {env['cpu']}" if env.get("cpu") else ""
    text = (f"Other numerics: the whole study rerun with {s['other']}{where} reached {s['same_verdicts']} of "
            f"{s['claims']} identical verdicts" + (f" (changed: {'; '.join(s['changed'])})" if s["changed"] else "")
            + f"; the statistical claims' estimates moved by at most {s['max_estimate_moved']:.3f}")
    speed = s.get("speed_claims", [])
    if speed:
        text += ("; the speed claims, measured on each machine, "
                 + ", ".join(f"{c['fps']:.1f} -> {c['fps_other']:.1f} FPS"
                             + (" (realtime.csv: `bench realtime`, which `make paper` does not rerun)"
                                if "realtime.csv" in c["claim"] else "") for c in speed))
    moves = [f"test {t['metric'].upper()} by at most {t['max_moved']:.3f} ({t['model_max_moved']}, "
             f"{t['outside_our_ci']} of {t['models']} outside our 95% CI)"
             for t in s.get("tables", []) if t["metric"] in ("auroc", "dsc")]
    return text + ("; " + ", ".join(moves) if moves else "") + "."


def train_throughput(res: Path, profile: str) -> str:
    """docs/training.md: images/s of the training loop against the bare step per model (``train_throughput.csv`` of
    ``python -m endolib bench train --save``)."""
    path = res / "train_throughput.csv"
    if not path.is_file():
        return f"No `{path.name}` yet: run `python -m endolib bench train --profile {profile} --save`."
    t = pd.read_csv(path)
    env = _read_json(res / "train_throughput_environment.json").get("environment", {})
    lines = [f"Measured on {env.get('cpu', 'an unrecorded CPU')} ({env.get('cpu_capability', '?')} kernels), "
             f"{int(t['threads'].iloc[0])} torch thread(s), profile `{profile}`, one epoch of each model on its "
             f"training frames:", "",
             "| model | input px | batch | training precision | images/epoch | loop img/s | bare step img/s | "
             "loop's own share | validation s | s/epoch |", "|---|---|---|---|---|---|---|---|---|---|"]
    amp = t["amp"] if "amp" in t else pd.Series("off", index=t.index)  # tables from before bench train recorded it
    lines += [f"| {r.arch} | {r.input_size} | {r.batch_size} | {'fp32' if a == 'off' else a} | {r.images} | "
              f"{r.loop_img_s:.1f} | {r.step_img_s:.1f} | {r.loop_share:.0%} | {r.val_s:.2f} | {r.epoch_s:.1f} |"
              for r, a in zip(t.itertuples(), amp)]
    return "\n".join(lines)


#: block name -> (page, renderer(results_dir, profile))
BLOCKS: dict[str, tuple[str, Callable[[Path, str], str]]] = {
    "claims": ("README.md", claims_block),
    "training": ("README.md", training_line),
    "other-numerics": ("README.md", numerics_line),
    "realtime-line": ("README.md", realtime_line),
    "realtime-table": ("docs/realtime.md", realtime_table),
    "realtime-seeds": ("docs/realtime.md", realtime_seeds),
    "study-times": ("docs/paper_protocol.md", study_times),
    "train-throughput": ("docs/training.md", train_throughput),
}


def render_block(name: str, profile: str = "quick", results_dir: str | Path | None = None) -> str:
    """The text of block ``name`` from ``results_dir`` (default ``results/<profile>/``).

    Args:
        name: one of :data:`BLOCKS`.
        profile: whose results.
        results_dir: another results folder (tests).
    """
    if name not in BLOCKS:
        raise ValueError(f"unknown block {name!r}; valid: {', '.join(BLOCKS)}")
    res = Path(results_dir) if results_dir is not None else paths(profile).results
    return BLOCKS[name][1](res, profile)


def rendered_pages(profile: str = "quick", root: str | Path | None = None,
                   results_dir: str | Path | None = None) -> dict[Path, str]:
    """Every page of :data:`PAGES` with its blocks rendered: path -> new text."""
    root = Path(root) if root is not None else repo_root()
    out = {}
    for page in PAGES:
        path = root / page
        text = path.read_text()
        for name in page_blocks(text):
            if BLOCKS.get(name, (None,))[0] != page:
                raise ValueError(f"{path}: block {name!r} does not belong on this page")
            text = replace_block(text, name, render_block(name, profile, results_dir))
        out[path] = text
    return out


def stale_pages(profile: str = "quick", root: str | Path | None = None) -> list[Path]:
    """The pages whose committed blocks differ from what the results render."""
    return [p for p, text in rendered_pages(profile, root).items() if p.read_text() != text]


def write_pages(profile: str = "quick", root: str | Path | None = None) -> list[Path]:
    """Rewrite the rendered blocks of every page from ``results/<profile>/``; returns the pages written."""
    written = []
    for path, text in rendered_pages(profile, root).items():
        if path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written
