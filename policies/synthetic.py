"""A small synthetic click world with known signals, for tests and benchmarks.

It is *not* the simulation world (``simab.simulators``); it only implements the
``BatchSource`` contract with a label whose logit is a sum of parts that each model
family should be able to find:

``long``      ``<u, v_item>``: a user interest driven by the profile fields, against
              the item's latent (near its category centroid)
``quality``   a per-item quality
``seq``       the share of the short sequence in the target's category (a per-row
              "recent intent" of two categories; what target attention finds)
``lifelong``  the user's lifelong share of the target's category, centred (a per-user
              Dirichlet mixture that the profile does not reveal; what SIM finds)
``scenario``  a scenario base rate plus a scenario x price-bucket and a scenario x
              category effect (what multi-scenario models find)

Every row also carries its true ``p_click`` (the ``oracle`` group).  Sequences are
chronological, oldest first, real positions first and padding after them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from simab.policies.base import Batch
from simab.policies.features import FEATURE_GROUPS, FeatureSpec

PROVIDES = ("profile", "scenario", "target", "short_seq", "lifelong", "oracle")


def random_request_batch(fs: FeatureSpec, b: int, c: int, g: torch.Generator,
                         n_target_items: int | None = None) -> dict[str, torch.Tensor]:
    """Random ids for ``b`` requests of ``c`` candidates: the user, profile, scenario,
    candidate and short-sequence keys every policy reads (ids drawn from ``g`` in a fixed
    order, so a seed gives the same batch); ``n_target_items`` narrows the item ids to
    ``1..n_target_items-1`` (default every item).  Callers add the sequences their model needs."""
    n_items = fs.n_items if n_target_items is None else n_target_items

    def ids(n: int, *shape: int) -> torch.Tensor:
        return torch.randint(1, n, shape, generator=g)

    return {
        "user": ids(fs.n_users, b), "profile": torch.stack([ids(s, b) for s in fs.profile_sizes], 1),
        "scenario": torch.randint(0, fs.n_scenarios, (b,), generator=g),
        "item": ids(n_items, b, c), "item_cat": ids(fs.n_categories, b, c), "item_shop": ids(fs.n_shops, b, c),
        "item_price": ids(fs.n_price_buckets, b, c), "item_pop": torch.randn(b, c, generator=g),
        "seq_item": ids(n_items, b, fs.seq_len), "seq_cat": ids(fs.n_categories, b, fs.seq_len),
        "seq_mask": torch.ones(b, fs.seq_len, dtype=torch.bool),
    }


def synthetic_spec(
    *,
    n_users: int = 300,
    n_items: int = 400,
    n_categories: int = 12,
    n_shops: int = 20,
    n_price_buckets: int = 6,
    scenario_names: tuple[str, ...] = ("home_feed", "search_results", "marketing_channel"),
    profile_sizes: tuple[int, ...] = (5, 3, 4),
    seq_len: int = 10,
    lifelong_len: int = 64,
) -> FeatureSpec:
    """A FeatureSpec for the synthetic world; sizes include the padding id 0."""
    return FeatureSpec(
        n_users=n_users + 1, n_items=n_items + 1, n_categories=n_categories + 1, n_shops=n_shops + 1,
        n_price_buckets=n_price_buckets + 1, n_scenarios=len(scenario_names), n_scene_types=2,
        n_gap_buckets=9, n_actions=4, profile_sizes=tuple(s + 1 for s in profile_sizes),
        scenario_names=tuple(scenario_names), seq_len=seq_len, aiseq_len=1, moveline_len=1,
        lifelong_len=lifelong_len, provides=PROVIDES,
    )


@dataclass(frozen=True)
class SignalStrength:
    """Coefficients of the label's logit parts (see the module docstring)."""

    long: float = 0.3
    quality: float = 0.5
    seq: float = 4.0
    lifelong: float = 6.0
    scenario: float = 0.6


class SyntheticWorld:
    """Users, items and label coefficients drawn once from ``seed``."""

    latent_dim = 8

    def __init__(self, spec: FeatureSpec, seed: int = 0, strength: SignalStrength | None = None):
        self.spec = spec
        self.seed = seed
        self.strength = strength or SignalStrength()
        rng = np.random.default_rng([seed, 1])
        k, n_cat = self.latent_dim, spec.n_categories - 1
        n_items, n_users = spec.n_items - 1, spec.n_users - 1
        centroids = rng.normal(size=(n_cat, k)) / np.sqrt(k)
        self.item_cat = rng.integers(0, n_cat, n_items)  # 0-based here; +1 in batches
        self.item_shop = rng.integers(0, spec.n_shops - 1, n_items)
        self.item_price = rng.integers(0, spec.n_price_buckets - 1, n_items)
        self.item_latent = centroids[self.item_cat] + 0.3 * rng.normal(size=(n_items, k)) / np.sqrt(k)
        self.item_quality = rng.normal(0.0, 1.0, n_items)
        self.item_pop = np.log1p(rng.zipf(1.8, n_items).clip(max=1000)).astype(np.float32)
        self._by_cat = np.argsort(self.item_cat, kind="stable")
        self._cat_count = np.bincount(self.item_cat, minlength=n_cat)
        self._cat_start = np.cumsum(self._cat_count) - self._cat_count
        sizes = [s - 1 for s in spec.profile_sizes]
        self.profile = np.stack([rng.integers(0, s, n_users) for s in sizes], axis=1)
        field_latent = [rng.normal(size=(s, k)) for s in sizes]
        self.user_latent = sum(f[self.profile[:, j]] for j, f in enumerate(field_latent))
        self.user_latent = self.user_latent + 0.3 * rng.normal(size=(n_users, k))
        self.lifelong_mix = rng.dirichlet(np.full(n_cat, 0.3), size=n_users)
        n_sc = spec.n_scenarios
        self.scenario_share = np.linspace(2.0, 1.0, n_sc) ** 2 / (np.linspace(2.0, 1.0, n_sc) ** 2).sum()
        self.scenario_base = rng.normal(-1.0, 0.5, n_sc)
        self.scenario_price = rng.normal(size=(n_sc, spec.n_price_buckets - 1))
        self.scenario_cat = rng.normal(size=(n_sc, n_cat))

    def source(self, n_rows: int, seed: int) -> SyntheticSource:
        return SyntheticSource(self, n_rows, seed)

    def random_item_of(self, rng: np.random.Generator, cats: np.ndarray) -> np.ndarray:
        """A uniformly random item of each category in ``cats`` (any shape; 0-based)."""
        count = self._cat_count[cats]
        offset = np.minimum((rng.random(cats.shape) * count).astype(np.int64), np.maximum(count - 1, 0))
        return self._by_cat[np.minimum(self._cat_start[cats] + offset, len(self._by_cat) - 1)]

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - the world lives as long as its sources
    def lifelong(self, user0: int) -> tuple[np.ndarray, ...]:
        """One user's lifelong history (item, cat, action, gap; 0-based ids), generated on
        demand from ``(seed, user)`` so it never has to be stored for all users."""
        rng = np.random.default_rng([self.seed, 2, user0])
        n_max = self.spec.lifelong_len
        n = 0 if user0 % 13 == 0 else int(rng.integers(n_max // 2, n_max + 1))
        cats = rng.choice(len(self._cat_count), size=n, p=self.lifelong_mix[user0])
        items = self.random_item_of(rng, cats)
        actions = rng.integers(0, self.spec.n_actions - 1, n)
        gaps = np.sort(rng.integers(0, self.spec.n_gap_buckets - 1, n))[::-1]  # oldest first
        return items, cats, actions, gaps


class SyntheticSource:
    """``n_rows`` training rows (one candidate each) of a :class:`SyntheticWorld`."""

    def __init__(self, world: SyntheticWorld, n_rows: int, seed: int):
        self.world, self.n_rows, self.seed = world, n_rows, seed
        spec, w, s = world.spec, world, world.strength
        rng = np.random.default_rng([world.seed, 3, seed])
        n_cat, L = spec.n_categories - 1, spec.seq_len
        self.user = rng.integers(0, spec.n_users - 1, n_rows)
        self.scenario = rng.choice(spec.n_scenarios, size=n_rows, p=w.scenario_share)
        recent = np.stack([rng.integers(0, n_cat, n_rows), rng.integers(0, n_cat, n_rows)], axis=1)
        lengths = rng.integers(0, L + 1, n_rows)
        seq_cat = recent[np.arange(n_rows)[:, None], rng.integers(0, 2, (n_rows, L))]
        self.seq_mask = np.arange(L)[None, :] < lengths[:, None]
        self.seq_cat = np.where(self.seq_mask, seq_cat, -1)
        self.seq_item = np.where(self.seq_mask, w.random_item_of(rng, np.maximum(seq_cat, 0)), -1)
        # target: half from the recent intent, a quarter from the lifelong mixture, rest uniform
        how = rng.random(n_rows)
        life_cdf = np.cumsum(w.lifelong_mix[self.user], axis=1)
        life_cat = np.minimum((rng.random(n_rows)[:, None] > life_cdf).sum(1), n_cat - 1)
        target_cat = np.where(how < 0.5, recent[:, 0], np.where(how < 0.75, life_cat, rng.integers(0, n_cat, n_rows)))
        self.item = w.random_item_of(rng, target_cat)
        cat = w.item_cat[self.item]
        seq_share = (self.seq_cat == cat[:, None]).sum(1) / np.maximum(lengths, 1)
        logit = (
            w.scenario_base[self.scenario]
            + s.long * np.einsum("nk,nk->n", w.user_latent[self.user], w.item_latent[self.item])
            + s.quality * w.item_quality[self.item]
            + s.seq * (seq_share - 0.25)
            + s.lifelong * (w.lifelong_mix[self.user, cat] - 1.0 / n_cat)
            + s.scenario * (w.scenario_price[self.scenario, w.item_price[self.item]]
                            + w.scenario_cat[self.scenario, cat])
        )
        self.p_click = 1.0 / (1.0 + np.exp(-logit))
        self.label = (rng.random(n_rows) < self.p_click).astype(np.float32)
        self.conv = self.label * (rng.random(n_rows) < 0.3)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                groups: tuple[str, ...] | None = None) -> Iterator[Batch]:
        order = np.random.default_rng(seed).permutation(self.n_rows) if shuffle else np.arange(self.n_rows)
        wanted = set(groups) if groups is not None else set(PROVIDES)
        for start in range(0, self.n_rows, batch_size):
            yield self.batch(order[start:start + batch_size], wanted)

    def batch(self, rows: np.ndarray, groups: set[str] | None = None) -> Batch:
        """The rows ``rows`` as a batch holding ``groups`` (default: all provided)."""
        w, groups = self.world, set(PROVIDES) if groups is None else groups
        t = torch.from_numpy
        item = self.item[rows]
        out: Batch = {
            "user": t(self.user[rows] + 1),
            "scenario": t(self.scenario[rows]),
            "label": t(self.label[rows])[:, None],
            "conv": t(self.conv[rows].astype(np.float32))[:, None],
            "weight": torch.ones(len(rows)),
        }
        if "profile" in groups:
            out["profile"] = t(w.profile[self.user[rows]] + 1)
        if "target" in groups:
            out["item"] = t(item + 1)[:, None]
            out["item_cat"] = t(w.item_cat[item] + 1)[:, None]
            out["item_shop"] = t(w.item_shop[item] + 1)[:, None]
            out["item_price"] = t(w.item_price[item] + 1)[:, None]
            out["item_pop"] = t(w.item_pop[item])[:, None]
        if "short_seq" in groups:
            out["seq_item"] = t(self.seq_item[rows] + 1)
            out["seq_cat"] = t(self.seq_cat[rows] + 1)
            out["seq_mask"] = t(self.seq_mask[rows])
        if "lifelong" in groups:
            out.update(self._lifelong(self.user[rows]))
        if "oracle" in groups:
            out["p_click"] = t(self.p_click[rows].astype(np.float32))[:, None]
        missing = [k for g in groups if g in PROVIDES for k in FEATURE_GROUPS[g] if k not in out]
        assert not missing, missing
        return out

    def _lifelong(self, users0: np.ndarray) -> Batch:
        n = self.world.spec.lifelong_len
        arrays = np.zeros((4, len(users0), n), dtype=np.int64)
        mask = np.zeros((len(users0), n), dtype=bool)
        for r, u in enumerate(users0):
            parts = self.world.lifelong(int(u))
            k = len(parts[0])
            for j, a in enumerate(parts):
                arrays[j, r, :k] = a + 1
            mask[r, :k] = True
        names = ("ll_item", "ll_cat", "ll_action", "ll_gap")
        out = {name: torch.from_numpy(arrays[j]) for j, name in enumerate(names)}
        out["ll_mask"] = torch.from_numpy(mask)
        return out
