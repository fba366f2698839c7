"""Training: settings resolved from a profile (:mod:`.settings`), frames and augmentation, losses, folds and
search, the one training unit (:mod:`.unit`), runs of every seed (:mod:`.runs`), reading a run back
(:mod:`.load`), learning curves, the epoch and numerics benchmarks. May import the ground floor, data, models and
evaluation's metrics; never deploy or study.
"""
