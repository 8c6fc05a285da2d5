"""``simab train``: train one policy on a world's pre-period logs and write metrics.json.

    simab train --world PRESET|FILE.toml --policy NAME [--set key=value ...]
                [--epochs N] [--device auto|cpu|cuda] [--users N] --out DIR

The pre-period logs are cached in the cache folder (``$SIMAB_CACHE``, default
``$XDG_CACHE_HOME/simab`` or ``~/.cache/simab``).
"""

from __future__ import annotations

import json
import sys

from simab.errors import SimabError


def train_main(args) -> int:
    from simab.cli import _parse_set
    from simab.policies.trainer import TrainerConfig, train_policy
    from simab.run_folder import cache_dir, new_output_folder
    from simab.runner import pre_period, training_data, warn_low_auc
    from simab.simulators.spec import world_spec
    from simab.simulators.world import World

    source = "--world"
    if args.world.endswith(".toml"):
        from simab.spec import read_toml

        table = read_toml(args.world).get("world")
        if table is None:
            raise SimabError("no [world] table", source=args.world, key="world")
        source = args.world
    else:
        table = {"preset": args.world}
    if args.users is not None:
        table = {**table, "n_users": args.users}
    ws = world_spec(table, source=source)
    world = World.build(ws, args.seed)
    params = _parse_set(args.set, source="--set")
    from simab.policies.base import make_policy

    policy = make_policy(args.policy, params, world.feature_spec(), key="--policy")  # fail fast
    if not getattr(policy, "trainable", False):
        from simab.policies.base import policy_names

        trainable = [n for n in policy_names() if _trainable(n, world.feature_spec())]
        raise SimabError(f"policy {args.policy!r} learns nothing; trainable: {', '.join(trainable)}",
                         source="<cli>", key="--policy")
    cfg = TrainerConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
                        max_steps=args.max_steps, seed=args.seed)
    cache = cache_dir(None)
    with new_output_folder(args.out) as out:
        print(f"pre-period logs for world {ws.preset} ({ws.n_users:,} users) ...", file=sys.stderr)
        train, val = training_data(world, pre_period(world, cache))
        print(f"training {args.policy} on {train.n_rows:,} rows (validation {val.n_rows:,}) ...", file=sys.stderr)
        metrics = train_policy(args.policy, params, world.feature_spec(), train, val, cfg, out)
        (out / "metrics.json").write_text(json.dumps(_clean(metrics), indent=2, sort_keys=True))
    warn_low_auc(args.policy, metrics, train)
    print(f"{args.policy}: auc {metrics['auc']:.4f}  gauc {metrics['gauc']:.4f}  logloss {metrics['logloss']:.4f}")
    for sc, m in metrics.get("per_scenario", {}).items():
        print(f"  {sc:<20} auc {m['auc']:.4f}  gauc {m['gauc']:.4f}  logloss {m['logloss']:.4f}  n {m.get('n', '')}")
    print(f"wrote {out / 'metrics.json'}")
    return 0


def _trainable(name: str, feature_spec) -> bool:
    from simab.policies.base import make_policy

    try:
        return bool(getattr(make_policy(name, {}, feature_spec), "trainable", False))
    except SimabError:  # a policy that needs parameters to be built is listed by name only
        return False


def _clean(x):
    import math

    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item"):
        return _clean(x.item())
    return x
