"""The world's side of the feature contract: vocabulary sizes of a world
(:func:`feature_spec_of`) and feature batches built from per-request snapshots of the
user's context (one code path for training logs and for live ranking requests).

Every id is shifted by one so that 0 is padding (raw -1, "none", also maps to 0);
scenario indices stay 0-based.  Lifelong sequences are materialised per batch from the
on-demand history generator, never for the whole dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from simab.policies.features import FEATURE_GROUPS, FeatureSpec
from simab.simulators.catalog import N_PRICE_BUCKETS
from simab.simulators.history import N_ACTIONS, Histories
from simab.simulators.population import PROFILE_SIZES, Users
from simab.simulators.scenes import N_GAP_BUCKETS, N_SCENE_TYPES, gap_bucket
from simab.simulators.spec import WorldSpec
from simab.simulators.world import World


def feature_spec_of(s: WorldSpec) -> FeatureSpec:
    """Vocabulary sizes and lengths of a world's features (they follow from the spec alone).
    A world without topics provides no ``tags`` group (its feature spec, and so its
    checkpoints, are those of before tags existed)."""
    n_tags = s.n_topics * (s.n_categories if s.topic_level == "category" else s.n_parents) + 1
    return FeatureSpec(
        provides=tuple(g for g in FEATURE_GROUPS if g != "tags" or n_tags > 1),
        n_users=s.n_users + 1,
        n_items=s.n_shop_items + s.n_content_items + 1,
        n_categories=s.n_categories + 1,
        n_shops=s.n_shops + 1,
        n_price_buckets=N_PRICE_BUCKETS + 1,
        n_scenarios=len(s.scenarios),
        n_scene_types=N_SCENE_TYPES,
        n_gap_buckets=N_GAP_BUCKETS,
        n_actions=N_ACTIONS + 1,
        profile_sizes=tuple(p + 1 for p in PROFILE_SIZES),
        scenario_names=s.scenario_names,
        seq_len=s.seq_len,
        aiseq_len=s.aiseq_len,
        moveline_len=s.moveline_len,
        lifelong_len=s.lifelong.source_length if s.lifelong.enabled else 0,
        n_tags=n_tags,
    )


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
    #: the users' attributes (profile, interests), when the caller holds them; else the
    #: builder generates them from the ids
    people: Users | None = None

    @classmethod
    def from_state(cls, state, rows: np.ndarray, ts: np.ndarray, scenario: np.ndarray,
                   rings: tuple[str, ...] = RINGS) -> Snapshot:
        """``rings``: which of the user state's rings to copy (a policy that reads no
        sequence needs none)."""
        arrays, masks = {}, {}
        for ring_name in rings:
            ring = getattr(state, ring_name)
            fields = {f: rf for f, (rn, rf) in SNAPSHOT_FIELDS.items() if rn == ring_name}
            # only the fields a snapshot holds, copied once (0 where a row has fewer entries)
            vals, n = ring.gather_as(rows, {rf: ring.data[rf].dtype for rf in fields.values()})
            masks[ring_name] = np.arange(ring.length)[None, :] >= (ring.length - n)[:, None]
            arrays.update({f: vals[rf] for f, rf in fields.items()})
        return cls(state.users.ids[rows], np.asarray(ts, np.float64), np.asarray(scenario, np.int64), arrays, masks,
                   state.users.take(rows))


def _shift(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask & (x >= 0), x + 1, 0)


class FeatureBuilder:
    """Builds feature batches (see :mod:`simab.policies.features`) for a world."""

    def __init__(self, world: World):
        self.world = world
        self.cat = world.catalog
        self.fs = feature_spec_of(world.spec)
        lf = world.spec.lifelong
        #: events of the ``target_lifelong`` group: the target history's cap (none without lifelong)
        self.target_lifelong_len = lf.target_length if lf.enabled else 0

    def _history(self, prefix: str, h: Histories, snap: Snapshot, tags: bool) -> dict[str, np.ndarray]:
        """A lifelong history's keys ``<prefix>_item`` etc. (with ``<prefix>_tag`` when ``tags``)."""
        out = {f"{prefix}_item": _shift(h.item, h.mask), f"{prefix}_cat": _shift(h.category, h.mask),
               f"{prefix}_action": np.where(h.mask, h.action, 0),
               f"{prefix}_gap": np.where(h.mask, gap_bucket(snap.ts[:, None] - h.ts), 0), f"{prefix}_mask": h.mask}
        if tags:
            c = self.cat
            out[f"{prefix}_tag"] = np.where(h.mask, c.tag[h.item] + 1, 0) if c.tag is not None else np.zeros_like(h.item)
        return out

    def build(
        self,
        snap: Snapshot,
        items: np.ndarray,
        groups: tuple[str, ...] | None = None,
        *,
        p_click: np.ndarray | None = None,
        histories: Histories | None = None,
        target_histories: Histories | None = None,
    ) -> dict[str, torch.Tensor]:
        """Assemble a batch for requests ``snap`` with candidates ``items`` [B, C];
        ``histories`` / ``target_histories``: the requests' lifelong source / target-domain
        histories when the caller holds them (else generated here)."""
        groups = tuple(groups or FEATURE_GROUPS)
        c = self.cat
        items = np.asarray(items, np.int64)
        out: dict[str, np.ndarray] = {}
        users = None
        if "profile" in groups or "lifelong" in groups or "target_lifelong" in groups:
            users = snap.people if snap.people is not None else self.world.population.users(snap.users)
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
        if "tags" in groups:
            out["item_tag"] = c.tag[items] + 1 if c.tag is not None else np.zeros_like(items)
        if "lifelong" in groups:
            h = histories if histories is not None else \
                self.world.histories.source(users, max_len=self.fs.lifelong_len or None)
            out.update(self._history("ll", h, snap, "tags" in groups))
        if "target_lifelong" in groups:
            h = target_histories if target_histories is not None else \
                self.world.histories.target(users, max_len=self.target_lifelong_len)
            out.update(self._history("tl", h, snap, "tags" in groups))
        if "oracle" in groups and p_click is not None:
            out["p_click"] = p_click.astype(np.float32)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
