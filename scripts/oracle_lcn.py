"""LCN's oracle information (issue #30, item 1): how much the shared tag ids tell about a
click beyond the exact-category search SIM does, before any model is trained.

For each training and validation row of a world's pre-period, from the user's lifelong
source-domain history:

* base (what SIM's hard search reads, plus what every model knows): ``log(1 + n)`` and the
  share of the history's events of the candidate's category, the same for events older than
  ``dormant_recency_days`` (where dormant interests show), the candidate's log popularity and
  the scenario;
* extra (the tag, the id both domains share): ``log(1 + n)`` and the share of events with
  the candidate's tag, and the same for those events of *other* categories (what an exact
  category search cannot find: a parent-level tag seen in a sibling category), all and
  older than ``dormant_recency_days``.

:func:`oracle` fits an L2 logistic regression on the training rows with the base features
and with base + extra, and reports the validation-AUC gain of the second (``gain``).  It
rises with ``topic_share`` when the tag carries the dormant interest; a world without topics
has no tag and a gain of exactly 0.
"""

from __future__ import annotations

from typing import Any

import experiment_kit as kit
import numpy as np

from simab.simulators.units import DAY


def _per_user_counts(hist: Any, keys: np.ndarray, n_keys: int, events: np.ndarray | None = None) -> np.ndarray:
    """``[U, n_keys]`` counts of each user's stored history events per key (``keys [E]``),
    only the events where ``events [E]`` is True when given."""
    user = np.repeat(np.arange(len(hist.offsets) - 1), hist.lengths())
    w = None if events is None else events.astype(np.float64)
    flat = np.bincount(user * n_keys + keys, weights=w, minlength=(len(hist.offsets) - 1) * n_keys)
    return flat.reshape(-1, n_keys)


def features(data: kit.WorldData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(base ``[n, p]``, extra ``[n, q]``, labels ``[n]``, train mask ``[n]``) over the
    training rows followed by the validation rows."""
    world, cat = data.world, data.world.catalog
    train, val = data.train, data.val
    hist = train._histories()  # every user of the log (shared by the split's halves)
    users = train._shared["users"]
    K = cat.n_categories
    ev_cat = hist.category.astype(np.int64)
    old = hist.ts < -world.spec.lifelong.dormant_recency_days * DAY
    by_cat = _per_user_counts(hist, ev_cat, K)
    old_cat = _per_user_counts(hist, ev_cat, K, old)
    n_ev = np.maximum(hist.lengths(), 1).astype(np.float64)
    if cat.tag is not None:
        T = cat.n_tags
        ev_tag = cat.tag[hist.item]
        by_tag = _per_user_counts(hist, ev_tag, T)
        # (category, tag) counts, to take the candidate's own category out of its tag's count
        key = ev_cat * T + ev_tag
        uniq, inv = np.unique(key, return_inverse=True)
        by_cat_tag = _per_user_counts(hist, inv, len(uniq))
        old_tag = _per_user_counts(hist, ev_tag, T, old)
        old_cat_tag = _per_user_counts(hist, inv, len(uniq), old)
    parts_b, parts_e, labels = [], [], []
    for ds in (train, val):
        u = np.searchsorted(users, ds.user)
        c = cat.category[ds.item]
        n = n_ev[u]
        base = [np.log1p(by_cat[u, c]), by_cat[u, c] / n, np.log1p(old_cat[u, c]), old_cat[u, c] / n,
                cat.logpop[ds.item]]
        base += [(ds.scenario == s).astype(np.float64) for s in range(1, len(world.scenario_names))]
        if cat.tag is not None:
            t = cat.tag[ds.item]
            pos = np.searchsorted(uniq, c * T + t)
            found = (pos < len(uniq)) & (uniq[np.minimum(pos, len(uniq) - 1)] == c * T + t)
            col = np.minimum(pos, len(uniq) - 1)
            other = by_tag[u, t] - np.where(found, by_cat_tag[u, col], 0.0)
            old_other = old_tag[u, t] - np.where(found, old_cat_tag[u, col], 0.0)
            extra = [np.log1p(by_tag[u, t]), by_tag[u, t] / n, np.log1p(other), other / n,
                     np.log1p(old_other), old_other / n]
        else:
            extra = [np.zeros(len(u))]
        parts_b.append(np.stack(base, 1))
        parts_e.append(np.stack(extra, 1))
        labels.append(ds.label.astype(np.float64))
    mask = np.concatenate([np.ones(train.n_rows, bool), np.zeros(val.n_rows, bool)])
    return np.concatenate(parts_b), np.concatenate(parts_e), np.concatenate(labels), mask


def oracle(data: kit.WorldData) -> dict:
    """``{"gain", "auc_base", "auc_full"}``: the validation-AUC gain of the tag features over
    the category-search base (module docstring)."""
    base, extra, labels, mask = features(data)
    return dict(kit.logistic_auc_gain(base, extra, labels, mask))


def residual(data: kit.WorldData, logits: np.ndarray) -> dict:
    """What the tag features add to a *trained model's* score, not to the category-search
    base: on the validation rows, a logistic model given the model's logit and the base
    features against one given the tag features too, fitted on the even users' rows and
    scored on the odd users' (then the other way round; the two figures averaged).
    ``logits``: the model's logit for each validation row, in row order.  A gain near 0 means
    the model already knows what the tags tell (or cannot be told it by a linear read-out);
    the oracle's ``gain`` is an upper bound only for models no stronger than its base."""
    base, extra, labels, mask = features(data)
    base, extra, y = base[~mask], extra[~mask], labels[~mask]
    x = np.column_stack([np.asarray(logits, dtype=float), base])
    even = data.val.user % 2 == 0
    halves = [kit.logistic_auc_gain(x, extra, y, side) for side in (even, ~even)]
    return {k: float(np.mean([h[k] for h in halves])) for k in ("auc_base", "auc_full", "gain")}
