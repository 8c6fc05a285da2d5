"""simab: simulation-driven A/B testing for ranking policies."""

__version__ = "0.1.0"
