"""The command-line sub-commands this package owns, registered with ``python -m endolib`` (:mod:`endolib.__main__`).
Each entry imports its module only when it runs, so ``python -m endolib --help`` stays fast."""
from __future__ import annotations


def video(argv: list[str]) -> int:
    """``video IN --out OUT ...`` annotates a video; ``video --realtime IN ...`` runs the real-time runtime."""
    if any(a == "--realtime" or a.startswith("--realtime=") for a in argv):
        from endolib.deploy.realtime import realtime_main

        if "-h" in argv or "--help" in argv:  # `video --realtime --help`: the runtime's options
            argv = ["--help"]
        return realtime_main(list(argv))
    from endolib.deploy.video import video_main

    return video_main(argv)


def bench_compute(argv: list[str]) -> int:
    from endolib.deploy.compute import bench_main

    return bench_main(argv)


def bench_realtime(argv: list[str]) -> int:
    from endolib.deploy.realtime_bench import bench_main

    return bench_main(argv)


#: (words) -> (help, entry): every entry parses its own arguments, ``--help`` included.
COMMANDS = {
    ("video",): ("annotate an endoscopy video with the two-stage pipeline, or run it live with --realtime "
                 "(endolib.deploy.video, endolib.deploy.realtime)", video),
    ("bench", "compute"): ("latency, FLOPs and Table 5 (endolib.deploy.compute)", bench_compute),
    ("bench", "realtime"): ("deployable variants: width x precision x backend (endolib.deploy.realtime_bench)",
                            bench_realtime),
}
