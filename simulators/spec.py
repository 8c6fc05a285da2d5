"""World specs: validated, typed, built from a preset TOML plus overrides.

A world table names a ``preset`` (shipped as package data in ``presets/``) and may
override any key of it.  Unknown keys, wrong types and out-of-range values are
rejected with a :class:`~simab.errors.SimabError` naming the key path.
"""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from simab.errors import SimabError, pydantic_to_simab
from simab.simulators import streams


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # "300" is not a number


class InterestSpec(_Strict):
    n_active: int = Field(3, ge=1, le=20, description="active interest categories per user")
    n_dormant: int = Field(2, ge=0, le=20, description="dormant categories: in the lifelong history, rare recently")
    dormant_weight: float = Field(0.35, ge=0.0, le=1.0, description="share of long-term interest on dormant categories")
    dormant_drives_clicks: bool = Field(True, description="switch: dormant interests still drive clicks")
    concentration: float = Field(1.0, gt=0.0, le=100.0, description="Dirichlet concentration of the interest mixture")
    profile_correlation: float = Field(0.6, ge=0.0, le=1.0, description="how strongly profile predicts parent categories")


class IntentSpec(_Strict):
    enabled: bool = Field(True, description="switch: all short-term dynamics (needs, satiation, fatigue)")
    needs_per_day: float = Field(1.0, ge=0.0, le=100.0)
    need_novelty: float = Field(0.4, ge=0.0, lt=1.0, description="share of needs for a category outside the active interests")
    pursuit: float = Field(0.4, ge=0.0, le=1.0, description="P(a scene of a session with a live need is a search/shop visit for it)")
    half_life_h: float = Field(3.0, gt=0.0, le=8760.0)
    strength: float = Field(1.5, ge=0.0, le=20.0)
    item_level: float = Field(0.0, ge=0.0, le=1.0,
                              description="share of a need's pull towards one wanted item of its category (0: the category centroid)")
    scene_first: float = Field(0.8, ge=0.0, le=1.0, description="P(a new need opens a session that starts with a search/shop visit)")
    need_session_delay_min: float = Field(15.0, gt=0.0, le=10080.0, description="mean minutes from a need to the session it opens")
    satiation: bool = True
    satiation_h: float = Field(24.0, gt=0.0, le=8760.0)
    satiation_strength: float = Field(1.5, ge=0.0, le=20.0)
    fatigue: bool = True
    fatigue_per_exposure: float = Field(0.01, ge=0.0, le=10.0)
    fatigue_half_life_h: float = Field(6.0, gt=0.0, le=8760.0)
    interest_drift: float = Field(0.0, ge=0.0, le=1.0, description="per-click pull of long-term interest towards the clicked item")


class SessionSpec(_Strict):
    per_day: float = Field(3.0, gt=0.0, le=100.0, description="mean sessions per user per day at activity 1")
    diurnal_amplitude: float = Field(0.6, ge=0.0, lt=1.0)
    peak_hour: float = Field(20.0, ge=0.0, lt=24.0)
    leave_prob: float = Field(0.3, gt=0.0, le=1.0)
    max_scenes: int = Field(8, ge=1, le=100)
    content_prob: float = Field(0.25, ge=0.0, le=1.0, description="P(a scene is a source-domain content visit)")
    cart_prob: float = Field(0.3, ge=0.0, le=1.0)
    activity_sigma: float = Field(0.5, ge=0.0, le=3.0,
                                  description="log-normal sigma of the per-user session rate (heavy tail of activity)")


class LifelongSpec(_Strict):
    enabled: bool = True
    source_length: int = Field(2000, ge=0, le=100_000)
    target_length: int = Field(200, ge=0, le=100_000)
    span_days: float = Field(365.0, gt=0.0, le=3650.0)
    dormant_recency_days: float = Field(120.0, ge=0.0, le=3650.0, description="dormant interests appear only before this many days ago")
    length_median_share: float = Field(1.0, gt=0.0, le=1.0,
                                       description="median history length as a share of source_length / target_length (the caps)")
    length_sigma: float = Field(0.0, ge=0.0, le=3.0, description="log-normal sigma of the per-user history length (0: every user at the cap)")
    length_activity_corr: float = Field(0.5, ge=-1.0, le=1.0, description="correlation of the log length with the log activity")
    item_affinity: float = Field(0.0, ge=0.0, le=1.0,
                                 description="P(a history event about an interest is an item of the user's topic) (needs n_topics)")


def _drop_at_default(model: BaseModel, data: Any, keys: tuple[str, ...]) -> Any:
    """``data`` (a model's dump) without the ``keys`` whose value is the field's default: a
    field added later dumps as before it existed until it is set, so spec.json, fingerprints
    and caches of worlds that do not use it stay the same."""
    if isinstance(data, dict):
        for key in keys:
            if key in data and getattr(model, key) == type(model).model_fields[key].default:
                data.pop(key)
    return data


class ResponseSpec(_Strict):
    beta: float = Field(2.5, ge=0.0, le=20.0, description="weight of affinity in the click logit")
    gamma: float = Field(0.3, ge=0.0, le=20.0, description="weight of item quality")
    pop_weight: float = Field(0.15, ge=0.0, le=20.0, description="weight of log popularity")
    b_cv: float = Field(-1.5, ge=-20.0, le=20.0)
    beta_cv: float = Field(1.2, ge=0.0, le=20.0)
    price_sensitivity: float = Field(0.35, ge=0.0, le=20.0, description="mean user price sensitivity")
    conversion_propensity_sd: float = Field(0.5, ge=0.0, le=5.0)
    delay_mean_h: float = Field(6.0, gt=0.0, le=8760.0)
    attribution_window_h: float = Field(72.0, gt=0.0, le=8760.0)
    dwell_mu: float = Field(3.0, ge=-10.0, le=12.0, description="log-seconds of dwell at zero affinity")
    dwell_sigma: float = Field(0.6, gt=0.0, le=5.0)
    dwell_slope: float = Field(0.5, ge=0.0, le=10.0)
    user_click_bias_sd: float = Field(0.0, ge=0.0, le=5.0,
                                      description="sd of a per-user click-logit shift (a click propensity that within-user pairs cancel)")
    user_click_bias_activity_corr: float = Field(0.0, ge=-1.0, le=1.0,
                                                 description="correlation of the per-user click bias with log activity")
    user_click_bias_centered: bool = Field(False, description=(
        "shift the per-user click bias by -sd^2/2, so the mean click odds stay those of sd 0 (a lognormal's mean): "
        "the dial of TSP's phenomenon at a fixed base rate (issue #30)"))

    @model_serializer(mode="wrap")
    def _centred_only_when_on(self, handler):
        """Dumps as before ``user_click_bias_centered`` existed while it is off (issue #30's
        rule for its dials: the default world's spec.json, fingerprint and caches stay)."""
        return _drop_at_default(self, handler(self), ("user_click_bias_centered",))


class ScenarioSpec(_Strict):
    surface: Literal["home", "search", "shop", "channel"]
    traffic: float = Field(gt=0.0, le=1e6, description="relative traffic share")
    base_logit: float = Field(-3.0, ge=-20.0, le=20.0)
    position_decay: float = Field(0.7, ge=0.0, le=20.0, description="P(examine | position p) = (1 + p)^-decay")
    w_long: float = Field(1.0, ge=0.0, le=20.0)
    w_intent: float = Field(1.0, ge=0.0, le=20.0)
    specific: float = Field(0.3, ge=0.0, le=20.0, description="scale of the scenario-specific part of the label function")
    slate_size: int = Field(10, ge=1, le=200)
    n_candidates: int = Field(60, ge=1, le=5000)

    @model_validator(mode="after")
    def _slate_fits(self) -> ScenarioSpec:
        if self.slate_size > self.n_candidates:
            raise ValueError(f"slate_size {self.slate_size} exceeds n_candidates {self.n_candidates}")
        return self


class MarketSpec(_Strict):
    """Shared, constrained resources: a daily budget (or stock) per limited item, which clicks
    (or purchases) consume and which every user of a shard's market shares, whatever their arm.
    Off by default; docs/interference.md."""

    enabled: bool = Field(False, description="switch: limited items with daily budgets or stock (interference)")
    n_markets: int = Field(1, ge=1, le=1_000_000, description="users are split by hash into this many markets "
                           "(cities); each has its own units, scaled to its users; shards hold whole markets")
    resource: Literal["budget", "stock"] = Field(
        "budget", description="budget: each click spends one unit of the item's daily budget; "
        "stock: each purchase takes one unit of its daily stock")
    limited: Literal["head", "random"] = Field(
        "head", description="which target items are limited: the most popular (head) or a keyed random set")
    limited_share: float = Field(0.1, gt=0.0, le=0.9, description="share of the target items that are limited")
    capacity: float = Field(10.0, gt=0.0, le=1e9, description="the tightness dial: daily budget (or stock) of each limited "
                            "item, in units per 1,000 users of the market (small = tight)")
    pacing: Literal["none", "even"] = Field(
        "none", description="none: an item sells out when its day's units are gone; even: by each refresh at most "
        "the elapsed share of the day's units may be spent")
    refresh_s: int = Field(900, ge=60, le=86400, description="seconds between updates of the serving index (which "
                           "items are available); must divide a day")

    @field_validator("refresh_s")
    @classmethod
    def _refresh_divides_day(cls, v: int) -> int:
        if 86400 % v:
            raise ValueError(f"{v} must divide a day (86400 s), e.g. 300, 900, 3600")
        return v


CALIBRATIONS = ("realistic", "dense")
MAX_SCENARIOS = 64


#: World fields added by issue #30 (the seeds' dials); dropped from the dump at their defaults,
#: so the default world's spec.json, fingerprint and model caches are those of before.
_DIALS_SINCE_30 = ("topic_level", "topic_share", "specific_features", "specific_feature_sd",
                   "specific_feature_level", "shared_segment", "segment_scenario", "moveline_visible")


#: World fields that change only what some feature groups show (the log of what users did, not
#: what they did): field -> the feature groups whose values can differ between two values of the
#: field.  A policy that reads none of them trains on the same batches at every value, so its
#: checkpoint key leaves the field out (``simab.policies.checkpoint.key_world``) and a dose study
#: over the field trains it once.  tests/policies/test_checkpoint.py checks each declaration
#: against the training batches of two values.
LOG_ONLY_FIELDS: dict[str, tuple[str, ...]] = {"moveline_visible": ("moveline", "aiseq")}


class WorldSpec(_Strict):
    preset: str = "default"
    calibration: Literal["realistic", "dense"] = Field(
        "realistic", description="base rates: realistic (published marketplace figures) or dense (clicks ~15%, CVR ~45%)")
    description: str = ""
    n_users: int = Field(2000, ge=2, le=100_000_000)
    dim: int = Field(16, ge=2, le=256)
    n_parents: int = Field(8, ge=1, le=10_000)
    n_categories: int = Field(40, ge=2, le=100_000)
    n_shop_items: int = Field(4000, ge=10, le=5_000_000)
    n_content_items: int = Field(4000, ge=10, le=5_000_000)
    n_shops: int = Field(200, ge=1, le=1_000_000)
    zipf: float = Field(1.1, gt=0.0, le=5.0, description="popularity exponent")
    category_spread: float = Field(0.35, ge=0.0, le=10.0, description="child centroid noise around the parent")
    item_spread: float = Field(0.45, ge=0.0, le=10.0, description="item latent noise around its category")
    n_topics: int = Field(0, ge=0, le=64, description="topics within each category, shared by both domains (0: none)")
    topic_spread: float = Field(0.6, ge=0.0, le=10.0, description="weight of the topic direction in item latents and user interests")
    topic_level: Literal["category", "parent"] = Field(
        "category", description="where a topic lives: within one category, or across a parent's categories (a tag)")
    topic_share: float = Field(0.0, ge=0.0, le=1.0, description=(
        "topic_level parent: share of a dormant interest carried by its parent-level topic "
        "(0: the exact category; active interests never lean on topics at this level)"))
    scenario_specific: bool = Field(True, description="switch: scenario-specific label parts")
    specific_share: float = Field(1.0, ge=0.0, le=1.0,
                                  description="share of categories whose preference is scenario-specific; the others are shareable")
    specific_features: bool = Field(False, description="the scenario-specific part is a function of features a model "
                                    "sees: T_sc[age, parent category] + T_sc[city, parent category] (else the latent <P_sc u, v>)")
    specific_feature_sd: float = Field(0.3, ge=0.0, le=10.0,
                                       description="sd of the scenario-specific part with specific_features")
    specific_feature_level: Literal["parent", "category"] = Field(
        "parent", description="what the tables of specific_features are indexed by beside age / city: the item's "
        "parent category or its category (5x finer: a data-starved scenario cannot learn it from its own rows)")
    shared_segment: float = Field(0.0, ge=0.0, le=1.0, description="SSIM's dial: share of the (age, gender, city) "
                                  "profile cells whose users follow segment_scenario's specific part in every scenario")
    segment_scenario: str = Field("", description="the scenario the shared segment follows (empty: the one with the "
                                  "least traffic)")
    interest: InterestSpec = InterestSpec()
    intent: IntentSpec = IntentSpec()
    sessions: SessionSpec = SessionSpec()
    lifelong: LifelongSpec = LifelongSpec()
    response: ResponseSpec = ResponseSpec()
    scenarios: dict[str, ScenarioSpec]
    seq_len: int = Field(50, ge=1, le=1000)
    aiseq_len: int = Field(30, ge=1, le=1000)
    moveline_len: int = Field(50, ge=1, le=1000)
    moveline_visible: float = Field(1.0, ge=0.0, le=1.0,
                                    description="P(a moveline event is logged; else it is left out of the log, and a search "
                                    "or shop visit's clicks out of the AISeq): what the log shows, not what the user does")
    logging_epsilon: float = Field(0.3, ge=0.0, le=1.0, description="logging policy exploration share")
    pre_period_days: float = Field(3.0, gt=0.0, le=365.0, description="days of logging-policy traffic used as training data")
    market: MarketSpec = MarketSpec()

    @model_serializer(mode="wrap")
    def _market_only_when_on(self, handler):
        """A world without a market dumps as it did before markets existed, so its spec.json,
        fingerprint and caches are unchanged (the mechanics are off by default)."""
        data = handler(self)
        if not self.market.enabled and isinstance(data, dict):
            data.pop("market", None)
        # likewise for the dials issue #30 added (each off by default): while every one of
        # them is at its default the world dumps as before they existed
        return _drop_at_default(self, data, _DIALS_SINCE_30)

    @model_validator(mode="after")
    def _consistent(self) -> WorldSpec:
        if not self.scenarios:
            raise ValueError("at least one scenario is required")
        if len(self.scenarios) > MAX_SCENARIOS:
            raise ValueError(f"{len(self.scenarios)} scenarios; at most {MAX_SCENARIOS} are allowed")
        if self.segment_scenario and self.segment_scenario not in self.scenarios:
            raise ValueError(f"segment_scenario {self.segment_scenario!r} is not a scenario; allowed: "
                             f"{', '.join(self.scenarios)}")
        if self.n_categories < self.n_parents:
            raise ValueError(f"n_categories ({self.n_categories}) must be >= n_parents ({self.n_parents})")
        if self.interest.n_active + self.interest.n_dormant > self.n_categories:
            raise ValueError("interest.n_active + interest.n_dormant must not exceed n_categories")
        if self.topic_share > 0 and (self.n_topics == 0 or self.topic_level != "parent"):
            raise ValueError("topic_share > 0 needs n_topics > 0 and topic_level = \"parent\"")
        if self.market.enabled:
            # retrieval tops candidates up with random available items: keep enough of them
            free = self.n_shop_items - max(1, round(self.market.limited_share * self.n_shop_items))
            need = 4 * max(sc.n_candidates for sc in self.scenarios.values())
            if free < need:
                raise ValueError(f"market.limited_share {self.market.limited_share:g} leaves {free} unlimited shop "
                                 f"items; retrieval needs at least 4 x n_candidates = {need}: lower limited_share")
        return self

    @property
    def scenario_names(self) -> tuple[str, ...]:
        return tuple(self.scenarios)


PRESETS = ("default", "moveline", "lifelong", "multiscenario3", "multiscenario4", "sharing")


def _preset_doc(name: str, source: str | None, key: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise SimabError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}", source=source, key=key)
    return tomllib.loads(resources.files("simab.simulators").joinpath("presets", f"{name}.toml").read_text())


def preset_table(name: str, *, source: str | None = None, key: str = "world.preset",
                 calibration: str = "realistic") -> dict[str, Any]:
    """The raw TOML table of a shipped preset: its ``[world]`` table (the realistic
    calibration), with its ``[dense]`` table merged over it for ``calibration = "dense"``."""
    doc = _preset_doc(name, source, key)
    if calibration not in CALIBRATIONS:
        raise SimabError(f"unknown calibration {calibration!r}; allowed: {', '.join(CALIBRATIONS)}",
                         source=source, key=key.rsplit(".", 1)[0] + ".calibration")
    table = doc["world"]
    if calibration == "dense":
        table = deep_merge(table, doc.get("dense", {}))
    return table


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def world_spec(table: dict[str, Any] | str | None = None, *, source: str | None = None, key: str = "world") -> WorldSpec:
    """Validate a world table (``{"preset": ..., overrides...}``) or a preset name."""
    if table is None:
        table = {}
    if isinstance(table, str):
        table = {"preset": table}
    if not isinstance(table, dict):
        raise SimabError("must be a preset name or a table", source=source, key=key)
    name = table.get("preset", "default")
    if not isinstance(name, str):
        raise SimabError(f"must be a string, one of: {', '.join(PRESETS)}", source=source, key=f"{key}.preset")
    calibration = table.get("calibration", "realistic")
    if not isinstance(calibration, str):
        raise SimabError(f"must be a string, one of: {', '.join(CALIBRATIONS)}", source=source, key=f"{key}.calibration")
    base = preset_table(name, source=source, key=f"{key}.preset", calibration=calibration)
    merged = deep_merge(base, table)
    merged["preset"] = name
    if "scenarios" in table and set(table["scenarios"]) - set(base.get("scenarios", {})):
        pass  # new scenarios are allowed; they are validated like the preset's
    try:
        spec = WorldSpec.model_validate(merged)
    except ValidationError as exc:
        raise pydantic_to_simab(exc, source, prefix=key, model=WorldSpec) from None
    streams.check_world(spec, source=source, key=key)
    return spec
