"""An event-time window of float observations with incremental count, exact mean, quantile and max.

:class:`TimeWindowSample` keeps the observations whose ``ts_ms`` is after a cutoff the caller moves
forward (:meth:`TimeWindowSample.expire`). Reads cost O(1) (the exact mean: one big-integer
division), whatever the window holds; an insert or an eviction costs O(log n) comparisons plus a
``memmove`` of the sorted values (microseconds for 10^5 observations).

* Values are kept sorted, so the nearest-rank quantile (:func:`nearest_rank_index`) and the maximum
  are one index away.
* The sum is kept exactly, as an integer count of 2**-1074 (the smallest subnormal double: every
  finite float is a whole multiple of it). It never drifts however many observations come and go,
  does not depend on their order, and the mean is the correctly rounded quotient ``sum / n``. (A
  one-shot ``numpy.mean`` of the same values rounds its pairwise partial sums, so the two can differ
  in the last bit or two; a running float sum would drift with every eviction instead.)
* The state is canonical: the same observations inside the window give equal attributes, whatever
  order they came in (the time heap may differ in layout only between equal entries), so a window
  rebuilt from a checkpoint is equal to the original.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable

_SCALE_BITS = 1074  # sum kept in units of 2**-1074


def nearest_rank_index(n: int, q: float) -> int:
    """1-based rank of the nearest-rank ``q`` quantile of ``n`` sorted values: ``ceil(q * n)``,
    computed after rounding ``q * n`` to 9 decimals (0.95 * 20 is 19, not 19.000000000000004),
    clamped to ``1..n``.

    >>> nearest_rank_index(20, 0.95), nearest_rank_index(1, 0.95), nearest_rank_index(21, 0.95)
    (19, 1, 20)
    """
    if n < 1:
        raise ValueError("need at least one value")
    return min(n, max(1, math.ceil(round(q * n, 9))))


def _fixed(x: float) -> int:
    """``x`` as an exact integer count of 2**-1074 (``x`` finite)."""
    num, den = x.as_integer_ratio()  # den is a power of two, at most 2**1074
    return num << (_SCALE_BITS + 1 - den.bit_length())


class TimeWindowSample:
    """Finite float observations with event times; the window is every observation after the cutoff.

    >>> w = TimeWindowSample()
    >>> for ts, v in [(1, 3.0), (2, 1.0), (3, 2.0)]:
    ...     w.add(ts, v)
    >>> w.count, w.mean(), w.quantile(0.5), w.max()
    (3, 2.0, 2.0, 3.0)
    >>> w.expire(1)  # drops ts <= 1
    >>> w.count, w.mean(), w.max()
    (2, 1.5, 2.0)
    """

    def __init__(self, observations: Iterable[tuple[int, float]] = ()) -> None:
        self._by_time: list[tuple[int, float]] = [(int(ts), float(v)) for ts, v in observations]
        heapq.heapify(self._by_time)
        self._sorted: list[float] = sorted(v for _, v in self._by_time)
        self._sum_fixed = sum(_fixed(v) for v in self._sorted)

    @property
    def count(self) -> int:
        """Number of observations in the window."""
        return len(self._sorted)

    def add(self, ts_ms: int, value: float) -> None:
        """Add one observation (``value`` finite; NaN would break the ordering)."""
        heapq.heappush(self._by_time, (ts_ms, value))
        bisect.insort(self._sorted, value)
        self._sum_fixed += _fixed(value)

    def expire(self, cutoff_ms: int) -> None:
        """Drop every observation with ``ts_ms <= cutoff_ms``."""
        by_time, ordered = self._by_time, self._sorted
        while by_time and by_time[0][0] <= cutoff_ms:
            _, value = heapq.heappop(by_time)
            del ordered[bisect.bisect_left(ordered, value)]
            self._sum_fixed -= _fixed(value)

    def mean(self) -> float:
        """Correctly rounded mean of the window (NaN when empty)."""
        n = len(self._sorted)
        return self._sum_fixed / (n << _SCALE_BITS) if n else math.nan

    def quantile(self, q: float) -> float:
        """Nearest-rank ``q`` quantile (:func:`nearest_rank_index`; NaN when empty)."""
        n = len(self._sorted)
        return self._sorted[nearest_rank_index(n, q) - 1] if n else math.nan

    def max(self) -> float:
        """Largest value in the window (NaN when empty)."""
        return self._sorted[-1] if self._sorted else math.nan

    def observations(self) -> list[tuple[int, float]]:
        """``(ts_ms, value)`` of the window in heap order (rebuilding from them gives an equal
        window)."""
        return list(self._by_time)
