"""The paper's published numbers (Rhee et al.), as data, for side-by-side comparisons with our results.

Source: the paper's Tables 1, 3, 4 and 5; every value is as printed (two decimals),
95% CIs as ``(value, lo, hi)``. These are numbers about the authors' *clinical* data set; our results come
from the synthetic phantom and must always be labelled as such beside them.

Example:
    >>> TABLE3["resnet18"]["auroc"]
    (0.92, 0.91, 0.93)
    >>> TABLE5["unet"]["latency_ms"], DISPLAY_NAMES["ar2unet"]
    (27.0, 'AR2U-Net')
    >>> table("table4").loc[lambda d: d.model == "ar2unet", "auprc"].item()
    0.88
"""
from __future__ import annotations

__all__ = ["DISPLAY_NAMES", "TABLE1", "TABLE3", "TABLE4", "TABLE5", "TABLE3_METRICS", "TABLE4_METRICS",
           "TABLE5_COLUMNS", "PAIRWISE_CLAIMS", "table"]

#: registry name -> the label the paper uses
DISPLAY_NAMES = {
    "resnet18": "ResNet-18", "resnet34": "ResNet-34", "mobilenetv3_large": "MobileNetV3-L",
    "unet": "U-Net", "resunet": "ResU-Net", "r2unet": "R2U-Net", "aunet": "AU-Net", "aresunet": "AResU-Net",
    "ar2unet": "AR2U-Net", "segformer_b0": "SegFormer-B0", "segformer_b1": "SegFormer-B1",
}

#: Table 1 (data): per split
TABLE1 = {
    "train": {"patients": 22, "operations": 22, "images": 4661, "images_with_tissue": 2307,
              "age_mean": 65.4, "age_sd": 10.7, "male": 9, "female": 13},
    "test": {"patients": 6, "operations": 7, "images": 1749, "images_with_tissue": 635,
             "age_mean": 63.8, "age_sd": 14.1, "male": 3, "female": 3},
}

TABLE3_METRICS = ("auroc", "accuracy", "sensitivity", "specificity", "precision", "f1", "fpr", "fnr", "npv")
TABLE4_METRICS = ("dsc", "iou", "accuracy", "sensitivity", "specificity", "precision", "fpr", "fnr", "auprc")
TABLE5_COLUMNS = ("params_m", "gflops", "latency_ms", "fps")


def _rows(metrics, values):
    return {m: dict(zip(metrics, v)) for m, v in values.items()}


#: Table 3, classifiers on the test set: model -> metric -> (value, lo, hi) at threshold 0.5
TABLE3 = _rows(TABLE3_METRICS, {
    "resnet18": [(0.92, 0.91, 0.93), (0.84, 0.82, 0.86), (0.81, 0.78, 0.84), (0.86, 0.84, 0.88), (0.82, 0.79, 0.85),
                 (0.81, 0.79, 0.83), (0.14, 0.12, 0.16), (0.19, 0.16, 0.22), (0.86, 0.83, 0.88)],
    "resnet34": [(0.92, 0.91, 0.93), (0.83, 0.82, 0.85), (0.77, 0.74, 0.80), (0.88, 0.86, 0.90), (0.83, 0.81, 0.86),
                 (0.80, 0.78, 0.82), (0.12, 0.10, 0.14), (0.23, 0.20, 0.26), (0.83, 0.81, 0.86)],
    "mobilenetv3_large": [(0.81, 0.79, 0.83), (0.74, 0.72, 0.76), (0.73, 0.69, 0.76), (0.76, 0.73, 0.78),
                          (0.70, 0.67, 0.73), (0.71, 0.69, 0.74), (0.24, 0.22, 0.27), (0.27, 0.24, 0.31),
                          (0.78, 0.76, 0.81)],
})

#: Table 4, segmenters on the test frames with neural tissue: model -> metric -> (value, lo, hi)
TABLE4 = _rows(TABLE4_METRICS, {
    "unet": [(0.79, 0.78, 0.81), (0.69, 0.67, 0.70), (0.94, 0.93, 0.94), (0.84, 0.82, 0.85), (0.95, 0.95, 0.96),
             (0.80, 0.78, 0.81), (0.05, 0.04, 0.05), (0.17, 0.15, 0.18), (0.86, 0.85, 0.87)],
    "resunet": [(0.80, 0.78, 0.81), (0.69, 0.68, 0.71), (0.94, 0.94, 0.94), (0.84, 0.82, 0.85), (0.96, 0.95, 0.96),
                (0.80, 0.79, 0.82), (0.04, 0.04, 0.05), (0.17, 0.15, 0.19), (0.87, 0.85, 0.88)],
    "r2unet": [(0.80, 0.78, 0.81), (0.69, 0.68, 0.71), (0.94, 0.93, 0.94), (0.83, 0.82, 0.85), (0.96, 0.95, 0.96),
               (0.81, 0.79, 0.82), (0.04, 0.04, 0.05), (0.17, 0.15, 0.19), (0.87, 0.85, 0.88)],
    "aunet": [(0.79, 0.78, 0.81), (0.69, 0.67, 0.70), (0.94, 0.93, 0.94), (0.84, 0.82, 0.85), (0.95, 0.95, 0.96),
              (0.80, 0.78, 0.81), (0.05, 0.04, 0.05), (0.17, 0.15, 0.18), (0.86, 0.85, 0.87)],
    "aresunet": [(0.79, 0.77, 0.80), (0.68, 0.66, 0.70), (0.94, 0.93, 0.94), (0.83, 0.81, 0.85), (0.95, 0.95, 0.96),
                 (0.79, 0.78, 0.81), (0.05, 0.04, 0.05), (0.17, 0.16, 0.19), (0.86, 0.85, 0.87)],
    "ar2unet": [(0.80, 0.78, 0.81), (0.70, 0.68, 0.72), (0.94, 0.94, 0.94), (0.84, 0.82, 0.85), (0.96, 0.95, 0.96),
                (0.81, 0.80, 0.83), (0.04, 0.04, 0.05), (0.17, 0.15, 0.19), (0.88, 0.87, 0.89)],
    "segformer_b0": [(0.72, 0.71, 0.74), (0.61, 0.60, 0.63), (0.92, 0.92, 0.93), (0.72, 0.71, 0.74),
                     (0.96, 0.96, 0.96), (0.78, 0.76, 0.80), (0.04, 0.04, 0.04), (0.28, 0.26, 0.30),
                     (0.84, 0.82, 0.86)],
    "segformer_b1": [(0.70, 0.68, 0.72), (0.59, 0.57, 0.61), (0.92, 0.92, 0.93), (0.70, 0.68, 0.72),
                     (0.96, 0.95, 0.96), (0.78, 0.76, 0.80), (0.04, 0.04, 0.05), (0.31, 0.29, 0.33),
                     (0.84, 0.82, 0.85)],
})

#: Table 5, computational load on the authors' RTX 4090 / i9-14900KF: trainable parameters (millions),
#: FLOPs (billions; a multiply-add counts as two operations), inference time per frame (ms), frame rate (FPS)
TABLE5 = {m: dict(zip(TABLE5_COLUMNS, v)) for m, v in {
    "resnet18": (11.2, 3.6, 1.2, 830.0), "resnet34": (21.3, 7.3, 1.6, 610.0),
    "mobilenetv3_large": (4.2, 0.4, 2.1, 470.0),
    "unet": (3.3, 46.6, 27.0, 37.0), "resunet": (3.7, 50.7, 35.0, 29.0), "r2unet": (6.4, 59.1, 43.0, 23.0),
    "aunet": (2.0, 22.5, 25.0, 40.0), "aresunet": (2.5, 28.1, 33.0, 30.0), "ar2unet": (2.7, 45.7, 41.0, 24.0),
    "segformer_b0": (3.7, 2.7, 14.0, 72.0), "segformer_b1": (13.7, 5.2, 15.0, 67.0),
}.items()}

#: the paper's reported model comparisons (text of the Results section), for reference next to ours
PAIRWISE_CLAIMS = (
    {"task": "cls", "metric": "auroc", "model_a": "resnet18", "model_b": "resnet34", "p": 0.80,
     "claim": "no significant difference (none of the other metrics either)"},
    {"task": "cls", "metric": "all", "model_a": "mobilenetv3_large", "model_b": "resnet18/resnet34",
     "p": "<0.001", "claim": "MobileNetV3-L worse than both ResNets on every metric"},
    {"task": "seg", "metric": "auprc", "model_a": "ar2unet", "model_b": "other U-Nets", "p": "<0.001",
     "claim": "AR2U-Net AUPRC higher than every other U-Net variant; DSC/IoU differences not significant"},
    {"task": "seg", "metric": "dsc, iou", "model_a": "segformer_b0", "model_b": "segformer_b1", "p": 0.001,
     "claim": "SegFormer-B0 higher DSC and IoU than B1"},
    {"task": "seg", "metric": "auprc", "model_a": "segformer_b0", "model_b": "segformer_b1", "p": 0.55,
     "claim": "no significant AUPRC difference between the SegFormers"},
    {"task": "seg", "metric": "all", "model_a": "segformer_b0/b1", "model_b": "every U-Net", "p": "<0.001",
     "claim": "every SegFormer worse than every U-Net on every metric"},
)


def table(name: str):
    """One of the paper's tables as a DataFrame (``model`` column, ``<metric>``, ``<metric>_lo``, ``<metric>_hi``).

    Args:
        name: ``"table3"``, ``"table4"`` or ``"table5"``.

    Example:
        >>> list(table("table5").columns)
        ['model', 'params_m', 'gflops', 'latency_ms', 'fps']
    """
    import pandas as pd

    if name == "table5":
        return pd.DataFrame([{"model": m, **v} for m, v in TABLE5.items()])
    source = {"table3": TABLE3, "table4": TABLE4}.get(name)
    if source is None:
        raise ValueError(f"unknown paper table {name!r}; valid: table3, table4, table5")
    rows = []
    for model, metrics in source.items():
        row = {"model": model}
        for metric, (value, lo, hi) in metrics.items():
            row.update({metric: value, f"{metric}_lo": lo, f"{metric}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)
