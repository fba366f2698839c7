"""The decision rules of the paper claims are pinned: margins 0.05, alpha 0.05, at least 2 seeds, the t seed level,
Holm within a claim, the FPS band 1.2x, the deployable-variant bound 0.02 and the 5% dropped frames, in the code
and in docs/statistics.md alike.

Why: a verdict is only worth something if the rule was fixed before the data were seen. Loosening a margin, dropping
Holm or swapping the seed level for a narrower one would turn an inconclusive claim into a decided one without a
single new measurement; only better data (more training seeds, more test frames or patients, a faster machine) may
decide a claim. Changing a rule is then a visible, deliberate edit of this test, of the code and of the docs
together, never a drift of one of them.
"""
from __future__ import annotations

import inspect
import re

import numpy as np

from endolib.config import repo_root
from endolib.evaluation import claims
from endolib.evaluation.bootstrap import CI_LEVEL, combine_seeds, seed_bootstrap
from endolib.evaluation.power import seeds_to_decide
from endolib.evaluation.study import Evaluation


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    nxt = text.find("\n## ", start + len(heading))
    return text[start:] if nxt < 0 else text[start:nxt]


def test_constants_of_the_rule():
    assert claims.MARGINS == {"auroc": 0.05, "dsc": 0.05, "iou": 0.05, "auprc": 0.05}
    assert claims.ALPHA == 0.05 and CI_LEVEL == 0.95
    assert claims.MIN_SEEDS == 2
    assert claims.TIMING_BAND == 0.2
    assert claims.DEPLOY_MAX_DSC_DROP == 0.02
    assert claims.KEEP_UP_MAX_DROP == 0.05
    assert claims.LOWER_IS_BETTER == ("fpr", "fnr")


def test_the_seed_level_is_t_by_default():
    for f in (seed_bootstrap, combine_seeds, Evaluation.__init__):
        assert inspect.signature(f).parameters["seed_level"].default == "t", f.__qualname__


def test_power_uses_the_verdicts_alpha():
    assert inspect.signature(seeds_to_decide).parameters["alpha"].default == claims.ALPHA
    assert inspect.signature(claims.judge_comparisons).parameters["alpha"].default == claims.ALPHA


def test_judge_comparisons_applies_holm():
    """4 of 200 resamples on the wrong side: p = 0.04, decided alone; in a family of three Holm asks for
    p < 0.05 / 3 for the smallest p-value, so unadjusted it would be decided but with Holm it is not."""
    d = np.r_[np.full(4, -0.01), np.full(196, 0.05)]
    assert claims.tail_pvalues(d, "above") == (0.04, 1.0)
    assert claims.judge_comparisons([d], ["above"], [0.0])["verdict"] == "reproduced"
    r = claims.judge_comparisons([d, d, d], ["above"] * 3, [0.0] * 3)
    assert r["verdict"] == "inconclusive" and r["n_reproduced"] == 0
    np.testing.assert_allclose(r["p_reproduced"], [0.12, 0.12, 0.12])


def test_docs_state_the_same_numbers():
    text = (repo_root() / "docs" / "statistics.md").read_text()
    rule = _section(text, "## Paper claims (`paper_claims.csv`): the decision rule")
    ci = _section(text, "## The 95% CI: a two-level bootstrap")
    names = {"auroc": "AUROC", "dsc": "DSC", "iou": "IoU", "auprc": "AUPRC"}
    margins = ", ".join(f"{names[m]} {v:g}" for m, v in claims.MARGINS.items())
    assert f"**Margins** (equivalence, on the 0-1 scale): {margins}." in rule
    assert margins == "AUROC 0.05, DSC 0.05, IoU 0.05, AUPRC 0.05"
    assert "95% CI of d above 0" in rule and "p < 0.05" in rule and "Holm's step-down within the claim's family" in rule
    assert f"fewer than {claims.MIN_SEEDS} training" in rule and "fewer than 2 training" in rule
    assert "at least 1.2x the paper's threshold" in rule and "threshold / 1.2" in rule
    assert f"{1 + claims.TIMING_BAND:g}" == "1.2"
    assert re.search(r"upper end of that 95% CI is <= 0\.02", rule) and f"{claims.DEPLOY_MAX_DSC_DROP:g}" == "0.02"
    assert "drops at most 5% of the frames" in rule and f"{claims.KEEP_UP_MAX_DROP:.0%}" == "5%"
    assert "T_b ~ t(K - 1)" in ci and '`seed_level="t"`, default' in ci
