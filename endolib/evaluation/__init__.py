"""Evaluation: metrics (:mod:`.metrics`), the bootstrap and its seed level (:mod:`.bootstrap`), pairwise tests
(:mod:`.pairwise`), test-set predictions (:mod:`.predictions`), Tables 3/4 and the two-stage analysis
(:mod:`.study`, :mod:`.tables`, :mod:`.two_stage`), the colour baseline, the paper-claims verdicts
(:mod:`.claims`) with their power columns (:mod:`.power`) and the qualitative and architecture figures. May import
the ground floor, data and models; it knows no training loop (never imports training, deploy or study).
"""
