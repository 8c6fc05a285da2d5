"""The two shard engines by name (see docs/architecture.md, "Engines")."""

from __future__ import annotations

from simab.campaign import ShardSimulation

ENGINES = ("wave", "reference")


def make_simulation(engine: str, *args, **kwargs) -> ShardSimulation:
    """A shard simulation of ``engine``: "wave" (:mod:`simab.engine_wave`, the default) or
    "reference" (:mod:`simab.engine_reference`); arguments as :class:`ShardSimulation`."""
    if engine == "reference":
        from simab.engine_reference import ReferenceSimulation

        return ReferenceSimulation(*args, **kwargs)
    from simab.engine_wave import WaveSimulation

    return WaveSimulation(*args, **kwargs)
