"""Mergeable sufficient statistics: counts, means and co-moments.

Blocks of replicas are reduced to :class:`Moments` on the workers; the client
merges them with the pairwise update of Chan, Golub & LeVeque (1979), so memory
never grows with the number of replicas. Floating-point merges are not
associative, so :class:`OrderedFold` merges blocks in block order whatever order
they arrive in: the result is bitwise the same for any schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

import numpy as np

__all__ = ["Moments", "OrderedFold"]


@dataclass(frozen=True)
class Moments:
    """Count, mean and co-moment ``sum (x - mean)(x - mean)^T`` of vector samples.

    ``comoment`` is the full ``(d, d)`` matrix, or only its diagonal ``(d,)``
    (sums of squared deviations) when the cross terms are not needed.
    """

    count: int
    mean: np.ndarray  # (d,)
    comoment: np.ndarray  # (d, d) or (d,)

    @property
    def full(self) -> bool:
        return self.comoment.ndim == 2

    @classmethod
    def empty(cls, dim: int, full: bool = True) -> "Moments":
        return cls(0, np.zeros(dim), np.zeros((dim, dim) if full else dim))

    @classmethod
    def from_samples(cls, x: np.ndarray, full: bool = True) -> "Moments":
        """Moments of the rows of ``x`` (shape ``(n, d)``)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected samples of shape (n, d), got {x.shape}")
        n = x.shape[0]
        if n == 0:
            return cls.empty(x.shape[1], full)
        mean = x.mean(axis=0)
        dev = x - mean
        return cls(n, mean, dev.T @ dev if full else np.einsum("ij,ij->j", dev, dev))

    def merge(self, other: "Moments") -> "Moments":
        """Pooled moments of the union of both sample sets (Chan et al. update)."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        cross = np.outer(delta, delta) if self.full else delta * delta
        comoment = self.comoment + other.comoment + cross * (self.count * other.count / n)
        return Moments(n, mean, comoment)

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased covariance (ddof = 1; the variances if diagonal); NaN with fewer than two samples."""
        if self.count < 2:
            return np.full_like(self.comoment, np.nan)
        return self.comoment / (self.count - 1)


T = TypeVar("T")


class OrderedFold(Generic[T]):
    """Fold items numbered ``0..n-1`` in index order, accepting them in any order.

    Items that arrive early wait in a buffer until every lower index has been
    folded, so the result depends only on the items, not on their arrival.

    >>> fold = OrderedFold(lambda a, b: a + b, initial="", size=3)
    >>> for i, s in [(2, "c"), (0, "a"), (1, "b")]:
    ...     fold.push(i, s)
    >>> fold.value, fold.complete
    ('abc', True)
    """

    def __init__(self, merge: Callable[[T, T], T], initial: T, size: int):
        self._merge = merge
        self.value = initial
        self.size = size
        self._next = 0
        self._waiting: dict[int, T] = {}

    def push(self, index: int, item: T) -> None:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} outside 0..{self.size - 1}")
        if index < self._next or index in self._waiting:
            raise ValueError(f"item {index} pushed twice")
        self._waiting[index] = item
        while self._next in self._waiting:
            self.value = self._merge(self.value, self._waiting.pop(self._next))
            self._next += 1

    @property
    def folded(self) -> int:
        """How many items (a prefix) have been merged into :attr:`value`."""
        return self._next

    @property
    def complete(self) -> bool:
        return self._next == self.size
