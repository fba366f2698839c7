"""Two runs of the study side by side (endolib.study.compare): identical verdicts are counted, a changed verdict is
named, and the estimates' moves are measured against our CIs."""
import shutil

import pandas as pd
import pytest

from endolib.config import paths
from endolib.study.compare import compare_studies, stale_claims
from endolib.study.pages import numerics_line, render_block


@pytest.fixture()
def two_runs(tmp_path):
    ours, other = tmp_path / "ours", tmp_path / "other"
    for d in (ours, other):
        shutil.copytree(paths("quick").results, d)
    return ours, other


def test_the_same_results_compare_identical(two_runs):
    ours, other = two_runs
    s = compare_studies(ours, other, "nothing", save=False)["summary"]
    assert s["same_verdicts"] == s["claims"] and s["changed"] == [] and s["max_estimate_moved"] == 0.0
    assert all(t["max_moved"] == 0 and t["outside_our_ci"] == 0 for t in s["tables"])


def test_a_changed_verdict_and_moved_estimates_are_reported(two_runs):
    ours, other = two_runs
    claims = pd.read_csv(other / "paper_claims.csv")
    flipped = claims.loc[0, "claim"]
    claims.loc[0, "verdict"] = "contradicted" if claims.loc[0, "verdict"] != "contradicted" else "reproduced"
    claims.loc[0, "our_estimate"] += 0.25
    claims.to_csv(other / "paper_claims.csv", index=False)
    t4 = pd.read_csv(other / "table4_segmenters.csv")
    t4.loc[0, "dsc"] = t4.loc[0, "dsc_hi"] + 0.1
    t4.to_csv(other / "table4_segmenters.csv", index=False)
    out = compare_studies(ours, other, "ATEN_CPU_CAPABILITY=default")
    s = out["summary"]
    assert s["changed"] == [flipped] and s["same_verdicts"] == s["claims"] - 1
    assert s["max_estimate_moved"] == pytest.approx(0.25)
    dsc = out["tables"].set_index("metric").loc["dsc"]
    assert dsc["outside_our_ci"] == 1 and dsc["model_max_moved"] == t4.loc[0, "model"]
    line = render_block("other-numerics", "quick", ours)
    assert "ATEN_CPU_CAPABILITY=default" in line and flipped in line


def test_results_folders_that_are_not_a_study_are_refused(tmp_path, two_runs):
    with pytest.raises(FileNotFoundError, match="paper_claims.csv"):
        compare_studies(two_runs[0], tmp_path / "nothing", "x", save=False)


def test_speed_claims_are_reported_apart_from_the_statistical_moves(two_runs):
    """A speed claim's estimate is FPS measured on each machine: a slower CPU moves it by whole frames per second,
    which says nothing about numerics, so it is listed with both machines' FPS and kept out of max_estimate_moved."""
    ours, other = two_runs
    claims = pd.read_csv(other / "paper_claims.csv")
    fps = claims["metric"] == "fps"
    assert fps.any() and (~fps).any()
    claims.loc[fps, "our_estimate"] += 3.0
    first_stat = claims.index[~fps][0]
    claims.loc[first_stat, "our_estimate"] += 0.01
    claims.to_csv(other / "paper_claims.csv", index=False)
    s = compare_studies(ours, other, "a slower CPU", save=True)["summary"]
    assert s["max_estimate_moved"] == pytest.approx(0.01)
    assert len(s["speed_claims"]) == fps.sum()
    assert all(c["fps_other"] == pytest.approx(c["fps"] + 3.0) for c in s["speed_claims"])
    line = render_block("other-numerics", "quick", ours)
    assert "moved by at most 0.010" in line and "measured on each machine" in line


def test_a_comparison_of_an_earlier_run_is_not_shown_as_current(two_runs):
    ours, other = two_runs
    compare_studies(ours, other, "the same run", save=True)
    assert stale_claims(ours) == [] and numerics_line(ours, "quick").startswith("Other numerics: the whole study")
    claims = pd.read_csv(ours / "paper_claims.csv")
    claims.loc[0, "our_estimate"] = float(claims.loc[0, "our_estimate"]) + 0.01  # the study was rerun since
    claims.to_csv(ours / "paper_claims.csv", index=False)
    assert stale_claims(ours) == [claims.loc[0, "claim"]]
    line = numerics_line(ours, "quick")
    assert "earlier run of this study" in line and "1 of 11 claims" in line and "identical verdicts" not in line
