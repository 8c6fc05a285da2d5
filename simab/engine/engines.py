"""The two shard engines by name (``simab.spec.ENGINES``; docs/architecture.md, data flow
step 5)."""

from __future__ import annotations

from simab.engine.shard import ShardSimulation
from simab.spec import ENGINES


def make_simulation(engine: str, *args, **kwargs) -> ShardSimulation:
    """A shard simulation of ``engine``: "wave" (:mod:`simab.engine.wave`, the default) or
    "reference" (:mod:`simab.engine.reference`); arguments as :class:`ShardSimulation`."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; one of {ENGINES}")
    if engine == "reference":
        from simab.engine.reference import ReferenceSimulation

        return ReferenceSimulation(*args, **kwargs)
    from simab.engine.wave import WaveSimulation

    return WaveSimulation(*args, **kwargs)
