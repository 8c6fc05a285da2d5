"""SSIM's oracle information (issue #30, item 1): how much an oracle that knows which
users follow the data-starved scenario's label function could gain on that scenario
by sharing their rows, measured on the pre-period before any model is trained.

The world (``shared_segment``, docs/world.md "Dials"): the scenario-specific part of the
label is ``T_sc[age, category] + T_sc[city, category]`` (``specific_features``), and the
users of a ``shared_segment`` share of the (age, gender, city) profile cells follow the
part of ``segment_scenario`` (s3) in every scenario.  So their s1/s2 rows are s3 rows in
all but name.

The measure: on s3's rows, an L2 logistic regression on target encodings of the two
feature pairs that carry the specific part, (age, category) and (city, category),
computed from s3's own training rows (``base``: what a model of s3 learns without
sharing), against the same model given, for the segment's users, the encodings computed
from the s1/s2 training rows of segment users and the membership itself (``full``: an
oracle selector sharing exactly those rows).  ``gain`` is the validation AUC difference
on s3's validation rows; at ``shared_segment = 0`` the extra columns are constant, so the
gain is 0 by construction.  ``gain_share_all`` gives the same model the encodings from
*every* s1/s2 row instead (sharing everything, no selection).

    from oracle_ssim import oracle_gain, shareable_rows
"""

from __future__ import annotations

from typing import Any

import experiment_kit as kit
import numpy as np

#: Pseudo-count of the target encodings' shrinkage towards the prior click rate.
SMOOTHING = 20.0
#: Folds of the out-of-fold encoding of training rows (their own label must not enter it).
FOLDS = 5


def shareable_rows(world: Any, source: Any) -> np.ndarray:
    """Whether each row of ``source`` (a ``LogDataset``) is worth sharing across scenarios
    (bool per row): its user belongs to the shared segment, or, in a world without the
    segment's mechanism (``specific_share`` only, issue #19), its item's category has no
    scenario-specific part."""
    if not world.oracle.needs_profile:
        return ~world.oracle.specific_categories[world.catalog.category[source.item]]
    ids = np.unique(source.user)
    seg = world.oracle.in_segment(world.population.users(ids).profile)
    return seg[np.searchsorted(ids, source.user)]


def _profile(world: Any, users: np.ndarray) -> np.ndarray:
    ids, inv = np.unique(users, return_inverse=True)
    return world.population.users(ids).profile[inv]


def _encode(keys_fit: np.ndarray, y_fit: np.ndarray, keys: np.ndarray, n_keys: int, prior: float) -> np.ndarray:
    """Smoothed click-rate logit of each key in ``keys`` from the rows ``keys_fit`` /
    ``y_fit``, relative to ``prior`` (0 for a key never seen)."""
    n = np.bincount(keys_fit, minlength=n_keys)
    c = np.bincount(keys_fit, weights=y_fit, minlength=n_keys)
    rate = (c + SMOOTHING * prior) / (n + SMOOTHING)
    logit = np.log(rate / (1 - rate)) - np.log(prior / (1 - prior))
    return logit[keys]


def _encodings(keys_fit: np.ndarray, y_fit: np.ndarray, keys_train: np.ndarray, keys_val: np.ndarray,
               n_keys: int, prior: float, *, out_of_fold: bool) -> tuple[np.ndarray, np.ndarray]:
    """Encodings of the training and validation rows; with ``out_of_fold`` the training
    rows are the fit rows themselves and each is encoded from the other folds."""
    val = _encode(keys_fit, y_fit, keys_val, n_keys, prior)
    if not out_of_fold:
        return _encode(keys_fit, y_fit, keys_train, n_keys, prior), val
    fold = np.arange(len(keys_train)) % FOLDS
    train = np.empty(len(keys_train))
    for f in range(FOLDS):
        m = fold == f
        train[m] = _encode(keys_fit[~m], y_fit[~m], keys_train[m], n_keys, prior)
    return train, val


def oracle_gain(data: Any) -> dict:
    """The oracle information of a built world and its pre-period (``kit.WorldData``):
    ``gain``, the validation AUC of the oracle-sharing logistic model over the same model
    without the shared rows, on every scenario's validation rows together (``gain_<s>`` on
    scenario ``s``'s alone); ``gain_share_all`` the same for sharing every other scenario's
    rows (no selection); the segment's share of the training rows."""
    world, tr, va = data.world, data.train, data.val
    o = world.oracle
    n_cat, n_sc = world.catalog.n_categories, len(world.scenario_names)
    prof_tr, prof_va = _profile(world, tr.user), _profile(world, va.user)
    cat_tr, cat_va = world.catalog.category[tr.item], world.catalog.category[va.item]
    seg_tr, seg_va = o.in_segment(prof_tr), o.in_segment(prof_va)
    y_tr, y_va = tr.label.astype(np.float64), va.label.astype(np.float64)
    prior = float(y_tr.mean())
    n_tr, n_va = tr.n_rows, va.n_rows
    cols = {k: (np.zeros((n_tr, 2)), np.zeros((n_va, 2))) for k in ("own", "shared", "all")}
    for j, (field, size) in enumerate([(0, 6), (2, 4)]):  # (age, category), (city, category)
        # keyed by the segment too: the base model may tell the segment's users apart within a
        # scenario from that scenario's own rows (what a tower on the profile fields can learn);
        # the oracle adds only the other scenarios' rows of the segment
        k_tr = (prof_tr[:, field] * n_cat + cat_tr) * 2 + seg_tr
        k_va = (prof_va[:, field] * n_cat + cat_va) * 2 + seg_va
        n_keys = size * n_cat * 2
        for s in range(n_sc):
            m_tr, m_va = tr.scenario == s, va.scenario == s
            others = ~m_tr
            for name, fit_rows, oof in (("own", m_tr, True), ("shared", others & seg_tr, False),
                                        ("all", others, False)):
                e_tr, e_va = _encodings(k_tr[fit_rows], y_tr[fit_rows], k_tr[m_tr], k_va[m_va], n_keys, prior,
                                        out_of_fold=oof)
                cols[name][0][m_tr, j], cols[name][1][m_va, j] = e_tr, e_va
    onehot = lambda sc: np.eye(n_sc)[sc][:, 1:]  # noqa: E731  the scenarios' base rates
    stack = lambda a, b: np.vstack([a, b])  # noqa: E731
    base = stack(np.column_stack([cols["own"][0], onehot(tr.scenario)]),
                 np.column_stack([cols["own"][1], onehot(va.scenario)]))
    shared = stack(cols["shared"][0] * seg_tr[:, None], cols["shared"][1] * seg_va[:, None])
    everything = stack(cols["all"][0], cols["all"][1])
    labels = np.concatenate([y_tr, y_va])
    train_mask = np.arange(n_tr + n_va) < n_tr
    out = kit.logistic_auc_gain(base, shared, labels, train_mask)
    out["gain_share_all"] = kit.logistic_auc_gain(base, everything, labels, train_mask)["gain"]
    # per scenario: the two fitted models' scores on that scenario's validation rows
    for s, name in enumerate(world.scenario_names):
        m = np.concatenate([np.zeros(n_tr, bool), va.scenario == s])
        out[f"gain_{name}"] = _scenario_gain(base, shared, labels, train_mask, m)
    return {**out, "segment_share_of_rows": float(seg_tr.mean()), "val_rows": int(n_va), "val_clicks": int(y_va.sum())}


def _scenario_gain(base: np.ndarray, extra: np.ndarray, labels: np.ndarray, train_mask: np.ndarray,
                   rows: np.ndarray) -> float:
    """The oracle gain on the validation rows ``rows`` only: both logistic models fitted on
    the training rows, scored on those rows (``kit.logistic_auc_gain`` with the other
    validation rows left out of the scoring)."""
    keep = train_mask | rows
    return kit.logistic_auc_gain(base[keep], extra[keep], labels[keep], train_mask[keep])["gain"]
