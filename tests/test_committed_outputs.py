"""The committed outputs of `make paper` (profile quick) are where the README says and are usable.

The README is the contract: every figure name and result table it lists must exist in the repository, open,
and not be blank; every result table must follow the column conventions of issue 2 (``model`` column with
registry names, lowercase columns, ``<metric>_lo``/``<metric>_hi`` pairs).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from endolib.config import MODELS, paths

ROOT = paths("quick").root
README = (ROOT / "README.md").read_text()
#: a figure is "not blank" when its pixel standard deviation exceeds this (0-255 scale) ...
MIN_PIXEL_STD = 20.0
#: ... and fewer than this share of its pixels are pure white
MAX_WHITE_SHARE = 0.97


def _readme_list(after: str, until: str) -> list[str]:
    """Backticked names in the README between two markers."""
    start = README.index(after)
    return re.findall(r"`([a-z0-9_<>]+(?:\.csv|\.json)?)`", README[start:README.index(until, start)])


def readme_figures() -> list[str]:
    names = _readme_list("stable names:", "the `smoke` profile")
    out = []
    for n in names:
        out += [n.replace("<model>", m) for m in MODELS] if "<model>" in n else [n]
    return out


def readme_tables() -> list[str]:
    return [n for n in _readme_list("bounds as", "Figures go to") if n.endswith(".csv")]


def test_readme_lists_figures_and_tables():
    assert len(readme_figures()) >= 20 and "fig7_qualitative" in readme_figures()
    assert {"table3_classifiers.csv", "table4_segmenters.csv", "table5_compute.csv"} <= set(readme_tables())


def test_readme_list_of_result_files_is_complete():
    """Every committed table and figure is named in the README's list (the list is the contract)."""
    p = paths("quick")
    tables = {f.name for f in p.results.glob("*.csv")}
    assert tables - set(readme_tables()) == set(), "results/quick/ holds tables the README does not list"
    listed_json = set(_readme_list("bounds as", "Figures go to"))
    assert {f.name for f in p.results.glob("*.json")} <= listed_json, "a results/quick/*.json the README omits"
    figures = {f.stem for f in p.figures.glob("*.png")}
    assert figures - set(readme_figures()) == set(), "figures/ holds figures the README does not list"


@pytest.mark.parametrize("name", readme_figures())
def test_readme_figure_exists_opens_and_is_not_blank(name):
    png = paths("quick").figures / f"{name}.png"
    assert png.is_file(), f"{png}: listed in the README but missing; run `make paper`"
    assert png.with_suffix(".pdf").is_file(), f"{png.with_suffix('.pdf')}: missing"
    with Image.open(png) as im:
        a = np.asarray(im.convert("RGB"), np.float32)
    assert min(a.shape[:2]) >= 300, f"{png}: {a.shape[1]}x{a.shape[0]} px is too small to read"
    assert a.std() > MIN_PIXEL_STD, f"{png}: pixel std {a.std():.1f} looks blank"
    white = (a >= 254).all(axis=-1).mean()
    assert white < MAX_WHITE_SHARE, f"{png}: {white:.1%} white pixels looks blank"


@pytest.mark.parametrize("name", readme_tables())
def test_readme_table_exists_and_follows_the_conventions(name):
    csv = paths("quick").results / name
    assert csv.is_file(), f"{csv}: listed in the README but missing; run `make paper`"
    df = pd.read_csv(csv)
    assert len(df) > 0, f"{csv}: empty"
    assert all(c == c.lower() for c in df.columns), f"{csv}: column names must be lowercase: {list(df.columns)}"
    if "model" in df.columns:
        unknown = set(df["model"].dropna()) - set(MODELS) - {"colour_baseline", "paper"}
        assert not unknown, f"{csv}: model names not in the registry: {sorted(unknown)}"
    for lo in [c for c in df.columns if c.endswith("_lo")]:
        hi = lo[:-3] + "_hi"
        assert hi in df.columns, f"{csv}: {lo} without {hi}"
        ok = df[[lo, hi]].dropna()
        assert (ok[lo] <= ok[hi] + 1e-12).all(), f"{csv}: {lo} > {hi} in some rows"
