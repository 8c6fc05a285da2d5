"""The synthetic world: catalog, population, scenes, scenarios, response oracle, datasets."""
