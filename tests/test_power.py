"""The power columns of paper_claims.csv (endolib.evaluation.power): how many training seeds per model would decide
a claim with the spread measured, or how many times the test frames when no number of seeds would."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synthetic_runs import write_synthetic_runs

from endolib.config import study_paths
from endolib.evaluation.claims import CLAIM_COLUMNS, RULE, judge_comparisons, paper_claims
from endolib.evaluation.power import frames_to_decide, seed_level_draws, seeds_to_decide
from endolib.evaluation.study import Evaluation


def _frame(mean: float, se: float, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Frame-level draws of a difference: normal around ``mean`` with bootstrap SE ``se``."""
    return np.random.default_rng(seed).normal(mean, se, n_boot)


def _projected(frame, sds, k: int, seed: int = 0) -> np.ndarray:
    """The projected two-level distribution at k seeds, written out (the formula of the docstring)."""
    u = seed_level_draws(len(sds), frame.size, seed)
    return frame + (np.asarray(sds)[:, None] * stats.t.ppf(u, k - 1)).sum(0) / math.sqrt(k)


def test_a_large_seed_sd_needs_more_seeds():
    f = _frame(0.03, 0.005)
    small, note_small = seeds_to_decide(f, 0.03, [0.005, 0.005], "above", n_seeds=2)
    large, note_large = seeds_to_decide(f, 0.03, [0.04, 0.04], "above", n_seeds=2)
    assert isinstance(small, int) and isinstance(large, int) and 2 < small < large
    assert note_small == f"{small} seeds would reproduce it" and note_large == f"{large} seeds would reproduce it"


def test_seeds_needed_fall_as_the_seed_sd_shrinks():
    f = _frame(0.03, 0.005)
    ks = [seeds_to_decide(f, 0.03, [sd, sd], "above", n_seeds=2)[0] for sd in (0.08, 0.04, 0.02, 0.01, 0.005)]
    assert all(isinstance(k, int) for k in ks) and ks == sorted(ks, reverse=True) and ks[0] > ks[-1]


def test_the_answer_is_the_verdict_rule_at_that_many_seeds():
    """At the K it returns the claims rule (judge_comparisons) reproduces the projected distribution; at K - 1 not."""
    f, sds = _frame(0.03, 0.005), [0.02, 0.02]
    k, _ = seeds_to_decide(f, 0.03, sds, "above", n_seeds=2)
    assert judge_comparisons([_projected(f, sds, k)], ["above"], [0.0])["verdict"] == "reproduced"
    assert judge_comparisons([_projected(f, sds, k - 1)], ["above"], [0.0])["verdict"] == "inconclusive"
    # a negative difference: the same number of seeds contradicts the claim
    assert seeds_to_decide(-f, -0.03, sds, "above", n_seeds=2) == (k, f"{k} seeds would contradict it")


def test_a_difference_at_zero_is_decided_by_no_number_of_seeds():
    k, note = seeds_to_decide(_frame(0.0, 0.005), 0.0, [0.01, 0.01], "above", n_seeds=3)
    assert math.isnan(k) and note.startswith("no number of seeds or test frames")
    assert frames_to_decide(_frame(0.0, 0.005), 0.0, "above") == math.inf


def test_a_frame_level_ci_straddling_the_boundary_asks_for_more_test_frames():
    """Estimate 0.01 with frame-level SE 0.01: even with no seed level the 95% CI holds 0; the CI half-width
    1.96 SE shrinks as 1/sqrt(n), so about 1.96^2 = 3.8x the frames put 0 outside."""
    f = _frame(0.01, 0.01)
    k, note = seeds_to_decide(f, 0.01, [0.001, 0.001], "above", n_seeds=3)
    factor = frames_to_decide(f, 0.01, "above")
    assert math.isnan(k) and factor == pytest.approx(1.96 ** 2, rel=0.05)
    assert note.startswith("no number of seeds: the frame-level CI alone straddles 0; about ")
    assert note.endswith("x the test frames would decide it")
    assert frames_to_decide(_frame(0.03, 0.005), 0.03, "above") == 1.0  # decided by the frames as they are


def test_equivalence_claims():
    f = _frame(0.0, 0.005)
    k, note = seeds_to_decide(f, 0.0, [0.01, 0.01], "equivalent", 0.05, n_seeds=2)
    assert isinstance(k, int) and note == f"{k} seeds would reproduce it"
    k, note = seeds_to_decide(f + 0.08, 0.08, [0.01, 0.01], "equivalent", 0.05, n_seeds=2)
    assert isinstance(k, int) and note == f"{k} seeds would contradict it"
    k, note = seeds_to_decide(f + 0.05, 0.05, [0.01, 0.01], "equivalent", 0.05, n_seeds=2)  # on the margin
    assert math.isnan(k) and "boundary 0.05" in note


def test_decided_claims_report_their_seeds_or_fewer():
    f = _frame(0.03, 0.005)
    assert seeds_to_decide(f, 0.03, [0.01, 0.01], "above", n_seeds=3, decided=True) == (3, "decided now with 3 seeds")
    k, note = seeds_to_decide(f, 0.03, [0.01, 0.01], "above", n_seeds=8, decided=True)
    assert k < 8 and note == f"decided now with 8 seeds; {k} would already decide it"


def test_holm_worst_case_asks_for_more_seeds():
    f = _frame(0.03, 0.005)
    one, _ = seeds_to_decide(f, 0.03, [0.02, 0.02], "above", n_seeds=2)
    family, note = seeds_to_decide(f, 0.03, [0.02, 0.02], "above", n_comparisons=108, n_seeds=2)
    assert family > one and note.endswith("(Holm's worst case, alpha 0.05/108)")


def test_deterministic_and_independent_of_the_search_range():
    f, args = _frame(0.03, 0.005), (0.03, [0.02, 0.03], "above")
    first = seeds_to_decide(f, *args, n_seeds=3)
    assert seeds_to_decide(f, *args, n_seeds=3) == first
    assert seeds_to_decide(f, *args, n_seeds=3, k_max=first[0]) == first
    k, note = seeds_to_decide(f, *args, n_seeds=3, k_max=first[0] - 1)
    assert math.isnan(k) and note.startswith(f"more than {first[0] - 1} seeds")


def test_unknown_seed_sd_or_undefined_comparison_gives_nan():
    f = _frame(0.03, 0.005)
    assert math.isnan(seeds_to_decide(f, 0.03, [np.nan, 0.01], "above", n_seeds=1)[0])
    k, note = seeds_to_decide(np.full(100, np.nan), np.nan, [0.01, 0.01], "above", n_seeds=3)
    assert math.isnan(k) and "undefined" in note


@pytest.mark.parametrize("quality", [{"segformer_b0": 0.5, "segformer_b1": 0.12},  # far apart: decided
                                     {"segformer_b0": 0.3, "segformer_b1": 0.29}])  # close: left open
def test_paper_claims_have_consistent_power_columns(quality, tmp_path, make_tiny_dataset, monkeypatch):
    """Synthetic runs of the smoke profile's two seeds (as in tests/test_evaluate.py), with SegFormer-B0 far above
    SegFormer-B1 or close to it."""
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    data = make_tiny_dataset(n_patients=5, n_test=4, frames=8, height=24, width=32)
    segmenters = ["unet", "segformer_b0", "segformer_b1"]
    write_synthetic_runs(tmp_path, "smoke", data, ["resnet18"], segmenters, seed=4, quality=quality, seed_sd=0.01)
    ev = Evaluation("smoke", data_dir=data, classifiers=["resnet18"], segmenters=segmenters, root=tmp_path,
                    progress=False, n_boot=300)
    t = paper_claims(ev)
    saved = pd.read_csv(study_paths("smoke", data, root=tmp_path).results / "paper_claims.csv")
    assert list(saved.columns) == CLAIM_COLUMNS
    i = CLAIM_COLUMNS.index("n_seeds")
    assert CLAIM_COLUMNS[i + 1:i + 3] == ["seeds_to_decide", "power_note"]
    assert t["power_note"].map(lambda s: isinstance(s, str) and len(s) > 0).all()
    k = pd.to_numeric(t["seeds_to_decide"])
    assert (k.dropna() == k.dropna().round()).all() and (k.dropna() >= 2).all()
    stat = t["rule"].isin([RULE["above"], RULE["equivalent"]]) & t["our_estimate"].notna()
    decided = t["verdict"] != "inconclusive"
    assert (k[stat & decided] <= t.loc[stat & decided, "n_seeds"]).all()
    assert t.loc[stat & decided, "power_note"].str.startswith("decided now with 2 seeds").all()
    open_ = stat & ~decided
    assert (k[open_ & k.notna()] > t.loc[open_ & k.notna(), "n_seeds"]).all()
    assert t.loc[open_ & k.isna(), "power_note"].str.startswith(("no number", "more than")).all()
    b0_b1 = t.set_index("claim").loc["SegFormer-B0 above SegFormer-B1 on DSC and IoU"]
    if quality["segformer_b1"] < 0.2:
        assert b0_b1["verdict"] == "reproduced" and b0_b1["seeds_to_decide"] == 2
    else:
        assert b0_b1["verdict"] == "inconclusive" and not b0_b1["seeds_to_decide"] <= 2
    timing = t[t["rule"] == RULE["timing"]]
    assert len(timing) == 3 and timing["seeds_to_decide"].isna().all()
    assert (timing["power_note"] == "measured speed, no seeds involved").all()
    assert t.set_index("claim").loc["ResNet-18 and ResNet-34 AUROC not different", "power_note"] == "not evaluated"
    again = paper_claims(ev, save=False)
    assert again[["seeds_to_decide", "power_note"]].equals(t[["seeds_to_decide", "power_note"]])
