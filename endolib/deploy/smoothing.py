"""Temporal smoothing of the video pipeline: hysteresis on the gate probability and an exponential moving
average of the segmenter's probabilities, reset when the gate closes (:class:`Smoothing`, parsed from the
command line by :func:`parse_smooth` / :func:`parse_hysteresis`). The paper names temporal context as future work;
this is its simplest useful form:

* **EMA** of the segmenter's probability maps: ``s_t = alpha * p_t + (1 - alpha) * s_{t-1}`` with ``s`` reset
  to ``p_t`` on the first frame after the gate (re)opens, so a re-opened gate does not fade in from zero.
  ``alpha = 1`` is no smoothing; smaller ``alpha`` smooths more (and lags more).
* **Hysteresis** on the gate decision: a closed gate opens when the classifier probability reaches ``high``,
  an open gate closes when it falls below ``low``. The gate starts closed. Without hysteresis the gate is open
  iff ``p >= gate``.

Example:
    >>> import numpy as np
    >>> hysteresis_gate([0.3, 0.7, 0.5, 0.35, 0.5], low=0.4, high=0.6).tolist()
    [False, True, True, False, False]
    >>> ema_filter(np.array([0.0, 1.0, 1.0]), alpha=0.5).tolist()
    [0.0, 0.5, 0.75]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["EMA_ALPHA", "HYSTERESIS", "Smoothing", "parse_smooth", "parse_hysteresis", "Hysteresis", "EMA",
           "hysteresis_gate", "ema_filter", "smoothing_settings"]


#: Default EMA weight of the newest probability map (``--smooth ema:0.6``).
EMA_ALPHA = 0.6
#: Default gate hysteresis thresholds (low, high) (``--hysteresis 0.4,0.6``).
HYSTERESIS = (0.4, 0.6)


# ------------------------------------------------------------------------------------------------ smoothing
def _check_prob(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


@dataclass(frozen=True)
class Smoothing:
    """How the pipeline decides over time.

    Args:
        gate: classifier threshold without hysteresis (gate open iff ``p >= gate``).
        ema_alpha: EMA weight of the newest probability map in (0, 1] (None = no EMA).
        hysteresis: ``(low, high)`` gate thresholds (None = the plain ``gate`` threshold).

    Example:
        >>> Smoothing(ema_alpha=0.6, hysteresis=(0.4, 0.6)).label
        'ema 0.6 + hysteresis 0.4-0.6'
    """

    gate: float = 0.5
    ema_alpha: float | None = None
    hysteresis: tuple[float, float] | None = None

    def __post_init__(self):
        _check_prob("gate", self.gate)
        if self.ema_alpha is not None and not 0.0 < float(self.ema_alpha) <= 1.0:
            raise ValueError(f"EMA alpha must be in (0, 1], got {self.ema_alpha}")
        if self.hysteresis is not None:
            low, high = (_check_prob("hysteresis low", self.hysteresis[0]),
                         _check_prob("hysteresis high", self.hysteresis[1]))
            if low > high:
                raise ValueError(f"hysteresis needs low <= high, got low={low}, high={high}")
            object.__setattr__(self, "hysteresis", (low, high))

    @property
    def label(self) -> str:
        parts = []
        if self.ema_alpha is not None:
            parts.append(f"ema {self.ema_alpha:g}")
        if self.hysteresis is not None:
            parts.append(f"hysteresis {self.hysteresis[0]:g}-{self.hysteresis[1]:g}")
        return " + ".join(parts) or f"none (gate {self.gate:g})"


def parse_smooth(text: str | None) -> float | None:
    """Parse ``--smooth``: ``"none"`` -> None, ``"ema:0.6"`` (or ``"ema"`` = :data:`EMA_ALPHA`) -> 0.6.

    Example:
        >>> parse_smooth("ema:0.3"), parse_smooth("none")
        (0.3, None)
    """
    if text is None or text.strip().lower() in ("", "none", "off"):
        return None
    kind, _, value = text.strip().lower().partition(":")
    if kind != "ema":
        raise ValueError(f"--smooth must be 'none' or 'ema:ALPHA' (e.g. ema:{EMA_ALPHA}), got {text!r}")
    try:
        alpha = float(value) if value else EMA_ALPHA
    except ValueError:
        raise ValueError(f"--smooth ema:ALPHA needs a number, got {text!r}") from None
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"EMA alpha must be in (0, 1], got {alpha}")
    return alpha


def parse_hysteresis(text: str | None) -> tuple[float, float] | None:
    """Parse ``--hysteresis LOW,HIGH`` (``"none"`` -> None).

    Example:
        >>> parse_hysteresis("0.4,0.6")
        (0.4, 0.6)
    """
    if text is None or text.strip().lower() in ("", "none", "off"):
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--hysteresis must be LOW,HIGH (e.g. 0.4,0.6), got {text!r}") from None
    return Smoothing(hysteresis=(low, high)).hysteresis


class Hysteresis:
    """Gate decision with hysteresis: a closed gate opens at ``p >= high``, an open gate closes at ``p < low``.

    Args:
        low, high: thresholds, ``0 <= low <= high <= 1``; ``low == high`` is a plain threshold.
        is_open: initial state (closed).

    Example:
        >>> h = Hysteresis(0.4, 0.6); [h.update(p) for p in (0.5, 0.6, 0.45, 0.39)]
        [False, True, True, False]
    """

    def __init__(self, low: float, high: float, is_open: bool = False):
        self.low, self.high = Smoothing(hysteresis=(low, high)).hysteresis
        self.is_open = bool(is_open)

    def update(self, prob: float) -> bool:
        if self.is_open:
            self.is_open = prob >= self.low
        else:
            self.is_open = prob >= self.high
        return self.is_open


class EMA:
    """Exponential moving average ``s_t = alpha * x_t + (1 - alpha) * s_{t-1}``; ``s`` starts at the first
    value after construction or :meth:`reset`.

    Example:
        >>> e = EMA(0.5); [float(e.update(np.float32(v))) for v in (1, 0, 0)]
        [1.0, 0.5, 0.25]
    """

    def __init__(self, alpha: float):
        if not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"EMA alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.state: np.ndarray | None = None

    def reset(self) -> None:
        self.state = None

    def update(self, value: np.ndarray) -> np.ndarray:
        value = np.asarray(value, dtype=np.float32)
        if self.state is None or self.state.shape != value.shape:
            self.state = value.copy()
        else:
            self.state = self.alpha * value + (1.0 - self.alpha) * self.state
        return self.state


def hysteresis_gate(probs: Sequence[float], low: float, high: float) -> np.ndarray:
    """Gate decisions of a probability sequence under hysteresis (see :class:`Hysteresis`).

    Example:
        >>> hysteresis_gate([0.7, 0.5, 0.3, 0.5, 0.6], 0.4, 0.6).tolist()
        [True, True, False, False, True]
    """
    h = Hysteresis(low, high)
    return np.array([h.update(float(p)) for p in probs], dtype=bool)


def ema_filter(values: np.ndarray, alpha: float, reset: Sequence[bool] | None = None) -> np.ndarray:
    """EMA along axis 0 of ``values`` (frames first); ``reset[t]`` restarts the average at frame ``t``.

    Example:
        >>> ema_filter(np.array([1.0, 0.0, 0.0, 1.0]), 0.5, reset=[False, False, False, True]).tolist()
        [1.0, 0.5, 0.25, 1.0]
    """
    values = np.asarray(values, dtype=np.float32)
    e, out = EMA(alpha), np.empty_like(values)
    for t in range(len(values)):
        if reset is not None and reset[t]:
            e.reset()
        out[t] = e.update(values[t])
    return out


def smoothing_settings(gate: float = 0.5, ema_alpha: float = EMA_ALPHA,
                       hysteresis: tuple[float, float] = HYSTERESIS) -> dict[str, Smoothing]:
    """The six settings notebook 07 and ``make figures`` compare, from no gate to gate + EMA + hysteresis.

    Example:
        >>> list(smoothing_settings())[-1], smoothing_settings()["gate + ema"].label
        ('gate + ema + hysteresis', 'ema 0.6')
    """
    return {"no gate": Smoothing(gate=0.0), "no gate + ema": Smoothing(gate=0.0, ema_alpha=ema_alpha),
            "gate": Smoothing(gate=gate), "gate + ema": Smoothing(gate=gate, ema_alpha=ema_alpha),
            "gate + hysteresis": Smoothing(gate=gate, hysteresis=hysteresis),
            "gate + ema + hysteresis": Smoothing(gate=gate, ema_alpha=ema_alpha, hysteresis=hysteresis)}
