"""Campaign specs: TOML in, a validated ``CampaignSpec`` out.

Every problem a user can cause (malformed TOML, unknown key, wrong type, negative size,
allocations above 1, unknown policy or preset, no arms, duplicate arm names, missing
file) becomes a :class:`~simab.errors.SimabError` whose one line names the file and the
key path.
"""

from __future__ import annotations

import copy
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

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
from simab.reports.metric_registry import METRIC_NAMES
from simab.simulators.spec import WorldSpec, deep_merge, world_spec

METRICS = METRIC_NAMES  # the report metrics a spec may name (defined in the metric registry)
DEFAULT_SOURCE = "<default campaign>"



def check_name(name: str, *, source: str | None = None, key: str = "name") -> str:
    """A campaign name must be a plain folder name: no separators, not '.' or '..'."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
        raise SimabError("must use only letters, digits, '_', '.', '-' (it names the run folder)",
                         source=source, key=key)
    if set(name) == {"."}:
        raise SimabError(f"{name!r} is not a plain folder name (it names the run folder)",
                         source=source, key=key)
    return name


class _Strict(BaseModel):
    # strict: a number given as a string (duration_days = "0.2") is refused, not coerced
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ArmSpec(_Strict):
    policy: str
    share: float = Field(gt=0.0, le=1.0, description="final allocation share of the randomisation units")
    params: dict[str, Any] = {}


class RampStep(_Strict):
    at_day: float = Field(ge=0.0)
    shares: dict[str, float]


class ServingSpec(_Strict):
    max_batch: int = Field(4, ge=1, le=100_000, description="rows per scoring call of a neural policy (zero-padded; "
                           "small chunks waste least on padding on CPU, docs/benchmarks.md)")
    max_wait_ms: float = Field(5.0, ge=0.0, description="batching window: a request waits U(0, 1) of it")
    base_ms: float = Field(2.0, ge=0.0, description="service time of a request before its candidates' cost")
    jitter_sigma: float = Field(0.5, ge=0.0, le=3.0, description="log-normal spread of the service time")
    abandon_after_ms: float | None = Field(None, gt=0.0, description="requests slower than this are abandoned")
    tick_s: float = Field(86400.0, gt=0.0, le=365 * 86400.0,
                          description="simulated seconds per tick of the wave engine (outputs do not depend on it)")


DESIGNS = ("user", "budget_split", "item", "two_sided", "switchback", "market")


class DesignSpec(_Strict):
    """How the experiment randomises (docs/interference.md).  ``user`` is the classic A/B
    test; the others exist for worlds with interference (``[world.market]``)."""

    kind: Literal["user", "budget_split", "item", "two_sided", "switchback", "market"] = Field(
        "user", description="user: users by hash; budget_split: users, each limited item's units split across the "
        "arms by their shares; item: items (or clusters of them) by hash; two_sided: users and items, treated "
        "when both are; switchback: time blocks by hash; market: whole markets (world.market.n_markets) by hash")
    cluster: Literal["item", "category", "parent", "shop"] = Field(
        "item", description="item and two_sided: the unit of item randomisation (an item, its category, its "
        "parent category or its shop)")
    item_share: float = Field(0.5, gt=0.0, lt=1.0, description="two_sided: share of item clusters in treatment")
    merge: Literal["score", "rank"] = Field(
        "score", description="item and two_sided: how a slate mixes two policies (score: their scores share one "
        "scale; rank: each candidate's rank under its own arm's policy)")
    block_hours: float = Field(24.0, gt=0.0, le=24.0 * 365, description="switchback: length of a time block")
    washout_hours: float = Field(0.0, ge=0.0, description="switchback: hours at the start of each block left out "
                                 "of the analysis (the previous block's carryover)")


class TrainingSpec(_Strict):
    epochs: int = Field(2, ge=1, le=1000)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(2e-3, gt=0.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_steps: int | None = Field(None, ge=1)
    cache: bool = True
    cache_dir: str | None = Field(None, description="pre-period / model cache; None: $SIMAB_CACHE, "
                                  "else $XDG_CACHE_HOME/simab or ~/.cache/simab")


#: The shard engines by name (``simab/engine/engines.py`` builds them): the one list.
Engine = Literal["wave", "reference"]
ENGINES: tuple[str, ...] = get_args(Engine)


class CampaignSpec(_Strict):
    name: str = Field(min_length=1)
    seed: int = Field(0, ge=0)
    duration_days: float = Field(3.0, gt=0.0, le=365.0)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    metrics: list[str] = list(METRICS)
    output: str = "runs"
    shards: int = Field(8, ge=1, le=100_000)
    workers: int = Field(1, ge=1, le=1024)
    unit: Literal["user", "session"] = "user"
    salt: str = ""
    control: str | None = None
    truth: Literal["oracle", "counterfactual"] = "oracle"
    users: int | None = Field(None, ge=2, description="simulate only the first N users of the world")
    world: WorldSpec
    arms: dict[str, ArmSpec]
    ramps: list[RampStep] = []
    serving: ServingSpec = ServingSpec()
    training: TrainingSpec = TrainingSpec()
    engine: Engine = Field("wave", description="wave: batched (default); "
                                                  "reference: one process per user, for tests")
    design: DesignSpec = DesignSpec()

    @model_serializer(mode="wrap")
    def _design_only_when_set(self, handler):
        """A campaign with the default design dumps as it did before designs existed (its
        spec.json is unchanged)."""
        data = handler(self)
        if self.design == DesignSpec() and isinstance(data, dict):
            data.pop("design", None)
        return data

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        try:
            return check_name(v)
        except SimabError as e:
            raise ValueError(e.message) from None

    @field_validator("metrics")
    @classmethod
    def _metrics_ok(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; allowed: {', '.join(METRICS)}")
        return v

    @model_validator(mode="after")
    def _arms_ok(self) -> CampaignSpec:
        if not self.arms:
            raise ValueError("at least one arm is required")
        if self.control is not None and self.control not in self.arms:
            raise ValueError(f"control {self.control!r} is not an arm; arms: {', '.join(self.arms)}")
        return self

    @property
    def control_arm(self) -> str:
        return self.control or next(iter(self.arms))

    def shares_at(self, t_days: float) -> dict[str, float]:
        """Allocation shares in force at ``t_days`` (ramps apply in order)."""
        shares = {a: s.share for a, s in self.arms.items()}
        steps = sorted(self.ramps, key=lambda r: r.at_day)
        if steps:
            shares = dict(_initial_shares(self))
            for step in steps:
                if step.at_day <= t_days:
                    shares.update(step.shares)
        return shares


def _initial_shares(spec: CampaignSpec) -> dict[str, float]:
    """With ramps, ``arms.X.share`` is the share before the first ramp step."""
    return {a: s.share for a, s in spec.arms.items()}


def _check_allocations(spec: CampaignSpec, source: str) -> None:
    arms = list(spec.arms)
    # max share per arm over the schedule: blocks of buckets are reserved up front
    schedule = [spec.shares_at(-1.0)] + [spec.shares_at(r.at_day) for r in sorted(spec.ramps, key=lambda r: r.at_day)]
    for i, r in enumerate(spec.ramps):
        for a, v in r.shares.items():
            if a not in spec.arms:
                raise SimabError(f"unknown arm {a!r}; arms: {', '.join(arms)}", source=source, key=f"ramps.{i}.shares.{a}")
            if not 0.0 <= v <= 1.0:
                raise SimabError(f"share must be in [0, 1], got {v}", source=source, key=f"ramps.{i}.shares.{a}")
    for prev, nxt in zip(schedule, schedule[1:], strict=False):
        for a in arms:
            if nxt[a] < prev[a] - 1e-12:
                raise SimabError(
                    f"arm {a!r} would shrink from {prev[a]} to {nxt[a]}; ramps may only move units into arms "
                    "from the unallocated pool",
                    source=source,
                    key="ramps",
                )
    peak = sum(max(s[a] for s in schedule) for a in arms)
    if peak > 1.0 + 1e-9:
        raise SimabError(
            f"allocation shares sum to {peak:g} (peak over ramps); the total must be at most 1",
            source=source,
            key="arms",
        )


def _check_design(spec: CampaignSpec, source: str) -> None:
    """What a design needs: two arms and no ramps beyond user randomisation, a market for
    budget-split, shares that cover every item or block, deterministic policies to mix."""
    d, market = spec.design, spec.world.market
    if market.enabled and spec.unit != "user":
        raise SimabError("a market needs unit = \"user\" (an unassigned session would not consume)",
                         source=source, key="unit")
    if d.kind == "user":
        return
    if d.kind == "budget_split" and not market.enabled:
        raise SimabError("budget_split splits the market's units: set world.market.enabled = true",
                         source=source, key="design.kind")
    if d.kind == "market" and not (market.enabled and market.n_markets >= 2):
        raise SimabError("market randomisation needs markets: set world.market.enabled = true and "
                         "world.market.n_markets >= 2", source=source, key="design.kind")
    if len(spec.arms) != 2:
        raise SimabError(f"design {d.kind!r} compares two arms, got {len(spec.arms)}", source=source, key="arms")
    if spec.ramps:
        raise SimabError(f"design {d.kind!r} does not take ramps", source=source, key="ramps")
    if spec.unit != "user":
        raise SimabError(f"design {d.kind!r} sets its own units; leave unit = \"user\"", source=source, key="unit")
    if d.kind in ("item", "switchback"):
        total = sum(a.share for a in spec.arms.values())
        if abs(total - 1.0) > 1e-9:
            what = "item clusters" if d.kind == "item" else "time blocks"
            raise SimabError(f"design {d.kind!r} assigns every one of its {what}: the arms' shares must sum to 1, "
                             f"got {total:g}", source=source, key="arms")
    if d.kind == "switchback" and d.washout_hours >= d.block_hours:
        raise SimabError(f"washout_hours ({d.washout_hours:g}) must be shorter than block_hours "
                         f"({d.block_hours:g})", source=source, key="design.washout_hours")


def _check_mixable(spec: CampaignSpec, policies: dict[str, Any], source: str) -> None:
    """Item-side designs rank every slate with both arms' policies: neither may be stochastic."""
    if spec.design.kind not in ("item", "two_sided"):
        return
    for a, p in policies.items():
        if getattr(p, "stochastic", False):
            raise SimabError(f"design {spec.design.kind!r} mixes the arms' scores in one slate; policy "
                             f"{spec.arms[a].policy!r} draws random slates and cannot be mixed",
                             source=source, key=f"arms.{a}.policy")


def parse_campaign(data: dict[str, Any], *, source: str = "<spec>") -> CampaignSpec:
    """Validate a campaign table (already parsed from TOML)."""
    data = copy.deepcopy(data)
    if not isinstance(data, dict):
        raise SimabError("a campaign spec must be a TOML table", source=source)
    if "arms" not in data or not data["arms"]:
        raise SimabError("at least one arm is required (add an [arms.<name>] table)", source=source, key="arms")
    if not isinstance(data["arms"], dict):
        raise SimabError("must be a table of [arms.<name>] tables", source=source, key="arms")
    data["world"] = world_spec(data.get("world"), source=source, key="world")
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise pydantic_to_simab(exc, source, model=CampaignSpec) from None
    _check_allocations(spec, source)
    _check_design(spec, source)
    # every arm's policy must exist with valid parameters for this world
    from simab.policies.base import make_policy
    from simab.policies.world_features import feature_spec_of

    fs = feature_spec_of(spec.world)
    policies = {}
    for a, arm in spec.arms.items():
        try:
            policies[a] = make_policy(arm.policy, arm.params, fs, key=f"arms.{a}.policy")
        except SimabError as e:
            key = e.key if e.key and e.key.startswith("arms.") else f"arms.{a}.{e.key or 'policy'}"
            if e.key and e.key.startswith("params"):
                key = f"arms.{a}.{e.key}"
            raise SimabError(e.message, source=source, key=key) from None
    _check_mixable(spec, policies, source)
    return spec


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise SimabError("file not found", source=str(path))
    if p.is_dir():
        raise SimabError("is a folder; expected a campaign TOML file", source=str(path))
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise SimabError("not a text file (expected TOML)", source=str(path)) from None
    except OSError as exc:  # e.g. no read permission
        raise SimabError(f"cannot read the file: {exc.strerror or exc}", source=str(path)) from None
    seen: set[str] = set()
    for m in re.finditer(r"^\s*\[arms\.([^\].]+)\]\s*$", text, flags=re.M):
        name = m.group(1).strip().strip('"')
        if name in seen:
            raise SimabError(f"duplicate arm name {name!r}; arm names must be unique", source=str(path), key=f"arms.{name}")
        seen.add(name)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SimabError(f"malformed TOML: {exc}", source=str(path)) from None


def default_campaign_table() -> dict[str, Any]:
    return tomllib.loads(resources.files("simab").joinpath("specs", "default.toml").read_text())


def flat_keys(table: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the leaves of a nested table (``{"a": {"b": 1}}`` -> ``["a.b"]``)."""
    out: list[str] = []
    for k, v in table.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        out += flat_keys(v, path) if isinstance(v, dict) and v else [path]
    return out


def load_campaign(
    path: str | Path | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    set_values: dict[str, Any] | None = None,
    flags: dict[str, str] | None = None,
) -> CampaignSpec:
    """Load and validate a campaign TOML (``None``: the embedded default campaign).

    ``overrides`` is a nested table merged over the file (e.g. ``{"seed": 3}``); an
    ``arms`` override replaces the file's arms as a whole (the Python API gives whole arm
    tables).  ``set_values`` (``--set`` pairs as a nested table) are then merged key by key,
    arms included, exactly as ``sweep --grid`` merges its points.  ``flags`` maps a dotted
    key to the command-line flag that set it, so that an error in it names the flag.
    """
    if path is None:
        data, source = default_campaign_table(), DEFAULT_SOURCE
    else:
        data, source = read_toml(path), str(path)
    if overrides:
        merged = deep_merge(data, {k: v for k, v in overrides.items() if k != "arms"})
        if "arms" in overrides:
            merged["arms"] = copy.deepcopy(overrides["arms"])
        data = merged
    if set_values:
        data = deep_merge(data, set_values)
    try:
        return parse_campaign(data, source=source)
    except SimabError as e:
        for key, flag in (flags or {}).items():
            if e.key and (e.key == key or e.key.startswith(key + ".")):
                raise SimabError(e.message, source=flag, key=e.key if flag == "--set" else None) from None
        raise
