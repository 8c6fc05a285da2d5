"""Sufficient statistics of per-unit columns.

A :class:`Moments` holds, for k per-unit columns (e.g. a user's clicks and exposures),
the unit count n, the column sums Σx_j and the cross products Σx_j·x_k.  Every mean,
variance and covariance the delta method needs is a function of these, and they add:
moments of disjoint sets of units (shards, or users split any other way) combine with
``+``, so a large event log is reduced once and inference runs on a few numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Moments:
    """n, Σx_j and Σx_j·x_k over units for the named columns (one arm, one segment)."""

    columns: tuple[str, ...]
    n: int
    sums: np.ndarray
    cross: np.ndarray

    @classmethod
    def from_columns(cls, columns: Mapping[str, np.ndarray]) -> Moments:
        """Reduce per-unit arrays (all of the same length) to their moments."""
        names = tuple(columns)
        if not names:
            raise ValueError("Moments need at least one column")
        matrix = np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in names])
        return cls(
            columns=names,
            n=int(matrix.shape[0]),
            sums=matrix.sum(axis=0),
            cross=matrix.T @ matrix,
        )

    @classmethod
    def empty(cls, columns: tuple[str, ...]) -> Moments:
        k = len(columns)
        return cls(columns=columns, n=0, sums=np.zeros(k), cross=np.zeros((k, k)))

    def __add__(self, other: Moments) -> Moments:
        if self.columns != other.columns:
            raise ValueError(f"cannot add moments of {self.columns} and {other.columns}")
        return Moments(
            columns=self.columns,
            n=self.n + other.n,
            sums=self.sums + other.sums,
            cross=self.cross + other.cross,
        )

    def _index(self, name: str) -> int:
        return self.columns.index(name)

    def total(self, name: str) -> float:
        """Σx over units."""
        return float(self.sums[self._index(name)])

    def mean(self, name: str) -> float:
        """x̄ = Σx / n (NaN for no units)."""
        return self.total(name) / self.n if self.n else float("nan")

    def cov(self, a: str, b: str) -> float:
        """Unbiased sample covariance (Σab - Σa·Σb/n) / (n - 1); NaN when n < 2."""
        if self.n < 2:
            return float("nan")
        i, j = self._index(a), self._index(b)
        centred = self.cross[i, j] - self.sums[i] * self.sums[j] / self.n
        return float(centred / (self.n - 1))

    def var(self, name: str) -> float:
        """Unbiased sample variance; clipped at 0 against rounding."""
        v = self.cov(name, name)
        return max(v, 0.0) if v == v else v

    def cov_matrix(self) -> np.ndarray:
        """Unbiased covariance matrix of all columns (NaN-filled when n < 2)."""
        k = len(self.columns)
        if self.n < 2:
            return np.full((k, k), np.nan)
        centred = self.cross - np.outer(self.sums, self.sums) / self.n
        return centred / (self.n - 1)

    def means(self) -> np.ndarray:
        """Vector of column means (NaN for no units)."""
        if not self.n:
            return np.full(len(self.columns), np.nan)
        return self.sums / self.n
