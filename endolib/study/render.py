"""Re-render every figure of the study from saved results, in one process, without training (``make figures``).

What each group reads (all written by ``make paper``; see ``docs/layout.md``):

=============================  ==========================================================================
figures                        reads
=============================  ==========================================================================
``fig_data_montage``           the prepared dataset (notebook 01)
``learning_curve_<model>``     ``runs/<profile>/<model>/history.csv`` and ``config.json`` (notebooks 02/03)
``fig5_roc``, ``fig6_pr``,     the test predictions of every model and training seed
``fig_table3_seeds``,          (``runs/<profile>/<model>/seed<s>/predictions.npz``, notebooks 02/03) and
``fig_table4_seeds``,          ``results/<profile>/table5_compute.csv`` for the frame rates (notebook 05)
``fig_two_stage_sweep``
``fig_compute_flops_latency``  ``results/<profile>/table5_compute.csv`` + ``table5_compute_environment.json``
``fig1_pipeline``, ``fig7_*``, segmenter predictions, the dataset, ``table5_compute.csv`` (notebook 06's cells)
``fig8_*``, ``fig_table2_*``
``fig_video_frames``,          the phantom's first test-operation video run through the saved ResNet-18 and
``fig_video_timeline``         U-Net checkpoints (inference only, as notebook 07)
``fig_realtime_pareto``        ``results/<profile>/realtime.csv`` (``python -m endolib bench realtime``)
=============================  ==========================================================================

A group whose inputs are missing is reported (with the reason and the command that makes them) and the others
still render.

Example:
    >>> from endolib.study.render import render_all
    >>> report = render_all("quick")  # doctest: +SKIP
    >>> report[["group", "status", "seconds"]]  # doctest: +SKIP
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from endolib.config import MODELS, Profile, get_profile, paths
from endolib.evaluation.architecture import architecture_figure, architecture_table
from endolib.evaluation.figures import (
    pr_figure,
    roc_figure,
    seed_figure,
    two_stage_figure,
)
from endolib.evaluation.qualitative import (
    N_FRAMES,
    choose_frames,
    disagreement,
    failure_cases,
    failure_figure,
    frame_scores,
    load_figure_inputs,
    pipeline_example,
    pipeline_figure,
    qualitative_figure,
    read_latencies,
)
from endolib.evaluation.two_stage import two_stage

__all__ = ["GROUPS", "render_all"]


#: The classifier and segmenter of the video figures (notebook 07's defaults).
VIDEO_MODELS = ("resnet18", "unet")


def _save(fig, name: str, p: Profile) -> str:
    import matplotlib.pyplot as plt

    from endolib.plotting import save_figure

    save_figure(fig, name, figures_dir=paths(p).figures)
    plt.close(fig)
    return name


def _montage(p: Profile, data_dir: Path) -> list[str]:
    from endolib.data.dataset import plot_montage

    return [_save(plot_montage(data_dir, n=12, seed=p.seed), "fig_data_montage", p)]


def _learning_curves(p: Profile, data_dir: Path) -> list[str]:
    from endolib.training.curves import load_learning_curves, plot_seed_learning_curves

    done = []
    for model in MODELS:
        runs = load_learning_curves(paths(p).run(model))  # every finished training seed
        if not runs:
            continue
        done.append(_save(plot_seed_learning_curves(runs), f"learning_curve_{model}", p))
    if not done:
        raise FileNotFoundError(f"no history.csv under {paths(p).runs}/<model>/seed<s>/; train with "
                                f"`python -m endolib run --profile {p.name} --only 02 03`")
    return done


def _evaluation(p: Profile, data_dir: Path) -> list[str]:
    import matplotlib.pyplot as plt

    from endolib.evaluation.study import Evaluation

    ev = Evaluation(p, data_dir=data_dir, progress=False)
    names = []
    for fig, name in ((roc_figure(ev), "fig5_roc"), (pr_figure(ev), "fig6_pr"),
                      (seed_figure(ev, "cls"), "fig_table3_seeds"), (seed_figure(ev, "seg"), "fig_table4_seeds")):
        plt.close(fig)
        names.append(name)
    comparison, sweep = two_stage(ev)
    plt.close(two_stage_figure(ev, comparison, sweep))
    return names + ["fig_two_stage_sweep"]


def _compute(p: Profile, data_dir: Path) -> list[str]:
    from endolib.deploy.compute import plot_flops_latency

    res = paths(p).results
    table_file, env_file = res / "table5_compute.csv", res / "table5_compute_environment.json"
    for f in (table_file, env_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing; make it with `python -m endolib run --profile {p.name} --only 05`")
    peak = json.loads(env_file.read_text())["environment"]["matmul_peak"]
    fig = plot_flops_latency(pd.read_csv(table_file), max(peak["gflops"], peak["interleaved_gflops"]))
    return [_save(fig, "fig_compute_flops_latency", p)]


def _qualitative(p: Profile, data_dir: Path) -> list[str]:
    from endolib.repro import write_table

    out = paths(p)
    inputs = load_figure_inputs(p, data_dir=data_dir)
    table2 = architecture_table()
    write_table(table2, out.results / "table2_architectures.csv")
    frames = choose_frames(inputs.index, None, n_frames=N_FRAMES, seed=p.seed)
    cases = failure_cases(frame_scores(inputs), disagreement(inputs))
    latency_file = out.results / "table5_compute.csv"
    source = f"latencies: {latency_file.relative_to(out.root)} (notebook 05, this machine, batch 1)"
    return [
        _save(architecture_figure(table2), "fig_table2_architectures", p),
        _save(qualitative_figure(inputs, frames), "fig7_qualitative", p),
        _save(failure_figure(inputs, cases), "fig8_failures", p),
        _save(pipeline_figure(read_latencies(latency_file), example=pipeline_example(inputs, frames[0]),
                                source=source, threshold=inputs.threshold), "fig1_pipeline", p),
    ]


def _video(p: Profile, data_dir: Path) -> list[str]:
    from endolib.data.video_io import read_video
    from endolib.deploy.demo import demo_video, plot_video_frames, plot_video_timeline
    from endolib.deploy.smoothing import smoothing_settings
    from endolib.deploy.video import annotate_video, smoothing_table
    from endolib.repro import seed_everything
    from endolib.training.load import load_run

    seed_everything(p.seed)
    cls_run, seg_run = (load_run(paths(p).run(m, p.training_seeds[0])) for m in VIDEO_MODELS)  # first seed
    clip = demo_video(p.name, data_dir=data_dir)
    settings = smoothing_settings(p.threshold)
    chosen = settings["gate + ema + hysteresis"]
    report = annotate_video(clip.path, paths(p).runs / "video" / f"{clip.path.stem}_annotated.mp4", cls_run, seg_run,
                            chosen, progress=False)
    annotated, _ = read_video(report.summary["output"])
    if clip.masks is None:
        return [_save(plot_video_frames(clip.frames, annotated, None, report.frames, fps=float(clip.fps)),
                      "fig_video_frames", p)]
    _, per_frame = smoothing_table(clip.frames, clip.masks, cls_run, seg_run, settings, progress=False)
    return [_save(plot_video_frames(clip.frames, annotated, clip.masks, per_frame["gate + ema + hysteresis"],
                                    fps=float(clip.fps)), "fig_video_frames", p),
            _save(plot_video_timeline(per_frame, float(clip.fps), settings), "fig_video_timeline", p)]


def _realtime(p: Profile, data_dir: Path) -> list[str]:
    from endolib.deploy.realtime_bench import REALTIME_FILE, pareto_figure

    f = paths(p).results / REALTIME_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing; make it with `python -m endolib bench realtime --profile {p.name}`")
    return [_save(pareto_figure(f.parent), "fig_realtime_pareto", p)]


#: Figure groups in rendering order: (group name, renderer ``(profile, data_dir) -> saved figure names``).
GROUPS: tuple[tuple[str, Callable[[Profile, Path], list[str]]], ...] = (
    ("data montage (01)", _montage),
    ("learning curves (02/03)", _learning_curves),
    ("evaluation (04)", _evaluation),
    ("computational load (05)", _compute),
    ("qualitative and pipeline (06)", _qualitative),
    ("video (07)", _video),
    ("real-time variants (bench realtime)", _realtime),
)


def render_all(profile: str | Profile = "quick", data_dir: str | Path | None = None,
               progress: bool = True) -> pd.DataFrame:
    """Re-render every figure from saved results into ``paths(profile).figures``; nothing is trained.

    Args:
        profile: whose saved results to draw (``quick`` for ``make figures``).
        data_dir: prepared dataset (default ``paths(profile).phantom``).
        progress: a tqdm bar over the groups.

    Returns:
        One row per group: ``group``, ``status`` (``rendered`` or ``failed``), ``figures`` (count), ``seconds``,
        ``error`` (what was missing, with the command that makes it).
    """
    import matplotlib
    from tqdm.auto import tqdm

    matplotlib.use("Agg")
    p = get_profile(profile)
    data_dir = Path(data_dir) if data_dir is not None else paths(p).phantom
    rows = []
    for group, fn in tqdm(GROUPS, desc="figures", disable=not progress):
        t0 = time.perf_counter()
        try:
            names = fn(p, data_dir)
            rows.append({"group": group, "status": "rendered", "figures": len(names), "error": ""})
        except (FileNotFoundError, ValueError, KeyError) as e:
            rows.append({"group": group, "status": "failed", "figures": 0, "error": f"{type(e).__name__}: {e}"})
        rows[-1]["seconds"] = round(time.perf_counter() - t0, 1)
    return pd.DataFrame(rows, columns=["group", "status", "figures", "seconds", "error"])
