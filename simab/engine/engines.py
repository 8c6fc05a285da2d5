"""The two shard engines by name (see docs/architecture.md, "Engines")."""

from __future__ import annotations

from simab.engine.shard import ShardSimulation

ENGINES = ("wave", "reference")


def make_simulation(engine: str, *args, **kwargs) -> ShardSimulation:
    """A shard simulation of ``engine``: "wave" (:mod:`simab.engine.wave`, the default) or
    "reference" (:mod:`simab.engine.reference`); arguments as :class:`ShardSimulation`."""
    if engine == "reference":
        from simab.engine.reference import ReferenceSimulation

        return ReferenceSimulation(*args, **kwargs)
    from simab.engine.wave import WaveSimulation

    return WaveSimulation(*args, **kwargs)
