"""The command-line sub-commands this package owns, registered with ``python -m endolib`` (:mod:`endolib.__main__`).
Each entry imports its module only when it runs."""
from __future__ import annotations


def bench_epoch(argv: list[str]) -> int:
    from endolib.training.bench import bench_epoch_main

    return bench_epoch_main(argv)


def bench_train(argv: list[str]) -> int:
    from endolib.training.bench import bench_train_main

    return bench_train_main(argv)


def bench_numerics(argv: list[str]) -> int:
    from endolib.training.numerics import bench_numerics_main

    return bench_numerics_main(argv)


#: (words) -> (help, entry): every entry parses its own arguments, ``--help`` included.
COMMANDS = {
    ("bench", "epoch"): ("seconds per training epoch and the study's compute estimate (endolib.training.bench)",
                         bench_epoch),
    ("bench", "train"): ("images per second of the training loop against the bare step (endolib.training.bench)",
                         bench_train),
    ("bench", "numerics"): ("how far trained numbers move under other floating-point numerics "
                            "(endolib.training.numerics)", bench_numerics),
}
