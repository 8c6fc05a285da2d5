"""The world a user names, as a validated ``WorldSpec``: a preset, a ``[world]`` table, or a
TOML file that holds one (the ``simab world`` and ``simab train`` arguments and the
reproduction scripts go through here; ``World.build`` then builds it)."""

from __future__ import annotations

from typing import Any

from simab.errors import SimabError
from simab.simulators.spec import WorldSpec, world_spec


def world_spec_from(world: str | dict[str, Any] | WorldSpec, *, users: int | None = None,
                    source: str | None = None, key: str = "world") -> WorldSpec:
    """The validated world of ``world``: a preset name, a path to a ``.toml`` file with a
    ``[world]`` table, a ``[world]`` table (preset merged with its overrides) or a
    ``WorldSpec``; ``users`` overrides ``n_users``."""
    if isinstance(world, WorldSpec):
        return world if users is None else world_spec({**world.model_dump(), "n_users": users}, source=source, key=key)
    if isinstance(world, str) and world.endswith(".toml"):
        from simab.spec import read_toml

        table = read_toml(world).get("world")
        if table is None:
            raise SimabError("no [world] table", source=world, key="world")
        source = world
    elif isinstance(world, str):
        table = {"preset": world}
    else:
        table = world
    if users is not None:
        table = {**table, "n_users": users}
    return world_spec(table, source=source, key=key)

