"""Ranking policies: protocol, features, layers, baselines, seed models, trainer."""
