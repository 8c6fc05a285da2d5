"""Training datasets built from the pre-period's logs: one row per exposure (C = 1),
features from the per-request snapshots (:mod:`simab.policies.world_features`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import torch

from simab.policies.features import FEATURE_GROUPS
from simab.policies.packing import bucketed_batches, trim
from simab.policies.pair_mining import mine_pairs
from simab.policies.world_features import GROUP_RINGS, SNAPSHOT_FIELDS, FeatureBuilder, Snapshot
from simab.simulators.history import StoredHistories
from simab.simulators.population import Users
from simab.simulators.world import World


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
        self.position = col(exposures, "position").astype(np.int64)
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
        # generated once for every user of the log and shared with subsets and views:
        # the users' attributes and their lifelong histories (real events only)
        self._shared: dict = {"users": np.unique(self.user)}

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

    def with_pair_mining(self, window: tuple[float, float], same_scenario: bool) -> LogDataset:
        """The same rows with TSP pairs mined by these rules: ``self`` when they are
        already its rules, else a copy (sharing the row arrays) with its own pair cache,
        so that one dataset can serve several arms with different rules."""
        window = (float(window[0]), float(window[1]))
        if tuple(self.pair_window) == window and self.pair_same_scenario == same_scenario:
            return self
        new = object.__new__(LogDataset)
        new.__dict__.update(self.__dict__)
        new.pair_window = window
        new.pair_same_scenario = same_scenario
        new._pairs = None
        return new

    def subset(self, rows: np.ndarray) -> LogDataset:
        new = object.__new__(LogDataset)
        new.__dict__.update(self.__dict__)
        for k in ("user", "request", "ts", "scenario", "item", "label", "conv", "propensity", "position"):
            setattr(new, k, getattr(self, k)[rows])
        new.n_rows = len(rows)
        new._pairs = None
        return new

    def _once(self, key: str, make):
        """``self._shared[key]``, made by ``make()`` the first time (shared with subsets and views)."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def _people(self) -> Users:
        """Every user of the log (sorted ids), generated once."""
        return self._once("people", lambda: self.world.population.users(self._shared["users"]))

    def _histories(self) -> StoredHistories:
        """Every user's lifelong source history, generated once (epochs read them again)."""
        return self._once("histories", lambda: self.world.histories.store_source(
            self._people(), max_len=self.builder.fs.lifelong_len or None))

    def _target_histories(self) -> StoredHistories:
        """Every user's lifelong target-domain history, generated once."""
        return self._once("target_histories", lambda: self.world.histories.store_target(
            self._people(), max_len=self.builder.target_lifelong_len))

    def _user_pos(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._shared["users"], self.user[rows])

    def _feature_rows(self, rows: np.ndarray) -> np.ndarray:
        return self._req_row[np.searchsorted(self._req_sorted, self.request[rows])]

    def _snapshot(self, rows: np.ndarray) -> Snapshot:
        fr = self._feature_rows(rows)
        arrays = {f: v[fr] for f, v in self._snap.items()}
        masks = {}
        for ring, f in (("seq", "seq_item"), ("ais", "ais_item"), ("moveline", "ml_scene")):
            width = self._snap[f].shape[1]
            n = self._lens[ring][fr]
            # snapshots are right-aligned (oldest first, newest last)
            masks[ring] = np.arange(width)[None, :] >= (width - n)[:, None]
        return Snapshot(self.user[rows], self.ts[rows], self.scenario[rows], arrays, masks,
                        self._people().take(self._user_pos(rows)))

    def batch(self, rows: np.ndarray, groups: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """The feature batch of ``rows`` (labels included), each sequence cut to the
        longest real history among them (:func:`~simab.policies.packing.trim`)."""
        groups = tuple(groups or FEATURE_GROUPS)
        pos = self._user_pos(rows)
        hist = self._histories().take(pos) if "lifelong" in groups else None
        target = self._target_histories().take(pos) if "target_lifelong" in groups else None
        b = self.builder.build(self._snapshot(rows), self.item[rows][:, None], tuple(g for g in groups if g != "pairs"),
                               histories=hist, target_histories=target)
        b["label"] = torch.from_numpy(self.label[rows][:, None])
        b["conv"] = torch.from_numpy(self.conv[rows][:, None])
        b["position"] = torch.from_numpy(self.position[rows][:, None])
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
        return trim(b)

    def lengths(self, groups: tuple[str, ...] | None = None) -> np.ndarray:
        """Each row's history length for bucketing: its lifelong history's when ``groups``
        read it (it outweighs the rest), else the total of the rings they read."""
        groups = tuple(groups or FEATURE_GROUPS)
        every = np.arange(self.n_rows)
        if "lifelong" in groups:
            return self._histories().lengths()[self._user_pos(every)]
        fr = self._feature_rows(every)
        return sum((self._lens[ring][fr] for g, ring in GROUP_RINGS.items() if g in groups),
                   np.zeros(self.n_rows, np.int64))

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0, groups: tuple[str, ...] | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of ``batch_size`` rows, each cut to its longest history: in row order, or
        (``shuffle``) from the rows shuffled by ``seed``.  When the groups read the lifelong
        history (up to thousands of events, most users far below the cap) the shuffled rows
        are length-bucketed (:func:`~simab.policies.packing.bucketed_batches`: rows of similar
        history length together, so that the cut drops most of the padding); the short rings
        alone gain too little for it (measured: DIN none, AMEN 1.16x) to change which rows
        share a batch."""
        groups = tuple(groups or FEATURE_GROUPS)
        if not shuffle:
            for s in range(0, self.n_rows, batch_size):
                yield self.batch(np.arange(s, min(s + batch_size, self.n_rows)), groups)
            return
        order = np.random.default_rng(seed).permutation(self.n_rows)
        if "lifelong" in groups:
            parts = bucketed_batches(order, self.lengths(groups), batch_size, seed)
        else:
            parts = (order[s:s + batch_size] for s in range(0, self.n_rows, batch_size))
        for rows in parts:
            yield self.batch(rows, groups)

    def batches_by_length(self, batch_size: int, groups: tuple[str, ...] | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Every row once, in batches of rows sorted by history length (stable): for a pass
        whose metrics do not depend on the row order (``trainer.evaluate``), each batch cut to
        little padding."""
        order = np.argsort(self.lengths(groups), kind="stable")
        for s in range(0, self.n_rows, batch_size):
            yield self.batch(order[s:s + batch_size], groups)

    def split(self, val_fraction: float = 0.2) -> tuple[LogDataset, LogDataset]:
        """Split by time: the last ``val_fraction`` of the period is validation."""
        cut = np.quantile(self.ts, 1.0 - val_fraction) if self.n_rows else 0.0
        tr, va = np.flatnonzero(self.ts < cut), np.flatnonzero(self.ts >= cut)
        return self.subset(tr), self.subset(va)
