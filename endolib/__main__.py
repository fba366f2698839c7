"""Command line: ``python -m endolib {run,strip,bench,video,figures,site} ...`` (``--help`` on each)."""
from __future__ import annotations

import argparse
import sys

from .config import MODELS, PROFILES


def _cmd_run(args) -> int:
    from .runner import format_summary, run

    extra = {}
    if args.data_dir:
        extra["data_dir"] = args.data_dir
    results = run(args.profile, only=args.only, archs=args.arch, extra=extra, progress=not args.no_progress,
                  force=args.force, scheduler=args.scheduler, retries=args.retries, timeout=args.timeout)
    print(format_summary(results))
    return 0 if all(r.ok for r in results) else 1


def _cmd_strip(args) -> int:
    from .runner import strip_notebook

    for f in args.notebooks:
        print(f"{f}: {'stripped' if strip_notebook(f) else 'clean'}")
    return 0


def _cmd_figures(args) -> int:
    import time

    from .render import render_all

    t0 = time.perf_counter()
    report = render_all(args.profile, progress=not args.no_progress)
    print(report.to_string(index=False))
    print(f"{int(report.figures.sum())} figures re-rendered in {time.perf_counter() - t0:.1f} s "
          f"({(report.status == 'failed').sum()} group(s) failed)")
    return 0 if (report.status == "rendered").all() else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m endolib", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the numbered notebooks with papermill (see endolib.runner)")
    r.add_argument("--profile", default="quick", choices=list(PROFILES))
    r.add_argument("--only", nargs="+", metavar="NB", help="notebook numbers or names, e.g. 01 03")
    r.add_argument("--arch", nargs="+", metavar="NAME", choices=list(MODELS),
                   help="restrict notebooks 02/03 to these architectures")
    r.add_argument("--data-dir", help="a prepared dataset to use instead of the phantom")
    r.add_argument("--no-progress", action="store_true", help="hide papermill's per-cell progress bar")
    r.add_argument("--force", action="store_true",
                   help="rerun every notebook, even those whose inputs are unchanged (endolib.incremental)")
    r.add_argument("--scheduler", default="serial", metavar="SPEC",
                   help="serial (default: the notebooks train), local[:N] (N one-thread Dask workers here), "
                        "slurm[:N] (dask-jobqueue, N worker jobs, docs/jobqueue.yaml) or tcp://HOST:PORT (a running "
                        "Dask scheduler): every training unit runs on Dask before notebooks 02/03")
    r.add_argument("--retries", type=int, default=1, help="Dask: extra attempts of a failed or lost task")
    r.add_argument("--timeout", type=float, default=10.0, help="Dask: seconds to wait for a scheduler address")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("strip", help="remove execution noise from stored notebooks")
    s.add_argument("notebooks", nargs="+")
    s.set_defaults(func=_cmd_strip)

    f = sub.add_parser("figures", help="re-render every figure from saved results (endolib.render), no training")
    f.add_argument("--profile", default="quick", choices=list(PROFILES))
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(func=_cmd_figures)

    # handled by their own parsers (see _PASS_THROUGH); listed here for --help
    b = sub.add_parser("bench", help="benchmarks that print their figures: `bench compute ...` (latency, "
                       "endolib.compute), `bench stats ...` (bootstrap, endolib.stats), `bench numerics ...` "
                       "(how far trained numbers move under other floating-point numerics, endolib.repro), "
                       "`bench realtime --profile P` (deployable variants, endolib.realtime) or `bench epoch ...` "
                       "(seconds per training epoch and the study's compute estimate, endolib.train)")
    b.add_argument("what", choices=["compute", "stats", "numerics", "realtime", "epoch"])
    sub.add_parser("video", help="annotate an endoscopy video with the two-stage pipeline (endolib.video)")
    sub.add_parser("site", help="build the study's website from the executed notebooks (endolib.site)")
    return ap


#: Sub-commands whose own parser handles every argument (including --help).
_PASS_THROUGH = {
    ("video",): lambda: __import__("endolib.video", fromlist=["video_main"]).video_main,
    ("bench", "compute"): lambda: __import__("endolib.compute", fromlist=["bench_main"]).bench_main,
    ("bench", "stats"): lambda: __import__("endolib.stats", fromlist=["bench_main"]).bench_main,
    ("bench", "numerics"): lambda: __import__("endolib.repro", fromlist=["bench_numerics_main"]).bench_numerics_main,
    ("bench", "realtime"): lambda: __import__("endolib.realtime", fromlist=["bench_main"]).bench_main,
    ("site",): lambda: __import__("endolib.site", fromlist=["site_main"]).site_main,
    ("bench", "epoch"): lambda: __import__("endolib.train", fromlist=["bench_epoch_main"]).bench_epoch_main,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    for prefix, entry in _PASS_THROUGH.items():
        if tuple(argv[:len(prefix)]) == prefix:
            try:
                return entry()(argv[len(prefix):])
            except (ValueError, FileNotFoundError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
