"""Deployment: Table 5 (:mod:`.compute`, :mod:`.timing`, :mod:`.fast_cpu`), reduced precision
(:mod:`.precision`), the one inference-stage layer (:mod:`.stages`, :mod:`.preprocess`, :mod:`.onnx_export`),
the threaded real-time runtime and its benchmark (:mod:`.realtime`, :mod:`.realtime_bench`), smoothing, the video
tool and its demo (:mod:`.video`, :mod:`.demo`, :mod:`.backends`). May import everything below it (ground floor,
data, models, evaluation, training); never study.
"""
