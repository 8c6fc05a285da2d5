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

import numpy as np

#: Pseudo-count of the target encodings' shrinkage towards the prior click rate.
SMOOTHING = 20.0
#: Folds of the out-of-fold encoding of training rows (their own label must not enter it).
FOLDS = 5


def shareable_rows(world: Any, source: Any) -> np.ndarray:
    """Whether each row of ``source`` (a ``LogDataset``) belongs to a user of the shared
    segment: the rows worth sharing across scenarios (bool per row)."""
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


def logistic_auc(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 l2: float = 1.0) -> float:
    """Validation AUC of an L2 logistic regression on standardised features (Newton's
    method; a constant column gets a zero coefficient)."""
    from simab.policies.metrics import auc

    mu, sd = x_train.mean(0), x_train.std(0)
    sd = np.where(sd > 1e-12, sd, np.inf)  # a constant column becomes 0
    a = np.column_stack([np.ones(len(x_train)), (x_train - mu) / sd])
    w = np.zeros(a.shape[1])
    reg = np.full(a.shape[1], l2)
    reg[0] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-a @ w))
        grad = a.T @ (p - y_train) + reg * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    b = np.column_stack([np.ones(len(x_val)), (x_val - mu) / sd])
    return float(auc(y_val, b @ w))


def oracle_gain(data: Any) -> dict:
    """The oracle information of a built world and its pre-period (``kit.WorldData``):
    ``gain`` (AUC of the oracle-sharing logistic model over the same model without the
    shared rows, on the segment scenario's validation rows), ``gain_share_all``, the two
    AUCs, the segment's share of the training rows and the rows it was measured on."""
    world, tr, va = data.world, data.train, data.val
    o = world.oracle
    s3 = o.segment_scenario
    n_cat = world.catalog.n_categories
    prof_tr, prof_va = _profile(world, tr.user), _profile(world, va.user)
    cat_tr, cat_va = world.catalog.category[tr.item], world.catalog.category[va.item]
    seg_tr, seg_va = o.in_segment(prof_tr), o.in_segment(prof_va)
    y_tr, y_va = tr.label.astype(np.float64), va.label.astype(np.float64)
    prior = float(y_tr.mean())
    m_tr, m_va = tr.scenario == s3, va.scenario == s3
    pairs = [(0, 6), (2, 4)]  # (age, category), (city, category): the specific part's tables
    base_tr, base_va, full_tr, full_va, all_tr, all_va = [], [], [], [], [], []
    for field, size in pairs:
        k_tr = prof_tr[:, field] * n_cat + cat_tr
        k_va = prof_va[:, field] * n_cat + cat_va
        n_keys = size * n_cat
        own = _encodings(k_tr[m_tr], y_tr[m_tr], k_tr[m_tr], k_va[m_va], n_keys, prior, out_of_fold=True)
        others = ~m_tr
        shared = others & seg_tr
        sh = _encodings(k_tr[shared], y_tr[shared], k_tr[m_tr], k_va[m_va], n_keys, prior, out_of_fold=False)
        everything = _encodings(k_tr[others], y_tr[others], k_tr[m_tr], k_va[m_va], n_keys, prior, out_of_fold=False)
        base_tr.append(own[0])
        base_va.append(own[1])
        full_tr.append(sh[0] * seg_tr[m_tr])
        full_va.append(sh[1] * seg_va[m_va])
        all_tr.append(everything[0])
        all_va.append(everything[1])
    seg_col_tr, seg_col_va = seg_tr[m_tr].astype(float), seg_va[m_va].astype(float)
    xb_tr, xb_va = np.column_stack(base_tr), np.column_stack(base_va)
    xf_tr = np.column_stack([xb_tr, *full_tr, seg_col_tr])
    xf_va = np.column_stack([xb_va, *full_va, seg_col_va])
    xa_tr, xa_va = np.column_stack([xb_tr, *all_tr]), np.column_stack([xb_va, *all_va])
    yt, yv = y_tr[m_tr], y_va[m_va]
    auc_base = logistic_auc(xb_tr, yt, xb_va, yv)
    auc_full = logistic_auc(xf_tr, yt, xf_va, yv)
    auc_all = logistic_auc(xa_tr, yt, xa_va, yv)
    return {"gain": auc_full - auc_base, "auc_base": auc_base, "auc_full": auc_full,
            "gain_share_all": auc_all - auc_base, "segment_share_of_rows": float(seg_tr.mean()),
            "scenario": world.scenario_names[s3], "train_rows": int(m_tr.sum()), "val_rows": int(m_va.sum()),
            "val_clicks": int(yv.sum())}
