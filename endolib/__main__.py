"""Command line: ``python -m endolib {run,strip,figures,bench,video,site,cards} ...`` (``--help`` on each).

``run`` alone chooses how training runs: serially inside the notebooks (:func:`endolib.study.runner.run`) or every
unit on Dask first (:func:`endolib.study.distributed.run_study`). The other sub-commands are registered by the
packages that own them (their ``commands.COMMANDS``)."""
from __future__ import annotations

import argparse
import sys

from endolib.config import MODELS, PROFILES
from endolib.deploy import commands as deploy_commands
from endolib.evaluation import commands as evaluation_commands
from endolib.study import commands as study_commands
from endolib.training import commands as training_commands


def _cmd_run(args) -> int:
    from endolib.study.runner import format_summary, run, study_of, where_outputs_are

    extra = {}
    if args.data_dir:
        extra["data_dir"] = args.data_dir
    study, _ = study_of(args.profile, extra, args.dataset)  # checks --data-dir / --dataset before any work
    kw = dict(only=args.only, archs=args.arch, extra=extra, progress=not args.no_progress, force=args.force,
              dataset=args.dataset)
    if args.scheduler == "serial":  # the notebooks train, one unit after another
        results = run(args.profile, **kw)
    else:  # every training unit on Dask first, then the notebooks
        from endolib.study.distributed import run_study

        results = run_study(args.profile, args.scheduler, retries=args.retries, timeout=args.timeout,
                            start_timeout=args.start_timeout, **kw)
    print(format_summary(results))
    print(where_outputs_are(study))
    return 0 if all(r.ok for r in results) else 1


def _cmd_strip(args) -> int:
    from endolib.study.strip import strip_notebook

    for f in args.notebooks:
        print(f"{f}: {'stripped' if strip_notebook(f) else 'clean'}")
    return 0


def _cmd_figures(args) -> int:
    import time

    from endolib.study.render import render_all

    t0 = time.perf_counter()
    report = render_all(args.profile, progress=not args.no_progress)
    print(report.to_string(index=False))
    print(f"{int(report.figures.sum())} figures re-rendered in {time.perf_counter() - t0:.1f} s "
          f"({(report.status == 'failed').sum()} group(s) failed)")
    return 0 if (report.status == "rendered").all() else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m endolib", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the numbered notebooks with papermill (endolib.study.runner; Dask: endolib.study.distributed)")
    r.add_argument("--profile", default="quick", choices=list(PROFILES))
    r.add_argument("--only", nargs="+", metavar="NB", help="notebook numbers or names, e.g. 01 03")
    r.add_argument("--arch", nargs="+", metavar="NAME", choices=list(MODELS),
                   help="train (02/03), evaluate (04), time (05) and draw (06/07) only these architectures")
    r.add_argument("--data-dir", help="a prepared dataset to use instead of the phantom (its own study: "
                                      "runs/PROFILE/DATASET/, results/PROFILE/DATASET/)")
    r.add_argument("--dataset", help="the name of the study on --data-dir (default: the dataset's folder name)")
    r.add_argument("--no-progress", action="store_true", help="hide papermill's per-cell progress bar")
    r.add_argument("--force", action="store_true",
                   help="rerun every notebook, even those whose inputs are unchanged (endolib.study.incremental)")
    r.add_argument("--scheduler", default="serial", metavar="SPEC",
                   help="serial (default: the notebooks train), local[:N] (N one-thread Dask workers here), "
                        "slurm[:N] (dask-jobqueue, N worker jobs, docs/jobqueue.yaml) or tcp://HOST:PORT (a running "
                        "Dask scheduler): every training unit runs on Dask before notebooks 02/03")
    r.add_argument("--retries", type=int, default=1, help="Dask: extra attempts of a failed or lost task")
    r.add_argument("--timeout", type=float, default=10.0,
                   help="Dask: seconds to wait for a scheduler address; slurm: for sbatch (the --test-only check of "
                        "the worker job, the submission)")
    r.add_argument("--start-timeout", type=float, default=None,
                   help="slurm: seconds to wait for the first worker job to run (default: as long as the queue "
                        "takes; the jobs' state is printed every minute)")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("strip", help="remove execution noise from stored notebooks")
    s.add_argument("notebooks", nargs="+")
    s.set_defaults(func=_cmd_strip)

    f = sub.add_parser("figures", help="re-render every figure from saved results (endolib.study.render), no training")
    f.add_argument("--profile", default="quick", choices=list(PROFILES))
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(func=_cmd_figures)

    # sub-commands registered by the packages (COMMANDS), each parsing its own arguments; listed here for --help
    bench = [words[1] for words in PASS_THROUGH if words[0] == "bench"]
    b = sub.add_parser("bench", help="benchmarks that print their figures: " + "; ".join(
        f"`bench {words[1]}` {help_}" for words, (help_, _) in PASS_THROUGH.items() if words[0] == "bench"))
    b.add_argument("what", choices=bench)
    for words, (help_, _) in PASS_THROUGH.items():
        if len(words) == 1:
            sub.add_parser(words[0], help=help_)
    return ap


#: Sub-commands whose own parser handles every argument (including --help), as the packages register them.
PASS_THROUGH = {**deploy_commands.COMMANDS, **evaluation_commands.COMMANDS, **training_commands.COMMANDS,
                **study_commands.COMMANDS}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    for prefix, (_, entry) in PASS_THROUGH.items():
        if tuple(argv[:len(prefix)]) == prefix:
            try:
                return entry(argv[len(prefix):])
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
