"""The study on top: the notebook plan and the runner (:mod:`.plan`, :mod:`.runner`), Dask scale-out
(:mod:`.distributed`), incremental rebuild and provenance (:mod:`.incremental`, :mod:`.provenance`), figure
re-rendering (:mod:`.render`), the website (:mod:`.site`), the model and data cards (:mod:`.cards`), notebook
stripping (:mod:`.strip`) and the comparison of two runs of the study (:mod:`.compare`). May import every package; nothing imports it except :mod:`endolib.__main__`.
"""
