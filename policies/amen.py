"""AMEN: All-domain Moveline Evolution Network (seed 000, arXiv 2411.11502).

The paper's full text is not available to us; this module follows the seed summary
(section 2.2 and 2.3 as quoted there) and marks every other choice as an assumption
(``docs/models.md``, "AMEN", has the table).  Read top to bottom as the architecture:

1. **Item-to-scene pathway.**  The Active Intention Sequence (AISeq: items seen in
   search-result and shop scenes of the moveline, ``ais_*``) is attended by the target
   item with an item-level multi-head target attention (MHTA).
   *Assumed*: keys are item ⊕ category ⊕ scene-type embeddings, the query is item ⊕
   category of the target; ``n_heads`` heads, width ``attention_dim``.
2. **Scene-to-item pathway.**  ``Prompting()`` maps the target item to a *virtual
   scene-level target* that lives in the space of the moveline's scene tokens (scene
   type ⊕ category ⊕ shop ⊕ time-gap bucket), and a scene-level MHTA lets it attend
   over the moveline.  *Assumed* (``prompt``): ``"aligned"`` fills the category and
   shop slots with the target's own (shared) embeddings and the scene-type and gap
   slots with learned prompt vectors per scenario, then adds a linear map of the
   target's fields; ``"mlp"`` maps the target's fields with an MLP.
3. **Main net** over profile, scenario, target fields, the popularity prior, the short
   click sequence and both pathways -> main logit.  *Assumed*: an MLP (``mlp_units``);
   the click sequence enters through DIN's local activation unit driven by the target
   (``short_seq="din"``, the default since issue #30: AMEN = DIN + the moveline pathways,
   so that AMEN - DIN measures what the moveline adds); ``"mean"`` pools it, ``"none"``
   drops it (the model before issue #30).
4. **Moveline reward head**: an MLP over both pathways' outputs -> a scalar reward
   ``r`` (``reward_inputs="pathways"``; ``"pathways+prompt"`` also feeds the prompt,
   i.e. the target's own fields, which lets the reward carry item-only effects); the
   final logit is ``main + r`` (``reward_combine="add"``), ``main + a·r`` with a learned
   scalar ``a`` (``"scaled"``), or ``main`` alone (``"off"``: no reward head, no TSP).
5. **TSP** (training only): for a row whose dataset found a *diff* row of the same user
   (same scenario by default) with the opposite click label 60 s to 7 days apart
   (mined by ``simab.policies.pair_mining.mine_pairs``; ``tsp_window_s`` and
   ``tsp_same_scenario`` describe how, see :func:`with_pair_rules`), the reward
   of the clicked item is pushed above that of the unclicked one:
   ``L_tsp = mean softplus(-s·(r(target) - r(diff)))`` with ``s = +1`` when the target
   was clicked and ``-1`` otherwise (``tsp_loss="logistic"``; ``"hinge"`` uses
   ``relu(margin - s·Δr)``).  *Assumed*: both rewards use the *current* request's
   moveline (``tsp_context="current"``: the batch carries only the diff item);
   ``"own"`` scores the diff item in its own row's context, which needs batches from
   :class:`PairContextSource`; the loss is a pairwise logistic loss;
   ``L = BCE + tsp_weight·L_tsp``.

Every component can be switched off for ablations: ``use_item_pathway``,
``use_scene_pathway``, ``reward_combine="off"``, ``tsp_weight=0``.

**Attention that learns** (issue #19, ``tests/policies/test_amen_learns.py``).  The
dot-product score is bilinear in embeddings that start at std 1e-2 (~1e-4 of unit size,
and so is its gradient): uniform attention is a saddle.  On a world where the match the
attention should find is the only signal, nothing else grows the embeddings and with
the defaults neither MHTA leaves it in one epoch (the scene one not in three).
``attention_norm=True`` layer-norms each MHTA's query and keys (the keys are also its
values) and ``prompt_init="zero"`` starts the aligned prompt's linear map at zero (its
default bias, about ±1/sqrt(4d), is ten times the embeddings, so the virtual target
hardly depends on the target); with both, each pathway finds its match in one epoch.
They are off by default: on the ``moveline`` world (1000 users, one epoch), where other
signals grow the embeddings, the default scene MHTA does learn (seed 7: per row the
larger head puts 0.63 of its mass on moveline tokens of the target's category, 0.23
uniform; the learning configuration 0.56), and the learning configuration costs validation AUC
(0.786/0.785 -> 0.757/0.774, seeds 7/8).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simab.errors import SimabError
from simab.policies.base import Batch, in_range, layer_sizes, one_of, register_policy
from simab.policies.features import FeatureSpec
from simab.policies.layers import (
    MLP,
    ActivationUnitAttention,
    EmbeddingBank,
    MultiHeadTargetAttention,
    candidate_fields,
    masked_mean,
)
from simab.policies.neural import COMMON_DEFAULTS, COMMON_RULES, NeuralPolicy, check_heads

#: Keys of the diff row's own context that :class:`PairContextSource` adds (prefixed ``pair_ctx_``).
PAIR_CONTEXT_KEYS = ("scenario", "ais_item", "ais_cat", "ais_scene", "ais_mask",
                     "ml_scene", "ml_cat", "ml_shop", "ml_gap", "ml_mask")


class Prompting(nn.Module):
    """Maps target fields ``[B, C, 4, d]`` (item, category, shop, price) and the
    scenario ``[B]`` to a virtual scene token ``[B, C, 4d]`` in the moveline's
    token space (scene type ⊕ category ⊕ shop ⊕ gap).  See the module docstring."""

    def __init__(self, dim: int, n_scenarios: int, mode: str, activation: str, init: str = "default"):
        super().__init__()
        self.mode = mode
        self.dim = dim
        if mode == "aligned":
            self.scene_prompt = nn.Embedding(n_scenarios, dim)
            self.gap_prompt = nn.Embedding(n_scenarios, dim)
            for table in (self.scene_prompt, self.gap_prompt):
                nn.init.normal_(table.weight, std=1e-2)
            self.proj = nn.Linear(4 * dim, 4 * dim)
            if init == "zero":
                # the virtual target starts exactly aligned (the target's own category and
                # shop in their slots); PyTorch's default bias (about ±1/sqrt(4d)) is ten
                # times the embeddings (std 1e-2), so the query hardly depends on the target
                nn.init.zeros_(self.proj.weight)
                nn.init.zeros_(self.proj.bias)
        else:
            self.proj = MLP(4 * dim, [4 * dim], out_dim=4 * dim, activation=activation)

    def forward(self, target: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        flat = target.flatten(-2)  # [B, C, 4d]
        if self.mode == "mlp":
            return self.proj(flat)
        b, c = target.shape[:2]
        scene = self.scene_prompt(scenario)[:, None].expand(b, c, self.dim)
        gap = self.gap_prompt(scenario)[:, None].expand(b, c, self.dim)
        slots = torch.cat([scene, target[..., 1, :], target[..., 2, :], gap], dim=-1)
        return slots + self.proj(flat)


class AMEN(NeuralPolicy):
    name = "amen"
    serve_batch = 256  # requests per scoring call (docs/benchmarks.md, "Neural arms")
    feature_groups = ("profile", "scenario", "target", "short_seq", "aiseq", "moveline", "pairs")
    DEFAULTS: dict[str, Any] = {
        **COMMON_DEFAULTS,
        "attention_dim": 32,
        "n_heads": 2,
        "use_item_pathway": True,
        "use_scene_pathway": True,
        "prompt": "aligned",
        "attention_norm": False,
        "prompt_init": "default",
        "short_seq": "din",
        "attention_units": [64, 32],  # DIN's activation unit over the click sequence (short_seq="din")
        "reward_units": [32],
        "reward_combine": "add",
        "reward_inputs": "pathways",
        "tsp_weight": 0.1,
        "tsp_loss": "logistic",
        "tsp_margin": 1.0,
        "tsp_context": "current",
        # Pair mining is done by the dataset; these record how it must be configured
        # (``with_pair_rules``) and enter the checkpoint's spec.
        "tsp_window_s": [60.0, 604800.0],
        "tsp_same_scenario": True,
    }
    RULES = {
        **COMMON_RULES,
        "attention_dim": in_range(1),
        "n_heads": in_range(1),
        "prompt": one_of("aligned", "mlp"),
        "prompt_init": one_of("zero", "default"),
        "short_seq": one_of("din", "none", "mean"),
        "attention_units": layer_sizes(1),
        "reward_units": layer_sizes(),
        "reward_combine": one_of("add", "scaled", "off"),
        "reward_inputs": one_of("pathways", "pathways+prompt"),
        "tsp_weight": in_range(0.0),
        "tsp_loss": one_of("logistic", "hinge"),
        "tsp_margin": in_range(0.0),
        "tsp_context": one_of("current", "own"),
    }

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)
        p, d = self.params, self.params["embedding_dim"]
        check_heads(self.name, p["attention_dim"], "attention_dim", p["n_heads"])
        window = p["tsp_window_s"]
        if len(window) != 2 or not 0 <= window[0] <= window[1]:
            raise SimabError(f"must be [min_s, max_s] with 0 <= min_s <= max_s, got {list(window)}",
                             key="params.tsp_window_s")
        att = p["attention_dim"]
        self.bank = EmbeddingBank(feature_spec, d, ["item", "cat", "shop", "price", "scenario", "profile",
                                                    "scene", "gap"])
        main_in = feature_spec.input_width(d)
        path_dims = []
        if p["use_item_pathway"]:
            self.item_mhta = MultiHeadTargetAttention(2 * d, 3 * d, att, p["n_heads"], p["dropout"])
            path_dims.append(att)
        if p["use_scene_pathway"]:
            self.scene_mhta = MultiHeadTargetAttention(4 * d, 4 * d, att, p["n_heads"], p["dropout"])
            path_dims.append(att)
        # ``attention_norm``: layer norm on each MHTA's query and keys (see the module
        # docstring); identities, without parameters, otherwise
        def norm(width: int) -> nn.Module:
            return nn.LayerNorm(width) if p["attention_norm"] else nn.Identity()

        if p["use_item_pathway"]:
            self.item_norm_q, self.item_norm_k = norm(2 * d), norm(3 * d)
        if p["use_scene_pathway"]:
            self.scene_norm_q, self.scene_norm_k = norm(4 * d), norm(4 * d)
        self.prompting = Prompting(d, max(feature_spec.n_scenarios, len(feature_spec.scenario_names)),
                                   p["prompt"], p["activation"], p["prompt_init"])
        if p["short_seq"] == "din":
            self.short_attention = ActivationUnitAttention(2 * d, p["attention_units"], activation=p["activation"])
        if p["short_seq"] != "none":
            main_in += 2 * d
        main_in += sum(path_dims)
        self.main = MLP(main_in, p["mlp_units"], out_dim=1, activation=p["activation"], dropout=p["dropout"])
        if p["reward_combine"] != "off":
            reward_in = sum(path_dims) + (4 * d if p["reward_inputs"] == "pathways+prompt" else 0)
            if reward_in == 0:
                raise SimabError("the reward head has no input: switch a pathway on or use "
                                 "reward_inputs='pathways+prompt'", key="params.reward_inputs")
            self.reward_head = MLP(reward_in, p["reward_units"], out_dim=1, activation=p["activation"])
            if p["reward_combine"] == "scaled":
                self.reward_scale = nn.Parameter(torch.ones(()))
        self._tsp_rewards: tuple[torch.Tensor, torch.Tensor] | None = None

    # The two pathways and the reward, for any candidate fields -------------------------
    def _pathways(self, batch: Batch, target: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``target [B, C, 4, d]`` -> (pathway outputs, each ``[B, C, att]``; prompt ``[B, C, 4d]``)."""
        outs = []
        if self.params["use_item_pathway"]:
            outs.append(self.item_mhta(*self._item_attention_inputs(batch, target)))
        prompt = self.prompting(target, batch["scenario"])
        if self.params["use_scene_pathway"]:
            outs.append(self.scene_mhta(*self._scene_attention_inputs(batch, prompt)))
        return outs, prompt

    def _item_attention_inputs(self, batch: Batch, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Item-level MHTA's query (target item ⊕ category), keys (AISeq item ⊕ category ⊕
        scene type), each layer-normed, and mask."""
        query = torch.cat([target[..., 0, :], target[..., 1, :]], dim=-1)
        keys = torch.cat([self.bank.item_key(batch["ais_item"], batch["ais_cat"]),
                          self.bank("scene", batch["ais_scene"])], dim=-1)
        return self.item_norm_q(query), self.item_norm_k(keys), batch["ais_mask"]

    def _scene_attention_inputs(self, batch: Batch, prompt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Scene-level MHTA's query (the virtual scene token), keys (moveline scene tokens),
        each layer-normed, and mask."""
        return self.scene_norm_q(prompt), self.scene_norm_k(self.scene_tokens(batch)), batch["ml_mask"]

    @torch.no_grad()
    def attention_weights(self, batch: Batch) -> dict[str, torch.Tensor]:
        """What each pathway attends to, per head, in eval mode on CPU: ``"item"``
        ``[B, C, H, L_ais]`` over the AISeq and ``"scene"`` ``[B, C, H, L_ml]`` over the
        moveline (only the pathways that are on)."""
        was = self.training
        self.eval()
        try:
            b = self.to_device(batch)
            target = self.bank.target(b)
            out = {}
            if self.params["use_item_pathway"]:
                out["item"] = self.item_mhta.attention_weights(*self._item_attention_inputs(b, target))
            if self.params["use_scene_pathway"]:
                prompt = self.prompting(target, b["scenario"])
                out["scene"] = self.scene_mhta.attention_weights(*self._scene_attention_inputs(b, prompt))
            return {k: v.float().cpu() for k, v in out.items()}
        finally:
            self.train(was)

    def scene_tokens(self, batch: Batch) -> torch.Tensor:
        """Moveline scene tokens: scene type ⊕ category ⊕ shop ⊕ time-gap bucket ``[B, M, 4d]``."""
        return torch.cat([self.bank("scene", batch["ml_scene"]), self.bank("cat", batch["ml_cat"]),
                          self.bank("shop", batch["ml_shop"]), self.bank("gap", batch["ml_gap"])], dim=-1)

    def _reward(self, outs: list[torch.Tensor], prompt: torch.Tensor) -> torch.Tensor:
        parts = [*outs, prompt] if self.params["reward_inputs"] == "pathways+prompt" else outs
        return self.reward_head(torch.cat(parts, dim=-1)).squeeze(-1)

    def _combined_reward(self, reward: torch.Tensor) -> torch.Tensor:
        return reward * self.reward_scale if self.params["reward_combine"] == "scaled" else reward

    def forward(self, batch: Batch) -> torch.Tensor:
        target = self.bank.target(batch)  # [B, C, 4, d]
        fields = candidate_fields(self.bank, batch)
        outs, prompt = self._pathways(batch, target)
        parts = [fields.flatten(-2), batch["item_pop"].unsqueeze(-1), *outs]
        if self.params["short_seq"] == "din":  # DIN's interest: the clicks weighed by the target
            clicks = self.bank.item_key(batch["seq_item"], batch["seq_cat"])
            parts.append(self.short_attention(self.bank.item_key(batch["item"], batch["item_cat"]), clicks,
                                              batch["seq_mask"]))
        elif self.params["short_seq"] == "mean":
            seq = masked_mean(self.bank.item_key(batch["seq_item"], batch["seq_cat"]), batch["seq_mask"])
            parts.append(seq.unsqueeze(1).expand(-1, target.shape[1], -1))
        logit = self.main(torch.cat(parts, dim=-1)).squeeze(-1)
        self._tsp_rewards = None
        if self.params["reward_combine"] == "off":
            return logit
        reward = self._reward(outs, prompt)
        if self.training and self.params["tsp_weight"] > 0 and "pair_item" in batch:
            diff = torch.stack([self.bank("item", batch["pair_item"]), self.bank("cat", batch["pair_cat"]),
                                self.bank("shop", batch["pair_shop"]), self.bank("price", batch["pair_price"])],
                               dim=-2).unsqueeze(1)  # [B, 1, 4, d]
            context = batch
            if self.params["tsp_context"] == "own":
                if "pair_ctx_ml_mask" not in batch:
                    raise SimabError("tsp_context='own' needs batches from PairContextSource (the diff row's "
                                     "own moveline); use tsp_context='current' otherwise", key="params.tsp_context")
                context = {k: batch[f"pair_ctx_{k}"] for k in PAIR_CONTEXT_KEYS}
            d_outs, d_prompt = self._pathways(context, diff)
            self._tsp_rewards = (self._combined_reward(reward[:, 0]),
                                 self._combined_reward(self._reward(d_outs, d_prompt)[:, 0]))
        return logit + self._combined_reward(reward)

    def to_device(self, batch: Batch, device: torch.device | None = None) -> Batch:
        out = super().to_device(batch, device)
        device = device or self.device
        out.update({k: v.to(device, non_blocking=True) for k, v in batch.items() if k.startswith("pair_ctx_")})
        return out

    @torch.no_grad()
    def moveline_reward(self, batch: Batch) -> torch.Tensor:
        """The moveline reward's contribution to the logit ``[B, C]`` (eval mode, CPU)."""
        if self.params["reward_combine"] == "off":
            raise SimabError("this AMEN has no reward head (reward_combine='off')", key="params.reward_combine")
        was = self.training
        self.eval()
        try:
            b = self.to_device(batch)
            outs, prompt = self._pathways(b, self.bank.target(b))
            return self._combined_reward(self._reward(outs, prompt)).float().cpu()
        finally:
            self.train(was)

    def fit(self, train: Any, val: Any = None, **trainer_options: Any) -> dict:
        """Train as any neural policy on the training rows with TSP pairs mined by this
        policy's window and scenario rule (:func:`with_pair_rules`); with
        ``tsp_context="own"`` the batches also carry each diff row's own context
        (:class:`PairContextSource`), so every path that trains through ``fit``
        (``load_or_train``, campaigns, the scripts) trains that variant.  ``train`` itself
        is left as it was (arms with other rules may share it)."""
        source = with_pair_rules(train, self.params)
        if self.params["tsp_context"] == "own" and self.params["tsp_weight"] > 0 and hasattr(source, "pairs"):
            source = PairContextSource(source)
        return super().fit(source, val, **trainer_options)

    def tsp_loss(self, batch: Batch) -> torch.Tensor | None:
        """Pairwise loss on the rewards stashed by the last training ``forward``; ``None``
        when that batch had no usable pair."""
        if self._tsp_rewards is None:
            return None
        r_t, r_d = self._tsp_rewards
        y_t, y_d = batch["label"][:, 0].float(), batch["pair_label"].float()
        valid = batch["pair_mask"] & (y_t != y_d)
        if not bool(valid.any()):
            return None
        sign = (y_t - y_d)[valid]
        gap = sign * (r_t.float()[valid] - r_d.float()[valid])
        if self.params["tsp_loss"] == "hinge":
            return F.relu(self.params["tsp_margin"] - gap).mean()
        return F.softplus(-gap).mean()

    def loss(self, batch: Batch, logits: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        bce, parts = super().loss(batch, logits)
        tsp = self.tsp_loss(batch)
        if tsp is None:
            return bce, parts
        parts["tsp"] = tsp.detach()
        return bce + self.params["tsp_weight"] * tsp, parts


class PairContextSource:
    """A ``LogDataset`` whose training batches also carry each diff row's *own* context
    (its scenario, AISeq and moveline at its own time, keys ``pair_ctx_*``), for
    ``tsp_context="own"``.  Rows without a diff row repeat their own context (their
    pair is masked out anyway)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset
        self.n_rows = dataset.n_rows

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                groups: tuple[str, ...] | None = None) -> Iterator[Batch]:
        ds = self.dataset
        idx = np.random.default_rng(seed).permutation(ds.n_rows) if shuffle else np.arange(ds.n_rows)
        for s in range(0, ds.n_rows, batch_size):
            rows = idx[s: s + batch_size]
            batch = ds.batch(rows, groups)
            if groups is None or "pairs" in groups:
                p = ds.pairs[rows]
                ctx = ds.batch(np.where(p >= 0, p, rows), ("scenario", "aiseq", "moveline"))
                batch.update({f"pair_ctx_{k}": ctx[k] for k in PAIR_CONTEXT_KEYS})
            yield batch


def with_pair_rules(dataset: Any, params: dict) -> Any:
    """``dataset`` with its TSP pairs mined by the rules in AMEN ``params``
    (``tsp_window_s``, ``tsp_same_scenario``; defaults where absent): a new view of a
    ``LogDataset`` whose rules differ, the dataset itself otherwise.  A source without
    pair mining (e.g. synthetic batches) is returned unchanged."""
    if not hasattr(dataset, "with_pair_mining"):
        return dataset
    window = tuple(float(x) for x in params.get("tsp_window_s", AMEN.DEFAULTS["tsp_window_s"]))
    same = bool(params.get("tsp_same_scenario", AMEN.DEFAULTS["tsp_same_scenario"]))
    return dataset.with_pair_mining(window, same)

register_policy("amen", AMEN, AMEN.load)
