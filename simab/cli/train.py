"""``simab train``: train one policy on a world's pre-period logs and write metrics.json.

    simab train --world PRESET|FILE.toml --policy NAME [--set key=value ...]
                [--epochs N] [--device auto|cpu|cuda] [--users N] --out DIR

The pre-period logs are cached in the cache folder (``$SIMAB_CACHE``, default
``$XDG_CACHE_HOME/simab`` or ``~/.cache/simab``).
"""

from __future__ import annotations

import math

from simab.errors import SimabError
from simab.overrides import parse_overrides
from simab.progress import progress


def train_main(args) -> int:
    from simab.policies.trainer import TrainerConfig, train_policy
    from simab.policies.world_features import feature_spec_of
    from simab.run.arm_policies import warn_low_auc
    from simab.run.folder import CHECKPOINT_FILES, Plan, cache_dir, output_folder
    from simab.run.preperiod import pre_period, training_data
    from simab.simulators.world import World
    from simab.worlds import world_spec_from

    ws = world_spec_from(args.world, users=args.users, source="--world")
    world = World.build(ws, args.seed)
    params = parse_overrides(args.set, source="--set")
    from simab.policies.base import make_policy

    try:
        policy = make_policy(args.policy, params, feature_spec_of(world.spec), key="--policy")  # fail fast
    except SimabError as e:
        if e.key and e.key.startswith("params."):  # a hyper-parameter came from --set
            raise SimabError(e.message, source="--set", key=e.key.removeprefix("params.")) from None
        raise
    if not getattr(policy, "trainable", False):
        from simab.policies.base import policy_names

        trainable = [n for n in policy_names() if _trainable(n, feature_spec_of(world.spec))]
        raise SimabError(f"policy {args.policy!r} learns nothing; trainable: {', '.join(trainable)}",
                         source="--policy")
    cfg = TrainerConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
                        max_steps=args.max_steps, monitor=args.monitor, patience=args.patience, seed=args.seed)
    cache = cache_dir(None)
    with output_folder(args.out, kind="train", command="simab train", plan=Plan(files=list(CHECKPOINT_FILES))) as rec:
        out = rec.folder
        progress(f"pre-period logs for world {ws.preset} ({ws.n_users:,} users) ...")
        train, val = training_data(world, pre_period(world, cache))
        progress(f"training {args.policy} on {train.n_rows:,} rows (validation {val.n_rows:,}) ...")
        metrics = train_policy(args.policy, params, feature_spec_of(world.spec), train, val, cfg, out)
        if not _finite(metrics.get("logloss")):
            raise SimabError(f"training diverged: validation logloss is {metrics.get('logloss')}; lower --lr",
                             source="--lr")
        if not _finite(metrics.get("auc")):
            raise SimabError("validation AUC is undefined (the validation logs hold no clicks, or only clicks); "
                             "raise --users", source="--world")
        for name in CHECKPOINT_FILES:
            if (out / name).is_file():
                rec.add_file(name)
        rec.save()
    warn_low_auc(args.policy, metrics, train)
    print(f"{args.policy}: auc {metrics['auc']:.4f}  gauc {metrics['gauc']:.4f}  logloss {metrics['logloss']:.4f}")
    for sc, m in metrics.get("per_scenario", {}).items():
        print(f"  {sc:<20} auc {m['auc']:.4f}  gauc {m['gauc']:.4f}  logloss {m['logloss']:.4f}  n {m.get('n', '')}")
    print(f"wrote {out / 'metrics.json'}")
    return 0


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _trainable(name: str, feature_spec) -> bool:
    from simab.policies.base import make_policy

    try:
        return bool(getattr(make_policy(name, {}, feature_spec), "trainable", False))
    except SimabError:  # a policy that needs parameters to be built is listed by name only
        return False

