"""Checkpoints of neural policies and the checkpoint cache.

A checkpoint is a directory::

    weights.pt    state_dict (loaded with ``torch.load(weights_only=True)``: no code runs)
    spec.json     {"format": 1, "simab_version", "policy", "params", "feature_spec"}
    metrics.json  offline metrics of the training run

Loading one whose format, simab version, policy, parameters or feature spec differ
from what is asked is refused with a one-line ``SimabError`` naming the file and key.
The cache stores checkpoints under ``sha256(world spec, policy, params, seed, trainer)``
so that campaigns reuse trained policies.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simab.atomic import write_atomic
from simab.errors import SimabError
from simab.policies.base import (
    BatchSource,
    Policy,
    build_policy,
    check_params,
    has_weights,
    make_policy,
)
from simab.policies.features import FeatureSpec
from simab.version import __version__

FORMAT = 1
WEIGHTS_FILE, SPEC_FILE, METRICS_FILE = "weights.pt", "spec.json", "metrics.json"


def _jsonable(x: Any) -> Any:
    """JSON-safe copy: NaN/inf become null, tuples lists, numpy scalars Python numbers."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def canonical_json(x: Any) -> str:
    return json.dumps(_jsonable(x), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def write_metrics(directory: str | Path, metrics: Mapping[str, Any]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(directory / METRICS_FILE, metrics)


def save_checkpoint(policy: nn.Module, directory: str | Path, metrics: Mapping[str, Any] | None = None) -> None:
    """Write ``policy`` (a ``NeuralPolicy``) to ``directory`` (created if needed; each file replaced atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    write_atomic(directory / WEIGHTS_FILE, lambda tmp: torch.save(state, tmp))
    _write_json(directory / SPEC_FILE, {
        "format": FORMAT,
        "simab_version": __version__,
        "policy": policy.name,
        "params": policy.params,
        "feature_spec": policy.feature_spec.to_dict(),
    })
    if metrics is not None or not (directory / METRICS_FILE).exists():
        _write_json(directory / METRICS_FILE, metrics or {})
    save_extras = getattr(policy, "save_extras", None)  # files a policy keeps beside its weights
    if save_extras is not None:
        save_extras(directory)


def read_spec(directory: str | Path) -> dict:
    path = Path(directory) / SPEC_FILE
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise SimabError("not a policy checkpoint (spec.json is missing)", source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise SimabError(f"not valid JSON ({exc.msg}, line {exc.lineno})", source=str(path)) from None
    for k in ("format", "simab_version", "policy", "params", "feature_spec"):
        if k not in spec:
            raise SimabError("missing from the checkpoint spec", source=str(path), key=k)
    return spec


def _first_difference(stored: Mapping[str, Any], asked: Mapping[str, Any]) -> str | None:
    for k in sorted(set(stored) | set(asked)):
        if canonical_json(stored.get(k)) != canonical_json(asked.get(k)):
            return k
    return None


def load_checkpoint(
    directory: str | Path,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    feature_spec: FeatureSpec | None = None,
) -> nn.Module:
    """Load a checkpoint (a ``NeuralPolicy``), refusing it when it is not what the caller asked for.

    ``name``/``params``/``feature_spec`` (each optional) are compared with the stored
    spec; ``params`` are compared after merging the policy's defaults.
    """
    directory = Path(directory)
    spec_path = str(directory / SPEC_FILE)
    spec = read_spec(directory)
    if spec["format"] != FORMAT:
        raise SimabError(f"checkpoint format {spec['format']!r} is not supported (expected {FORMAT})",
                         source=spec_path, key="format")
    if spec["simab_version"] != __version__:
        raise SimabError(f"checkpoint written by simab {spec['simab_version']}, this is {__version__}; retrain it",
                         source=spec_path, key="simab_version")
    if name is not None and spec["policy"] != name:
        raise SimabError(f"checkpoint holds policy {spec['policy']!r}, not {name!r}", source=spec_path, key="policy")
    stored_spec = FeatureSpec.from_dict(spec["feature_spec"])
    with torch.random.fork_rng(devices=[]):
        policy = make_policy(spec["policy"], spec["params"], stored_spec, key="policy")
    if not has_weights(policy):
        raise SimabError(f"policy {spec['policy']!r} is not a neural policy", source=spec_path, key="policy")
    if feature_spec is not None:
        # compared through the current FeatureSpec, so a field added since the checkpoint was
        # written reads as its default (a world without tags has n_tags = 1 either way); of
        # the groups a world provides only those the policy reads count, so a group added
        # since (or one a world provides and this policy ignores) changes nothing
        reads = set(policy.feature_groups)
        stored, asked = (dict(fs.to_dict(), provides=[g for g in fs.provides if g in reads])
                         for fs in (stored_spec, feature_spec))
        diff = _first_difference(stored, asked)
        if diff is not None:
            raise SimabError(
                f"checkpoint was trained on a world with {diff}={stored.get(diff)!r}, "
                f"this world has {asked.get(diff)!r}",
                source=spec_path, key=f"feature_spec.{diff}")
    if params is not None:
        asked = check_params(policy.name, params, type(policy).DEFAULTS, rules=type(policy).RULES)
        diff = _first_difference(policy.params, asked)
        if diff is not None:
            raise SimabError(f"checkpoint has {diff}={policy.params.get(diff)!r}, asked for {asked.get(diff)!r}",
                             source=spec_path, key=f"params.{diff}")
    weights_path = directory / WEIGHTS_FILE
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        policy.load_state_dict(state)
    except FileNotFoundError:
        raise SimabError("weights.pt is missing", source=str(weights_path)) from None
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SimabError(f"weights do not fit policy {policy.name!r}: {first}", source=str(weights_path)) from None
    load_extras = getattr(policy, "load_extras", None)  # files a policy saves beside its weights
    if load_extras is not None:
        load_extras(directory)
    return policy


def read_metrics(directory: str | Path) -> dict:
    path = Path(directory) / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def cache_key(world_spec: Mapping[str, Any], policy: str, params: Mapping[str, Any], seed: int,
              trainer: Mapping[str, Any] | None = None) -> str:
    """``sha256`` of the canonical JSON (sorted keys, no whitespace) of everything that
    determines the trained weights.  Pass ``params`` merged with the policy's defaults so
    that an omitted default and an explicit one share an entry."""
    payload = {"format": FORMAT, "simab_version": __version__, "world": world_spec, "policy": policy,
               "params": params, "seed": seed, "trainer": trainer or {}}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def key_world(world_spec: Mapping[str, Any], groups: Any) -> Mapping[str, Any]:
    """The world a checkpoint key holds for a policy reading feature ``groups``: the spec
    without the log-only fields (``simab.simulators.spec.LOG_ONLY_FIELDS``) that change none
    of those groups, so one training serves every value of such a field."""
    from simab.simulators.spec import LOG_ONLY_FIELDS

    inner = world_spec.get("world")
    if isinstance(inner, Mapping):  # World.spec_dict(): {"world": spec, "seed": ..., "version": ...}
        return {**world_spec, "world": key_world(inner, groups)}
    read = set(groups or ())
    drop = {f for f, shown in LOG_ONLY_FIELDS.items() if f in world_spec and not read & set(shown)}
    return {k: v for k, v in world_spec.items() if k not in drop} if drop else world_spec


def key_params(policy: Any) -> dict:
    """The parameters a checkpoint key holds: the policy's (defaults merged) less those of its
    ``KEY_NEUTRAL`` at their neutral value, parameters added after checkpoints of the policy
    existed whose value there builds the model as it was before them.  Adding such a parameter
    then leaves every existing key, and so the cache, as it was."""
    neutral = getattr(type(policy), "KEY_NEUTRAL", {})
    return {k: v for k, v in policy.params.items() if not (k in neutral and canonical_json(v) == canonical_json(neutral[k]))}


def load_or_train(
    cache_dir: str | Path,
    world_spec: Mapping[str, Any],
    name: str,
    params: Mapping[str, Any] | None,
    feature_spec: FeatureSpec,
    seed: int,
    train_source: BatchSource,
    val_source: BatchSource | None,
    trainer_config: Any,
) -> tuple[Policy, dict, bool]:
    """Return ``(policy, metrics, from_cache)``: the cached checkpoint for these inputs,
    or a freshly trained one that is then stored (written to a temporary directory and
    renamed, so a reader never sees half an entry).  Policies that do not learn weights
    are fitted and returned without caching."""
    config = replace(trainer_config, seed=seed)
    policy = build_policy(name, params, feature_spec, seed)
    if not has_weights(policy):
        return policy, policy.fit(train_source, val_source) or {}, False
    world_spec = key_world(world_spec, getattr(policy, "feature_groups", ()))
    key = cache_key(world_spec, name, key_params(policy), seed, config.result_relevant())
    cache_dir = Path(cache_dir)
    entry = cache_dir / key
    if (entry / SPEC_FILE).exists():
        cached = load_checkpoint(entry, name=name, params=policy.params, feature_spec=feature_spec)
        return cached, read_metrics(entry), True
    # through the policy's own ``fit``: a policy may prepare its data (AMEN mines its TSP
    # pairs) or train in phases (SSIM: search, then retrain) before what is cached
    metrics = policy.fit(train_source, val_source, **asdict(config))
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=cache_dir))
    try:
        save_checkpoint(policy, tmp, metrics)
        _write_json(tmp / "cache_key.json", {"world": world_spec, "policy": name, "params": key_params(policy),
                                             "seed": seed, "trainer": config.result_relevant()})
        os.rename(tmp, entry)
    except OSError:
        if not (entry / SPEC_FILE).exists():  # not a lost race with another writer: a real failure
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return policy, metrics, False
