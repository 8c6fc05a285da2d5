"""The feature contract between the world's logs and every policy.

This module imports neither torch nor the world: the world's side is
:mod:`simab.policies.world_features` (vocabulary sizes from a world spec, batches from
snapshots), the models' side sizes layers from :class:`FeatureSpec`.

A *batch* is a ``dict[str, torch.Tensor]``.  ``B`` is the number of requests (or
training rows), ``C`` the number of candidates per request (``C == 1`` for training
rows), ``L``/``A``/``M``/``N`` the padded lengths of the short target-domain click
sequence, the Active Intention Sequence (AISeq), the moveline and the lifelong
source-domain sequence.  Index 0 is padding in every id vocabulary, so real ids are
shifted by one; masks are ``True`` on real positions.

Feature groups (a policy declares which it needs in ``Policy.feature_groups``):

``profile``   ``user`` [B] long (user index + 1), ``profile`` [B, P] long
              (categorical profile fields, cardinalities in ``FeatureSpec.profile_sizes``)
``scenario``  ``scenario`` [B] long (0-based scenario index)
``target``    ``item`` / ``item_cat`` / ``item_shop`` / ``item_price`` [B, C] long,
              ``item_pop`` [B, C] float (log popularity prior, known to every policy)
``short_seq`` ``seq_item`` / ``seq_cat`` [B, L] long, ``seq_mask`` [B, L] bool
``aiseq``     ``ais_item`` / ``ais_cat`` / ``ais_scene`` [B, A] long, ``ais_mask`` [B, A]
``moveline``  ``ml_scene`` / ``ml_cat`` / ``ml_shop`` / ``ml_gap`` [B, M] long, ``ml_mask``
``lifelong``  ``ll_item`` / ``ll_cat`` / ``ll_action`` / ``ll_gap`` [B, N] long, ``ll_mask``
``tags``      ``item_tag`` [B, C] long, ``ll_tag`` [B, N] long (aligned with ``ll_item``): the
              item's topic tag, the id both domains share (0 on a world without topics)
``target_lifelong`` ``tl_item`` / ``tl_cat`` / ``tl_action`` / ``tl_gap`` [B, T] long, ``tl_mask``:
              the lifelong *target-domain* (shop) history before the period, up to the world's
              ``lifelong.target_length`` events, oldest first (the short sequence is its newest
              ``L`` events and what the user does since); with ``tags`` also ``tl_tag`` [B, T]
``pairs``     ``pair_item`` / ``pair_cat`` / ``pair_shop`` / ``pair_price`` [B] long,
              ``pair_label`` [B] float, ``pair_mask`` [B] bool (TSP diff items; training only)
``oracle``    ``p_click`` [B, C] float: the world's true click probability (only the
              ``oracle`` policy may declare it)

Labels (training only): ``label`` [B, C] float (click), ``conv`` [B, C] float
(conversion), ``weight`` [B] float (optional, inverse propensity or 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "profile": ("user", "profile"),
    "scenario": ("scenario",),
    "target": ("item", "item_cat", "item_shop", "item_price", "item_pop"),
    "short_seq": ("seq_item", "seq_cat", "seq_mask"),
    "aiseq": ("ais_item", "ais_cat", "ais_scene", "ais_mask"),
    "moveline": ("ml_scene", "ml_cat", "ml_shop", "ml_gap", "ml_mask"),
    "lifelong": ("ll_item", "ll_cat", "ll_action", "ll_gap", "ll_mask"),
    "tags": ("item_tag", "ll_tag"),
    "target_lifelong": ("tl_item", "tl_cat", "tl_action", "tl_gap", "tl_mask"),
    "pairs": ("pair_item", "pair_cat", "pair_shop", "pair_price", "pair_label", "pair_mask"),
    "oracle": ("p_click",),
}

LABEL_KEYS = ("label", "conv", "weight")

#: Embedding fields of the target item: id, category, shop, price bucket.
N_TARGET_FIELDS = 4
#: Embedding fields of a summarised behaviour sequence: item ⊕ category.
N_SEQUENCE_FIELDS = 2


@dataclass(frozen=True)
class FeatureSpec:
    """Vocabulary sizes (including the padding id 0) and padded lengths.

    Built from a world spec by :func:`simab.policies.world_features.feature_spec_of`;
    policies size their embedding tables and layer widths from it, so a policy trained
    on one world refuses another world whose vocabularies differ (the spec is stored in
    the checkpoint).
    """

    n_users: int
    n_items: int
    n_categories: int
    n_shops: int
    n_price_buckets: int
    n_scenarios: int
    n_scene_types: int
    n_gap_buckets: int
    n_actions: int
    profile_sizes: tuple[int, ...]
    scenario_names: tuple[str, ...]
    seq_len: int = 50
    aiseq_len: int = 30
    moveline_len: int = 50
    lifelong_len: int = 2000
    n_tags: int = 1
    provides: tuple[str, ...] = field(default_factory=lambda: tuple(FEATURE_GROUPS))

    @property
    def n_profile_fields(self) -> int:
        """Categorical profile fields, one embedding each."""
        return len(self.profile_sizes)

    def n_fields(self, *, scenario: bool = True, target: bool = True, short_seq: bool = False) -> int:
        """Embedding fields a model stacks per candidate: the profile fields, the
        scenario (``scenario``), the target's four fields (``target``) and the short
        sequence summarised as item ⊕ category (``short_seq``)."""
        return (self.n_profile_fields + int(scenario) + N_TARGET_FIELDS * int(target)
                + N_SEQUENCE_FIELDS * int(short_seq))

    def input_width(self, dim: int, *, scenario: bool = True, target: bool = True, short_seq: bool = False,
                    item_pop: bool = True) -> int:
        """Width of those fields' embeddings (``dim`` each) concatenated, plus one for
        the popularity prior ``item_pop`` when ``item_pop``."""
        return self.n_fields(scenario=scenario, target=target, short_seq=short_seq) * dim + int(item_pop)

    def to_dict(self) -> dict:
        return {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        d = dict(d)
        for k in ("profile_sizes", "scenario_names", "provides"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)
