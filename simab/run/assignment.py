"""Experiment design: salted hash bucketing, allocations, ramps and holdouts.

bucket(unit) = SplitMix64(key(salt) XOR unit) mod 10,000.  Each arm owns a contiguous
block of buckets sized by the largest share it ever reaches; at time t an arm covers the
first ``share(t) * 10,000`` buckets of its block.  Ramps therefore only ever move units
from the unallocated pool into an arm, never between arms, and a unit keeps its arm
for the whole campaign.  Buckets outside every covered range are unallocated (holdout
from the experiment: not simulated).
"""

from __future__ import annotations

import numpy as np

from simab.simulators import rng
from simab.simulators.streams import Stream
from simab.simulators.units import DAY

N_BUCKETS = 10_000


def buckets(salt: str, units: np.ndarray) -> np.ndarray:
    key = rng.stream_key(0, Stream.ASSIGNMENT.of(salt))
    return (rng.bits(key, np.asarray(units, np.int64)) % np.uint64(N_BUCKETS)).astype(np.int32)


class Allocation:
    def __init__(self, arms: list[str], schedule: list[tuple[float, dict[str, float]]]):
        """``schedule``: (day, shares) steps in time order; the first applies from day 0."""
        self.arms = arms
        self.times = np.array([d * DAY for d, _ in schedule])
        widths = np.array([[round(s.get(a, 0.0) * N_BUCKETS) for a in arms] for _, s in schedule])  # [steps, arms]
        self.widths = np.maximum.accumulate(widths, axis=0)
        peak = self.widths.max(axis=0)
        self.offsets = np.concatenate([[0], np.cumsum(peak)[:-1]])

    @classmethod
    def from_spec(cls, spec) -> Allocation:
        arms = list(spec.arms)
        steps = [(0.0, spec.shares_at(-1.0))]
        for r in sorted(spec.ramps, key=lambda r: r.at_day):
            steps.append((r.at_day, spec.shares_at(r.at_day)))
        return cls(arms, steps)

    def assign(self, bucket: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(arm index or -1, time from which the unit is in the experiment)."""
        bucket = np.asarray(bucket)
        arm = np.full(bucket.shape, -1, np.int64)
        start = np.full(bucket.shape, np.inf)
        for a in range(len(self.arms)):
            rel = bucket - self.offsets[a]
            for k in range(len(self.times)):  # widths never shrink: the first covering step wins
                inside = (rel >= 0) & (rel < self.widths[k, a]) & (arm == -1)
                arm[inside] = a
                start[inside] = self.times[k]
        return arm, start
