"""Sufficient statistics of per-unit columns.

A :class:`Moments` holds, for k per-unit columns (e.g. a user's clicks and exposures),
the unit count n, the column means x̄_j and the mean-centred co-moments
M_jk = Σ(x_j - x̄_j)(x_k - x̄_k).  Every mean, variance and covariance the delta method
needs is a function of these.  Moments of disjoint sets of units (shards, or users split
any other way) combine with ``+`` by the pairwise formula of Chan, Golub & LeVeque (1979,
"Updating formulae and a pairwise algorithm for computing sample variances"):

    n = n_a + n_b,  δ = x̄_b - x̄_a,  x̄ = x̄_a + δ·n_b/n,  M = M_a + M_b + δδᵀ·n_a·n_b/n

Keeping centred co-moments instead of raw sums Σx_j·x_k avoids the cancellation of
Σab - Σa·Σb/n, so variances stay accurate for columns with large means (dwell time,
latency) and the last bits do not depend on how units were grouped before merging.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def grouped_moments(
    codes: np.ndarray, k: int, values: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts (k,), means (k, c) and centred co-moments (k, c, c) of ``values`` per group code.

    Two passes per group: the mean (refined once by the mean residual, so it is accurate
    to rounding even for large offsets), then the sums of products of centred values.
    Each (i, j) entry is summed on its own in row order (``np.bincount``), so a pair's
    result does not depend on which other columns are present.
    """
    counts = np.bincount(codes, minlength=k)
    safe = np.where(counts > 0, counts, 1).astype(np.float64)
    means = np.empty((k, len(values)))
    centred = []
    for j, v in enumerate(values):
        mean = np.bincount(codes, weights=v, minlength=k) / safe
        mean += np.bincount(codes, weights=v - mean[codes], minlength=k) / safe
        means[:, j] = np.where(counts > 0, mean, np.nan)
        centred.append(v - mean[codes])
    comoments = np.empty((k, len(values), len(values)))
    for i, ci in enumerate(centred):
        for j in range(i, len(values)):
            comoments[:, i, j] = comoments[:, j, i] = np.bincount(
                codes, weights=ci * centred[j], minlength=k
            )
    return counts, means, comoments


@dataclass(frozen=True, eq=False)
class Moments:
    """n, column means and centred co-moments over units (one arm, one segment)."""

    columns: tuple[str, ...]
    n: int
    centre: np.ndarray
    comoments: np.ndarray

    @classmethod
    def from_columns(cls, columns: Mapping[str, np.ndarray]) -> Moments:
        """Reduce per-unit arrays (all of the same length) to their moments."""
        names = tuple(columns)
        if not names:
            raise ValueError("Moments need at least one column")
        values = [np.asarray(columns[c], dtype=np.float64) for c in names]
        n = values[0].shape[0]
        if any(v.shape != (n,) for v in values):
            raise ValueError("Moments need one-dimensional columns of equal length")
        if n == 0:
            return cls.empty(names)
        counts, means, comoments = grouped_moments(np.zeros(n, dtype=np.int64), 1, values)
        return cls(columns=names, n=int(counts[0]), centre=means[0], comoments=comoments[0])

    @classmethod
    def from_sums(
        cls, columns: tuple[str, ...], n: int, sums: np.ndarray, cross: np.ndarray
    ) -> Moments:
        """From raw n, Σx_j and Σx_j·x_k (as gbstats gives sample statistics).

        The centring Σab - Σa·Σb/n happens once here, so raw sums lose what they lose;
        prefer :meth:`from_columns` when the per-unit values are at hand.
        """
        sums = np.asarray(sums, dtype=np.float64)
        cross = np.asarray(cross, dtype=np.float64)
        if n == 0:
            return cls.empty(columns)
        centre = sums / n
        return cls(columns, int(n), centre, cross - np.outer(sums, sums) / n)

    @classmethod
    def empty(cls, columns: tuple[str, ...]) -> Moments:
        k = len(columns)
        return cls(columns=columns, n=0, centre=np.zeros(k), comoments=np.zeros((k, k)))

    def __add__(self, other: Moments) -> Moments:
        if self.columns != other.columns:
            raise ValueError(f"cannot add moments of {self.columns} and {other.columns}")
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.centre - self.centre
        return Moments(
            columns=self.columns,
            n=n,
            centre=self.centre + delta * (other.n / n),
            comoments=self.comoments
            + other.comoments
            + np.outer(delta, delta) * (self.n * other.n / n),
        )

    def _index(self, name: str) -> int:
        return self.columns.index(name)

    def total(self, name: str) -> float:
        """Σx over units (n·x̄; round it for integer counts)."""
        return float(self.n * self.centre[self._index(name)]) if self.n else 0.0

    def mean(self, name: str) -> float:
        """x̄ (NaN for no units)."""
        return float(self.centre[self._index(name)]) if self.n else float("nan")

    def cov(self, a: str, b: str) -> float:
        """Unbiased sample covariance M_ab / (n - 1); NaN when n < 2."""
        if self.n < 2:
            return float("nan")
        return float(self.comoments[self._index(a), self._index(b)] / (self.n - 1))

    def var(self, name: str) -> float:
        """Unbiased sample variance (never negative: M_aa is a sum of squares)."""
        v = self.cov(name, name)
        return max(v, 0.0) if v == v else v

    def cov_matrix(self) -> np.ndarray:
        """Unbiased covariance matrix of all columns (NaN-filled when n < 2)."""
        k = len(self.columns)
        if self.n < 2:
            return np.full((k, k), np.nan)
        return self.comoments / (self.n - 1)

    def means(self) -> np.ndarray:
        """Vector of column means (NaN for no units)."""
        if not self.n:
            return np.full(len(self.columns), np.nan)
        return self.centre.copy()
