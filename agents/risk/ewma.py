"""RiskMetrics EWMA covariance of log returns, updated once per bar.

``S_t = lambda * S_{t-1} + (1 - lambda) * r_t r_t^T`` with ``S_0 = 0`` and the
zero-mean RiskMetrics assumption. Because ``S_0 = 0`` biases early estimates
down, :meth:`EwmaCovariance.covariance` returns the bias-corrected
``S_t / (1 - lambda^t)`` (identical to plain RiskMetrics once ``lambda^t`` ~ 0).
Units: per-bar variance of log returns (fraction^2).
"""

from __future__ import annotations

import numpy as np


class EwmaCovariance:
    """Incremental EWMA covariance over a growing set of assets (columns)."""

    def __init__(self, lam: float = 0.94) -> None:
        if not 0.0 < lam < 1.0:
            raise ValueError(f"EWMA lambda must be in (0, 1), got {lam}")
        self.lam = float(lam)
        self._s = np.zeros((0, 0))
        self.updates = 0
        self._memo: dict[tuple[str, int], np.ndarray] = {}
        self._memo_key: tuple[np.ndarray, int] | None = None

    @property
    def n_assets(self) -> int:
        """Number of asset columns tracked."""
        return self._s.shape[0]

    def _grow(self, n: int) -> None:
        if n > self._s.shape[0]:
            new = np.zeros((n, n))
            m = self._s.shape[0]
            new[:m, :m] = self._s
            self._s = new

    def update(self, r: np.ndarray) -> None:
        """Fold in one bar of log returns ``r`` (n_assets,); new assets start at 0."""
        r = np.asarray(r, dtype=float)
        self._grow(r.shape[0])
        n = r.shape[0]
        s = self._s[:n, :n]
        s *= self.lam
        s += (1.0 - self.lam) * np.outer(r, r)
        if n < self._s.shape[0]:  # columns not in r had return 0 this bar
            self._s[n:, :] *= self.lam
            self._s[:n, n:] *= self.lam
        self.updates += 1

    def _cached(self, kind: str, n: int) -> np.ndarray | None:
        """The ``kind`` matrix of ``n`` assets computed since the last update, if any (the matrices
        change once per bar and are read by every snapshot in between)."""
        key = self._memo_key
        if key is None or key[0] is not self._s or key[1] != self.updates:
            self._memo.clear()
            self._memo_key = (self._s, self.updates)
            return None
        return self._memo.get((kind, n))

    def _keep(self, kind: str, n: int, matrix: np.ndarray) -> np.ndarray:
        matrix.setflags(write=False)  # shared by every reader until the next update
        self._memo[(kind, n)] = matrix
        return matrix

    def covariance(self, n_assets: int | None = None) -> np.ndarray:
        """Bias-corrected covariance matrix (n_assets, n_assets); zeros before any bar.
        Read-only: the same array is returned until the next update."""
        n = self._s.shape[0] if n_assets is None else n_assets
        self._grow(n)
        cached = self._cached("cov", n)
        if cached is not None:
            return cached
        if self.updates == 0:
            return self._keep("cov", n, np.zeros((n, n)))
        return self._keep("cov", n, self._s[:n, :n] / (1.0 - self.lam ** self.updates))

    def correlation(self, n_assets: int | None = None) -> np.ndarray:
        """Correlation matrix from :meth:`covariance`; assets with zero variance get 0
        off-diagonal and 1 on the diagonal. Read-only, like :meth:`covariance`."""
        cov = self.covariance(n_assets)
        n = cov.shape[0]
        cached = self._memo.get(("corr", n))
        if cached is not None:
            return cached
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = cov / np.outer(sd, sd)
        corr[~np.isfinite(corr)] = 0.0
        np.fill_diagonal(corr, 1.0)
        return self._keep("corr", n, np.clip(corr, -1.0, 1.0))
