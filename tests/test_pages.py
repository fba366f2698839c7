"""The README's and docs pages' run-dependent numbers are rendered from the committed results (endolib.study.pages)."""
import shutil

import pandas as pd
import pytest

from endolib.config import paths, repo_root
from endolib.study.pages import BLOCKS, PAGES, page_blocks, render_block, rendered_pages, replace_block


def test_every_block_is_on_its_page_and_every_page_has_its_blocks():
    for page in PAGES:
        names = page_blocks((repo_root() / page).read_text())
        assert sorted(names) == sorted(n for n, (p, _) in BLOCKS.items() if p == page), page


def test_committed_pages_agree_with_the_committed_results():
    for path, text in rendered_pages("quick").items():
        assert path.read_text() == text, (f"{path.relative_to(repo_root())} disagrees with results/quick/: "
                                          f"regenerate it with `python -m endolib cards`")


def test_the_readme_shows_every_verdict_and_the_real_time_line():
    claims = pd.read_csv(paths("quick").results / "paper_claims.csv")
    readme = (repo_root() / "README.md").read_text()
    for r in claims.itertuples():
        assert f"- {r.claim}: **{r.verdict}**" in readme
    assert "Real time on " in readme and " FPS" in readme


def test_a_changed_result_changes_its_page(tmp_path):
    res = tmp_path / "results"
    shutil.copytree(paths("quick").results, res)
    before = render_block("claims", "quick", res)
    claims = pd.read_csv(res / "paper_claims.csv")
    claims.loc[0, "verdict"] = "contradicted" if claims.loc[0, "verdict"] != "contradicted" else "reproduced"
    claims.to_csv(res / "paper_claims.csv", index=False)
    assert render_block("claims", "quick", res) != before
    t = pd.read_csv(res / "realtime.csv")
    line = render_block("realtime-line", "quick", res)
    t["fps"] = t["fps"] * 2
    t.to_csv(res / "realtime.csv", index=False)
    assert render_block("realtime-line", "quick", res) != line


def test_missing_results_say_which_command_makes_them(tmp_path):
    assert "make paper" in render_block("claims", "quick", tmp_path)
    assert "bench realtime --profile quick" in render_block("realtime-table", "quick", tmp_path)
    with pytest.raises(ValueError, match="no block 'x'"):
        replace_block("text", "x", "body")
    with pytest.raises(ValueError, match="unknown block"):
        render_block("nope")
