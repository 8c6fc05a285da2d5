"""The ``Policy`` protocol and the policy registry.

A policy turns a feature batch (see :mod:`simab.policies.features`) into one score
per candidate.  Campaign specs and ``simab train`` pick policies by name with their
hyper-parameters; :func:`make_policy` validates both and raises a
:class:`~simab.errors.SimabError` naming the offending key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from simab.errors import SimabError
from simab.policies.features import FEATURE_GROUPS, FeatureSpec

Batch = dict[str, torch.Tensor]


@runtime_checkable
class BatchSource(Protocol):
    """Anything that yields feature batches: the world's training logs, a campaign's
    pending requests, or a synthetic dataset in tests."""

    n_rows: int

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0, groups: tuple[str, ...] | None = None
    ) -> Iterator[Batch]:
        """Yield batches holding (at least) the keys of ``groups`` plus labels."""
        ...


@runtime_checkable
class Policy(Protocol):
    """What every ranking policy provides."""

    name: str
    #: Feature groups (keys of ``FEATURE_GROUPS``) the policy reads.
    feature_groups: tuple[str, ...]
    #: Whether ``fit`` learns anything (random/popularity/oracle do not).
    trainable: bool

    def score(self, batch: Batch) -> torch.Tensor:
        """Return scores ``[B, C]``; higher ranks first."""
        ...

    def fit(self, train: BatchSource, val: BatchSource | None = None, **trainer_options: Any) -> dict:
        """Learn from logs; returns validation metrics (``{}`` when not trainable)."""
        ...

    def save(self, directory: str | Path) -> None: ...


PolicyFactory = Callable[[Mapping[str, Any], FeatureSpec], Policy]
_REGISTRY: dict[str, PolicyFactory] = {}
_LOADERS: dict[str, Callable[[Path], Policy]] = {}


def register_policy(name: str, factory: PolicyFactory, loader: Callable[[Path], Policy] | None = None) -> None:
    """Register ``factory(params, feature_spec) -> Policy`` under ``name``."""
    _REGISTRY[name] = factory
    if loader is not None:
        _LOADERS[name] = loader


def policy_names() -> list[str]:
    """Names of every registered policy, sorted."""
    _ensure_builtin()
    return sorted(_REGISTRY)


def make_policy(
    name: str, params: Mapping[str, Any] | None, feature_spec: FeatureSpec, *, key: str = "policy"
) -> Policy:
    """Build a policy by name.

    Raises ``SimabError`` for an unknown name, an unknown or ill-typed
    hyper-parameter, or a feature group the world does not provide.
    """
    _ensure_builtin()
    if name not in _REGISTRY:
        raise SimabError(
            f"unknown policy {name!r}; allowed: {', '.join(sorted(_REGISTRY))}", key=key
        )
    policy = _REGISTRY[name](dict(params or {}), feature_spec)
    missing = [g for g in policy.feature_groups if g not in feature_spec.provides]
    if missing:
        raise SimabError(
            f"policy {name!r} needs feature group(s) {missing} that this world does not provide "
            f"(it provides {list(feature_spec.provides)})",
            key=key,
        )
    unknown = [g for g in policy.feature_groups if g not in FEATURE_GROUPS]
    if unknown:  # a bug in the policy, not a user error
        raise ValueError(f"policy {name!r} declares unknown feature groups {unknown}")
    return policy


def trains(name: str, params: Mapping[str, Any] | None, feature_spec: FeatureSpec, *, key: str = "policy") -> bool:
    """Whether policy ``name`` learns from the pre-period (its ``trainable``), read from its
    class when the registered factory is one (no model is built); another factory's policy
    is built to ask it."""
    _ensure_builtin()
    factory = _REGISTRY.get(name)
    if isinstance(factory, type) and hasattr(factory, "trainable"):
        return bool(factory.trainable)
    return bool(getattr(make_policy(name, params, feature_spec, key=key), "trainable", False))


def build_policy(name: str, params: Mapping[str, Any] | None, feature_spec: FeatureSpec, seed: int,
                 *, key: str = "policy") -> Policy:
    """``make_policy`` with weights initialised from ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make_policy(name, params, feature_spec, key=key)


def has_weights(policy: Policy) -> bool:
    """Whether ``policy`` is a torch module whose learned weights a checkpoint stores
    (every ``NeuralPolicy``; the fixed policies of ``simple.py`` are not)."""
    return isinstance(policy, torch.nn.Module)


#: A parameter rule: returns ``None`` when ``value`` is allowed, else what is allowed
#: (the tail of "must be ..."), e.g. ``"one of ['relu', 'gelu']"``.
Rule = Callable[[Any], "str | None"]


def one_of(*allowed: str) -> Rule:
    """The value must be one of the strings ``allowed``."""

    def rule(v: Any) -> str | None:
        return None if v in allowed else f"one of {list(allowed)}"

    return rule


def in_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
             hi_open: bool = False) -> Rule:
    """The value must lie in the interval from ``lo`` to ``hi`` (closed unless ``*_open``)."""
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    text = " and ".join(parts)

    def rule(v: Any) -> str | None:
        if lo is not None and (v <= lo if lo_open else v < lo):
            return text
        if hi is not None and (v >= hi if hi_open else v > hi):
            return text
        return None

    return rule


def layer_sizes(min_len: int = 0) -> Rule:
    """The value must be a list of integers >= 1 with at least ``min_len`` entries."""
    need = f"a list of at least {min_len} integers >= 1" if min_len else "a list of integers >= 1"

    def rule(v: Any) -> str | None:
        ok = len(v) >= min_len and all(isinstance(u, int) and not isinstance(u, bool) and u >= 1 for u in v)
        return None if ok else need

    return rule


def check_params(name: str, params: Mapping[str, Any], defaults: Mapping[str, Any], *, key: str = "params",
                 rules: Mapping[str, Rule] | None = None) -> dict:
    """Merge ``params`` over ``defaults``; unknown keys, wrong types or values that break
    a rule in ``rules`` are SimabErrors naming ``<key>.<parameter>``.

    Types follow the default's type (an int default also accepts a float only when it
    is integral; a float default accepts ints).
    """
    out = dict(defaults)
    for k, v in params.items():
        if k not in defaults:
            allowed = ", ".join(sorted(defaults)) or "none"
            raise SimabError(f"unknown parameter {k!r} for policy {name!r}; allowed: {allowed}", key=f"{key}.{k}")
        d = defaults[k]
        if isinstance(d, bool):
            ok = isinstance(v, bool)
        elif isinstance(d, int):
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif isinstance(d, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            v = float(v) if ok else v
        elif isinstance(d, str):
            ok = isinstance(v, str)
        elif isinstance(d, (list, tuple)):
            ok = isinstance(v, (list, tuple))
            v = type(d)(v) if ok else v
        elif isinstance(d, dict):
            ok = isinstance(v, dict)
        else:
            ok = True
        if not ok:
            raise SimabError(
                f"parameter {k!r} of policy {name!r} must be {type(d).__name__}, got {type(v).__name__} {v!r}",
                key=f"{key}.{k}",
            )
        out[k] = v
    for k, rule in (rules or {}).items():
        need = rule(out[k])
        if need is not None:
            raise SimabError(f"parameter {k!r} of policy {name!r} must be {need}, got {out[k]!r}", key=f"{key}.{k}")
    return out


_BUILTIN_LOADED = False


def _ensure_builtin() -> None:
    """Import the modules that register the built-in policies (once)."""
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    import importlib

    for mod in ("simab.policies.simple", "simab.policies.zoo"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # zoo may not exist in minimal builds
            if exc.name != mod:
                raise
