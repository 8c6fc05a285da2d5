"""Feature batching (one code path for training logs and for live ranking requests) and
the training datasets built from the pre-period's logs.

Every id is shifted by one so that 0 is padding (raw -1, "none", also maps to 0);
scenario indices stay 0-based.  Lifelong sequences are materialised per batch from the
on-demand history generator, never for the whole dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from simab.policies.features import FEATURE_GROUPS
from simab.simulators.scenes import gap_bucket
from simab.simulators.world import World

SNAPSHOT_FIELDS = {
    # field -> (ring, ring field)
    "seq_item": ("seq", "item"),
    "seq_cat": ("seq", "cat"),
    "ais_item": ("ais", "item"),
    "ais_cat": ("ais", "cat"),
    "ais_scene": ("ais", "scene"),
    "ml_scene": ("moveline", "scene"),
    "ml_cat": ("moveline", "cat"),
    "ml_shop": ("moveline", "shop"),
    "ml_ts": ("moveline", "ts"),
}


RINGS = ("seq", "ais", "moveline")
# the rings each feature group reads from a snapshot
GROUP_RINGS = {"short_seq": "seq", "aiseq": "ais", "moveline": "moveline"}


@dataclass
class Snapshot:
    """Per-request user context at request time: padded [B, L] arrays, raw ids (-1 none),
    masks True on real entries."""

    users: np.ndarray
    ts: np.ndarray
    scenario: np.ndarray
    arrays: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]  # "seq", "ais", "moveline"

    @classmethod
    def from_state(cls, state, rows: np.ndarray, ts: np.ndarray, scenario: np.ndarray,
                   rings: tuple[str, ...] = RINGS) -> Snapshot:
        """``rings``: which of the user state's rings to copy (a policy that reads no
        sequence needs none)."""
        arrays, masks = {}, {}
        for ring_name in rings:
            vals, mask = getattr(state, ring_name).gather(rows)
            masks[ring_name] = mask
            for f, (rn, rf) in SNAPSHOT_FIELDS.items():
                if rn == ring_name:
                    arrays[f] = np.where(mask, vals[rf], 0 if rf != "ts" else 0.0)
        return cls(state.users.ids[rows], np.asarray(ts, np.float64), np.asarray(scenario, np.int64), arrays, masks)


def _shift(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask & (x >= 0), x + 1, 0)


class FeatureBuilder:
    """Builds feature batches (see ``simab.policies.features``) for a world."""

    def __init__(self, world: World):
        self.world = world
        self.cat = world.catalog
        self.fs = world.feature_spec()

    def build(
        self,
        snap: Snapshot,
        items: np.ndarray,
        groups: tuple[str, ...] | None = None,
        *,
        p_click: np.ndarray | None = None,
    ) -> dict[str, torch.Tensor]:
        """Assemble a batch for requests ``snap`` with candidates ``items`` [B, C]."""
        groups = tuple(groups or FEATURE_GROUPS)
        c = self.cat
        items = np.asarray(items, np.int64)
        out: dict[str, np.ndarray] = {}
        users = self.world.population.users(snap.users) if ("profile" in groups or "lifelong" in groups) else None
        if "profile" in groups:
            out["user"] = snap.users + 1
            out["profile"] = users.profile + 1
        if "scenario" in groups:
            out["scenario"] = snap.scenario
        if "target" in groups:
            out["item"] = items + 1
            out["item_cat"] = c.category[items] + 1
            out["item_shop"] = c.shop[items] + 1
            out["item_price"] = c.price[items] + 1
            out["item_pop"] = c.logpop[items].astype(np.float32)
        a, m = snap.arrays, snap.masks
        if "short_seq" in groups:
            out["seq_item"] = _shift(a["seq_item"], m["seq"])
            out["seq_cat"] = _shift(a["seq_cat"], m["seq"])
            out["seq_mask"] = m["seq"]
        if "aiseq" in groups:
            out["ais_item"] = _shift(a["ais_item"], m["ais"])
            out["ais_cat"] = _shift(a["ais_cat"], m["ais"])
            out["ais_scene"] = np.where(m["ais"], a["ais_scene"], 0)
            out["ais_mask"] = m["ais"]
        if "moveline" in groups:
            mm = m["moveline"]
            out["ml_scene"] = np.where(mm, a["ml_scene"], 0)
            out["ml_cat"] = _shift(a["ml_cat"], mm)
            out["ml_shop"] = _shift(a["ml_shop"], mm)
            out["ml_gap"] = np.where(mm, gap_bucket(snap.ts[:, None] - a["ml_ts"]), 0)
            out["ml_mask"] = mm
        if "lifelong" in groups:
            h = self.world.histories.source(users, max_len=self.fs.lifelong_len or None)
            out["ll_item"] = _shift(h.item, h.mask)
            out["ll_cat"] = _shift(h.category, h.mask)
            out["ll_action"] = np.where(h.mask, h.action, 0)
            out["ll_gap"] = np.where(h.mask, gap_bucket(snap.ts[:, None] - h.ts), 0)
            out["ll_mask"] = h.mask
        if "oracle" in groups and p_click is not None:
            out["p_click"] = p_click.astype(np.float32)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


def mine_pairs(
    user: np.ndarray,
    scenario: np.ndarray,
    ts: np.ndarray,
    label: np.ndarray,
    *,
    min_gap_s: float = 60.0,
    max_gap_s: float = 7 * 86400.0,
    same_scenario: bool = True,
    max_offset: int = 64,
) -> np.ndarray:
    """TSP pair mining: for each row the index of a *diff* row of the same user (and the
    same scenario when ``same_scenario``) with the opposite click label, ``min_gap_s`` to
    ``max_gap_s`` apart; -1 when there is none.  The nearest such row in time order is
    taken (looking up to ``max_offset`` rows forward, then backward)."""
    n = len(user)
    group = user.astype(np.int64) * (1 + (scenario.max() if same_scenario and n else 0)) + (
        scenario if same_scenario else 0
    )
    order = np.lexsort((ts, group))
    g, t, y = group[order], ts[order], label[order]
    partner = np.full(n, -1, np.int64)
    for k in list(range(1, max_offset + 1)) + [-k for k in range(1, max_offset + 1)]:
        todo = partner < 0
        if not todo.any():
            break
        i = np.arange(n)
        j = i + k
        ok = (j >= 0) & (j < n)
        jj = np.clip(j, 0, max(n - 1, 0))
        gap = np.abs(t[jj] - t)
        ok &= todo & (g[jj] == g) & (y[jj] != y) & (gap >= min_gap_s) & (gap <= max_gap_s)
        partner[ok] = jj[ok]
    out = np.full(n, -1, np.int64)
    hit = partner >= 0
    out[order[hit]] = order[partner[hit]]
    return out


class LogDataset:
    """Training rows (one exposure each, C = 1) from a pre-period log.

    ``exposures`` needs columns user, request, ts, scenario_idx, item, clicked, converted,
    propensity; ``features`` one row per request with the snapshot columns
    (``SNAPSHOT_FIELDS``, fixed-size lists) and ``request``.
    """

    def __init__(
        self,
        world: World,
        exposures: pa.Table,
        features: pa.Table,
        *,
        pair_window: tuple[float, float] = (60.0, 7 * 86400.0),
        pair_same_scenario: bool = True,
    ):
        self.world = world
        self.builder = FeatureBuilder(world)
        col = lambda t, k: t.column(k).to_numpy()  # noqa: E731
        self.user = col(exposures, "user").astype(np.int64)
        self.request = col(exposures, "request").astype(np.int64)
        self.ts = col(exposures, "ts").astype(np.float64)
        self.scenario = col(exposures, "scenario_idx").astype(np.int64)
        self.item = col(exposures, "item").astype(np.int64)
        self.label = col(exposures, "clicked").astype(np.float32)
        self.conv = col(exposures, "converted").astype(np.float32)
        self.propensity = col(exposures, "propensity").astype(np.float64)
        self.n_rows = len(self.user)
        freq = col(features, "request").astype(np.int64)
        order = np.argsort(freq)
        self._req_sorted = freq[order]
        self._req_row = order
        self._snap = {}
        for f in SNAPSHOT_FIELDS:
            arr = features.column(f).combine_chunks()
            width = arr.type.list_size
            vals = arr.values.to_numpy(zero_copy_only=False)
            self._snap[f] = vals.reshape(-1, width)
        self._lens = {}
        for ring in ("seq", "ais", "moveline"):
            self._lens[ring] = col(features, f"{ring}_len").astype(np.int64)
        self.pair_window = pair_window
        self.pair_same_scenario = pair_same_scenario
        self._pairs: np.ndarray | None = None

    @property
    def pairs(self) -> np.ndarray:
        if self._pairs is None:
            self._pairs = mine_pairs(
                self.user,
                self.scenario,
                self.ts,
                self.label,
                min_gap_s=self.pair_window[0],
                max_gap_s=self.pair_window[1],
                same_scenario=self.pair_same_scenario,
            )
        return self._pairs

    def subset(self, rows: np.ndarray) -> LogDataset:
        new = object.__new__(LogDataset)
        new.__dict__.update(self.__dict__)
        for k in ("user", "request", "ts", "scenario", "item", "label", "conv", "propensity"):
            setattr(new, k, getattr(self, k)[rows])
        new.n_rows = len(rows)
        new._pairs = None
        return new

    def _snapshot(self, rows: np.ndarray) -> Snapshot:
        fr = self._req_row[np.searchsorted(self._req_sorted, self.request[rows])]
        arrays = {f: v[fr] for f, v in self._snap.items()}
        masks = {}
        for ring, f in (("seq", "seq_item"), ("ais", "ais_item"), ("moveline", "ml_scene")):
            width = self._snap[f].shape[1]
            n = self._lens[ring][fr]
            # snapshots are right-aligned (oldest first, newest last)
            masks[ring] = np.arange(width)[None, :] >= (width - n)[:, None]
        return Snapshot(self.user[rows], self.ts[rows], self.scenario[rows], arrays, masks)

    def batch(self, rows: np.ndarray, groups: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        groups = tuple(groups or FEATURE_GROUPS)
        b = self.builder.build(self._snapshot(rows), self.item[rows][:, None], tuple(g for g in groups if g != "pairs"))
        b["label"] = torch.from_numpy(self.label[rows][:, None])
        b["conv"] = torch.from_numpy(self.conv[rows][:, None])
        if "pairs" in groups:
            p = self.pairs[rows]
            ok = p >= 0
            pi = np.where(ok, self.item[np.maximum(p, 0)], 0)
            c = self.world.catalog
            b["pair_item"] = torch.from_numpy(np.where(ok, pi + 1, 0))
            b["pair_cat"] = torch.from_numpy(np.where(ok, c.category[pi] + 1, 0))
            b["pair_shop"] = torch.from_numpy(np.where(ok, c.shop[pi] + 1, 0))
            b["pair_price"] = torch.from_numpy(np.where(ok, c.price[pi] + 1, 0))
            b["pair_label"] = torch.from_numpy(np.where(ok, self.label[np.maximum(p, 0)], 0).astype(np.float32))
            b["pair_mask"] = torch.from_numpy(ok)
        return b

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0, groups: tuple[str, ...] | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        idx = np.arange(self.n_rows)
        if shuffle:
            idx = np.random.default_rng(seed).permutation(self.n_rows)
        for s in range(0, self.n_rows, batch_size):
            yield self.batch(idx[s : s + batch_size], groups)

    def split(self, val_fraction: float = 0.2) -> tuple[LogDataset, LogDataset]:
        """Split by time: the last ``val_fraction`` of the period is validation."""
        cut = np.quantile(self.ts, 1.0 - val_fraction) if self.n_rows else 0.0
        tr, va = np.flatnonzero(self.ts < cut), np.flatnonzero(self.ts >= cut)
        return self.subset(tr), self.subset(va)
