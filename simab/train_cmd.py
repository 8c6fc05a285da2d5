"""``simab train``: train one policy on a world's pre-period logs and write metrics.json.

    simab train --world PRESET|FILE.toml --policy NAME [--set key=value ...]
                [--epochs N] [--device auto|cpu|cuda] [--users N] --out DIR
"""

from __future__ import annotations

from pathlib import Path

from simab.errors import SimabError
from simab.overrides import parse_overrides
from simab.progress import progress


def train_main(args) -> int:
    from simab.policies.trainer import TrainerConfig, train_policy
    from simab.policies.world_features import feature_spec_of
    from simab.preperiod import pre_period, training_data
    from simab.simulators.world import World
    from simab.worlds import world_spec_from

    ws = world_spec_from(args.world, users=args.users, source="--world")
    world = World.build(ws, args.seed)
    params = parse_overrides(args.set, source="--set")
    from simab.policies.base import make_policy

    make_policy(args.policy, params, feature_spec_of(world.spec), key="--policy")  # fail fast on bad names/params
    cfg = TrainerConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
                        max_steps=args.max_steps, seed=args.seed)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimabError(f"cannot create the output folder: {exc.strerror}", source=str(out)) from None
    progress(f"pre-period logs for world {ws.preset} ({ws.n_users:,} users) ...")
    train, val = training_data(world, pre_period(world, Path("runs/.cache")))
    progress(f"training {args.policy} on {train.n_rows:,} rows (validation {val.n_rows:,}) ...")
    # writes metrics.json (and the checkpoint of a neural policy) into ``out``, atomically
    metrics = train_policy(args.policy, params, feature_spec_of(world.spec), train, val, cfg, out)
    print(f"{args.policy}: auc {metrics['auc']:.4f}  gauc {metrics['gauc']:.4f}  logloss {metrics['logloss']:.4f}")
    for sc, m in metrics.get("per_scenario", {}).items():
        print(f"  {sc:<20} auc {m['auc']:.4f}  gauc {m['gauc']:.4f}  logloss {m['logloss']:.4f}  n {m.get('n', '')}")
    print(f"wrote {out / 'metrics.json'}")
    return 0

