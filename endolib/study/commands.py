"""The command-line sub-commands this package owns besides ``run``/``strip``/``figures`` (which
:mod:`endolib.__main__` parses itself), registered with ``python -m endolib``. Each entry imports its module only
when it runs."""
from __future__ import annotations


def site(argv: list[str]) -> int:
    from endolib.study.site import site_main

    return site_main(argv)


def cards(argv: list[str]) -> int:
    from endolib.study.cards import cards_main

    return cards_main(argv)


def publish(argv: list[str]) -> int:
    from endolib.study.strip import publish_main

    return publish_main(argv)


def compare(argv: list[str]) -> int:
    from endolib.study.compare import compare_main

    return compare_main(argv)


#: (words) -> (help, entry): every entry parses its own arguments, ``--help`` included.
COMMANDS = {
    ("site",): ("build the study's website from the executed notebooks (endolib.study.site)", site),
    ("cards",): ("rewrite docs/model_card.md and the data card's Table 1 from results/PROFILE/ (endolib.study.cards)",
                 cards),
    ("compare",): ("verdicts and estimates of another run of the study (other numerics, another CPU) against "
                   "results/PROFILE/ (endolib.study.compare)", compare),
    ("publish",): ("copy the executed notebooks of runs/PROFILE/ to study/, stripped (endolib.study.strip)", publish),
}
