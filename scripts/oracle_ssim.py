"""SSIM's oracle information (issue #30, item 1): how much an oracle that knows which
rows are worth sharing gains on the data-starved scenario by sharing them, measured on the
pre-period before any model is trained.

The world (``shared_segment``, docs/world.md "Dials"): the scenario-specific part of the
label is ``T_sc[age, c] + T_sc[city, c]`` (``specific_features``; ``c`` the item's category
or parent category, ``specific_feature_level``), and the users of a ``shared_segment``
share of the (age, gender, city) profile cells follow the part of the segment scenario (s3,
the least traffic) in every scenario.  So their s1/s2 rows are s3 rows in all but name.

The measure is the oracle selector over a multi-task model in its simplest form: a
logistic model of the segment scenario on the mechanism's own features (one-hot ``age x c``
and ``city x c``, an intercept per scenario), MAP-fitted (a N(0, 1) prior on every
coefficient) on that scenario's training rows alone (``base``: its tower without sharing)
and on those rows plus the other scenarios' training rows of the segment's users (``full``:
an oracle sharing exactly the shareable rows).  ``gain`` is the AUC difference on the
segment scenario's validation rows: 0 at ``shared_segment = 0`` by construction (nothing
to share), and the base does not move with the dial (that scenario's label function does
not).  Beside it: ``gain_random``, the same number of the other scenarios' rows drawn at
random (random sharing at the oracle's ratio: ``gain - gain_random`` is the most a
selector can add over random sharing, the headline's ceiling), and ``gain_share_all``
(every other scenario's row shared).

    from oracle_ssim import oracle_gain, shareable_rows
"""

from __future__ import annotations

from typing import Any

import experiment_kit as kit
import numpy as np

#: Prior precision of every coefficient (a N(0, 1) prior): the tables' entries have sd ~1 on
#: the logit scale in the study's world, and an unseen key stays at 0.
PRIOR_PRECISION = 1.0


def shareable_rows(world: Any, source: Any) -> np.ndarray:
    """Whether each row of ``source`` (a ``LogDataset``) is worth sharing across scenarios
    (bool per row): its user belongs to the shared segment, or, in a world without the
    segment's mechanism (``specific_share`` only, issue #19), its item's category has no
    scenario-specific part."""
    if not world.oracle.needs_profile:
        return ~world.oracle.specific_categories[world.catalog.category[source.item]]
    return world.oracle.in_segment(_profile(world, source.user))


def _profile(world: Any, users: np.ndarray) -> np.ndarray:
    ids, inv = np.unique(users, return_inverse=True)
    return world.population.users(ids).profile[inv]


def _design(profile: np.ndarray, column: np.ndarray, scenario: np.ndarray, n_col: int, n_sc: int) -> Any:
    """Sparse one-hot design: ``age x c``, ``city x c`` and the row's scenario (its base rate)."""
    from scipy import sparse

    n = len(column)
    n_age, n_city = int(profile[:, 0].max(initial=0)) + 1, int(profile[:, 2].max(initial=0)) + 1
    n_age, n_city = max(n_age, 6), max(n_city, 4)
    idx = np.column_stack([profile[:, 0] * n_col + column,
                           n_age * n_col + profile[:, 2] * n_col + column,
                           (n_age + n_city) * n_col + scenario])
    width = (n_age + n_city) * n_col + n_sc
    return sparse.csr_matrix((np.ones(idx.size), idx.ravel(), np.arange(0, idx.size + 1, 3)), shape=(n, width))


def oracle_gain(data: Any) -> dict:
    """The oracle information of a built world and its pre-period (``kit.WorldData``): the
    segment scenario's validation AUC of its logistic tower fitted with the oracle's shared
    rows over the same tower fitted on its own rows (``gain``), with as many random rows of
    the other scenarios (``gain_random``) and with all of them (``gain_share_all``)."""
    from simab.policies.metrics import auc

    world, tr, va = data.world, data.train, data.val
    o = world.oracle
    n_sc, target = len(world.scenario_names), o.segment_scenario
    column = o.feature_key if o.feature_key is not None else world.catalog.category
    n_col = int(column.max()) + 1
    prof_tr, prof_va = _profile(world, tr.user), _profile(world, va.user)
    x_tr = _design(prof_tr, column[tr.item], tr.scenario, n_col, n_sc)
    own_va = va.scenario == target
    x_va = _design(prof_va[own_va], column[va.item[own_va]], va.scenario[own_va], n_col, n_sc)
    y_tr, y_va = tr.label.astype(np.float64), va.label[own_va].astype(np.float64)
    own = tr.scenario == target
    seg = o.in_segment(prof_tr)
    shared = ~own & seg
    rng = np.random.default_rng(30)  # which random rows: fixed, so the figure is the world's
    others = np.flatnonzero(~own)
    random = np.zeros(tr.n_rows, bool)
    random[rng.choice(others, int(shared.sum()), replace=False)] = True

    def tower_auc(rows: np.ndarray) -> float:
        w = kit.fit_logistic(x_tr[rows], y_tr[rows], PRIOR_PRECISION, maxiter=500)  # MAP: N(0, 1/PRIOR_PRECISION) prior
        return float(auc(y_va, x_va @ w))

    a_base = tower_auc(own)
    a_full = tower_auc(own | shared) if shared.any() else a_base
    a_random = tower_auc(own | random) if random.any() else a_base
    a_all = tower_auc(np.ones(tr.n_rows, bool))
    return {"auc_base": a_base, "auc_full": a_full, "gain": a_full - a_base,
            "gain_random": a_random - a_base, "gain_share_all": a_all - a_base,
            "scenario": world.scenario_names[target], "shared_rows": int(shared.sum()), "own_rows": int(own.sum()),
            "segment_share_of_rows": float(seg.mean()), "val_rows": int(own_va.sum()), "val_clicks": int(y_va.sum())}
