"""Unsupervised base detectors over flat feature dicts (pure, River-shaped).

Two interchangeable detectors score a ``dict[str, float]`` in ``[0, 1]`` (higher =
more anomalous):

* :class:`RobustZScorer` — an ensemble of per-feature robust z-scores. Each feature
  keeps an exponentially weighted location and mean absolute deviation, updated
  with *winsorised* values (clipped at ``clip_k`` scales) so one outlier cannot drag
  the baseline. The ensemble takes the largest absolute z over features and maps it
  to ``z² / (z² + z_half²)``: ``score = 0.5`` at ``z_half`` robust sigmas.
* :class:`HalfSpaceTreesScorer` — River's ``HalfSpaceTrees`` behind a River
  ``MinMaxScaler`` (values clipped to ``[0, 1]``).

The tick and portfolio detectors default to :class:`RobustZScorer`: on the fixed-seed
incident benchmark in ``tests/unit/anomaly/test_detection.py`` it detects every
incident kind at a low false-positive rate, while Half-Space Trees misses single
bad ticks (mass-based scores saturate for rare-but-extreme values in a few
dimensions). Both are measured by that test and printed with ``pytest -s``.

Memory is bounded by the number of distinct feature names (fixed per stream).
"""

from __future__ import annotations

import math
from typing import Protocol

from river import anomaly, preprocessing

# Mean absolute deviation of a Gaussian is sigma * sqrt(2 / pi); this converts back.
_MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)


class Detector(Protocol):
    """What the tick and portfolio scorers need from a base detector."""

    def score_one(self, x: dict[str, float]) -> float: ...

    def learn_one(self, x: dict[str, float]) -> None: ...


def z_to_score(z: float, z_half: float) -> float:
    """Map an absolute z to ``[0, 1)``: 0 at 0, 0.5 at ``z_half``, towards 1 for large z.

    >>> z_to_score(0.0, 5.0), z_to_score(5.0, 5.0), round(z_to_score(15.0, 5.0), 2)
    (0.0, 0.5, 0.9)
    """
    if not math.isfinite(z):
        return 1.0
    z2 = z * z
    return z2 / (z2 + z_half * z_half)


class RobustZScorer:
    """Max-of-features robust z-score ensemble with winsorised EWMA baselines.

    Args:
        alpha: EWMA weight of a new sample once ``1 / n`` falls below it.
        z_half: robust sigmas at which the score is 0.5.
        clip_k: winsorisation bound for updates, in robust sigmas.
        min_n: samples a feature needs before it contributes to the score.
        rel_floor: lower bound of a scale, relative to ``|location|`` (constant feeds).
        abs_floor: absolute lower bound of a scale.

    >>> d = RobustZScorer()
    >>> d.score_one({"x": 1.0})
    0.0
    >>> for i in range(100):
    ...     d.learn_one({"x": float(i % 5)})
    >>> d.score_one({"x": 2.0}) < 0.1 < 0.9 < d.score_one({"x": 50.0})
    True
    """

    def __init__(
        self,
        *,
        alpha: float = 0.01,
        z_half: float = 5.0,
        clip_k: float = 3.0,
        min_n: int = 5,
        rel_floor: float = 1e-3,
        abs_floor: float = 1e-9,
    ) -> None:
        self.alpha = alpha
        self.z_half = z_half
        self.clip_k = clip_k
        self.min_n = min_n
        self.rel_floor = rel_floor
        self.abs_floor = abs_floor
        self._loc: dict[str, float] = {}
        self._mad: dict[str, float] = {}
        self._n: dict[str, int] = {}

    def _scale(self, name: str) -> float:
        loc = self._loc[name]
        return max(self._mad[name] * _MAD_TO_SIGMA, self.rel_floor * abs(loc), self.abs_floor)

    def zscores(self, x: dict[str, float]) -> dict[str, float]:
        """Absolute robust z of every feature that has enough history."""
        out: dict[str, float] = {}
        for name, value in x.items():
            if self._n.get(name, 0) < self.min_n:
                continue
            out[name] = abs(value - self._loc[name]) / self._scale(name)
        return out

    def score_one(self, x: dict[str, float]) -> float:
        zs = self.zscores(x)
        return z_to_score(max(zs.values()), self.z_half) if zs else 0.0

    def learn_one(self, x: dict[str, float]) -> None:
        for name, value in x.items():
            if not math.isfinite(value):
                continue
            n = self._n.get(name, 0)
            if n == 0:
                self._loc[name] = value
                self._mad[name] = 0.0
                self._n[name] = 1
                continue
            loc = self._loc[name]
            if n >= self.min_n:
                bound = self.clip_k * self._scale(name)
                value = min(max(value, loc - bound), loc + bound)
            w = max(self.alpha, 1.0 / (n + 1))
            self._loc[name] = loc + w * (value - loc)
            self._mad[name] += w * (abs(value - loc) - self._mad[name])
            self._n[name] = n + 1


class HalfSpaceTreesScorer:
    """River ``HalfSpaceTrees`` behind a River ``MinMaxScaler`` (clipped to ``[0, 1]``).

    The feature set must be the same on every call (the trees are built from the
    first sample's keys). Scores are 0 until the first window (``window_size``
    samples) has been learned.
    """

    def __init__(self, *, seed: int = 0, n_trees: int = 10, height: int = 8, window_size: int = 250) -> None:
        self.scaler = preprocessing.MinMaxScaler()
        self.hst = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size, seed=seed)

    def _scaled(self, x: dict[str, float]) -> dict[str, float]:
        return {k: min(max(v, 0.0), 1.0) for k, v in self.scaler.transform_one(x).items()}

    def score_one(self, x: dict[str, float]) -> float:
        if not x:
            return 0.0
        return float(self.hst.score_one(self._scaled(x)))

    def learn_one(self, x: dict[str, float]) -> None:
        if not x:
            return
        self.scaler.learn_one(x)
        self.hst.learn_one(self._scaled(x))


def make_detector(method: str, *, seed: int, **params: float) -> Detector:
    """Build a base detector by name: ``"robust_z"`` (default) or ``"hst"``."""
    if method == "robust_z":
        return RobustZScorer(**params)  # type: ignore[arg-type]
    if method == "hst":
        return HalfSpaceTreesScorer(seed=seed)
    raise ValueError(f"unknown detector method {method!r}; expected 'robust_z' or 'hst'")
