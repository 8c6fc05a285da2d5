"""AMEN's oracle information (issue #30, item 1): how much the logged moveline tells about a
click beyond what a click-sequence model sees, before any model is trained.

Per training / validation row (one exposure of item i, category c, to user u at time t), from
the same per-request snapshot the models read:

* base (what DIN sees, summarised): the scenario (one-hot), the item's log popularity, and the
  short click sequence's evidence for c: log(1 + clicks on c), whether one of the last three
  clicks is on c, log(1 + clicks);
* extra (the moveline match, what AMEN's pathways add): over the moveline's scene-level
  events (search, shop and content visits) of category c before t, the recency-weighted
  count sum 2^(-age / half-life) with the world's intent half-life, the same per scenario
  (intent weighs differently per scenario), log(1 + matches in the last 24 h), and whether
  the latest scene-level event is about c; and the recency-weighted count of the item-level
  events (detail, cart, buy: they follow clicks, whose order the base has but not their time).

The gain is the validation AUC of an L2 logistic regression on base + extra minus that on
base alone (``experiment_kit.logistic_auc_gain``); the marketing channel's gain beside it.
"""

from __future__ import annotations

import experiment_kit as kit
import numpy as np

from simab.simulators.scenes import BUY, CART, CONTENT, DETAIL, SEARCH, SHOP

#: rows per feature chunk (the moveline snapshot is [rows, moveline_len])
CHUNK = 100_000
#: training rows the regression is fitted on (an evenly spaced subset; the fit has < 30
#: coefficients, so 400k rows put its sampling error far below the gains measured)
MAX_TRAIN_ROWS = 400_000
DAY_S = 86400.0


def match_features(ds, rows: np.ndarray, half_life_s: float, n_scenarios: int) -> tuple[np.ndarray, np.ndarray]:
    """(base [n, S + 4], extra [n, S + 4]) features of ``rows`` of a ``LogDataset`` (see the
    module docstring)."""
    snap = ds._snapshot(rows)
    a, m = snap.arrays, snap.masks
    cat = ds.world.catalog.category[ds.item[rows]]
    scen = np.eye(n_scenarios)[ds.scenario[rows]]
    seq_hit = (a["seq_cat"] == cat[:, None]) & m["seq"]
    n_seq = m["seq"].sum(1)
    base = np.column_stack([scen, ds.world.catalog.logpop[ds.item[rows]], np.log1p(seq_hit.sum(1)),
                            seq_hit[:, -3:].any(1), np.log1p(n_seq)])
    scene_level = np.isin(a["ml_scene"], (SEARCH, SHOP, CONTENT)) & m["moveline"]
    age = np.maximum(ds.ts[rows][:, None] - a["ml_ts"], 0.0)
    hit = scene_level & (a["ml_cat"] == cat[:, None])
    decayed = (hit * 0.5 ** (age / half_life_s)).sum(1)
    day = np.log1p((hit & (age < DAY_S)).sum(1))
    # the latest scene-level event (right-aligned snapshots: the last True of each row)
    last = scene_level.shape[1] - 1 - np.argmax(scene_level[:, ::-1], axis=1)
    latest = scene_level.any(1) & hit[np.arange(len(rows)), last]
    item_level = np.isin(a["ml_scene"], (DETAIL, CART, BUY)) & m["moveline"] & (a["ml_cat"] == cat[:, None])
    clicked = (item_level * 0.5 ** (age / half_life_s)).sum(1)
    extra = np.column_stack([scen * decayed[:, None], day, latest, decayed, clicked])
    return base.astype(np.float64), extra.astype(np.float64)


def oracle_rows(ds, is_train: bool) -> np.ndarray:
    """The rows of ``ds`` an oracle fit reads: every validation row, an evenly spaced subset
    of at most ``MAX_TRAIN_ROWS`` training rows."""
    if is_train and ds.n_rows > MAX_TRAIN_ROWS:
        return np.linspace(0, ds.n_rows - 1, MAX_TRAIN_ROWS).astype(np.int64)
    return np.arange(ds.n_rows)


def features(data: kit.WorldData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(base, extra, labels, train_mask, scenario) over an evenly spaced subset of the
    training rows and every validation row."""
    spec = data.world.spec
    half_life = spec.intent.half_life_h * 3600.0
    S = len(spec.scenario_names)
    parts = []
    for ds, is_train in ((data.train, True), (data.val, False)):
        rows = oracle_rows(ds, is_train)
        for s in range(0, len(rows), CHUNK):
            r = rows[s: s + CHUNK]
            b, e = match_features(ds, r, half_life, S)
            parts.append((b, e, ds.label[r], np.full(len(r), is_train), ds.scenario[r]))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(5))


def oracle(data: kit.WorldData) -> dict:
    """The AUC gain of the moveline-match features over the base (validation rows), overall
    and on the marketing channel alone."""
    base, extra, labels, train, scenario = features(data)
    out = dict(kit.logistic_auc_gain(base, extra, labels, train))
    names = data.world.spec.scenario_names
    if "marketing_channel" in names:
        mc = scenario == names.index("marketing_channel")
        focus = kit.logistic_auc_gain(base[mc], extra[mc], labels[mc], train[mc])
        out["gain_marketing_channel"] = focus["gain"]
    return out


def attention_probe(policy, data: kit.WorldData, rows: int = 4096) -> dict:
    """What a trained AMEN's pathways attend to on ``rows`` evenly spaced validation rows (the
    page's measured evidence, issue #30 item 7).  Per pathway: each head's mean attention
    mass on the sequence positions whose category is the target's (``head_mass``), over the
    rows where such a position exists, against the mass uniform attention puts there
    (``chance``: their mean share of the real positions); ``rows_with_match`` is the share
    of rows that have one.  The scene pathway reads the moveline (``ml_*``), the item
    pathway the AISeq (``ais_*``).  Also the moveline reward head's mean contribution to the
    logit on rows whose target category is on the moveline against rows where it is not."""
    groups = tuple(g for g in policy.feature_groups if g != "pairs")
    n = data.val.n_rows
    batch = data.val.batch(np.unique(np.linspace(0, n - 1, min(rows, n)).astype(np.int64)), groups)
    weights = policy.attention_weights(batch)
    out: dict = {"rows": int(batch["label"].shape[0])}
    for name, key in (("scene", "ml"), ("item", "ais")):
        if name not in weights:
            continue
        mask = batch[f"{key}_mask"]
        match = (batch[f"{key}_cat"] == batch["item_cat"][:, :1]) & mask  # [B, L]
        has = match.any(1)
        w = weights[name][:, 0]  # [B, H, L]: one candidate per row
        entry = {"rows_with_match": float(has.float().mean())}
        if has.any():
            mass = (w * match[:, None].float()).sum(-1)[has].mean(0)
            chance = (match.sum(1).float() / mask.sum(1).clamp(min=1).float())[has].mean()
            entry.update(head_mass=[round(float(x), 4) for x in mass], chance=round(float(chance), 4))
        out[name] = entry
    if policy.params["reward_combine"] != "off":
        on_ml = ((batch["ml_cat"] == batch["item_cat"][:, :1]) & batch["ml_mask"]).any(1)
        r = policy.moveline_reward(batch)[:, 0]
        out["reward"] = {"on_moveline": float(r[on_ml].mean()) if on_ml.any() else None,
                         "not_on_moveline": float(r[~on_ml].mean()) if (~on_ml).any() else None,
                         "sd": float(r.std())}
    return out


def attention_lines(results: list[dict]) -> list[str]:
    """The page's table of :func:`attention_probe` per dial value and model seed (none when
    no result has one)."""
    def mass(entry: dict | None) -> str:
        if not entry or "head_mass" not in entry:
            return "n/a"
        return f"{max(entry['head_mass']):.3f} / {entry['chance']:.3f}"

    def reward(entry: dict | None) -> str:
        if not entry or entry.get("on_moveline") is None or entry.get("not_on_moveline") is None:
            return "n/a"
        return f"{entry['on_moveline'] - entry['not_on_moveline']:+.3f}"

    rows = [[f"{r['value']:g}", who, f"{p.get('scene', {}).get('rows_with_match', 0):.3f}", mass(p.get("scene")),
             mass(p.get("item")), reward(p.get("reward"))]
            for r in results for who, p in r.get("moveline_attention", {}).items()]
    if not rows:
        return []
    return ["", "What AMEN's pathways attend to on 4,096 evenly spaced validation rows "
            "(`oracle_amen.attention_probe`): the larger head's mean attention mass on the positions of the "
            "target's category, over the rows that have one, against uniform attention's mass there "
            "(mass / chance); and the moveline reward's mean logit on rows whose target category is on the "
            "logged moveline minus on rows where it is not:", "",
            *kit.md_table(["dial", "model", "rows with the category on the moveline", "scene pathway (moveline)",
                           "item pathway (AISeq)", "reward: on - not on"], rows)]


def oracle_tsp(data: kit.WorldData) -> dict:
    """TSP's oracle information (issue #30, item 2): how much of the click signal is the
    per-user click propensity (``response.user_click_bias_sd``) that a pair of one user's
    rows cancels and a pointwise model has to infer from the user's activity.  The AUC gain
    of adding the user's true click bias to the base and moveline-match features (validation
    rows).  A per-user constant does not rank one user's rows: what pairs gain shows in GAUC,
    which the page reports beside AUC."""
    base, extra, labels, train, _ = features(data)
    users = np.concatenate([ds.user[oracle_rows(ds, t)] for ds, t in ((data.train, True), (data.val, False))])
    ids, row_user = np.unique(users, return_inverse=True)
    per_row = data.world.population.users(ids).click_bias[row_user]
    return dict(kit.logistic_auc_gain(np.column_stack([base, extra]), per_row[:, None], labels, train))
