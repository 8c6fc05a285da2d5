"""SSIM (seed 002, Liu et al., "Scenario Shared Instance Modeling for Click-through Rate
Prediction"): explicit, data-level sharing of training instances across scenarios.

A multi-task backbone ``f(x | θ, {θ_s})`` (``dnn``, ``deepfm``, ``dcn`` with one tower per
scenario on a shared bottom; ``star``, ``hmoe``) is trained with an adaptive selection
network (seed eq. 2)::

    h^l = ReLU(W^l h^{l-1} + b^l)              (MLP over the instance embedding)
    p   = sigmoid((W^k h^L + b^k) / tau)       (hyper-network head of the row's scenario k)
    g   = S(relu(p - epsilon))                 (S: straight-through hard mask)

and the loss of eq. 3, ``L_msr = L(D \\ B_sh) + L_sh(B_sh)`` plus ``lambda * KL(1 || G)``.
Two phases (seed "ARCHITECTURE"/"REUSE"): *search* trains backbone and selector together
(optionally from a backbone first trained as a plain multi-task model, ``warm_start``);
*retrain* restores the backbone's initial weights, freezes the selector, marks the top
``share_ratio`` of training instances by selector score as shared (eq. 4) and trains the
backbone again.  The shared instances are saved (Parquet: instance id = row index in the
training source, its scenario, score, and the source's fingerprint) and can train any
other backbone (``shared_in``), the seed's model-free reuse.

Assumptions (the seed is silent; each is a parameter in ``DEFAULTS``, and
docs/models.md lists them):

* ``L_sh``: a shared instance of scenario ``k`` stays a training instance of its own
  tower (weight 1, as if unshared) and is *added* as one more training instance to every
  other scenario's tower: per row ``BCE_k + g * sum_{s != k} BCE_s``, averaged over the
  batch's rows.  So ``share_ratio = 0`` is exactly the plain multi-task backbone.
* Selector signal: the gradient reaching ``g`` is the mean excess cross-entropy of the
  other towers over the own tower on that row, ``delta = mean_{s != k} BCE_s - BCE_k``
  (detached; the own-tower baseline keeps rows that every tower fits cheaply, e.g. easy
  negatives, from being preferred for being cheap).  With ``KL(1 || G) = -log p`` the
  selector's per-row fixed point is ``p* = lambda / E[delta | x]``: a row is shared
  (``p > eps``) when sharing it costs the other towers less than ``lambda / eps`` nats.
* Gate: forward ``1[p > eps]`` (= ``S(relu(p - eps))``), backward the identity to ``p``
  on both sides of the threshold (``gate_grad = "straight"``), so an unshared row can
  become shared again; ``"relu"`` is the literal STE through the ReLU (no gradient below
  ``eps``), ``ste = False`` the soft mask ``g = p``.
* ``lambda`` ramps linearly from 0 over ``kl_warmup_steps`` search steps; the
  temperature ``tau`` anneals geometrically from ``tau_start`` to ``tau_end`` over
  ``anneal_steps`` search steps.
* Tower of scenario ``s``: the backbone's own per-scenario tower (DNN/DeepFM/DCN with
  ``scenario_heads``; HMoE's towers through its forward) or, for STAR and for
  ``scenario_heads = false``, the backbone evaluated with the row's scenario id replaced
  by ``s``.
* Instance embedding = the backbone's own profile + target field embeddings, detached
  (``selector_detach``), so the selector does not move the backbone's embeddings.  The
  popularity prior is left out (``selector_pop = false``): a non-negative input lets the
  KL term raise every logit through its weight, which made the ranking follow popularity
  (docs/models.md, multiscenario3).
* Retrain: the top ``share_ratio`` of each scenario's training rows (``ratio_scope =
  "per_scenario"``; ``"global"`` ranks all rows together) by the frozen selector's logit
  (monotone in ``p``, which saturates); ``selection = "random"`` draws the shared rows
  uniformly (the MT-Backbone-S row and the SSIM-R ablation) and skips the search.  All
  phases use the trainer options given to :meth:`SSIM.fit`.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn

from simab.errors import SimabError
from simab.policies import trainer
from simab.policies.base import (
    Batch,
    BatchSource,
    in_range,
    layer_sizes,
    make_policy,
    one_of,
    register_policy,
)
from simab.policies.features import FeatureSpec
from simab.policies.layers import MLP, candidate_fields
from simab.policies.neural import COMMON_DEFAULTS, COMMON_RULES, NeuralPolicy

BACKBONES = ("dnn", "deepfm", "dcn", "star", "hmoe")
#: Backbones whose ``scenario_heads`` parameter gives them one tower per scenario.
HEADED = ("dnn", "deepfm", "dcn")
#: Batch key carrying the fixed shared mask during retrain.
SHARED_KEY = "ssim_shared"
SHARED_FILE = "shared_instances.parquet"


def ratio_list(value: Any) -> str | None:
    """Rule of ``ratio_grid``: a list of share ratios in [0, 1] (empty: no tuning).  A ratio
    of 0 shares nothing (the plain multi-task backbone), so validation can choose not to
    share where every sharing hurts."""
    ok = all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x <= 1.0 for x in value)
    return None if ok else "a list of ratios in [0, 1]"


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def straight_through(x: torch.Tensor) -> torch.Tensor:
    """``S(x)``: forward exactly ``1[x > 0]``, backward the identity (Bengio et al. 2013)."""
    return _StraightThrough.apply(x)


def hard_gate(p: torch.Tensor, eps: float) -> torch.Tensor:
    """Forward ``1[p > eps]`` (the value of ``S(relu(p - eps))``), backward ``dg/dp = 1``
    everywhere, also below the threshold."""
    return straight_through(p - eps)


class SelectionNetwork(nn.Module):
    """Seed eq. 2: a shared ReLU MLP and a per-scenario (hyper-network) output layer."""

    def __init__(self, in_dim: int, units: list[int], n_scenarios: int, activation: str):
        super().__init__()
        self.body = MLP(in_dim, units, activation=activation)
        self.heads = nn.Linear(self.body.out_dim, n_scenarios)

    def forward(self, x: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        """``x [B, D]``, ``scenario [B]`` -> the logit of the row's scenario head ``[B]``
        (``p = sigmoid(logit / tau)``)."""
        return self.heads(self.body(x)).gather(1, scenario.unsqueeze(1)).squeeze(1)


class RowSource:
    """A ``BatchSource`` over chosen rows of a source that has ``batch(rows, groups)``
    (``LogDataset``, ``SyntheticSource``), optionally adding the ``ssim_shared`` mask
    (one bool per row of the underlying source)."""

    def __init__(self, source: Any, rows: np.ndarray | None = None, shared: np.ndarray | None = None):
        if not hasattr(source, "batch"):
            raise SimabError("SSIM needs a training source with batch(rows, groups) (a LogDataset)",
                             key="ssim.train")
        self.source = source
        self.rows = np.arange(source.n_rows) if rows is None else np.asarray(rows, dtype=np.int64)
        self.shared = shared
        self.n_rows = len(self.rows)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                groups: tuple[str, ...] | None = None) -> Iterator[Batch]:
        order = np.random.default_rng(seed).permutation(self.n_rows) if shuffle else np.arange(self.n_rows)
        for s in range(0, self.n_rows, batch_size):
            rows = self.rows[order[s:s + batch_size]]
            b = self.source.batch(rows, groups)
            if self.shared is not None:
                b[SHARED_KEY] = torch.from_numpy(self.shared[rows])
            yield b


def source_fingerprint(source: Any) -> str:
    """SHA-256 over the rows' user, scenario, item and label, in row order: what makes a
    saved instance id mean the same row again."""
    h = hashlib.sha256()
    h.update(str(source.n_rows).encode())
    for cols in _row_columns(source):
        for k in ("user", "scenario", "item", "label"):
            h.update(np.ascontiguousarray(cols[k]).astype(np.float64).tobytes())
    return h.hexdigest()


def _row_columns(source: Any) -> Iterator[dict[str, np.ndarray]]:
    """user, scenario, item, label of every row in order: straight from a ``LogDataset``'s
    arrays, otherwise from unshuffled batches."""
    if all(isinstance(getattr(source, k, None), np.ndarray) for k in ("user", "scenario", "item", "label")):
        yield {k: getattr(source, k) for k in ("user", "scenario", "item", "label")}
        return
    for b in source.batches(4096, shuffle=False, groups=("profile", "scenario", "target")):
        yield {"user": b["user"].numpy(), "scenario": b["scenario"].numpy(), "item": b["item"][:, 0].numpy(),
               "label": b["label"][:, 0].numpy()}


def selection_path(directory: str | Path, source: Any, seed: int, fingerprint: str | None = None) -> Path:
    """Where ``selections_dir`` keeps the selection of one training set (or ``fingerprint``)
    and model seed."""
    return Path(directory) / f"{(fingerprint or source_fingerprint(source))[:16]}-seed{seed}.parquet"


def read_ratio(directory: str | Path, source: Any, seed: int) -> float:
    """The share ratio of the selection saved in ``directory`` for these training rows and
    seed (``ratio_of``: a random selection at the ratio a learned one chose)."""
    path = selection_path(directory, source, seed)
    if not path.exists():
        raise SimabError(f"no selection for these training rows and seed {seed} in {directory} (train the "
                         "learned SSIM with selections_dir first)", key="params.ratio_of")
    return float((pq.read_schema(str(path)).metadata or {})[b"share_ratio"].decode())


def save_shared(path: str | Path, table: pa.Table) -> None:
    pq.write_table(table, str(path))


def load_shared(path: str | Path, source: Any) -> np.ndarray:
    """The shared mask (bool per row of ``source``) saved at ``path``; refuses a file
    written for another training source."""
    table = pq.read_table(str(path))
    want = (table.schema.metadata or {}).get(b"fingerprint", b"").decode()
    if want != source_fingerprint(source):
        raise SimabError(f"shared instances at {path} were selected on another training set "
                         "(fingerprint mismatch)", key="params.shared_in")
    mask = np.zeros(source.n_rows, dtype=bool)
    shared = table.column("shared").to_numpy(zero_copy_only=False).astype(bool)
    mask[table.column("instance_id").to_numpy()[shared]] = True
    return mask


class SSIM(NeuralPolicy):
    name = "ssim"
    serve_batch = 256  # requests per scoring call (docs/benchmarks.md, "Neural arms")
    feature_groups = ("profile", "scenario", "target", "short_seq")
    DEFAULTS = {
        **COMMON_DEFAULTS,
        "backbone": "dnn",
        "backbone_params": {},
        "selector_units": [64, 32],
        "selector_detach": True,
        "selector_pop": False,
        "scenario_heads": True,
        "tower_units": 32,
        "warm_start": True,
        "search": "frozen",
        "search_epochs": 1,
        "epsilon": 0.5,
        "kl_weight": 0.01,
        "kl_warmup_steps": 0,
        "ste": True,
        "gate_grad": "straight",
        "selector_baseline": True,
        "tau_start": 1.0,
        "tau_end": 0.2,
        "anneal_steps": 2000,
        "share_ratio": 0.2,
        "ratio_grid": [],
        "sh_norm": "tower",
        "ratio_scope": "per_scenario",
        "selection": "learned",
        "shared_in": "",
        "shared_out": "",
        "selections_dir": "",
        "ratio_of": "",
        "match_labels": False,
    }
    RULES = {
        **COMMON_RULES,
        "backbone": one_of(*BACKBONES),
        "selector_units": layer_sizes(),
        "epsilon": in_range(0.0, 1.0, hi_open=True),
        "tower_units": in_range(1),
        "kl_weight": in_range(0.0),
        "kl_warmup_steps": in_range(0),
        "gate_grad": one_of("straight", "relu"),
        "tau_start": in_range(0.0, lo_open=True),
        "tau_end": in_range(0.0, lo_open=True),
        "anneal_steps": in_range(0),
        "share_ratio": in_range(0.0, 1.0),
        "search": one_of("frozen", "joint"),
        "search_epochs": in_range(1),
        "ratio_grid": ratio_list,
        "sh_norm": one_of("tower", "row"),
        "ratio_scope": one_of("per_scenario", "global"),
        "selection": one_of("learned", "random"),
    }

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)
        p = self.params
        common = {k: p[k] for k in COMMON_DEFAULTS}
        if p["backbone"] in HEADED:
            common.update(scenario_heads=p["scenario_heads"], tower_units=p["tower_units"])
        try:
            self.backbone: NeuralPolicy = make_policy(p["backbone"], {**common, **p["backbone_params"]}, feature_spec)
        except SimabError as exc:  # the common parameters passed the rules above: the culprit is backbone_params
            key = (exc.key or "params").replace("params", "params.backbone_params", 1)
            raise SimabError(exc.message, key=key) from None
        if p["search"] == "frozen" and not p["warm_start"] and p["selection"] == "learned":
            raise SimabError("search = 'frozen' searches over the warm start's towers: it needs warm_start = true "
                             "(or search = 'joint')", key="params.search")
        self.n_scenarios = max(feature_spec.n_scenarios, len(feature_spec.scenario_names))
        d = p["embedding_dim"]
        in_dim = feature_spec.input_width(d, scenario=False, item_pop=p["selector_pop"])
        self.selector = SelectionNetwork(in_dim, list(p["selector_units"]), self.n_scenarios, p["activation"])
        #: The backbone's weights at construction: retrain starts from them (seed: retrain phase).
        self.initial_backbone_state = copy.deepcopy(self.backbone.state_dict())
        self.phase = "search"
        self.search_step = 0
        self.shared_table: pa.Table | None = None
        self._stash: dict[str, torch.Tensor] = {}

    # -- selector -----------------------------------------------------------------
    def tau(self) -> float:
        p = self.params
        frac = min(self.search_step / max(p["anneal_steps"], 1), 1.0)
        return p["tau_start"] * (p["tau_end"] / p["tau_start"]) ** frac

    def kl_weight(self) -> float:
        """``lambda`` at the current search step: a linear ramp from 0 over ``kl_warmup_steps``."""
        p = self.params
        return p["kl_weight"] * min(self.search_step / p["kl_warmup_steps"], 1.0) if p["kl_warmup_steps"] \
            else p["kl_weight"]

    def selector_logit(self, batch: Batch) -> torch.Tensor:
        """Selector logit ``[B]`` of each (C = 1) training row, before the temperature."""
        x = candidate_fields(self.backbone.bank, batch, scenario=False)[:, 0].flatten(1)
        if self.params["selector_pop"]:
            x = torch.cat([x, batch["item_pop"][:, :1]], dim=-1)
        if self.params["selector_detach"]:
            x = x.detach()
        return self.selector(x, batch["scenario"])

    def selector_score(self, batch: Batch, tau: float | None = None) -> torch.Tensor:
        """Selector probability ``p = sigmoid(logit / tau) [B]``."""
        return torch.sigmoid(self.selector_logit(batch) / (self.tau() if tau is None else tau))

    def mask(self, p: torch.Tensor) -> torch.Tensor:
        """Seed eq. 2's ``g = S(relu(p - eps))``: the hard gate with the gradient of
        ``gate_grad`` (or the soft ``p`` without STE)."""
        if not self.params["ste"]:
            return p
        if self.params["gate_grad"] == "relu":
            return straight_through(F.relu(p - self.params["epsilon"]))
        return hard_gate(p, self.params["epsilon"])

    # -- towers -------------------------------------------------------------------
    @property
    def has_heads(self) -> bool:
        """The backbone computes every scenario tower in one pass (``scenario_logits``)."""
        return bool(getattr(self.backbone, "heads_on", False))

    def all_towers(self, batch: Batch, rows: torch.Tensor) -> torch.Tensor:
        """Logits ``[len(rows), S]`` of every scenario tower for the chosen rows."""
        n_s = self.n_scenarios
        sub = {k: v[rows] for k, v in batch.items()
               if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == batch["label"].shape[0]}
        if self.has_heads:
            return self.backbone.scenario_logits(sub)[:, 0]
        sub = {k: v.repeat_interleave(n_s, dim=0) for k, v in sub.items()}
        sub["scenario"] = torch.arange(n_s, device=rows.device).repeat(len(rows))
        return self.backbone(sub)[:, 0].view(len(rows), n_s)

    def forward(self, batch: Batch) -> torch.Tensor:
        if not self.training or self.phase == "mt":
            self._stash = {}
            return self.backbone(batch)
        n = batch["label"].shape[0]
        if self.has_heads:  # every tower in one pass: the own column is the backbone's logit
            towers = self.backbone.scenario_logits(batch)[:, 0]
            own = towers.gather(1, batch["scenario"].unsqueeze(1))
        else:
            own = self.backbone(batch)
            towers = None
        if self.phase == "search":
            p = self.selector_score(batch)
            g = self.mask(p)
            self.search_step += 1
            self._stash = {"p": p, "g": g}
            rows = torch.arange(n, device=own.device)  # the selector's signal needs every row's towers
        else:
            g = batch[SHARED_KEY].to(own.dtype)
            self._stash = {"g": g}
            rows = torch.nonzero(g.detach() > 0).squeeze(1)
        if towers is not None:
            towers = towers[rows]
        elif len(rows):
            towers = self.all_towers(batch, rows)
        else:
            towers = own.new_zeros(0, self.n_scenarios)
        self._stash.update(rows=rows, towers=towers)
        return own

    def loss(self, batch: Batch, logits: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Seed eq. 3 (search) / eq. 4 (retrain); plain BCE outside training.

        Backbone: ``mean_i [BCE_own(i) + g_i * sum_{s != k_i} BCE_s(i)]`` (own-tower weight 1,
        a shared row is one more instance of every other tower).  Selector (search):
        ``mean_i [g_i * delta_i] + lambda * mean_i [-log p_i]`` with the detached
        ``delta_i = mean_{s != k_i} BCE_s(i) - BCE_own(i)`` (``selector_baseline``; without
        it the own term is dropped)."""
        if not self.training or not self._stash:
            return super().loss(batch, logits)
        y = batch["label"][:, 0].float()
        # the position tower's bias (position_tower) is the logged row's: the same for every tower
        pos_bias = (self.with_position(batch, torch.zeros_like(logits)).float()[:, 0]
                    if self.position_bias is not None else None)
        own_logits = logits[:, 0].float() if pos_bias is None else logits[:, 0].float() + pos_bias
        own = F.binary_cross_entropy_with_logits(own_logits, y, reduction="none")
        st = self._stash
        self._stash = {}
        rows, g = st["rows"], st["g"].float()
        n_s = self.n_scenarios
        other = torch.zeros_like(own)  # sum over the other towers' BCE, per row
        if len(rows) and n_s > 1:
            towers = st["towers"].float()
            if pos_bias is not None:
                towers = towers + pos_bias[rows].unsqueeze(1)
            per_tower = F.binary_cross_entropy_with_logits(towers, y[rows].unsqueeze(1).expand_as(towers),
                                                           reduction="none")
            not_own = 1.0 - F.one_hot(batch["scenario"][rows], n_s).to(per_tower.dtype)
            other = other.index_put((rows,), (per_tower * not_own).sum(1))
        if self.params["sh_norm"] == "tower" and len(rows) and n_s > 1:
            msr = self._per_tower_msr(own, batch["scenario"], rows, g.detach(), per_tower, not_own)
        else:
            msr = (own + g.detach() * other).mean()
        parts = {"bce": own.mean().detach(), "msr": msr.detach(), "shared_frac": (g.detach() > 0).float().mean()}
        total = msr
        if "p" in st:
            delta = other / max(n_s - 1, 1)
            if self.params["selector_baseline"]:
                delta = delta - own
            delta = delta.detach()
            kl = -torch.log(st["p"].float().clamp_min(1e-6)).mean()
            total = total + (g * delta).mean() + self.kl_weight() * kl
            parts.update(kl=kl.detach(), delta=delta.mean())
        return total, parts

    def _per_tower_msr(self, own: torch.Tensor, scenario: torch.Tensor, rows: torch.Tensor, g: torch.Tensor,
                       per_tower: torch.Tensor, not_own: torch.Tensor) -> torch.Tensor:
        """``L_msr`` normalised per tower: tower ``s`` averages its BCE over its own rows and
        the rows shared into it, ``L_s = (sum_own BCE_s + sum_shared-in g BCE_s) / (n_s + m_s)``,
        and the towers are weighted by their scenario's share of the batch, ``sum_s (n_s / B) L_s``.
        With nothing shared this is the plain multi-task loss (the batch mean of the own BCE);
        a shared row adds one example to each other tower without raising that tower's
        weight (the per-row sum counted a shared row's loss once per other tower)."""
        n_s = self.n_scenarios
        own_hot = F.one_hot(scenario, n_s).to(own.dtype)  # [B, S]
        num = own_hot.T @ own  # [S] own rows' BCE per tower
        count = own_hot.sum(0)  # n_s
        w = g[rows].unsqueeze(1) * not_own  # [R, S] rows shared into each other tower
        num = num + (w * per_tower).sum(0)
        den = count + w.sum(0)
        return (count / own.shape[0] * num / den.clamp_min(1.0)).sum()

    def to_device(self, batch: Batch, device: torch.device | None = None) -> Batch:
        out = super().to_device(batch, device)
        if SHARED_KEY in batch:
            out[SHARED_KEY] = batch[SHARED_KEY].to(device or self.device)
        return out

    # -- two phases ---------------------------------------------------------------
    @torch.no_grad()
    def scores(self, source: Any) -> np.ndarray:
        """The frozen selector's logit of every row of ``source``, in order.  Ranking uses
        the logit, not ``p``: the KL term drives ``p`` into float saturation (many rows
        at exactly 1.0), where ``p`` no longer orders them."""
        was = self.training
        self.eval()
        out = []
        for b in source.batches(4096, shuffle=False, groups=self.feature_groups):
            b = super().to_device(b)
            out.append(self.selector_logit(b).double().cpu().numpy())
        self.train(was)
        return np.concatenate(out) if out else np.zeros(0)

    def select(self, source: Any, seed: int = 0, ratio: float | None = None) -> pa.Table:
        """Mark the top ``ratio`` (default ``share_ratio``) of the rows by selector logit (or
        random rows) as shared; ties are broken at random (seeded), not by row order."""
        n = source.n_rows
        rng = np.random.default_rng([seed, 2])
        tiebreak = rng.random(n)
        if self.params["selection"] == "random":
            logit = tiebreak.copy()
        else:
            logit = self.scores(source)
        scen = np.concatenate([c["scenario"] for c in _row_columns(source)])
        shared = np.zeros(n, dtype=bool)
        ratio = self.params["share_ratio"] if ratio is None else ratio
        groups = [np.arange(n)] if self.params["ratio_scope"] == "global" else \
            [np.flatnonzero(scen == s) for s in np.unique(scen)]
        for rows in groups:
            order = rows[np.lexsort((tiebreak[rows], -logit[rows]))]
            shared[order[:int(round(ratio * len(rows)))]] = True
        score = 1.0 / (1.0 + np.exp(-np.clip(logit / self.params["tau_end"], -700, 700)))
        table = pa.table({"instance_id": np.arange(n, dtype=np.int64), "scenario": scen.astype(np.int64),
                          "score": score.astype(np.float64), "logit": logit.astype(np.float64),
                          "shared": shared})
        meta = {"fingerprint": source_fingerprint(source), "backbone": self.params["backbone"],
                "selection": self.params["selection"], "share_ratio": str(ratio), "seed": str(seed)}
        return table.replace_schema_metadata(meta)

    def select_matched(self, source: Any, learned: pa.Table, seed: int = 0) -> pa.Table:
        """A random selection with as many shared rows as ``learned`` (a learned selection of
        the same rows) in every (scenario, label) group (``match_labels``): random sharing at
        the same ratio *and* the same click share.  A selector can prefer rows that cost
        the other towers little without any row being worth sharing -- the learned one
        shares near-certain negatives (a tenth of the scenario's CTR in the issue #30 study
        at ``shared_segment`` 0), which carry little of the scenario-specific function --
        so an unmatched random selection is not the no-selection baseline it is meant to be."""
        if learned.schema.metadata.get(b"fingerprint", b"").decode() != source_fingerprint(source):
            raise SimabError("the learned selection in ratio_of was made on another training set",
                             key="params.ratio_of")
        cols = list(_row_columns(source))
        scen = np.concatenate([c["scenario"] for c in cols])
        label = np.concatenate([c["label"] for c in cols]) > 0.5
        want = learned.column("shared").to_numpy(zero_copy_only=False).astype(bool)
        n = source.n_rows
        rng = np.random.default_rng([seed, 2])
        tiebreak = rng.random(n)
        shared = np.zeros(n, dtype=bool)
        group = scen.astype(np.int64) * 2 + label
        for g in np.unique(group):
            rows = np.flatnonzero(group == g)
            order = rows[np.argsort(tiebreak[rows], kind="stable")]
            shared[order[:int(want[rows].sum())]] = True
        table = pa.table({"instance_id": np.arange(n, dtype=np.int64), "scenario": scen.astype(np.int64),
                          "score": tiebreak.astype(np.float64), "logit": tiebreak.astype(np.float64),
                          "shared": shared})
        ratio = (learned.schema.metadata or {}).get(b"share_ratio", b"").decode()
        meta = {"fingerprint": source_fingerprint(source), "backbone": self.params["backbone"],
                "selection": "random-matched", "share_ratio": ratio, "seed": str(seed)}
        return table.replace_schema_metadata(meta)

    def reset_backbone(self) -> None:
        """Restore the backbone's initial weights (the retrain phase starts here)."""
        self.backbone.load_state_dict(self.initial_backbone_state)

    def fit(self, train: BatchSource, val: BatchSource | None = None, **trainer_options: Any) -> dict:
        """Search (unless the selection is random or given by ``shared_in``), select,
        then retrain the backbone from its initial weights with the selector frozen."""
        config = trainer.TrainerConfig.from_options(trainer_options)
        base = train
        metrics: dict[str, Any] = {}
        ratio = None
        if self.params["shared_in"]:
            mask = load_shared(self.params["shared_in"], base)
        else:
            ratio = read_ratio(self.params["ratio_of"], base, config.seed) if self.params["ratio_of"] else None
            if self.params["match_labels"]:
                if self.params["selection"] != "random" or not self.params["ratio_of"]:
                    raise SimabError("match_labels draws a random selection like the learned one in ratio_of: it "
                                     "needs selection = 'random' and ratio_of", key="params.match_labels")
                learned = pq.read_table(str(selection_path(self.params["ratio_of"], base, config.seed)))
                self.shared_table = self.select_matched(base, learned, seed=config.seed)
                mask = self.shared_table.column("shared").to_numpy(zero_copy_only=False)
                metrics.update(self._retrain(base, val, config, mask))
                metrics["share_ratio"] = ratio
                return self._phase_totals(metrics)
            if self.params["selection"] == "learned":
                if self.params["warm_start"]:
                    self.phase = "mt"
                    metrics["warm_start"] = trainer.fit(self, RowSource(base), val, config)
                metrics["search"] = self._search(base, val, config)
            if self.params["ratio_grid"] and ratio is None:
                metrics = self._tune_ratio(base, val, config, metrics)
                self._save_selection(base, config.seed)
                return self._phase_totals(metrics)
            self.shared_table = self.select(base, seed=config.seed, ratio=ratio)
            mask = self.shared_table.column("shared").to_numpy(zero_copy_only=False)
            if self.params["shared_out"]:
                save_shared(self.params["shared_out"], self.shared_table)
            self._save_selection(base, config.seed)
        metrics.update(self._retrain(base, val, config, mask))
        metrics["share_ratio"] = self.params["share_ratio"] if ratio is None else ratio
        return self._phase_totals(metrics)

    @staticmethod
    def _phase_totals(metrics: dict) -> dict:
        """The retrain's record is the model's ``train`` record (what serves); beside it the
        steps and seconds of every phase (warm start, search, every retrain of the ratio
        grid) and whether each stopped by the patience rule."""
        phases = [metrics[k]["train"] for k in ("warm_start", "search") if k in metrics]
        phases += [r["train"] for r in metrics.get("ratio_search", [])] or [metrics["train"]]
        metrics["train"]["all_phases"] = {"steps": sum(p["steps"] for p in phases),
                                          "seconds": sum(p["seconds"] for p in phases),
                                          "stopped_by": [p.get("stopped_by") for p in phases]}
        return metrics

    def _search(self, base: Any, val: BatchSource | None, config: trainer.TrainerConfig) -> dict:
        """The search phase: the selector learns which rows the other towers fit as well as
        their own (``search = "joint"``: backbone and selector together, the seed's eq. 3,
        with early stopping like every phase; ``"frozen"``: the backbone as the warm start
        left it, the selector alone for ``search_epochs`` epochs, no early stopping: its
        target, the frozen towers' excess loss, does not move)."""
        self.phase = "search"
        for prm in self.selector.parameters():
            prm.requires_grad_(True)
        if self.params["search"] == "joint":
            return trainer.fit(self, RowSource(base), val, config)
        for prm in self.backbone.parameters():
            prm.requires_grad_(False)
        try:
            return trainer.fit(self, RowSource(base), None, replace(config, epochs=self.params["search_epochs"]))
        finally:
            for prm in self.backbone.parameters():
                prm.requires_grad_(True)

    def _save_selection(self, base: Any, seed: int) -> None:
        """With ``selections_dir``: the selection, named by the training rows and the seed, so
        a random selection at the same ratio (``ratio_of``) can find it."""
        if self.params["selections_dir"] and self.shared_table is not None:
            path = selection_path(self.params["selections_dir"], base, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_shared(path, self.shared_table)

    def _retrain(self, base: Any, val: BatchSource | None, config: trainer.TrainerConfig, mask: np.ndarray) -> dict:
        """The retrain phase: the backbone from its initial weights, the selector frozen,
        ``mask`` the shared rows."""
        self.reset_backbone()
        self.phase = "retrain"
        for prm in self.selector.parameters():
            prm.requires_grad_(False)
        out = trainer.fit(self, RowSource(base, shared=mask), val, config)
        out["shared_frac"] = float(mask.mean()) if len(mask) else 0.0
        return out

    def _tune_ratio(self, base: Any, val: BatchSource | None, config: trainer.TrainerConfig, metrics: dict) -> dict:
        """The seed's choice of the share ratio (eq. 4, "after determining the optimal
        selection ratio"): retrain at every ratio of ``ratio_grid`` and keep the one whose
        retrained backbone is best on the validation rows (by the trainer's monitor:
        lower logloss, or higher AUC); the metrics say which (``share_ratio``) and what
        every ratio gave (``ratio_search``)."""
        if val is None:
            raise SimabError("ratio_grid needs validation rows to choose the ratio", key="params.ratio_grid")
        lower = getattr(config, "monitor", "auc") == "logloss"
        best: tuple[float, dict, dict, pa.Table] | None = None
        tried = []
        for ratio in sorted(self.params["ratio_grid"]):
            table = self.select(base, seed=config.seed, ratio=float(ratio))
            out = self._retrain(base, val, config, table.column("shared").to_numpy(zero_copy_only=False))
            value = out["logloss"] if lower else -out["auc"]
            tried.append({"ratio": float(ratio), "auc": out["auc"], "logloss": out["logloss"],
                          "per_scenario_auc": {k: v["auc"] for k, v in out.get("per_scenario", {}).items()},
                          "train": {k: out["train"].get(k) for k in ("steps", "seconds", "epochs_run", "stopped_by")}})
            if best is None or value < best[0]:
                best = (value, out, copy.deepcopy(self.backbone.state_dict()), table)
        assert best is not None  # the grid is not empty
        _, out, state, self.shared_table = best
        self.backbone.load_state_dict(state)
        if self.params["shared_out"]:
            save_shared(self.params["shared_out"], self.shared_table)
        metrics.update(out)
        metrics["ratio_search"] = tried
        metrics["share_ratio"] = float(self.shared_table.schema.metadata[b"share_ratio"].decode())
        return metrics

    def save_extras(self, directory: str | Path) -> None:
        """Beside the weights: the selection of the search (``shared_instances.parquet``)."""
        if self.shared_table is not None:
            save_shared(Path(directory) / SHARED_FILE, self.shared_table)

    def load_extras(self, directory: str | Path) -> None:
        """After the weights: the selection the search made (``save_extras`` wrote it), so a
        loaded SSIM says which training rows it shared (the frozen selector after the
        retrain phase would not select the same rows again: its input moved)."""
        path = Path(directory) / SHARED_FILE
        if path.exists():
            self.shared_table = pq.read_table(str(path))
            meta = self.shared_table.schema.metadata or {}
            if self.params["selections_dir"] and b"seed" in meta:  # publish it again (a cached model)
                out = selection_path(self.params["selections_dir"], None, int(meta[b"seed"]),
                                     meta[b"fingerprint"].decode())
                out.parent.mkdir(parents=True, exist_ok=True)
                save_shared(out, self.shared_table)


register_policy("ssim", SSIM, SSIM.load)
