"""The command-line sub-commands this package owns, registered with ``python -m endolib`` (:mod:`endolib.__main__`).
Each entry imports its module only when it runs."""
from __future__ import annotations


def bench_stats(argv: list[str]) -> int:
    from endolib.evaluation.bench import bench_main

    return bench_main(argv)


#: (words) -> (help, entry): every entry parses its own arguments, ``--help`` included.
COMMANDS = {
    ("bench", "stats"): ("speed of the bootstrap statistics (endolib.evaluation.bench)", bench_stats),
}
