"""The world: everything a campaign needs to simulate users and reveal the truth.

``World.build(spec, seed)`` creates the catalog (items of both domains), the population
(on demand), the response oracle, the scene chain and the lifelong-history generator.
Only the catalog is materialised; users and histories are pure functions of the seed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

from simab.simulators import rng
from simab.simulators.catalog import Catalog
from simab.simulators.history import HistoryGenerator
from simab.simulators.oracle import Oracle
from simab.simulators.population import Population
from simab.simulators.scenes import SceneChain
from simab.simulators.spec import WorldSpec

#: Version of the generator's draws for a given (spec, seed); part of ``spec_dict``.
#: 2: the pre-period draws its behaviour from its own streams (``World.with_phase``).
#: 3: the pre-period groups users by the campaign's hashed shard, which decides its
#: serving batches, and caches its tables sorted by request (other training data).
#: 4: lifelong histories are drawn counter-based, vectorised over users (same distributions);
#: the wave engine's event semantics: serving latency is a per-request model, retrieval and
#: ranking happen when the slate is served, purchases land before the user's next event.
WORLD_VERSION = 5


@dataclass
class World:
    spec: WorldSpec
    seed: int
    catalog: Catalog
    population: Population
    oracle: Oracle
    chain: SceneChain
    histories: HistoryGenerator
    phase: str = "campaign"

    @classmethod
    def build(cls, spec: WorldSpec, seed: int) -> World:
        catalog = Catalog.build(spec, seed)
        return cls(
            spec=spec,
            seed=seed,
            catalog=catalog,
            population=Population(spec, seed, catalog),
            oracle=Oracle(spec, seed, catalog),
            chain=SceneChain(spec, seed),
            histories=HistoryGenerator(spec, seed, catalog),
        )

    @property
    def scenario_names(self) -> tuple[str, ...]:
        return self.spec.scenario_names

    def with_phase(self, phase: str) -> World:
        """The same world (catalogue, users, histories) with the behaviour streams
        (sessions, scenes, needs, responses, retrieval, policy randomness) of ``phase``:
        ``"preperiod"`` draws independently of the campaign."""
        return replace(self, phase=phase, chain=SceneChain(self.spec, self.seed, phase),
                       oracle=Oracle(self.spec, self.seed, self.catalog, phase))

    def stream(self, name: str) -> str:
        return rng.phase_stream(self.phase, name)

    def spec_dict(self) -> dict:
        """What determines the world's draws: spec, seed and the generator's version
        (bumped when the same spec and seed would give other draws, so that caches keyed
        on it are not reused across such a change).  The market (``spec.market``) is left
        out: it acts on campaigns only, never on the pre-period's logs or the models trained
        on them, which is what this keys."""
        world = self.spec.model_dump(mode="json")
        world.pop("market", None)
        return {"world": world, "seed": self.seed, "version": WORLD_VERSION}

    def fingerprint(self) -> str:
        """Hash of (world spec, seed): keys the cached pre-period logs and checkpoints."""
        blob = json.dumps(self.spec_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

