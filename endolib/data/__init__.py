"""Data: everything about frames and masks before a model sees them. The prepared dataset (:mod:`.dataset`),
the importers of LabelMe, image/mask folders and videos with their readers, grouping and split
(:mod:`.readers`, :mod:`.importers`, :mod:`.groups`, :mod:`.prepare`), the synthetic BESS phantom and its
renderer (:mod:`.phantom`, :mod:`.phantom_render`) and the one video reader/writer (:mod:`.video_io`).
May import the ground floor only (config, paper, repro, device, plotting).
"""
