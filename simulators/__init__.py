"""The synthetic world: catalog, population, scenes, scenarios, response oracle (no torch, nothing of policies)."""
