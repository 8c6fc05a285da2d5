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
#: the smallest alpha: below it no interval is finite in double precision for every metric
MIN_ALPHA = 1e-6
#: a tick shorter than this only adds passes over the users (docs/benchmarks.md, "Tick length")
MIN_TICK_S = 60.0
MAX_LR = 10.0
MAX_USERS = 100_000_000  # the world's n_users bound (simab.simulators.spec.WorldSpec)
MAX_ARMS = 16
DEFAULT_SOURCE = "<default campaign>"



#: A campaign name names its run folder: letters, digits, '_', '.', '-', starting with a
#: letter, digit or '_' (so never '.', '..' or a hidden name), at most 64 characters.
NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"
#: An arm name is a plain identifier (it names folders, report keys and expectations), at
#: most 32 characters, without the comparison separator '_vs_'.
ARM_PATTERN = r"[A-Za-z][A-Za-z0-9_]{0,31}"
#: Shares are allocated in hash buckets of 1/10,000 (``simab.run.assignment``).
MIN_SHARE = 1e-4
#: Seeds are 32-bit (the world's counter-based streams pack them with other indices).
MAX_SEED = 2**32 - 1
#: A spec file larger than this is not a campaign spec (the default is 1 KiB).
MAX_SPEC_BYTES = 1 << 20


def check_name(name: str, *, source: str | None = None, key: str = "name") -> str:
    """A campaign name must be a plain folder name (:data:`NAME_PATTERN`)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SimabError("must use only letters, digits, '_', '.', '-' (it names the run folder)",
                         source=source, key=key)
    if not re.fullmatch(NAME_PATTERN, name):
        if len(name) > 64:
            raise SimabError(f"is {len(name)} characters long; at most 64 (it names the run folder)",
                             source=source, key=key)
        raise SimabError(f"{name!r} is not a plain folder name (it must start with a letter, digit or '_')",
                         source=source, key=key)
    return name


def check_arm_name(name: str, *, source: str | None = None, key: str = "arms") -> str:
    """An arm name must be a plain identifier (:data:`ARM_PATTERN`), without ``_vs_``."""
    if not isinstance(name, str) or not re.fullmatch(ARM_PATTERN, name) or "_vs_" in name:
        raise SimabError(f"arm name {name[:40]!r} is not allowed: a letter, then letters, digits or '_', at most "
                         "32 characters, without '_vs_' (it names folders and report keys)", source=source, key=key)
    return name


class _Strict(BaseModel):
    # strict: a number given as a string (duration_days = "0.2") is refused, not coerced
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ArmSpec(_Strict):
    policy: str
    share: float = Field(ge=MIN_SHARE, le=1.0, description="final allocation share of the randomisation units, at "
                         "least 1/10,000 (one hash bucket)")
    params: dict[str, Any] = {}


class RampStep(_Strict):
    at_day: float = Field(ge=0.0, le=365.0)
    shares: dict[str, float]


class ServingSpec(_Strict):
    max_batch: int | None = Field(None, ge=1, le=100_000,
                                  description="requests per scoring call of a neural policy at most (requests packed "
                                  "by history length); None: the policy's own best (serve_batch, docs/benchmarks.md)")
    max_wait_ms: float = Field(5.0, ge=0.0, le=60_000.0, description="batching window: a request waits U(0, 1) of it")
    base_ms: float = Field(2.0, ge=0.0, le=60_000.0, description="service time of a request before its candidates' cost")
    jitter_sigma: float = Field(0.5, ge=0.0, le=3.0, description="log-normal spread of the service time")
    abandon_after_ms: float | None = Field(None, gt=0.0, le=3_600_000.0,
                                           description="requests slower than this are abandoned")
    tick_s: float = Field(86400.0, ge=MIN_TICK_S, le=365 * 86400.0,
                          description="simulated seconds per tick of the wave engine (outputs do not depend on it; "
                          f"at least {MIN_TICK_S:g}: each tick costs a pass over the shard's users)")
    device: Literal["cpu", "cuda"] = Field("cpu", description="where neural arms score (cuda: a GPU; scores then "
                                           "differ from the CPU's within float tolerance)")


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
    washout_hours: float = Field(0.0, ge=0.0, le=24.0 * 365, description="switchback: hours at the start of each block left out "
                                 "of the analysis (the previous block's carryover)")


class TrainingSpec(_Strict):
    epochs: int = Field(2, ge=1, le=1000)
    batch_size: int = Field(512, ge=1, le=1_000_000)
    lr: float = Field(2e-3, gt=0.0, le=MAX_LR, description=f"learning rate, at most {MAX_LR:g}")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_steps: int | None = Field(None, ge=1, le=1_000_000_000)
    monitor: Literal["auc", "logloss"] = Field("auc", description="what early stopping watches on the validation rows")
    patience: int = Field(2, ge=1, le=1000, description="epochs without a better monitored value before stopping")
    cache: bool = True
    cache_dir: str | None = Field(None, description="pre-period / model cache; None: $SIMAB_CACHE, "
                                  "else $XDG_CACHE_HOME/simab or ~/.cache/simab")

    @model_serializer(mode="wrap")
    def _stopping_only_when_set(self, handler):
        """At the default early-stopping rule a campaign dumps as it did before the rule could
        be set (its spec.json is unchanged)."""
        data = handler(self)
        if isinstance(data, dict):
            for k in ("monitor", "patience"):
                if getattr(self, k) == TrainingSpec.model_fields[k].default:
                    data.pop(k, None)
        return data


#: The shard engines by name (``simab/engine/engines.py`` builds them): the one list.
Engine = Literal["wave", "reference"]
ENGINES: tuple[str, ...] = get_args(Engine)


class CampaignSpec(_Strict):
    name: str = Field(min_length=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    duration_days: float = Field(3.0, gt=0.0, le=365.0)
    alpha: float = Field(0.05, ge=MIN_ALPHA, le=0.5, description=f"significance level, in [{MIN_ALPHA:g}, 0.5]")
    metrics: list[str] = Field(default_factory=lambda: list(METRICS), min_length=1)
    output: str = "runs"
    shards: int = Field(8, ge=1, le=100_000)
    workers: int = Field(1, ge=1, le=1024)
    unit: Literal["user", "session"] = "user"
    salt: str = ""
    control: str | None = None
    truth: Literal["counterfactual", "oracle"] = Field(
        "counterfactual", description="counterfactual: every campaign user simulated under each arm, the "
        "true lift of the population (default); oracle: only each arm's expected values on its own users' "
        "exposures (a realised-group quantity, never used for coverage)")
    rel_method: Literal["delta-log", "delta-linear"] = Field(
        "delta-log", description="relative CI: delta method on the log of the ratio (never below -100%) or the "
        "linear delta method (gbstats' form, truncated at -100%)")
    correction: Literal["holm", "maxt", "bh", "bonferroni", "none"] = Field(
        "holm", description="multiple-testing correction over the confirmatory family; maxt: simultaneous "
        "(max-T over the comparisons' joint normal law)")
    sequential_mde: float = Field(0.05, gt=0.0, le=10.0, description="relative lift the always-valid mSPRT "
                                  "mixture is tuned to (fixed before data)")
    users: int | None = Field(None, ge=2, le=MAX_USERS, description="simulate only the first N users of the world")
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
        if len(set(v)) < len(v):
            raise ValueError(f"a metric is listed twice in {v}")
        return v

    @field_validator("arms")
    @classmethod
    def _arm_names_ok(cls, v: dict[str, ArmSpec]) -> dict[str, ArmSpec]:
        if len(v) < 2:
            raise ValueError("at least two arms are required (a control and a treatment)")
        if len(v) > MAX_ARMS:
            raise ValueError(f"{len(v)} arms; at most {MAX_ARMS}")
        for name in v:
            try:
                check_arm_name(name)
            except SimabError as e:
                raise ValueError(e.message) from None
        return v

    @model_validator(mode="after")
    def _arms_ok(self) -> CampaignSpec:
        if self.control is not None and self.control not in self.arms:
            raise ValueError(f"control {self.control!r} is not an arm; arms: {', '.join(self.arms)}")
        return self

    @property
    def simulated_users(self) -> int:
        """How many users the campaign simulates (``users``, at most the world's)."""
        return min(self.users or self.world.n_users, self.world.n_users)

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
            if not (v == 0.0 or MIN_SHARE <= v <= 1.0):
                raise SimabError(f"share must be 0 or in [{MIN_SHARE:g}, 1] (one hash bucket is 1/10,000), got {v}",
                                 source=source, key=f"ramps.{i}.shares.{a}")
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
        raise SimabError("at least two arms are required, a control and a treatment (add [arms.<name>] tables)",
                         source=source, key="arms")
    if not isinstance(data["arms"], dict):
        raise SimabError("must be a table of [arms.<name>] tables", source=source, key="arms")
    for name in data["arms"]:
        check_arm_name(name, source=source, key=f"arms.{name[:40]}")
    data["world"] = world_spec(data.get("world"), source=source, key="world")
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise pydantic_to_simab(exc, source, model=CampaignSpec) from None
    _check_allocations(spec, source)
    if spec.shards > spec.simulated_users:
        raise SimabError(f"{spec.shards} shards for {spec.simulated_users} users; at most one shard per user "
                         "(each shard costs a pass of its own)", source=source, key="shards")
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
        with p.open("rb") as fh:  # at most one byte past the limit: /dev/zero is not read to its end
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:  # e.g. no read permission
        raise SimabError(f"cannot read the file: {exc.strerror or exc}", source=str(path)) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SimabError(f"larger than {MAX_SPEC_BYTES // 1024} KiB; not a campaign spec", source=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SimabError("not a text file (expected TOML)", source=str(path)) from None
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
    except RecursionError:
        raise SimabError("values nested too deeply for a campaign spec", source=str(path)) from None


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
    key to the command-line flag that set it, so that an error it causes names the flag.
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
    layers: list[tuple[str, dict[str, Any]]] = []
    for flag in dict.fromkeys((flags or {}).values()):
        keys = [k for k, f in (flags or {}).items() if f == flag]
        if flag == "--set":
            layers.append((flag, set_values or {}))
        else:
            layers.append((flag, _pick(data, keys)))
    if set_values and "--set" not in (flags or {}).values():
        layers.append(("--set", set_values))
    base = data
    for flag, values in layers:  # the file without the flags' values (overrides stay the file's)
        if flag != "--set":
            base = _drop(base, values)
    return parse_layers(base, source, layers)


def parse_layers(data: dict[str, Any], source: str, layers: list[tuple[str, dict[str, Any]]]) -> CampaignSpec:
    """Validate ``data`` with each (flag, nested values) layer merged over it in order; an
    error is blamed on the first layer whose addition brings it (the file when the file
    alone has it), so a flag's value is blamed on the flag and a file's on the file and key."""
    merged = data
    for _, values in layers:
        merged = deep_merge(merged, values)
    _check_depth(merged, source)
    try:
        return parse_campaign(merged, source=source)
    except SimabError as e:
        if not layers:
            raise
        blamed = _blame(data, source, layers, e)
        if blamed is None:
            raise
        raise SimabError(e.message, source=blamed, key=e.key) from None


def _blame(data: dict[str, Any], source: str, layers: list[tuple[str, dict[str, Any]]],
           error: SimabError) -> str | None:
    """The flag to blame for ``error`` (None: the file)."""
    for flag, values in reversed(layers):  # a key a flag set is that flag's
        if error.key and any(error.key == k or error.key.startswith(k + ".") for k in flat_keys(values)):
            return flag
    merged = data
    for i in range(len(layers) + 1):
        try:
            parse_campaign(merged, source=source)
        except SimabError as e:
            if e.key == error.key:
                return None if i == 0 else layers[i - 1][0]
        if i < len(layers):
            merged = deep_merge(merged, layers[i][1])
    return layers[-1][0]


def _pick(table: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in keys:
        node, dst, parts = table, out, k.split(".")
        for p in parts[:-1]:
            node = node.get(p, {}) if isinstance(node, dict) else {}
            dst = dst.setdefault(p, {})
        if isinstance(node, dict) and parts[-1] in node:
            dst[parts[-1]] = node[parts[-1]]
    return out


def _drop(table: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``table`` without the leaves ``values`` has (a flag's keys, back to the file's)."""
    out = copy.deepcopy(table)
    for k in flat_keys(values):
        node, parts = out, k.split(".")
        for p in parts[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return out


#: Deeper than this no spec table or array goes (the deepest default key has 4 parts).
MAX_DEPTH = 16


def _check_depth(value: Any, source: str) -> None:
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SimabError(f"tables or arrays nested more than {MAX_DEPTH} deep; not a campaign spec", source=source)
        if isinstance(v, dict):
            stack += [(x, depth + 1) for x in v.values()]
        elif isinstance(v, list):
            stack += [(x, depth + 1) for x in v]
